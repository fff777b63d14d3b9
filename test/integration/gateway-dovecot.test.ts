/**
 * popgate in front of a real Dovecot, driven by real clients: Python poplib,
 * curl and openssl s_client, plus scripted sessions for what real clients
 * will not do (pipelining bursts, STLS injection, dropping mid-session).
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { curlPop3, opensslStarttls, poplibFetch, poplibOverTls } from '../helpers/clients.js';
import { fiveMegabyteMessage, pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const MASTER = { name: 'popgate', password: `master-${randomBytes(9).toString('hex')}` };
// Client-facing passwords (checked by popgate) differ from Dovecot's own.
const CLIENTS = [
  { name: 'alice', password: 'Alice-front-pw' },
  { name: 'carol', password: 'Carol-front-pw' },
  { name: 'dave', password: 'Dave-front-pw' },
  { name: 'erin', password: 'Erin pw with spaces' },
];
const BACKEND_USERS = CLIENTS.map((c) => ({ name: c.name, password: `backend-${c.name}-${randomBytes(6).toString('hex')}` }));

const MESSAGES = {
  big: fiveMegabyteMessage('alice@example.test'),
  dots: Buffer.from(
    'From: dots@example.test\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\n...\r\nend\r\n',
  ),
  small: Buffer.from('From: small@example.test\r\nSubject: small\r\n\r\nhello\r\n'),
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let pki: TestPki;
let dovecot: DovecotInstance;
let gw: TestGateway;

beforeAll(async () => {
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: BACKEND_USERS,
    masterUser: MASTER,
    messages: {
      alice: [MESSAGES.big, MESSAGES.dots, MESSAGES.small],
      carol: [MESSAGES.small, MESSAGES.dots],
      dave: [MESSAGES.small, MESSAGES.dots],
      erin: [MESSAGES.small],
    },
  });
  gw = await gateway();
});

/** A gateway for CLIENTS in front of Dovecot with popgate's master login; `opts` adds or replaces. */
function gateway(opts: Partial<TestGatewayOptions> = {}): Promise<TestGateway> {
  return startTestGateway({
    users: CLIENTS,
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    ...opts,
  });
}

afterAll(async () => {
  await gw?.stop();
  await dovecot?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

describe('real clients through popgate to Dovecot', () => {
  it('poplib over POP3S (USER/PASS) reads every message byte-exact', async () => {
    const { result: r } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'alice', password: 'Alice-front-pw', retrieve: 'all' });
    expect(r.error).toBeNull();
    expect(r.stat?.[0]).toBe(3);
    expect(r.messages.map((m) => m.sha256)).toEqual([MESSAGES.big, MESSAGES.dots, MESSAGES.small].map((m) => sha(pop3Wire(m))));
  });

  it('poplib with STLS and AUTH PLAIN reads every message byte-exact', async () => {
    const { result: r } = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3'), mode: 'stls', caFile: pki.caFile, capa: true,
      user: 'alice', password: 'Alice-front-pw', authPlain: true, retrieve: 'all',
    });
    expect(r.error).toBeNull();
    expect(r.capa).toHaveProperty('SASL');
    expect(r.messages.map((m) => m.sha256)).toEqual([MESSAGES.big, MESSAGES.dots, MESSAGES.small].map((m) => sha(pop3Wire(m))));
  });

  it('a password with spaces works through USER/PASS', async () => {
    const { result: r } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'erin', password: 'Erin pw with spaces', retrieve: [1] });
    expect(r.error).toBeNull();
    expect(r.messages[0]?.sha256).toBe(sha(pop3Wire(MESSAGES.small)));
  });

  it('curl pop3s:// and pop3:// --ssl-reqd fetch byte-exact', async () => {
    const viaPop3s = await curlPop3({ url: `pop3s://localhost:${gw.port('pop3s')}/1`, user: 'alice', password: 'Alice-front-pw', caFile: pki.caFile });
    expect(viaPop3s.code).toBe(0);
    expect(sha(viaPop3s.body)).toBe(sha(pop3Wire(MESSAGES.big)));
    const viaStls = await curlPop3({
      url: `pop3://localhost:${gw.port('pop3')}/2`, user: 'alice', password: 'Alice-front-pw', caFile: pki.caFile, sslReqd: true,
    });
    expect(viaStls.code).toBe(0);
    // curl un-stuffs the dot lines like any POP3 client.
    expect(viaStls.body.toString()).toBe(pop3Wire(MESSAGES.dots).toString());
  });

  it('openssl s_client -starttls pop3 logs in and lists', async () => {
    const r = await opensslStarttls({
      host: '127.0.0.1', port: gw.port('pop3'), caFile: pki.caFile, verifyHostname: 'localhost',
      input: 'CAPA\r\nUSER alice\r\nPASS Alice-front-pw\r\nSTAT\r\nQUIT\r\n',
    });
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/\+OK Capability list follows\r\n[\s\S]*USER\r\n[\s\S]*SASL PLAIN LOGIN\r\n/);
    expect(out).not.toMatch(/^STLS\r$/m); // not offered again inside TLS
    expect(out).toMatch(/\+OK 3 \d+\r\n/);
    expect(out).toMatch(/\+OK Logging out/);
  });
});

