/**
 * Opens a logged-in backend session: the socket, TLS and timer glue around
 * the sans-I/O login dialogue (login-machine.ts). What is said and what the
 * answers mean is decided there; here bytes are moved, handshakes run and
 * deadlines kept.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { systemClock, type Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { encodeProxyHeader, forwardedAddressText, hostPort } from '../net/index.js';
import { backendCapabilities, capabilityKey, type CapabilityMemory } from './capabilities.js';
import { assertSafeCredentials, BackendLoginMachine, quote, type BackendPhase, type LoginAction } from './login-machine.js';
import { connectWithSharedReads, type BackendReader } from './shared-reads.js';
import { describeTls, tlsClientOptions, tlsFailure } from './tls-link.js';
import { backendTls, type BackendTlsCache, type BackendTlsLink } from './tls-sessions.js';
import type { BackendLinkInfo, BackendLinkSession, BackendLogin, BackendObserver, BackendTarget, BackendTimeouts, ForwardedClient } from './types.js';

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
  /** Keeps the per-phase deadlines; default systemClock (tests pass a fake one to see and fire them). */
  readonly clock?: Clock;
  /** The TLS contexts and sessions kept between links; default the process's (backendTls). */
  readonly tlsCache?: BackendTlsCache;
  /**
   * USER/PASS logins: 'auto' asks CAPA of a backend not yet known and sends
   * USER and PASS in one write to one that lists PIPELINING; 'off' (default
   * here; the config's default is auto) never asks and never pipelines.
   */
  readonly pipelining?: 'auto' | 'off';
  /** What earlier links learned of each backend's CAPA; default the process's (backendCapabilities). */
  readonly capabilities?: CapabilityMemory;
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


/**
 * Connects to a POP3 backend and logs in with internal credentials:
 * CONNECT (then the PROXY header, if any, before anything else) → TLS for
 * implicit TLS → GREETING (+OK; notes `[XCLIENT]`) → STLS + TLS for starttls
 * (POP3 has no second greeting) → `XCLIENT ADDR= PORT=` when the target asks
 * for it, the greeting offered it and a client is given → LOGIN (AUTH PLAIN,
 * or USER then PASS) → DONE. The dialogue is BackendLoginMachine's.
 *
 * TLS: minimum TLSv1.2; trusted CAs from `caFile` (else the system store);
 * the certificate name is checked against `serverName ?? host` (RFC 7817:
 * DNS SAN, CN only without DNS SAN, wildcard only as the whole left-most
 * label; IP SANs for IP literals) and sent as SNI unless it is an IP literal.
 * `verify: false` disables both checks. One SecureContext serves every link
 * with the same settings, and the last session a backend issued to a
 * verified link is offered on the next link to it (tls-sessions.ts).
 * A backend's request to renegotiate
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

  let tls: BackendTlsLink | undefined;
  if (target.tls.mode !== 'none') {
    try {
      tls = await (opts.tlsCache ?? backendTls).link(target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      opts.observer?.failed('INTERNAL', 'connect');
      const what = target.tls.caFile !== undefined ? `cannot read backend CA file ${target.tls.caFile}` : 'cannot set up TLS';
      throw new GatewayError('INTERNAL', `${where}: ${what}: ${code}`, { cause: err });
    }
    if (signal?.aborted) throw abortReason(signal);
  }
  return new Promise((resolve, reject) => {
    new BackendLink(opts, where, proxyHeader, xclientLine, tls, resolve, reject).start();
  });
}

/** `XCLIENT ADDR=<ip> PORT=<port>` for Dovecot (validated: nothing can be smuggled). */
function xclientCommand(client: ForwardedClient): string {
  const addr = forwardedAddressText(client.address);
  if (!Number.isInteger(client.port) || client.port < 0 || client.port > 65535) {
    throw new GatewayError('INTERNAL', `cannot forward client port ${String(client.port)}`);
  }
  return `XCLIENT ADDR=${addr} PORT=${client.port}`;
}

/**
 * One connection attempt: the socket, TLS and timer glue around a
 * BackendLoginMachine. Socket events go into the machine; its actions come
 * out as writes, a handshake, or the outcome. Each phase gets its own
 * deadline, armed whenever the machine enters a new phase.
 */
class BackendLink {
  private readonly machine: BackendLoginMachine;
  private readonly raw: Socket;
  /** Present for plaintext links, which read into the shared buffer (a TLS layer takes over the socket's reads). */
  private readonly reader: BackendReader | undefined;
  /** The socket lines are read from and written to: `raw`, or the TLSSocket over it. */
  private sock: Socket;
  private secure: TLSSocket | undefined;
  private tlsInfo: BackendLinkInfo['tls'];
  private settled = false;
  /** Cancels the armed phase deadline. */
  private cancelTimer: (() => void) | undefined;
  private readonly clock: Clock;
  private armedFor: BackendPhase = 'connect';
  /** performance.now() at connect(), then when the login was sent (observer only). */
  private since: number;

