/**
 * What popgate remembers of each backend's CAPA answer between links: for
 * now only whether it advertises PIPELINING (RFC 2449 §6.6), which lets the
 * next USER/PASS login send both commands in one write and save a round
 * trip. The login machine asks CAPA when the memory does not know a backend;
 * the host stores what it learned here.
 *
 * Entries expire (a backend upgraded, replaced or reconfigured behind the
 * same address is asked again) and the map is bounded (routes and auth
 * services may name many backends): when full, the oldest entry goes. A
 * backend that broke the link at CAPA (closed, silent, unreadable) is
 * remembered without expiry: asking again would fail another login.
 */
import { systemClock, type Clock } from '../clock.js';

/** How long a learned answer is trusted. */
export const CAPABILITY_TTL_MS = 10 * 60_000;
/** Backends remembered at most. */
export const CAPABILITY_MAX_ENTRIES = 1024;

export interface BackendCapabilities {
  /** CAPA listed PIPELINING. */
  readonly pipelining: boolean;
  /** clock.now() when it was learned. */
  readonly learnedAt: number;
  /** Kept until restart (or clear()): CAPA broke the link once. */
  readonly permanent?: boolean;
}

export interface CapabilityMemoryOptions {
  readonly clock?: Clock;
  readonly ttlMs?: number;
  readonly maxEntries?: number;
}

export class CapabilityMemory {
  /** Insertion order is learning order: the first key is the oldest entry. */
  private readonly entries = new Map<string, BackendCapabilities>();
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(opts: CapabilityMemoryOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.ttlMs = opts.ttlMs ?? CAPABILITY_TTL_MS;
    this.maxEntries = Math.max(1, opts.maxEntries ?? CAPABILITY_MAX_ENTRIES);
  }

  /** What is known of `key` (see capabilityKey), or undefined: never learned, or expired. */
  get(key: string): BackendCapabilities | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.permanent !== true && this.clock.now() - entry.learnedAt >= this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Records what `key` answered to CAPA now (replacing what was known); `permanent`: never expires. */
  learned(key: string, pipelining: boolean, permanent = false): void {
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { pipelining, learnedAt: this.clock.now(), ...(permanent ? { permanent } : {}) });
  }

  /** Entries held (expired ones included until looked up or pushed out). */
  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/**
 * The memory's key for a link: where it goes and how it is protected. The
 * TLS mode is part of it: a backend may list other capabilities after STLS
 * than in plaintext (RFC 2595), and two routes may reach one port both ways.
 */
export function capabilityKey(where: string, tlsMode: string): string {
  return `${tlsMode} ${where}`;
}

/** The process's memory (one per worker), used when the caller gives none. */
export const backendCapabilities = new CapabilityMemory();
