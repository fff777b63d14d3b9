import type { AdminConfig, ListenerConfig, PopgateConfig } from '../config/index.js';

/** The listener settings bound to a socket: changing one needs a restart. */
export const LISTENER_SOCKET_FIELDS = ['kind', 'address', 'port'] as const;
export type ListenerSocketField = (typeof LISTENER_SOCKET_FIELDS)[number];

/** One difference a config reload finds between the running gateway and the next config. */
export type ReloadChange =
  /** Needs a restart; the running listeners stay as they are. */
  | { readonly kind: 'listener-added'; readonly listener: string }
  | { readonly kind: 'listener-removed'; readonly listener: string }
  | { readonly kind: 'listener-rebind'; readonly listener: string; readonly field: ListenerSocketField; readonly from: string; readonly to: string }
  | { readonly kind: 'admin-changed'; readonly from: AdminConfig | undefined; readonly to: AdminConfig | undefined }
  /** Applied live to a listener's new connections; `tls`: its certificate settings changed (files loaded afresh). */
  | { readonly kind: 'listener-reconfigured'; readonly listener: string; readonly tls: boolean }
  /** limits.maxConnectionsPerIp changed: new connections count in a fresh per-address counter. */
  | { readonly kind: 'address-limit-changed'; readonly from: number; readonly to: number }
  /** New per-login services; `reused`: parts taken over from the running ones (unchanged settings). */
  | { readonly kind: 'services-rebuilt'; readonly reused: readonly ReusablePart[] };

/** Per-login service parts worth keeping across a reload: Kerberos (addon, gates) and the throttle (its failure counts). */
export type ReusablePart = 'kerberos' | 'throttle';

/** What the running gateway is: its last applied config, and each listener's config as applied (a blocked listener keeps its old one). */
export interface RunningConfig {
  readonly config: PopgateConfig;
  readonly listeners: readonly ListenerConfig[];
}

/**
 * Everything a reload to `next` changes, in this order: listener changes
 * needing a restart, the admin listener, listeners reconfigured live (every
 * running listener `next` still has and no restart change blocks), the
 * per-address limit, the services.
 */
export function planReload(running: RunningConfig, next: PopgateConfig): ReloadChange[] {
  const restart = listenerRestarts(running.listeners, next.listeners);
  const changes: ReloadChange[] = [...restart];
  const { config } = running;
  if (!sameConfig(config.admin, next.admin)) changes.push({ kind: 'admin-changed', from: config.admin, to: next.admin });
  const blocked = new Set(restart.map((c) => c.listener));
  for (const old of running.listeners) {
    const l = next.listeners.find((n) => n.name === old.name);
    if (l && !blocked.has(old.name)) changes.push({ kind: 'listener-reconfigured', listener: old.name, tls: !sameConfig(old.tls, l.tls) });
  }
  const perIp = [config.limits.maxConnectionsPerIp, next.limits.maxConnectionsPerIp] as const;
  if (perIp[0] !== perIp[1]) changes.push({ kind: 'address-limit-changed', from: perIp[0], to: perIp[1] });
  changes.push({ kind: 'services-rebuilt', reused: reusableParts(config, next) });
  return changes;
}

/** The service parts `next` can take over from services built for `current`. */
export function reusableParts(current: PopgateConfig, next: PopgateConfig): ReusablePart[] {
  const parts: ReusablePart[] = [];
  if (current.kerberos && next.kerberos && sameConfig(current.kerberos, next.kerberos)) parts.push('kerberos');
  if (sameConfig(current.auth.throttle, next.auth.throttle)) parts.push('throttle');
  return parts;
}

type RestartChange = Extract<ReloadChange, { kind: 'listener-added' | 'listener-removed' | 'listener-rebind' }>;

/** Listeners added or removed, and listeners (matched by name) whose kind, address or port changed. */
function listenerRestarts(current: readonly ListenerConfig[], next: readonly ListenerConfig[]): RestartChange[] {
  const changes: RestartChange[] = [];
  const byName = new Map(next.map((l) => [l.name, l] as const));
  for (const old of current) {
    const l = byName.get(old.name);
    if (!l) {
      changes.push({ kind: 'listener-removed', listener: old.name });
      continue;
    }
    for (const field of LISTENER_SOCKET_FIELDS) {
      if (old[field] !== l[field]) changes.push({ kind: 'listener-rebind', listener: old.name, field, from: String(old[field]), to: String(l[field]) });
    }
  }
  const names = new Set(current.map((l) => l.name));
  for (const l of next) if (!names.has(l.name)) changes.push({ kind: 'listener-added', listener: l.name });
  return changes;
}

/** Listener changes that need a restart, one human-readable line each (as logged). */
export function describeRestarts(changes: readonly ReloadChange[]): string[] {
  const lines: string[] = [];
  for (const c of changes) {
    if (c.kind === 'listener-added') lines.push(`listener ${c.listener} added`);
    else if (c.kind === 'listener-removed') lines.push(`listener ${c.listener} removed`);
    else if (c.kind === 'listener-rebind') lines.push(`listener ${c.listener}: ${c.field} ${c.from} -> ${c.to}`);
  }
  return lines;
}

/**
 * Listener changes a config reload cannot apply to running sockets, one
 * line each; empty when the listener set is the same. Everything else
 * about a listener (greeting, TLS files, PROXY settings, ...) can be
 * swapped live.
 */
export function listenerRestartChanges(current: readonly ListenerConfig[], next: readonly ListenerConfig[]): string[] {
  return describeRestarts(listenerRestarts(current, next));
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
