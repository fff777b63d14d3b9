/**
 * The POP3 AUTHORIZATION-state protocol machine (RFC 1939, 2195, 2449, 2595,
 * 3206, 4422, 4752, 5034), sans-I/O: lines in, actions out. The host (src/server) owns the
 * socket, the framer, timers, TLS, the GSS context and the login; it reports
 * outcomes back through `tlsStarted`, `gssAcceptResult`, `gssWrapped`,
 * `gssUnwrapped`, `gssFailed`, `loginSucceeded`, `loginFailed`, `timeout`,
 * `overflow`.
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
import { parseCommand, maskCommandForLog, type CommandParseError, type Pop3Command } from './command.js';
import { looksLikeHttpRequest, looksLikeTlsClientHello } from './hostile.js';
import {
  SASL_CANCEL,
  SASL_EMPTY_CHALLENGE,
  cramMd5Challenge,
  decodeBase64Strict,
  decodeCramMd5Response,
  decodeGssapiLayerResponse,
  decodeNameDigest,
  decodeOAuthBearer,
  decodePlain,
  decodeXOAuth2,
  decodeUtf8Strict,
  gssapiLayerOffer,
  hasForbiddenCredentialChars,
  isValidChallengeString,
  loginPrompt,
  saslChallenge,
  type BearerFailure,
  type GssapiLayerFailure,
  type NameDigestFailure,
  type PlainFailure,
} from './sasl.js';
import {
  SASL_MECHANISMS,
  type GssAcceptResult,
  type HostSaslMechanism,
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

/**
 * A refused command. `count` says which budget it spends: 'error' the
 * protocol-error budget (maxErrors), 'auth' the failed-login budget
 * (maxAuthAttempts), 'none' neither (server-side trouble).
 */
interface Failure {
  readonly fail: ErrorCode;
  readonly count: 'error' | 'auth' | 'none';
  /** Client-visible text instead of the catalogue's (auth service failure text). */
  readonly text?: string;
  /** Close after this reply even if the catalogue entry would not. */
  readonly close?: boolean;
}
type Outcome = Pop3Action[] | Failure;
type Handler = (session: Pop3Session, cmd: Pop3Command) => Outcome;

const protocolError = (code: ErrorCode): Failure => ({ fail: code, count: 'error' });

function reply(line: string): Pop3Action {
  return { kind: 'reply', line };
}

/** A multi-line reply: status line, items, terminating dot. Items are pre-sanitised. */
function multiLine(head: string, items: readonly string[]): Pop3Action[] {
  return [reply(head), ...items.map(reply), reply('.')];
}

/** True when a command that takes no argument got none (a trailing space is tolerated). */
function noArgs(cmd: Pop3Command): boolean {
  return cmd.args === '';
}

/** The reply to a user name or password that cannot be used, or undefined when it can. */
function credentialProblem(s: string): ErrorCode | undefined {
  if (s === '') return 'BAD_SYNTAX';
  if (hasForbiddenCredentialChars(s)) return 'BAD_CHARACTERS';
  return undefined;
}

const PLAIN_FAILURE: Record<PlainFailure, ErrorCode> = {
  'field-count': 'BAD_SYNTAX',
  'empty-authcid': 'BAD_SYNTAX',
  'empty-password': 'BAD_SYNTAX',
  'nul-in-field': 'BAD_CHARACTERS',
  'bad-characters': 'BAD_CHARACTERS',
  'bad-utf8': 'BAD_CHARACTERS',
};

/** Refusals of APOP arguments and CRAM-MD5 responses. */
const NAME_DIGEST_FAILURE: Record<NameDigestFailure, ErrorCode> = {
  syntax: 'BAD_SYNTAX',
  'bad-characters': 'BAD_CHARACTERS',
  'bad-utf8': 'BAD_CHARACTERS',
};

/**
 * Refusals of the client's RFC 4752 security-layer answer. Malformed data
 * follows the PLAIN rules (protocol errors); choosing a layer that was not
 * offered fails the login and spends an attempt.
 */
