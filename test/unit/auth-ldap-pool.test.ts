/**
 * The idle pool of the LDAP verifier's user-bind connections
 * (src/auth/ldap-pool.ts) on a fake clock: room, liveness, most recently
 * used first, the idle limit per connection, close().
 */
import { describe, expect, it } from 'vitest';
import { createIdlePool } from '../../src/auth/ldap-pool.js';
import { FakeClock } from '../helpers/fake-clock.js';

interface Conn {
  readonly id: number;
  alive: boolean;
}

function setup(size = 2, idleTimeoutMs = 1_000) {
  const clock = new FakeClock();
  const closed: number[] = [];
  const pool = createIdlePool<Conn>({ size, idleTimeoutMs, clock, alive: (c) => c.alive, close: (c) => void closed.push(c.id) });
  const conn = (id: number): Conn => ({ id, alive: true });
  return { clock, closed, pool, conn };
}

describe('createIdlePool', () => {
  it('keeps up to size idle connections, closes the rest; hands out the most recently used first, each once', () => {
    const { pool, closed, conn } = setup(2);
    expect(pool.take()).toBeUndefined();
    const [a, b, c] = [conn(1), conn(2), conn(3)];
    pool.give(a);
    pool.give(b);
    pool.give(c);
    expect(closed).toEqual([3]);
    expect(pool.idle).toBe(2);
    expect(pool.take()).toBe(b);
    expect(pool.take()).toBe(a);
    expect(pool.take()).toBeUndefined();
    expect(closed).toEqual([3]);
  });

  it('size 0 keeps nothing', () => {
    const { pool, closed, conn } = setup(0);
    pool.give(conn(1));
    expect(closed).toEqual([1]);
    expect(pool.take()).toBeUndefined();
  });

  it('closes and skips a connection that died while idle; does not keep a dead one given back', () => {
    const { pool, closed, conn } = setup(3);
    const [a, b] = [conn(1), conn(2)];
    pool.give(a);
    pool.give(b);
    b.alive = false;
    expect(pool.take()).toBe(a);
    expect(closed).toEqual([2]);
    const d = conn(4);
    d.alive = false;
    pool.give(d);
    expect(closed).toEqual([2, 4]);
    expect(pool.idle).toBe(0);
  });

  it('closes each connection idleTimeoutMs after it was given back, oldest first, with one timer at a time', () => {
    const { pool, closed, conn, clock } = setup(3, 1_000);
    pool.give(conn(1));
    clock.advance(400);
    pool.give(conn(2));
    expect(clock.pending.map((t) => t.ms)).toEqual([1_000]);
    clock.advance(599);
    expect(closed).toEqual([]);
    clock.advance(1);
    expect(closed).toEqual([1]);
    // The next one's turn: 400 ms later.
    expect(clock.pending.map((t) => t.ms)).toEqual([400]);
    clock.advance(400);
    expect(closed).toEqual([1, 2]);
    expect(clock.pending).toEqual([]);
    expect(pool.idle).toBe(0);
  });

  it('a connection taken and given back is idle again from then; taking the last one cancels the timer', () => {
    const { pool, closed, conn, clock } = setup(2, 1_000);
    const a = conn(1);
    pool.give(a);
    clock.advance(900);
    expect(pool.take()).toBe(a);
    expect(clock.pending).toEqual([]);
    pool.give(a);
    clock.advance(999);
    expect(closed).toEqual([]);
    clock.advance(1);
    expect(closed).toEqual([1]);
  });

  it('an expired connection is not handed out even if its timer has not fired yet', () => {
    let now = 0;
    const closed: number[] = [];
    // A clock whose timers never fire: only take() notices the expiry.
    const pool = createIdlePool<Conn>({ size: 2, idleTimeoutMs: 1_000, clock: { now: () => now, setTimer: () => () => undefined }, alive: () => true, close: (c) => void closed.push(c.id) });
    pool.give({ id: 1, alive: true });
    now = 999;
    pool.give({ id: 2, alive: true });
    now = 1_000;
    expect(pool.take()?.id).toBe(2);
    expect(closed).toEqual([1]);
  });

  it('close() closes the idle connections and any given back later; no timer left', () => {
    const { pool, closed, conn, clock } = setup(2);
    pool.give(conn(1));
    pool.give(conn(2));
    pool.close();
    expect(closed).toEqual([1, 2]);
    expect(clock.pending).toEqual([]);
    pool.give(conn(3));
    expect(closed).toEqual([1, 2, 3]);
    expect(pool.take()).toBeUndefined();
  });
});
