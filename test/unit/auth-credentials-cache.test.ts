/**
 * The verified-credentials cache on a counting fake verifier and a fake
 * clock: what is served from the cache, for how long, under which key, and
 * what never is (wrong passwords, unavailable verifiers, Auth-Wait answers).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCredentialsCache, credentialsCacheKey, type CredentialsCacheEvent, type CredentialsCacheOptions } from '../../src/auth/index.js';
import type { ClientContext, PasswordRequest, PasswordVerifier, VerifyOutcome } from '../../src/auth/types.js';
import { GatewayError } from '../../src/errors.js';
import { FakeClock } from '../helpers/fake-clock.js';

const PASSWORDS: Record<string, string> = { alice: 'wonderland', bob: 'builder', carol: 'singer' };

/** Routes and backend credentials like an auth_http OK answer, so a hit must carry them too. */
function answer(request: PasswordRequest): VerifyOutcome {
  const expected = PASSWORDS[request.username];
  if (expected === undefined) return { ok: false, reason: 'unknown-user' };
  if (request.password !== expected) return { ok: false, reason: 'bad-password', clientText: 'Invalid login' };
  return {
    ok: true,
    user: request.username,
    route: { endpoint: { host: '192.0.2.5', port: 1110 }, login: { user: `${request.username}*master`, password: 'backend-pw' } },
  };
}

/** A verifier that counts its calls; `next` overrides the answer of the following calls. */
function countingVerifier(): PasswordVerifier & { calls: PasswordRequest[]; next?: (r: PasswordRequest) => Promise<VerifyOutcome> } {
  const v: PasswordVerifier & { calls: PasswordRequest[]; next?: (r: PasswordRequest) => Promise<VerifyOutcome> } = {
    name: 'fake',
    calls: [],
    verify(request) {
      v.calls.push(request);
      return v.next ? v.next(request) : Promise.resolve(answer(request));
    },
    close() {},
  };
  return v;
}

const client: ClientContext = { remoteAddress: '198.51.100.7', remotePort: 40001, localAddress: '192.0.2.1', localPort: 995, loginAttempt: 1, listener: 'pop3s' };

function req(username: string, password: string, over: Partial<ClientContext> = {}): PasswordRequest {
  return { username, password, mechanism: 'PLAIN', tls: true, client: { ...client, ...over } };
}

function setup(over: Partial<CredentialsCacheOptions> = {}) {
  const clock = new FakeClock();
  const inner = countingVerifier();
  const events: Array<[CredentialsCacheEvent, number]> = [];
  const cache = createCredentialsCache({
    verifier: inner,
    ttlMs: 300_000,
    negativeTtlMs: 5_000,
    maxEntries: 100,
    keyClientFacts: false,
    clock,
    onEvent: (e, n) => void events.push([e, n]),
    ...over,
  });
  const count = (e: CredentialsCacheEvent): number => events.filter(([k]) => k === e).reduce((sum, [, n]) => sum + n, 0);
  return { clock, inner, cache, events, count };
}

