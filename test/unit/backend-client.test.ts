import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CapabilityMemory, capabilityKey } from '../../src/backend/capabilities.js';
import { openBackendSession } from '../../src/backend/client.js';
import type { BackendLogin, BackendSession, BackendTarget, BackendTimeouts } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { closeServer, listenLoopback, plainTarget } from '../helpers/servers.js';
import { waitFor } from '../helpers/wait.js';

const T: BackendTimeouts = { connectMs: 2000, greetingMs: 2000, loginMs: 2000 };

/** A tiny POP3-ish server that records every byte and answers lines from a script. */
interface Scripted {
  readonly port: number;
  received(): string;
  connections(): number;
  /** Resolves when a connection has been closed by the peer. */
  closedOnce(): Promise<void>;
  close(): Promise<void>;
}

async function scripted(opts: {
  greeting?: string | undefined;
  reply?: (line: string) => string | undefined;
}): Promise<Scripted> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let onClosed: (() => void) | undefined;
  const closed = new Promise<void>((r) => (onClosed = r));
  const server: Server = createServer((sock) => {
    connections++;
    sockets.add(sock);
    let buf = '';
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      buf += c.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const r = opts.reply?.(line);
        if (r !== undefined) sock.write(r);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      sockets.delete(sock);
      onClosed?.();
    });
    if (opts.greeting !== undefined) sock.write(opts.greeting);
  });
  return {
    port: await listenLoopback(server),
    received: () => Buffer.concat(chunks).toString('latin1'),
    connections: () => connections,
    closedOnce: () => closed,
    close: () => closeServer(server, sockets),
  };
}

