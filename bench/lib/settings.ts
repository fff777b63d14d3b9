/**
 * Every benchmark setting, typed, with its default in one place
 * (bench/README.md#settings). The environment carries only what an operator
 * really needs:
 *
 *  - BENCH_PARTS    which parts `npm run bench` runs: main,kerberos,compare (default all)
 *  - BENCH_RUNS     runs per figure (default 5): precision against time
 *  - BENCH_QUICK=1  a trial run: one short run of everything at low concurrency (figures not for publishing)
 *  - BENCH_SETTINGS JSON merged over the defaults for anything else,
 *                   e.g. '{"compare":{"idleSessions":2000}}'; checked against the defaults' types
 *
 * The same settings drive `npm run loadtest` (the `hostile` section).
 */

export type Part = 'main' | 'kerberos' | 'compare';
export const PARTS: readonly Part[] = ['main', 'kerberos', 'compare'];

export interface BenchSettings {
  readonly parts: readonly Part[];
  /** Runs per figure, interleaved across paths; medians reported. */
  readonly runs: number;
  readonly quick: boolean;
  /** Popgate against direct Dovecot access (bench/run.ts -> results/latest.md). */
  readonly main: {
    readonly loginSeconds: number;
    readonly concurrencies: readonly number[];
    /** Size of the big message Dovecot serves. */
    readonly bigBytes: number;
    /** RETRs per session in the sustained pass (also where popgate's CPU per GB is measured). */
    readonly streamRetrs: number;
  };
  /** KPOP / GSSAPI (bench/kerberos.ts), against the in-memory backend. */
  readonly kerberos: {
    readonly seconds: number;
    readonly concurrencies: readonly number[];
  };
  /** Side by side with nginx (bench/compare/ -> results/compare.md). */
  readonly compare: {
    readonly loginSeconds: number;
    /**
     * Steady-state warm-up, untimed, per path and concurrency: windows of this
     * many seconds, repeated until the proxy CPU per login of two consecutive
     * windows differs by at most `warmupTolerance` (or by less than /proc's
     * resolution, 2 clock ticks ÷ the window's logins), at most
     * `warmupMaxWindows` windows (then the cell is reported as not steady).
     */
    readonly warmupWindowSeconds: number;
    /** Relative difference (0.05 = 5 %) of two consecutive windows' proxy CPU per login that counts as steady. */
    readonly warmupTolerance: number;
    /** At least 2 (two windows are compared). */
    readonly warmupMaxWindows: number;
    readonly concurrencies: readonly number[];
    /**
     * The credentials-cache and workers rows of the fast-backend login scenario
     * (popgate-http-warm, popgate-file-warm, popgate-http-auto) run only at the
     * concurrencies >= this one (the cold popgate rows and everything else run at all).
     */
    readonly extraRowsMinConcurrency: number;
    /** Dovecot's stock pop3-login (a process per connection, process_limit 100) only queues at 256. */
    readonly dovecotConcurrencies: readonly number[];
    /** Concurrency of the TLS-resumption rows; 0 = none. */
    readonly resumeConcurrency: number;
    /** RETRs per relay run. */
    readonly retrs: number;
    readonly bigBytes: number;
    readonly statSamples: number;
    /** Capped by RLIMIT_NOFILE; 0 = skip. */
    readonly idleSessions: number;
    readonly idleConcurrency: number;
    /** popgate runs with --cpu-prof (profiles kept in a temp dir named in the report). */
    readonly cpuProf: boolean;
  };
  /** The hostile load test (bench/hostile-load.ts -> results/hostile-load.md). */
  readonly hostile: {
    readonly slowloris: number;
    readonly bruteforce: number;
    /** Normal-client runs alone, and at least as many under attack. */
    readonly runs: number;
    /** The attack lasts at least this long: past popgate's 60 s preAuthTimeout, so its closes are seen. */
    readonly minAttackSeconds: number;
  };
}

export const DEFAULTS: BenchSettings = {
  parts: PARTS,
  runs: 5,
  quick: false,
  main: { loginSeconds: 3, concurrencies: [1, 8], bigBytes: 5_380_000, streamRetrs: 20 },
  kerberos: { seconds: 3, concurrencies: [1, 32] },
  compare: {
    loginSeconds: 1.25,
    warmupWindowSeconds: 1,
    warmupTolerance: 0.05,
    warmupMaxWindows: 6,
    concurrencies: [1, 32, 256],
    extraRowsMinConcurrency: 32,
    dovecotConcurrencies: [1, 32],
    resumeConcurrency: 32,
    retrs: 4,
    bigBytes: 50_000_000,
    statSamples: 2000,
    idleSessions: 10_000,
    idleConcurrency: 64,
    cpuProf: false,
  },
  hostile: { slowloris: 1000, bruteforce: 1000, runs: 20, minAttackSeconds: 75 },
};

