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
 * response>`, `QUIT`. One client SecureContext per CA (tls.connect with a
 * `ca` option would build a new one per connection and bill the load
 * generator for it). With `resume`, each of the `concurrency` loops offers
 * the last TLS session (ticket) it got; `isSessionReused()` is counted.
 * Errors never contain a password (the AUTH line is never echoed).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { Pop3Client, retrSession } from '../pop3-load.js';
import { quantile } from '../stats.js';
import { delta, snapshot, type MeterDelta, type MeterSpec } from './meter.js';

export interface WireTarget {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly ca: string; readonly servername: string };
  readonly user: string;
  readonly password: string;
}

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

// ------------------------------------------------------------------ a lean line connection

const contexts = new Map<string, tls.SecureContext>();
function contextFor(ca: string): tls.SecureContext {
  let c = contexts.get(ca);
  if (!c) {
    c = tls.createSecureContext({ ca });
    contexts.set(ca, c);
  }
  return c;
}

const plainTokens = new Map<WireTarget, string>();
function authPlain(t: WireTarget): string {
  let s = plainTokens.get(t);
  if (s === undefined) {
    s = `AUTH PLAIN ${Buffer.from(`\0${t.user}\0${t.password}`, 'utf8').toString('base64')}\r\n`;
    plainTokens.set(t, s);
  }
  return s;
}

class Conn {
  private buf = '';
  private waiter: ((line: string) => void) | undefined;
  private failer: ((err: Error) => void) | undefined;
  private error: Error | undefined;
  /** Set once we close on purpose: a close is then no failure. */
  done = false;

  constructor(
    readonly sock: net.Socket,
    readonly label: string,
  ) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.pump();
    });
    sock.on('error', (e: Error) => this.fail(e.message));
    sock.on('close', () => {
      if (!this.done) this.fail('connection closed by the server');
    });
  }

  get broken(): boolean {
    return this.error !== undefined;
  }

  static open(t: WireTarget, session?: Buffer): Conn {
    const sock = t.tls
      ? tls.connect({
          host: t.host,
          port: t.port,
          secureContext: contextFor(t.tls.ca),
          servername: t.tls.servername,
          ...(session ? { session } : {}),
        })
      : net.connect({ host: t.host, port: t.port });
    return new Conn(sock, t.label);
  }

  fail(detail: string): void {
    if (this.error) return;
    this.error = new Error(`${this.label}: ${detail}`);
    this.sock.destroy();
    const f = this.failer;
    this.waiter = undefined;
    this.failer = undefined;
    f?.(this.error);
  }

  private pump(): void {
    if (!this.waiter) {
      if (this.buf.length > 65_536) this.buf = '';
      return;
    }
    const nl = this.buf.indexOf('\r\n');
    if (nl < 0) return;
    const line = this.buf.slice(0, nl);
    this.buf = this.buf.slice(nl + 2);
    const w = this.waiter;
    this.waiter = undefined;
    this.failer = undefined;
    w(line);
  }

  /** Writes `cmd` (with CRLF) if given, waits for one line, which must start with +OK. */
  ok(step: string, cmd?: string): Promise<string> {
    if (this.error) return Promise.reject(this.error);
    return new Promise<string>((resolve, reject) => {
      this.waiter = (line) => {
        if (line.startsWith('+OK')) resolve(line);
        else {
          const err = new Error(`${this.label}: ${step}: server replied ${JSON.stringify(line.slice(0, 200))}`);
          this.fail(err.message);
          reject(err);
        }
      };
      this.failer = reject;
      if (cmd !== undefined) this.sock.write(cmd);
      this.pump();
    });
  }

  close(): void {
    this.done = true;
    this.sock.destroy();
  }
}

/** Connect, greeting, AUTH PLAIN; the connection stays open. */
async function openSession(t: WireTarget, session?: Buffer, onSession?: (s: Buffer) => void): Promise<Conn> {
  const c = Conn.open(t, session);
  if (onSession) c.sock.on('session', onSession);
  const timer = setTimeout(() => c.fail(`no reply within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  try {
    await c.ok('greeting');
    await c.ok('AUTH PLAIN', authPlain(t));
    return c;
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ jobs

async function probe(t: WireTarget): Promise<ProbeResult> {
  const c = await openSession(t);
  try {
    const stat = await c.ok('STAT', 'STAT\r\n');
    const s = c.sock instanceof tls.TLSSocket ? `${c.sock.getProtocol() ?? '?'} ${c.sock.getCipher().name}` : undefined;
    await c.ok('QUIT', 'QUIT\r\n');
    c.done = true;
    c.sock.end();
    return { tls: s, stat };
  } catch (err) {
    c.close();
    throw err;
  }
}

async function logins(job: Extract<Job, { kind: 'logins' }>): Promise<LoginsResult> {
  const { target: t, concurrency } = job;
  const latencies: number[] = [];
  let failures = 0;
  let firstError: string | undefined;
  let reused = 0;
  const before = snapshot(job.meter);
  const start = performance.now();
  const deadline = start + job.durationMs;
  const loop = async (): Promise<void> => {
    let session: Buffer | undefined;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      let c: Conn | undefined;
      try {
        c = await openSession(t, job.resume ? session : undefined, job.resume ? (s) => (session = s) : undefined);
        await c.ok('QUIT', 'QUIT\r\n');
        if (c.sock instanceof tls.TLSSocket && c.sock.isSessionReused()) reused++;
        c.done = true;
        c.sock.end();
        latencies.push(performance.now() - t0);
      } catch (err) {
        c?.close();
        failures++;
        firstError ??= err instanceof Error ? err.message : String(err);
        // Do not spin on a dead target.
        if (failures > 20 && failures > latencies.length) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsedMs = performance.now() - start;
  const meter = delta(job.meter, before);
  return {
    logins: latencies.length,
    failures,
    firstError,
    elapsedMs,
    p50Ms: latencies.length ? quantile(latencies, 0.5) : NaN,
    p99Ms: latencies.length ? quantile(latencies, 0.99) : NaN,
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
  const c = await Pop3Client.connect(job.target);
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

let idle: Conn[] = [];

async function idleOpen(job: Extract<Job, { kind: 'idle-open' }>): Promise<IdleOpenResult> {
  if (idle.length > 0) throw new Error('idle-open: sessions from an earlier job are still open');
  const t0 = performance.now();
  let started = 0;
  let failure: unknown;
  const loop = async (): Promise<void> => {
    while (failure === undefined && started < job.n) {
      started++;
      try {
        idle.push(await openSession(job.target));
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(job.concurrency, job.n) }, loop));
  if (failure !== undefined) {
    for (const c of idle) c.close();
    idle = [];
    throw failure;
  }
  return { opened: idle.length, ms: performance.now() - t0, workerRssKiB: Math.round(process.memoryUsage().rss / 1024) };
}

/** NOOP on `sample` sessions spread over the whole set: they are still logged in and relayed. */
async function idleCheck(job: Extract<Job, { kind: 'idle-check' }>): Promise<IdleCheckResult> {
  const broken = idle.filter((c) => c.broken).length;
  const step = Math.max(1, Math.floor(idle.length / Math.max(1, job.sample)));
  const picks: Conn[] = [];
  for (let i = 0; i < idle.length && picks.length < job.sample; i += step) if (!idle[i]!.broken) picks.push(idle[i]!);
  await Promise.all(picks.map((c) => c.ok('NOOP', 'NOOP\r\n')));
  return { checked: picks.length, broken };
}

async function idleClose(): Promise<{ closed: number }> {
  const n = idle.length;
  await Promise.all(
    idle.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.done = true;
          if (c.sock.destroyed) return resolve();
          c.sock.once('close', () => resolve());
          c.sock.destroy();
        }),
    ),
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
