/**
 * The minimal Node "raw TLS splice" baseline for the comparison: a
 * tls.createServer whose every connection is piped to a net.connect to the
 * backend (no POP3, no login, no limits). Shows what Node's TLS stack alone
 * costs and delivers, next to stunnel (the C baseline) and popgate.
 *
 *   node dist-bench/bench/compare/tls-pipe.js '{"cert":"file","key":"file","backendPort":N}'
 *
 * Prints `READY <port>` once it listens on 127.0.0.1. Node's defaults
 * (session tickets on, no server-side session cache), like popgate's.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { exitWithParent } from '../lib/child-exit.js';

interface Options {
  readonly cert: string;
  readonly key: string;
  readonly backendPort: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options;
const server = tls.createServer({ cert: readFileSync(opts.cert), key: readFileSync(opts.key) }, (client) => {
  client.setNoDelay(true);
  const backend = net.connect({ host: '127.0.0.1', port: opts.backendPort });
  backend.setNoDelay(true);
  const kill = (): void => {
    client.destroy();
    backend.destroy();
  };
  client.on('error', kill);
  backend.on('error', kill);
  client.pipe(backend);
  backend.pipe(client);
});
server.on('tlsClientError', () => {
  /* a client that gives up mid-handshake is normal */
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0}\n`);
});
exitWithParent();
