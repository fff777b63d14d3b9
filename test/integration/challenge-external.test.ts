/**
 * Logins that carry no password, end to end through popgate to a real
 * Dovecot, with real clients:
 *
 * - SASL EXTERNAL with a TLS client certificate (curl, mpop, scripted
 *   sessions): a certificate from the listener's client CA naming
 *   alice@example.test logs in as alice (popgate then logs in to Dovecot with
 *   its master user); one from another CA is refused with [AUTH] on an
 *   `optional` listener and fails the handshake on a `required` one.
 * - APOP and CRAM-MD5 (fetchmail, mpop) through both verifiers that can
 *   answer challenges: a user file with {PLAIN} entries, and the nginx-style
 *   auth service (test/fixtures/nginx-auth/auth.py), whose Auth-Pass (the
 *   plaintext secret) popgate checks the digest against and then uses, with
 *   the answer's Auth-Server/Auth-Port, as the backend login.
 * - Neither is offered when the only verifier cannot answer challenges.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apopDigest, cramMd5Digest } from '../../src/auth/challenge.js';
import { hashPassword } from '../../src/auth/index.js';
import { issueCert, makeTempTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { curlPop3 } from '../helpers/clients.js';
import { pop3Wire, startDovecot, TWO_USER_MAIL, type DovecotInstance } from '../helpers/dovecot.js';
import { runFetchmail } from '../helpers/fetchmail.js';
import { lfShas, runMpop as runMpopIn, sha256Hex } from '../helpers/mpop.js';
import { masterLogin, startTestGateway, waitForLog, type LogRecord, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { startAuthService, type AuthService } from '../helpers/nginx-auth.js';
import { freePort } from '../helpers/ports.js';

const MASTER = { name: 'popgate', password: `master-${randomBytes(9).toString('hex')}` };
// The client-side secrets, and (for the auth-service tests, which log in with
// Auth-User/Auth-Pass) the users' Dovecot passwords too.
const ALICE_SECRET = 'Alice-chall3nge-secret';
const BOB_SECRET = 'Bob-chall3nge-secret';
const MSGS = TWO_USER_MAIL;
const sha = sha256Hex;
/** A RETR body as LineClient.multiline() returns it (still dot-stuffed, no final ".") -> the message bytes. */
const unstuff = (body: Buffer): Buffer =>
  Buffer.from(
    body
      .toString('latin1')
      .split('\r\n')
      .map((l) => (l.startsWith('.') ? l.slice(1) : l))
      .join('\r\n'),
    'latin1',
  );
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

let work: string;
let serverPki: TestPki;
let clientPki: TestPki;
let otherPki: TestPki;
let aliceCert: TestCert;
let rogueCert: TestCert;
let dovecot: DovecotInstance;
const gateways: TestGateway[] = [];
const services: AuthService[] = [];

/** A listener's port by name (the helper's port() finds the first of a kind). */
function portOf(gw: TestGateway, name: string): number {
  const l = gw.gateway.bound.find((b) => b.name === name);
  if (!l) throw new Error(`no listener ${name}`);
  return l.port;
}

/** A gateway in front of Dovecot with the server certificate and popgate's master login; `opts` adds or replaces. */
async function gateway(opts: Partial<TestGatewayOptions> & Pick<TestGatewayOptions, 'users'>): Promise<TestGateway> {
  const gw = await startTestGateway({
    backendPort: dovecot.port,
    certFile: serverPki.certFile,
    keyFile: serverPki.keyFile,
    login: masterLogin(MASTER),
    ...opts,
  });
  gateways.push(gw);
  return gw;
}

/** A gateway offering APOP and CRAM-MD5 (and plaintext logins), as the challenge tests want it. */
function challengeGateway(opts: Partial<TestGatewayOptions> & Pick<TestGatewayOptions, 'users'>): Promise<TestGateway> {
  return gateway({ allowPlaintextAuth: true, mechanisms: ['PLAIN', 'LOGIN', 'CRAM-MD5'], authExtra: ['apop: true'], ...opts });
}

