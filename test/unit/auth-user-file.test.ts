import { mkdtemp, rename, rm, symlink, unlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino, { type Logger } from 'pino';
import { createUserFileVerifier, hashPassword, parseUserFile, verifyParsedHash, type ParsedHash, type UserFileVerifier } from '../../src/auth/index.js';
import type { PasswordRequest } from '../../src/auth/types.js';

interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger writing JSON lines into memory. */
function memoryLogger(): { logger: Logger; records: () => LogRecord[]; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  const text = (): string => chunks.join('');
  const records = (): LogRecord[] =>
    text()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as LogRecord);
  return { logger, records, text };
}

const WARN = 40;
const ERROR = 50;
const INFO = 30;

function req(username: string, password: string): PasswordRequest {
  return { username, password, mechanism: 'USER', tls: true };
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition not met in time');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let dir: string;
let aliceHash: string;
let bobHash: string;
let carolHash: string;
const open: UserFileVerifier[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-auth-'));
  aliceHash = await hashPassword('alice-pw', { scryptLogN: 10 });
  bobHash = await hashPassword('bob-pw', { algorithm: 'bcrypt', bcryptCost: 4 });
  carolHash = await hashPassword('carol-pw', { scryptLogN: 10 });
});

afterEach(() => {
  for (const v of open.splice(0)) v.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCounter = 0;
async function userFile(content: string): Promise<string> {
  const path = join(dir, `users-${++fileCounter}`);
  await writeFile(path, content);
  return path;
}

/** Replace a file atomically (write + rename), as editors and config tools do. */
async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${Date.now()}`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}

async function create(path: string, logger: Logger, pollIntervalMs = 100): Promise<UserFileVerifier> {
  const v = await createUserFileVerifier({ path, logger, pollIntervalMs });
  open.push(v);
  return v;
}

describe('parseUserFile', () => {
  it('handles comments, blank lines, extra fields, CRLF and bad lines', () => {
    const text = [
      '\uFEFF# a comment',
      '',
      `alice:${aliceHash}`,
      `bob:${bobHash}:Bob Builder:extra`,
      '   # indented comment',
      'no-colon-here',
      `:${carolHash}`,
      `carol:not-a-hash`,
      `alice:${carolHash}`,
      ` dave:${carolHash}`,
      `Alice:${carolHash}\r`,
      '   ',
    ].join('\n');
    const { users, problems } = parseUserFile(text);
    expect([...users.keys()]).toEqual(['alice', 'bob', 'Alice']);
    expect(users.get('bob')).toMatchObject({ algorithm: 'bcrypt', variant: '2y' });
    expect(problems).toEqual([
      { line: 6, problem: 'missing-colon' },
      { line: 7, problem: 'empty-user' },
      { line: 8, problem: 'invalid-hash', user: 'carol' },
      { line: 9, problem: 'duplicate-user', user: 'alice' },
      { line: 10, problem: 'user-whitespace' },
    ]);
  });
});

describe('createUserFileVerifier', () => {
  it('loads a file, warns about bad lines by line number and never logs hashes or passwords', async () => {
    const path = await userFile(
      [
        '# users',
        `alice:${aliceHash}`,
        'garbage line',
        `bob:${bobHash}:comment`,
        `eve:$scrypt$ln=30,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$0phJ/Qi8MyTTirk3tin0ZPiKbc3QrYFtp5xhKiiVWTg`,
        `alice:${carolHash}`,
        '',
      ].join('\n'),
    );
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    expect(v.name).toBe('user-file');
    expect(v.userCount).toBe(2);

    const warns = mem.records().filter((r) => r.level === WARN);
    expect(warns.map((w) => [w.file, w.line, w.problem])).toEqual([
      [path, 3, 'missing-colon'],
      [path, 5, 'invalid-hash'],
      [path, 6, 'duplicate-user'],
    ]);
    const info = mem.records().find((r) => r.level === INFO && r.msg === 'user file loaded');
    expect(info).toMatchObject({ file: path, users: 2 });

    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });
    expect(await v.verify(req('bob', 'bob-pw'))).toEqual({ ok: true, user: 'bob' });
    expect(await v.verify(req('alice', 'wrong'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('eve', 'x'))).toEqual({ ok: false, reason: 'unknown-user' });

    const logText = mem.text();
    for (const secret of [aliceHash, bobHash, carolHash, '0phJ/Qi8MyTT', 'alice-pw', 'bob-pw', 'wrong', 'garbage line']) {
      expect(logText).not.toContain(secret);
    }
    expect(logText).not.toContain('$scrypt$');
    expect(logText).not.toContain('$2y$');
  });

  it('distinguishes unknown users from wrong passwords, matching names case-sensitively', async () => {
    const path = await userFile(`alice:${aliceHash}\nbob:${bobHash}\n`);
    const v = await create(path, memoryLogger().logger);
    expect(await v.verify(req('mallory', 'alice-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verify(req('Alice', 'alice-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verify(req('alice ', 'alice-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verify(req('__proto__', 'x'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verify(req('alice', 'ALICE-PW'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('bob', 'alice-pw'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('alice', ''))).toEqual({ ok: false, reason: 'bad-password' });
  });

  it('checks unknown users against a dummy hash of the same cost as real entries', async () => {
    // Timing equality is a property of doing the same work; assert the work, not the clock.
    const slowHash = await hashPassword('slow-pw', { scryptLogN: 14 });
    const path = await userFile(`slow:${slowHash}\n`);
    const seen: ParsedHash[] = [];
    const v = await createUserFileVerifier({
      path,
      logger: memoryLogger().logger,
      verifyHash: async (pw, hash) => {
        seen.push(hash);
        return verifyParsedHash(pw, hash);
      },
    });
    try {
      expect(await v.verify(req('slow', 'nope'))).toEqual({ ok: false, reason: 'bad-password' });
      expect(await v.verify(req('nobody', 'nope'))).toEqual({ ok: false, reason: 'unknown-user' });
      expect(seen).toHaveLength(2);
      const [real, dummy] = seen as [ParsedHash, ParsedHash];
      expect(dummy).toMatchObject({ algorithm: 'scrypt', logN: 14, r: real.algorithm === 'scrypt' ? real.r : -1 });
      expect(dummy).not.toBe(real);
    } finally {
      v.close();
    }
  });

  it('rejects creation with an error naming the path when the file is missing', async () => {
    const path = join(dir, 'does-not-exist');
    const mem = memoryLogger();
    await expect(createUserFileVerifier({ path, logger: mem.logger })).rejects.toThrow(path);
  });

  it('rejects creation when the path is unreadable as a file', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    await expect(createUserFileVerifier({ path, logger: memoryLogger().logger })).rejects.toThrow(path);
  });

  it('reloads when the file changes', async () => {
    const path = await userFile(`alice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: false, reason: 'unknown-user' });

    await replaceFile(path, `alice:${aliceHash}\ncarol:${carolHash}\n`);
    await waitFor(() => v.userCount === 2);
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: true, user: 'carol' });
    expect(mem.records().find((r) => r.msg === 'user file reloaded')).toMatchObject({
      level: INFO,
      file: path,
      users: 2,
    });

    // an in-place rewrite is noticed too, and removed users go away
    // (a non-atomic write may be seen half-done first; the final state must win)
    await writeFile(path, `carol:${carolHash}\n`);
    await waitFor(() => v.userCount === 1);
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: true, user: 'carol' });
  });

  it('follows a Kubernetes-style ..data symlink swap', async () => {
    const mount = join(dir, 'secret-mount');
    await mkdir(join(mount, '..2024_01'), { recursive: true });
    await writeFile(join(mount, '..2024_01', 'users'), `alice:${aliceHash}\n`);
    await symlink('..2024_01', join(mount, '..data'));
    await symlink(join('..data', 'users'), join(mount, 'users'));

    const v = await create(join(mount, 'users'), memoryLogger().logger);
    expect(v.userCount).toBe(1);

    // kubelet: write a new timestamped dir, then atomically rename a new symlink over ..data
    await mkdir(join(mount, '..2024_02'));
    await writeFile(join(mount, '..2024_02', 'users'), `alice:${aliceHash}\nbob:${bobHash}\n`);
    await symlink('..2024_02', join(mount, '..data_tmp'));
    await rename(join(mount, '..data_tmp'), join(mount, '..data'));
    await rm(join(mount, '..2024_01'), { recursive: true });

    await waitFor(() => v.userCount === 2);
    expect(await v.verify(req('bob', 'bob-pw'))).toEqual({ ok: true, user: 'bob' });
  });

  it('reload() re-reads the file on demand (SIGHUP)', async () => {
    const path = await userFile(`alice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger, 60_000);
    await replaceFile(path, `bob:${bobHash}\n`);
    await v.reload();
    expect(v.userCount).toBe(1);
    expect(await v.verify(req('bob', 'bob-pw'))).toEqual({ ok: true, user: 'bob' });
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('keeps the previous users when a reload fails, and recovers', async () => {
    const path = await userFile(`alice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger);

    await unlink(path);
    await waitFor(() => mem.records().some((r) => r.level === ERROR));
    const err = mem.records().find((r) => r.level === ERROR);
    expect(err).toMatchObject({ file: path, users: 1 });
    expect(v.userCount).toBe(1);
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });

    // an explicit reload fails the same way without rejecting
    await expect(v.reload()).resolves.toBeUndefined();
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });

    await writeFile(path, `alice:${aliceHash}\ncarol:${carolHash}\n`);
    await waitFor(() => v.userCount === 2);
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: true, user: 'carol' });
  });

  it('stops watching after close()', async () => {
    const path = await userFile(`alice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    v.close();
    v.close(); // idempotent

    await replaceFile(path, `alice:${aliceHash}\ncarol:${carolHash}\n`);
    await sleep(500);
    expect(v.userCount).toBe(1);
    expect(mem.records().some((r) => r.msg === 'user file reloaded')).toBe(false);
    // the loaded users still answer
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
  });
});
