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
import { createClient, createCluster, createSentinel } from 'redis';
import { parseRedisNode, type AuthConfig } from '../config/schema.js';
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
// In memory, held by another process (workers > 1: one store in the primary)

/** One FailureStore call as data: what a RemoteFailureStore sends, and serveFailureStoreCall runs. */
export type FailureStoreCall =
  | { readonly op: 'recordFailure'; readonly keys: readonly string[]; readonly windowMs: number }
  | { readonly op: 'failures'; readonly keys: readonly string[] }
  | { readonly op: 'lock'; readonly keys: readonly string[]; readonly ms: number }
  | { readonly op: 'isLocked'; readonly keys: readonly string[] }
  | { readonly op: 'clear'; readonly keys: readonly string[] };

/** A call's result: counts (recordFailure, failures), a lock state (isLocked), or null. */
export type FailureStoreAnswer = number[] | boolean | null;

/** Runs one call on the store that holds the counters (the primary's MemoryFailureStore). */
export async function serveFailureStoreCall(store: FailureStore, call: FailureStoreCall): Promise<FailureStoreAnswer> {
  switch (call.op) {
    case 'recordFailure':
      return store.recordFailure(call.keys, call.windowMs);
    case 'failures':
      return store.failures(call.keys);
    case 'lock':
      await store.lock(call.keys, call.ms);
      return null;
    case 'isLocked':
      return store.isLocked(call.keys);
    case 'clear':
      await store.clear(call.keys);
      return null;
  }
}

/**
 * The memory store of a worker process: the counters live in the primary, so
 * every worker sees every failure. `send` carries a call there and rejects
 * when no answer comes in time; the throttle then fails open as it does for
 * Redis trouble.
 */
export class RemoteFailureStore implements FailureStore {
  readonly name = 'memory-primary';

  constructor(private readonly send: (call: FailureStoreCall) => Promise<FailureStoreAnswer>) {}

  async recordFailure(keys: readonly string[], windowMs: number): Promise<number[]> {
    return counts(await this.send({ op: 'recordFailure', keys, windowMs }), keys.length);
  }

  async failures(keys: readonly string[]): Promise<number[]> {
    return counts(await this.send({ op: 'failures', keys }), keys.length);
  }

  async lock(keys: readonly string[], ms: number): Promise<void> {
    await this.send({ op: 'lock', keys, ms });
  }

  async isLocked(keys: readonly string[]): Promise<boolean> {
    const answer = await this.send({ op: 'isLocked', keys });
    if (typeof answer !== 'boolean') throw new Error('failure store: malformed isLocked answer');
    return answer;
  }

  async clear(keys: readonly string[]): Promise<void> {
    await this.send({ op: 'clear', keys });
  }

  /** The counters belong to the primary; nothing to close here. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function counts(answer: FailureStoreAnswer, n: number): number[] {
  if (!Array.isArray(answer) || answer.length !== n) throw new Error('failure store: malformed counts answer');
  return answer;
}

/**
 * Set once by a worker process (src/server/workers): the memory store every
 * throttle of this process uses instead of its own, so the counters are global.
 */
let memoryStoreFactory: (() => FailureStore) | undefined;

export function useSharedMemoryStore(factory: (() => FailureStore) | undefined): void {
  memoryStoreFactory = factory;
}

// ---------------------------------------------------------------------------
// Redis

/** Deadline for one Redis call and for the first connection at startup. */
export const REDIS_TIMEOUT_MS = 1_000;

/** A Redis node or sentinel. */
export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
}

/** Redis Sentinel: where to ask for the current master of `masterName`. */
export interface RedisSentinelTarget {
  readonly masterName: string;
  readonly sentinels: readonly RedisEndpoint[];
  /** ACL user / password on the sentinels themselves. */
  readonly username?: string;
  readonly password?: string;
}

/** Redis Cluster: seed nodes (the client discovers the slots and the other nodes). */
export interface RedisClusterTarget {
  readonly nodes: readonly RedisEndpoint[];
}

