/**
 * The throttle auth.throttle describes: its Redis section as store options
 * (redisTarget), the store it uses (Redis; else the memory store a worker
 * process shares through useSharedMemoryStore, else one of its own) and
 * createLoginThrottle.
 */
import type { Logger } from 'pino';
import { parseRedisNode, type AuthConfig } from '../../config/schema.js';
import { LoginThrottle } from './login-throttle.js';
import { MemoryFailureStore } from './memory-store.js';
import type { RedisEndpoint, RedisFailureStoreOptions } from './redis-links.js';
import { RedisFailureStore } from './redis-store.js';
import type { FailureStore } from './store.js';

/**
 * Set once by a worker process (src/server/workers): the memory store every
 * throttle of this process uses instead of its own, so the counters are global.
 */
let memoryStoreFactory: (() => FailureStore) | undefined;

export function useSharedMemoryStore(factory: (() => FailureStore) | undefined): void {
  memoryStoreFactory = factory;
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
