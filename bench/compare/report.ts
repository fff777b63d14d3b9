/**
 * bench/results/compare.md and compare-logins.svg from the comparison's results.
 */
import type { KerberosResults } from '../kerberos.js';
import { f, int, median, summarize, type Summary } from '../lib/stats.js';
import type { CompareSettings } from './compare.js';
import type { LoginsResult, RetrResult, StatResult } from './load-worker.js';

export type BackendId = 'fast' | 'dovecot';
export type PathId =
  | 'direct'
  | 'stunnel'
  | 'node-tls'
  | 'popgate-http'
  | 'popgate-http-warm'
  | 'popgate-http-auto'
  | 'popgate-file'
  | 'popgate-file-warm'
  | 'nginx-1'
  | 'nginx-auto'
  | 'nginx-1-nt';

export interface PathMeta {
  readonly id: PathId;
  readonly label: string;
  readonly family: 'baseline' | 'popgate' | 'nginx';
}

export interface LoginCell {
  readonly path: PathId;
  readonly backend: BackendId;
  readonly concurrency: number;
  readonly resume: boolean;
  readonly runs: LoginsResult[];
  /** The steady-state warm-up before the timed runs (absent in compare.json files from before it). */
  warmup?: WarmupRecord;
}

/** How a cell's warm-up went (bench/compare/compare.ts warmUp()). */
export interface WarmupRecord {
  /** Windows run (each settings.warmupWindowSeconds long). */
  readonly windows: number;
  /** Two consecutive windows agreed within the tolerance before warmupMaxWindows. */
  readonly steady: boolean;
  /** Which CPU was compared: the proxy's (the backend's for the direct path, which has no proxy). */
  readonly metric: 'proxy' | 'backend';
  /** That CPU per login, ms, of each window in order. */
  readonly perLoginMs: readonly number[];
  /** Logins of each window. */
  readonly logins: readonly number[];
}

export interface IdleCell {
  readonly path: PathId;
  readonly n: number;
  readonly openMs: number;
  readonly rssBeforeKiB: number;
  readonly rssAfterKiB: number;
  readonly heapBefore: number | undefined;
  readonly heapAfter: number | undefined;
  readonly externalBefore: number | undefined;
  readonly externalAfter: number | undefined;
  readonly fdBefore: number;
  readonly fdAfter: number;
  readonly checked: number;
  readonly broken: number;
  readonly workerRssKiB: number;
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly nodeOpenssl: string;
  readonly nginx: string;
  readonly nginxOpenssl: string;
  readonly stunnel: string;
  readonly stunnelOpenssl: string;
  readonly dovecot: string;
  readonly popgate: string;
  readonly clockTicks: number;
}

export interface CompareResults {
  readonly startedAt: Date;
  readonly totalSeconds: number;
  readonly settings: CompareSettings;
  readonly machine: MachineInfo;
  readonly busyBefore: number;
  readonly paths: readonly PathMeta[];
  readonly tlsSeen: Partial<Record<PathId, string>>;
  readonly bigSize: number;
  readonly logins: readonly LoginCell[];
  readonly relay: ReadonlyArray<{ readonly path: PathId; readonly runs: readonly RetrResult[] }>;
  readonly stat: ReadonlyArray<{ readonly path: PathId; readonly runs: readonly StatResult[] }>;
  readonly idle: readonly IdleCell[];
  readonly kerberos:
    | { readonly source: 'cited' | 'measured'; readonly results: KerberosResults; readonly backend: string }
    | { readonly source: 'skipped' };
  readonly notes: readonly string[];
  /** RLIMIT_NOFILE every process of the comparison ran with. */
  readonly nofile: number;
}

// ------------------------------------------------------------------ helpers

const mr = (s: Summary, d = 1): string => `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
const mrInt = (s: Summary): string => `${int(s.median)} (${int(s.min)}–${int(s.max)})`;
const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}×` : '—');
const yes = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? '**met**' : '**not met**');

const REF: PathId = 'nginx-1';
/** Relay runs with more busy CPU outside our processes than this (s/GB) were disturbed (a quiet run shows about 0). */
const RELAY_REST_LIMIT = 1.0;

function label(r: CompareResults, id: PathId): string {
  return r.paths.find((p) => p.id === id)?.label ?? id;
}

interface LoginStats {
  readonly perSecond: Summary;
  readonly proxy: Summary;
  /** Proxy + its auth service, per login (backend and load generator excluded). */
  readonly system: Summary;
  readonly auth: number;
  readonly backend: number;
  readonly load: number;
  readonly loadPct: number;
  /** Load generator CPU ÷ all busy CPU of the machine, %. */
  readonly loadShare: number;
  readonly rest: number;
  readonly proxyPct: number;
  readonly p50: number;
  readonly p99: number;
  readonly failures: number;
  readonly reusedPct: number;
  readonly loginsPerRun: number;
}

function loginStats(c: LoginCell): LoginStats {
  const per = (g: string) => c.runs.map((r) => (r.meter.cpuMs[g] ?? 0) / r.logins);
  return {
    perSecond: summarize(c.runs.map((r) => (r.logins * 1000) / r.elapsedMs)),
    proxy: summarize(per('proxy')),
    system: summarize(c.runs.map((r) => ((r.meter.cpuMs['proxy'] ?? 0) + (r.meter.cpuMs['auth'] ?? 0)) / r.logins)),
    auth: median(per('auth')),
    backend: median(per('backend')),
    load: median(per('load')),
    loadPct: median(c.runs.map((r) => ((r.meter.cpuMs['load'] ?? 0) / r.elapsedMs) * 100)),
    loadShare: median(c.runs.map((r) => (r.meter.machineBusyMs > 0 ? ((r.meter.cpuMs['load'] ?? 0) / r.meter.machineBusyMs) * 100 : NaN))),
    proxyPct: median(c.runs.map((r) => ((r.meter.cpuMs['proxy'] ?? 0) / r.elapsedMs) * 100)),
    rest: median(c.runs.map((r) => (r.meter.machineBusyMs - Object.values(r.meter.cpuMs).reduce((a, b) => a + b, 0)) / r.logins)),
    p50: median(c.runs.map((r) => r.p50Ms)),
    p99: median(c.runs.map((r) => r.p99Ms)),
    failures: c.runs.reduce((a, r) => a + r.failures, 0),
    reusedPct: (c.runs.reduce((a, r) => a + r.reused, 0) / Math.max(1, c.runs.reduce((a, r) => a + r.logins, 0))) * 100,
    loginsPerRun: median(c.runs.map((r) => r.logins)),
  };
}