export interface RedisFailureStoreOptions {
  /** One server: redis:// or rediss:// URL (may carry user:password@ and a /db number). */
  readonly url?: string;
  /** Or a master found through Redis Sentinel (failovers followed). */
  readonly sentinel?: RedisSentinelTarget;
  /** Or a Redis Cluster (keys carry {hash tags}, see RedisFailureStore). */
  readonly cluster?: RedisClusterTarget;
  /** Credentials and TLS on the data nodes (sentinel, cluster; a URL carries its own). */
  readonly username?: string;
  readonly password?: string;
  readonly tls?: boolean;
  /** Database on the sentinel-managed master. */
  readonly database?: number;
  /** Prefix of every key popgate writes (`<prefix>fail:<key>`, `<prefix>lock:<key>`). */
  readonly keyPrefix: string;
  /** Deadline for one call, and for the first connection in connect(). Default REDIS_TIMEOUT_MS. */
  readonly timeoutMs?: number;
  /** Connection trouble (the client keeps reconnecting by itself). */
  readonly onError?: (err: Error) => void;
  /** The connection is (again) ready. */
  readonly onReady?: () => void;
}

/** Keep trying, backing off to one attempt every 2 s. */
const reconnectStrategy = (retries: number): number => Math.min(50 * 2 ** Math.min(retries, 6), 2_000);

/**
 * What the store needs from a Redis client, whatever the topology: the
 * library's client (createClient / createSentinel / createCluster) routes
 * and reconnects; this only gives the three one shape.
 */
interface RedisLink {
  readonly ready: boolean;
  /** `commands` in one MULTI/EXEC; in a cluster every key in them must be in `firstKey`'s slot. */
  transaction(firstKey: string, commands: readonly (readonly string[])[]): Promise<unknown[]>;
  /** One command; `firstKey` routes it in a cluster. */
  command(firstKey: string, readonly: boolean, args: readonly string[]): Promise<unknown>;
  /** Resolves when first connected (rejects on a failed attempt; the link keeps trying). */
  readonly connected: Promise<void>;
  close(): Promise<void>;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function standaloneLink(options: RedisFailureStoreOptions, url: string, timeoutMs: number): RedisLink {
  const client = createClient({ url, disableOfflineQueue: true, socket: { connectTimeout: timeoutMs, reconnectStrategy } });
  // Without a listener an 'error' event would crash the process.
  client.on('error', (err: unknown) => options.onError?.(asError(err)));
  client.on('ready', () => options.onReady?.());
  const connected = client.connect().then(() => undefined);
  connected.catch(() => {}); // reported through 'error'; a later rejection is not unhandled
  return {
    get ready() {
      return client.isReady;
    },
    connected,
    async transaction(_firstKey, commands) {
      const multi = client.multi();
      for (const c of commands) multi.addCommand([...c]);
      return (await multi.exec()) as unknown[];
    },
    command: (_firstKey, _readonly, args) => client.sendCommand([...args]),
    async close() {
      try {
        // QUIT when connected; while reconnecting there is nothing to say goodbye to.
        if (client.isReady) await withDeadline(client.close(), timeoutMs, 'redis close');
        else if (client.isOpen) client.destroy();
      } catch {
        if (client.isOpen) client.destroy();
      }
    },
  };
}

/**
 * A topology client whose first connect() can fail for good (the sentinel
 * client gives up after some rediscoveries and cannot be connected again):
 * retried with a fresh client every 2 s until one connects or the link closes.
 */
interface Reconnectable<C> {
  create(): C;
  connect(c: C): Promise<unknown>;
  destroy(c: C): void;
}

function keepConnecting<C>(r: Reconnectable<C>, onError: (err: Error) => void): { current(): C | undefined; connected: Promise<void>; stop(): void } {
  let current: C | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let first: ((err?: Error) => void) | undefined;
  const connected = new Promise<void>((resolve, reject) => {
    first = (err) => (err ? reject(err) : resolve());
  });
  connected.catch(() => {});
  /** The client still connecting: destroyed on stop, or its connect loop would outlive the store. */
  let pending: C | undefined;
  const attempt = (): void => {
    if (stopped) return;
    const c = r.create();
    pending = c;
    r.connect(c).then(
      () => {
        pending = undefined;
        if (stopped) r.destroy(c);
        else current = c;
        first?.();
        first = undefined;
      },
      (err: unknown) => {
        pending = undefined;
        r.destroy(c);
        if (stopped) return;
        onError(asError(err));
        first?.(asError(err));
        first = undefined;
        timer = setTimeout(attempt, 2_000);
        timer.unref();
      },
    );
  };
  attempt();
  return {
    current: () => current,
    connected,
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (pending !== undefined) r.destroy(pending);
    },
  };
}

