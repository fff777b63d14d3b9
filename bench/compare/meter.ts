/**
 * CPU and memory of named groups of processes, from /proc: a proxy is one
 * process (popgate, stunnel, the Node TLS pipe: all threads) or several
 * (nginx: master + workers). Used by the load worker, which samples right
 * around the timed work, and by the orchestrator.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readMachineCpu, readProcCpu } from '../proc-cpu.js';

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
