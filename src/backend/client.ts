import { constants as cryptoConstants } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import { connect, isIP, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { GatewayError } from '../errors.js';
import { encodeProxyHeader, forwardedAddressText } from '../net/index.js';
import { checkBackendIdentity } from './tls-identity.js';
import { connectWithSharedReads, type BackendReader } from './shared-reads.js';
import type {
  BackendLinkInfo,
  BackendLinkSession,
  BackendLogin,
  BackendObserver,
  BackendTarget,
  BackendTimeouts,
  ForwardedClient,
} from './types.js';

/** RFC 2449 allows 512 octets for a first response line; real backends overshoot, so be lenient. */
export const MAX_BACKEND_LINE = 2048;
/** How much of a backend's text goes into an error detail (for the log). */
const DETAIL_TEXT_MAX = 200;

export interface OpenBackendOptions {
  /** Where to connect and how to protect and announce the link. */
  readonly target: BackendTarget;
  /** The real client, forwarded by PROXY header and/or XCLIENT when the target asks for it. */
  readonly client?: ForwardedClient;
  readonly timeouts: BackendTimeouts;
  readonly login: BackendLogin;
  /** Aborting destroys the connection and rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Told the connect and login latencies and the failure of this attempt (metrics). */
  readonly observer?: BackendObserver;
}

/**
 * The phases of the backend link, in order: TCP connect (the PROXY header is
 * written as soon as it is up), `tls` (the handshake, right after connect for
 * implicit TLS, after `+OK` to STLS for starttls), the greeting, `starttls`
 * (waiting for the answer to STLS), `xclient` (waiting for the answer to
 * XCLIENT), login.
 */
export type BackendPhase = 'connect' | 'tls' | 'greeting' | 'starttls' | 'xclient' | 'login' | 'done';

/** Phases before any credential is written: a failure here leaves no trace at the backend. */
export const PRE_LOGIN_PHASES: ReadonlySet<BackendPhase> = new Set(['connect', 'tls', 'greeting', 'starttls', 'xclient']);

/**
 * What the login state machine is waiting for. `user` and `auth` are the
 * answers to USER and AUTH PLAIN, `pass` to PASS, `auth-cont` to the base64
 * sent after a `+ ` continuation.
 */
type Step =
  | { readonly phase: 'connect' | 'tls' | 'greeting' | 'starttls' | 'xclient' }
  | { readonly phase: 'login'; readonly awaiting: 'user' | 'pass' | 'auth' | 'auth-cont' }
  | { readonly phase: 'done' };

const FORBIDDEN = /[\r\n\0]/;

/** Throws BACKEND_PROTOCOL when a credential field could smuggle a second command. */
export function assertSafeCredentials(login: BackendLogin): void {
  const fields =
    login.method === 'auth-plain' ? [login.authzid, login.authcid, login.password] : [login.user, login.password];
  if (fields.some((f) => FORBIDDEN.test(f))) {
    throw new GatewayError('BACKEND_PROTOCOL', 'credential contains CR/LF/NUL');
  }
}

/** Printable, truncated backend text for an error detail. */
function quote(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length > DETAIL_TEXT_MAX ? `${clean.slice(0, DETAIL_TEXT_MAX)}...` : clean;
}

/** Maps a backend `-ERR` answer to a login to its catalogue code. */
export function classifyLoginFailure(line: string): 'BACKEND_IN_USE' | 'BACKEND_LOGIN_TEMP' | 'BACKEND_LOGIN_REJECTED' {
  const code = /^-ERR\s+\[([^\]]*)\]/i.exec(line)?.[1]?.toUpperCase();
  if (code === 'IN-USE') return 'BACKEND_IN_USE';
  if (code === 'SYS/TEMP' || code === 'LOGIN-DELAY') return 'BACKEND_LOGIN_TEMP';
  return 'BACKEND_LOGIN_REJECTED';
}

const errorPhases = new WeakMap<object, BackendPhase>();

/** The phase a GatewayError from openBackendSession was raised in (undefined for other errors). */
export function backendErrorPhase(err: unknown): BackendPhase | undefined {
  return typeof err === 'object' && err !== null ? errorPhases.get(err) : undefined;
}

/** Copies the phase of `from` to `to` (for wrapped errors). */
export function copyBackendErrorPhase(from: unknown, to: object): void {
  const phase = backendErrorPhase(from);
  if (phase !== undefined) errorPhases.set(to, phase);
}

const caCache = new Map<string, { readonly mtimeMs: number; readonly size: number; readonly data: Buffer }>();

