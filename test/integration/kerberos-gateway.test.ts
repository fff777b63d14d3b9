/**
 * Kerberos through the gateway, end to end: a real MIT KDC, a real Dovecot
 * behind popgate, and real clients — fetchmail over KPOP and AUTH GSSAPI,
 * curl AUTH=GSSAPI, python3-gssapi — plus every refusal the issue names,
 * each answered correctly while the gateway keeps serving.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kpopApReqFrame, kpopClientHello } from '../../src/kerberos/kpop-framing.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { curlPop3 } from '../helpers/clients.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { runFetchmail } from '../helpers/fetchmail.js';
import { KPOP_LISTENER, masterLogin, startTestGateway, waitForLog, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { apReqFromGssToken, GssClient, gssInitialToken, setCcacheTimeOffset, startKdc, type KdcInstance } from '../helpers/kdc.js';
import { LineClient } from '../helpers/line-client.js';
import { startAuthService } from '../helpers/nginx-auth.js';
import { freePort } from '../helpers/ports.js';

const REALM = 'POPGATE.TEST';
const MASTER = { name: 'popgate', password: 'Krb-Master-Pw' };
const USERS = [
  { name: 'alice', password: 'alice-realm-pw' },
  { name: 'bob', password: 'bob-realm-pw' },
];
const MSGS = {
  alice: [
    Buffer.from('From: a@example.test\r\nSubject: first\r\n\r\nhello alice\r\n'),
    Buffer.from('From: b@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n'),
  ],
  bob: [Buffer.from('From: c@example.test\r\nSubject: for bob\r\n\r\nhi bob\r\n')],
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** fetchmail hands messages to its MDA with LF line ends. */
const lf = (b: Buffer): Buffer => Buffer.from(b.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');

let kdc: KdcInstance;
let dovecot: DovecotInstance;
let pki: TestPki;
let gw: TestGateway;
let work: string;
let aliceEnv: Record<string, string>;

function kerberosYaml(opts: { krb5Config: string; realms?: string[]; extraMap?: string }): string {
  return `
kerberos:
  keytab: ${join(work, 'pop.keytab')}
  servicePrincipals: [pop/localhost@${REALM}, pop/127.0.0.1@${REALM}]
  rcacheDir: ${join(work, 'rcache')}
  krb5Config: ${opts.krb5Config}
  kdc: { maxConcurrent: 2, timeout: 3s, maxQueue: 10 }
  mapping:
    realms: [${(opts.realms ?? [REALM]).join(', ')}]
    map: { ${opts.extraMap ?? ''} }
`;
}

/** A gateway with a kpop listener and GSSAPI in front of Dovecot; `over` adds or replaces gateway options. */
async function gateway(
  opts: { krb5Config?: string; realms?: string[]; verifiers?: string[]; extraMap?: string } = {},
  over: Partial<TestGatewayOptions> = {},
): Promise<TestGateway> {
  return startTestGateway({
    users: [{ name: 'carol', password: 'carol-file-pw' }],
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    extraListeners: [KPOP_LISTENER],
    mechanisms: ['PLAIN', 'LOGIN', 'GSSAPI'],
    verifiers: opts.verifiers ?? ['userFile', 'kerberos'],
    extra: kerberosYaml({ krb5Config: opts.krb5Config ?? kdc.krb5Config, ...opts }),
    ...over,
  });
}

/** Every ticket/token a test sent: none may ever appear in a log line. */
const sentTokens: Buffer[] = [];

/** A KPOP client by hand: hello, AP-REQ; returns the connection after the version byte. */
async function kpopConnect(port: number, apReq: Buffer): Promise<LineClient> {
  sentTokens.push(apReq);
  const c = await LineClient.plain(port);
  c.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(apReq)]));
  return c;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-krb-'));
  await import('node:fs/promises').then((fs) => fs.mkdir(join(work, 'rcache')));
  kdc = await startKdc({
    realm: REALM,
    principals: [...USERS, { name: 'carol/admin', password: 'carol-admin-pw' }],
    services: ['pop/localhost', 'pop/127.0.0.1', 'imap/localhost'],
  });
  await kdc.keytab(join(work, 'pop.keytab'), [`pop/localhost@${REALM}`, `pop/127.0.0.1@${REALM}`]);
  aliceEnv = { ...kdc.env, KRB5CCNAME: await kdc.kinit('alice', 'alice-realm-pw', join(work, 'cc-alice')) };
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: [
      { name: 'alice', password: 'dovecot-alice' },
      { name: 'bob', password: 'dovecot-bob' },
      { name: 'carol', password: 'dovecot-carol' },
    ],
    masterUser: MASTER,
    messages: { alice: MSGS.alice, bob: MSGS.bob, carol: [] },
  });
  gw = await gateway();
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await dovecot?.stop();
  await kdc?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

