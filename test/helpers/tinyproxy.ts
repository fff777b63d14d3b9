/**
 * A PRIVATE tinyproxy per test file (apt package tinyproxy, installed by
 * scripts/setup.sh): a real HTTP forward proxy for the egress tests of the
 * verifiers (auth_http, the OAuth issuer), run in the foreground
 * (`tinyproxy -d -c <conf>`) on a free loopback port with its own config and
 * log file in a temp dir. Stopped by its own PID; never the system tinyproxy.
 *
 * tinyproxy admits CONNECT only to the ports of its ConnectPort lines
 * (without any: 443 and 563), so the tests list their origins' ports in
 * `connectPorts`. Its log records every request line it was sent, which is
 * what the tests assert on: `requests()` parses them (`CONNECT
 * 127.0.0.1:8443`, `GET http://...`).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnChildServer } from './child-server.js';
import { freePort } from './ports.js';

export const TINYPROXY_BIN = process.env.TINYPROXY ?? '/usr/bin/tinyproxy';

export interface StartTinyproxyOptions {
  /** Ports CONNECT may reach (tinyproxy's ConnectPort); the tests' https origins. */
  readonly connectPorts: readonly number[];
}

export interface TinyproxyRequest {
  /** `CONNECT`, `GET`, ... */
  readonly method: string;
  /** `host:port` for CONNECT, the absolute URL otherwise. */
  readonly target: string;
}

export interface TestTinyproxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** The whole log so far. */
  log(): Promise<string>;
  /** Every request line tinyproxy logged, in order. */
  requests(): Promise<TinyproxyRequest[]>;
  /** Marks the log now: the function returned gives the requests logged since. */
  mark(): Promise<() => Promise<TinyproxyRequest[]>>;
  /** SIGTERM (SIGKILL after 5 s), then removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** `CONNECT   Dec 06 12:55:42.035 [28327]: Request (file descriptor 5): CONNECT 127.0.0.1:9999 HTTP/1.1` */
const REQUEST_LINE = /\]: Request \(file descriptor \d+\): (\S+) (\S+) HTTP\/1\.[01]$/;

export function parseTinyproxyRequests(log: string): TinyproxyRequest[] {
  const out: TinyproxyRequest[] = [];
  for (const line of log.split('\n')) {
    const m = REQUEST_LINE.exec(line.trimEnd());
    if (m) out.push({ method: m[1]!, target: m[2]! });
  }
  return out;
}

export async function startTinyproxy(options: StartTinyproxyOptions): Promise<TestTinyproxy> {
  if (!existsSync(TINYPROXY_BIN)) throw new Error(`${TINYPROXY_BIN} not found: install the apt package tinyproxy (scripts/setup.sh does)`);
  if (options.connectPorts.length === 0) throw new Error('startTinyproxy: list the ports CONNECT may reach (connectPorts)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'popgate-tinyproxy-'));
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOn(dir, await freePort(), options);
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startOn(dir: string, port: number, options: StartTinyproxyOptions): Promise<TestTinyproxy> {
  const conf = path.join(dir, `tinyproxy-${port}.conf`);
  const logFile = path.join(dir, `tinyproxy-${port}.log`);
  await writeFile(
    conf,
    [
      'Listen 127.0.0.1',
      `Port ${port}`,
      'Allow 127.0.0.1',
      ...options.connectPorts.map((p) => `ConnectPort ${p}`),
      'Timeout 60',
      'MaxClients 64',
      // Info: the request lines (what the tests read, level Connect) and the start-up notice (Info).
      'LogLevel Info',
      `LogFile "${logFile}"`,
      'DisableViaHeader Yes',
      '',
    ].join('\n'),
  );
  const readLog = (): Promise<string> => readFile(logFile, 'utf8').catch(() => '');
  // -d: stay in the foreground (no fork), so the PID is tinyproxy's own.
  const server = spawnChildServer(TINYPROXY_BIN, ['-d', '-c', conf]);
  try {
    // Its own words that it listens (no probe connection to muddy the log), or gone.
    await server.waitReady(`tinyproxy on port ${port}`, async () => (await readLog()).includes('Accepting connections'), 10_000);
  } catch (err) {
    throw new Error(`tinyproxy on port ${port} did not start (${(err as Error).message}).\n--- output ---\n${server.output()}\n--- log ---\n${await readLog()}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: server.pid,
    log: readLog,
    requests: async () => parseTinyproxyRequests(await readLog()),
    async mark() {
      const before = parseTinyproxyRequests(await readLog()).length;
      return async () => parseTinyproxyRequests(await readLog()).slice(before);
    },
    stop() {
      stopping ??= (async () => {
        await server.stop(5_000);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
