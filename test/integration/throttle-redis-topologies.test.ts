/**
 * The throttle's Redis store on replicated and clustered Redis, against REAL
 * private redis-server processes (test/helpers/redis-topologies.ts):
 *
 *   Sentinel  two throttles (two replicas' stores) count together on the
 *             master the sentinels name; the master dies, the throttle
 *             fails open (logins allowed, the error logged and counted),
 *             the sentinels promote the replica and counting resumes there.
 *   Cluster   each address's / user's keys share one slot (CLUSTER KEYSLOT),
 *             counters on different nodes add up across two stores, two
 *             stores share one fingerprint secret and each other's repeated
 *             passwords, and a node down fails open.
 *
 * Everything waits for events (waitFor); no sleeps, no wall-clock asserts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoginThrottle, RedisFailureStore, redisTarget } from '../../src/auth/throttle/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { redisCommand, startCluster, startSentinelSet, type SentinelSet, type TestCluster } from '../helpers/redis-topologies.js';
import { waitFor } from '../helpers/wait.js';
import { recordingLog, type LogCall } from '../helpers/throttle-log.js';


const FAILING_OPEN = 'login throttle: failure store unavailable; failing open (no lockouts, first delay only)';

/** A throttle over `store`, the store's connection errors fed to it as createLoginThrottle does. */
function throttleOn(store: RedisFailureStore, logs: LogCall[]): LoginThrottle {
  return new LoginThrottle({ store, delays: [100, 200, 300], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000, log: recordingLog(logs) });
}

/** auth.throttle.redis as a config file gives it (the real schema and loader). */
async function configured(redis: string): Promise<ReturnType<typeof redisTarget>> {
  const base = `listeners:\n  - { kind: pop3s, port: 995, tls: { certFile: c, keyFile: k } }\nbackend: { host: 127.0.0.1, login: { mode: master, user: popgate, password: x } }\n`;
  const cfg = await parseConfigText(`${base}auth:\n  userFile: users\n  throttle: { store: redis, redis: ${redis} }\n`, {
    baseDir: '/etc/popgate',
    env: {},
    source: 't',
    readSecrets: false,
  });
  return redisTarget(cfg.auth.throttle.redis!);
}

describe('Redis Sentinel: a master, a replica and 3 sentinels', () => {
  let set: SentinelSet;
  const stores: RedisFailureStore[] = [];

  beforeAll(async () => {
    set = await startSentinelSet('popgate-throttle');
  }, 60_000);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await set?.stop();
  }, 30_000);

  async function storeFor(logs: LogCall[]): Promise<{ store: RedisFailureStore; throttle: LoginThrottle }> {
    let throttle: LoginThrottle | undefined;
    const target = await configured(`{ sentinel: { masterName: ${set.masterName}, sentinels: [${set.sentinelAddresses.join(', ')}] }, keyPrefix: 'snt:' }`);
    const store = await RedisFailureStore.connect({ ...target, onError: (err) => throttle?.storeError(err) });
    stores.push(store);
    throttle = throttleOn(store, logs);
    return { store, throttle };
  }

  it('two replicas count together on the master the sentinels name, under the unchanged key names', async () => {
    const logsA: LogCall[] = [];
    const logsB: LogCall[] = [];
    const a = await storeFor(logsA);
    const b = await storeFor(logsB);
    expect(a.store.ready).toBe(true);
    expect(a.store.redisKeys('user:gina')).toEqual({ fail: 'snt:fail:user:gina', lock: 'snt:lock:user:gina', passwords: 'snt:pw:user:gina' });

    expect(await a.throttle.failed('192.0.2.1', 'gina')).toMatchObject({ failures: 1, delayMs: 100, locked: false });
    expect(await a.throttle.failed('192.0.2.2', 'gina')).toMatchObject({ failures: 2, delayMs: 200, locked: false });
    // B's failure is gina's third: the third delay and the lock, seen by both.
    expect(await b.throttle.failed('192.0.2.3', 'gina')).toMatchObject({ failures: 3, delayMs: 300, locked: true });
    expect(await a.throttle.check('198.51.100.9', 'gina')).toEqual({ locked: true, exempt: false });
    expect(await b.throttle.check('198.51.100.9', 'hank')).toEqual({ locked: false, exempt: false });

    const master = await set.masterPort();
    expect(master).toBe(set.nodes[0]!.port);
    expect(await redisCommand(master!, ['GET', 'snt:fail:user:gina'])).toBe('3');
    expect(await redisCommand(master!, ['EXISTS', 'snt:lock:user:gina'])).toBe(1);
    expect(a.throttle.storeErrors + b.throttle.storeErrors).toBe(0);
  });

  it('follows a failover: fails open while the master is gone (logged, counted), then counts on the promoted replica', async () => {
    const logs: LogCall[] = [];
    const { throttle } = await storeFor(logs);
    expect(await throttle.failed('192.0.2.20', 'ivy')).toMatchObject({ failures: 1 });
    const [oldMaster, replica] = set.nodes;
    // The replica has ivy's counter before the master goes (so the promoted one keeps it).
    await waitFor('ivy replicated', async () => (await redisCommand(replica!.port, ['GET', 'snt:fail:user:ivy'])) === '1');

    await oldMaster!.stop();
    // While no master answers: the login is allowed (no lock, first delay, no count) and the error logged once.
    const open = await waitFor('a failure answered open', async () => {
      const r = await throttle.failed('192.0.2.21', 'ivy');
      return r.failures === 0 ? r : undefined;
    });
    expect(open).toEqual({ delayMs: 100, locked: false, failures: 0, exempt: false });
    expect(await throttle.check('192.0.2.21', 'ivy')).toEqual({ locked: false, exempt: false });
    expect(throttle.storeErrors).toBeGreaterThan(0);
    expect(logs.filter((l) => l.level === 'error' && l.msg === FAILING_OPEN)).toHaveLength(1);

    await waitFor('the sentinels to promote the replica', async () => (await set.masterPort()) === replica!.port, { timeoutMs: 30_000, detail: set.output });
    // Counting resumes on the new master, from the replicated count.
    const resumed = await waitFor(
      'counting on the new master',
      async () => {
        const r = await throttle.failed('192.0.2.22', 'ivy');
        return r.failures > 0 ? r : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(resumed.failures).toBeGreaterThanOrEqual(2);
    // A call that gave up at its deadline during the failover may still have landed: at least, not exactly.
    expect(Number(await redisCommand(replica!.port, ['GET', 'snt:fail:user:ivy']))).toBeGreaterThanOrEqual(resumed.failures);
    expect((await throttle.failed('192.0.2.23', 'ivy')).failures).toBeGreaterThan(resumed.failures);
    await waitFor('the recovery logged', () => logs.some((l) => l.msg === 'login throttle: failure store answering again'));
  }, 90_000);
});

