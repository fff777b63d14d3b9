/**
 * The backend login dialogue as a sans-I/O state machine (the shape of
 * Dovecot's pop3-proxy.c): bytes and events in, typed actions out. The host
 * (client.ts) owns the socket, TLS and timers; this module owns what is said
 * and what the answers mean.
 *
 *   connect ─► [tls] ─► greeting ─► [starttls ─► tls] ─► [xclient] ─► [capa] ─► login ─► done
 *             implicit            STLS, then the     XCLIENT when   CAPA when   USER+PASS or
 *             TLS only            handshake          offered        asked to    AUTH PLAIN
 *   anything unexpected, an over-long line, a stray byte ─► failed
 *
 *   gateway                                backend
 *                                    ◄──   +OK [XCLIENT] Dovecot ready.
 *   STLS                             ──►
 *                                    ◄──   +OK Begin TLS negotiation now.
 *   (the host runs the handshake, then calls tlsReady(); POP3 has no second greeting)
 *   XCLIENT ADDR=192.0.2.7 PORT=51000 ──►
 *                                    ◄──   +OK
 *   AUTH PLAIN <base64>              ──►   (a backend answering "+ " gets the base64 again)
 *                                    ◄──   +OK Logged in.
 *   or: USER alice ──► +OK ──► PASS … ──► +OK
 *
 * USER/PASS and PIPELINING (RFC 2449 §6.6): told that the backend pipelines
 * (`pipelining: 'yes'`, the host's memory of an earlier CAPA), the machine
 * returns USER and PASS together and the host writes them in one write: one
 * round trip instead of two. Told nothing (`'ask'`), it asks CAPA once the
 * link is in its final state (after STLS and XCLIENT: CAPA may change with
 * them), reports what it learned ({ kind: 'capabilities' }) and logs in,
 * pipelined if the answer listed PIPELINING. `'no'`: USER, wait, PASS.
 *
 *   CAPA                             ──►
 *                                    ◄──   +OK / … / PIPELINING / … / .   (or -ERR: none)
 *   USER alice\r\nPASS …             ──►   (one write)
 *                                    ◄──   +OK
 *                                    ◄──   +OK Logged in.
 *
 * A pipelined USER answered -ERR fails with USER's code at once (the PASS
 * answer that follows is never read; the host closes without QUIT).
 *
 * The secret lives in the machine only until it is written (or the dialogue
 * ends). The login is done only on `+OK`: the host keeps the client paused
 * until then. A login `-ERR` maps to a catalogue code by its RFC 3206 code;
 * any other answer is a generic BACKEND_PROTOCOL failure.
 */
import { GatewayError, type ErrorCode } from '../errors.js';
import { LineFramer } from '../pop3/framer.js';
import type { BackendLogin, BackendTls } from './types.js';

/** RFC 2449 allows 512 octets for a first response line; real backends overshoot, so be lenient. */
export const MAX_BACKEND_LINE = 2048;
/** How much of a backend's text goes into an error detail (for the log). */
const DETAIL_TEXT_MAX = 200;

/** The phases of the backend link, in order (see the diagram above). */
export type BackendPhase = 'connect' | 'tls' | 'greeting' | 'starttls' | 'xclient' | 'capa' | 'login' | 'done';

/** Phases before any credential is written: a failure here leaves no trace at the backend. */
export const PRE_LOGIN_PHASES: ReadonlySet<BackendPhase> = new Set(['connect', 'tls', 'greeting', 'starttls', 'xclient', 'capa']);

/** A CAPA answer with more capability lines than this is refused (Dovecot lists about ten). */
export const MAX_CAPA_LINES = 64;

/** What the greeting, the XCLIENT exchange and the login established (for the log). */
export interface LoginFacts {
  /** The backend's greeting line (without CRLF); '' before it arrived. */
  readonly greeting: string;
  /** The greeting offered `[XCLIENT]`. */
  readonly xclientOffered: boolean;
  /** `XCLIENT` was sent and answered `+OK`. */
  readonly xclientSent: boolean;
  /** `CAPA` was asked on this link. */
  readonly capaAsked: boolean;
  /** USER and PASS were sent together (one write), the backend being known to pipeline. */
  readonly pipelined: boolean;
}

export type LoginAction =
  /**
   * Write `line` + CRLF. Consecutive sends returned by one call go out in
   * one write: USER + PASS to a backend that pipelines, or (any backend) the
   * next command when the answer it waits for was already in the same read.
   */
  | { readonly kind: 'send'; readonly line: string }
  /** The backend's CAPA answer, for the host's memory (see capabilities.ts); the dialogue goes on. */
  | {
      readonly kind: 'capabilities';
      readonly pipelining: boolean;
      /** CAPA broke the link (closed, silent, unreadable): never ask this backend again (until restart). */
      readonly capaBroken?: true;
    }
  /** Start the TLS handshake on the connection, then call tlsReady(). */
  | { readonly kind: 'startTls' }
  /** Logged in: `leftover` are the bytes the backend sent after its `+OK`. */
  | { readonly kind: 'done'; readonly loginReply: string; readonly leftover: Buffer; readonly facts: LoginFacts }
  /** The dialogue failed in `machine.phase`; the host closes the connection without QUIT. */
  | { readonly kind: 'fail'; readonly error: GatewayError };

