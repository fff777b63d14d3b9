/**
 * The clock code that waits takes, so tests can see and drive its delays
 * instead of sleeping. Bottom of the import graph: no dependency.
 */

/** Reading the time and setting one-shot timers. */
export interface Clock {
  /** Milliseconds since the epoch (only differences matter). */
  now(): number;
  /** Calls `fn` once after `ms`; returns the function that cancels it (idempotent). */
  setTimer(fn: () => void, ms: number): () => void;
}

/** The real clock: Date.now and setTimeout. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

/** The real clock for housekeeping timers: they do not keep the process alive (unref). */
export const unrefClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
