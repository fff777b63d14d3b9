/**
 * Shared plumbing for the property-based fuzz suites (fast-check).
 *
 * Every property is declared with `fuzzIt`, which runs `fc.assert` with
 *
 * - `numRuns` from FUZZ_RUNS (default DEFAULT_RUNS: the small sample `npm test`
 *   and CI run on every change), per property;
 * - `seed` from FUZZ_SEED (default DEFAULT_SEED, so a plain run is
 *   reproducible; `FUZZ_SEED=random` draws one). fast-check prints the seed and
 *   the shrink path of a counterexample on failure; replay it with
 *   `FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz/<file>`.
 *
 * FUZZ_STATS=1 prints how often each property reached its interesting outcomes.
 *
 * `scripts/fuzz.sh` (`npm run fuzz`) counts the `fuzzIt(` declarations in the
 * `*.fuzz.test.ts` files to divide its 1,000,000 cases among them, and reads
 * back FUZZ_REPORT (one `name<TAB>runs<TAB>ms` line per finished property) to
 * print what actually ran. Keep one `fuzzIt(` call per line start.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { it } from 'vitest';

export const DEFAULT_RUNS = 2000;
export const DEFAULT_SEED = 20240611;

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

function resolveSeed(): number {
  const raw = process.env.FUZZ_SEED;
  if (raw === 'random') return (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  return envInt('FUZZ_SEED') ?? DEFAULT_SEED;
}

/** Cases per property. */
export const FUZZ_RUNS = Math.max(1, envInt('FUZZ_RUNS') ?? DEFAULT_RUNS);
/** Resolved once per worker: with FUZZ_SEED=random, scripts/fuzz.sh draws the seed itself and passes a number. */
export const FUZZ_SEED = resolveSeed();
const FUZZ_PATH = process.env.FUZZ_PATH || undefined;
const FUZZ_REPORT = process.env.FUZZ_REPORT || undefined;

/** vitest's 30 s default suits the sample; a long run gets a day. */
const TIMEOUT_MS = FUZZ_RUNS > DEFAULT_RUNS ? 24 * 3600 * 1000 : undefined;

/**
 * Counts how often a property's cases reach the outcomes that matter, so a
 * generator that drifts away from the deep paths fails the suite instead of
 * passing vacuously. Every name registered with `expect` must be hit at least
 * once per run (the sample's 2,000 cases hit each many times).
 */
export class Reached {
  private readonly counts = new Map<string, number>();
  constructor(expected: readonly string[]) {
    for (const k of expected) this.counts.set(k, 0);
  }

