/**
 * The primary of `workers` > 1: forks N workers (node:cluster) that serve the
 * same listeners, replaces one that dies, fans SIGTERM and SIGHUP out to all
 * of them, holds the state that must be global (the throttle's memory store,
 * per-address connection counts) and serves the admin listener: /metrics the
 * sum over workers, /readyz ready only when every worker is.
 *
 * Scheduling is SCHED_NONE: the primary binds each listening socket once and
 * hands it to every worker, which accept on it directly (the kernel wakes one
 * of them). Measured here (2 workers, TLS logins against the demo backend,
 * CPU of all processes per login): round-robin through the primary cost
 * ~0.3 ms of primary CPU per login more (every accepted socket is passed over
 * IPC) and makes the primary a hop every connection waits on; reusePort cost
 * the same as SCHED_NONE within noise, but gives each worker its own accept
 * queue (connections queued on a dying worker are reset) and its own port for
 * `port: 0`. The global state costs IPC round trips: ~0.2 ms of primary CPU
 * per connection for the per-address slot, ~0.2 ms more per login with the
 * memory throttle.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { MemoryFailureStore, serveFailureStoreCall } from '../../auth/throttle/index.js';
import type { PopgateConfig } from '../../config/index.js';
import { startAdminServer, type AdminServer, type Readiness, type ReadinessCheck } from '../../observability/admin-server.js';
import { createPrimaryMetrics, type MetricsSnapshot } from '../../observability/metrics.js';
import { SharedAddressCounts } from '../address-limit.js';
import type { BoundAdmin } from '../gateway.js';
import type { BoundListener } from '../listener.js';
import { TICKET_KEY_BYTES } from '../tls-context.js';
import { IpcPeer, type Hello, type PrimaryEnd, type WorkerNote, type WorkerRequest } from './ipc.js';
import { WORKER_ENV } from './worker.js';

/** /metrics and /readyz wait this long for each worker. */
const ADMIN_ANSWER_MS = 2_000;
/** A replacement that dies before it is ready waits this long before the next try, doubling up to the maximum. */
const RESTART_BACKOFF_MS = 1_000;
const RESTART_BACKOFF_MAX_MS = 30_000;

/** `workers` as a process count: `auto` is one per core the process may use. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

interface Slot {
  readonly n: number;
  worker: Worker | undefined;
  peer: PrimaryEnd | undefined;
  ready: boolean;
  listeners: readonly BoundListener[];
  backoffMs: number;
  timer: NodeJS.Timeout | undefined;
}

export interface PrimaryOptions {
  readonly config: PopgateConfig;
  /** How many workers (resolved: `auto` is a number by now). */
  readonly count: number;
  readonly log: Logger;
}

export class Primary {
  private readonly slots: Slot[];
  private readonly metrics = createPrimaryMetrics();
  /** The throttle's memory store, for every worker. */
  private readonly failures = new MemoryFailureStore();
  private readonly addressCounts = new SharedAddressCounts();
  /**
   * The TLS session ticket key of listeners without a ticketKeysFile, the same
   * in every worker (so a session resumes on any of them); a fresh one at each
   * SIGHUP, as a single process makes one per certificate load.
   */
  private ticketKey = randomBytes(TICKET_KEY_BYTES);
  private adminServer: AdminServer | undefined;
  private stopping = false;
  /** Set while starting: a worker that exits then fails the start. */
  private startFailed: ((err: Error) => void) | undefined;
  /** Exit codes of workers that stopped when asked: 0 for each clean drain. */
  private cleanStops = true;
  private allExited: (() => void) | undefined;
  /** What stop() resolves to (the exit code), once it was called. */
  private exited: Promise<number> = Promise.resolve(0);

  private constructor(private readonly opts: PrimaryOptions) {
    this.slots = Array.from({ length: opts.count }, (_, i) => ({
      n: i + 1,
      worker: undefined,
      peer: undefined,
      ready: false,
      listeners: [],
      backoffMs: RESTART_BACKOFF_MS,
      timer: undefined,
    }));
  }

