/**
 * The admin HTTP listener of a real gateway in front of a real Dovecot:
 * /metrics moves with real logins and relayed bytes, /readyz follows the
 * backend (through a TCP forwarder the test closes and reopens) and the
 * drain, each login attempt has one audit line with the TLS facts, and the
 * certificates' expiry follows a renewal on disk.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, rename, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCert, makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type LogRecord, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { parsePrometheus, valueOf, type Exposition } from '../helpers/prometheus.js';
import { listenLoopback } from '../helpers/servers.js';
import { waitFor } from '../helpers/wait.js';

const MASTER = { name: 'popgate', password: `master-${randomBytes(9).toString('hex')}` };
const CLIENTS = [
  { name: 'alice', password: 'Alice-front-pw' },
  { name: 'bob', password: 'Bob-front-pw' },
];
const MESSAGE = Buffer.from('From: metrics@example.test\r\nSubject: counted\r\n\r\nhello, metrics\r\n');

/**
 * A TCP forwarder to Dovecot on a fixed loopback port that the test can
 * close (the backend looks down: connection refused) and reopen.
 */
class Forwarder {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: number) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect({ host: '127.0.0.1', port: this.target });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
    if (this.port === 0) this.port = await listenLoopback(server);
    else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: this.port }, () => resolve());
      });
    }
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

let pki: TestPki;
let dovecot: DovecotInstance;
let forwarder: Forwarder;
let gw: TestGateway;

beforeAll(async () => {
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: CLIENTS.map((c) => ({ name: c.name, password: `backend-${c.name}-${randomBytes(6).toString('hex')}` })),
    masterUser: MASTER,
    messages: { alice: [MESSAGE], bob: [MESSAGE] },
  });
  forwarder = new Forwarder(dovecot.port);
  await forwarder.open();
  gw = await startTestGateway({
    users: CLIENTS,
    backendPort: forwarder.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    admin: true,
  });
});

