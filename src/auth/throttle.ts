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
 * Store trouble fails OPEN: a login is never refused because the store
 * cannot answer, and a failure then waits the first configured delay (the
 * steady-state slowdown, no progression, no lockout). Each store error is
 * reported, at most once a minute in the log. The throttle never sees
 * passwords: it gets the client address and the name the client claimed.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { createClient } from 'redis';
import type { AuthConfig } from '../config/schema.js';
import { addressKey as keyOf, TrustedNetworks } from '../net/index.js';

/** Failure counters and locks by key (`ip:<address>`, `user:<name>`). */
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
  /** Forgets the failure counters of the keys (locks stay until they expire). */
  clear(keys: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// In memory

export const MEMORY_STORE_MAX_ENTRIES = 100_000;

export interface MemoryFailureStoreOptions {
  /** Keys kept at most; past it the least recently updated key is dropped. Default 100 000. */
  readonly maxEntries?: number;
  /** Clock in milliseconds (tests). Default Date.now. */
  readonly now?: () => number;
  /** How often expired keys are swept; 0: never (call sweep()). Default 60 s. */
  readonly sweepIntervalMs?: number;
}

interface MemoryEntry {
  failures: number;
  failuresUntil: number;
  lockedUntil: number;
}

/**
 * Counters of this process only. Bounded: at most `maxEntries` keys, the
 * least recently updated dropped first (an address spraying user names
 * locks its own `ip:` key long before it could push out much else), and
 * expired keys are swept periodically.
 */
export class MemoryFailureStore implements FailureStore {
  readonly name = 'memory';
  /** Insertion order is update order: the first key is the least recently updated. */
  private readonly entries = new Map<string, MemoryEntry>();
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(options: MemoryFailureStoreOptions = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? MEMORY_STORE_MAX_ENTRIES);
    this.now = options.now ?? Date.now;
    const every = options.sweepIntervalMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => this.sweep(), every);
      this.timer.unref();
    }
  }

  /** Keys held (expired ones until the next sweep or access). */
  get size(): number {
    return this.entries.size;
  }

  /** Drops every expired key; returns how many went. */
  sweep(): number {
    const now = this.now();
    let removed = 0;
    for (const key of [...this.entries.keys()]) if (this.live(key, now) === undefined) removed++;
    return removed;
  }

  recordFailure(keys: readonly string[], windowMs: number): Promise<number[]> {
    const now = this.now();
    return Promise.resolve(
      keys.map((key) => {
        const e = this.live(key, now) ?? { failures: 0, failuresUntil: 0, lockedUntil: 0 };
        e.failures += 1;
        e.failuresUntil = now + windowMs;
        this.touch(key, e);
        return e.failures;
      }),
    );
  }

  failures(keys: readonly string[]): Promise<number[]> {
    const now = this.now();
    return Promise.resolve(keys.map((key) => this.live(key, now)?.failures ?? 0));
  }

  lock(keys: readonly string[], ms: number): Promise<void> {
    const now = this.now();
    for (const key of keys) {
      const e = this.live(key, now) ?? { failures: 0, failuresUntil: 0, lockedUntil: 0 };
      e.lockedUntil = now + ms;
      this.touch(key, e);
    }
    return Promise.resolve();
  }

  isLocked(keys: readonly string[]): Promise<boolean> {
    const now = this.now();
    return Promise.resolve(keys.some((key) => (this.live(key, now)?.lockedUntil ?? 0) > now));
  }

  clear(keys: readonly string[]): Promise<void> {
    const now = this.now();
    for (const key of keys) {
      const e = this.live(key, now);
      if (!e) continue;
      e.failures = 0;
      if (e.lockedUntil <= now) this.entries.delete(key);
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.entries.clear();
    return Promise.resolve();
  }

  /** The key's entry with expired parts zeroed; undefined (and dropped) when nothing is left. */
  private live(key: string, now: number): MemoryEntry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.failuresUntil <= now) e.failures = 0;
    if (e.failures === 0 && e.lockedUntil <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Marks the key most recently updated, then enforces the bound. */
  private touch(key: string, e: MemoryEntry): void {
    this.entries.delete(key);
    this.entries.set(key, e);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }
}

