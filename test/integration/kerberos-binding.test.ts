/**
 * The MIT krb5 addon against a real private KDC (test/helpers/kdc.ts) and
 * real clients (python3-gssapi initiator; raw AP-REQs taken from its tokens).
 * Needs the addon built (`npm run build:native`, done by scripts/setup.sh).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KdcGate, loadKerberosBinding, nativeAddonPath, type NativeKerberosBinding } from '../../src/kerberos/binding.js';
import { KerberosError, type AcceptorOptions, type KerberosFailure } from '../../src/kerberos/types.js';
import { FakeClock, RecordingClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait.js';
import {
  GssClient,
  apReqFromGssToken,
  deadKdcAddress,
  gssInitialToken,
  setCcacheTimeOffset,
  startBlackHole,
  startKdc,
  type BlackHole,
  type KdcInstance,
} from '../helpers/kdc.js';

const REALM = 'POPGATE.TEST';
const POP = `pop/localhost@${REALM}`;
const POP_IP = `pop/127.0.0.1@${REALM}`;
const IMAP = `imap/localhost@${REALM}`;

let kdc: KdcInstance;
let hole: BlackHole;
let binding: NativeKerberosBinding;
let work: string;
let keytab: string;
let rcacheDir: string;
let aliceEnv: Record<string, string>;
let opts: AcceptorOptions;
const savedEnv: Record<string, string | undefined> = {};

async function expectFailure(p: Promise<unknown>, failure: KerberosFailure): Promise<KerberosError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected a KerberosError('${failure}')`).toBeInstanceOf(KerberosError);
  const e = caught as KerberosError;
  expect({ failure: e.failure, message: e.message }).toMatchObject({ failure });
  return e;
}

/** error-code [6] of a DER KRB-ERROR ([APPLICATION 30] SEQUENCE). */
function krbErrorCode(der: Buffer): number {
  const readLen = (i: number): [number, number] => {
    const b = der[i] ?? 0;
    if (b < 0x80) return [b, i + 1];
    const n = b & 0x7f;
    let len = 0;
    for (let k = 0; k < n; k++) len = (len << 8) | (der[i + 1 + k] ?? 0);
    return [len, i + 1 + n];
  };
  expect(der[0]).toBe(0x7e);
  let [, i] = readLen(1);
  expect(der[i]).toBe(0x30);
  let end: number;
  let len: number;
  [len, i] = readLen(i + 1);
  end = i + len;
  while (i < end) {
    const tag = der[i] ?? 0;
    const [flen, vstart] = readLen(i + 1);
    if (tag === 0xa6) {
      // INTEGER inside
      const [ilen, istart] = readLen(vstart + 1);
      let v = 0;
      for (let k = 0; k < ilen; k++) v = (v << 8) | (der[istart + k] ?? 0);
      return v;
    }
    i = vstart + flen;
  }
  throw new Error('no error-code in KRB-ERROR');
}

