/**
 * The failure store's contract: FailureStore (counters, locks and remembered
 * passwords by key) and PasswordFingerprint (what a store keeps of a failed
 * password). The stores beside this module implement it; LoginThrottle uses it.
 */

/** A failed password as the store keeps it: never the password, a keyed hash of it. */
export interface PasswordFingerprint {
  /** The user's throttle key (`user:<name>`): the fingerprints live beside its counter. */
  readonly key: string;
  /** passwordFingerprint() of the user and the failed password (hex). */
  readonly value: string;
  /** Fingerprints kept per user, the most recently failed first (at least 1). */
  readonly keep: number;
}

/** Failure counters and locks by key (`ip:<address>`, `user:<name>`), and the users' recent failed passwords. */
export interface FailureStore {
  /** Short name for logs: memory | redis. */
  readonly name: string;
  /**
   * Adds one failure to each key. A counter is forgotten `windowMs` after its
   * latest failure. Resolves to the counts after the increment, per key.
   */
  recordFailure(keys: readonly string[], windowMs: number): Promise<number[]>;
  /** Current failure counts, per key (0 when none). */
  failures(keys: readonly string[]): Promise<number[]>;
  /** Locks each key for `ms` from now (a running lock is restarted). */
  lock(keys: readonly string[], ms: number): Promise<void>;
  /** Whether any of the keys is locked. */
  isLocked(keys: readonly string[]): Promise<boolean>;
  /** Forgets the failure counters of the keys (locks stay until they expire; so do remembered passwords). */
  clear(keys: readonly string[]): Promise<void>;
  /**
   * Remembers a failed password of a user for `windowMs` from now (the
   * user's whole list gets that expiry). Resolves true when the fingerprint
   * was already among the user's last `keep` (a repeat: it moves to the
   * front), false when it is new (added in front, the oldest past `keep`
   * dropped). Atomic: of two concurrent failures with one new password,
   * exactly one sees it as new.
   */
  rememberPassword(fingerprint: PasswordFingerprint, windowMs: number): Promise<boolean>;
  /**
   * The key of passwordFingerprint(): the same for everyone who shares this
   * store (so replicas' fingerprints match), never logged.
   */
  fingerprintSecret(): Promise<string>;
  close(): Promise<void>;
}
