/**
 * auth.throttle.redis: one server (url), Redis Sentinel or Redis Cluster;
 * their credentials as *File secrets read by the loader; and what the store
 * is given (redisTarget).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisTarget } from '../../src/auth/throttle/index.js';
import { parseRedisNode } from '../../src/config/schema.js';
import { redactConfig, type PopgateConfig } from '../../src/config/index.js';
import { issuesOf, MINIMAL_CONFIG, parseConfig } from '../helpers/config.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-config-redis-'));
  await writeFile(join(dir, 'redis-pw'), 'r3dis-Secret\n');
  await writeFile(join(dir, 'sentinel-pw'), 'sent1nel-Secret\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** MINIMAL_CONFIG with `auth.throttle: { store: redis, redis: <redis> }`. */
function withRedis(redis: string): string {
  return MINIMAL_CONFIG.replace('auth:\n', `auth:\n  throttle: { store: redis, redis: ${redis} }\n`);
}

const parse = (redis: string, readSecrets = true): Promise<PopgateConfig> => parseConfig(withRedis(redis), { baseDir: dir, readSecrets });
const problems = async (redis: string): Promise<Array<[string, string]>> =>
  (await issuesOf(withRedis(redis), { baseDir: dir, readSecrets: false })).map((i) => [i.path, i.message]);

const SENTINEL = "sentinel: { masterName: mymaster, sentinels: ['10.0.0.1:26379', 'redis-s2.example.com:26379', '[2001:db8::3]:26379'] }";