  /** Forks every worker and waits until all are serving; rejects (with everything stopped) if one fails to start. */
  static async start(opts: PrimaryOptions): Promise<Primary> {
    // Before the first fork: workers accept on the shared socket themselves.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const primary = new Primary(opts);
    try {
      await new Promise<void>((resolve, reject) => {
        primary.startFailed = reject;
        let ready = 0;
        for (const slot of primary.slots) {
          primary.fork(slot, () => {
            if (++ready === primary.slots.length) resolve();
          });
        }
      });
      primary.startFailed = undefined;
      if (opts.config.admin) {
        primary.adminServer = await startAdminServer({
          address: opts.config.admin.address,
          port: opts.config.admin.port,
          metrics: { render: () => primary.renderMetrics(), contentType: primary.metrics.contentType },
          readiness: () => primary.readiness(),
          log: opts.log,
        });
      }
    } catch (err) {
      primary.startFailed = undefined;
      await primary.stop(true);
      throw err;
    }
    return primary;
  }

  /** What the first worker bound (every worker serves the same sockets). */
  get bound(): readonly BoundListener[] {
    return this.slots[0]?.listeners ?? [];
  }

  get admin(): BoundAdmin | undefined {
    const a = this.adminServer;
    return a ? { address: a.address, port: a.port } : undefined;
  }

  /** Worker numbers and their process ids (for the log and for operators). */
  get workers(): Array<{ readonly worker: number; readonly pid: number | undefined }> {
    return this.slots.map((s) => ({ worker: s.n, pid: s.worker?.process.pid }));
  }

  /** SIGHUP: every running worker re-reads the config file and its certificates. */
  reload(): void {
    this.ticketKey = randomBytes(TICKET_KEY_BYTES);
    const ticketKey = this.ticketKey.toString('base64');
    for (const s of this.slots) if (s.ready) s.peer?.note({ op: 'reload', ticketKey });
  }

  /**
   * SIGTERM: every worker drains (now: cuts its sessions at once) and exits;
   * resolves 0 when all of them stopped cleanly, 1 otherwise. Calling it
   * again (a second signal) passes `now` on.
   */
  stop(now = false): Promise<number> {
    const first = !this.stopping;
    this.stopping = true;
    for (const s of this.slots) {
      clearTimeout(s.timer);
      s.timer = undefined;
      const w = s.worker;
      if (!w) continue;
      // A channel already gone: the signal says the same.
      if (!s.peer?.note({ op: 'stop', now })) w.process.kill('SIGTERM');
    }
    if (!first) return this.exited;
    this.exited = (async () => {
      if (this.slots.some((s) => s.worker)) await new Promise<void>((r) => (this.allExited = r));
      await this.failures.close();
      await this.adminServer?.close();
      return this.cleanStops ? 0 : 1;
    })();
    return this.exited;
  }

