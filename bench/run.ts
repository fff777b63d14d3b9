/**
 * popgate benchmark (`npm run bench`, not part of the test suite; method and
 * figures: bench/README.md). Settings: bench/lib/settings.ts (BENCH_PARTS,
 * BENCH_RUNS, BENCH_QUICK, BENCH_SETTINGS).
 *
 * In one process tree on 127.0.0.1: a private Dovecot (test/helpers/dovecot.ts)
 * with a master user, the in-memory backend (bench/lib/backend-child.ts) and
 * popgate children. Parts, each run only when in BENCH_PARTS:
 *
 *  main      popgate against direct Dovecot access: RETR throughput of a ~5 MB
 *            message, full logins/s at a few concurrencies, popgate's CPU per
 *            login and per GB -> bench/results/latest.md (with the next part).
 *  kerberos  KPOP/GSSAPI (bench/kerberos.ts), against the in-memory backend:
 *            measured once, shown in latest.md and cited in compare.md.
 *  compare   side by side with nginx's mail proxy (bench/compare/) ->
 *            bench/results/compare.md + compare-logins.svg (+ compare.json, not in git).
 *
 * Every process started here is stopped by PID on success, failure, SIGINT and SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { hashPassword, SCRYPT_DEFAULT_LOG_N } from '../src/auth/password-hash.js';
import type { TestPki } from '../test/helpers/certs.js';
import type { DovecotInstance } from '../test/helpers/dovecot.js';
import { runCompare, type FastBackend } from './compare/compare.js';
import { kerberosReport, kerberosSetupLines, runKerberosBench, type KerberosResults } from './kerberos.js';
import { runLoad } from './lib/load.js';
import { bigMessage, SMALL_MESSAGE } from './lib/messages.js';
import {
  type Cleanup,
  HOST,
  baseMachineInfo,
  log,
  runBenchMain,
  sleep,
  startDovecotGateway,
  startPkiAndDovecot,
  writeResults,
  startNodeChild,
  versionOf,
  waitReady,
  type GatewayChild,
} from './lib/process.js';
import { CpuMeter, clockTicksPerSecond, machineBusyPct } from './lib/procfs.js';
import { loadSettings, settingsLine, type BenchSettings } from './lib/settings.js';
import { f, median, range, summarize } from './lib/stats.js';
import { Pop3Conn, Pop3Error, loginOnce, retrSession, type Pop3Target } from './lib/wire.js';

// ------------------------------------------------------------------ settings

const CHEAP_LOG_N = 10;

const SETTINGS: BenchSettings = loadSettings();
const RUNS = SETTINGS.runs;
const { loginSeconds: LOGIN_SECONDS, concurrencies: CONCURRENCIES, streamRetrs: STREAM_RETRS } = SETTINGS.main;

// ------------------------------------------------------------------ machine info

interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  dovecot: string;
  popgate: string;
  clockTicks: number;
}

const dovecotVersion = (): string => versionOf('/usr/sbin/dovecot', ['--version'], /^(.+)$/m);

function machineInfo(): MachineInfo {
  return {
    ...baseMachineInfo(),
    dovecot: dovecotVersion(),
    clockTicks: clockTicksPerSecond(),
  };
}

// ------------------------------------------------------------------ scenarios

type Via = 'direct' | 'popgate';

interface RetrRun {
  readonly mbPerSec: number;
  readonly ms: number;
  readonly bytes: number;
  /** popgate CPU from the first RETR sent to the last terminating dot (popgate paths only). */
  readonly cpuMs: number | undefined;
}

interface RetrScenario {
  readonly name: string;
  readonly via: Via;
  readonly target: Pop3Target;
  /** One RETR per session: the headline throughput. */
  readonly single: RetrRun[];
  /** STREAM_RETRS back-to-back RETRs per session: sustained throughput and CPU per GB. */
  readonly stream: RetrRun[];
}

interface LoginRun {
  readonly perSecond: number;
  readonly logins: number;
  readonly elapsedMs: number;
  readonly p50Ms: number;
  readonly cpuMs: number | undefined;
}

interface LoginScenario {
  readonly name: string;
  readonly via: Via;
  readonly concurrency: number;
  readonly target: Pop3Target;
  readonly runs: LoginRun[];
}

