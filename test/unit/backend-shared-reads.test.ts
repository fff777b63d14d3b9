import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectWithSharedReads, copyForWrite, relayBuffersPooled } from '../../src/backend/shared-reads.js';
import { waitFor } from '../helpers/wait.js';

/** Waits until `cond` holds (polling every 5 ms). */
const until = (what: string, cond: () => boolean, timeoutMs = 5_000): Promise<true> =>
  waitFor(what, () => (cond() ? true : undefined), timeoutMs, 5);

/**
 * Bytes that reached `socket`'s kernel receive queue and were not read yet
 * (rx_queue of its row in /proc/self/net/tcp; loopback IPv4).
 */
function unreadInKernel(socket: Socket): number {
  const hex = (p: number | undefined): string => (p ?? 0).toString(16).toUpperCase().padStart(4, '0');
  const want = `0100007F:${hex(socket.localPort)} 0100007F:${hex(socket.remotePort)}`;
  for (const line of readFileSync('/proc/self/net/tcp', 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (`${f[1]} ${f[2]}` === want) return parseInt(f[4]?.split(':')[1] ?? '0', 16);
  }
  return 0;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** A server that hands each accepted connection to the test. */
async function serve(): Promise<{ port: number; next: () => Promise<Socket> }> {
  const accepted: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    const w = waiting.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    port,
    next: () => {
      const s = accepted.shift();
      return s ? Promise.resolve(s) : new Promise((r) => waiting.push(r));
    },
  };
}

async function connected(port: number): Promise<ReturnType<typeof connectWithSharedReads>> {
  const c = connectWithSharedReads('127.0.0.1', port);
  sockets.push(c.socket);
  await once(c.socket, 'connect');
  return c;
}

describe('connectWithSharedReads', () => {
  it('without a sink, emits every chunk as a copy of its own, in order, then end', async () => {
    const srv = await serve();
    const { socket } = await connected(srv.port);
    const peer = await srv.next();
    const kept: Buffer[] = [];
    socket.on('data', (c: Buffer) => kept.push(c));
    const ended = once(socket, 'end');
    // Each write read in full before the next, so there are several reads into the shared buffer.
    const parts = [randomBytes(70_000), randomBytes(10), randomBytes(200_000), randomBytes(3)];
    let sent = 0;
    for (const p of parts) {
      peer.write(p);
      sent += p.length;
      await until('the part to be read', () => kept.reduce((n, c) => n + c.length, 0) === sent);
    }
    peer.end();
    await ended;
    expect(kept.length).toBeGreaterThan(parts.length - 1);
    // Chunks kept from early reads still hold their bytes after later reads reused the shared buffer.
    expect(Buffer.concat(kept).equals(Buffer.concat(parts))).toBe(true);
  });

  it('loses nothing that arrives while the socket is paused or before anyone listens', async () => {
    const srv = await serve();
    const { socket } = await connected(srv.port);
    const peer = await srv.next();
    peer.write('before any listener\r\n');
    // Read before anyone listens: the bytes wait in the Readable's buffer.
    await until('the bytes to be read', () => socket.readableLength === 'before any listener\r\n'.length);
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => {
      got.push(c);
      socket.pause();
    });
    await until('the first chunk', () => got.length === 1);
    const big = randomBytes(300_000);
    peer.write(big);
    // pause() stops the handle's reads (onread mode): the bytes arriving now wait in the kernel.
    await until('bytes waiting while paused', () => unreadInKernel(socket) > 0);
    expect(socket.isPaused()).toBe(true);
    socket.removeAllListeners('data');
    socket.on('data', (c: Buffer) => got.push(c));
    socket.resume();
    const all = Buffer.concat([Buffer.from('before any listener\r\n'), big]);
    await until('every byte', () => Buffer.concat(got).length >= all.length);
    expect(Buffer.concat(got).equals(all)).toBe(true);
  });

  it('with a sink, hands each read over as a view, pauses on false and restarts on resume()', async () => {
    const srv = await serve();
    const { socket, reader } = await connected(srv.port);
    const peer = await srv.next();
    const copies: Buffer[] = [];
    let calls = 0;
    let stop = false;
    reader.setSink((view) => {
      calls += 1;
      copies.push(Buffer.from(view));
      return !stop;
    });
    socket.resume();
    peer.write('one\r\n');
    await until('read 1', () => calls === 1);
    stop = true;
    peer.write('two\r\n');
    await until('read 2', () => calls === 2);
    // Paused by the sink's false: what comes now waits in the kernel. Seen there, then one
    // more poll phase (setImmediate runs after it): a socket still reading would have read it.
    peer.write('three\r\n');
    await until('three in the kernel queue', () => unreadInKernel(socket) === 'three\r\n'.length);
    await new Promise<void>((r) => setImmediate(r));
    expect(calls).toBe(2);
    stop = false;
    socket.resume();
    await until('read 3', () => calls === 3);
    expect(Buffer.concat(copies).toString()).toBe('one\r\ntwo\r\nthree\r\n');
    // Back to 'data' events once the sink is removed; end still comes.
    reader.setSink(undefined);
    const later: Buffer[] = [];
    socket.on('data', (c: Buffer) => later.push(c));
    const ended = once(socket, 'end');
    peer.end('four\r\n');
    await ended;
    expect(Buffer.concat(later).toString()).toBe('four\r\n');
    expect(calls).toBe(3);
  });
});

describe('copyForWrite', () => {
  it('copies small chunks on their own and large ones into pooled buffers that come back once written', () => {
    const small = Buffer.from('+OK 2 320\r\n');
    const a = copyForWrite(small);
    // A copy: the shared read buffer behind `view` is overwritten by the next read.
    small.fill(0x21);
    expect(a.chunk.toString()).toBe('+OK 2 320\r\n');
    expect(a.done).toBeUndefined();

    const big = randomBytes(60_000);
    const b = copyForWrite(big);
    expect(b.chunk.equals(big)).toBe(true);
    expect(b.chunk.buffer).not.toBe(big.buffer);
    expect(b.chunk.buffer.byteLength).toBe(64 * 1024);
    expect(b.done).toBeTypeOf('function');
    const pooled = relayBuffersPooled();
    b.done?.();
    expect(relayBuffersPooled()).toBe(pooled + 1);
    // The next large copy reuses the buffer just given back.
    const c = copyForWrite(randomBytes(5_000));
    expect(c.chunk.buffer).toBe(b.chunk.buffer);
    expect(relayBuffersPooled()).toBe(pooled);
    c.done?.();
  });

  it('keeps at most 16 buffers in the pool', () => {
    const held = Array.from({ length: 40 }, () => copyForWrite(randomBytes(10_000)));
    for (const h of held) h.done?.();
    expect(relayBuffersPooled()).toBe(16);
  });
});