  private fork(slot: Slot, onFirstReady?: () => void): void {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.n) });
    const peer: PrimaryEnd = new IpcPeer({
      // With a callback, a send that fails late (the worker died meanwhile: EPIPE) is reported there, not as an unheard 'error'.
      send: (m) => worker.isConnected() && worker.send(m, undefined, (err) => err && this.opts.log.debug({ worker: slot.n, err: err.message }, 'message to a worker not delivered')),
      onRequest: (body: WorkerRequest) => this.answer(slot, body),
      onNote: (body: WorkerNote) => {
        if (body.op === 'release') this.addressCounts.release(body.lease);
        else this.onReady(slot, body.listeners, onFirstReady);
      },
    });
    slot.worker = worker;
    slot.peer = peer;
    slot.ready = false;
    worker.on('message', (m: unknown) => peer.handle(m));
    worker.once('exit', (code, signal) => this.onExit(slot, worker, code, signal));
    // The exit that follows is what counts (logged and replaced there).
    worker.on('error', (err: Error) => this.opts.log.debug({ worker: slot.n, err: err.message }, 'worker process error'));
  }

  private onReady(slot: Slot, listeners: readonly BoundListener[], onFirstReady: (() => void) | undefined): void {
    slot.ready = true;
    slot.listeners = listeners;
    slot.backoffMs = RESTART_BACKOFF_MS;
    this.opts.log.info({ worker: slot.n, pid: slot.worker?.process.pid }, 'worker ready');
    onFirstReady?.();
    // Asked to stop while it was starting.
    if (this.stopping) slot.peer?.note({ op: 'stop', now: false });
  }

  private onExit(slot: Slot, worker: Worker, code: number, signal: string): void {
    if (slot.worker !== worker) return;
    const wasReady = slot.ready;
    slot.peer?.close('worker exited');
    slot.worker = undefined;
    slot.peer = undefined;
    slot.ready = false;
    const freed = this.addressCounts.releaseOwner(slot.n);
    const pid = worker.process.pid;
    if (this.stopping) {
      if (code !== 0) this.cleanStops = false;
      this.opts.log.info({ worker: slot.n, pid, code, signal }, 'worker stopped');
      if (this.slots.every((s) => !s.worker)) this.allExited?.();
      return;
    }
    if (this.startFailed) {
      this.opts.log.error({ worker: slot.n, pid, code, signal }, 'worker exited during start-up');
      this.startFailed(new Error(`worker ${slot.n} (pid ${pid}) exited during start-up (code ${code}${signal ? `, ${signal}` : ''})`));
      return;
    }
    this.metrics.workerRestarted();
    // Ready before: replace it at once. Dying before it got ready: back off, doubling, so a crash loop stays slow.
    const delay = wasReady ? 0 : slot.backoffMs;
    if (!wasReady) slot.backoffMs = Math.min(slot.backoffMs * 2, RESTART_BACKOFF_MAX_MS);
    this.opts.log.error({ worker: slot.n, pid, code, signal, slotsFreed: freed, restartInMs: delay }, 'worker exited unexpectedly; starting a new one');
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.stopping) this.fork(slot);
    }, delay);
  }

  private async answer(slot: Slot, body: WorkerRequest): Promise<unknown> {
    if (body.op === 'hello') return { ticketKey: this.ticketKey.toString('base64') } satisfies Hello;
    if (body.op === 'throttle') return serveFailureStoreCall(this.failures, body.call);
    return this.addressCounts.acquire(body.key, body.max, slot.n) ?? null;
  }

  /** Every running worker's metrics, summed; a worker that does not answer is left out (and logged). */
  private async renderMetrics(): Promise<string> {
    const snapshots = await Promise.all(
      this.slots.map(async (s) => {
        if (!s.ready || !s.peer) return undefined;
        try {
          return (await s.peer.request({ op: 'metrics' }, ADMIN_ANSWER_MS)) as MetricsSnapshot;
        } catch (err) {
          this.opts.log.warn({ worker: s.n, err: (err as Error).message }, 'metrics: worker did not answer; left out of this scrape');
          return undefined;
        }
      }),
    );
    return this.metrics.render(snapshots.filter((x): x is MetricsSnapshot => x !== undefined));
  }

  /** Ready when every worker is: one check per worker, with its own failing checks as the detail. */
  async readiness(): Promise<Readiness> {
    const checks: ReadinessCheck[] = [];
    if (this.stopping) checks.push({ name: 'draining', ok: false, detail: 'shutting down' });
    const perWorker = await Promise.all(this.slots.map((s) => this.workerReadiness(s)));
    checks.push(...perWorker);
    return { ready: checks.every((c) => c.ok), checks };
  }

  private async workerReadiness(s: Slot): Promise<ReadinessCheck> {
    const name = `worker ${s.n}`;
    if (!s.peer || !s.ready) return { name, ok: false, detail: s.worker ? 'starting' : 'not running' };
    try {
      const r = (await s.peer.request({ op: 'readiness' }, ADMIN_ANSWER_MS)) as Readiness;
      if (r.ready) return { name, ok: true };
      const reasons = r.checks.filter((c) => !c.ok).map((c) => (c.detail ? `${c.name}: ${c.detail}` : c.name));
      return { name, ok: false, detail: reasons.join('; ') };
    } catch (err) {
      return { name, ok: false, detail: (err as Error).message };
    }
  }
}