/** Dovecot and the test PKI: shared by the main part and the Kerberos part. */
interface Backend {
  readonly dovecot: DovecotInstance;
  readonly pki: TestPki;
  readonly ca: Buffer;
  readonly master: { readonly name: string; readonly password: string };
  readonly backendUsers: ReadonlyArray<{ readonly name: string; readonly password: string }>;
  readonly bigSize: number;
  readonly smallSize: number;
}

interface Setup {
  readonly dovecot: DovecotInstance;
  readonly gateway: GatewayChild;
  readonly bigSize: number;
  readonly smallSize: number;
  readonly targets: {
    readonly direct: Pop3Target;
    readonly popPlainCheap: Pop3Target;
    readonly popTlsCheap: Pop3Target;
    readonly popTlsDefault: Pop3Target;
  };
}

async function startBackend(cleanup: Cleanup): Promise<Backend> {
  const big = bigMessage(SETTINGS.main.bigBytes);
  log(`bench: starting private Dovecot (message 1: ${big.length} bytes, message 2: ${SMALL_MESSAGE.length} bytes)`);
  const r = await startPkiAndDovecot(cleanup, 'bench', { alice: [big, SMALL_MESSAGE], fastuser: [big, SMALL_MESSAGE] });
  return { ...r, backendUsers: r.users, bigSize: big.length, smallSize: SMALL_MESSAGE.length };
}

async function setUp(cleanup: Cleanup, b: Backend): Promise<Setup> {
  const { dovecot, pki, ca, master, backendUsers } = b;
  const frontUsers = {
    alice: `front-alice-${randomBytes(8).toString('hex')}`,
    fastuser: `front-fast-${randomBytes(8).toString('hex')}`,
  };
  const t0 = performance.now();
  const userLines = [
    `alice:${await hashPassword(frontUsers.alice)}`,
    `fastuser:${await hashPassword(frontUsers.fastuser, { scryptLogN: CHEAP_LOG_N })}`,
  ];
  log(`bench: hashed user file in ${(performance.now() - t0).toFixed(0)} ms`);
  const { gateway, tlsPort, plainPort, tlsOpts } = await startDovecotGateway(cleanup, {
    name: 'bench',
    userLines,
    pki,
    ca,
    dovecotPort: dovecot.port,
    master,
    auth: 'failureDelay: 0s',
  });
  log(`bench: popgate pid ${gateway.pid}: pop3s ${HOST}:${tlsPort}, pop3 (plaintext auth) ${HOST}:${plainPort}`);

  const fastBackend = backendUsers[1]!;
  return {
    dovecot,
    gateway,
    bigSize: b.bigSize,
    smallSize: b.smallSize,
    targets: {
      direct: { label: 'direct Dovecot (plain)', host: HOST, port: dovecot.port, user: fastBackend.name, password: fastBackend.password },
      popPlainCheap: { label: 'popgate pop3 (plain), fastuser', host: HOST, port: plainPort, user: 'fastuser', password: frontUsers.fastuser },
      popTlsCheap: {
        label: 'popgate pop3s, fastuser',
        host: HOST,
        port: tlsPort,
        tls: tlsOpts,
        user: 'fastuser',
        password: frontUsers.fastuser,
      },
      popTlsDefault: {
        label: 'popgate pop3s, alice (default scrypt)',
        host: HOST,
        port: tlsPort,
        tls: tlsOpts,
        user: 'alice',
        password: frontUsers.alice,
      },
    },
  };
}

/** One session per target: login works and the mailbox holds exactly the two messages. Returns the TLS parameters seen. */
async function checkTargets(s: Setup): Promise<string | undefined> {
  let tlsSeen: string | undefined;
  for (const t of Object.values(s.targets)) {
    const c = await Pop3Conn.connect(t);
    try {
      await c.login(t.user, t.password);
      const st = await c.stat();
      if (st.count !== 2 || st.octets !== s.bigSize + s.smallSize) {
        throw new Pop3Error(t.label, 'STAT', `expected 2 messages / ${s.bigSize + s.smallSize} octets, got ${st.count} / ${st.octets}`);
      }
      tlsSeen ??= c.tlsSummary();
      await c.quit();
    } catch (err) {
      c.destroy();
      throw err;
    }
  }
  return tlsSeen;
}

