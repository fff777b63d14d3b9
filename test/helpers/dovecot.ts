/**
 * A PRIVATE Dovecot POP3 server per test file: the real legacy backend popgate
 * logs in to (users + a master user), started from its own config in a temp
 * dir on a free loopback port. It never touches the system instance: own
 * base_dir, state_dir and log file; stopped by its own PID.
 *
 * Facts found on Debian 12 / Dovecot 2.3.19 (tests run as root):
 * - Dovecot refuses to run MAIL processes as root whatever the settings
 *   ("userdb returned 0 as uid"; with mail_uid=root: "Mail access not allowed
 *   for root"), and gid 0 needs first_valid_gid=0. So the master and auth run
 *   as root/dovecot as usual, while mail is accessed as uid/gid 65534
 *   (nobody/nogroup, numeric so no name lookup): the mail tree is chowned to
 *   65534, and the temp root is chmod 0755 so the unprivileged processes can
 *   traverse it. The helper (root) reads and writes the tree freely.
 * - Line endings: Dovecot sends maildir files as they are, converting bare LF
 *   to CRLF; a file already in CRLF is sent unchanged; a message without a
 *   final line end gets CRLF appended before the terminating ".". LIST sizes
 *   count the CRLF form WITHOUT that appended CRLF. Use pop3Wire(msg) for the
 *   bytes a client reassembles from RETR.
 * - New mail in new/ is numbered in order of the timestamp in the file name
 *   (not readdir order): deliver() uses strictly increasing names.
 * - A master login (`alice*popgate` or AUTH PLAIN authzid=alice,
 *   authcid=popgate) for an unknown user fails with `-ERR [AUTH]` because the
 *   master passdb has `pass = yes` (the user passdb must also find the user).
 * - The master process clears the environment: pass variables with the `env`
 *   option (written as import_environment KEY=VALUE).
 * - SIGTERM to the master stops it and its children; a new instance must wait
 *   for the old master's exit (it keeps base_dir/master.pid until then). If
 *   the master is SIGKILLed its children (log, login...) survive as orphans:
 *   so the master runs detached in its own process group, and the group is
 *   SIGKILLed after the master is gone.
 * - Client addresses: every successful login is logged (info_log_path) as
 *   `pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=<ip>,
 *   lip=<ip>, mpid=<pid>, <TLS|secured|nothing>, session=<...>` (default
 *   login_log_format_elements; add `rport=%{rport}` to see the port). `rip`
 *   is the PROXY header's source on a `haproxy` listener (v1 and v2, TCP4 and
 *   TCP6; v2 LOCAL / v1 UNKNOWN keep the connection's address), or the
 *   `XCLIENT ADDR=` value. The greeting is `+OK [XCLIENT] Dovecot (Debian)
 *   ready.` to login_trusted_networks (127.0.0.0/8 here); XCLIENT answers
 *   `+OK Updated`, STLS `+OK Begin TLS negotiation now.`, and no greeting
 *   follows either. `secured` = plaintext from a trusted network.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LineClient } from './line-client.js';
import { freePort } from './ports.js';

export interface DovecotUser {
  name: string;
  password: string;
}

export interface StartDovecotOptions {
  /** POP3 users (passwd-file, `{PLAIN.b64}`, so any password bytes work). Default DEFAULT_USERS. */
  users?: DovecotUser[];
  /** A master user (master passdb, `pass = yes`); none by default. */
  masterUser?: DovecotUser;
  /** Separator for `user*master` logins; default `*`. */
  masterSeparator?: string;
  /** Messages delivered into each user's maildir new/ before start, in order. */
  messages?: Record<string, Buffer[]>;
  /** auth_failure_delay in seconds; default 0 to keep tests fast (Dovecot's own default is 2). */
  authFailureDelaySecs?: number;
  /** auth_mechanisms; default ['plain', 'login']. */
  authMechanisms?: string[];
  /** Environment for Dovecot's processes (import_environment KEY=VALUE; no spaces in values). */
  env?: Record<string, string>;
  /** Config text appended verbatim (e.g. Kerberos settings later). */
  extraConfig?: string;
  /** auth_debug + mail_debug in the log. */
  debug?: boolean;
  /**
   * Enable TLS with this certificate: STLS on `port` and implicit TLS
   * (pop3s) on `tlsPort`. Without it, `ssl = no` and no pop3s listener.
   */
  tls?: { certFile: string; keyFile: string };
  /**
   * Add listeners that expect a HAProxy PROXY header (v1 or v2) before
   * anything else (`haproxy = yes`), with `haproxy_trusted_networks =
   * 127.0.0.0/8`: plain POP3 on `haproxyPort`, and with `tls` also implicit
   * TLS on `haproxyTlsPort` (header first, then the handshake). Dovecot then
   * logs the address from the header as `rip=` of the login line.
   */
  haproxy?: boolean;
  /** How long to wait for the +OK greeting; default 20 s. */
  startTimeoutMs?: number;
}

