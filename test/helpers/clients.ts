/**
 * Thin wrappers around REAL POP3 clients (Python poplib, curl, openssl
 * s_client), so tests see popgate and Dovecot the way deployed mail clients
 * do rather than through our own code (the scripted client for exact
 * exchanges is LineClient in line-client.ts). Each program wrapper returns
 * `{ code, stdout, stderr }` (plus parsed extras) and kills the child on a
 * timeout.
 *
 * Byte-exactness: poplib returns RETR lines without their CRLF and with
 * dot-stuffing undone (a leading ".." becomes "."), so
 * `b"\r\n".join(lines) + b"\r\n"` is exactly the message as POP3 delivered it
 * (CRLF line ends). Compare against pop3Wire(fileBytes) from dovecot.ts, which
 * is the LF->CRLF form Dovecot sends. poplib refuses lines over 2048 bytes
 * ("line too long"): keep test message lines shorter. curl also undoes the
 * dot-stuffing and returns the CRLF form.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunResult {
  /** Exit code; null when killed (timeout) or signalled. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs a program, feeding `input` to stdin; SIGKILLs it after timeoutMs (default 60 s). */
export function runProgram(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.once('error', (e) => {
      clearTimeout(timer);
      const code = (e as NodeJS.ErrnoException).code;
      reject(
        code === 'ENOENT'
          ? new Error(`${cmd} not found: run scripts/setup.sh`)
          : new Error(`cannot run ${cmd}: ${e.message}`),
      );
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({
        code,
        signal,
        timedOut,
        stdout: stdoutBytes.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBytes,
      });
    });
    child.stdin.on('error', () => undefined); // child may exit before reading all input
    child.stdin.end(opts.input ?? '');
  });
}

// ---------------------------------------------------------------- poplib

export type PopMode = 'ssl' | 'stls' | 'plain';

export interface PoplibOptions {
  host: string;
  port: number;
  mode: PopMode;
  /** Trust anchor for 'ssl'/'stls' (default: the system store). */
  caFile?: string;
  /** Hostname check (default true; Python checks IP SANs for an IP host). */
  checkHostname?: boolean;
  user: string;
  password: string;
  /** AUTH PLAIN instead of USER/PASS. */
  authPlain?: boolean;
  /** AUTH PLAIN authorization identity (e.g. the user, when `user` is a master user). */
  authzid?: string;
  /** Also run CAPA (after STLS for mode 'stls') and report it. */
  capa?: boolean;
  /** Messages to RETR: 'all' (every message from LIST) or numbers. Default none. */
  retrieve?: 'all' | number[];
  /** Messages to DELE after retrieving. */
  dele?: number[];
  /** false = drop the connection without QUIT after the commands. Default true. */
  quit?: boolean;
  /** Include base64 message bodies in the result (keep to small messages). */
  includeBodies?: boolean;
  timeoutMs?: number;
}

export interface PoplibMessage {
  n: number;
  /** Bytes of the reassembled payload (CRLF form). */
  size: number;
  sha256: string;
  /** First response line of RETR. */
  resp: string;
  /** base64 payload, with includeBodies. */
  body?: string;
}

export interface PoplibResult {
  ok: boolean;
  /** Where it stopped: connect | stls | capa | auth | stat | list | uidl | retr | dele | quit | done. */
  stage: string;
  welcome: string | null;
  stls: string | null;
  capa: Record<string, string[]> | null;
  auth: string | null;
  stat: [number, number] | null;
  list: [number, number][] | null;
  uidl: [number, string][] | null;
  messages: PoplibMessage[];
  dele: string[];
  quit: string | null;
  /** Error text (poplib.error_proto message is the server's -ERR line). */
  error: string | null;
  /** pop3 | tls | network | other */
  errorType: string | null;
}

