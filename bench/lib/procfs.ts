/**
 * What the benchmarks read from /proc: CPU time of a process (all its
 * threads, e.g. libuv's scrypt pool included) or of one thread, of named
 * groups of processes (a proxy is one process, nginx is master + workers),
 * of the whole machine; RSS, open descriptors and child PIDs.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`, or 100 (the Linux USER_HZ everywhere in practice) when that fails. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    ticksPerSecond = 100;
    try {
      const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim();
      const n = Number(out);
      if (Number.isSafeInteger(n) && n > 0) ticksPerSecond = n;
    } catch {
      /* keep 100 */
    }
  }
  return ticksPerSecond;
}

export interface CpuTimes {
  readonly userMs: number;
  readonly sysMs: number;
  readonly totalMs: number;
}

/**
 * Reads utime/stime (fields 14 and 15) of a live process (all its threads),
 * or of one of its threads when `tid` is given (`tid === pid`: the main
 * thread). Throws if it is gone.
 */
export function readProcCpu(pid: number, tid?: number): CpuTimes {
  const file = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const text = readFileSync(file, 'latin1');
  // Field 2 (comm) is in parentheses and may contain spaces or ')': split after the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`${file}: unexpected format`);
  const fields = text.slice(close + 2).trim().split(/\s+/);
  // fields[0] is field 3 (state), so field k is fields[k - 3].
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`${file}: bad utime/stime`);
  const msPerTick = 1000 / clockTicksPerSecond();
  return { userMs: utime * msPerTick, sysMs: stime * msPerTick, totalMs: (utime + stime) * msPerTick };
}

/** CPU consumed by `pid` between start() and stop(). */
export class CpuMeter {
  private startMs: number | undefined;

  constructor(readonly pid: number) {}

  start(): void {
    this.startMs = readProcCpu(this.pid).totalMs;
  }

  /** CPU milliseconds (user + sys) since start(); resolution is one clock tick. */
  stop(): number {
    if (this.startMs === undefined) throw new Error('CpuMeter.stop() before start()');
    const used = readProcCpu(this.pid).totalMs - this.startMs;
    this.startMs = undefined;
    return used;
  }
}

/** The whole machine from /proc/stat's `cpu` line: busy (all but idle and iowait) and total, in ms of CPU time. */
export function readMachineCpu(): { busyMs: number; totalMs: number } {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (line.slice(0, 4) !== 'cpu ' || f.length < 8 || f.some((n) => !Number.isFinite(n))) throw new Error('/proc/stat: unexpected format');
  // user nice system idle iowait irq softirq steal [guest guest_nice, already inside user/nice]
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  const msPerTick = 1000 / clockTicksPerSecond();
  return { busyMs: (total - idle) * msPerTick, totalMs: total * msPerTick };
}

/** Group name -> PIDs (utime+stime of each, all threads, summed). */
export type MeterSpec = Readonly<Record<string, readonly number[]>>;

export interface MeterSnapshot {
  readonly cpuMs: Record<string, number>;
  readonly machineBusyMs: number;
  readonly machineTotalMs: number;
}

export interface MeterDelta {
  /** CPU ms used by each group between the two snapshots. */
  readonly cpuMs: Record<string, number>;
  /** CPU ms the whole machine was busy (all cores). */
  readonly machineBusyMs: number;
  readonly machineTotalMs: number;
}

export function snapshot(spec: MeterSpec): MeterSnapshot {
  const cpuMs: Record<string, number> = {};
  for (const [name, pids] of Object.entries(spec)) {
    let sum = 0;
    for (const pid of pids) sum += readProcCpu(pid).totalMs;
    cpuMs[name] = sum;
  }
  const m = readMachineCpu();
  return { cpuMs, machineBusyMs: m.busyMs, machineTotalMs: m.totalMs };
}

export function delta(spec: MeterSpec, before: MeterSnapshot): MeterDelta {
  const after = snapshot(spec);
  const cpuMs: Record<string, number> = {};
  for (const name of Object.keys(spec)) cpuMs[name] = (after.cpuMs[name] ?? 0) - (before.cpuMs[name] ?? 0);
  return { cpuMs, machineBusyMs: after.machineBusyMs - before.machineBusyMs, machineTotalMs: after.machineTotalMs - before.machineTotalMs };
}

/** VmRSS of a process in KiB (0 when it is gone). */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** PIDs whose parent is `ppid` (a /proc scan: this kernel has no task/<tid>/children). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'latin1');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out.sort((a, b) => a - b);
}

/** Open file descriptors of a process (0 when unreadable). */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** CPU busy on the whole machine over `ms` (in % of one core), before anything of ours runs: other tenants. */
export async function machineBusyPct(ms: number): Promise<number> {
  const a = readMachineCpu().busyMs;
  await new Promise((r) => setTimeout(r, ms));
  return ((readMachineCpu().busyMs - a) / ms) * 100;
}
