import type { Duplex } from 'node:stream';
import { systemClock, type Clock } from '../clock.js';
import { copyForWrite } from './shared-reads.js';
import type { BackendSession, SpliceResult } from './types.js';

export interface SpliceOptions {
  /**
   * The client connection (net.Socket or tls.TLSSocket). Create it with
   * `allowHalfOpen: true` so the backend's answer to a QUIT the client sent
   * just before its FIN can still be delivered.
   */
  readonly client: Duplex;
  /** A logged-in backend session (paused, unread). */
  readonly backend: BackendSession;
  /** Bytes the client pipelined behind its login command; sent to the backend first. */
  readonly pendingClientBytes: Buffer;
  /** No byte relayed either way for this long: both sides are cut, without QUIT. 0 disables. */
  readonly idleTimeoutMs: number;
  /** Shutdown: both sides are cut without QUIT (endedBy 'shutdown'). */
  readonly signal?: AbortSignal;
  /** Times the idle cut; default systemClock (tests pass a fake one to move time themselves). */
  readonly clock?: Clock;
}

type EndedBy = SpliceResult['endedBy'];

/** What both sides of a splice share: how it ended, the idle clock, its end. */
interface Relay {
  note(who: EndedBy, err?: Error): void;
  /** A byte went through (the idle clock restarts). */
  touch(): void;
  /** Resolves once both sides are closed. */
  settle(): void;
}

/**
 * One side of a splice and the direction out of it: its bytes go to `peer`,
 * it is paused while the peer's write buffer is full, its FIN half-closes the
 * peer, and its loss cuts the peer. The same code serves the client and the
 * backend; they differ only in `peerOnEnd` and the backend's shared reader.
 */
class Side {
  /** Bytes relayed from this side to the peer. */
  bytesOut = 0;
  fin = false;
  closed: boolean;
  /** Paused because the peer's write buffer is full. */
  private held = false;
  peer!: Side;

  constructor(
    readonly name: 'client' | 'backend',
    readonly socket: Duplex,
    private readonly relay: Relay,
    /**
     * Release the peer when this side sends FIN: true for the backend, whose
     * socket is not half-open (its FIN ends our writes to it too, so a client
     * held for it would never drain).
     */
    private readonly releasePeerOnEnd: boolean,
  ) {
    this.closed = socket.closed;
  }

  /** Bytes this side already had in hand before the relay began: they go first. */
  sendFirst(bytes: Buffer): void {
    if (bytes.length === 0 || !this.peer.socket.writable) return;
    this.bytesOut += bytes.length;
    this.peer.socket.write(bytes);
  }

  readonly onData = (chunk: Buffer): void => {
    const to = this.peer.socket;
    if (!to.writable) return; // the peer is gone or half-closed: nowhere to go
    this.bytesOut += chunk.length;
    this.relay.touch();
    if (!to.write(chunk)) this.hold();
  };

  /**
   * A chunk from the shared read buffer (plaintext backends): copied (into
   * a pooled relay buffer that the write hands back when done, for message
   * bodies), so a relay allocates no memory per read.
   */
  readonly onView = (view: Buffer): boolean => {
    const to = this.peer.socket;
    if (!to.writable) return true;
    this.bytesOut += view.length;
    this.relay.touch();
    const { chunk, done: written } = copyForWrite(view);
    if (to.write(chunk, written)) return true;
    this.hold();
    return false;
  };

  /** This side's write buffer drained: the peer may send again. */
  readonly onDrain = (): void => this.peer.release();

  readonly onEnd = (): void => {
    this.fin = true;
    this.relay.note(this.name);
    // end() is queued behind what was already written: the peer gets everything
    // (for the client's FIN: its QUIT, if any). Never add a QUIT.
    if (this.peer.socket.writable) this.peer.socket.end();
    if (this.releasePeerOnEnd) this.peer.release();
  };

  readonly onError = (err: Error): void => {
    this.relay.note(`${this.name}-error`, err);
    this.peer.socket.destroy();
    this.socket.destroy();
  };

  readonly onClose = (): void => {
    this.closed = true;
    if (!this.fin) {
      // Dropped without FIN: the peer is cut (a backend never sees a QUIT).
      this.relay.note(`${this.name}-error`);
      this.peer.socket.destroy();
    } else {
      // Let the peer finish its answer into the void.
      this.peer.release();
    }
    this.relay.settle();
  };

