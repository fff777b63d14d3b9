import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { mkdtemp, rename, rm, symlink, unlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino, { type Logger } from 'pino';
import { createUserFileVerifier, hashPassword, parseUserFile, verifyParsedHash, type ParsedHash, type UserFileVerifier } from '../../src/auth/index.js';
import { apopDigest, cramMd5Digest } from '../../src/auth/challenge.js';
import { startScram, type ScramCredentials } from '../../src/auth/scram.js';
import type { ChallengeRequest, PasswordRequest } from '../../src/auth/types.js';
import { waitFor } from '../helpers/wait.js';

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

const DEBUG = 20;
const WARN = 40;
const ERROR = 50;
const INFO = 30;

function req(username: string, password: string): PasswordRequest {
  return { username, password, mechanism: 'USER', tls: true };
}


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
    await waitFor('the reload with carol', () => v.userCount === 2, { timeoutMs: 5_000 });
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: true, user: 'carol' });
    expect(mem.records().find((r) => r.msg === 'user file reloaded')).toMatchObject({
      level: INFO,
      file: path,
      users: 2,
    });

    // an in-place rewrite is noticed too, and removed users go away
    // (a non-atomic write may be seen half-done first; the final state must win)
    await writeFile(path, `carol:${carolHash}\n`);
    await waitFor('the reload without alice', () => v.userCount === 1, { timeoutMs: 5_000 });
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

    await waitFor('the reload through the new ..data', () => v.userCount === 2, { timeoutMs: 5_000 });
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
    await waitFor('the failed reload logged', () => mem.records().some((r) => r.level === ERROR), { timeoutMs: 5_000 });
    const err = mem.records().find((r) => r.level === ERROR);
    expect(err).toMatchObject({ file: path, users: 1 });
    expect(v.userCount).toBe(1);
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });

    // an explicit reload fails the same way without rejecting
    await expect(v.reload()).resolves.toBeUndefined();
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });

    await writeFile(path, `alice:${aliceHash}\ncarol:${carolHash}\n`);
    await waitFor('the recovering reload', () => v.userCount === 2, { timeoutMs: 5_000 });
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: true, user: 'carol' });
  });

  it('stops watching after close()', async () => {
    const path = await userFile(`alice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    // A witness still watching the same file (the same shared poller): once it
    // has reloaded, the change was seen, and the closed one must have ignored it.
    const witness = await create(path, memoryLogger().logger);
    v.close();
    v.close(); // idempotent

    await replaceFile(path, `alice:${aliceHash}\ncarol:${carolHash}\n`);
    await waitFor('the witness to reload', () => witness.userCount === 2, { timeoutMs: 5_000 });
    expect(v.userCount).toBe(1);
    expect(mem.records().some((r) => r.msg === 'user file reloaded')).toBe(false);
    // the loaded users still answer
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });
    expect(await v.verify(req('carol', 'carol-pw'))).toEqual({ ok: false, reason: 'unknown-user' });
  });
});

describe('plaintext-equivalent entries ({PLAIN}) and challenge logins', () => {
  /** RFC 2195's and RFC 1939's examples. */
  const CRAM = { challenge: '<1896.697170952@postoffice.reston.mci.net>', digest: 'b913a602c7eda7a495b4e6e7334d3890' };
  const APOP = { challenge: '<1896.697170952@dbc.mtview.ca.us>', digest: 'c4c9334bac560ecc979e58001b3e22fb' };
  const cram = (username: string, response = CRAM.digest): ChallengeRequest => ({
    username,
    mechanism: 'CRAM-MD5',
    challenge: CRAM.challenge,
    response,
  });
  const apop = (username: string, response = APOP.digest): ChallengeRequest => ({
    username,
    mechanism: 'APOP',
    challenge: APOP.challenge,
    response,
  });

  it('parses {PLAIN} and {PLAIN.B64} entries; the secret ends at the next colon like a hash', () => {
    const { users, problems } = parseUserFile(
      [
        'tim:{PLAIN}tanstaaftanstaaf',
        'mrose:{plain}tanstaaf:Marshall Rose',
        'colon:{PLAIN}a:b',
        'b64:{PLAIN.B64}YTpi:secret with a colon',
        'spaces:{PLAIN}two words   ',
        'empty:{PLAIN}',
        'other:{SHA512-CRYPT}$6$abc',
        `alice:${aliceHash}`,
      ].join('\n'),
    );
    const secret = (u: string): string | undefined => {
      const e = users.get(u);
      return e?.algorithm === 'plain' ? e.secret.toString('utf8') : undefined;
    };
    expect([...users.keys()]).toEqual(['tim', 'mrose', 'colon', 'b64', 'spaces', 'alice']);
    expect(secret('tim')).toBe('tanstaaftanstaaf');
    expect(secret('mrose')).toBe('tanstaaf');
    expect(secret('colon')).toBe('a');
    expect(secret('b64')).toBe('a:b');
    expect(secret('spaces')).toBe('two words');
    expect(users.get('alice')).toMatchObject({ algorithm: 'scrypt' });
    expect(problems).toEqual([
      { line: 6, problem: 'invalid-hash', user: 'empty' },
      { line: 7, problem: 'invalid-hash', user: 'other' },
    ]);
  });

  it('verifies ordinary passwords against {PLAIN} entries', async () => {
    const path = await userFile('tim:{PLAIN}tanstaaftanstaaf\nb64:{PLAIN.B64}cMOkc3M6d8O2cmQ=\n');
    const v = await create(path, memoryLogger().logger);
    expect(await v.verify(req('tim', 'tanstaaftanstaaf'))).toEqual({ ok: true, user: 'tim' });
    expect(await v.verify(req('tim', 'tanstaaftanstaaF'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('tim', 'tanstaaftanstaaf '))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('tim', 'tanstaaf'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('b64', 'p\u00e4ss:w\u00f6rd'))).toEqual({ ok: true, user: 'b64' });
    expect(await v.verify(req('nobody', 'tanstaaftanstaaf'))).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('answers APOP and CRAM-MD5 for {PLAIN} entries (the RFC examples)', async () => {
    const path = await userFile(`tim:{PLAIN}tanstaaftanstaaf\nmrose:{PLAIN}tanstaaf\nalice:${aliceHash}\n`);
    const v = await create(path, memoryLogger().logger);
    expect(v.canVerifyChallenges).toBe(true);
    expect(await v.verifyChallenge(cram('tim'))).toEqual({ ok: true, user: 'tim' });
    expect(await v.verifyChallenge(cram('tim', CRAM.digest.toUpperCase()))).toEqual({ ok: true, user: 'tim' });
    expect(await v.verifyChallenge(apop('mrose'))).toEqual({ ok: true, user: 'mrose' });
    // Digest mismatch: another user's secret, the other mechanism, garbage.
    expect(await v.verifyChallenge(cram('mrose'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verifyChallenge(apop('tim'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verifyChallenge({ ...apop('mrose'), mechanism: 'CRAM-MD5' })).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verifyChallenge(cram('tim', 'not-hex'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verifyChallenge(cram('Tim'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await v.verifyChallenge(cram('nobody'))).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('refuses challenges for hashed entries as disabled, saying why at debug level', async () => {
    const path = await userFile(`tim:{PLAIN}tanstaaftanstaaf\nalice:${aliceHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    const response = apopDigest(APOP.challenge, 'alice-pw');
    expect(await v.verifyChallenge(apop('alice', response))).toEqual({ ok: false, reason: 'disabled' });
    const why = mem.records().find((r) => r.msg.includes('no plaintext-equivalent secret'));
    expect(why).toMatchObject({ level: DEBUG, user: 'alice', mechanism: 'APOP', file: path });
    expect(JSON.stringify(why)).not.toContain(response);
    // The ordinary password still works for that user.
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: true, user: 'alice' });
  });

  it('canVerifyChallenges says whether any entry is plaintext-equivalent, and follows reloads', async () => {
    const path = await userFile(`alice:${aliceHash}\nbob:${bobHash}\n`);
    const mem = memoryLogger();
    const v = await create(path, mem.logger, 60_000);
    expect(v.canVerifyChallenges).toBe(false);
    expect(mem.records().find((r) => r.msg === 'user file loaded')).toMatchObject({ users: 2, plaintextEquivalent: 0 });
    expect(await v.verifyChallenge(cram('alice'))).toEqual({ ok: false, reason: 'disabled' });

    await replaceFile(path, `alice:${aliceHash}\ntim:{PLAIN}tanstaaftanstaaf\n`);
    await v.reload();
    expect(v.canVerifyChallenges).toBe(true);
    expect(mem.records().find((r) => r.msg === 'user file reloaded')).toMatchObject({ users: 2, plaintextEquivalent: 1 });
    expect(await v.verifyChallenge(cram('tim'))).toEqual({ ok: true, user: 'tim' });
  });

  it('does the unknown-user work for {PLAIN} entries too, so timing does not single them out', async () => {
    const slowHash = await hashPassword('slow-pw', { scryptLogN: 11 });
    const seen: ParsedHash[] = [];
    const verifyHash = async (pw: string, hash: ParsedHash): Promise<boolean> => {
      seen.push(hash);
      return verifyParsedHash(pw, hash);
    };
    // Mostly hashed: a {PLAIN} check runs the dummy hash first, like an unknown user.
    const mixed = await createUserFileVerifier({
      path: await userFile(`a:${slowHash}\nb:${slowHash}\ntim:{PLAIN}tanstaaftanstaaf\n`),
      logger: memoryLogger().logger,
      verifyHash,
    });
    open.push(mixed);
    expect(await mixed.verify(req('tim', 'tanstaaftanstaaf'))).toEqual({ ok: true, user: 'tim' });
    expect(await mixed.verify(req('nobody', 'x'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(seen).toHaveLength(2);
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toMatchObject({ algorithm: 'scrypt', logN: 11 });

    // Mostly plain: unknown users cost a plain comparison, no hash at all.
    seen.length = 0;
    const plain = await createUserFileVerifier({
      path: await userFile(`tim:{PLAIN}tanstaaftanstaaf\nmrose:{PLAIN}tanstaaf\na:${slowHash}\n`),
      logger: memoryLogger().logger,
      verifyHash,
    });
    open.push(plain);
    expect(await plain.verify(req('nobody', 'x'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(await plain.verify(req('tim', 'tanstaaftanstaaf'))).toEqual({ ok: true, user: 'tim' });
    expect(seen).toHaveLength(0);
    expect(await plain.verify(req('a', 'slow-pw'))).toEqual({ ok: true, user: 'a' });
    expect(seen).toHaveLength(1);
  });

  it('never logs secrets, digests or passwords', async () => {
    const path = await userFile(
      ['tim:{PLAIN}tanstaaftanstaaf', 'b64:{PLAIN.B64}c2VrcmV0LWI2NA==', 'broken:{PLAIN.B64}c2VrcmV0!', `alice:${aliceHash}`, ''].join('\n'),
    );
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    const wrongDigest = cramMd5Digest(CRAM.challenge, 'guess');
    await v.verify(req('tim', 'tanstaaftanstaaf'));
    await v.verify(req('tim', 'wrong-guess'));
    await v.verifyChallenge(cram('tim'));
    await v.verifyChallenge(cram('tim', wrongDigest));
    await v.verifyChallenge(cram('alice', wrongDigest));
    await v.verifyChallenge(apop('nobody'));
    await v.reload();
    const warns = mem.records().filter((r) => r.level === WARN);
    expect(warns.map((w) => [w.line, w.problem])).toEqual([[3, 'invalid-hash'], [3, 'invalid-hash']]);
    const text = mem.text();
    for (const secret of ['tanstaaf', 'c2VrcmV0', 'sekret', 'wrong-guess', CRAM.digest, APOP.digest, wrongDigest, '{PLAIN']) {
      expect(text).not.toContain(secret);
    }
  });
});

describe('SCRAM-SHA-256 entries and scramCredentials', () => {
  /** `doveadm pw -s SCRAM-SHA-256 -p pencil` (Dovecot 2.3.19). */
  const DOVECOT_PENCIL =
    '{SCRAM-SHA-256}4096,o109dVHndhR3vBgraDcKIw==,jPMbHpLdam0k67M7nJL3Yvjm8VpA0kJIu4pJwH0qsas=,vYss85DeBfkcJko8R9u65s09fEXJ+kYvYaVykTxJrV8=';

  /** A SCRAM client on node:crypto, run against the server machine with these credentials. */
  function scramLogin(name: string, password: string, credentials: ScramCredentials): boolean {
    const H = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
    const HMAC = (k: Buffer, s: string): Buffer => createHmac('sha256', k).update(s).digest();
    const bare = `n=${name},r=clientnonce`;
    const s = startScram(Buffer.from(`n,,${bare}`), { plus: false, nonce: () => 'servernonce' });
    if (!s.ok) throw new Error(s.reason);
    const sf = s.exchange.serverFirst(credentials).toString();
    const fields = Object.fromEntries(sf.split(',').map((f) => [f.slice(0, 1), f.slice(2)]));
    const salted = pbkdf2Sync(password, Buffer.from(fields.s!, 'base64'), Number(fields.i), 32, 'sha256');
    const clientKey = HMAC(salted, 'Client Key');
    const withoutProof = `c=biws,r=${fields.r}`;
    const sig = HMAC(H(clientKey), `${bare},${sf},${withoutProof}`);
    const proof = Buffer.from(clientKey.map((x, i) => x ^ (sig[i] as number))).toString('base64');
    return s.exchange.clientFinal(Buffer.from(`${withoutProof},p=${proof}`)).ok;
  }

  let scramAlice: string;
  beforeAll(async () => {
    scramAlice = await hashPassword('alice-scram', { algorithm: 'scram-sha-256', scramIterations: 5000 });
  });

  const fileText = (): string =>
    [`alice:${scramAlice}`, `bob:${bobHash}`, `carol:${carolHash}`, 'tim:{PLAIN}tanstaaf', `dave:${DOVECOT_PENCIL}`, `erin:${scramAlice}`, ''].join('\n');

  it('parses SCRAM entries', () => {
    const { users, problems } = parseUserFile(fileText());
    expect(problems).toEqual([]);
    expect(users.get('alice')).toMatchObject({ algorithm: 'scram-sha-256', iterations: 5000 });
    expect(users.get('dave')).toMatchObject({ algorithm: 'scram-sha-256', iterations: 4096 });
  });

  it('verifies ordinary passwords (USER/PASS, PLAIN) against SCRAM entries', async () => {
    const v = await create(await userFile(fileText()), memoryLogger().logger);
    expect(await v.verify(req('alice', 'alice-scram'))).toEqual({ ok: true, user: 'alice' });
    expect(await v.verify(req('alice', 'alice-pw'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('dave', 'pencil'))).toEqual({ ok: true, user: 'dave' });
    expect(await v.verify(req('dave', 'pencil2'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await v.verify(req('bob', 'bob-pw'))).toEqual({ ok: true, user: 'bob' });
  });

  it('gives the stored keys of a SCRAM entry, and they serve a SCRAM login', async () => {
    const v = await create(await userFile(fileText()), memoryLogger().logger);
    expect(v.canServeScram).toBe(true);
    const alice = await v.scramCredentials('alice');
    const parsed = parseUserFile(fileText()).users.get('alice');
    if (parsed?.algorithm !== 'scram-sha-256' || !alice.found) throw new Error('no SCRAM entry');
    expect(alice.credentials).toEqual({ iterations: 5000, salt: parsed.salt, storedKey: parsed.storedKey, serverKey: parsed.serverKey });
    expect(scramLogin('alice', 'alice-scram', alice.credentials)).toBe(true);
    expect(scramLogin('alice', 'alice-pw', alice.credentials)).toBe(false);
    const dave = await v.scramCredentials('dave');
    expect(dave.found).toBe(true);
    expect(scramLogin('dave', 'pencil', dave.credentials)).toBe(true);
  });

  it('derives keys from a {PLAIN} entry, under a salt that stays the same', async () => {
    const v = await create(await userFile(fileText()), memoryLogger().logger);
    const tim = await v.scramCredentials('tim');
    expect(tim).toMatchObject({ found: true, credentials: { iterations: 5000 } });
    expect(scramLogin('tim', 'tanstaaf', tim.credentials)).toBe(true);
    expect(scramLogin('tim', 'tanstaaF', tim.credentials)).toBe(false);
    expect((await v.scramCredentials('tim')).credentials).toEqual(tim.credentials);
  });

  it('gives dummies, stable per name across verifiers of the same file, for unknown users and scrypt/bcrypt entries', async () => {
    const path = await userFile(fileText());
    const mem = memoryLogger();
    const v = await create(path, mem.logger);
    const again = await create(path, memoryLogger().logger); // another worker, or after a restart
    const nobody = await v.scramCredentials('nobody');
    expect(nobody).toMatchObject({ found: false, reason: 'unknown-user' });
    // The iteration count most SCRAM entries have (alice and erin: 5000; dave: 4096).
    expect(nobody.credentials.iterations).toBe(5000);
    expect((await again.scramCredentials('nobody')).credentials).toEqual(nobody.credentials);
    expect((await v.scramCredentials('nobody2')).credentials.salt).not.toEqual(nobody.credentials.salt);
    for (const user of ['bob', 'carol']) {
      const r = await v.scramCredentials(user);
      expect(r, user).toMatchObject({ found: false, reason: 'disabled' });
      expect((await again.scramCredentials(user)).credentials).toEqual(r.credentials);
      expect(scramLogin(user, user === 'bob' ? 'bob-pw' : 'carol-pw', r.credentials)).toBe(false);
    }
    expect(mem.records().some((r) => r.level === DEBUG && r.user === 'bob' && /SCRAM login refused/.test(r.msg))).toBe(true);
    expect(scramLogin('nobody', 'x', nobody.credentials)).toBe(false);
  });

  it('canServeScram: only when some entry is SCRAM or plaintext-equivalent', async () => {
    const v = await create(await userFile(`alice:${aliceHash}\nbob:${bobHash}\n`), memoryLogger().logger);
    expect(v.canServeScram).toBe(false);
    const r = await v.scramCredentials('alice');
    expect(r).toMatchObject({ found: false, reason: 'disabled', credentials: { iterations: 4096 } });
  });

  it('names a user whose SCRAM entry changed on reload', async () => {
    const path = await userFile(fileText());
    const v = await create(path, memoryLogger().logger);
    const changed: string[][] = [];
    v.onUsersChanged((users) => changed.push([...users].sort()));
    await replaceFile(path, fileText().replace(`erin:${scramAlice}`, `erin:${await hashPassword('erin', { algorithm: 'scram-sha-256' })}`));
    await v.reload();
    expect(changed).toEqual([['erin']]);
  });
});
