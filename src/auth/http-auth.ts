/**
 * A PasswordVerifier that asks an nginx-mail-style `auth_http` service, so
 * popgate can replace nginx in front of an existing auth service unchanged.
 *
 * Request (one HTTP GET per question, headers only), as nginx 1.2x sends it
 * (ngx_mail_auth_http_module.c, ngx_mail_auth_http_create_request):
 *   Auth-Method: plain (USER/PASS, AUTH PLAIN and AUTH LOGIN alike) | apop |
 *                cram-md5 | external, and the popgate extensions gssapi / kpop /
 *                oauthbearer / xoauth2 (as nginx's proposed OAuth change) /
 *                scram-sha-256 (both SCRAM mechanisms)
 *   Auth-User, Auth-Pass: percent-escaped like nginx's NGX_ESCAPE_MAIL_AUTH
 *                (space, `%` and bytes 0x00-0x1F as %XX, uppercase hex; all
 *                other bytes, UTF-8 included, raw). Auth-Pass is always sent:
 *                the password for `plain`, the client's hex digest for apop /
 *                cram-md5 (exactly what nginx sends), the bearer token for
 *                oauthbearer / xoauth2 (already validated by popgate), and EMPTY
 *                for external, gssapi, kpop and scram-sha-256 (nginx sends
 *                `Auth-Pass: ` empty for external).
 *   Auth-Salt:   apop: the greeting timestamp `<...>`; cram-md5: the decoded
 *                challenge. nginx uses one salt `<rand.time@host>` for both and
 *                the header carries it without CRLF: the challenge as is.
 *   Auth-Protocol: pop3; Auth-Login-Attempt: N; Client-IP (an IPv4-mapped
 *                IPv6 address is shown as plain IPv4, like nginx on an IPv4
 *                listener); Client-Host: [UNAVAILABLE] (nginx's value when it
 *                has no resolved name; nginx itself sends this header only for
 *                SMTP);
 *   Proxy-Protocol-Addr/-Port/-Server-Addr/-Server-Port when the client came
 *                through a PROXY header;
 *   Auth-SSL: on, Auth-SSL-Protocol, -Cipher, -Verify, -Subject, -Issuer,
 *                -Serial, -Fingerprint on TLS (each when known);
 *   Auth-Principal (popgate extension, escaped like Auth-User): the Kerberos
 *                principal / certificate identity of a gssapi/kpop/external login;
 *   then the static extra headers (nginx `auth_http_header`, e.g. a shared secret).
 * Deviations forced by node:http: a DEL byte (0x7F) in an escaped value is
 * sent as %7F (node refuses it raw); control bytes in the other values
 * (never produced by nginx's sources) are %XX-escaped the same way.
 *
 * Answer (headers only; the body is ignored), parsed like nginx:
 * - `Auth-Status: OK` (exact, case-sensitive): success. `Auth-Server` +
 *   `Auth-Port` route to that backend (both or neither: one alone, a bad
 *   port or a malformed address is a broken service); `Auth-User` is the
 *   backend login name (the client's user name stays the user for logs and
 *   routing, as nginx logs it); `Auth-Pass` supplies the backend password (route.login). Without
 *   Auth-Pass there is no login override and popgate's own internal-login
 *   configuration applies (nginx would refuse: it needs Auth-Pass for POP3).
 * - `Auth-Status: WAIT`: sleep `Auth-Wait` seconds (0/absent: at once; each
 *   sleep capped at maxWaitSeconds) and ask again, at most maxWaits times and
 *   within timeoutMs overall, else VERIFIER_UNAVAILABLE. Like nginx, the
 *   repeated question carries the same Auth-Login-Attempt: a WAIT is not a
 *   failed attempt.
 * - `Auth-Status: <anything else>`: failure; the text is the client's -ERR
 *   text. With `Auth-Wait: N` (N >= 1) nginx sleeps N seconds and lets the
 *   client retry; without it (or N = 0) it closes the connection. Here: the
 *   outcome is `retryable` iff N >= 1, and the answer is delayed by
 *   min(N, maxWaitSeconds) seconds, like nginx.
 * - No Auth-Status, a non-2xx HTTP status (nginx ignores the status line;
 *   popgate treats e.g. a 500 from a crashed service as unavailable), an
 *   Auth-User/Auth-Pass with NUL/CR/LF or invalid UTF-8, a timeout, a refused
 *   connection: reject with GatewayError('VERIFIER_UNAVAILABLE') -> [SYS/TEMP].
 * Duplicate answer headers: the last one wins (nginx overwrites as it reads).
 *
 * APOP / CRAM-MD5 (verifyChallenge): nginx leaves the digest check to the
 * service and requires the plaintext secret back in Auth-Pass, which then
 * becomes the backend password. popgate sends the same question and, by
 * default, checks the digest itself as well against the returned Auth-Pass
 * (APOP: md5(timestamp + secret); CRAM-MD5: HMAC-MD5(secret, challenge); hex,
 * constant-time compare): a mismatch is a bad password even if the service
 * said OK (a service that does not check digests cannot let anyone in). A
 * service that verifies digests itself and answers with a backend-only
 * password (e.g. a Dovecot master password) needs `checkChallengeDigest: false`.
 *
 * Transport: node:http/https with a keep-alive agent (maxSockets =
 * maxConcurrent); when a proxy applies (./proxy-env.ts), http-proxy-agent for
 * an http:// URL and a CONNECT tunnel (https-proxy-agent, TLS to the service
 * with the usual certificate checks) for an https:// one, with the same
 * agent options (./proxy-agent.ts). The proxy in use is logged once at
 * construction. At most maxConcurrent questions are in flight; up to maxQueue
 * more wait for a slot; beyond that a call fails at once with
 * VERIFIER_UNAVAILABLE. timeoutMs bounds each verify/authorize call as a whole
 * (queueing, requests, WAIT sleeps; not the failure delay).
 *
 * Logging: the user, method, attempt and the service's status text; never
 * Auth-Pass, the client's password or digest, nor URL credentials.
 */
