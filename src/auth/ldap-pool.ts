/**
 * Idle connections kept for reuse (the LDAP verifier's user-bind
 * connections): at most `size` of them, each closed after `idleTimeoutMs`
 * idle. A taken connection belongs to its taker until given back, so no two
 * users ever share one. Most recently used first: the others age out.
 */
import { unrefClock, type Clock } from '../clock.js';

export interface IdlePoolOptions<T> {
  /** At most this many idle connections; 0 keeps none. */
  readonly size: number;
  readonly idleTimeoutMs: number;
  /** Still usable? Checked on take: a dead one is closed and skipped. */
  readonly alive: (conn: T) => boolean;
  /** Closes a connection the pool lets go (dead, idle too long, no room, pool closed). */
  readonly close: (conn: T) => void;
  /** Default: the real clock, its timers unref'd (an idle pool does not keep the process alive). */
  readonly clock?: Clock;
}

export interface IdlePool<T> {
  /** An idle, live connection (now the caller's), or undefined: connect a new one. */
  take(): T | undefined;
  /** Back from the caller, healthy: kept when there is room, else closed. */
  give(conn: T): void;
  /** Idle connections held now. */
  readonly idle: number;
  /** Closes the idle connections; later gives close theirs. */
  close(): void;
}

export function createIdlePool<T>(options: IdlePoolOptions<T>): IdlePool<T> {
  const { size, idleTimeoutMs, alive, close } = options;
  const clock = options.clock ?? unrefClock;
  /** Oldest first. */
  let idle: Array<{ conn: T; since: number }> = [];
  let closed = false;
  let cancelTimer: (() => void) | undefined;

  function schedule(): void {
    cancelTimer?.();
    cancelTimer = undefined;
    const oldest = idle[0];
    if (oldest) cancelTimer = clock.setTimer(sweep, Math.max(0, oldest.since + idleTimeoutMs - clock.now()));
  }

  /** Closes the connections idle for idleTimeoutMs or more. */
  function sweep(): void {
    const now = clock.now();
    while (idle[0] && idle[0].since + idleTimeoutMs <= now) close(idle.shift()!.conn);
    schedule();
  }

  return {
    take() {
      sweep();
      for (let e = idle.pop(); e; e = idle.pop()) {
        if (alive(e.conn)) {
          if (idle.length === 0) schedule();
          return e.conn;
        }
        close(e.conn);
      }
      schedule();
      return undefined;
    },
    give(conn) {
      if (closed || idle.length >= size || !alive(conn)) {
        close(conn);
        return;
      }
      idle.push({ conn, since: clock.now() });
      if (idle.length === 1) schedule();
    },
    get idle() {
      return idle.length;
    },
    close() {
      closed = true;
      cancelTimer?.();
      cancelTimer = undefined;
      const all = idle;
      idle = [];
      for (const e of all) close(e.conn);
    },
  };
}
