/**
 * Replicated and clustered Redis for the throttle's shared store, built from
 * PRIVATE redis-server processes (test/helpers/redis.ts): every one on its
 * own free loopback port and temp dir, stopped by its own PID.
 *
 *   startSentinelSet  a master, one replica and 3 sentinels watching it
 *                     (quorum 2, down after 1 s), ready to fail over
 *   startCluster      a 3-master Redis Cluster (no replicas), all slots
 *                     covered, built by `redis-cli --cluster create`
 *
 * Readiness is waited for by probing the servers (INFO, SENTINEL, CLUSTER
 * INFO), never by sleeping.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createClient } from 'redis';
import { freePort } from './ports.js';
import { startRedis, type TestRedis } from './redis.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export const REDIS_CLI_BIN = process.env.REDIS_CLI ?? '/usr/bin/redis-cli';

/** One command to one server on a short-lived connection (a probe, or an admin command). */
export async function redisCommand(port: number, args: readonly string[]): Promise<unknown> {
  const client = createClient({ socket: { host: '127.0.0.1', port, connectTimeout: 1_000, reconnectStrategy: false } });
  client.on('error', () => {}); // a refused connection rejects connect() below
  await client.connect();
  try {
    return await client.sendCommand([...args]);
  } finally {
    client.destroy();
  }
}

/** The same, undefined when the server cannot answer (a probe of a server that may be down). */
export async function tryRedisCommand(port: number, args: readonly string[]): Promise<unknown> {
  try {
    return await redisCommand(port, args);
  } catch {
    return undefined;
  }
}

/** `field:value` of an INFO reply. */
export function infoField(info: unknown, field: string): string | undefined {
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(String(info));
  return m?.[1]?.trim();
}

async function stopAll(servers: readonly TestRedis[]): Promise<void> {
  await Promise.all(servers.map((s) => s.stop()));
}

export interface SentinelSet {
  readonly masterName: string;
  /** The data nodes as started: [0] the first master, [1] its replica. */
  readonly nodes: readonly TestRedis[];
  readonly sentinels: readonly TestRedis[];
  /** host:port of each sentinel, as auth.throttle.redis.sentinel.sentinels takes them. */
  readonly sentinelAddresses: readonly string[];
  /** The port of the master the sentinels name now. */
  masterPort(): Promise<number | undefined>;
  output(): string;
  stop(): Promise<void>;
}

export async function startSentinelSet(masterName = 'popgate'): Promise<SentinelSet> {
  const started: TestRedis[] = [];
  try {
    const master = await startRedis();
    started.push(master);
    const replica = await startRedis({ args: () => ['--replicaof', '127.0.0.1', String(master.port)] });
    started.push(replica);
    await waitFor('the replica to sync with its master', async () => infoField(await tryRedisCommand(replica.port, ['INFO', 'replication']), 'master_link_status') === 'up');
    const sentinels: TestRedis[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startRedis({
        sentinelConfig: (_port, dir) =>
          [
            `dir ${dir}`,
            `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
            // Short enough that a failover happens within a test's wait.
            `sentinel down-after-milliseconds ${masterName} 1000`,
            `sentinel failover-timeout ${masterName} 10000`,
            `sentinel parallel-syncs ${masterName} 1`,
            '',
          ].join('\n'),
      });
      started.push(s);
      sentinels.push(s);
    }
    // A failover needs every sentinel to know the replica and the other sentinels (hello messages).
    for (const s of sentinels) {
      await waitFor(`sentinel ${s.port} to see the replica and the other sentinels`, async () => {
        const replicas = await tryRedisCommand(s.port, ['SENTINEL', 'REPLICAS', masterName]);
        const peers = await tryRedisCommand(s.port, ['SENTINEL', 'SENTINELS', masterName]);
        return Array.isArray(replicas) && replicas.length >= 1 && Array.isArray(peers) && peers.length >= 2;
      });
    }
    return {
      masterName,
      nodes: [master, replica],
      sentinels,
      sentinelAddresses: sentinels.map((s) => `127.0.0.1:${s.port}`),
      async masterPort() {
        for (const s of sentinels) {
          const addr = await tryRedisCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName]);
          if (Array.isArray(addr) && addr.length === 2) return Number(addr[1]);
        }
        return undefined;
      },
      output: () => started.map((s) => `--- ${s.port} ---\n${s.output()}`).join('\n'),
      stop: () => stopAll(started),
    };
  } catch (err) {
    await stopAll(started);
    throw err;
  }
}

export interface TestCluster {
  readonly nodes: readonly TestRedis[];
  /** host:port of each node, as auth.throttle.redis.cluster.nodes takes them. */
  readonly addresses: readonly string[];
  /** The node serving `key`'s slot. */
  nodeFor(key: string): Promise<TestRedis>;
  output(): string;
  stop(): Promise<void>;
}

/** CLUSTER SLOTS: [start, end, [host, port, id], ...replicas] per range. */
type SlotRange = [number, number, [string, number, ...unknown[]], ...unknown[]];

export async function startCluster(masters = 3): Promise<TestCluster> {
  const nodes: TestRedis[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      // The cluster bus port defaults to port + 10000, which may be taken or past 65535: give a free one.
      const bus = await freePort();
      nodes.push(
        await startRedis({
          args: () => ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000', '--cluster-port', String(bus)],
        }),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run(REDIS_CLI_BIN, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    for (const n of nodes) {
      await waitFor(`cluster node ${n.port} to be ok and know all ${masters} masters`, async () => {
        const info = await tryRedisCommand(n.port, ['CLUSTER', 'INFO']);
        return infoField(info, 'cluster_state') === 'ok' && Number(infoField(info, 'cluster_known_nodes')) === masters;
      });
    }
    return {
      nodes,
      addresses,
      async nodeFor(key) {
        const slot = Number(await redisCommand(nodes[0]!.port, ['CLUSTER', 'KEYSLOT', key]));
        const ranges = (await redisCommand(nodes[0]!.port, ['CLUSTER', 'SLOTS'])) as SlotRange[];
        const range = ranges.find(([start, end]) => slot >= start && slot <= end);
        const node = nodes.find((n) => n.port === Number(range?.[2][1]));
        if (!node) throw new Error(`no node serves slot ${slot}`);
        return node;
      },
      output: () => nodes.map((s) => `--- ${s.port} ---\n${s.output()}`).join('\n'),
      stop: () => stopAll(nodes),
    };
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
}
