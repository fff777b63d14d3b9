import type { ErrorCode } from '../errors.js';

/** Credentials a client presented with USER/PASS, AUTH PLAIN or AUTH LOGIN. */
export interface PasswordCredentials {
  readonly mechanism: 'USER' | 'PLAIN' | 'LOGIN';
  /** The identity whose password is checked (RFC 4616 authcid). */
  readonly username: string;
  /** RFC 4616 authzid when the client sent a non-empty one (always equal to username: others are refused). */
  readonly authzid?: string;
  readonly password: string;
}

/**
 * A login Kerberos already authenticated: AUTH GSSAPI (RFC 4752) or a KPOP
 * session (krb5_sendauth before the greeting). No password: the host maps
 * `principal` to a local user and checks `requestedUser` against it.
 */
export interface KerberosCredentials {
  readonly mechanism: 'GSSAPI' | 'KPOP';
  /** The client principal as Kerberos authenticated it (e.g. `alice@EXAMPLE.COM`). */
  readonly principal: string;
  /**
   * KPOP: the USER name. GSSAPI: the RFC 4752 authorization identity, '' when
   * the client sent none. Never contains CR, LF or NUL.
   */
  readonly requestedUser: string;
}

/**
 * RFC 1939 APOP or RFC 2195 CRAM-MD5: the client digested `challenge` (the
 * greeting timestamp / the challenge the session sent) with its secret.
 */
export interface ChallengeCredentials {
  readonly mechanism: 'APOP' | 'CRAM-MD5';
  readonly username: string;
  readonly challenge: string;
  /** Lowercase hex MD5 / HMAC-MD5 digest. */
  readonly response: string;
}

/**
 * SASL EXTERNAL (RFC 4422 appendix A): the TLS client certificate the host
 * verified is the credential; the host maps it to a user and checks
 * `requestedUser` (the authzid, '' if none) against it.
 */
export interface ExternalCredentials {
  readonly mechanism: 'EXTERNAL';
  readonly requestedUser: string;
}

/**
 * SASL OAUTHBEARER (RFC 7628) or XOAUTH2: an OAuth 2.0 bearer token. The host
 * validates it, maps its claims to a user and checks `requestedUser` (the
 * OAUTHBEARER authzid / XOAUTH2 `user=`, '' if none) against that user. On
 * failure the host answers `loginFailed` with an `errorChallenge` (RFC 7628
 * section 3.2.2) for the session to send before the `-ERR`.
 */
export interface BearerCredentials {
  readonly mechanism: 'OAUTHBEARER' | 'XOAUTH2';
  readonly token: string;
  readonly requestedUser: string;
}

/**
 * SCRAM-SHA-256[-PLUS] (RFC 5802, 7677): the host's SCRAM exchange
 * (`saslStep` actions) already proved the client knows `username`'s password
 * and sent the server signature; only authorising and the backend login remain.
 */
export interface ScramCredentials {
  readonly mechanism: 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
  readonly username: string;
  /** The authzid of the client-first message, '' when absent. */
  readonly requestedUser: string;
}

/** What an `authenticate` action asks the host to verify. */
export type LoginCredentials = PasswordCredentials | KerberosCredentials | ChallengeCredentials | ExternalCredentials | BearerCredentials | ScramCredentials;

/**
 * Tells Kerberos logins from the others. (Comparing `mechanism` with `!==`
 * does not narrow the union: each side's discriminant is itself a union.)
 */
export function isKerberosCredentials(c: LoginCredentials): c is KerberosCredentials {
  return c.mechanism === 'GSSAPI' || c.mechanism === 'KPOP';
}

/** USER/PASS, AUTH PLAIN and AUTH LOGIN: a password to verify. */
export function isPasswordCredentials(c: LoginCredentials): c is PasswordCredentials {
  return c.mechanism === 'USER' || c.mechanism === 'PLAIN' || c.mechanism === 'LOGIN';
}

/** APOP and AUTH CRAM-MD5: a digest of a challenge, for `PasswordVerifier.verifyChallenge`. */
export function isChallengeCredentials(c: LoginCredentials): c is ChallengeCredentials {
  return c.mechanism === 'APOP' || c.mechanism === 'CRAM-MD5';
}

/** AUTH EXTERNAL: the TLS client certificate (the session's `externalIdentity`) is the credential. */
export function isExternalCredentials(c: LoginCredentials): c is ExternalCredentials {
  return c.mechanism === 'EXTERNAL';
}