  /** Where what CAPA tells is kept, and under which key; undefined with pipelining off. */
  private readonly memory: { readonly store: CapabilityMemory; readonly key: string } | undefined;
  /** The login method, for the session's loginMethod (with the machine's facts: pipelined or not). */
  private readonly method: BackendLogin['method'];

  /** What the link needs of OpenBackendOptions: not the login, which only the machine holds. */
  private readonly opts: Pick<OpenBackendOptions, 'target' | 'timeouts' | 'signal' | 'observer'>;

  constructor(
    opts: OpenBackendOptions,
    private readonly where: string,
    private readonly proxyHeader: Buffer,
    xclientLine: string | undefined,
    /** The context and session for this link; undefined for plaintext. */
    private readonly tls: BackendTlsLink | undefined,
    private readonly resolve: (session: BackendLinkSession) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    const { target } = opts;
    this.clock = opts.clock ?? systemClock;
    this.opts = {
      target,
      timeouts: opts.timeouts,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.observer ? { observer: opts.observer } : {}),
    };
    this.method = opts.login.method;
    this.memory =
      opts.pipelining === 'auto'
        ? { store: opts.capabilities ?? backendCapabilities, key: capabilityKey(where, target.tls.mode) }
        : undefined;
    const known = this.memory?.store.get(this.memory.key);
    this.machine = new BackendLoginMachine({
      where,
      tls: target.tls.mode,
      login: opts.login,
      ...(xclientLine !== undefined ? { xclient: xclientLine } : {}),
      pipelining: this.memory === undefined ? 'no' : known === undefined ? 'ask' : known.pipelining ? 'yes' : 'no',
    });
    this.since = opts.observer ? performance.now() : 0;
    if (target.tls.mode === 'none') {
      const shared = connectWithSharedReads(target.host, target.port);
      this.raw = shared.socket;
      this.reader = shared.reader;
    } else {
      this.raw = connect({ host: target.host, port: target.port });
      this.reader = undefined;
    }
    this.raw.setNoDelay(true);
    this.sock = this.raw;
  }

  start(): void {
    this.raw.once('connect', this.onConnect);
    this.attach(this.raw);
    this.opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.arm(this.opts.timeouts.connectMs);
  }

  /**
   * Carries out the machine's actions, then arms the deadline of the phase it
   * is in now. The lines of consecutive sends go out in one write (pipelined
   * USER + PASS: one segment, one read at the backend).
   */
  private apply(actions: readonly LoginAction[]): void {
    let lines = '';
    for (const a of actions) {
      if (this.settled) return;
      if (a.kind === 'send') {
        lines += `${a.line}\r\n`;
        continue;
      }
      if (lines !== '') this.sock.write(lines);
      lines = '';
      if (a.kind === 'capabilities') this.memory?.store.learned(this.memory.key, a.pipelining, a.capaBroken === true);
      else if (a.kind === 'startTls') this.startTls();
      else if (a.kind === 'done') this.succeed(a);
      else this.fail(a.error);
    }
    if (lines !== '' && !this.settled) this.sock.write(lines);
    const phase = this.machine.phase;
    if (this.settled || phase === this.armedFor) return;
    this.armedFor = phase;
    if (phase === 'login' && this.opts.observer) this.since = performance.now();
    this.arm(this.deadline(phase));
  }

  private deadline(phase: BackendPhase): number {
    const t = this.opts.timeouts;
    if (phase === 'connect' || (phase === 'tls' && this.opts.target.tls.mode === 'implicit')) return t.connectMs;
    return phase === 'login' ? t.loginMs : t.greetingMs;
  }

  private arm(ms: number): void {
    this.cancelTimer?.();
    this.cancelTimer = this.clock.setTimer(() => this.apply(this.machine.timedOut(ms)), ms);
  }

  private startTls(): void {
    const raw = this.raw;
    // The TLS layer owns the connection from now on; raw keeps only its error listener.
    raw.removeListener('data', this.onData);
    raw.removeListener('end', this.onEnd);
    raw.removeListener('close', this.onClose);
    const tls = this.tls;
    let s: TLSSocket;
    try {
      if (!tls) throw new Error('no TLS context for a plaintext target');
      s = tlsConnect(tlsClientOptions(this.opts.target, raw, tls.context, tls.session));
    } catch (err) {
      this.fail(new GatewayError('INTERNAL', `${this.where}: cannot start TLS: ${quote(String(err))}`, { cause: err }));
      return;
    }
    this.secure = s;
    this.sock = s;
    // Added now: Node asks OpenSSL for sessions only once a 'session' listener exists.
    s.on('session', tls.onSession);
    s.once('secureConnect', this.onSecure);
    this.attach(s);
  }

  private readonly onSecure = (): void => {
    const s = this.secure;
    if (this.settled || !s) return;
    const info = describeTls(this.opts.target, s);
    if (!info) {
      this.fail(
        new GatewayError('BACKEND_PROTOCOL', `${this.where}: TLS certificate verification failed: ${String(s.authorizationError)}`),
      );
      return;
    }
    this.tlsInfo = info;
    this.tls?.verifiedBy(s);
    this.opts.observer?.tlsHandshake?.(s.isSessionReused());
    this.apply(this.machine.tlsReady());
  };

  private readonly onConnect = (): void => {
    const { observer, target } = this.opts;
    if (observer) observer.connected((performance.now() - this.since) / 1000);
    if (this.proxyHeader.length > 0) {
      // The PROXY header goes first, before any TLS byte or command.
      if (target.tls.mode === 'implicit') {
        this.raw.write(this.proxyHeader, (err) => {
          if (!err) this.apply(this.machine.connected());
        });
        return;
      }
      this.raw.write(this.proxyHeader);
    }
    this.apply(this.machine.connected());
  };

  private readonly onData = (chunk: Buffer): void => {
    if (!this.settled) this.apply(this.machine.receive(chunk));
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    const phase = this.machine.phase;
    if (phase === 'tls') {
      this.fail(tlsFailure(this.where, err));
      return;
    }
    const errno = err.code ?? err.message;
    const during = phase === 'connect' ? 'connect' : `${phase} (connection error)`;
    this.fail(new GatewayError('BACKEND_UNREACHABLE', `${this.where}: ${errno} during ${during}`, { cause: err }));
  };

  private readonly onEnd = (): void => this.apply(this.machine.closed('end'));
  private readonly onClose = (): void => this.apply(this.machine.closed('close'));

  private readonly onAbort = (): void => {
    if (this.opts.signal) this.fail(abortReason(this.opts.signal));
  };

  private attach(s: Socket): void {
    s.on('data', this.onData);
    s.on('error', this.onError);
    s.on('end', this.onEnd);
    s.on('close', this.onClose);
  }

  private detach(s: Socket): void {
    s.removeListener('data', this.onData);
    s.removeListener('error', this.onError);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onClose);
  }

  private cleanup(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.raw.removeListener('connect', this.onConnect);
    this.detach(this.raw);
    if (this.secure) {
      this.detach(this.secure);
      this.secure.removeListener('secureConnect', this.onSecure);
      // TLS 1.3 tickets come right after the handshake, before the greeting or STLS-login answer: all seen by now.
      if (this.tls) this.secure.removeListener('session', this.tls.onSession);
    }
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.machine.abandon(); // drops the secret if the login never started
  }

  private fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    const phase = this.machine.phase;
    if (err instanceof GatewayError) {
      errorPhases.set(err, phase);
      this.opts.observer?.failed(err.code, phase);
    }
    // A session from (or offered to) a handshake that failed or was not trusted is not offered again.
    if (this.secure && !this.tlsInfo) this.tls?.failed();
    this.cleanup();
    // A TLSSocket may still report the teardown ("socket disconnected before
    // secure TLS connection was established"): nobody may be left unlistened.
    this.secure?.on('error', ignore);
    this.raw.on('error', ignore);
    this.secure?.destroy();
    this.raw.destroy();
    this.reject(err);
  }

  private succeed(done: Extract<LoginAction, { kind: 'done' }>): void {
    if (this.settled) return;
    this.settled = true;
    const { observer, target } = this.opts;
    if (observer) observer.loggedIn((performance.now() - this.since) / 1000);
    this.sock.pause();
    this.cleanup();
    const link: BackendLinkInfo = {
      greeting: done.facts.greeting,
      ...(this.tlsInfo ? { tls: this.tlsInfo } : {}),
      proxyProtocol: target.proxyProtocol,
      xclientOffered: done.facts.xclientOffered,
      xclientSent: done.facts.xclientSent,
      capaAsked: done.facts.capaAsked,
      pipelined: done.facts.pipelined,
    };
    const endpoint = { host: target.host, port: target.port };
    this.resolve({
      socket: this.sock,
      loginReply: done.loginReply,
      leftover: done.leftover,
      endpoint,
      loginMethod: this.method === 'auth-plain' ? 'auth-plain' : done.facts.pipelined ? 'user-pass-pipelined' : 'user-pass',
      link,
      ...(this.reader ? { reader: this.reader } : {}),
    });
  }
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
