/**
 * The memory store held by another process (workers > 1: one store in the
 * primary): a FailureStore call as data (FailureStoreCall, FailureStoreAnswer),
 * RemoteFailureStore that sends it, serveFailureStoreCall that runs it.
 */
import type { FailureStore, PasswordFingerprint } from './store.js';

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