async function expectGatewayError(p: Promise<unknown>, code: GatewayError['code']): Promise<GatewayError> {
  const err = await p.then(
    () => {
      throw new Error(`expected ${code}, got a session`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  const gw = err as GatewayError;
  expect(gw.code).toBe(code);
  return gw;
}

/** Writes a command on a logged-in session and reads one line back. */
async function ask(session: BackendSession, line: string): Promise<string> {
  return LineClient.wrap(session.socket).cmd(line);
}

/**
 * How many client sockets were created while `p` was pending: node:net
 * publishes each one on 'net.client.socket' as it is made, so "never
 * connected" is a fact seen, not a quiet moment waited out.
 */
async function socketsCreatedWhile(p: () => Promise<void>): Promise<number> {
  let made = 0;
  const count = (): void => {
    made++;
  };
  subscribe('net.client.socket', count);
  try {
    await p();
  } finally {
    unsubscribe('net.client.socket', count);
  }
  return made;
}

function checkPristine(session: BackendSession): void {
  const s = session.socket;
  expect(s.isPaused()).toBe(true);
  for (const ev of ['data', 'error', 'close', 'connect', 'timeout']) expect(s.listenerCount(ev)).toBe(0);
  // net.Socket keeps one internal 'end' listener of its own.
  expect(s.listenerCount('end')).toBe(1);
}

describe('openBackendSession against the demo backend', () => {
  let demo: DemoBackend;
  beforeAll(async () => {
    demo = await startDemoBackend({
      users: { alice: 'alice pw', bob: 'bobpw' },
      masterUser: 'gateway',
      masterPassword: 'master:pw',
      messages: { alice: ['Subject: x\r\n\r\nhi\r\n'], bob: [] },
    });
  });
  afterAll(async () => {
    await demo.close();
  });

  const endpoint = (): { host: string; port: number } => ({ host: '127.0.0.1', port: demo.port });
  const target = (): BackendTarget => plainTarget(demo.port);

  const cases: [string, BackendLogin, string][] = [
    ['user-pass', { method: 'user-pass', user: 'alice', password: 'alice pw' }, '+OK 1 '],
    ['user-pass with master separator', { method: 'user-pass', user: 'bob*gateway', password: 'master:pw' }, '+OK 0 0'],
    ['auth-plain without authzid', { method: 'auth-plain', authzid: '', authcid: 'bob', password: 'bobpw' }, '+OK 0 0'],
    [
      'auth-plain master (authzid = user)',
      { method: 'auth-plain', authzid: 'alice', authcid: 'gateway', password: 'master:pw' },
      '+OK 1 ',
    ],
  ];

  for (const [name, login, stat] of cases) {
    it(`logs in with ${name}`, async () => {
      const session = await openBackendSession({ target: target(), timeouts: T, login });
      try {
        expect(session.loginReply).toBe('+OK Logged in.');
        expect(session.leftover.length).toBe(0);
        expect(session.endpoint).toEqual(endpoint());
        expect(session.link).toEqual({
          greeting: expect.stringMatching(/^\+OK/) as unknown,
          proxyProtocol: 'none',
          xclientOffered: false,
          xclientSent: false,
          capaAsked: false,
          pipelined: false,
        });
        checkPristine(session);
        expect(await ask(session, 'STAT')).toMatch(new RegExp(`^\\${stat}`));
      } finally {
        session.socket.destroy();
      }
    });
  }

  it('maps a wrong password to BACKEND_LOGIN_REJECTED, with the backend text but not the secret', async () => {
    const err = await expectGatewayError(
      openBackendSession({ target: target(), timeouts: T, login: { method: 'user-pass', user: 'alice', password: 'nope-secret' } }),
      'BACKEND_LOGIN_REJECTED',
    );
    expect(err.detail).toContain('-ERR [AUTH] Authentication failed.');
    expect(err.message).not.toContain('nope-secret');
  });

  it('maps a wrong master password over AUTH PLAIN to BACKEND_LOGIN_REJECTED', async () => {
    await expectGatewayError(
      openBackendSession({
        target: target(),
        timeouts: T,
        login: { method: 'auth-plain', authzid: 'alice', authcid: 'gateway', password: 'bad' },
      }),
      'BACKEND_LOGIN_REJECTED',
    );
  });
});

describe('openBackendSession: USER and PASS pipelined (backend.pipelining)', () => {
  let piped: DemoBackend;
  let plain: DemoBackend;
  const users = { alice: 'alice pw' };
  const messages = { alice: ['Subject: x\r\n\r\nhi\r\n'] };
  const login: BackendLogin = { method: 'user-pass', user: 'alice', password: 'alice pw' };
  beforeAll(async () => {
    piped = await startDemoBackend({ users, messages });
    plain = await startDemoBackend({ users, messages, pipelining: false });
  });
  afterAll(async () => {
    await piped.close();
    await plain.close();
  });

  /** Logs in, checks the session works, and returns how the link went; the socket is closed. */
  async function loginOnce(demo: DemoBackend, memory: CapabilityMemory, pipelining: 'auto' | 'off' = 'auto') {
    const session = await openBackendSession({ target: plainTarget(demo.port), timeouts: T, login, pipelining, capabilities: memory });
    try {
      checkPristine(session);
      expect(session.leftover.length).toBe(0);
      expect(await ask(session, 'STAT')).toMatch(/^\+OK 1 /);
      return { link: session.link, method: session.loginMethod };
    } finally {
      session.socket.destroy();
    }
  }

  /** The reads of `demo` since `from` that held USER or PASS. */
  const loginReads = (demo: DemoBackend, from: number): string[][] =>
    demo
      .readLog()
      .slice(from)
      .filter((r) => r.includes('USER') || r.includes('PASS'))
      .map((r) => [...r]);

  it('asks CAPA of an unknown backend, learns PIPELINING, and sends USER and PASS in one write from then on', async () => {
    const memory = new CapabilityMemory();
    const from = piped.readLog().length;
    const first = await loginOnce(piped, memory);
    expect(first.link).toMatchObject({ capaAsked: true, pipelined: true });
    expect(first.method).toBe('user-pass-pipelined');
    expect(memory.get(capabilityKey(`127.0.0.1:${piped.port}`, 'none'))).toMatchObject({ pipelining: true });
    const second = await loginOnce(piped, memory);
    expect(second.link).toMatchObject({ capaAsked: false, pipelined: true });
    expect(second.method).toBe('user-pass-pipelined');
    const reads = piped.readLog().slice(from);
    expect(reads.flat().filter((v) => v === 'CAPA')).toHaveLength(1);
    expect(loginReads(piped, from)).toEqual([
      ['USER', 'PASS'],
      ['USER', 'PASS'],
    ]);
  });

  it('a backend without PIPELINING gets USER, then PASS after its answer, and is not asked again', async () => {
    const memory = new CapabilityMemory();
    const from = plain.readLog().length;
    const first = await loginOnce(plain, memory);
    expect(first.link).toMatchObject({ capaAsked: true, pipelined: false });
    expect(first.method).toBe('user-pass');
    expect(memory.get(capabilityKey(`127.0.0.1:${plain.port}`, 'none'))).toMatchObject({ pipelining: false });
    const second = await loginOnce(plain, memory);
    expect(second.link).toMatchObject({ capaAsked: false, pipelined: false });
    expect(plain.readLog().slice(from).flat().filter((v) => v === 'CAPA')).toHaveLength(1);
    expect(loginReads(plain, from)).toEqual([['USER'], ['PASS'], ['USER'], ['PASS']]);
  });

  it('a legacy server that hangs up at CAPA fails one login, then is never asked again', async () => {
    // RFC 1939 only: CAPA makes it close the connection; USER and PASS work, one at a time.
    const commands: string[] = [];
    const conns = new Set<Socket>();
    const legacy = createServer((sock: Socket) => {
      conns.add(sock);
      sock.write('+OK legacy POP3 ready\r\n');
      let buf = '';
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          commands.push(line.split(' ')[0] ?? '');
          if (line === 'CAPA') sock.destroy();
          else if (line === 'STAT') sock.write('+OK 0 0\r\n');
          else sock.write('+OK\r\n');
        }
      });
    });
    const port = await listenLoopback(legacy);
    try {
      const memory = new CapabilityMemory();
      const err = await openBackendSession({ target: plainTarget(port), timeouts: T, login, pipelining: 'auto', capabilities: memory }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).message).toMatch(/connection closed by the backend during capa/);
      expect(memory.get(capabilityKey(`127.0.0.1:${port}`, 'none'))).toMatchObject({ pipelining: false, permanent: true });
      for (let i = 0; i < 2; i++) {
        const session = await openBackendSession({ target: plainTarget(port), timeouts: T, login, pipelining: 'auto', capabilities: memory });
        expect(session.link).toMatchObject({ capaAsked: false, pipelined: false });
        session.socket.destroy();
      }
      expect(commands).toEqual(['CAPA', 'USER', 'PASS', 'USER', 'PASS']);
    } finally {
      await closeServer(legacy, conns);
    }
  });

  it('pipelining off: no CAPA, USER then PASS, nothing learned', async () => {
    const memory = new CapabilityMemory();
    const from = piped.readLog().length;
    const r = await loginOnce(piped, memory, 'off');
    expect(r.link).toMatchObject({ capaAsked: false, pipelined: false });
    expect(memory.size).toBe(0);
    expect(piped.readLog().slice(from).flat()).not.toContain('CAPA');
    expect(loginReads(piped, from)).toEqual([['USER'], ['PASS']]);
  });

  it('AUTH PLAIN is never preceded by CAPA', async () => {
    const memory = new CapabilityMemory();
    const from = piped.readLog().length;
    const session = await openBackendSession({
      target: plainTarget(piped.port),
      timeouts: T,
      login: { method: 'auth-plain', authzid: '', authcid: 'alice', password: 'alice pw' },
      pipelining: 'auto',
      capabilities: memory,
    });
    session.socket.destroy();
    expect(session.loginMethod).toBe('auth-plain');
    expect(session.link.capaAsked).toBe(false);
    expect(piped.readLog().slice(from).flat()).toEqual(['AUTH']);
    expect(memory.size).toBe(0);
  });

  it('a pipelined USER refused: fails with its code, the secret not in the detail', async () => {
    const memory = new CapabilityMemory();
    memory.learned(capabilityKey(`127.0.0.1:${piped.port}`, 'none'), true);
    const err = await expectGatewayError(
      openBackendSession({
        target: plainTarget(piped.port),
        timeouts: T,
        login: { method: 'user-pass', user: 'alice', password: 'wrong-secret' },
        pipelining: 'auto',
        capabilities: memory,
      }),
      'BACKEND_LOGIN_REJECTED',
    );
    expect(err.detail).toContain('PASS refused');
    expect(err.message).not.toContain('wrong-secret');
  });
});

