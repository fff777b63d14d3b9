import type { ListenerConfig } from '../config/index.js';

/**
 * Listener changes a config reload cannot apply to running sockets: listeners
 * added or removed, or a listener (matched by name) whose kind, address or
 * port changed. Each entry is one human-readable line; empty when the
 * listener set is the same. Everything else about a listener (greeting, TLS
 * files, PROXY settings, ...) can be swapped live.
 */
export function listenerRestartChanges(current: readonly ListenerConfig[], next: readonly ListenerConfig[]): string[] {
  const changes: string[] = [];
  const byName = new Map(next.map((l) => [l.name, l] as const));
  for (const old of current) {
    const l = byName.get(old.name);
    if (!l) {
      changes.push(`listener ${old.name} removed`);
      continue;
    }
    for (const key of ['kind', 'address', 'port'] as const) {
      if (old[key] !== l[key]) changes.push(`listener ${old.name}: ${key} ${String(old[key])} -> ${String(l[key])}`);
    }
  }
  const names = new Set(current.map((l) => l.name));
  for (const l of next) if (!names.has(l.name)) changes.push(`listener ${l.name} added`);
  return changes;
}

/** Structural equality of two plain config values (key order included, as the schema produces it). */
export function sameConfig(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * One "current" value (a set of services) that a reload replaces while users
 * of the old one finish: `use()` runs with the current value and counts it
 * in flight; `swap()` makes a new value current and closes the old one as
 * soon as nothing uses it any more (at once when idle). Closing is left to
 * the `close` callback, which also gets the values still alive (current and
 * retiring) so it can spare what the old value shares with them.
 */
export class Generations<T> {
  private active: T;
  private readonly inFlight = new Map<T, number>();
  private readonly retiring = new Set<T>();
  private readonly closed = new Set<T>();
  private readonly closings: Promise<void>[] = [];

  constructor(
    initial: T,
    private readonly close: (old: T, alive: readonly T[]) => void | Promise<void>,
  ) {
    this.active = initial;
  }

  get current(): T {
    return this.active;
  }

  /** How many generations are retired but still in use. */
  get retiringCount(): number {
    return this.retiring.size;
  }

  async use<R>(fn: (value: T) => Promise<R>): Promise<R> {
    const value = this.active;
    this.inFlight.set(value, (this.inFlight.get(value) ?? 0) + 1);
    try {
      return await fn(value);
    } finally {
      const left = (this.inFlight.get(value) ?? 1) - 1;
      if (left > 0) this.inFlight.set(value, left);
      else {
        this.inFlight.delete(value);
        if (this.retiring.has(value)) this.retire(value);
      }
    }
  }

  swap(next: T): void {
    const old = this.active;
    if (old === next) return;
    this.active = next;
    this.retiring.add(old);
    if (!this.inFlight.has(old)) this.retire(old);
  }

  /** Closes every generation not closed yet (current included), in-flight users or not. */
  async closeAll(): Promise<void> {
    const all = [...this.retiring, this.active];
    this.retiring.clear();
    for (const v of all) this.doClose(v, []);
    await Promise.allSettled(this.closings);
  }

  private retire(value: T): void {
    this.retiring.delete(value);
    this.doClose(value, [this.active, ...this.retiring]);
  }

  private doClose(value: T, alive: readonly T[]): void {
    if (this.closed.has(value)) return;
    this.closed.add(value);
    // The callback logs its own failures; a rejection here must not go unhandled.
    this.closings.push(Promise.resolve().then(() => this.close(value, alive)).catch(() => undefined));
  }
}