/** Waits for the first successful login with `mechanism`. */
function successLogin(gw: TestGateway, mechanism: string): Promise<LogRecord> {
  return waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === mechanism);
}

function successLogins(gw: TestGateway, mechanism: string): LogRecord[] {
  return gw.logs.filter((l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === mechanism);
}

/** TLS options for LineClient: trust the server CA, present `cert` (if any). */
function tlsWith(cert?: TestCert): { ca: Buffer; servername: string; cert?: Buffer; key?: Buffer } {
  return {
    ca: readFileSync(serverPki.caFile),
    servername: 'localhost',
    ...(cert ? { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) } : {}),
  };
}

/** CAPA's lines (without +OK and "."). */
async function capa(c: LineClient): Promise<string[]> {
  const r = await c.cmdMultiline('CAPA');
  expect(r.status).toMatch(/^\+OK/);
  return r.body.toString('latin1').split('\r\n').filter((l) => l !== '');
}

/** mpop in this file's work directory. */
const runMpop = (args: string[]): ReturnType<typeof runMpopIn> => runMpopIn(work, args);

/** One fetchmail poll (no environment): APOP, or AUTH CRAM-MD5 over POP3; plaintext, or POP3S checking the certificate. */
function fetchmail(
  login: 'APOP' | 'CRAM-MD5',
  port: number,
  user: string,
  password: string,
  opts: { tls?: boolean } = {},
): ReturnType<typeof runFetchmail> {
  const protocol = login === 'APOP' ? 'protocol APOP' : 'protocol POP3';
  const auth = login === 'CRAM-MD5' ? ' auth cram-md5' : '';
  const tls = opts.tls ? `ssl sslcertck sslcertfile "${serverPki.caFile}"` : "sslproto ''";
  return runFetchmail({ poll: `poll localhost ${protocol} service ${port}${auth} user "${user}" there password "${password}" ${tls}`, env: {} });
}

/** mpop with AUTH CRAM-MD5 as alice: STLS on the plaintext listener, or POP3S. */
function mpopCramMd5(gw: TestGateway, via: 'stls' | 'pop3s'): ReturnType<typeof runMpop> {
  return runMpop([
    '--host=localhost',
    `--port=${gw.port(via === 'stls' ? 'pop3' : 'pop3s')}`,
    '--tls=on',
    `--tls-starttls=${via === 'stls' ? 'on' : 'off'}`,
    `--tls-trust-file=${serverPki.caFile}`,
    '--auth=cram-md5',
    '--user=alice',
    `--passwordeval=echo ${ALICE_SECRET}`,
  ]);
}

/** The greeting and CAPA's lines on a fresh connection to the plaintext listener. */
async function greetingAndCapa(gw: TestGateway): Promise<{ greeting: string; caps: string[] }> {
  const c = await LineClient.plain(gw.port('pop3'));
  try {
    const greeting = await c.line();
    return { greeting, caps: await capa(c) };
  } finally {
    c.destroy();
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-challenge-'));
  serverPki = await makeTempTestPki('popgate-pki-server-');
  clientPki = await makeTempTestPki('popgate-pki-client-');
  otherPki = await makeTempTestPki('popgate-pki-other-');
  aliceCert = await issueCert(clientPki, { name: 'alice-client', cn: 'Alice Example', emails: ['alice@example.test'], eku: 'clientAuth' });
  // The same name, but from a CA the listener does not trust.
  rogueCert = await issueCert(otherPki, { name: 'alice-rogue', cn: 'Alice Example', emails: ['alice@example.test'], eku: 'clientAuth' });
  dovecot = await startDovecot({
    users: [
      { name: 'alice', password: ALICE_SECRET },
      { name: 'bob', password: BOB_SECRET },
    ],
    masterUser: MASTER,
    messages: MSGS,
  });
}, 120_000);

