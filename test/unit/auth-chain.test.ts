import { describe, expect, it } from 'vitest';
import { createVerifierChain } from '../../src/auth/chain.js';
import type { PasswordRequest, PasswordVerifier, VerifyOutcome } from '../../src/auth/types.js';
import { GatewayError } from '../../src/errors.js';

function fake(name: string, table: Record<string, VerifyOutcome | 'throw'>): PasswordVerifier & { calls: string[]; closed: boolean } {
  const v = {
    name,
    calls: [] as string[],
    closed: false,
    async verify(req: PasswordRequest): Promise<VerifyOutcome> {
      v.calls.push(req.username);
      const out = table[req.username] ?? { ok: false, reason: 'unknown-user' };
      if (out === 'throw') throw new GatewayError('VERIFIER_UNAVAILABLE', `${name} down`);
      return out;
    },
    close() {
      v.closed = true;
    },
  };
  return v;
}
const req = (username: string): PasswordRequest => ({ username, password: 'pw', mechanism: 'USER', tls: true });

describe('verifier chain', () => {
  it('falls through on unknown users and stops at the first definite answer', async () => {
    const file = fake('user-file', { alice: { ok: true, user: 'alice' }, bob: { ok: false, reason: 'bad-password' } });
    const realm = fake('kerberos', { carol: { ok: true, user: 'carol' }, bob: { ok: true, user: 'bob' } });
    const chain = createVerifierChain([file, realm]);
    expect(chain.name).toBe('user-file>kerberos');
    expect(await chain.verify(req('alice'))).toEqual({ ok: true, user: 'alice' });
    expect(await chain.verify(req('carol'))).toEqual({ ok: true, user: 'carol' });
    // A user-file entry with a wrong password is not rescued by the realm.
    expect(await chain.verify(req('bob'))).toEqual({ ok: false, reason: 'bad-password' });
    expect(await chain.verify(req('nobody'))).toEqual({ ok: false, reason: 'unknown-user' });
    expect(file.calls).toEqual(['alice', 'carol', 'bob', 'nobody']);
    expect(realm.calls).toEqual(['carol', 'nobody']);
  });

  it('stops with the error when a verifier is unavailable, and closes all', async () => {
    const file = fake('user-file', {});
    const realm = fake('kerberos', { dave: 'throw' });
    const chain = createVerifierChain([file, realm]);
    await expect(chain.verify(req('dave'))).rejects.toMatchObject({ code: 'VERIFIER_UNAVAILABLE' });
    chain.close();
    expect(file.closed && realm.closed).toBe(true);
  });

  it('refuses an empty chain and returns a single verifier as is', () => {
    expect(() => createVerifierChain([])).toThrow(/at least one/);
    const only = fake('only', {});
    expect(createVerifierChain([only])).toBe(only);
  });

  it('sends challenge checks and authorizations only to the verifiers that offer them, in order', async () => {
    const file = fake('user-file', {});
    const http = Object.assign(fake('http', {}), {
      verifyChallenge: async () => ({ ok: true, user: 'apop-user' }) as VerifyOutcome,
      authorize: async () => ({ ok: true, user: 'routed', route: { endpoint: { host: '10.0.0.9', port: 110 } } }) as VerifyOutcome,
    });
    const chain = createVerifierChain([file, http]);
    expect(await chain.verifyChallenge!({ username: 'u', mechanism: 'APOP', challenge: '<1.2@h>', response: 'ab' })).toEqual({
      ok: true,
      user: 'apop-user',
    });
    expect(await chain.authorize!({ user: 'u', mechanism: 'KPOP', identity: 'u@R' })).toMatchObject({ route: { endpoint: { port: 110 } } });
    // Without any challenge-capable verifier the chain offers no challenge check at all.
    expect(createVerifierChain([fake('a', {}), fake('b', {})]).verifyChallenge).toBeUndefined();
  });
});
