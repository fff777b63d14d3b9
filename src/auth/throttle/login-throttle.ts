/**
 * Brute-force protection for logins (auth.throttle), after Dovecot's anvil:
 * failed logins are counted per client address (an IPv6 client by its /64)
 * and per claimed user name; the reply to the Nth consecutive failure waits
 * `delays[N-1]` (the last value repeats), and a key with `maxFailures`
 * failures within `window` is refused for `lockout` ([LOGIN-DELAY]) before
 * its credentials are even checked. A successful login clears the counters
 * of its address and user. Clients in `trustedNetworks` are exempt.
 *
 * The counters live in a FailureStore: in this process (MemoryFailureStore,
 * bounded) or in Redis (RedisFailureStore), so replicas share them.
 *
 * Repeated passwords (`repeatedPasswords`, like Dovecot's auth penalty): a
 * phone retrying its owner's old password every few minutes must not lock
 * the owner out, while guessing still must. So a failed password is
 * remembered per user as a fingerprint (passwordFingerprint: a truncated
 * HMAC-SHA-256 of user and password under the store's fingerprint secret),
 * the user's last `repeatedPasswords` for `window`; a failure whose
 * fingerprint is among them still waits its delay and gets its -ERR, but
 * adds nothing to the address's and user's counters. A login without a
 * password (Kerberos, EXTERNAL, APOP / CRAM-MD5 digests, a refused GSSAPI
 * token) always counts. The secret belongs to the store, so whoever shares
 * the counters shares the fingerprints: random per memory store (the
 * primary's, for workers), created once in Redis (`<prefix>fingerprint-secret`,
 * SET NX) for every replica.
 *
 * Store trouble fails OPEN: a login is never refused because the store
 * cannot answer, and a failure then waits the first configured delay (the
 * steady-state slowdown, no progression, no lockout). Each store error is
 * reported, at most once a minute in the log. The throttle never stores,
 * logs or sends a password: it gets the client address, the name the client
 * claimed and, for a password login, the password only to fingerprint it.
 *
 * This module is the policy (LoginThrottle); the stores, the keys and the
 * config glue are its neighbours in src/auth/throttle/.
 */
import type { Logger } from 'pino';
import { TrustedNetworks } from '../../net/index.js';
import { addressKey, passwordFingerprint, userKey } from './keys.js';
import type { FailureStore } from './store.js';

export interface LoginThrottleOptions {
  readonly store: FailureStore;
  /** Delay before answering the Nth consecutive failure is delays[N-1]; the last value repeats. */
  readonly delays: readonly number[];
  /** Failures of one key (within windowMs) that lock it. */
  readonly maxFailures: number;
  /** A key's counter is forgotten this long after its latest failure. */
  readonly windowMs: number;
  /** How long a key stays locked. */
  readonly lockoutMs: number;
  /**
   * Failed passwords remembered per user (for windowMs): a failure repeating
   * one is delayed but not counted. Default 0: every failure counts.
   */
  readonly repeatedPasswords?: number;
  /** Exempt client networks (CIDR, as parsed by the config schema). */
  readonly trustedNetworks?: readonly string[];
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Clock for the once-a-minute error log (tests). Default Date.now. */
  readonly now?: () => number;
  /** Called on every store error, logged or not (the metric; the log is rate-limited). */
  readonly onStoreError?: () => void;
}

export interface ThrottleCheck {
  /** Refuse the login without checking its credentials. */
  readonly locked: boolean;
  /** The client is in trustedNetworks: the throttle does not apply. */
  readonly exempt: boolean;
}

export interface ThrottleFailure {
  /** Wait this long before answering (0 when exempt: auth.failureDelay applies then). */
  readonly delayMs: number;
  /** This failure locked the address or the user. */
  readonly locked: boolean;
  /** The highest consecutive-failure count among the keys (0 when exempt or the store failed). */
  readonly failures: number;
  readonly exempt: boolean;
  /** Present when the password was one of the user's recent failed ones: nothing was counted. */
  readonly repeated?: true;
}

/** How often a failing store is logged at most. */
const ERROR_LOG_INTERVAL_MS = 60_000;

export class LoginThrottle {
  private readonly trusted: TrustedNetworks;
  private readonly now: () => number;
  private lastErrorLog = Number.NEGATIVE_INFINITY;
  private unlogged = 0;
  private errors = 0;
  /** The store failed since its last success (to log the recovery). */
  private storeDown = false;
  /** The store's fingerprint secret, asked once (again after a failure). */
  private secret: Promise<string> | undefined;

  constructor(private readonly options: LoginThrottleOptions) {
    if (options.delays.length === 0) throw new Error('LoginThrottle: delays must not be empty');
    this.trusted = new TrustedNetworks(options.trustedNetworks ?? []);
    this.now = options.now ?? Date.now;
  }

  get store(): FailureStore {
    return this.options.store;
  }

  /** Store errors so far (calls failed open and connection errors), logged or not: for a metric. */
  get storeErrors(): number {
    return this.errors;
  }