  private hold(): void {
    this.held = true;
    this.socket.pause();
  }

  private release(): void {
    if (!this.held) return;
    this.held = false;
    this.socket.resume();
  }

  /** The listeners for the whole splice ('data' is added by flow()). */
  listen(): void {
    this.socket.on('error', this.onError);
    this.socket.on('close', this.onClose);
    this.socket.on('end', this.onEnd);
    this.socket.on('drain', this.onDrain);
  }

  flow(): void {
    this.socket.on('data', this.onData);
  }

  unlisten(): void {
    for (const [event, fn] of [
      ['data', this.onData],
      ['end', this.onEnd],
      ['error', this.onError],
      ['close', this.onClose],
      ['drain', this.onDrain],
    ] as const) {
      this.socket.removeListener(event, fn);
    }
  }
}

/**
 * Relays bytes between a logged-in client and its backend until both
 * connections are closed. Never injects a command: a client FIN half-closes
 * the backend (which then sees only what the client sent, e.g. its QUIT); a
 * dropped client, an idle timeout or a shutdown destroys the backend
 * connection without QUIT, so the backend deletes nothing.
 *
 * Byte counts include `backend.leftover` and `pendingClientBytes`. Never
 * rejects; every listener it adds is removed before it resolves.
 */
export function spliceSessions(opts: SpliceOptions): Promise<SpliceResult> {
  const { pendingClientBytes, idleTimeoutMs, signal } = opts;
  const clock = opts.clock ?? systemClock;
  const { leftover, reader } = opts.backend;
  // 0 or a non-finite value disables the idle cut; setTimeout cannot wait longer than 2^31-1 ms.
  const idleMs = Number.isFinite(idleTimeoutMs) && idleTimeoutMs > 0 ? Math.min(idleTimeoutMs, 2 ** 31 - 1) : 0;

  return new Promise<SpliceResult>((resolve) => {
    let endedBy: EndedBy | undefined;
    let error: Error | undefined;
    let lastActivity = clock.now();
    let cancelIdle: (() => void) | undefined;
    let done = false;

    const relay: Relay = {
      note(who, err) {
        if (endedBy !== undefined) return;
        endedBy = who;
        if (err) error = err;
      },
      touch() {
        lastActivity = clock.now();
      },
      settle,
    };
    const client = new Side('client', opts.client, relay, false);
    const backend = new Side('backend', opts.backend.socket, relay, true);
    client.peer = backend;
    backend.peer = client;

    const cutBoth = (): void => {
      client.socket.destroy();
      backend.socket.destroy();
    };
    const checkIdle = (): void => {
      cancelIdle = undefined;
      if (done) return;
      const left = lastActivity + idleMs - clock.now();
      if (left > 0) {
        cancelIdle = clock.setTimer(checkIdle, left);
        return;
      }
      relay.note('idle-timeout');
      cutBoth();
    };
    const onAbort = (): void => {
      relay.note('shutdown');
      cutBoth();
    };

    function settle(): void {
      if (done || !client.closed || !backend.closed) return;
      done = true;
      client.unlisten();
      backend.unlisten();
      reader?.setSink(undefined);
      signal?.removeEventListener('abort', onAbort);
      cancelIdle?.();
      cancelIdle = undefined;
      resolve({
        bytesToBackend: client.bytesOut,
        bytesToClient: backend.bytesOut,
        endedBy: endedBy ?? 'client',
        ...(error ? { error } : {}),
      });
    }

    client.listen();
    backend.listen();
    signal?.addEventListener('abort', onAbort, { once: true });

    if (signal?.aborted) {
      onAbort();
    } else if (client.closed || backend.closed) {
      // One side was already gone before the splice started.
      if (client.closed) client.onClose();
      if (backend.closed) backend.onClose();
    } else {
      // Order matters: what each side already had in hand goes first.
      backend.sendFirst(leftover);
      client.sendFirst(pendingClientBytes);
      client.flow();
      // With a reader, reads come through onView; 'data' still carries
      // anything the Readable had buffered before the relay began.
      backend.flow();
      reader?.setSink(backend.onView);
      client.socket.resume();
      backend.socket.resume();
      // The client may have sent its last commands and FIN before the login
      // finished: its 'end' has already fired, so pass the FIN on now.
      if (client.socket.readableEnded) client.onEnd();
      if (idleMs > 0) cancelIdle = clock.setTimer(checkIdle, idleMs);
    }
    settle();
  });
}
