/**
 * Issue 4 end to end against real Dovecot backends: an nginx-style auth
 * service routes users to two different backends and supplies the internal
 * credentials (through a recording HTTP proxy when configured); the real
 * client address reaches Dovecot by PROXY protocol and by XCLIENT; PROXY
 * headers are honoured from trusted load balancers only; the backend link
 * can be TLS with name checks.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { poplibOverTls } from '../helpers/clients.js';
import { pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/http-proxy.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { startAuthService, type AuthService } from '../helpers/nginx-auth.js';
import { waitFor } from '../helpers/wait.js';

const MASTER = { name: 'popgate', password: 'Route-Master-Pw' };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Waits (5 s) until the backend's log matches `re`: Dovecot writes its log asynchronously. */
async function logMatches(backend: DovecotInstance, re: RegExp): Promise<void> {
  let log = '';
  await waitFor(`a backend log line matching ${String(re)}`, async () => re.test((log = await backend.readLog())), {
    timeoutMs: 5_000,
    detail: () => `the log:\n${log}`,
  });
}
const MSG_A = Buffer.from('Subject: on backend A\r\n\r\nalpha\r\n');
const MSG_B = Buffer.from('Subject: on backend B\r\n\r\nbravo\r\n');
const MSG_C = Buffer.from('Subject: for carol\r\n\r\ncharlie\r\n');

let work: string;
let pki: TestPki;
let backendA: DovecotInstance;
let backendB: DovecotInstance;
let auth: AuthService;
let proxy: RecordingProxy;
const gateways: TestGateway[] = [];

/** auth.http for the gateway helper's auth block. */
function httpAuth(url: string, extra = ''): string[] {
  return [`http: { url: ${url}, timeout: 5s${extra} }`];
}

/** A gateway for carol in front of backend A with popgate's master login; `opts` adds or replaces. */
async function gateway(opts: Partial<TestGatewayOptions> = {}): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [{ name: 'carol', password: 'carol-front' }],
    backendPort: backendA.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    ...opts,
  });
  gateways.push(gw);
  return gw;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-route-'));
  pki = await makeTempTestPki();
  backendA = await startDovecot({
    users: [
      { name: 'alice', password: 'alice-on-A' },
      { name: 'carol', password: 'carol-on-A' },
    ],
    masterUser: MASTER,
    messages: { alice: [MSG_A], carol: [MSG_C] },
    haproxy: true,
    tls: { certFile: pki.certFile, keyFile: pki.keyFile },
  });
  backendB = await startDovecot({
    users: [{ name: 'bob-legacy', password: 'bob-on-B' }],
    masterUser: MASTER,
    messages: { 'bob-legacy': [MSG_B] },
  });
  auth = await startAuthService(work, 'routing', [
    '--user', 'alice=alice-front',
    '--user', 'bob=bob-front',
    '--backend', `alice=127.0.0.1:${backendA.port}`,
    '--backend', `bob=127.0.0.1:${backendB.port}`,
    '--login', 'alice=alice:alice-on-A',
    '--login', 'bob=bob-legacy:bob-on-B',
  ]);
  proxy = await startRecordingProxy();
}, 120_000);

afterAll(async () => {
  for (const gw of gateways) await gw.stop();
  await auth?.stop();
  await proxy?.close();
  await backendA?.stop();
  await backendB?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

describe('nginx auth_http routing and internal credentials', () => {
  it('routes two users to two Dovecot backends with the credentials the service supplies', async () => {
    const gw = await gateway({
      users: [],
      verifiers: ['http'],
      authExtra: httpAuth(auth.url),
    });
    for (const [user, password, msg] of [
      ['alice', 'alice-front', MSG_A],
      ['bob', 'bob-front', MSG_B],
    ] as const) {
      const { result } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user, password, retrieve: 'all' });
      expect(result.error, user).toBeNull();
      expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(msg))]);
    }
    const bobLogin = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.user === 'bob');
    expect(bobLogin.backend).toBe(`127.0.0.1:${backendB.port}`);
    // The service saw nginx's headers.
    const seen = (await auth.log()).map((r) => r.headers);
    const aliceAsk = seen.find((h) => h['Auth-User'] === 'alice')!;
    expect(aliceAsk).toMatchObject({ 'Auth-Method': 'plain', 'Auth-Protocol': 'pop3', 'Auth-Login-Attempt': '1', 'Client-IP': '127.0.0.1', 'Auth-SSL': 'on' });
    // A wrong password gets the service's own text.
    const { result: wrong } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'alice', password: 'nope' });
    expect(wrong.error).toMatch(/^-ERR \[AUTH\] Invalid login or password/);
  });

  it('sends the auth calls through the configured HTTP proxy', async () => {
    const gw = await gateway({
      users: [],
      verifiers: ['http'],
      authExtra: httpAuth(auth.url, `, proxy: "${proxy.url}"`),
    });
    const before = proxy.requests.length;
    const { result } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'alice', password: 'alice-front', retrieve: [1] });
    expect(result.error).toBeNull();
    const calls = proxy.requests.slice(before);
    expect(calls.length).toBeGreaterThan(0);
    expect(JSON.stringify(calls[0])).toContain(auth.url.replace(/^http:\/\//, ''));
  });
});