afterAll(async () => {
  for (const gw of gateways) await gw.stop().catch(() => undefined);
  for (const s of services) await s.stop();
  await dovecot?.stop();
  for (const p of [serverPki, clientPki, otherPki]) if (p) await rm(p.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------

describe('SASL EXTERNAL with TLS client certificates', () => {
  let gw: TestGateway;
  const tlsBlock = (mode: string): string =>
    `tls: { certFile: ${serverPki.certFile}, keyFile: ${serverPki.keyFile}, ` +
    `clientCertificates: { mode: ${mode}, caFile: ${clientPki.caFile}, identity: san-email, stripDomain: true } }`;

  beforeAll(async () => {
    gw = await gateway({
      // alice also has an ordinary password, for a client without a certificate.
      users: [{ name: 'alice', password: 'alice-front-pw' }],
      mechanisms: ['PLAIN', 'LOGIN', 'EXTERNAL'],
      extraListeners: [
        `{ name: ext-optional, kind: pop3s, address: 127.0.0.1, port: 0, ${tlsBlock('optional')} }`,
        `{ name: ext-required, kind: pop3s, address: 127.0.0.1, port: 0, ${tlsBlock('required')} }`,
        `{ name: ext-stls, kind: pop3, address: 127.0.0.1, port: 0, ${tlsBlock('optional')} }`,
      ],
    });
  });

  it('curl --cert --login-options AUTH=EXTERNAL logs in as alice and RETRs byte-exact (master login to Dovecot)', async () => {
    for (const [i, msg] of MSGS.alice.entries()) {
      const r = await curlPop3({
        url: `pop3s://localhost:${portOf(gw, 'ext-optional')}/${i + 1}`,
        user: 'alice',
        password: '',
        caFile: serverPki.caFile,
        extra: ['--cert', aliceCert.certFile, '--key', aliceCert.keyFile, '--login-options', 'AUTH=EXTERNAL'],
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(sha(r.body)).toBe(sha(pop3Wire(msg)));
    }
    const rec = await successLogin(gw, 'EXTERNAL');
    expect(rec.user).toBe('alice');
    expect(rec.listener).toBe('ext-optional');
    // Dovecot saw popgate's master login for alice (AUTH PLAIN with authzid alice).
    expect(await dovecot.readLog()).toMatch(/Login: user=<alice>, method=PLAIN/);
    expect(gw.rawLog()).not.toContain(MASTER.password);
  });

  it('curl with an empty user name (AUTH EXTERNAL =) logs in as the certificate names', async () => {
    const r = await curlPop3({
      url: `pop3s://localhost:${portOf(gw, 'ext-optional')}/1`,
      user: '',
      password: '',
      caFile: serverPki.caFile,
      extra: ['--cert', aliceCert.certFile, '--key', aliceCert.keyFile, '--login-options', 'AUTH=EXTERNAL'],
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha(r.body)).toBe(sha(pop3Wire(MSGS.alice[0]!)));
  });

  it('mpop --auth=external with the client certificate fetches every message byte-exact', async () => {
    const before = successLogins(gw, 'EXTERNAL').length;
    const r = await runMpop([
      '--host=localhost',
      `--port=${portOf(gw, 'ext-optional')}`,
      '--tls=on',
      '--tls-starttls=off',
      `--tls-trust-file=${serverPki.caFile}`,
      `--tls-cert-file=${aliceCert.certFile}`,
      `--tls-key-file=${aliceCert.keyFile}`,
      '--auth=external',
      '--user=alice',
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.alice));
    await waitForLog(gw, () => successLogins(gw, 'EXTERNAL').length > before);
  });

  it('CAPA over TLS with a verified certificate lists EXTERNAL; an authzid naming another user is refused with [AUTH]', async () => {
    const c = await LineClient.connect({ port: portOf(gw, 'ext-optional'), tls: tlsWith(aliceCert) });
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      expect(await capa(c)).toContain('SASL PLAIN LOGIN EXTERNAL');
      expect(await c.cmd(`AUTH EXTERNAL ${b64('bob')}`)).toBe('-ERR [AUTH] Authentication failed');
      const refused = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'failure' && l.mechanism === 'EXTERNAL');
      expect(refused.code).toBe('AUTH_FAILED');
      expect(String(refused.reason)).toMatch(/certificate names alice, not "bob"/);
      // Still usable: the certificate's own identity (empty authzid, via the continuation) logs in.
      expect(await c.cmd('AUTH EXTERNAL')).toBe('+ ');
      expect(await c.cmd('=')).toMatch(/^\+OK/);
      const retr = await c.cmdMultiline('RETR 2');
      expect(retr.status).toMatch(/^\+OK/);
      expect(sha(unstuff(retr.body))).toBe(sha(pop3Wire(MSGS.alice[1]!)));
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      c.destroy();
    }
  });

  it('after STLS too: curl --ssl-reqd AUTH=EXTERNAL RETRs byte-exact; EXTERNAL offered only once TLS is up', async () => {
    const r = await curlPop3({
      url: `pop3://localhost:${portOf(gw, 'ext-stls')}/2`,
      user: 'alice',
      password: '',
      caFile: serverPki.caFile,
      sslReqd: true,
      extra: ['--cert', aliceCert.certFile, '--key', aliceCert.keyFile, '--login-options', 'AUTH=EXTERNAL'],
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha(r.body)).toBe(sha(pop3Wire(MSGS.alice[1]!)));
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === 'EXTERNAL' && l.listener === 'ext-stls');

    const c = await LineClient.plain(portOf(gw, 'ext-stls'));
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      expect((await capa(c)).join('\n')).not.toContain('EXTERNAL');
      expect(await c.cmd('AUTH EXTERNAL =')).toBe('-ERR [AUTH] No verified TLS client certificate');
      expect(await c.cmd('STLS')).toMatch(/^\+OK/);
      await c.startTls(tlsWith(aliceCert));
      expect(await capa(c)).toContain('SASL PLAIN LOGIN EXTERNAL');
      expect(await c.cmd('AUTH EXTERNAL =')).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      c.destroy();
    }
  });

  it('a certificate from another CA: the optional handshake succeeds, EXTERNAL is refused and not offered', async () => {
    const c = await LineClient.connect({ port: portOf(gw, 'ext-optional'), tls: tlsWith(rogueCert) });
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      const caps = await capa(c);
      expect(caps).toContain('SASL PLAIN LOGIN');
      expect(caps.join('\n')).not.toContain('EXTERNAL');
      expect(await c.cmd('AUTH EXTERNAL =')).toBe('-ERR [AUTH] No verified TLS client certificate');
      expect(await c.cmd(`AUTH EXTERNAL ${b64('alice')}`)).toBe('-ERR [AUTH] No verified TLS client certificate');
      // The connection is still good for a password login.
      expect(await c.cmd(`AUTH PLAIN ${b64('\0alice\0alice-front-pw')}`)).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      c.destroy();
    }
    const seen = gw.logs.find((l) => l.msg === 'client certificate' && typeof l.certVerify === 'string' && l.certVerify.startsWith('FAILED:'));
    expect(seen, gw.rawLog()).toBeDefined();
    expect(seen!.certUser).toBeUndefined();
  });

  it('no certificate at all on the optional listener: EXTERNAL refused the same way', async () => {
    const c = await LineClient.connect({ port: portOf(gw, 'ext-optional'), tls: tlsWith() });
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      expect((await capa(c)).join('\n')).not.toContain('EXTERNAL');
      expect(await c.cmd('AUTH EXTERNAL =')).toBe('-ERR [AUTH] No verified TLS client certificate');
    } finally {
      c.destroy();
    }
  });

  it('EXTERNAL on a listener that asks for no certificate: refused, even with a certificate', async () => {
    const c = await LineClient.connect({ port: gw.port('pop3s'), tls: tlsWith(aliceCert) });
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      expect((await capa(c)).join('\n')).not.toContain('EXTERNAL');
      expect(await c.cmd('AUTH EXTERNAL =')).toBe('-ERR [AUTH] No verified TLS client certificate');
    } finally {
      c.destroy();
    }
  });

  it('a required listener refuses the handshake without a certificate (and with a foreign one), accepts alice\'s', async () => {
    for (const cert of [undefined, rogueCert]) {
      // With TLS 1.3 the client may finish its side before the server's
      // verdict: either the connect or the first read fails; no greeting ever.
      const outcome = await LineClient.connect({ port: portOf(gw, 'ext-required'), tls: tlsWith(cert) }).then(
        async (c) => {
          try {
            return `greeting: ${await c.line(5_000)}`;
          } catch (e) {
            return `refused: ${(e as Error).message}`;
          } finally {
            c.destroy();
          }
        },
        (e: unknown) => `refused: ${(e as Error).message}`,
      );
      expect(`${cert ? 'foreign certificate' : 'no certificate'}: ${outcome}`).toMatch(/^[a-z ]+: refused: /);
    }
    const noCert = await curlPop3({
      url: `pop3s://localhost:${portOf(gw, 'ext-required')}/1`,
      user: 'alice',
      password: 'alice-front-pw',
      caFile: serverPki.caFile,
    });
    expect(noCert.code).not.toBe(0);
    expect(noCert.body.length).toBe(0);
    const ok = await curlPop3({
      url: `pop3s://localhost:${portOf(gw, 'ext-required')}/1`,
      user: 'alice',
      password: '',
      caFile: serverPki.caFile,
      extra: ['--cert', aliceCert.certFile, '--key', aliceCert.keyFile, '--login-options', 'AUTH=EXTERNAL'],
    });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(sha(ok.body)).toBe(sha(pop3Wire(MSGS.alice[0]!)));
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === 'EXTERNAL' && l.listener === 'ext-required');
  });
});