describe('openBackendSession failures', () => {
  const servers: Scripted[] = [];
  const start = async (o: Parameters<typeof scripted>[0]): Promise<Scripted> => {
    const s = await scripted(o);
    servers.push(s);
    return s;
  };
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  const userPass: BackendLogin = { method: 'user-pass', user: 'alice', password: 'pw' };
  /** openBackendSession against a scripted server, as alice with T unless overridden. */
  const openAt = (s: Scripted, o: Partial<Parameters<typeof openBackendSession>[0]> = {}): Promise<BackendSession> =>
    openBackendSession({ target: plainTarget(s.port), timeouts: T, login: userPass, ...o });

  it('connection refused → BACKEND_UNREACHABLE naming host:port and errno', async () => {
    const port = await freePort(); // nothing listens there any more
    const err = await expectGatewayError(
      openBackendSession({ target: plainTarget(port), timeouts: T, login: userPass }),
      'BACKEND_UNREACHABLE',
    );
    expect(err.detail).toContain(`127.0.0.1:${port}`);
    expect(err.detail).toContain('ECONNREFUSED');
  });

  it('a silent server → BACKEND_TIMEOUT in the greeting phase', async () => {
    const s = await start({});
    const clock = new FakeClock();
    let settled = false;
    const p = openAt(s, { clock, timeouts: { connectMs: 1000, greetingMs: 150, loginMs: 1000 } });
    p.catch(() => undefined).finally(() => (settled = true));
    // Connected: the 1000 ms connect deadline is cancelled and 150 ms are given to the greeting.
    const greeting = await clock.nextTimer(150);
    expect(clock.requested).toEqual([1000, 150]);
    expect(clock.pending).toEqual([greeting]);
    await Promise.resolve();
    expect(settled).toBe(false); // nothing fails before the deadline fires
    greeting.fire();
    const err = await expectGatewayError(p, 'BACKEND_TIMEOUT');
    expect(err.detail).toContain('greeting');
    expect(clock.pending).toEqual([]);
    await s.closedOnce(); // the socket was destroyed
  });

  it('a server that never answers the login → BACKEND_TIMEOUT in the login phase', async () => {
    const s = await start({ greeting: '+OK hi\r\n' });
    const clock = new FakeClock();
    const p = openAt(s, { clock, timeouts: { connectMs: 1000, greetingMs: 1000, loginMs: 150 } });
    const login = await clock.nextTimer(150);
    expect(clock.requested).toEqual([1000, 1000, 150]);
    await waitFor('USER at the server', () => s.received() === 'USER alice\r\n', { intervalMs: 5 });
    login.fire();
    const err = await expectGatewayError(p, 'BACKEND_TIMEOUT');
    expect(err.detail).toContain('login');
    expect(s.received()).toBe('USER alice\r\n');
  });

  it('a -ERR greeting → BACKEND_PROTOCOL with the backend text', async () => {
    const s = await start({ greeting: '-ERR [SYS/TEMP] maintenance\r\n' });
    const err = await expectGatewayError(
      openAt(s),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('-ERR [SYS/TEMP] maintenance');
    expect(s.received()).toBe('');
  });

  it('a garbage greeting is truncated in the detail', async () => {
    const s = await start({ greeting: `HTTP/1.1 400 ${'x'.repeat(1000)}\r\n` });
    const err = await expectGatewayError(
      openAt(s),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('HTTP/1.1 400');
    expect((err.detail ?? '').length).toBeLessThan(400);
  });

  it('an overlong line without LF → BACKEND_PROTOCOL', async () => {
    const s = await start({ greeting: `+OK ${'y'.repeat(5000)}` });
    const err = await expectGatewayError(
      openAt(s),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('longer than');
  });

  it('the backend closing during login → BACKEND_PROTOCOL', async () => {
    const s = await start({ greeting: '+OK hi\r\n', reply: () => undefined });
    const p = openAt(s);
    // The login has started (USER arrived, never answered) before the server goes.
    await waitFor('USER at the server', () => s.received() === 'USER alice\r\n', { intervalMs: 5 });
    await s.close();
    await expectGatewayError(p, 'BACKEND_PROTOCOL');
  });

  it.each([
    ['-ERR [IN-USE] mailbox locked', 'BACKEND_IN_USE'],
    ['-ERR [SYS/TEMP] try later', 'BACKEND_LOGIN_TEMP'],
    ['-ERR [AUTH] bad', 'BACKEND_LOGIN_REJECTED'],
    ['-ERR no such user', 'BACKEND_LOGIN_REJECTED'],
  ] as const)('PASS answered %s → %s', async (answer, code) => {
    const s = await start({
      greeting: '+OK hi\r\n',
      reply: (l) => (l.startsWith('USER') ? '+OK\r\n' : `${answer}\r\n`),
    });
    const err = await expectGatewayError(
      openAt(s),
      code,
    );
    expect(err.detail).toContain(answer);
    expect(s.received()).toBe('USER alice\r\nPASS pw\r\n');
  });

  it('-ERR to USER stops before PASS is sent', async () => {
    const s = await start({ greeting: '+OK hi\r\n', reply: () => '-ERR [IN-USE] locked\r\n' });
    await expectGatewayError(
      openAt(s),
      'BACKEND_IN_USE',
    );
    expect(s.received()).toBe('USER alice\r\n');
  });

  it('AUTH PLAIN: sends the initial response in one line, or again after "+ "', async () => {
    const token = Buffer.from('alice\0gateway\0m pw').toString('base64');
    const s = await start({
      greeting: '+OK hi\r\n',
      reply: (l) => (l.startsWith('AUTH PLAIN') ? '+ \r\n' : l === token ? '+OK welcome alice\r\n' : '-ERR ?\r\n'),
    });
    const session = await openAt(s, {
      login: { method: 'auth-plain', authzid: 'alice', authcid: 'gateway', password: 'm pw' },
    });
    session.socket.destroy();
    expect(session.loginReply).toBe('+OK welcome alice');
    expect(s.received()).toBe(`AUTH PLAIN ${token}\r\n${token}\r\n`);
  });

  it('keeps the bytes sent after the +OK login reply as leftover', async () => {
    const s = await start({
      greeting: '+OK hi\r\n',
      reply: (l) => (l.startsWith('USER') ? '+OK\r\n' : '+OK ready\r\nEXTRA\r\nmore'),
    });
    const session = await openAt(s);
    try {
      expect(session.loginReply).toBe('+OK ready');
      expect(session.leftover.toString()).toBe('EXTRA\r\nmore');
      checkPristine(session);
    } finally {
      session.socket.destroy();
    }
  });

  it.each<[string, BackendLogin]>([
    ['CRLF in the user', { method: 'user-pass', user: 'alice\r\nDELE 1', password: 'pw' }],
    ['LF in the password', { method: 'user-pass', user: 'alice', password: 'pw\nQUIT' }],
    ['NUL in the authcid', { method: 'auth-plain', authzid: '', authcid: 'a\0b', password: 'pw' }],
    ['CR in the authzid', { method: 'auth-plain', authzid: 'x\r', authcid: 'gateway', password: 'pw' }],
  ])('refuses %s before writing anything', async (_name, login) => {
    const s = await start({ greeting: '+OK hi\r\n', reply: () => '+OK\r\n' });
    let err: GatewayError | undefined;
    const made = await socketsCreatedWhile(async () => {
      err = await expectGatewayError(openAt(s, { login }), 'BACKEND_PROTOCOL');
    });
    expect(err?.detail).toBe('credential contains CR/LF/NUL');
    expect(made).toBe(0); // no socket, so nothing can ever be written
    expect(s.received()).toBe('');
    expect(s.connections()).toBe(0);
  });

  it('abort destroys the connection and rejects with the reason', async () => {
    const s = await start({ greeting: '+OK hi\r\n' });
    const ac = new AbortController();
    const p = openAt(s, { signal: ac.signal });
    await waitFor('USER at the server', () => s.received() === 'USER alice\r\n', { intervalMs: 5 });
    const reason = new Error('client went away');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    await s.closedOnce();
    expect(s.received()).toBe('USER alice\r\n');
  });

  it('an already aborted signal rejects without connecting', async () => {
    const s = await start({ greeting: '+OK hi\r\n' });
    const ac = new AbortController();
    ac.abort();
    const made = await socketsCreatedWhile(async () => {
      await expect(openAt(s, { signal: ac.signal })).rejects.toThrow();
    });
    expect(made).toBe(0); // never connected
    expect(s.connections()).toBe(0);
  });
});