export interface DovecotInstance {
  host: string;
  /** Plain POP3 (offers STLS when started with `tls`). */
  port: number;
  /** Implicit-TLS POP3 port when started with `tls`, else undefined. */
  tlsPort: number | undefined;
  /** Plain POP3 behind a PROXY header when started with `haproxy`, else undefined. */
  haproxyPort: number | undefined;
  /** Implicit-TLS POP3 behind a PROXY header when started with `haproxy` and `tls`, else undefined. */
  haproxyTlsPort: number | undefined;
  pid: number;
  /** The temp dir holding everything (config, state, log, mail). */
  rootDir: string;
  /** Dovecot's own base_dir (sockets, master.pid). */
  baseDir: string;
  configFile: string;
  logFile: string;
  users: DovecotUser[];
  masterUser: DovecotUser | undefined;
  masterSeparator: string;
  /** `user<sep>master` for a USER/PASS master login. */
  masterLogin(user: string): string;
  /** The user's maildir (contains cur/ new/ tmp/). */
  maildir(user: string): string;
  /** Delivers one message into new/ (after any earlier one); returns the file path. */
  deliver(user: string, message: Buffer): Promise<string>;
  /** Every message file in cur/ and new/, in Dovecot's order (timestamp in the name). */
  listMessages(user: string): Promise<Buffer[]>;
  /** The file names (cur/... or new/...) behind listMessages(). */
  listMessageFiles(user: string): Promise<string[]>;
  /** The whole Dovecot log so far (still readable after stop()). */
  readLog(): Promise<string>;
  /** SIGTERM by PID, wait for exit (SIGKILL to its process group after 10 s), remove the temp dir. */
  stop(): Promise<void>;
}

export const DEFAULT_USERS: DovecotUser[] = [
  { name: 'alice', password: 'alice-secret' },
  { name: 'bob', password: 'bob-secret' },
];

/** Mail is accessed as nobody/nogroup: Dovecot refuses root for mail processes. */
/** A small mail set for two users: a dot-stuffing case for alice, one message for bob (the client tests' fixture). */
export const TWO_USER_MAIL: Record<'alice' | 'bob', Buffer[]> = {
  alice: [
    Buffer.from('From: a@example.test\r\nTo: alice@example.test\r\nSubject: first\r\n\r\nhello alice\r\n'),
    Buffer.from('From: b@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n'),
  ],
  bob: [Buffer.from('From: c@example.test\r\nTo: bob@example.test\r\nSubject: for bob\r\n\r\nhi bob\r\n')],
};

export const MAIL_UID = 65534;
export const MAIL_GID = 65534;

const NAME_RE = /^[A-Za-z0-9._@+-]+$/;

/**
 * A ~5 MiB message of random base64 lines, CRLF-ended, with a dot-led line
 * every 97 (dot-stuffing on the wire), addressed to `to`.
 */