async function runRetr(s: Setup, sc: RetrScenario, run: number, times: number): Promise<void> {
  const meter = sc.via === 'popgate' ? new CpuMeter(s.gateway.pid) : undefined;
  let cpuMs: number | undefined;
  const r = await retrSession(sc.target, 1, times, {
    beforeRetr: () => meter?.start(),
    afterRetr: () => {
      if (meter) cpuMs = meter.stop();
    },
  });
  if (r.listSize !== s.bigSize || r.bodyBytes.some((b) => b !== s.bigSize)) {
    throw new Pop3Error(
      sc.target.label,
      'RETR',
      `expected ${s.bigSize} bytes, LIST said ${r.listSize}, received ${r.bodyBytes.join(', ')}`,
    );
  }
  const bytes = s.bigSize * times;
  const mbPerSec = bytes / 1e6 / (r.ms / 1000);
  (times === 1 ? sc.single : sc.stream).push({ mbPerSec, ms: r.ms, bytes, cpuMs });
  const what = times === 1 ? 'RETR' : `${times}xRETR`;
  log(
    `  [${what} ${run}/${RUNS}] ${sc.name.padEnd(24)} ${mbPerSec.toFixed(1).padStart(7)} MB/s (${r.ms.toFixed(1)} ms)` +
      (cpuMs !== undefined && times > 1 ? `, popgate CPU ${cpuMs.toFixed(0)} ms = ${(cpuMs / 1000 / (bytes / 1e9)).toFixed(2)} s/GB` : ''),
  );
}

async function runLogins(s: Setup, sc: LoginScenario, run: number): Promise<void> {
  const meter = sc.via === 'popgate' ? new CpuMeter(s.gateway.pid) : undefined;
  meter?.start();
  const r = await runLoad({ concurrency: sc.concurrency, durationMs: LOGIN_SECONDS * 1000 }, () => loginOnce(sc.target));
  const cpuMs = meter?.stop();
  if (r.ops === 0) throw new Pop3Error(sc.target.label, 'load', 'no login completed');
  const p50Ms = median(r.latenciesMs);
  sc.runs.push({ perSecond: r.perSecond, logins: r.ops, elapsedMs: r.elapsedMs, p50Ms, cpuMs });
  log(
    `  [logins c=${sc.concurrency} ${run}/${RUNS}] ${sc.name.padEnd(34)} ${r.perSecond.toFixed(1).padStart(7)}/s ` +
      `(${r.ops} in ${(r.elapsedMs / 1000).toFixed(2)} s, p50 ${p50Ms.toFixed(1)} ms)` +
      (cpuMs !== undefined ? `, popgate CPU ${(cpuMs / r.ops).toFixed(2)} ms/login` : ''),
  );
}

// ------------------------------------------------------------------ report


function retrTable(scenarios: RetrScenario[]): string {
  const direct = scenarios.find((x) => x.via === 'direct');
  if (!direct) throw new Error('no direct RETR scenario');
  const baseSingle = summarize(direct.single.map((r) => r.mbPerSec));
  const baseStream = summarize(direct.stream.map((r) => r.mbPerSec));
  const rows = [
    `| Path | 1 RETR/session: MB/s (median, min–max) | popgate / direct | ${STREAM_RETRS} RETRs/session: MB/s (median, min–max) | popgate / direct | popgate CPU s per GB relayed (median, min–max) |`,
    '|---|--:|--:|--:|--:|--:|',
  ];
  for (const sc of scenarios) {
    const single = summarize(sc.single.map((r) => r.mbPerSec));
    const stream = summarize(sc.stream.map((r) => r.mbPerSec));
    let cpu = '—';
    if (sc.via === 'popgate') {
      const perGb = summarize(sc.stream.map((r) => (r.cpuMs ?? 0) / 1000 / (r.bytes / 1e9)));
      cpu = `${f(perGb.median, 2)} (${range(perGb, 2)})`;
    }
    const direct = sc.via === 'direct';
    rows.push(
      `| ${sc.name} | ${f(single.median)} (${range(single)}) | ${direct ? '(baseline)' : f(single.median / baseSingle.median, 2)} | ` +
        `${f(stream.median)} (${range(stream)}) | ${direct ? '(baseline)' : f(stream.median / baseStream.median, 2)} | ${cpu} |`,
    );
  }
  return rows.join('\n');
}