export interface LoginMachineOptions {
  /** `host:port`, the prefix of every error detail. */
  readonly where: string;
  readonly tls: BackendTls['mode'];
  readonly login: BackendLogin;
  /** The XCLIENT command to send when the greeting offers `[XCLIENT]` (the host validates it). */
  readonly xclient?: string;
  /**
   * For a USER/PASS login (AUTH PLAIN is one round trip and ignores it):
   * 'yes' the backend is known to pipeline (USER and PASS in one write);
   * 'ask' unknown, ask CAPA first; 'no' (default) USER, then PASS.
   */
  readonly pipelining?: 'yes' | 'ask' | 'no';
}

/** Internal states: the login ones carry the secret still to be written, and nothing else does. */
type State =
  | { readonly name: 'connect' | 'tls' | 'greeting' | 'starttls' | 'xclient' | 'done' }
  /** CAPA sent: its status line, then `lines` capability lines read so far. */
  | { readonly name: 'capa' }
  | { readonly name: 'capa-list'; readonly lines: number; readonly pipelining: boolean }
  /** USER sent; PASS follows its +OK. */
  | { readonly name: 'user'; readonly password: string }
  | { readonly name: 'pass' }
  /** USER and PASS sent together: USER's answer, then PASS's. */
  | { readonly name: 'piped-user' }
  | { readonly name: 'piped-pass' }
  /** AUTH PLAIN sent with the initial response, kept for a backend that asks with `+ `. */
  | { readonly name: 'auth'; readonly token: string }
  | { readonly name: 'auth-cont' }
  | { readonly name: 'failed'; readonly phase: BackendPhase };

