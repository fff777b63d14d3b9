/**
 * A PRIVATE MIT KDC per test file, on loopback, for the Kerberos tests: its
 * own database, stash, kdc.conf and krb5.conf in a temp dir, `krb5kdc -n` as a
 * child on a free port (UDP and TCP, 127.0.0.1 only), stopped by its PID. It
 * never touches /etc/krb5.conf or /etc/krb5kdc. Anything that cannot start
 * throws with the KDC log: never a skip.
 *
 * Also here:
 *  - a second startKdc() with the SAME realm name is a ROGUE KDC (same user
 *    password, different random service keys): its krb5Config points the
 *    realm at the impostor;
 *  - deadKdcAddress() / startBlackHole(): a KDC address that refuses (dead) or
 *    swallows requests without ever answering (black hole);
 *  - GssClient: a python3-gssapi initiator (/usr/bin/python3, Debian's
 *    python3-gssapi) driven over JSON lines, for real client tokens;
 *  - apReqFromGssToken(): the raw AP-REQ inside a krb5 GSS initial token
 *    (60 len 06 09 <krb5 oid> 01 00 <AP-REQ>), valid for krb5_rd_req;
 *  - setCcacheTimeOffset(): a client with a skewed clock (MIT applies the
 *    FILE ccache header's KDC time offset to its authenticators).
 *
 * Facts found on Debian 12 / MIT 1.20.1 (tests run as root):
 *  - `kdb5_util create -s` + kadmin.local need KRB5_CONFIG and KRB5_KDC_PROFILE;
 *    the realm's database_name/key_stash_file/acl_file must be absolute.
 *  - krb5kdc logs "commencing operation" once its sockets are bound; a bind
 *    failure (port taken) shows in the log and the process exits.
 *  - "preauth spake failed to initialize" in the log is harmless.
 *  - kinit reads the password from stdin when stdin is not a terminal.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from './ports.js';

export interface KdcPrincipal {
  /** Name without realm (`alice`, `pop/localhost`) or with it. */
  name: string;
  /** Password; omitted = random key (-randkey). */
  password?: string;
  /** +requires_preauth (default true for users with a password, as real realms do). */
  requiresPreauth?: boolean;
}

export interface StartKdcOptions {
  /** Default POPGATE.TEST. */
  realm?: string;
  /** Users (password) and other principals (randkey if no password). */
  principals?: KdcPrincipal[];
  /** Service principals with random keys, e.g. ['pop/localhost', 'pop/127.0.0.1']. */
  services?: string[];
  /**
   * Extra realms in the generated krb5.conf, realm -> KDC addresses
   * (`127.0.0.1:port`), e.g. a dead or black-hole realm.
   */
  extraRealms?: Record<string, string[]>;
  /** Extra [libdefaults] lines for the generated krb5.conf. */
  libdefaults?: Record<string, string>;
  /** How long to wait for "commencing operation"; default 15 s. */
  startTimeoutMs?: number;
}

export interface KdcInstance {
  readonly realm: string;
  readonly port: number;
  readonly pid: number;
  /** Private temp dir (database, logs, keytabs, ccaches). Removed by stop(). */
  readonly dir: string;
  /** krb5.conf for clients and the gateway: this realm at 127.0.0.1:port. */
  readonly krb5Config: string;
  /** kdc.conf (KRB5_KDC_PROFILE). */
  readonly kdcProfile: string;
  /** Environment for client tools: KRB5_CONFIG, KRB5_KDC_PROFILE, KRB5CCNAME (dir/ccache). */
  readonly env: Record<string, string>;
  /** Runs kadmin.local -q QUERY; returns its output; throws with output on failure. */
  kadmin(query: string): Promise<string>;
  /** Adds a principal (randkey when no password). */
  addPrincipal(p: KdcPrincipal | string): Promise<void>;
  /** Exports the CURRENT keys of `principals` (ktadd -norandkey) into a new keytab at `file`. */
  keytab(file: string, principals: string[]): Promise<string>;
  /** kinit into `ccache` (default dir/cc-<principal>); returns the ccache path. */
  kinit(principal: string, password: string, ccache?: string): Promise<string>;
  /** kvno: fetches a service ticket into `ccache`. */
  kvno(ccache: string, service: string): Promise<void>;
  /** Writes a krb5.conf like krb5Config but with extra realms / libdefaults. */
  writeKrb5Config(file: string, extraRealms?: Record<string, string[]>, libdefaults?: Record<string, string>): Promise<string>;
  /** The KDC log so far. */
  readLog(): string;
  /** SIGTERM by PID (SIGKILL after 5 s), wait for exit, remove dir. Idempotent. */
  stop(): Promise<void>;
}

