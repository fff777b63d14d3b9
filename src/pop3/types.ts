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

/** What an `authenticate` action asks the host to verify. */
export type LoginCredentials = PasswordCredentials | KerberosCredentials | ChallengeCredentials | ExternalCredentials;

/**
 * Tells Kerberos logins from password logins. (Comparing `mechanism` with
 * `!==` does not narrow the union: each side's discriminant is itself a union.)
 */
export function isKerberosCredentials(c: LoginCredentials): c is KerberosCredentials {
  return c.mechanism === 'GSSAPI' || c.mechanism === 'KPOP';
}

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
  /** The client is logged in: hand the socket and any buffered bytes to the backend splice. */
  | { readonly kind: 'relay' }
  /** Flush the preceding replies, then close the connection. */
  | { readonly kind: 'close'; readonly reason: string };

/**
 * SASL mechanisms the session implements. PLAIN and LOGIN carry a password
 * (TLS or allowPlaintextAuth needed); GSSAPI never exposes one and is usable
 * on any channel.
 */
export type SaslMechanism = 'PLAIN' | 'LOGIN' | 'GSSAPI';

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
}

export type { ErrorCode };
