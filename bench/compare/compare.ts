/**
 * popgate side by side with nginx's mail proxy (issue 7), same machine, same
 * run. Part of `npm run bench` (alone: `BENCH_PARTS=compare`).
 *
 * On 127.0.0.1, each in a process of its own:
 *  - backends: the benchmark's private Dovecot (master user) and the
 *    in-memory one (bench/lib/backend-child.ts, started by bench/run.ts), so
 *    that logins/s measure the proxies and not Dovecot's fork-per-login;
 *  - an nginx `auth_http` service (bench/compare/auth-service.ts, Node http,
 *    keep-alive) answering OK + the backend + internal credentials;
 *  - nginx's mail proxy (Debian's nginx + libnginx-mod-mail): one worker
 *    (like popgate's one event loop), `worker_processes auto`, and one worker
 *    without TLS session tickets;
 *  - popgate five times: `auth.verifiers: [http]` against that same service
 *    (the same work as nginx: USER/PASS from Auth-User/Auth-Pass at the
 *    backend) and with its own user file (scrypt ln=10) + master login, each
 *    with the credentials cache off (cold: every login asks the verifier) and
 *    on (warm: every login after the warm-up is a cache hit), and the warm
 *    auth_http one with `workers: auto` (primary + a worker per core, metered
 *    together: childrenOf(primary) at each run);
 *  - raw TLS splice baselines: stunnel4 and a minimal Node TLS pipe;
 *  - the load generator (bench/compare/load-worker.ts), which competes for
 *    the same 2 cores and whose CPU is reported too.
 *
 * Before the timed runs of each login cell: a steady-state warm-up (windows
 * until the proxy's CPU per login of two consecutive ones agrees, warmUp()).
 *
 * Scenarios, settings.runs runs each (interleaved across paths), median (min–max):
 *  1. full logins over implicit TLS (new TLS session per login; plus rows
 *     with session resumption) with AUTH PLAIN, on the in-memory backend and on
 *     Dovecot, at several concurrencies: logins/s and CPU per login of every
 *     process involved;
 *  2. relay throughput of a 50 MB RETR through TLS: MB/s, CPU s/GB;
 *  3. 10,000 idle authenticated TLS sessions: RSS (and popgate's heap) per session;
 *  4. STAT latency added by each proxy over a direct plaintext STAT;
 *  5. KPOP/GSSAPI (popgate only), cited from the Kerberos part of the same run.
 * Writes bench/results/compare.md and compare-logins.svg (in git) and
 * compare.json (the raw figures, not in git; bench/compare/render.ts
 * re-renders the other two from it). Settings: bench/lib/settings.ts.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { hashPassword } from '../../src/auth/password-hash.js';
import type { TestPki } from '../../test/helpers/certs.js';
import type { DovecotInstance } from '../../test/helpers/dovecot.js';
import { freePort } from '../../test/helpers/ports.js';
import type { KerberosResults } from '../kerberos.js';
import {
  BENCH_DIST,
  type Cleanup,
  GATEWAY_MAIN,
  HOST,
  Instruments,
  baseMachineInfo,
  log,
  sleep,
  spawnGateway,
  startNodeChild,
  versionOf,
  waitForGreeting,
  waitReady,
  writeResults,
  type Child,
  type GatewayChild,
} from '../lib/process.js';
import { childrenOf, clockTicksPerSecond, fdCount, machineBusyPct, rssKiB, type MeterSpec } from '../lib/procfs.js';
import type { BenchSettings } from '../lib/settings.js';
import { f } from '../lib/stats.js';
import { LoadWorker, NGINX_BIN, STUNNEL_BIN, raiseNofile, startNginx, startStunnel, type NginxInstance } from './children.js';
import type { IdleCheckResult, IdleOpenResult, LoginsResult, ProbeResult, RetrResult, StatResult, WireTarget } from './load-worker.js';
import { renderMarkdown, renderSvg, type BackendId, type CompareResults, type IdleCell, type LoginCell, type MachineInfo, type PathId, type PathMeta, type WarmupRecord } from './report.js';

// ------------------------------------------------------------------ settings

/** bench/lib/settings.ts's `compare` section and the run count (recorded in compare.json). */
export type CompareSettings = BenchSettings['compare'] & { readonly runs: number; readonly quick: boolean };

const CHEAP_LOG_N = 10;
/** Rows of the fast-backend login scenario that run only at concurrencies >= settings.extraRowsMinConcurrency. */
const EXTRA_ROWS: readonly PathId[] = ['popgate-http-warm', 'popgate-http-auto', 'popgate-file-warm'];
/** The paths of the relay and STAT scenarios (the cache and workers rows would measure the same relay). */
const RELAY_STAT_PATHS: readonly PathId[] = ['direct', 'stunnel', 'node-tls', 'popgate-http', 'popgate-file', 'nginx-1', 'nginx-auto'];
const PRELOAD = path.join(BENCH_DIST, 'lib/preload.js');

