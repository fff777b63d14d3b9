/**
 * A Clock for tests: time stands still until the test moves it, and every
 * timer the code under test sets is recorded, so a test asserts on the delay
 * asked for (never on wall-clock time) and decides when it passes.
 */
import { systemClock, type Clock } from '../../src/clock.js';

export interface FakeTimer {
  /** The delay asked for. */
  readonly ms: number;
  /** When it is due on the fake clock. */
  readonly at: number;
  /** Neither fired nor cancelled. */
  readonly pending: boolean;
  /** Runs it now (if still pending), without moving the clock. */
  fire(): void;
}

interface Entry extends FakeTimer {
  pending: boolean;
  readonly fn: () => void;
}

export class FakeClock implements Clock {
  #now: number;
  readonly #timers: Entry[] = [];
  readonly #waiters: Array<() => void> = [];

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const entry: Entry = {
      ms,
      at: this.#now + ms,
      pending: true,
      fn,
      fire: () => {
        if (!entry.pending) return;
        entry.pending = false;
        fn();
      },
    };
    this.#timers.push(entry);
    for (const w of this.#waiters.splice(0)) w();
    return () => {
      entry.pending = false;
    };
  }

  /** Every delay asked for so far, in order (fired, cancelled or pending). */
  get requested(): number[] {
    return this.#timers.map((t) => t.ms);
  }

  /** The timers neither fired nor cancelled, in the order they were set. */
  get pending(): FakeTimer[] {
    return this.#timers.filter((t) => t.pending);
  }

  /** Moves time forward by `ms`, firing the timers that fall due, earliest first. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.pending && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = due.at;
      due.fire();
    }
    this.#now = until;
  }

  /** Resolves with the first pending timer matching `match` (a delay, or a test), as soon as one is set. */
  async nextTimer(match: number | ((t: FakeTimer) => boolean) = () => true): Promise<FakeTimer> {
    const test = typeof match === 'number' ? (t: FakeTimer) => t.ms === match : match;
    for (;;) {
      const found = this.#timers.find((t) => t.pending && test(t));
      if (found) return found;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /**
   * Resolves with the `n`th timer ever set (1-based; fired, cancelled or
   * pending) as soon as it is set: for code that sets several timers of the
   * same delay, one per phase.
   */
  async nthTimer(n: number): Promise<FakeTimer> {
    for (;;) {
      const t = this.#timers[n - 1];
      if (t) return t;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Resolves with the pending timers once at least `n` are pending (checked each time one is set). */
  async whenPending(n: number): Promise<FakeTimer[]> {
    for (;;) {
      const now = this.pending;
      if (now.length >= n) return now;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/**
 * The real clock, recording each delay asked for and each timer that fired:
 * for code that must really wait (a native call, a real KDC), so a test can
 * say "answered before its deadline" without reading the time itself.
 */
export class RecordingClock implements Clock {
  readonly requested: number[] = [];
  readonly fired: number[] = [];

  constructor(private readonly base: Clock = systemClock) {}

  now(): number {
    return this.base.now();
  }

  setTimer(fn: () => void, ms: number): () => void {
    this.requested.push(ms);
    return this.base.setTimer(() => {
      this.fired.push(ms);
      fn();
    }, ms);
  }
}
