/**
 * backend.pipelining, off against auto: two popgates alike but for that key
 * (auth_http, warm credentials cache, passthrough login: the auth service
 * names `USER fastuser*<master>` + the master password, as in the
 * comparison's popgate-http-warm row) in front of the in-memory backend,
 * which lists PIPELINING. Full TLS logins (connect, TLS, USER/PASS, STAT,
 * QUIT) at concurrency c; runs of the two alternate (off, auto, then auto,
 * off, ...) so drift and other load hit both alike. No root, nothing installed:
 *
 *   npx tsc -p tsconfig.build.json && npx tsc -p bench/tsconfig.json
 *   node dist-bench/bench/pipelining.js [runs=5] [seconds=5] [concurrency=32]
 *
 * Prints, per run and as medians (min–max): logins/s and CPU ms per login of
 * popgate, the auth service, the backend and the load generator (/proc).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeTempTestPki } from '../test/helpers/certs.js';
import { freePort } from '../test/helpers/ports.js';
import { LoadWorker } from './compare/children.js';
import type { LoginsResult, ProbeResult, WireTarget } from './compare/load-worker.js';
import { GATEWAY_MAIN, HOST, log, runBenchMain, spawnGateway, startNodeChild, waitForGreeting, waitReady, type Cleanup } from './lib/process.js';
import { f, median } from './lib/stats.js';

type Mode = 'off' | 'auto';

async function main(cleanup: Cleanup): Promise<void> {
  const [runs = 5, seconds = 5, concurrency = 32] = process.argv.slice(2).map(Number);
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} missing: npx tsc -p tsconfig.build.json first`);
  const work = await mkdtemp(path.join(os.tmpdir(), 'popgate-pipelining-'));
  cleanup.add('remove work dir', () => rm(work, { recursive: true, force: true }));
  const pki = await makeTempTestPki('popgate-pipelining-pki-');
  cleanup.add('remove PKI', () => rm(pki.dir, { recursive: true, force: true }));

  const master = { name: 'popgate', password: `m-${randomBytes(8).toString('hex')}` };
  const backendPassword = `b-${randomBytes(8).toString('hex')}`;
  const front = `f-${randomBytes(8).toString('hex')}`;
  const backend = startNodeChild('fast backend', 'lib/backend-child.js', [
    JSON.stringify({ users: { fastuser: backendPassword }, masterUser: master.name, masterPassword: master.password, bigBytes: 100_000 }),
  ]);
  cleanup.add('stop fast backend', () => backend.stop());
  const backendPort = Number((await waitReady(backend))[0]);

  const users = { fastuser: { password: front, server: HOST, port: backendPort, backendUser: `fastuser*${master.name}`, backendPass: master.password } };
  const auth = startNodeChild('auth service', 'compare/auth-service.js', [JSON.stringify({ users })]);
  cleanup.add('stop auth service', () => auth.stop());
  const authPort = Number((await waitReady(auth))[0]);

  const ca = readFileSync(pki.caFile, 'latin1');
  const q = JSON.stringify;
  const gateways = new Map<Mode, { pid: number; target: WireTarget }>();
  for (const mode of ['off', 'auto'] as const) {
    const port = await freePort(HOST);
    const file = path.join(work, `popgate-${mode}.yaml`);
    await writeFile(
      file,
      `log: { level: warn }
listeners:
  - { name: pipelining-${mode}, kind: pop3s, address: ${HOST}, port: ${port},
      tls: { certFile: ${q(pki.certFile)}, keyFile: ${q(pki.keyFile)} } }
auth:
  verifiers: [http]
  http: { url: ${q(`http://${HOST}:${authPort}/auth`)} }
  failureDelay: 0s
backend:
  host: ${HOST}
  port: ${backendPort}
  xclient: false
  pipelining: ${mode}
  login: { mode: passthrough }
limits: { maxConnections: 40000, maxConnectionsPerIp: 40000 }
shutdown: { drainTimeout: 1s }
`,
      { mode: 0o600 },
    );
    const gw = spawnGateway(file);
    cleanup.add(`stop popgate ${mode}`, () => gw.stop());
    const target: WireTarget = { label: `pipelining ${mode}`, host: HOST, port, tls: { ca, servername: 'localhost' }, user: 'fastuser', password: front };
    await waitForGreeting(target, gw, 15_000);
    gateways.set(mode, { pid: gw.pid, target });
    log(`pipelining: popgate (backend.pipelining: ${mode}) pid ${gw.pid} on ${HOST}:${port}`);
  }

  const worker = LoadWorker.start();
  cleanup.add('stop load worker', () => worker.proc.stop());
  const job = async (mode: Mode, ms: number): Promise<LoginsResult> => {
    const gw = gateways.get(mode)!;
    const r = await worker.run<LoginsResult>({
      kind: 'logins',
      target: gw.target,
      concurrency,
      durationMs: ms,
      resume: false,
      meter: { proxy: [gw.pid], auth: [auth.pid], backend: [backend.pid], load: [worker.pid] },
    });
    if (r.logins === 0 || r.failures > 0) throw new Error(`${mode}: ${r.logins} logins, ${r.failures} failures; first: ${r.firstError ?? '?'}`);
    return r;
  };
  for (const mode of ['off', 'auto'] as const) {
    const p = await worker.run<ProbeResult>({ kind: 'probe', target: gateways.get(mode)!.target });
    if (!p.stat.startsWith('+OK 2 ')) throw new Error(`${mode}: STAT answered ${p.stat}`);
  }
  // Untimed warm-up (JIT, the credentials cache, the capability memory), alternating.
  for (let w = 0; w < 3; w++) for (const mode of ['off', 'auto'] as const) await job(mode, 2_000);

  const rows: Record<Mode, LoginsResult[]> = { off: [], auto: [] };
  const perLogin = (r: LoginsResult, g: string): number => (r.meter.cpuMs[g] ?? 0) / r.logins;
  for (let run = 1; run <= runs; run++) {
    for (const mode of run % 2 === 1 ? (['off', 'auto'] as const) : (['auto', 'off'] as const)) {
      const r = await job(mode, seconds * 1000);
      rows[mode].push(r);
      log(
        `  [${run}/${runs}] ${mode.padEnd(4)} ${f((r.logins * 1000) / r.elapsedMs).padStart(7)} logins/s, p50 ${f(r.p50Ms, 2)} ms, ` +
          `CPU ms/login: popgate ${f(perLogin(r, 'proxy'), 3)} auth ${f(perLogin(r, 'auth'), 3)} backend ${f(perLogin(r, 'backend'), 3)} load ${f(perLogin(r, 'load'), 3)}`,
      );
    }
  }
  const span = (v: number[], d: number): string => `${f(median(v), d)} (${f(Math.min(...v), d)}–${f(Math.max(...v), d)})`;
  log(`\nbackend.pipelining, c=${concurrency}, ${runs} runs × ${seconds} s each, medians (min–max):`);
  log('| pipelining | logins/s | popgate CPU ms/login | backend CPU ms/login | p50 ms |');
  log('|---|--:|--:|--:|--:|');
  for (const mode of ['off', 'auto'] as const) {
    const rs = rows[mode];
    log(
      `| ${mode} | ${span(rs.map((r) => (r.logins * 1000) / r.elapsedMs), 0)} | ${span(rs.map((r) => perLogin(r, 'proxy')), 3)} | ` +
        `${span(rs.map((r) => perLogin(r, 'backend')), 3)} | ${span(rs.map((r) => r.p50Ms), 2)} |`,
    );
  }
}

await runBenchMain('pipelining', main);