/** AUTH OAUTHBEARER and XOAUTH2: a bearer token to validate. */
export function isBearerCredentials(c: LoginCredentials): c is BearerCredentials {
  return c.mechanism === 'OAUTHBEARER' || c.mechanism === 'XOAUTH2';
}

/** AUTH SCRAM-SHA-256[-PLUS]: proved by the host's SCRAM exchange. */
export function isScramCredentials(c: LoginCredentials): c is ScramCredentials {
  return c.mechanism === 'SCRAM-SHA-256' || c.mechanism === 'SCRAM-SHA-256-PLUS';
}

/** The mechanisms whose messages the host reads (src/auth), the session only carrying them (`saslStep`). */
export type HostSaslMechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';

/** The host's answer to a `gssAccept` action (one `GssAcceptor.step` call). */
export interface GssAcceptResult {
  /** The security context is established (GSS_S_COMPLETE). */
  readonly done: boolean;
  /** Token for the client; may be empty. */
  readonly output: Buffer;
  /** The authenticated client principal; required when `done`. */
  readonly principal?: string | undefined;
}

/**
 * What the protocol core asks its host (src/server) to do. Replies are single
 * lines without CRLF; the host writes consecutive replies in one write.
 *
 * The `gss*` actions each put the session in `awaiting === 'gss'`: no line is
 * fed until the host answers with the matching method, or with `gssFailed()`.
 */
export type Pop3Action =
  | { readonly kind: 'reply'; readonly line: string }
  /** Discard every buffered plaintext byte, then run the TLS handshake and call `tlsStarted()`. */
  | { readonly kind: 'startTls' }
  /**
   * Verify the credentials and open the backend session, then call
   * `loginSucceeded()` or `loginFailed()`. No line is fed until then.
   * Password credentials go to `PasswordVerifier.verify`, challenge
   * credentials (APOP, CRAM-MD5) to `verifyChallenge`; Kerberos and EXTERNAL
   * ones were authenticated by the connection (principal / client
   * certificate) and only need mapping and authorising.
   */
  | { readonly kind: 'authenticate'; readonly credentials: LoginCredentials }
  /**
   * AUTH GSSAPI: pass the client's context token to the connection's GSS
   * acceptor (`GssAcceptor.step`), then call `gssAcceptResult()` or
   * `gssFailed()`. `first` marks the first token of an exchange: start a fresh
   * acceptor (disposing of any earlier one).
   */
  | { readonly kind: 'gssAccept'; readonly token: Buffer; readonly first: boolean }
  /** Wrap `data` without confidentiality (`GssAcceptor.wrap`), then call `gssWrapped()` or `gssFailed()`. */
  | { readonly kind: 'gssWrap'; readonly data: Buffer }
  /** Unwrap the client's token (`GssAcceptor.unwrap`), then call `gssUnwrapped()` or `gssFailed()`. */
  | { readonly kind: 'gssUnwrap'; readonly token: Buffer }
  /**
   * A host-read SASL mechanism (SCRAM): hand the client's decoded message to
   * the connection's exchange for `mechanism` (`first`: the client-first
   * message, start a fresh exchange), then call `saslContinue()`,
   * `saslProved()` or `saslFailed()`. Awaiting 'sasl' until then.
   */
  | { readonly kind: 'saslStep'; readonly mechanism: HostSaslMechanism; readonly data: Buffer; readonly first: boolean }
  /** The client is logged in: hand the socket and any buffered bytes to the backend splice. */
  | { readonly kind: 'relay' }
  /** Flush the preceding replies, then close the connection. */
  | { readonly kind: 'close'; readonly reason: ErrorCode | 'QUIT' };

/**
 * SASL mechanisms the session implements, and where each is usable:
 *
 * - PLAIN, LOGIN: carry a password; TLS or allowPlaintextAuth needed.
 * - CRAM-MD5 (RFC 2195): carries an MD5 digest of a plaintext-equivalent
 *   secret (cheap to brute-force offline from a captured exchange); the same
 *   rule as PLAIN. Needs `challengeFactory`.
 * - GSSAPI: never exposes a secret; usable on any channel.
 * - EXTERNAL (RFC 4422 appendix A): the verified TLS client certificate is
 *   the credential; usable only on TLS with `externalIdentity` set (never on
 *   plaintext, whatever allowPlaintextAuth says).
 * - OAUTHBEARER (RFC 7628), XOAUTH2: carry a bearer token, as good as a
 *   password while it lives; the same rule as PLAIN.
 * - SCRAM-SHA-256 (RFC 7677): no password on the wire, but a captured
 *   exchange can be attacked offline; the same rule as PLAIN.
 *   SCRAM-SHA-256-PLUS binds the exchange to the TLS channel: TLS only.
 */