// ---------------------------------------------------------------------------
// Redis

/** Deadline for one Redis call and for the first connection at startup. */
export const REDIS_TIMEOUT_MS = 1_000;

export interface RedisFailureStoreOptions {
  /** redis:// or rediss:// URL (may carry user:password@ and a /db number). */
  readonly url: string;
  /** Prefix of every key popgate writes (`<prefix>fail:<key>`, `<prefix>lock:<key>`). */
  readonly keyPrefix: string;
  /** Deadline for one call, and for the first connection in connect(). Default REDIS_TIMEOUT_MS. */
  readonly timeoutMs?: number;
  /** Connection trouble (the client keeps reconnecting by itself). */
  readonly onError?: (err: Error) => void;
  /** The connection is (again) ready. */
  readonly onReady?: () => void;
}

type RedisClient = ReturnType<typeof createClient>;

/**
 * Counters in one Redis server (not Redis Cluster: a MULTI spans keys), so
 * every replica sees the same failures. Counters are INCR + PEXPIRE in one
 * MULTI; locks are `SET <prefix>lock:<key> 1 PX <ms>`. Calls fail fast while
 * the connection is down (no offline queue) and give up after `timeoutMs`.
 */
export class RedisFailureStore implements FailureStore {
  readonly name = 'redis';
  private closed = false;

  private constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Creates the client and waits up to `timeoutMs` for the first
   * connection. Resolves either way: while Redis is unreachable the calls
   * reject at once (callers fail open) and the client keeps reconnecting.
   */
  static async connect(options: RedisFailureStoreOptions): Promise<RedisFailureStore> {
    const timeoutMs = options.timeoutMs ?? REDIS_TIMEOUT_MS;
    const client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: timeoutMs,
        // Keep trying, backing off to one attempt every 2 s.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), 2_000),
      },
    });
    // Without a listener an 'error' event would crash the process.
    client.on('error', (err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err))));
    client.on('ready', () => options.onReady?.());
    const connecting = client.connect();
    connecting.catch(() => {}); // reported through 'error'; a later rejection is not unhandled
    const store = new RedisFailureStore(client, options.keyPrefix, timeoutMs);
    try {
      await withDeadline(connecting, timeoutMs, 'redis connect');
    } catch (err) {
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
    return store;
  }

  /** Whether the connection is up now. */
  get ready(): boolean {
    return this.client.isReady;
  }

  async recordFailure(keys: readonly string[], windowMs: number): Promise<number[]> {
    if (keys.length === 0) return [];
    const multi = this.client.multi();
    for (const key of keys) multi.incr(this.failKey(key)).pExpire(this.failKey(key), windowMs);
    const replies = (await this.call(multi.exec())) as unknown[];
    return keys.map((_, i) => toCount(replies[2 * i]));
  }

  async failures(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const values = await this.call(this.client.mGet(keys.map((k) => this.failKey(k))));
    return keys.map((_, i) => toCount(values[i]));
  }

  async lock(keys: readonly string[], ms: number): Promise<void> {
    if (keys.length === 0) return;
    const multi = this.client.multi();
    for (const key of keys) multi.set(this.lockKey(key), '1', { expiration: { type: 'PX', value: Math.max(1, Math.round(ms)) } });
    await this.call(multi.exec());
  }

  async isLocked(keys: readonly string[]): Promise<boolean> {
    if (keys.length === 0) return false;
    return (await this.call(this.client.exists(keys.map((k) => this.lockKey(k))))) > 0;
  }

  async clear(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.call(this.client.del(keys.map((k) => this.failKey(k))));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      // QUIT when connected; while reconnecting there is nothing to say goodbye to.
      if (this.client.isReady) await withDeadline(this.client.close(), this.timeoutMs, 'redis close');
      else if (this.client.isOpen) this.client.destroy();
    } catch {
      try {
        this.client.destroy();
      } catch {
        // already closed
      }
    }
  }

  private call<T>(p: Promise<T>): Promise<T> {
    return withDeadline(p, this.timeoutMs, 'redis call');
  }

  private failKey(key: string): string {
    return `${this.prefix}fail:${key}`;
  }

  private lockKey(key: string): string {
    return `${this.prefix}lock:${key}`;
  }
}

