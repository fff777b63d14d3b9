import { describe, expect, it } from 'vitest';
import { addressKey, LogRateLimiter, PerAddressCounter } from '../../src/server/address-limit.js';

describe('addressKey', () => {
  it('keeps IPv4 and unwraps IPv4-mapped IPv6 (dotted and hex forms)', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::FFFF:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:c000:207')).toBe('192.0.2.7');
    expect(addressKey('0:0:0:0:0:ffff:c000:0207')).toBe('192.0.2.7');
  });

  it('groups IPv6 by /64, whatever the spelling', () => {
    const key = '2001:db8:0:1::/64';
    expect(addressKey('2001:db8:0:1::1')).toBe(key);
    expect(addressKey('2001:db8:0:1:ffff:ffff:ffff:ffff')).toBe(key);
    expect(addressKey('2001:0DB8:0000:0001:0:0:0:2')).toBe(key);
    expect(addressKey('2001:db8::1:0:0:0:3')).toBe(key);
    expect(addressKey('2001:db8:0:2::1')).toBe('2001:db8:0:2::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    // Not IPv4-mapped: the NAT64 prefix and IPv4-compatible addresses are ordinary IPv6.
    expect(addressKey('64:ff9b::192.0.2.7')).toBe('64:ff9b:0:0::/64');
  });

  it('leaves anything else as given (its own key)', () => {
    expect(addressKey('')).toBe('');
    expect(addressKey('not-an-address')).toBe('not-an-address');
  });
});

describe('PerAddressCounter', () => {
  it('admits up to max per key, counts IPv6 per /64, releases once', () => {
    const c = new PerAddressCounter(2);
    const a1 = c.acquire('2001:db8::1');
    const a2 = c.acquire('2001:db8::2');
    expect(a1).toBeTypeOf('function');
    expect(a2).toBeTypeOf('function');
    expect(c.acquire('2001:db8::3')).toBeUndefined();
    expect(c.acquire('2001:db8:0:1::1')).toBeTypeOf('function'); // another /64
    expect(c.count('2001:db8::ffff')).toBe(2);
    a1!();
    a1!(); // idempotent: a second call frees nothing more
    expect(c.count('2001:db8::1')).toBe(1);
    expect(c.acquire('2001:db8::4')).toBeTypeOf('function');
    expect(c.acquire('2001:db8::5')).toBeUndefined();
  });

  it('counts an IPv4 client the same over IPv4 and dual-stack sockets, and forgets idle keys', () => {
    const c = new PerAddressCounter(1);
    const r = c.acquire('192.0.2.7');
    expect(c.acquire('::ffff:192.0.2.7')).toBeUndefined();
    expect(c.size).toBe(1);
    r!();
    expect(c.size).toBe(0);
    expect(c.acquire('::ffff:192.0.2.7')).toBeTypeOf('function');
  });

  it('refuses a meaningless maximum', () => {
    expect(() => new PerAddressCounter(0)).toThrow(RangeError);
    expect(() => new PerAddressCounter(1.5)).toThrow(RangeError);
  });
});

describe('LogRateLimiter', () => {
  it('logs once per key per window and reports what it suppressed', () => {
    let now = 1_000_000;
    const l = new LogRateLimiter({ windowMs: 10_000, now: () => now });
    expect(l.take('a')).toEqual({ log: true, suppressed: 0 });
    expect(l.take('a')).toEqual({ log: false });
    expect(l.take('a')).toEqual({ log: false });
    expect(l.take('b')).toEqual({ log: true, suppressed: 0 });
    now += 9_999;
    expect(l.take('a')).toEqual({ log: false });
    now += 1;
    expect(l.take('a')).toEqual({ log: true, suppressed: 3 });
    expect(l.take('a')).toEqual({ log: false });
  });

  it('stays bounded under a flood from many addresses', () => {
    let now = 0;
    const l = new LogRateLimiter({ windowMs: 10_000, maxKeys: 100, now: () => now });
    for (let i = 0; i < 1_000; i++) l.take(`k${i}`);
    expect(l.size).toBeLessThanOrEqual(100);
    // Expired keys are dropped first, fresh ones kept.
    const m = new LogRateLimiter({ windowMs: 10_000, maxKeys: 3, now: () => now });
    m.take('old1');
    m.take('old2');
    now += 10_000;
    m.take('fresh');
    m.take('new');
    expect(m.size).toBe(2);
    expect(m.take('fresh')).toEqual({ log: false });
  });
});