afterAll(async () => {
  await gw?.stop();
  await forwarder?.close();
  await dovecot?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

function admin(path: string, init?: RequestInit): Promise<Response> {
  return fetch(`http://127.0.0.1:${gw.adminPort()}${path}`, init);
}

async function scrape(): Promise<Exposition> {
  const r = await admin('/metrics');
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await r.text());
}

/** Scrapes and admin requests are not free: poll them every 100 ms, for up to 10 s. */
const POLL = { timeoutMs: 10_000, intervalMs: 100 } as const;

const plain = (user: string, password: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}\r\n`;

/** The value of a metric sample, 0 when the series does not exist yet. */
const v = (exp: Exposition, name: string, labels: Record<string, string> = {}): number => valueOf(exp, name, labels) ?? 0;

/** The client's side of a TLS connection: its port (the gateway's `rport`), TLS version and cipher. */
function tlsFacts(s: TLSSocket): { port: number | undefined; tls: string | null; cipher: string } {
  return { port: s.localPort, tls: s.getProtocol(), cipher: s.getCipher().name };
}

function loginEvents(cid: unknown): LogRecord[] {
  return gw.logs.filter((l) => l.event === 'login' && l.cid === cid);
}

describe('admin endpoints', () => {
  it('/healthz is 200 ok and /readyz is 200 with every check passing', async () => {
    const health = await admin('/healthz');
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok\n');
    const ready = await admin('/readyz');
    const body = (await ready.json()) as { ready: boolean; reasons: string[]; checks: Array<{ name: string; ok: boolean }> };
    expect(ready.status).toBe(200);
    expect(body.ready).toBe(true);
    expect(body.reasons).toEqual([]);
    expect(body.checks.map((c) => c.name)).toEqual(['listeners', 'config', 'tls', 'backend']);
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    expect((await admin('/nope')).status).toBe(404);
    const post = await admin('/metrics', { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });

  it('serves build info and process metrics', async () => {
    const exp = await scrape();
    expect(exp.samples.find((s) => s.name === 'popgate_build_info')).toMatchObject({ value: 1, labels: { node: process.version } });
    expect(exp.type.get('process_cpu_user_seconds_total')).toBe('counter');
  });
});

describe('metrics move with real traffic', () => {
  it('a PLAIN login, RETR and QUIT, a failed login, a bad handshake and an HTTP request are counted', async () => {
    const before = await scrape();

    // A successful AUTH PLAIN over POP3S, then RETR + QUIT relayed to Dovecot.
    const ok = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await ok.line()).toMatch(/^\+OK/);
    ok.send(plain('alice', 'Alice-front-pw'));
    expect(await ok.line()).toMatch(/^\+OK/);
    const base = ok.bytesReceived;
    const toBackend = 'RETR 1\r\nQUIT\r\n';
    ok.send('RETR 1\r\n');
    const retr = await ok.multiline();
    expect(retr.status).toMatch(/^\+OK/);
    ok.send('QUIT\r\n');
    expect(await ok.line()).toMatch(/^\+OK/);
    await ok.closed();
    const toClient = ok.bytesReceived - base;
    expect(toClient).toBeGreaterThan(MESSAGE.length);
    await waitForLog(gw, (l) => l.event === 'session-end' && l.user === 'alice');

    // A wrong password, then QUIT.
    const bad = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await bad.line()).toMatch(/^\+OK/);
    bad.send(plain('alice', 'wrong-password'));
    expect(await bad.line()).toBe('-ERR [AUTH] Authentication failed');
    bad.send('QUIT\r\n');
    expect(await bad.line()).toMatch(/^\+OK/);
    await bad.closed();

    // Not TLS on the pop3s port: a failed handshake.
    const garbage = connect({ host: '127.0.0.1', port: gw.port('pop3s') });
    garbage.on('error', () => undefined);
    garbage.write('HELLO THIS IS NOT TLS\r\n\r\n');
    await new Promise((r) => garbage.once('close', r));

    // An HTTP request on the plaintext port: refused before any command runs.
    const http = await LineClient.plain(gw.port('pop3'));
    expect(await http.line()).toMatch(/^\+OK/);
    http.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await http.line()).toBe('-ERR This port speaks POP3, not HTTP');
    await http.closed();

    // Every session has ended: the counters are final (sessions are counted when they end).
    let after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}): number => v(after, name, labels) - v(before, name, labels);
    await waitFor(
      'every session counted as ended',
      async () => {
        after = await scrape();
        return (
          delta('popgate_sessions_total', { listener: 't-pop3', mechanism: 'none' }) > 0 &&
          delta('popgate_sessions_total', { listener: 't-pop3s', mechanism: 'none' }) > 0 &&
          delta('popgate_sessions_total', { listener: 't-pop3s', mechanism: 'PLAIN' }) > 0
        );
      },
      POLL,
    );

    expect(delta('popgate_auth_attempts_total', { mechanism: 'PLAIN', outcome: 'success', code: 'none' })).toBe(1);
    expect(delta('popgate_auth_attempts_total', { mechanism: 'PLAIN', outcome: 'failure', code: 'AUTH_FAILED' })).toBe(1);
    expect(delta('popgate_relayed_bytes_total', { direction: 'client_to_backend' })).toBe(toBackend.length);
    expect(delta('popgate_relayed_bytes_total', { direction: 'backend_to_client' })).toBe(toClient);
    expect(delta('popgate_sessions_total', { listener: 't-pop3s', mechanism: 'PLAIN' })).toBe(1);
    expect(delta('popgate_sessions_total', { listener: 't-pop3s', mechanism: 'none' })).toBe(1);
    expect(v(after, 'popgate_sessions_active', { listener: 't-pop3s', mechanism: 'PLAIN' })).toBe(0);
    expect(v(after, 'popgate_sessions_active', { listener: 't-pop3s', mechanism: 'none' })).toBe(0);
    expect(delta('popgate_connections_accepted_total', { listener: 't-pop3s' })).toBe(3);
    expect(delta('popgate_connections_accepted_total', { listener: 't-pop3' })).toBe(1);
    expect(delta('popgate_tls_handshake_failures_total', { listener: 't-pop3s' })).toBe(1);
    expect(delta('popgate_connections_refused_total', { listener: 't-pop3', reason: 'HTTP_ON_POP3_PORT' })).toBe(1);
    expect(delta('popgate_backend_connect_seconds_count')).toBe(1);
    expect(delta('popgate_backend_login_seconds_count')).toBe(1);
    expect(delta('popgate_backend_login_seconds_sum')).toBeGreaterThan(0);
    expect(delta('popgate_backend_errors_total', { code: 'BACKEND_UNREACHABLE', phase: 'connect' })).toBe(0);
  });

  it('a failed backend connection is counted by code and phase', async () => {
    await forwarder.close();
    try {
      const before = await scrape();
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send(plain('bob', 'Bob-front-pw'));
      expect(await c.line()).toMatch(/^-ERR \[SYS\/TEMP\] /);
      await c.closed();
      const after = await scrape();
      expect(v(after, 'popgate_backend_errors_total', { code: 'BACKEND_UNREACHABLE', phase: 'connect' }) - v(before, 'popgate_backend_errors_total', { code: 'BACKEND_UNREACHABLE', phase: 'connect' })).toBe(1);
      const failures = (e: Exposition): number => v(e, 'popgate_auth_attempts_total', { mechanism: 'PLAIN', outcome: 'failure', code: 'BACKEND_UNREACHABLE' });
      expect(failures(after) - failures(before)).toBe(1);
    } finally {
      await forwarder.open();
    }
  });
});

describe('audit events', () => {
  it('one login line per attempt, with listener, client address, TLS version and cipher (POP3S)', async () => {
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    // Read while connected (a closed socket has no port or cipher any more).
    const client = tlsFacts(c.socket as TLSSocket);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send(plain('bob', 'not-bobs-password'));
    expect(await c.line()).toMatch(/^-ERR \[AUTH\]/);
    c.send(plain('bob', 'Bob-front-pw'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('QUIT\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await c.closed();
    const success = await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.user === 'bob' && l.rport === client.port);
    const events = loginEvents(success.cid);
    expect(events).toHaveLength(2);
    const [failure] = events;
    const tls = { tls: client.tls, cipher: client.cipher };
    expect(tls.tls).toMatch(/^TLSv1\.[23]$/);
    expect(tls.cipher).toMatch(/^[A-Z0-9_-]+$/);
    expect(failure).toMatchObject({
      ...tls,
      listener: 't-pop3s',
      remote: '127.0.0.1',
      rport: client.port,
      mechanism: 'PLAIN',
      user: 'bob',
      outcome: 'failure',
      code: 'AUTH_FAILED',
      reason: 'bad-password',
      msg: 'login failed',
    });
    expect(failure).not.toHaveProperty('backend');
    expect(success).toMatchObject({
      ...tls,
      listener: 't-pop3s',
      remote: '127.0.0.1',
      mechanism: 'PLAIN',
      backend: `127.0.0.1:${forwarder.port}`,
      msg: 'login succeeded',
    });
    expect(success).not.toHaveProperty('code');
    expect(gw.rawLog()).not.toContain('not-bobs-password');
  });

  it('a login after STLS carries the negotiated TLS version and cipher', async () => {
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('STLS\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await c.startTls(pki.caFile);
    const client = tlsFacts(c.socket as TLSSocket);
    c.send('USER alice\r\nPASS Alice-front-pw\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('QUIT\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await c.closed();
    const rec = await waitForLog(gw, (l) => l.event === 'login' && l.listener === 't-pop3' && l.rport === client.port);
    expect(rec).toMatchObject({ outcome: 'success', mechanism: 'USER', user: 'alice', tls: client.tls, cipher: client.cipher });
    expect(client.tls).toMatch(/^TLSv1\.[23]$/);
    expect(loginEvents(rec.cid)).toHaveLength(1);
  });
});

describe('certificate expiry', () => {
  const series = (exp: Exposition) => exp.samples.filter((s) => s.name === 'popgate_tls_certificate_expiry_timestamp_seconds');
  const notAfter = (file: string): number => Math.floor(Date.parse(new X509Certificate(readFileSync(file)).validTo) / 1000);

  it("exports every listener certificate's notAfter, and follows a renewal written on disk", async () => {
    const first = series(await scrape());
    expect(first.map((s) => s.labels.listener).sort()).toEqual(gw.gateway.bound.map((b) => b.name).sort());
    for (const s of first) expect(s).toMatchObject({ labels: { cert_file: pki.certFile }, value: notAfter(pki.certFile) });
    // A renewal valid for 30 days (the test PKI's first one: 825), written the way renewal tools do.
    const next = await issueCert(pki, { name: 'renewed', dns: ['localhost'], ips: ['127.0.0.1'], days: 30 });
    const want = notAfter(next.certFile);
    expect(want).toBeLessThan(notAfter(pki.certFile));
    await copyFile(next.keyFile, `${pki.keyFile}.new`);
    await copyFile(next.certFile, `${pki.certFile}.new`);
    await rename(`${pki.keyFile}.new`, pki.keyFile);
    await rename(`${pki.certFile}.new`, pki.certFile);
    const renewed = await waitFor('the renewed certificate in /metrics', async () => {
      const now = series(await scrape());
      return now.length === first.length && now.every((s) => s.value === want) ? now : undefined;
    });
    expect(renewed.map((s) => s.labels.cert_file)).toEqual(first.map(() => pki.certFile));
  });
});

describe('/readyz', () => {
  async function readyz(): Promise<{ status: number; reasons: string[] }> {
    const r = await admin('/readyz');
    const body = (await r.json()) as { reasons: string[] };
    return { status: r.status, reasons: body.reasons };
  }

  it('is 503 while the backend is down and 200 again once it is back', async () => {
    expect((await readyz()).status).toBe(200);
    await forwarder.close();
    let last = await readyz();
    await waitFor(
      '/readyz 503 with the backend down',
      async () => {
        last = await readyz();
        return last.status === 503;
      },
      POLL,
    );
    expect(last.reasons).toEqual([expect.stringMatching(new RegExp(`^backend: 127\\.0\\.0\\.1:${forwarder.port} ECONNREFUSED$`))]);
    // Liveness does not depend on the backend.
    expect((await admin('/healthz')).status).toBe(200);
    await forwarder.open();
    await waitFor('/readyz 200 with the backend back', async () => (await readyz()).status === 200, POLL);
  });

  it('is 503 (draining) after stop() while a session drains; the admin listener closes last', async () => {
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send(plain('alice', 'Alice-front-pw'));
    expect(await c.line()).toMatch(/^\+OK/);
    const port = gw.adminPort();
    const stopped = gw.gateway.stop(20_000);
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.reasons).toContain('draining: shutting down');
    expect((await admin('/healthz')).status).toBe(200);
    c.send('QUIT\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await stopped;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

describe('start-up', () => {
  it('an admin port in use is a start-up error naming it', async () => {
    const blocker = createServer();
    const port = await listenLoopback(blocker);
    try {
      await expect(
        startTestGateway({
          users: CLIENTS,
          backendPort: forwarder.port,
          certFile: pki.certFile,
          keyFile: pki.keyFile,
          login: masterLogin(MASTER),
          extra: `admin: { address: 127.0.0.1, port: ${port} }`,
        }),
      ).rejects.toThrow(new RegExp(`admin: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});
