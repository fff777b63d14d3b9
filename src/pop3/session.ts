/**
 * The POP3 AUTHORIZATION-state protocol machine (RFC 1939, 2195, 2449, 2595,
 * 3206, 4422, 4752, 5034), sans-I/O: lines in, actions out. The host (src/server) owns the
 * socket, the framer, timers, TLS, the GSS context and the login; it reports
 * outcomes back through `tlsStarted`, `gssAcceptResult`, `gssWrapped`,
 * `gssUnwrapped`, `gssFailed`, `saslContinue`, `saslProved`, `saslFailed`
 * (host-run SASL steps such as SCRAM), `loginSucceeded`, `loginFailed`,
 * `timeout`, `overflow`. The AUTH exchanges themselves run in
 * sasl-exchange.ts.
 *
 * AUTH GSSAPI (RFC 4752), as the session drives it:
 *
 *   C: AUTH GSSAPI [token]      S: "+ " (no token, or "=")
 *   C: token                    -> gssAccept      <- gssAcceptResult
 *   not done:                   S: "+ " b64(output), next client token -> gssAccept ...
 *   done, output non-empty:     S: "+ " b64(output), C: line (content ignored)
 *   done:                       -> gssWrap([01 00 00 00])  <- gssWrapped(token)
 *                               S: "+ " b64(token)
 *   C: token                    -> gssUnwrap      <- gssUnwrapped(data)
 *   data = [01, size x3, authzid] -> authenticate {GSSAPI, principal, requestedUser: authzid}
 *
 * `*` cancels at every client step. GSSAPI is usable on plaintext channels.
 *
 * Challenge-response logins, emitting ChallengeCredentials for the host's
 * `PasswordVerifier.verifyChallenge` (digests: 32 hex digits, either case
 * accepted, emitted lowercase):
 *
 *   APOP (RFC 1939 section 7), with `apopTimestamp` set:
 *     S: +OK <greeting> <timestamp>
 *     C: APOP name digest          -> authenticate {APOP, username, challenge: timestamp, response}
 *   Without a timestamp (or on KPOP, or on a plaintext connection that can
 *   never carry password logins) APOP is UNKNOWN_COMMAND. APOP follows the
 *   USER/PASS channel rule (TLS or allowPlaintextAuth, else
 *   PLAINTEXT_AUTH_DISALLOWED): it hides the password itself, but its digest
 *   is MD5 over a plaintext-equivalent secret, which an eavesdropper can
 *   brute-force offline at MD5 speed; RFC 1939 calls it weak, and RFC 2595
 *   section 2.2 asks for it to be treated like a password on cleartext.
 *
 *   AUTH CRAM-MD5 (RFC 2195), same channel rule as APOP:
 *     C: AUTH CRAM-MD5             S: "+ " b64(challenge)   (challengeFactory(), fresh per command)
 *     C: b64(username SP digest)   -> authenticate {CRAM-MD5, username, challenge, response}
 *   An initial response is refused with BAD_SYNTAX (the client cannot answer
 *   a challenge it has not seen).
 *
 *   AUTH EXTERNAL (RFC 4422 appendix A), only on TLS with `externalIdentity`
 *   set (at construction, or by `tlsStarted` after STLS), else
 *   NO_CLIENT_CERTIFICATE:
 *     C: AUTH EXTERNAL [b64(authzid) | =]   or   AUTH EXTERNAL, S: "+ ", C: b64(authzid) | "" | =
 *     -> authenticate {EXTERNAL, requestedUser: authzid, '' when empty}
 *   The host checks requestedUser against the certificate's identity.
 *
 * KPOP: when `kerberosPrincipal` is set (krb5_sendauth done before the
 * greeting), USER/PASS is accepted on any channel, the PASS value is ignored
 * (fetchmail sends `krb_ticket`) and KPOP credentials are emitted; STLS is
 * refused with TLS_UNAVAILABLE and `AUTH <mechanism>` with
 * UNSUPPORTED_MECHANISM (a bare AUTH lists no mechanisms, as CAPA lists no SASL).
 *
 * Once the client is logged in the session is done: the host splices the
 * client to the backend (state RELAY), so TRANSACTION commands never reach
 * this machine.
 */
