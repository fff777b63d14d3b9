/**
 * The one load loop of every benchmark: `concurrency` workers each run `op`
 * back to back until the duration is up and/or `total` operations have been
 * started (an operation under way at the deadline is finished and counted).
 */
import { performance } from 'node:perf_hooks';

export interface LoadOptions {
  readonly concurrency: number;
  /** Stop starting operations after this long (default: no deadline, `total` must be set). */
  readonly durationMs?: number;
  /** Stop after this many operations were started (e.g. single-use tokens). */
  readonly total?: number;
  /**
   * false (default): the first failure stops every worker and is thrown.
   * true: failures are counted; a worker backs off 10 ms after one and gives
   * up once it saw more than 20 failures and more failures than successes.
   */
  readonly tolerateFailures?: boolean;
}

export interface LoadResult {
  /** Operations that succeeded. */
  readonly ops: number;
  readonly failures: number;
  /** The first failure's message (tolerateFailures only). */
  readonly firstError: string | undefined;
  /** From the start to the end of the last operation. */
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Duration of each successful operation, ms. */
  readonly latenciesMs: readonly number[];
  /** Ended because `total` was reached before the deadline. */
  readonly exhausted: boolean;
}

/** `op(i, worker)`: `i` counts operations from 0, `worker` is 0..concurrency-1 (for per-worker state such as a TLS session). */
export async function runLoad(opts: LoadOptions, op: (i: number, worker: number) => Promise<void>): Promise<LoadResult> {
  const { concurrency, total, durationMs } = opts;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be >= 1');
  if (durationMs === undefined && total === undefined) throw new RangeError('runLoad needs durationMs or total');
  const start = performance.now();
  const deadline = durationMs === undefined ? Infinity : start + durationMs;
  const latenciesMs: number[] = [];
  let next = 0;
  let failures = 0;
  let failure: unknown;
  let exhausted = false;
  const worker = async (w: number): Promise<void> => {
    while ((opts.tolerateFailures || failure === undefined) && performance.now() < deadline) {
      if (total !== undefined && next >= total) {
        exhausted = true;
        return;
      }
      const i = next++;
      const t0 = performance.now();
      try {
        await op(i, w);
        latenciesMs.push(performance.now() - t0);
      } catch (err) {
        failures++;
        failure ??= err;
        if (!opts.tolerateFailures) return;
        // Do not spin on a dead target.
        if (failures > 20 && failures > latenciesMs.length) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total ?? concurrency) }, (_, w) => worker(w)));
  if (failure !== undefined && !opts.tolerateFailures) throw failure;
  const elapsedMs = performance.now() - start;
  return {
    ops: latenciesMs.length,
    failures,
    firstError: failure === undefined ? undefined : failure instanceof Error ? failure.message : String(failure),
    elapsedMs,
    perSecond: (latenciesMs.length * 1000) / elapsedMs,
    latenciesMs,
    exhausted,
  };
}
