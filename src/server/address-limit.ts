/**
 * Per-client-address bookkeeping for `limits.maxConnectionsPerIp`: which
 * key an address counts under, open connections per key, and a log limiter
 * so a flood of refusals writes one line per address per window.
 */
import { addressKey as keyOf } from '../net/index.js';

/**
 * The key a client address counts under (src/net/address-key.ts): IPv4 as
 * is, IPv4-mapped IPv6 as the IPv4 address, other IPv6 by its /64 with the
 * four groups written out (`2001:db8:0:1::/64`: the spelling this limit has
 * always logged). Anything else (an empty or unparsable address) is its own
 * key, as given.
 */
export function addressKey(address: string): string {
  return keyOf(address, 'groups') ?? address;
}

/** Open connections per address key, against a fixed maximum. */
export class PerAddressCounter {
  private readonly open = new Map<string, number>();

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`PerAddressCounter: max must be a positive integer, got ${max}`);
  }

  /**
   * Takes a slot for `address`: a release function (idempotent) when the
   * address is under the limit, undefined when it is at it.
   */
  acquire(address: string): (() => void) | undefined {
    const key = addressKey(address);
    const n = this.open.get(key) ?? 0;
    if (n >= this.max) return undefined;
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }

  /** Open connections counted for the key `address` falls under. */
  count(address: string): number {
    return this.open.get(addressKey(address)) ?? 0;
  }

  /** Keys with at least one open connection (the map never holds idle keys). */
  get size(): number {
    return this.open.size;
  }
}

/**
 * At most one log line per key per `windowMs`; the next line says how many
 * were suppressed. Memory is bounded: keys whose window has passed are
 * forgotten when the table reaches `maxKeys`, and if every key is still
 * fresh (a flood from that many addresses) the table starts over.
 */
export class LogRateLimiter {
  private readonly seen = new Map<string, { at: number; suppressed: number }>();
  private readonly windowMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(opts: { windowMs?: number; maxKeys?: number; now?: () => number } = {}) {
    this.windowMs = opts.windowMs ?? 10_000;
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** Whether to log an event for `key` now; when so, how many events for it went unlogged since the last line. */
  take(key: string): { readonly log: true; readonly suppressed: number } | { readonly log: false } {
    const t = this.now();
    const entry = this.seen.get(key);
    if (entry && t - entry.at < this.windowMs) {
      entry.suppressed++;
      return { log: false };
    }
    const suppressed = entry?.suppressed ?? 0;
    if (!entry && this.seen.size >= this.maxKeys) this.prune(t);
    this.seen.set(key, { at: t, suppressed: 0 });
    return { log: true, suppressed };
  }

  get size(): number {
    return this.seen.size;
  }

  private prune(t: number): void {
    for (const [k, e] of this.seen) if (t - e.at >= this.windowMs) this.seen.delete(k);
    if (this.seen.size >= this.maxKeys) this.seen.clear();
  }
}