import http from 'node:http';
import https from 'node:https';
import { setMaxListeners } from 'node:events';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { BackendEndpoint } from '../backend/types.js';
import type {
  AuthorizedRequest,
  ChallengeRequest,
  ClientContext,
  PasswordRequest,
  PasswordVerifier,
  VerifiedRoute,
  VerifyOutcome,
} from './types.js';
import { checkChallenge } from './challenge.js';
import { createEgressAgents } from './proxy-agent.js';
import { redactUrl, type ProxyEnv, type ProxySetting } from './proxy-env.js';

export interface HttpAuthOptions {
  /** The auth service, http:// or https://; userinfo becomes Basic auth. */
  readonly url: string;
  /** Bound on one verify/verifyChallenge/authorize call (nginx auth_http_timeout, 60 s). */
  readonly timeoutMs: number;
  /** Questions in flight at once (also the agent's maxSockets). */
  readonly maxConcurrent: number;
  /** Calls allowed to wait for a free slot; more fail fast with VERIFIER_UNAVAILABLE. */
  readonly maxQueue: number;
  /** How many `Auth-Status: WAIT` answers are followed before giving up. */
  readonly maxWaits: number;
  /** Static extra request headers (nginx auth_http_header), e.g. a shared secret. */
  readonly headers: Readonly<Record<string, string>>;
  /** A proxy URL, 'none', or null for http(s)_proxy + no_proxy from `env`. */
  readonly proxy: ProxySetting;
  /** Offer authorize() for GSSAPI/KPOP/EXTERNAL logins (routing + internal credentials). */
  readonly authorizeTicketLogins: boolean;
  readonly logger: Logger;
  /** The environment consulted when `proxy` is null; default process.env (injectable for tests). */
  readonly env?: ProxyEnv;
  /** Cap on each Auth-Wait sleep, WAIT and failure delay alike; default 10 s. */
  readonly maxWaitSeconds?: number;
  /** Check APOP/CRAM-MD5 digests against the returned Auth-Pass; default true. */
  readonly checkChallengeDigest?: boolean;
  /** Time for deadlines, WAIT/failure sleeps and timeouts; default the system clock (tests inject a fake). */
  readonly clock?: Clock;
}

export interface HttpAuthVerifier extends PasswordVerifier {
  /** The proxy in use (no credentials), or null when connecting directly. */
  readonly proxyUrl: string | null;
}

export const HTTP_AUTH_DEFAULT_MAX_WAIT_SECONDS = 10;

/** An idle kept-alive connection to the service is closed after this long (node's agent only closes idle ones). */
export const HTTP_AUTH_IDLE_MS = 30_000;

// ---------------------------------------------------------------------------
// Request header encoding