// ---------------------------------------------------------------------------

describe('APOP and CRAM-MD5 through a user file with {PLAIN} entries', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await challengeGateway({
      users: [],
      // Overwrites the helper's hashed file: plaintext-equivalent entries, plus a hashed one.
      files: {
        users: [
          `alice:{PLAIN}${ALICE_SECRET}`,
          `bob:{PLAIN.B64}${Buffer.from(BOB_SECRET).toString('base64')}`,
          `carol:${await hashPassword('carol-front-pw', { scryptLogN: 10 })}`,
          '',
        ].join('\n'),
      },
    });
  });

  it('offers both: a timestamp in the greeting, CRAM-MD5 in CAPA', async () => {
    const { greeting, caps } = await greetingAndCapa(gw);
    expect(greeting).toMatch(/^\+OK .*<[^<>@\s]+@[^<>\s]+>$/);
    expect(caps).toContain('SASL PLAIN LOGIN CRAM-MD5');
  });

  it('fetchmail protocol APOP over POP3S (sslcertck) fetches every message byte-exact', async () => {
    const r = await fetchmail('APOP', gw.port('pop3s'), 'alice', ALICE_SECRET, { tls: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/APOP alice [0-9a-f]{32}/);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.alice));
    const rec = await successLogin(gw, 'APOP');
    expect(rec.user).toBe('alice');
  });

  it('fetchmail auth cram-md5 over plaintext POP3 (allowPlaintextAuth) fetches byte-exact', async () => {
    const r = await fetchmail('CRAM-MD5', gw.port('pop3'), 'bob', BOB_SECRET);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/AUTH CRAM-MD5/);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.bob));
    const rec = await successLogin(gw, 'CRAM-MD5');
    expect(rec.user).toBe('bob');
  });

  it('mpop --auth=cram-md5 over STLS fetches byte-exact', async () => {
    const before = successLogins(gw, 'CRAM-MD5').length;
    const r = await mpopCramMd5(gw, 'stls');
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.alice));
    await waitForLog(gw, () => successLogins(gw, 'CRAM-MD5').length > before);
  });

  it('wrong secrets, unknown users and hashed entries are refused with [AUTH]', async () => {
    const c = await LineClient.plain(gw.port('pop3'));
    try {
      const greeting = await c.line();
      const ts = /(<[^<>]+>)$/.exec(greeting)![1]!;
      expect(await c.cmd(`APOP alice ${apopDigest(ts, 'wrong-secret')}`)).toBe('-ERR [AUTH] Authentication failed');
      expect(await c.cmd('AUTH CRAM-MD5')).toMatch(/^\+ /);
      expect(await c.cmd(b64(`carol ${cramMd5Digest('<x@y>', 'anything')}`))).toBe('-ERR [AUTH] Authentication failed');
    } finally {
      c.destroy();
    }
    // fetchmail with a wrong password: the server's [AUTH] refusal, exit 3 (authentication failed).
    const r = await fetchmail('APOP', gw.port('pop3'), 'alice', `not-${ALICE_SECRET}`);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.stdout + r.stderr).toContain('-ERR [AUTH] Authentication failed');
    expect(r.messages).toEqual([]);
    const reasons = gw.logs.filter((l) => l.event === 'login' && l.outcome === 'failure').map((l) => `${String(l.mechanism)}:${String(l.reason)}`);
    expect(reasons).toEqual(expect.arrayContaining(['APOP:bad-password', 'CRAM-MD5:disabled']));
    expect(gw.rawLog()).not.toContain(ALICE_SECRET);
  });
});

