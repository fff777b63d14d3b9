/**
 * The login throttle (src/auth/throttle/) with its in-memory store and an
 * injected clock: keys (IPv6 by /64, IPv4-mapped, user case), the delay
 * sequence, lockout and its expiry, trusted networks, the store's size bound,
 * failing open when the store breaks; repeated passwords (a stale password
 * retried is not counted, guesses are); and the auth.throttle config section.
 */
import { describe, expect, it } from 'vitest';
import {
  addressKey,
  LoginThrottle,
  MemoryFailureStore,
  passwordFingerprint,
  RedisFailureStore,
  userKey,
  type FailureStore,
  type LoginThrottleOptions,
  type ThrottleFailure,
} from '../../src/auth/throttle/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { recordingLog, type LogCall } from '../helpers/throttle-log.js';

const MIN = 60_000;

class Clock {
  t = 1_000_000;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}


function setup(overrides: Partial<LoginThrottleOptions> = {}) {
  const clock = new Clock();
  const store = new MemoryFailureStore({ now: clock.now, sweepIntervalMs: 0 });
  const logs: LogCall[] = [];
  const throttle = new LoginThrottle({
    store,
    delays: [2_000, 4_000, 8_000, 15_000],
    maxFailures: 10,
    windowMs: 15 * MIN,
    lockoutMs: 15 * MIN,
    log: recordingLog(logs),
    now: clock.now,
    ...overrides,
  });
  return { clock, store, throttle, logs };
}

describe('throttle keys', () => {
  it('keys IPv4 as is and IPv4-mapped IPv6 as IPv4', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::FFFF:c000:0207')).toBe('192.0.2.7');
  });

  it('groups IPv6 by /64 (one end site), whatever the notation and zone', () => {
    expect(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80::/64');
    expect(addressKey('::1')).toBe('::/64');
    expect(addressKey('')).toBeUndefined();
  });

  it('folds user case, hashes very long names, and skips empty ones', () => {
    expect(userKey('Alice')).toBe('alice');
    expect(userKey('')).toBeUndefined();
    const long = userKey('x'.repeat(5_000));
    expect(long).toMatch(/^sha256:[0-9a-f]{64}$/);
    const { throttle } = setup();
    expect(throttle.keysFor('2001:db8::5', 'Bob')).toEqual(['ip:2001:db8::/64', 'user:bob']);
    expect(throttle.keysFor('10.0.0.1', '')).toEqual(['ip:10.0.0.1']);
  });
});