describe('KPOP (krb5_sendauth KPOPV1.0) with real fetchmail', () => {
  it('fetches every message byte-exact through popgate from Dovecot', async () => {
    const r = await runFetchmail({
      poll: `poll 127.0.0.1 protocol KPOP auth kerberos_v5 user "alice" there sslproto ''`,
      env: aliceEnv,
      kpopPort: gw.port('kpop'),
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(MSGS.alice.map((m) => sha(lf(m))).sort());
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === 'KPOP');
    expect(rec.principal).toBe(`alice@${REALM}`);
  });

  it('answers pipelined POP3 right behind the AP-REQ (Heimdal push) in order', async () => {
    const ccache = await kdc.kinit('bob', 'bob-realm-pw', join(work, 'cc-bob-push'));
    const token = await gssInitialToken({ ...kdc.env, KRB5CCNAME: ccache }, `pop/localhost@${REALM}`, { mutual: false });
    const c = await LineClient.plain(gw.port('kpop'));
    c.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(apReqFromGssToken(token)), Buffer.from('USER bob\r\nPASS x\r\nSTAT\r\nQUIT\r\n')]));
    // 00 (version ok) + 00 00 00 00 (no mutual auth: no AP-REP), then POP3.
    const head = await c.readUntil(Buffer.from([0, 0, 0, 0, 0]));
    expect(head).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK 1 \d+$/);
    expect(await c.line()).toMatch(/^\+OK Logging out/);
  });
});

