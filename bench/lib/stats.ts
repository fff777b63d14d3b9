/** Small descriptive statistics for benchmark runs. */

export interface Summary {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new Error('stats: no values');
  for (const v of values) {
    if (!Number.isFinite(v)) throw new Error(`stats: non-finite value ${v}`);
  }
  return [...values].sort((a, b) => a - b);
}

/** The median (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The q-quantile (0..1) by linear interpolation between closest ranks. */
export function quantile(values: readonly number[], q: number): number {
  if (q < 0 || q > 1) throw new RangeError('quantile: q must lie in 0..1');
  const s = sorted(values);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function summarize(values: readonly number[]): Summary {
  const s = sorted(values);
  return {
    n: s.length,
    median: median(s),
    min: s[0]!,
    max: s[s.length - 1]!,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

// ------------------------------------------------------------------ report formatting

/** `n` with `d` decimals; 'n/a' when absent or not finite (a figure that could not be measured). */
export const f = (n: number | undefined, d = 1): string => (n !== undefined && Number.isFinite(n) ? n.toFixed(d) : 'n/a');
/** 12345.6 -> "12,346" */
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
/** "min–max" of a summary. */
export const range = (s: Summary, d = 1): string => `${f(s.min, d)}–${f(s.max, d)}`;
export const intRange = (s: Summary): string => `${int(s.min)}–${int(s.max)}`;
