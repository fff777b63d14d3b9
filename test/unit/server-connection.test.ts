/**
 * ClientConnection over in-memory stream pairs (no TCP) with a fake login
 * service: the glue between a socket, the protocol core and the login
 * service. What the core decides is tested in pop3-session*.test.ts; here,
 * what only the glue can get wrong: bytes across the login hand-off, STLS
 * and pipelined plaintext, a client that leaves mid-login, and the failure
 * delay (fake timers: nothing sleeps, no wall clock is read).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { duplexPair, type Duplex } from 'node:stream';
import { connect as tlsConnect, createSecureContext, TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BackendSession } from '../../src/backend/types.js';
import { GatewayError, errorReply } from '../../src/errors.js';
import { KerberosError, type GssAcceptor } from '../../src/kerberos/types.js';
import { noopMetrics, type LoginAttempt, type Metrics } from '../../src/observability/metrics.js';
import { ClientConnection, type ConnectionContext } from '../../src/server/connection.js';
import type { LoginFailure, LoginRequest, LoginResult, LoginService, Refusal } from '../../src/server/login-service.js';
import type { TlsHandshaker } from '../../src/server/tls-handshaker.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { sessionOptions } from '../helpers/pop3-session.js';

type LogRecord = Record<string, unknown> & { msg: string };

/** Lines as they arrive on one end of a pair; `next()` waits for the next one (no timers). */
class LineReader {
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer += chunk.toString('latin1');
    let i: number;
    while ((i = this.buffer.indexOf('\r\n')) >= 0) {
      this.lines.push(this.buffer.slice(0, i));
      this.buffer = this.buffer.slice(i + 2);
    }
    this.waiter?.();
  };

  constructor(private readonly stream: Duplex) {
    stream.on('data', this.onData);
  }

  async next(): Promise<string> {
    while (this.lines.length === 0) await new Promise<void>((r) => (this.waiter = r));
    return this.lines.shift()!;
  }

  /** Lines received and not yet taken. */
  get pending(): readonly string[] {
    return this.lines;
  }

  /** Stop reading (the stream is handed to TLS). */
  detach(): void {
    this.stream.removeListener('data', this.onData);
    this.stream.pause();
  }
}

/** A login the test settles by hand; `requests` are what the connection asked. */
class FakeLoginService implements LoginService {
  readonly requests: LoginRequest[] = [];
  readonly refusals: Refusal[] = [];
  private settle: ((r: LoginResult) => void) | undefined;
  /** What recordFailure resolves (a refused GSSAPI token). */
  refusalDelayMs = 0;

  login(request: LoginRequest): Promise<LoginResult> {
    this.requests.push(request);
    return new Promise((resolve) => (this.settle = resolve));
  }

  recordFailure(_client: unknown, refusal: Refusal): Promise<LoginFailure> {
    this.refusals.push(refusal);
    return Promise.resolve({ ok: false, error: refusal.error, delayMs: this.refusalDelayMs });
  }

  /** Users the throttle has locked out (SCRAM asks before trying a proof). */
  readonly lockedUsers = new Set<string>();

  locked(_client: unknown, user: string): Promise<GatewayError | undefined> {
    return Promise.resolve(this.lockedUsers.has(user) ? new GatewayError('LOGIN_THROTTLED', 'locked out') : undefined);
  }

  resolve(result: LoginResult): void {
    if (!this.settle) throw new Error('no login pending');
    this.settle(result);
  }
}

/** The backend side of a logged-in session: what the gateway writes to it, and whether it was cut. */
function fakeBackend(): { session: BackendSession; far: Duplex; received: () => string } {
  const [near, far] = duplexPair();
  let received = '';
  far.on('data', (d: Buffer) => (received += d.toString('latin1')));
  const session: BackendSession = {
    socket: near as unknown as Socket,
    loginReply: '+OK Logged in.',
    leftover: Buffer.alloc(0),
    endpoint: { host: '10.0.0.5', port: 110 },
  };
  return { session, far, received: () => received };
}

interface Harness {
  readonly client: Duplex;
  readonly server: Duplex;
  readonly reader: LineReader;
  readonly login: FakeLoginService;
  readonly logs: LogRecord[];
  readonly attempts: LoginAttempt[];
  readonly connection: ClientConnection;
}

const harnesses: Harness[] = [];

