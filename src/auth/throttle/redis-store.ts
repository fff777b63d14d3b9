/**
 * Failure counters in Redis, shared by every replica: RedisFailureStore (its
 * keys, transactions, the Lua script that remembers passwords, the shared
 * fingerprint secret), over a link of redis-links.ts.
 */
import { randomBytes } from 'node:crypto';
import { asError, clusterLink, sentinelLink, standaloneLink, withDeadline, type RedisFailureStoreOptions, type RedisLink } from './redis-links.js';
import type { FailureStore, PasswordFingerprint } from './store.js';

/** Deadline for one Redis call and for the first connection at startup. */
export const REDIS_TIMEOUT_MS = 1_000;

/**
 * Counters in Redis, so every replica sees the same failures: one server
 * (url), the master Redis Sentinel names (sentinel; failovers followed), or
 * a Redis Cluster (cluster). Counters are INCR + PEXPIRE in one MULTI;
 * locks are `SET <prefix>lock:<key> 1 PX <ms>`. A user's recent failed
 * passwords are a list of fingerprints, `<prefix>pw:<user key>`, updated by
 * one Lua script (REMEMBER_PASSWORD_SCRIPT: LREM, LPUSH, LTRIM, PEXPIRE);
 * the fingerprint secret is `<prefix>fingerprint-secret`, created by the
 * first replica that needs it (SET NX, no expiry) and read by the others.
 * Calls fail fast while the connection is down (no offline queue) and give
 * up after `timeoutMs`.
 *
 * In a cluster a MULTI, MGET, EXISTS, DEL or script must stay in one slot.
 * There the address or user part of each key is a hash tag
 * (`<prefix>fail:{ip:192.0.2.1}`, `<prefix>lock:{ip:192.0.2.1}`,
 * `<prefix>pw:{user:gina}`: one slot per address or user) and every
 * operation is split into one call per tag. One server and Sentinel keep
 * the untagged names, so existing counters stay valid.
 */
export class RedisFailureStore implements FailureStore {
  readonly name = 'redis';
  private closed = false;

  private constructor(
    private readonly link: RedisLink,
    private readonly prefix: string,
    private readonly timeoutMs: number,
    /** Redis Cluster: hash-tagged keys, one call per tag. */
    private readonly clustered: boolean,
  ) {}

  /**
   * Creates the client and waits up to `timeoutMs` for the first
   * connection. Resolves either way: while Redis is unreachable the calls
   * reject at once (callers fail open) and the client keeps reconnecting.
   */
  static async connect(options: RedisFailureStoreOptions): Promise<RedisFailureStore> {
    const timeoutMs = options.timeoutMs ?? REDIS_TIMEOUT_MS;
    const given = [options.url, options.sentinel, options.cluster].filter((x) => x !== undefined).length;
    if (given !== 1) throw new Error('RedisFailureStore: give exactly one of url, sentinel, cluster');
    const link = options.sentinel
      ? sentinelLink(options, options.sentinel, timeoutMs)
      : options.cluster
        ? clusterLink(options, options.cluster, timeoutMs)
        : standaloneLink(options, options.url!, timeoutMs);
    const store = new RedisFailureStore(link, options.keyPrefix, timeoutMs, options.cluster !== undefined);
    try {
      await withDeadline(link.connected, timeoutMs, 'redis connect');
    } catch (err) {
      options.onError?.(asError(err));
    }
    return store;
  }

  /** Whether the connection is up now. */
  get ready(): boolean {
    return this.link.ready;
  }

  /** The Redis keys of a throttle key (`ip:...`, `user:...`): its counter, its lock, its failed passwords (users). */
  redisKeys(key: string): { fail: string; lock: string; passwords: string } {
    // Popgate's braces come first (the schema keeps them out of a cluster's prefix), so they are the hash tag.
    const part = this.clustered ? `{${key}}` : key;
    return { fail: `${this.prefix}fail:${part}`, lock: `${this.prefix}lock:${part}`, passwords: `${this.prefix}pw:${part}` };
  }

  /** Where the fingerprint secret every replica shares lives (one key, no hash tag needed). */
  get secretKey(): string {
    return `${this.prefix}fingerprint-secret`;
  }

