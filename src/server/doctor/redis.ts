/**
 * The Redis part of `popgate doctor`'s services group: the throttle's store
 * (auth.throttle.redis) in each of its topologies, reached with the `redis`
 * client and the credentials and TLS the gateway uses
 * (../../auth/throttle/redis-links.ts), every probe under the doctor's deadline:
 *
 * - url: connect and PING;
 * - sentinel: ask each configured sentinel `SENTINEL get-master-addr-by-name`,
 *   say which answered and the master they name (a sentinel down, or
 *   sentinels that disagree, is a warning; none naming a master a failure),
 *   then PING that master as the gateway would log in to it;
 * - cluster: ask each configured root node `CLUSTER INFO`
 *   (`cluster_state:ok` passes, any other state fails, naming it; a root
 *   node that does not answer while the others say ok is a warning).
 *
 * Only host:port is ever shown: never a URL's user or password.
 */
import { createClient } from 'redis';
import type { PopgateConfig } from '../../config/index.js';
import { redisTarget } from '../../auth/throttle/from-config.js';
import { withDeadline, type RedisEndpoint } from '../../auth/throttle/redis-links.js';
import { errText, fail, ok, warn, type DoctorResult } from './types.js';

/** A redis:// URL as scheme, host and port: no credentials, no database. */
export function redisShown(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(unparsable URL)';
  }
}

/** host:port, an IPv6 host in brackets. */
export function endpointShown(e: RedisEndpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** How to reach one node: the credentials and TLS of its role (never shown). */
interface NodeLogin {
  readonly username?: string;
  readonly password?: string;
  readonly tls?: boolean;
  readonly database?: number;
}

/**
 * Connects to one server (a URL, or an endpoint with `login`), sends
 * `commands` one after the other and closes; the answers, or rejects. The
 * whole exchange has `timeoutMs`.
 */
async function ask(where: { url: string } | { endpoint: RedisEndpoint; login: NodeLogin }, commands: readonly (readonly string[])[], timeoutMs: number): Promise<unknown[]> {
  const socket = { connectTimeout: timeoutMs, reconnectStrategy: false as const };
  const client =
    'url' in where
      ? createClient({ url: where.url, socket })
      : createClient({
          socket: { ...socket, host: where.endpoint.host, port: where.endpoint.port, ...(where.login.tls ? { tls: true as const } : {}) },
          ...(where.login.username !== undefined ? { username: where.login.username } : {}),
          ...(where.login.password !== undefined ? { password: where.login.password } : {}),
          ...(where.login.database !== undefined ? { database: where.login.database } : {}),
        });
  let lastError: unknown;
  // Without a listener an 'error' event would crash the process; the last one explains a failed connect.
  client.on('error', (err: unknown) => (lastError = err));
  const exchange = async (): Promise<unknown[]> => {
    await client.connect();
    const answers: unknown[] = [];
    for (const c of commands) answers.push(await client.sendCommand([...c]));
    return answers;
  };
  try {
    return await withDeadline(exchange(), timeoutMs, 'redis');
  } catch (err) {
    throw lastError ?? err;
  } finally {
    // destroy() throws on a client that never opened (connection refused).
    try {
      if (client.isOpen) client.destroy();
    } catch {
      // already closed
    }
  }
}

/** One sentinel's answer to get-master-addr-by-name: the master's host:port, or why not. */
export interface SentinelAnswer {
  readonly sentinel: string;
  readonly master?: string;
  readonly error?: string;
}

export interface SentinelVerdict {
  readonly status: 'ok' | 'warn' | 'fail';
  /** The master to PING: the one most sentinels name (the first named on a tie). */
  readonly master?: string;
  readonly detail: string;
}

/**
 * What the sentinels' answers say: every sentinel naming one master is ok;
 * a sentinel that did not answer, or sentinels naming different masters, a
 * warning (the gateway still finds a master, but a failover may lack its
 * quorum or the sentinels' view is split); no master named at all, a failure.
 */
export function judgeSentinels(masterName: string, answers: readonly SentinelAnswer[]): SentinelVerdict {
  const named = answers.filter((a) => a.master !== undefined);
  const silent = answers.filter((a) => a.master === undefined);
  const why = silent.map((a) => `${a.sentinel}: ${a.error ?? 'no answer'}`).join('; ');
  if (named.length === 0) return { status: 'fail', detail: `no sentinel names a master for ${masterName} (${why})` };
  const byMaster = new Map<string, string[]>();
  for (const a of named) byMaster.set(a.master!, [...(byMaster.get(a.master!) ?? []), a.sentinel]);
  let master = named[0]!.master!;
  for (const [m, s] of byMaster) if (s.length > byMaster.get(master)!.length) master = m;
  const answered = `${named.length} of ${answers.length} sentinels answered`;
  const rest = silent.length > 0 ? `; ${why}` : '';
  if (byMaster.size > 1) {
    const split = [...byMaster].map(([m, s]) => `${s.join(', ')} name${s.length === 1 ? 's' : ''} ${m}`).join('; ');
    return { status: 'warn', master, detail: `${answered} and disagree: ${split}${rest}` };
  }
  const detail = `${answered} (${named.map((a) => a.sentinel).join(', ')}), naming master ${master}${rest}`;
  return { status: silent.length > 0 ? 'warn' : 'ok', master, detail };
}

/** `field:value` lines of an INFO-style answer. */
export function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return fields;
}

