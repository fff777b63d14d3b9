/**
 * Instruments loaded into a measured Node child only by the benchmarks
 * (`node --import dist-bench/bench/lib/preload.js ...`: popgate, the Node
 * TLS pipe); the measured code is unchanged. Answers over the IPC channel
 * (unref'd: it never keeps the child alive), read by `Instruments` in
 * lib/process.ts:
 *
 *   { cmd: 'eld-reset' } -> { reply: 'eld-reset' }                 (start of a run)
 *   { cmd: 'eld-read' }  -> { reply: 'eld-read', ...EldFigures }   (end of a run)
 *   { cmd: 'mem' }       -> { reply: 'mem', ...MemFigures }        (after two full GCs with --expose-gc,
 *                                                                   so heapUsed counts live objects only)
 *
 * Event-loop delay: perf_hooks.monitorEventLoopDelay records the interval
 * between the callbacks of a repeating libuv timer of RESOLUTION_MS, i.e.
 * RESOLUTION_MS + the delay; the figures have RESOLUTION_MS subtracted
 * (floored at 0). The libuv clock has 1 ms granularity, so single samples
 * are only good to a fraction of a ms. The histogram starts at the first
 * 'eld-reset' only: its 1 ms timer costs CPU that the comparison would
 * otherwise bill to popgate. Inactive in node:cluster workers (popgate with
 * `workers` > 1): the instruments answer for the primary only.
 */
import cluster from 'node:cluster';
import { monitorEventLoopDelay } from 'node:perf_hooks';

export const RESOLUTION_MS = 1;

export interface EldFigures {
  /** Samples (timer callbacks) since the last reset. */
  readonly count: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

export type MemFigures = Readonly<NodeJS.MemoryUsage>;

/** An event-loop delay histogram (also used in-process by krb-verify-micro.ts). */
export function eldMonitor(): { readonly histogram: ReturnType<typeof monitorEventLoopDelay>; figures(): EldFigures } {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  const delay = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  return {
    histogram,
    figures: () =>
      histogram.count === 0
        ? { count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0 }
        : {
            count: histogram.count,
            p50Ms: delay(histogram.percentile(50)),
            p90Ms: delay(histogram.percentile(90)),
            p99Ms: delay(histogram.percentile(99)),
            maxMs: delay(histogram.max),
            meanMs: delay(histogram.mean),
          },
  };
}

// Only in the process the benchmark started: a popgate cluster worker (workers > 1) inherits --import
// through execArgv, but its IPC channel is node:cluster's, which must stay ref'd (the worker waits on it).
const send = cluster.isWorker ? undefined : process.send?.bind(process);
if (send) {
  let eld: ReturnType<typeof eldMonitor> | undefined;
  process.on('message', (m: unknown) => {
    const cmd = typeof m === 'object' && m !== null ? (m as { cmd?: unknown }).cmd : undefined;
    if (cmd === 'eld-reset') {
      if (eld) eld.histogram.reset();
      else eld = eldMonitor();
      send({ reply: cmd });
    } else if (cmd === 'eld-read') {
      send({ reply: cmd, ...(eld ?? eldMonitor()).figures() });
    } else if (cmd === 'mem') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      send({ reply: cmd, ...process.memoryUsage() });
    }
  });
  process.channel?.unref();
}