/** A CA bundle, read again only when its mtime or size changed. */
async function loadCa(file: string): Promise<Buffer> {
  const st = await stat(file);
  const hit = caCache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.data;
  const data = await readFile(file);
  caCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, data });
  return data;
}

function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** errno-style codes from the socket layer (an outage), as opposed to TLS/OpenSSL codes. */
function isSystemError(err: NodeJS.ErrnoException): boolean {
  const code = err.code ?? '';
  if (code === 'EPROTO') return false; // OpenSSL protocol trouble reported through errno
  return /^E[A-Z0-9]+$/.test(code);
}

/**
 * Maps a TLS handshake failure. Socket-level errors (reset, refused...) are
 * an outage: BACKEND_UNREACHABLE. A certificate or protocol failure is a
 * security failure: BACKEND_PROTOCOL with a detail naming it.
 */
function tlsFailure(where: string, err: NodeJS.ErrnoException): GatewayError {
  const code = err.code ?? '';
  const message = quote(err.message);
  if (isSystemError(err)) {
    return new GatewayError('BACKEND_UNREACHABLE', `${where}: ${code} during TLS handshake`, { cause: err });
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const reason = (err as { reason?: unknown }).reason;
    return new GatewayError(
      'BACKEND_PROTOCOL',
      `${where}: TLS certificate name mismatch: ${quote(typeof reason === 'string' ? reason : err.message)}`,
      { cause: err },
    );
  }
  if (/^[A-Z][A-Z0-9_]*$/.test(code) && !code.startsWith('ERR_')) {
    // OpenSSL X509 verification codes: UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, ...
    return new GatewayError('BACKEND_PROTOCOL', `${where}: TLS certificate verification failed: ${code} (${message})`, {
      cause: err,
    });
  }
  return new GatewayError('BACKEND_PROTOCOL', `${where}: TLS handshake failed: ${code ? `${code}: ` : ''}${message}`, {
    cause: err,
  });
}

/**
 * Connects to a POP3 backend and logs in with internal credentials:
 * CONNECT (then the PROXY header, if any, before anything else) → TLS for
 * implicit TLS → GREETING (+OK; notes `[XCLIENT]`) → STLS + TLS for starttls
 * (POP3 has no second greeting) → `XCLIENT ADDR= PORT=` when the target asks
 * for it, the greeting offered it and a client is given → LOGIN (AUTH PLAIN,
 * or USER then PASS) → DONE.
 *
 * TLS: minimum TLSv1.2; trusted CAs from `caFile` (else the system store);
 * the certificate name is checked against `serverName ?? host` (RFC 7817:
 * DNS SAN, CN only without DNS SAN, wildcard only as the whole left-most
 * label; IP SANs for IP literals) and sent as SNI unless it is an IP literal.
 * `verify: false` disables both checks. A backend's request to renegotiate
 * is refused (OpenSSL answers no_renegotiation; the backend then ends the
 * link). A refused STLS is a failure, never a
 * fallback to plaintext; bytes the backend sends after its STLS answer and
 * before the handshake are refused (response injection).
 *
 * Deadlines (BACKEND_TIMEOUT): connectMs for the connection and an implicit
 * TLS handshake; greetingMs for the greeting, then again for the STLS answer
 * + handshake, then for the XCLIENT answer; loginMs for the login.
 *
 * Resolves with the socket (a TLSSocket when TLS is on) paused, every
 * listener this function added removed, the backend's `+OK` login line, any
 * bytes that followed it and how the link was set up. On failure the socket
 * is destroyed (no QUIT: nothing can be marked for deletion yet) and the
 * promise rejects with a GatewayError (its phase: backendErrorPhase(err)),
 * or with the signal's reason when aborted. Codes: BACKEND_UNREACHABLE
 * (socket errors, also during the TLS handshake), BACKEND_TIMEOUT,
 * BACKEND_PROTOCOL (bad greeting, refused STLS/XCLIENT, any TLS certificate
 * or handshake failure, stray bytes), the login codes, and INTERNAL for an
 * unreadable CA file or a client address that cannot be encoded.
 */
