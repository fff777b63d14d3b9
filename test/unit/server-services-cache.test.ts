/**
 * auth.cache as buildServices wires it: in front of the verifier chain, its
 * user-file entries dropped when the file changes, a fresh cache per
 * configuration, and the throttle counting one failure per attempt whether
 * the answer came from the verifier or the negative cache.
 */
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCredentialsCache, hashPassword } from '../../src/auth/index.js';
import { LoginThrottle, MemoryFailureStore } from '../../src/auth/throttle/index.js';
import type { ClientContext, PasswordVerifier, VerifyOutcome } from '../../src/auth/types.js';
import type { InternalLoginResolver } from '../../src/backend/types.js';
import { parseConfigText, type PopgateConfig } from '../../src/config/index.js';
import { noopMetrics, type AuthCacheEvent, type Metrics } from '../../src/observability/metrics.js';
import { createLoginService, type LoginRequest, type LoginResult } from '../../src/server/login-service.js';
import { buildServices, carriedParts, servicesCloser, type Services } from '../../src/server/services.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });
let dir: string;
let fileCounter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-services-cache-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const built: Services[] = [];
const stores: MemoryFailureStore[] = [];
afterEach(async () => {
  const close = servicesCloser(log);
  for (const s of built.splice(0)) await close(s, []);
  for (const s of stores.splice(0)) await s.close();
});

const userLine = async (user: string, password: string): Promise<string> => `${user}:${await hashPassword(password, { scryptLogN: 10 })}\n`;

/** A config with its own user file (written first) and these auth lines. */
async function config(users: string, auth = ''): Promise<{ cfg: PopgateConfig; usersFile: string }> {
  const usersFile = join(dir, `users-${++fileCounter}`);
  await writeFile(usersFile, users);
  const yaml = `
listeners: [{ name: a, kind: pop3, address: 127.0.0.1, port: 110 }]
auth:
  userFile: ${usersFile}
${auth}
backend: { host: 127.0.0.1, port: 1110, login: { mode: master, user: popgate, password: x } }
`;
  return { cfg: await parseConfigText(yaml, { baseDir: dir, env: {}, source: 't', readSecrets: false }), usersFile };
}

/** Metrics recording the cache's events (anything else: nowhere). */
function cacheMetrics(): Metrics & { count(e: AuthCacheEvent): number } {
  const events: Array<[AuthCacheEvent, number]> = [];
  return {
    ...noopMetrics,
    authCache: (e, n) => void events.push([e, n]),
    count: (e) => events.filter(([k]) => k === e).reduce((sum, [, n]) => sum + n, 0),
  };
}

async function build(cfg: PopgateConfig, metrics: Metrics, carried?: Parameters<typeof buildServices>[3]): Promise<Services> {
  const s = await buildServices(cfg, log, metrics, carried);
  built.push(s);
  return s;
}

const passwordLogin = (username: string, password: string) => ({ username, password, mechanism: 'USER', tls: true });