const HEX = '0123456789ABCDEF';

function pctByte(b: number): string {
  return `%${HEX[b >> 4]}${HEX[b & 15]}`;
}

/**
 * nginx's NGX_ESCAPE_MAIL_AUTH (ngx_escape_uri's `memcached` map) over the
 * UTF-8 bytes of `value`: space, `%` and 0x00-0x1F become %XX (uppercase
 * hex), plus 0x7F (which node:http cannot send raw). Returns a byte string
 * (one char per byte) for node:http, which writes header values as latin1.
 */
export function escapeMailAuth(value: string): string {
  let out = '';
  for (const b of Buffer.from(value, 'utf8')) {
    out += b <= 0x20 || b === 0x25 || b === 0x7f ? pctByte(b) : String.fromCharCode(b);
  }
  return out;
}

/** A header value sent as its UTF-8 bytes; only control bytes (not tab) are %XX-escaped. */
export function rawHeaderValue(value: string): string {
  let out = '';
  for (const b of Buffer.from(value, 'utf8')) {
    out += (b < 0x20 && b !== 0x09) || b === 0x7f ? pctByte(b) : String.fromCharCode(b);
  }
  return out;
}

/** The inverse of node's latin1 header decoding: the answer's bytes as UTF-8, or undefined if invalid. */
function decodeHeaderBytes(value: string): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(value, 'latin1'));
  } catch {
    return undefined;
  }
}

/** `::ffff:1.2.3.4` -> `1.2.3.4` (what nginx shows for an IPv4 client). */
function displayAddress(addr: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m?.[1] ?? addr;
}

/** Auth-Method for logins authenticated by something other than a password. */
const AUTHORIZED_METHOD: Record<AuthorizedRequest['mechanism'], AuthMethod> = {
  GSSAPI: 'gssapi',
  KPOP: 'kpop',
  EXTERNAL: 'external',
  OAUTHBEARER: 'oauthbearer',
  XOAUTH2: 'xoauth2',
  'SCRAM-SHA-256': 'scram-sha-256',
  'SCRAM-SHA-256-PLUS': 'scram-sha-256',
};

export type AuthMethod = 'plain' | 'apop' | 'cram-md5' | 'external' | 'gssapi' | 'kpop' | 'oauthbearer' | 'xoauth2' | 'scram-sha-256';

/** What one question to the service says (before encoding). */
export interface AuthQuestion {
  readonly method: AuthMethod;
  readonly user: string;
  /** Password, client digest, or '' (external/gssapi/kpop). */
  readonly pass: string;
  readonly salt?: string;
  readonly principal?: string;
  readonly client?: ClientContext;
  /** Client address when there is no ClientContext. */
  readonly remoteAddress?: string;
  /** TLS without details (PasswordRequest.tls) when there is no ClientContext.tls. */
  readonly tls?: boolean;
}

/** Header names popgate generates; static extra headers may not reuse them. */
const GENERATED_HEADERS = [
  'Auth-Method',
  'Auth-User',
  'Auth-Pass',
  'Auth-Salt',
  'Auth-Protocol',
  'Auth-Login-Attempt',
  'Client-IP',
  'Client-Host',
  'Proxy-Protocol-Addr',
  'Proxy-Protocol-Port',
  'Proxy-Protocol-Server-Addr',
  'Proxy-Protocol-Server-Port',
  'Auth-SSL',
  'Auth-SSL-Protocol',
  'Auth-SSL-Cipher',
  'Auth-SSL-Verify',
  'Auth-SSL-Subject',
  'Auth-SSL-Issuer',
  'Auth-SSL-Serial',
  'Auth-SSL-Fingerprint',
  'Auth-Principal',
] as const;
const RESERVED_HEADERS = new Set(
  [...GENERATED_HEADERS, 'Host', 'Connection', 'Content-Length', 'Transfer-Encoding', 'Proxy-Connection'].map((h) =>
    h.toLowerCase(),
  ),
);

/**
 * The request headers for a question, in nginx's order, values already
 * encoded as byte strings. `extra` (pre-validated) comes last.
 */