function loginTable(scenarios: LoginScenario[]): string {
  const rows = [
    '| popgate path, user (hash) | Conc. | popgate logins/s (median, min–max) | direct logins/s (median, min–max) | popgate / direct | p50 login ms popgate / direct | popgate CPU ms per login | popgate CPU (% of one core) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of CONCURRENCIES) {
    const direct = scenarios.find((x) => x.via === 'direct' && x.concurrency === c);
    if (!direct) throw new Error(`no direct login scenario at concurrency ${c}`);
    const d = summarize(direct.runs.map((r) => r.perSecond));
    const dP50 = median(direct.runs.map((r) => r.p50Ms));
    for (const sc of scenarios.filter((x) => x.via === 'popgate' && x.concurrency === c)) {
      const p = summarize(sc.runs.map((r) => r.perSecond));
      const p50 = median(sc.runs.map((r) => r.p50Ms));
      const cpuPerLogin = median(sc.runs.map((r) => (r.cpuMs ?? 0) / r.logins));
      const cpuPct = median(sc.runs.map((r) => ((r.cpuMs ?? 0) / r.elapsedMs) * 100));
      rows.push(
        `| ${sc.name} | ${c} | ${f(p.median)} (${range(p)}) | ${f(d.median)} (${range(d)}) | ${f(p.median / d.median, 2)} | ` +
          `${f(p50)} / ${f(dP50)} | ${f(cpuPerLogin, 2)} | ${f(cpuPct, 0)} % |`,
      );
    }
  }
  return rows.join('\n');
}

interface MainPart {
  readonly s: Setup;
  readonly retr: RetrScenario[];
  readonly logins: LoginScenario[];
  readonly tlsSeen: string | undefined;
}

function mainSections(p: MainPart): string {
  const { s, retr, logins } = p;
  return `## RETR throughput (one ${(s.bigSize / 1e6).toFixed(2)} MB message, timed from \`RETR\` sent to the terminating dot)

A session logs in, RETRs message 1 and QUITs; only the RETR is timed. The ${STREAM_RETRS}-RETR column times
${STREAM_RETRS} back-to-back RETRs of the same message in one session (${((s.bigSize * STREAM_RETRS) / 1e6).toFixed(0)} MB),
which is also where popgate's CPU per GB is measured (a single RETR is only a few 10 ms clock ticks).

${retrTable(retr)}

## Full logins (connect, [TLS handshake], USER/PASS, STAT, QUIT), ${LOGIN_SECONDS} s per run

Direct = plain USER/PASS straight to Dovecot as \`fastuser\` (Dovecot's own \`{PLAIN}\` passdb, no TLS).
popgate = client login checked by popgate (scrypt), then AUTH PLAIN master login to the same Dovecot.

${loginTable(logins)}

`;
}