/** One root node's CLUSTER INFO, or why it gave none. */
export interface ClusterAnswer {
  readonly node: string;
  readonly info?: string;
  readonly error?: string;
}

/**
 * What the root nodes say: any state other than ok is a failure naming it
 * (and the nodes that report it); all answering ok, the others silent, a
 * warning; none answering, a failure.
 */
export function judgeCluster(answers: readonly ClusterAnswer[]): { status: 'ok' | 'warn' | 'fail'; detail: string } {
  const answered = answers.filter((a) => a.info !== undefined).map((a) => ({ node: a.node, fields: infoFields(a.info!) }));
  const silent = answers.filter((a) => a.info === undefined);
  const why = silent.map((a) => `${a.node}: ${a.error ?? 'no answer'}`).join('; ');
  if (answered.length === 0) return { status: 'fail', detail: `no root node answers CLUSTER INFO (${why})` };
  const rest = silent.length > 0 ? `; ${why}` : '';
  const bad = answered.filter((a) => a.fields.get('cluster_state') !== 'ok');
  if (bad.length > 0) {
    const states = bad.map((a) => `${a.node} says cluster_state:${a.fields.get('cluster_state') ?? '(none)'}${a.fields.has('cluster_slots_ok') ? ` (${a.fields.get('cluster_slots_ok')} of 16384 slots ok)` : ''}`);
    return { status: 'fail', detail: `${states.join('; ')}${rest}` };
  }
  const first = answered[0]!.fields;
  const facts = `${first.get('cluster_known_nodes') ?? '?'} known nodes, ${first.get('cluster_slots_ok') ?? '?'} of 16384 slots ok`;
  return {
    status: silent.length > 0 ? 'warn' : 'ok',
    detail: `cluster_state:ok at ${answered.map((a) => a.node).join(', ')} (${facts})${rest}`,
  };
}

/** The PING of a URL store or a sentinel-named master. */
async function ping(check: string, where: Parameters<typeof ask>[0], timeoutMs: number, tls: boolean, fix: string): Promise<DoctorResult> {
  try {
    const [answer] = await ask(where, [['PING']], timeoutMs);
    return ok('services', check, `answers PING with ${String(answer)}${tls ? ' over TLS' : ''}`);
  } catch (err) {
    return fail('services', check, `no PONG: ${errText(err)}`, fix);
  }
}