describe('LoginThrottle with the memory store', () => {
  it('delays the Nth consecutive failure by delays[N-1], the last value repeating', async () => {
    const { throttle } = setup({ maxFailures: 100 });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) delays.push((await throttle.failed('192.0.2.1', 'alice')).delayMs);
    expect(delays).toEqual([2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
  });

  it('counts per address and per user: the higher count decides the delay', async () => {
    const { throttle } = setup({ maxFailures: 100 });
    await throttle.failed('192.0.2.1', 'alice');
    await throttle.failed('192.0.2.1', 'alice');
    // Same user from elsewhere: the user's third failure.
    expect(await throttle.failed('198.51.100.9', 'alice')).toMatchObject({ delayMs: 8_000, failures: 3 });
    // Same address, another user: the address's third failure.
    expect(await throttle.failed('192.0.2.1', 'bob')).toMatchObject({ delayMs: 8_000, failures: 3 });
    // Fresh address and user.
    expect(await throttle.failed('203.0.113.1', 'carol')).toMatchObject({ delayMs: 2_000, failures: 1 });
  });

  it('counts a whole IPv6 /64 as one client', async () => {
    const { throttle } = setup({ maxFailures: 100 });
    await throttle.failed('2001:db8:1:2::1', 'a');
    await throttle.failed('2001:db8:1:2::ffff', 'b');
    expect(await throttle.failed('2001:db8:1:2:dead:beef:0:1', 'c')).toMatchObject({ failures: 3 });
    expect(await throttle.failed('2001:db8:1:3::1', 'd')).toMatchObject({ failures: 1 });
  });

  it('locks the address after maxFailures, refuses it during the lockout, and lets it in again after', async () => {
    const { throttle, clock, logs } = setup({ maxFailures: 3, lockoutMs: 10 * MIN });
    expect((await throttle.failed('192.0.2.1', 'u1')).locked).toBe(false);
    expect((await throttle.failed('192.0.2.1', 'u2')).locked).toBe(false);
    expect(await throttle.check('192.0.2.1', 'u3')).toEqual({ locked: false, exempt: false });
    expect((await throttle.failed('192.0.2.1', 'u3')).locked).toBe(true);
    expect(logs.filter((l) => l.level === 'warn').map((l) => l.obj.locked)).toEqual([['ip:192.0.2.1']]);
    // Any user from that address is refused; the users themselves are not locked.
    expect((await throttle.check('192.0.2.1', 'someone')).locked).toBe(true);
    expect((await throttle.check('198.51.100.1', 'u1')).locked).toBe(false);
    clock.advance(10 * MIN - 1);
    expect((await throttle.check('192.0.2.1', 'someone')).locked).toBe(true);
    clock.advance(1);
    expect((await throttle.check('192.0.2.1', 'someone')).locked).toBe(false);
  });

  it('locks a user attacked from many addresses', async () => {
    const { throttle } = setup({ maxFailures: 3 });
    await throttle.failed('192.0.2.1', 'alice');
    await throttle.failed('192.0.2.2', 'alice');
    expect((await throttle.failed('192.0.2.3', 'ALICE')).locked).toBe(true);
    expect((await throttle.check('203.0.113.5', 'alice')).locked).toBe(true);
  });

  it('forgets failures a window after the latest one', async () => {
    const { throttle, clock } = setup({ maxFailures: 100, windowMs: 5 * MIN });
    await throttle.failed('192.0.2.1', 'alice');
    clock.advance(4 * MIN);
    expect((await throttle.failed('192.0.2.1', 'alice')).failures).toBe(2);
    clock.advance(5 * MIN);
    expect((await throttle.failed('192.0.2.1', 'alice')).failures).toBe(1);
  });

  it('a success clears the address and user counters but not a running lock', async () => {
    const { throttle, store } = setup({ maxFailures: 3 });
    await throttle.failed('192.0.2.1', 'alice');
    await throttle.failed('192.0.2.1', 'alice');
    await throttle.succeeded('192.0.2.1', 'Alice');
    expect(await store.failures(['ip:192.0.2.1', 'user:alice'])).toEqual([0, 0]);
    expect((await throttle.failed('192.0.2.1', 'alice')).delayMs).toBe(2_000);

    await throttle.failed('198.51.100.1', 'bob');
    await throttle.failed('198.51.100.1', 'bob');
    await throttle.failed('198.51.100.1', 'bob');
    await throttle.succeeded('198.51.100.1', 'bob');
    expect((await throttle.check('198.51.100.1', 'bob')).locked).toBe(true);
  });

  it('exempts trusted networks: nothing counted, no delay of its own, never locked', async () => {
    const { throttle, store } = setup({ maxFailures: 2, trustedNetworks: ['10.0.0.0/8', '2001:db8:ffff::/48'] });
    for (let i = 0; i < 5; i++) {
      expect(await throttle.failed('10.1.2.3', 'alice')).toEqual({ delayMs: 0, locked: false, failures: 0, exempt: true });
    }
    expect(await throttle.check('::ffff:10.1.2.3', 'alice')).toEqual({ locked: false, exempt: true });
    expect(await throttle.failed('2001:db8:ffff:1::1', 'alice')).toMatchObject({ exempt: true });
    expect(store.size).toBe(0);
    // The user is not locked for the others either.
    expect((await throttle.check('192.0.2.1', 'alice')).locked).toBe(false);
  });

  it('fails open when the store breaks, logging at most once a minute', async () => {
    const clock = new Clock();
    const logs: LogCall[] = [];
    const broken: FailureStore = {
      name: 'broken',
      recordFailure: () => Promise.reject(new Error('ECONNREFUSED')),
      failures: () => Promise.reject(new Error('ECONNREFUSED')),
      lock: () => Promise.reject(new Error('ECONNREFUSED')),
      isLocked: () => Promise.reject(new Error('ECONNREFUSED')),
      clear: () => Promise.reject(new Error('ECONNREFUSED')),
      rememberPassword: () => Promise.reject(new Error('ECONNREFUSED')),
      fingerprintSecret: () => Promise.reject(new Error('ECONNREFUSED')),
      close: () => Promise.resolve(),
    };
    let reported = 0;
    const throttle = new LoginThrottle({
      store: broken,
      delays: [100, 200],
      maxFailures: 1,
      windowMs: MIN,
      lockoutMs: MIN,
      repeatedPasswords: 5,
      log: recordingLog(logs),
      now: clock.now,
      onStoreError: () => reported++,
    });
    expect(await throttle.check('192.0.2.1', 'alice')).toEqual({ locked: false, exempt: false });
    expect(await throttle.failed('192.0.2.1', 'alice')).toEqual({ delayMs: 100, locked: false, failures: 0, exempt: false });
    expect(await throttle.failed('192.0.2.1', 'alice')).toMatchObject({ delayMs: 100, locked: false });
    await throttle.succeeded('192.0.2.1', 'alice');
    expect(logs.filter((l) => l.level === 'error')).toHaveLength(1);
    clock.advance(MIN);
    await throttle.check('192.0.2.1', 'alice');
    const errors = logs.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(2);
    expect(errors[1]?.obj).toMatchObject({ store: 'broken', err: 'ECONNREFUSED', unlogged: 3 });
    // Every error counts, logged or not (for a metric).
    expect(throttle.storeErrors).toBe(5);
    expect(reported).toBe(5);
    // With a password: the secret cannot be had either; the same open answer.
    expect(await throttle.failed('192.0.2.1', 'alice', 'pw')).toEqual({ delayMs: 100, locked: false, failures: 0, exempt: false });
    expect(throttle.storeErrors).toBe(6);
  });
});

describe('LoginThrottle: repeated passwords', () => {
  /** The defaults of auth.throttle (10 failures, 15m window), repeatedPasswords 5, on the shared fake clock. */
  function repeats(repeatedPasswords = 5) {
    const clock = new FakeClock();
    const store = new MemoryFailureStore({ now: () => clock.now(), sweepIntervalMs: 0 });
    const logs: LogCall[] = [];
    const throttle = new LoginThrottle({
      store,
      delays: [2_000, 4_000, 8_000, 15_000],
      maxFailures: 10,
      windowMs: 15 * MIN,
      lockoutMs: 15 * MIN,
      repeatedPasswords,
      log: recordingLog(logs),
      now: () => clock.now(),
    });
    return { clock, store, throttle, logs };
  }

  it('20 failures with the same wrong password do not lock the user (one counted; each still delayed)', async () => {
    const { throttle, store, clock } = repeats();
    const first = await throttle.failed('192.0.2.1', 'alice', 'old-password');
    expect(first).toEqual({ delayMs: 2_000, locked: false, failures: 1, exempt: false });
    for (let i = 0; i < 19; i++) {
      clock.advance(30_000); // a phone polling every 30 s (all within the window of the first, counted, failure)
      expect(await throttle.failed('192.0.2.1', 'Alice', 'old-password')).toEqual({ delayMs: 2_000, locked: false, failures: 1, exempt: false, repeated: true });
    }
    expect(await throttle.check('192.0.2.1', 'alice')).toEqual({ locked: false, exempt: false });
    expect(await store.failures(['ip:192.0.2.1', 'user:alice'])).toEqual([1, 1]);
  });

  it('10 different wrong passwords do lock it', async () => {
    const { throttle, logs } = repeats();
    const results: ThrottleFailure[] = [];
    for (let i = 0; i < 10; i++) results.push(await throttle.failed('192.0.2.1', 'alice', `guess-${i}`));
    expect(results.map((r) => r.failures)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(results.some((r) => r.repeated)).toBe(false);
    expect(results.at(-1)?.locked).toBe(true);
    expect(await throttle.check('198.51.100.1', 'alice')).toEqual({ locked: true, exempt: false });
    // Neither the password nor its fingerprint is logged.
    expect(JSON.stringify(logs)).not.toMatch(/guess-/);
  });

  it('a repeat counts nothing but waits the delay its counts have reached', async () => {
    const { throttle } = repeats();
    for (const pw of ['a', 'b', 'c']) await throttle.failed('192.0.2.1', 'alice', pw);
    expect(await throttle.failed('192.0.2.1', 'alice', 'b')).toEqual({ delayMs: 8_000, locked: false, failures: 3, exempt: false, repeated: true });
  });

  it('with the rule off (repeatedPasswords 0) the same 20 lock the user', async () => {
    const { throttle } = repeats(0);
    const results: ThrottleFailure[] = [];
    for (let i = 0; i < 20; i++) results.push(await throttle.failed('192.0.2.1', 'alice', 'old-password'));
    expect(results[9]).toMatchObject({ failures: 10, locked: true });
    expect(results.some((r) => r.repeated)).toBe(false);
    expect(await throttle.check('192.0.2.1', 'alice')).toEqual({ locked: true, exempt: false });
  });

  it('a repeat after the window has passed counts again', async () => {
    const { throttle, clock } = repeats();
    await throttle.failed('192.0.2.1', 'alice', 'old-password');
    clock.advance(15 * MIN - 1);
    expect((await throttle.failed('192.0.2.1', 'alice', 'old-password')).repeated).toBe(true);
    // Each repeat keeps the fingerprint for another window; a whole quiet window forgets it.
    clock.advance(15 * MIN - 1);
    expect((await throttle.failed('192.0.2.1', 'alice', 'old-password')).repeated).toBe(true);
    clock.advance(15 * MIN);
    expect(await throttle.failed('192.0.2.1', 'alice', 'old-password')).toEqual({ delayMs: 2_000, locked: false, failures: 1, exempt: false });
  });

  it('keeps the last repeatedPasswords per user: an older one counts again', async () => {
    const { throttle } = repeats(2);
    for (const pw of ['a', 'b', 'c']) await throttle.failed('192.0.2.1', 'alice', pw);
    expect((await throttle.failed('192.0.2.1', 'alice', 'c')).repeated).toBe(true);
    expect((await throttle.failed('192.0.2.1', 'alice', 'b')).repeated).toBe(true);
    expect(await throttle.failed('192.0.2.1', 'alice', 'a')).toMatchObject({ failures: 4 });
  });

  it('keys fingerprints by user: one password for two users counts for each', async () => {
    const { throttle, store } = repeats();
    expect(await throttle.failed('192.0.2.1', 'alice', 'Summer2026')).toMatchObject({ failures: 1 });
    const bob = await throttle.failed('192.0.2.1', 'bob', 'Summer2026');
    expect(bob).toMatchObject({ failures: 2 });
    expect(bob.repeated).toBeUndefined();
    expect(await store.failures(['ip:192.0.2.1', 'user:alice', 'user:bob'])).toEqual([2, 1, 1]);
    const secret = await store.fingerprintSecret();
    expect(passwordFingerprint(secret, 'alice', 'Summer2026')).not.toBe(passwordFingerprint(secret, 'bob', 'Summer2026'));
    expect(passwordFingerprint(secret, 'alice', 'Summer2026')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('a failure without a password (Kerberos, EXTERNAL, a digest) always counts', async () => {
    const { throttle } = repeats();
    const results: ThrottleFailure[] = [];
    for (let i = 0; i < 10; i++) results.push(await throttle.failed('192.0.2.1', 'alice'));
    expect(results.map((r) => r.failures)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(results.at(-1)?.locked).toBe(true);
  });

  it('a success clears the counters but remembers the failed passwords', async () => {
    const { throttle, store } = repeats();
    await throttle.failed('192.0.2.1', 'alice', 'old-password');
    await throttle.succeeded('192.0.2.9', 'alice');
    expect(await store.failures(['user:alice'])).toEqual([0]);
    expect(await throttle.failed('192.0.2.1', 'alice', 'old-password')).toMatchObject({ failures: 1, repeated: true });
  });

  it('trusted networks are exempt before any fingerprint is taken', async () => {
    const { store } = repeats();
    const throttle = new LoginThrottle({ store, delays: [1], maxFailures: 2, windowMs: MIN, lockoutMs: MIN, repeatedPasswords: 5, trustedNetworks: ['10.0.0.0/8'] });
    expect(await throttle.failed('10.0.0.1', 'alice', 'pw')).toEqual({ delayMs: 0, locked: false, failures: 0, exempt: true });
    expect(store.size).toBe(0);
  });
});

describe('MemoryFailureStore', () => {
  it('keeps at most maxEntries keys, dropping the least recently updated', async () => {
    const clock = new Clock();
    const store = new MemoryFailureStore({ maxEntries: 100, now: clock.now, sweepIntervalMs: 0 });
    for (let i = 0; i < 1_000; i++) await store.recordFailure([`ip:10.0.${i >> 8}.${i & 255}`], MIN);
    expect(store.size).toBe(100);
    // The newest survive, the oldest are gone.
    expect(await store.failures(['ip:10.0.3.231', 'ip:10.0.0.0'])).toEqual([1, 0]);
    // Updating a key makes it the most recent.
    await store.recordFailure(['ip:10.0.3.132'], MIN); // the oldest survivor (i = 900)
    await store.recordFailure(['ip:10.9.9.9'], MIN);
    expect(await store.failures(['ip:10.0.3.132', 'ip:10.0.3.133'])).toEqual([2, 0]);
    await store.close();
  });

  it('sweeps expired counters and locks', async () => {
    const clock = new Clock();
    const store = new MemoryFailureStore({ now: clock.now, sweepIntervalMs: 0 });
    await store.recordFailure(['a', 'b'], 1_000);
    await store.lock(['c'], 5_000);
    expect(store.size).toBe(3);
    clock.advance(1_000);
    expect(store.sweep()).toBe(2);
    expect(await store.isLocked(['c'])).toBe(true);
    clock.advance(4_000);
    expect(store.sweep()).toBe(1);
    expect(store.size).toBe(0);
    await store.close();
  });
});

describe('MemoryFailureStore: remembered passwords', () => {
  it('keeps the last `keep` per key for the window, outliving a clear, then sweeps them', async () => {
    const clock = new Clock();
    const store = new MemoryFailureStore({ now: clock.now, sweepIntervalMs: 0 });
    const fp = (value: string) => ({ key: 'user:alice', value, keep: 2 });
    expect(await store.rememberPassword(fp('f1'), MIN)).toBe(false);
    expect(await store.rememberPassword(fp('f1'), MIN)).toBe(true);
    expect(await store.rememberPassword(fp('f2'), MIN)).toBe(false);
    expect(await store.rememberPassword(fp('f3'), MIN)).toBe(false);
    expect(await store.rememberPassword(fp('f1'), MIN)).toBe(false); // dropped past keep
    await store.recordFailure(['user:alice'], MIN);
    await store.clear(['user:alice']);
    expect(store.size).toBe(1);
    expect(await store.rememberPassword(fp('f1'), MIN)).toBe(true);
    clock.advance(MIN);
    expect(store.sweep()).toBe(1);
    expect(store.size).toBe(0);
    expect(await store.fingerprintSecret()).toBe(await store.fingerprintSecret());
    expect(await store.fingerprintSecret()).not.toBe(await new MemoryFailureStore({ sweepIntervalMs: 0 }).fingerprintSecret());
    await store.close();
  });
});

describe('auth.throttle config', () => {
  const BASE = `listeners:\n  - { kind: pop3s, port: 995, tls: { certFile: c, keyFile: k } }\nbackend: { host: 127.0.0.1, login: { mode: master, user: popgate, password: x } }\n`;
  const parse = (auth: string) => parseConfigText(`${BASE}auth:\n  userFile: users\n${auth}`, { baseDir: '/etc/popgate', env: {}, source: 't', readSecrets: false });

  it('has the documented defaults', async () => {
    const cfg = await parse('');
    expect(cfg.auth.throttle).toEqual({
      enabled: true,
      delays: [2_000, 4_000, 8_000, 15_000],
      maxFailures: 10,
      window: 900_000,
      lockout: 900_000,
      repeatedPasswords: 5,
      trustedNetworks: [],
      store: 'memory',
    });
  });

  it('parses durations, normalises networks and takes a redis store', async () => {
    const cfg = await parse(
      '  throttle: { delays: [100ms, 1], window: 1m, lockout: 30s, trustedNetworks: [10.0.0.0/8, 192.0.2.1], store: redis, redis: { url: redis://127.0.0.1:6379/2 } }\n',
    );
    expect(cfg.auth.throttle).toMatchObject({
      delays: [100, 1_000],
      window: 60_000,
      lockout: 30_000,
      trustedNetworks: ['10.0.0.0/8', '192.0.2.1/32'],
      store: 'redis',
      redis: { url: 'redis://127.0.0.1:6379/2', keyPrefix: 'popgate:' },
    });
  });

  it('takes repeatedPasswords 0 (off) to 100', async () => {
    expect((await parse('  throttle: { repeatedPasswords: 0 }\n')).auth.throttle.repeatedPasswords).toBe(0);
    expect((await parse('  throttle: { repeatedPasswords: 100 }\n')).auth.throttle.repeatedPasswords).toBe(100);
  });

  it.each([
    ['  throttle: { repeatedPasswords: -1 }\n', /auth\.throttle\.repeatedPasswords: /],
    ['  throttle: { repeatedPasswords: 1.5 }\n', /auth\.throttle\.repeatedPasswords: /],
    ['  throttle: { repeatedPasswords: 101 }\n', /auth\.throttle\.repeatedPasswords: /],
    ['  throttle: { store: redis }\n', /auth\.throttle\.redis: required when auth\.throttle\.store is redis/],
    ['  throttle: { redis: { url: redis://h:6379 } }\n', /auth\.throttle\.redis: configured but not used/],
    ['  throttle: { store: redis, redis: { url: http://h:6379 } }\n', /auth\.throttle\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL, not http:/],
    ['  throttle: { delays: [] }\n', /auth\.throttle\.delays: at least one delay is required/],
    ['  throttle: { delays: [2m] }\n', /auth\.throttle\.delays\[0\]: must be at most 1m/],
    ['  throttle: { trustedNetworks: [10.0.0.1/8] }\n', /auth\.throttle\.trustedNetworks\[0\]: .*host bits set/],
    ['  throttle: { maxFailure: 3 }\n', /auth\.throttle\.maxFailure: unknown key/],
    ['  throttle: { store: redis, redis: { keyPrefix: x } }\n', /auth\.throttle\.redis: one of url, sentinel or cluster is required/],
    ["  throttle: { store: redis, redis: { sentinel: { masterName: m, sentinels: ['h:26379'] }, cluster: { nodes: ['h:6379'] } } }\n", /sentinel and cluster are exclusive/],
    ["  throttle: { store: redis, redis: { sentinel: { sentinels: ['h:26379'] } } }\n", /auth\.throttle\.redis\.sentinel\.masterName: /],
    ["  throttle: { store: redis, redis: { cluster: { nodes: ['h'] } } }\n", /auth\.throttle\.redis\.cluster\.nodes\[0\]: must be host:port/],
  ])('refuses %s', async (yaml, message) => {
    await expect(parse(yaml)).rejects.toThrow(message);
  });
});

describe('RedisFailureStore.connect', () => {
  it('takes exactly one of url, sentinel and cluster', async () => {
    await expect(RedisFailureStore.connect({ keyPrefix: 'p:' })).rejects.toThrow(/exactly one of url, sentinel, cluster/);
    await expect(
      RedisFailureStore.connect({ keyPrefix: 'p:', url: 'redis://127.0.0.1:1', cluster: { nodes: [{ host: '127.0.0.1', port: 1 }] } }),
    ).rejects.toThrow(/exactly one of url, sentinel, cluster/);
  });
});
