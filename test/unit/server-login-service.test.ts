/**
 * The login service's failure policy, without a backend: every failure
 * resolves as a LoginFailure with the catalogue error and its delay, counted
 * once by the throttle when it is an AUTH_FAILED, whether it came through
 * login() (password) or recordFailure() (a refused GSSAPI token).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LoginThrottle, MemoryFailureStore } from '../../src/auth/throttle/index.js';
import type { BearerOutcome, BearerValidator, ClientContext, PasswordVerifier, VerifyOutcome } from '../../src/auth/types.js';
import type { InternalLoginResolver } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { createLoginService, type LoginRequest, type LoginResult } from '../../src/server/login-service.js';

const client: ClientContext = { remoteAddress: '192.0.2.7', remotePort: 40000, localAddress: '192.0.2.1', localPort: 110, loginAttempt: 1, listener: 'pop3' };

const stores: MemoryFailureStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) void s.close();
});

function service(verify: () => Promise<VerifyOutcome>, throttled = false, repeatedPasswords = 0, bearer?: BearerValidator) {
  const verifier: PasswordVerifier = { name: 'fake', verify, close: () => {} };
  const store = new MemoryFailureStore({ sweepIntervalMs: 0 });
  stores.push(store);
  const throttle = throttled ? new LoginThrottle({ store, delays: [4_000, 8_000], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000, repeatedPasswords }) : undefined;
  return createLoginService({
    verifier,
    resolver: {} as InternalLoginResolver, // never reached: every login here fails before the backend
    routes: { targetsFor: () => [], targetFor: () => ({}) as never },
    timeouts: { connectMs: 1_000, greetingMs: 1_000, loginMs: 1_000 },
    ...(throttle ? { throttle } : {}),
    ...(bearer ? { bearer } : {}),
  });
}

const request = (password = 'wrong'): LoginRequest => ({
  credentials: { mechanism: 'USER', username: 'alice', password },
  client,
  tls: true,
  failureDelayMs: 2_000,
  signal: new AbortController().signal,
});

const failure = (r: LoginResult): { code: string; detail: string | undefined; delayMs: number } => {
  if (r.ok) throw new Error('expected a failure');
  return { code: r.error.code, detail: r.error.detail, delayMs: r.delayMs };
};

describe('createLoginService: failures are results', () => {
  const badPassword = () => Promise.resolve<VerifyOutcome>({ ok: false, reason: 'bad-password' });

  it('AUTH_FAILED waits auth.failureDelay without a throttle', async () => {
    expect(failure(await service(badPassword).login(request()))).toEqual({ code: 'AUTH_FAILED', detail: 'bad-password', delayMs: 2_000 });
  });

  it('with the throttle on, its delay replaces auth.failureDelay and grows; once locked, LOGIN_THROTTLED is answered at once', async () => {
    const s = service(badPassword, true);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) delays.push(failure(await s.login(request())).delayMs);
    expect(delays).toEqual([4_000, 8_000, 8_000]);
    expect(failure(await s.login(request()))).toMatchObject({ code: 'LOGIN_THROTTLED', delayMs: 0 });
  });

  it('passes the failed password to the throttle: a repeated one is delayed, marked and not counted; new ones lock', async () => {
    const s = service(badPassword, true, 5);
    const first = await s.login(request('old-password'));
    expect(failure(first).delayMs).toBe(4_000);
    expect(first).not.toHaveProperty('throttle');
    for (let i = 0; i < 5; i++) {
      const again = await s.login(request('old-password'));
      expect(again).toMatchObject({ ok: false, delayMs: 4_000, throttle: 'repeated-password' });
    }
    expect(failure(await s.login(request('guess-1'))).delayMs).toBe(8_000);
    expect(failure(await s.login(request('guess-2'))).delayMs).toBe(8_000);
    expect(failure(await s.login(request('old-password')))).toMatchObject({ code: 'LOGIN_THROTTLED', delayMs: 0 });
  });

  it('a verifier that cannot answer is VERIFIER_UNAVAILABLE, not counted, no delay', async () => {
    const s = service(() => Promise.reject(new Error('ECONNREFUSED')), true);
    for (let i = 0; i < 4; i++) expect(failure(await s.login(request()))).toMatchObject({ code: 'VERIFIER_UNAVAILABLE', delayMs: 0 });
  });

  it('a refused GSSAPI token (recordFailure) is counted by the same throttle as password failures', async () => {
    const s = service(badPassword, true);
    const refused = await s.recordFailure(client, { error: new GatewayError('AUTH_FAILED', 'replay'), claimedUser: '', failureDelayMs: 2_000 });
    expect(refused).toMatchObject({ ok: false, delayMs: 4_000 });
    expect(refused.error.code).toBe('AUTH_FAILED');
    // The address's second failure: the throttle's second delay.
    expect(failure(await s.login(request())).delayMs).toBe(8_000);
    const internal = await s.recordFailure(client, { error: new GatewayError('INTERNAL', 'no acceptor'), claimedUser: '', failureDelayMs: 2_000 });
    expect(internal.delayMs).toBe(0);
  });
});

describe('createLoginService: bearer tokens and SCRAM', () => {
  const never = () => Promise.reject(new Error('the password verifier is not asked for token or SCRAM logins'));
  /** A validator whose answer the test sets; challenges name the mechanism and the reason. */
  function bearer(answer: () => Promise<BearerOutcome>): BearerValidator {
    return { validate: answer, errorChallenge: (mechanism, reason) => Buffer.from(`${mechanism}:${reason}`), close: () => {} };
  }
  const tokenLogin = (requestedUser = ''): LoginRequest => ({
    credentials: { mechanism: 'OAUTHBEARER', token: 'tok', requestedUser },
    client,
    tls: true,
    failureDelayMs: 2_000,
    signal: new AbortController().signal,
  });

  it('a refused token is AUTH_FAILED with its reason and the mechanism’s error challenge, counted by the throttle', async () => {
    const s = service(never, true, 0, bearer(() => Promise.resolve({ ok: false, reason: 'expired' })));
    const r = await s.login(tokenLogin());
    expect(failure(r)).toEqual({ code: 'AUTH_FAILED', detail: 'expired', delayMs: 4_000 });
    expect(!r.ok && r.error.saslError?.toString()).toBe('OAUTHBEARER:expired');
  });

  it('a token for alice asking for bob is refused (authzid), with a challenge', async () => {
    const s = service(never, false, 0, bearer(() => Promise.resolve({ ok: true, user: 'alice', subject: 's-1' })));
    const r = await s.login(tokenLogin('bob'));
    expect(failure(r)).toMatchObject({ code: 'AUTH_FAILED' });
    expect(!r.ok && r.error.detail).toMatch(/^authzid: the token names alice, not "bob"/);
    expect(!r.ok && r.error.saslError?.toString()).toBe('OAUTHBEARER:authzid');
  });

  it('an issuer that cannot answer is VERIFIER_UNAVAILABLE ([SYS/TEMP]), not counted', async () => {
    const s = service(never, true, 0, bearer(() => Promise.reject(new Error('connect ECONNREFUSED'))));
    expect(failure(await s.login(tokenLogin()))).toEqual({ code: 'VERIFIER_UNAVAILABLE', detail: 'oauth: connect ECONNREFUSED', delayMs: 0 });
    const typed = service(never, true, 0, bearer(() => Promise.reject(new GatewayError('VERIFIER_UNAVAILABLE', 'issuer-unreachable'))));
    expect(failure(await typed.login(tokenLogin()))).toMatchObject({ code: 'VERIFIER_UNAVAILABLE', detail: 'issuer-unreachable' });
  });

  it('without auth.oauth a token login is refused; a SCRAM user may not act as another', async () => {
    expect(failure(await service(never).login(tokenLogin()))).toMatchObject({ code: 'AUTH_FAILED', detail: 'OAUTHBEARER without auth.oauth' });
    const scram: LoginRequest = { ...tokenLogin(), credentials: { mechanism: 'SCRAM-SHA-256', username: 'alice', requestedUser: 'bob' } };
    expect(failure(await service(never).login(scram))).toMatchObject({ code: 'AUTH_FAILED' });
  });

  it('locked() answers LOGIN_THROTTLED once the user is locked out (SCRAM asks before trying a proof), nothing before', async () => {
    const s = service(() => Promise.resolve<VerifyOutcome>({ ok: false, reason: 'bad-password' }), true);
    expect(await s.locked(client, 'alice')).toBeUndefined();
    for (const p of ['a', 'b', 'c']) await s.login(request(p));
    expect((await s.locked(client, 'alice'))?.code).toBe('LOGIN_THROTTLED');
  });
});
