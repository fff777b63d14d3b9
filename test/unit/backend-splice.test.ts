import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import selfsigned from 'selfsigned';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBackendSession } from '../../src/backend/client.js';
import { relayBuffersPooled } from '../../src/backend/shared-reads.js';
import { spliceSessions } from '../../src/backend/splice.js';
import type { BackendSession, SpliceResult } from '../../src/backend/types.js';
import { dotStuff, startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import type { Clock } from '../../src/clock.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

const EVENTS = ['data', 'end', 'error', 'close', 'drain', 'finish'] as const;
type Counts = Record<(typeof EVENTS)[number], number>;
const counts = (s: Duplex): Counts =>
  Object.fromEntries(EVENTS.map((e) => [e, s.listenerCount(e)])) as Counts;

interface Harness {
  /** The test's POP3 client, already connected through the splice. */
  client: LineClient;
  /** Resolves with the splice result. */
  result: Promise<SpliceResult>;
  /** Gateway-side sockets, once the splice has started. */
  sides: Promise<{ client: Duplex; backend: BackendSession; before: { client: Counts; backend: Counts } }>;
}

let demo: DemoBackend;
const servers: Server[] = [];
const MSG = 'From: x@example.org\r\nSubject: one\r\n\r\nfirst\r\n';

beforeEach(async () => {
  demo = await startDemoBackend({
    users: { alice: 'pw' },
    messages: { alice: [MSG, 'Subject: two\r\n\r\n.dot line\r\n'] },
  });
});
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await demo.close();
});

let tlsCreds: { key: string; cert: string };
beforeAll(async () => {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 });
  tlsCreds = { key: pems.private, cert: pems.cert };
});

async function harness(opts: {
  pending?: string | Buffer;
  leftover?: string;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  clock?: Clock;
  tls?: boolean;
  /** Written by the client right after connecting, while the gateway still logs in. */
  early?: string;
}): Promise<Harness> {
  let setResult!: (p: Promise<SpliceResult>) => void;
  const result = new Promise<Promise<SpliceResult>>((r) => (setResult = r)).then((p) => p);
  let setSides!: (v: Awaited<Harness['sides']>) => void;
  const sides = new Promise<Awaited<Harness['sides']>>((r) => (setSides = r));

  const onClient = (clientSock: Duplex): void => {
    clientSock.pause();
    void (async () => {
      const session = await openBackendSession({
        target: { host: '127.0.0.1', port: demo.port, tls: { mode: 'none', verify: true }, proxyProtocol: 'none', xclient: false },
        timeouts: { connectMs: 2000, greetingMs: 2000, loginMs: 2000 },
        login: { method: 'user-pass', user: 'alice', password: 'pw' },
      });
      const backend: BackendSession = opts.leftover ? { ...session, leftover: Buffer.from(opts.leftover) } : session;
      const before = { client: counts(clientSock), backend: counts(backend.socket) };
      setResult(
        spliceSessions({
          client: clientSock,
          backend,
          pendingClientBytes: Buffer.from(opts.pending ?? ''),
          idleTimeoutMs: opts.idleTimeoutMs ?? 10_000,
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.clock ? { clock: opts.clock } : {}),
        }),
      );
      setSides({ client: clientSock, backend, before });
    })();
  };

  let server: Server;
  if (opts.tls) {
    server = tls.createServer({ ...tlsCreds, allowHalfOpen: true }, onClient);
  } else {
    server = createServer({ allowHalfOpen: true }, onClient);
  }
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const client = await LineClient.connect({ port, ...(opts.tls ? { tls: { rejectUnauthorized: false } } : {}) });
  if (opts.early) client.send(opts.early);
  return { client, result, sides };
}

async function expectNoLeaks(h: Harness): Promise<void> {
  const { client, backend, before } = await h.sides;
  expect(counts(client)).toEqual(before.client);
  expect(counts(backend.socket)).toEqual(before.backend);
}

