/**
 * CPU time of another process (all its threads, e.g. libuv's scrypt pool
 * included) from /proc/<pid>/stat: utime + stime, in clock ticks.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