describe('Redis Cluster: 3 masters', () => {
  let cluster: TestCluster;
  const stores: RedisFailureStore[] = [];

  beforeAll(async () => {
    cluster = await startCluster(3);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await cluster?.stop();
  }, 30_000);

  async function storeFor(logs: LogCall[]): Promise<{ store: RedisFailureStore; throttle: LoginThrottle }> {
    let throttle: LoginThrottle | undefined;
    const target = await configured(`{ cluster: { nodes: [${cluster.addresses.join(', ')}] }, keyPrefix: 'cl:' }`);
    const store = await RedisFailureStore.connect({ ...target, onError: (err) => throttle?.storeError(err) });
    stores.push(store);
    throttle = throttleOn(store, logs);
    return { store, throttle };
  }

  const slot = async (key: string): Promise<number> => Number(await redisCommand(cluster.nodes[0]!.port, ['CLUSTER', 'KEYSLOT', key]));

  /** A user whose keys live on another node than `ip`'s (so one login touches two nodes). */
  async function userApartFrom(store: RedisFailureStore, ip: string): Promise<string> {
    const ipNode = await cluster.nodeFor(store.redisKeys(`ip:${ip}`).fail);
    for (let i = 0; ; i++) {
      const user = `user${i}`;
      if ((await cluster.nodeFor(store.redisKeys(`user:${user}`).fail)) !== ipNode) return user;
    }
  }

  it("puts each address's and user's keys in one slot (a hash tag), spread over the nodes", async () => {
    const { store } = await storeFor([]);
    for (const key of ['ip:192.0.2.1', 'ip:2001:db8:1:2::/64', 'user:gina', 'user:a{b}c', `user:${'x'.repeat(128)}`]) {
      const { fail, lock, passwords } = store.redisKeys(key);
      expect(fail).toBe(`cl:fail:{${key}}`);
      expect(lock).toBe(`cl:lock:{${key}}`);
      expect(passwords).toBe(`cl:pw:{${key}}`);
      expect(await slot(fail), `${fail} and ${lock}`).toBe(await slot(lock));
      expect(await slot(fail), `${fail} and ${passwords}`).toBe(await slot(passwords));
    }
    // Without the tags the counter and the lock of one user would be in different slots.
    expect(await slot('cl:fail:user:gina')).not.toBe(await slot('cl:lock:user:gina'));
    const nodes = new Set<number>();
    for (let i = 0; i < 30; i++) nodes.add((await cluster.nodeFor(store.redisKeys(`user:u${i}`).fail)).port);
    expect(nodes.size).toBe(3);
  });

  it('counts across nodes and across two stores; locks and clears', async () => {
    const a = await storeFor([]);
    const b = await storeFor([]);
    const user = await userApartFrom(a.store, '192.0.2.50');
    expect(await a.throttle.failed('192.0.2.50', user)).toMatchObject({ failures: 1, locked: false });
    expect(await b.throttle.failed('192.0.2.50', user)).toMatchObject({ failures: 2, locked: false });
    expect(await a.store.failures([`ip:192.0.2.50`, `user:${user}`, 'user:nobody'])).toEqual([2, 2, 0]);
    expect(await b.throttle.failed('192.0.2.51', user)).toMatchObject({ failures: 3, locked: true });
    expect(await a.throttle.check('198.51.100.1', user)).toEqual({ locked: true, exempt: false });

    // Each key is where its slot says, the lock next to its counter.
    const keys = a.store.redisKeys(`user:${user}`);
    const node = await cluster.nodeFor(keys.fail);
    expect(await redisCommand(node.port, ['GET', keys.fail])).toBe('3');
    expect(await redisCommand(node.port, ['EXISTS', keys.lock])).toBe(1);
    expect(await redisCommand(node.port, ['PTTL', keys.lock])).toBeGreaterThan(0);

    await b.throttle.succeeded('192.0.2.50', user);
    expect(await a.store.failures([`ip:192.0.2.50`, `user:${user}`, `ip:192.0.2.51`])).toEqual([0, 0, 1]);
    expect(await a.store.isLocked([`user:${user}`])).toBe(true);
    expect(a.throttle.storeErrors + b.throttle.storeErrors).toBe(0);
  });

  it('two stores share the fingerprint secret and each other\'s repeated passwords; guesses still lock', async () => {
    const repeats = async (): Promise<{ store: RedisFailureStore; throttle: LoginThrottle }> => {
      const target = await configured(`{ cluster: { nodes: [${cluster.addresses.join(', ')}] }, keyPrefix: 'clrp:' }`);
      const store = await RedisFailureStore.connect(target);
      stores.push(store);
      return { store, throttle: new LoginThrottle({ store, delays: [100], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000, repeatedPasswords: 5 }) };
    };
    const a = await repeats();
    const b = await repeats();
    expect(await a.store.fingerprintSecret()).toBe(await b.store.fingerprintSecret());
    const user = await userApartFrom(a.store, '192.0.2.70');
    expect(await a.throttle.failed('192.0.2.70', user, 'stale')).toMatchObject({ failures: 1 });
    for (let i = 0; i < 6; i++) expect(await (i % 2 ? a : b).throttle.failed('192.0.2.70', user, 'stale')).toMatchObject({ failures: 1, repeated: true, locked: false });
    const keys = a.store.redisKeys(`user:${user}`);
    const node = await cluster.nodeFor(keys.passwords);
    expect(node.port).toBe((await cluster.nodeFor(keys.fail)).port);
    expect(await redisCommand(node.port, ['LLEN', keys.passwords])).toBe(1);
    expect(await b.throttle.failed('192.0.2.70', user, 'guess-1')).toMatchObject({ failures: 2 });
    expect(await a.throttle.failed('192.0.2.70', user, 'guess-2')).toMatchObject({ failures: 3, locked: true });
    expect(a.throttle.storeErrors + b.throttle.storeErrors).toBe(0);
  });

  // Last: it leaves the cluster without a node.
  it('fails open with a node down: logins allowed, the error logged once and counted', async () => {
    const logs: LogCall[] = [];
    const { store, throttle } = await storeFor(logs);
    const user = await userApartFrom(store, '192.0.2.60');
    expect(await throttle.failed('192.0.2.60', user)).toMatchObject({ failures: 1 });
    const down = await cluster.nodeFor(store.redisKeys(`user:${user}`).fail);
    await down.stop();

    const open = await waitFor('a failure answered open', async () => {
      const r = await throttle.failed('192.0.2.60', user);
      return r.failures === 0 ? r : undefined;
    });
    expect(open).toEqual({ delayMs: 100, locked: false, failures: 0, exempt: false });
    for (let i = 0; i < 5; i++) expect(await throttle.failed('192.0.2.60', user)).toEqual(open);
    expect(await throttle.check('192.0.2.60', user)).toEqual({ locked: false, exempt: false });
    expect(throttle.storeErrors).toBeGreaterThanOrEqual(6);
    expect(logs.filter((l) => l.level === 'error' && l.msg === FAILING_OPEN)).toHaveLength(1);
  }, 60_000);
});
