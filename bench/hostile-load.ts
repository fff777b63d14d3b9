/**
 * popgate hostile load test (`npm run loadtest`, not part of the test suite; issue 5).
 *
 * A private Dovecot (test/helpers/dovecot.ts) and popgate as a child process
 * (`node dist/cli/main.js serve`, pop3s + plaintext pop3 listeners, throttle on
 * with its default delays, limits.maxConnections 5000, preAuthTimeout 60s).
 *
 *  1. Baseline: a normal client (127.0.0.1, pop3s, default scrypt) runs
 *     connect + TLS + USER/PASS + STAT + RETR(small) + QUIT, 20 times alone.
 *  2. Per-IP probe: one extra address opens more connections than
 *     limits.maxConnectionsPerIp allows (shows the limit acting).
 *  3. Attack: 1,000 slow-loris sockets (half pop3, half pop3s; greeting read,
 *     then one byte every few seconds, never a CRLF; reconnect when closed)
 *     from 127.0.1.x, and 1,000 brute-force USER/PASS attempts with wrong
 *     passwords (50 concurrent, spread over users and 127.0.2.x). Meanwhile the
 *     normal client keeps running (at least 20 runs, until the brute force ends),
 *     and popgate's RSS, CPU and open fds are sampled from /proc.
 *
 * Prints a Markdown report and writes it to bench/results/hostile-load.md.
 * Every process started here is stopped by PID (success, failure, SIGINT/SIGTERM).
 * Settings: bench/lib/settings.ts, `hostile` (BENCH_QUICK=1 for a trial run).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { hashPassword, SCRYPT_DEFAULT_LOG_N } from '../src/auth/password-hash.js';
import { runLoad } from './lib/load.js';
import { SMALL_MESSAGE } from './lib/messages.js';
import { type Cleanup, HOST, describe, log, runBenchMain, sleep, startDovecotGateway, startPkiAndDovecot, writeResults } from './lib/process.js';
import { clockTicksPerSecond, fdCount, readMachineCpu, readProcCpu, rssKiB } from './lib/procfs.js';
import { loadSettings } from './lib/settings.js';
import { f, quantile } from './lib/stats.js';
import { Pop3Conn, Pop3Error, type Pop3Endpoint, type Pop3Target } from './lib/wire.js';

// ------------------------------------------------------------------ settings

const SETTINGS = loadSettings();
const { slowloris: SLOWLORIS, bruteforce: BRUTEFORCE, runs: RUNS, minAttackSeconds: MIN_ATTACK_S } = SETTINGS.hostile;
const BRUTE_CONCURRENCY = 50;
const MAX_CONNECTIONS = 5000;
const MAX_PER_IP = 64;
const PREAUTH_TIMEOUT_S = 60;
/** Slow-loris sources 127.0.1.1..20: 50 sockets each at 1,000, under MAX_PER_IP. */
const LORIS_ADDRS = 20;
/** Brute-force sources 127.0.2.1..10: 5 concurrent attempts each. */
const BRUTE_ADDRS = 10;
/** Per-IP probe: this many connections from 127.0.3.1. */
const PROBE_CONNECTIONS = MAX_PER_IP + 16;
const LORIS_BYTE_INTERVAL_MS = 3_000;
const LORIS_BATCH = 50;
const NORMAL_GAP_MS = 250;
const NORMAL_TIMEOUT_MS = 60_000;
/** Victims that exist in the user file (default scrypt) plus names that do not exist. */
const VICTIMS = [
  ...['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan'],
  ...Array.from({ length: 32 }, (_, i) => `nosuch${String(i).padStart(2, '0')}`),
];

// ------------------------------------------------------------------ helpers

