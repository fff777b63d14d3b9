/**
 * The comparison's load generator, a child process of its own (so its CPU
 * is measured by PID and its 10,000 idle TLS sockets stay out of the
 * orchestrator). Jobs arrive over IPC, one at a time:
 *
 *   { id, job } -> { id, ok: true, result } | { id, ok: false, error }
 *
 * It samples the CPU of the processes named in `job.meter` itself, right
 * around the timed work (the orchestrator could not: RETR timing starts and
 * ends inside this process).
 *
 * Logins are: connect, [TLS handshake], greeting, `AUTH PLAIN <initial
 * response>`, `QUIT` (bench/lib/wire.ts, the shared client, run by
 * bench/lib/load.ts, the shared loop). With `resume`, each of the
 * `concurrency` loops offers the last TLS session (ticket) it got;
 * `isSessionReused()` is counted.
 */
import { performance } from 'node:perf_hooks';
import { runLoad } from '../lib/load.js';
import { delta, snapshot, type MeterDelta, type MeterSpec } from '../lib/procfs.js';
import { quantile } from '../lib/stats.js';
import { Pop3Conn, retrSession, type Pop3Target } from '../lib/wire.js';

export type WireTarget = Pop3Target;

export type Job =
  | { kind: 'probe'; target: WireTarget }
  | { kind: 'logins'; target: WireTarget; concurrency: number; durationMs: number; resume: boolean; meter: MeterSpec }
  | { kind: 'retr'; target: WireTarget; msg: number; times: number; meter: MeterSpec }
  | { kind: 'stat'; target: WireTarget; samples: number; warmup: number; meter: MeterSpec }
  | { kind: 'idle-open'; target: WireTarget; n: number; concurrency: number }
  | { kind: 'idle-check'; sample: number }
  | { kind: 'idle-close' };

export interface ProbeResult {
  readonly tls: string | undefined;
  readonly stat: string;
}

export interface LoginsResult {
  readonly logins: number;
  readonly failures: number;
  readonly firstError: string | undefined;
  readonly elapsedMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Logins whose TLS session was resumed. */
  readonly reused: number;
  readonly meter: MeterDelta;
}

export interface RetrResult {
  readonly listSize: number;
  readonly bodyBytes: readonly number[];
  readonly ms: number;
  readonly meter: MeterDelta;
}

export interface StatResult {
  readonly n: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
  readonly meter: MeterDelta;
}

export interface IdleOpenResult {
  readonly opened: number;
  readonly ms: number;
  readonly workerRssKiB: number;
}

export interface IdleCheckResult {
  readonly checked: number;
  readonly broken: number;
}

const TIMEOUT_MS = 20_000;

/** Connect, greeting, AUTH PLAIN; the connection stays open. */
async function openSession(t: WireTarget, session?: Buffer, onSession?: (s: Buffer) => void): Promise<Pop3Conn> {
  const c = await Pop3Conn.connect(t, { timeoutMs: TIMEOUT_MS, ...(session ? { session } : {}), ...(onSession ? { onSession } : {}) });
  try {
    await c.authPlain(t.user, t.password);
    return c;
  } catch (err) {
    c.destroy();
    throw err;
  }
}

// ------------------------------------------------------------------ jobs

async function probe(t: WireTarget): Promise<ProbeResult> {
  const c = await openSession(t);
  try {
    const stat = await c.command('STAT');
    const tls = c.tlsSummary();
    await c.quit();
    return { tls, stat };
  } catch (err) {
    c.destroy();
    throw err;
  }
}

async function logins(job: Extract<Job, { kind: 'logins' }>): Promise<LoginsResult> {
  const t = job.target;
  const sessions: Array<Buffer | undefined> = [];
  let reused = 0;
  const before = snapshot(job.meter);
  const r = await runLoad({ concurrency: job.concurrency, durationMs: job.durationMs, tolerateFailures: true }, async (_i, w) => {
    const c = await openSession(t, job.resume ? sessions[w] : undefined, job.resume ? (s) => (sessions[w] = s) : undefined);
    try {
      await c.quit();
    } catch (err) {
      c.destroy();
      throw err;
    }
    if (c.resumed()) reused++;
  });
  const meter = delta(job.meter, before);
  const lat = r.latenciesMs;
  return {
    logins: r.ops,
    failures: r.failures,
    firstError: r.firstError,
    elapsedMs: r.elapsedMs,
    p50Ms: lat.length ? quantile(lat, 0.5) : NaN,
    p99Ms: lat.length ? quantile(lat, 0.99) : NaN,
    reused,
    meter,
  };
}

