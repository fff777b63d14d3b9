/**
 * The auth_http client's cost on popgate's side: CPU per auth call and
 * calls/s of the HTTP transports popgate could use, against one small
 * auth_http service in a child process (one GET with headers, a header-only
 * answer like test/fixtures/nginx-auth and bench/compare/auth-service.ts).
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/auth-client.js [--calls N] [--runs R]
 *
 * Paths (every run of every path at each concurrency interleaved, rotating
 * the order; one warm-up round first, not counted):
 * - `verifier`: popgate's createHttpAuthVerifier().verify() as shipped: the
 *   whole call (headers built, slot, request, answer parsed, log calls);
 * - `node:http keep-alive, FIFO agent`: the transport alone as the verifier
 *   used it before (http.Agent keepAlive, maxSockets = maxConcurrent, header
 *   object, headersDistinct);
 * - `node:http tuned`: the same with a LIFO agent, the answer read from
 *   rawHeaders (a header array for the request would save a little more, but
 *   http-proxy-agent rebuilds the header block from the object form);
 * - `node:http, no keep-alive`: a new TCP connection per call (what nginx's
 *   auth_http does), for scale;
 * - `undici Pool`: undici's Pool.request() (connections = maxConcurrent,
 *   header object, body dumped).
 * CPU is process.cpuUsage() of this process (the client; all threads), the
 * service's from /proc (10 ms ticks: coarse), connections as the service
 * counted them.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Pool } from 'undici';
import { buildAuthHeaders, createHttpAuthVerifier, type HttpAuthVerifier } from '../src/auth/http-auth.js';
import { exitWithParent } from './lib/child-exit.js';
import { runLoad } from './lib/load.js';
import { baseMachineInfo, log, runBenchMain, startNodeChild, waitReady, type Child } from './lib/process.js';
import { readProcCpu } from './lib/procfs.js';
import { f, summarize } from './lib/stats.js';

/** The config default of auth.http.maxConcurrent: the agent's/pool's socket bound. */
const MAX_CONCURRENT = 32;
const CONCURRENCIES = [1, 16] as const;

// ------------------------------------------------------------------ the service (child process)

interface ServiceStats {
  readonly connections: number;
  readonly requests: number;
}

