/**
 * binding.ts without a KDC: KdcGate (cap, bounded queue, deadline), the
 * mapping of addon errors to KerberosError kinds, and the binding's glue over
 * a fake addon.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  KRB5,
  KdcGate,
  DEFAULT_TICKET_GATE,
  ticketCheckGate,
  NativeKerberosBinding,
  classifyPasswordError,
  failureForCode,
  nativeAddonPath,
  toKerberosError,
} from '../../src/kerberos/binding.js';
import type { NativeAddon, NativeGssContext } from '../../src/kerberos/native.js';
import { KerberosError } from '../../src/kerberos/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}


async function failureOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KerberosError);
    return (err as KerberosError).failure;
  }
  throw new Error('expected a rejection');
}

function nativeError(props: { code: number; stage?: string; hint?: string; gssMajor?: number; krbError?: Buffer }, message = 'native failure'): Error {
  return Object.assign(new Error(message), props);
}

describe('KdcGate', () => {
  it('runs at most maxConcurrent at once and starts waiters in order as slots free', async () => {
    const gate = new KdcGate({ maxConcurrent: 2, maxQueue: 10, timeoutMs: 5_000 });
    const jobs = Array.from({ length: 5 }, () => deferred<number>());
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const results = jobs.map((d, i) =>
      gate.run(() => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        return d.promise.finally(() => running--);
      }),
    );
    expect(started).toEqual([0, 1]);
    expect(gate.inFlight).toBe(2);
    expect(gate.queued).toBe(3);
    jobs[1]!.resolve(1);
    await waitFor('a third job to start', () => started.length === 3);
    expect(started).toEqual([0, 1, 2]);
    jobs[0]!.resolve(0);
    jobs[2]!.resolve(2);
    await waitFor('the last two jobs to start', () => started.length === 5);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    jobs[3]!.resolve(3);
    jobs[4]!.resolve(4);
    expect(await Promise.all(results)).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
    expect(gate.inFlight).toBe(0);
    expect(gate.queued).toBe(0);
  });

  it("refuses at once with 'kdc-unreachable' when the queue is full", async () => {
    const clock = new FakeClock();
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 1, timeoutMs: 5_000 }, undefined, clock);
    const d = deferred<string>();
    const a = gate.run(() => d.promise);
    const b = gate.run(async () => 'b');
    // The fake clock never moves: the refusal cannot have waited for any deadline.
    expect(await failureOf(gate.run(async () => 'c'))).toBe('kdc-unreachable');
    expect(clock.pending.map((t) => t.ms)).toEqual([5_000, 5_000]); // a's and b's deadlines; c's was dropped
    d.resolve('a');
    expect(await a).toBe('a');
    expect(await b).toBe('b');
  });

  it("times out a running call with 'timeout' at once, but keeps its slot until it really returns", async () => {
    const clock = new FakeClock();
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 5, timeoutMs: 60 }, undefined, clock);
    const stuck = deferred<boolean>();
    const first = gate.run(() => stuck.promise);
    expect(clock.requested).toEqual([60]);
    clock.advance(60); // the deadline passes while the call still runs
    expect(await failureOf(first)).toBe('timeout');
    expect(gate.inFlight).toBe(1);
    expect(gate.abandoned).toBe(1);

    // A later caller cannot get the slot while the abandoned call still runs.
    let secondStarted = false;
    const second = gate.run(async () => {
      secondStarted = true;
      return true;
    });
    clock.advance(60);
    expect(await failureOf(second)).toBe('timeout');
    expect(secondStarted).toBe(false);
    expect(gate.queued).toBe(0); // a timed-out waiter leaves the queue

    // The stuck call returns: its result is dropped, the slot is free again.
    stuck.resolve(true);
    await waitFor('the stuck call to return', () => gate.inFlight === 0);
    expect(gate.inFlight).toBe(0);
    expect(gate.abandoned).toBe(0);
    expect(await gate.run(async () => 'ok')).toBe('ok');
  });

  it("counts each caller's deadline from its own call, queueing included", async () => {
    const clock = new FakeClock();
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 5, timeoutMs: 300 }, undefined, clock);
    const d = deferred<string>();
    const a = gate.run(() => d.promise);
    clock.advance(150);
    // Called at 150 ms, starts at 200 ms when `a` ends, needs 100 ms: done at 300 ms,
    // inside its own deadline (450 ms) though at `a`'s (300 ms).
    const bWork = deferred<string>();
    let bStarted = false;
    const b = gate.run(() => {
      bStarted = true;
      return bWork.promise;
    });
    expect(clock.pending.map((t) => t.at - clock.now())).toEqual([150, 300]); // a's deadline, b's own
    clock.advance(50);
    d.resolve('a');
    expect(await a).toBe('a');
    await waitFor('b to start', () => bStarted);
    clock.advance(100);
    bWork.resolve('b');
    expect(await b).toBe('b');

    // A caller stuck in the queue behind a call that never returns times out unstarted.
    const never = deferred<string>();
    const slow = failureOf(gate.run(() => never.promise));
    let started = false;
    const waiting = gate.run(async () => {
      started = true;
      return 'never';
    });
    clock.advance(300);
    expect(await failureOf(waiting)).toBe('timeout');
    expect(started).toBe(false);
    expect(await slow).toBe('timeout');
    never.resolve('late');
  });

  it('passes rejections through and frees the slot; a synchronous throw is a rejection too', async () => {
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 0, timeoutMs: 1_000 });
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(
      gate.run(() => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    expect(gate.inFlight).toBe(0);
    expect(await gate.run(async () => 1)).toBe(1);
  });

  it('validates its options', () => {
    expect(() => new KdcGate({ maxConcurrent: 0 })).toThrow(RangeError);
    expect(() => new KdcGate({ maxQueue: -1 })).toThrow(RangeError);
    expect(() => new KdcGate({ timeoutMs: 0 })).toThrow(RangeError);
    expect(new KdcGate().options).toEqual({ maxConcurrent: 2, maxQueue: 32, timeoutMs: 10_000 });
  });
});

describe('error mapping', () => {
  it('maps krb5 codes to failure kinds', () => {
    expect(failureForCode(KRB5.AP_ERR_REPEAT)).toBe('replay');
    expect(failureForCode(KRB5.AP_ERR_SKEW)).toBe('skew');
    expect(failureForCode(KRB5.AP_ERR_NOT_US)).toBe('wrong-principal');
    expect(failureForCode(KRB5.AP_WRONG_PRINC)).toBe('wrong-principal');
    expect(failureForCode(KRB5.KT_NOTFOUND)).toBe('wrong-principal');
    expect(failureForCode(KRB5.AP_ERR_BAD_INTEGRITY)).toBe('bad-token');
    expect(failureForCode(KRB5.AP_ERR_MSG_TYPE)).toBe('bad-token');
    expect(failureForCode(KRB5.AP_ERR_MODIFIED)).toBe('bad-token');
    expect(failureForCode(1859794432 + 5)).toBe('bad-token'); // ASN.1 decode error
    expect(failureForCode(KRB5.KDC_UNREACH)).toBe('kdc-unreachable');
    expect(failureForCode(KRB5.REALM_CANT_RESOLVE)).toBe('kdc-unreachable');
    expect(failureForCode(2)).toBe('config'); // ENOENT
    expect(failureForCode(KRB5.RC_FIRST + 5)).toBe('config'); // replay cache I/O
    expect(failureForCode(KRB5.AP_ERR_TKT_EXPIRED)).toBe('other');
    expect(KRB5.AP_ERR_REPEAT).toBe(-1765328350);
    expect(KRB5.KDC_UNREACH).toBe(-1765328228);
    expect(KRB5.KT_NOTFOUND).toBe(-1765328203);
  });

  it('prefers the addon hint, then the stage, then the code, then the GSS major', () => {
    const krbError = Buffer.from([0x7e, 0x00]);
    const e = toKerberosError(nativeError({ code: KRB5.AP_ERR_REPEAT, stage: 'rd_req', krbError }, 'Request is a replay'));
    expect(e).toBeInstanceOf(KerberosError);
    expect(e.failure).toBe('replay');
    expect(e.krbCode).toBe(KRB5.AP_ERR_REPEAT);
    expect(e.krbError).toBe(krbError);
    expect(e.message).toBe('Request is a replay');
    expect(toKerberosError(nativeError({ code: 2, stage: 'rcache', hint: 'config' })).failure).toBe('config');
    expect(toKerberosError(nativeError({ code: KRB5.AP_WRONG_PRINC, hint: 'wrong-principal' })).failure).toBe('wrong-principal');
    expect(toKerberosError(nativeError({ code: KRB5.KT_NOTFOUND, stage: 'keytab' })).failure).toBe('config');
    expect(toKerberosError(nativeError({ code: 0, stage: 'accept', gssMajor: 9 << 16 })).failure).toBe('bad-token');
    expect(toKerberosError(nativeError({ code: 0, stage: 'accept', gssMajor: (13 << 16) | 2 })).failure).toBe('replay');
    expect(toKerberosError(nativeError({ code: 0, stage: 'accept', hint: 'nonsense' })).failure).toBe('other');
    expect(toKerberosError(new TypeError('bad arg')).failure).toBe('other');
    const same = new KerberosError('skew', 'x');
    expect(toKerberosError(same)).toBe(same);
  });

  it('classifies password failures: a definite no is false, our trouble is config, never true', () => {
    const as = (code: number) => classifyPasswordError(nativeError({ code, stage: 'as' }));
    const verify = (code: number) => classifyPasswordError(nativeError({ code, stage: 'verify' }));
    expect(as(KRB5.KDC_ERR_PREAUTH_FAILED)).toBe(false);
    expect(as(KRB5.AP_ERR_BAD_INTEGRITY)).toBe(false);
    expect(as(KRB5.KDC_ERR_C_PRINCIPAL_UNKNOWN)).toBe(false);
    expect(as(KRB5.KDC_ERR_CLIENT_REVOKED)).toBe(false);
    expect(as(KRB5.KDC_ERR_KEY_EXP)).toBe(false);
    expect(as(KRB5.PARSE_MALFORMED)).toBe(false);
    expect((as(KRB5.KDC_UNREACH) as KerberosError).failure).toBe('kdc-unreachable');
    expect((as(KRB5.REALM_CANT_RESOLVE) as KerberosError).failure).toBe('kdc-unreachable');
    expect((as(KRB5.REALM_UNKNOWN) as KerberosError).failure).toBe('config');
    expect((as(KRB5.AP_ERR_SKEW) as KerberosError).failure).toBe('skew');
    expect((as(KRB5.ERR_GENERIC) as KerberosError).failure).toBe('other');
    // Verify stage: the KDC's ticket does not decrypt with our key (rogue KDC).
    expect(verify(KRB5.AP_ERR_BAD_INTEGRITY)).toBe(false);
    expect(verify(KRB5.AP_ERR_MODIFIED)).toBe(false);
    expect((verify(KRB5.KDC_ERR_S_PRINCIPAL_UNKNOWN) as KerberosError).failure).toBe('config');
    expect((verify(KRB5.KT_KVNONOTFOUND) as KerberosError).failure).toBe('config');
    expect((verify(KRB5.KDC_UNREACH) as KerberosError).failure).toBe('kdc-unreachable');
    expect((verify(KRB5.ERR_GENERIC) as KerberosError).failure).toBe('other');
    expect((classifyPasswordError(nativeError({ code: 2, stage: 'keytab', hint: 'config' })) as KerberosError).failure).toBe('config');
    expect(classifyPasswordError(nativeError({ code: KRB5.LIBOS_CANTREADPWD, stage: 'as', hint: 'bad-password' }))).toBe(false);
    const timeout = new KerberosError('timeout', 't');
    expect(classifyPasswordError(timeout)).toBe(timeout);
  });
});

describe('NativeKerberosBinding over a fake addon', () => {
  function fakeAddon(overrides: Partial<NativeAddon> = {}): NativeAddon {
    const ctx: NativeGssContext = {
      step: async () => ({ done: true, output: Buffer.from('rep'), client: 'alice@R' }),
      wrap: async (b) => Buffer.concat([Buffer.from('W'), b]),
      unwrap: async () => Promise.reject(nativeError({ code: 0, stage: 'unwrap', gssMajor: 6 << 16 })),
      dispose: () => undefined,
    };
    return {
      verifyApReq: async () => ({ client: 'alice@R', server: 'pop/h@R', mutual: false, apRep: Buffer.from('x') }),
      verifyPassword: async () => true,
      checkKeytab: async () => undefined,
      pamAuthenticate: async () => ({ result: 'ok', stage: 'account', code: 0, message: 'Success' }),
      reload: () => undefined,
      GssContext: class {
        constructor() {
          return ctx;
        }
      } as unknown as NativeAddon['GssContext'],
      ...overrides,
    };
  }

  const acceptor = { keytab: '/k', servicePrincipals: ['pop/h@R'], rcacheDir: 'rel/rc' };

  it('passes an absolute rcache dir and drops apRep when not mutual', async () => {
    let seen: unknown[] = [];
    const b = new NativeKerberosBinding(
      fakeAddon({
        verifyApReq: async (...args) => {
          seen = args;
          return { client: 'alice@R', server: 'pop/h@R', mutual: false, apRep: Buffer.from('x') };
        },
      }),
    );
    const r = await b.verifyApReq(Buffer.from('req'), acceptor);
    expect(r).toEqual({ client: 'alice@R', server: 'pop/h@R', mutual: false, apRep: undefined });
    expect(seen[3]).toBe(path.resolve('rel/rc'));
    expect(seen[2]).toEqual(['pop/h@R']);
  });

  it('maps verifyApReq rejections to KerberosError with the KRB-ERROR', async () => {
    const krbError = Buffer.from([0x7e, 1, 2]);
    const b = new NativeKerberosBinding(
      fakeAddon({ verifyApReq: () => Promise.reject(nativeError({ code: KRB5.AP_ERR_SKEW, stage: 'rd_req', krbError })) }),
    );
    const err = await b.verifyApReq(Buffer.from('req'), acceptor).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KerberosError);
    expect((err as KerberosError).failure).toBe('skew');
    expect((err as KerberosError).krbError).toBe(krbError);
  });

  it('wipes the password buffer handed to the addon, and answers trivial cases without it', async () => {
    let handed: Buffer | undefined;
    let calls = 0;
    const b = new NativeKerberosBinding(
      fakeAddon({
        verifyPassword: async (_p, pw) => {
          calls++;
          handed = pw;
          expect(pw.toString('utf8')).toBe('s3cret-pässword');
          return true;
        },
      }),
    );
    const check = { principal: 'alice@R', password: 's3cret-pässword', keytab: '/k', servicePrincipal: 'pop/h@R' };
    expect(await b.verifyPassword(check)).toBe(true);
    expect(handed).toBeDefined();
    expect(handed!.every((byte) => byte === 0)).toBe(true);
    expect(await b.verifyPassword({ ...check, password: '' })).toBe(false);
    expect(await b.verifyPassword({ ...check, password: 'a\0b' })).toBe(false);
    expect(await b.verifyPassword({ ...check, principal: '' })).toBe(false);
    expect(calls).toBe(1);
  });

  it('routes password checks through its KdcGate and classifies failures', async () => {
    const clock = new FakeClock();
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 0, timeoutMs: 50 }, undefined, clock);
    const pending = deferred<boolean>();
    const b = new NativeKerberosBinding(fakeAddon({ verifyPassword: () => pending.promise }), { kdcGate: gate });
    expect(b.kdcGate).toBe(gate);
    const check = { principal: 'alice@R', password: 'pw', keytab: '/k', servicePrincipal: 'pop/h@R' };
    const first = b.verifyPassword(check);
    expect(await failureOf(b.verifyPassword(check))).toBe('kdc-unreachable'); // queue of 0
    expect(clock.pending.map((t) => t.ms)).toEqual([50]);
    clock.advance(50);
    expect(await failureOf(first)).toBe('timeout');
    pending.resolve(true); // too late: never turns the timed-out call into true
    await waitFor('the late call to leave the gate', () => gate.inFlight === 0);

    const wrong = new NativeKerberosBinding(
      fakeAddon({ verifyPassword: () => Promise.reject(nativeError({ code: KRB5.KDC_ERR_PREAUTH_FAILED, stage: 'as' })) }),
    );
    expect(await wrong.verifyPassword(check)).toBe(false);
    const down = new NativeKerberosBinding(
      fakeAddon({ verifyPassword: () => Promise.reject(nativeError({ code: KRB5.KDC_UNREACH, stage: 'as' })) }),
    );
    expect(await failureOf(down.verifyPassword(check))).toBe('kdc-unreachable');
  });

  it('caps ticket checks in flight (AP-REQs and GSS accept steps share one gate)', async () => {
    const gate = ticketCheckGate({ maxConcurrent: 2, maxQueue: 1 });
    expect(gate.options.maxConcurrent).toBe(2);
    const releases: Array<() => void> = [];
    let running = 0;
    let peak = 0;
    const held = async <T>(value: T): Promise<T> => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => releases.push(r));
      running--;
      return value;
    };
    const ctx: NativeGssContext = {
      step: () => held({ done: true, output: Buffer.from('rep'), client: 'alice@R' }),
      wrap: async (b) => b,
      unwrap: async (b) => b,
      dispose: () => undefined,
    };
    const b = new NativeKerberosBinding(
      fakeAddon({
        verifyApReq: () => held({ client: 'alice@R', server: 'pop/h@R', mutual: false, apRep: Buffer.alloc(0) }),
        GssContext: class {
          constructor() {
            return ctx;
          }
        } as unknown as NativeAddon['GssContext'],
      }),
      { ticketGate: gate },
    );
    const a = b.verifyApReq(Buffer.from('a'), acceptor);
    const g = b.createGssAcceptor(acceptor).step(Buffer.from('t'));
    const queued = b.verifyApReq(Buffer.from('c'), acceptor);
    // Two run, one waits; one more than the queue holds is refused at once, as [SYS/TEMP] material.
    const refused = await failureOf(b.verifyApReq(Buffer.from('d'), acceptor));
    expect(refused).toBe('timeout');
    expect(gate.inFlight).toBe(2);
    expect(gate.queued).toBe(1);
    // Release one: the queued check takes its slot (still 2 at once); then the rest.
    releases.shift()!();
    await waitFor('the queued check to start', () => releases.length === 2 && gate.queued === 0);
    while (releases.length > 0) releases.shift()!();
    await waitFor('every check to return', () => gate.inFlight === 0);
    await expect(a).resolves.toMatchObject({ client: 'alice@R' });
    await expect(g).resolves.toMatchObject({ done: true });
    await expect(queued).resolves.toMatchObject({ client: 'alice@R' });
    expect(peak).toBe(2);
    // The default: one per core, at most 8.
    expect(DEFAULT_TICKET_GATE.maxConcurrent).toBe(Math.max(1, Math.min(8, availableParallelism())));
    expect(new NativeKerberosBinding(fakeAddon()).ticketGate.options).toEqual(DEFAULT_TICKET_GATE);
  });

  it('makes every checkKeytab failure a config error', async () => {
    const b = new NativeKerberosBinding(
      fakeAddon({ checkKeytab: () => Promise.reject(nativeError({ code: KRB5.KT_NOTFOUND }, 'keytab /k has no key for pop/x@R')) }),
    );
    const err = await b.checkKeytab('/k', ['pop/x@R']).catch((e: unknown) => e);
    expect((err as KerberosError).failure).toBe('config');
    expect((err as KerberosError).message).toContain('pop/x@R');
  });

  it('wraps GSS contexts: client after done, mapped errors, dispose', async () => {
    let disposed = 0;
    const addon = fakeAddon();
    const b = new NativeKerberosBinding(addon);
    const acc = b.createGssAcceptor(acceptor);
    expect(acc.client).toBeUndefined();
    const r = await acc.step(Buffer.from('tok'));
    expect(r).toEqual({ done: true, output: Buffer.from('rep') });
    expect(acc.client).toBe('alice@R');
    expect((await acc.wrap(Buffer.from('d'))).toString()).toBe('Wd');
    expect(await failureOf(acc.unwrap(Buffer.from('bad')))).toBe('bad-token');
    const ctx = new addon.GssContext('', [], '');
    ctx.dispose = () => void disposed++;
    acc.dispose();
    expect(disposed).toBe(1);
  });
});

describe('addon location', () => {
  it('resolves native/build/Release/popgate_krb5.node under the package root', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    expect(nativeAddonPath()).toBe(path.join(root, 'native', 'build', 'Release', 'popgate_krb5.node'));
  });
});
