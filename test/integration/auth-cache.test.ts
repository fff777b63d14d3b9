/**
 * auth.cache through a real gateway: an auth_http service that counts its
 * calls routes alice to the demo backend with backend-only credentials (the
 * gateway's default backend is a dead port). A second login within the TTL
 * does not reach the service and still lands on that backend with those
 * credentials; a wrong password and another client address do reach it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { parsePrometheus, valueOf } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

const ALICE = { name: 'alice', password: 'Alice-front-pw' };
/** Known only to the auth service and the backend: the client never sends it. */
const BACKEND_PASSWORD = 'Alice-on-backend';

let pki: TestPki;
let backend: DemoBackend;
let authServer: Server;
let authUrl: string;
/** Every question the auth service got: user and Client-IP. */
const asked: Array<{ user: string; clientIp: string }> = [];
let gw: TestGateway;

/** An nginx auth_http service: alice with her password goes to the demo backend as alice/BACKEND_PASSWORD. */
function answer(req: IncomingMessage, res: ServerResponse): void {
  const user = String(req.headers['auth-user'] ?? '');
  asked.push({ user, clientIp: String(req.headers['client-ip'] ?? '') });
  if (user === ALICE.name && req.headers['auth-pass'] === ALICE.password) {
    res.writeHead(200, {
      'Auth-Status': 'OK',
      'Auth-Server': '127.0.0.1',
      'Auth-Port': String(backend.port),
      'Auth-User': ALICE.name,
      'Auth-Pass': BACKEND_PASSWORD,
    });
  } else {
    res.writeHead(200, { 'Auth-Status': 'Invalid login or password' });
  }
  res.end();
}

beforeAll(async () => {
  pki = await makeTempTestPki();
  backend = await startDemoBackend({
    users: { alice: BACKEND_PASSWORD },
    messages: { alice: [Buffer.from('Subject: routed\r\n\r\nvia the cached route\r\n')] },
  });
  authServer = createServer(answer);
  await new Promise<void>((resolve) => authServer.listen(0, '127.0.0.1', resolve));
  authUrl = `http://127.0.0.1:${(authServer.address() as AddressInfo).port}/auth`;
  gw = await startTestGateway({
    users: [],
    backendPort: await freePort(), // nothing listens: only the service's route reaches the backend
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: '{ mode: master, method: auth-plain, user: popgate, password: unused }',
    allowPlaintextAuth: true,
    verifiers: ['http'],
    authExtra: [`http: { url: ${authUrl}, timeout: 5s }`, 'cache: { ttl: 5m, negativeTtl: 0 }'],
    admin: true,
  });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => (authServer ? authServer.close(() => resolve()) : resolve()));
  await backend?.close();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** USER/PASS on the plaintext listener from `localAddress`; the PASS reply and, on success, STAT. */
async function login(password: string, localAddress = '127.0.0.1'): Promise<{ pass: string; stat?: string }> {
  const c = await LineClient.connect({ port: gw.port('pop3'), localAddress });
  try {
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.cmd(`USER ${ALICE.name}`)).toBe('+OK');
    const pass = await c.cmd(`PASS ${password}`);
    if (!pass.startsWith('+OK')) return { pass };
    const stat = await c.cmd('STAT');
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    await c.closed();
    return { pass, stat };
  } finally {
    c.destroy();
  }
}

async function cacheEvents(): Promise<Record<string, number | undefined>> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort()}/metrics`);
  const exp = parsePrometheus(await res.text());
  const events = ['hit', 'negative-hit', 'miss', 'evicted', 'invalidated'];
  return Object.fromEntries(events.map((event) => [event, valueOf(exp, 'popgate_auth_cache_events_total', { event })]));
}

describe('auth.cache in front of an auth_http service', () => {
  it('a second login within the TTL does not reach the service and still gets its route and backend credentials', async () => {
    const first = await login(ALICE.password);
    expect(first.stat).toMatch(/^\+OK 1 /);
    expect(asked).toHaveLength(1);
    const second = await login(ALICE.password);
    expect(second.stat).toMatch(/^\+OK 1 /); // on the routed backend, logged in as alice/BACKEND_PASSWORD
    expect(asked).toHaveLength(1);
    expect(await cacheEvents()).toMatchObject({ miss: 1, hit: 1 });
    // Both logins are audited as usual, each on the service's backend.
    const successes = () => gw.logs.filter((l) => l.event === 'login' && l.outcome === 'success');
    const audited = await waitFor('two login audit lines', () => successes().length >= 2 && successes());
    expect(audited.map((l) => l.backend)).toEqual([`127.0.0.1:${backend.port}`, `127.0.0.1:${backend.port}`]);
    expect(gw.rawLog()).not.toContain(BACKEND_PASSWORD);
  });

  it('a wrong password, and the right one from another client address, reach the service', async () => {
    const before = asked.length;
    const wrong = await login('not-her-password');
    expect(wrong.pass).toMatch(/^-ERR \[AUTH\] Invalid login or password/);
    expect(asked.slice(before)).toEqual([{ user: 'alice', clientIp: '127.0.0.1' }]);
    // The service is sent Client-IP and may decide on it: another address is another key.
    const elsewhere = await login(ALICE.password, '127.0.0.5');
    expect(elsewhere.stat).toMatch(/^\+OK 1 /);
    expect(asked.slice(before)).toEqual([
      { user: 'alice', clientIp: '127.0.0.1' },
      { user: 'alice', clientIp: '127.0.0.5' },
    ]);
    // Back at the first address: still cached.
    await login(ALICE.password);
    expect(asked).toHaveLength(before + 2);
  });
});
