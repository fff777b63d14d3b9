import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BackendTarget } from '../../src/backend/types.js';
import { BackendProbe, probeBackend } from '../../src/server/readiness.js';
import { freePort } from '../helpers/ports.js';
import { closeServer, listenLoopback, plainTarget } from '../helpers/servers.js';
import { waitFor } from '../helpers/wait.js';

const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => closeServer(s.server, s.sockets)));
});

/** A loopback TCP server running `onSocket` per connection; records what each client sent and how many hung up. */
async function fakeBackend(onSocket: (s: Socket) => void): Promise<{ port: number; received: string[]; closed: () => number }> {
  const sockets = new Set<Socket>();
  const received: string[] = [];
  let closed = 0;
  const server = createServer((s) => {
    sockets.add(s);
    const i = received.push('') - 1;
    s.on('data', (c: Buffer) => (received[i] += c.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed++;
      sockets.delete(s);
    });
    onSocket(s);
  });
  servers.push({ server, sockets });
  return { port: await listenLoopback(server), received, closed: () => closed };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('probeBackend', () => {
  it('is fine with a +OK greeting, and says QUIT', async () => {
    const b = await fakeBackend((s) => {
      s.write('+OK Dovecot ready.\r\n');
      s.on('data', (c: Buffer) => {
        if (c.toString().includes('QUIT')) s.end('+OK Logging out\r\n');
      });
    });
    expect(await probeBackend(plainTarget(b.port), 1_000)).toBeUndefined();
    await waitFor('QUIT at the backend', () => b.received[0] === 'QUIT\r\n', { timeoutMs: 2_000 });
  });

  it('reports a greeting that is not +OK', async () => {
    const b = await fakeBackend((s) => s.write('-ERR [SYS/TEMP] go away\r\n'));
    expect(await probeBackend(plainTarget(b.port), 1_000)).toBe('bad greeting: -ERR [SYS/TEMP] go away');
  });

  it('reports a backend that closes before greeting', async () => {
    const b = await fakeBackend((s) => s.end());
    expect(await probeBackend(plainTarget(b.port), 1_000)).toMatch(/connection closed before the greeting|ECONNRESET/);
  });

  it('reports a silent backend after the deadline', async () => {
    // Only the timers are fake (the socket I/O is real): the deadline passes when the test says.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const b = await fakeBackend(() => undefined);
    let reason: string | undefined;
    const probe = probeBackend(plainTarget(b.port), 200).then((r) => (reason = r));
    await waitFor('the probe at the backend', () => b.received.length === 1);
    expect(vi.getTimerCount()).toBe(1); // the deadline, and nothing else
    await vi.advanceTimersByTimeAsync(199);
    expect(reason).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await probe;
    expect(reason).toBe('no connection or greeting within 200 ms');
  });

  it('reports a refused connection', async () => {
    const port = await freePort();
    expect(await probeBackend(plainTarget(port), 1_000)).toBe('ECONNREFUSED');
  });

  it('needs only the TCP connect for an implicit-TLS backend (no handshake)', async () => {
    const b = await fakeBackend(() => undefined);
    const target: BackendTarget = { ...plainTarget(b.port), port: b.port, tls: { mode: 'implicit', verify: true } };
    expect(await probeBackend(target, 1_000)).toBeUndefined();
    await waitFor('the probe to hang up', () => b.closed() === 1, { timeoutMs: 2_000 });
    expect(b.received[0]).toBe(''); // not a byte: no ClientHello, no QUIT
  });

  it('sends a PROXY health-check header first to a backend that expects one', async () => {
    const b = await fakeBackend((s) => {
      s.once('data', () => s.write('+OK ready\r\n'));
    });
    expect(await probeBackend({ ...plainTarget(b.port), proxyProtocol: 'v1' }, 1_000)).toBeUndefined();
    await waitFor('the header and QUIT at the backend', () => b.received[0] === 'PROXY UNKNOWN\r\nQUIT\r\n', { timeoutMs: 2_000 });
  });
});

describe('BackendProbe', () => {
  const A = plainTarget(1001);
  const B = plainTarget(1002);

  function fake(up: Set<number>): { probe: BackendProbe; calls: number[]; clock: { now: number } } {
    const calls: number[] = [];
    const clock = { now: 0 };
    const probe = new BackendProbe({
      ttlMs: 2_000,
      now: () => clock.now,
      probe: (t) => {
        calls.push(t.port);
        return Promise.resolve(up.has(t.port) ? undefined : 'ECONNREFUSED');
      },
    });
    return { probe, calls, clock };
  }

  it('is ready when at least one target is reachable', async () => {
    const { probe } = fake(new Set([1002]));
    expect(await probe.check([A, B])).toEqual({ name: 'backend', ok: true, detail: 'reachable: 127.0.0.1:1002' });
  });

  it('lists every target and why when none is reachable', async () => {
    const { probe } = fake(new Set());
    expect(await probe.check([A, B])).toEqual({
      name: 'backend',
      ok: false,
      detail: '127.0.0.1:1001 ECONNREFUSED; 127.0.0.1:1002 ECONNREFUSED',
    });
    expect((await probe.check([])).ok).toBe(false);
  });

  it('reuses a result for the TTL, shares probes in flight, and re-probes new targets at once', async () => {
    const up = new Set([1001]);
    const { probe, calls, clock } = fake(up);
    const [x, y] = await Promise.all([probe.check([A]), probe.check([A])]);
    expect(x).toBe(y);
    expect(calls).toEqual([1001]);
    up.clear();
    clock.now = 1_999;
    expect((await probe.check([A])).ok).toBe(true); // cached
    expect(calls).toEqual([1001]);
    clock.now = 2_000;
    expect((await probe.check([A])).ok).toBe(false); // expired: probed again
    expect(calls).toEqual([1001, 1001]);
    expect((await probe.check([B])).ok).toBe(false); // other targets (config reload): not the cached answer
    expect(calls).toEqual([1001, 1001, 1002]);
  });

  it('turns a probe that throws into a failed target', async () => {
    const probe = new BackendProbe({ probe: () => Promise.reject(new Error('bug')) });
    expect(await probe.check([A])).toMatchObject({ ok: false, detail: '127.0.0.1:1001 Error: bug' });
  });
});
