import { mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createInternalLoginResolver,
  parseSecrets,
  type ReloadableLoginResolver,
  type ResolverLogger,
} from '../../src/backend/internal-login.js';
import { subscribeToFile } from '../../src/config/file-watch.js';
import { GatewayError } from '../../src/errors.js';
import { waitFor } from '../helpers/wait.js';

interface Logged {
  level: 'info' | 'warn';
  obj: object;
  msg: string;
}

function recorder(): ResolverLogger & { logs: Logged[]; text(): string } {
  const logs: Logged[] = [];
  return {
    logs,
    info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }),
    text: () => JSON.stringify(logs),
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

describe('master mode', () => {
  it('auth-plain: authzid = client user, authcid = master user', async () => {
    const r = await createInternalLoginResolver(
      { mode: 'master', method: 'auth-plain', user: 'gateway', password: 'm:pw', separator: '*' },
      recorder(),
    );
    expect(r.mode).toBe('master');
    expect(await r.resolve('alice', undefined)).toEqual({
      method: 'auth-plain',
      authzid: 'alice',
      authcid: 'gateway',
      password: 'm:pw',
    });
    r.close();
  });

  it('user-separator: USER alice<sep>master with the master password', async () => {
    const r = await createInternalLoginResolver(
      { mode: 'master', method: 'user-separator', user: 'gateway', password: 'mpw', separator: '%' },
      recorder(),
    );
    expect(await r.resolve('alice', 'client-password-is-ignored')).toEqual({
      method: 'user-pass',
      user: 'alice%gateway',
      password: 'mpw',
    });
    const d = await createInternalLoginResolver(
      { mode: 'master', method: 'user-separator', user: 'gateway', password: 'mpw' },
      recorder(),
    );
    expect(await d.resolve('bob', undefined)).toMatchObject({ user: 'bob*gateway' });
  });

  it('refuses a user name containing the separator', async () => {
    const r = await createInternalLoginResolver(
      { mode: 'master', method: 'user-separator', user: 'gateway', password: 'mpw', separator: '*' },
      recorder(),
    );
    const err = await rejection(r.resolve('alice*other', undefined));
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('NO_BACKEND_CREDENTIALS');
  });

  it('refuses an empty master password at creation', async () => {
    await expect(
      createInternalLoginResolver({ mode: 'master', method: 'auth-plain', user: 'gateway', password: '' }, recorder()),
    ).rejects.toThrow(/master/);
  });
});

describe('passthrough mode', () => {
  it('replays the client user and verified password', async () => {
    const up = await createInternalLoginResolver({ mode: 'passthrough', method: 'user-pass' }, recorder());
    expect(up.mode).toBe('passthrough');
    expect(await up.resolve('alice', 'pw')).toEqual({ method: 'user-pass', user: 'alice', password: 'pw' });
    const ap = await createInternalLoginResolver({ mode: 'passthrough', method: 'auth-plain' }, recorder());
    expect(await ap.resolve('alice', 'pw')).toEqual({ method: 'auth-plain', authzid: '', authcid: 'alice', password: 'pw' });
  });

  it('fails with NO_BACKEND_CREDENTIALS without a password', async () => {
    const r = await createInternalLoginResolver({ mode: 'passthrough', method: 'user-pass' }, recorder());
    const err = await rejection(r.resolve('alice', undefined));
    expect((err as GatewayError).code).toBe('NO_BACKEND_CREDENTIALS');
  });
});

describe('parseSecrets', () => {
  it('splits at the first two colons and reports bad lines by number', () => {
    const text = [
      '# comment',
      '',
      'alice:alice_b:pa:ss:word',
      '  # indented comment',
      'bob:bob_b:pw with spaces\r',
      'broken-line-secret',
      'carol::pw',
      'dave:dave_b:',
      'bob:bob2:later',
    ].join('\n');
    const { entries, problems } = parseSecrets(text);
    expect(entries.get('alice')).toEqual({ backendUser: 'alice_b', password: 'pa:ss:word' });
    expect(entries.get('bob')).toEqual({ backendUser: 'bob2', password: 'later' });
    expect(entries.has('carol')).toBe(false);
    expect(entries.has('dave')).toBe(false);
    expect(problems.map((p) => p.line)).toEqual([6, 7, 8, 9]);
    expect(JSON.stringify(problems)).not.toContain('secret');
  });
});