describe('buildServices with auth.cache', () => {
  it('serves a repeated user-file login from the cache; ttl: 0 turns it off', async () => {
    const users = await userLine('alice', 'old-secret');
    const on = cacheMetrics();
    const cached = await build((await config(users, '  throttle: { enabled: false }')).cfg, on);
    for (let i = 0; i < 3; i++) expect(await cached.verifier.verify(passwordLogin('alice', 'old-secret'))).toEqual({ ok: true, user: 'alice' });
    expect([on.count('miss'), on.count('hit')]).toEqual([1, 2]);

    const off = cacheMetrics();
    const uncached = await build((await config(users, '  throttle: { enabled: false }\n  cache: { ttl: 0 }')).cfg, off);
    for (let i = 0; i < 2; i++) expect(await uncached.verifier.verify(passwordLogin('alice', 'old-secret'))).toMatchObject({ ok: true });
    expect(off.count('miss') + off.count('hit')).toBe(0);
  });

  it('a changed user-file entry is never served from the cache: the old password fails, the new one works', async () => {
    const metrics = cacheMetrics();
    const { cfg, usersFile } = await config((await userLine('alice', 'old-secret')) + (await userLine('bob', 'bobs-secret')), '  throttle: { enabled: false }');
    const services = await build(cfg, metrics);
    expect(await services.verifier.verify(passwordLogin('alice', 'old-secret'))).toMatchObject({ ok: true });
    expect(await services.verifier.verify(passwordLogin('bob', 'bobs-secret'))).toMatchObject({ ok: true });
    expect(metrics.count('miss')).toBe(2);

    const changes: string[][] = [];
    services.userFile!.onUsersChanged((users) => void changes.push([...users]));
    // Replace the file as editors do (write + rename); bob's line stays byte for byte the same.
    const tmp = `${usersFile}.tmp`;
    await writeFile(tmp, (await userLine('alice', 'new-secret')) + (await readLine(usersFile, 'bob')));
    await rename(tmp, usersFile);
    await waitFor('the user-file reload', () => changes.length > 0, { timeoutMs: 10_000 });
    expect(changes).toEqual([['alice']]);
    expect(metrics.count('invalidated')).toBe(1);

    expect(await services.verifier.verify(passwordLogin('alice', 'old-secret'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await services.verifier.verify(passwordLogin('alice', 'new-secret'))).toEqual({ ok: true, user: 'alice' });
    // bob's entry did not change: still served from the cache.
    const hits = metrics.count('hit');
    expect(await services.verifier.verify(passwordLogin('bob', 'bobs-secret'))).toMatchObject({ ok: true });
    expect(metrics.count('hit')).toBe(hits + 1);
  });

  it('a reload builds an empty cache, even with the throttle carried over', async () => {
    const { cfg } = await config(await userLine('alice', 'old-secret'));
    const metrics = cacheMetrics();
    const first = await build(cfg, metrics);
    await first.verifier.verify(passwordLogin('alice', 'old-secret'));
    const second = await build(cfg, metrics, carriedParts(first, ['throttle']));
    await second.verifier.verify(passwordLogin('alice', 'old-secret'));
    expect([metrics.count('miss'), metrics.count('hit')]).toEqual([2, 0]);
    built.splice(built.indexOf(second), 1); // shares first's throttle: close it once, with first
    second.verifier.close();
    second.resolver.close();
  });

  it('with the negative cache on, the throttle counts one failure per attempt (delays grow, then the lockout)', async () => {
    const metrics = cacheMetrics();
    const { cfg } = await config(
      await userLine('alice', 'old-secret'),
      // repeatedPasswords: 0: a negative hit needs the same wrong password, which the throttle would otherwise not count again.
      '  throttle: { delays: [1s, 2s, 3s], maxFailures: 3, repeatedPasswords: 0 }\n  cache: { negativeTtl: 1m }',
    );
    const services = await build(cfg, metrics);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) delays.push(failure(await services.login.login(loginRequest('wrong'))).delayMs);
    // Asked once; the other two attempts were answered by the cache, and counted all the same.
    expect([metrics.count('miss'), metrics.count('negative-hit')]).toEqual([1, 2]);
    expect(delays).toEqual([1_000, 2_000, 3_000]);
    expect(failure(await services.login.login(loginRequest('wrong'))).code).toBe('LOGIN_THROTTLED');
    // The locked user is refused before the cache is asked.
    expect(metrics.count('miss') + metrics.count('negative-hit')).toBe(3);
  });
});

describe('login service over the cache', () => {
  it('one verifier call, three failures counted, the same results as without the cache', async () => {
    const results = async (cached: boolean): Promise<{ calls: number; delays: number[]; last: string }> => {
      let calls = 0;
      const inner: PasswordVerifier = {
        name: 'fake',
        verify: () => {
          calls++;
          return Promise.resolve<VerifyOutcome>({ ok: false, reason: 'bad-password' });
        },
        close: () => {},
      };
      const verifier = cached ? createCredentialsCache({ verifier: inner, ttlMs: 60_000, negativeTtlMs: 60_000, maxEntries: 10, keyClientFacts: false }) : inner;
      const store = new MemoryFailureStore({ sweepIntervalMs: 0 });
      stores.push(store);
      const service = createLoginService({
        verifier,
        resolver: {} as InternalLoginResolver, // never reached: every login here fails before the backend
        routes: { targetsFor: () => [], targetFor: () => ({}) as never },
        timeouts: { connectMs: 1_000, greetingMs: 1_000, loginMs: 1_000 },
        throttle: new LoginThrottle({ store, delays: [4_000, 8_000, 16_000], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 }),
      });
      const delays: number[] = [];
      for (let i = 0; i < 3; i++) delays.push(failure(await service.login(loginRequest('wrong'))).delayMs);
      return { calls, delays, last: failure(await service.login(loginRequest('wrong'))).code };
    };
    expect(await results(false)).toEqual({ calls: 3, delays: [4_000, 8_000, 16_000], last: 'LOGIN_THROTTLED' });
    expect(await results(true)).toEqual({ calls: 1, delays: [4_000, 8_000, 16_000], last: 'LOGIN_THROTTLED' });
  });
});

const client: ClientContext = { remoteAddress: '192.0.2.7', remotePort: 40000, localAddress: '192.0.2.1', localPort: 110, loginAttempt: 1, listener: 'a' };

function loginRequest(password: string): LoginRequest {
  return {
    credentials: { mechanism: 'USER', username: 'alice', password },
    client,
    tls: true,
    failureDelayMs: 500,
    signal: new AbortController().signal,
  };
}

function failure(r: LoginResult): { code: string; delayMs: number } {
  if (r.ok) throw new Error('expected a failure');
  return { code: r.error.code, delayMs: r.delayMs };
}

async function readLine(path: string, user: string): Promise<string> {
  const line = (await readFile(path, 'utf8')).split('\n').find((l) => l.startsWith(`${user}:`));
  if (line === undefined) throw new Error(`no line for ${user}`);
  return `${line}\n`;
}