function findLogin(r: CompareResults, path: PathId, backend: BackendId, c: number, resume = false): LoginCell | undefined {
  return r.logins.find((x) => x.path === path && x.backend === backend && x.concurrency === c && x.resume === resume && x.runs.length > 0);
}

function relayStats(r: CompareResults, runs: readonly RetrResult[]) {
  const bytes = r.bigSize * r.settings.retrs;
  const gb = bytes / 1e9;
  return {
    mbps: summarize(runs.map((x) => bytes / 1e6 / (x.ms / 1000))),
    proxy: summarize(runs.map((x) => (x.meter.cpuMs['proxy'] ?? 0) / 1000 / gb)),
    backend: median(runs.map((x) => (x.meter.cpuMs['backend'] ?? 0) / 1000 / gb)),
    load: median(runs.map((x) => (x.meter.cpuMs['load'] ?? 0) / 1000 / gb)),
    /** Busy CPU outside the named processes, s/GB, per run. */
    rest: runs.map((x) => (x.meter.machineBusyMs - Object.values(x.meter.cpuMs).reduce((a, b) => a + b, 0)) / 1000 / gb),
  };
}

function statStats(runs: readonly StatResult[]) {
  return {
    p50: summarize(runs.map((x) => x.p50Ms * 1000)),
    p99: summarize(runs.map((x) => x.p99Ms * 1000)),
    proxyUs: median(runs.map((x) => ((x.meter.cpuMs['proxy'] ?? 0) * 1000) / x.n)),
  };
}

function idleStats(c: IdleCell) {
  return {
    rss: ((c.rssAfterKiB - c.rssBeforeKiB) * 1024) / c.n / 1024,
    heap: c.heapAfter !== undefined && c.heapBefore !== undefined ? (c.heapAfter - c.heapBefore) / c.n / 1024 : undefined,
    external: c.externalAfter !== undefined && c.externalBefore !== undefined ? (c.externalAfter - c.externalBefore) / c.n / 1024 : undefined,
    fds: (c.fdAfter - c.fdBefore) / c.n,
  };
}

// ------------------------------------------------------------------ sections

/**
 * Other processes took CPU during these runs: on the fast backend everything
 * of ours is named, so *rest of machine* beyond tick noise is someone else
 * (on Dovecot, rest includes Dovecot itself: not judged).
 */
function disturbed(s: LoginStats, backend: BackendId): boolean {
  // /proc counts in 10 ms ticks: rest = machine - 5 groups is good to about 6 ticks per run.
  return backend === 'fast' && s.rest > Math.max(0.3, 0.25 * s.proxy.median, 60 / s.loginsPerRun);
}

function warmupCell(c: LoginCell): string {
  const w = c.warmup;
  if (!w) return '—';
  return w.steady ? `${w.windows}` : `${w.windows} ⚠ not steady`;
}

function loginTable(r: CompareResults, backend: BackendId, c: number, resume: boolean): string {
  const cells = r.logins.filter((x) => x.backend === backend && x.concurrency === c && x.resume === resume && x.runs.length > 0);
  const ref = findLogin(r, REF, backend, c, resume);
  const refS = ref ? loginStats(ref) : undefined;
  const rows = [
    `| Path | logins/s, median (min–max) | ÷ nginx 1 worker | proxy CPU ms/login, median (min–max) | ÷ nginx 1 worker | **system CPU ms/login** (proxy + auth service) | ÷ nginx 1 worker | proxy CPU, % of a core | auth service ms/login | backend ms/login | load generator ms/login (% of a core) | rest of machine ms/login | login p50 / p99 ms | warm-up windows |${resume ? ' resumed |' : ''}`,
    `|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|${resume ? '--:|' : ''}`,
  ];
  for (const cell of cells) {
    const s = loginStats(cell);
    const isProxy = cell.path !== 'direct';
    rows.push(
      `| ${label(r, cell.path)} | ${mrInt(s.perSecond)} | ${cell.path === 'direct' ? '—' : ratio(s.perSecond.median, refS?.perSecond.median)} | ` +
        `${isProxy ? mr(s.proxy, 3) : '—'} | ${isProxy ? ratio(s.proxy.median, refS?.proxy.median) : '—'} | ` +
        `${isProxy ? `**${f(s.system.median, 3)}**` : '—'} | ${isProxy ? ratio(s.system.median, refS?.system.median) : '—'} | ${isProxy ? `${f(s.proxyPct, 0)} %` : '—'} | ` +
        `${f(s.auth, 3)} | ${backend === 'fast' ? f(s.backend, 3) : '(in rest)'} | ${f(s.load, 3)} (${f(s.loadPct, 0)} %) | ${f(s.rest, 3)} | ${f(s.p50, 2)} / ${f(s.p99, 2)} | ${warmupCell(cell)} |` +
        (resume ? ` ${f(s.reusedPct, 0)} % |` : '') +
        (s.failures > 0 ? ` ⚠ ${s.failures} failed logins` : '') +
        (disturbed(s, backend) ? ' ⚠ disturbed' : ''),
    );
  }
  return rows.join('\n');
}

/** The concurrency of the CPU targets: 32, else the middle one of the run's. */
function targetConcurrency(r: CompareResults): number {
  const cs = r.settings.concurrencies;
  return cs.includes(32) ? 32 : cs[Math.floor(cs.length / 2)]!;
}

/** Settings of compare.json files from before a setting existed are read as optional. */
type AnySettings = Partial<CompareSettings> & { readonly warmupSeconds?: number };