const KDC_BIN = '/usr/sbin/krb5kdc';
const KDB5_UTIL = '/usr/sbin/kdb5_util';
const KADMIN_LOCAL = '/usr/sbin/kadmin.local';
const KINIT = '/usr/bin/kinit';
const KVNO = '/usr/bin/kvno';
/** Debian's python3 with python3-gssapi (a pyenv python3 on PATH may lack it). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

function run(
  file: string,
  args: string[],
  env: Record<string, string>,
  input?: string,
  timeoutMs = 20_000,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${err.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

function qualify(name: string, realm: string): string {
  return name.includes('@') ? name : `${name}@${realm}`;
}

function krb5ConfText(
  realm: string,
  port: number,
  extraRealms: Record<string, string[]> = {},
  libdefaults: Record<string, string> = {},
): string {
  const defaults: Record<string, string> = {
    default_realm: realm,
    dns_lookup_kdc: 'false',
    dns_lookup_realm: 'false',
    rdns: 'false',
    dns_canonicalize_hostname: 'false',
    // TCP first: no UDP retransmit delays, and the test port is known free for TCP.
    udp_preference_limit: '1',
    ...libdefaults,
  };
  const realms: Record<string, string[]> = { [realm]: [`127.0.0.1:${port}`], ...extraRealms };
  const lines = ['[libdefaults]', ...Object.entries(defaults).map(([k, v]) => ` ${k} = ${v}`), '', '[realms]'];
  for (const [r, kdcs] of Object.entries(realms)) {
    lines.push(` ${r} = {`, ...kdcs.map((k) => `  kdc = ${k}`), ' }');
  }
  return lines.join('\n') + '\n';
}

function kdcConfText(realm: string, port: number, dir: string): string {
  return `[kdcdefaults]
 kdc_listen = 127.0.0.1:${port}
 kdc_tcp_listen = 127.0.0.1:${port}

[realms]
 ${realm} = {
  database_name = ${dir}/principal
  key_stash_file = ${dir}/stash
  acl_file = ${dir}/kadm5.acl
  kdc_listen = 127.0.0.1:${port}
  kdc_tcp_listen = 127.0.0.1:${port}
  max_life = 10h
  max_renewable_life = 0
  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
 }

[logging]
 kdc = FILE:${dir}/kdc.log
 admin_server = FILE:${dir}/kadmin.log
 default = FILE:${dir}/kdc.log
`;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a private KDC behind if the test process exits without stop().
  process.once('exit', () => {
    for (const c of live) {
      if (c.pid !== undefined && c.exitCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
}

async function waitForStart(child: ChildProcess, logFile: string, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      return `krb5kdc exited early (code ${child.exitCode ?? 'null'}, signal ${child.signalCode ?? 'none'})`;
    }
    if (existsSync(logFile) && readFileSync(logFile, 'utf8').includes('commencing operation')) return undefined;
    await new Promise((r) => setTimeout(r, 25));
  }
  return `krb5kdc did not report "commencing operation" within ${timeoutMs} ms`;
}

/** Starts a private MIT KDC; throws (with the KDC log) if it cannot. */
export async function startKdc(opts: StartKdcOptions = {}): Promise<KdcInstance> {
  const realm = opts.realm ?? 'POPGATE.TEST';
  for (const bin of [KDC_BIN, KDB5_UTIL, KADMIN_LOCAL, KINIT]) {
    if (!existsSync(bin)) throw new Error(`startKdc: ${bin} missing (apt-get install krb5-kdc krb5-admin-server krb5-user)`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'popgate-kdc-'));
  const kdcProfile = path.join(dir, 'kdc.conf');
  const krb5Config = path.join(dir, 'krb5.conf');
  const logFile = path.join(dir, 'kdc.log');
  await writeFile(path.join(dir, 'kadm5.acl'), '');

  let lastError = '';
  for (let attempt = 1; attempt <= 4; attempt++) {
    const port = await freePort();
    await writeFile(kdcProfile, kdcConfText(realm, port, dir));
    await writeFile(krb5Config, krb5ConfText(realm, port, opts.extraRealms, opts.libdefaults));
    const env: Record<string, string> = {
      KRB5_CONFIG: krb5Config,
      KRB5_KDC_PROFILE: kdcProfile,
      KRB5CCNAME: `FILE:${path.join(dir, 'ccache')}`,
    };
    if (attempt === 1) {
      try {
        await run(KDB5_UTIL, ['create', '-s', '-r', realm, '-P', 'popgate-test-master-key'], env);
      } catch (err) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`startKdc: cannot create the realm database: ${(err as Error).message}`);
      }
    }

    installExitHook();
    const child = spawn(KDC_BIN, ['-n', '-r', realm], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => live.delete(child));
    const problem = await waitForStart(child, logFile, opts.startTimeoutMs ?? 15_000);
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no log)';
    if (problem !== undefined) {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      lastError = `${problem}\n--- kdc.log ---\n${log}\n--- output ---\n${output}`;
      if (/Address already in use/i.test(log + output) && attempt < 4) {
        await writeFile(logFile, '');
        continue;
      }
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`startKdc: ${lastError}`);
    }

    const pid = child.pid;
    if (pid === undefined) throw new Error('startKdc: krb5kdc has no pid');
    let stopped = false;
    const kadmin = async (query: string): Promise<string> => {
      const r = await run(KADMIN_LOCAL, ['-r', realm, '-q', query], env);
      // kadmin.local exits 0 even when the query failed: look at what it said.
      const text = r.stdout + r.stderr;
      if (/\b(error|failed|not found|already exists)\b/i.test(text.replace(/No dictionary file specified.*\n?/g, ''))) {
        throw new Error(`kadmin.local -q "${query}" failed:\n${text}`);
      }
      return text;
    };
    const addPrincipal = async (p: KdcPrincipal | string): Promise<void> => {
      const pr = typeof p === 'string' ? { name: p } : p;
      const name = qualify(pr.name, realm);
      if (pr.password !== undefined) {
        const preauth = pr.requiresPreauth ?? true ? '+requires_preauth ' : '';
        await kadmin(`addprinc ${preauth}-pw "${pr.password}" ${name}`);
      } else {
        await kadmin(`addprinc -randkey ${name}`);
      }
    };
    const instance: KdcInstance = {
      realm,
      port,
      pid,
      dir,
      krb5Config,
      kdcProfile,
      env,
      kadmin,
      addPrincipal,
      async keytab(file: string, principals: string[]): Promise<string> {
        await rm(file, { force: true });
        for (const p of principals) await kadmin(`ktadd -k ${file} -norandkey ${qualify(p, realm)}`);
        return file;
      },
      async kinit(principal: string, password: string, ccache?: string): Promise<string> {
        const cc = ccache ?? path.join(dir, `cc-${principal.replace(/[^A-Za-z0-9.-]/g, '_')}`);
        await run(KINIT, ['-c', `FILE:${cc}`, qualify(principal, realm)], env, `${password}\n`);
        return cc;
      },
      async kvno(ccache: string, service: string): Promise<void> {
        await run(KVNO, ['-c', `FILE:${ccache}`, qualify(service, realm)], env);
      },
      async writeKrb5Config(file, extraRealms, libdefaults): Promise<string> {
        await writeFile(file, krb5ConfText(realm, port, { ...opts.extraRealms, ...extraRealms }, { ...opts.libdefaults, ...libdefaults }));
        return file;
      },
      readLog(): string {
        return existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      },
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(pid, 'SIGTERM');
          const killer = setTimeout(() => {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // gone
            }
          }, 5_000);
          await exited;
          clearTimeout(killer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };

    try {
      for (const p of opts.principals ?? []) await addPrincipal(p);
      for (const s of opts.services ?? []) await addPrincipal(s);
    } catch (err) {
      await instance.stop();
      throw new Error(`startKdc: cannot add principals: ${(err as Error).message}\n--- kdc.log ---\n${log}`);
    }
    return instance;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`startKdc: ${lastError}`);
}