const bump = (m: Map<string, number>, k: string, by = 1): void => void m.set(k, (m.get(k) ?? 0) + by);
const fmtMap = (m: Map<string, number>): string =>
  m.size === 0 ? 'none' : [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ×${v}`).join('; ');
const p = (xs: readonly number[], q: number): number => (xs.length === 0 ? NaN : quantile(xs, q));
/** An error text without ports or addresses that vary per socket. */
const errKey = (err: unknown): string => {
  return (err instanceof Pop3Error ? err.code : describe(err)).replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'addr').slice(0, 80);
};
const replyCode = (line: string): string => {
  if (line.startsWith('+OK')) return '+OK';
  const m = /^-ERR \[([A-Z/-]+)\]/.exec(line);
  return m ? `-ERR [${m[1]}]` : line.startsWith('-ERR') ? `-ERR (${line.slice(5, 40)})` : `other (${line.slice(0, 30)})`;
};

/** A pop3 (or pop3s) connection from a chosen loopback source address. */
const from = (port: number, localAddress: string, ca?: Buffer): Pop3Endpoint => ({
  label: `${localAddress} -> ${port}`,
  host: HOST,
  port,
  localAddress,
  ...(ca ? { tls: { ca, servername: 'localhost' } } : {}),
});

// ------------------------------------------------------------------ normal client

interface NormalRun {
  readonly ms: number;
  readonly startedAt: number;
}

async function normalOnce(t: Pop3Target, smallSize: number): Promise<number> {
  const t0 = performance.now();
  const c = await Pop3Conn.connect(t, { timeoutMs: NORMAL_TIMEOUT_MS });
  try {
    await c.login(t.user, t.password);
    const st = await c.stat();
    if (st.count !== 1) throw new Pop3Error(t.label, 'STAT', `expected 1 message, got ${st.count}`);
    const r = await c.retr(1);
    if (r.bodyBytes !== smallSize) throw new Pop3Error(t.label, 'RETR', `expected ${smallSize} bytes, got ${r.bodyBytes}`);
    await c.quit();
  } catch (err) {
    c.destroy();
    throw err;
  }
  return performance.now() - t0;
}

// ------------------------------------------------------------------ slow loris

interface LorisStats {
  initialAccepted: number;
  initialRefused: number;
  acceptedTotal: number;
  refusedTotal: number;
  refusedHow: Map<string, number>;
  closedByServer: number;
  /** What the server said (or did) when it closed a greeted socket. */
  closedHow: Map<string, number>;
  /** Seconds from greeting to the server's close. */
  closedAfterS: number[];
  reconnects: number;
  open: number;
  maxOpen: number;
  bytesSent: number;
  rampMs: number;
}

class SlowLoris {
  private stopped = false;
  private readonly conns = new Set<Pop3Conn>();
  private readonly timers = new Set<NodeJS.Timeout>();
  readonly s: LorisStats = {
    initialAccepted: 0,
    initialRefused: 0,
    acceptedTotal: 0,
    refusedTotal: 0,
    refusedHow: new Map(),
    closedByServer: 0,
    closedHow: new Map(),
    closedAfterS: [],
    reconnects: 0,
    open: 0,
    maxOpen: 0,
    bytesSent: 0,
    rampMs: 0,
  };

  constructor(
    private readonly plainPort: number,
    private readonly tlsPort: number,
    private readonly ca: Buffer,
  ) {}

  /** Opens `n` sockets in batches; resolves when each has been greeted or refused once. */
  async start(n: number): Promise<void> {
    const t0 = performance.now();
    const first: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      first.push(this.one(i, true));
      if ((i + 1) % LORIS_BATCH === 0) await sleep(100);
    }
    await Promise.all(first);
    this.s.rampMs = performance.now() - t0;
  }

  /** One socket's life; resolves once greeted or refused (the first time). */
  private one(i: number, initial: boolean): Promise<void> {
    const useTls = i % 2 === 1;
    const conn = Pop3Conn.open(from(useTls ? this.tlsPort : this.plainPort, `127.0.1.${1 + (i % LORIS_ADDRS)}`, useTls ? this.ca : undefined));
    this.conns.add(conn);
    return new Promise<void>((settle) => {
      conn
        .line('greeting', 30_000)
        .then((greeting) => {
          if (!greeting.startsWith('+OK')) throw new Pop3Error(conn.label, 'greeting', greeting, replyCode(greeting));
          if (initial) this.s.initialAccepted++;
          this.s.acceptedTotal++;
          this.s.open++;
          this.s.maxOpen = Math.max(this.s.maxOpen, this.s.open);
          settle();
          const greetedAt = performance.now();
          let lastLine: string | undefined;
          conn.onUnsolicited = (line) => void (lastLine = line);
          // "USER aaaa…" one byte at a time, never a CRLF.
          const payload = `USER ${'a'.repeat(200)}`;
          let k = 0;
          const tick = (): void => {
            if (this.stopped) return;
            conn.write(payload[k % payload.length]!);
            k++;
            this.s.bytesSent++;
            const t = setTimeout(() => {
              this.timers.delete(t);
              tick();
            }, LORIS_BYTE_INTERVAL_MS * (0.75 + Math.random() * 0.5));
            this.timers.add(t);
          };
          const t = setTimeout(tick, Math.random() * LORIS_BYTE_INTERVAL_MS);
          this.timers.add(t);
          void conn.closed.then(() => {
            this.s.open--;
            this.conns.delete(conn);
            if (this.stopped) return;
            this.s.closedByServer++;
            bump(this.s.closedHow, lastLine !== undefined ? `"${lastLine}"` : 'closed without a reply');
            this.s.closedAfterS.push((performance.now() - greetedAt) / 1000);
            this.reconnect(i);
          });
        })
        .catch((err: unknown) => {
          conn.destroy();
          this.conns.delete(conn);
          if (this.stopped) return settle();
          if (initial) this.s.initialRefused++;
          this.s.refusedTotal++;
          bump(this.s.refusedHow, errKey(err));
          settle();
          this.reconnect(i);
        });
    });
  }

  private reconnect(i: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.stopped) return;
      this.s.reconnects++;
      void this.one(i, false);
    }, 1_000);
    this.timers.add(t);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }
}

// ------------------------------------------------------------------ per-IP probe

async function perIpProbe(port: number): Promise<{ accepted: number; refused: Map<string, number> }> {
  const conns: Pop3Conn[] = [];
  let accepted = 0;
  const refused = new Map<string, number>();
  await Promise.all(
    Array.from({ length: PROBE_CONNECTIONS }, async () => {
      const c = Pop3Conn.open(from(port, '127.0.3.1'));
      conns.push(c);
      try {
        const g = await c.line('greeting', 10_000);
        if (g.startsWith('+OK')) accepted++;
        else bump(refused, replyCode(g));
      } catch (err) {
        bump(refused, errKey(err));
      }
    }),
  );
  for (const c of conns) c.destroy();
  return { accepted, refused };
}

// ------------------------------------------------------------------ brute force

interface BruteStats {
  attempts: number;
  /** Final answer per attempt (PASS reply, or the earlier refusal). */
  answers: Map<string, number>;
  /** Seconds from PASS to its -ERR, per reply code. */
  passDelayS: Map<string, number[]>;
  errors: Map<string, number>;
  elapsedMs: number;
}

async function bruteForce(plainPort: number, tlsPort: number, ca: Buffer): Promise<BruteStats> {
  const st: BruteStats = { attempts: 0, answers: new Map(), passDelayS: new Map(), errors: new Map(), elapsedMs: 0 };
  const t0 = performance.now();
  const attempt = async (k: number): Promise<void> => {
    st.attempts++;
    const useTls = k % 2 === 1;
    const conn = Pop3Conn.open(from(useTls ? tlsPort : plainPort, `127.0.2.${1 + (k % BRUTE_ADDRS)}`, useTls ? ca : undefined));
    const user = VICTIMS[Math.floor(k / BRUTE_ADDRS) % VICTIMS.length]!;
    let step = 'greeting';
    try {
      const g = await conn.line('greeting', 30_000);
      if (!g.startsWith('+OK')) return void bump(st.answers, `${replyCode(g)} (greeting)`);
      step = 'USER';
      conn.write(`USER ${user}\r\n`);
      const u = await conn.line('USER', 30_000);
      if (!u.startsWith('+OK')) return void bump(st.answers, `${replyCode(u)} (USER)`);
      step = 'PASS';
      const sent = performance.now();
      conn.write(`PASS wrong-${randomBytes(4).toString('hex')}\r\n`);
      const r = await conn.line('PASS', 60_000);
      const code = replyCode(r);
      bump(st.answers, code);
      const list = st.passDelayS.get(code) ?? [];
      list.push((performance.now() - sent) / 1000);
      st.passDelayS.set(code, list);
      if (r.startsWith('-ERR')) conn.write('QUIT\r\n');
    } catch (err) {
      bump(st.errors, `${step}: ${errKey(err)}`);
    } finally {
      conn.destroy();
    }
  };
  // attempt() tallies its own failures: the loop never sees one.
  if (BRUTEFORCE > 0) await runLoad({ concurrency: BRUTE_CONCURRENCY, total: BRUTEFORCE }, attempt);
  st.elapsedMs = performance.now() - t0;
  return st;
}

// ------------------------------------------------------------------ sampling

interface Sampler {
  stop(): { rssMaxMiB: number; rssEndMiB: number; cpuAvgPct: number; cpuPeakPct: number; fdMax: number; machinePct: number; seconds: number };
}

function startSampler(pid: number): Sampler {
  const cpu0 = readProcCpu(pid).totalMs;
  const m0 = readMachineCpu().busyMs;
  const t0 = performance.now();
  let rssMax = rssKiB(pid);
  let fdMax = fdCount(pid);
  let last = { t: t0, cpu: cpu0 };
  let peak = 0;
  const timer = setInterval(() => {
    try {
      rssMax = Math.max(rssMax, rssKiB(pid));
      fdMax = Math.max(fdMax, fdCount(pid));
      const now = performance.now();
      if (now - last.t >= 1_000) {
        const c = readProcCpu(pid).totalMs;
        peak = Math.max(peak, ((c - last.cpu) / (now - last.t)) * 100);
        last = { t: now, cpu: c };
      }
    } catch {
      /* popgate gone: reported elsewhere */
    }
  }, 250);
  return {
    stop: () => {
      clearInterval(timer);
      const ms = performance.now() - t0;
      let cpuAvgPct = NaN;
      let rssEnd = NaN;
      try {
        cpuAvgPct = ((readProcCpu(pid).totalMs - cpu0) / ms) * 100;
        rssEnd = rssKiB(pid);
      } catch {
        /* gone */
      }
      return {
        rssMaxMiB: rssMax / 1024,
        rssEndMiB: rssEnd / 1024,
        cpuAvgPct,
        cpuPeakPct: peak,
        fdMax,
        machinePct: ((readMachineCpu().busyMs - m0) / ms) * 100,
        seconds: ms / 1000,
      };
    },
  };
}

// ------------------------------------------------------------------ main

async function main(cleanup: Cleanup): Promise<void> {
  const startedAt = new Date();
  const tStart = performance.now();
  const cores = os.availableParallelism();
  log(`loadtest: ${os.cpus()[0]?.model ?? '?'}, ${cores} cores, node ${process.version}`);

  const { pki, ca, dovecot, master } = await startPkiAndDovecot(cleanup, 'loadtest', { alice: [SMALL_MESSAGE] });

  const alicePass = `front-alice-${randomBytes(8).toString('hex')}`;
  const userLines = [`alice:${await hashPassword(alicePass)}`];
  for (const v of VICTIMS.filter((n) => !n.startsWith('nosuch'))) {
    userLines.push(`${v}:${await hashPassword(`real-${randomBytes(8).toString('hex')}`)}`);
  }
  const { gateway: gw, tlsPort, plainPort, tlsOpts } = await startDovecotGateway(cleanup, {
    name: 'load',
    userLines,
    pki,
    ca,
    dovecotPort: dovecot.port,
    master,
    auth: 'throttle: { enabled: true }',
    extraYaml: `limits: { maxConnections: ${MAX_CONNECTIONS}, maxConnectionsPerIp: ${MAX_PER_IP}, preAuthTimeout: ${PREAUTH_TIMEOUT_S}s }`,
  });
  log(`loadtest: popgate pid ${gw.pid}: pop3s :${tlsPort}, pop3 :${plainPort}`);

  const normal: Pop3Target = { label: 'normal client (pop3s, alice)', host: HOST, port: tlsPort, tls: tlsOpts, user: 'alice', password: alicePass };

  // 1. Baseline.
  for (let i = 0; i < 2; i++) await normalOnce(normal, SMALL_MESSAGE.length); // warm-up
  const idleRssMiB = rssKiB(gw.pid) / 1024;
  const baseline: number[] = [];
  const baseSampler = startSampler(gw.pid);
  for (let i = 0; i < RUNS; i++) {
    baseline.push(await normalOnce(normal, SMALL_MESSAGE.length));
    await sleep(NORMAL_GAP_MS);
  }
  const baseRes = baseSampler.stop();
  log(`loadtest: baseline ${RUNS} runs: p50 ${f(p(baseline, 0.5))} ms, p95 ${f(p(baseline, 0.95))} ms`);

  // 2. Per-IP probe.
  const probe = await perIpProbe(plainPort);
  log(`loadtest: per-IP probe from 127.0.3.1: ${probe.accepted}/${PROBE_CONNECTIONS} greeted, refused: ${fmtMap(probe.refused)}`);
  await sleep(500);

  // 3. Attack.
  const sampler = startSampler(gw.pid);
  const loris = new SlowLoris(plainPort, tlsPort, ca);
  const lorisT0 = performance.now();
  cleanup.add('stop slow-loris sockets', () => loris.stop());
  log(`loadtest: opening ${SLOWLORIS} slow-loris sockets (pop3 + pop3s, ${LORIS_ADDRS} source addresses)`);
  await loris.start(SLOWLORIS);
  log(`loadtest: slow-loris: ${loris.s.initialAccepted} greeted, ${loris.s.initialRefused} refused in ${f(loris.s.rampMs / 1000)} s`);

  log(`loadtest: ${BRUTEFORCE} brute-force attempts (${BRUTE_CONCURRENCY} concurrent) + normal client`);
  const underAttack: NormalRun[] = [];
  const normalErrors = new Map<string, number>();
  let bruteDone = false;
  const attackT0 = performance.now();
  const brutePromise = bruteForce(plainPort, tlsPort, ca).finally(() => void (bruteDone = true));
  const normalLoop = (async () => {
    while ((!bruteDone || underAttack.length + sumMap(normalErrors) < RUNS || performance.now() - lorisT0 < MIN_ATTACK_S * 1000) && underAttack.length + sumMap(normalErrors) < 10 * RUNS + 2000) {
      const startedAt = (performance.now() - attackT0) / 1000;
      try {
        underAttack.push({ ms: await normalOnce(normal, SMALL_MESSAGE.length), startedAt });
      } catch (err) {
        bump(normalErrors, err instanceof Pop3Error ? `${err.step}: ${err.detail}` : errKey(err));
      }
      await sleep(NORMAL_GAP_MS);
    }
  })();
  const brute = await brutePromise;
  await normalLoop;
  const loadOpenAtEnd = loris.s.open;
  const res = sampler.stop();
  loris.stop();
  log(`loadtest: brute force done in ${f(brute.elapsedMs / 1000)} s: ${fmtMap(brute.answers)}; errors: ${fmtMap(brute.errors)}`);

  // 4. After the attack: popgate alive, a normal login still works.
  await sleep(1_000);
  let after = 'ok';
  let afterMs = NaN;
  try {
    afterMs = await normalOnce(normal, SMALL_MESSAGE.length);
  } catch (err) {
    after = `FAILED: ${describe(err)}`;
  }
  const alive = gw.running();
  const gwOut = gw.output().trim();
  const warnLines = gwOut === '' ? 0 : gwOut.split('\n').length;

  // ------------------------------------------------------------------ report
  const attackMs = underAttack.map((r) => r.ms);
  const b50 = p(baseline, 0.5);
  const b95 = p(baseline, 0.95);
  const a50 = p(attackMs, 0.5);
  const a95 = p(attackMs, 0.95);
  const ls = loris.s;
  const delayRows = [...brute.passDelayS.entries()].map(([code, xs]) => {
    const buckets = new Map<string, number>();
    for (const x of xs) bump(buckets, `${x < 0.5 ? '<0.5' : f(Math.round(x * 2) / 2, 1)} s`);
    return `| ${code} after PASS | ${xs.length} | ${f(p(xs, 0), 2)} / ${f(p(xs, 0.5), 2)} / ${f(p(xs, 0.95), 2)} / ${f(p(xs, 1), 2)} | ${fmtMap(buckets)} |`;
  });
  const count = (code: string): number => [...brute.answers.entries()].filter(([k]) => k.startsWith(code)).reduce((a, [, v]) => a + v, 0);

  const md = `# popgate hostile load test

${startedAt.toISOString()} · everything on 127.0.0.0/8 · ${cores} cores (${os.cpus()[0]?.model ?? '?'}), node ${process.version} · load generator in the same machine (competes for the cores)

popgate: \`limits.maxConnections ${MAX_CONNECTIONS}\`, \`maxConnectionsPerIp ${MAX_PER_IP}\`, \`preAuthTimeout ${PREAUTH_TIMEOUT_S}s\`,
\`auth.throttle\` on with default delays (2s, 4s, 8s, 15s; lockout after 10 failures), log level warn, users scrypt ln=${SCRYPT_DEFAULT_LOG_N}.
Normal client: 127.0.0.1, pop3s, connect + TLS + USER/PASS + STAT + RETR(${SMALL_MESSAGE.length} B) + QUIT, ${NORMAL_GAP_MS} ms between runs.
Slow-loris: ${SLOWLORIS} sockets, half pop3 / half pop3s (TLS handshake first), from 127.0.1.1–${LORIS_ADDRS}; greeting read, then one byte
of \`USER aaa…\` every ~${LORIS_BYTE_INTERVAL_MS / 1000} s, never a CRLF; reopened 1 s after the server closes one.
Brute force: ${BRUTEFORCE} USER/PASS attempts with wrong passwords, ${BRUTE_CONCURRENCY} concurrent, one connection each, alternating pop3 / pop3s,
from 127.0.2.1–${BRUTE_ADDRS}, over ${VICTIMS.length} user names (8 existing, ${VICTIMS.length - 8} unknown; never \`alice\`).

## Normal client

| | runs | p50 ms | p95 ms | max ms | errors |
|---|--:|--:|--:|--:|--:|
| alone (baseline) | ${baseline.length} | ${f(b50)} | ${f(b95)} | ${f(p(baseline, 1))} | 0 |
| under attack | ${attackMs.length} | ${f(a50)} | ${f(a95)} | ${f(p(attackMs, 1))} | ${sumMap(normalErrors)} |
| ratio attack / baseline | | **${f(a50 / b50, 2)}×** | **${f(a95 / b95, 2)}×** | | |
| one run after the attack | 1 | ${f(afterMs)} | | | ${after === 'ok' ? 0 : 1} |

Normal-client errors under attack: ${fmtMap(normalErrors)}${after === 'ok' ? '' : `; after the attack: ${after}`}.

## popgate process (/proc/${'<pid>'}, sampled every 250 ms)

| | duration s | RSS MiB (max) | CPU avg % of one core | CPU peak % (1 s) | open fds (max) | machine busy % of one core |
|---|--:|--:|--:|--:|--:|--:|
| idle before | | ${f(idleRssMiB)} | | | | |
| baseline runs | ${f(baseRes.seconds)} | ${f(baseRes.rssMaxMiB)} | ${f(baseRes.cpuAvgPct, 0)} | ${f(baseRes.cpuPeakPct, 0)} | ${baseRes.fdMax} | ${f(baseRes.machinePct, 0)} |
| attack | ${f(res.seconds)} | ${f(res.rssMaxMiB)} (end ${f(res.rssEndMiB)}) | ${f(res.cpuAvgPct, 0)} | ${f(res.cpuPeakPct, 0)} | ${res.fdMax} | ${f(res.machinePct, 0)} |

popgate still running after the attack: ${alive ? 'yes' : '**no**'}; lines it wrote at warn level or above: ${warnLines}.

## Slow-loris sockets

| | count |
|---|--:|
| opened in the first wave | ${SLOWLORIS} (ramp ${f(ls.rampMs / 1000)} s) |
| first wave greeted (accepted) / refused | ${ls.initialAccepted} / ${ls.initialRefused} |
| all connects incl. reopens: accepted / refused | ${ls.acceptedTotal} / ${ls.refusedTotal} |
| max simultaneously open / open at the end | ${ls.maxOpen} / ${loadOpenAtEnd} |
| closed by popgate during the attack | ${ls.closedByServer} (after ${f(p(ls.closedAfterS, 0), 1)}–${f(p(ls.closedAfterS, 1), 1)} s, median ${f(p(ls.closedAfterS, 0.5), 1)} s) |
| reopened | ${ls.reconnects} |
| slow bytes sent | ${ls.bytesSent} |

How popgate closed them: ${fmtMap(ls.closedHow)}. Refusals: ${fmtMap(ls.refusedHow)}.
Per-IP probe (before the attack, pop3, ${PROBE_CONNECTIONS} connections from 127.0.3.1): ${probe.accepted} greeted, refused: ${fmtMap(probe.refused)}.

## Brute force (${brute.attempts} attempts in ${f(brute.elapsedMs / 1000)} s)

| answer | count |
|---|--:|
| -ERR [AUTH] | ${count('-ERR [AUTH]')} |
| -ERR [LOGIN-DELAY] | ${count('-ERR [LOGIN-DELAY]')} |
| -ERR [SYS/TEMP] | ${count('-ERR [SYS/TEMP]')} |
| +OK (a wrong password accepted!) | ${count('+OK')} |
| client-side errors | ${sumMap(brute.errors)} |

All answers: ${fmtMap(brute.answers)}. Errors: ${fmtMap(brute.errors)}.

| reply | n | time PASS → reply s (min / p50 / p95 / max) | distribution (rounded to 0.5 s) |
|---|--:|--:|---|
${delayRows.join('\n')}

Total run time ${f((performance.now() - tStart) / 1000)} s; CPU clock ticks ${clockTicksPerSecond()}/s.
`;
  log('');
  log(md);
  log(`loadtest: wrote ${(await writeResults(SETTINGS.quick, [['hostile-load.md', md]])).join(', ')}`);
  if (!alive) throw new Error(`popgate exited during the load test:\n${gwOut.slice(-4000)}`);
  if (gwOut) log(`loadtest: popgate output (tail):\n${gwOut.slice(-3000)}`);
}

function sumMap(m: Map<string, number>): number {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
}

await runBenchMain('loadtest', main, [Pop3Error]);