/** One line on how the warm-up went, for the login sections. */
function warmupLine(r: CompareResults, cells: readonly LoginCell[]): string {
  const s = r.settings as AnySettings;
  const rec = cells.filter((c) => c.warmup !== undefined && c.runs.length > 0);
  if (rec.length === 0) {
    return s.warmupSeconds !== undefined
      ? `Warm-up: a fixed ${s.warmupSeconds} s per path and concurrency (this compare.json predates the steady-state warm-up).`
      : 'Warm-up: not recorded in this compare.json.';
  }
  const steady = rec.filter((c) => c.warmup!.steady);
  const windows = rec.map((c) => c.warmup!.windows);
  const not = rec.filter((c) => !c.warmup!.steady);
  const name = (c: LoginCell): string => `${c.path} c=${c.concurrency}${c.resume ? ' resumed' : ''} (${c.warmup!.perLoginMs.map((v) => f(v, 3)).join(' → ')} ms)`;
  return (
    `Warm-up (untimed, per path and concurrency): windows of ${s.warmupWindowSeconds ?? '?'} s until two consecutive ones agree on the proxy's CPU per login within ${f((s.warmupTolerance ?? NaN) * 100, 0)} % (or within /proc's 2 clock ticks ÷ the window's logins), at most ${s.warmupMaxWindows ?? '?'}: ` +
    `**${steady.length} of ${rec.length} cells steady** after ${Math.min(...windows)}–${Math.max(...windows)} windows (median ${f(median(windows), 0)}); *warm-up windows* column per row.` +
    (not.length > 0 ? ` **Not steady** (timed runs started anyway after ${s.warmupMaxWindows ?? '?'} windows): ${not.map(name).join('; ')}.` : '')
  );
}

type TargetRow = { target: string; who: string; figure: string; ref: string; ratio: string; ok: boolean | undefined };

function targets(r: CompareResults): string {
  const rows = ['| Target | popgate row | popgate | nginx / reference | ratio | verdict |', '|---|---|--:|--:|--:|:-:|'];
  const out: TargetRow[] = [];
  const c = targetConcurrency(r);
  const cHigh = Math.max(...r.settings.concurrencies);
  const get = (id: PathId, cc: number): LoginStats | undefined => {
    const cell = findLogin(r, id, 'fast', cc);
    return cell ? loginStats(cell) : undefined;
  };
  const missing = (target: string, who: string): TargetRow => ({ target, who, figure: 'not measured', ref: '—', ratio: '—', ok: undefined });
  const ng = get(REF, c);
  {
    const t = `System CPU per login (proxy + its auth service), warm credentials cache, fast backend, c=${c}: ≤ 1.0× nginx 1 worker's`;
    const w = get('popgate-http-warm', c);
    out.push(
      w && ng
        ? { target: t, who: label(r, 'popgate-http-warm'), figure: `${f(w.system.median, 3)} ms`, ref: `${f(ng.system.median, 3)} ms`, ratio: ratio(w.system.median, ng.system.median), ok: w.system.median <= ng.system.median }
        : missing(t, 'popgate-http-warm'),
    );
  }
  {
    const t = `Proxy-only CPU per login, cold (every login calls the auth service), auth_http, c=${c}: ≤ 1.25× nginx 1 worker's`;
    const w = get('popgate-http', c);
    out.push(
      w && ng
        ? { target: t, who: label(r, 'popgate-http'), figure: `${f(w.proxy.median, 3)} ms`, ref: `${f(ng.proxy.median, 3)} ms`, ratio: ratio(w.proxy.median, ng.proxy.median), ok: w.proxy.median <= 1.25 * ng.proxy.median }
        : missing(t, 'popgate-http'),
    );
  }
  {
    const t = `Logins/s with workers auto ≥ nginx worker_processes auto, c=${cHigh} (the load generator shares the cores: its share of all busy CPU in brackets)`;
    const w = get('popgate-http-auto', cHigh);
    const na = get('nginx-auto', cHigh);
    out.push(
      w && na
        ? {
            target: t,
            who: label(r, 'popgate-http-auto'),
            figure: `${int(w.perSecond.median)}/s (load ${f(w.loadShare, 0)} %)`,
            ref: `${int(na.perSecond.median)}/s (load ${f(na.loadShare, 0)} %)`,
            ratio: ratio(w.perSecond.median, na.perSecond.median),
            ok: w.perSecond.median >= na.perSecond.median,
          }
        : missing(t, 'popgate-http-auto'),
    );
  }
  {
    const k = kerberosRows(r);
    const t = `Full KPOP login (ticket check, backend login on the ${k.backend || 'fast backend'}, QUIT) ≤ 0.25 ms of popgate CPU${k.c ? `, c=${k.c}` : ''}`;
    out.push(
      k.loginCpuMs !== undefined
        ? { target: t, who: 'popgate, kpop listener', figure: `${f(k.loginCpuMs, 3)} ms`, ref: '(nginx cannot)', ratio: '—', ok: k.loginCpuMs <= 0.25 }
        : { ...missing(t, 'popgate, kpop listener'), figure: r.kerberos.source === 'skipped' ? 'not run (Kerberos part)' : 'not measured' },
    );
  }
  {
    const relay = (id: PathId) => {
      const x = r.relay.find((y) => y.path === id);
      return x && x.runs.length > 0 ? relayStats(r, x.runs) : undefined;
    };
    const t = `Relay MB/s (${f(r.bigSize / 1e6, 0)} MB RETR over TLS) ≥ 1.0× stunnel4 (raw TLS splice)`;
    const p = relay('popgate-http');
    const st = relay('stunnel');
    out.push(
      p && st
        ? { target: t, who: label(r, 'popgate-http'), figure: `${f(p.mbps.median, 0)} MB/s`, ref: `stunnel4: ${f(st.mbps.median, 0)} MB/s`, ratio: ratio(p.mbps.median, st.mbps.median), ok: p.mbps.median >= st.mbps.median }
        : missing(t, 'popgate-http'),
    );
  }
  {
    const cell = r.idle.find((x) => x.path === 'popgate-http');
    const ref = r.idle.find((x) => x.path === REF);
    const t = `≤ 40 KiB RSS per idle authenticated TLS session, per worker${cell ? ` (${int(cell.n)} sessions)` : ''}`;
    if (cell) {
      const x = idleStats(cell);
      const n = ref ? idleStats(ref).rss : undefined;
      out.push({ target: t, who: label(r, 'popgate-http'), figure: `${f(x.rss, 1)} KiB`, ref: n !== undefined ? `nginx 1 worker: ${f(n, 1)} KiB` : '—', ratio: ratio(x.rss, n), ok: x.rss <= 40 });
    } else out.push(missing(t, 'popgate-http'));
  }
  for (const o of out) rows.push(`| ${o.target} | ${o.who} | **${o.figure}** | ${o.ref} | ${o.ratio} | ${yes(o.ok)} |`);
  return rows.join('\n');
}

