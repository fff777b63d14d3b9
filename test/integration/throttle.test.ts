/**
 * The login throttle (auth.throttle) through the real gateway: reply order
 * and codes, progressive delays (asserted on the logged delayMs, never on
 * elapsed time), the [LOGIN-DELAY] lockout, trusted networks; and the Redis
 * store against a REAL private redis-server: its key layout, two gateways
 * sharing one Redis, and failing open when Redis goes away; repeated wrong
 * passwords (not counted, on one replica or across two; guesses still lock).
 *
 * Clients connect from distinct loopback addresses (127.0.0.x) to be
 * distinct client addresses for the throttle.
 */
import { rm } from 'node:fs/promises';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoginThrottle, passwordFingerprint, RedisFailureStore, type ThrottleFailure } from '../../src/auth/throttle/index.js';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let backend: DemoBackend;
let redis: TestRedis;
const USERS = [
  { name: 'gina', password: 'Gina-front-pw' },
  { name: 'hank', password: 'Hank-front-pw' },
];
const PASSWORD: Record<string, string> = { gina: 'Gina-front-pw', hank: 'Hank-front-pw' };
const LOGIN = '{ mode: master, method: auth-plain, user: popgate, password: Demo-Master }';
const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const THROTTLED = '-ERR [LOGIN-DELAY] Too many failed logins, try again later';