describe('AUTH GSSAPI with real clients', () => {
  it('curl --login-options AUTH=GSSAPI over POP3S reads a message byte-exact', async () => {
    const r = await curlPop3({
      url: `pop3s://localhost:${gw.port('pop3s')}/1`, user: '', password: '', caFile: pki.caFile,
      extra: ['--login-options', 'AUTH=GSSAPI'],
      env: aliceEnv,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha(r.body)).toBe(sha(MSGS.alice[0]!));
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === 'GSSAPI');
  });

  it('fetchmail auth gssapi over plaintext POP3 (no password crosses the wire)', async () => {
    const r = await runFetchmail({
      poll: `poll localhost protocol POP3 service ${gw.port('pop3')} auth gssapi user "alice" there sslproto ''`,
      env: aliceEnv,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(MSGS.alice.map((m) => sha(lf(m))).sort());
  });

  it('python3-gssapi: full RFC 4752 exchange with authzid, and a mismatching authzid refused', async () => {
    for (const [authzid, ok] of [['alice', true], ['bob', false]] as const) {
      const gss = GssClient.start(aliceEnv);
      try {
        const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
        expect(await c.line()).toMatch(/^\+OK/);
        const first = await gss.init(`pop/localhost@${REALM}`);
        sentTokens.push(first);
        // RFC 5034: a token that would push AUTH past 255 octets goes in a continuation.
        c.send('AUTH GSSAPI\r\n');
        expect(await c.line()).toBe('+ ');
        c.send(`${first.toString('base64')}\r\n`);
        let line = await c.line();
        let complete = false;
        while (line.startsWith('+ ')) {
          const serverToken = Buffer.from(line.slice(2), 'base64');
          if (!complete) {
            const next = await gss.step(serverToken);
            complete = next.complete;
            c.send(`${next.token.toString('base64')}\r\n`);
          } else {
            // The wrapped security-layer offer: RFC 4752 section 3.1.
            const offer = await gss.unwrap(serverToken);
            expect(offer.data.subarray(0, 4)).toEqual(Buffer.from([0x01, 0, 0, 0])); // "no security layer" only
            const answer = Buffer.concat([Buffer.from([0x01, 0, 0, 0]), Buffer.from(authzid)]);
            c.send(`${(await gss.wrap(answer)).toString('base64')}\r\n`);
          }
          line = await c.line();
        }
        if (ok) {
          expect(line).toMatch(/^\+OK Logged in/);
          c.send('QUIT\r\n');
          expect(await c.line()).toMatch(/^\+OK/);
        } else {
          expect(line).toBe('-ERR [AUTH] Authentication failed');
          const rec = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'failure' && /authorization refused/.test(String(l.reason)));
          expect(rec.mechanism).toBe('GSSAPI');
        }
        c.destroy();
      } finally {
        gss.close();
      }
    }
  });

  it('CAPA advertises SASL GSSAPI before TLS, without PLAIN/LOGIN', async () => {
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('CAPA\r\n');
    const caps = (await c.multiline()).body.toString().split('\r\n');
    expect(caps).toContain('SASL GSSAPI');
    expect(caps).toContain('STLS');
    c.destroy();
  });
});

describe('realm passwords', () => {
  it('USER/PASS over TLS checks the realm after the user file (chain), fail closed for wrong passwords', async () => {
    for (const [user, pw, expected] of [
      ['carol', 'carol-file-pw', /^\+OK Logged in/],
      ['alice', 'alice-realm-pw', /^\+OK Logged in/],
      ['alice', 'wrong', /^-ERR \[AUTH\] /],
    ] as const) {
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send(`USER ${user}\r\nPASS ${pw}\r\n`);
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toMatch(expected);
      c.destroy();
    }
    expect(gw.rawLog()).not.toContain('alice-realm-pw');
  });

});

describe('refusals', () => {
  it('a replayed AP-REQ gets a KRB-ERROR and is closed', async () => {
    const token = await gssInitialToken(aliceEnv, `pop/localhost@${REALM}`);
    const apReq = apReqFromGssToken(token);
    const first = await kpopConnect(gw.port('kpop'), apReq);
    const ok = await first.readUntil(Buffer.from([0, 0, 0, 0, 0]));
    expect(ok.length).toBe(5);
    first.destroy();
    const replay = await kpopConnect(gw.port('kpop'), apReq);
    await replay.closed();
    const bytes = replay.pending();
    expect(bytes[0]).toBe(0); // version accepted
    expect(bytes.readUInt32BE(1)).toBe(bytes.length - 5); // one KRB-ERROR frame
    expect(bytes[5]).toBe(0x7e); // KRB-ERROR
    await waitForLog(gw, (l) => l.mechanism === 'KPOP' && l.code === 'AUTH_FAILED' && l.krbFailure === 'replay');
  });

  it('a ticket for another service (imap/localhost) is refused', async () => {
    const token = await gssInitialToken(aliceEnv, `imap/localhost@${REALM}`);
    const c = await kpopConnect(gw.port('kpop'), apReqFromGssToken(token));
    await c.closed();
    expect(c.pending()[5]).toBe(0x7e);
    await waitForLog(gw, (l) => l.mechanism === 'KPOP' && l.code === 'AUTH_FAILED' && l.krbFailure === 'wrong-principal');
  });

  it('an authenticator from a skewed clock is refused (KRB_AP_ERR_SKEW)', async () => {
    const ccache = await kdc.kinit('alice', 'alice-realm-pw', join(work, 'cc-alice-skew'));
    await kdc.kvno(ccache, `pop/localhost@${REALM}`);
    await setCcacheTimeOffset(ccache, 3600);
    const token = await gssInitialToken({ ...kdc.env, KRB5CCNAME: ccache }, `pop/localhost@${REALM}`);
    const c = await kpopConnect(gw.port('kpop'), apReqFromGssToken(token));
    await c.closed();
    expect(c.pending()[5]).toBe(0x7e);
    await waitForLog(gw, (l) => l.mechanism === 'KPOP' && l.code === 'AUTH_FAILED' && l.krbFailure === 'skew');
  });

  it('USER not matching the ticket principal is refused with [AUTH]', async () => {
    const token = await gssInitialToken(aliceEnv, `pop/localhost@${REALM}`, { mutual: false });
    const c = await kpopConnect(gw.port('kpop'), apReqFromGssToken(token));
    await c.readUntil(Buffer.from([0, 0, 0, 0, 0]));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER bob\r\nPASS krb_ticket\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toBe('-ERR [AUTH] Authentication failed');
    c.destroy();
  });

  it('an instance principal (carol/admin) is not mapped; a foreign realm is refused', async () => {
    const ccache = await kdc.kinit('carol/admin', 'carol-admin-pw', join(work, 'cc-carol-admin'));
    const token = await gssInitialToken({ ...kdc.env, KRB5CCNAME: ccache }, `pop/localhost@${REALM}`, { mutual: false });
    const c = await kpopConnect(gw.port('kpop'), apReqFromGssToken(token));
    await c.readUntil(Buffer.from([0, 0, 0, 0, 0]));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER carol\r\nPASS krb_ticket\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toBe('-ERR [AUTH] Authentication failed');
    await waitForLog(gw, (l) => l.event === 'login' && /instance/.test(String(l.reason)));
    c.destroy();

    const foreign = await gateway({ realms: ['ELSEWHERE.TEST'] });
    try {
      const t2 = await gssInitialToken(aliceEnv, `pop/localhost@${REALM}`, { mutual: false });
      const f = await kpopConnect(foreign.port('kpop'), apReqFromGssToken(t2));
      await f.readUntil(Buffer.from([0, 0, 0, 0, 0]));
      expect(await f.line()).toMatch(/^\+OK/);
      f.send('USER alice\r\nPASS krb_ticket\r\n');
      expect(await f.line()).toBe('+OK');
      expect(await f.line()).toBe('-ERR [AUTH] Authentication failed');
      await waitForLog(foreign, (l) => l.event === 'login' && /foreign-realm/.test(String(l.reason)));
      f.destroy();
    } finally {
      await foreign.stop();
    }
  });

  it('garbage and oversize AP-REQ lengths, and wrong version strings, are refused; the gateway keeps serving', async () => {
    const garbage = await kpopConnect(gw.port('kpop'), Buffer.concat([Buffer.from([0x6e]), Buffer.alloc(40, 0x41)]));
    await garbage.closed();
    expect(garbage.pending()[5]).toBe(0x7e);

    const huge = await LineClient.plain(gw.port('kpop'));
    huge.send(Buffer.concat([kpopClientHello(), Buffer.from([0x7f, 0xff, 0xff, 0xff])]));
    await huge.closed();
    expect(huge.pending()).toEqual(Buffer.from([0]));

    const badApp = await LineClient.plain(gw.port('kpop'));
    badApp.send(kpopClientHello('KPOPV0.1'));
    await badApp.closed();
    expect(badApp.pending()).toEqual(Buffer.from([2]));

    const badSendauth = await LineClient.plain(gw.port('kpop'));
    badSendauth.send(Buffer.from('\0\0\0\x13KRB5_SENDAUTH_V9.9\0'));
    await badSendauth.closed();
    expect(badSendauth.pending()).toEqual(Buffer.from([1]));

    // Still serving: a real client logs in.
    const r = await curlPop3({
      url: `pop3s://localhost:${gw.port('pop3s')}/1`, user: '', password: '', caFile: pki.caFile,
      extra: ['--login-options', 'AUTH=GSSAPI'], env: aliceEnv,
    });
    expect(r.code).toBe(0);
  });
});

describe('ticket logins through an nginx-style auth service', () => {
  it('KPOP and GSSAPI logins ask the service (Auth-Method kpop/gssapi, the principal, no password) for routing and credentials', async () => {
    const svc = await startAuthService(work, 'krb-routing', [
      '--user', 'alice=unused-password',
      '--backend', `alice=127.0.0.1:${dovecot.port}`,
      '--login', 'alice=alice:dovecot-alice',
    ]);
    // The gateway's own backend settings are wrong on purpose: only the service's answer can work.
    const routed = await gateway(
      { verifiers: ['userFile', 'http'] },
      {
        users: [],
        backendPort: await freePort(),
        login: masterLogin({ ...MASTER, password: 'wrong' }),
        authExtra: [`http: { url: ${svc.url}, timeout: 5s }`],
      },
    );
    try {
      const token = await gssInitialToken(aliceEnv, `pop/localhost@${REALM}`, { mutual: false });
      const c = await kpopConnect(routed.port('kpop'), apReqFromGssToken(token));
      await c.readUntil(Buffer.from([0, 0, 0, 0, 0]));
      expect(await c.line()).toMatch(/^\+OK/);
      c.send('USER alice\r\nPASS krb_ticket\r\nSTAT\r\nQUIT\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toMatch(/^\+OK Logged in/);
      expect(await c.line()).toMatch(/^\+OK 2 \d+$/);
      expect(await c.line()).toMatch(/^\+OK/);
      const r = await curlPop3({
        url: `pop3s://localhost:${routed.port('pop3s')}/1`, user: '', password: '', caFile: pki.caFile,
        extra: ['--login-options', 'AUTH=GSSAPI'], env: aliceEnv,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(sha(r.body)).toBe(sha(MSGS.alice[0]!));
      const asked = (await svc.log()).map((q) => q.headers);
      expect(asked.map((h) => h['Auth-Method']).sort()).toEqual(['gssapi', 'kpop']);
      for (const h of asked) {
        expect(h['Auth-User']).toBe('alice');
        expect(h['Auth-Principal']).toBe(`alice@${REALM}`);
      }
    } finally {
      await routed.stop();
      await svc.stop();
    }
  });
});

describe('AUTH GSSAPI failures and the login throttle', () => {
  it('counts refused GSSAPI tokens (forged, replayed) per address: the next password login from there is throttled', async () => {
    const t = await gateway({}, { throttle: '{ delays: [20ms], maxFailures: 2, lockout: 1m }' });
    try {
      const valid = await gssInitialToken(aliceEnv, `pop/localhost@${REALM}`, { mutual: true });
      sentTokens.push(valid);
      // 1: a forged token; 2: a replayed one (its first use succeeds the accept step).
      const steps: Array<{ token: Buffer; expect: RegExp }> = [
        { token: Buffer.from('not a GSS token at all'), expect: /^-ERR \[AUTH\] / },
        { token: valid, expect: /^\+ / },
        { token: valid, expect: /^-ERR \[AUTH\] / },
      ];
      for (const step of steps) {
        const c = await LineClient.plain(t.port('pop3'));
        expect(await c.line()).toMatch(/^\+OK/);
        c.send('AUTH GSSAPI\r\n');
        expect(await c.line()).toBe('+ ');
        c.send(`${step.token.toString('base64')}\r\n`);
        expect(await c.line()).toMatch(step.expect);
        c.destroy();
      }
      const locked = await waitForLog(t, (l) => l.event === 'login-throttle' && Array.isArray(l.locked));
      expect(locked.locked).toContain('ip:127.0.0.1');
      // carol's right password, from the same address: refused before it is checked.
      const c = await LineClient.tls(t.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send('USER carol\r\nPASS carol-file-pw\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [LOGIN-DELAY] Too many failed logins, try again later');
      c.destroy();
    } finally {
      await t.stop();
    }
  });
});

describe('secrets', () => {
  it('no password, ticket or GSSAPI token appears in any log line (trace level)', () => {
    const raw = gw.rawLog();
    expect(raw).toContain('client command'); // trace lines were written
    expect(sentTokens.length).toBeGreaterThan(3);
    for (const t of sentTokens) {
      expect(raw).not.toContain(t.toString('base64').slice(0, 40));
      expect(raw).not.toContain(t.toString('hex').slice(0, 40));
    }
    for (const pw of ['alice-realm-pw', 'bob-realm-pw', 'carol-file-pw', MASTER.password]) expect(raw).not.toContain(pw);
  });
});

// Last: it stops the KDC for good.
describe('a dead KDC', () => {
  it('gives -ERR [SYS/TEMP] for realm passwords, and ticket logins keep working', async () => {
    await kdc.stop();
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    // bob: alice's realm password was checked earlier and is still in auth.cache, which needs no KDC.
    c.send('USER bob\r\nPASS bob-realm-pw\r\n');
    expect(await c.line()).toBe('+OK');
    const reply = await c.line(20_000);
    c.destroy();
    expect(reply, JSON.stringify(gw.logs.filter((l) => l.event === 'login').slice(-3))).toMatch(/^-ERR \[SYS\/TEMP\] /);
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.code === 'VERIFIER_UNAVAILABLE');
    // Which MIT error a vanished KDC produces depends on timing (refused UDP, reset TCP): all are ours, not the user's.
    expect(String(rec.reason)).toMatch(/^kerberos: /);
    // Ticket logins need no KDC (the service ticket is in the client's cache).
    const r = await curlPop3({
      url: `pop3s://localhost:${gw.port('pop3s')}/1`, user: '', password: '', caFile: pki.caFile,
      extra: ['--login-options', 'AUTH=GSSAPI'], env: aliceEnv,
    });
    expect(r.code, r.stderr).toBe(0);
  });
});
