/**
 * TLS hygiene on the client listeners (issue 12), seen through a real
 * `openssl s_client` against the real gateway in front of the in-memory demo
 * backend: a TLS 1.2 renegotiation request (s_client's `R`) closes the
 * connection on pop3s, after STLS and in a relayed session; the default
 * suites and groups are Mozilla's intermediate profile (no static-RSA key
 * exchange, no CBC) with server preference.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { issueCert, makeTempTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { startTestGateway, waitForLog, type LogRecord, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { parsePrometheus, valueOf } from '../helpers/prometheus.js';
import { SClient } from '../helpers/s-client.js';

const RITA = { name: 'rita', password: 'Rita-front-pw' };
const LOGIN = '{ mode: master, method: auth-plain, user: popgate, password: Demo-Master }';
/**
 * A server line in s_client's transcript. After STLS s_client prints the
 * greeting it read before the handshake, followed by NULs and no newline.
 */
const serverLine = (start: string): RegExp => new RegExp(`(?:^|[\\n\\0])${start}`);
const GREETING = serverLine('\\+OK POP3 gateway ready');
const CAPA_REPLY = serverLine('\\+OK Capability list follows');
const ANY_REPLY = serverLine('[+-](?:OK|ERR)');
const OK = serverLine('\\+OK');
const REFUSED = 'TLS renegotiation refused, closing connection';
/** pino's info level. */
const INFO = 30;

let pki: TestPki;
let rsa: TestCert;
let backend: DemoBackend;
const gateways: TestGateway[] = [];
const clients: SClient[] = [];

beforeAll(async () => {
  pki = await makeTempTestPki();
  rsa = await issueCert(pki, { name: 'rsa-server', dns: ['localhost'], ips: ['127.0.0.1'], keyType: 'rsa' });
  backend = await startDemoBackend({
    users: { rita: 'unused' },
    masterUser: 'popgate',
    masterPassword: 'Demo-Master',
    messages: { rita: [Buffer.from('Subject: one\r\n\r\nfirst\r\n'), Buffer.from('Subject: two\r\n\r\nsecond\r\n')] },
  });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.kill();
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});

afterAll(async () => {
  await backend?.close();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** A gateway (pop3s and pop3 with STLS, the admin port) on the RSA certificate. */
async function gateway(): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [RITA],
    backendPort: backend.port,
    certFile: rsa.certFile,
    keyFile: rsa.keyFile,
    login: LOGIN,
    admin: true,
  });
  gateways.push(gw);
  return gw;
}

/** s_client over TLS 1.2, verifying the certificate, typing CRLF lines. */
function sClient(args: readonly string[]): SClient {
  const c = SClient.start(['-tls1_2', '-crlf', '-CAfile', pki.caFile, '-servername', 'localhost', ...args]);
  clients.push(c);
  return c;
}

/**
 * Types `R` (s_client renegotiates), then `command`: the gateway must close
 * the connection, so s_client exits without printing any reply.
 */
async function renegotiateThen(c: SClient, command: string): Promise<void> {
  const mark = c.mark;
  c.send('R');
  await c.expect(/RENEGOTIATING/, mark);
  c.send(command);
  expect(await c.next(ANY_REPLY, mark)).toBeUndefined();
  await c.ended();
}

async function refusedCount(gw: TestGateway, listener: string): Promise<number | undefined> {
  const r = await fetch(`http://127.0.0.1:${gw.adminPort()}/metrics`);
  return valueOf(parsePrometheus(await r.text()), 'popgate_tls_renegotiations_refused_total', { listener });
}

