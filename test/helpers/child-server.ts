/**
 * The child-process plumbing of the private test servers (slapd.ts,
 * tinyproxy.ts, redis.ts): spawn the binary with stdout and stderr piped into
 * one `output` string, record how it ended (`exit <code|signal>` or
 * `spawn error ...`), wait until it is ready or gone, and stop it by its PID.
 *
 * `exitEvent` is which event ends it: 'exit' (default; the process is gone,
 * its last output may still be in the pipes) or 'close' (gone and its output
 * read to the end). 'close' is not the default: it also waits for any
 * process that inherited the pipes (a redis-server fork for a replica sync,
 * say), which could hold stop() up.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { waitFor } from './wait.js';

export interface ChildServerOptions {
  /** Passed to spawn; stdio is always ['ignore', 'pipe', 'pipe']. */
  readonly spawn?: Omit<SpawnOptions, 'stdio'>;
  /** The event that ends it; default 'exit' (see above). */
  readonly exitEvent?: 'exit' | 'close';
}

export interface ChildServer {
  readonly child: ChildProcess;
  /** Its PID (undefined only after a spawn error, which exited() then reports). */
  readonly pid: number;
  /** Resolves when it has ended (exited() is then set); never rejects. */
  readonly exit: Promise<void>;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** `exit <code|signal>` or `spawn error <message>` once it has ended; undefined while it runs. */
  exited(): string | undefined;
  /**
   * Polls `probe` (waitFor) until it is true, or until the process ends (at
   * once). If it did not become ready it is SIGKILLed (when still running)
   * and this throws: the message is exited() or the timeout.
   */
  waitReady(what: string, probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void>;
  /** SIGTERM by PID, SIGKILL after graceMs, resolves once it has ended. Idempotent. */
  stop(graceMs: number): Promise<void>;
}

export function spawnChildServer(bin: string, args: readonly string[], options: ChildServerOptions = {}): ChildServer {
  const child = spawn(bin, args, { ...options.spawn, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exited: string | undefined;
  child.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const exit = new Promise<void>((resolve) => {
    child.once(options.exitEvent ?? 'exit', (code: number | null, signal: NodeJS.Signals | null) => {
      exited = `exit ${code ?? signal}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `spawn error ${err.message}`;
      resolve();
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    child,
    pid: child.pid!,
    exit,
    output: () => output,
    exited: () => exited,
    async waitReady(what, probe, timeoutMs) {
      try {
        // An exit ends the wait at once.
        await waitFor(what, async () => exited !== undefined || (await probe()), { timeoutMs });
        if (exited !== undefined) throw new Error(exited);
      } catch (err) {
        if (exited === undefined && child.pid !== undefined) child.kill('SIGKILL');
        throw err;
      }
    },
    stop(graceMs) {
      stopping ??= (async () => {
        if (exited !== undefined) return;
        const pid = child.pid!;
        process.kill(pid, 'SIGTERM');
        const killer = setTimeout(() => {
          if (exited === undefined) process.kill(pid, 'SIGKILL');
        }, graceMs);
        await exit;
        clearTimeout(killer);
      })();
      return stopping;
    },
  };
}
