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
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { createClient, createCluster, createSentinel } from 'redis';
import { parseRedisNode, type AuthConfig } from '../../config/schema.js';
import { addressKey as keyOf, TrustedNetworks } from '../../net/index.js';

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
  /** Fingerprints of recent failed passwords (user keys only), the most recent first. */
  passwords: string[];
  passwordsUntil: number;
}

const emptyEntry = (): MemoryEntry => ({ failures: 0, failuresUntil: 0, lockedUntil: 0, passwords: [], passwordsUntil: 0 });

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
  /** Never leaves this process except to this store's own workers (RemoteFailureStore). */
  private readonly secret = randomBytes(32).toString('base64');

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
        const e = this.live(key, now) ?? emptyEntry();
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
      const e = this.live(key, now) ?? emptyEntry();
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
      if (e.lockedUntil <= now && e.passwords.length === 0) this.entries.delete(key);
    }
    return Promise.resolve();
  }

  rememberPassword(fingerprint: PasswordFingerprint, windowMs: number): Promise<boolean> {
    const now = this.now();
    const keep = Math.max(1, fingerprint.keep);
    const e = this.live(fingerprint.key, now) ?? emptyEntry();
    const at = e.passwords.indexOf(fingerprint.value);
    if (at >= 0) e.passwords.splice(at, 1);
    e.passwords.unshift(fingerprint.value);
    if (e.passwords.length > keep) e.passwords.length = keep;
    e.passwordsUntil = now + windowMs;
    this.touch(fingerprint.key, e);
    return Promise.resolve(at >= 0 && at < keep);
  }

  fingerprintSecret(): Promise<string> {
    return Promise.resolve(this.secret);
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
    if (e.passwordsUntil <= now) e.passwords = [];
    if (e.failures === 0 && e.lockedUntil <= now && e.passwords.length === 0) {
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
  | { readonly op: 'clear'; readonly keys: readonly string[] }
  | { readonly op: 'rememberPassword'; readonly fingerprint: PasswordFingerprint; readonly windowMs: number }
  | { readonly op: 'fingerprintSecret' };

/** A call's result: counts (recordFailure, failures), a yes/no (isLocked, rememberPassword), the secret, or null. */
export type FailureStoreAnswer = number[] | boolean | string | null;

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
    case 'rememberPassword':
      return store.rememberPassword(call.fingerprint, call.windowMs);
    case 'fingerprintSecret':
      return store.fingerprintSecret();
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

  /** Only the fingerprint crosses the channel, never the password. */
  async rememberPassword(fingerprint: PasswordFingerprint, windowMs: number): Promise<boolean> {
    const answer = await this.send({ op: 'rememberPassword', fingerprint, windowMs });
    if (typeof answer !== 'boolean') throw new Error('failure store: malformed rememberPassword answer');
    return answer;
  }

  /** The primary's store's secret: every worker's fingerprints match. */
  async fingerprintSecret(): Promise<string> {
    const answer = await this.send({ op: 'fingerprintSecret' });
    if (typeof answer !== 'string' || answer === '') throw new Error('failure store: malformed fingerprintSecret answer');
    return answer;
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

/** Bytes of HMAC a fingerprint keeps: a chance of 2^-64 per remembered password that a different one passes for it. */
const FINGERPRINT_BYTES = 8;

/**
 * A failed password as the throttle remembers it: HMAC-SHA-256 under the
 * store's secret of the user key (folded, as the counters are keyed), a NUL
 * and the password (UTF-8), cut to 8 bytes, hex. The user is in it so that
 * one password of two users gives two fingerprints.
 */
export function passwordFingerprint(secret: string, user: string, password: string): string {
  return createHmac('sha256', secret).update(user).update('\0').update(password).digest().subarray(0, FINGERPRINT_BYTES).toString('hex');
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
    repeatedPasswords: config.repeatedPasswords,
    trustedNetworks: config.trustedNetworks,
    log,
    ...(onStoreError ? { onStoreError } : {}),
  });
  const last = early.at(-1);
  if (last) throttle.storeError(last);
  log.info(
    {
      event: 'login-throttle',
      store: store.name,
      maxFailures: config.maxFailures,
      delays: config.delays,
      repeatedPasswords: config.repeatedPasswords,
      trustedNetworks: config.trustedNetworks.length,
    },
    'login throttle enabled',
  );
  return throttle;
}