describe('a TLS 1.2 renegotiation request (openssl s_client, R)', () => {
  it('on pop3s closes the connection; no later command is answered; logged and counted', async () => {
    const gw = await gateway();
    const c = sClient(['-connect', `127.0.0.1:${gw.port('pop3s')}`]);
    await c.expect(GREETING);
    const mark = c.mark;
    c.send('CAPA');
    await c.expect(CAPA_REPLY, mark);
    await renegotiateThen(c, 'CAPA');

    const line = await waitForLog(gw, (l) => l.msg === REFUSED);
    expect(line).toMatchObject({ level: INFO, listener: 't-pop3s', tls: 'TLSv1.2', reason: 'TLS_RENEGOTIATION', relaying: false });
    expect(await refusedCount(gw, 't-pop3s')).toBe(1);
    expect(await refusedCount(gw, 't-pop3')).toBe(0);
  });

  it('after STLS closes the connection; no later command is answered', async () => {
    const gw = await gateway();
    const c = sClient(['-starttls', 'pop3', '-connect', `127.0.0.1:${gw.port('pop3')}`]);
    await c.expect(/Verify return code: 0 \(ok\)/);
    const mark = c.mark;
    c.send('CAPA');
    await c.expect(CAPA_REPLY, mark);
    await renegotiateThen(c, 'CAPA');

    const line = await waitForLog(gw, (l) => l.msg === REFUSED);
    expect(line).toMatchObject({ level: INFO, listener: 't-pop3', tls: 'TLSv1.2', reason: 'TLS_RENEGOTIATION' });
    expect(await refusedCount(gw, 't-pop3')).toBe(1);
  });

  it('in a relayed session ends it without QUIT to the backend: nothing is deleted', async () => {
    const gw = await gateway();
    const commandsBefore = backend.commandLog().length;
    const c = sClient(['-connect', `127.0.0.1:${gw.port('pop3s')}`]);
    await c.expect(GREETING);
    for (const command of [`USER ${RITA.name}`, `PASS ${RITA.password}`, 'DELE 1']) {
      const mark = c.mark;
      c.send(command);
      await c.expect(OK, mark);
    }
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success');
    await renegotiateThen(c, 'STAT');

    const refused = await waitForLog(gw, (l) => l.msg === REFUSED);
    expect(refused).toMatchObject({ level: INFO, listener: 't-pop3s', user: RITA.name, relaying: true });
    const end = await waitForLog(gw, (l: LogRecord) => l.event === 'session-end');
    expect(end).toMatchObject({ endedBy: 'client-error', err: expect.stringMatching(/renegotiation/) });
    // The backend saw the DELE, and neither the STAT nor any QUIT.
    const commands = backend.commandLog().slice(commandsBefore);
    expect(commands).toContain('DELE');
    expect(commands).not.toContain('STAT');
    expect(commands).not.toContain('QUIT');

    // The next session still finds both messages.
    const next = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    try {
      expect(await next.line()).toMatch(GREETING);
      expect(await next.cmd(`USER ${RITA.name}`)).toBe('+OK');
      expect(await next.cmd(`PASS ${RITA.password}`)).toMatch(/^\+OK/);
      expect(await next.cmd('STAT')).toMatch(/^\+OK 2 /);
      expect(await next.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      next.destroy();
    }
    expect(backend.mailbox(RITA.name)).toHaveLength(2);
  });
});

describe('a TLS 1.3 key update (openssl s_client, k)', () => {
  it('is not a renegotiation: the session carries on', async () => {
    const gw = await gateway();
    const c = SClient.start(['-tls1_3', '-crlf', '-CAfile', pki.caFile, '-servername', 'localhost', '-connect', `127.0.0.1:${gw.port('pop3s')}`]);
    clients.push(c);
    await c.expect(GREETING);
    const mark = c.mark;
    c.send('k');
    await c.expect(/KEYUPDATE/, mark);
    c.send('CAPA');
    await c.expect(CAPA_REPLY, mark);
    expect(gw.logs.some((l) => l.msg === REFUSED)).toBe(false);
  });
});

describe('default TLS profile (Mozilla intermediate) on an RSA certificate', () => {
  /** A TLS 1.2 handshake offering only `ciphers` (s_client exits at once: stdin is empty). */
  const handshake = (gw: TestGateway, ciphers: string, extra: string[] = []) =>
    runProgram(
      'openssl',
      ['s_client', '-tls1_2', '-cipher', ciphers, '-connect', `127.0.0.1:${gw.port('pop3s')}`, '-CAfile', pki.caFile, '-servername', 'localhost', ...extra],
      { timeoutMs: 15_000 },
    );

  it.each(['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA'])('refuses %s (static RSA or CBC)', async (cipher) => {
    const gw = await gateway();
    const r = await handshake(gw, cipher);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/Cipher is \(NONE\)/);
    expect(r.stderr).toMatch(/handshake failure/);
    const failed = await waitForLog(gw, (l) => l.msg === 'TLS handshake failed');
    expect(String(failed.err)).toMatch(/no shared cipher/);
  });

  it('accepts ECDHE-RSA-AES128-GCM-SHA256 with an X25519 key exchange', async () => {
    const gw = await gateway();
    const c = sClient(['-cipher', 'ECDHE-RSA-AES128-GCM-SHA256', '-connect', `127.0.0.1:${gw.port('pop3s')}`]);
    await c.expect(GREETING);
    expect(c.transcript).toMatch(/Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
    expect(c.transcript).toMatch(/Server Temp Key: X25519/);
  });

  it("prefers the server's order, except for a client that puts ChaCha20 first", async () => {
    const gw = await gateway();
    const aesFirst = await handshake(gw, 'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256');
    expect(aesFirst.stdout).toMatch(/Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
    const chachaFirst = await handshake(gw, 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256');
    expect(chachaFirst.stdout).toMatch(/Cipher is ECDHE-RSA-CHACHA20-POLY1305/);
  });

  it('offers no key exchange group outside X25519, P-256, P-384 by default', async () => {
    const gw = await gateway();
    const p521 = await handshake(gw, 'ECDHE-RSA-AES128-GCM-SHA256', ['-groups', 'P-521']);
    expect(p521.code).not.toBe(0);
    expect(p521.stdout).toMatch(/Cipher is \(NONE\)/);
    const p384 = await handshake(gw, 'ECDHE-RSA-AES128-GCM-SHA256', ['-groups', 'P-384']);
    expect(p384.stdout).toMatch(/Server Temp Key: ECDH, (secp384r1|P-384)/);
    // A TLS 1.3 client with Node's defaults (X25519MLKEM768 first on OpenSSL 3.5) gets the profile's first group.
    const s = tlsConnect({ port: gw.port('pop3s'), host: '127.0.0.1', ca: readFileSync(pki.caFile), servername: 'localhost' });
    try {
      await once(s, 'secureConnect');
      expect(s.getProtocol()).toBe('TLSv1.3');
      expect(s.getEphemeralKeyInfo()).toMatchObject({ name: 'X25519' });
    } finally {
      s.destroy();
    }
  });
});
