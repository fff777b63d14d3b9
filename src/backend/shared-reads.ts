import { connect, type Socket } from 'node:net';

/**
 * Plaintext backend connections read into one shared buffer instead of a
 * fresh one per read.
 *
 * Why: Node allocates a new 64 KiB ArrayBuffer for every socket read. At
 * relay speed (~1 GB/s) that is ~16,000 external allocations a second, and
 * once the old generation holds a few thousand logins' worth of objects V8
 * answers the external-memory growth with a full mark-compact every ~60 ms:
 * measured, the relay cost rose from ~1 s/GB to 1.5–2.5 s/GB after a burst of
 * logins, all of it on V8's marking threads.
 *
 * Why one buffer is safe: libuv reads into it and Node calls the read
 * callback before the next read, and JS runs one callback at a time, so each
 * chunk is handed on — copied, or copied into a relay buffer — before the
 * buffer is reused. A chunk view must therefore never outlive its callback.
 */
const READ_SIZE = 64 * 1024;
const sharedReadBuffer = Buffer.allocUnsafe(READ_SIZE);

/**
 * Takes one chunk; `view` is valid only during the call. Return false to
 * pause the socket (resume() restarts reading).
 */
export type ReadSink = (view: Buffer) => boolean;

/** Where a plaintext backend socket's bytes go. */
export interface BackendReader {
  /**
   * Routes every chunk to `sink` (undefined: back to ordinary 'data' events,
   * each chunk a copy of its own).
   */
  setSink(sink: ReadSink | undefined): void;
}

/**
 * net.connect() whose reads land in the shared buffer. Until a sink is set
 * the socket behaves as usual for a consumer: each chunk is copied and pushed
 * into the Readable as Node would (the copy of a short reply comes from Node's
 * small-buffer pool, cheaper than the 64 KiB allocation it replaces); 'end',
 * 'close', pause() and resume() are Node's own.
 */
export function connectWithSharedReads(host: string, port: number): { socket: Socket; reader: BackendReader } {
  let sink: ReadSink | undefined;
  const socket = connect({
    host,
    port,
    onread: {
      buffer: sharedReadBuffer,
      callback: (bytes: number, buf: Uint8Array): boolean => {
        const view = Buffer.from(buf.buffer, buf.byteOffset, bytes);
        if (sink) return sink(view);
        // Node's own path for a read: into the Readable (buffered while
        // paused, 'data' when flowing), as a copy because a consumer may keep it.
        return socket.push(Buffer.from(view));
      },
    },
  });
  return {
    socket,
    reader: {
      setSink(next) {
        sink = next;
      },
    },
  };
}

/**
 * 64 KiB buffers a relay copies large chunks into while a write holds them,
 * handed back by the write's callback. A relaying session has about one write
 * in flight (it pauses its reader as soon as the other side's write buffer is
 * full), so a few suffice; beyond RELAY_POOL_MAX they are left to the GC
 * rather than kept (a full pool is RSS every idle gateway would carry).
 */
const RELAY_POOL_MAX = 16;
const relayPool: Buffer[] = [];
/**
 * Chunks up to this size (every reply but message bodies) are copied with
 * Buffer.from, out of Node's shared 8 KiB slabs: they would tie up a 64 KiB
 * pool buffer for a few bytes.
 */
const SMALL_CHUNK = 4 * 1024;

/**
 * A copy of `view` for one write, and what to do once it is written: give a
 * pooled buffer back (large chunks), nothing (small ones).
 */
export function copyForWrite(view: Buffer): { readonly chunk: Buffer; readonly done: (() => void) | undefined } {
  if (view.length <= SMALL_CHUNK) return { chunk: Buffer.from(view), done: undefined };
  const buf = relayPool.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
  view.copy(buf);
  return { chunk: buf.subarray(0, view.length), done: () => releaseRelayBuffer(buf) };
}

function releaseRelayBuffer(buf: Buffer): void {
  if (relayPool.length < RELAY_POOL_MAX) relayPool.push(buf);
}

/** How many relay buffers are waiting in the pool (for tests and diagnostics). */
export function relayBuffersPooled(): number {
  return relayPool.length;
}
