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
export class PerAddressCounter implements AddressSlots {
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

/** Frees one per-address slot (idempotent). */
export type ReleaseSlot = () => void;

/**
 * Where admission takes per-address slots: this process's PerAddressCounter
 * (synchronous), or with workers the primary's counts, shared by every worker
 * (RemoteAddressCounter, asynchronous).
 */
export interface AddressSlots {
  readonly max: number;
  acquire(address: string): ReleaseSlot | undefined | Promise<ReleaseSlot | undefined>;
}

/**
 * The primary's per-address counts, shared by its workers: each slot is a
 * lease owned by one worker, so the slots of a worker that dies are freed
 * with it. The maximum comes with each request (a worker applies a reload
 * when it gets it; the counts carry on).
 */
export class SharedAddressCounts {
  private readonly open = new Map<string, number>();
  private readonly leases = new Map<number, { readonly key: string; readonly owner: number }>();
  private nextLease = 0;

  /** A lease on one of `key`'s `max` slots for worker `owner`; undefined when they are taken. */
  acquire(key: string, max: number, owner: number): number | undefined {
    const n = this.open.get(key) ?? 0;
    if (n >= max) return undefined;
    this.open.set(key, n + 1);
    const lease = ++this.nextLease;
    this.leases.set(lease, { key, owner });
    return lease;
  }

  release(lease: number): void {
    const l = this.leases.get(lease);
    if (!l) return;
    this.leases.delete(lease);
    const left = (this.open.get(l.key) ?? 1) - 1;
    if (left > 0) this.open.set(l.key, left);
    else this.open.delete(l.key);
  }

  /** Frees every slot of `owner` (a worker that exited); returns how many. */
  releaseOwner(owner: number): number {
    let n = 0;
    for (const [lease, l] of this.leases) {
      if (l.owner !== owner) continue;
      this.release(lease);
      n++;
    }
    return n;
  }

  count(key: string): number {
    return this.open.get(key) ?? 0;
  }
}

/** A worker's way to the primary's SharedAddressCounts. */
export interface AddressSlotLink {
  /** A lease, or undefined when the key is full; rejects when the primary does not answer in time. */
  acquire(key: string, max: number): Promise<number | undefined>;
  release(lease: number): void;
}

/**
 * A worker's per-address counter: slots come from the primary, so the limit
 * holds across workers. When the primary does not answer in time the slot is
 * counted in this worker alone (`onFallback` is told, to log it), so a slow
 * primary never refuses anyone the local count would admit.
 */
export class RemoteAddressCounter implements AddressSlots {
  private readonly local: PerAddressCounter;

  constructor(
    readonly max: number,
    private readonly link: AddressSlotLink,
    private readonly onFallback: (err: unknown) => void,
  ) {
    this.local = new PerAddressCounter(max);
  }

  async acquire(address: string): Promise<ReleaseSlot | undefined> {
    let lease: number | undefined;
    try {
      lease = await this.link.acquire(addressKey(address), this.max);
    } catch (err) {
      this.onFallback(err);
      return this.local.acquire(address);
    }
    if (lease === undefined) return undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.link.release(lease);
    };
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
