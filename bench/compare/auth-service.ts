/**
 * A tiny nginx `auth_http` service for the comparison, run as a child process
 * of its own (Node http, keep-alive):
 *
 *   node dist-bench/bench/compare/auth-service.js '<json Options>'
 *
 * Prints `READY <port>` once it listens on 127.0.0.1. For each GET it looks
 * up Auth-User (percent-decoded, as nginx and popgate escape it), compares
 * Auth-Pass with the client password and answers
 * `Auth-Status: OK` + Auth-Server/Auth-Port (the user's backend) +
 * Auth-User/Auth-Pass (the internal backend credentials: for Dovecot the
 * master form `alice*popgate` + the master password). Anything else gets
 * `Auth-Status: Invalid login or password` + `Auth-Wait: 3`.
 *
 * nginx opens a new connection per request (HTTP/1.0, no keep-alive);
 * popgate keeps its connections open: the same service serves both.
 */
import http from 'node:http';
import { exitWithParent } from '../lib/child-exit.js';

export interface AuthUser {
  /** The password the client gives the proxy. */
  readonly password: string;
  readonly server: string;
  readonly port: number;
  readonly backendUser: string;
  readonly backendPass: string;
}

export interface AuthServiceOptions {
  readonly users: Readonly<Record<string, AuthUser>>;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as AuthServiceOptions;
const users = new Map(Object.entries(opts.users ?? {}));

function decode(v: string | string[] | undefined): string {
  const s = Array.isArray(v) ? (v[v.length - 1] ?? '') : (v ?? '');
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

let requests = 0;
const server = http.createServer((req, res) => {
  requests++;
  const u = users.get(decode(req.headers['auth-user']));
  if (u && decode(req.headers['auth-pass']) === u.password) {
    res.writeHead(200, {
      'Auth-Status': 'OK',
      'Auth-Server': u.server,
      'Auth-Port': String(u.port),
      'Auth-User': u.backendUser,
      'Auth-Pass': u.backendPass,
    });
  } else {
    res.writeHead(200, { 'Auth-Status': 'Invalid login or password', 'Auth-Wait': '3' });
  }
  res.end();
});
server.keepAliveTimeout = 600_000;
server.headersTimeout = 610_000;
server.maxRequestsPerSocket = 0;

server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0}\n`);
});
exitWithParent(() => {
  process.stderr.write(`auth-service: ${requests} requests\n`);
});
