import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ProxyHeaderReader, type TrustedNetworks } from '../net/index.js';
import type { TlsHandshaker } from './tls-handshaker.js';
import type { ListenerMetrics } from '../observability/metrics.js';

/** The client as popgate sees it: after a trusted PROXY header, the real one. */
export interface PeerInfo {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** The load balancer that sent a PROXY header, when one did. */
  readonly proxiedBy?: { readonly address: string; readonly port: number };
}

export interface ProxyOptions {
  readonly trusted: TrustedNetworks;
  /** A trusted peer must send a header (false: it may). */
  readonly required: boolean;
  readonly timeoutMs: number;
}

function ownPeer(socket: Socket): PeerInfo {
  return {
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
  };
}

const CLOSED_EARLY = 'closed before the PROXY header';

/**
 * Reads a PROXY header from a trusted peer. Bytes after the header (a TLS
 * ClientHello, early POP3) are pushed back into the socket for whoever
 * reads next. Resolves undefined (and destroys the socket) on refusal.
 */
function readProxyHeader(socket: Socket, opts: ProxyOptions, log: Logger, metrics: ListenerMetrics | undefined): Promise<PeerInfo | undefined> {
  const own = ownPeer(socket);
  return new Promise((resolve) => {
    const reader = new ProxyHeaderReader();
    const finish = (peer: PeerInfo | undefined, reason?: string): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      if (!peer) {
        // A peer that just hangs up (a TCP health check) was not refused.
        if (reason !== CLOSED_EARLY) metrics?.refused('PROXY_HEADER');
        log.warn({ remote: own.remoteAddress, reason }, 'PROXY header refused');
        socket.destroy();
      }
      resolve(peer);
    };
    const onClose = (): void => finish(undefined, CLOSED_EARLY);
    const onData = (chunk: Buffer): void => {
      const e = reader.feed(chunk);
      if (e.kind === 'need-more') return;
      if (e.kind === 'error') {
        finish(undefined, e.reason);
        return;
      }
      socket.pause();
      if (e.rest.length > 0) socket.unshift(e.rest);
      finish(
        e.address
          ? {
              remoteAddress: e.address.sourceAddress,
              remotePort: e.address.sourcePort,
              localAddress: e.address.destinationAddress,
              localPort: e.address.destinationPort,
              proxiedBy: { address: own.remoteAddress, port: own.remotePort },
            }
          : own, // LOCAL / UNKNOWN: the balancer's own health check
      );
    };
    const timer = setTimeout(() => finish(undefined, 'timeout waiting for the PROXY header'), opts.timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}

/**
 * Everything between accept() and the POP3 greeting that is not POP3: the
 * PROXY header from a trusted load balancer, then implicit TLS. Resolves
 * undefined when the connection was refused or failed (already logged and
 * destroyed).
 */
export async function openTransport(
  raw: Socket,
  opts: { proxy?: ProxyOptions; tls?: TlsHandshaker; metrics?: ListenerMetrics },
  log: Logger,
): Promise<{ socket: Socket; peer: PeerInfo } | undefined> {
  let peer: PeerInfo | undefined = ownPeer(raw);
  if (opts.proxy && opts.proxy.trusted.has(raw.remoteAddress)) {
    peer = opts.proxy.required
      ? await readProxyHeader(raw, opts.proxy, log, opts.metrics)
      : await readProxyHeaderOptional(raw, opts.proxy, log, opts.metrics);
    if (!peer) return undefined;
  }
  if (!opts.tls) return { socket: raw, peer };
  const secured = await opts.tls.handshake(raw);
  if (secured instanceof Error) {
    opts.metrics?.tlsHandshakeFailed();
    log.info({ remote: peer.remoteAddress, err: secured.message }, 'TLS handshake failed');
    raw.destroy();
    return undefined;
  }
  return { socket: secured, peer };
}

/** `required: false`: a trusted peer may or may not start with a header. */
async function readProxyHeaderOptional(
  socket: Socket,
  opts: ProxyOptions,
  log: Logger,
  metrics: ListenerMetrics | undefined,
): Promise<PeerInfo | undefined> {
  // Only a header starts with "PROXY " or the v2 signature's CR; POP3 clients
  // wait for the greeting and TLS starts with 0x16. Peek the first chunk.
  const first = await new Promise<Buffer | undefined>((resolve) => {
    const timer = setTimeout(() => {
      socket.removeListener('data', onData);
      socket.pause();
      resolve(Buffer.alloc(0));
    }, Math.min(opts.timeoutMs, 500));
    const onData = (chunk: Buffer): void => {
      clearTimeout(timer);
      socket.pause();
      resolve(chunk);
    };
    socket.once('data', onData);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    socket.resume();
  });
  if (first === undefined) return undefined;
  if (first.length > 0) socket.unshift(first);
  const looksLikeHeader = first.length > 0 && (first[0] === 0x0d || first.subarray(0, 6).toString('latin1') === 'PROXY ');
  return looksLikeHeader ? readProxyHeader(socket, opts, log, metrics) : ownPeer(socket);
}
