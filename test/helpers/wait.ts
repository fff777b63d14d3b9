// node:timers/promises, not the global setTimeout: waitFor keeps working in a test that fakes the global timers.
import { setTimeout as pause } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this long; default 15 s. */
  readonly timeoutMs?: number;
  /** Pause between probes; default 50 ms. */
  readonly intervalMs?: number;
  /** Added to the timeout error: the state that never came right. */
  readonly detail?: () => string;
}

/**
 * Polls `probe` until it returns something other than undefined or false;
 * throws naming `what` after the timeout. The one poll loop of the tests:
 * options as an object, or (older callers) timeoutMs and intervalMs.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitOptions | number = {},
  intervalMs?: number,
): Promise<T> {
  const o: WaitOptions = typeof options === 'number' ? { timeoutMs: options, ...(intervalMs !== undefined ? { intervalMs } : {}) } : options;
  const timeoutMs = o.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what} (${timeoutMs} ms)${o.detail ? `: ${o.detail()}` : ''}`);
    }
    await pause(o.intervalMs ?? 50);
  }
}
