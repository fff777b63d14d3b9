/**
 * Fault injection against a real Dovecot and the in-process gateway (issue 5
 * item 4): a backend killed mid-RETR, a backend refusing, an auth service
 * down or answering garbage, TLS handshake garbage, clients vanishing at every
 * step, and a burst of failing connections that must not leak descriptors.
 * Whatever breaks: the client gets the right answer or a clean close, other
 * sessions go on, nothing is deleted without a completed QUIT (checked in the
 * maildir), no unhandled rejection, no file-descriptor leak.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { fiveMegabyteMessage, pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { startTestGateway, waitForLog, type LogRecord, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

// --- process-level failure recorder (asserted empty by the last test) -----
const processFaults: string[] = [];
process.on('unhandledRejection', (reason) => {
  processFaults.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
});
process.on('uncaughtException', (err) => {
  processFaults.push(`uncaughtException: ${err.stack ?? String(err)}`);
});

const MASTER = { name: 'popgate', password: `master-${randomBytes(9).toString('hex')}` };
const CLIENTS = [
  { name: 'alice', password: 'Alice-front-pw' },
  { name: 'bob', password: 'Bob-front-pw' },
  { name: 'carol', password: 'Carol-front-pw' },
  { name: 'dave', password: 'Dave-front-pw' },
];
const BACKEND_USERS = CLIENTS.map((c) => ({ name: c.name, password: `backend-${c.name}-${randomBytes(6).toString('hex')}` }));
const LOGIN = `{ mode: master, method: auth-plain, user: ${MASTER.name}, password: ${MASTER.password} }`;

const BIG = fiveMegabyteMessage('x@example.test');
const SMALL = Buffer.from('From: small@example.test\r\nSubject: small\r\n\r\nhello\r\n');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let pki: TestPki;
/** The shared backend: bob (the bystander), carol (vanishing clients), dave (fd burst). */
let dovecot: DovecotInstance;
let gw: TestGateway;
const extraGateways: TestGateway[] = [];
const extraDovecots: DovecotInstance[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: BACKEND_USERS,
    masterUser: MASTER,
    messages: { bob: [SMALL, BIG], carol: [BIG, SMALL], dave: [SMALL] },
  });
  // preAuthTimeout bounds the server-side TLS handshake too (see the pop3s client vanishing after its handshake).
  gw = await gateway({ backendPort: dovecot.port, extra: 'limits: { preAuthTimeout: 5s }' });
});

afterAll(async () => {
  for (const g of extraGateways) await g.stop().catch(() => undefined);
  for (const c of cleanups.reverse()) await c();
  await gw?.stop();
  for (const d of extraDovecots) await d.stop().catch(() => undefined);
  await dovecot?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

async function gateway(opts: {
  backendPort: number;
  extra?: string;
  verifiers?: string[];
  authExtra?: string[];
  timeouts?: string;
}): Promise<TestGateway> {
  return startTestGateway({
    users: CLIENTS,
    backendPort: opts.backendPort,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: LOGIN,
    allowPlaintextAuth: true,
    ...(opts.extra !== undefined ? { extra: opts.extra } : {}),
    ...(opts.verifiers ? { verifiers: opts.verifiers } : {}),
    ...(opts.authExtra ? { authExtra: opts.authExtra } : {}),
    ...(opts.timeouts ? { backendTimeouts: opts.timeouts } : {}),
  });
}

async function extraGateway(opts: Parameters<typeof gateway>[0]): Promise<TestGateway> {
  const g = await gateway(opts);
  extraGateways.push(g);
  return g;
}

/** Greeting read, USER/PASS accepted: a logged-in plaintext session. */
async function login(g: TestGateway, user: string, password: string): Promise<LineClient> {
  const c = await LineClient.plain(g.port('pop3'));
  expect(await c.line()).toMatch(/^\+OK/);
  expect(await c.cmd(`USER ${user}`)).toBe('+OK');
  const reply = await c.cmd(`PASS ${password}`);
  expect(reply, `${user} login`).toMatch(/^\+OK/);
  return c;
}

const pw = (user: string): string => CLIENTS.find((c) => c.name === user)!.password;

/** A full session that reads message `n` byte-exact and QUITs (deletes nothing). */
async function readMessage(g: TestGateway, user: string, n: number): Promise<Buffer> {
  const c = await login(g, user, pw(user));
  const { status, body } = await c.cmdMultiline(`RETR ${n}`);
  expect(status).toMatch(/^\+OK/);
  expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
  await c.closed();
  return unstuff(body);
}

function unstuff(body: Buffer): Buffer {
  return Buffer.from(body.toString('latin1').replace(/(^|\r\n)\.\./g, '$1.'), 'latin1');
}

/** How this file polls: every 20 ms, for up to 10 s. */
const POLL = { timeoutMs: 10_000, intervalMs: 20 } as const;

/**
 * Bytes the kernel holds on the loopback TCP socket `localPort` -> `remotePort`
 * that the peer has not taken yet (tx_queue in /proc/net/tcp): above 0 for the
 * gateway's side while a paused client leaves its data unread.
 */
function unsentBytes(localPort: number, remotePort: number): number {
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  const want = `0100007F:${hex(localPort)} 0100007F:${hex(remotePort)}`;
  for (const line of readFileSync('/proc/self/net/tcp', 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (`${f[1]} ${f[2]}` === want) return parseInt(f[4]?.split(':')[0] ?? '0', 16);
  }
  return 0;
}

/** Whether a process exists (signal 0 probes without signalling). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

const sessionEnds = (g: TestGateway, user: string): LogRecord[] =>
  g.logs.filter((l) => l.event === 'session-end' && l.user === user);

/** Resolves on the socket's close (or at once when closed already). */
function closeOf(s: Socket): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

/** A raw TCP connection that writes `bytes`, then waits until the peer closes; resolves with what it received. */
function rawExchange(port: number, bytes: Buffer, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw exchange on ${port}: no close within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => undefined); // a reset is a close too
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
    s.on('connect', () => {
      s.write(bytes);
      if (opts.end) s.end();
    });
  });
}