/** A loopback port nobody listens on (UDP and TCP refused at once): a dead KDC. */
export async function deadKdcAddress(): Promise<string> {
  return `127.0.0.1:${await freePort()}`;
}

export interface BlackHole {
  readonly port: number;
  readonly address: string;
  /** Requests received so far (UDP datagrams + TCP connections). */
  readonly hits: number;
  close(): Promise<void>;
}

/**
 * A KDC address that reads requests and never answers (UDP socket + TCP
 * listener on the same port, 127.0.0.1): MIT waits its full retry cycle.
 */
export async function startBlackHole(): Promise<BlackHole> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const sockets = new Set<net.Socket>();
    let hits = 0;
    const tcp = net.createServer((s) => {
      hits++;
      sockets.add(s);
      s.on('data', () => undefined);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    });
    const udp = dgram.createSocket('udp4');
    udp.on('message', () => hits++);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve());
      });
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: '127.0.0.1', port, exclusive: true }, () => resolve());
      });
    } catch (err) {
      tcp.close();
      try {
        udp.close();
      } catch {
        // not bound
      }
      if (attempt >= 4) throw err;
      continue;
    }
    let closed = false;
    return {
      port,
      address: `127.0.0.1:${port}`,
      get hits() {
        return hits;
      },
      async close(): Promise<void> {
        if (closed) return;
        closed = true;
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => tcp.close(() => r()));
        await new Promise<void>((r) => udp.close(() => r()));
      },
    };
  }
}