describe('deletion only on a completed QUIT', () => {
  it('DELE then QUIT deletes the message from the maildir', async () => {
    expect(await dovecot.listMessages('carol')).toHaveLength(2);
    const { result: r } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'carol', password: 'Carol-front-pw', dele: [1] });
    expect(r.error).toBeNull();
    expect(r.quit).toMatch(/^\+OK/);
    const left = await dovecot.listMessages('carol');
    expect(left.map(sha)).toEqual([sha(MESSAGES.dots)]);
  });

  it('DELE then a dropped connection deletes nothing', async () => {
    const before = await dovecot.listMessageFiles('dave');
    const disconnects = async (): Promise<number> => (await dovecot.readLog()).split('\n').filter((l) => /pop3\(dave\).*Disconnected/.test(l)).length;
    const disconnectsBefore = await disconnects();
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER dave\r\nPASS Dave-front-pw\r\nDELE 1\r\nDELE 2\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.line()).toMatch(/^\+OK/);
    c.destroy();
    await waitForLog(gw, (r) => r.event === 'session-end' && r.user === 'dave');
    // Dovecot expunges when its session ends after a QUIT: wait for it to log that session's end.
    await waitFor('Dovecot to log the end of the session', async () => (await disconnects()) > disconnectsBefore, { timeoutMs: 10_000 });
    expect(await dovecot.listMessageFiles('dave')).toHaveLength(before.length);
    expect(await dovecot.listMessages('dave')).toHaveLength(2);
  });
});

describe('errors get the right RFC 3206 code', () => {
  it('a wrong password gets -ERR [AUTH] and the log says why without the password', async () => {
    const { result: r } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'alice', password: 'not-the-password' });
    expect(r.error).toMatch(/^-ERR \[AUTH\] /);
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'failure' && l.reason === 'bad-password');
    expect(rec.user).toBe('alice');
    expect(gw.rawLog()).not.toContain('not-the-password');
  });

  it('an unknown user gets the same reply as a wrong password', async () => {
    const { result: r } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'mallory', password: 'whatever' });
    expect(r.error).toBe('-ERR [AUTH] Authentication failed');
    await waitForLog(gw, (l) => l.event === 'login' && l.reason === 'unknown-user');
  });

  it('a backend that is down gets -ERR [SYS/TEMP]; the gateway keeps serving', async () => {
    const deadPort = await freePort();
    const down = await gateway({ backendPort: deadPort });
    try {
      const { result: r } = await poplibOverTls(down.port('pop3s'), pki.caFile, { user: 'alice', password: 'Alice-front-pw' });
      expect(r.error).toMatch(/^-ERR \[SYS\/TEMP\] /);
      const rec = await waitForLog(down, (l) => l.event === 'login' && l.code === 'BACKEND_UNREACHABLE');
      expect(String(rec.reason)).toContain(`127.0.0.1:${deadPort}`);
      // Still accepting and answering.
      const c = await LineClient.tls(down.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.end();
    } finally {
      await down.stop();
    }
  });

  it('a backend refusing the internal login gets -ERR [SYS/PERM]', async () => {
    const wrong = await gateway({ login: `{ mode: master, method: user-separator, user: ${MASTER.name}, password: wrong-master }` });
    try {
      const { result: r } = await poplibOverTls(wrong.port('pop3s'), pki.caFile, { user: 'alice', password: 'Alice-front-pw' });
      expect(r.error).toMatch(/^-ERR \[SYS\/PERM\] /);
      const rec = await waitForLog(wrong, (l) => l.event === 'login' && l.code === 'BACKEND_LOGIN_REJECTED');
      expect(String(rec.reason)).toMatch(/-ERR/); // the backend's text is in the log, not the reply
      expect(wrong.rawLog()).not.toContain('wrong-master');
    } finally {
      await wrong.stop();
    }
  });
});