  /** `ip:<address or IPv6 /64>` and `user:<name>`, each when known. */
  keysFor(ip: string, user: string): string[] {
    const keys: string[] = [];
    const a = addressKey(ip);
    if (a !== undefined) keys.push(`ip:${a}`);
    const u = userKey(user);
    if (u !== undefined) keys.push(`user:${u}`);
    return keys;
  }

  isTrusted(ip: string): boolean {
    return this.trusted.has(ip);
  }

  /** The delay before answering the `n`th consecutive failure. */
  delayFor(n: number): number {
    const { delays } = this.options;
    if (n <= 0) return 0;
    return delays[Math.min(n, delays.length) - 1] ?? 0;
  }

  /** Before checking credentials: is the address or the user locked out? */
  async check(ip: string, user: string): Promise<ThrottleCheck> {
    if (this.isTrusted(ip)) return { locked: false, exempt: true };
    const keys = this.keysFor(ip, user);
    try {
      const locked = await this.options.store.isLocked(keys);
      this.storeOk();
      return { locked, exempt: false };
    } catch (err) {
      this.storeError(err);
      return { locked: false, exempt: false };
    }
  }

  /**
   * After a failed login: count it, lock keys that reached maxFailures, and
   * say how long to wait. `password`: the failed password of a password
   * login (USER/PASS, PLAIN, LOGIN), undefined for every other kind; a
   * password among the user's recent failed ones is not counted (only
   * fingerprinted, never kept).
   */
  async failed(ip: string, user: string, password?: string): Promise<ThrottleFailure> {
    if (this.isTrusted(ip)) return { delayMs: 0, locked: false, failures: 0, exempt: true };
    const { store, windowMs, maxFailures, lockoutMs } = this.options;
    const keys = this.keysFor(ip, user);
    try {
      if (await this.repeatedPassword(user, password)) {
        // Waits as long as the current count says (at least the first delay); counts nothing.
        const failures = Math.max(0, ...(await store.failures(keys)));
        this.storeOk();
        return { delayMs: this.delayFor(Math.max(1, failures)), locked: false, failures, exempt: false, repeated: true };
      }
      const counts = await store.recordFailure(keys, windowMs);
      const failures = Math.max(0, ...counts);
      const over = keys.filter((_, i) => (counts[i] ?? 0) >= maxFailures);
      if (over.length > 0) {
        await store.lock(over, lockoutMs);
        this.options.log?.warn({ event: 'login-throttle', locked: over, failures, lockoutMs }, 'login throttle: locked out after repeated failures');
      }
      this.storeOk();
      return { delayMs: this.delayFor(failures), locked: over.length > 0, failures, exempt: false };
    } catch (err) {
      this.storeError(err);
      return { delayMs: this.delayFor(1), locked: false, failures: 0, exempt: false };
    }
  }

  /** Whether `password` is one of the user's recent failed ones (and remember it either way). */
  private async repeatedPassword(user: string, password: string | undefined): Promise<boolean> {
    const keep = this.options.repeatedPasswords ?? 0;
    const u = userKey(user);
    if (password === undefined || keep <= 0 || u === undefined) return false;
    const secret = await this.fingerprintSecret();
    const fingerprint = { key: `user:${u}`, value: passwordFingerprint(secret, u, password), keep };
    return this.options.store.rememberPassword(fingerprint, this.options.windowMs);
  }

  private fingerprintSecret(): Promise<string> {
    if (!this.secret) {
      const asked = this.options.store.fingerprintSecret();
      this.secret = asked;
      // Not kept when it failed: asked again next time.
      asked.catch(() => {
        if (this.secret === asked) this.secret = undefined;
      });
    }
    return this.secret;
  }

  /** After a successful login: forget the failures of its address and user (like anvil). */
  async succeeded(ip: string, user: string): Promise<void> {
    if (this.isTrusted(ip)) return;
    try {
      await this.options.store.clear(this.keysFor(ip, user));
      this.storeOk();
    } catch (err) {
      this.storeError(err);
    }
  }

  /**
   * A store problem: logged at most once a minute (with how many went
   * unlogged). Also fed by the Redis client's connection errors.
   */
  storeError(err: unknown): void {
    this.storeDown = true;
    this.errors++;
    this.options.onStoreError?.();
    const now = this.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    this.options.log?.error(
      { event: 'login-throttle', store: this.options.store.name, err: err instanceof Error ? err.message : String(err), unlogged: this.unlogged },
      'login throttle: failure store unavailable; failing open (no lockouts, first delay only)',
    );
    this.lastErrorLog = now;
    this.unlogged = 0;
  }

  close(): Promise<void> {
    return this.options.store.close();
  }

  private storeOk(): void {
    if (!this.storeDown) return;
    this.storeDown = false;
    this.options.log?.info({ event: 'login-throttle', store: this.options.store.name }, 'login throttle: failure store answering again');
  }
}