beforeAll(async () => {
  pki = await makeTempTestPki();
  backend = await startDemoBackend({
    users: { gina: 'unused', hank: 'unused' },
    masterUser: 'popgate',
    masterPassword: 'Demo-Master',
    messages: { gina: [Buffer.from('Subject: hi\r\n\r\nhi\r\n')], hank: [] },
  });
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await backend?.close();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

function gatewayWith(throttle: string, opts: { failureDelay?: string; extra?: string; admin?: boolean } = {}): Promise<TestGateway> {
  return startTestGateway({
    users: USERS,
    backendPort: backend.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: LOGIN,
    allowPlaintextAuth: true,
    maxAuthAttempts: 20,
    throttle,
    ...(opts.failureDelay ? { failureDelay: opts.failureDelay } : {}),
    ...(opts.extra ? { extra: opts.extra } : {}),
    ...(opts.admin ? { admin: true } : {}),
  });
}

async function connect(gw: TestGateway, from: string): Promise<LineClient> {
  const c = await LineClient.connect({ port: gw.port('pop3'), localAddress: from });
  expect(await c.line()).toMatch(/^\+OK/);
  return c;
}

/** USER/PASS; returns the reply to PASS. */
async function login(c: LineClient, user: string, password: string): Promise<string> {
  expect(await c.cmd(`USER ${user}`)).toBe('+OK');
  return c.cmd(`PASS ${password}`);
}

/** The delayMs of every logged login failure so far, in order. */
function loggedDelays(gw: TestGateway): unknown[] {
  return gw.logs.filter((l) => l.msg === 'login failed').map((l) => l.delayMs);
}

async function failures(gw: TestGateway, n: number): Promise<void> {
  await waitForLog(gw, () => gw.logs.filter((l) => l.msg === 'login failed').length >= n);
}

describe('login throttle (memory store)', () => {
  it('delays failures progressively, then refuses the address and the user with [LOGIN-DELAY]', async () => {
    const gw = await gatewayWith('{ delays: [100ms, 200ms], maxFailures: 3, lockout: 1m }');
    try {
      const c = await connect(gw, '127.0.0.1');
      expect(await login(c, 'gina', 'wrong-1')).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', 'wrong-2')).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', 'wrong-3')).toBe(AUTH_FAILED);
      // Locked now: even the right password is refused, and the connection closed.
      expect(await login(c, 'gina', PASSWORD.gina!)).toBe(THROTTLED);
      await c.closed();
      await failures(gw, 4);
      expect(loggedDelays(gw)).toEqual([100, 200, 200, 0]);
      expect(gw.logs.filter((l) => l.msg === 'login failed').map((l) => l.code)).toEqual([
        'AUTH_FAILED',
        'AUTH_FAILED',
        'AUTH_FAILED',
        'LOGIN_THROTTLED',
      ]);
      const lock = await waitForLog(gw, (l) => l.msg === 'login throttle: locked out after repeated failures');
      expect(lock).toMatchObject({ locked: ['ip:127.0.0.1', 'user:gina'], failures: 3, lockoutMs: 60_000 });

      // The user is locked from anywhere; the address for any user.
      const d = await connect(gw, '127.0.0.2');
      expect(await login(d, 'gina', PASSWORD.gina!)).toBe(THROTTLED);
      await d.closed();
      const e = await connect(gw, '127.0.0.1');
      expect(await login(e, 'hank', PASSWORD.hank!)).toBe(THROTTLED);
      await e.closed();
      // Another user from another address is not affected.
      const f = await connect(gw, '127.0.0.3');
      expect(await login(f, 'hank', PASSWORD.hank!)).toMatch(/^\+OK/);
      expect(await f.cmd('QUIT')).toMatch(/^\+OK/);
      await f.closed();
    } finally {
      await gw.stop();
    }
  });

  it('a successful login clears the counters of its address and user', async () => {
    const gw = await gatewayWith('{ delays: [100ms, 200ms, 300ms], maxFailures: 3 }');
    try {
      const c = await connect(gw, '127.0.0.4');
      expect(await login(c, 'gina', 'wrong-1')).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', 'wrong-2')).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      const d = await connect(gw, '127.0.0.4');
      expect(await login(d, 'gina', 'wrong-3')).toBe(AUTH_FAILED);
      expect(await login(d, 'gina', 'wrong-4')).toBe(AUTH_FAILED);
      await failures(gw, 4);
      // Back to the first delay, and two more failures are not a lockout.
      expect(loggedDelays(gw)).toEqual([100, 200, 100, 200]);
      d.destroy();
    } finally {
      await gw.stop();
    }
  });

  it('exempts trusted networks (auth.failureDelay applies to them); AUTH PLAIN failures count like USER/PASS', async () => {
    const gw = await gatewayWith('{ delays: [100ms], maxFailures: 2, trustedNetworks: [127.0.0.5] }', { failureDelay: '50ms' });
    try {
      const c = await connect(gw, '127.0.0.5');
      for (let i = 0; i < 4; i++) expect(await login(c, 'gina', `wrong-${i}`)).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      await failures(gw, 4);
      expect(loggedDelays(gw)).toEqual([50, 50, 50, 50]);

      // An untrusted address: AUTH PLAIN failures count the same.
      const d = await connect(gw, '127.0.0.6');
      const plain = (pw: string): string => Buffer.from(`\0hank\0${pw}`).toString('base64');
      expect(await d.cmd(`AUTH PLAIN ${plain('wrong-1')}`)).toBe(AUTH_FAILED);
      expect(await d.cmd(`AUTH PLAIN ${plain('wrong-2')}`)).toBe(AUTH_FAILED);
      expect(await d.cmd(`AUTH PLAIN ${plain(PASSWORD.hank!)}`)).toBe(THROTTLED);
      await d.closed();
      await failures(gw, 7);
      expect(loggedDelays(gw).slice(4)).toEqual([100, 100, 0]);
    } finally {
      await gw.stop();
    }
  });

  it('with the throttle disabled, auth.failureDelay applies and nothing is locked', async () => {
    const gw = await gatewayWith('{ enabled: false, maxFailures: 1 }', { failureDelay: '30ms' });
    try {
      const c = await connect(gw, '127.0.0.7');
      for (let i = 0; i < 3; i++) expect(await login(c, 'gina', `wrong-${i}`)).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      expect(loggedDelays(gw)).toEqual([30, 30, 30]);
      expect(gw.logs.some((l) => l.msg === 'login throttle enabled')).toBe(false);
    } finally {
      await gw.stop();
    }
  });
});

describe('a connection closed after a refused login', () => {
  it('gives its per-address slot back as soon as the client leaves (a locked-out client cannot fill the limit)', async () => {
    // Two slots per address. Each [LOGIN-DELAY] answer closes the connection
    // while its socket is paused for the login: it must still see the
    // client's FIN at once (before: held ~5 s, so the third connect was refused).
    const gw = await gatewayWith('{ delays: [10ms], maxFailures: 1, lockout: 1m }', { extra: 'limits: { maxConnectionsPerIp: 2 }' });
    try {
      const from = '127.0.0.41';
      const first = await connect(gw, from);
      expect(await login(first, 'gina', 'wrong')).toBe(AUTH_FAILED);
      first.destroy();
      const answers: string[] = [];
      for (let i = 0; i < 6; i++) {
        const c = await LineClient.connect({ port: gw.port('pop3'), localAddress: from });
        const greeting = await c.line();
        expect(greeting, `connection ${i + 2}`).toMatch(/^\+OK/);
        answers.push(await login(c, 'gina', 'wrong'));
        // A client that says QUIT on its way out (popgate has closed after [LOGIN-DELAY]).
        c.send('QUIT\r\n');
        c.destroy();
        // The slot is free once popgate has seen the close: well before its 5 s fallback.
        await waitFor('popgate to see the close', () => gw.gateway.openTcpConnections === 0, { timeoutMs: 1_000, intervalMs: 10 }).catch(() => undefined);
        expect(gw.gateway.openTcpConnections, `open sockets after connection ${i + 2}`).toBe(0);
      }
      expect(answers).toEqual(Array(6).fill(THROTTLED));
    } finally {
      await gw.stop();
    }
  });
});