/** popgate's rows next to nginx's at the target concurrency and the highest one: logins/s, proxy and system CPU per login. */
function summary(r: CompareResults): string {
  const cs = [...new Set([targetConcurrency(r), Math.max(...r.settings.concurrencies)])];
  const ids: PathId[] = ['nginx-1', 'nginx-auto', 'popgate-http', 'popgate-http-warm', 'popgate-http-auto', 'popgate-file', 'popgate-file-warm'];
  const rows = [
    '| Conc. | Path | logins/s | ÷ nginx 1 worker | proxy CPU ms/login | ÷ nginx 1 worker | **system CPU ms/login** (proxy + auth service) | ÷ nginx 1 worker | load generator, % of busy CPU | warm-up windows |',
    '|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of cs) {
    const ref = findLogin(r, REF, 'fast', c);
    const refS = ref ? loginStats(ref) : undefined;
    for (const id of ids) {
      const cell = findLogin(r, id, 'fast', c);
      if (!cell) continue;
      const s = loginStats(cell);
      rows.push(
        `| ${c} | ${label(r, id)} | ${int(s.perSecond.median)} | ${ratio(s.perSecond.median, refS?.perSecond.median)} | ${f(s.proxy.median, 3)} | ${ratio(s.proxy.median, refS?.proxy.median)} | **${f(s.system.median, 3)}** | ${ratio(s.system.median, refS?.system.median)} | ${f(s.loadShare, 0)} % | ${warmupCell(cell)} |`,
      );
    }
  }
  return rows.length > 2 ? rows.join('\n') : '';
}

function kerberosRows(r: CompareResults): { c: number; backend: string; login?: Summary; handshake?: Summary; loginCpuMs?: number } {
  if (r.kerberos.source === 'skipped') return { c: 0, backend: '' };
  const k = r.kerberos.results;
  const cs = k.scenarios.map((s) => s.concurrency);
  const c = Math.max(...cs);
  const get = (kind: string): Summary | undefined => {
    const sc = k.scenarios.find((s) => s.kind === kind && s.concurrency === c);
    return sc && sc.runs.length > 0 ? summarize(sc.runs.map((x) => x.perSecond)) : undefined;
  };
  const login = get('kpop-login');
  const handshake = get('kpop');
  // popgate's CPU (all threads, from /proc) per full KPOP login, median over runs.
  const full = k.scenarios.find((s) => s.kind === 'kpop-login' && s.concurrency === c && s.runs.length > 0);
  const loginCpuMs = full ? median(full.runs.map((x) => x.popgateCpuMs / x.ops)) : undefined;
  return { c, backend: r.kerberos.backend, ...(login ? { login } : {}), ...(handshake ? { handshake } : {}), ...(loginCpuMs !== undefined ? { loginCpuMs } : {}) };
}

function kerberosSection(r: CompareResults): string {
  if (r.kerberos.source === 'skipped') return '## 5. KPOP and GSSAPI (popgate only)\n\nNot run: the Kerberos part was not among BENCH_PARTS.\n';
  const k = r.kerberos.results;
  const rows = ['| Scenario | Conc. | per s, median (min–max) | popgate CPU ms/op | latency p50 / p99 ms |', '|---|--:|--:|--:|--:|'];
  for (const sc of k.scenarios) {
    if (sc.runs.length === 0) continue;
    const rate = summarize(sc.runs.map((x) => x.perSecond));
    rows.push(
      `| ${sc.name} | ${sc.concurrency} | ${mrInt(rate)} | ${f(median(sc.runs.map((x) => x.popgateCpuMs / x.ops)), 3)} | ${f(median(sc.runs.map((x) => x.p50Ms)), 2)} / ${f(median(sc.runs.map((x) => x.p99Ms)), 2)} |`,
    );
  }
  const src =
    r.kerberos.source === 'cited'
      ? `Cited from the Kerberos part of the same \`npm run bench\` run (bench/kerberos.ts: private MIT KDC, a popgate with a kpop listener and AUTH GSSAPI; bench/results/latest.md has the full section), ${k.runs} runs of ${k.seconds} s, popgate logging in to the **${r.kerberos.backend}** (so the full-login rows measure popgate, not Dovecot). MIT krb5 ${k.mitVersion}, python3-gssapi ${k.gssapiVersion}.`
      : `Measured here with the benchmark's Kerberos part (bench/kerberos.ts: private MIT KDC, a popgate with a kpop listener and AUTH GSSAPI), ${k.runs} runs of ${k.seconds} s, popgate logging in to the **fast in-memory backend** (so the full-login rows measure popgate, not Dovecot). MIT krb5 ${k.mitVersion}, python3-gssapi ${k.gssapiVersion}.`;
  return `## 5. KPOP and GSSAPI (popgate only: nginx's mail proxy cannot)

${src} Every operation is a new TCP connection with a fresh ticket (no replay); the load generator and the GSSAPI client (python3-gssapi) run on the same cores.

${rows.join('\n')}
`;
}

// ------------------------------------------------------------------ markdown

function warmupSettings(s: CompareSettings): string {
  const a = s as AnySettings;
  if (a.warmupWindowSeconds === undefined) return `warmupSeconds ${a.warmupSeconds ?? '?'}`;
  return `warmupWindowSeconds ${a.warmupWindowSeconds}, warmupTolerance ${a.warmupTolerance ?? '?'}, warmupMaxWindows ${a.warmupMaxWindows ?? '?'}, extraRowsMinConcurrency ${a.extraRowsMinConcurrency ?? '?'}`;
}

