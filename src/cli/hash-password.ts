import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { HASH_BOUNDS, hashPassword, type HashAlgorithm } from '../auth/index.js';
import { isValidPop3User } from '../identity/principal-mapper.js';

/** Read one password: from a pipe as the first line, from a terminal twice without echo. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return (Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '');
  }
  const ask = async (prompt: string): Promise<string> => {
    process.stderr.write(prompt);
    const muted = new Writable({ write: (_c, _e, cb) => cb() });
    const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
    const answer = await new Promise<string>((resolve) => rl.question('', resolve));
    rl.close();
    process.stderr.write('\n');
    return answer;
  };
  const first = await ask('Password: ');
  const second = await ask('Again: ');
  if (first !== second) throw new Error('passwords do not match');
  return first;
}

export interface HashPasswordCommand {
  readonly user: string | undefined;
  readonly algorithm: HashAlgorithm;
  /** scram-sha-256 only: PBKDF2 iterations (default 4096). */
  readonly iterations?: number;
}

export async function runHashPassword(opts: HashPasswordCommand): Promise<number> {
  if (opts.user !== undefined && !isValidPop3User(opts.user)) {
    process.stderr.write('popgate hash-password: user names cannot be empty or contain ":", spaces or control characters\n');
    return 2;
  }
  const bounds = HASH_BOUNDS.scramIterations;
  if (opts.iterations !== undefined && (opts.iterations < bounds.min || opts.iterations > bounds.max)) {
    process.stderr.write(`popgate hash-password: --iterations must lie in ${bounds.min}..${bounds.max}\n`);
    return 2;
  }
  const password = await readPassword();
  if (password === '') {
    process.stderr.write('popgate hash-password: empty password refused\n');
    return 2;
  }
  const hash = await hashPassword(password, {
    algorithm: opts.algorithm,
    ...(opts.iterations !== undefined ? { scramIterations: opts.iterations } : {}),
  });
  process.stdout.write(opts.user !== undefined ? `${opts.user}:${hash}\n` : `${hash}\n`);
  return 0;
}