const POPLIB_SCRIPT = String.raw`
import base64, hashlib, json, poplib, socket, ssl, sys

o = json.load(sys.stdin)
res = {"ok": False, "stage": "connect", "welcome": None, "stls": None, "capa": None,
       "auth": None, "stat": None, "list": None, "uidl": None, "messages": [],
       "dele": [], "quit": None, "error": None, "errorType": None}

def d(b):
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else str(b)

def emit(code):
    sys.stdout.write(json.dumps(res))
    sys.stdout.flush()
    sys.exit(code)

try:
    timeout = o.get("timeout", 30)
    ctx = None
    if o["mode"] != "plain":
        ctx = ssl.create_default_context(cafile=o.get("caFile"))
        if o.get("checkHostname") is False:
            ctx.check_hostname = False
    if o["mode"] == "ssl":
        p = poplib.POP3_SSL(o["host"], o["port"], timeout=timeout, context=ctx)
    else:
        p = poplib.POP3(o["host"], o["port"], timeout=timeout)
    res["welcome"] = d(p.getwelcome())
    if o["mode"] == "stls":
        res["stage"] = "stls"
        res["stls"] = d(p.stls(ctx))
    if o.get("capa"):
        res["stage"] = "capa"
        res["capa"] = {k: [d(x) for x in v] for k, v in p.capa().items()}
    res["stage"] = "auth"
    if o.get("authPlain"):
        raw = ("%s\0%s\0%s" % (o.get("authzid") or "", o["user"], o["password"])).encode("utf-8")
        res["auth"] = d(p._shortcmd("AUTH PLAIN " + base64.b64encode(raw).decode("ascii")))
    else:
        p.user(o["user"])
        res["auth"] = d(p.pass_(o["password"]))
    res["stage"] = "stat"
    res["stat"] = list(p.stat())
    res["stage"] = "list"
    _, lines, _ = p.list()
    res["list"] = [[int(a), int(b)] for a, b in (l.split()[:2] for l in lines)]
    res["stage"] = "uidl"
    try:
        _, lines, _ = p.uidl()
        res["uidl"] = [[int(a), d(b)] for a, b in (l.split()[:2] for l in lines)]
    except poplib.error_proto:
        res["uidl"] = None
    res["stage"] = "retr"
    want = o.get("retrieve")
    nums = [n for n, _ in res["list"]] if want == "all" else (want or [])
    for n in nums:
        resp, lines, _ = p.retr(n)
        payload = b"\r\n".join(lines) + b"\r\n"
        m = {"n": n, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "resp": d(resp)}
        if o.get("includeBodies"):
            m["body"] = base64.b64encode(payload).decode("ascii")
        res["messages"].append(m)
    res["stage"] = "dele"
    for n in o.get("dele") or []:
        res["dele"].append(d(p.dele(n)))
    res["stage"] = "quit"
    if o.get("quit", True):
        res["quit"] = d(p.quit())
    else:
        p.close()
    res["stage"] = "done"
    res["ok"] = True
    emit(0)
except poplib.error_proto as e:
    res["error"] = d(e.args[0]) if e.args else "error_proto"
    res["errorType"] = "pop3"
    emit(1)
except (ssl.SSLError, ssl.CertificateError) as e:
    res["error"] = str(e)
    res["errorType"] = "tls"
    emit(2)
except OSError as e:
    res["error"] = str(e)
    res["errorType"] = "network"
    emit(3)
except Exception as e:
    res["error"] = "%s: %s" % (type(e).__name__, e)
    res["errorType"] = "other"
    emit(4)
`;

/** /usr/bin/python3 has the Debian modules (python3-gssapi); an earlier python3 on PATH may not. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/**
 * Runs Python poplib against a POP3 server. `code` 0 = every step worked;
 * 1 = a -ERR (see result.error / result.stage), 2 = TLS, 3 = network, 4 = other.
 * Any failure drops the connection without QUIT (nothing gets deleted).
 */