const BEARER_FAILURE: Record<BearerFailure, ErrorCode> = {
  syntax: 'BAD_SYNTAX',
  'no-token': 'BAD_SYNTAX',
  'bad-utf8': 'BAD_CHARACTERS',
  'bad-characters': 'BAD_CHARACTERS',
};

const GSSAPI_LAYER_FAILURE: Record<GssapiLayerFailure, Failure> = {
  short: { fail: 'BAD_SYNTAX', count: 'error' },
  layer: { fail: 'UNSUPPORTED_SECURITY_LAYER', count: 'auth' },
  'bad-utf8': { fail: 'BAD_CHARACTERS', count: 'error' },
  'bad-characters': { fail: 'BAD_CHARACTERS', count: 'error' },
};

/** Server-side trouble ([SYS/*], [IN-USE]): not the client's fault, so it spends no attempt. */
function isServerTrouble(code: ErrorCode): boolean {
  const resp: string | undefined = ERRORS[code].resp;
  return resp === 'SYS/TEMP' || resp === 'SYS/PERM' || resp === 'IN-USE';
}

/** Verbs whose arguments are credentials: a NUL or bad UTF-8 there is a credential problem. */
const CREDENTIAL_VERBS: ReadonlySet<string> = new Set(['USER', 'PASS', 'APOP', 'AUTH']);

function parseFailureCode(err: CommandParseError): ErrorCode {
  if ((err.reason === 'nul' || err.reason === 'bad-utf8') && err.verb !== undefined && CREDENTIAL_VERBS.has(err.verb)) {
    return 'BAD_CHARACTERS';
  }
  return err.reason === 'bad-keyword' ? 'UNKNOWN_COMMAND' : 'BAD_SYNTAX';
}

/** Where an AUTH exchange stands while it waits for the client's next line. */
type SaslExchange =
  | { readonly mech: 'PLAIN' }
  | { readonly mech: 'LOGIN'; readonly step: 'username' }
  | { readonly mech: 'LOGIN'; readonly step: 'password'; readonly username: string }
  /** GSSAPI: the next context token (`first`: no token fed to the acceptor yet). */
  | { readonly mech: 'GSSAPI'; readonly step: 'accept'; readonly first: boolean }
  /** GSSAPI: the client's answer to the final context token (RFC 4752: no data). */
  | { readonly mech: 'GSSAPI'; readonly step: 'ack'; readonly principal: string }
  /** GSSAPI: the client's wrapped security-layer answer. */
  | { readonly mech: 'GSSAPI'; readonly step: 'layer'; readonly principal: string }
  /** CRAM-MD5: the client's `username SP digest` answer to `challenge`. */
  | { readonly mech: 'CRAM-MD5'; readonly challenge: string }
  /** EXTERNAL: the client's authorization identity (possibly empty). */
  | { readonly mech: 'EXTERNAL' }
  /** OAUTHBEARER / XOAUTH2: the client's message (no initial response was sent). */
  | { readonly mech: 'OAUTHBEARER' | 'XOAUTH2' }
  /** A refused bearer token's error challenge was sent (RFC 7628 3.2.2): any answer gets the `-ERR`. */
  | { readonly mech: 'BEARER-ERROR'; readonly failure: Failure }
  /** A host-read mechanism (SCRAM): the client's next message for the host's exchange. */
  | { readonly mech: HostSaslMechanism; readonly step: 'message'; readonly first: boolean }
  /** SCRAM: the server-final message was sent; the client's empty answer completes the login. */
  | { readonly mech: HostSaslMechanism; readonly step: 'ack'; readonly username: string; readonly requestedUser: string };

