/**
 * The typed surface of popgate's MIT krb5 addon (native/). Everything here
 * runs off the event loop; failures reject with KerberosError.
 */

export interface AcceptorOptions {
  /** Keytab path, passed per call (KRB5_KTNAME is only MIT's fallback). */
  readonly keytab: string;
  /**
   * Service principals this gateway answers as (e.g. `pop/mail.example.com@EXAMPLE.COM`).
   * A ticket for any other principal in the keytab is refused.
   */
  readonly servicePrincipals: readonly string[];
  /** Replay cache directory (must exist); replays are refused across processes sharing it. */
  readonly rcacheDir: string;
}

/** A verified krb5_sendauth AP-REQ (KPOP). */
export interface ApReqResult {
  /** Client principal as Kerberos returned it (unparsed form, e.g. `alice@EXAMPLE.COM`). */
  readonly client: string;
  /** The ticket's server principal. */
  readonly server: string;
  /** AP options had MUTUAL-REQUIRED (0x20000000): send `apRep`. */
  readonly mutual: boolean;
  /** DER AP-REP (0x6f...) when mutual, else undefined. */
  readonly apRep: Buffer | undefined;
}

export type KerberosFailure =
  | 'replay' // KRB_AP_ERR_REPEAT (34)
  | 'skew' // KRB_AP_ERR_SKEW (37)
  | 'wrong-principal' // ticket for a principal we do not serve (35) or not in the keytab
  | 'bad-token' // malformed / undecryptable request
  | 'bad-password' // realm password check: wrong password or unknown principal
  | 'kdc-unreachable' // no KDC answered
  | 'timeout' // popgate's own deadline on a KDC call
  | 'config' // keytab/rcache/principal problems on our side
  | 'other';

export class KerberosError extends Error {
  readonly failure: KerberosFailure;
  /** MIT krb5 / GSS error code, when there is one. */
  readonly krbCode: number | undefined;
  /** KRB-ERROR (DER, 0x7e...) to send a KPOP client before closing, when one was built. */
  readonly krbError: Buffer | undefined;

  constructor(failure: KerberosFailure, message: string, opts: { krbCode?: number; krbError?: Buffer; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'KerberosError';
    this.failure = failure;
    this.krbCode = opts.krbCode;
    this.krbError = opts.krbError;
  }
}

/** One server-side GSSAPI (krb5 mech only, no SPNEGO) security context. */
export interface GssAcceptor {
  /** Feed the client's token; `output` goes back to the client (may be empty). */
  step(token: Buffer): Promise<{ readonly done: boolean; readonly output: Buffer }>;
  /** The authenticated client principal once `done`. */
  readonly client: string | undefined;
  /** RFC 4121 wrap without confidentiality (RFC 4752 security-layer negotiation). */
  wrap(data: Buffer): Promise<Buffer>;
  unwrap(token: Buffer): Promise<Buffer>;
  /** Release the context (idempotent). */
  dispose(): void;
}

export interface PasswordCheck {
  /** Principal to authenticate, e.g. `alice@EXAMPLE.COM`. */
  readonly principal: string;
  readonly password: string;
  readonly keytab: string;
  /** The service principal whose key verifies the KDC's answer (fail closed without it). */
  readonly servicePrincipal: string;
}

export interface KerberosBinding {
  verifyApReq(apReq: Buffer, opts: AcceptorOptions): Promise<ApReqResult>;
  createGssAcceptor(opts: AcceptorOptions): GssAcceptor;
  /** Resolves true/false for a definite answer; rejects for KDC/config trouble. */
  verifyPassword(check: PasswordCheck): Promise<boolean>;
  /** Check keytab readability and that it holds each principal (start-up/SIGHUP). */
  checkKeytab(keytab: string, principals: readonly string[]): Promise<void>;
}
