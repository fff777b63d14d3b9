/**
 * Plumbing for the small scripted TCP/TLS servers unit tests start: listen
 * on an ephemeral loopback port, and close with every connection destroyed.
 */
import { once } from 'node:events';
import type { Server } from 'node:net';
import type { BackendTarget } from '../../src/backend/types.js';

/** A backend target for a plain POP3 server on 127.0.0.1:`port`: no TLS, no PROXY header, no XCLIENT. */
export const plainTarget = (port: number): BackendTarget => ({
  host: '127.0.0.1',
  port,
  tls: { mode: 'none', verify: true },
  proxyProtocol: 'none',
  xclient: false,
});

/** Starts `server` listening on 127.0.0.1 on a free port; returns the port. */
export async function listenLoopback(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (typeof addr !== 'object' || !addr) throw new Error('no address');
  return addr.port;
}

/** Destroys every socket in `sockets`, then closes `server`; resolves once it is closed. */
export function closeServer(server: Server, sockets: Iterable<{ destroy(): void }>): Promise<void> {
  return new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  });
}
