/**
 * ScramBridge against a real protocol core: the throttle is asked before a
 * proof is tried (a locked user gets LOGIN_THROTTLED and no server-first), an
 * unknown user runs on with dummy keys and fails at the proof with the lookup's
 * reason, and a lookup that throws is our trouble, not the client's.
 */
import { describe, expect, it } from 'vitest';
import { deriveScramCredentials, scramDummyCredentials, type ScramLookup } from '../../src/auth/scram.js';
import { GatewayError } from '../../src/errors.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action } from '../../src/pop3/types.js';
import { ScramBridge, type SaslStepAction, type ScramDeps } from '../../src/server/scram-bridge.js';
import { errActions, feedLine, sessionOptions } from '../helpers/pop3-session.js';

const clientFirst = Buffer.from('n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL');

function started(): { session: Pop3Session; step: SaslStepAction } {
  const session = new Pop3Session(sessionOptions({ tls: true, stlsAvailable: false, saslMechanisms: ['SCRAM-SHA-256'] }));
  const actions: Pop3Action[] = feedLine(session, `AUTH SCRAM-SHA-256 ${clientFirst.toString('base64')}`);
  const step = actions[0];
  if (step?.kind !== 'saslStep') throw new Error('expected a saslStep');
  return { session, step };
}

const deps = (over: Partial<ScramDeps>): ScramDeps => ({
  credentials: () => Promise.reject(new Error('not asked')),
  locked: () => Promise.resolve(undefined),
  ...over,
});

describe('ScramBridge', () => {
  it('asks the throttle first: a locked user gets LOGIN_THROTTLED, and its keys are never looked up', async () => {
    const { session, step } = started();
    const asked: string[] = [];
    const bridge = new ScramBridge(
      deps({
        locked: (user) => (asked.push(user), Promise.resolve(new GatewayError('LOGIN_THROTTLED', 'locked out'))),
      }),
      () => undefined,
    );
    const r = await bridge.handle(step, session);
    expect(asked).toEqual(['alice']);
    // The catalogue closes the connection on LOGIN_THROTTLED.
    expect(r.actions).toEqual([...errActions('LOGIN_THROTTLED'), { kind: 'close', reason: 'LOGIN_THROTTLED' }]);
    expect(r.failure).toMatchObject({ claimedUser: 'alice' });
    expect(r.failure?.error.code).toBe('LOGIN_THROTTLED');
  });

  it('an unknown user gets a server-first from dummy keys and fails at the proof, audited as unknown-user', async () => {
    const { session, step } = started();
    const lookup: ScramLookup = { found: false, reason: 'unknown-user', credentials: scramDummyCredentials('alice', Buffer.alloc(32, 7)) };
    const bridge = new ScramBridge(deps({ credentials: () => Promise.resolve(lookup) }), () => undefined);
    const first = await bridge.handle(step, session);
    expect(first.failure).toBeUndefined();
    const line = first.actions[0];
    expect(line?.kind === 'reply' && Buffer.from(line.line.slice(2), 'base64').toString()).toMatch(/^r=fyko\+d2lbbFgONRv9qkxdawL[^,]+,s=[^,]+,i=\d+$/);
    const final = feedLine(session, Buffer.from('c=biws,r=fyko+d2lbbFgONRv9qkxdawLxyz,p=dHpYvKMjAdDjPOBmKbXYB1Yzs5kKzn0w8tOJKVH8GfM=').toString('base64'));
    const step2 = final[0];
    if (step2?.kind !== 'saslStep') throw new Error('expected a saslStep');
    const r = await bridge.handle(step2, session);
    expect(r.actions).toEqual(errActions('AUTH_FAILED'));
    expect(r.failure?.error.detail).toBe('scram: unknown-user');
  });

  it('a lookup that throws is INTERNAL trouble, not a failed attempt', async () => {
    const { session, step } = started();
    const bridge = new ScramBridge(deps({ credentials: () => Promise.reject(new Error('disk gone')) }), () => undefined);
    const r = await bridge.handle(step, session);
    expect(r.failure?.error.code).toBe('INTERNAL');
    expect(session.counters.authFailures).toBe(0);
  });

  it('the right keys: the exchange proceeds to a server-first with the stored salt and count', async () => {
    const { session, step } = started();
    const credentials = await deriveScramCredentials('pencil', Buffer.from('salt-salt-salt!!'), 4096);
    const bridge = new ScramBridge(deps({ credentials: () => Promise.resolve({ found: true, credentials }) }), () => undefined);
    const r = await bridge.handle(step, session);
    const line = r.actions[0];
    expect(line?.kind === 'reply' && Buffer.from(line.line.slice(2), 'base64').toString()).toContain(`,s=${Buffer.from('salt-salt-salt!!').toString('base64')},i=4096`);
  });
});
