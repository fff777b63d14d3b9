import { Socket } from 'node:net';
import { createServer, type SecureContext, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';
import { useTicketKeys, type ContextSelector } from './tls-context.js';

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
 *
 * Every session it secures refuses TLS renegotiation: OpenSSL refuses the
 * request (SSL_OP_NO_RENEGOTIATION in the listener's context), and
 * disableRenegotiation() makes the attempt an 'error' on the socket (see
 * isRenegotiationAttempt), on which the socket is destroyed here, whoever
 * else listens (ClientConnection logs and counts it).
 */
export class TlsHandshaker {
  private readonly server: Server;
  /** Handshakes under way, by the accepted socket (see rawOf). */
  private readonly waiting = new Map<Socket, (result: TLSSocket | Error) => void>();
  /** The context for a client's SNI name (several certificates); consulted only when the constructor had one. */
  private select: ContextSelector | undefined;

  /**
   * `ticketKeys`: every key that decrypts session tickets (the context's
   * `ticketKeys` is the first, which encrypts). `select`: the context for a
   * client's SNI name (TlsContextStore.select), undefined for the default;
   * without it no name is looked at (Node then skips its SNI step).
   */
  constructor(context: SecureContextOptions, opts: HandshakerOptions, ticketKeys?: readonly Buffer[], select?: ContextSelector) {
    this.select = select;
    this.server = createServer({
      ...context,
      requestCert: opts.requestCert,
      rejectUnauthorized: opts.rejectUnauthorized,
      handshakeTimeout: opts.handshakeTimeoutMs,
      ...(select
        ? {
            SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => {
              // Read at each handshake: setContext replaces it with the certificates.
              cb(null, this.select?.(servername));
            },
          }
        : {}),
    });
    if (ticketKeys) useTicketKeys(this.server, ticketKeys);
    this.server.on('secureConnection', (socket: TLSSocket) => {
      // Before any further record is read: the renegotiation check runs when a handshake starts.
      socket.disableRenegotiation();
      // Also where nobody else listens yet or any more (a refused connection's
      // last reply): an unheard 'error' would throw.
      socket.on('error', (err) => {
        if (isRenegotiationAttempt(err)) socket.destroy();
      });
      this.settle(socket, socket);
    });
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => this.settle(socket, err));
  }

  /**
   * New handshakes use these certificates and ticket keys; established
   * sessions keep theirs. A `select` only counts on a handshaker made with
   * one (see the constructor).
   */
  setContext(context: SecureContextOptions, ticketKeys?: readonly Buffer[], select?: ContextSelector): void {
    this.select = select;
    this.server.setSecureContext(context);
    // A new native context: the decrypting keys go on it afresh.
    if (ticketKeys) useTicketKeys(this.server, ticketKeys);
  }

  /** Resolves with the secured socket, or the reason the handshake failed (the socket is then destroyed). */
  handshake(raw: Socket): Promise<TLSSocket | Error> {
    const key = raw;
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
    this.finish(rawOf(socket) ?? this.findByAddress(socket), result);
  }

  /** The fallback should a Node release stop linking the sockets (rawOf): the waiting socket with the same endpoints. */
  private findByAddress(socket: TLSSocket): Socket | undefined {
    const key = keyOf(socket);
    for (const raw of this.waiting.keys()) if (keyOf(raw) === key) return raw;
    return undefined;
  }

  private finish(key: Socket | undefined, result: TLSSocket | Error): void {
    if (key === undefined) return;
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

/**
 * The accepted socket a server-side TLSSocket wraps: Node keeps it as the
 * TLSSocket's `_parent` (not public API; TlsHandshaker falls back to matching
 * addresses without it, and test/unit/server-tls-handshaker.test.ts checks it
 * still holds). Matching by it spares each handshake a getpeername and a
 * getsockname through the TLS handle (about 1 % of a login's CPU, profiled).
 */
export function rawOf(s: TLSSocket): Socket | undefined {
  const parent = (s as unknown as { _parent?: unknown })._parent;
  return parent instanceof Socket ? parent : undefined;
}

/**
 * Whether a TLS socket error is a client's renegotiation request (TLS 1.2;
 * TLS 1.3 has none). Node reports it on sessions that disabled renegotiation
 * (ERR_TLS_RENEGOTIATION_DISABLED), or past its renegotiation limit
 * (ERR_TLS_SESSION_ATTACK); either way the connection must go.
 */
export function isRenegotiationAttempt(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ERR_TLS_RENEGOTIATION_DISABLED' || code === 'ERR_TLS_SESSION_ATTACK';
}