export function buildAuthHeaders(
  q: AuthQuestion,
  loginAttempt: number,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  const h: Record<string, string> = {};
  h['Auth-Method'] = q.method;
  h['Auth-User'] = escapeMailAuth(q.user);
  h['Auth-Pass'] = escapeMailAuth(q.pass);
  if (q.salt !== undefined && (q.method === 'apop' || q.method === 'cram-md5')) h['Auth-Salt'] = rawHeaderValue(q.salt);
  h['Auth-Protocol'] = 'pop3';
  h['Auth-Login-Attempt'] = String(loginAttempt);
  const c = q.client;
  const addr = c?.remoteAddress ?? q.remoteAddress;
  if (addr !== undefined && addr !== '') h['Client-IP'] = rawHeaderValue(displayAddress(addr));
  h['Client-Host'] = '[UNAVAILABLE]';
  if (c?.proxiedBy) {
    h['Proxy-Protocol-Addr'] = rawHeaderValue(displayAddress(c.remoteAddress));
    h['Proxy-Protocol-Port'] = String(c.remotePort);
    h['Proxy-Protocol-Server-Addr'] = rawHeaderValue(displayAddress(c.localAddress));
    h['Proxy-Protocol-Server-Port'] = String(c.localPort);
  }
  const t = c?.tls;
  if (t || q.tls) {
    h['Auth-SSL'] = 'on';
    if (t) {
      const put = (name: string, v: string | undefined): void => {
        if (v !== undefined && v !== '') h[name] = rawHeaderValue(v);
      };
      put('Auth-SSL-Protocol', t.protocol);
      put('Auth-SSL-Cipher', t.cipher);
      put('Auth-SSL-Verify', t.verify);
      put('Auth-SSL-Subject', t.subject);
      put('Auth-SSL-Issuer', t.issuer);
      put('Auth-SSL-Serial', t.serial);
      put('Auth-SSL-Fingerprint', t.fingerprint);
    }
  }
  if (q.principal !== undefined) h['Auth-Principal'] = escapeMailAuth(q.principal);
  for (const [name, value] of Object.entries(extra)) h[name] = rawHeaderValue(value);
  return h;
}

function validateExtraHeaders(headers: Readonly<Record<string, string>>): void {
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new Error(`auth_http: invalid header name ${JSON.stringify(name)}`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw new Error(`auth_http: header ${name} is generated by popgate and cannot be set as an extra header`);
    }
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new Error(`auth_http: header ${name} has control characters`);
  }
}

// ---------------------------------------------------------------------------
// Answer parsing

export type AuthAnswer =
  | {
      readonly kind: 'ok';
      /** Auth-User, when sent. */
      readonly user?: string;
      /** Auth-Pass, when sent (possibly empty). */
      readonly pass?: string;
      readonly endpoint?: BackendEndpoint;
    }
  | { readonly kind: 'fail'; readonly text: string; readonly waitSeconds?: number }
  | { readonly kind: 'wait'; readonly waitSeconds: number };

type AnswerHeaders = Readonly<Record<string, readonly string[] | string | undefined>>;

function unavailable(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('VERIFIER_UNAVAILABLE', detail, cause === undefined ? undefined : { cause });
}

const HOSTNAME_RE = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Interpret an answer's status and headers (names lowercase, as node gives
 * them; values as node decodes them, latin1). Throws
 * GatewayError('VERIFIER_UNAVAILABLE') for a broken answer.
 */