function report(m: MachineInfo, main: MainPart | undefined, krb: KerberosResults | undefined, startedAt: Date, busyBefore: number): string {
  const pool = process.env['UV_THREADPOOL_SIZE'] ?? "16 (popgate's CLI default)";
  return `# popgate benchmark

${startedAt.toISOString()} · ${RUNS} runs per scenario, median reported (min–max alongside) · everything on ${HOST} · settings: ${settingsLine(SETTINGS)}

${main ? mainSections(main) : ''}${krb ? kerberosReport(krb) : ''}
## Setup

- Machine: ${m.cpuModel}, ${m.cores} cores, ${f(m.memoryGiB)} GiB RAM, ${m.kernel}
- Node ${m.node}, Dovecot ${m.dovecot}, popgate ${m.popgate}; CPU clock ticks ${m.clockTicks}/s
- Machine load before the benchmark started (other processes, 2 s sample): ${f(busyBefore, 0)} % of one core busy
- popgate: child process \`node dist/cli/main.js serve\`, log level warn, UV_THREADPOOL_SIZE ${pool}; backend login master / auth-plain
- Users: \`fastuser\` scrypt ln=${CHEAP_LOG_N},r=8,p=1; \`alice\` scrypt ln=${SCRYPT_DEFAULT_LOG_N},r=8,p=1 (the default); Kerberos: \`alice@POPGATE.TEST\` → \`alice\`
${main ? `- TLS: ${main.tlsSeen ?? 'n/a'}, P-256 ECDSA certificate, full handshake per connection (no session resumption)\n` : ''}${krb ? kerberosSetupLines(krb) : ''}- Dovecot: private instance from test/helpers/dovecot.ts (maildir, stock login/pop3 services, auth_failure_delay 0, mail_max_userip_connections 1000)
- Load client: bench/lib/wire.ts (POP3) and bench/krb-load.ts (KPOP, GSSAPI accept step), run by bench/lib/load.ts in the benchmark process (python3-gssapi for GSSAPI logins) on the same machine: it competes with popgate and Dovecot for the ${m.cores} cores
- MB = 10^6 bytes, GB = 10^9 bytes. popgate CPU = utime+stime of the popgate process (all threads) from /proc/<pid>/stat, sampled around each run (for RETR: from the first RETR sent to the last terminating dot).
`;
}

// ------------------------------------------------------------------ main

async function runMainPart(cleanup: Cleanup, b: Backend): Promise<MainPart> {
  const s = await setUp(cleanup, b);
  try {
    const tlsSeen = await checkTargets(s);
    log(`bench: all four login targets verified (STAT 2 messages); TLS ${tlsSeen ?? 'n/a'}`);

    const retr: RetrScenario[] = [
      { name: 'direct Dovecot (plain)', via: 'direct', target: s.targets.direct, single: [], stream: [] },
      { name: 'popgate pop3 (plain)', via: 'popgate', target: s.targets.popPlainCheap, single: [], stream: [] },
      { name: 'popgate pop3s (TLS)', via: 'popgate', target: s.targets.popTlsCheap, single: [], stream: [] },
    ];
    log('bench: RETR warm-up (1 untimed session per path)');
    for (const sc of retr) await retrSession(sc.target, 1, 2);
    log('bench: RETR throughput');
    // Runs are interleaved across paths so drift on the machine hits all alike.
    for (let run = 1; run <= RUNS; run++) {
      for (const sc of retr) await runRetr(s, sc, run, 1);
    }
    log(`bench: RETR throughput, ${STREAM_RETRS} RETRs per session`);
    for (let run = 1; run <= RUNS; run++) {
      for (const sc of retr) await runRetr(s, sc, run, STREAM_RETRS);
    }

    const logins: LoginScenario[] = [];
    for (const c of CONCURRENCIES) {
      logins.push(
        { name: 'direct Dovecot (plain)', via: 'direct', concurrency: c, target: s.targets.direct, runs: [] },
        { name: 'pop3 (plain), fastuser (ln=10)', via: 'popgate', concurrency: c, target: s.targets.popPlainCheap, runs: [] },
        { name: 'pop3s, fastuser (ln=10)', via: 'popgate', concurrency: c, target: s.targets.popTlsCheap, runs: [] },
        { name: `pop3s, alice (ln=${SCRYPT_DEFAULT_LOG_N})`, via: 'popgate', concurrency: c, target: s.targets.popTlsDefault, runs: [] },
      );
    }
    for (const c of CONCURRENCIES) {
      log(`bench: logins at concurrency ${c}`);
      const group = logins.filter((x) => x.concurrency === c);
      for (const sc of group) await loginOnce(sc.target); // warm-up
      for (let run = 1; run <= RUNS; run++) {
        for (const sc of group) await runLogins(s, sc, run);
      }
    }

    if (!s.gateway.running()) throw new Error(`popgate exited during the benchmark:\n${s.gateway.output()}`);
    const gwOut = s.gateway.output().trim();
    if (gwOut) log(`bench: note: popgate wrote at warn level or above:\n${gwOut.slice(-4000)}`);
    // Done with this popgate: the Kerberos part runs its own, on quiet cores.
    await s.gateway.stop();
    return { s, retr, logins, tlsSeen };
  } catch (err) {
    // A dropped connection is often popgate gone: give its exit a moment to be seen.
    for (let i = 0; i < 10 && s.gateway.running(); i++) await sleep(50);
    if (!s.gateway.running()) process.stderr.write('bench: popgate (the child process) is no longer running\n');
    const gwOut = s.gateway.output().trim();
    if (gwOut) process.stderr.write(`bench: popgate output (tail):\n${gwOut.slice(-4000)}\n`);
    throw err;
  }
}