export function renderMarkdown(r: CompareResults): string {
  const s = r.settings;
  const m = r.machine;
  const fastCs = s.concurrencies;
  const sections: string[] = [];

  sections.push(`# popgate vs nginx mail proxy (issue 7)

Run ${r.startedAt.toISOString()} (took ${f(r.totalSeconds / 60, 1)} min) · ${s.runs} runs per figure, **median (min–max)** · everything on 127.0.0.1 of one ${m.cores}-core machine: the proxies, the backends, the auth service **and the load generator share the ${m.cores} cores** (see *Caveats*) · machine CPU busy before the start: ${f(r.busyBefore, 0)} % of one core.

Ratios are popgate ÷ nginx with **1 worker** (like for like: popgate is one event loop) unless said otherwise; nginx with \`worker_processes auto\` (${m.cores} workers) is shown in every table too.`);

  const sum = summary(r);
  const legacy = !r.logins.some((c) => c.warmup !== undefined);
  sections.push(`## Targets

Ratios from this run. *System CPU* = the proxy's CPU + its auth service's (the backend and the load generator excluded): nginx pays an HTTP connection to its auth service per login, popgate a keep-alive request (none on a credentials-cache hit; a user-file row leaves the auth service idle and its ~0 CPU is metered as it is). *Cold* = popgate's credentials cache off (\`auth.cache.ttl: 0s\`): every login calls the auth service or runs scrypt, as the first login of each user does; *warm* = the cache on (default ttl 5 min): after the warm-up every login is a cache hit.${legacy ? '\n\n⚠ This compare.json predates the steady-state warm-up and the cold/warm credentials-cache rows: its popgate rows ran with the cache settings of that time (not necessarily cold), and targets without their rows read *not measured*.' : ''}

${targets(r)}${sum ? `\n\n### Summary: popgate and nginx, fast backend\n\n${sum}` : ''}`);

  const login1: string[] = [];
  for (const c of fastCs) login1.push(`### Concurrency ${c}\n\n${loginTable(r, 'fast', c, false)}`);
  sections.push(`## 1. Full logins over implicit TLS, fast in-memory backend

Each login: TCP connect, TLS handshake (**a new TLS session every time, no resumption**: full ECDHE + certificate signature), greeting, \`AUTH PLAIN <initial response>\`, the proxy's auth (auth_http call, or popgate's user file) and its backend login, \`QUIT\`. ${s.loginSeconds} s per run, \`c\` login loops back to back. CPU is utime+stime from /proc of each process (nginx: master + workers; popgate, stunnel: all threads), divided by the logins done. *rest of machine* = all busy CPU (/proc/stat) minus the named processes: kernel work on behalf of loopback TCP (softirq), this benchmark's orchestrator, and anything else running.

- **direct**: the load generator straight to the backend (plaintext AUTH PLAIN), the backend's own cost and ceiling.
- **stunnel4 / Node TLS pipe**: raw TLS termination spliced to the backend (the client's AUTH PLAIN goes to the backend itself, no auth service): the TLS floor of a proxy built on OpenSSL (stunnel, C, a thread per connection) or on Node's TLS stack (the pipe).
- **popgate, auth_http** does exactly nginx's work: asks the same auth service (keep-alive; nginx opens a new HTTP connection per login), then \`USER\`/\`PASS\` with Auth-User/Auth-Pass at the backend. **popgate, user file** checks scrypt **ln=10** (not the default ln=15, which costs ~80 ms of CPU per login) and logs in with AUTH PLAIN as the master user. Both run with **1 worker** and the credentials cache **off** (*cold*: every login is a user's first). The *warm* rows are the same with the cache on (every login after the warm-up is a cache hit: no auth call, no scrypt) and *workers auto* is the warm auth_http popgate with \`workers: auto\` (a primary + one worker per core; its CPU is the primary's and all its workers', read at each run)${(s as AnySettings).extraRowsMinConcurrency !== undefined ? `; these three run at concurrency ≥ ${(s as AnySettings).extraRowsMinConcurrency} only` : ''}.
- **system CPU** = proxy + auth service per login (backend and load generator excluded).
- **nginx, 1 worker, no session tickets** (extra row, fast backend only: \`ssl_session_tickets off\` + \`ssl_conf_command NumTickets 0\`, since OpenSSL still sends TLS 1.3 tickets with the first alone). nginx's mail module never sets TCP_NODELAY, and after a TLS 1.3 handshake it writes the two session tickets and then the greeting in separate writes, so Nagle's algorithm holds the greeting until the client's delayed ACK (~40 ms on Linux; seen with strace). That stall, not CPU, bounds nginx's logins/s at low and medium concurrency (see its p50). This row shows nginx without it; the main nginx rows keep the defaults (tickets on, like popgate, whose Node sockets have TCP_NODELAY and so no stall).

${warmupLine(r, r.logins.filter((x) => x.backend === 'fast'))}

${login1.join('\n\n')}`);

  if (s.resumeConcurrency > 0) {
    sections.push(`### With TLS session resumption (concurrency ${s.resumeConcurrency}, fast backend)

Each login loop offers the TLS 1.3 session ticket of its previous connection (abbreviated handshake: no certificate signature; still an ECDHE key exchange). Servers keep their defaults: session tickets on, no server-side session cache (nginx \`ssl_session_cache none; ssl_session_tickets on\`, Node's defaults, stunnel's defaults). *resumed* = share of logins whose session was resumed.

${loginTable(r, 'fast', s.resumeConcurrency, true)}`);
  }

  const dv: string[] = [];
  for (const c of s.dovecotConcurrencies) dv.push(`### Dovecot, concurrency ${c}\n\n${loginTable(r, 'dovecot', c, false)}`);
  sections.push(`## 1b. The same logins against Dovecot ${m.dovecot}

Dovecot forks a login process and a pop3 process per session: logins/s here are **Dovecot's bound**, not the proxies'; the proxies' CPU per login is still comparable. Dovecot's own CPU is in *rest of machine*. Direct = AUTH PLAIN with the user's own Dovecot password; the proxies log in as \`${'alice'}*popgate\` + master password (auth_http answer) or AUTH PLAIN as the master user (popgate's user file); popgate's rows are the cold ones (cache off). ${warmupLine(r, r.logins.filter((x) => x.backend === 'dovecot'))}

${dv.join('\n\n')}`);

  // Relay.
  const relayRows = [
    '| Path | MB/s, median (min–max) | ÷ nginx 1 worker | ÷ stunnel4 | proxy CPU s/GB, median (min–max) | ÷ nginx 1 worker | backend s/GB | load generator s/GB | rest of machine s/GB, per run | TLS |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ];
  const rRef = r.relay.find((x) => x.path === REF);
  const rRefS = rRef && rRef.runs.length ? relayStats(r, rRef.runs) : undefined;
  const rSt = r.relay.find((x) => x.path === 'stunnel');
  const rStS = rSt && rSt.runs.length ? relayStats(r, rSt.runs) : undefined;
  for (const cell of r.relay) {
    if (cell.runs.length === 0) continue;
    const x = relayStats(r, cell.runs);
    const proxy = cell.path !== 'direct';
    relayRows.push(
      `| ${label(r, cell.path)} | ${mr(x.mbps, 0)} | ${ratio(x.mbps.median, rRefS?.mbps.median)} | ${ratio(x.mbps.median, rStS?.mbps.median)} | ${proxy ? mr(x.proxy, 2) : '—'} | ${proxy ? ratio(x.proxy.median, rRefS?.proxy.median) : '—'} | ${f(x.backend, 2)} | ${f(x.load, 2)} | ${x.rest.map((v) => f(v, 1)).join(' ')}${x.rest.filter((v) => v > RELAY_REST_LIMIT).length > x.rest.length / 2 ? ' ⚠' : ''} | ${r.tlsSeen[cell.path] ?? 'plaintext'} |`,
    );
  }
  sections.push(`## 2. Relay throughput: ${f(r.bigSize / 1e6, 0)} MB RETR through TLS

One session per run logs in (USER/PASS), then ${s.retrs} back-to-back \`RETR 1\` of the ${f(r.bigSize / 1e6, 1)} MB message (${f((r.bigSize * s.retrs) / 1e6, 0)} MB), timed from the first RETR written to the last terminating dot; CPU sampled at the same two moments. The fast backend builds each RETR reply once and writes it uncopied. The client (one Node process) decrypts everything on the same cores: its CPU is in the *load generator* column. Direct = plaintext to the backend (no TLS at all). *rest of machine* = busy CPU outside the named processes during each run (kernel work not charged to a process, anything else running): above ${f(RELAY_REST_LIMIT, 1)} s/GB in most runs (⚠) other processes were busy and that row's MB/s are low and noisy; its proxy CPU s/GB still holds.

${relayRows.join('\n')}`);

  // Idle.
  if (r.idle.length > 0) {
    const rows = [
      '| Path | sessions | proxy RSS before → after (MiB) | **RSS per session (KiB)** | ÷ nginx 1 worker | JS heap per session (KiB) | external per session (KiB) | fds per session | time to open (s) |',
      '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
    ];
    const ref = r.idle.find((x) => x.path === REF);
    const refRss = ref ? idleStats(ref).rss : undefined;
    for (const c of r.idle) {
      const x = idleStats(c);
      rows.push(
        `| ${label(r, c.path)} | ${int(c.n)} | ${f(c.rssBeforeKiB / 1024, 0)} → ${f(c.rssAfterKiB / 1024, 0)} | **${f(x.rss, 1)}** | ${ratio(x.rss, refRss)} | ${f(x.heap, 1)} | ${f(x.external, 1)} | ${f(x.fds, 2)} | ${f(c.openMs / 1000, 1)} |`,
      );
    }
    const w = r.idle[0]!;
    sections.push(`## 3. Idle authenticated TLS sessions

${int(w.n)} sessions opened through each proxy to the fast backend (${s.idleConcurrency} at a time; full TLS handshake + AUTH PLAIN + backend login each), then left idle; one proxy at a time. RSS = VmRSS from /proc (nginx: master + workers summed), read before opening and 1.5 s after the last login; per session = the difference ÷ sessions. For the Node processes (popgate, the Node TLS pipe) two full GCs run first (\`--expose-gc\` + a preload, bench/lib/preload.ts, loaded with \`--import\`; popgate's code is unchanged), and \`process.memoryUsage()\` gives the JS heap and *external* (Buffers, OpenSSL objects Node accounts for). A sample of 200 sessions then answered NOOP through the proxy (all sessions alive and relayed), and all were closed. The load generator itself held ${int(w.workerRssKiB / 1024)} MiB RSS for them.

${rows.join('\n')}`);
  }

  // STAT.
  const sd = r.stat.find((x) => x.path === 'direct');
  const sdS = sd && sd.runs.length ? statStats(sd.runs) : undefined;
  const statRows = [
    '| Path | STAT p50 µs, median (min–max) | p99 µs, median (min–max) | **added p50 µs** vs direct | added p99 µs vs direct | proxy CPU µs per STAT |',
    '|---|--:|--:|--:|--:|--:|',
  ];
  for (const cell of r.stat) {
    if (cell.runs.length === 0) continue;
    const x = statStats(cell.runs);
    const direct = cell.path === 'direct';
    statRows.push(
      `| ${label(r, cell.path)} | ${mr(x.p50, 0)} | ${mr(x.p99, 0)} | ${direct ? '(baseline)' : `**${f(x.p50.median - (sdS?.p50.median ?? NaN), 0)}**`} | ${direct ? '(baseline)' : f(x.p99.median - (sdS?.p99.median ?? NaN), 0)} | ${direct ? '—' : f(x.proxyUs, 1)} |`,
    );
  }
  sections.push(`## 4. Per-command latency: STAT

One logged-in session per run, 200 warm-up STATs, then ${s.statSamples} sequential STATs, each timed from the write to its \`+OK\` line; p50/p99 per run, the median of ${s.runs} runs shown. Through a TLS proxy a STAT is encrypted by the client, decrypted and relayed in plaintext to the backend, and the answer encrypted back: the *added* columns are the proxy's cost **including TLS on both ends** over a plaintext STAT straight to the backend; the stunnel4 and Node-pipe rows show how much of that is TLS alone.

${statRows.join('\n')}`);

  sections.push(kerberosSection(r));

  const tlsLines = Object.entries(r.tlsSeen)
    .map(([id, t]) => `${id}: ${t}`)
    .join('; ');
  sections.push(`## Setup

- Machine: ${m.cpuModel}, ${m.cores} cores, ${f(m.memoryGiB, 1)} GiB RAM, ${m.kernel}; CPU clock ticks ${m.clockTicks}/s (CPU figures are good to a tick per process per run).
- Software: Node ${m.node} (its bundled OpenSSL ${m.nodeOpenssl}); nginx ${m.nginx} (Debian, built with and running on the system OpenSSL ${m.nginxOpenssl}) with \`libnginx-mod-mail\`; stunnel ${m.stunnel} (running with OpenSSL ${m.stunnelOpenssl}); Dovecot ${m.dovecot}; popgate ${m.popgate}.
- TLS negotiated (one login per path, P-256 ECDSA certificate from test/helpers/certs.ts, the same files for every server): ${tlsLines}.
- **popgate**: \`node dist/cli/main.js serve\` (its CLI sets UV_THREADPOOL_SIZE 16 unless set), log level warn, \`workers: 1\` (\`auto\` for the workers-auto row), \`auth.cache.ttl: 0s\` for the cold rows and the default (5 min) for the warm ones, \`backend.xclient: false\` (nginx sends no XCLIENT for POP3), limits raised to 40,000 connections (default 5,000 total / 50 per client address), throttle and everything else at defaults. Loaded with \`--expose-gc --import bench/lib/preload.js\` (IPC memory probe; idle otherwise).${s.cpuProf ? ' Run with --cpu-prof.' : ''}
- **nginx**: \`worker_processes 1\` and \`auto\`, \`worker_connections ${Math.min(32_768, r.nofile)}\`, \`worker_rlimit_nofile ${r.nofile}\`, \`mail { auth_http; proxy on; pop3_auth plain; listen ... ssl; ssl_session_cache none; ssl_session_tickets on }\` (nginx's defaults spelled out), \`error_log warn\` (the mail module has no access log), \`daemon off\`, run as root from a temp prefix; stopped through its pid file.
- **stunnel4**: \`foreground = yes\`, \`TCP_NODELAY\` both sides, \`TIMEOUTclose = 0\` (no wait for the peer's close_notify), \`debug = 2\` (no log line per connection), its other defaults (a thread per connection). **Node TLS pipe** (bench/compare/tls-pipe.ts): \`tls.createServer\` → \`net.connect\`, \`pipe()\` both ways, Node defaults.
- **Backends**: the fast one (popgate's demo backend, src/demo/backend.ts, in a Node process of its own: bench/lib/backend-child.ts): USER/PASS and AUTH PLAIN, also as the master user (\`user*master\` or an authzid), STAT/LIST/UIDL/RETR from one shared buffer per message, each RETR reply built once (message 1: ${f(r.bigSize / 1e6, 1)} MB). Its CPU per login is the *backend* column of the direct rows. Dovecot: the benchmark's private instance (test/helpers/dovecot.ts; master user \`popgate\`, \`auth_failure_delay 0\`, \`mail_max_userip_connections 1000\`, stock login/pop3 services).
- **Auth service** (bench/compare/auth-service.ts): Node \`http\`, keep-alive, its own process; checks Auth-User/Auth-Pass and answers \`Auth-Status: OK\`, \`Auth-Server\`, \`Auth-Port\`, \`Auth-User\` (\`<user>*popgate\`), \`Auth-Pass\` (the master password).
- **Load generator** (bench/compare/load-worker.ts): one Node process, one client SecureContext per CA, verifies the certificate (CA + name). It competes with the proxy for the ${m.cores} cores: on one core it is as busy as the proxy (see its column), so logins/s are the machine's, not the proxy's alone; **CPU per login** is the fairer comparison.
- ${r.notes.filter((n) => n.startsWith('RLIMIT') || n.startsWith('idle sessions:')).join('; ')}.
- Settings (bench/lib/settings.ts, \`compare\`): runs ${s.runs}, loginSeconds ${s.loginSeconds}, ${warmupSettings(s)}, concurrencies ${s.concurrencies.join(',')}, dovecotConcurrencies ${s.dovecotConcurrencies.join(',')}, resumeConcurrency ${s.resumeConcurrency ?? 0}, retrs ${s.retrs}, bigBytes ${f(s.bigBytes / 1e6, 0)} MB, statSamples ${s.statSamples}, idleSessions ${s.idleSessions}, idleConcurrency ${s.idleConcurrency}.
- MB = 10^6 bytes, GB = 10^9 bytes, KiB = 1024 bytes.`);

  const other = r.notes.filter((n) => !(n.startsWith('RLIMIT') || n.startsWith('idle sessions:')));
  sections.push(`## Caveats

- Two cores for everything: at concurrency ≥ 32 the load generator (TLS client side: ECDHE + two ECDSA verifications per full handshake) uses about as much CPU per login as the proxy, so a proxy that needs less CPU leaves more to the client and the backend and shows more logins/s. A proxy that could use both cores (nginx \`auto\`, stunnel's threads) gains less than it would on a machine of its own.
- popgate is one process with one event loop (its libuv pool does scrypt and Kerberos); nginx with 1 worker is the like-for-like row, \`auto\` shows what nginx does with every core.
- **⚠ disturbed** (fast backend only): *rest of machine* per login exceeds tick noise (> 0.3 ms, > ¼ of the proxy's own and > 60 ms ÷ logins per run), i.e. processes outside this benchmark took CPU during those runs; that row's logins/s and latencies are unreliable, its CPU per login (read from the proxy's own /proc entry) is not affected.
- CPU per login counts everything the process did during the run, including accepting, TLS, closing and timers. /proc counts CPU in clock ticks (10 ms): a row with few logins per run (nginx at concurrency 1 stalls ~45 ms per login, ~30 logins per run; Dovecot) is good to ±10 ms ÷ its logins. *rest of machine* can come out negative: process times in /proc/<pid>/stat are precise (scheduler run time), the machine's busy time in /proc/stat is sampled per tick, and with cores partly idle (nginx waiting out its Nagle stall) the sampled figure runs low.
- RSS does not include the kernel's socket buffers (the same for every proxy); nginx's mail module relays through \`proxy_buffer\`, by default one page (4 KiB), which also sets the TLS record size its clients decrypt (see the load generator's s/GB in the relay table).${other.length ? `\n${other.map((n) => `- ${n.replace(/\n/g, ' ')}`).join('\n')}` : ''}

Chart: [compare-logins.svg](compare-logins.svg) (logins/s vs concurrency, one line per path).
`);
  return sections.join('\n\n');
}

// ------------------------------------------------------------------ SVG

const COLORS: Record<PathId, string> = {
  direct: '#7f7f7f',
  stunnel: '#8c564b',
  'node-tls': '#bcbd22',
  'popgate-http': '#1f77b4',
  'popgate-http-warm': '#2ca02c',
  'popgate-http-auto': '#e377c2',
  'popgate-file': '#17becf',
  'popgate-file-warm': '#393b79',
  'nginx-1': '#d62728',
  'nginx-auto': '#ff7f0e',
  'nginx-1-nt': '#9467bd',
};

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const SHORT: Record<PathId, string> = {
  direct: 'direct (plaintext, no proxy)',
  stunnel: 'stunnel4 (raw TLS splice)',
  'node-tls': 'Node TLS pipe (raw splice)',
  'popgate-http': 'popgate, auth_http, cold',
  'popgate-http-warm': 'popgate, auth_http, warm cache',
  'popgate-http-auto': 'popgate, auth_http, workers auto, warm',
  'popgate-file': 'popgate, user file (ln=10), cold',
  'popgate-file-warm': 'popgate, user file (ln=10), warm',
  'nginx-1': 'nginx, 1 worker',
  'nginx-auto': 'nginx, worker_processes auto',
  'nginx-1-nt': 'nginx, 1 worker, no tickets',
};

function panel(r: CompareResults, backend: BackendId, cs: readonly number[], x0: number, y0: number, w: number, h: number, title: string, skip: readonly PathId[] = []): string {
  const out: string[] = [];
  const series = r.paths
    .filter((p) => !skip.includes(p.id))
    .map((p) => ({
      p,
      pts: cs
        .map((c) => {
          const cell = findLogin(r, p.id, backend, c);
          return cell ? { c, v: loginStats(cell).perSecond.median } : undefined;
        })
        .filter((x): x is { c: number; v: number } => x !== undefined),
    }))
    .filter((s) => s.pts.length > 0);
  const maxV = niceMax(Math.max(1, ...series.flatMap((s) => s.pts.map((p) => p.v))));
  const left = x0 + 64;
  const right = x0 + w - 12;
  const top = y0 + 34;
  const bottom = y0 + h - 48;
  const xs = (i: number): number => (cs.length === 1 ? (left + right) / 2 : left + 24 + ((right - left - 48) * i) / (cs.length - 1));
  const ys = (v: number): number => bottom - ((bottom - top) * v) / maxV;
  out.push(`<text x="${(left + right) / 2}" y="${y0 + 18}" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const v = (maxV * i) / 5;
    const y = ys(v);
    out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" font-size="11">${int(v)}</text>`);
  }
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`);
  cs.forEach((c, i) => {
    out.push(`<line x1="${xs(i)}" y1="${bottom}" x2="${xs(i)}" y2="${bottom + 5}" stroke="#333"/>`);
    out.push(`<text x="${xs(i)}" y="${bottom + 18}" text-anchor="middle" font-size="11">${c}</text>`);
  });
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 36}" text-anchor="middle" font-size="12">concurrency (login loops)</text>`);
  out.push(`<text transform="translate(${x0 + 16},${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">logins/s (median of ${r.settings.runs} runs)</text>`);
  for (const s of series) {
    const color = COLORS[s.p.id] ?? '#000';
    const dash = s.p.family === 'baseline' ? ' stroke-dasharray="5,4"' : '';
    const pts = s.pts.map((p) => `${xs(cs.indexOf(p.c)).toFixed(1)},${ys(p.v).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2.2"${dash}/>`);
    for (const p of s.pts) out.push(`<circle cx="${xs(cs.indexOf(p.c)).toFixed(1)}" cy="${ys(p.v).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(s.p.label)}, c=${p.c}: ${int(p.v)}/s</title></circle>`);
  }
  return out.join('\n');
}