export function parseAuthAnswer(statusCode: number, headers: AnswerHeaders): AuthAnswer {
  const last = (name: string): string | undefined => {
    const v = headers[name];
    if (v === undefined) return undefined;
    return typeof v === 'string' ? v : v[v.length - 1];
  };
  if (statusCode < 200 || statusCode > 299) throw unavailable(`auth service answered HTTP ${statusCode}`);
  const status = last('auth-status');
  if (status === undefined) throw unavailable('auth service answer has no Auth-Status');
  const waitText = last('auth-wait');
  // nginx: ngx_atoi, an unparsable Auth-Wait is ignored.
  const waitSeconds = waitText !== undefined && /^\d{1,9}$/.test(waitText.trim()) ? Number(waitText.trim()) : undefined;
  if (status === 'WAIT') return { kind: 'wait', waitSeconds: waitSeconds ?? 0 };
  if (status !== 'OK') {
    const text = (decodeHeaderBytes(status) ?? status).trim();
    return waitSeconds === undefined ? { kind: 'fail', text } : { kind: 'fail', text, waitSeconds };
  }

  const credential = (name: string, label: string): string | undefined => {
    const raw = last(name);
    if (raw === undefined) return undefined;
    const v = decodeHeaderBytes(raw);
    if (v === undefined) throw unavailable(`auth service sent ${label} that is not UTF-8`);
    if (/[\0\r\n]/.test(v)) throw unavailable(`auth service sent ${label} with NUL/CR/LF`);
    return v;
  };
  const user = credential('auth-user', 'Auth-User');
  if (user === '') throw unavailable('auth service sent an empty Auth-User');
  const pass = credential('auth-pass', 'Auth-Pass');

  const server = last('auth-server')?.trim();
  const portText = last('auth-port')?.trim();
  let endpoint: BackendEndpoint | undefined;
  if (server !== undefined || portText !== undefined) {
    if (!server || !portText) throw unavailable('auth service sent Auth-Server without Auth-Port or vice versa');
    const host = server.startsWith('[') && server.endsWith(']') ? server.slice(1, -1) : server;
    if (isIP(host) === 0 && !HOSTNAME_RE.test(host)) {
      throw unavailable(`auth service sent an invalid Auth-Server ${JSON.stringify(server)}`);
    }
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw unavailable(`auth service sent an invalid Auth-Port ${JSON.stringify(portText)}`);
    endpoint = { host, port };
  }
  return {
    kind: 'ok',
    ...(user !== undefined ? { user } : {}),
    ...(pass !== undefined ? { pass } : {}),
    ...(endpoint ? { endpoint } : {}),
  };
}

// ---------------------------------------------------------------------------
// Concurrency

interface Waiter {
  readonly grant: () => void;
  readonly fail: (err: GatewayError) => void;
}

