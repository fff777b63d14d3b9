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
 * What the protocol core asks its host (src/server) to do. Replies are single
 * lines without CRLF; the host writes consecutive replies in one write.
 */
export type Pop3Action =
  | { readonly kind: 'reply'; readonly line: string }
  /** Discard every buffered plaintext byte, then run the TLS handshake and call `tlsStarted()`. */
  | { readonly kind: 'startTls' }
  /**
   * Verify the credentials and open the backend session, then call
   * `loginSucceeded()` or `loginFailed()`. No line is fed until then.
   */
  | { readonly kind: 'authenticate'; readonly credentials: PasswordCredentials }
  /** The client is logged in: hand the socket and any buffered bytes to the backend splice. */
  | { readonly kind: 'relay' }
  /** Flush the preceding replies, then close the connection. */
  | { readonly kind: 'close'; readonly reason: string };

export type SaslMechanism = 'PLAIN' | 'LOGIN';

export interface Pop3SessionOptions {
  /** The channel is already protected by TLS (pop3s listener, or after STLS). */
  readonly tls: boolean;
  /** The listener can upgrade with STLS (kind pop3 with a certificate). */
  readonly stlsAvailable: boolean;
  /** Accept USER/PASS and PLAIN/LOGIN without TLS (trusted networks only). */
  readonly allowPlaintextAuth: boolean;
  /** SASL mechanisms enabled for password logins, in advertised order. */
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
}

export type { ErrorCode };