function open(over: Partial<ConnectionContext> = {}): Harness {
  const [server, client] = duplexPair();
  // The one net.Socket method the connection calls that a Duplex lacks.
  Object.assign(server, { setNoDelay: () => server });
  const logs: LogRecord[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) });
  const attempts: LoginAttempt[] = [];
  const metrics: Metrics = { ...noopMetrics, loginAttempt: (a) => void attempts.push(a) };
  const login = new FakeLoginService();
  const ctx: ConnectionContext = {
    listenerName: 'pop3',
    session: sessionOptions({ allowPlaintextAuth: true, stlsAvailable: false }),
    login,
    preAuthTimeoutMs: 60_000,
    idleTimeoutMs: 0,
    failureDelayMs: 2_000,
    shutdownSignal: new AbortController().signal,
    metrics,
    listenerMetrics: noopMetrics.listener('pop3'),
    ...over,
  };
  const peer = { remoteAddress: '192.0.2.7', remotePort: 40000, localAddress: '192.0.2.1', localPort: 110 };
  const connection = new ClientConnection(server as unknown as Socket, peer, ctx, logger, '000001');
  const reader = new LineReader(client);
  connection.start();
  const h = { client, server, reader, login, logs, attempts, connection };
  harnesses.push(h);
  return h;
}

/** Let stream events and promise callbacks run (setImmediate is not faked here). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** Waits until the connection asked the service to log in. */
async function loginAsked(h: Harness): Promise<LoginRequest> {
  while (h.login.requests.length === 0) await settle();
  return h.login.requests.at(-1)!;
}

const auditLines = (h: Harness): LogRecord[] => h.logs.filter((l) => l.event === 'login');

/** Greeted, USER/PASS sent, the service asked (and not yet answered). */
async function loginPending(): Promise<{ h: Harness; request: LoginRequest }> {
  const h = open();
  expect(await h.reader.next()).toMatch(/^\+OK /);
  h.client.write('USER alice\r\nPASS secret\r\n');
  expect(await h.reader.next()).toBe('+OK');
  return { h, request: await loginAsked(h) };
}

afterEach(() => {
  vi.useRealTimers();
  for (const h of harnesses.splice(0)) {
    h.client.destroy();
    h.server.destroy();
  }
});

describe('ClientConnection: the login hand-off', () => {
  it('passes commands pipelined behind PASS, and those sent while the login runs, to the backend in order, once each', async () => {
    const h = open();
    expect(await h.reader.next()).toMatch(/^\+OK /);
    h.client.write('USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\n');
    expect(await h.reader.next()).toBe('+OK');
    const request = await loginAsked(h);
    expect(request.credentials).toMatchObject({ mechanism: 'USER', username: 'alice', password: 'secret' });
    expect(request.failureDelayMs).toBe(2_000);
    // Sent while the service is still working: the socket is paused, nothing is lost.
    h.client.write('RETR 1\r\nUID');
    h.client.write('L\r\n');
    await settle();
    const backend = fakeBackend();
    h.login.resolve({ ok: true, user: 'alice', backend: backend.session });
    expect(await h.reader.next()).toBe('+OK Logged in.');
    h.client.write('QUIT\r\n');
    while (!backend.received().endsWith('QUIT\r\n')) await settle();
    expect(backend.received()).toBe('STAT\r\nLIST\r\nRETR 1\r\nUIDL\r\nQUIT\r\n');
    // The backend's replies reach the client.
    backend.far.write('+OK Bye\r\n');
    expect(await h.reader.next()).toBe('+OK Bye');
    expect(h.login.requests).toHaveLength(1);
    expect(auditLines(h)).toMatchObject([{ outcome: 'success', mechanism: 'USER', backend: '10.0.0.5:110', msg: 'login succeeded' }]);
    expect(h.attempts).toEqual([{ mechanism: 'USER', outcome: 'success', code: undefined }]);
  });
});

describe('ClientConnection: STLS', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makeTempTestPki();
  });
  afterAll(async () => {
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  it('discards plaintext pipelined behind STLS: none of it runs, before or after the handshake', async () => {
    const secureContext = createSecureContext({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) });
    const handshaker = {
      handshake: (plain: Duplex) =>
        new Promise<TLSSocket | Error>((resolve) => {
          const secure = new TLSSocket(plain as Socket, { isServer: true, secureContext });
          secure.once('secure', () => resolve(secure));
          secure.once('error', (err) => resolve(err));
        }),
    } as unknown as TlsHandshaker;
    const h = open({ tls: handshaker, session: sessionOptions({ stlsAvailable: true }) });
    expect(await h.reader.next()).toMatch(/^\+OK /);
    const injected = 'USER mallory\r\n';
    h.client.write(`STLS\r\n${injected}`);
    expect(await h.reader.next()).toMatch(/^\+OK /);
    h.reader.detach();
    const secure = tlsConnect({ socket: h.client, ca: readFileSync(pki.caFile), servername: 'localhost' });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const tlsReader = new LineReader(secure);
    // Had the pipelined USER run (before or inside TLS), this PASS would start a login.
    secure.write('PASS secret\r\n');
    expect(await tlsReader.next()).toBe(errorReply('BAD_SEQUENCE'));
    expect(h.login.requests).toHaveLength(0);
    expect(h.logs.find((l) => l.msg === 'discarded plaintext pipelined after STLS')).toMatchObject({ level: 40, bytes: injected.length });
    secure.destroy();
  });
});

