/**
 * Connection-level limits and failure paths of the gateway, against the
 * in-memory backend (fast; the Dovecot files cover the real backend).
 */
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, waitForLog, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let backend: DemoBackend;
const USERS = [{ name: 'gina', password: 'Gina-front-pw' }];
const LOGIN = '{ mode: master, method: auth-plain, user: popgate, password: Demo-Master }';

beforeAll(async () => {
  pki = await makeTempTestPki();
  backend = await startDemoBackend({
    users: { gina: 'unused' },
    masterUser: 'popgate',
    masterPassword: 'Demo-Master',
    messages: { gina: [Buffer.from('Subject: hi\r\n\r\nhi\r\n')] },
  });
});

afterAll(async () => {
  await backend?.close();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** A gateway in front of the demo backend with `extra` top-level YAML; `opts` adds or replaces gateway options. */
async function gatewayWith(extra: string, opts: Partial<TestGatewayOptions> = {}): Promise<TestGateway> {
  return startTestGateway({
    users: USERS, backendPort: backend.port, certFile: pki.certFile, keyFile: pki.keyFile,
    login: LOGIN, extra,
    ...opts,
  });
}

describe('connection limits', () => {
  it('refuses connections over limits.maxConnections with [SYS/TEMP] and accepts again once one closes', async () => {
    const gw = await gatewayWith('limits: { maxConnections: 2 }');
    try {
      const a = await LineClient.plain(gw.port('pop3'));
      const b = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await a.line()).toMatch(/^\+OK/);
      expect(await b.line()).toMatch(/^\+OK/);
      const c = await LineClient.plain(gw.port('pop3'));
      expect(await c.line()).toBe('-ERR [SYS/TEMP] Too many connections, try again later');
      await c.closed();
      await waitForLog(gw, (l) => l.msg === 'connection limit reached, refusing');
      a.send('QUIT\r\n');
      expect(await a.line()).toMatch(/^\+OK/);
      await a.closed();
      // The slot frees when the gateway's side of `a` closes: only b is left.
      await waitFor("the gateway to close a's connection", () => gw.gateway.openTcpConnections === 1, { timeoutMs: 5_000 });
      const d = await LineClient.plain(gw.port('pop3'));
      expect(await d.line()).toMatch(/^\+OK POP3 gateway ready/);
      d.destroy();
      b.destroy();
    } finally {
      await gw.stop();
    }
  });

  it('closes the connection after maxAuthAttempts failed logins', async () => {
    const gw = await gatewayWith('', { maxAuthAttempts: 3 });
    try {
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send('USER gina\r\nPASS wrong1\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [AUTH] Authentication failed');
      c.send('USER gina\r\nPASS wrong2\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [AUTH] Authentication failed');
      c.send('USER gina\r\nPASS wrong3\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [AUTH] Too many authentication failures');
      await c.closed();
    } finally {
      await gw.stop();
    }
  });

  it('closes after too many unknown commands', async () => {
    const gw = await gatewayWith('limits: { maxErrors: 3 }');
    try {
      const c = await LineClient.plain(gw.port('pop3'));
      expect(await c.line()).toMatch(/^\+OK/);
      // An SMTP client on the wrong port (an HTTP request is closed at once: hostile-clients.test.ts).
      c.send('EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n');
      expect(await c.line()).toBe('-ERR Unknown command');
      expect(await c.line()).toBe('-ERR Unknown command');
      expect(await c.line()).toBe('-ERR Too many errors, closing connection');
      await c.closed();
      await waitForLog(gw, (l) => l.msg === 'closing connection' && l.reason === 'TOO_MANY_ERRORS');
    } finally {
      await gw.stop();
    }
  });
});

describe('TLS handshakes', () => {
  it('a client that leaves during the handshake frees its connection at once, not at the handshake timeout', async () => {
    const gw = await gatewayWith('limits: { preAuthTimeout: 60s }');
    try {
      for (let i = 0; i < 5; i++) {
        const raw = await import('node:net').then((net) => net.connect({ port: gw.port('pop3s'), host: '127.0.0.1' }));
        await new Promise<void>((r) => raw.once('connect', () => r()));
        raw.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01])); // a truncated ClientHello, then FIN
      }
      await waitFor('no open connection', () => gw.gateway.openTcpConnections === 0, { timeoutMs: 5_000 });
    } finally {
      await gw.stop();
    }
  });
});

describe('backend failures', () => {
  let silent: Server;
  const held: Socket[] = [];
  beforeAll(async () => {
    // Accepts and never says a word: a hung backend.
    silent = createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    held.forEach((s) => s.destroy());
    await new Promise((r) => silent.close(r));
  });

  it('a client that drops (RST) mid-login abandons it cleanly (no error, no backend left open)', async () => {
    const addr = silent.address();
    const port = addr && typeof addr === 'object' ? addr.port : 0;
    // Plain TCP so the client can really reset (TLS sockets cannot).
    const gw = await gatewayWith('', {
      backendPort: port, allowPlaintextAuth: true, backendTimeouts: '{ connect: 2s, greeting: 10s, login: 2s }',
    });
    try {
      const before = held.length;
      const c = await LineClient.plain(gw.port('pop3'));
      expect(await c.line()).toMatch(/^\+OK/);
      c.send('USER gina\r\nPASS Gina-front-pw\r\n');
      expect(await c.line()).toBe('+OK');
      // The gateway is now waiting for the hung backend's greeting.
      await waitFor('the backend connection', () => held.length > before, { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
      expect(held.length).toBe(before + 1);
      const backendSide = held[held.length - 1]!;
      const backendClosed = new Promise<void>((r) => backendSide.once('close', () => r()));
      // A crash, not a half-close: a FIN would rightly let the login finish and answer.
      c.socket.resetAndDestroy();
      await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'abandoned');
      await backendClosed; // the half-opened backend connection is closed, not leaked
      expect(gw.logs.some((l) => l.code === 'INTERNAL' || l.level >= 50)).toBe(false);
    } finally {
      await gw.stop();
    }
  });

  it('a backend that never greets gets [SYS/TEMP] after the greeting timeout', async () => {
    const addr = silent.address();
    const port = addr && typeof addr === 'object' ? addr.port : 0;
    const gw = await gatewayWith('', { backendPort: port, backendTimeouts: '{ connect: 2s, greeting: 500ms, login: 2s }' });
    try {
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send('USER gina\r\nPASS Gina-front-pw\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [SYS/TEMP] Mail server temporarily unavailable');
      await c.closed();
      const rec = await waitForLog(gw, (l) => l.event === 'login' && l.code === 'BACKEND_TIMEOUT');
      expect(rec.level).toBe(50); // error
    } finally {
      await gw.stop();
    }
  });
});