function toCount(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : 0;
  return Number.isFinite(n) ? n : 0;
}

/** `p`, or a rejection after `ms`; a late rejection of `p` is swallowed. */
function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  p.catch(() => {});
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// Keys

/** User names longer than this are keyed by their SHA-256 (bounded key size). */
const MAX_USER_KEY = 128;

/**
 * The address part of a key (src/net/address-key.ts): IPv4 as is (IPv4-mapped
 * IPv6 too), IPv6 as its /64 network in canonical text (`2001:db8:1:2::/64`:
 * one end site; the spelling already in Redis), a zone dropped. Text that is
 * not an address is trimmed, lower-cased and cut to 64 characters (keys stay
 * bounded); an empty address has no key.
 */
export function addressKey(address: string): string | undefined {
  const bare = (address.split('%')[0] ?? '').trim().toLowerCase();
  if (bare === '') return undefined;
  return keyOf(bare, 'compressed') ?? bare.slice(0, 64);
}

/** The user part of a key: case-folded; long names hashed. */
export function userKey(user: string): string | undefined {
  if (user === '') return undefined;
  const folded = user.toLowerCase();
  return folded.length > MAX_USER_KEY ? `sha256:${createHash('sha256').update(folded).digest('hex')}` : folded;
}

// ---------------------------------------------------------------------------
// The throttle

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
  /** Exempt client networks (CIDR, as parsed by the config schema). */
  readonly trustedNetworks?: readonly string[];
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Clock for the once-a-minute error log (tests). Default Date.now. */
  readonly now?: () => number;
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
}

/** How often a failing store is logged at most. */
const ERROR_LOG_INTERVAL_MS = 60_000;

export class LoginThrottle {
  private readonly trusted: TrustedNetworks;
  private readonly now: () => number;
  private lastErrorLog = Number.NEGATIVE_INFINITY;
  private unlogged = 0;
  /** The store failed since its last success (to log the recovery). */
  private storeDown = false;

  constructor(private readonly options: LoginThrottleOptions) {
    if (options.delays.length === 0) throw new Error('LoginThrottle: delays must not be empty');
    this.trusted = new TrustedNetworks(options.trustedNetworks ?? []);
    this.now = options.now ?? Date.now;
  }

  get store(): FailureStore {
    return this.options.store;
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

  /** After a failed login: count it, lock keys that reached maxFailures, and say how long to wait. */
  async failed(ip: string, user: string): Promise<ThrottleFailure> {
    if (this.isTrusted(ip)) return { delayMs: 0, locked: false, failures: 0, exempt: true };
    const { store, windowMs, maxFailures, lockoutMs } = this.options;
    const keys = this.keysFor(ip, user);
    try {
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

export type ThrottleConfig = AuthConfig['throttle'];

/** The throttle auth.throttle describes (undefined when disabled), with its store connected. */
export async function createLoginThrottle(config: ThrottleConfig, log: Logger): Promise<LoginThrottle | undefined> {
  if (!config.enabled) return undefined;
  let throttle: LoginThrottle | undefined;
  const early: Error[] = [];
  const store: FailureStore =
    config.store === 'redis'
      ? await RedisFailureStore.connect({
          // The schema requires auth.throttle.redis when store is redis.
          url: config.redis!.url,
          keyPrefix: config.redis!.keyPrefix,
          onError: (err) => (throttle ? throttle.storeError(err) : early.push(err)),
          onReady: () => log.info({ event: 'login-throttle', store: 'redis' }, 'login throttle: redis connection ready'),
        })
      : new MemoryFailureStore();
  throttle = new LoginThrottle({
    store,
    delays: config.delays,
    maxFailures: config.maxFailures,
    windowMs: config.window,
    lockoutMs: config.lockout,
    trustedNetworks: config.trustedNetworks,
    log,
  });
  const last = early.at(-1);
  if (last) throttle.storeError(last);
  log.info(
    { event: 'login-throttle', store: store.name, maxFailures: config.maxFailures, delays: config.delays, trustedNetworks: config.trustedNetworks.length },
    'login throttle enabled',
  );
  return throttle;
}
