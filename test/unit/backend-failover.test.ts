import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backendErrorPhase } from '../../src/backend/client.js';
import { isFailoverError, openBackendWithFailover } from '../../src/backend/failover.js';
import type { BackendLinkSession, BackendTarget, BackendTimeouts } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { makeTempTestPki, makeWrongNameCert, type TestCert, type TestPki } from '../helpers/certs.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { freePort as deadPort } from '../helpers/ports.js';
import { closeServer, listenLoopback, plainTarget as plain } from '../helpers/servers.js';

const T: BackendTimeouts = { connectMs: 2000, greetingMs: 300, loginMs: 300 };
const LOGIN = { method: 'user-pass', user: 'alice', password: 'pw' } as const;

type Behaviour =
  | 'ok' // greets, accepts the login
  | 'silent' // accepts the connection, never greets (greeting timeout)
  | 'bad-greeting' // -ERR greeting
  | 'reject-login' // -ERR [AUTH] to PASS
  | 'stall-login'; // greets, never answers USER

interface Fake {
  port: number;
  connections(): number;
  received(): string;
  close(): Promise<void>;
}

const fakes: Fake[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function listen(server: Server, sockets: Set<Socket>, received: string[]): Promise<Fake> {
  let connections = 0;
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => sockets.add(s));
  const f: Fake = {
    port: await listenLoopback(server),
    connections: () => connections,
    received: () => received.join(''),
    close: () => closeServer(server, sockets),
  };
  fakes.push(f);
  return f;
}

function serve(s: Socket, behaviour: Behaviour, received: string[]): void {
  s.on('error', () => {});
  if (behaviour === 'silent') return;
  s.write(behaviour === 'bad-greeting' ? '-ERR [SYS/TEMP] maintenance\r\n' : '+OK ready\r\n');
  s.on('data', (c: Buffer) => {
    const text = c.toString('latin1');
    received.push(text);
    if (behaviour === 'stall-login') return;
    for (const line of text.split('\r\n').filter(Boolean)) {
      if (line.startsWith('USER')) s.write('+OK\r\n');
      else if (line.startsWith('PASS')) s.write(behaviour === 'reject-login' ? '-ERR [AUTH] Authentication failed.\r\n' : '+OK Logged in.\r\n');
    }
  });
}

async function fake(behaviour: Behaviour): Promise<Fake> {
  const sockets = new Set<Socket>();
  const received: string[] = [];
  return listen(createServer((s) => serve(s, behaviour, received)), sockets, received);
}

async function tlsFake(cert: TestCert): Promise<Fake> {
  const sockets = new Set<Socket>();
  const received: string[] = [];
  const server = createTlsServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (s) =>
    serve(s, 'ok', received),
  );
  server.on('tlsClientError', () => {});
  return listen(server, sockets, received);
}

const open = (targets: BackendTarget[], o: { signal?: AbortSignal; clock?: FakeClock } = {}): Promise<BackendLinkSession> =>
  openBackendWithFailover({ targets, timeouts: T, login: LOGIN, ...o });

