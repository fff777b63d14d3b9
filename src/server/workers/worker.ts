/**
 * The worker's side of `workers` > 1: a normal gateway (src/cli/serve.ts runs
 * it as with one process) with hooks towards the primary. The throttle's
 * memory store and the per-address slots live in the primary, so they hold
 * across workers; the admin listener is the primary's, which asks each worker
 * for its metrics and readiness; stop and reload come from the primary.
 */
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { RemoteFailureStore, useSharedMemoryStore, type FailureStoreAnswer } from '../../auth/throttle/index.js';
import type { Readiness } from '../../observability/admin-server.js';
import type { RegistryMetrics } from '../../observability/metrics.js';
import { RemoteAddressCounter } from '../address-limit.js';
import type { Gateway, GatewayOptions } from '../gateway.js';
import { TICKET_KEY_BYTES, useSharedTicketKeys } from '../tls-context.js';
import { IpcPeer, type Hello, type WorkerEnd } from './ipc.js';

/** The environment variable that gives a worker its number (1..N). */
export const WORKER_ENV = 'POPGATE_WORKER';

/** A throttle call waits this long for the primary, then fails open. */
export const THROTTLE_TIMEOUT_MS = 1_000;
/** A per-address slot waits this long for the primary, then is counted in this worker. */
export const SLOT_TIMEOUT_MS = 500;

export interface WorkerControl {
  /** Drain (now: cut sessions at once), as SIGTERM does. */
  stop(now: boolean): void;
  /** Re-read the config file and certificates, as SIGHUP does. */
  reload(): void;
}

/** How long a starting worker waits for the primary's hello. */
const HELLO_TIMEOUT_MS = 5_000;

function shareTicketKey(base64: string): void {
  const key = Buffer.from(base64, 'base64');
  // A malformed key would break every TLS load: keep per-load random keys instead.
  useSharedTicketKeys(key.length === TICKET_KEY_BYTES ? [key] : undefined);
}

const STARTING: Readiness = { ready: false, checks: [{ name: 'worker', ok: false, detail: 'starting' }] };

export class WorkerLink {
  private readonly peer: WorkerEnd;
  private gateway: Gateway | undefined;
  private metrics: RegistryMetrics | undefined;
  private control: WorkerControl | undefined;
  /** A stop that came before the gateway was up: carried out once it is. */
  private earlyStop: boolean | undefined;
  private log: Logger | undefined;
  /** The primary did not answer a slot request: logged once until it answers again. */
  private slotsLocal = false;

  private constructor(readonly number: number) {
    this.peer = new IpcPeer({
      send: (m) => process.send?.(m) ?? false,
      onRequest: (body) => this.answer(body.op),
      onNote: (body) => {
        if (body.op === 'reload') {
          shareTicketKey(body.ticketKey);
          this.control?.reload();
        } else if (this.control) this.control.stop(body.now);
        else this.earlyStop = (this.earlyStop ?? false) || body.now;
      },
    });
    process.on('message', (m) => this.peer.handle(m));
    // The primary is gone: nobody will replace, reload or stop us; drain and exit.
    process.once('disconnect', () => {
      this.peer.close('primary gone');
      if (this.control) this.control.stop(false);
      else this.earlyStop ??= false;
    });
    useSharedMemoryStore(
      () => new RemoteFailureStore((call) => this.peer.request({ op: 'throttle', call }, THROTTLE_TIMEOUT_MS) as Promise<FailureStoreAnswer>),
    );
  }

  /** This process's link when it is a cluster worker forked by the primary; else undefined. */
  static fromEnvironment(): WorkerLink | undefined {
    const n = Number(process.env[WORKER_ENV]);
    if (!cluster.isWorker || !Number.isInteger(n) || n < 1) return undefined;
    return new WorkerLink(n);
  }

  /**
   * Before the gateway starts: what the primary hands every worker (the TLS
   * session ticket key). Without an answer the listeners make their own keys
   * (resumption then only works on the worker that issued the ticket).
   */
  async hello(log: Logger): Promise<void> {
    try {
      const hello = (await this.peer.request({ op: 'hello' }, HELLO_TIMEOUT_MS)) as Hello;
      shareTicketKey(hello.ticketKey);
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'no TLS ticket key from the primary; this worker makes its own');
    }
  }

  /** The gateway hooks: no admin listener of its own, per-address slots from the primary. */
  gatewayOptions(log: Logger, metrics: RegistryMetrics | undefined): GatewayOptions {
    this.log = log;
    this.metrics = metrics;
    return {
      ...(metrics ? { metrics } : {}),
      serveAdmin: false,
      addressSlots: (max) =>
        new RemoteAddressCounter(
          max,
          {
            acquire: async (key) => {
              const lease = await this.peer.request({ op: 'slot', key, max }, SLOT_TIMEOUT_MS, (late) => {
                // Granted after we gave up and counted locally: give it back.
                if (typeof late === 'number') this.peer.note({ op: 'release', lease: late });
              });
              if (this.slotsLocal) {
                this.slotsLocal = false;
                this.log?.info('per-address limit: the primary answers again; counting across workers');
              }
              return typeof lease === 'number' ? lease : undefined;
            },
            release: (lease) => void this.peer.note({ op: 'release', lease }),
          },
          (err) => {
            if (this.slotsLocal) return;
            this.slotsLocal = true;
            this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'per-address limit: the primary does not answer; counting in this worker only');
          },
        ),
    };
  }

  /** The gateway is up: answer for it, tell the primary, and carry out a stop that came early. */
  attach(gateway: Gateway, control: WorkerControl): void {
    this.gateway = gateway;
    this.control = control;
    this.peer.note({ op: 'ready', listeners: gateway.bound });
    if (this.earlyStop !== undefined) control.stop(this.earlyStop);
  }

  /** The channel to the primary closes, so the event loop can end once the gateway has stopped. */
  detach(): void {
    this.peer.flush();
    this.peer.close('worker stopping');
    if (process.connected) process.disconnect();
  }

  private async answer(op: 'metrics' | 'readiness'): Promise<unknown> {
    if (op === 'metrics') return this.metrics ? this.metrics.snapshot() : [];
    return this.gateway ? this.gateway.readiness() : STARTING;
  }
}
