/**
 * Thin wrappers around REAL POP3 clients (Python poplib, curl, openssl
 * s_client) plus a tiny scripted raw client, so tests see popgate and Dovecot
 * the way deployed mail clients do rather than through our own code. Each
 * program wrapper returns `{ code, stdout, stderr }` (plus parsed extras) and
 * kills the child on a timeout.
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
import net from 'node:net';
import tls from 'node:tls';
/** Runs a program, feeding `input` to stdin; SIGKILLs it after timeoutMs (default 60 s). */
export function runProgram(cmd, args, opts = {}) {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
        const out = [];
        const err = [];
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
        }, opts.timeoutMs ?? 60_000);
        child.stdout.on('data', (d) => out.push(d));
        child.stderr.on('data', (d) => err.push(d));
        child.once('error', (e) => {
            clearTimeout(timer);
            const code = e.code;
            reject(code === 'ENOENT'
                ? new Error(`${cmd} not found: run scripts/setup.sh`)
                : new Error(`cannot run ${cmd}: ${e.message}`));
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
const POPLIB_SCRIPT = String.raw `
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
export async function poplibFetch(opts) {
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
    let result;
    try {
        result = JSON.parse(r.stdout);
    }
    catch {
        throw new Error(`poplib produced no JSON (code ${r.code}, timedOut ${r.timedOut})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    }
    return { ...r, result };
}
/** Runs curl; `body` is the raw bytes curl wrote (the message for a RETR URL). */
export async function curlPop3(opts) {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const args = ['-sS', '--max-time', String(Math.max(1, Math.floor(timeoutMs / 1000) - 1))];
    args.push('-u', `${opts.user}:${opts.password}`);
    if (opts.caFile)
        args.push('--cacert', opts.caFile);
    if (opts.sslReqd)
        args.push('--ssl-reqd');
    args.push(...(opts.extra ?? []), opts.url);
    const r = await runProgram('curl', args, { timeoutMs });
    return { ...r, body: r.stdoutBytes };
}
/**
 * `openssl s_client -starttls pop3 -quiet` with stdin = input. s_client itself
 * reads the greeting and sends STLS; stdout is the server's transcript after
 * the handshake. -verify_return_error makes a bad certificate fail the run.
 */
export function opensslStarttls(opts) {
    const args = [
        's_client', '-starttls', 'pop3', '-connect', `${opts.host}:${opts.port}`,
        '-CAfile', opts.caFile, '-verify_return_error', '-quiet',
    ];
    if (opts.verifyHostname)
        args.push('-servername', opts.verifyHostname, '-verify_hostname', opts.verifyHostname);
    args.push(...(opts.extra ?? []));
    return runProgram('openssl', args, { input: opts.input, timeoutMs: opts.timeoutMs ?? 30_000 });
}
/** A scripted POP3 connection for exact exchanges (pipelining, injection, drops). */
export function rawSession(host, port, connectTimeoutMs = 5000) {
    return new Promise((resolve, reject) => {
        let sock = net.connect({ host, port });
        let buf = Buffer.alloc(0);
        let closed = false;
        let error;
        let wake;
        const notify = () => {
            const w = wake;
            wake = undefined;
            w?.();
        };
        const onData = (d) => {
            buf = Buffer.concat([buf, d]);
            notify();
        };
        const onClose = () => {
            closed = true;
            notify();
        };
        const onError = (e) => {
            error = e;
            notify();
        };
        const attach = (s) => {
            s.on('data', onData);
            s.on('close', onClose);
            s.on('error', onError);
        };
        const readUntil = async (until, timeoutMs = 5000) => {
            const term = typeof until === 'string' ? Buffer.from(until, 'latin1') : until;
            const find = (b) => {
                if (typeof term === 'function')
                    return term(b);
                const i = b.indexOf(term);
                return i < 0 ? -1 : i + term.length;
            };
            const deadline = Date.now() + timeoutMs;
            for (;;) {
                const end = find(buf);
                if (end >= 0) {
                    const out = buf.subarray(0, end);
                    buf = buf.subarray(end);
                    return Buffer.from(out);
                }
                if (closed || error) {
                    throw new Error(`rawSession: connection ${error ? `error (${error.message})` : 'closed'} before terminator; ` +
                        `pending ${JSON.stringify(buf.toString('latin1'))}`);
                }
                const left = deadline - Date.now();
                if (left <= 0) {
                    throw new Error(`rawSession: timeout after ${timeoutMs} ms; pending ${JSON.stringify(buf.toString('latin1'))}`);
                }
                await new Promise((res) => {
                    const t = setTimeout(() => {
                        wake = undefined;
                        res();
                    }, left);
                    wake = () => {
                        clearTimeout(t);
                        res();
                    };
                });
            }
        };
        const session = {
            get socket() {
                return sock;
            },
            get closed() {
                return closed;
            },
            send: (data) => new Promise((res, rej) => {
                sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (e) => (e ? rej(e) : res()));
            }),
            readLine: async (timeoutMs) => {
                const line = await readUntil('\n', timeoutMs);
                return line.toString('latin1').replace(/\r?\n$/, '');
            },
            readUntil,
            readMultiline: (timeoutMs) => readUntil((b) => {
                if (b.subarray(0, 3).toString('latin1') === '.\r\n')
                    return 3;
                const i = b.indexOf('\r\n.\r\n');
                return i < 0 ? -1 : i + 5;
            }, timeoutMs ?? 10_000),
            pending: () => Buffer.from(buf),
            startTls: (options) => new Promise((res, rej) => {
                sock.off('data', onData);
                sock.off('close', onClose);
                sock.off('error', onError);
                const t = tls.connect({ ...options, socket: sock });
                const fail = (e) => rej(e);
                t.once('error', fail);
                t.once('secureConnect', () => {
                    t.off('error', fail);
                    sock = t;
                    attach(t);
                    res();
                });
            }),
            waitClosed: async (timeoutMs = 5000) => {
                const deadline = Date.now() + timeoutMs;
                while (!closed && Date.now() < deadline) {
                    await new Promise((res) => {
                        const t = setTimeout(res, Math.max(1, deadline - Date.now()));
                        wake = () => {
                            clearTimeout(t);
                            res();
                        };
                    });
                }
                return closed;
            },
            close: () => {
                sock.destroy();
            },
        };
        const timer = setTimeout(() => {
            sock.destroy();
            reject(new Error(`rawSession: connect to ${host}:${port} timed out`));
        }, connectTimeoutMs);
        sock.once('connect', () => {
            clearTimeout(timer);
            sock.off('error', onConnectError);
            attach(sock);
            resolve(session);
        });
        const onConnectError = (e) => {
            clearTimeout(timer);
            reject(new Error(`rawSession: connect to ${host}:${port} failed: ${e.message}`));
        };
        sock.once('error', onConnectError);
    });
}
//# sourceMappingURL=clients.js.map