// ---------------------------------------------------------------------------
// Client side helpers.

/**
 * The AP-REQ inside a krb5 GSS initial context token
 * (60 len 06 09 2a864886f712010202 01 00 <AP-REQ>).
 */
export function apReqFromGssToken(token: Buffer): Buffer {
  if (token[0] !== 0x60) throw new Error('not a GSS initial context token');
  let i = 1;
  const first = token[i++] ?? 0;
  if (first & 0x80) i += first & 0x7f;
  const oid = Buffer.from('06092a864886f712010202', 'hex');
  if (!token.subarray(i, i + oid.length).equals(oid)) throw new Error('not a krb5 mechanism token');
  i += oid.length;
  if (token[i] !== 0x01 || token[i + 1] !== 0x00) throw new Error('not an AP-REQ token');
  return Buffer.from(token.subarray(i + 2));
}

/**
 * Sets the KDC time offset in an MIT FILE ccache (v4 header tag 1, DeltaTime):
 * MIT clients add it to their clock, so their authenticators are skewed by
 * `seconds` (a client with a wrong clock). Get service tickets BEFORE this
 * (a skewed TGS-REQ would be refused by the KDC).
 */
export async function setCcacheTimeOffset(ccache: string, seconds: number): Promise<void> {
  const file = ccache.replace(/^FILE:/, '');
  const data = await readFile(file);
  if (data.readUInt16BE(0) !== 0x0504) throw new Error(`${file}: not a v4 FILE ccache`);
  const headerLen = data.readUInt16BE(2);
  const header = Buffer.alloc(4 + 12);
  header.writeUInt16BE(0x0504, 0);
  header.writeUInt16BE(12, 2);
  header.writeUInt16BE(1, 4); // tag: DeltaTime
  header.writeUInt16BE(8, 6);
  header.writeInt32BE(seconds, 8);
  header.writeInt32BE(0, 12);
  await writeFile(file, Buffer.concat([header, data.subarray(4 + headerLen)]));
}

const GSS_CLIENT_PY = String.raw`
import sys, json, base64, gssapi
def b64(b): return base64.b64encode(b or b'').decode()
def out(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
ctx = None
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        op = cmd['op']
        if op == 'init':
            if cmd.get('mech', 'krb5') == 'krb5':
                mech = gssapi.MechType.kerberos
            else:
                mech = gssapi.OID.from_int_seq('1.3.6.1.5.5.2')
            flags = [gssapi.RequirementFlag.integrity]
            if cmd.get('mutual', True):
                flags.append(gssapi.RequirementFlag.mutual_authentication)
            name = gssapi.Name(cmd['target'], gssapi.NameType.kerberos_principal)
            ctx = gssapi.SecurityContext(name=name, mech=mech, usage='initiate', flags=flags)
            tok = ctx.step()
            out({'ok': True, 'token': b64(tok), 'complete': ctx.complete})
        elif op == 'step':
            tok = ctx.step(base64.b64decode(cmd['token']))
            out({'ok': True, 'token': b64(tok), 'complete': ctx.complete})
        elif op == 'wrap':
            w = ctx.wrap(base64.b64decode(cmd['data']), False)
            out({'ok': True, 'token': b64(w.message)})
        elif op == 'unwrap':
            u = ctx.unwrap(base64.b64decode(cmd['token']))
            out({'ok': True, 'data': b64(u.message), 'encrypted': bool(u.encrypted)})
        elif op == 'info':
            out({'ok': True, 'complete': ctx.complete, 'initiator': str(ctx.initiator_name), 'target': str(ctx.target_name)})
        else:
            out({'ok': False, 'error': 'unknown op ' + op})
    except Exception as e:
        out({'ok': False, 'error': type(e).__name__ + ': ' + str(e)})
`;

