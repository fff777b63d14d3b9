/**
 * The login throttle's public surface (auth.throttle): createLoginThrottle for
 * src/server, the stores and their IPC for src/server/workers, and the parts
 * tests reach. The folder's modules import each other directly, not this.
 */
export { createLoginThrottle, redisTarget, useSharedMemoryStore, type ThrottleConfig } from './from-config.js';
export { LoginThrottle, type LoginThrottleOptions, type ThrottleCheck, type ThrottleFailure } from './login-throttle.js';
export { addressKey, passwordFingerprint, userKey } from './keys.js';
export type { FailureStore, PasswordFingerprint } from './store.js';
export { MEMORY_STORE_MAX_ENTRIES, MemoryFailureStore, type MemoryFailureStoreOptions } from './memory-store.js';
export { RemoteFailureStore, serveFailureStoreCall, type FailureStoreAnswer, type FailureStoreCall } from './remote-store.js';
export { REDIS_TIMEOUT_MS, RedisFailureStore } from './redis-store.js';
export type { RedisClusterTarget, RedisEndpoint, RedisFailureStoreOptions, RedisSentinelTarget } from './redis-links.js';
