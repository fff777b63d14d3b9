/**
 * `popgate doctor`'s probe of the throttle's Redis store when it is a
 * Sentinel-managed master or a Cluster, against REAL private redis-server
 * processes (test/helpers/redis-topologies.ts):
 *
 *   Sentinel  3 sentinels naming the master, PING on it: ok; a wrong
 *             masterName: ✗; one sentinel stopped: ! naming it, the master
 *             still ok; master and replica stopped (no failover possible):
 *             the sentinels still name it, its PING ✗.
 *   Cluster   CLUSTER INFO from every root node: cluster_state:ok; wrong
 *             credentials: ✗ without the password in any line; a master
 *             stopped (no replica): once the others say cluster_state:fail,
 *             ✗ naming the state and the silent node.
 *
 * Everything waits for events (waitFor); no sleeps, no wall-clock asserts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopgateConfig } from '../../src/config/index.js';
import { checkRedis } from '../../src/server/doctor/redis.js';
import { infoField, startCluster, startSentinelSet, tryRedisCommand, type SentinelSet, type TestCluster } from '../helpers/redis-topologies.js';
import { waitFor } from '../helpers/wait.js';

const TIMEOUT = 2_000;

/** auth.throttle with a redis store as the schema gives it. */
function throttleConfig(redis: Record<string, unknown>): PopgateConfig {
  return { auth: { throttle: { enabled: true, store: 'redis', redis: { tls: false, keyPrefix: 'popgate:', ...redis } } } } as unknown as PopgateConfig;
}

describe('doctor: redis sentinel', () => {
  let set: SentinelSet;

  beforeAll(async () => {
    set = await startSentinelSet('popgate-doctor');
  }, 60_000);

  afterAll(async () => {
    await set?.stop();
  }, 30_000);

  const config = (masterName = set.masterName) => throttleConfig({ sentinel: { masterName, sentinels: [...set.sentinelAddresses] } });

  it('every sentinel names the master, and the master answers PING', async () => {
    const master = `127.0.0.1:${set.nodes[0]!.port}`;
    expect(await checkRedis(config(), TIMEOUT)).toEqual([
      { group: 'services', check: `redis sentinel ${set.masterName}`, status: 'ok', detail: `3 of 3 sentinels answered (${set.sentinelAddresses.join(', ')}), naming master ${master}` },
      { group: 'services', check: `redis master ${master} (named by the sentinels)`, status: 'ok', detail: 'answers PING with PONG' },
    ]);
  });

  it('a masterName the sentinels do not monitor: ✗, no master to PING', async () => {
    const results = await checkRedis(config('not-monitored'), TIMEOUT);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'fail', detail: expect.stringContaining(`${set.sentinelAddresses[0]}: does not know not-monitored`) as unknown });
    expect(results[0]?.fix).toContain('masterName');
  });

  it('one sentinel down among three: ! naming it, the master still probed and ok', async () => {
    const stopped = set.sentinels[2]!;
    await stopped.stop();
    await waitFor('the stopped sentinel to refuse', async () => (await tryRedisCommand(stopped.port, ['PING'])) === undefined);
    const [sentinels, master] = await checkRedis(config(), TIMEOUT);
    expect(sentinels).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(new RegExp(`^2 of 3 sentinels answered \\(${set.sentinelAddresses.slice(0, 2).join(', ')}\\), naming master 127\\.0\\.0\\.1:${set.nodes[0]!.port}; 127\\.0\\.0\\.1:${stopped.port}: .*ECONNREFUSED`)) as unknown,
      fix: expect.stringContaining('start the silent sentinels') as unknown,
    });
    expect(master).toMatchObject({ status: 'ok', detail: 'answers PING with PONG' });
  });

  it('the master unreachable (master and replica stopped, nothing to fail over to): its PING is ✗', async () => {
    const [master, replica] = set.nodes;
    await replica!.stop();
    await master!.stop();
    await waitFor('the master to refuse', async () => (await tryRedisCommand(master!.port, ['PING'])) === undefined);
    const results = await checkRedis(config(), TIMEOUT);
    // The sentinels still name the old master (no replica to promote).
    expect(results[1]).toMatchObject({
      check: `redis master 127.0.0.1:${master!.port} (named by the sentinels)`,
      status: 'fail',
      detail: expect.stringContaining('ECONNREFUSED') as unknown,
      fix: expect.stringContaining('start the master') as unknown,
    });
  });
});

describe('doctor: redis cluster', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster(3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  const config = (extra: Record<string, unknown> = {}) => throttleConfig({ cluster: { nodes: [...cluster.addresses] }, ...extra });

  it('every root node says cluster_state:ok', async () => {
    expect(await checkRedis(config(), TIMEOUT)).toEqual([
      { group: 'services', check: 'redis cluster', status: 'ok', detail: `cluster_state:ok at ${cluster.addresses.join(', ')} (3 known nodes, 16384 of 16384 slots ok)` },
    ]);
  });

  it('credentials the nodes refuse: ✗, and the password appears in no line', async () => {
    const results = await checkRedis(config({ username: 'doctor', password: 'Needle-Pw-77' }), TIMEOUT);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^no root node answers CLUSTER INFO \(.*WRONGPASS/) as unknown });
    expect(JSON.stringify(results)).not.toContain('Needle-Pw-77');
  });

  it('a master stopped (no replica): ✗ naming cluster_state:fail and the silent node', async () => {
    const [down, ...up] = cluster.nodes;
    await down!.stop();
    await waitFor('the other nodes to say cluster_state:fail', async () => {
      for (const n of up) if (infoField(await tryRedisCommand(n.port, ['CLUSTER', 'INFO']), 'cluster_state') !== 'fail') return false;
      return true;
    });
    const [r] = await checkRedis(config(), TIMEOUT);
    expect(r).toMatchObject({ check: 'redis cluster', status: 'fail', fix: expect.stringContaining('redis-cli --cluster check') as unknown });
    expect(r?.detail).toContain(`127.0.0.1:${up[0]!.port} says cluster_state:fail`);
    expect(r?.detail).toMatch(new RegExp(`127\\.0\\.0\\.1:${down!.port}: .*ECONNREFUSED`));
  });
});