describe('many relayed sessions at once', () => {
  it('raise no MaxListenersExceededWarning (each listens for the gateway stopping)', async () => {
    const gw = await gatewayWith('{ enabled: false }');
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    const clients: LineClient[] = [];
    try {
      for (let i = 0; i < 14; i++) {
        const c = await connect(gw, '127.0.0.42');
        expect(await login(c, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
        clients.push(c);
      }
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      for (const c of clients) c.destroy();
      await gw.stop();
    }
  });
});

describe('RedisFailureStore against a real redis-server', () => {
  it('counts with INCR + PEXPIRE under the key prefix, locks with PX, clears counters', async () => {
    const store = await RedisFailureStore.connect({ url: redis.url, keyPrefix: 'unit:' });
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      expect(store.ready).toBe(true);
      expect(await store.recordFailure(['ip:192.0.2.1', 'user:alice'], 60_000)).toEqual([1, 1]);
      expect(await store.recordFailure(['ip:192.0.2.1', 'user:bob'], 60_000)).toEqual([2, 1]);
      expect(await store.failures(['ip:192.0.2.1', 'user:alice', 'user:nobody'])).toEqual([2, 1, 0]);
      const ttl = await raw.pTTL('unit:fail:ip:192.0.2.1');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);

      expect(await store.isLocked(['ip:192.0.2.1', 'user:alice'])).toBe(false);
      await store.lock(['user:alice'], 30_000);
      expect(await store.isLocked(['ip:192.0.2.1', 'user:alice'])).toBe(true);
      const lockTtl = await raw.pTTL('unit:lock:user:alice');
      expect(lockTtl).toBeGreaterThan(0);
      expect(lockTtl).toBeLessThanOrEqual(30_000);

      await store.clear(['ip:192.0.2.1', 'user:alice']);
      expect(await store.failures(['ip:192.0.2.1', 'user:alice', 'user:bob'])).toEqual([0, 0, 1]);
      expect(await store.isLocked(['user:alice'])).toBe(true);
      expect((await raw.keys('unit:*')).sort()).toEqual(['unit:fail:user:bob', 'unit:lock:user:alice']);
    } finally {
      await store.close();
      await raw.close();
    }
  });

  it('keeps the last `keep` fingerprints per user in one list (PEXPIRE window) under one secret made with SET NX', async () => {
    const a = await RedisFailureStore.connect({ url: redis.url, keyPrefix: 'fp:' });
    const b = await RedisFailureStore.connect({ url: redis.url, keyPrefix: 'fp:' });
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      // Whichever store asks first creates the secret; both read the same, and it stays.
      const [sa, sb] = await Promise.all([a.fingerprintSecret(), b.fingerprintSecret()]);
      expect(sa).toBe(sb);
      expect(sa.length).toBeGreaterThanOrEqual(32);
      expect(await raw.get('fp:fingerprint-secret')).toBe(sa);
      expect(await raw.pTTL('fp:fingerprint-secret')).toBe(-1);
      expect(await a.fingerprintSecret()).toBe(sa);

      const fp = (value: string) => ({ key: 'user:alice', value, keep: 2 });
      expect(await a.rememberPassword(fp('f1'), 60_000)).toBe(false);
      expect(await b.rememberPassword(fp('f1'), 60_000)).toBe(true);
      expect(await a.rememberPassword(fp('f2'), 60_000)).toBe(false);
      expect(await b.rememberPassword(fp('f3'), 60_000)).toBe(false);
      expect(await raw.lRange('fp:pw:user:alice', 0, -1)).toEqual(['f3', 'f2']);
      // A repeat moves to the front; the one past keep was dropped and is new again.
      expect(await a.rememberPassword(fp('f2'), 60_000)).toBe(true);
      expect(await raw.lRange('fp:pw:user:alice', 0, -1)).toEqual(['f2', 'f3']);
      expect(await a.rememberPassword(fp('f1'), 30_000)).toBe(false);
      const ttl = await raw.pTTL('fp:pw:user:alice');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(30_000);
      // A success clears counters, not the remembered passwords.
      await a.clear(['user:alice']);
      expect(await raw.exists('fp:pw:user:alice')).toBe(1);
      expect(a.redisKeys('user:alice')).toEqual({ fail: 'fp:fail:user:alice', lock: 'fp:lock:user:alice', passwords: 'fp:pw:user:alice' });
      // Concurrent failures with one new password: exactly one sees it as new.
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).rememberPassword({ key: 'user:carol', value: 'fx', keep: 5 }, 60_000)));
      expect(answers.filter((seen) => !seen)).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
      await raw.close();
    }
  });
});