function serve(): void {
  let connections = 0;
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    const ok = req.headers['auth-pass'] === 'secret';
    res.writeHead(
      200,
      ok
        ? { 'Auth-Status': 'OK', 'Auth-Server': '127.0.0.1', 'Auth-Port': '1110', 'Auth-User': 'alice*popgate', 'Auth-Pass': 'master' }
        : { 'Auth-Status': 'Invalid login or password', 'Auth-Wait': '3' },
    );
    res.end();
  });
  server.on('connection', () => connections++);
  // Idle connections stay open for the whole benchmark (a client's reuse is measured, not the server's timeouts).
  server.keepAliveTimeout = 600_000;
  server.headersTimeout = 610_000;
  server.maxRequestsPerSocket = 0;
  process.on('message', () => process.send?.({ connections, requests } satisfies ServiceStats));
  server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
    const a = server.address();
    process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0}\n`);
  });
  exitWithParent();
}

function askStats(c: Child): Promise<ServiceStats> {
  return new Promise((resolve) => {
    c.child.once('message', (m) => resolve(m as ServiceStats));
    c.child.send('stats');
  });
}

// ------------------------------------------------------------------ the paths

type Call = () => Promise<void>;

interface PathDef {
  readonly name: string;
  readonly call: Call;
  readonly close: () => Promise<void> | void;
}

function answerOk(status: number, authStatus: string | undefined): void {
  if (status !== 200 || authStatus !== 'OK') throw new Error(`unexpected answer ${status} ${authStatus ?? '(no Auth-Status)'}`);
}

function makePaths(url: string): PathDef[] {
  const target = new URL(url);
  const question = { method: 'plain', user: 'alice', pass: 'secret', remoteAddress: '192.0.2.7', tls: true } as const;
  const headers = buildAuthHeaders(question, 1, { 'X-Auth-Key': 'bench' });
  const base = { hostname: target.hostname, port: Number(target.port), path: target.pathname, method: 'GET' } as const;

  const verifier: HttpAuthVerifier = createHttpAuthVerifier({
    url,
    timeoutMs: 10_000,
    maxConcurrent: MAX_CONCURRENT,
    maxQueue: 256,
    maxWaits: 3,
    headers: { 'X-Auth-Key': 'bench' },
    proxy: 'none',
    authorizeTicketLogins: false,
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
  });

  const nodeCall =
    (agent: http.Agent | false, tuned: boolean): Call =>
    () =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ ...base, headers, agent });
        req.on('error', reject);
        req.on('response', (res) => {
          res.resume();
          try {
            if (tuned) {
              // rawHeaders: [name, value, ...]; the last Auth-Status wins, as in parseAuthAnswer.
              let status: string | undefined;
              const raw = res.rawHeaders;
              for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'auth-status') status = raw[i + 1];
              answerOk(res.statusCode ?? 0, status);
            } else {
              answerOk(res.statusCode ?? 0, res.headersDistinct['auth-status']?.at(-1));
            }
            resolve();
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
        req.end();
      });

  const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_CONCURRENT });
  const tunedAgent = new http.Agent({ keepAlive: true, maxSockets: MAX_CONCURRENT, maxFreeSockets: MAX_CONCURRENT, scheduling: 'lifo' });
  const pool = new Pool(target.origin, { connections: MAX_CONCURRENT, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 });

  return [
    {
      name: 'verifier (node:http, LIFO agent)',
      call: async () => {
        const out = await verifier.verify({ username: 'alice', password: 'secret', mechanism: 'USER', tls: true, remoteAddress: '192.0.2.7' });
        if (!out.ok) throw new Error('verifier refused');
      },
      close: () => verifier.close(),
    },
    { name: 'node:http keep-alive, FIFO agent', call: nodeCall(agent, false), close: () => agent.destroy() },
    { name: 'node:http keep-alive, tuned', call: nodeCall(tunedAgent, true), close: () => tunedAgent.destroy() },
    { name: 'node:http, new connection per call', call: nodeCall(false, false), close: () => undefined },
    {
      name: 'undici Pool.request',
      call: async () => {
        const res = await pool.request({ path: target.pathname, method: 'GET', headers });
        await res.body.dump();
        const s = res.headers['auth-status'];
        answerOk(res.statusCode, Array.isArray(s) ? s.at(-1) : s);
      },
      close: () => pool.close(),
    },
  ];
}

// ------------------------------------------------------------------ measurement

/** The undici package this run loaded (the one node_modules resolves). */
function undiciVersion(): string {
  const pkg = new URL('./package.json', import.meta.resolve('undici'));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? 'unknown';
}

interface Sample {
  readonly cpuUsPerCall: number;
  readonly serviceCpuUsPerCall: number;
  readonly perSecond: number;
  readonly connections: number;
}

async function measure(p: PathDef, concurrency: number, calls: number, service: Child): Promise<Sample> {
  const before = await askStats(service);
  const serviceBefore = readProcCpu(service.pid).totalMs;
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  const r = await runLoad({ concurrency, total: calls }, () => p.call());
  const used = process.cpuUsage(cpu);
  const elapsed = performance.now() - t0;
  const serviceMs = readProcCpu(service.pid).totalMs - serviceBefore;
  const after = await askStats(service);
  return {
    cpuUsPerCall: (used.user + used.system) / r.ops,
    serviceCpuUsPerCall: (serviceMs * 1000) / r.ops,
    perSecond: (r.ops * 1000) / elapsed,
    connections: after.connections - before.connections,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '2000' }, runs: { type: 'string', default: '5' } } });
  const calls = Number(values.calls);
  const runs = Number(values.runs);
  if (!(Number.isSafeInteger(calls) && calls >= 16) || !(Number.isSafeInteger(runs) && runs >= 1)) {
    throw new Error('--calls must be an integer >= 16, --runs >= 1');
  }
  await runBenchMain('auth-client', async (cleanup) => {
    const service = startNodeChild('auth-service', 'auth-client.js', ['--serve'], { ipc: true });
    cleanup.add('auth service', () => service.stop());
    const [port] = await waitReady(service);
    const paths = makePaths(`http://127.0.0.1:${port}/auth`);
    cleanup.add('clients', async () => {
      for (const p of paths) await p.close();
    });
    const m = baseMachineInfo();
    log(
      `auth-client: ${calls} calls per run, ${runs} runs, concurrency ${CONCURRENCIES.join(' and ')}; ` +
        `${m.node}, undici ${undiciVersion()}, ${m.cores} cores, ${m.cpuModel}`,
    );

    // Warm-up: JIT, and each keep-alive path's connections opened.
    for (const c of CONCURRENCIES) for (const p of paths) await measure(p, c, Math.min(calls, 500), service);

    const samples = new Map<string, Sample[]>();
    for (let run = 0; run < runs; run++) {
      for (const c of CONCURRENCIES) {
        for (let k = 0; k < paths.length; k++) {
          const p = paths[(k + run) % paths.length]!; // rotate the order so drift hits every path alike
          const key = `${c}\u0000${p.name}`;
          const list = samples.get(key) ?? [];
          list.push(await measure(p, c, calls, service));
          samples.set(key, list);
        }
      }
      log(`auth-client: run ${run + 1}/${runs} done`);
    }

    const range = (xs: number[], d: number): string => {
      const s = summarize(xs);
      return runs === 1 ? f(s.median, d) : `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
    };
    log('');
    log('| c | path | client CPU µs/call | calls/s | service CPU µs/call | connections/run |');
    log('|--:|---|--:|--:|--:|--:|');
    for (const c of CONCURRENCIES) {
      for (const p of paths) {
        const list = samples.get(`${c}\u0000${p.name}`) ?? [];
        log(
          `| ${c} | ${p.name} | ${range(list.map((s) => s.cpuUsPerCall), 1)} | ${range(list.map((s) => s.perSecond), 0)} | ` +
            `${range(list.map((s) => s.serviceCpuUsPerCall), 0)} | ${summarize(list.map((s) => s.connections)).median} |`,
        );
      }
    }
    log('');
    log(`medians of ${runs} runs (min–max); client CPU is this process's process.cpuUsage() over ${calls} calls`);
  });
}

if (process.argv.includes('--serve')) serve();
else await main();