describe('routing map from config', () => {
  it('routes a user to its backends in order, skipping one that is down', async () => {
    const dead = await freePort();
    const gw = await gateway({
      backendPort: backendB.port, // the default backend does not have carol
      extra: `routing: { users: { carol: [{ host: 127.0.0.1, port: ${dead} }, { host: 127.0.0.1, port: ${backendA.port} }] } }`,
    });
    const { result } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'carol', password: 'carol-front', retrieve: [1] });
    expect(result.error).toBeNull();
    expect(result.messages[0]?.sha256).toBe(sha(pop3Wire(MSG_C)));
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success');
    expect(rec.backend).toBe(`127.0.0.1:${backendA.port}`);
  });
});

describe('client address forwarding to Dovecot', () => {
  it('PROXY v2 to the backend makes Dovecot log the real client (127.0.0.5)', async () => {
    const viaProxy = await gateway({
      backendPort: backendA.haproxyPort!,
      allowPlaintextAuth: true,
      backendExtra: 'proxyProtocol: v2\n  xclient: false',
    });
    const c = await LineClient.connect({ port: viaProxy.port('pop3'), localAddress: '127.0.0.5' });
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER carol\r\nPASS carol-front\r\nQUIT\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK/);
    await c.closed();
    await logMatches(backendA, /Login: user=<carol>.*rip=127\.0\.0\.5/);
  });

  it('XCLIENT makes Dovecot log the real client when its greeting offers [XCLIENT]', async () => {
    const gw = await gateway({
      users: [{ name: 'alice', password: 'alice-front' }],
      backendPort: backendB.port,
      allowPlaintextAuth: true,
    });
    const c = await LineClient.connect({ port: gw.port('pop3'), localAddress: '127.0.0.5' });
    expect(await c.line()).toMatch(/^\+OK/);
    // alice is not on backend B: the login fails there, but XCLIENT came first and Dovecot logs the address.
    c.send('USER alice\r\nPASS alice-front\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^-ERR \[SYS\/PERM\]/);
    c.destroy();
    await logMatches(backendB, /rip=127\.0\.0\.5/);
  });
});

describe('PROXY protocol on the listener', () => {
  it('uses the address from a trusted balancer and refuses headers from untrusted peers', async () => {
    const gw = await gateway({
      allowPlaintextAuth: true,
      listenerExtra: 'proxyProtocol: { trustedNetworks: [127.0.0.1/32], required: true, timeout: 2s }',
    });
    // Trusted (127.0.0.1): header first, then POP3; XCLIENT carries 192.0.2.7 on to Dovecot.
    const lb = await LineClient.connect({ port: gw.port('pop3') });
    lb.send(`PROXY TCP4 192.0.2.7 127.0.0.1 40000 ${gw.port('pop3')}\r\n`);
    expect(await lb.line()).toMatch(/^\+OK/);
    lb.send('USER carol\r\nPASS carol-front\r\nQUIT\r\n');
    expect(await lb.line()).toBe('+OK');
    expect(await lb.line()).toMatch(/^\+OK Logged in/);
    expect(await lb.line()).toMatch(/^\+OK/);
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success');
    expect(rec.remote).toBe('192.0.2.7');
    expect(rec.via).toBe('127.0.0.1');
    await logMatches(backendA, /rip=192\.0\.2\.7/);

    // Untrusted (127.0.0.5): no header is read; one sent anyway is just a bad command, and its address is never used.
    const rogue = await LineClient.connect({ port: gw.port('pop3'), localAddress: '127.0.0.5' });
    expect(await rogue.line()).toMatch(/^\+OK/);
    rogue.send('PROXY TCP4 203.0.113.66 127.0.0.1 40000 110\r\n');
    expect(await rogue.line()).toMatch(/^-ERR/);
    rogue.destroy();
    expect(gw.logs.some((l) => l.remote === '203.0.113.66')).toBe(false);

    // Trusted but without a header when one is required: refused and logged.
    const bare = await LineClient.connect({ port: gw.port('pop3') });
    bare.send('USER carol\r\n');
    await bare.closed();
    await waitForLog(gw, (l) => l.msg === 'PROXY header refused');
  });
});

describe('backend link security', () => {
  it('implicit TLS to Dovecot with a name check; a wrong-name certificate is refused', async () => {
    const gw = await gateway({
      backendPort: backendA.tlsPort!,
      backendExtra: `tls: { mode: implicit, caFile: ${pki.caFile}, serverName: localhost }`,
    });
    const { result } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'carol', password: 'carol-front', retrieve: 'all' });
    expect(result.error).toBeNull();
    expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG_C))]);

    const wrongName = await gateway({
      backendPort: backendA.tlsPort!,
      backendExtra: `tls: { mode: implicit, caFile: ${pki.caFile}, serverName: mail.example.test }`,
    });
    const refused = await poplibOverTls(wrongName.port('pop3s'), pki.caFile, { user: 'carol', password: 'carol-front' });
    expect(refused.result.error).toMatch(/^-ERR \[SYS\/TEMP\] /);
    const rec = await waitForLog(wrongName, (l) => l.event === 'login' && l.outcome === 'failure');
    expect(String(rec.reason)).toMatch(/name/i);
  });

  it('STLS to Dovecot before the internal login', async () => {
    const gw = await gateway({
      backendExtra: `tls: { mode: starttls, caFile: ${pki.caFile}, serverName: localhost }`,
    });
    const { result } = await poplibOverTls(gw.port('pop3s'), pki.caFile, { user: 'carol', password: 'carol-front', retrieve: [1] });
    expect(result.error).toBeNull();
    await logMatches(backendA, /Login: user=<carol>.*TLS/);
  });
});