describe('mapped mode', () => {
  let dir: string;
  let file: string;
  const resolvers: ReloadableLoginResolver[] = [];
  const make = async (
    method: 'user-pass' | 'auth-plain',
    log: ResolverLogger,
    watchIntervalMs?: number,
  ): Promise<ReloadableLoginResolver> => {
    const r = await createInternalLoginResolver(
      { mode: 'mapped', method, secretsFile: file, ...(watchIntervalMs ? { watchIntervalMs } : {}) },
      log,
    );
    resolvers.push(r);
    return r;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-secrets-'));
    file = join(dir, 'backend-secrets');
    await writeFile(file, '# user:backendUser:password\nalice:alice@legacy:s3cr:et\nbadline-topsecret\n');
  });
  afterEach(async () => {
    for (const r of resolvers.splice(0)) r.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves mapped users for user-pass and auth-plain', async () => {
    const log = recorder();
    const up = await make('user-pass', log);
    expect(up.mode).toBe('mapped');
    expect(await up.resolve('alice', undefined)).toEqual({ method: 'user-pass', user: 'alice@legacy', password: 's3cr:et' });
    const ap = await make('auth-plain', log);
    expect(await ap.resolve('alice', undefined)).toEqual({
      method: 'auth-plain',
      authzid: '',
      authcid: 'alice@legacy',
      password: 's3cr:et',
    });
  });

  it('warns about bad lines with file and line number, never the secret', async () => {
    const log = recorder();
    await make('user-pass', log);
    const warn = log.logs.find((l) => l.level === 'warn');
    expect(warn?.obj).toEqual({ file, line: 3 });
    expect(log.text()).not.toContain('topsecret');
    expect(log.text()).not.toContain('s3cr');
  });

  it('rejects a user without an entry with NO_BACKEND_CREDENTIALS', async () => {
    const r = await make('user-pass', recorder());
    const err = await rejection(r.resolve('mallory', undefined));
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('NO_BACKEND_CREDENTIALS');
    expect((err as GatewayError).message).not.toContain('s3cr');
  });

  it('reload() picks up changes; a failed reload keeps the old entries', async () => {
    const r = await make('user-pass', recorder());
    await writeFile(file, 'bob:bob@legacy:pw2\n');
    await r.reload();
    expect(await r.resolve('bob', undefined)).toMatchObject({ user: 'bob@legacy', password: 'pw2' });
    await expect(r.resolve('alice', undefined)).rejects.toMatchObject({ code: 'NO_BACKEND_CREDENTIALS' });

    await unlink(file);
    await expect(r.reload()).rejects.toThrow(file);
    expect(await r.resolve('bob', undefined)).toMatchObject({ user: 'bob@legacy' });
  });

  it('watches the file and reloads on change; close() stops watching', async () => {
    const log = recorder();
    const r = await make('user-pass', log, 40);
    const loads = (): number => log.logs.filter((l) => l.msg === 'backend secrets loaded').length;
    // A subscriber of our own on the resolver's poller (so it keeps running after close()).
    // Subscribed after the resolver, it is called right after it for each change: the
    // resolver's reload for that change has started and not finished yet.
    let lastSeen = 0;
    let changes = 0;
    let loadsBeforeLastReload = 0;
    const unsubscribe = subscribeToFile(
      file,
      (curr) => {
        changes++;
        lastSeen = curr.mtimeMs;
        loadsBeforeLastReload = loads();
      },
      40,
    );
    try {
      let written = -1;
      const write = async (text: string): Promise<void> => {
        await writeFile(file, text);
        written = (await stat(file)).mtimeMs;
      };
      // The poller's first stat (its baseline) has no event: a write landing before it is no
      // change to the poller, so write again until it reports one, then until it saw the last.
      await waitFor(
        'the poller to see the last write',
        async () => {
          if (changes > 0) return lastSeen === written;
          await write('alice:alice@new:newpw\n');
          return false;
        },
        { timeoutMs: 3000, intervalMs: 20 },
      );
      // The newest reload has finished (older ones still reading are discarded by it).
      await waitFor('the reload to finish', () => loads() > loadsBeforeLastReload, { intervalMs: 5 });
      expect(await r.resolve('alice', undefined)).toEqual({ method: 'user-pass', user: 'alice@new', password: 'newpw' });

      r.close();
      const loadsAtClose = loads();
      await write('alice:alice@after-close:x-longer-line\n');
      // The poll a still-watching resolver would reload on.
      await waitFor('the poller to see the change', () => lastSeen === written, { timeoutMs: 3000, intervalMs: 10 });
      // Deliberate window, the thing tested: no reload (a file read) follows the change.
      await new Promise((res) => setTimeout(res, 100));
      expect(loads()).toBe(loadsAtClose);
      expect(await r.resolve('alice', undefined)).toMatchObject({ user: 'alice@new' });
    } finally {
      unsubscribe();
    }
  });

  it('rejects creation when the file cannot be read, naming the path', async () => {
    const missing = join(dir, 'nope');
    await expect(
      createInternalLoginResolver({ mode: 'mapped', method: 'user-pass', secretsFile: missing }, recorder()),
    ).rejects.toThrow(missing);
  });
});