export function fiveMegabyteMessage(to: string): Buffer {
  const lines = ['From: big@example.test', `To: ${to}`, 'Subject: five megabytes', ''];
  let size = 0;
  for (let i = 0; size < 5 * 1024 * 1024; i++) {
    const line = `${i % 97 === 0 ? '.' : ''}line ${i} ${randomBytes(30).toString('base64')}`;
    lines.push(line);
    size += line.length + 2;
  }
  return Buffer.from(lines.join('\r\n') + '\r\n');
}

/**
 * The bytes a POP3 client reassembles from RETR of a maildir file: bare LF
 * becomes CRLF (existing CRLF is kept) and a missing final line end is added.
 */
export function pop3Wire(message: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < message.length; i++) {
    const b = message[i]!;
    if (b === 0x0a && (i === 0 || message[i - 1] !== 0x0d)) out.push(0x0d);
    out.push(b);
  }
  const n = out.length;
  if (n < 2 || out[n - 2] !== 0x0d || out[n - 1] !== 0x0a) out.push(0x0d, 0x0a);
  return Buffer.from(out);
}

/** The size Dovecot reports in LIST/STAT for a message: the CRLF form, no appended line end. */
export function pop3ListSize(message: Buffer): number {
  let size = message.length;
  for (let i = 0; i < message.length; i++) {
    if (message[i] === 0x0a && (i === 0 || message[i - 1] !== 0x0d)) size++;
  }
  return size;
}

function findDovecot(): string {
  for (const p of ['/usr/sbin/dovecot', '/usr/local/sbin/dovecot']) {
    if (existsSync(p)) return p;
  }
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && existsSync(path.join(dir, 'dovecot'))) return path.join(dir, 'dovecot');
  }
  throw new Error('dovecot binary not found: run scripts/setup.sh (apt dovecot-core dovecot-pop3d)');
}

/**
 * Dovecot is spawned detached, so it leads its own process group (pgid = its
 * PID) and its children (log, auth, login, pop3) share it. Signalling -pid
 * reaches exactly this instance's processes, never the system Dovecot.
 */
function signalInstance(pid: number, signal: NodeJS.Signals, wholeGroup: boolean): void {
  try {
    process.kill(wholeGroup ? -pid : pid, signal);
  } catch {
    /* already gone */
  }
}

