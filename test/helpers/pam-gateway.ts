/**
 * The shipped CLI (`popgate serve`, dist/cli/main.js) under pam_wrapper, so
 * a whole gateway checks passwords against the private PAM stack of a
 * PamSandbox (test/helpers/pam-wrapper.ts): LD_PRELOAD only works from a
 * process's start, so the gateway runs as a child, never in the test
 * process. One pop3s listener on a free loopback port, read back from the
 * "popgate ready" log line.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, startCli, type LogRecord, type RunningCli } from './cli-process.js';
import type { PamSandbox } from './pam-wrapper.js';
import { waitFor } from './wait.js';

export interface PamGatewayOptions {
  /** The `auth:` and `backend:` sections (YAML, indented as top-level keys); the listener and log are added. */
  readonly sections: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Log level; default trace (every line the gateway can write). */
  readonly logLevel?: string;
}

export interface PamGateway {
  /** The pop3s listener's port. */
  readonly port: number;
  readonly cli: RunningCli;
  /** The JSON log records so far. */
  records(): LogRecord[];
  /** SIGTERM, then SIGKILL after 15 s (a PAM call hung in pam_exec holds the exit until it returns); the exit code. */
  stop(): Promise<number | null>;
}

let configs = 0;

export async function startPamGateway(sandbox: PamSandbox, opts: PamGatewayOptions): Promise<PamGateway> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (scripts/test.sh does)`);
  const file = path.join(sandbox.dir, `popgate-${++configs}.yaml`);
  await writeFile(
    file,
    `log: { level: ${opts.logLevel ?? 'trace'} }
listeners:
  - { name: pam-pop3s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: ${opts.certFile}, keyFile: ${opts.keyFile} } }
shutdown: { drainTimeout: 1s }
${opts.sections}
`,
  );
  const cli = startCli(['serve', '--config', file], { env: sandbox.env });
  let exited: number | null | undefined;
  void cli.exited.then((code) => (exited = code));
  const ready = await waitFor(
    'popgate serve under pam_wrapper to be ready',
    () => {
      if (exited !== undefined) throw new Error(`popgate serve exited ${String(exited)} before it was ready:\n${cli.output()}`);
      return cli.records().find((r) => r.msg === 'popgate ready');
    },
    { timeoutMs: 20_000 },
  );
  const listeners = ready.listeners as Array<{ name: string; port: number }>;
  const port = listeners.find((l) => l.name === 'pam-pop3s')?.port;
  if (port === undefined) throw new Error(`no pam-pop3s listener in ${JSON.stringify(ready)}`);
  let stopping: Promise<number | null> | undefined;
  return {
    port,
    cli,
    records: () => cli.records(),
    stop() {
      stopping ??= (async () => {
        if (exited !== undefined) return exited;
        cli.child.kill('SIGTERM');
        const killer = setTimeout(() => cli.child.kill('SIGKILL'), 15_000);
        const code = await cli.exited;
        clearTimeout(killer);
        return code;
      })();
      return stopping;
    },
  };
}