export async function poplibFetch(
  opts: PoplibOptions,
): Promise<RunResult & { result: PoplibResult }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const input = JSON.stringify({
    host: opts.host,
    port: opts.port,
    mode: opts.mode,
    caFile: opts.caFile ?? null,
    checkHostname: opts.checkHostname ?? true,
    user: opts.user,
    password: opts.password,
    authPlain: opts.authPlain ?? false,
    authzid: opts.authzid ?? '',
    capa: opts.capa ?? false,
    retrieve: opts.retrieve ?? [],
    dele: opts.dele ?? [],
    quit: opts.quit ?? true,
    includeBodies: opts.includeBodies ?? false,
    timeout: Math.max(1, Math.floor(timeoutMs / 1000) - 1),
  });
  const r = await runProgram(PYTHON, ['-c', POPLIB_SCRIPT], { input, timeoutMs });
  let result: PoplibResult;
  try {
    result = JSON.parse(r.stdout) as PoplibResult;
  } catch {
    throw new Error(
      `poplib produced no JSON (code ${r.code}, timedOut ${r.timedOut})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
  }
  return { ...r, result };
}

/** poplibFetch over implicit TLS (POP3S) to 127.0.0.1:`port`, trusting `caFile`. */
export function poplibOverTls(
  port: number,
  caFile: string,
  opts: Omit<PoplibOptions, 'host' | 'port' | 'mode' | 'caFile'>,
): Promise<RunResult & { result: PoplibResult }> {
  return poplibFetch({ host: '127.0.0.1', port, mode: 'ssl', caFile, ...opts });
}

// ---------------------------------------------------------------- curl

export interface CurlPop3Options {
  /** e.g. pop3s://localhost:995/1 or pop3://127.0.0.1:110/1 (no path = LIST). */
  url: string;
  user: string;
  password: string;
  caFile?: string;
  /** --ssl-reqd: require STLS on a pop3:// URL. */
  sslReqd?: boolean;
  extra?: string[];
  timeoutMs?: number;
  /** Extra environment (e.g. KRB5_CONFIG, KRB5CCNAME for GSSAPI). */
  env?: Record<string, string>;
}

/** Runs curl; `body` is the raw bytes curl wrote (the message for a RETR URL). */
export async function curlPop3(opts: CurlPop3Options): Promise<RunResult & { body: Buffer }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const args = ['-sS', '--max-time', String(Math.max(1, Math.floor(timeoutMs / 1000) - 1))];
  args.push('-u', `${opts.user}:${opts.password}`);
  if (opts.caFile) args.push('--cacert', opts.caFile);
  if (opts.sslReqd) args.push('--ssl-reqd');
  args.push(...(opts.extra ?? []), opts.url);
  const r = await runProgram('curl', args, { timeoutMs, env: { ...process.env, ...opts.env } });
  return { ...r, body: r.stdoutBytes };
}

// ---------------------------------------------------------------- openssl s_client

export interface OpensslStarttlsOptions {
  host: string;
  port: number;
  caFile: string;
  /** POP3 commands to send after the STLS handshake; end with QUIT or the call waits for the timeout. */
  input: string;
  /** SNI + RFC 6125 name check (-servername/-verify_hostname). */
  verifyHostname?: string;
  extra?: string[];
  timeoutMs?: number;
}

/**
 * `openssl s_client -starttls pop3 -quiet` with stdin = input. s_client itself
 * reads the greeting and sends STLS; stdout is the server's transcript after
 * the handshake. -verify_return_error makes a bad certificate fail the run.
 */
export function opensslStarttls(opts: OpensslStarttlsOptions): Promise<RunResult> {
  const args = [
    's_client', '-starttls', 'pop3', '-connect', `${opts.host}:${opts.port}`,
    '-CAfile', opts.caFile, '-verify_return_error', '-quiet',
  ];
  if (opts.verifyHostname) args.push('-servername', opts.verifyHostname, '-verify_hostname', opts.verifyHostname);
  args.push(...(opts.extra ?? []));
  return runProgram('openssl', args, { input: opts.input, timeoutMs: opts.timeoutMs ?? 30_000 });
}