/** auth.throttle.redis: the store answers, in its topology (see the head of this file). */
export async function checkRedis(config: PopgateConfig, timeoutMs: number): Promise<DoctorResult[]> {
  const t = config.auth.throttle;
  if (!t.enabled || t.store !== 'redis' || t.redis === undefined) return [];
  if (t.redis.url !== undefined) {
    const url = t.redis.url;
    return [
      await ping(`redis ${redisShown(url)}`, { url }, timeoutMs, url.startsWith('rediss:'), 'start Redis, or correct auth.throttle.redis.url (credentials, rediss:// for TLS)'),
    ];
  }
  const target = redisTarget(t.redis);
  const data: NodeLogin = {
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: true } : {}),
  };
  if (target.sentinel !== undefined) {
    const s = target.sentinel;
    const login: NodeLogin = {
      ...(s.username !== undefined ? { username: s.username } : {}),
      ...(s.password !== undefined ? { password: s.password } : {}),
      ...(target.tls ? { tls: true } : {}),
    };
    const masters = new Map<string, RedisEndpoint>();
    const answers = await Promise.all(
      s.sentinels.map(async (endpoint): Promise<SentinelAnswer> => {
        const sentinel = endpointShown(endpoint);
        try {
          const [addr] = await ask({ endpoint, login }, [['SENTINEL', 'get-master-addr-by-name', s.masterName]], timeoutMs);
          if (!Array.isArray(addr) || addr.length !== 2) return { sentinel, error: `does not know ${s.masterName}` };
          const master = { host: String(addr[0]), port: Number(addr[1]) };
          masters.set(endpointShown(master), master);
          return { sentinel, master: endpointShown(master) };
        } catch (err) {
          return { sentinel, error: errText(err) };
        }
      }),
    );
    const verdict = judgeSentinels(s.masterName, answers);
    const check = `redis sentinel ${s.masterName}`;
    const results: DoctorResult[] = [];
    if (verdict.status === 'ok') results.push(ok('services', check, verdict.detail));
    else if (verdict.status === 'warn') {
      results.push(warn('services', check, verdict.detail, 'start the silent sentinels, or correct auth.throttle.redis.sentinel.sentinels; sentinels that disagree need their configuration checked (SENTINEL MASTERS)'));
    } else {
      results.push(fail('services', check, verdict.detail, 'start the sentinels, or correct auth.throttle.redis.sentinel (masterName as in `sentinel monitor`, sentinels, username/password) and tls'));
    }
    const master = verdict.master !== undefined ? masters.get(verdict.master) : undefined;
    if (master !== undefined) {
      results.push(
        await ping(
          `redis master ${verdict.master} (named by the sentinels)`,
          { endpoint: master, login: { ...data, ...(target.database !== undefined ? { database: target.database } : {}) } },
          timeoutMs,
          target.tls === true,
          'start the master (or let the sentinels fail over), or correct auth.throttle.redis username/password, tls or database',
        ),
      );
    }
    return results;
  }
  const nodes = target.cluster?.nodes ?? [];
  const answers = await Promise.all(
    nodes.map(async (endpoint): Promise<ClusterAnswer> => {
      const node = endpointShown(endpoint);
      try {
        const [info] = await ask({ endpoint, login: data }, [['CLUSTER', 'INFO']], timeoutMs);
        return { node, info: String(info) };
      } catch (err) {
        return { node, error: errText(err) };
      }
    }),
  );
  const verdict = judgeCluster(answers);
  const check = 'redis cluster';
  if (verdict.status === 'ok') return [ok('services', check, verdict.detail)];
  if (verdict.status === 'warn') return [warn('services', check, verdict.detail, 'start the silent root nodes, or correct auth.throttle.redis.cluster.nodes')];
  return [
    fail(
      'services',
      check,
      verdict.detail,
      answers.some((a) => a.info !== undefined)
        ? 'bring every slot\'s master back (redis-cli --cluster check HOST:PORT shows which are missing)'
        : 'start the cluster, or correct auth.throttle.redis.cluster.nodes, username/password and tls',
    ),
  ];
}