/** A TLS 1.2 ClientHello record (version 0x0303), cut after `keep` bytes. */
function truncatedClientHello(keep: number): Buffer {
  const random = randomBytes(32);
  const ciphers = Buffer.from([0x00, 0x04, 0xc0, 0x2f, 0x00, 0x9c]);
  const body = Buffer.concat([Buffer.from([0x03, 0x03]), random, Buffer.from([0x00]), ciphers, Buffer.from([0x01, 0x00]), Buffer.from([0x00, 0x00])]);
  const hs = Buffer.concat([Buffer.from([0x01, 0x00, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  const rec = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, (hs.length >> 8) & 0xff, hs.length & 0xff]), hs]);
  return rec.subarray(0, keep);
}

/** An SSLv2-compatible CLIENT-HELLO (2-byte header with the high bit set). */
function sslv2Hello(): Buffer {
  const cipherSpecs = Buffer.from([0x01, 0x00, 0x80, 0x07, 0x00, 0xc0, 0x00, 0x00, 0x2f]);
  const challenge = randomBytes(16);
  const body = Buffer.concat([
    Buffer.from([0x01, 0x03, 0x01]), // CLIENT-HELLO, version TLS 1.0
    Buffer.from([0x00, cipherSpecs.length, 0x00, 0x00, 0x00, challenge.length]),
    cipherSpecs,
    challenge,
  ]);
  return Buffer.concat([Buffer.from([0x80 | ((body.length >> 8) & 0x7f), body.length & 0xff]), body]);
}

// ---------------------------------------------------------------------------