import { ERRORS, GatewayError, errorReply, type ErrorCode } from '../errors.js';
import {
  buildCapabilities,
  carriesPassword,
  externalUsable,
  passwordAuthUsable,
  usableMechanisms,
  type CapabilityContext,
} from './capa.js';
import { parseCommand, maskCommandForLog, type Pop3Command } from './command.js';
import { looksLikeHttpRequest, looksLikeTlsClientHello } from './hostile.js';
import { multiLine, protocolError, reply, type Failure, type Outcome } from './outcome.js';
import { NAME_DIGEST_FAILURE, credentialProblem, parseFailureCode } from './refusals.js';
import { AuthExchange } from './sasl-exchange.js';
import { decodeNameDigest, hasForbiddenCredentialChars, isValidChallengeString } from './sasl.js';
import {
  SASL_MECHANISMS,
  type GssAcceptResult,
  type LoginCredentials,
  type Pop3Action,
  type Pop3SessionOptions,
  type SaslMechanism,
} from './types.js';

export type SessionState =
  /** Reading commands before login. */
  | 'AUTHORIZATION'
  /** An AUTH exchange waits for a continuation line. */
  | 'SASL'
  /** A `gss*` action emitted; waiting for the host's `gss*()` answer or `gssFailed()`. */
  | 'GSS_PENDING'
  /** A `saslStep` action emitted; waiting for `saslContinue()`, `saslProved()` or `saslFailed()`. */
  | 'SASL_PENDING'
  /** `startTls` emitted; waiting for `tlsStarted()`. */
  | 'TLS_PENDING'
  /** `authenticate` emitted; waiting for `loginSucceeded()` / `loginFailed()`. */
  | 'LOGIN_PENDING'
  /** Logged in; the host relays bytes and no longer feeds lines. */
  | 'RELAY'
  | 'CLOSED';

/** Every POP3 keyword this machine knows (RFC 1939, 2449, 2595, 5034). */
export const POP3_VERBS = [
  'CAPA', 'STLS', 'USER', 'PASS', 'APOP', 'AUTH', 'QUIT', 'NOOP',
  'STAT', 'LIST', 'RETR', 'DELE', 'RSET', 'TOP', 'UIDL', 'LAST',
] as const;
export type Pop3Verb = (typeof POP3_VERBS)[number];

const VERB_SET: ReadonlySet<string> = new Set(POP3_VERBS);
function isVerb(s: string): s is Pop3Verb {
  return VERB_SET.has(s);
}

type Handler = (session: Pop3Session, cmd: Pop3Command) => Outcome;

/** True when a command that takes no argument got none (a trailing space is tolerated). */
function noArgs(cmd: Pop3Command): boolean {
  return cmd.args === '';
}

export class Pop3Session {
  /**
   * Command handlers per state. A known verb missing from the current state's
   * table gets BAD_SEQUENCE (e.g. RETR before login); an unknown keyword gets
   * UNKNOWN_COMMAND. Only AUTHORIZATION reads commands: SASL reads
   * continuation lines, the pending states read nothing (the host does not
   * feed while `awaiting`), RELAY belongs to the splice.
   */
  private static readonly DISPATCH: Record<SessionState, Partial<Record<Pop3Verb, Handler>>> = {
    AUTHORIZATION: {
      CAPA: (s, c) => s.onCapa(c),
      STLS: (s, c) => s.onStls(c),
      USER: (s, c) => s.onUser(c),
      PASS: (s, c) => s.onPass(c),
      APOP: (s, c) => s.onApop(c),
      AUTH: (s, c) => s.onAuth(c),
      QUIT: (s, c) => s.onQuit(c),
      NOOP: (_s, c) => (noArgs(c) ? [reply('+OK')] : protocolError('BAD_SYNTAX')),
    },
    SASL: {},
    GSS_PENDING: {},
    SASL_PENDING: {},
    TLS_PENDING: {},
    LOGIN_PENDING: {},
    RELAY: {},
    CLOSED: {},
  };

