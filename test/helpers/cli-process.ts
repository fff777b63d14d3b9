/**
 * The shipped CLI (dist/cli/main.js, built by `npm run build`) as a child
 * process, for the e2e tests that run `popgate serve`: its combined output
 * and the JSON log records in it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';

export const CLI = resolve('dist/cli/main.js');

export type LogRecord = Record<string, unknown>;

export interface RunningCli {
  readonly child: ChildProcessWithoutNullStreams;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
  /** The JSON log lines of output(), parsed. */
  records(): LogRecord[];
  /** The exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

export function startCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'pipe', ...(options.env ? { env: options.env } : {}) });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    output: () => out,
    records: () => logRecords(out),
    exited,
  };
}

/** The JSON records among the lines of `text` (other lines skipped). */
export function logRecords(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogRecord);
}
