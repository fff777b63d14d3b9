import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.js';
import type { PamChildScenario } from '../helpers/pam-child.js';
import { createPamSandbox, PAM_USERS, type PamSandbox } from '../helpers/pam-wrapper.js';

// The real addon and real PAM modules, in a child process under pam_wrapper
// (test/helpers/pam-wrapper.ts); nothing in /etc/pam.d is read or written.

let sandbox: PamSandbox;
beforeAll(async () => {
  sandbox = await createPamSandbox();
});
afterAll(async () => {
  await sandbox.cleanup();
});

const base = { accountCheck: true, maxConcurrent: 2, maxQueue: 8, timeoutMs: 5_000 } as const;

function scenario(service: string, logins: PamChildScenario['logins'], extra: Partial<PamChildScenario> = {}): PamChildScenario {
  return { ...base, service, logins, ...extra };
}

describe('pam verifier over pam_wrapper', () => {
  it('accepts the right password and refuses a wrong one (pam_matrix)', async () => {
    const { results } = await sandbox.run(
      scenario('popgate', [
        { user: 'alice', password: PAM_USERS.alice },
        { user: 'alice', password: 'wrong' },
        { user: 'bob', password: PAM_USERS.bob },
        { user: 'bob', password: PAM_USERS.alice },
      ]),
    );
    expect(results.map((r) => r.outcome)).toEqual([
      { ok: true, user: 'alice' },
      { ok: false, reason: 'bad-password' },
      { ok: true, user: 'bob' },
      { ok: false, reason: 'bad-password' },
    ]);
  });

  it('reports an unknown user as unknown-user when the module says so (pam_unix + nss_wrapper)', async () => {
    const { results } = await sandbox.run(scenario('popgate-unix', [{ user: 'nobody-here', password: 'x' }]));
    expect(results[0]?.outcome).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('refuses a locked account in the account stack, and skips it when accountCheck is off', async () => {
    const locked = await sandbox.run(scenario('popgate-locked', [{ user: 'alice', password: PAM_USERS.alice }]));
    expect(locked.results[0]?.outcome).toEqual({ ok: false, reason: 'disabled' });
    const unchecked = await sandbox.run(scenario('popgate-locked', [{ user: 'alice', password: PAM_USERS.alice }], { accountCheck: false }));
    expect(unchecked.results[0]?.outcome).toEqual({ ok: true, user: 'alice' });
  });

  it('the conversation lets info and error messages pass and still answers the password prompt (pam_chatty)', async () => {
    const { results } = await sandbox.run(
      scenario('popgate-chatty', [
        { user: 'alice', password: PAM_USERS.alice },
        { user: 'alice', password: 'wrong' },
      ]),
    );
    expect(results.map((r) => r.outcome)).toEqual([{ ok: true, user: 'alice' }, { ok: false, reason: 'bad-password' }]);
  });

  it('the conversation refuses any question but the password: [SYS/TEMP], never a guess', async () => {
    const { results } = await sandbox.run(scenario('popgate-otp', [{ user: 'alice', password: PAM_USERS.alice }]));
    expect(results[0]?.error?.code).toBe('VERIFIER_UNAVAILABLE');
    expect(results[0]?.error?.message).toMatch(/auth stage: Conversation error \(PAM code 19\)/);
  });

  it('refuses an empty password without asking PAM', async () => {
    // slow1 would hang in pam_exec for seconds if PAM were called.
    const { results, pamCalls } = await sandbox.run(scenario('popgate-hang', [{ user: 'slow1', password: '' }]));
    expect(results[0]?.outcome).toEqual({ ok: false, reason: 'bad-password' });
    expect(pamCalls).toBe(0);
  });

  it("gives PAM the client's address as PAM_RHOST (pam_succeed_if rhost decides)", async () => {
    const { results, pamCalls } = await sandbox.run(
      scenario('popgate-rhost', [
        { user: 'alice', password: PAM_USERS.alice, rhost: '127.0.0.1' },
        { user: 'alice', password: PAM_USERS.alice, rhost: '192.0.2.7' },
        { user: 'alice', password: PAM_USERS.alice },
      ]),
    );
    expect(results.map((r) => r.outcome)).toEqual([
      { ok: true, user: 'alice' },
      { ok: false, reason: 'bad-password' },
      { ok: false, reason: 'bad-password' },
    ]);
    expect(pamCalls).toBe(3);
  });

  it('a missing service file is VERIFIER_UNAVAILABLE ([SYS/TEMP]), not a wrong password', async () => {
    const { results } = await sandbox.run(scenario('no-such-service', [{ user: 'alice', password: PAM_USERS.alice }]));
    expect(results[0]?.error?.code).toBe('VERIFIER_UNAVAILABLE');
    expect(ERRORS.VERIFIER_UNAVAILABLE.resp).toBe('SYS/TEMP');
  });

  it('a hanging module: the deadline answers [SYS/TEMP], the cap holds, other logins are still answered', async () => {
    const { results, maxInFlight, pamCalls } = await sandbox.run(
      scenario(
        'popgate-hang',
        [
          { user: 'slow1', password: 'x' }, // takes slot 1, times out, keeps the slot while pam_exec sleeps
          { user: 'alice', password: PAM_USERS.alice, after: [{ inFlight: 1 }] }, // slot 2: answered at once
          { user: 'slow2', password: 'x', after: [{ answered: 'alice' }] }, // slot 2 again (alice is done)
          { user: 'slow3', password: 'x', after: [{ answered: 'alice' }, { inFlight: 2 }] }, // queued: no slot frees in time
          { user: 'slow4', password: 'x', after: [{ queued: 1 }] }, // queue full (maxQueue 1): refused at once
        ],
        { maxConcurrent: 2, maxQueue: 1, timeoutMs: 800 },
      ),
    );
    const by = Object.fromEntries(results.map((r) => [r.user, r]));
    const order = (u: string): number => by[u]?.answered ?? Number.NaN;
    expect(by.alice?.outcome).toEqual({ ok: true, user: 'alice' });
    // Answered while slow1 still hangs: not stuck behind it.
    expect(order('alice')).toBeLessThan(order('slow1'));
    for (const u of ['slow1', 'slow2', 'slow3', 'slow4']) expect(by[u]?.error?.code, u).toBe('VERIFIER_UNAVAILABLE');
    expect(by.slow1?.error?.message).toMatch(/PAM call timed out after 800 ms \(it keeps running/);
    expect(by.slow3?.error?.message).toMatch(/waiting for a free slot/);
    // Refused at once (the queue is full), before any deadline passed.
    expect(order('slow4')).toBe(2);
    expect(by.slow4?.error?.message).toMatch(/busy/);
    expect(maxInFlight).toBe(2);
    // slow3 never got a slot and slow4 never queued: three calls reached PAM.
    expect(pamCalls).toBe(3);
  });
});