describe('backend killed mid-RETR', () => {
  it('closes the client cleanly, spares other sessions, and the DELEted message survives in the maildir', async () => {
    const doomed = await startDovecot({ users: BACKEND_USERS, masterUser: MASTER, messages: { alice: [SMALL, BIG] } });
    extraDovecots.push(doomed);
    const gwK = await extraGateway({ backendPort: doomed.port });
    const before = await doomed.listMessageFiles('alice');
    expect(before).toHaveLength(2);

    // The bystander: another gateway, another backend, a session open across the kill.
    const bystander = await login(gw, 'bob', pw('bob'));
    expect(await bystander.cmd('STAT')).toMatch(/^\+OK 2 /);

    const c = await login(gwK, 'alice', pw('alice'));
    expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
    c.send('RETR 2\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await c.readUntil((b) => (b.length >= 64 * 1024 ? b.length : -1), 20_000);
    // Hold the flow (backpressure keeps the rest at Dovecot), then kill the whole instance.
    c.socket.pause();
    process.kill(-doomed.pid, 'SIGKILL');
    // The master is our child: gone (reaped) once the kill has landed on the group.
    await waitFor('the killed Dovecot master to be gone', () => !processExists(doomed.pid), POLL);
    c.socket.resume();
    // The client gets what was relayed and then a close: no hang, no QUIT forged.
    await c.closed(20_000);
    const end = await waitForLog(gwK, (l) => l.event === 'session-end' && l.user === 'alice', 20_000);
    expect(['backend', 'backend-error']).toContain(end.endedBy);
    expect(gwK.logs.some((l) => l.level >= 50 && l.code === 'INTERNAL')).toBe(false);

    // The bystander's session goes on, byte-exact.
    const { status, body } = await bystander.cmdMultiline('RETR 2');
    expect(status).toMatch(/^\+OK/);
    expect(sha(unstuff(body))).toBe(sha(pop3Wire(BIG)));
    expect(await bystander.cmd('QUIT')).toMatch(/^\+OK/);
    await bystander.closed();
    // And the surviving gateway takes new sessions.
    expect(sha(await readMessage(gw, 'bob', 1))).toBe(sha(pop3Wire(SMALL)));

    // The DELE had no completed QUIT: both files are still in the maildir...
    expect(await doomed.listMessages('alice')).toHaveLength(2);
    // ...and a Dovecot restarted on that same maildir serves both.
    const revived = await startDovecot({
      users: BACKEND_USERS,
      masterUser: MASTER,
      extraConfig: `mail_location = maildir:${doomed.rootDir}/mail/%u\n`,
    });
    extraDovecots.push(revived);
    const direct = await LineClient.plain(revived.port);
    expect(await direct.line()).toMatch(/^\+OK/);
    const alice = BACKEND_USERS.find((u) => u.name === 'alice')!;
    expect(await direct.cmd(`USER ${alice.name}`)).toMatch(/^\+OK/);
    expect(await direct.cmd(`PASS ${alice.password}`)).toMatch(/^\+OK/);
    expect(await direct.cmd('STAT')).toMatch(/^\+OK 2 /);
    const first = await direct.cmdMultiline('RETR 1');
    expect(sha(unstuff(first.body))).toBe(sha(pop3Wire(SMALL)));
    direct.destroy(); // no QUIT here either
    // The gateway in front of the dead backend still answers, with a temporary error.
    const again = await LineClient.plain(gwK.port('pop3'));
    expect(await again.line()).toMatch(/^\+OK/);
    again.send(`USER alice\r\nPASS ${pw('alice')}\r\n`);
    expect(await again.line()).toBe('+OK');
    expect(await again.line()).toMatch(/^-ERR \[SYS\/TEMP\]/);
    await again.closed();
  }, 90_000);
});

describe('backend refusing', () => {
  it('a backend port with nothing listening gives [SYS/TEMP] and the gateway keeps serving', async () => {
    const g = await extraGateway({ backendPort: await freePort(), timeouts: '{ connect: 2s, greeting: 2s, login: 2s }' });
    for (let i = 0; i < 2; i++) {
      const c = await LineClient.tls(g.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      c.send(`USER carol\r\nPASS ${pw('carol')}\r\n`);
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('-ERR [SYS/TEMP] Mail server temporarily unavailable');
      await c.closed();
    }
    await waitForLog(g, (l) => l.event === 'login' && l.code === 'BACKEND_UNREACHABLE');
  });
});

describe('auth service down or broken', () => {
  const held: Socket[] = [];
  let ok200: HttpServer;
  let err500: HttpServer;
  let hang: HttpServer;
  let junk: Server;
  const urlOf = (s: HttpServer | Server): string => {
    const a = s.address();
    return `http://127.0.0.1:${a && typeof a === 'object' ? a.port : 0}/auth`;
  };
  const listen = async <S extends HttpServer | Server>(s: S): Promise<S> => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          if ('closeAllConnections' in s) s.closeAllConnections();
          s.close(() => r());
        }),
    );
    return s;
  };

  beforeAll(async () => {
    // 200 without Auth-Status.
    ok200 = await listen(createHttpServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('hello')));
    err500 = await listen(createHttpServer((_req, res) => res.writeHead(500).end('boom')));
    // Never answers (the gateway's timeout must fire).
    hang = await listen(createHttpServer((req) => held.push(req.socket)));
    // Not HTTP at all.
    junk = await listen(
      createServer((s) => {
        s.on('error', () => undefined);
        s.resume(); // read the request, so the peer's FIN is seen and the socket closes
        s.end('SSH-2.0-OpenSSH_9.2\r\n\x00\xff garbage\r\n\r\n');
      }),
    );
    cleanups.push(() => held.forEach((s) => s.destroy()));
  });

  const cases: Array<[string, () => Promise<string>]> = [
    ['down (closed port)', async () => `http://127.0.0.1:${await freePort()}/auth`],
    ['answering 200 without Auth-Status', async () => urlOf(ok200)],
    ['answering 500', async () => urlOf(err500)],
    ['never answering within the timeout', async () => urlOf(hang)],
    ['answering bytes that are not HTTP', async () => urlOf(junk)],
  ];
  for (const [name, url] of cases) {
    it(`auth service ${name}: -ERR [SYS/TEMP], the connection and the gateway keep serving`, async () => {
      const g = await extraGateway({
        backendPort: dovecot.port,
        verifiers: ['http'],
        authExtra: [`http: { url: "${await url()}", proxy: none, timeout: 1s, maxWaits: 0 }`],
      });
      const c = await LineClient.tls(g.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(/^\+OK/);
      expect(await c.cmd('USER carol')).toBe('+OK');
      expect(await c.cmd(`PASS ${pw('carol')}`, 15_000)).toMatch(/^-ERR \[SYS\/TEMP\]/);
      // Not a reason to drop the connection: the client may ask again.
      expect(await c.cmd('CAPA')).toMatch(/^\+OK/);
      await c.multilineBody();
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      const rec = await waitForLog(g, (l) => l.event === 'login' && l.outcome === 'failure');
      expect(rec.code).toBe('VERIFIER_UNAVAILABLE');
      // A new client is served as well.
      const d = await LineClient.plain(g.port('pop3'));
      expect(await d.line()).toMatch(/^\+OK/);
      expect(await d.cmd('USER carol')).toBe('+OK');
      expect(await d.cmd(`PASS ${pw('carol')}`, 15_000)).toMatch(/^-ERR \[SYS\/TEMP\]/);
      d.destroy();
      expect(g.logs.some((l) => l.code === 'INTERNAL')).toBe(false);
    });
  }
});