/** The in-memory backend child, shared by the Kerberos part and the comparison; users `fastuser` and the Dovecot user (alice). */
async function startFastBackend(cleanup: Cleanup, b: Backend): Promise<FastBackend> {
  const fastPassword = `fast-${randomBytes(8).toString('hex')}`;
  const users = { fastuser: fastPassword, [b.backendUsers[0]!.name]: `fast-${randomBytes(8).toString('hex')}` };
  const child = startNodeChild('fast backend', 'lib/backend-child.js', [
    JSON.stringify({ users, masterUser: b.master.name, masterPassword: b.master.password, bigBytes: SETTINGS.compare.bigBytes }),
  ]);
  cleanup.add('stop fast backend', () => child.stop());
  const [port, big, small] = (await waitReady(child)).map(Number) as [number, number, number];
  log(`bench: in-memory backend pid ${child.pid} on ${HOST}:${port} (message 1: ${big} bytes, message 2: ${small} bytes)`);
  return { child, port, bigSize: big, smallSize: small, fastPassword };
}

async function main(cleanup: Cleanup): Promise<void> {
  const startedAt = new Date();
  const t0 = performance.now();
  const total = (): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const parts = new Set(SETTINGS.parts);
  const machine = machineInfo();
  log(`bench: ${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, dovecot ${machine.dovecot}`);
  log(`bench: parts ${[...parts].join(', ')}; settings: ${settingsLine(SETTINGS)}`);
  const busyBefore = await machineBusyPct(2_000);
  log(`bench: machine CPU busy before starting (other processes): ${f(busyBefore, 0)} % of one core${busyBefore > 25 ? ' -- WARNING: the figures will be disturbed' : ''}`);
  const backend = await startBackend(cleanup);
  const fast = parts.has('kerberos') || parts.has('compare') ? await startFastBackend(cleanup, backend) : undefined;
  const mainPart = parts.has('main') ? await runMainPart(cleanup, backend) : undefined;
  let krb: KerberosResults | undefined;
  if (parts.has('kerberos') && fast) {
    log('bench: Kerberos part (against the in-memory backend)');
    krb = await runKerberosBench({
      cleanup,
      runs: RUNS,
      seconds: SETTINGS.kerberos.seconds,
      concurrencies: SETTINGS.kerberos.concurrencies,
      backendPort: fast.port,
      master: backend.master,
      certFile: backend.pki.certFile,
      keyFile: backend.pki.keyFile,
      ca: backend.ca,
      user: backend.backendUsers[0]!.name,
    });
  }
  const md = mainPart || krb ? report(machine, mainPart, krb, startedAt, busyBefore) : undefined;
  if (md) log(`\n${md}`);
  if (md && mainPart) {
    // latest.md is the main part's report (with the Kerberos section when that part ran too).
    log(`bench: wrote ${(await writeResults(SETTINGS.quick, [['latest.md', md]])).join(', ')}; ${total()} so far`);
  } else if (krb) {
    log('bench: no main part: bench/results/latest.md left unchanged');
  }
  if (parts.has('compare') && fast) {
    log(`bench: comparison with nginx (bench/compare/)${krb ? '; the Kerberos figures above are cited there' : ''}`);
    await runCompare({
      cleanup,
      dovecot: backend.dovecot,
      master: backend.master,
      dovecotUser: backend.backendUsers[0]!,
      pki: backend.pki,
      ca: backend.ca,
      fast,
      settings: { ...SETTINGS.compare, runs: RUNS, quick: SETTINGS.quick },
      ...(krb ? { kerberos: krb } : {}),
    });
  }
  log(`bench: total ${total()}`);
}

await runBenchMain('bench', main, [Pop3Error]);
