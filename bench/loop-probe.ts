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
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

const [host = '127.0.0.1', portText = '', intervalText = '10'] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(intervalText);

function reply(o: object): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

interface Session {
  socket: net.Socket;
  timer: NodeJS.Timeout | undefined;
  samples: number[];
  skipped: number;
  sentAt: number | undefined;
  buf: string;
  onLine: ((line: string) => void) | undefined;
}

let session: Session | undefined;

function fatal(message: string): void {
  reply({ error: message });
  process.exit(1);
}

function start(): void {
  if (session) fatal('start while running');
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  const s: Session = { socket, timer: undefined, samples: [], skipped: 0, sentAt: undefined, buf: '', onLine: undefined };
  session = s;
  socket.setEncoding('latin1');
  socket.on('error', (err) => fatal(`probe connection: ${err.message}`));
  socket.on('close', () => {
    if (session === s) fatal('probe connection closed by popgate');
  });
  socket.on('data', (chunk: string) => {
    s.buf += chunk;
    for (let nl = s.buf.indexOf('\r\n'); nl >= 0; nl = s.buf.indexOf('\r\n')) {
      const line = s.buf.slice(0, nl);
      s.buf = s.buf.slice(nl + 2);
      s.onLine?.(line);
    }
  });
  s.onLine = (greeting) => {
    if (!greeting.startsWith('+OK')) fatal(`probe greeting: ${greeting}`);
    s.onLine = (line) => {
      if (s.sentAt === undefined) return;
      if (!line.startsWith('+OK')) fatal(`probe NOOP: ${line}`);
      s.samples.push(performance.now() - s.sentAt);
      s.sentAt = undefined;
    };
    s.timer = setInterval(() => {
      if (s.sentAt !== undefined) {
        s.skipped++;
        return;
      }
      s.sentAt = performance.now();
      socket.write('NOOP\r\n');
    }, intervalMs);
    reply({ started: true });
  };
}

function stop(): void {
  const s = session;
  if (!s) return fatal('stop while not running');
  if (s.timer) clearInterval(s.timer);
  session = undefined;
  s.socket.end('QUIT\r\n');
  const sorted = [...s.samples].sort((a, b) => a - b);
  reply({
    n: sorted.length,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1] ?? 0,
    skipped: s.skipped,
  });
}

if (!Number.isSafeInteger(port) || port < 1 || !(intervalMs > 0)) fatal('usage: loop-probe HOST PORT INTERVAL_MS');
const rl = createInterface({ input: process.stdin });
rl.on('line', (cmd) => {
  if (cmd === 'start') start();
  else if (cmd === 'stop') stop();
  else fatal(`unknown command ${JSON.stringify(cmd)}`);
});
rl.on('close', () => process.exit(0));
