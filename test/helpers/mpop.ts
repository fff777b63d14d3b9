/** mpop (Debian's) as a test client: one run with a command-line account, delivering into a fresh maildir. */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runProgram } from './clients.js';

export interface MpopResult {
  readonly code: number | null;
  /** stdout and stderr. */
  readonly out: string;
  /** The delivered messages (mpop writes them with LF line ends). */
  readonly messages: Buffer[];
}

/**
 * Runs mpop once with `args` (account options such as --host, --auth,
 * --passwordeval) and no config file, its HOME a fresh directory under
 * `workDir`; keeps the messages on the server.
 */
export async function runMpop(workDir: string, args: readonly string[]): Promise<MpopResult> {
  const dir = await mkdtemp(join(workDir, 'mpop-'));
  const md = join(dir, 'Maildir');
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(md, sub), { recursive: true });
  const r = await runProgram(
    'mpop',
    [
      ...args,
      `--delivery=maildir,${md}`,
      '--keep=on',
      '--only-new=off',
      '--received-header=off',
      `--uidls-file=${join(dir, 'uidls')}`,
      '--timeout=20',
      '-d',
    ],
    { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir }, timeoutMs: 60_000 },
  );
  const messages: Buffer[] = [];
  for (const sub of ['new', 'cur']) {
    for (const f of await readdir(join(md, sub))) messages.push(await readFile(join(md, sub, f)));
  }
  return { code: r.code, out: r.stdout + r.stderr, messages };
}

/** SHA-256 hex of `b`. */
export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What mpop (or fetchmail) should deliver for `msgs` (CRLF line ends become LF), as sorted hashes. */
export const lfShas = (msgs: readonly Buffer[]): string[] =>
  msgs.map((m) => sha256Hex(Buffer.from(m.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'))).sort();