  private readonly opts: Pop3SessionOptions;
  private st: SessionState = 'AUTHORIZATION';
  private tlsActive: boolean;
  /** Name from USER, waiting for PASS. */
  private pendingUser: string | undefined;
  /** Last user name presented by any mechanism (for logs). */
  private lastUser: string | undefined;
  /** The AUTH exchange: its continuation lines and its waits on the host (SASL, GSS_PENDING, SASL_PENDING). */
  private readonly exchange: AuthExchange;
  private errors = 0;
  private authFailures = 0;
  /** The greeting timestamp when APOP is enabled on this connection. */
  private readonly apopTimestamp: string | undefined;
  /** The verified TLS client certificate's identity (EXTERNAL), from the options or `tlsStarted`. */
  private externalIdentity: string | undefined;
  /** `greet()` has run: client bytes before it make an early talker. */
  private greeted = false;
  /** The client's first bytes (chunk or line) went through `screen`. */
  private firstInputScreened = false;

  constructor(options: Pop3SessionOptions) {
    for (const key of ['maxAuthAttempts', 'maxErrors', 'maxCommandLine', 'maxSaslLine'] as const) {
      const v = options[key];
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`Pop3SessionOptions.${key} must be a positive integer, got ${v}`);
    }
    const principal = options.kerberosPrincipal;
    if (principal !== undefined && (principal === '' || hasForbiddenCredentialChars(principal))) {
      throw new RangeError('Pop3SessionOptions.kerberosPrincipal must be non-empty, without CR, LF or NUL');
    }
    const timestamp = options.apopTimestamp;
    if (timestamp !== undefined && !isValidChallengeString(timestamp)) {
      throw new RangeError('Pop3SessionOptions.apopTimestamp must have the msg-id form <left@right> (printable ASCII, at most 200 octets)');
    }
    if (options.saslMechanisms.includes('CRAM-MD5') && options.challengeFactory === undefined) {
      throw new RangeError('Pop3SessionOptions.challengeFactory is required when saslMechanisms lists CRAM-MD5');
    }
    const identity = options.externalIdentity;
    if (identity !== undefined) {
      checkExternalIdentity(identity);
      if (!options.tls) throw new RangeError('Pop3SessionOptions.externalIdentity requires tls: a client certificate comes with TLS');
    }
    this.opts = options;
    this.tlsActive = options.tls;
    this.externalIdentity = identity;
    // APOP where it can ever be used: not on KPOP, not on a plaintext channel
    // that neither allows password logins nor can upgrade to TLS.
    const apopPossible = options.tls || options.allowPlaintextAuth || options.stlsAvailable;
    this.apopTimestamp = principal === undefined && apopPossible ? timestamp : undefined;
    this.exchange = new AuthExchange(
      {
        enter: (state) => {
          this.st = state;
        },
        authenticate: (credentials) => this.authenticate(credentials),
        presented: (username) => {
          this.lastUser = username;
        },
        externalIdentity: () => this.externalIdentity,
      },
      options,
    );
  }

  get state(): SessionState {
    return this.st;
  }

  /**
   * Set while the host must act before feeding more lines: 'tls' after
   * `startTls`, 'login' after `authenticate`, 'gss' after `gssAccept`,
   * `gssWrap` or `gssUnwrap`.
   */
  get awaiting(): 'tls' | 'login' | 'gss' | 'sasl' | undefined {
    if (this.st === 'TLS_PENDING') return 'tls';
    if (this.st === 'LOGIN_PENDING') return 'login';
    if (this.st === 'GSS_PENDING') return 'gss';
    if (this.st === 'SASL_PENDING') return 'sasl';
    return undefined;
  }

  /**
   * The cap (octets incl. CRLF) for the next line the framer delivers: the
   * SASL cap while an AUTH exchange waits for a continuation (or for the
   * host's GSS or SCRAM answer, after which it normally will), else the
   * command cap, or the larger of the two while a bearer mechanism is usable
   * (see bearerInitialResponses).
   */
  get lineLimit(): number {
    if (this.st === 'SASL' || this.st === 'GSS_PENDING' || this.st === 'SASL_PENDING') return this.opts.maxSaslLine;
    return this.bearerInitialResponses ? Math.max(this.opts.maxSaslLine, this.opts.maxCommandLine) : this.opts.maxCommandLine;
  }

  /**
   * A bearer token (1 KiB and more) does not fit RFC 2449's 255-octet command
   * line, and clients such as Thunderbird send it as AUTH's initial response
   * all the same: with OAUTHBEARER or XOAUTH2 usable, an AUTH line may be as
   * long as a continuation line (`dispatch` holds every other command to the
   * command cap).
   */
  private get bearerInitialResponses(): boolean {
    return this.st === 'AUTHORIZATION' && this.mechanisms.some((m) => m === 'OAUTHBEARER' || m === 'XOAUTH2');
  }

  /**
   * Whether an AUTH GSSAPI exchange is in progress (waiting for a client
   * line or for the host). Once false, the session will ask nothing more of
   * the current GSS context: the host may dispose of its acceptor.
   */
  get gssInProgress(): boolean {
    return this.exchange.gssInProgress;
  }

  /** Whether the channel is protected by TLS (initially, or after STLS). */
  get tls(): boolean {
    return this.tlsActive;
  }

  /**
   * The last user name presented (USER, PLAIN authcid, LOGIN user name, APOP
   * and CRAM-MD5 name, GSSAPI principal, EXTERNAL: the certificate's
   * `externalIdentity`), for logs.
   */
  get username(): string | undefined {
    return this.lastUser;
  }

  /** Protocol errors and failed logins so far (for logs and metrics). */
  get counters(): { readonly errors: number; readonly authFailures: number } {
    return { errors: this.errors, authFailures: this.authFailures };
  }

  /**
   * A log-safe rendering of the line about to be fed: the PASS argument, the
   * APOP digest and AUTH initial responses are masked, SASL continuations
   * (CRAM-MD5 responses, GSSAPI tokens included) fully.
   */
  maskLine(line: Buffer): string {
    return maskCommandForLog(line, this.st === 'SASL' || this.st === 'GSS_PENDING' || this.st === 'SASL_PENDING' ? 'continuation' : 'command');
  }

  /**
   * The greeting: `+OK <greeting>`, and ` <timestamp>` after it when APOP is
   * enabled (RFC 1939 section 7); the greeting text then loses any `<` or `>`
   * so the timestamp is the first `<...>` on the line.
   */
  greet(): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.greeted = true;
    const timestamp = this.apopTimestamp;
    let text = this.opts.greeting.replace(/[\r\n\0]/g, ' ');
    if (timestamp !== undefined) text = text.replace(/[<>]/g, '');
    const parts = [text.trim(), timestamp ?? ''].filter((p) => p !== '');
    return [reply(['+OK', ...parts].join(' '))];
  }

  /**
   * The first chunk of raw bytes the client sent, before the host pushes it
   * to the framer (call once per connection; later calls, and empty chunks,
   * are ignored; a KPOP host skips it: its preamble read the first bytes).
   * It runs the pre-dispatch checks that cannot wait for a line: bytes before
   * `greet()` (an early talker: the host delays the greeting to catch them)
   * and a TLS ClientHello on a plaintext channel (it carries no line
   * terminator the framer would wait for). Returns [] when the bytes may be
   * framed, else a closing `-ERR` (EARLY_TALKER, TLS_ON_PLAINTEXT_PORT).
   */
  firstBytes(chunk: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED' || this.firstInputScreened || chunk.length === 0) return [];
    const hostile = this.screen(chunk, 'chunk');
    return hostile ? this.closeWith(hostile) : [];
  }

  /**
   * One line from the framer (terminator stripped): a command, or the
   * client's response in a SASL exchange. This is the single entry point for
   * client lines: `screen` runs first, then dispatch, and `settle` is the
   * single place where refusals are counted.
   * `octets`: the line as received, terminator included (the framer's count;
   * default: the line plus CRLF), for the command cap.
   */
  feedLine(line: Buffer, octets = line.length + 2): Pop3Action[] {
    switch (this.st) {
      case 'CLOSED':
        return [];
      case 'SASL':
      case 'AUTHORIZATION': {
        const hostile = this.screen(line, 'line');
        if (hostile) return this.closeWith(hostile);
        return this.settle(this.st === 'SASL' ? this.exchange.onSaslResponse(line) : this.dispatch(line, octets));
      }
      case 'TLS_PENDING':
      case 'GSS_PENDING':
      case 'SASL_PENDING':
      case 'LOGIN_PENDING':
      case 'RELAY':
        // A host bug. For TLS_PENDING it would mean plaintext injected after
        // STLS being interpreted: refuse loudly rather than guess.
        throw new GatewayError('INTERNAL', `POP3 line fed in state ${this.st}`);
    }
  }

  /** The framer reported a line over `lineLimit`. */
  overflow(): Pop3Action[] {
    if (this.st === 'CLOSED' || this.st === 'RELAY') return [];
    return this.closeWith('LINE_TOO_LONG');
  }

  /** The pre-authentication timer fired. */
  timeout(): Pop3Action[] {
    if (this.st === 'CLOSED' || this.st === 'RELAY') return [];
    return this.closeWith('PREAUTH_TIMEOUT');
  }

  /**
   * The TLS handshake after STLS completed. RFC 2595 section 4: the client
   * starts over in AUTHORIZATION and anything learned before (a USER name)
   * is forgotten; it will re-issue CAPA. `externalIdentity`: the identity of
   * the client certificate the handshake verified and the host mapped (see
   * the option of that name); enables EXTERNAL. RangeError when empty or
   * with CR/LF/NUL.
   */
  tlsStarted(info: { readonly externalIdentity?: string | undefined } = {}): void {
    if (this.st === 'CLOSED') return;
    this.expect('TLS_PENDING', 'tlsStarted');
    const identity = info.externalIdentity;
    if (identity !== undefined) checkExternalIdentity(identity);
    this.tlsActive = true;
    this.externalIdentity = identity;
    this.pendingUser = undefined;
    this.st = 'AUTHORIZATION';
  }

  /** The backend accepted the login: forward its `+OK` line, then relay. */
  loginSucceeded(backendReply: string): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('LOGIN_PENDING', 'loginSucceeded');
    this.st = 'RELAY';
    // One line, a positive one (CR/LF would inject lines), within RFC 2449's 512 octets.
    const fits = /^\+OK(?: [^\r\n\0]*)?$/.test(backendReply) && Buffer.byteLength(backendReply) + 2 <= 512;
    const line = fits ? backendReply : '+OK Logged in';
    return [reply(line), { kind: 'relay' }];
  }

  /**
   * The login failed with a catalogue code. AUTH_FAILED spends one attempt
   * (the last one closes with TOO_MANY_AUTH_ATTEMPTS); other codes close when
   * the catalogue says so (backend trouble) and otherwise let the client
   * retry. `opts.text` replaces the catalogue text (an auth service's own
   * message); `opts.close` closes even where the catalogue would let the
   * client retry (nginx closes on a failure without Auth-Wait);
   * `opts.errorChallenge` sends RFC 7628's error challenge first.
   */
  loginFailed(code: ErrorCode, opts: { text?: string; close?: boolean; errorChallenge?: Buffer } = {}): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('LOGIN_PENDING', 'loginFailed');
    this.st = 'AUTHORIZATION';
    const { errorChallenge, ...rest } = opts;
    const failure: Failure = { fail: code, count: code === 'AUTH_FAILED' ? 'auth' : 'none', ...rest };
    if (errorChallenge !== undefined) {
      // RFC 7628 3.2.2: the error goes as a challenge; the `-ERR` answers the client's reply to it.
      return this.exchange.errorChallenge(failure, errorChallenge);
    }
    return this.settle(failure);
  }

  // ---- host-read SASL mechanisms (SCRAM) -------------------------------------

  /** The host's exchange answered a `saslStep` with a challenge: send it, await the client's next message. */
  saslContinue(challenge: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('SASL_PENDING', 'saslContinue');
    return this.exchange.saslContinue(challenge);
  }

  /**
   * The host's exchange proved the client (SCRAM: the proof verified):
   * `final` (the server-final message) goes as a challenge and the client's
   * empty answer completes it, then the login goes to the host as
   * ScramCredentials (authorising and the backend login remain).
   */
  saslProved(result: { readonly username: string; readonly requestedUser: string; readonly final: Buffer }): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    if (result.username === '' || hasForbiddenCredentialChars(result.username) || hasForbiddenCredentialChars(result.requestedUser)) {
      throw new GatewayError('INTERNAL', 'Pop3Session.saslProved(): a user name must be non-empty, without CR, LF or NUL');
    }
    this.expect('SASL_PENDING', 'saslProved');
    return this.exchange.saslProved(result);
  }

  /**
   * The host's exchange refused the client's message (malformed, wrong proof,
   * channel-binding mismatch) or could not run (`[SYS/*]` codes, not counted).
   * Like `gssFailed`.
   */
  saslFailed(code: ErrorCode): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('SASL_PENDING', 'saslFailed');
    return this.settle(this.exchange.saslFailed(code));
  }

  // ---- GSSAPI host answers -------------------------------------------------

  /**
   * The acceptor consumed the client's token (answer to `gssAccept`). Not
   * done: the output goes to the client and the next token is awaited. Done:
   * `principal` is required; a non-empty output is sent first and the
   * client's empty answer awaited, then the security-layer offer is wrapped.
   */
  gssAcceptResult(result: GssAcceptResult): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('GSS_PENDING', 'gssAcceptResult');
    return this.settle(this.exchange.gssAcceptResult(result));
  }

  /** The security-layer offer was wrapped (answer to `gssWrap`): send it, await the client's choice. */
  gssWrapped(token: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('GSS_PENDING', 'gssWrapped');
    return this.exchange.gssWrapped(token);
  }

  /**
   * The client's security-layer answer was unwrapped (answer to `gssUnwrap`):
   * it must choose exactly "no security layer"; its authzid goes to the host
   * as `requestedUser`.
   */
  gssUnwrapped(data: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('GSS_PENDING', 'gssUnwrapped');
    return this.settle(this.exchange.gssUnwrapped(data));
  }

  /**
   * A GSS call failed (bad or replayed token, wrong service principal, skew,
   * failed unwrap, or trouble on our side). The exchange ends with the
   * catalogue reply for `code`. It spends one login attempt like a failed
   * password (the last one closes with TOO_MANY_AUTH_ATTEMPTS), except for
   * server-side trouble ([SYS/*] codes such as VERIFIER_UNAVAILABLE), which,
   * as in `loginFailed`, is not counted; codes whose catalogue entry closes
   * the connection close it.
   */
  gssFailed(code: ErrorCode): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('GSS_PENDING', 'gssFailed');
    return this.settle(this.exchange.gssFailed(code));
  }

  // ---- dispatch -----------------------------------------------------------

  /**
   * All pre-dispatch checks in one place (smtp-server `_onCommand`): input
   * that no POP3 client sends, answered with its own catalogue code (so the
   * host's close log names the reason) and a close, before anything is
   * parsed or counted. In order:
   *
   * - EARLY_TALKER: raw bytes before `greet()`. POP3 servers speak first; a
   *   client that does not wait for the greeting is a bot (Postfix
   *   postscreen's pregreet test). Only observable when the host delays the
   *   greeting; checked on the raw first chunk only (lines are fed after
   *   `greet()`, e.g. Heimdal push's commands pipelined behind its AP-REQ).
   * - TLS_ON_PLAINTEXT_PORT: the client's first bytes (raw chunk, or first
   *   line when the host does not call `firstBytes`) are a TLS ClientHello on
   *   a channel without TLS.
   * - HTTP_ON_POP3_PORT: an HTTP request line (a browser, curl, or a
   *   cross-protocol form POST); nothing after it is processed.
   *
   * The too-many-errors rule stays in `settle` (it needs the dispatch outcome).
   */
  private screen(input: Buffer, from: 'chunk' | 'line'): ErrorCode | undefined {
    const first = !this.firstInputScreened;
    this.firstInputScreened = true;
    if (from === 'chunk' && !this.greeted) return 'EARLY_TALKER';
    if (first && !this.tlsActive && looksLikeTlsClientHello(input)) return 'TLS_ON_PLAINTEXT_PORT';
    if (from === 'line' && looksLikeHttpRequest(input)) return 'HTTP_ON_POP3_PORT';
    return undefined;
  }

  private dispatch(line: Buffer, octets: number): Outcome {
    const cmd = parseCommand(line);
    // Past the command cap only AUTH's initial response may go (bearerInitialResponses).
    if (octets > this.opts.maxCommandLine && !(cmd.ok && cmd.verb === 'AUTH')) return this.closeWith('LINE_TOO_LONG');
    if (!cmd.ok) return protocolError(parseFailureCode(cmd));
    if (!isVerb(cmd.verb)) return protocolError('UNKNOWN_COMMAND');
    const handler = Pop3Session.DISPATCH[this.st][cmd.verb];
    return handler ? handler(this, cmd) : protocolError('BAD_SEQUENCE');
  }

  /**
   * Turns an outcome into actions, spending the error / attempt budgets. The
   * refusal that exhausts a budget is answered with the budget's own error
   * (TOO_MANY_ERRORS / TOO_MANY_AUTH_ATTEMPTS) and the connection closes, so
   * every command still gets exactly one reply.
   */
  private settle(outcome: Outcome): Pop3Action[] {
    if (Array.isArray(outcome)) return outcome;
    const { fail, count, text } = outcome;
    if (count === 'error' && ++this.errors >= this.opts.maxErrors) return this.closeWith('TOO_MANY_ERRORS');
    if (count === 'auth' && ++this.authFailures >= this.opts.maxAuthAttempts) {
      return this.closeWith('TOO_MANY_AUTH_ATTEMPTS');
    }
    if (ERRORS[fail].close || outcome.close) return this.closeWith(fail, text);
    return [reply(errorReply(fail, text))];
  }

  private closeWith(code: ErrorCode, text?: string): Pop3Action[] {
    this.enterClosed();
    return [reply(errorReply(code, text)), { kind: 'close', reason: code }];
  }

  private enterClosed(): void {
    this.st = 'CLOSED';
    this.pendingUser = undefined;
    this.exchange.reset();
  }

  private expect(state: SessionState, method: string): void {
    if (this.st !== state) throw new GatewayError('INTERNAL', `Pop3Session.${method}() called in state ${this.st}`);
  }

  /** A KPOP session: Kerberos authenticated the connection before the greeting. */
  private get kpop(): boolean {
    return this.opts.kerberosPrincipal !== undefined;
  }

  private get passwordAuthOk(): boolean {
    return passwordAuthUsable({ tls: this.tlsActive, allowPlaintextAuth: this.opts.allowPlaintextAuth });
  }

  /** What CAPA and the mechanism checks see: the options as the channel stands now. */
  private get capabilityContext(): CapabilityContext {
    return { ...this.opts, tls: this.tlsActive, externalIdentity: this.externalIdentity };
  }

  private get mechanisms(): SaslMechanism[] {
    return usableMechanisms(this.capabilityContext);
  }

  /** Emits the credentials for verification and waits for the host's answer. */
  private authenticate(credentials: LoginCredentials): Pop3Action[] {
    this.pendingUser = undefined;
    this.st = 'LOGIN_PENDING';
    return [{ kind: 'authenticate', credentials }];
  }

  // ---- AUTHORIZATION commands --------------------------------------------

  private onCapa(cmd: Pop3Command): Outcome {
    if (!noArgs(cmd)) return protocolError('BAD_SYNTAX');
    return multiLine('+OK Capability list follows', buildCapabilities(this.capabilityContext));
  }

  private onStls(cmd: Pop3Command): Outcome {
    if (this.tlsActive) return protocolError('TLS_ALREADY_ACTIVE');
    // KPOP: the Kerberos identity belongs to this plaintext stream; no upgrade.
    if (!this.opts.stlsAvailable || this.kpop) return protocolError('TLS_UNAVAILABLE');
    if (!noArgs(cmd)) return protocolError('BAD_SYNTAX');
    this.pendingUser = undefined;
    this.st = 'TLS_PENDING';
    // The host must discard every byte buffered after this line before the
    // handshake (framer.discardBuffered()): a man in the middle can append
    // plaintext commands behind `STLS\r\n` that would otherwise run inside
    // the protected session (CVE-2011-0411 class).
    return [reply('+OK Begin TLS negotiation'), { kind: 'startTls' }];
  }

  private onUser(cmd: Pop3Command): Outcome {
    // KPOP sends no password: USER only names the mailbox the principal asks for.
    if (!this.kpop && !this.passwordAuthOk) return protocolError('PLAINTEXT_AUTH_DISALLOWED');
    const problem = credentialProblem(cmd.args);
    if (problem) return protocolError(problem);
    this.pendingUser = cmd.args;
    this.lastUser = cmd.args;
    return [reply('+OK')];
  }

  private onPass(cmd: Pop3Command): Outcome {
    const principal = this.opts.kerberosPrincipal;
    if (principal !== undefined) {
      // KPOP: the PASS value is meaningless (fetchmail sends `krb_ticket`), even empty.
      const requestedUser = this.pendingUser;
      if (requestedUser === undefined) return protocolError('BAD_SEQUENCE');
      return this.authenticate({ mechanism: 'KPOP', principal, requestedUser });
    }
    if (!this.passwordAuthOk) return protocolError('PLAINTEXT_AUTH_DISALLOWED');
    const username = this.pendingUser;
    if (username === undefined) return protocolError('BAD_SEQUENCE');
    // The password is the whole rest of the line, spaces included.
    const problem = credentialProblem(cmd.args);
    if (problem) return protocolError(problem);
    return this.authenticate({ mechanism: 'USER', username, password: cmd.args });
  }

  /** `APOP name digest` (RFC 1939 section 7). */
  private onApop(cmd: Pop3Command): Outcome {
    const challenge = this.apopTimestamp;
    // Not enabled: answered as a server without APOP would.
    if (challenge === undefined) return protocolError('UNKNOWN_COMMAND');
    if (!this.passwordAuthOk) return protocolError('PLAINTEXT_AUTH_DISALLOWED');
    const parsed = decodeNameDigest(cmd.args);
    if (!parsed.ok) return protocolError(NAME_DIGEST_FAILURE[parsed.reason]);
    this.lastUser = parsed.username;
    return this.authenticate({ mechanism: 'APOP', username: parsed.username, challenge, response: parsed.digest });
  }

  private onQuit(cmd: Pop3Command): Outcome {
    if (!noArgs(cmd)) return protocolError('BAD_SYNTAX');
    // No UPDATE state before login: nothing to commit.
    this.enterClosed();
    return [reply('+OK Bye'), { kind: 'close', reason: 'QUIT' }];
  }

  /** `AUTH`, `AUTH mech` or `AUTH mech initial-response` (RFC 5034). */
  private onAuth(cmd: Pop3Command): Outcome {
    if (cmd.args === '') return multiLine('+OK Available mechanisms', this.mechanisms);
    const tokens = cmd.args.split(' ');
    if (tokens.length > 2 || tokens.some((t) => t === '')) return protocolError('BAD_SYNTAX');
    const mech = (tokens[0] ?? '').toUpperCase();
    const initial = tokens[1];

    if (!isSaslMechanism(mech) || !this.opts.saslMechanisms.includes(mech) || this.kpop) {
      return protocolError('UNSUPPORTED_MECHANISM');
    }
    if (mech === 'EXTERNAL' && !externalUsable(this.capabilityContext)) return protocolError('NO_CLIENT_CERTIFICATE');
    if (carriesPassword(mech) && !this.passwordAuthOk) return protocolError('PLAINTEXT_AUTH_DISALLOWED');
    // Channel binding needs a channel: -PLUS only on TLS (not listed elsewhere either).
    if (mech === 'SCRAM-SHA-256-PLUS' && !this.tlsActive) return protocolError('PLAINTEXT_AUTH_DISALLOWED');
    this.pendingUser = undefined;

    return this.exchange.start(mech, initial);
  }
}

function isSaslMechanism(s: string): s is SaslMechanism {
  return (SASL_MECHANISMS as readonly string[]).includes(s);
}

/** An `externalIdentity` (option or `tlsStarted`) must be a usable log name: non-empty, no CR/LF/NUL. */
function checkExternalIdentity(identity: string): void {
  if (identity === '' || hasForbiddenCredentialChars(identity)) {
    throw new RangeError('externalIdentity must be non-empty, without CR, LF or NUL');
  }
}