function notConnected(what: string): Promise<never> {
  return Promise.reject(new Error(`${what}: not connected`));
}

function sentinelLink(options: RedisFailureStoreOptions, target: RedisSentinelTarget, timeoutMs: number): RedisLink {
  type Sentinel = ReturnType<typeof createSentinel>;
  const nodeSocket = { connectTimeout: timeoutMs, reconnectStrategy, ...(options.tls ? { tls: true as const } : {}) };
  const conn = keepConnecting<Sentinel>(
    {
      create() {
        const s = createSentinel({
          name: target.masterName,
          sentinelRootNodes: target.sentinels.map((n) => ({ host: n.host, port: n.port })),
          nodeClientOptions: {
            disableOfflineQueue: true,
            ...(options.username !== undefined ? { username: options.username } : {}),
            ...(options.password !== undefined ? { password: options.password } : {}),
            ...(options.database !== undefined ? { database: options.database } : {}),
            socket: nodeSocket,
          },
          sentinelClientOptions: {
            ...(target.username !== undefined ? { username: target.username } : {}),
            ...(target.password !== undefined ? { password: target.password } : {}),
            socket: nodeSocket,
          },
          // Master and sentinel connection errors reach our one 'error' listener.
          passthroughClientErrorEvents: true,
        });
        s.on('error', (err: unknown) => options.onError?.(asError(err)));
        // A new master after a failover (or the first one).
        s.on('topology-change', (event: { type: string }) => {
          if (event.type === 'MASTER_CHANGE') options.onReady?.();
        });
        return s;
      },
      connect: (s) => s.connect(),
      destroy: (s) => void s.destroy().catch(() => {}),
    },
    (err) => options.onError?.(err),
  );
  return {
    get ready() {
      return conn.current()?.isReady ?? false;
    },
    connected: conn.connected,
    async transaction(_firstKey, commands) {
      const s = conn.current();
      if (!s) return notConnected('redis sentinel');
      const multi = s.multi();
      for (const c of commands) multi.addCommand(false, [...c]);
      return (await multi.exec()) as unknown[];
    },
    command(_firstKey, readonly, args) {
      const s = conn.current();
      return s ? s.sendCommand(readonly, [...args]) : notConnected('redis sentinel');
    },
    async close() {
      conn.stop();
      const s = conn.current();
      if (s?.isOpen) await withDeadline(s.close(), timeoutMs, 'redis close');
    },
  };
}

function clusterLink(options: RedisFailureStoreOptions, target: RedisClusterTarget, timeoutMs: number): RedisLink {
  type Cluster = ReturnType<typeof createCluster>;
  const conn = keepConnecting<Cluster>(
    {
      create() {
        const c = createCluster({
          rootNodes: target.nodes.map((n) => ({ socket: { host: n.host, port: n.port } })),
          defaults: {
            disableOfflineQueue: true,
            ...(options.username !== undefined ? { username: options.username } : {}),
            ...(options.password !== undefined ? { password: options.password } : {}),
            socket: { connectTimeout: timeoutMs, reconnectStrategy, ...(options.tls ? { tls: true as const } : {}) },
          },
        });
        c.on('error', (err: unknown) => options.onError?.(asError(err)));
        return c;
      },
      connect: (c) => c.connect(),
      destroy: (c) => {
        if (c.isOpen) c.destroy();
      },
    },
    (err) => options.onError?.(err),
  );
  void conn.connected.then(() => options.onReady?.(), () => {});
  return {
    get ready() {
      return conn.current()?.isOpen ?? false;
    },
    connected: conn.connected,
    async transaction(firstKey, commands) {
      const c = conn.current();
      if (!c) return notConnected('redis cluster');
      const multi = c.multi(firstKey);
      for (const cmd of commands) multi.addCommand(firstKey, false, [...cmd]);
      return (await multi.exec()) as unknown[];
    },
    command(firstKey, readonly, args) {
      const c = conn.current();
      return c ? c.sendCommand(firstKey, readonly, [...args]) : notConnected('redis cluster');
    },
    async close() {
      conn.stop();
      const c = conn.current();
      if (c?.isOpen) await withDeadline(c.close(), timeoutMs, 'redis close');
    },
  };
}