const live = new Map<number, string>(); // pid -> rootDir
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a private Dovecot behind if the test process exits without stop().
  process.once('exit', () => {
    for (const [pid, dir] of live) {
      signalInstance(pid, 'SIGKILL', true);
      if (!process.env['POPGATE_KEEP_TEST_DIRS']) rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Sort key for maildir names "<secs>.M<usecs>P<pid>...": Dovecot's order. */
function maildirKey(name: string): [number, number, string] {
  const base = path.basename(name);
  const m = /^(\d+)\.(?:M(\d+))?/.exec(base);
  return [m ? Number(m[1]) : 0, m?.[2] ? Number(m[2]) : 0, base];
}

function compareMaildir(a: string, b: string): number {
  const ka = maildirKey(a);
  const kb = maildirKey(b);
  return ka[0] - kb[0] || ka[1] - kb[1] || (ka[2] < kb[2] ? -1 : ka[2] > kb[2] ? 1 : 0);
}

async function chownTree(p: string): Promise<void> {
  await chown(p, MAIL_UID, MAIL_GID);
  const entries = await readdir(p, { withFileTypes: true });
  for (const e of entries) {
    const child = path.join(p, e.name);
    if (e.isDirectory()) await chownTree(child);
    else await chown(child, MAIL_UID, MAIL_GID);
  }
}

function passwdLine(u: DovecotUser): string {
  if (!NAME_RE.test(u.name)) throw new Error(`dovecot helper: unsupported user name ${JSON.stringify(u.name)}`);
  return `${u.name}:{PLAIN.b64}${Buffer.from(u.password, 'utf8').toString('base64')}::::::\n`;
}

/** Connects and waits for a `+OK` greeting line; resolves false on anything else. */
async function probeGreeting(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let c: LineClient | undefined;
  try {
    c = await LineClient.connect({ host, port, timeoutMs });
    const line = await c.readUntil('\n', Math.max(1, deadline - Date.now()));
    return line.toString('latin1').startsWith('+OK');
  } catch {
    return false;
  } finally {
    c?.destroy();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startDovecot(opts: StartDovecotOptions = {}): Promise<DovecotInstance> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('dovecot helper: tests must run as root (Dovecot master needs it to drop privileges)');
  }
  const bin = findDovecot();
  const host = '127.0.0.1';
  const users = opts.users ?? DEFAULT_USERS;
  const masterUser = opts.masterUser;
  const sep = opts.masterSeparator ?? '*';
  const names = new Set(users.map((u) => u.name));
  if (names.size !== users.length) throw new Error('dovecot helper: duplicate user names');

  const rootDir = await mkdtemp(path.join(os.tmpdir(), 'popgate-dovecot-'));
  await chmod(rootDir, 0o755);
  const baseDir = path.join(rootDir, 'run');
  const stateDir = path.join(rootDir, 'state');
  const mailRoot = path.join(rootDir, 'mail');
  const logFile = path.join(rootDir, 'dovecot.log');
  const configFile = path.join(rootDir, 'dovecot.conf');
  const passwdFile = path.join(rootDir, 'users.passwd');
  const masterFile = path.join(rootDir, 'master.passwd');
  await mkdir(baseDir, { recursive: true });
  await mkdir(stateDir, { recursive: true });
  await mkdir(mailRoot, { recursive: true });
  await writeFile(logFile, '');
  // Read by the auth process (user "dovecot"): world-readable test secrets.
  await writeFile(passwdFile, users.map(passwdLine).join(''), { mode: 0o644 });
  if (masterUser) await writeFile(masterFile, passwdLine(masterUser), { mode: 0o644 });

  const maildir = (user: string): string => {
    if (!NAME_RE.test(user)) throw new Error(`dovecot helper: bad user ${user}`);
    return path.join(mailRoot, user);
  };

  let seq = 0;
  const baseSecs = Math.floor(Date.now() / 1000) - 86_400;
  const deliver = async (user: string, message: Buffer): Promise<string> => {
    const dir = maildir(user);
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(dir, sub), { recursive: true });
    seq++;
    const name = `${baseSecs + seq}.M${seq}P${process.pid}Q${seq}.popgate-test`;
    const tmp = path.join(dir, 'tmp', name);
    const dest = path.join(dir, 'new', name);
    await writeFile(tmp, message, { mode: 0o644 });
    await rename(tmp, dest);
    await chownTree(dir);
    await chown(mailRoot, MAIL_UID, MAIL_GID);
    return dest;
  };

  for (const u of users) {
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(maildir(u.name), sub), { recursive: true });
  }
  for (const [user, msgs] of Object.entries(opts.messages ?? {})) {
    for (const m of msgs) await deliver(user, m);
  }
  await chownTree(mailRoot);

  const envLine = Object.entries(opts.env ?? {})
    .map(([k, v]) => {
      if (/\s/.test(v) || /[\s=]/.test(k)) throw new Error(`dovecot helper: env ${k} must have no spaces`);
      return `${k}=${v}`;
    })
    .join(' ');

  const writeConfig = async (port: number, tlsPort: number, haproxyPort: number, haproxyTlsPort: number): Promise<void> => {
    const conf = `# private Dovecot for popgate tests (generated)
base_dir = ${baseDir}
state_dir = ${stateDir}
instance_name = popgate-test-${path.basename(rootDir)}
log_path = ${logFile}
info_log_path = ${logFile}
debug_log_path = ${logFile}
protocols = pop3
listen = ${host}
${opts.tls ? `ssl = yes
ssl_cert = <${opts.tls.certFile}
ssl_key = <${opts.tls.keyFile}
ssl_min_protocol = TLSv1.2` : 'ssl = no'}
disable_plaintext_auth = no
auth_mechanisms = ${(opts.authMechanisms ?? ['plain', 'login']).join(' ')}
auth_master_user_separator = ${sep}
auth_failure_delay = ${opts.authFailureDelaySecs ?? 0} secs
auth_verbose = yes
auth_debug = ${opts.debug ? 'yes' : 'no'}
mail_debug = ${opts.debug ? 'yes' : 'no'}
login_trusted_networks = 127.0.0.0/8
${opts.haproxy ? 'haproxy_trusted_networks = 127.0.0.0/8\n' : ''}mail_location = maildir:${mailRoot}/%u
mail_uid = ${MAIL_UID}
mail_gid = ${MAIL_GID}
first_valid_uid = ${MAIL_UID}
first_valid_gid = ${MAIL_GID}
pop3_uidl_format = %08Xu%08Xv
import_environment = TZ${envLine ? ' ' + envLine : ''}
${masterUser ? `passdb {
  driver = passwd-file
  args = ${masterFile}
  master = yes
  pass = yes
}
` : ''}passdb {
  driver = passwd-file
  args = ${passwdFile}
}
userdb {
  driver = static
  args = uid=${MAIL_UID} gid=${MAIL_GID} home=${mailRoot}/%u
}
service pop3-login {
  inet_listener pop3 {
    address = ${host}
    port = ${port}
  }
  inet_listener pop3s {
    address = ${host}
    port = ${tlsPort}
    ssl = yes
  }
${opts.haproxy ? `  inet_listener pop3-haproxy {
    address = ${host}
    port = ${haproxyPort}
    haproxy = yes
  }
` : ''}${opts.haproxy && opts.tls ? `  inet_listener pop3s-haproxy {
    address = ${host}
    port = ${haproxyTlsPort}
    ssl = yes
    haproxy = yes
  }
` : ''}}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
# The per-IP failed-login penalty (2,4,8,15 s) applies even to trusted
# networks and every test connects from 127.0.0.1: disable it.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
${opts.extraConfig ?? ''}
`;
    await writeFile(configFile, conf);
  };

  const readLogFile = async (): Promise<string> => {
    try {
      return await readFile(logFile, 'utf8');
    } catch {
      return '';
    }
  };

  installExitHook();
  const timeoutMs = opts.startTimeoutMs ?? 20_000;
  let child: ChildProcess | undefined;
  let port = 0;
  let tlsPort = 0;
  let haproxyPort = 0;
  let haproxyTlsPort = 0;
  let lastError = '';
  for (let attempt = 1; attempt <= 3 && child === undefined; attempt++) {
    port = await freePort(host);
    tlsPort = opts.tls ? await freePort(host) : 0;
    if (tlsPort === port) tlsPort = await freePort(host);
    const taken = new Set([port, tlsPort]);
    const another = async (wanted: boolean): Promise<number> => {
      if (!wanted) return 0;
      for (;;) {
        const p = await freePort(host);
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    haproxyPort = await another(opts.haproxy === true);
    haproxyTlsPort = await another(opts.haproxy === true && opts.tls !== undefined);
    await writeConfig(port, tlsPort, haproxyPort, haproxyTlsPort);
    const c = spawn(bin, ['-F', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const cpid = c.pid;
    let output = '';
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    let exited: string | undefined;
    const exitPromise = new Promise<void>((resolve) => {
      c.once('exit', (code, signal) => {
        exited = `exit code ${code ?? 'null'} signal ${signal ?? 'none'}`;
        if (cpid !== undefined) live.delete(cpid);
        resolve();
      });
      c.once('error', (err) => {
        exited = `spawn error ${err.message}`;
        if (cpid !== undefined) live.delete(cpid);
        resolve();
      });
    });
    if (cpid !== undefined) live.set(cpid, rootDir);
    const deadline = Date.now() + timeoutMs;
    let ready = false;
    // Ours: Dovecot writes base_dir/master.pid only once its listeners are up (a taken port: exit 89,
    // no pidfile, measured). A greeting alone could come from another test file's server that got
    // the port freePort handed out.
    const masterPid = path.join(baseDir, 'master.pid');
    const ours = async (): Promise<boolean> => (await readFile(masterPid, 'utf8').catch(() => '')).trim() === String(cpid);
    while (!ready && exited === undefined && Date.now() < deadline) {
      ready = (await ours()) && (await probeGreeting(host, port, 1000));
      if (!ready) await sleep(100);
    }
    if (ready) {
      child = c;
      (c as ChildProcess & { exitPromise?: Promise<void> }).exitPromise = exitPromise;
      break;
    }
    if (cpid !== undefined) {
      if (exited === undefined) {
        signalInstance(cpid, 'SIGTERM', false);
        const t = setTimeout(() => signalInstance(cpid, 'SIGKILL', true), 2000);
        await exitPromise;
        clearTimeout(t);
      }
      signalInstance(cpid, 'SIGKILL', true); // stragglers of a failed start
    }
    const log = await readLogFile();
    lastError =
      `private Dovecot did not greet +OK on ${host}:${port} within ${timeoutMs} ms ` +
      `(${exited ?? 'killed after timeout'}).\n--- dovecot output ---\n${output}\n--- ${logFile} ---\n${log}`;
    // Lost the free-port race: try again on another port.
    if (!/Address already in use/.test(output + log)) break;
  }
  if (child === undefined || child.pid === undefined) {
    await rm(rootDir, { recursive: true, force: true }).catch(() => undefined);
    throw new Error(lastError);
  }
  const proc = child;
  const pid = child.pid;
  const exitPromise = (child as ChildProcess & { exitPromise?: Promise<void> }).exitPromise!;

  let stopped: Promise<void> | undefined;
  let finalLog: string | undefined;

  const listMessageFiles = async (user: string): Promise<string[]> => {
    const files: string[] = [];
    for (const sub of ['cur', 'new']) {
      let entries: string[] = [];
      try {
        entries = await readdir(path.join(maildir(user), sub));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      files.push(...entries.filter((e) => !e.startsWith('.')).map((e) => `${sub}/${e}`));
    }
    return files.sort(compareMaildir);
  };

  return {
    host,
    port,
    tlsPort: opts.tls ? tlsPort : undefined,
    haproxyPort: opts.haproxy ? haproxyPort : undefined,
    haproxyTlsPort: opts.haproxy && opts.tls ? haproxyTlsPort : undefined,
    pid,
    rootDir,
    baseDir,
    configFile,
    logFile,
    users,
    masterUser,
    masterSeparator: sep,
    masterLogin: (user) => {
      if (!masterUser) throw new Error('dovecot helper: started without a master user');
      return `${user}${sep}${masterUser.name}`;
    },
    maildir,
    deliver,
    listMessageFiles,
    listMessages: async (user) => {
      // A live session may move new/X to cur/X:2,S between readdir and read:
      // list again when a file vanished under us.
      for (let attempt = 1; ; attempt++) {
        const files = await listMessageFiles(user);
        try {
          return await Promise.all(files.map((f) => readFile(path.join(maildir(user), f))));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw err;
        }
      }
    },
    readLog: async () => finalLog ?? readLogFile(),
    stop: () => {
      stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          signalInstance(pid, 'SIGTERM', false);
          const t = setTimeout(() => signalInstance(pid, 'SIGKILL', true), 10_000);
          await exitPromise;
          clearTimeout(t);
        }
        // The master has exited; anything of its group still around is stale.
        signalInstance(pid, 'SIGKILL', true);
        finalLog = await readLogFile();
        if (!process.env['POPGATE_KEEP_TEST_DIRS']) {
          await rm(rootDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
        }
      })();
      return stopped;
    },
  };
}