export interface CompareInput {
  readonly cleanup: Cleanup;
  readonly dovecot: DovecotInstance;
  readonly master: { readonly name: string; readonly password: string };
  /** A Dovecot user and its own Dovecot password (the direct-to-Dovecot baseline). */
  readonly dovecotUser: { readonly name: string; readonly password: string };
  readonly pki: TestPki;
  readonly ca: Buffer;
  /** The in-memory backend (bench/lib/backend-child.ts) and its `fastuser` password. */
  readonly fast: FastBackend;
  readonly settings: CompareSettings;
  /** The Kerberos part's results from the same run, cited in section 5 (absent: that part did not run). */
  readonly kerberos?: KerberosResults;
}

export interface FastBackend {
  readonly child: Child;
  readonly port: number;
  readonly bigSize: number;
  readonly smallSize: number;
  readonly fastPassword: string;
}

// ------------------------------------------------------------------ the rig

interface PathRt extends PathMeta {
  readonly port: number;
  readonly tlsPath: boolean;
  readonly proxyPids: () => number[];
  readonly mem?: Instruments;
  readonly running: () => boolean;
  readonly output: () => string;
}

interface Rig {
  readonly s: CompareSettings;
  readonly work: string;
  readonly fast: Child;
  readonly fastPort: number;
  readonly bigSize: number;
  readonly smallSize: number;
  readonly auth: Child;
  readonly authPort: number;
  readonly worker: LoadWorker;
  readonly paths: PathRt[];
  readonly ca: string;
  readonly front: { readonly fast: string; readonly alice: string };
  readonly input: CompareInput;
  readonly nofile: number;
  readonly gateways: GatewayChild[];
  readonly nginx: NginxInstance[];
  readonly profDir: string | undefined;
}

async function ports(n: number): Promise<number[]> {
  const set = new Set<number>();
  while (set.size < n) set.add(await freePort(HOST));
  return [...set];
}

function popgateYaml(o: { name: string; port: number; pki: TestPki; body: string }): string {
  const q = JSON.stringify;
  return `# popgate, nginx comparison (generated)
log: { level: warn }
listeners:
  - { name: ${o.name}, kind: pop3s, address: ${HOST}, port: ${o.port},
      tls: { certFile: ${q(o.pki.certFile)}, keyFile: ${q(o.pki.keyFile)} } }
${o.body}
limits: { maxConnections: 40000, maxConnectionsPerIp: 40000 }
shutdown: { drainTimeout: 1s }
`;
}