export async function openBackendSession(opts: OpenBackendOptions): Promise<BackendLinkSession> {
  const { target, signal } = opts;
  // Refuse before connecting: nothing is written, no command can be injected.
  assertSafeCredentials(opts.login);
  if (signal?.aborted) throw abortReason(signal);

  const where = hostPort(target.host, target.port);
  const proxyHeader = encodeProxyHeader(target.proxyProtocol, opts.client);
  const xclientLine = target.xclient && opts.client ? xclientCommand(opts.client) : undefined;

  let ca: Buffer | undefined;
  if (target.tls.mode !== 'none' && target.tls.verify && target.tls.caFile !== undefined) {
    try {
      ca = await loadCa(target.tls.caFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      opts.observer?.failed('INTERNAL', 'connect');
      throw new GatewayError('INTERNAL', `${where}: cannot read backend CA file ${target.tls.caFile}: ${code}`, {
        cause: err,
      });
    }
    if (signal?.aborted) throw abortReason(signal);
  }
  return runLink(opts, where, proxyHeader, xclientLine, ca);
}

/** `XCLIENT ADDR=<ip> PORT=<port>` for Dovecot (validated: nothing can be smuggled). */
function xclientCommand(client: ForwardedClient): string {
  const addr = forwardedAddressText(client.address);
  if (!Number.isInteger(client.port) || client.port < 0 || client.port > 65535) {
    throw new GatewayError('INTERNAL', `cannot forward client port ${String(client.port)}`);
  }
  return `XCLIENT ADDR=${addr} PORT=${client.port}`;
}

function runLink(
  opts: OpenBackendOptions,
  where: string,
  proxyHeader: Buffer,
  xclientLine: string | undefined,
  ca: Buffer | undefined,
): Promise<BackendLinkSession> {
  const { target, timeouts, signal, observer } = opts;
  const endpoint = { host: target.host, port: target.port };
  const tlsMode = target.tls.mode;
  const verify = target.tls.verify;
  const checkName = target.tls.serverName ?? target.host;

  // The secret lives in these two slots only until it is written.
  let login: BackendLogin | undefined = opts.login;
  let authToken: string | undefined;

  return new Promise<BackendLinkSession>((resolve, reject) => {
    let step: Step = { phase: 'connect' };
    let buffer: Buffer = Buffer.alloc(0);
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    let greeting = '';
    let xclientOffered = false;
    let xclientSent = false;
    let tlsInfo: BackendLinkInfo['tls'];
    let tlsModeInProgress: 'starttls' | 'implicit' = 'implicit';
    /** performance.now() at connect(), then when the login was sent (observer only). */
    let since = observer ? performance.now() : 0;

    // A plaintext link reads into the shared buffer (see shared-reads.ts); a
    // TLS link cannot: the TLS layer takes over the socket's reads.
    let reader: BackendReader | undefined;
    let raw: Socket;
    if (tlsMode === 'none') {
      ({ socket: raw, reader } = connectWithSharedReads(target.host, target.port));
    } else {
      raw = connect({ host: target.host, port: target.port });
    }
    raw.setNoDelay(true);
    /** The socket lines are read from and written to: `raw`, or the TLSSocket over it. */
    let sock: Socket = raw;
    let secure: TLSSocket | undefined;

    const attach = (s: Socket): void => {
      s.on('data', onData);
      s.on('error', onError);
      s.on('end', onEnd);
      s.on('close', onClose);
    };
    const detach = (s: Socket): void => {
      s.removeListener('data', onData);
      s.removeListener('error', onError);
      s.removeListener('end', onEnd);
      s.removeListener('close', onClose);
    };

    const cleanup = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      raw.removeListener('connect', onConnect);
      detach(raw);
      if (secure) {
        detach(secure);
        secure.removeListener('secureConnect', onSecure);
      }
      signal?.removeEventListener('abort', onAbort);
      login = undefined;
      authToken = undefined;
    };

    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      if (err instanceof GatewayError) {
        errorPhases.set(err, step.phase);
        observer?.failed(err.code, step.phase);
      }
      cleanup();
      // A TLSSocket may still report the teardown ("socket disconnected before
      // secure TLS connection was established"): nobody may be left unlistened.
      secure?.on('error', ignore);
      raw.on('error', ignore);
      secure?.destroy();
      raw.destroy();
      reject(err);
    };

    const succeed = (loginReply: string, leftover: Buffer): void => {
      if (settled) return;
      settled = true;
      step = { phase: 'done' };
      if (observer) observer.loggedIn((performance.now() - since) / 1000);
      sock.pause();
      cleanup();
      const link: BackendLinkInfo = {
        greeting,
        ...(tlsInfo ? { tls: tlsInfo } : {}),
        proxyProtocol: target.proxyProtocol,
        xclientOffered,
        xclientSent,
      };
      resolve({ socket: sock, loginReply, leftover, endpoint, link, ...(reader ? { reader } : {}) });
    };

    const arm = (ms: number): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        fail(new GatewayError('BACKEND_TIMEOUT', `${where}: no answer within ${ms} ms (${step.phase})`));
      }, ms);
    };

    const send = (line: string): void => {
      sock.write(`${line}\r\n`);
    };

    const startTls = (mode: 'starttls' | 'implicit'): void => {
      if (settled) return;
      step = { phase: 'tls' };
      arm(mode === 'implicit' ? timeouts.connectMs : timeouts.greetingMs);
      // The TLS layer owns the connection from now on; raw keeps only its error listener.
      raw.removeListener('data', onData);
      raw.removeListener('end', onEnd);
      raw.removeListener('close', onClose);
      const options: ConnectionOptions = {
        socket: raw,
        minVersion: 'TLSv1.2',
        // tlsSocket.disableRenegotiation() only guards server sockets; a client refuses in OpenSSL.
        secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
        rejectUnauthorized: verify,
        ...(ca ? { ca } : {}),
        // SNI only for names (RFC 6066 forbids IP literals).
        ...(isIP(checkName) ? {} : { servername: checkName }),
        checkServerIdentity: verify ? (_host, cert) => checkBackendIdentity(checkName, cert) : () => undefined,
      };
      let s: TLSSocket;
      try {
        s = tlsConnect(options);
      } catch (err) {
        fail(new GatewayError('INTERNAL', `${where}: cannot start TLS: ${quote(String(err))}`, { cause: err }));
        return;
      }
      secure = s;
      sock = s;
      tlsModeInProgress = mode;
      s.once('secureConnect', onSecure);
      attach(s);
    };

    const onSecure = (): void => {
      const s = secure;
      if (settled || !s) return;
      if (verify && !s.authorized) {
        // rejectUnauthorized already refuses these; never continue on an unverified link.
        fail(
          new GatewayError('BACKEND_PROTOCOL', `${where}: TLS certificate verification failed: ${String(s.authorizationError)}`),
        );
        return;
      }
      tlsInfo = {
        mode: tlsModeInProgress,
        protocol: s.getProtocol() ?? 'unknown',
        cipher: s.getCipher().name,
        verified: verify,
        ...(verify ? { checkedName: checkName } : {}),
      };
      if (tlsModeInProgress === 'implicit') {
        step = { phase: 'greeting' };
        arm(timeouts.greetingMs);
      } else {
        afterGreeting();
      }
    };

    const onConnect = (): void => {
      if (observer) observer.connected((performance.now() - since) / 1000);
      if (proxyHeader.length > 0) {
        // The PROXY header goes first, before any TLS byte or command.
        if (tlsMode === 'implicit') {
          raw.write(proxyHeader, (err) => {
            if (!err) startTls('implicit');
          });
          return;
        }
        raw.write(proxyHeader);
      }
      if (tlsMode === 'implicit') {
        startTls('implicit');
        return;
      }
      step = { phase: 'greeting' };
      arm(timeouts.greetingMs);
    };

    const onError = (err: NodeJS.ErrnoException): void => {
      if (step.phase === 'tls') {
        fail(tlsFailure(where, err));
        return;
      }
      const errno = err.code ?? err.message;
      const during = step.phase === 'connect' ? 'connect' : `${step.phase} (connection error)`;
      fail(new GatewayError('BACKEND_UNREACHABLE', `${where}: ${errno} during ${during}`, { cause: err }));
    };

    const onEnd = (): void => {
      if (step.phase === 'tls') {
        fail(new GatewayError('BACKEND_UNREACHABLE', `${where}: connection closed by the backend during the TLS handshake`));
        return;
      }
      fail(new GatewayError('BACKEND_PROTOCOL', `${where}: connection closed by the backend during ${step.phase}`));
    };

    const onClose = (): void => {
      if (step.phase === 'tls') {
        fail(new GatewayError('BACKEND_UNREACHABLE', `${where}: connection closed during the TLS handshake`));
        return;
      }
      fail(new GatewayError('BACKEND_PROTOCOL', `${where}: connection closed during ${step.phase}`));
    };

    const onAbort = (): void => {
      if (signal) fail(abortReason(signal));
    };

    /** After the greeting (and after STLS + handshake): STLS, XCLIENT or the login, whichever is next. */
    const afterGreeting = (): void => {
      if (tlsMode === 'starttls' && !tlsInfo) {
        step = { phase: 'starttls' };
        arm(timeouts.greetingMs);
        send('STLS');
        return;
      }
      if (xclientLine !== undefined && xclientOffered && !xclientSent) {
        step = { phase: 'xclient' };
        arm(timeouts.greetingMs);
        send(xclientLine);
        return;
      }
      beginLogin();
    };

    const beginLogin = (): void => {
      const l = login;
      if (!l) return;
      step = l.method === 'auth-plain' ? { phase: 'login', awaiting: 'auth' } : { phase: 'login', awaiting: 'user' };
      if (observer) since = performance.now();
      arm(timeouts.loginMs);
      if (l.method === 'auth-plain') {
        authToken = Buffer.from(`${l.authzid}\0${l.authcid}\0${l.password}`, 'utf8').toString('base64');
        login = undefined;
        send(`AUTH PLAIN ${authToken}`);
      } else {
        send(`USER ${l.user}`);
      }
    };

    /** Handles one complete response line; returns false once the machine has stopped reading lines. */
    const onLine = (line: string): boolean => {
      switch (step.phase) {
        case 'greeting': {
          if (!/^\+OK(\s|$)/i.test(line)) {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: bad greeting: ${quote(line)}`));
            return false;
          }
          greeting = line;
          xclientOffered = /\[XCLIENT\]/i.test(line);
          afterGreeting();
          return !settled;
        }
        case 'starttls': {
          if (!/^\+OK(\s|$)/i.test(line)) {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: STLS refused: ${quote(line)}`));
            return false;
          }
          if (buffer.length > 0) {
            // Plaintext the backend (or someone on the path) queued behind its STLS answer
            // would otherwise be read as if it came over TLS.
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: ${buffer.length} bytes after the STLS answer, before TLS`));
            return false;
          }
          startTls('starttls');
          return false;
        }
        case 'xclient': {
          if (!/^\+OK(\s|$)/i.test(line)) {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: XCLIENT refused: ${quote(line)}`));
            return false;
          }
          xclientSent = true;
          beginLogin();
          return !settled;
        }
        case 'login':
          return onLoginLine(line, step.awaiting);
        default:
          fail(new GatewayError('BACKEND_PROTOCOL', `${where}: unexpected data during ${step.phase}: ${quote(line)}`));
          return false;
      }
    };

    const onLoginLine = (line: string, awaiting: 'user' | 'pass' | 'auth' | 'auth-cont'): boolean => {
      if (/^\+OK(\s|$)/i.test(line)) {
        if (awaiting === 'user') {
          const l = login;
          if (!l || l.method !== 'user-pass') return false;
          login = undefined;
          step = { phase: 'login', awaiting: 'pass' };
          send(`PASS ${l.password}`);
          return true;
        }
        authToken = undefined;
        const leftover = Buffer.from(buffer);
        buffer = Buffer.alloc(0);
        succeed(line, leftover);
        return false;
      }
      if (/^-ERR(\s|$)/i.test(line)) {
        const what = awaiting === 'user' ? 'USER' : awaiting === 'pass' ? 'PASS' : 'AUTH PLAIN';
        fail(new GatewayError(classifyLoginFailure(line), `${where}: ${what} refused: ${quote(line)}`));
        return false;
      }
      if (awaiting === 'auth' && /^\+(\s|$)/.test(line) && authToken !== undefined) {
        // The backend ignored the initial response and asks for it now.
        step = { phase: 'login', awaiting: 'auth-cont' };
        const token = authToken;
        authToken = undefined;
        send(token);
        return true;
      }
      fail(new GatewayError('BACKEND_PROTOCOL', `${where}: unexpected answer to login: ${quote(line)}`));
      return false;
    };

    const onData = (chunk: Buffer): void => {
      if (settled) return;
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        const lf = buffer.indexOf(0x0a);
        if (lf < 0) {
          if (buffer.length > MAX_BACKEND_LINE) {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: response line longer than ${MAX_BACKEND_LINE} octets`));
          }
          return;
        }
        if (lf + 1 > MAX_BACKEND_LINE) {
          fail(new GatewayError('BACKEND_PROTOCOL', `${where}: response line longer than ${MAX_BACKEND_LINE} octets`));
          return;
        }
        const end = lf > 0 && buffer[lf - 1] === 0x0d ? lf - 1 : lf;
        const line = buffer.toString('utf8', 0, end);
        buffer = buffer.subarray(lf + 1);
        if (!onLine(line)) return;
      }
    };

    raw.once('connect', onConnect);
    attach(raw);
    signal?.addEventListener('abort', onAbort, { once: true });
    arm(timeouts.connectMs);
  });
}

function ignore(): void {
  /* errors after the outcome is decided */
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('backend login aborted');
  err.name = 'AbortError';
  return err;
}