  async recordFailure(keys: readonly string[], windowMs: number): Promise<number[]> {
    const counts = await this.perSlot(keys, async (group) => {
      const fails = group.map((k) => this.redisKeys(k).fail);
      const replies = await this.link.transaction(fails[0]!, fails.flatMap((f) => [['INCR', f], ['PEXPIRE', f, String(windowMs)]]));
      return group.map((_, i) => toCount(replies[2 * i]));
    });
    return counts.flat();
  }

  async failures(keys: readonly string[]): Promise<number[]> {
    const counts = await this.perSlot(keys, async (group) => {
      const fails = group.map((k) => this.redisKeys(k).fail);
      const values = (await this.link.command(fails[0]!, true, ['MGET', ...fails])) as unknown[];
      return group.map((_, i) => toCount(values[i]));
    });
    return counts.flat();
  }

  async lock(keys: readonly string[], ms: number): Promise<void> {
    const px = String(Math.max(1, Math.round(ms)));
    await this.perSlot(keys, (group) => {
      const locks = group.map((k) => this.redisKeys(k).lock);
      return this.link.transaction(locks[0]!, locks.map((l) => ['SET', l, '1', 'PX', px]));
    });
  }

  async isLocked(keys: readonly string[]): Promise<boolean> {
    const found = await this.perSlot(keys, async (group) => {
      const locks = group.map((k) => this.redisKeys(k).lock);
      return toCount(await this.link.command(locks[0]!, true, ['EXISTS', ...locks]));
    });
    return found.some((n) => n > 0);
  }

  async clear(keys: readonly string[]): Promise<void> {
    await this.perSlot(keys, (group) => {
      const fails = group.map((k) => this.redisKeys(k).fail);
      return this.link.command(fails[0]!, false, ['DEL', ...fails]);
    });
  }

  async rememberPassword(fingerprint: PasswordFingerprint, windowMs: number): Promise<boolean> {
    const key = this.redisKeys(fingerprint.key).passwords;
    const args = ['EVAL', REMEMBER_PASSWORD_SCRIPT, '1', key, fingerprint.value, String(Math.max(1, fingerprint.keep)), String(Math.max(1, Math.round(windowMs)))];
    const seen = await withDeadline(this.link.command(key, false, args), this.timeoutMs, 'redis call');
    return toCount(seen) > 0;
  }

  /**
   * The secret in Redis: the first replica's random one wins (SET NX) and
   * every replica reads the same. Whoever can read Redis can read it too
   * (and so test guesses against the remembered fingerprints): guard Redis
   * like the credentials.
   */
  async fingerprintSecret(): Promise<string> {
    const key = this.secretKey;
    const candidate = randomBytes(32).toString('base64');
    const replies = await withDeadline(this.link.transaction(key, [['SET', key, candidate, 'NX'], ['GET', key]]), this.timeoutMs, 'redis call');
    const secret = replies[1];
    if (typeof secret !== 'string' || secret === '') throw new Error('redis: no fingerprint secret');
    return secret;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.link.close();
    } catch {
      // already closed, or not answering: nothing left to release
    }
  }

  /**
   * Runs `op` on the keys in groups that each stay in one slot: all at once
   * on one server, one key (one hash tag) per call in a cluster, in parallel.
   * Each call has the deadline.
   */
  private async perSlot<T>(keys: readonly string[], op: (group: readonly string[]) => Promise<T>): Promise<T[]> {
    if (keys.length === 0) return [];
    const groups = this.clustered ? keys.map((k) => [k]) : [keys];
    return Promise.all(groups.map((g) => withDeadline(op(g), this.timeoutMs, 'redis call')));
  }
}

/**
 * KEYS[1] the user's fingerprint list; ARGV: fingerprint, keep, window (ms).
 * Returns how many times it was in the list (0: new). The list never holds
 * more than `keep`, so "in the list" is "among the last keep".
 */
const REMEMBER_PASSWORD_SCRIPT = `local seen = redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return seen`;

function toCount(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : 0;
  return Number.isFinite(n) ? n : 0;
}