/** Frames a raw AP-REP as a krb5 GSS token (tok id 02 00) for the python initiator. */
function gssApRepToken(apRep: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from('06092a864886f712010202', 'hex'), Buffer.from([0x02, 0x00]), apRep]);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : body.length < 0x100 ? Buffer.from([0x81, body.length]) : Buffer.from([0x82, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([Buffer.from([0x60]), len, body]);
}

async function freshApReq(target = POP, env = aliceEnv, mutual = true): Promise<Buffer> {
  return apReqFromGssToken(await gssInitialToken(env, target, { mutual }));
}

function setEnv(name: string, value: string | undefined): void {
  if (!(name in savedEnv)) savedEnv[name] = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

beforeAll(async () => {
  if (!existsSync(nativeAddonPath())) {
    throw new Error(`Kerberos addon not built (${nativeAddonPath()}): run \`npm run build:native\` (scripts/setup.sh does)`);
  }
  hole = await startBlackHole();
  kdc = await startKdc({
    realm: REALM,
    principals: [
      { name: 'alice', password: 'alice-pw' },
      { name: 'bob', password: 'bob-pw' },
    ],
    services: ['pop/localhost', 'pop/127.0.0.1', 'imap/localhost'],
    extraRealms: { 'DEAD.TEST': [await deadKdcAddress()], 'HOLE.TEST': [hole.address] },
  });
  work = await mkdtemp(path.join(os.tmpdir(), 'popgate-krb-test-'));
  rcacheDir = path.join(work, 'rcache');
  await mkdir(rcacheDir);
  // The keytab also holds imap/localhost: only the configured list may be accepted.
  keytab = await kdc.keytab(path.join(work, 'gateway.keytab'), ['pop/localhost', 'pop/127.0.0.1', 'imap/localhost']);
  const aliceCc = await kdc.kinit('alice', 'alice-pw', path.join(work, 'alice.cc'));
  aliceEnv = { ...kdc.env, KRB5CCNAME: `FILE:${aliceCc}` };
  // The addon runs in this process: point MIT at the private realm.
  setEnv('KRB5_CONFIG', kdc.krb5Config);
  setEnv('KRB5CCNAME', `FILE:${path.join(work, 'never-used.cc')}`);
  // MIT's DEFAULT replay cache would land here: a missing dir makes any use of it fail,
  // so every accept below proves the configured rcacheDir is what is used.
  setEnv('KRB5RCACHEDIR', path.join(work, 'default-rcache-must-not-be-used'));
  binding = loadKerberosBinding({ kdcGate: new KdcGate({ maxConcurrent: 2, maxQueue: 16, timeoutMs: 10_000 }) });
  binding.reload();
  opts = { keytab, servicePrincipals: [POP, POP_IP], rcacheDir };
});

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await kdc?.stop();
  await hole?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('verifyApReq (KPOP)', () => {
  it('accepts a real AP-REQ and returns an AP-REP the client verifies (mutual auth)', async () => {
    const client = GssClient.start(aliceEnv);
    try {
      const token = await client.init(POP, { mutual: true });
      const r = await binding.verifyApReq(apReqFromGssToken(token), opts);
      expect(r.client).toBe(`alice@${REALM}`);
      expect(r.server).toBe(POP);
      expect(r.mutual).toBe(true);
      expect(r.apRep?.[0]).toBe(0x6f);
      // The client accepts our AP-REP: the mutual-auth proof is genuine.
      const done = await client.step(gssApRepToken(r.apRep!));
      expect(done.complete).toBe(true);
    } finally {
      client.close();
    }
  });

  it('returns no AP-REP when the client did not ask for mutual auth', async () => {
    const r = await binding.verifyApReq(await freshApReq(POP, aliceEnv, false), opts);
    expect(r).toMatchObject({ client: `alice@${REALM}`, mutual: false, apRep: undefined });
  });

  it('accepts every configured principal (pop/127.0.0.1 too)', async () => {
    const r = await binding.verifyApReq(await freshApReq(POP_IP), opts);
    expect(r.server).toBe(POP_IP);
    expect(r.client).toBe(`alice@${REALM}`);
  });

  it('refuses a replayed AP-REQ with KRB-ERROR 34', async () => {
    const apReq = await freshApReq();
    await binding.verifyApReq(apReq, opts);
    const e = await expectFailure(binding.verifyApReq(apReq, opts), 'replay');
    expect(e.krbError).toBeInstanceOf(Buffer);
    expect(krbErrorCode(e.krbError!)).toBe(34);
  });

  it('refuses a replay from another process sharing the replay cache directory', async () => {
    const apReq = await freshApReq();
    await binding.verifyApReq(apReq, opts);
    const script = `
      const m = require(${JSON.stringify(nativeAddonPath())});
      m.verifyApReq(Buffer.from(process.argv[1], 'base64'), ${JSON.stringify(keytab)}, ${JSON.stringify([POP])}, ${JSON.stringify(rcacheDir)})
        .then(() => console.log('accepted'), (e) => console.log('refused ' + e.code));`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['-e', script, apReq.toString('base64')], { env: { ...process.env } }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
      ),
    );
    expect(out).toBe(`refused ${-1765328384 + 34}`);
  });

  it('ignores KRB5RCACHETYPE=none: the configured replay cache is always used', async () => {
    setEnv('KRB5RCACHETYPE', 'none');
    try {
      const apReq = await freshApReq();
      await binding.verifyApReq(apReq, opts);
      await expectFailure(binding.verifyApReq(apReq, opts), 'replay');
    } finally {
      setEnv('KRB5RCACHETYPE', savedEnv['KRB5RCACHETYPE']);
    }
  });

  it('refuses a ticket for imap/localhost even though the keytab holds its key (KRB-ERROR 35)', async () => {
    const e = await expectFailure(binding.verifyApReq(await freshApReq(IMAP), opts), 'wrong-principal');
    expect(e.message).toContain(IMAP);
    expect(krbErrorCode(e.krbError!)).toBe(35);
    // With imap configured, the same kind of ticket is fine: the refusal was the list, not the key.
    const r = await binding.verifyApReq(await freshApReq(IMAP), { ...opts, servicePrincipals: [IMAP] });
    expect(r.server).toBe(IMAP);
  });

  it('refuses garbage and truncated requests as bad-token, with a KRB-ERROR', async () => {
    const e = await expectFailure(binding.verifyApReq(Buffer.from('not a kerberos request'), opts), 'bad-token');
    expect(e.krbError?.[0]).toBe(0x7e);
    const apReq = await freshApReq();
    await expectFailure(binding.verifyApReq(apReq.subarray(0, apReq.length - 20), opts), 'bad-token');
    await expectFailure(binding.verifyApReq(Buffer.alloc(0), opts), 'bad-token');
  });

  it('refuses a tampered authenticator as bad-token', async () => {
    const apReq = await freshApReq();
    const bad = Buffer.from(apReq);
    bad[bad.length - 5]! ^= 0xff; // inside the encrypted authenticator
    await expectFailure(binding.verifyApReq(bad, opts), 'bad-token');
  });

  it('refuses a client whose clock is an hour ahead (KRB-ERROR 37)', async () => {
    const cc = await kdc.kinit('bob', 'bob-pw', path.join(work, 'bob-skewed.cc'));
    await kdc.kvno(cc, 'pop/localhost'); // service ticket first: the KDC would refuse a skewed TGS-REQ
    await setCcacheTimeOffset(cc, 3600);
    const token = await gssInitialToken({ ...kdc.env, KRB5CCNAME: `FILE:${cc}` }, POP);
    const e = await expectFailure(binding.verifyApReq(apReqFromGssToken(token), opts), 'skew');
    expect(krbErrorCode(e.krbError!)).toBe(37);
    // The same client without the offset is fine (the skew was the only problem).
    await setCcacheTimeOffset(cc, 0);
    const ok = await binding.verifyApReq(apReqFromGssToken(await gssInitialToken({ ...kdc.env, KRB5CCNAME: `FILE:${cc}` }, POP)), opts);
    expect(ok.client).toBe(`bob@${REALM}`);
  });

  it('is a config error when the replay cache directory is missing (never "no replay cache")', async () => {
    const e = await expectFailure(
      binding.verifyApReq(await freshApReq(), { ...opts, rcacheDir: path.join(work, 'no-such-dir') }),
      'config',
    );
    expect(e.message).toContain('no-such-dir');
  });

  it('is a config error when the replay cache directory is empty or a file', async () => {
    await expectFailure(binding.verifyApReq(await freshApReq(), { ...opts, rcacheDir: '' }), 'config');
    await expectFailure(binding.verifyApReq(await freshApReq(), { ...opts, rcacheDir: keytab }), 'config');
  });

  it('is a config error when the keytab is missing', async () => {
    await expectFailure(binding.verifyApReq(await freshApReq(), { ...opts, keytab: path.join(work, 'missing.keytab') }), 'config');
  });

  it('refuses when the keytab has no key for the ticket', async () => {
    const imapOnly = await kdc.keytab(path.join(work, 'imap-only.keytab'), ['imap/localhost']);
    await expectFailure(binding.verifyApReq(await freshApReq(), { ...opts, keytab: imapOnly }), 'wrong-principal');
  });
});

