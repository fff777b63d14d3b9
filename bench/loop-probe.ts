/**
 * External event-loop probe, run by the benchmark as its own process
 * (`node dist-bench/bench/loop-probe.js HOST PORT INTERVAL_MS`) so the load
 * generator's busy event loop does not distort it. Commands on stdin, one
 * JSON answer per line on stdout:
 *
 *   start -> connects to popgate's plaintext POP3 port, reads the greeting,
 *            then every INTERVAL_MS sends `NOOP` on that otherwise idle
 *            connection (never more than one outstanding) and times the
 *            round trip to its `+OK`. Answers {"started":true}.
 *   stop  -> stops, QUITs, answers {"n":..,"p50Ms":..,"p99Ms":..,"maxMs":..,"skipped":..}
 *            (skipped = ticks that found the previous NOOP still unanswered).
 *
 * The round trip is popgate's reaction time to a trivial command: the time
 * its event loop (and the OS scheduler) make the command wait, plus the
 * loopback round trip and this process's own wake-up, which is why the
 * benchmark reports it against an idle baseline.
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { quantile } from './lib/stats.js';
import { Pop3Conn } from './lib/wire.js';

const [host = '127.0.0.1', portText = '', intervalText = '10'] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(intervalText);

function reply(o: object): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

interface Session {
  readonly conn: Pop3Conn;
  timer: NodeJS.Timeout | undefined;
  readonly samples: number[];
  skipped: number;
  pending: boolean;
}

let session: Session | undefined;

function fatal(message: string): void {
  reply({ error: message });
  process.exit(1);
}

async function start(): Promise<void> {
  if (session) fatal('start while running');
  const conn = await Pop3Conn.connect({ label: 'probe', host, port });
  const s: Session = { conn, timer: undefined, samples: [], skipped: 0, pending: false };
  session = s;
  s.timer = setInterval(() => {
    // One NOOP at a time: a tick that finds the last one unanswered is counted, not queued.
    if (s.pending) {
      s.skipped++;
      return;
    }
    s.pending = true;
    const t0 = performance.now();
    conn.command('NOOP').then(
      () => {
        s.samples.push(performance.now() - t0);
        s.pending = false;
      },
      (err: unknown) => {
        if (session === s) fatal(`probe NOOP: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }, intervalMs);
  reply({ started: true });
}

function stop(): void {
  const s = session;
  if (!s) return fatal('stop while not running');
  if (s.timer) clearInterval(s.timer);
  session = undefined;
  s.conn.write('QUIT\r\n');
  s.conn.destroy();
  const q = (x: number): number => (s.samples.length === 0 ? 0 : quantile(s.samples, x));
  reply({ n: s.samples.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: q(1), skipped: s.skipped });
}

if (!Number.isSafeInteger(port) || port < 1 || !(intervalMs > 0)) fatal('usage: loop-probe HOST PORT INTERVAL_MS');
const rl = createInterface({ input: process.stdin });
rl.on('line', (cmd) => {
  if (cmd === 'start') start().catch((err: unknown) => fatal(`probe connection: ${err instanceof Error ? err.message : String(err)}`));
  else if (cmd === 'stop') stop();
  else fatal(`unknown command ${JSON.stringify(cmd)}`);
});
rl.on('close', () => process.exit(0));