  hit(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  /** The expected names never hit. */
  missing(): string[] {
    return [...this.counts].filter(([, n]) => n === 0).map(([k]) => k);
  }

  toString(): string {
    return [...this.counts].map(([k, n]) => `${k}=${n}`).join(' ');
  }
}

/** One property as one vitest test, FUZZ_RUNS cases; afterwards `reached()` must have every expected outcome hit. */
export function fuzzIt<Ts extends [unknown, ...unknown[]]>(name: string, property: fc.IProperty<Ts>, reached?: () => Reached): void {
  const numRuns = FUZZ_RUNS;
  it(
    name,
    () => {
      const started = performance.now();
      fc.assert(property, {
        numRuns,
        seed: FUZZ_SEED,
        ...(FUZZ_PATH !== undefined ? { path: FUZZ_PATH } : {}),
      });
      const ms = Math.round(performance.now() - started);
      if (reached !== undefined && FUZZ_PATH === undefined) {
        const r = reached();
        const missing = r.missing();
        if (missing.length > 0) throw new Error(`the generators never reached: ${missing.join(', ')} (${r.toString()})`);
        if (process.env.FUZZ_STATS) console.log(`${name}: ${r.toString()}`);
      }
      if (FUZZ_REPORT !== undefined) appendFileSync(FUZZ_REPORT, `${name}\t${numRuns}\t${ms}\n`);
    },
    TIMEOUT_MS,
  );
}

/** A broken invariant (cheap enough for hot loops, unlike `expect`). */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

/** Throws InvariantError with `message` (a string or a thunk, built only on failure) unless `cond`. */
export function invariant(cond: boolean, message: string | (() => string)): asserts cond {
  if (!cond) throw new InvariantError(typeof message === 'string' ? message : message());
}

/** A short printable rendering of bytes for failure messages. */
export function show(b: Buffer | string, max = 120): string {
  const s = typeof b === 'string' ? b : b.toString('latin1');
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}...(${s.length})` : s);
}

// ---- byte-stream arbitraries shared by the suites ---------------------------

export type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly byte: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly op: 'delete'; readonly at: number; readonly len: number }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'duplicate'; readonly at: number; readonly len: number; readonly to: number };

/** Bytes that matter to the parsers: NUL, CR, LF, space, `*`, `=`, `+`, `.`, high bit, UTF-8 lead, 0x6e (AP-REQ tag), DEL. */
export const SPECIAL_BYTES = [0x00, 0x0d, 0x0a, 0x20, 0x2a, 0x3d, 0x2b, 0x2e, 0xff, 0xc3, 0x80, 0x6e, 0x7f, 0x09];

export const specialByteArb: fc.Arbitrary<number> = fc.oneof(fc.constantFrom(...SPECIAL_BYTES), fc.integer({ min: 0, max: 255 }));

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: specialByteArb }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.array(specialByteArb, { minLength: 1, maxLength: 6 }).map((a) => Uint8Array.from(a)),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }), to: fc.nat() }),
);

/** Applies mutations in order; positions are taken modulo the current length, so any mutation applies to any input. */
export function mutate(input: Buffer, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const pos = (n: number, extra = 0): number => n % (b.length + extra);
    switch (m.op) {
      case 'flip':
        if (b.length > 0) {
          const i = pos(m.at);
          b[i] = (b[i] as number) ^ (1 << m.bit);
        }
        break;
      case 'set':
        if (b.length > 0) b[pos(m.at)] = m.byte;
        break;
      case 'insert': {
        const i = pos(m.at, 1);
        b = Buffer.concat([b.subarray(0, i), m.bytes, b.subarray(i)]);
        break;
      }
      case 'delete':
        if (b.length > 0) {
          const i = pos(m.at);
          b = Buffer.concat([b.subarray(0, i), b.subarray(i + m.len)]);
        }
        break;
      case 'truncate':
        b = b.subarray(0, pos(m.at, 1));
        break;
      case 'duplicate':
        if (b.length > 0) {
          const i = pos(m.at);
          const piece = Buffer.from(b.subarray(i, i + m.len));
          const to = pos(m.to, 1);
          b = Buffer.concat([b.subarray(0, to), piece, b.subarray(to)]);
        }
        break;
    }
  }
  return b;
}

/** How to cut a byte stream into socket reads. */
export interface Chunking {
  /** Cut points, taken modulo (length + 1); duplicates give empty chunks. */
  readonly cuts: readonly number[];
  /** One byte per read (the worst case for reassembly), for streams up to BYTEWISE_MAX bytes. */
  readonly bytewise: boolean;
}

export const chunkingArb: fc.Arbitrary<Chunking> = fc.record({
  cuts: fc.array(fc.nat(), { maxLength: 24 }),
  bytewise: fc.boolean().chain((b) => (b ? fc.nat({ max: 9 }).map((n) => n === 0) : fc.constant(false))),
});

/** Longer streams are cut at `cuts` even when `bytewise` (a 100 KiB stream one byte at a time is slow, not interesting). */
export const BYTEWISE_MAX = 4096;

/** Splits `bytes` into chunks (empty chunks included when cut points coincide). Concatenating them gives `bytes` back. */
export function chunk(bytes: Buffer, how: Chunking): Buffer[] {
  if (how.bytewise && bytes.length <= BYTEWISE_MAX) return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
  const cuts = how.cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(bytes.subarray(from, c));
    from = c;
  }
  out.push(bytes.subarray(from));
  return out;
}

/** A cyclic stream of host decisions drawn from a shrinkable array. */
export class Choices {
  private i = 0;
  constructor(private readonly values: readonly number[]) {}

  /** The next raw value. */
  next(): number {
    const v = this.values.length === 0 ? 0 : (this.values[this.i % this.values.length] as number);
    this.i++;
    // Mix in the position so a short array still yields varied decisions.
    return (Math.imul(v ^ Math.imul(this.i, 0x9e3779b1), 0x85ebca6b) ^ v) >>> 0;
  }

  /** True with probability about p. */
  chance(p: number): boolean {
    return (this.next() % 10_000) / 10_000 < p;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.below(items.length)] as T;
  }

  /** `n` pseudo-random bytes (deterministic in the choice stream). */
  bytes(n: number): Buffer {
    let x = this.next() | 1;
    const out = Buffer.alloc(n);
    for (let k = 0; k < n; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[k] = x & 0xff;
    }
    return out;
  }
}

export const choicesArb: fc.Arbitrary<readonly number[]> = fc.array(fc.nat(), { minLength: 1, maxLength: 48 });
