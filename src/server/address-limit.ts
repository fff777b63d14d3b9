/**
 * Per-client-address bookkeeping for `limits.maxConnectionsPerIp`: which
 * key an address counts under, open connections per key, and a log limiter
 * so a flood of refusals writes one line per address per window.
 */
import { isIPv4, isIPv6 } from 'node:net';

/**
 * The key a client address counts under. IPv4 as is; IPv4-mapped IPv6
 * (`::ffff:192.0.2.1`, how a dual-stack listener reports IPv4 clients) as
 * the IPv4 address; other IPv6 by its /64 prefix (one subscriber usually gets
 * a whole /64, so counting single addresses would let it open 2^64 slots),
 * written `2001:db8:0:1::/64`. Zone ids are dropped. Anything else (an empty
 * or unparsable address) is its own key, as given.
 */
export function addressKey(address: string): string {
  const bare = address.replace(/%.*$/, '');
  if (isIPv4(bare)) return bare;
  if (!isIPv6(bare)) return address;
  const g = ipv6Groups(bare);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const hi = g[6] ?? 0;
    const lo = g[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (with `::` and an embedded IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const o = tail.split('.').map(Number);
    const hex = (a: number | undefined, b: number | undefined): string => (((a ?? 0) << 8) | (b ?? 0)).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hex(o[0], o[1])}:${hex(o[2], o[3])}`;
  }
  const [head = '', rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(fill).fill('0'), ...right].map((x) => parseInt(x, 16));
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