export type SaslMechanism = 'PLAIN' | 'LOGIN' | 'GSSAPI' | 'CRAM-MD5' | 'EXTERNAL' | 'OAUTHBEARER' | 'XOAUTH2' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';

/** Every SASL mechanism the session implements. */
export const SASL_MECHANISMS: readonly SaslMechanism[] = [
  'PLAIN',
  'LOGIN',
  'GSSAPI',
  'CRAM-MD5',
  'EXTERNAL',
  'OAUTHBEARER',
  'XOAUTH2',
  'SCRAM-SHA-256',
  'SCRAM-SHA-256-PLUS',
];

export interface Pop3SessionOptions {
  /** The channel is already protected by TLS (pop3s listener, or after STLS). */
  readonly tls: boolean;
  /** The listener can upgrade with STLS (kind pop3 with a certificate). */
  readonly stlsAvailable: boolean;
  /** Accept USER/PASS and PLAIN/LOGIN without TLS (trusted networks only). */
  readonly allowPlaintextAuth: boolean;
  /** SASL mechanisms enabled, in advertised order. */
  readonly saslMechanisms: readonly SaslMechanism[];
  /** Text after `+OK ` in the greeting. */
  readonly greeting: string;
  /** IMPLEMENTATION capability text; omitted from CAPA when undefined. */
  readonly implementation?: string;
  /** Capabilities of the backend advertised before login (e.g. TOP, UIDL). */
  readonly backendCapabilities: readonly string[];
  /** Failed logins allowed on one connection before it is closed. */
  readonly maxAuthAttempts: number;
  /** Unknown/bad commands allowed before the connection is closed. */
  readonly maxErrors: number;
  /** RFC 2449 command line cap in octets including CRLF (255). */
  readonly maxCommandLine: number;
  /** Cap for SASL continuation lines (base64 tokens, several KiB). */
  readonly maxSaslLine: number;
  /**
   * KPOP: the client principal a successful krb5_sendauth handshake
   * authenticated, set by the host before `greet()`. The session then offers
   * only USER/PASS (any channel, PASS value ignored) and emits KPOP
   * credentials; STLS and AUTH are refused.
   */
  readonly kerberosPrincipal?: string | undefined;
  /**
   * RFC 1939 APOP: a fresh timestamp for this connection, generated by the
   * host (the core stays deterministic), in msg-id form `<left@right>`: both
   * parts non-empty printable ASCII without space, `<`, `>` or `@`, at most
   * 200 octets in all (see `isValidChallengeString`), e.g.
   * `<1896.697170952@dbc.mtview.ca.us>`. It must never repeat: random bytes
   * plus the time, e.g. `<${randomBytes(12).toString('hex')}.${Date.now()}@${hostname}>`.
   * When set, APOP is enabled and the greeting ends with the timestamp (`<`
   * and `>` are then removed from the greeting text so clients that take the
   * first `<...>` of the greeting find it). Not on KPOP sessions (ignored),
   * and not on a plaintext connection that can never carry password logins
   * (no STLS, no allowPlaintextAuth): there the greeting shows no timestamp
   * and APOP is an unknown command. An invalid value throws RangeError.
   */
  readonly apopTimestamp?: string | undefined;
  /**
   * AUTH CRAM-MD5 (RFC 2195): called once per `AUTH CRAM-MD5` command for a
   * fresh challenge of the same msg-id form as `apopTimestamp` (e.g.
   * `<random.timestamp@host>`). Required when `saslMechanisms` lists
   * CRAM-MD5 (RangeError otherwise). A value not of that form is a host bug:
   * `feedLine` throws GatewayError('INTERNAL').
   */
  readonly challengeFactory?: (() => string) | undefined;
  /**
   * AUTH EXTERNAL: the identity the host derived from the verified TLS client
   * certificate (e.g. the subject CN mapped to a user), for pop3s listeners;
   * after STLS pass it to `tlsStarted({ externalIdentity })` instead.
   * EXTERNAL is advertised and accepted only while this is set, the channel is
   * TLS and `saslMechanisms` lists EXTERNAL. Non-empty, no CR/LF/NUL, and only
   * with `tls: true` (RangeError otherwise). The session never puts it in the
   * credentials (the host knows it); it is only the log name (`username`).
   */
  readonly externalIdentity?: string | undefined;
}

export type { ErrorCode };
