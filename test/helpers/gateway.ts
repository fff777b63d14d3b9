/**
 * Starts the real gateway in the test process on ephemeral loopback ports,
 * configured through the same YAML loader operators use, with its pino
 * output captured so tests can assert on log lines (and on secrets absent).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { hashPassword } from '../../src/auth/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { REDACT_PATHS } from '../../src/observability/logger.js';
import { Gateway } from '../../src/server/gateway.js';

export interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly dir: string;
  port(kind: 'pop3' | 'pop3s' | 'kpop'): number;
  /** The admin HTTP listener's port (throws unless started with `admin: true`). */
  adminPort(): number;
  readonly logs: LogRecord[];
  /** Every raw log line, for secret greps. */
  rawLog(): string;
  stop(drainMs?: number): Promise<void>;
}

export interface TestGatewayOptions {
  /** User-file entries: scrypt (ln=10) of `password`, or `hash` as given (e.g. a {SCRAM-SHA-256} entry). */
  readonly users: ReadonlyArray<{ name: string; password: string; hash?: string }>;
  readonly backendPort: number;
  /** Both listeners' certificate (unused with tlsCertificates). */
  readonly certFile: string;
  readonly keyFile: string;
  /**
   * Both listeners' tls.certificates instead of certFile/keyFile, as a YAML
   * flow list, e.g. `[{ certFile: /tmp/a.pem, keyFile: /tmp/a.key }, ...]`.
   */
  readonly tlsCertificates?: string;
  /** YAML for backend.login (flow style), e.g. `{ mode: master, method: auth-plain, user: popgate, password: x }`. */
  readonly login: string;
  /** Extra YAML lines appended at top level. */
  readonly extra?: string;
  readonly allowPlaintextAuth?: boolean;
  readonly failureDelay?: string;
  /**
   * auth.throttle as a YAML flow map, e.g. `{ delays: [100ms, 200ms], maxFailures: 3 }`.
   * Default `{ enabled: false }`: other files' failed logins from 127.0.0.1 must not be delayed or locked out.
   */
  readonly throttle?: string;
  readonly maxAuthAttempts?: number;
  readonly backendTimeouts?: string;
  /** Files written into the gateway's directory before the config is loaded. */
  readonly files?: Record<string, string>;
  /** Extra listener entries (YAML flow maps, one per line), e.g. a kpop listener. */
  readonly extraListeners?: readonly string[];
  /** auth.mechanisms; default PLAIN, LOGIN. */
  readonly mechanisms?: readonly string[];
  /** auth.verifiers; default [userFile]. */
  readonly verifiers?: readonly string[];
  /** Extra YAML lines inside the auth section (indented by the helper), e.g. `apop: true`, `http: { url: ... }`. */
  readonly authExtra?: readonly string[];
  /** Extra keys inside the backend block, e.g. `tls: { mode: implicit }` (indented by the helper). */
  readonly backendExtra?: string;
  /** Extra keys for both listeners' tls flow maps, e.g. `ticketKeysFile: /tmp/keys`. */
  readonly tlsExtra?: string;
  /** Extra keys for the plaintext pop3 listener's flow map, e.g. `proxyProtocol: { ... }`. */
  readonly listenerExtra?: string;
  /** Start the admin HTTP listener (metrics, health, readiness) on 127.0.0.1, an ephemeral port. Default false. */
  readonly admin?: boolean;
}

/** backend.login (flow YAML) for a Dovecot master user with AUTH PLAIN, the usual setup of these tests. */
export function masterLogin(master: { readonly name: string; readonly password: string }): string {
  return `{ mode: master, method: auth-plain, user: ${master.name}, password: ${master.password} }`;
}

/** An extra KPOP listener (see TestGatewayOptions.extraListeners); port('kpop') finds it. */
export const KPOP_LISTENER = '{ name: t-kpop, kind: kpop, address: 127.0.0.1, port: 0 }';

/** The gateway's directory (users file, config-relative files) is removed by stop(), or at once if the start fails. */
export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'popgate-gw-'));
  try {
    return await startIn(dir, opts);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function startIn(dir: string, opts: TestGatewayOptions): Promise<TestGateway> {
  const lines = await Promise.all(opts.users.map(async (u) => `${u.name}:${u.hash ?? (await hashPassword(u.password, { scryptLogN: 10 }))}`));
  await writeFile(join(dir, 'users'), lines.join('\n') + '\n');
  for (const [name, content] of Object.entries(opts.files ?? {})) await writeFile(join(dir, name), content);
  const tlsExtra = opts.tlsExtra ? `, ${opts.tlsExtra}` : '';
  const certs = opts.tlsCertificates !== undefined ? `certificates: ${opts.tlsCertificates}` : `certFile: ${opts.certFile}, keyFile: ${opts.keyFile}`;
  const yaml = `
log: { level: debug }
listeners:
  - { name: t-pop3s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { ${certs}${tlsExtra} } }
  - { name: t-pop3, kind: pop3, address: 127.0.0.1, port: 0, allowPlaintextAuth: ${opts.allowPlaintextAuth ?? false},${opts.listenerExtra ? ` ${opts.listenerExtra},` : ''}
      tls: { ${certs}${tlsExtra} } }
${(opts.extraListeners ?? []).map((l) => `  - ${l}`).join('\n')}
auth:
  userFile: users
  failureDelay: ${opts.failureDelay ?? '0s'}
  throttle: ${opts.throttle ?? '{ enabled: false }'}
  maxAttempts: ${opts.maxAuthAttempts ?? 3}
  mechanisms: [${(opts.mechanisms ?? ['PLAIN', 'LOGIN']).join(', ')}]
  verifiers: [${(opts.verifiers ?? ['userFile']).join(', ')}]
${(opts.authExtra ?? []).map((l) => `  ${l}`).join('\n')}
backend:
  host: 127.0.0.1
  port: ${opts.backendPort}
  timeouts: ${opts.backendTimeouts ?? '{ connect: 5s, greeting: 5s, login: 10s }'}
  login: ${opts.login}
${opts.backendExtra ? `  ${opts.backendExtra}` : ''}
${opts.admin ? 'admin: { address: 127.0.0.1, port: 0 }' : ''}
${opts.extra ?? ''}
`;
  const config = await parseConfigText(yaml, { baseDir: dir, source: 'test' });
  const logs: LogRecord[] = [];
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = chunk.toString('utf8');
      raw += text;
      for (const line of text.split('\n')) if (line) logs.push(JSON.parse(line) as LogRecord);
      cb();
    },
  });
  const logger = pino({ level: 'trace', redact: { paths: [...REDACT_PATHS], censor: '***' } }, sink);
  const gateway = await Gateway.start(config, logger);
  return {
    gateway,
    dir,
    logs,
    rawLog: () => raw,
    port(kind: 'pop3' | 'pop3s' | 'kpop') {
      const l = gateway.bound.find((b) => b.kind === kind);
      if (!l) throw new Error(`no ${kind} listener`);
      return l.port;
    },
    adminPort() {
      const a = gateway.admin;
      if (!a) throw new Error('no admin listener (start with admin: true)');
      return a.port;
    },
    async stop(drainMs = 0) {
      try {
        await gateway.stop(drainMs);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Waits until a log record matching `pred` appears (logs are written asynchronously to the sink). */
export async function waitForLog(gw: TestGateway, pred: (r: LogRecord) => boolean, timeoutMs = 5_000): Promise<LogRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = gw.logs.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no matching log record within ${timeoutMs} ms; have:\n${gw.rawLog()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