describe('ClientConnection: the client leaves mid-login', () => {
  /** A crash (RST): the server's socket closes with an error, no FIN first. */
  const drop = (h: Harness): void => void h.server.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));

  it('aborts the login; the backend link the service was opening ends with it; one `abandoned` line', async () => {
    const { h, request } = await loginPending();
    drop(h);
    await settle();
    expect(request.signal.aborted).toBe(true);
    // The service answers its aborted backend open as a failure: still not a failed login.
    h.login.resolve({ ok: false, error: new GatewayError('BACKEND_UNREACHABLE', 'aborted'), delayMs: 0 });
    await settle();
    expect(auditLines(h)).toMatchObject([{ outcome: 'abandoned', mechanism: 'USER', user: 'alice', msg: 'login abandoned' }]);
    expect(h.attempts).toEqual([{ mechanism: 'USER', outcome: 'abandoned', code: undefined }]);
  });

  it('a backend that accepted just as the client went is cut without QUIT (nothing written to it); one `abandoned` line', async () => {
    const { h, request } = await loginPending();
    drop(h);
    await settle();
    expect(request.signal.aborted).toBe(true);
    const backend = fakeBackend();
    let backendEnded = false;
    backend.far.on('end', () => (backendEnded = true));
    h.login.resolve({ ok: true, user: 'alice', backend: backend.session });
    await settle();
    expect(backend.session.socket.destroyed).toBe(true);
    expect(backendEnded).toBe(true);
    expect(backend.received()).toBe('');
    expect(auditLines(h)).toMatchObject([{ outcome: 'abandoned', mechanism: 'USER', user: 'alice' }]);
    expect(h.attempts).toHaveLength(1);
  });
});

describe('ClientConnection: the failure delay comes from the result', () => {
  it('holds a failed password login’s reply back for the result’s delay, then answers with the catalogue reply', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { h } = await loginPending();
    // Not ctx.failureDelayMs (2 s): the service's policy decided (a throttle's delay).
    h.login.resolve({ ok: false, error: new GatewayError('AUTH_FAILED', 'bad-password'), delayMs: 4_000 });
    await settle();
    expect(auditLines(h)).toMatchObject([{ outcome: 'failure', code: 'AUTH_FAILED', reason: 'bad-password', user: 'alice', delayMs: 4_000 }]);
    await vi.advanceTimersByTimeAsync(3_999);
    await settle();
    expect(h.reader.pending).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await h.reader.next()).toBe(errorReply('AUTH_FAILED'));
    // The session goes on: the next attempt is read and asked.
    h.client.write('USER alice\r\n');
    expect(await h.reader.next()).toBe('+OK');
    expect(auditLines(h)).toHaveLength(1);
  });

  it('answers a failure without a delay at once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { h } = await loginPending();
    h.login.resolve({ ok: false, error: new GatewayError('VERIFIER_UNAVAILABLE', 'down'), delayMs: 0 });
    expect(await h.reader.next()).toBe(errorReply('VERIFIER_UNAVAILABLE'));
    expect(auditLines(h)).toMatchObject([{ level: 50, outcome: 'failure', code: 'VERIFIER_UNAVAILABLE', delayMs: 0 }]);
  });

  it('a refused GSSAPI token goes the same way: counted by the service, one audit line, its delay, then -ERR', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const acceptor: GssAcceptor = {
      step: () => Promise.reject(new KerberosError('replay', 'Request is a replay')),
      client: undefined,
      wrap: () => Promise.reject(new Error('unused')),
      unwrap: () => Promise.reject(new Error('unused')),
      dispose: () => {},
    };
    const h = open({ gss: () => acceptor, session: sessionOptions({ allowPlaintextAuth: true, saslMechanisms: ['GSSAPI'] }) });
    h.login.refusalDelayMs = 3_000;
    expect(await h.reader.next()).toMatch(/^\+OK /);
    h.client.write('AUTH GSSAPI\r\n');
    expect(await h.reader.next()).toBe('+ ');
    h.client.write(`${Buffer.from('a replayed token').toString('base64')}\r\n`);
    while (h.login.refusals.length === 0) await settle();
    expect(h.login.refusals[0]).toMatchObject({ claimedUser: '', failureDelayMs: 2_000 });
    expect(h.login.refusals[0]!.error.code).toBe('AUTH_FAILED');
    await vi.advanceTimersByTimeAsync(2_999);
    await settle();
    expect(h.reader.pending).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await h.reader.next()).toBe(errorReply('AUTH_FAILED'));
    expect(auditLines(h)).toMatchObject([{ outcome: 'failure', mechanism: 'GSSAPI', code: 'AUTH_FAILED', krbFailure: 'replay' }]);
    expect(auditLines(h)[0]).not.toHaveProperty('delayMs');
    expect(h.login.requests).toHaveLength(0);
  });
});