/** BENCH_QUICK=1: every part once, briefly, at low concurrency (a smoke run; about 2 minutes for `npm run bench`). */
const QUICK = {
  runs: 1,
  main: { loginSeconds: 0.5, concurrencies: [1, 4], streamRetrs: 2 },
  kerberos: { seconds: 0.5, concurrencies: [1, 4] },
  compare: {
    loginSeconds: 0.5,
    warmupWindowSeconds: 0.3,
    warmupMaxWindows: 4,
    concurrencies: [1, 4],
    extraRowsMinConcurrency: 4,
    dovecotConcurrencies: [1],
    resumeConcurrency: 4,
    retrs: 1,
    bigBytes: 5_000_000,
    statSamples: 200,
    idleSessions: 200,
    idleConcurrency: 16,
  },
  hostile: { slowloris: 40, bruteforce: 40, runs: 3, minAttackSeconds: 0 },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** `over` merged into `base`, key by key; each value must have the type of the default it replaces. */
function merge<T>(base: T, over: Json, where: string): T {
  if (typeof over !== 'object' || over === null || Array.isArray(over)) throw new Error(`${where} must be an object`);
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    const at = `${where}.${k}`;
    if (!(k in out)) throw new Error(`${at}: no such setting (see bench/lib/settings.ts)`);
    const d = out[k];
    if (Array.isArray(d)) {
      if (!Array.isArray(v) || v.some((x) => typeof x !== typeof d[0])) throw new Error(`${at} must be a list like ${JSON.stringify(d)}`);
      out[k] = v;
    } else if (typeof d === 'object' && d !== null) {
      out[k] = merge(d, v, at);
    } else {
      if (typeof v !== typeof d) throw new Error(`${at} must be a ${typeof d}, got ${JSON.stringify(v)}`);
      if (typeof v === 'number' && (!Number.isFinite(v) || v < 0)) throw new Error(`${at} must be a number >= 0`);
      out[k] = v;
    }
  }
  return out as T;
}

const yes = (v: string | undefined): boolean => v !== undefined && !['', '0', 'false', 'no', 'off'].includes(v.toLowerCase());

/** The settings for this run: defaults, then BENCH_QUICK, BENCH_RUNS, BENCH_PARTS and BENCH_SETTINGS (in that order). */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): BenchSettings {
  let s = DEFAULTS;
  if (yes(env['BENCH_QUICK'])) s = merge(s, { ...(QUICK as unknown as Record<string, Json>), quick: true }, 'BENCH_QUICK');
  const runs = env['BENCH_RUNS'];
  if (runs !== undefined && runs !== '') {
    const n = Number(runs);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`BENCH_RUNS must be an integer >= 1, got ${JSON.stringify(runs)}`);
    s = { ...s, runs: n };
  }
  const parts = env['BENCH_PARTS'];
  if (parts !== undefined && parts.trim() !== '') {
    const list = parts.split(',').map((p) => p.trim());
    const bad = list.filter((p) => !(PARTS as readonly string[]).includes(p));
    if (bad.length > 0 || list.length === 0) throw new Error(`BENCH_PARTS: unknown part(s) ${bad.join(', ')}; choose from ${PARTS.join(',')}`);
    s = { ...s, parts: PARTS.filter((p) => list.includes(p)) };
  }
  const json = env['BENCH_SETTINGS'];
  if (json !== undefined && json.trim() !== '') {
    let parsed: Json;
    try {
      parsed = JSON.parse(json) as Json;
    } catch (err) {
      throw new Error(`BENCH_SETTINGS is not JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    s = merge(s, parsed, 'BENCH_SETTINGS');
  }
  for (const list of [s.main.concurrencies, s.kerberos.concurrencies, s.compare.concurrencies, s.compare.dovecotConcurrencies]) {
    if (list.length === 0 || list.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error(`concurrencies must be non-empty lists of integers >= 1, got ${JSON.stringify(list)}`);
  }
  const c = s.compare;
  if (!Number.isSafeInteger(c.warmupMaxWindows) || c.warmupMaxWindows < 2) throw new Error(`compare.warmupMaxWindows must be an integer >= 2 (two windows are compared), got ${c.warmupMaxWindows}`);
  if (!(c.warmupWindowSeconds > 0)) throw new Error(`compare.warmupWindowSeconds must be > 0, got ${c.warmupWindowSeconds}`);
  return s;
}

/** The settings as one line for a report: only what differs from the defaults. */
export function settingsLine(s: BenchSettings): string {
  const diff = (a: unknown, b: unknown, at: string, out: string[]): void => {
    if (typeof a === 'object' && a !== null && !Array.isArray(a)) {
      for (const k of Object.keys(a)) diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k, out);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${at}=${JSON.stringify(a)}`);
  };
  const out: string[] = [];
  diff(s, DEFAULTS, '', out);
  return out.length === 0 ? 'the defaults' : out.join(', ');
}