/**
 * Counters in Redis, so every replica sees the same failures: one server
 * (url), the master Redis Sentinel names (sentinel; failovers followed), or
 * a Redis Cluster (cluster). Counters are INCR + PEXPIRE in one MULTI;
 * locks are `SET <prefix>lock:<key> 1 PX <ms>`. Calls fail fast while the
 * connection is down (no offline queue) and give up after `timeoutMs`.
 *
 * In a cluster a MULTI, MGET, EXISTS or DEL must stay in one slot. There the
 * address or user part of each key is a hash tag (`<prefix>fail:{ip:192.0.2.1}`,
 * `<prefix>lock:{ip:192.0.2.1}`: one slot per address or user) and every
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

  /** The Redis keys of a throttle key (`ip:...`, `user:...`): its counter and its lock. */
  redisKeys(key: string): { fail: string; lock: string } {
    // Popgate's braces come first (the schema keeps them out of a cluster's prefix), so they are the hash tag.
    const part = this.clustered ? `{${key}}` : key;
    return { fail: `${this.prefix}fail:${part}`, lock: `${this.prefix}lock:${part}` };
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

export type ThrottleConfig = AuthConfig['throttle'];
type ThrottleRedisConfig = NonNullable<ThrottleConfig['redis']>;

function endpoints(list: readonly string[]): RedisEndpoint[] {
  return list.map((text) => {
    const node = parseRedisNode(text);
    // The schema accepted only parseable nodes.
    if (!node) throw new Error(`auth.throttle.redis: not host:port: ${text}`);
    return node;
  });
}

/** auth.throttle.redis as RedisFailureStore options (the schema allows exactly one of url, sentinel, cluster). */
export function redisTarget(r: ThrottleRedisConfig): Omit<RedisFailureStoreOptions, 'onError' | 'onReady' | 'timeoutMs'> {
  const common = {
    keyPrefix: r.keyPrefix,
    ...(r.username !== undefined ? { username: r.username } : {}),
    ...(r.password !== undefined ? { password: r.password } : {}),
    ...(r.tls ? { tls: true } : {}),
  };
  if (r.sentinel) {
    const s = r.sentinel;
    return {
      ...common,
      ...(r.database !== undefined ? { database: r.database } : {}),
      sentinel: {
        masterName: s.masterName,
        sentinels: endpoints(s.sentinels),
        ...(s.username !== undefined ? { username: s.username } : {}),
        ...(s.password !== undefined ? { password: s.password } : {}),
      },
    };
  }
  if (r.cluster) return { ...common, cluster: { nodes: endpoints(r.cluster.nodes) } };
  return { keyPrefix: r.keyPrefix, url: r.url! };
}

/** The throttle auth.throttle describes (undefined when disabled), with its store connected. */
export async function createLoginThrottle(config: ThrottleConfig, log: Logger, onStoreError?: () => void): Promise<LoginThrottle | undefined> {
  if (!config.enabled) return undefined;
  let throttle: LoginThrottle | undefined;
  const early: Error[] = [];
  const store: FailureStore =
    config.store === 'redis'
      ? await RedisFailureStore.connect({
          // The schema requires auth.throttle.redis when store is redis.
          ...redisTarget(config.redis!),
          onError: (err) => (throttle ? throttle.storeError(err) : early.push(err)),
          onReady: () => log.info({ event: 'login-throttle', store: 'redis' }, 'login throttle: redis connection ready'),
        })
      : (memoryStoreFactory?.() ?? new MemoryFailureStore());
  throttle = new LoginThrottle({
    store,
    delays: config.delays,
    maxFailures: config.maxFailures,
    windowMs: config.window,
    lockoutMs: config.lockout,
    trustedNetworks: config.trustedNetworks,
    log,
    ...(onStoreError ? { onStoreError } : {}),
  });
  const last = early.at(-1);
  if (last) throttle.storeError(last);
  log.info(
    { event: 'login-throttle', store: store.name, maxFailures: config.maxFailures, delays: config.delays, trustedNetworks: config.trustedNetworks.length },
    'login throttle enabled',
  );
  return throttle;
}