describe('repeated passwords on the redis store', () => {
  /** A replica's throttle: its own connection to the shared Redis (the defaults: 10 failures, 5 passwords kept). */
  async function replica(keyPrefix: string): Promise<LoginThrottle> {
    const store = await RedisFailureStore.connect({ url: redis.url, keyPrefix });
    return new LoginThrottle({ store, delays: [100, 200], maxFailures: 10, windowMs: 60_000, lockoutMs: 60_000, repeatedPasswords: 5 });
  }

  it('20 logins with the same wrong password do not lock the user, across two replicas; 10 different ones do', async () => {
    const a = await replica('rp:');
    const b = await replica('rp:');
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      const first = await a.failed('192.0.2.1', 'gina', 'old-password');
      expect(first).toEqual({ delayMs: 100, locked: false, failures: 1, exempt: false });
      for (let i = 0; i < 19; i++) {
        const r = await (i % 2 ? a : b).failed('192.0.2.1', 'gina', 'old-password');
        expect(r, `repeat ${i + 1}`).toEqual({ delayMs: 100, locked: false, failures: 1, exempt: false, repeated: true });
      }
      expect(await b.check('192.0.2.1', 'gina')).toEqual({ locked: false, exempt: false });
      expect(await raw.get('rp:fail:user:gina')).toBe('1');
      expect(await raw.get('rp:fail:ip:192.0.2.1')).toBe('1');
      // What Redis holds is the fingerprint under the shared secret, not the password.
      const secret = (await raw.get('rp:fingerprint-secret'))!;
      expect(await raw.lRange('rp:pw:user:gina', 0, -1)).toEqual([passwordFingerprint(secret, 'gina', 'old-password')]);
      for (const key of await raw.keys('rp:*')) {
        const type = await raw.type(key);
        const text = type === 'list' ? (await raw.lRange(key, 0, -1)).join() : String(await raw.get(key));
        expect(text, key).not.toContain('old-password');
      }

      const results: ThrottleFailure[] = [];
      for (let i = 0; i < 10; i++) results.push(await (i % 2 ? a : b).failed('192.0.2.2', 'hank', `guess-${i}`));
      expect(results.map((r) => r.failures)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(results.at(-1)?.locked).toBe(true);
      expect(await a.check('198.51.100.1', 'hank')).toEqual({ locked: true, exempt: false });
      expect(await raw.lLen('rp:pw:user:hank')).toBe(5);
      expect(a.storeErrors + b.storeErrors).toBe(0);
    } finally {
      await a.close();
      await b.close();
      await raw.close();
    }
  });

  it('two gateways: a stale password retried on both is refused and delayed but never locks; guesses do', async () => {
    const shared = `{ delays: [20ms], maxFailures: 3, lockout: 1m, store: redis, redis: { url: '${redis.url}', keyPrefix: 'gwrp:' } }`;
    const a = await gatewayWith(shared);
    const b = await gatewayWith(shared);
    try {
      for (const [gw, from] of [[a, '127.0.3.1'], [b, '127.0.3.2']] as const) {
        const c = await connect(gw, from);
        for (let i = 0; i < 4; i++) expect(await login(c, 'gina', 'gina-old-pw')).toBe(AUTH_FAILED);
        c.destroy();
      }
      await failures(a, 4);
      await failures(b, 4);
      const logged = [...a.logs, ...b.logs].filter((l) => l.msg === 'login failed');
      expect(logged.map((l) => l.delayMs)).toEqual(Array(8).fill(20));
      expect(logged.filter((l) => l.throttle === 'repeated-password')).toHaveLength(7);
      expect(JSON.stringify([...a.logs, ...b.logs])).not.toContain('gina-old-pw');
      // Still not locked: the right password gets in (and clears the one counted failure).
      const ok = await connect(b, '127.0.3.3');
      expect(await login(ok, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
      expect(await ok.cmd('QUIT')).toMatch(/^\+OK/);
      await ok.closed();

      // Three different wrong passwords lock her.
      const g = await connect(a, '127.0.3.4');
      for (let i = 1; i <= 3; i++) expect(await login(g, 'gina', `guess-${i}`)).toBe(AUTH_FAILED);
      expect(await login(g, 'gina', PASSWORD.gina!)).toBe(THROTTLED);
      await g.closed();
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('login throttle (redis store)', () => {
  it('two gateways sharing one Redis: failures on A count and lock out on B', async () => {
    const shared = `{ delays: [100ms, 200ms, 300ms], maxFailures: 3, lockout: 1m, store: redis, redis: { url: '${redis.url}', keyPrefix: 'shared:' } }`;
    const a = await gatewayWith(shared);
    const b = await gatewayWith(shared);
    try {
      const ca = await connect(a, '127.0.1.1');
      expect(await login(ca, 'gina', 'wrong-1')).toBe(AUTH_FAILED);
      expect(await login(ca, 'gina', 'wrong-2')).toBe(AUTH_FAILED);
      ca.destroy();
      // B sees gina's third failure (another address): the third delay, and the lock.
      const cb = await connect(b, '127.0.1.2');
      expect(await login(cb, 'gina', 'wrong-3')).toBe(AUTH_FAILED);
      cb.destroy();
      await failures(a, 2);
      await failures(b, 1);
      expect(loggedDelays(a)).toEqual([100, 200]);
      expect(loggedDelays(b)).toEqual([300]);
      await waitForLog(b, (l) => l.msg === 'login throttle: locked out after repeated failures');

      // Locked on both replicas, with the right password, from a fresh address.
      for (const [gw, from] of [[a, '127.0.1.3'], [b, '127.0.1.4']] as const) {
        const c = await connect(gw, from);
        expect(await login(c, 'gina', PASSWORD.gina!)).toBe(THROTTLED);
        await c.closed();
      }
      // Others are not.
      const ok = await connect(b, '127.0.1.5');
      expect(await login(ok, 'hank', PASSWORD.hank!)).toMatch(/^\+OK/);
      expect(await ok.cmd('QUIT')).toMatch(/^\+OK/);
      await ok.closed();

      const raw = createClient({ url: redis.url });
      await raw.connect();
      try {
        expect(await raw.exists('shared:lock:user:gina')).toBe(1);
        expect(await raw.get('shared:fail:ip:127.0.1.1')).toBe('2');
        // hank's success cleared its counters (none were set) and left gina's alone.
        expect(await raw.get('shared:fail:user:gina')).toBe('3');
      } finally {
        await raw.close();
      }
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('fails open when Redis goes away: first delay only, no lockout, one error logged; and starts without it', async () => {
    const own = await startRedis();
    let gw: TestGateway | undefined;
    try {
      gw = await gatewayWith(`{ delays: [100ms, 200ms], maxFailures: 2, store: redis, redis: { url: '${own.url}' } }`, { admin: true });
      const c = await connect(gw, '127.0.2.1');
      expect(await login(c, 'gina', 'wrong-1')).toBe(AUTH_FAILED);
      await own.stop();
      for (let i = 2; i <= 4; i++) expect(await login(c, 'gina', `wrong-${i}`)).toBe(AUTH_FAILED);
      expect(await login(c, 'gina', PASSWORD.gina!)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      expect(loggedDelays(gw)).toEqual([100, 100, 100, 100]);
      const errors = gw.logs.filter((l) => l.msg.startsWith('login throttle: failure store unavailable'));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ store: 'redis' });
      // The log is rate-limited; the metric counts every failed store call.
      const metrics = await (await fetch(`http://127.0.0.1:${gw.adminPort()}/metrics`)).text();
      const storeErrors = Number(/^popgate_throttle_events_total\{event="store-error"\} (\d+)$/m.exec(metrics)?.[1]);
      expect(storeErrors).toBeGreaterThan(1);
    } finally {
      await gw?.stop();
      await own.stop();
    }

    // Nothing listening at all: the gateway still starts and answers.
    const nobody = await freePort();
    const late = await gatewayWith(`{ delays: [100ms], store: redis, redis: { url: 'redis://127.0.0.1:${nobody}' } }`);
    try {
      const c = await connect(late, '127.0.2.2');
      expect(await login(c, 'hank', 'wrong')).toBe(AUTH_FAILED);
      expect(await login(c, 'hank', PASSWORD.hank!)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      expect(late.logs.filter((l) => l.msg.startsWith('login throttle: failure store unavailable'))).toHaveLength(1);
    } finally {
      await late.stop();
    }
  });
});