describe('GSS acceptor', () => {
  it('completes a krb5 exchange with python3-gssapi, wrap/unwrap both ways (RFC 4752 layer)', async () => {
    const client = GssClient.start(aliceEnv);
    const acc = binding.createGssAcceptor(opts);
    try {
      const first = await acc.step(await client.init(POP, { mutual: true }));
      expect(first.done).toBe(true);
      expect(first.output.length).toBeGreaterThan(0);
      expect(acc.client).toBe(`alice@${REALM}`);
      const c = await client.step(first.output);
      expect(c.complete).toBe(true);
      const info = await client.info();
      expect(info.target).toBe(POP);

      // Server -> client: security layers offer (no layer, maxbuf 0).
      const offer = Buffer.from([0x01, 0x00, 0x00, 0x00]);
      const wrapped = await acc.wrap(offer);
      expect(wrapped[0]).toBe(0x05); // RFC 4121 wrap token 05 04
      expect(wrapped[1]).toBe(0x04);
      const seen = await client.unwrap(wrapped);
      expect(seen.data.equals(offer)).toBe(true);
      expect(seen.encrypted).toBe(false);

      // Client -> server: chosen layer + authzid.
      const choice = Buffer.concat([Buffer.from([0x01, 0x00, 0x00, 0x00]), Buffer.from('alice')]);
      const back = await acc.unwrap(await client.wrap(choice));
      expect(back.equals(choice)).toBe(true);

      // A modified wrap token is refused.
      const tampered = await client.wrap(choice);
      tampered[tampered.length - 1]! ^= 0x01;
      await expectFailure(acc.unwrap(tampered), 'bad-token');
    } finally {
      client.close();
      acc.dispose();
      acc.dispose(); // idempotent
    }
  });

  it('works without mutual auth too (no output token needed by the client)', async () => {
    const acc = binding.createGssAcceptor(opts);
    try {
      const r = await acc.step(await gssInitialToken(aliceEnv, POP_IP, { mutual: false }));
      expect(r.done).toBe(true);
      expect(acc.client).toBe(`alice@${REALM}`);
    } finally {
      acc.dispose();
    }
  });

  it('refuses SPNEGO', async () => {
    const token = await gssInitialToken(aliceEnv, POP, { mech: 'spnego' });
    expect(token.subarray(0, 12).toString('hex')).toContain('06062b0601050502');
    const acc = binding.createGssAcceptor(opts);
    const e = await expectFailure(acc.step(token), 'bad-token');
    expect(e.message).toMatch(/SPNEGO/);
    acc.dispose();
  });

  it('refuses a ticket for a principal that is not configured', async () => {
    const acc = binding.createGssAcceptor(opts);
    await expectFailure(acc.step(await gssInitialToken(aliceEnv, IMAP)), 'wrong-principal');
    acc.dispose();
    // One configured principal only: pop/127.0.0.1 is refused, pop/localhost accepted.
    const single = binding.createGssAcceptor({ ...opts, servicePrincipals: [POP] });
    await expectFailure(single.step(await gssInitialToken(aliceEnv, POP_IP)), 'wrong-principal');
    single.dispose();
  });

  it('refuses a replayed initial token, also across KPOP and GSS (one replay cache)', async () => {
    const token = await gssInitialToken(aliceEnv, POP);
    const a = binding.createGssAcceptor(opts);
    expect((await a.step(token)).done).toBe(true);
    a.dispose();
    const b = binding.createGssAcceptor(opts);
    await expectFailure(b.step(token), 'replay');
    b.dispose();
    // The AP-REQ inside a used GSS token is a replay for KPOP as well.
    await expectFailure(binding.verifyApReq(apReqFromGssToken(token), opts), 'replay');
  });

  it('refuses garbage, and misuse of the context', async () => {
    const acc = binding.createGssAcceptor(opts);
    await expectFailure(acc.wrap(Buffer.from('x')), 'other'); // not established
    await expectFailure(acc.step(Buffer.from('garbage token')), 'bad-token');
    await expectFailure(acc.step(await gssInitialToken(aliceEnv, POP)), 'other'); // failed context stays failed
    acc.dispose();
    await expectFailure(acc.step(Buffer.from([0x60, 0x00])), 'other'); // disposed
  });

  it('is a config error without the replay cache directory or the keytab', async () => {
    const a = binding.createGssAcceptor({ ...opts, rcacheDir: path.join(work, 'no-such-dir') });
    await expectFailure(a.step(await gssInitialToken(aliceEnv, POP)), 'config');
    a.dispose();
    const b = binding.createGssAcceptor({ ...opts, keytab: path.join(work, 'missing.keytab') });
    await expectFailure(b.step(await gssInitialToken(aliceEnv, POP)), 'config');
    b.dispose();
  });

  it('refuses a skewed client', async () => {
    const cc = await kdc.kinit('bob', 'bob-pw', path.join(work, 'bob-skewed-gss.cc'));
    await kdc.kvno(cc, 'pop/localhost');
    await setCcacheTimeOffset(cc, 3600);
    const acc = binding.createGssAcceptor(opts);
    await expectFailure(acc.step(await gssInitialToken({ ...kdc.env, KRB5CCNAME: `FILE:${cc}` }, POP)), 'skew');
    acc.dispose();
  });
});

