import type { Duplex } from 'node:stream';
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
}

type EndedBy = SpliceResult['endedBy'];

function isClosed(s: Duplex): boolean {
  return s.closed;
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
  const { client, pendingClientBytes, idleTimeoutMs, signal } = opts;
  const backend = opts.backend.socket;
  const leftover = opts.backend.leftover;
  const reader = opts.backend.reader;
  // 0 or a non-finite value disables the idle cut; setTimeout cannot wait longer than 2^31-1 ms.
  const idleMs = Number.isFinite(idleTimeoutMs) && idleTimeoutMs > 0 ? Math.min(idleTimeoutMs, 2 ** 31 - 1) : 0;

  return new Promise<SpliceResult>((resolve) => {
    let bytesToBackend = 0;
    let bytesToClient = 0;
    let endedBy: EndedBy | undefined;
    let error: Error | undefined;
    let clientClosed = isClosed(client);
    let backendClosed = isClosed(backend);
    let clientFin = false;
    let backendFin = false;
    /** A side paused because the other side's write buffer is full. */
    let clientHeld = false;
    let backendHeld = false;
    let lastActivity = Date.now();
    let idleTimer: NodeJS.Timeout | undefined;
    let done = false;

    const note = (who: EndedBy, err?: Error): void => {
      if (endedBy !== undefined) return;
      endedBy = who;
      if (err) error = err;
    };

    const cutBoth = (): void => {
      client.destroy();
      backend.destroy();
    };

    // --- client -> backend -------------------------------------------------
    const onClientData = (chunk: Buffer): void => {
      if (!backend.writable) return; // the backend is gone or half-closed: nowhere to go
      bytesToBackend += chunk.length;
      lastActivity = Date.now();
      if (!backend.write(chunk)) {
        clientHeld = true;
        client.pause();
      }
    };
    const onBackendDrain = (): void => {
      if (clientHeld) {
        clientHeld = false;
        client.resume();
      }
    };
    const onClientEnd = (): void => {
      clientFin = true;
      note('client');
      // Flush what the client sent (its QUIT, if any) and half-close; never add a QUIT.
      if (backend.writable) backend.end();
    };
    const onClientError = (err: Error): void => {
      note('client-error', err);
      backend.destroy();
      client.destroy();
    };
    const onClientClose = (): void => {
      clientClosed = true;
      if (!clientFin) {
        // Dropped without FIN: the backend must not see a QUIT.
        note('client-error');
        backend.destroy();
      } else if (backendHeld) {
        // Let the backend finish its answer into the void.
        backendHeld = false;
        backend.resume();
      }
      settle();
    };

    // --- backend -> client -------------------------------------------------
    const onBackendData = (chunk: Buffer): void => {
      if (!client.writable) return;
      bytesToClient += chunk.length;
      lastActivity = Date.now();
      if (!client.write(chunk)) {
        backendHeld = true;
        backend.pause();
      }
    };
    /**
     * A chunk from the shared read buffer (plaintext backends): copied (into
     * a pooled relay buffer that the write hands back when done, for message
     * bodies), so a relay allocates no memory per read.
     */
    const onBackendView = (view: Buffer): boolean => {
      if (!client.writable) return true;
      bytesToClient += view.length;
      lastActivity = Date.now();
      const { chunk, done: written } = copyForWrite(view);
      if (client.write(chunk, written)) return true;
      backendHeld = true;
      backend.pause();
      return false;
    };
    const onClientDrain = (): void => {
      if (backendHeld) {
        backendHeld = false;
        backend.resume();
      }
    };
    const onBackendEnd = (): void => {
      backendFin = true;
      note('backend');
      // end() is queued behind the data already written: the client gets everything.
      if (client.writable) client.end();
      if (clientHeld) {
        clientHeld = false;
        client.resume();
      }
    };
    const onBackendError = (err: Error): void => {
      note('backend-error', err);
      client.destroy();
      backend.destroy();
    };
    const onBackendClose = (): void => {
      backendClosed = true;
      if (!backendFin) {
        note('backend-error');
        client.destroy();
      } else if (clientHeld) {
        clientHeld = false;
        client.resume();
      }
      settle();
    };

    // --- timers and shutdown -----------------------------------------------
    const checkIdle = (): void => {
      idleTimer = undefined;
      if (done) return;
      const left = lastActivity + idleMs - Date.now();
      if (left > 0) {
        idleTimer = setTimeout(checkIdle, left);
        return;
      }
      note('idle-timeout');
      cutBoth();
    };
    const onAbort = (): void => {
      note('shutdown');
      cutBoth();
    };

    const detach = (): void => {
      client.removeListener('data', onClientData);
      client.removeListener('end', onClientEnd);
      client.removeListener('error', onClientError);
      client.removeListener('close', onClientClose);
      client.removeListener('drain', onClientDrain);
      backend.removeListener('data', onBackendData);
      backend.removeListener('end', onBackendEnd);
      backend.removeListener('error', onBackendError);
      backend.removeListener('close', onBackendClose);
      backend.removeListener('drain', onBackendDrain);
      reader?.setSink(undefined);
      signal?.removeEventListener('abort', onAbort);
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = undefined;
    };

    function settle(): void {
      if (done || !clientClosed || !backendClosed) return;
      done = true;
      detach();
      const result: SpliceResult = {
        bytesToBackend,
        bytesToClient,
        endedBy: endedBy ?? 'client',
        ...(error ? { error } : {}),
      };
      resolve(result);
    }

    client.on('error', onClientError);
    client.on('close', onClientClose);
    client.on('end', onClientEnd);
    client.on('drain', onClientDrain);
    backend.on('error', onBackendError);
    backend.on('close', onBackendClose);
    backend.on('end', onBackendEnd);
    backend.on('drain', onBackendDrain);
    signal?.addEventListener('abort', onAbort, { once: true });

    if (signal?.aborted) {
      onAbort();
    } else if (clientClosed || backendClosed) {
      // One side was already gone before the splice started.
      if (clientClosed) onClientClose();
      if (backendClosed) onBackendClose();
    } else {
      // Order matters: what each side already had in hand goes first.
      if (leftover.length > 0 && client.writable) {
        bytesToClient += leftover.length;
        client.write(leftover);
      }
      if (pendingClientBytes.length > 0 && backend.writable) {
        bytesToBackend += pendingClientBytes.length;
        backend.write(pendingClientBytes);
      }
      client.on('data', onClientData);
      // With a reader, reads come through onBackendView; 'data' still carries
      // anything the Readable had buffered before the relay began.
      backend.on('data', onBackendData);
      reader?.setSink(onBackendView);
      client.resume();
      backend.resume();
      // The client may have sent its last commands and FIN before the login
      // finished: its 'end' has already fired, so pass the FIN on now.
      if (client.readableEnded) onClientEnd();
      if (idleMs > 0) idleTimer = setTimeout(checkIdle, idleMs);
    }
    settle();
  });
}