const OK = /^\+OK(\s|$)/i;
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
export function quote(text: string): string {
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

/**
 * The greeting step, shared with the readiness probe: the next line from
 * `framer` under MAX_BACKEND_LINE, decoded as `encoding`, judged as a
 * greeting. undefined: more bytes needed.
 */
export function readGreeting(
  framer: LineFramer,
  encoding: 'utf8' | 'latin1',
): { readonly kind: 'ok' | 'bad'; readonly text: string } | { readonly kind: 'overflow' } | undefined {
  const framed = framer.next(MAX_BACKEND_LINE);
  if (framed === undefined || framed.kind === 'overflow') return framed;
  const text = framed.line.toString(encoding);
  return { kind: OK.test(text) ? 'ok' : 'bad', text };
}

/** The next response line after the greeting; undefined: more bytes needed. */
function readLine(framer: LineFramer): { readonly kind: 'line'; readonly text: string } | { readonly kind: 'overflow' } | undefined {
  const framed = framer.next(MAX_BACKEND_LINE);
  if (framed === undefined || framed.kind === 'overflow') return framed;
  return { kind: 'line', text: framed.line.toString('utf8') };
}

export class BackendLoginMachine {
  private readonly framer = new LineFramer(256);
  private state: State = { name: 'connect' };
  /** Until the login starts; then the secret moves into the login state. */
  private login: BackendLogin | undefined;
  private secured = false;
  private greeting = '';
  private xclientOffered = false;
  private xclientSent = false;
  private capaAsked = false;
  private pipelined = false;
  private readonly where: string;
  private readonly tls: BackendTls['mode'];
  private readonly xclient: string | undefined;
  private readonly pipelining: 'yes' | 'ask' | 'no';

  constructor(opts: LoginMachineOptions) {
    // Copied field by field: `opts` holds the secret and is not kept.
    this.where = opts.where;
    this.tls = opts.tls;
    this.xclient = opts.xclient;
    this.pipelining = opts.pipelining ?? 'no';
    this.login = opts.login;
  }

  get phase(): BackendPhase {
    const s = this.state;
    switch (s.name) {
      case 'capa':
      case 'capa-list':
        return 'capa';
      case 'user':
      case 'pass':
      case 'piped-user':
      case 'piped-pass':
      case 'auth':
      case 'auth-cont':
        return 'login';
      case 'failed':
        return s.phase;
      default:
        return s.name;
    }
  }

  get status(): 'waiting' | 'done' | 'failed' {
    return this.state.name === 'done' || this.state.name === 'failed' ? this.state.name : 'waiting';
  }

  get facts(): LoginFacts {
    return {
      greeting: this.greeting,
      xclientOffered: this.xclientOffered,
      xclientSent: this.xclientSent,
      capaAsked: this.capaAsked,
      pipelined: this.pipelined,
    };
  }

  /** The TCP connection is up (and the PROXY header, if any, written). */
  connected(): LoginAction[] {
    if (this.state.name !== 'connect') return [];
    if (this.tls === 'implicit') {
      this.state = { name: 'tls' };
      return [{ kind: 'startTls' }];
    }
    this.state = { name: 'greeting' };
    return [];
  }

  /** The TLS handshake succeeded (implicit TLS: the greeting is next; STLS: what follows it). */
  tlsReady(): LoginAction[] {
    if (this.state.name !== 'tls') return [];
    this.secured = true;
    if (this.tls === 'implicit') {
      this.state = { name: 'greeting' };
      return [];
    }
    return this.afterGreeting();
  }

  /** Bytes from the backend. */
  receive(chunk: Buffer): LoginAction[] {
    if (this.status !== 'waiting') return [];
    this.framer.push(chunk);
    const out: LoginAction[] = [];
    while (this.status === 'waiting') {
      const read = this.state.name === 'greeting' ? readGreeting(this.framer, 'utf8') : readLine(this.framer);
      if (read === undefined) break;
      if (read.kind === 'overflow') {
        out.push(...this.unreadable(`response line longer than ${MAX_BACKEND_LINE} octets`));
        break;
      }
      out.push(...this.onLine(read.text, read.kind === 'ok'));
    }
    return out;
  }

  /** The backend ended (`end`: its FIN) or lost (`close`) the connection before the login was done. */
  closed(how: 'end' | 'close'): LoginAction[] {
    if (this.status !== 'waiting') return [];
    const by = how === 'end' ? ' by the backend' : '';
    if (this.state.name === 'tls') return [this.fail('BACKEND_UNREACHABLE', `connection closed${by} during the TLS handshake`)];
    return this.failAt('BACKEND_PROTOCOL', `connection closed${by} during ${this.phase}`);
  }

  /** The host's deadline for the current phase passed. */
  timedOut(ms: number): LoginAction[] {
    if (this.status !== 'waiting') return [];
    return this.failAt('BACKEND_TIMEOUT', `no answer within ${ms} ms (${this.phase})`);
  }

  /** The host gave up (socket error, abort): drops the secret; `phase` keeps naming where. */
  abandon(): void {
    if (this.status === 'waiting') this.state = { name: 'failed', phase: this.phase };
    this.login = undefined;
  }

  private onLine(line: string, greetingOk: boolean): LoginAction[] {
    const s = this.state;
    switch (s.name) {
      case 'greeting':
        if (!greetingOk) return [this.fail('BACKEND_PROTOCOL', `bad greeting: ${quote(line)}`)];
        this.greeting = line;
        this.xclientOffered = /\[XCLIENT\]/i.test(line);
        return this.afterGreeting();
      case 'starttls':
        if (!OK.test(line)) return [this.fail('BACKEND_PROTOCOL', `STLS refused: ${quote(line)}`)];
        if (this.framer.bufferedBytes > 0) {
          // Plaintext the backend (or someone on the path) queued behind its STLS answer
          // would otherwise be read as if it came over TLS.
          return [this.fail('BACKEND_PROTOCOL', `${this.framer.bufferedBytes} bytes after the STLS answer, before TLS`)];
        }
        this.state = { name: 'tls' };
        return [{ kind: 'startTls' }];
      case 'xclient':
        if (!OK.test(line)) return [this.fail('BACKEND_PROTOCOL', `XCLIENT refused: ${quote(line)}`)];
        this.xclientSent = true;
        return this.beforeLogin();
      case 'capa':
        if (OK.test(line)) {
          this.state = { name: 'capa-list', lines: 0, pipelining: false };
          return [];
        }
        // RFC 2449: a server without CAPA answers -ERR; it has told nothing, PIPELINING included.
        if (/^-ERR(\s|$)/i.test(line)) return this.capaAnswered(false);
        return this.unreadable(`unexpected answer to CAPA: ${quote(line)}`);
      case 'capa-list':
        return this.onCapaLine(line, s);
      case 'user':
      case 'pass':
      case 'piped-user':
      case 'piped-pass':
      case 'auth':
      case 'auth-cont':
        return this.onLoginLine(line, s);
      default:
        return [this.unexpected(line)];
    }
  }

  /** After the greeting, and again after STLS + handshake: STLS, XCLIENT or the login, whichever is next. */
  private afterGreeting(): LoginAction[] {
    if (this.tls === 'starttls' && !this.secured) {
      this.state = { name: 'starttls' };
      return [{ kind: 'send', line: 'STLS' }];
    }
    if (this.xclient !== undefined && this.xclientOffered && !this.xclientSent) {
      this.state = { name: 'xclient' };
      return [{ kind: 'send', line: this.xclient }];
    }
    return this.beforeLogin();
  }

  /** The link is in its final state: CAPA first when a USER/PASS login should learn whether it may pipeline. */
  private beforeLogin(): LoginAction[] {
    if (this.login?.method === 'user-pass' && this.pipelining === 'ask') {
      this.capaAsked = true;
      this.state = { name: 'capa' };
      return [{ kind: 'send', line: 'CAPA' }];
    }
    return this.beginLogin(this.pipelining === 'yes');
  }

  /** One line of the CAPA list: a capability, or the terminating `.`. */
  private onCapaLine(line: string, s: Extract<State, { name: 'capa-list' }>): LoginAction[] {
    if (line === '.') return this.capaAnswered(s.pipelining);
    if (s.lines >= MAX_CAPA_LINES) return this.unreadable(`CAPA answer longer than ${MAX_CAPA_LINES} lines`);
    const text = line.startsWith('.') ? line.slice(1) : line; // RFC 1939 byte-stuffing
    const tag = text.split(' ', 1)[0]?.toUpperCase();
    this.state = { name: 'capa-list', lines: s.lines + 1, pipelining: s.pipelining || tag === 'PIPELINING' };
    return [];
  }

  private capaAnswered(pipelining: boolean): LoginAction[] {
    return [{ kind: 'capabilities', pipelining }, ...this.beginLogin(pipelining)];
  }

  /**
   * The backend's answer cannot be read: fail. During CAPA the host is also
   * told the backend lists nothing, so the next logins do not ask again
   * (and fail again) until the memory forgets it.
   */
  private unreadable(detail: string): LoginAction[] {
    return this.failAt('BACKEND_PROTOCOL', detail);
  }

  /**
   * Fails the dialogue; when it broke during CAPA, the host is first told
   * never to ask this backend again: a legacy server that closes on, stays
   * silent at or garbles an unknown command would otherwise fail a login
   * each time the memory forgot it.
   */
  private failAt(code: ErrorCode, detail: string): LoginAction[] {
    const capa = this.phase === 'capa';
    const fail = this.fail(code, detail);
    return capa ? [{ kind: 'capabilities', pipelining: false, capaBroken: true }, fail] : [fail];
  }

  private beginLogin(pipeline: boolean): LoginAction[] {
    const l = this.login;
    this.login = undefined;
    if (!l) return [];
    if (l.method === 'auth-plain') {
      const token = Buffer.from(`${l.authzid}\0${l.authcid}\0${l.password}`, 'utf8').toString('base64');
      this.state = { name: 'auth', token };
      return [{ kind: 'send', line: `AUTH PLAIN ${token}` }];
    }
    if (pipeline) {
      // RFC 2449 §6.6: both in one write; the secret is in the action only, never in a state.
      this.pipelined = true;
      this.state = { name: 'piped-user' };
      return [
        { kind: 'send', line: `USER ${l.user}` },
        { kind: 'send', line: `PASS ${l.password}` },
      ];
    }
    this.state = { name: 'user', password: l.password };
    return [{ kind: 'send', line: `USER ${l.user}` }];
  }

  private onLoginLine(
    line: string,
    s: Extract<State, { name: 'user' | 'pass' | 'piped-user' | 'piped-pass' | 'auth' | 'auth-cont' }>,
  ): LoginAction[] {
    if (OK.test(line)) {
      if (s.name === 'user') {
        this.state = { name: 'pass' };
        return [{ kind: 'send', line: `PASS ${s.password}` }];
      }
      if (s.name === 'piped-user') {
        this.state = { name: 'piped-pass' };
        return [];
      }
      this.state = { name: 'done' };
      return [{ kind: 'done', loginReply: line, leftover: this.framer.takeBuffered(), facts: this.facts }];
    }
    if (/^-ERR(\s|$)/i.test(line)) {
      const what = s.name === 'user' || s.name === 'piped-user' ? 'USER' : s.name === 'pass' || s.name === 'piped-pass' ? 'PASS' : 'AUTH PLAIN';
      return [this.fail(classifyLoginFailure(line), `${what} refused: ${quote(line)}`)];
    }
    if (s.name === 'auth' && /^\+(\s|$)/.test(line)) {
      // The backend ignored the initial response and asks for it now.
      this.state = { name: 'auth-cont' };
      return [{ kind: 'send', line: s.token }];
    }
    return [this.fail('BACKEND_PROTOCOL', `unexpected answer to login: ${quote(line)}`)];
  }

  private unexpected(line: string): LoginAction {
    return this.fail('BACKEND_PROTOCOL', `unexpected data during ${this.phase}: ${quote(line)}`);
  }

  private fail(code: ErrorCode, detail: string): LoginAction {
    const error = new GatewayError(code, `${this.where}: ${detail}`);
    this.abandon();
    return { kind: 'fail', error };
  }
}
