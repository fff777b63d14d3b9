/**
 * The per-backend memory of CAPA answers: expiry on a fake clock (nothing
 * sleeps), the size bound, replacing an answer, and the key.
 */
import { describe, expect, it } from 'vitest';
import { CAPABILITY_TTL_MS, CapabilityMemory, capabilityKey } from '../../src/backend/capabilities.js';
import { FakeClock } from '../helpers/fake-clock.js';

describe('CapabilityMemory', () => {
  it('knows nothing at first, then what was learned and when', () => {
    const clock = new FakeClock();
    const m = new CapabilityMemory({ clock });
    expect(m.get('none b:110')).toBeUndefined();
    m.learned('none b:110', true);
    expect(m.get('none b:110')).toEqual({ pipelining: true, learnedAt: clock.now() });
    expect(m.get('none c:110')).toBeUndefined();
  });

  it('forgets an answer once its time is up (default 10 minutes), so the backend is asked again', () => {
    const clock = new FakeClock();
    const m = new CapabilityMemory({ clock });
    m.learned('k', true);
    clock.advance(CAPABILITY_TTL_MS - 1);
    expect(m.get('k')?.pipelining).toBe(true);
    clock.advance(1);
    expect(m.get('k')).toBeUndefined();
    expect(m.size).toBe(0);
    expect(CAPABILITY_TTL_MS).toBe(600_000);
  });

  it('a backend whose CAPA broke the link is remembered without expiry (until clear)', () => {
    const clock = new FakeClock();
    const m = new CapabilityMemory({ clock });
    m.learned('k', false, true);
    clock.advance(100 * CAPABILITY_TTL_MS);
    expect(m.get('k')).toMatchObject({ pipelining: false, permanent: true });
    m.clear();
    expect(m.get('k')).toBeUndefined();
  });

  it('a new answer replaces the old one and starts its time afresh', () => {
    const clock = new FakeClock();
    const m = new CapabilityMemory({ clock, ttlMs: 1000 });
    m.learned('k', true);
    clock.advance(900);
    m.learned('k', false);
    clock.advance(900);
    expect(m.get('k')).toEqual({ pipelining: false, learnedAt: clock.now() - 900 });
    expect(m.size).toBe(1);
  });

  it('holds at most maxEntries: the oldest learned goes first', () => {
    const m = new CapabilityMemory({ clock: new FakeClock(), maxEntries: 3 });
    for (const k of ['a', 'b', 'c']) m.learned(k, true);
    m.learned('a', false); // relearned: now the newest
    m.learned('d', true);
    expect(m.size).toBe(3);
    expect(m.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((k) => m.get(k)?.pipelining)).toEqual([false, true, true]);
    for (let i = 0; i < 100; i++) m.learned(`x${i}`, true);
    expect(m.size).toBe(3);
  });

  it('the key tells TLS modes apart (CAPA may differ after STLS)', () => {
    expect(capabilityKey('b:110', 'none')).not.toBe(capabilityKey('b:110', 'starttls'));
    expect(capabilityKey('[::1]:110', 'none')).toBe(capabilityKey('[::1]:110', 'none'));
  });
});
