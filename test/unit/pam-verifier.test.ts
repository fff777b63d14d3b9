import { describe, expect, it } from 'vitest';
import { createPamVerifier, pamGate, type PamAuthenticator } from '../../src/auth/pam-verifier.js';
import { GatewayError } from '../../src/errors.js';
import type { NativePamResult } from '../../src/kerberos/native.js';
import type { PasswordRequest } from '../../src/auth/types.js';

const request = (username: string, password: string): PasswordRequest => ({ username, password, mechanism: 'USER', tls: true });

interface Call {
  readonly service: string;
  readonly user: string;
  readonly password: string;
  readonly accountCheck: boolean;
  readonly rhost: string | undefined;
  readonly buffer: Buffer;
}

function fakePam(answer: (user: string) => Promise<NativePamResult>): PamAuthenticator & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    pamAuthenticate(service, user, password, accountCheck, rhost) {
      // Copied now, as the addon does before it returns.
      calls.push({ service, user, password: password.toString('utf8'), accountCheck, rhost, buffer: password });
      return answer(user);
    },
  };
}

const result = (r: NativePamResult['result'], stage: NativePamResult['stage'] = 'auth', code = 7): NativePamResult => ({
  result: r,
  stage,
  code,
  message: 'm',
});

const verifierOver = (pam: PamAuthenticator, accountCheck = true) =>
  createPamVerifier({ pam, service: 'popgate', accountCheck, gate: pamGate({ maxConcurrent: 2, maxQueue: 4, timeoutMs: 1_000 }) });

describe('pam verifier', () => {
  it('passes service, user, password and accountCheck, and wipes its password buffer after the call', async () => {
    const pam = fakePam(async () => result('ok', 'account', 0));
    await expect(verifierOver(pam, false).verify(request('alice', 'pässword'))).resolves.toEqual({ ok: true, user: 'alice' });
    expect(pam.calls.map(({ service, user, password, accountCheck }) => ({ service, user, password, accountCheck }))).toEqual([
      { service: 'popgate', user: 'alice', password: 'pässword', accountCheck: false },
    ]);
    expect(pam.calls[0]?.buffer.every((b) => b === 0)).toBe(true);
    expect(pam.calls[0]?.rhost).toBeUndefined();
  });

  it("passes the client's address as PAM_RHOST (the real one behind a PROXY header)", async () => {
    const pam = fakePam(async () => result('ok', 'account', 0));
    const v = verifierOver(pam);
    await v.verify({ ...request('alice', 'pw'), remoteAddress: '192.0.2.7' });
    const client = { remoteAddress: '2001:db8::5', remotePort: 40000, localAddress: '10.0.0.1', localPort: 995, loginAttempt: 1, listener: 'pop3s' };
    await v.verify({ ...request('alice', 'pw'), remoteAddress: '10.0.0.9', client });
    expect(pam.calls.map((c) => c.rhost)).toEqual(['192.0.2.7', '2001:db8::5']);
  });

  it('maps the definite answers to outcomes', async () => {
    for (const r of ['bad-password', 'unknown-user', 'disabled'] as const) {
      const v = verifierOver(fakePam(async () => result(r)));
      await expect(v.verify(request('alice', 'x'))).resolves.toEqual({ ok: false, reason: r });
    }
  });

  it('refuses an empty password, an empty user and NUL bytes without calling PAM', async () => {
    const pam = fakePam(async () => result('ok'));
    const v = verifierOver(pam);
    await expect(v.verify(request('alice', ''))).resolves.toEqual({ ok: false, reason: 'bad-password' });
    await expect(v.verify(request('alice', 'a\0b'))).resolves.toEqual({ ok: false, reason: 'bad-password' });
    await expect(v.verify(request('', 'x'))).resolves.toEqual({ ok: false, reason: 'unknown-user' });
    await expect(v.verify(request('al\0ice', 'x'))).resolves.toEqual({ ok: false, reason: 'unknown-user' });
    expect(pam.calls).toEqual([]);
  });

  it('an unavailable answer or a failing call is VERIFIER_UNAVAILABLE', async () => {
    const down = verifierOver(fakePam(async () => result('unavailable', 'auth', 9)));
    const err = await down.verify(request('alice', 'x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('VERIFIER_UNAVAILABLE');
    expect((err as GatewayError).message).toContain('PAM code 9');
    const thrown = verifierOver(fakePam(() => Promise.reject(new TypeError('bad argument'))));
    await expect(thrown.verify(request('alice', 'x'))).rejects.toMatchObject({ code: 'VERIFIER_UNAVAILABLE' });
  });
});