async function setUp(input: CompareInput, s: CompareSettings, nofile: number): Promise<Rig> {
  const { cleanup, pki, master, dovecot } = input;
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} missing: run npm run build (scripts/bench.sh does)`);
  for (const bin of [NGINX_BIN, STUNNEL_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} missing: scripts/bench.sh installs nginx, libnginx-mod-mail and stunnel4`);
  }
  const work = await mkdtemp(path.join(os.tmpdir(), 'popgate-compare-'));
  cleanup.add('remove comparison work dir', () => rm(work, { recursive: true, force: true }));
  const ca = input.ca.toString('latin1');

  const fast = input.fast.child;
  const fastPort = input.fast.port;

  // Auth service.
  const front = { fast: `front-fast-${randomBytes(8).toString('hex')}`, alice: `front-alice-${randomBytes(8).toString('hex')}` };
  const authUsers = {
    fastuser: { password: front.fast, server: HOST, port: fastPort, backendUser: `fastuser*${master.name}`, backendPass: master.password },
    [input.dovecotUser.name]: {
      password: front.alice,
      server: HOST,
      port: dovecot.port,
      backendUser: dovecot.masterLogin(input.dovecotUser.name),
      backendPass: master.password,
    },
  };
  const auth = startNodeChild('auth service', 'compare/auth-service.js', [JSON.stringify({ users: authUsers })]);
  cleanup.add('stop auth service', () => auth.stop());
  const authPort = Number((await waitReady(auth))[0]);
  log(`compare: auth_http service pid ${auth.pid} on ${HOST}:${authPort}`);

  const [pStunnel, pHttp, pHttpWarm, pHttpAuto, pFile, pFileWarm, pNginx1, pNginxAuto, pNginxNt] = (await ports(9)) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];

  // Raw TLS splice baselines.
  const stunnel = await startStunnel({ dir: work, port: pStunnel, backendPort: fastPort, certFile: pki.certFile, keyFile: pki.keyFile, ca: input.ca });
  cleanup.add('stop stunnel', () => stunnel.stop());
  log(`compare: stunnel pid ${stunnel.pid} on ${HOST}:${pStunnel} -> fast backend`);
  const pipe = startNodeChild('node TLS pipe', 'compare/tls-pipe.js', [JSON.stringify({ cert: pki.certFile, key: pki.keyFile, backendPort: fastPort })], {
    execArgv: ['--expose-gc', '--import', PRELOAD],
    ipc: true,
  });
  cleanup.add('stop node TLS pipe', () => pipe.stop());
  const pipePort = Number((await waitReady(pipe))[0]);
  log(`compare: Node TLS pipe pid ${pipe.pid} on ${HOST}:${pipePort} -> fast backend`);

  // popgate, twice.
  const profDir = s.cpuProf ? await mkdtemp(path.join(os.tmpdir(), 'popgate-compare-prof-')) : undefined;
  const execArgv = ['--expose-gc', '--import', PRELOAD, ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])];
  const userFile = path.join(work, 'users');
  await writeFile(
    userFile,
    `fastuser:${await hashPassword(front.fast, { scryptLogN: CHEAP_LOG_N })}\n${input.dovecotUser.name}:${await hashPassword(front.alice, { scryptLogN: CHEAP_LOG_N })}\n`,
    { mode: 0o600 },
  );
  const q = JSON.stringify;
  // cache: '0s' = off (cold: every login asks the verifier); undefined = popgate's default (on, ttl 5m: warm).
  const httpYaml = (name: string, port: number, o: { cacheTtl?: string; workers?: string }): string =>
    popgateYaml({
      name,
      port,
      pki,
      body: `${o.workers ? `workers: ${o.workers}\n` : ''}auth:
  verifiers: [http]
  http: { url: ${q(`http://${HOST}:${authPort}/auth`)} }
  failureDelay: 0s${o.cacheTtl ? `\n  cache: { ttl: ${o.cacheTtl} }` : ''}
backend:
  host: ${HOST}
  port: ${fastPort}
  xclient: false
  login: { mode: passthrough }`,
    });
  const fileYaml = (name: string, port: number, o: { cacheTtl?: string }): string =>
    popgateYaml({
      name,
      port,
      pki,
      body: `auth: { userFile: ${q(userFile)}, failureDelay: 0s${o.cacheTtl ? `, cache: { ttl: ${o.cacheTtl} }` : ''} }
backend:
  host: ${HOST}
  port: ${fastPort}
  xclient: false
  login: { mode: master, method: auth-plain, user: ${q(master.name)}, password: ${q(master.password)} }
routing:
  users:
    ${q(input.dovecotUser.name)}: [{ host: ${HOST}, port: ${dovecot.port} }]`,
    });
  const gateways: GatewayChild[] = [];
  const gwStart = async (name: string, yaml: string, port: number): Promise<GatewayChild> => {
    const file = path.join(work, `${name}.yaml`);
    await writeFile(file, yaml, { mode: 0o600 });
    const gw = spawnGateway(file, { execArgv, ipc: true });
    cleanup.add(`stop ${name}`, () => gw.stop());
    gateways.push(gw);
    await waitForGreeting({ label: name, host: HOST, port, tls: { ca: input.ca, servername: 'localhost' } }, gw, 15_000);
    log(`compare: ${name} pid ${gw.pid} on ${HOST}:${port}`);
    return gw;
  };
  const gwHttp = await gwStart('popgate-http', httpYaml('cmp-http', pHttp, { cacheTtl: '0s' }), pHttp);
  const gwHttpWarm = await gwStart('popgate-http-warm', httpYaml('cmp-http-warm', pHttpWarm, {}), pHttpWarm);
  const gwHttpAuto = await gwStart('popgate-http-auto', httpYaml('cmp-http-auto', pHttpAuto, { workers: 'auto' }), pHttpAuto);
  const gwFile = await gwStart('popgate-file', fileYaml('cmp-file', pFile, { cacheTtl: '0s' }), pFile);
  const gwFileWarm = await gwStart('popgate-file-warm', fileYaml('cmp-file-warm', pFileWarm, {}), pFileWarm);
  log(`compare: popgate-http-auto workers: ${childrenOf(gwHttpAuto.pid).join(', ') || 'none found'}`);

  // nginx, twice.
  const nginx: NginxInstance[] = [];
  const nginxPaths: PathRt[] = [];
  for (const [name, label, workers, port, tickets] of [
    ['nginx-1', 'nginx, 1 worker', '1', pNginx1, true],
    ['nginx-auto', 'nginx, worker_processes auto', 'auto', pNginxAuto, true],
    ['nginx-1-nt', 'nginx, 1 worker, no session tickets', '1', pNginxNt, false],
  ] as const) {
    const n = await startNginx({ dir: work, nofile, name, port, workers, tickets, authPort, certFile: pki.certFile, keyFile: pki.keyFile, ca: input.ca });
    cleanup.add(`stop ${name}`, () => n.stop());
    nginx.push(n);
    log(`compare: ${name} master pid ${n.pid}, workers ${n.pids().slice(1).join(', ')} on ${HOST}:${port}`);
    const output = (): string => `${n.output()}\n${safeRead(n.errorLog)}`;
    nginxPaths.push({ id: name, label, family: 'nginx', port, tlsPath: true, proxyPids: () => n.pids(), running: n.running, output });
  }

  const worker = LoadWorker.start();
  cleanup.add('stop load worker', () => worker.proc.stop());
  log(`compare: load worker pid ${worker.pid}`);

  const paths: PathRt[] = [
    {
      id: 'direct',
      label: 'direct (plaintext, no proxy)',
      family: 'baseline',
      port: 0,
      tlsPath: false,
      proxyPids: () => [],
      running: () => true,
      output: () => '',
    },
    {
      id: 'stunnel',
      label: 'stunnel4 (raw TLS splice)',
      family: 'baseline',
      port: pStunnel,
      tlsPath: true,
      proxyPids: () => [stunnel.pid],
      running: stunnel.running,
      output: stunnel.output,
    },
    {
      id: 'node-tls',
      label: 'Node TLS pipe (raw TLS splice)',
      family: 'baseline',
      port: pipePort,
      tlsPath: true,
      proxyPids: () => [pipe.pid],
      mem: new Instruments(pipe),
      running: pipe.running,
      output: pipe.output,
    },
    {
      id: 'popgate-http',
      label: 'popgate, auth_http, cache off (cold: every login calls the auth service)',
      family: 'popgate',
      port: pHttp,
      tlsPath: true,
      proxyPids: () => [gwHttp.pid],
      mem: new Instruments(gwHttp),
      running: gwHttp.running,
      output: gwHttp.output,
    },
    {
      id: 'popgate-http-warm',
      label: 'popgate, auth_http, cache on (warm: every login a cache hit)',
      family: 'popgate',
      port: pHttpWarm,
      tlsPath: true,
      proxyPids: () => [gwHttpWarm.pid],
      running: gwHttpWarm.running,
      output: gwHttpWarm.output,
    },
    {
      id: 'popgate-http-auto',
      label: 'popgate, auth_http, workers auto, cache on (warm)',
      family: 'popgate',
      port: pHttpAuto,
      tlsPath: true,
      // The primary and every worker it has at the moment of the reading.
      proxyPids: () => [gwHttpAuto.pid, ...childrenOf(gwHttpAuto.pid)],
      running: gwHttpAuto.running,
      output: gwHttpAuto.output,
    },
    {
      id: 'popgate-file',
      label: 'popgate, user file (ln=10) + master, cache off (cold: scrypt every login)',
      family: 'popgate',
      port: pFile,
      tlsPath: true,
      proxyPids: () => [gwFile.pid],
      mem: new Instruments(gwFile),
      running: gwFile.running,
      output: gwFile.output,
    },
    {
      id: 'popgate-file-warm',
      label: 'popgate, user file (ln=10) + master, cache on (warm)',
      family: 'popgate',
      port: pFileWarm,
      tlsPath: true,
      proxyPids: () => [gwFileWarm.pid],
      running: gwFileWarm.running,
      output: gwFileWarm.output,
    },
    ...nginxPaths,
  ];
  return {
    s,
    work,
    fast,
    fastPort,
    bigSize: input.fast.bigSize,
    smallSize: input.fast.smallSize,
    auth,
    authPort,
    worker,
    paths,
    ca,
    front,
    input,
    nofile,
    gateways,
    nginx,
    profDir,
  };
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

/** The client's view of a path to a backend. */
function target(rig: Rig, p: PathRt, backend: BackendId): WireTarget {
  const tls = p.tlsPath ? { tls: { ca: rig.ca, servername: 'localhost' } } : {};
  if (p.id === 'direct') {
    return backend === 'fast'
      ? { label: 'direct fast backend', host: HOST, port: rig.fastPort, user: 'fastuser', password: rig.input.fast.fastPassword }
      : { label: 'direct Dovecot', host: HOST, port: rig.input.dovecot.port, user: rig.input.dovecotUser.name, password: rig.input.dovecotUser.password };
  }
  if (p.family === 'baseline') {
    if (backend !== 'fast') throw new Error(`${p.id} only fronts the fast backend`);
    return { label: p.id, host: HOST, port: p.port, ...tls, user: 'fastuser', password: rig.input.fast.fastPassword };
  }
  return backend === 'fast'
    ? { label: `${p.id} -> fast backend`, host: HOST, port: p.port, ...tls, user: 'fastuser', password: rig.front.fast }
    : { label: `${p.id} -> Dovecot`, host: HOST, port: p.port, ...tls, user: rig.input.dovecotUser.name, password: rig.front.alice };
}

function meterSpec(rig: Rig, p: PathRt, backend: BackendId): MeterSpec {
  return {
    proxy: p.proxyPids(),
    auth: [rig.auth.pid],
    backend: backend === 'fast' ? [rig.fast.pid] : [],
    load: [rig.worker.pid],
  };
}

function checkAlive(rig: Rig): void {
  for (const p of rig.paths) {
    if (!p.running()) throw new Error(`${p.id} is no longer running:\n${p.output().slice(-4000)}`);
  }
  for (const c of [rig.fast, rig.auth, rig.worker.proc]) {
    if (!c.running()) throw new Error(`${c.name} is no longer running:\n${c.output().slice(-4000)}`);
  }
}

// ------------------------------------------------------------------ scenarios


async function verifyPaths(rig: Rig): Promise<Partial<Record<PathId, string>>> {
  const tlsSeen: Partial<Record<PathId, string>> = {};
  const want = `+OK 2 ${rig.bigSize + rig.smallSize}`;
  for (const p of rig.paths) {
    const r = await rig.worker.run<ProbeResult>({ kind: 'probe', target: target(rig, p, 'fast') });
    if (!r.stat.startsWith(want)) throw new Error(`${p.id}: STAT through it answered ${JSON.stringify(r.stat)}, expected ${want}`);
    if (r.tls) tlsSeen[p.id] = r.tls;
    if (p.family !== 'baseline' || p.id === 'direct') {
      const d = await rig.worker.run<ProbeResult>({ kind: 'probe', target: target(rig, p, 'dovecot') });
      if (!d.stat.startsWith('+OK')) throw new Error(`${p.id} -> Dovecot: STAT answered ${JSON.stringify(d.stat)}`);
    }
  }
  log(`compare: every path logs in (AUTH PLAIN) and STATs on the fast backend and, where it applies, on Dovecot`);
  for (const [id, t] of Object.entries(tlsSeen)) log(`compare:   ${id.padEnd(13)} ${t}`);
  return tlsSeen;
}

async function loginJob(rig: Rig, cell: LoginCell, p: PathRt, durationMs: number): Promise<LoginsResult> {
  const r = await rig.worker.run<LoginsResult>({
    kind: 'logins',
    target: target(rig, p, cell.backend),
    concurrency: cell.concurrency,
    durationMs,
    resume: cell.resume,
    meter: meterSpec(rig, p, cell.backend),
  });
  if (r.logins === 0 || r.failures > Math.max(5, r.logins * 0.01)) {
    checkAlive(rig);
    throw new Error(`${p.id} (${cell.backend}, c=${cell.concurrency}): ${r.logins} logins, ${r.failures} failures; first: ${r.firstError ?? '?'}`);
  }
  return r;
}

async function loginRun(rig: Rig, cell: LoginCell, p: PathRt, run: number): Promise<void> {
  const r = await loginJob(rig, cell, p, rig.s.loginSeconds * 1000);
  cell.runs.push(r);
  const cpu = (g: string): number => (r.meter.cpuMs[g] ?? 0) / r.logins;
  const rest = r.meter.machineBusyMs - Object.values(r.meter.cpuMs).reduce((a, b) => a + b, 0);
  log(
    `  [${cell.backend} c=${cell.concurrency}${cell.resume ? ' resumed' : ''} ${run}/${rig.s.runs}] ${p.id.padEnd(17)} ${f((r.logins * 1000) / r.elapsedMs).padStart(8)}/s ` +
      `p50 ${f(r.p50Ms, 2)} ms, CPU ms/login: proxy ${f(cpu('proxy'), 3)} auth ${f(cpu('auth'), 3)} backend ${f(cpu('backend'), 3)} load ${f(cpu('load'), 3)} rest ${f(rest / r.logins, 3)}` +
      (r.failures > 0 ? `, ${r.failures} failed (${r.firstError})` : '') +
      (cell.resume ? `, ${r.reused}/${r.logins} resumed` : ''),
  );
}

/**
 * Steady-state warm-up of one cell (untimed): windows of warmupWindowSeconds
 * until the proxy's CPU per login (the backend's for the direct path) of two
 * consecutive windows differs by at most warmupTolerance of the earlier one,
 * or by less than /proc's resolution (2 clock ticks ÷ the window's logins:
 * each window's figure is good to about a tick), at most warmupMaxWindows.
 */
async function warmUp(rig: Rig, cell: LoginCell, p: PathRt): Promise<WarmupRecord> {
  const { s } = rig;
  const metric: WarmupRecord['metric'] = p.proxyPids().length > 0 ? 'proxy' : 'backend';
  const tickMs = 1000 / clockTicksPerSecond();
  const perLoginMs: number[] = [];
  const logins: number[] = [];
  let steady = false;
  for (let w = 1; w <= s.warmupMaxWindows && !steady; w++) {
    const r = await loginJob(rig, cell, p, s.warmupWindowSeconds * 1000);
    const v = (r.meter.cpuMs[metric] ?? 0) / r.logins;
    if (perLoginMs.length > 0) {
      const prev = perLoginMs[perLoginMs.length - 1]!;
      const noise = (2 * tickMs) / Math.min(r.logins, logins[logins.length - 1]!);
      steady = Math.abs(v - prev) <= Math.max(s.warmupTolerance * prev, noise);
    }
    perLoginMs.push(v);
    logins.push(r.logins);
  }
  const rec: WarmupRecord = { windows: perLoginMs.length, steady, metric, perLoginMs, logins };
  log(
    `  [warm-up ${cell.backend} c=${cell.concurrency}${cell.resume ? ' resumed' : ''}] ${p.id.padEnd(17)} ${metric} CPU ms/login per window: ${perLoginMs.map((v) => f(v, 3)).join(' -> ')}` +
      ` (${logins.join('/')} logins): ${steady ? `steady after ${rec.windows}` : `NOT steady after ${rec.windows}`}`,
  );
  return rec;
}

async function loginScenario(rig: Rig, cells: LoginCell[], backend: BackendId, concurrencies: readonly number[], pathIds: PathId[], resume: boolean): Promise<void> {
  const { s } = rig;
  for (const c of concurrencies) {
    const group: Array<{ cell: LoginCell; p: PathRt }> = [];
    for (const id of pathIds) {
      if (EXTRA_ROWS.includes(id) && c < s.extraRowsMinConcurrency) continue;
      const p = rig.paths.find((x) => x.id === id)!;
      const cell: LoginCell = { path: id, backend, concurrency: c, resume, runs: [] };
      cells.push(cell);
      group.push({ cell, p });
    }
    log(
      `compare: logins via implicit TLS, ${backend} backend, concurrency ${c}${resume ? ', TLS session resumption' : ', a new TLS session each'}: ` +
        `warm-up (windows of ${s.warmupWindowSeconds} s until steady within ${f(s.warmupTolerance * 100, 0)} %, at most ${s.warmupMaxWindows}), then ${s.runs} runs of ${s.loginSeconds} s`,
    );
    for (const { cell, p } of group) cell.warmup = await warmUp(rig, cell, p);
    for (let run = 1; run <= s.runs; run++) {
      for (const { cell, p } of group) await loginRun(rig, cell, p, run);
    }
    checkAlive(rig);
  }
}

async function relayScenario(rig: Rig): Promise<Array<{ path: PathId; runs: RetrResult[] }>> {
  const { s } = rig;
  const cells = rig.paths.filter((p) => RELAY_STAT_PATHS.includes(p.id)).map((p) => ({ path: p.id, p, runs: [] as RetrResult[] }));
  log(`compare: relay: ${s.retrs} x RETR of the ${f(rig.bigSize / 1e6)} MB message per session, warm-up then ${s.runs} runs per path`);
  for (const c of cells) await rig.worker.run<RetrResult>({ kind: 'retr', target: target(rig, c.p, 'fast'), msg: 1, times: 1, meter: meterSpec(rig, c.p, 'fast') });
  for (let run = 1; run <= s.runs; run++) {
    for (const c of cells) {
      const r = await rig.worker.run<RetrResult>({ kind: 'retr', target: target(rig, c.p, 'fast'), msg: 1, times: s.retrs, meter: meterSpec(rig, c.p, 'fast') });
      if (r.listSize !== rig.bigSize || r.bodyBytes.some((b) => b !== rig.bigSize)) {
        throw new Error(`${c.path}: RETR: LIST said ${r.listSize}, received ${r.bodyBytes.join(', ')}, expected ${rig.bigSize}`);
      }
      c.runs.push(r);
      const bytes = rig.bigSize * s.retrs;
      const gb = bytes / 1e9;
      log(
        `  [relay ${run}/${s.runs}] ${c.path.padEnd(13)} ${f(bytes / 1e6 / (r.ms / 1000)).padStart(7)} MB/s, CPU s/GB: proxy ${f((r.meter.cpuMs['proxy'] ?? 0) / 1000 / gb, 2)} ` +
          `backend ${f((r.meter.cpuMs['backend'] ?? 0) / 1000 / gb, 2)} load ${f((r.meter.cpuMs['load'] ?? 0) / 1000 / gb, 2)}`,
      );
    }
  }
  checkAlive(rig);
  return cells.map(({ path: id, runs }) => ({ path: id, runs }));
}

async function statScenario(rig: Rig): Promise<Array<{ path: PathId; runs: StatResult[] }>> {
  const { s } = rig;
  const cells = rig.paths.filter((p) => RELAY_STAT_PATHS.includes(p.id)).map((p) => ({ path: p.id, p, runs: [] as StatResult[] }));
  log(`compare: STAT latency: ${s.statSamples} sequential STATs per run on one logged-in session, ${s.runs} runs per path`);
  for (let run = 1; run <= s.runs; run++) {
    for (const c of cells) {
      const r = await rig.worker.run<StatResult>({ kind: 'stat', target: target(rig, c.p, 'fast'), samples: s.statSamples, warmup: 200, meter: meterSpec(rig, c.p, 'fast') });
      c.runs.push(r);
      log(`  [STAT ${run}/${s.runs}] ${c.path.padEnd(13)} p50 ${f(r.p50Ms * 1000, 0).padStart(5)} µs, p99 ${f(r.p99Ms * 1000, 0).padStart(6)} µs, max ${f(r.maxMs, 2)} ms`);
    }
  }
  checkAlive(rig);
  return cells.map(({ path: id, runs }) => ({ path: id, runs }));
}

async function idleScenario(rig: Rig): Promise<IdleCell[]> {
  const { s } = rig;
  const out: IdleCell[] = [];
  if (s.idleSessions === 0) return out;
  const ids: PathId[] = ['node-tls', 'popgate-http', 'popgate-file', 'nginx-1', 'nginx-auto'];
  log(`compare: ${s.idleSessions} idle authenticated TLS sessions through each proxy (opened ${s.idleConcurrency} at a time), one proxy at a time`);
  for (const id of ids) {
    const p = rig.paths.find((x) => x.id === id)!;
    await sleep(1_000);
    const rss = (): number => p.proxyPids().reduce((a, pid) => a + rssKiB(pid), 0);
    const fds = (): number => p.proxyPids().reduce((a, pid) => a + fdCount(pid), 0);
    const memBefore = p.mem ? await p.mem.mem() : undefined;
    const rssBefore = rss();
    const fdBefore = fds();
    const open = await rig.worker.run<IdleOpenResult>({ kind: 'idle-open', target: target(rig, p, 'fast'), n: s.idleSessions, concurrency: s.idleConcurrency });
    await sleep(1_500);
    const memAfter = p.mem ? await p.mem.mem() : undefined;
    const rssAfter = rss();
    const fdAfter = fds();
    const check = await rig.worker.run<IdleCheckResult>({ kind: 'idle-check', sample: 200 });
    await rig.worker.run<{ closed: number }>({ kind: 'idle-close' });
    const cell: IdleCell = {
      path: id,
      n: open.opened,
      openMs: open.ms,
      rssBeforeKiB: rssBefore,
      rssAfterKiB: rssAfter,
      heapBefore: memBefore?.heapUsed,
      heapAfter: memAfter?.heapUsed,
      externalBefore: memBefore ? memBefore.external : undefined,
      externalAfter: memAfter ? memAfter.external : undefined,
      fdBefore,
      fdAfter,
      checked: check.checked,
      broken: check.broken,
      workerRssKiB: open.workerRssKiB,
    };
    out.push(cell);
    const per = ((rssAfter - rssBefore) * 1024) / open.opened / 1024;
    log(
      `  [idle] ${id.padEnd(13)} ${open.opened} sessions in ${f(open.ms / 1000, 1)} s; RSS ${f(rssBefore / 1024, 0)} -> ${f(rssAfter / 1024, 0)} MiB = ${f(per, 1)} KiB/session` +
        (memBefore && memAfter ? `; heap ${f((memAfter.heapUsed - memBefore.heapUsed) / open.opened / 1024, 1)} KiB/session, external ${f((memAfter.external - memBefore.external) / open.opened / 1024, 1)} KiB/session` : '') +
        `; fds ${fdBefore} -> ${fdAfter}; NOOP ok on ${check.checked} sampled, ${check.broken} broken`,
    );
    if (check.broken > 0) throw new Error(`${id}: ${check.broken} of ${open.opened} idle sessions were closed by the proxy`);
    // Let the proxy see the closes before the next one starts.
    for (let i = 0; i < 50 && fds() > fdBefore + 16; i++) await sleep(200);
  }
  checkAlive(rig);
  return out;
}

// ------------------------------------------------------------------ machine

function machineInfo(): MachineInfo {
  return {
    ...baseMachineInfo(),
    nodeOpenssl: process.versions.openssl ?? 'unknown',
    nginx: versionOf(NGINX_BIN, ['-v'], /nginx version: nginx\/(\S+)/),
    nginxOpenssl: versionOf(NGINX_BIN, ['-V'], /built with OpenSSL (\S+)/),
    stunnel: versionOf(STUNNEL_BIN, ['-version'], /stunnel (\d\S*) on/),
    stunnelOpenssl: versionOf(STUNNEL_BIN, ['-version'], /Running\s+with OpenSSL (\S+)/),
    dovecot: versionOf('/usr/sbin/dovecot', ['--version'], /^(\S+)/),
    clockTicks: clockTicksPerSecond(),
  };
}

// ------------------------------------------------------------------ main

export async function runCompare(input: CompareInput): Promise<CompareResults> {
  const s = { ...input.settings };
  const startedAt = new Date();
  const t0 = performance.now();
  const notes: string[] = [];
  process.setMaxListeners(Math.max(process.getMaxListeners(), 64)); // one exit hook per child
  const nofile = raiseNofile();
  notes.push(nofile.note);
  // Each idle session holds two descriptors in a one-process proxy (client + backend).
  const maxIdle = Math.floor((nofile.limit - 512) / 2);
  if (s.idleSessions > maxIdle) {
    notes.push(`idle sessions: ${s.idleSessions} asked for, ${maxIdle} opened: a one-process proxy needs two descriptors per session and RLIMIT_NOFILE is ${nofile.limit}`);
    log(`compare: WARNING: RLIMIT_NOFILE ${nofile.limit} allows ${maxIdle} idle sessions through a one-process proxy, not ${s.idleSessions}`);
    s.idleSessions = maxIdle;
  }
  const machine = machineInfo();
  log(`compare: nginx ${machine.nginx} (OpenSSL ${machine.nginxOpenssl}), stunnel ${machine.stunnel}, node ${machine.node} (OpenSSL ${machine.nodeOpenssl})`);
  log(
    `compare: ${s.runs} runs, ${s.loginSeconds} s per login run (after a warm-up of ${s.warmupWindowSeconds} s windows until steady), concurrencies ${s.concurrencies.join('/')} (Dovecot ${s.dovecotConcurrencies.join('/')}), ` +
      `${s.retrs} x ${f(s.bigBytes / 1e6, 0)} MB RETR, ${s.statSamples} STATs, ${s.idleSessions} idle sessions`,
  );
  const busyBefore = await machineBusyPct(2_000);
  log(`compare: machine CPU busy before starting: ${f(busyBefore, 0)} % of one core${busyBefore > 25 ? ' -- WARNING: other processes are busy, figures will be disturbed' : ''}`);

  const rig = await setUp(input, s, nofile.limit);
  try {
    let mark = performance.now();
    const phase = (name: string): void => {
      const now = performance.now();
      log(`compare: ${name} took ${f((now - mark) / 1000, 0)} s (${f((now - t0) / 1000, 0)} s so far)`);
      mark = now;
    };
    const tlsSeen = await verifyPaths(rig);
    const logins: LoginCell[] = [];
    const allTls: PathId[] = ['stunnel', 'node-tls', 'popgate-http', 'popgate-file', 'nginx-1', 'nginx-auto'];
    const proxies: PathId[] = ['popgate-http', 'popgate-file', 'nginx-1', 'nginx-auto'];
    // The cache and workers rows (EXTRA_ROWS) only at concurrencies >= extraRowsMinConcurrency.
    const fastRows: PathId[] = ['direct', 'stunnel', 'node-tls', 'popgate-http', 'popgate-http-warm', 'popgate-http-auto', 'popgate-file', 'popgate-file-warm', 'nginx-1', 'nginx-auto', 'nginx-1-nt'];
    await loginScenario(rig, logins, 'fast', s.concurrencies, fastRows, false);
    if (s.resumeConcurrency > 0) await loginScenario(rig, logins, 'fast', [s.resumeConcurrency], allTls, true);
    phase('logins on the fast backend');
    await loginScenario(rig, logins, 'dovecot', s.dovecotConcurrencies, ['direct', ...proxies], false);
    phase('logins on Dovecot');
    const relay = await relayScenario(rig);
    phase('relay');
    const stat = await statScenario(rig);
    phase('STAT latency');
    const idle = await idleScenario(rig);
    phase('idle sessions');

    for (const gw of rig.gateways) {
      const out = gw.output().trim();
      if (out) notes.push(`popgate (pid ${gw.pid}) wrote at warn level or above: ${out.slice(-1500)}`);
    }
    for (const n of rig.nginx) {
      const err = safeRead(n.errorLog).trim();
      if (err) notes.push(`${n.name} error_log (warn): ${err.slice(-1500)}`);
    }
    if (rig.profDir) {
      for (const gw of rig.gateways) await gw.stop();
      notes.push(`popgate ran with --cpu-prof; profiles in ${rig.profDir} (kept)`);
    }

    // Kerberos is measured once per run (bench/kerberos.ts, against the same in-memory backend): cited here.
    const kerberos: CompareResults['kerberos'] = input.kerberos ? { source: 'cited', results: input.kerberos, backend: 'fast in-memory backend' } : { source: 'skipped' };

    const results: CompareResults = {
      startedAt,
      totalSeconds: (performance.now() - t0) / 1000,
      settings: s,
      machine,
      busyBefore,
      paths: rig.paths.map(({ id, label, family }) => ({ id, label, family })),
      tlsSeen,
      bigSize: rig.bigSize,
      logins,
      relay,
      stat,
      idle,
      kerberos,
      notes,
      nofile: rig.nofile,
    };
    const md = renderMarkdown(results);
    const svg = renderSvg(results);
    // compare.json: every run's raw figures (to re-check, or re-render with bench/compare/render.ts); generated, not in git.
    const written = await writeResults(s.quick, [
      ['compare.md', md],
      ['compare-logins.svg', svg],
      ['compare.json', `${JSON.stringify(results, null, 1)}\n`],
    ]);
    log('');
    log(md);
    log(`compare: wrote ${written.join(', ')}; comparison took ${f((performance.now() - t0) / 1000, 0)} s`);
    return results;
  } catch (err) {
    if (!input.cleanup.started) {
      for (const p of rig.paths) {
        if (p.id === 'direct') continue;
        const out = p.output().trim();
        if (out) process.stderr.write(`compare: ${p.id}${p.running() ? '' : ' (NOT RUNNING)'} output (tail):\n${out.slice(-3000)}\n`);
      }
      for (const c of [rig.fast, rig.auth, rig.worker.proc]) {
        const out = c.output().trim();
        if (out || !c.running()) process.stderr.write(`compare: ${c.name}${c.running() ? '' : ' (NOT RUNNING)'} output (tail):\n${out.slice(-3000)}\n`);
      }
    }
    throw err;
  }
}