// ---------------------------------------------------------------------------

describe('APOP and CRAM-MD5 through the nginx-style auth service (http verifier)', () => {
  let gw: TestGateway;
  let svc: AuthService;
  beforeAll(async () => {
    svc = await startAuthService(work, 'http', [
      '--user', `alice=${ALICE_SECRET}`,
      '--user', `bob=${BOB_SECRET}`,
      // Per-user backends: the gateway's own default backend below is dead.
      '--backend', `alice=127.0.0.1:${dovecot.port}`,
      '--backend', `bob=127.0.0.1:${dovecot.port}`,
      '--fail-wait', '0',
    ]);
    services.push(svc);
    gw = await challengeGateway({
      users: [],
      backendPort: await freePort(),
      // A master password Dovecot refuses: a login can only work with the service's Auth-User/Auth-Pass.
      login: masterLogin({ ...MASTER, password: 'not-the-master-password' }),
      verifiers: ['http'],
      authExtra: ['apop: true', `http: { url: "${svc.url}", proxy: none, timeout: 5s }`],
    });
  });

  it('offers both (the service can answer challenges)', async () => {
    const { greeting, caps } = await greetingAndCapa(gw);
    expect(greeting).toMatch(/^\+OK .*<[^<>@\s]+@[^<>\s]+>$/);
    expect(caps).toContain('SASL PLAIN LOGIN CRAM-MD5');
  });

  it('fetchmail protocol APOP: digest checked, Auth-Pass used as the Dovecot password, byte-exact', async () => {
    const r = await fetchmail('APOP', gw.port('pop3s'), 'alice', ALICE_SECRET, { tls: true });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.alice));
    const rec = await successLogin(gw, 'APOP');
    expect(rec.user).toBe('alice');
    expect(rec.backend).toBe(`127.0.0.1:${dovecot.port}`);
    const q = (await svc.log()).map((r) => r.headers).filter((h) => h['Auth-Method'] === 'apop').at(-1)!;
    expect(q['Auth-User']).toBe('alice');
    expect(q['Auth-Salt']).toMatch(/^<[^<>]+@[^<>]+>$/);
    expect(q['Auth-SSL']).toBe('on');
    expect(gw.rawLog()).not.toContain(ALICE_SECRET);
  });

  it('fetchmail auth cram-md5 over plaintext POP3: byte-exact', async () => {
    const r = await fetchmail('CRAM-MD5', gw.port('pop3'), 'bob', BOB_SECRET);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.bob));
    const rec = await successLogin(gw, 'CRAM-MD5');
    expect(rec.user).toBe('bob');
    const q = (await svc.log()).map((r) => r.headers).filter((h) => h['Auth-Method'] === 'cram-md5').at(-1)!;
    expect(q['Auth-User']).toBe('bob');
  });

  it('mpop --auth=cram-md5 over POP3S: byte-exact', async () => {
    const before = successLogins(gw, 'CRAM-MD5').length;
    const r = await mpopCramMd5(gw, 'pop3s');
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map(sha).sort()).toEqual(lfShas(MSGS.alice));
    await waitForLog(gw, () => successLogins(gw, 'CRAM-MD5').length > before);
  });

  it('a wrong secret on the client side is refused with [AUTH] (the service\'s text), APOP and CRAM-MD5', async () => {
    const apopClient = await LineClient.plain(gw.port('pop3'));
    try {
      const ts = /(<[^<>]+>)$/.exec(await apopClient.line())![1]!;
      expect(await apopClient.cmd(`APOP alice ${apopDigest(ts, 'wrong-secret')}`)).toBe('-ERR [AUTH] Invalid login or password');
      // Not retryable (no Auth-Wait): closed, as nginx does.
      await apopClient.closed();
    } finally {
      apopClient.destroy();
    }
    const cram = await LineClient.plain(gw.port('pop3'));
    try {
      await cram.line();
      const ch = Buffer.from((await cram.cmd('AUTH CRAM-MD5')).slice(2), 'base64').toString('latin1');
      expect(await cram.cmd(b64(`bob ${cramMd5Digest(ch, 'wrong-secret')}`))).toBe('-ERR [AUTH] Invalid login or password');
    } finally {
      cram.destroy();
    }
    const r = await fetchmail('CRAM-MD5', gw.port('pop3'), 'bob', `not-${BOB_SECRET}`);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.stdout + r.stderr).toContain('-ERR [AUTH] Invalid login or password');
    expect(r.messages).toEqual([]);
  });
});

