/**
 * GNU SASL's command-line client (`gsasl`, apt package gsasl) as an
 * independent SASL client: run in its stdin/stdout mode (no host argument),
 * each client message it prints is handed to `server`, and the answer is
 * typed back as the server's data. Facts found with gsasl 2.2.0 (Debian 12):
 *
 * - Its prompts and messages go to stdout and stderr both; the helper merges
 *   them (sh `2>&1`) to read them in order.
 * - SCRAM-SHA-256-PLUS asks for tls-exporter data (then tls-unique data, which
 *   the helper answers empty) and binds to tls-exporter. The non-PLUS
 *   SCRAM-SHA-256 asks for the same data unless run with `--no-cb`, and then
 *   fails in this mode ("Error authenticating user"): so it always gets
 *   `--no-cb` here, and sends flag `n` (it cannot be made to send `y`).
 * - After the server-final message it prints an empty client message and
 *   wants an empty line, then says `Client authentication finished (server
 *   trusted)...` (it checked the server signature) and reads application data
 *   until EOF; it exits 0. A refused exchange exits non-zero.
 */
import { spawn } from 'node:child_process';

export interface GsaslOptions {
  readonly mechanism: string;
  readonly user: string;
  readonly password: string;
  readonly authzid?: string;
  /** tls-exporter data the client binds to (PLUS mechanisms); without it the client runs with --no-cb. */
  readonly tlsExporter?: Buffer;
  /** The server side: a client message in, the next challenge out; undefined ends the exchange (a failure). */
  readonly server: (clientMessage: Buffer) => Buffer | undefined;
  readonly timeoutMs?: number;
}

export interface GsaslResult {
  readonly code: number | null;
  /** Every client message, decoded. */
  readonly clientMessages: readonly Buffer[];
  /** gsasl said the authentication finished with the server trusted (its signature checked). */
  readonly trusted: boolean;
  /** What gsasl printed (prompts, messages, errors). */
  readonly output: string;
}

const PROMPTS = {
  exporter: 'Enter base64 encoded tls-exporter channel binding: ',
  unique: 'Enter base64 encoded tls-unique channel binding: ',
  server: 'Enter base64 authentication data from server (press RET if none):\n',
  appData: 'Enter application data (EOF to finish):\n',
} as const;
const CLIENT_OUTPUT = /Output from client:\n([A-Za-z0-9+/=]*)\n/;

/** Runs one exchange; rejects when gsasl is missing or does not finish within the timeout. */
export function gsaslClient(o: GsaslOptions): Promise<GsaslResult> {
  const args = [
    '--client',
    '--mechanism',
    o.mechanism,
    '--authentication-id',
    o.user,
    '--password',
    o.password,
    ...(o.authzid !== undefined ? ['--authorization-id', o.authzid] : []),
    '--no-starttls',
    '--verbose',
    ...(o.tlsExporter === undefined ? ['--no-cb'] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'exec gsasl "$@" 2>&1', 'sh', ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gsasl did not finish in time; output so far:\n${output}`));
    }, o.timeoutMs ?? 10_000);
    let output = '';
    let unread = '';
    let answer: Buffer | undefined;
    const clientMessages: Buffer[] = [];
    const write = (line: string): void => {
      if (!child.stdin.writableEnded) child.stdin.write(`${line}\n`);
    };
    const step = (): void => {
      for (;;) {
        const m = CLIENT_OUTPUT.exec(unread);
        const prompts = (Object.entries(PROMPTS) as Array<[keyof typeof PROMPTS, string]>)
          .map(([k, text]) => ({ k, at: unread.indexOf(text), len: text.length }))
          .filter((p) => p.at >= 0);
        const first = prompts.sort((a, b) => a.at - b.at)[0];
        if (m && (first === undefined || m.index < first.at)) {
          unread = unread.slice(m.index + m[0].length);
          const message = Buffer.from(m[1] ?? '', 'base64');
          clientMessages.push(message);
          answer = o.server(message);
          if (answer === undefined) child.stdin.end();
          continue;
        }
        if (first === undefined) return;
        unread = unread.slice(first.at + first.len);
        if (first.k === 'exporter') write(o.tlsExporter?.toString('base64') ?? '');
        else if (first.k === 'unique') write('');
        else if (first.k === 'server') write(answer?.toString('base64') ?? '');
        else child.stdin.end();
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      output += chunk;
      unread += chunk;
      step();
    });
    child.stdin.on('error', () => {
      // gsasl gave up and closed its stdin first: its exit code says why.
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (/gsasl: (not found|No such file)/.test(output) || code === 127) {
        reject(new Error('gsasl not found: run scripts/setup.sh (apt package gsasl)'));
        return;
      }
      resolve({ code, clientMessages, trusted: output.includes('Client authentication finished (server trusted)'), output });
    });
  });
}
