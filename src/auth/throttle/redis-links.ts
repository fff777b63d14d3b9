/**
 * Reaching Redis for the failure store: where (one server, a Sentinel-managed
 * master, a Cluster) and with which options, one link shape over the redis
 * client of each topology (each reconnecting by itself), and the deadline
 * (withDeadline) every call and close gets.
 */
import { createClient, createCluster, createSentinel } from 'redis';

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
export interface RedisLink {
  readonly ready: boolean;
  /** `commands` in one MULTI/EXEC; in a cluster every key in them must be in `firstKey`'s slot. */
  transaction(firstKey: string, commands: readonly (readonly string[])[]): Promise<unknown[]>;
  /** One command; `firstKey` routes it in a cluster. */
  command(firstKey: string, readonly: boolean, args: readonly string[]): Promise<unknown>;
  /** Resolves when first connected (rejects on a failed attempt; the link keeps trying). */
  readonly connected: Promise<void>;
  close(): Promise<void>;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function standaloneLink(options: RedisFailureStoreOptions, url: string, timeoutMs: number): RedisLink {
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

export function sentinelLink(options: RedisFailureStoreOptions, target: RedisSentinelTarget, timeoutMs: number): RedisLink {
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

export function clusterLink(options: RedisFailureStoreOptions, target: RedisClusterTarget, timeoutMs: number): RedisLink {
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

/** `p`, or a rejection after `ms`; a late rejection of `p` is swallowed. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  p.catch(() => {});
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