describe('TLS handshake garbage on the pop3s port', () => {
  const garbage: Array<[string, Buffer, boolean]> = [
    ['random bytes', randomBytes(300), false],
    ['a truncated ClientHello (then silence)', truncatedClientHello(40), false],
    ['a truncated ClientHello (then FIN)', truncatedClientHello(25), true],
    ['an SSLv2-style CLIENT-HELLO', sslv2Hello(), false],
    ['a plaintext POP3 command', Buffer.from('USER carol\r\n'), false],
  ];
  let g: TestGateway;
  beforeAll(async () => {
    // A short pre-auth timeout bounds a handshake that never completes.
    g = await extraGateway({ backendPort: dovecot.port, extra: 'limits: { preAuthTimeout: 2s }' });
  });
  for (const [name, bytes, fin] of garbage) {
    it(`${name}: clean close, a log line, and the next client is fine`, async () => {
      const logsBefore = g.logs.filter((l) => l.msg === 'TLS handshake failed').length;
      const got = await rawExchange(g.port('pop3s'), bytes, { end: fin, timeoutMs: 15_000 });
      // Nothing POP3 was ever said in plaintext (a TLS alert at most).
      expect(got.toString('latin1')).not.toMatch(/\+OK|-ERR/);
      await waitFor('the handshake failure log line', () => g.logs.filter((l) => l.msg === 'TLS handshake failed').length > logsBefore, POLL);
      expect(await readMessage(g, 'carol', 2)).toEqual(pop3Wire(SMALL));
      const t = await LineClient.tls(g.port('pop3s'), pki.caFile);
      expect(await t.line()).toMatch(/^\+OK/);
      expect(await t.cmd('QUIT')).toMatch(/^\+OK/);
      await t.closed();
    });
  }
});

