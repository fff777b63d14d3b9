import type { Socket } from 'node:net';
import { createServer, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';

export interface HandshakerOptions {
  /** Ask for a client certificate. */
  readonly requestCert: boolean;
  /** Refuse the handshake without a certificate the CAs verify. */
  readonly rejectUnauthorized: boolean;
  readonly handshakeTimeoutMs: number;
}

/**
 * Server-side TLS handshakes for sockets popgate accepted itself (implicit
 * TLS after a PROXY header, STLS). It feeds them to a tls.Server that never
 * listens, so Node does everything it does for its own connections: client
 * certificate verification (`authorized`, rejectUnauthorized), session
 * tickets and resumption, handshake timeouts, live certificate swaps.
 */
export class TlsHandshaker {
  private readonly server: Server;
  private readonly waiting = new Map<string, (result: TLSSocket | Error) => void>();

  constructor(context: SecureContextOptions, opts: HandshakerOptions) {
    this.server = createServer({
      ...context,
      requestCert: opts.requestCert,
      rejectUnauthorized: opts.rejectUnauthorized,
      handshakeTimeout: opts.handshakeTimeoutMs,
    });
    this.server.on('secureConnection', (socket: TLSSocket) => this.settle(socket, socket));
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => this.settle(socket, err));
  }

  /** New handshakes use these certificates; established sessions keep theirs. */
  setContext(context: SecureContextOptions): void {
    this.server.setSecureContext(context);
  }

  /** Resolves with the secured socket, or the reason the handshake failed (the socket is then destroyed). */
  handshake(raw: Socket): Promise<TLSSocket | Error> {
    const key = keyOf(raw);
    // Listeners are half-open for the relay's sake (QUIT then FIN must still get
    // its +OK), but a FIN during the handshake must end it at once, not at the
    // handshake timeout: half-open is switched back on once the session is secure.
    const halfOpen = raw.allowHalfOpen;
    raw.allowHalfOpen = false;
    return new Promise((resolve) => {
      const onClose = (): void => this.finish(key, new Error('connection closed during the TLS handshake'));
      this.waiting.set(key, (result) => {
        raw.removeListener('close', onClose);
        if (!(result instanceof Error)) {
          raw.allowHalfOpen = halfOpen;
          result.allowHalfOpen = halfOpen;
        }
        resolve(result);
      });
      // A refused client certificate makes Node destroy the socket without an event.
      raw.once('close', onClose);
      this.server.emit('connection', raw);
    });
  }

  private settle(socket: TLSSocket, result: TLSSocket | Error): void {
    this.finish(keyOf(socket), result);
  }

  private finish(key: string, result: TLSSocket | Error): void {
    const resolve = this.waiting.get(key);
    if (!resolve) return;
    this.waiting.delete(key);
    resolve(result);
  }
}

/** A live TCP connection is unique by its remote and local endpoints; TLSSocket reports its transport's. */
function keyOf(s: Socket): string {
  return `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;
}