describe('STLS and plaintext rules', () => {
  it('before TLS: CAPA offers STLS but no USER/SASL PLAIN, and USER is refused with [AUTH]', async () => {
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('CAPA\r\n');
    const capa = await c.multiline();
    const caps = capa.body.toString().split('\r\n');
    expect(caps).toContain('STLS');
    expect(caps).not.toContain('USER');
    expect(caps.some((l) => l.startsWith('SASL') && /PLAIN|LOGIN/.test(l))).toBe(false);
    c.send('USER alice\r\n');
    expect(await c.line()).toMatch(/^-ERR \[AUTH\] /);
    c.send('AUTH PLAIN ' + Buffer.from('\0alice\0Alice-front-pw').toString('base64') + '\r\n');
    expect(await c.line()).toMatch(/^-ERR \[AUTH\] /);
    c.send('QUIT\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
  });

  it('plaintext pipelined after STLS is discarded, never executed inside TLS', async () => {
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('STLS\r\nCAPA\r\nUSER alice\r\n');
    expect(await c.line()).toBe('+OK Begin TLS negotiation');
    const leftover = await c.startTls(pki.caFile);
    expect(leftover.length).toBe(0);
    // Had the injected CAPA/USER run, their replies would come before the
    // answer to anything we send now: the first line back is that answer.
    expect(await c.cmd('XPROBE')).toMatch(/^-ERR/);
    c.send('CAPA\r\n');
    const capa = await c.multiline();
    expect(capa.status).toMatch(/^\+OK/);
    const caps = capa.body.toString().split('\r\n');
    expect(caps).toContain('USER');
    expect(caps).not.toContain('STLS');
    // The session is back in AUTHORIZATION with no user remembered.
    c.send('PASS Alice-front-pw\r\n');
    expect(await c.line()).toMatch(/^-ERR/);
    c.send('QUIT\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await waitForLog(gw, (l) => l.msg === 'discarded plaintext pipelined after STLS');
  });

  it('commands pipelined behind the login reach the backend in order', async () => {
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER alice\r\nPASS Alice-front-pw\r\nSTAT\r\nLIST 3\r\nNOOP\r\nRETR 3\r\nQUIT\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK 3 \d+$/);
    expect(await c.line()).toMatch(/^\+OK 3 \d+$/);
    expect(await c.line()).toMatch(/^\+OK/);
    const retr = await c.multiline();
    expect(retr.body.equals(pop3Wire(MESSAGES.small))).toBe(true);
    expect(await c.line()).toMatch(/^\+OK Logging out/);
    await c.closed();
  });

  it('an oversize command line gets -ERR and the connection is closed', async () => {
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER ' + 'a'.repeat(300) + '\r\n');
    expect(await c.line()).toMatch(/^-ERR Line too long/);
    await c.closed();
  });
});

describe('secrets', () => {
  it('no client password or internal credential appears in any log line', () => {
    const raw = gw.rawLog();
    expect(raw.length).toBeGreaterThan(0);
    for (const secret of [MASTER.password, ...CLIENTS.map((c) => c.password), ...BACKEND_USERS.map((u) => u.password)]) {
      expect(raw).not.toContain(secret);
    }
    expect(raw).not.toContain(Buffer.from(`alice\0${MASTER.name}\0${MASTER.password}`).toString('base64'));
  });
});
