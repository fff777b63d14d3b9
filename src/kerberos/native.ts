/**
 * Typing of popgate's MIT krb5 addon (native/build/Release/popgate_krb5.node,
 * built by `npm run build:native`). Only binding.ts loads it. Every method
 * returning a Promise runs on the libuv thread pool; failures reject with a
 * NativeKrb5Error. Types only (a plain .ts so dist/ gets the .d.ts too).
 */

/** What the addon rejects with. */
export interface NativeKrb5Error extends Error {
  /** krb5 error code (negative, ERROR_TABLE_BASE_krb5 + n), errno (positive), or GSS minor status. */
  readonly code: number;
  /** GSS major status when a GSS call failed. */
  readonly gssMajor?: number;
  /** Which step failed: init, config, rcache, keytab, rd_req, mk_rep, as, verify, acquire, accept, wrap, unwrap, gss. */
  readonly stage?: string;
  /** A KerberosFailure kind when the addon knows it for sure. */
  readonly hint?: string;
  /** DER KRB-ERROR (0x7e...) for a KPOP client (verifyApReq only). */
  readonly krbError?: Buffer;
}

export interface NativeApReqResult {
  readonly client: string;
  readonly server: string;
  readonly mutual: boolean;
  readonly apRep?: Buffer;
}

export interface NativeGssStep {
  readonly done: boolean;
  readonly output: Buffer;
  /** Set when done. */
  readonly client?: string;
}

/** What pamAuthenticate resolves with (native/src/pam.cc); it rejects only for bad arguments. */
export interface NativePamResult {
  readonly result: 'ok' | 'bad-password' | 'unknown-user' | 'disabled' | 'unavailable';
  /** Which call decided: start (pam_start), auth (pam_authenticate), account (pam_acct_mgmt). */
  readonly stage: 'start' | 'auth' | 'account';
  /** The PAM return code (PAM_SUCCESS = 0, PAM_AUTH_ERR = 7, ...). */
  readonly code: number;
  /** pam_strerror text, for logs. */
  readonly message: string;
}

export interface NativeGssContext {
  step(token: Buffer): Promise<NativeGssStep>;
  wrap(data: Buffer): Promise<Buffer>;
  unwrap(token: Buffer): Promise<Buffer>;
  /** Idempotent; deferred until a running step/wrap/unwrap ends. */
  dispose(): void;
}

export interface NativeAddon {
  verifyApReq(apReq: Buffer, keytab: string, servicePrincipals: string[], rcacheDir: string): Promise<NativeApReqResult>;
  /** Resolves true only; a wrong password etc. rejects with stage "as"/"verify" (binding.ts decides). */
  verifyPassword(principal: string, password: Buffer, keytab: string, servicePrincipal: string): Promise<boolean>;
  checkKeytab(keytab: string, principals: string[]): Promise<void>;
  /**
   * Linux-PAM password check for `service` (pam_authenticate, then pam_acct_mgmt
   * when accountCheck). The conversation answers only the password prompt.
   * `rhost` (the client's address), when given, is set as PAM_RHOST.
   */
  pamAuthenticate(service: string, user: string, password: Buffer, accountCheck: boolean, rhost?: string): Promise<NativePamResult>;
  /** Every pool thread re-creates its krb5_context (re-reads krb5.conf / KRB5_CONFIG) at its next call. */
  reload(): void;
  /** No I/O in the constructor: the credential is acquired in the first step(). */
  GssContext: new (keytab: string, servicePrincipals: string[], rcacheDir: string) => NativeGssContext;
}
