/**
 * Failure counters in this process: MemoryFailureStore, bounded and swept,
 * with a random fingerprint secret of its own.
 */
import { randomBytes } from 'node:crypto';
import type { FailureStore, PasswordFingerprint } from './store.js';

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