interface PyReply {
  ok: boolean;
  error?: string;
  token?: string;
  data?: string;
  complete?: boolean;
  encrypted?: boolean;
  initiator?: string;
  target?: string;
}

/**
 * A real GSS-API initiator: /usr/bin/python3 + python3-gssapi, one security
 * context, driven step by step. Uses the ccache/krb5.conf from `env`.
 */
export class GssClient {
  readonly #child: ChildProcess;
  readonly #replies: PyReply[] = [];
  readonly #waiters: Array<(r: PyReply) => void> = [];
  #stderr = '';
  #closed = false;

  private constructor(child: ChildProcess) {
    this.#child = child;
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const r = JSON.parse(line) as PyReply;
      const w = this.#waiters.shift();
      if (w) w(r);
      else this.#replies.push(r);
    });
    child.stderr?.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    child.once('exit', (code) => {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w({ ok: false, error: `python exited (${code}): ${this.#stderr}` });
    });
  }

  static start(env: Record<string, string>): GssClient {
    if (!existsSync(SYSTEM_PYTHON)) throw new Error(`${SYSTEM_PYTHON} missing (apt-get install python3 python3-gssapi)`);
    const child = spawn(SYSTEM_PYTHON, ['-c', GSS_CLIENT_PY], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new GssClient(child);
  }

  #call(cmd: Record<string, unknown>): Promise<PyReply> {
    if (this.#closed) return Promise.reject(new Error(`GssClient closed: ${this.#stderr}`));
    const p = new Promise<PyReply>((resolve) => {
      const queued = this.#replies.shift();
      if (queued) resolve(queued);
      else this.#waiters.push(resolve);
    });
    this.#child.stdin!.write(JSON.stringify(cmd) + '\n');
    return p.then((r) => {
      if (!r.ok) throw new Error(`python gssapi: ${r.error ?? 'failed'}`);
      return r;
    });
  }

  /** Starts the context for `target` (e.g. pop/localhost@POPGATE.TEST); returns the initial token. */
  async init(target: string, opts: { mech?: 'krb5' | 'spnego'; mutual?: boolean } = {}): Promise<Buffer> {
    const r = await this.#call({ op: 'init', target, mech: opts.mech ?? 'krb5', mutual: opts.mutual ?? true });
    return Buffer.from(r.token ?? '', 'base64');
  }

  /** Feeds the acceptor's token; returns the next token (maybe empty) and whether the context is complete. */
  async step(token: Buffer): Promise<{ token: Buffer; complete: boolean }> {
    const r = await this.#call({ op: 'step', token: token.toString('base64') });
    return { token: Buffer.from(r.token ?? '', 'base64'), complete: r.complete === true };
  }

  async wrap(data: Buffer): Promise<Buffer> {
    const r = await this.#call({ op: 'wrap', data: data.toString('base64') });
    return Buffer.from(r.token ?? '', 'base64');
  }

  async unwrap(token: Buffer): Promise<{ data: Buffer; encrypted: boolean }> {
    const r = await this.#call({ op: 'unwrap', token: token.toString('base64') });
    return { data: Buffer.from(r.data ?? '', 'base64'), encrypted: r.encrypted === true };
  }

  async info(): Promise<{ complete: boolean; initiator: string; target: string }> {
    const r = await this.#call({ op: 'info' });
    return { complete: r.complete === true, initiator: r.initiator ?? '', target: r.target ?? '' };
  }

  close(): void {
    if (!this.#closed) this.#child.stdin?.end();
  }
}

/** One initial krb5 GSS token for `target` from a fresh python initiator (then closed). */
export async function gssInitialToken(
  env: Record<string, string>,
  target: string,
  opts: { mech?: 'krb5' | 'spnego'; mutual?: boolean } = {},
): Promise<Buffer> {
  const c = GssClient.start(env);
  try {
    return await c.init(target, opts);
  } finally {
    c.close();
  }
}
