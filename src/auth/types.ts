/** A request to check a password, with the context verifiers may use. */
export interface PasswordRequest {
  readonly username: string;
  readonly password: string;
  /** USER, PLAIN or LOGIN. */
  readonly mechanism: string;
  readonly remoteAddress?: string;
  readonly tls: boolean;
}

export type VerifyOutcome =
  /** `user` is the canonical user name used for the backend login. */
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly reason: 'unknown-user' | 'bad-password' | 'disabled' };

/**
 * Checks passwords. Resolves with an outcome for a definite answer; rejects
 * with GatewayError('VERIFIER_UNAVAILABLE') when it cannot answer (file
 * unreadable, service down) so the client gets [SYS/TEMP], not [AUTH].
 */
export interface PasswordVerifier {
  readonly name: string;
  verify(request: PasswordRequest): Promise<VerifyOutcome>;
  /** Stop watchers/timers. */
  close(): void;
}