describe('a client vanishing at every step', () => {
  let silent: Server;
  const silentSockets: Socket[] = [];
  beforeAll(async () => {
    silent = createServer((s) => {
      s.on('error', () => undefined);
      silentSockets.push(s);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          silentSockets.forEach((s) => s.destroy());
          silent.close(() => r());
        }),
    );
  });

  const carolFiles = (): Promise<string[]> => dovecot.listMessageFiles('carol');
  const idle = async (g: TestGateway): Promise<void> => {
    await waitFor('no active connection', () => g.gateway.activeConnections === 0, POLL);
  };

  it('before the greeting is read, mid-command, after USER', async () => {
    const a = await LineClient.plain(gw.port('pop3'));
    a.socket.resetAndDestroy();
    const b = await LineClient.plain(gw.port('pop3'));
    expect(await b.line()).toMatch(/^\+OK/);
    // A partial line, handed to the kernel before the close (so it reaches the gateway first).
    await new Promise<void>((r, j) => b.socket.write('USER car', (err) => (err ? j(err) : r())));
    b.destroy();
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.cmd('USER carol')).toBe('+OK');
    c.socket.resetAndDestroy();
    const d = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    d.destroy(); // right after the handshake, greeting unread
    await idle(gw);
    expect(await readMessage(gw, 'carol', 2)).toEqual(pop3Wire(SMALL));
  });

  it('during the login (backend silent): the half-opened backend connection is closed', async () => {
    const a = silent.address();
    const g = await extraGateway({
      backendPort: a && typeof a === 'object' ? a.port : 0,
      timeouts: '{ connect: 2s, greeting: 20s, login: 2s }',
    });
    const before = silentSockets.length;
    const c = await LineClient.plain(g.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    c.send(`USER carol\r\nPASS ${pw('carol')}\r\n`);
    expect(await c.line()).toBe('+OK');
    await waitFor('the backend connection', () => silentSockets.length > before, POLL);
    const backendSide = silentSockets[silentSockets.length - 1]!;
    // A crash (RST): a FIN rightly lets the login finish and answer first.
    c.socket.resetAndDestroy();
    await waitForLog(g, (l) => l.event === 'login' && l.outcome === 'abandoned');
    await closeOf(backendSide);
    await idle(g);
  });

  it('right after the login +OK: the backend session ends without QUIT', async () => {
    const before = await carolFiles();
    const ends = sessionEnds(gw, 'carol').length;
    const c = await login(gw, 'carol', pw('carol'));
    c.socket.resetAndDestroy();
    await waitFor('session-end', () => sessionEnds(gw, 'carol').length > ends, POLL);
    expect(sessionEnds(gw, 'carol').at(-1)!.endedBy).toBe('client-error');
    await idle(gw);
    expect((await carolFiles()).length).toBe(before.length);
  });

  it('mid-RETR of 5 MB after DELE: no QUIT reaches Dovecot, the maildir is unchanged', async () => {
    const before = await carolFiles();
    expect(before).toHaveLength(2);
    const ends = sessionEnds(gw, 'carol').length;
    const disconnects = async (): Promise<number> => (await dovecot.readLog()).split('\n').filter((l) => /pop3\(carol\).*Disconnected/.test(l)).length;
    const disconnectsBefore = await disconnects();
    const c = await login(gw, 'carol', pw('carol'));
    expect(await c.cmd('DELE 2')).toMatch(/^\+OK/);
    c.send('RETR 1\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    await c.readUntil((b) => (b.length >= 32 * 1024 ? b.length : -1), 20_000);
    // Stop reading so the gateway is blocked writing into us, then vanish.
    c.socket.pause();
    await waitFor('the gateway to hold bytes we do not take', () => unsentBytes(gw.port('pop3'), c.socket.localPort ?? 0) > 0, POLL);
    c.socket.resetAndDestroy();
    await waitFor('session-end', () => sessionEnds(gw, 'carol').length > ends, POLL);
    const end = sessionEnds(gw, 'carol').at(-1)!;
    expect(end.endedBy).toBe('client-error');
    expect(end.bytesToClient as number).toBeLessThan(pop3Wire(BIG).length);
    await idle(gw);
    // Let Dovecot notice the disconnect, then check nothing was expunged.
    await waitFor('Dovecot session closed', async () => (await disconnects()) > disconnectsBefore, POLL);
    const last = (await dovecot.readLog()).split('\n').filter((l) => /pop3\(carol\).*Disconnected/.test(l)).at(-1)!;
    // Dovecot saw the connection drop, not a QUIT ("Logged out").
    expect(last).not.toMatch(/Logged out/);
    expect(last).toMatch(/del=0\//);
    expect((await carolFiles()).length).toBe(2);
    expect((await dovecot.listMessages('carol')).map(sha)).toEqual([BIG, SMALL].map(sha));
    // Through the gateway: both messages still there.
    const check = await login(gw, 'carol', pw('carol'));
    expect(await check.cmd('STAT')).toMatch(/^\+OK 2 /);
    expect(await check.cmd('QUIT')).toMatch(/^\+OK/);
    await check.closed();
  });

  it('a client that half-closes with DELE and no QUIT deletes nothing either', async () => {
    const c = await login(gw, 'carol', pw('carol'));
    expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
    c.end(); // FIN, no QUIT
    await c.closed();
    await idle(gw);
    expect(await dovecot.listMessages('carol')).toHaveLength(2);
  });
});

describe('file descriptors', () => {
  it('a burst of 200 failing connections leaves no descriptor behind', async () => {
    const g = await extraGateway({ backendPort: dovecot.port, extra: 'limits: { preAuthTimeout: 5s }' });
    const fdCount = (): number => readdirSync('/proc/self/fd').length;

    const variants: Array<() => Promise<void>> = [
      // Connect and drop at once.
      async () => {
        const c = await LineClient.plain(g.port('pop3'));
        c.destroy();
      },
      // Greeting, then a partial line and a reset.
      async () => {
        const c = await LineClient.plain(g.port('pop3'));
        await c.line();
        c.send('CAP');
        c.socket.resetAndDestroy();
      },
      // A wrong password, then gone.
      async () => {
        const c = await LineClient.plain(g.port('pop3'));
        await c.line();
        c.send('USER dave\r\nPASS wrong\r\n');
        await c.line();
        expect(await c.line()).toMatch(/^-ERR \[AUTH\]/);
        c.destroy();
      },
      // TLS garbage.
      async () => {
        await rawExchange(g.port('pop3s'), randomBytes(64));
      },
      // Logged in, dropped.
      async () => {
        const c = await login(g, 'dave', pw('dave'));
        c.destroy();
      },
      // Logged in, DELE, FIN without QUIT.
      async () => {
        const c = await login(g, 'dave', pw('dave'));
        expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
        c.end();
        await c.closed();
      },
      // TLS up, gone before the greeting is read.
      async () => {
        const c = await LineClient.tls(g.port('pop3s'), pki.caFile);
        c.destroy();
      },
      // An orderly QUIT.
      async () => {
        const c = await LineClient.plain(g.port('pop3'));
        await c.line();
        expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
        await c.closed();
      },
    ];
    // Sessions and also raw sockets (TLS handshakes, clients not yet closed) must all be gone.
    const settle = async (): Promise<void> => {
      await waitFor(
        'no open connection',
        () => g.gateway.activeConnections === 0 && g.gateway.openTcpConnections === 0,
        { ...POLL, timeoutMs: 20_000 },
      );
    };

    // Warm-up: lazily opened descriptors (agents, the TLS context...) are not leaks.
    for (const v of variants) await v();
    await settle();
    // Closed sockets release their descriptors a little later: the baseline is the count once it stops falling.
    let previous = fdCount();
    const baseline = await waitFor(
      'descriptors to stop falling after the warm-up',
      () => {
        const n = fdCount();
        const steady = n >= previous;
        previous = n;
        return steady ? n : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );

    const total = 200;
    const concurrency = 16;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        await variants[i % variants.length]!();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await settle();
    let now = fdCount();
    // Closing is asynchronous: give the sockets their deadline to go.
    await waitFor('descriptors back to the baseline', () => (now = fdCount()) <= baseline + 5, { ...POLL, timeoutMs: 15_000 }).catch(() => undefined);
    expect(now, `fds: baseline ${baseline}, after ${now}`).toBeLessThanOrEqual(baseline + 5);
    expect(await dovecot.listMessages('dave')).toHaveLength(1);
    expect(g.logs.some((l) => l.code === 'INTERNAL')).toBe(false);
  }, 120_000);
});

it('no unhandled rejection or uncaught exception in this file', async () => {
  // Kept sleep: a window for late faults to surface, the thing this test checks.
  await new Promise((r) => setTimeout(r, 200));
  expect(processFaults).toEqual([]);
});