describe('createCredentialsCache: successes', () => {
  it('answers a repeated login within the TTL without the verifier, with the whole outcome (route, backend credentials)', async () => {
    const { inner, cache, count } = setup();
    const first = await cache.verify(req('alice', 'wonderland'));
    const second = await cache.verify(req('alice', 'wonderland', { remotePort: 40002, loginAttempt: 2 }));
    expect(inner.calls).toHaveLength(1);
    expect(second).toEqual(first);
    expect(second).toEqual({
      ok: true,
      user: 'alice',
      route: { endpoint: { host: '192.0.2.5', port: 1110 }, login: { user: 'alice*master', password: 'backend-pw' } },
    });
    expect([count('miss'), count('hit')]).toEqual([1, 1]);
  });

  it('asks the verifier again once the TTL has passed (fake clock)', async () => {
    const { clock, inner, cache } = setup();
    await cache.verify(req('alice', 'wonderland'));
    clock.advance(299_999);
    await cache.verify(req('alice', 'wonderland'));
    expect(inner.calls).toHaveLength(1);
    clock.advance(1);
    await cache.verify(req('alice', 'wonderland'));
    expect(inner.calls).toHaveLength(2);
  });

  it('a wrong password misses: the verifier answers it, never the cached success', async () => {
    const { inner, cache } = setup({ negativeTtlMs: 0 });
    await cache.verify(req('alice', 'wonderland'));
    expect(await cache.verify(req('alice', 'wonderlanD'))).toMatchObject({ ok: false, reason: 'bad-password' });
    expect(await cache.verify(req('alice', ''))).toMatchObject({ ok: false, reason: 'bad-password' });
    // Field boundaries are unambiguous: user "alic" with password "ewonderland" is another key.
    expect(await cache.verify(req('alic', 'ewonderland'))).toMatchObject({ ok: false, reason: 'unknown-user' });
    expect(inner.calls.map((c) => c.password)).toEqual(['wonderland', 'wonderlanD', '', 'ewonderland']);
  });

  it('keys by the client facts only when told the answer depends on them', async () => {
    const plain = setup();
    await plain.cache.verify(req('alice', 'wonderland'));
    await plain.cache.verify(req('alice', 'wonderland', { remoteAddress: '203.0.113.9' }));
    expect(plain.inner.calls).toHaveLength(1);

    const http = setup({ keyClientFacts: true });
    await http.cache.verify(req('alice', 'wonderland'));
    // A new connection (another port, a later attempt) from the same client still hits.
    await http.cache.verify(req('alice', 'wonderland', { remotePort: 50000, loginAttempt: 3 }));
    expect(http.inner.calls).toHaveLength(1);
    // Another client address, listener address or TLS client certificate is asked again.
    await http.cache.verify(req('alice', 'wonderland', { remoteAddress: '203.0.113.9' }));
    await http.cache.verify(req('alice', 'wonderland', { localPort: 110 }));
    await http.cache.verify(req('alice', 'wonderland', { tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', verify: 'SUCCESS', subject: 'CN=alice' } }));
    expect(http.inner.calls).toHaveLength(4);
  });
});

describe('createCredentialsCache: failures', () => {
  it('remembers a definite failure for negativeTtl only', async () => {
    const { clock, inner, cache, count } = setup();
    const wrong = await cache.verify(req('alice', 'nope'));
    expect(await cache.verify(req('alice', 'nope'))).toEqual(wrong);
    expect(await cache.verify(req('mallory', 'x'))).toMatchObject({ reason: 'unknown-user' });
    expect(await cache.verify(req('mallory', 'x'))).toMatchObject({ reason: 'unknown-user' });
    expect(inner.calls).toHaveLength(2);
    expect(count('negative-hit')).toBe(2);
    clock.advance(5_000);
    await cache.verify(req('alice', 'nope'));
    expect(inner.calls).toHaveLength(3);
  });

  it('with negativeTtl 0 never remembers a failure', async () => {
    const { inner, cache } = setup({ negativeTtlMs: 0 });
    for (let i = 0; i < 3; i++) await cache.verify(req('alice', 'nope'));
    expect(inner.calls).toHaveLength(3);
  });

  it('never remembers a failure the service marked retryable (Auth-Wait: ask again after a pause)', async () => {
    const { inner, cache } = setup();
    inner.next = () => Promise.resolve({ ok: false, reason: 'bad-password', clientText: 'Slow down', retryable: true });
    await cache.verify(req('alice', 'nope'));
    await cache.verify(req('alice', 'nope'));
    expect(inner.calls).toHaveLength(2);
  });

  it('never caches a verifier that could not answer: the rejection passes on and the next login asks again', async () => {
    const { inner, cache } = setup();
    inner.next = () => Promise.reject(new GatewayError('VERIFIER_UNAVAILABLE', 'auth service down'));
    await expect(cache.verify(req('alice', 'wonderland'))).rejects.toMatchObject({ code: 'VERIFIER_UNAVAILABLE' });
    await expect(cache.verify(req('alice', 'wonderland'))).rejects.toMatchObject({ code: 'VERIFIER_UNAVAILABLE' });
    delete inner.next;
    expect(await cache.verify(req('alice', 'wonderland'))).toMatchObject({ ok: true });
    expect(inner.calls).toHaveLength(3);
    expect(cache.size).toBe(1);
  });
});

describe('createCredentialsCache: bound and invalidation', () => {
  it('holds at most maxEntries, dropping the least recently used first', async () => {
    const { inner, cache, count } = setup({ maxEntries: 2 });
    await cache.verify(req('alice', 'wonderland'));
    await cache.verify(req('bob', 'builder'));
    await cache.verify(req('alice', 'wonderland')); // alice is now the most recently used
    await cache.verify(req('carol', 'singer')); // bob goes
    expect(cache.size).toBe(2);
    expect(count('evicted')).toBe(1);
    await cache.verify(req('alice', 'wonderland'));
    expect(inner.calls.map((c) => c.username)).toEqual(['alice', 'bob', 'carol']);
    await cache.verify(req('bob', 'builder'));
    expect(inner.calls.map((c) => c.username)).toEqual(['alice', 'bob', 'carol', 'bob']);
    expect(cache.size).toBe(2);
  });

  it('invalidateUsers drops those users\' entries (every password and client), no one else\'s', async () => {
    const { inner, cache, count } = setup({ keyClientFacts: true });
    await cache.verify(req('alice', 'wonderland'));
    await cache.verify(req('alice', 'wonderland', { remoteAddress: '203.0.113.9' }));
    await cache.verify(req('alice', 'nope'));
    await cache.verify(req('bob', 'builder'));
    cache.invalidateUsers(new Set(['alice', 'nobody']));
    expect(count('invalidated')).toBe(3);
    expect(cache.size).toBe(1);
    await cache.verify(req('alice', 'wonderland'));
    await cache.verify(req('bob', 'builder'));
    expect(inner.calls.map((c) => c.username)).toEqual(['alice', 'alice', 'alice', 'bob', 'alice']);
  });

  it('does not store an answer computed while an invalidation happened (a user-file reload mid-check)', async () => {
    const { inner, cache } = setup();
    let finish: (o: VerifyOutcome) => void = () => {};
    inner.next = () => new Promise<VerifyOutcome>((resolve) => (finish = resolve));
    const pending = cache.verify(req('alice', 'old-password'));
    cache.invalidateUsers(['alice']);
    finish({ ok: true, user: 'alice' });
    expect(await pending).toEqual({ ok: true, user: 'alice' });
    expect(cache.size).toBe(0);
  });

  it('passes challenge checks and authorizations through (never cached), and closes the verifier it wraps', async () => {
    let challenges = 0;
    let closed = 0;
    const inner: PasswordVerifier = {
      name: 'with-challenges',
      verify: () => Promise.resolve({ ok: true, user: 'alice' }),
      verifyChallenge: () => {
        challenges++;
        return Promise.resolve({ ok: true, user: 'alice' });
      },
      close: () => void closed++,
    };
    const cache = createCredentialsCache({ verifier: inner, ttlMs: 60_000, negativeTtlMs: 0, maxEntries: 10, keyClientFacts: false });
    expect(cache.authorize).toBeUndefined();
    const challenge = { username: 'alice', mechanism: 'APOP' as const, challenge: '<1.2@h>', response: 'ab' };
    await cache.verifyChallenge!(challenge);
    await cache.verifyChallenge!(challenge);
    expect(challenges).toBe(2);
    expect(cache.size).toBe(0);
    cache.close();
    expect(closed).toBe(1);
  });

  it('refuses settings that make no cache', () => {
    const verifier = countingVerifier();
    const base = { verifier, ttlMs: 1_000, negativeTtlMs: 0, maxEntries: 1, keyClientFacts: false };
    expect(() => createCredentialsCache({ ...base, ttlMs: 0 })).toThrow(RangeError);
    expect(() => createCredentialsCache({ ...base, maxEntries: 0 })).toThrow(RangeError);
    expect(() => createCredentialsCache({ ...base, negativeTtlMs: -1 })).toThrow(RangeError);
  });
});

describe('credentialsCacheKey', () => {
  const secret = randomBytes(32);
  const request = req('alice', 'correct horse battery staple');

  it('is a keyed hash: never the password, nor an unkeyed hash of what it covers', () => {
    const key = credentialsCacheKey(secret, 'user-file', request, true);
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url
    for (const form of [request.password, Buffer.from(request.password).toString('hex'), Buffer.from(request.password).toString('base64')]) {
      expect(key).not.toContain(form);
    }
    const unkeyed = createHash('sha256').update(JSON.stringify(['user-file', request.username, request.password])).digest();
    expect(key).not.toBe(unkeyed.toString('base64url'));
    expect(key).not.toBe(createHash('sha256').update(request.password).digest('base64url'));
    // Another process (another secret) gets another key for the same login.
    expect(credentialsCacheKey(randomBytes(32), 'user-file', request, true)).not.toBe(key);
    expect(credentialsCacheKey(secret, 'user-file', request, true)).toBe(key);
  });

  it('covers the verifier, the user and the password', () => {
    const key = credentialsCacheKey(secret, 'user-file', request, false);
    expect(credentialsCacheKey(secret, 'http', request, false)).not.toBe(key);
    expect(credentialsCacheKey(secret, 'user-file', { ...request, username: 'bob' }, false)).not.toBe(key);
    expect(credentialsCacheKey(secret, 'user-file', { ...request, password: 'other' }, false)).not.toBe(key);
    // USER, PLAIN and LOGIN check the same password the same way.
    expect(credentialsCacheKey(secret, 'user-file', { ...request, mechanism: 'USER' }, false)).toBe(key);
  });
});
