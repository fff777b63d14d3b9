import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { readinessBody, startAdminServer, type AdminServer, type Readiness } from '../../src/observability/admin-server.js';
import { listenLoopback } from '../helpers/servers.js';

const log = pino({ level: 'silent' });

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One HTTP request without keep-alive (node:http, so any method and raw path works). */
function ask(port: number, method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let admin: AdminServer | undefined;
let blocker: Server | undefined;

afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await new Promise<void>((r) => (blocker ? blocker.close(() => r()) : r()));
  blocker = undefined;
});

/** An admin server with a fake metrics source and a readiness the test controls. */
async function start(state: { readiness: Readiness | Error; metrics?: string }): Promise<AdminServer> {
  admin = await startAdminServer({
    address: '127.0.0.1',
    port: 0,
    metrics: {
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      render: () => Promise.resolve(state.metrics ?? '# HELP x_total x\n# TYPE x_total counter\nx_total 3\n'),
    },
    readiness: () => (state.readiness instanceof Error ? Promise.reject(state.readiness) : Promise.resolve(state.readiness)),
    log,
  });
  return admin;
}

const READY: Readiness = { ready: true, checks: [{ name: 'listeners', ok: true }, { name: 'backend', ok: true, detail: 'reachable: 127.0.0.1:110' }] };
const UNREADY: Readiness = {
  ready: false,
  checks: [
    { name: 'listeners', ok: true },
    { name: 'backend', ok: false, detail: '127.0.0.1:110 ECONNREFUSED' },
    { name: 'draining', ok: false, detail: 'shutting down' },
  ],
};

describe('admin HTTP server', () => {
  it('binds an ephemeral port and answers /healthz with 200 ok', async () => {
    const a = await start({ readiness: READY });
    expect(a.port).toBeGreaterThan(0);
    expect(a.address).toBe('127.0.0.1');
    const r = await ask(a.port, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok\n');
    expect(r.headers['cache-control']).toBe('no-store');
  });

  it('serves /metrics with the registry content type (query strings ignored)', async () => {
    const a = await start({ readiness: READY });
    for (const path of ['/metrics', '/metrics?name[]=x_total']) {
      const r = await ask(a.port, 'GET', path);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(r.body).toContain('x_total 3\n');
    }
  });

  it('/readyz is 200 when ready and 503 with the failing checks as reasons when not', async () => {
    const state: { readiness: Readiness | Error } = { readiness: READY };
    const a = await start(state);
    const ok = await ask(a.port, 'GET', '/readyz');
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toBe('application/json');
    expect(JSON.parse(ok.body)).toEqual({ ready: true, reasons: [], checks: READY.checks });

    state.readiness = UNREADY;
    const bad = await ask(a.port, 'GET', '/readyz');
    expect(bad.status).toBe(503);
    expect(JSON.parse(bad.body)).toMatchObject({
      ready: false,
      reasons: ['backend: 127.0.0.1:110 ECONNREFUSED', 'draining: shutting down'],
    });

    state.readiness = READY;
    expect((await ask(a.port, 'GET', '/readyz')).status).toBe(200);
  });

  it('answers 500 when the readiness check itself throws', async () => {
    const a = await start({ readiness: new Error('boom') });
    const r = await ask(a.port, 'GET', '/readyz');
    expect(r.status).toBe(500);
    expect(r.body).toBe('internal error\n');
    // The server carries on.
    expect((await ask(a.port, 'GET', '/healthz')).status).toBe(200);
  });

  it('answers 404 for other paths and 405 (Allow: GET) for other methods', async () => {
    const a = await start({ readiness: READY });
    for (const path of ['/', '/metricsx', '/healthz/', '/readyz/x', '/favicon.ico']) {
      const r = await ask(a.port, 'GET', path);
      expect(r.status, path).toBe(404);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']) {
      const r = await ask(a.port, method, '/metrics');
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe('GET');
    }
    expect((await ask(a.port, 'POST', '/nothing-here')).status).toBe(404);
  });

  it('refuses to start on a port in use, with a clear message', async () => {
    blocker = createServer();
    const port = await listenLoopback(blocker);
    await expect(
      startAdminServer({ address: '127.0.0.1', port, metrics: { contentType: 'text/plain', render: () => Promise.resolve('') }, readiness: () => Promise.resolve(READY), log }),
    ).rejects.toThrow(new RegExp(`^admin: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
  });

  it('close() stops listening and ends open keep-alive connections', async () => {
    const a = await start({ readiness: READY });
    const port = a.port;
    // A keep-alive connection held open by fetch's pool.
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(r.status).toBe(200);
    await r.text();
    await a.close();
    admin = undefined;
    await expect(ask(port, 'GET', '/healthz')).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('readinessBody', () => {
  it('lists the failing checks as "name: detail" reasons', () => {
    expect(JSON.parse(readinessBody(UNREADY))).toEqual({
      ready: false,
      reasons: ['backend: 127.0.0.1:110 ECONNREFUSED', 'draining: shutting down'],
      checks: UNREADY.checks,
    });
    expect(JSON.parse(readinessBody({ ready: false, checks: [{ name: 'listeners', ok: false }] })).reasons).toEqual(['listeners']);
  });
});