// ---------------------------------------------------------------------------

describe('APOP and CRAM-MD5 are not offered when no verifier can answer challenges', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await challengeGateway({
      // Hashed entries only.
      users: [
        { name: 'alice', password: 'alice-front-pw' },
        { name: 'bob', password: 'bob-front-pw' },
      ],
    });
  });

  it('no timestamp in the greeting, no CRAM-MD5 in CAPA, both commands refused (plaintext and TLS)', async () => {
    for (const connect of [() => LineClient.plain(gw.port('pop3')), () => LineClient.tls(gw.port('pop3s'), serverPki.caFile)]) {
      const c = await connect();
      try {
        const greeting = await c.line();
        expect(greeting).toMatch(/^\+OK/);
        expect(greeting).not.toMatch(/[<>]/);
        const caps = await capa(c);
        expect(caps).toContain('SASL PLAIN LOGIN');
        expect(caps.join('\n')).not.toContain('CRAM-MD5');
        expect(await c.cmd(`APOP alice ${'0'.repeat(32)}`)).toBe('-ERR Unknown command');
        expect(await c.cmd('AUTH CRAM-MD5')).toBe('-ERR Unsupported authentication mechanism');
        const list = await c.cmdMultiline('AUTH');
        expect(list.body.toString('latin1')).not.toContain('CRAM-MD5');
        // Password logins still work.
        expect(await c.cmd(`AUTH PLAIN ${b64('\0alice\0alice-front-pw')}`)).toMatch(/^\+OK/);
        expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      } finally {
        c.destroy();
      }
    }
  });

  it('fetchmail protocol APOP finds no timestamp and does not log in', async () => {
    const r = await fetchmail('APOP', gw.port('pop3'), 'alice', 'alice-front-pw');
    expect(r.code).not.toBe(0);
    expect(r.messages).toEqual([]);
    expect(successLogins(gw, 'APOP')).toEqual([]);
  });

  it('a {PLAIN} entry added to the user file (reload) turns them on for new connections', async () => {
    await writeFile(join(gw.dir, 'users'), `alice:{PLAIN}${ALICE_SECRET}\n`);
    await gw.gateway.reload();
    const c = await LineClient.plain(gw.port('pop3'));
    try {
      const greeting = await c.line();
      const ts = /(<[^<>]+>)$/.exec(greeting)?.[1];
      expect(ts, greeting).toBeDefined();
      expect(await capa(c)).toContain('SASL PLAIN LOGIN CRAM-MD5');
      expect(await c.cmd(`APOP alice ${apopDigest(ts!, ALICE_SECRET)}`)).toMatch(/^\+OK/);
      const retr = await c.cmdMultiline('RETR 1');
      expect(sha(unstuff(retr.body))).toBe(sha(pop3Wire(MSGS.alice[0]!)));
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      c.destroy();
    }
  });
});