/** Which host answer a GSSAPI exchange waits for (state GSS_PENDING). */
type GssWait =
  | { readonly op: 'accept' }
  | { readonly op: 'wrap'; readonly principal: string }
  | { readonly op: 'unwrap'; readonly principal: string };

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
  private sasl: SaslExchange | undefined;
  private gss: GssWait | undefined;
  /** The host-read mechanism whose `saslStep` the host is working on (SASL_PENDING). */
  private hostStep: HostSaslMechanism | undefined;
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
    return this.gss !== undefined || this.sasl?.mech === 'GSSAPI';
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
        return this.settle(this.st === 'SASL' ? this.onSaslResponse(line) : this.dispatch(line, octets));
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
   * the catalogue says so (backend trouble) and otherwise let the client retry.
   */
  /**
   * The login failed. `opts.text` replaces the catalogue text (an auth
   * service's own message); `opts.close` closes even where the catalogue
   * would let the client retry (nginx closes on a failure without Auth-Wait).
   */
  loginFailed(code: ErrorCode, opts: { text?: string; close?: boolean; errorChallenge?: Buffer } = {}): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expect('LOGIN_PENDING', 'loginFailed');
    this.st = 'AUTHORIZATION';
    const { errorChallenge, ...rest } = opts;
    const failure: Failure = { fail: code, count: code === 'AUTH_FAILED' ? 'auth' : 'none', ...rest };
    if (errorChallenge !== undefined) {
      // RFC 7628 3.2.2: the error goes as a challenge; the `-ERR` answers the client's reply to it.
      this.beginSasl({ mech: 'BEARER-ERROR', failure });
      return [reply(saslChallenge(errorChallenge))];
    }
    return this.settle(failure);
  }

  // ---- host-read SASL mechanisms (SCRAM) -------------------------------------

  /** The host's exchange answered a `saslStep` with a challenge: send it, await the client's next message. */
  saslContinue(challenge: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    const mech = this.expectHostStep('saslContinue');
    this.beginSasl({ mech, step: 'message', first: false });
    return [reply(saslChallenge(challenge))];
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
    const mech = this.expectHostStep('saslProved');
    this.lastUser = result.username;
    this.beginSasl({ mech, step: 'ack', username: result.username, requestedUser: result.requestedUser });
    return [reply(saslChallenge(result.final))];
  }

  /**
   * The host's exchange refused the client's message (malformed, wrong proof,
   * channel-binding mismatch) or could not run (`[SYS/*]` codes, not counted).
   * Like `gssFailed`.
   */
  saslFailed(code: ErrorCode): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    this.expectHostStep('saslFailed');
    return this.settle({ fail: code, count: isServerTrouble(code) ? 'none' : 'auth' });
  }

  private expectHostStep(method: string): HostSaslMechanism {
    this.expect('SASL_PENDING', method);
    const mech = this.hostStep;
    if (mech === undefined) throw new GatewayError('INTERNAL', `Pop3Session.${method}() without a pending step`);
    this.hostStep = undefined;
    this.st = 'AUTHORIZATION';
    return mech;
  }

  /** Hands a client message to the host's exchange and waits (awaiting 'sasl'). */
  private requestHostStep(mechanism: HostSaslMechanism, data: Buffer, first: boolean): Pop3Action[] {
    this.hostStep = mechanism;
    this.st = 'SASL_PENDING';
    return [{ kind: 'saslStep', mechanism, data, first }];
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
    this.expectGss('accept', 'gssAcceptResult');
    if (result.done && (result.principal === undefined || result.principal === '')) {
      throw new GatewayError('INTERNAL', 'Pop3Session.gssAcceptResult(): done without a principal');
    }
    this.gss = undefined;
    this.st = 'AUTHORIZATION';
    if (!result.done) {
      this.beginSasl({ mech: 'GSSAPI', step: 'accept', first: false });
      return [reply(saslChallenge(result.output))];
    }
    const principal = result.principal ?? '';
    // Kerberos escapes such characters in unparsed names; fail closed anyway.
    if (hasForbiddenCredentialChars(principal)) return this.settle({ fail: 'AUTH_FAILED', count: 'auth' });
    this.lastUser = principal;
    if (result.output.length > 0) {
      this.beginSasl({ mech: 'GSSAPI', step: 'ack', principal });
      return [reply(saslChallenge(result.output))];
    }
    return this.requestGss({ op: 'wrap', principal }, { kind: 'gssWrap', data: gssapiLayerOffer() });
  }

  /** The security-layer offer was wrapped (answer to `gssWrap`): send it, await the client's choice. */
  gssWrapped(token: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    const wait = this.expectGss('wrap', 'gssWrapped');
    this.gss = undefined;
    this.beginSasl({ mech: 'GSSAPI', step: 'layer', principal: wait.principal });
    return [reply(saslChallenge(token))];
  }

  /**
   * The client's security-layer answer was unwrapped (answer to `gssUnwrap`):
   * it must choose exactly "no security layer"; its authzid goes to the host
   * as `requestedUser`.
   */
  gssUnwrapped(data: Buffer): Pop3Action[] {
    if (this.st === 'CLOSED') return [];
    const wait = this.expectGss('unwrap', 'gssUnwrapped');
    this.gss = undefined;
    this.st = 'AUTHORIZATION';
    const answer = decodeGssapiLayerResponse(data);
    if (!answer.ok) return this.settle(GSSAPI_LAYER_FAILURE[answer.reason]);
    return this.authenticate({ mechanism: 'GSSAPI', principal: wait.principal, requestedUser: answer.authzid });
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
    this.gss = undefined;
    this.st = 'AUTHORIZATION';
    return this.settle({ fail: code, count: isServerTrouble(code) ? 'none' : 'auth' });
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
    this.sasl = undefined;
    this.gss = undefined;
    this.hostStep = undefined;
  }

  private expect(state: SessionState, method: string): void {
    if (this.st !== state) throw new GatewayError('INTERNAL', `Pop3Session.${method}() called in state ${this.st}`);
  }

  /** The pending GSS step, which must be `op` (anything else is a host bug). */
  private expectGss<Op extends GssWait['op']>(op: Op, method: string): Extract<GssWait, { op: Op }> {
    this.expect('GSS_PENDING', method);
    const wait = this.gss;
    if (wait?.op !== op) {
      throw new GatewayError('INTERNAL', `Pop3Session.${method}() called while waiting for ${wait?.op ?? 'nothing'}`);
    }
    return wait as Extract<GssWait, { op: Op }>;
  }

  /** Asks the host for a GSS operation and waits (awaiting 'gss'). */
  private requestGss(wait: GssWait, action: Pop3Action): Pop3Action[] {
    this.gss = wait;
    this.st = 'GSS_PENDING';
    return [action];
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

    if (mech === 'GSSAPI') return this.startGssapi(initial);
    if (mech === 'CRAM-MD5') return this.startCramMd5(initial);
    if (mech === 'EXTERNAL') return this.startExternal(initial);
    if (mech === 'OAUTHBEARER' || mech === 'XOAUTH2' || mech === 'SCRAM-SHA-256' || mech === 'SCRAM-SHA-256-PLUS') {
      if (initial === undefined) {
        this.beginSasl(mech === 'OAUTHBEARER' || mech === 'XOAUTH2' ? { mech } : { mech, step: 'message', first: true });
        return [reply(SASL_EMPTY_CHALLENGE)];
      }
      const data = decodeBase64Strict(initial);
      if (data === undefined) return protocolError('BAD_BASE64');
      return mech === 'OAUTHBEARER' || mech === 'XOAUTH2' ? this.finishBearer(mech, data) : this.requestHostStep(mech, data, true);
    }
    if (initial === undefined) {
      this.beginSasl(mech === 'PLAIN' ? { mech: 'PLAIN' } : { mech: 'LOGIN', step: 'username' });
      return [reply(mech === 'PLAIN' ? SASL_EMPTY_CHALLENGE : loginPrompt('username'))];
    }
    const decoded = decodeBase64Strict(initial);
    if (decoded === undefined) return protocolError('BAD_BASE64');
    return mech === 'PLAIN' ? this.finishPlain(decoded) : this.loginUsername(decoded);
  }

  /** `AUTH GSSAPI [token]`: an absent or empty (`=`) initial response asks for the first token. */
  private startGssapi(initial: string | undefined): Outcome {
    const token = initial === undefined ? Buffer.alloc(0) : decodeBase64Strict(initial);
    if (token === undefined) return protocolError('BAD_BASE64');
    if (token.length === 0) {
      this.beginSasl({ mech: 'GSSAPI', step: 'accept', first: true });
      return [reply(SASL_EMPTY_CHALLENGE)];
    }
    return this.requestGss({ op: 'accept' }, { kind: 'gssAccept', token, first: true });
  }

  /** `AUTH CRAM-MD5`: send a fresh challenge. The server speaks first, so an initial response is an error. */
  private startCramMd5(initial: string | undefined): Outcome {
    if (initial !== undefined) return protocolError('BAD_SYNTAX');
    const factory = this.opts.challengeFactory;
    if (factory === undefined) throw new GatewayError('INTERNAL', 'CRAM-MD5 enabled without a challengeFactory');
    const challenge = factory();
    if (!isValidChallengeString(challenge)) {
      throw new GatewayError('INTERNAL', 'Pop3SessionOptions.challengeFactory() returned a value not of the form <left@right>');
    }
    this.beginSasl({ mech: 'CRAM-MD5', challenge });
    return [reply(cramMd5Challenge(challenge))];
  }

  /** `AUTH EXTERNAL [authzid]`: without an initial response, ask for the authzid with an empty challenge. */
  private startExternal(initial: string | undefined): Outcome {
    if (initial === undefined) {
      this.beginSasl({ mech: 'EXTERNAL' });
      return [reply(SASL_EMPTY_CHALLENGE)];
    }
    const decoded = decodeBase64Strict(initial);
    if (decoded === undefined) return protocolError('BAD_BASE64');
    return this.finishExternal(decoded);
  }

  // ---- SASL exchange -----------------------------------------------------

  private beginSasl(exchange: SaslExchange): void {
    this.sasl = exchange;
    this.st = 'SASL';
  }

  /** The client's response to a `+ ` challenge. */
  private onSaslResponse(line: Buffer): Outcome {
    const exchange = this.sasl;
    // Whatever happens, this step ends the current wait; a next step re-enters SASL.
    this.sasl = undefined;
    this.st = 'AUTHORIZATION';
    if (exchange === undefined) throw new GatewayError('INTERNAL', 'SASL state without an exchange');
    // Whatever the client answers an error challenge with (AQ==, `*`, anything), the login failed.
    if (exchange.mech === 'BEARER-ERROR') return exchange.failure;

    // latin1 maps bytes 1:1, so any non-ASCII byte fails the base64 check.
    const text = line.toString('latin1');
    if (text === SASL_CANCEL) return protocolError('AUTH_CANCELLED');
    const decoded = decodeBase64Strict(text);
    if (decoded === undefined) return protocolError('BAD_BASE64');

    switch (exchange.mech) {
      case 'PLAIN':
        return this.finishPlain(decoded);
      case 'GSSAPI':
        return this.gssapiResponse(exchange, decoded);
      case 'CRAM-MD5':
        return this.finishCramMd5(exchange.challenge, decoded);
      case 'EXTERNAL':
        return this.finishExternal(decoded);
      case 'OAUTHBEARER':
      case 'XOAUTH2':
        return this.finishBearer(exchange.mech, decoded);
      case 'SCRAM-SHA-256':
      case 'SCRAM-SHA-256-PLUS':
        if (exchange.step === 'message') return this.requestHostStep(exchange.mech, decoded, exchange.first);
        // RFC 5034 4: the client answers the server's final data with an empty response.
        if (decoded.length > 0) return protocolError('BAD_SYNTAX');
        return this.authenticate({ mechanism: exchange.mech, username: exchange.username, requestedUser: exchange.requestedUser });
      case 'LOGIN':
        if (exchange.step === 'username') return this.loginUsername(decoded);
        return this.loginPassword(exchange.username, decoded);
    }
  }

  /** A decoded client line in a GSSAPI exchange: hand it to the host's GSS context. */
  private gssapiResponse(exchange: Extract<SaslExchange, { mech: 'GSSAPI' }>, data: Buffer): Outcome {
    switch (exchange.step) {
      case 'accept':
        // A context token is never empty; do not bother the acceptor with one.
        if (data.length === 0) return protocolError('BAD_SYNTAX');
        return this.requestGss({ op: 'accept' }, { kind: 'gssAccept', token: data, first: exchange.first });
      case 'ack':
        // RFC 4752 expects no data here; whatever the client sent is unused.
        return this.requestGss(
          { op: 'wrap', principal: exchange.principal },
          { kind: 'gssWrap', data: gssapiLayerOffer() },
        );
      case 'layer':
        if (data.length === 0) return protocolError('BAD_SYNTAX');
        return this.requestGss({ op: 'unwrap', principal: exchange.principal }, { kind: 'gssUnwrap', token: data });
    }
  }

  private finishPlain(message: Buffer): Outcome {
    const plain = decodePlain(message);
    if (!plain.ok) return protocolError(PLAIN_FAILURE[plain.reason]);
    this.lastUser = plain.authcid;
    if (plain.authzid === '') {
      return this.authenticate({ mechanism: 'PLAIN', username: plain.authcid, password: plain.passwd });
    }
    // Acting as another user is not offered to clients: refuse without
    // verifying the password, but spend an attempt as any failed login does.
    if (plain.authzid !== plain.authcid) return { fail: 'AUTH_FAILED', count: 'auth' };
    return this.authenticate({ mechanism: 'PLAIN', username: plain.authcid, authzid: plain.authzid, password: plain.passwd });
  }

  private finishCramMd5(challenge: string, message: Buffer): Outcome {
    const answer = decodeCramMd5Response(message);
    if (!answer.ok) return protocolError(NAME_DIGEST_FAILURE[answer.reason]);
    this.lastUser = answer.username;
    return this.authenticate({ mechanism: 'CRAM-MD5', username: answer.username, challenge, response: answer.digest });
  }

  /** An OAUTHBEARER / XOAUTH2 message: the token goes to the host, which validates it and maps its user. */
  private finishBearer(mech: 'OAUTHBEARER' | 'XOAUTH2', message: Buffer): Outcome {
    const parsed = mech === 'OAUTHBEARER' ? decodeOAuthBearer(message) : decodeXOAuth2(message);
    if (!parsed.ok) return protocolError(BEARER_FAILURE[parsed.reason]);
    if (parsed.requestedUser !== '') this.lastUser = parsed.requestedUser;
    return this.authenticate({ mechanism: mech, token: parsed.token, requestedUser: parsed.requestedUser });
  }

  /** The EXTERNAL authorization identity ('' when empty): the host checks it against the certificate's identity. */
  private finishExternal(raw: Buffer): Outcome {
    const identity = this.externalIdentity;
    if (identity === undefined) throw new GatewayError('INTERNAL', 'AUTH EXTERNAL without an externalIdentity');
    const requestedUser = decodeUtf8Strict(raw);
    if (requestedUser === undefined || hasForbiddenCredentialChars(requestedUser)) return protocolError('BAD_CHARACTERS');
    this.lastUser = identity;
    return this.authenticate({ mechanism: 'EXTERNAL', requestedUser });
  }

  private loginUsername(raw: Buffer): Outcome {
    const username = decodeUtf8Strict(raw);
    if (username === undefined) return protocolError('BAD_CHARACTERS');
    const problem = credentialProblem(username);
    if (problem) return protocolError(problem);
    this.lastUser = username;
    this.beginSasl({ mech: 'LOGIN', step: 'password', username });
    return [reply(loginPrompt('password'))];
  }

  private loginPassword(username: string, raw: Buffer): Outcome {
    const password = decodeUtf8Strict(raw);
    if (password === undefined) return protocolError('BAD_CHARACTERS');
    const problem = credentialProblem(password);
    if (problem) return protocolError(problem);
    return this.authenticate({ mechanism: 'LOGIN', username, password });
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