class Slots {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private readonly max: number,
    private readonly maxQueue: number,
    private readonly clock: Clock,
  ) {}

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Resolves with a release function; rejects when the queue is full or the deadline passes. */
  acquire(deadline: number, signal: AbortSignal): Promise<() => void> {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next.grant();
      else this.active--;
    };
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve(release);
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(unavailable(`auth service busy: ${this.active} in flight, ${this.queue.length} queued`));
    }
    return new Promise((resolve, reject) => {
      const done = (): void => {
        cancelTimer();
        signal.removeEventListener('abort', onAbort);
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
      };
      const waiter: Waiter = {
        grant: () => {
          done();
          resolve(release);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      const cancelTimer = this.clock.setTimer(
        () => waiter.fail(unavailable('timed out waiting for a free auth service slot')),
        Math.max(0, deadline - this.clock.now()),
      );
      const onAbort = (): void => waiter.fail(unavailable('verifier closed'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(unavailable('verifier closed'));
      return;
    }
    const onAbort = (): void => {
      cancelTimer();
      reject(unavailable('verifier closed'));
    };
    const cancelTimer = clock.setTimer(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------
// The verifier

export function createHttpAuthVerifier(opts: HttpAuthOptions): HttpAuthVerifier {
  let target: URL;
  try {
    target = new URL(opts.url);
  } catch {
    throw new Error(`auth_http: invalid URL ${JSON.stringify(redactUrl(opts.url))}`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new Error(`auth_http: URL must be http:// or https://, not ${target.protocol}`);
  }
  if (!(Number.isInteger(opts.maxConcurrent) && opts.maxConcurrent >= 1)) throw new Error('auth_http: maxConcurrent must be >= 1');
  if (!(Number.isInteger(opts.maxQueue) && opts.maxQueue >= 0)) throw new Error('auth_http: maxQueue must be >= 0');
  if (!(Number.isInteger(opts.maxWaits) && opts.maxWaits >= 0)) throw new Error('auth_http: maxWaits must be >= 0');
  if (!(opts.timeoutMs > 0)) throw new Error('auth_http: timeoutMs must be > 0');
  validateExtraHeaders(opts.headers);
  const extraHeaders = { ...opts.headers };
  const maxWaitMs = (opts.maxWaitSeconds ?? HTTP_AUTH_DEFAULT_MAX_WAIT_SECONDS) * 1000;
  const checkDigest = opts.checkChallengeDigest ?? true;
  const clock = opts.clock ?? systemClock;

  const isHttps = target.protocol === 'https:';
  // Keep-alive, bounded: at most maxConcurrent connections, all of them may
  // stay idle; LIFO reuses the warmest and lets the surplus age out; an idle
  // one is closed after HTTP_AUTH_IDLE_MS (or the service's Keep-Alive hint).
  // The same options whether direct, through a proxy (http) or tunnelled (https).
  const agentOptions: http.AgentOptions = {
    keepAlive: true,
    maxSockets: opts.maxConcurrent,
    maxFreeSockets: opts.maxConcurrent,
    scheduling: 'lifo',
    timeout: HTTP_AUTH_IDLE_MS,
  };
  const egress = createEgressAgents({ proxy: opts.proxy, ...(opts.env ? { env: opts.env } : {}), agentOptions });
  let route: ReturnType<typeof egress.route>;
  try {
    route = egress.route(target);
  } catch (err) {
    throw new Error(`auth_http: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { agent, proxy } = route;
  const basicAuth =
    target.username || target.password ? `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}` : undefined;
  const where = redactUrl(target);
  const log = opts.logger.child({ verifier: 'http', authUrl: where });
  log.info({ proxy: route.shownProxy }, proxy ? 'auth service reached through a forward proxy' : 'auth service reached directly (no proxy)');
  const slots = new Slots(opts.maxConcurrent, opts.maxQueue, clock);
  const closer = new AbortController();
  // One listener per call in flight (up to maxConcurrent + maxQueue): not a leak.
  setMaxListeners(0, closer.signal);

  /** One HTTP exchange; resolves with the parsed answer. */
  function exchange(headers: Record<string, string>, deadline: number, retryStale: boolean): Promise<AuthAnswer> {
    return new Promise<AuthAnswer>((resolve, reject) => {
      let settled = false;
      const finish = (err: GatewayError | undefined, answer?: AuthAnswer): void => {
        if (settled) return;
        settled = true;
        cancelTimer();
        closer.signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(answer!);
      };
      let req: http.ClientRequest;
      try {
        req = (isHttps ? https : http).request({
          protocol: target.protocol,
          hostname: target.hostname.replace(/^\[|\]$/g, ''),
          port: target.port === '' ? undefined : Number(target.port),
          path: `${target.pathname}${target.search}`,
          method: 'GET',
          headers,
          agent,
          ...(basicAuth !== undefined ? { auth: basicAuth } : {}),
        });
      } catch (err) {
        // e.g. a header value node refuses: never expected, but not a crash.
        reject(unavailable(`cannot build the auth request: ${errorCode(err)}`, err));
        return;
      }
      const cancelTimer = clock.setTimer(() => {
        req.destroy();
        finish(unavailable(`auth service ${where} timed out`));
      }, Math.max(0, deadline - clock.now()));
      const onAbort = (): void => {
        req.destroy();
        finish(unavailable('verifier closed'));
      };
      closer.signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => {
        if (settled) return;
        // A kept-alive connection the service closed as we reused it: the
        // question almost certainly never got an answer (nor, usually, a
        // reading); a GET is idempotent, so ask once more on a fresh connection.
        if (retryStale && req.reusedSocket && errorCode(err) === 'ECONNRESET') {
          settled = true;
          cancelTimer();
          closer.signal.removeEventListener('abort', onAbort);
          exchange(headers, deadline, false).then(resolve, reject);
          return;
        }
        finish(unavailable(`auth service ${where}: ${errorCode(err)}`, err));
      });
      req.on('response', (res) => {
        res.on('error', () => {});
        res.resume(); // headers only: drain any body so the socket can be reused
        try {
          finish(undefined, parseAuthAnswer(res.statusCode ?? 0, res.headersDistinct));
        } catch (err) {
          req.destroy();
          finish(err instanceof GatewayError ? err : unavailable(String(err), err));
        }
      });
      req.end();
    });
  }

  async function ask(headers: Record<string, string>, deadline: number): Promise<AuthAnswer> {
    if (closer.signal.aborted) throw unavailable('verifier closed');
    const release = await slots.acquire(deadline, closer.signal);
    try {
      return await exchange(headers, deadline, true);
    } finally {
      release();
    }
  }

  /** Ask until the answer is not WAIT; the failure delay is applied here too. */
  async function question(q: AuthQuestion): Promise<Exclude<AuthAnswer, { kind: 'wait' }>> {
    const started = clock.now();
    const deadline = started + opts.timeoutMs;
    const attempt = q.client?.loginAttempt ?? 1;
    const headers = buildAuthHeaders(q, attempt, extraHeaders);
    for (let waits = 0; ; waits++) {
      const answer = await ask(headers, deadline);
      if (answer.kind === 'wait') {
        if (waits >= opts.maxWaits) throw unavailable(`auth service still answered WAIT after ${waits} waits`);
        const ms = Math.min(answer.waitSeconds * 1000, maxWaitMs);
        if (clock.now() + ms >= deadline) throw unavailable(`auth service asked to wait ${answer.waitSeconds} s, beyond the timeout`);
        log.debug({ user: q.user, method: q.method, attempt, waitSeconds: answer.waitSeconds }, 'auth service: WAIT');
        if (ms > 0) await sleep(clock, ms, closer.signal);
        continue;
      }
      if (answer.kind === 'fail') {
        log.info(
          { user: q.user, method: q.method, attempt, status: answer.text, wait: answer.waitSeconds, ms: clock.now() - started },
          'auth service refused login',
        );
        const delay = Math.min((answer.waitSeconds ?? 0) * 1000, maxWaitMs);
        if (delay > 0) await sleep(clock, delay, closer.signal);
      } else {
        log.debug(
          {
            user: q.user,
            method: q.method,
            attempt,
            ...(answer.user !== undefined ? { mappedUser: answer.user } : {}),
            ...(answer.endpoint ? { backend: `${answer.endpoint.host}:${answer.endpoint.port}` } : {}),
            internalLogin: answer.pass !== undefined,
            ms: clock.now() - started,
          },
          'auth service accepted login',
        );
      }
      return answer;
    }
  }

  function failure(answer: Extract<AuthAnswer, { kind: 'fail' }>): VerifyOutcome {
    return {
      ok: false,
      reason: 'bad-password',
      clientText: answer.text,
      retryable: answer.waitSeconds !== undefined && answer.waitSeconds > 0,
    };
  }

  function success(answer: Extract<AuthAnswer, { kind: 'ok' }>, requestedUser: string): VerifyOutcome {
    // The client's user stays the user (logs, routing map); Auth-User only names the backend account.
    const pass = answer.pass;
    const route: VerifiedRoute = {
      ...(answer.endpoint ? { endpoint: answer.endpoint } : {}),
      ...(pass !== undefined ? { login: { user: answer.user ?? requestedUser, password: pass } } : {}),
    };
    return route.endpoint || route.login ? { ok: true, user: requestedUser, route } : { ok: true, user: requestedUser };
  }

  const verifier: HttpAuthVerifier = {
    name: 'http',
    proxyUrl: proxy ? redactUrl(proxy) : null,

    async verify(request: PasswordRequest): Promise<VerifyOutcome> {
      const answer = await question({
        method: 'plain',
        user: request.username,
        pass: request.password,
        ...(request.client ? { client: request.client } : {}),
        ...(request.remoteAddress !== undefined ? { remoteAddress: request.remoteAddress } : {}),
        tls: request.tls,
      });
      return answer.kind === 'ok' ? success(answer, request.username) : failure(answer);
    },

    async verifyChallenge(request: ChallengeRequest): Promise<VerifyOutcome> {
      const method = request.mechanism === 'APOP' ? 'apop' : 'cram-md5';
      const answer = await question({
        method,
        user: request.username,
        pass: request.response,
        salt: request.challenge,
        ...(request.client ? { client: request.client } : {}),
      });
      if (answer.kind !== 'ok') return failure(answer);
      if (answer.pass === undefined) {
        // nginx: "auth http server did not send password" -> internal error.
        throw unavailable(`auth service accepted ${method} for ${request.username} without sending Auth-Pass`);
      }
      if (checkDigest) {
        if (!checkChallenge(request, answer.pass)) {
          log.info({ user: request.username, method }, 'auth service accepted the login but the client digest does not match');
          return { ok: false, reason: 'bad-password' };
        }
      }
      return success(answer, request.username);
    },

    close(): void {
      closer.abort();
      egress.destroy();
    },
  };

  if (opts.authorizeTicketLogins) {
    return Object.assign(verifier, {
      async authorize(request: AuthorizedRequest): Promise<VerifyOutcome> {
        const answer = await question({
          method: AUTHORIZED_METHOD[request.mechanism],
          user: request.user,
          // A bearer token goes along (nginx's proposed OAuth change); the other mechanisms send Auth-Pass empty.
          pass: request.token ?? '',
          principal: request.identity,
          ...(request.client ? { client: request.client } : {}),
        });
        return answer.kind === 'ok' ? success(answer, request.user) : failure(answer);
      },
    });
  }
  return verifier;
}