async function retr(job: Extract<Job, { kind: 'retr' }>): Promise<RetrResult> {
  let before: ReturnType<typeof snapshot> | undefined;
  let meter: MeterDelta | undefined;
  const r = await retrSession(job.target, job.msg, job.times, {
    beforeRetr: () => {
      before = snapshot(job.meter);
    },
    afterRetr: () => {
      if (before) meter = delta(job.meter, before);
    },
  });
  if (!meter) throw new Error(`${job.target.label}: RETR: no CPU sample`);
  return { listSize: r.listSize, bodyBytes: r.bodyBytes, ms: r.ms, meter };
}

async function stat(job: Extract<Job, { kind: 'stat' }>): Promise<StatResult> {
  const c = await Pop3Conn.connect(job.target);
  try {
    await c.login(job.target.user, job.target.password);
    for (let i = 0; i < job.warmup; i++) await c.stat();
    const samples: number[] = [];
    const before = snapshot(job.meter);
    for (let i = 0; i < job.samples; i++) {
      const t0 = performance.now();
      await c.stat();
      samples.push(performance.now() - t0);
    }
    const meter = delta(job.meter, before);
    await c.quit();
    return {
      n: samples.length,
      p50Ms: quantile(samples, 0.5),
      p90Ms: quantile(samples, 0.9),
      p99Ms: quantile(samples, 0.99),
      maxMs: Math.max(...samples),
      meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
      meter,
    };
  } catch (err) {
    c.destroy();
    throw err;
  }
}

let idle: Pop3Conn[] = [];

async function idleOpen(job: Extract<Job, { kind: 'idle-open' }>): Promise<IdleOpenResult> {
  if (idle.length > 0) throw new Error('idle-open: sessions from an earlier job are still open');
  const t0 = performance.now();
  try {
    await runLoad({ concurrency: job.concurrency, total: job.n }, async () => void idle.push(await openSession(job.target)));
  } catch (err) {
    for (const c of idle) c.destroy();
    idle = [];
    throw err;
  }
  return { opened: idle.length, ms: performance.now() - t0, workerRssKiB: Math.round(process.memoryUsage().rss / 1024) };
}

/** NOOP on `sample` sessions spread over the whole set: they are still logged in and relayed. */
async function idleCheck(job: Extract<Job, { kind: 'idle-check' }>): Promise<IdleCheckResult> {
  const broken = idle.filter((c) => c.broken).length;
  const step = Math.max(1, Math.floor(idle.length / Math.max(1, job.sample)));
  const picks: Pop3Conn[] = [];
  for (let i = 0; i < idle.length && picks.length < job.sample; i += step) if (!idle[i]!.broken) picks.push(idle[i]!);
  await Promise.all(picks.map((c) => c.command('NOOP')));
  return { checked: picks.length, broken };
}

async function idleClose(): Promise<{ closed: number }> {
  const n = idle.length;
  await Promise.all(
    idle.map((c) => {
      c.destroy();
      return c.closed;
    }),
  );
  idle = [];
  return { closed: n };
}

async function run(job: Job): Promise<unknown> {
  switch (job.kind) {
    case 'probe':
      return probe(job.target);
    case 'logins':
      return logins(job);
    case 'retr':
      return retr(job);
    case 'stat':
      return stat(job);
    case 'idle-open':
      return idleOpen(job);
    case 'idle-check':
      return idleCheck(job);
    case 'idle-close':
      return idleClose();
  }
}

const send = process.send?.bind(process);
if (!send) throw new Error('load-worker: run me with an IPC channel');
let queue = Promise.resolve();
process.on('message', (m: unknown) => {
  const { id, job } = m as { id: number; job: Job };
  queue = queue.then(async () => {
    try {
      send({ id, ok: true, result: await run(job) });
    } catch (err) {
      send({ id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  });
});
process.on('disconnect', () => process.exit(0));