describe('auth.throttle.redis: which Redis', () => {
  it('keeps a url as it was (no tls, database or credentials beside it)', async () => {
    const cfg = await parse('{ url: redis://127.0.0.1:6379/2 }');
    expect(cfg.auth.throttle.redis).toEqual({ url: 'redis://127.0.0.1:6379/2', tls: false, keyPrefix: 'popgate:' });
    expect(redisTarget(cfg.auth.throttle.redis!)).toEqual({ url: 'redis://127.0.0.1:6379/2', keyPrefix: 'popgate:' });
  });

  it('takes a sentinel set: master name, sentinels as host:port, database, tls, and credentials from files', async () => {
    const cfg = await parse(`{ ${SENTINEL.replace(' }', ', username: sentry, passwordFile: sentinel-pw }')}, username: popgate, passwordFile: redis-pw, tls: true, database: 3 }`);
    expect(cfg.auth.throttle.redis).toMatchObject({
      sentinel: { masterName: 'mymaster', username: 'sentry', password: 'sent1nel-Secret', passwordFile: join(dir, 'sentinel-pw') },
      username: 'popgate',
      password: 'r3dis-Secret',
      passwordFile: join(dir, 'redis-pw'),
      tls: true,
      database: 3,
    });
    expect(redisTarget(cfg.auth.throttle.redis!)).toEqual({
      keyPrefix: 'popgate:',
      username: 'popgate',
      password: 'r3dis-Secret',
      tls: true,
      database: 3,
      sentinel: {
        masterName: 'mymaster',
        sentinels: [
          { host: '10.0.0.1', port: 26379 },
          { host: 'redis-s2.example.com', port: 26379 },
          { host: '2001:db8::3', port: 26379 },
        ],
        username: 'sentry',
        password: 'sent1nel-Secret',
      },
    });
    // Both secrets are redacted; the file names are not secret.
    const red = JSON.stringify(redactConfig(cfg));
    expect(red).not.toContain('r3dis-Secret');
    expect(red).not.toContain('sent1nel-Secret');
    expect(red).toContain('sentinel-pw');
  });

  it('takes a cluster by its seed nodes', async () => {
    const cfg = await parse("{ cluster: { nodes: ['10.0.1.1:6379', '10.0.1.2:6379'] }, password: inline-pw, keyPrefix: 'pg:' }");
    expect(redisTarget(cfg.auth.throttle.redis!)).toEqual({
      keyPrefix: 'pg:',
      password: 'inline-pw',
      cluster: { nodes: [{ host: '10.0.1.1', port: 6379 }, { host: '10.0.1.2', port: 6379 }] },
    });
  });

  it('needs exactly one of url, sentinel and cluster', async () => {
    expect(await problems('{ keyPrefix: x }')).toEqual([['auth.throttle.redis', 'one of url, sentinel or cluster is required']]);
    expect(await problems(`{ url: redis://h:6379, ${SENTINEL} }`)).toEqual([['auth.throttle.redis', 'url and sentinel are exclusive: give exactly one']]);
    expect(await problems("{ sentinel: { masterName: m, sentinels: ['h:1'] }, cluster: { nodes: ['h:2'] } }")).toEqual([
      ['auth.throttle.redis', 'sentinel and cluster are exclusive: give exactly one'],
    ]);
  });

  it('refuses beside a url what the URL says itself', async () => {
    expect(await problems('{ url: redis://h:6379, username: u, password: p, database: 1, tls: true }')).toEqual([
      ['auth.throttle.redis.username', 'not used with url: put it in the URL (rediss://user:password@host:port/db)'],
      ['auth.throttle.redis.password', 'not used with url: put it in the URL (rediss://user:password@host:port/db)'],
      ['auth.throttle.redis.database', 'not used with url: put it in the URL (rediss://user:password@host:port/db)'],
      ['auth.throttle.redis.tls', 'not used with url: write rediss:// for TLS'],
    ]);
  });

  it('refuses a database in a cluster, and braces in a cluster key prefix (they would be the hash tag)', async () => {
    expect(await problems("{ cluster: { nodes: ['h:6379'] }, database: 1, keyPrefix: 'p{x}:' }")).toEqual([
      ['auth.throttle.redis.database', 'not used with cluster: Redis Cluster has only database 0'],
      ['auth.throttle.redis.keyPrefix', "must not contain { or } with cluster (popgate puts each key's address or user in a {hash tag})"],
    ]);
    // One server and Sentinel keep any prefix (their key names are unchanged).
    await expect(parse(`{ ${SENTINEL}, keyPrefix: 'p{x}:' }`)).resolves.toBeDefined();
  });

  it('checks sentinels and nodes: host:port, at least one, no duplicates, a master name', async () => {
    expect(await problems("{ sentinel: { masterName: 'a b', sentinels: [] } }")).toEqual([
      ['auth.throttle.redis.sentinel.masterName', 'must not contain whitespace'],
      ['auth.throttle.redis.sentinel.sentinels', 'at least one sentinel is required'],
    ]);
    const bad = await problems("{ cluster: { nodes: ['h:6379', 'h:6379', 'h', '2001:db8::1:6379', 'h:0', 'h:70000', 'bad host:1'] } }");
    expect(bad).toEqual([
      ...[2, 3, 4, 5, 6].map((i) => [`auth.throttle.redis.cluster.nodes[${i}]`, 'must be host:port (an IPv6 address in brackets: [2001:db8::1]:6379)']),
      ['auth.throttle.redis.cluster.nodes[1]', 'duplicate node h:6379'],
    ]);
  });

  it('reads the secret files with the loader: a missing one is named, password and passwordFile together refused', async () => {
    const missing = await issuesOf(withRedis(`{ ${SENTINEL.replace(' }', ', passwordFile: nope }')} }`), { baseDir: dir });
    expect(missing.map((i) => [i.path, i.message])).toEqual([['auth.throttle.redis.sentinel.passwordFile', `cannot read secret file ${join(dir, 'nope')} (ENOENT)`]]);
    const both = await issuesOf(withRedis(`{ ${SENTINEL}, password: x, passwordFile: redis-pw }`), { baseDir: dir });
    expect(both.map((i) => [i.path, i.message])).toEqual([['auth.throttle.redis', 'both password and passwordFile are given; use exactly one']]);
    // check-config without the secrets (readSecrets false) accepts the config.
    const cfg = await parse(`{ ${SENTINEL}, passwordFile: /run/secrets/absent }`, false);
    expect(cfg.auth.throttle.redis?.password).toBe('***');
  });
});

describe('parseRedisNode', () => {
  it('splits host:port, an IPv6 host in brackets', () => {
    expect(parseRedisNode('127.0.0.1:6379')).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(parseRedisNode('[::1]:26379')).toEqual({ host: '::1', port: 26379 });
    expect(parseRedisNode('redis.example.com:1')).toEqual({ host: 'redis.example.com', port: 1 });
    for (const bad of ['', 'h', 'h:', ':6379', '::1:6379', '[h]:1', 'h:65536', 'h:-1', 'h:1 ', 'a b:1']) expect(parseRedisNode(bad), bad).toBeUndefined();
  });
});
