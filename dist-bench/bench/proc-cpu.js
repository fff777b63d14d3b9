/**
 * CPU time of another process (all its threads, e.g. libuv's scrypt pool
 * included) from /proc/<pid>/stat: utime + stime, in clock ticks.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
let ticksPerSecond;
/** `getconf CLK_TCK`, or 100 (the Linux USER_HZ everywhere in practice) when that fails. */
export function clockTicksPerSecond() {
    if (ticksPerSecond === undefined) {
        ticksPerSecond = 100;
        try {
            const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim();
            const n = Number(out);
            if (Number.isSafeInteger(n) && n > 0)
                ticksPerSecond = n;
        }
        catch {
            /* keep 100 */
        }
    }
    return ticksPerSecond;
}
/** Reads utime/stime (fields 14 and 15) of a live process. Throws if it is gone. */
export function readProcCpu(pid) {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Field 2 (comm) is in parentheses and may contain spaces or ')': split after the last ')'.
    const close = text.lastIndexOf(')');
    if (close < 0)
        throw new Error(`/proc/${pid}/stat: unexpected format`);
    const fields = text.slice(close + 2).trim().split(/\s+/);
    // fields[0] is field 3 (state), so field k is fields[k - 3].
    const utime = Number(fields[14 - 3]);
    const stime = Number(fields[15 - 3]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime))
        throw new Error(`/proc/${pid}/stat: bad utime/stime`);
    const msPerTick = 1000 / clockTicksPerSecond();
    return { userMs: utime * msPerTick, sysMs: stime * msPerTick, totalMs: (utime + stime) * msPerTick };
}
/** CPU consumed by `pid` between start() and stop(). */
export class CpuMeter {
    pid;
    startMs;
    constructor(pid) {
        this.pid = pid;
    }
    start() {
        this.startMs = readProcCpu(this.pid).totalMs;
    }
    /** CPU milliseconds (user + sys) since start(); resolution is one clock tick. */
    stop() {
        if (this.startMs === undefined)
            throw new Error('CpuMeter.stop() before start()');
        const used = readProcCpu(this.pid).totalMs - this.startMs;
        this.startMs = undefined;
        return used;
    }
}
//# sourceMappingURL=proc-cpu.js.map