describe('spliceSessions', () => {
  it('writes the leftover to the client and the pipelined bytes to the backend first, in order', async () => {
    const h = await harness({ leftover: 'EARLY\r\n', pending: 'STAT\r\nLIST 1\r\n', early: 'NOOP\r\n' });
    expect(await h.client.line()).toBe('EARLY');
    expect(await h.client.line()).toMatch(/^\+OK 2 /);
    expect(await h.client.line()).toBe(`+OK 1 ${Buffer.byteLength(MSG)}`);
    expect(await h.client.line()).toBe('+OK');
    h.client.send('QUIT\r\n');
    expect(await h.client.line()).toMatch(/^\+OK Logging out/);
    const r = await h.result;
    expect(r.endedBy).toBe('backend');
    expect(demo.commandLog()).toEqual(['USER', 'PASS', 'STAT', 'LIST', 'NOOP', 'QUIT']);
    await expectNoLeaks(h);
  });

  it('relays a large message byte-exact with backpressure', async () => {
    const lines: string[] = ['From: big@example.org', 'Subject: big', ''];
    const chunk = randomBytes(57 * 400_000).toString('base64'); // ~30 MB of base64
    for (let i = 0; i < chunk.length; i += 76) lines.push((i % 7600 === 0 ? '.' : '') + chunk.slice(i, i + 76));
    const big = Buffer.from(lines.join('\r\n') + '\r\n');
    const expected = createHash('sha256').update(Buffer.concat(dotStuff(big))).digest('hex');
    await demo.close();
    demo = await startDemoBackend({ users: { alice: 'pw' }, messages: { alice: [big] } });

    const h = await harness({});
    h.client.send('RETR 1\r\n');
    expect(await h.client.line()).toBe(`+OK ${big.length} octets`);
    // Stall the reader so both write buffers fill up and the relay must wait for 'drain'.
    h.client.socket.pause();
    const { backend } = await h.sides;
    await waitFor('the relay to hold the backend (client write buffer full)', () => backend.socket.isPaused(), { intervalMs: 10 });
    expect(backend.socket.isPaused()).toBe(true);
    h.client.socket.resume();
    const hash = createHash('sha256');
    await h.client.streamUntil('\r\n.\r\n', (b) => hash.update(b), 55_000);
    expect(hash.digest('hex')).toBe(expected);
    h.client.send('QUIT\r\n');
    await h.client.line();
    const r = await h.result;
    expect(r.bytesToClient).toBe(h.client.bytesReceived);
    expect(r.bytesToBackend).toBe('RETR 1\r\nQUIT\r\n'.length);
  }, 60_000);

  it('relays different messages to concurrent slow clients byte-exact (one shared backend read buffer)', async () => {
    // Plaintext backends read into one shared buffer and the relay copies each read into a
    // pooled buffer held until its write is done: any chunk handed on without its copy would
    // show up here as bytes of another session.
    const bigs = [1, 2, 3].map((n) => {
      const body = randomBytes(9 * 1024 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n');
      return Buffer.from(`Subject: big ${n}\r\n\r\n${body}\r\n`);
    });
    const expected = bigs.map((b) => createHash('sha256').update(Buffer.concat(dotStuff(b))).digest('hex'));
    await demo.close();
    demo = await startDemoBackend({ users: { alice: 'pw' }, messages: { alice: bigs } });
    const hs = await Promise.all([harness({}), harness({ tls: true }), harness({})]);
    const digests = await Promise.all(
      hs.map(async (h, i) => {
        h.client.send(`RETR ${i + 1}\r\n`);
        expect(await h.client.line()).toBe(`+OK ${bigs[i]!.length} octets`);
        // Stall until the kernel's socket buffers are full (writes then wait in libuv and the
        // relay holds the backend), then read in fits and starts so the relays stall and resume
        // at different moments (the interval below is load, not synchronisation).
        h.client.socket.pause();
        const { backend } = await h.sides;
        await waitFor(`relay ${i} to hold its backend`, () => backend.socket.isPaused(), { intervalMs: 10 });
        h.client.socket.resume();
        const stall = setInterval(() => {
          h.client.socket.pause();
          setTimeout(() => h.client.socket.resume(), 30 + i * 7);
        }, 40 + i * 5);
        const hash = createHash('sha256');
        try {
          await h.client.streamUntil('\r\n.\r\n', (b) => hash.update(b), 30_000);
        } finally {
          clearInterval(stall);
          h.client.socket.resume();
        }
        h.client.send('QUIT\r\n');
        await h.client.line();
        await h.result;
        return hash.digest('hex');
      }),
    );
    expect(digests).toEqual(expected);
    expect(relayBuffersPooled()).toBeGreaterThan(0);
    for (const h of hs) await expectNoLeaks(h);
  }, 60_000);

  it('client FIN after QUIT delivers the QUIT and the backend reply, and nothing else', async () => {
    const h = await harness({});
    h.client.send('DELE 1\r\nQUIT\r\n');
    h.client.end();
    expect(await h.client.line()).toMatch(/^\+OK Marked/);
    expect(await h.client.line()).toBe('+OK Logging out, 1 messages deleted.');
    await h.client.closed();
    const r = await h.result;
    expect(r.endedBy).toBe('client');
    expect(r.error).toBeUndefined();
    expect(demo.commandLog().filter((c) => c === 'QUIT')).toHaveLength(1);
    expect(demo.mailbox('alice')).toHaveLength(1);
    await expectNoLeaks(h);
  });

  it('client FIN without QUIT half-closes the backend and never injects a QUIT', async () => {
    const h = await harness({});
    h.client.send('DELE 1\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    h.client.end();
    await h.client.closed();
    const r = await h.result;
    expect(r.endedBy).toBe('client');
    expect(demo.commandLog()).not.toContain('QUIT');
    expect(demo.mailbox('alice')).toHaveLength(2);
  });

  it('client reset → backend destroyed without QUIT, DELE-marked messages remain', async () => {
    const h = await harness({});
    h.client.send('DELE 1\r\nDELE 2\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    expect(await h.client.line()).toMatch(/^\+OK/);
    h.client.socket.resetAndDestroy();
    const r = await h.result;
    expect(r.endedBy).toBe('client-error');
    const { backend } = await h.sides;
    expect(backend.socket.destroyed).toBe(true);
    // The demo backend's side has closed too: its session ended without QUIT.
    await waitFor('the backend session to end', () => demo.openConnections() === 0, { intervalMs: 5 });
    expect(demo.commandLog()).not.toContain('QUIT');
    expect(demo.mailbox('alice')).toHaveLength(2);
    await expectNoLeaks(h);
  });

  it('idle timeout destroys both sides without QUIT', async () => {
    const clock = new FakeClock();
    const h = await harness({ idleTimeoutMs: 200, clock });
    h.client.send('DELE 1\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    expect(clock.requested).toEqual([200]); // the idle timer, armed as the relay began
    const { client, backend } = await h.sides;
    clock.advance(199);
    expect([client.destroyed, backend.socket.destroyed]).toEqual([false, false]); // not a moment early
    clock.advance(1);
    expect([client.destroyed, backend.socket.destroyed]).toEqual([true, true]);
    await h.client.closed();
    const r = await h.result;
    expect(r.endedBy).toBe('idle-timeout');
    expect(demo.commandLog()).not.toContain('QUIT');
    expect(demo.mailbox('alice')).toHaveLength(2);
    await expectNoLeaks(h);
  });

  it('activity keeps the idle timer from firing', async () => {
    const clock = new FakeClock();
    const h = await harness({ idleTimeoutMs: 250, clock });
    await clock.nextTimer(250); // the relay has begun
    for (let i = 0; i < 6; i++) {
      clock.advance(100);
      h.client.send('NOOP\r\n');
      expect(await h.client.line()).toBe('+OK');
    }
    // 600 ms in all, never 250 without a byte: each time the timer came due it was set
    // again for what was left since the last byte (200 ms), and nothing was cut.
    expect(clock.requested).toEqual([250, 200, 200]);
    h.client.send('QUIT\r\n');
    await h.client.line();
    expect((await h.result).endedBy).toBe('backend');
  });

  it('shutdown signal cuts both sides without QUIT', async () => {
    const ac = new AbortController();
    const h = await harness({ signal: ac.signal });
    h.client.send('DELE 1\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    ac.abort();
    const r = await h.result;
    expect(r.endedBy).toBe('shutdown');
    await h.client.closed();
    expect(demo.commandLog()).not.toContain('QUIT');
    expect(demo.mailbox('alice')).toHaveLength(2);
    await expectNoLeaks(h);
  });

  it('backend going away ends the client after flushing', async () => {
    const h = await harness({});
    h.client.send('NOOP\r\n');
    expect(await h.client.line()).toBe('+OK');
    await demo.close();
    await h.client.closed();
    const r = await h.result;
    expect(['backend', 'backend-error']).toContain(r.endedBy);
  });

  it('counts bytes both ways, including leftover and pipelined bytes', async () => {
    const h = await harness({ leftover: 'HELLO\r\n', pending: 'NOOP\r\n' });
    expect(await h.client.line()).toBe('HELLO');
    expect(await h.client.line()).toBe('+OK');
    h.client.send('STAT\r\n');
    await h.client.line();
    h.client.send('QUIT\r\n');
    await h.client.line();
    await h.client.closed();
    const r = await h.result;
    expect(r.bytesToBackend).toBe('NOOP\r\nSTAT\r\nQUIT\r\n'.length);
    expect(r.bytesToClient).toBe(h.client.bytesReceived);
    expect(r.bytesToClient).toBeGreaterThan('HELLO\r\n+OK\r\n'.length);
  });

  it('works with a tls.TLSSocket on the client side, including FIN after QUIT', async () => {
    const h = await harness({ tls: true, pending: 'STAT\r\n' });
    expect(await h.client.line()).toMatch(/^\+OK 2 /);
    h.client.send('RETR 2\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    expect(await h.client.line()).toBe('Subject: two');
    expect(await h.client.line()).toBe('');
    expect(await h.client.line()).toBe('..dot line');
    expect(await h.client.line()).toBe('.');
    h.client.send('DELE 2\r\nQUIT\r\n');
    h.client.end();
    expect(await h.client.line()).toMatch(/^\+OK/);
    expect(await h.client.line()).toMatch(/^\+OK Logging out/);
    await h.client.closed();
    const r = await h.result;
    expect(r.endedBy).toBe('client');
    expect(demo.mailbox('alice')).toHaveLength(1);
    await expectNoLeaks(h);
  });

  it('a TLS client reset deletes nothing', async () => {
    const h = await harness({ tls: true });
    h.client.send('DELE 1\r\n');
    expect(await h.client.line()).toMatch(/^\+OK/);
    h.client.destroy();
    const r = await h.result;
    // A TLS socket destroyed without close_notify still sends a TCP FIN: either path is fine, neither sends QUIT.
    expect(['client', 'client-error']).toContain(r.endedBy);
    await waitFor('the backend session to end', () => demo.openConnections() === 0, { intervalMs: 5 });
    expect(demo.commandLog()).not.toContain('QUIT');
    expect(demo.mailbox('alice')).toHaveLength(2);
  });
});