async function rejection(p: Promise<BackendLinkSession>): Promise<GatewayError> {
  const err = await p.then(
    (s) => {
      s.socket.destroy();
      throw new Error('expected a failure, got a session');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

let pki: TestPki;
let wrongName: TestCert;
beforeAll(async () => {
  pki = await makeTempTestPki();
  wrongName = await makeWrongNameCert(pki);
});
afterAll(async () => {
  await rm(pki.dir, { recursive: true, force: true });
});

describe('openBackendWithFailover moves on', () => {
  it('past a refused connection', async () => {
    const dead = await deadPort();
    const good = await fake('ok');
    const s = await open([plain(dead), plain(good.port)]);
    s.socket.destroy();
    expect(s.endpoint).toEqual({ host: '127.0.0.1', port: good.port });
    expect(s.loginReply).toBe('+OK Logged in.');
  });

  it('past a greeting timeout, in order, and the first target that works wins', async () => {
    const silent = await fake('silent');
    const good1 = await fake('ok');
    const good2 = await fake('ok');
    const clock = new FakeClock();
    const p = open([plain(silent.port), plain(good1.port), plain(good2.port)], { clock });
    // The silent one is given its greeting deadline, and only its firing moves on.
    const greeting = await clock.nextTimer(T.greetingMs);
    expect(clock.requested).toEqual([T.connectMs, T.greetingMs]);
    expect(good1.connections()).toBe(0);
    greeting.fire();
    const s = await p;
    s.socket.destroy();
    // The next target got fresh deadlines: connect, greeting, login.
    expect(clock.requested).toEqual([T.connectMs, T.greetingMs, T.connectMs, T.greetingMs, T.loginMs]);
    expect(s.endpoint.port).toBe(good1.port);
    expect([silent.connections(), good1.connections(), good2.connections()]).toEqual([1, 1, 0]);
    expect(silent.received()).toBe(''); // nothing was sent to the silent one
  });

  it('is stateless: every call starts again with the first target', async () => {
    const silent = await fake('silent');
    const good = await fake('ok');
    for (let i = 0; i < 2; i++) {
      const clock = new FakeClock();
      const p = open([plain(silent.port), plain(good.port)], { clock });
      (await clock.nextTimer(T.greetingMs)).fire(); // the silent one's greeting deadline
      (await p).socket.destroy();
    }
    expect(silent.connections()).toBe(2);
    expect(good.connections()).toBe(2);
  });

  it('rejects with the last error and names every target tried when all are down', async () => {
    const dead1 = await deadPort();
    const silent = await fake('silent');
    const clock = new FakeClock();
    const p = rejection(open([plain(dead1), plain(silent.port)], { clock }));
    (await clock.nextTimer(T.greetingMs)).fire(); // the silent one's greeting deadline
    const err = await p;
    expect(err.code).toBe('BACKEND_TIMEOUT'); // the last one's
    expect(err.detail).toContain('all 2 backends failed');
    expect(err.detail).toContain(`127.0.0.1:${dead1} (BACKEND_UNREACHABLE`);
    expect(err.detail).toContain('ECONNREFUSED');
    expect(err.detail).toContain(`127.0.0.1:${silent.port} (BACKEND_TIMEOUT`);
    expect(err.cause).toBeInstanceOf(GatewayError);
    expect(backendErrorPhase(err)).toBe('greeting');
  });

  it('a single target: its own error, unwrapped', async () => {
    const dead = await deadPort();
    const err = await rejection(open([plain(dead)]));
    expect(err.code).toBe('BACKEND_UNREACHABLE');
    expect(err.detail).toBe(`127.0.0.1:${dead}: ECONNREFUSED during connect`);
  });
});

describe('openBackendWithFailover stops', () => {
  it('on a login rejection (the next backend is not tried)', async () => {
    const rejecting = await fake('reject-login');
    const good = await fake('ok');
    const err = await rejection(open([plain(rejecting.port), plain(good.port)]));
    expect(err.code).toBe('BACKEND_LOGIN_REJECTED');
    expect(err.detail).toContain('stopped at backend 1 of 2');
    expect(good.connections()).toBe(0);
  });

  it('on a timeout after the credentials were sent (login phase)', async () => {
    const stalling = await fake('stall-login');
    const good = await fake('ok');
    const clock = new FakeClock();
    const p = rejection(open([plain(stalling.port), plain(good.port)], { clock }));
    const login = await clock.nthTimer(3); // connect, greeting, then login: armed once USER was written
    expect(login.ms).toBe(T.loginMs);
    login.fire();
    const err = await p;
    expect(err.code).toBe('BACKEND_TIMEOUT');
    expect(backendErrorPhase(err)).toBe('login');
    expect(isFailoverError(err.cause)).toBe(false);
    expect(good.connections()).toBe(0);
  });

  it('on a TLS certificate failure: a security failure, not an outage', async () => {
    const dead = await deadPort();
    const impostor = await tlsFake(wrongName);
    const good = await fake('ok');
    const tlsTarget: BackendTarget = {
      ...plain(impostor.port),
      tls: { mode: 'implicit', caFile: pki.caFile, serverName: 'localhost', verify: true },
    };
    const err = await rejection(open([plain(dead), tlsTarget, plain(good.port)]));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toContain('stopped at backend 2 of 3');
    expect(err.detail).toContain(`127.0.0.1:${dead} (BACKEND_UNREACHABLE`);
    expect(err.detail).toContain('TLS certificate name mismatch');
    expect(impostor.received()).toBe('');
    expect(good.connections()).toBe(0);
  });

  it('on a bad greeting (BACKEND_PROTOCOL)', async () => {
    const bad = await fake('bad-greeting');
    const good = await fake('ok');
    const err = await rejection(open([plain(bad.port), plain(good.port)]));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(good.connections()).toBe(0);
  });

  it('on abort: rejects with the reason and tries nothing more', async () => {
    const silent = await fake('silent');
    const good = await fake('ok');
    const ac = new AbortController();
    const clock = new FakeClock();
    const p = open([plain(silent.port), plain(good.port)], { signal: ac.signal, clock });
    await clock.nextTimer(T.greetingMs); // the first attempt is waiting for its greeting
    const reason = new Error('client went away');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(clock.pending).toEqual([]); // its deadline went with it
    expect(good.connections()).toBe(0);
  });

  it('with no targets: INTERNAL', async () => {
    const err = await rejection(open([]));
    expect(err.code).toBe('INTERNAL');
  });
});