describe('verifyPassword', () => {
  const check = (principal: string, password: string, extra: Partial<{ keytab: string; servicePrincipal: string }> = {}) => ({
    principal,
    password,
    keytab,
    servicePrincipal: POP,
    ...extra,
  });

  it('is true for the right password, false for a wrong one or an unknown principal', async () => {
    expect(await binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw'))).toBe(true);
    expect(await binding.verifyPassword(check('bob', 'bob-pw'))).toBe(true);
    expect(await binding.verifyPassword(check(`alice@${REALM}`, 'wrong'))).toBe(false);
    expect(await binding.verifyPassword(check(`alice@${REALM}`, 'bob-pw'))).toBe(false);
    expect(await binding.verifyPassword(check(`mallory@${REALM}`, 'x'))).toBe(false);
    expect(await binding.verifyPassword(check(`alice@${REALM}`, ''))).toBe(false);
    expect(await binding.verifyPassword(check('a@b@c', 'x'))).toBe(false);
  });

  it('verifies in parallel through the gate', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => binding.verifyPassword(check(`alice@${REALM}`, i % 2 === 0 ? 'alice-pw' : 'nope'))),
    );
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => i % 2 === 0));
  });

  it('fails closed on keytab trouble: config error even with the right password', async () => {
    await expectFailure(binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw', { keytab: path.join(work, 'missing.keytab') })), 'config');
    const imapOnly = await kdc.keytab(path.join(work, 'imap-only-2.keytab'), ['imap/localhost']);
    await expectFailure(binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw', { keytab: imapOnly })), 'config');
    const garbage = path.join(work, 'garbage.keytab');
    await writeFile(garbage, 'not a keytab at all');
    await expectFailure(binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw', { keytab: garbage })), 'config');
  });

  it('fails closed when the keytab key is stale (the service was re-keyed at the KDC)', async () => {
    // A keytab taken before re-keying: the KDC's ticket no longer decrypts with our key.
    await kdc.addPrincipal('pop/stale');
    const stale = await kdc.keytab(path.join(work, 'stale.keytab'), ['pop/stale']);
    await kdc.kadmin(`cpw -randkey pop/stale@${REALM}`);
    const e = await expectFailure(
      binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw', { keytab: stale, servicePrincipal: `pop/stale@${REALM}` })),
      'config',
    );
    expect(e.message).toMatch(/verify_init_creds/);
  });

  it("is 'kdc-unreachable' when the realm's KDC refuses connections", async () => {
    // A real 10 s deadline, recorded: the refusal must come back before it fires.
    const clock = new RecordingClock();
    const b = loadKerberosBinding({ kdcGate: new KdcGate({ maxConcurrent: 2, maxQueue: 16, timeoutMs: 10_000 }, undefined, clock) });
    await expectFailure(b.verifyPassword(check('alice@DEAD.TEST', 'alice-pw')), 'kdc-unreachable');
    expect(clock.requested).toEqual([10_000]);
    expect(clock.fired).toEqual([]);
  });

  it("times out against a KDC that never answers; the slot is held until MIT gives up", async () => {
    const clock = new FakeClock();
    const gate = new KdcGate({ maxConcurrent: 1, maxQueue: 1, timeoutMs: 1_500 }, undefined, clock);
    const b = loadKerberosBinding({ kdcGate: gate });
    const first = b.verifyPassword(check('alice@HOLE.TEST', 'alice-pw'));
    const second = b.verifyPassword(check(`alice@${REALM}`, 'alice-pw')); // queued behind the stuck call
    const third = b.verifyPassword(check(`alice@${REALM}`, 'alice-pw')); // queue full
    await expectFailure(third, 'kdc-unreachable');
    await waitFor('the stuck call at the black hole', () => hole.hits > 0, { timeoutMs: 10_000 });
    // Each caller's 1.5 s deadline (the refused one's dropped); passing it fails both at once.
    expect(clock.requested).toEqual([1_500, 1_500, 1_500]);
    clock.advance(1_500);
    await expectFailure(first, 'timeout');
    await expectFailure(second, 'timeout'); // never got the slot
    expect(hole.hits).toBeGreaterThan(0);
    expect(gate.inFlight).toBe(1); // the native call is still blocked on the black hole
    expect(gate.abandoned).toBe(1);
    await hole.close(); // now MIT's retries are refused and the thread comes back
    await waitFor('MIT to give up on the black hole', () => gate.inFlight === 0, { timeoutMs: 30_000, intervalMs: 100 });
    expect(gate.inFlight).toBe(0);
    expect(gate.abandoned).toBe(0);
    expect(await b.verifyPassword(check(`alice@${REALM}`, 'alice-pw'))).toBe(true);
  }, 45_000);

  it('fails closed against a rogue KDC for the same realm (false, never true)', async () => {
    const rogue = await startKdc({
      realm: REALM,
      principals: [{ name: 'alice', password: 'alice-pw' }],
      services: ['pop/localhost'], // same name, a different (random) key
    });
    try {
      // The impostor does answer: a plain AS exchange (what naive checkers do) succeeds.
      await rogue.kinit('alice', 'alice-pw');
      setEnv('KRB5_CONFIG', rogue.krb5Config);
      binding.reload();
      expect(await binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw'))).toBe(false);
      expect(rogue.readLog()).toMatch(/AS_REQ.*ISSUE.*alice@POPGATE\.TEST/);
      // A rogue that does not even know our service: an error, still never true.
      await rogue.kadmin(`delprinc -force pop/localhost@${REALM}`);
      await expectFailure(binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw')), 'config');
    } finally {
      setEnv('KRB5_CONFIG', kdc.krb5Config);
      binding.reload();
      await rogue.stop();
    }
    expect(await binding.verifyPassword(check(`alice@${REALM}`, 'alice-pw'))).toBe(true);
  });
});

describe('checkKeytab', () => {
  it('passes for a keytab holding every principal', async () => {
    await expect(binding.checkKeytab(keytab, [POP, POP_IP, 'imap/localhost'])).resolves.toBeUndefined();
  });

  it('names the principals that have no key', async () => {
    const e = await expectFailure(binding.checkKeytab(keytab, [POP, `pop/mail.example@${REALM}`, `smtp/x@${REALM}`]), 'config');
    expect(e.message).toContain(`pop/mail.example@${REALM}`);
    expect(e.message).toContain(`smtp/x@${REALM}`);
    expect(e.message).not.toContain(`${POP},`);
  });

  it('fails clearly for a missing, garbage or directory keytab', async () => {
    const missing = await expectFailure(binding.checkKeytab(path.join(work, 'missing.keytab'), [POP]), 'config');
    expect(missing.message).toMatch(/missing\.keytab/);
    const garbage = path.join(work, 'garbage2.keytab');
    await writeFile(garbage, 'definitely not a keytab');
    await expectFailure(binding.checkKeytab(garbage, [POP]), 'config');
    await expectFailure(binding.checkKeytab(keytab, ['bad@@principal@']), 'config');
    await expectFailure(binding.checkKeytab(work, [POP]), 'config'); // a directory
  });

  it('re-reads the keytab on every call (a replaced file is seen at once)', async () => {
    const file = path.join(work, 'swap.keytab');
    await kdc.keytab(file, ['imap/localhost']);
    await expectFailure(binding.checkKeytab(file, [POP]), 'config');
    await kdc.keytab(file, ['pop/localhost']);
    await expect(binding.checkKeytab(file, [POP])).resolves.toBeUndefined();
  });
});
