/**
 * Loaded into the popgate child by the benchmark only
 * (`node --import dist-bench/bench/eld-preload.js dist/cli/main.js serve`);
 * popgate's own code is unchanged. Measures popgate's event-loop delay from
 * inside its process with perf_hooks.monitorEventLoopDelay and answers the
 * benchmark over the IPC channel:
 *
 *   { cmd: 'eld-reset' } -> { eld: 'reset' }              (start of a run)
 *   { cmd: 'eld-read' }  -> { eld: 'read', ...EldFigures } (end of a run)
 *
 * Node's histogram records the interval between the callbacks of a repeating
 * libuv timer of RESOLUTION_MS, i.e. RESOLUTION_MS + the delay; the figures
 * sent back have RESOLUTION_MS subtracted (floored at 0). The libuv clock has
 * 1 ms granularity, so single samples are only good to a fraction of a ms.
 * The IPC channel is unref'd: it never keeps popgate alive.
 */
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

const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();

const delay = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS);

function figures(): EldFigures {
  const count = histogram.count;
  if (count === 0) return { count, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0 };
  return {
    count,
    p50Ms: delay(histogram.percentile(50)),
    p90Ms: delay(histogram.percentile(90)),
    p99Ms: delay(histogram.percentile(99)),
    maxMs: delay(histogram.max),
    meanMs: delay(histogram.mean),
  };
}

const send = process.send?.bind(process);
if (send) {
  process.on('message', (m: unknown) => {
    const cmd = typeof m === 'object' && m !== null ? (m as { cmd?: unknown }).cmd : undefined;
    if (cmd === 'eld-reset') {
      histogram.reset();
      send({ eld: 'reset' });
    } else if (cmd === 'eld-read') {
      send({ eld: 'read', ...figures() });
    }
  });
  process.channel?.unref();
}
