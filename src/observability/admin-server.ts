/**
 * The admin HTTP listener (node:http, no framework), separate from the mail
 * ports: `GET /metrics` (Prometheus text), `GET /healthz` (200 while the
 * process runs), `GET /readyz` (200 when the gateway can serve, else 503
 * with the reasons). Any other path is 404, any other method 405.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';

/** One readiness condition. */
export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
  /** Why it fails (or what was checked). */
  readonly detail?: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly checks: readonly ReadinessCheck[];
}

export interface AdminServerOptions {
  readonly address: string;
  readonly port: number;
  /** The Prometheus exposition and its content type. */
  readonly metrics: { render(): Promise<string>; readonly contentType: string };
  readonly readiness: () => Promise<Readiness>;
  readonly log: Logger;
}

export interface AdminServer {
  readonly address: string;
  /** The bound port (the ephemeral one when configured with 0). */
  readonly port: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=utf-8';

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** The /readyz body: `{"ready":false,"reasons":["backend: ..."],"checks":[...]}`. */
export function readinessBody(r: Readiness): string {
  const reasons = r.checks.filter((c) => !c.ok).map((c) => (c.detail ? `${c.name}: ${c.detail}` : c.name));
  return `${JSON.stringify({ ready: r.ready, reasons, checks: r.checks })}\n`;
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: AdminServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
    send(res, 404, TEXT, 'not found\n');
    return;
  }
  if (req.method !== 'GET') {
    send(res, 405, TEXT, 'method not allowed\n', { Allow: 'GET' });
    return;
  }
  switch (path) {
    case '/healthz':
      send(res, 200, TEXT, 'ok\n');
      return;
    case '/readyz': {
      const r = await opts.readiness();
      send(res, r.ready ? 200 : 503, 'application/json', readinessBody(r));
      return;
    }
    case '/metrics':
      send(res, 200, opts.metrics.contentType, await opts.metrics.render());
      return;
  }
}

/** Binds the admin listener; rejects with a clear message when it cannot. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const server = createServer((req, res) => {
    // The body of a GET is never read; drain anything sent.
    req.resume();
    handle(req, res, opts).catch((err: unknown) => {
      opts.log.error({ err: err instanceof Error ? err.message : String(err), url: req.url }, 'admin request failed');
      if (!res.headersSent) send(res, 500, TEXT, 'internal error\n');
      else res.destroy();
    });
  });
  // Small, slow or idle clients must not hold sockets for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.removeListener('listening', onListening);
      reject(new Error(`admin: cannot listen on ${opts.address}:${opts.port}: ${err.message}`));
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host: opts.address, port: opts.port });
  });
  server.on('error', (err) => opts.log.error({ err: err.message }, 'admin listener error'));
  const bound = server.address();
  const port = bound && typeof bound === 'object' ? bound.port : opts.port;
  opts.log.info({ address: opts.address, port }, 'admin listener ready');
  let closing: Promise<void> | undefined;
  return {
    address: opts.address,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