export function renderSvg(r: CompareResults): string {
  const W = 1130;
  const H = 490;
  const panelW = 420;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="17" font-weight="bold">Full POP3S logins/s (new TLS session, AUTH PLAIN, backend login, QUIT) — ${esc(r.startedAt.toISOString().slice(0, 16).replace('T', ' '))} UTC</text>`,
    `<text x="${W / 2}" y="40" text-anchor="middle" font-size="12" fill="#555">${r.machine.cores} cores shared by proxy, backend, auth service and load generator · ${esc(r.machine.cpuModel)}</text>`,
  );
  parts.push(panel(r, 'fast', r.settings.concurrencies, 0, 50, panelW, H - 80, 'fast in-memory backend', ['direct']));
  const direct = r.settings.concurrencies
    .map((c) => {
      const cell = findLogin(r, 'direct', 'fast', c);
      return cell ? `${int(loginStats(cell).perSecond.median)}/s at c=${c}` : undefined;
    })
    .filter((x) => x !== undefined);
  if (direct.length > 0) parts.push(`<text x="14" y="${H - 12}" font-size="10.5" fill="#555">left panel, off its scale: direct plaintext to the fast backend, ${esc(direct.join(', '))}</text>`);
  parts.push(panel(r, 'dovecot', r.settings.dovecotConcurrencies, panelW, 50, panelW, H - 80, `Dovecot backend (Dovecot-bound)`));
  // Legend.
  const lx = 2 * panelW + 16;
  let ly = 110;
  parts.push(`<text x="${lx}" y="${ly - 20}" font-size="13" font-weight="bold">path</text>`);
  for (const p of r.paths) {
    if (!r.logins.some((c) => c.path === p.id && !c.resume && c.runs.length > 0)) continue;
    const dash = p.family === 'baseline' ? ' stroke-dasharray="5,4"' : '';
    parts.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 26}" y2="${ly - 4}" stroke="${COLORS[p.id] ?? '#000'}" stroke-width="2.5"${dash}/>`);
    parts.push(`<text x="${lx + 32}" y="${ly}" font-size="11.5">${esc(SHORT[p.id] ?? p.label)}</text>`);
    ly += 22;
  }
  parts.push(`<text x="${lx}" y="${ly + 14}" font-size="10.5" fill="#555">dashed: baselines (no auth);</text>`);
  parts.push(`<text x="${lx}" y="${ly + 28}" font-size="10.5" fill="#555">direct = plaintext, no TLS</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
