/**
 * A PRIVATE redis-server per test file: the real server (apt package
 * redis-server, installed by scripts/setup.sh), on a free loopback port, no
 * persistence, its working directory a temp dir; stopped by its own PID. It
 * never touches a system instance (which does not auto-start here anyway).
 *
 * Fails loudly when redis-server is missing: a skipped Redis test would hide
 * that the shared-store path is untested.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnChildServer } from './child-server.js';
import { freePort } from './ports.js';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

export interface TestRedis {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly pid: number;
  /** Everything the server printed so far (for failure messages). */
  output(): string;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** How to run it; default: a plain standalone server. */
export interface StartRedisOptions {
  /** More redis-server arguments for the chosen port (e.g. --replicaof, --cluster-enabled). */
  readonly args?: (port: number) => string[];
  /**
   * Run as a sentinel (redis-server <file> --sentinel): the config text for
   * the chosen port and the server's own directory, written to sentinel.conf
   * there (sentinels rewrite their config file, so it must be theirs).
   */
  readonly sentinelConfig?: (port: number, dir: string) => string;
}

export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  if (!existsSync(REDIS_SERVER_BIN)) {
    throw new Error(`${REDIS_SERVER_BIN} not found: install the apt package redis-server (scripts/setup.sh does)`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'popgate-redis-'));
  try {
    // A port found free can be taken before the server binds it: retry on another.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        return await startOn(port, dir, options);
      } catch (err) {
        if (!/Address already in use/i.test(String(err)) || attempt >= 5) throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startOn(port: number, dir: string, options: StartRedisOptions): Promise<TestRedis> {
  const common = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'];
  let args = [...common, ...(options.args?.(port) ?? [])];
  if (options.sentinelConfig) {
    const conf = path.join(dir, 'sentinel.conf');
    await writeFile(conf, options.sentinelConfig(port, dir));
    // A sentinel has no persistence options; its state lives in its config file.
    args = [conf, '--sentinel', '--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'no', ...(options.args?.(port) ?? [])];
  }
  // A sentinel never says "Ready to accept connections"; it names itself once listening.
  const ready = options.sentinelConfig ? /Sentinel ID is/ : /Ready to accept connections/;
  const server = spawnChildServer(REDIS_SERVER_BIN, args);
  try {
    // Its own words that it is ready, or gone.
    await server.waitReady(`redis-server on port ${port}`, () => ready.test(server.output()), 10_000);
  } catch (err) {
    throw new Error(`redis-server on port ${port} did not start (${(err as Error).message}).\n--- output ---\n${server.output()}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: server.pid,
    output: server.output,
    stop() {
      stopping ??= (async () => {
        await server.stop(5_000);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
