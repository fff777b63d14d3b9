/**
 * The backend part of `popgate doctor`. Without a user: each backend target
 * (the default backend and every routing entry) is connected to, must greet
 * with +OK, and its TLS (implicit or STLS) must pass the name and CA checks
 * serve makes; then QUIT, before any login. With a user: the internal login
 * serve would make for that user, on each backend of the user's route, then
 * QUIT at once: no command that lists, reads or deletes mail is ever sent.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type TLSSocket } from 'node:tls';
import { createInternalLoginResolver, openBackendSession, type BackendTarget } from '../../backend/index.js';
import { loadCa, tlsCheckName, tlsClientOptions, tlsContextOptions } from '../../backend/tls-link.js';
import { backendTargets, targetsForUser, type PopgateConfig } from '../../config/index.js';
import { GatewayError } from '../../errors.js';
import { encodeProxyHeader, hostPort } from '../../net/index.js';
import { errText, fail, ok, warn, type DoctorResult } from './types.js';

/** Every distinct backend target of the configuration, each with the config paths that name it. */
export function distinctTargets(config: Pick<PopgateConfig, 'backend' | 'routing'>): { target: BackendTarget; where: string[] }[] {
  const t = backendTargets(config);
  const out = new Map<string, { target: BackendTarget; where: string[] }>();
  const add = (target: BackendTarget, where: string): void => {
    const key = JSON.stringify(target);
    const hit = out.get(key);
    if (hit) hit.where.push(where);
    else out.set(key, { target, where: [where] });
  };
  for (const target of t.defaultTargets) add(target, 'backend');
  for (const [user, list] of t.users) list.forEach((target, i) => add(target, `routing.users.${user}[${i}]`));
  for (const [domain, list] of t.domains) list.forEach((target, i) => add(target, `routing.domains.${domain}[${i}]`));
  return [...out.values()];
}

const MAX_LINE = 512;

/** One line from `sock` (without CRLF) within `ms`; bytes after it are put back. */
function readLine(sock: Socket, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
      sock.pause();
      if (err) reject(err);
      else resolve(line ?? '');
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) {
        const rest = buf.subarray(nl + 1);
        done(undefined, buf.subarray(0, nl).toString('latin1').replace(/\r$/, ''));
        if (rest.length > 0) sock.unshift(rest);
      } else if (buf.length > MAX_LINE) done(new Error(`a line longer than ${MAX_LINE} bytes`));
    };
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(new Error('the backend closed the connection'));
    const timer = setTimeout(() => done(new Error(`no answer within ${ms} ms`)), ms);
    sock.on('data', onData);
    sock.once('error', onError);
    sock.once('close', onClose);
    sock.resume();
  });
}

function connectTcp(host: string, port: number, ms: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no connection within ${ms} ms`));
    }, ms);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function startTls(target: BackendTarget, sock: Socket, ms: number): Promise<TLSSocket> {
  const ca = target.tls.caFile !== undefined ? await loadCa(target.tls.caFile) : undefined;
  const ctx = createSecureContext(tlsContextOptions(ca));
  return new Promise((resolve, reject) => {
    const s = tlsConnect(tlsClientOptions(target, sock, ctx, undefined));
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no TLS handshake within ${ms} ms`));
    }, ms);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function tlsDetail(target: BackendTarget, s: TLSSocket): string {
  const how = target.tls.mode === 'implicit' ? 'implicit TLS' : 'STLS';
  const trust = target.tls.caFile !== undefined ? `the CA file ${target.tls.caFile}` : 'the system CA store';
  return `${how}, ${s.getProtocol() ?? 'TLS'}; certificate verified for ${tlsCheckName(target)} against ${trust}`;
}

const TLS_FIX = 'give the backend a certificate for the checked name from a CA in backend tls.caFile (or the system store), or set tls.serverName to a name the certificate has';

/** Connect, greeting, TLS; then QUIT. Two results: reachable, TLS. Deadlines as serve's (backend.timeouts connect and greeting). */
export async function probeTarget(target: BackendTarget, where: readonly string[], timeouts: { readonly connectMs: number; readonly greetingMs: number }): Promise<DoctorResult[]> {
  const at = hostPort(target.host, target.port);
  const label = `${at} (${where.join(', ')})`;
  const connectCheck = `${label} greeting`;
  const tlsCheck = `${label} TLS`;
  let sock: Socket;
  try {
    sock = await connectTcp(target.host, target.port, timeouts.connectMs);
  } catch (err) {
    return [fail('backend', connectCheck, `cannot connect: ${(err as NodeJS.ErrnoException).code ?? errText(err)}`, `start the POP3 server at ${at}, or correct host/port under ${where[0] ?? 'backend'}`)];
  }
  const results: DoctorResult[] = [];
  let line: Socket = sock;
  try {
    const header = encodeProxyHeader(target.proxyProtocol);
    if (header.length > 0) sock.write(header);
    if (target.tls.mode === 'implicit') {
      try {
        line = await startTls(target, sock, timeouts.connectMs);
      } catch (err) {
        return [ok('backend', connectCheck, 'TCP connection accepted'), fail('backend', tlsCheck, `implicit TLS failed: ${errText(err)}`, TLS_FIX)];
      }
      results.push(ok('backend', tlsCheck, tlsDetail(target, line as TLSSocket)));
    }
    let greeting: string;
    try {
      greeting = await readLine(line, timeouts.greetingMs);
    } catch (err) {
      return [...results, fail('backend', connectCheck, `no greeting: ${errText(err)}`, `make sure ${at} is a POP3 server${target.proxyProtocol !== 'none' ? ' that expects a PROXY header' : ''}`)];
    }
    const shown = greeting.slice(0, 80).replace(/[^\x20-\x7e]/g, '?');
    if (!greeting.startsWith('+OK')) {
      return [...results, fail('backend', connectCheck, `greets "${shown}", not +OK`, `make sure ${at} is a POP3 server accepting connections from this host`)];
    }
    results.unshift(ok('backend', connectCheck, `greets "${shown}"`));
    if (target.tls.mode === 'starttls') {
      line.write('STLS\r\n');
      const answer = await readLine(line, timeouts.greetingMs).catch((err: unknown) => `(${errText(err)})`);
      if (!answer.startsWith('+OK')) {
        line.write('QUIT\r\n');
        results.push(fail('backend', tlsCheck, `STLS refused: "${answer.slice(0, 80)}"`, 'enable TLS on the backend (Dovecot: ssl = yes), or set its tls.mode to match what it offers'));
        return results;
      }
      try {
        line = await startTls(target, line, timeouts.greetingMs);
      } catch (err) {
        results.push(fail('backend', tlsCheck, `STLS handshake failed: ${errText(err)}`, TLS_FIX));
        return results;
      }
      results.push(ok('backend', tlsCheck, tlsDetail(target, line as TLSSocket)));
    } else if (target.tls.mode === 'none') {
      results.push(ok('backend', tlsCheck, 'plaintext link (tls.mode: none): keep it on a trusted network'));
    }
    if (target.tls.mode !== 'none' && !target.tls.verify) {
      const i = results.findIndex((r) => r.check === tlsCheck);
      results[i] = warn('backend', tlsCheck, `${results[i]?.detail ?? 'TLS'}; tls.verify is false: the certificate was NOT checked`, 'set tls.verify: true with the backend CA in tls.caFile');
    }
    line.write('QUIT\r\n');
    return results;
  } finally {
    line.end();
    setTimeout(() => line.destroy(), 1_000).unref();
    line.on('error', () => undefined);
  }
}

const silentLog = { info: () => undefined, warn: () => undefined };

/** The internal login for `user` on each backend of its route, then QUIT at once. */
export async function checkUserLogin(config: PopgateConfig, user: string): Promise<DoctorResult[]> {
  const login = config.backend.login;
  const check = `internal login for ${user}`;
  if (login.mode === 'passthrough') {
    return [warn('backend', check, 'not tried: passthrough mode replays the client\'s own password, which doctor does not have', 'log in through popgate with a real client to test a passthrough login')];
  }
  let resolver;
  try {
    resolver = await createInternalLoginResolver(login, silentLog);
  } catch (err) {
    return [fail('backend', check, errText(err), 'fix backend.login (see check-config)')];
  }
  try {
    let credentials;
    try {
      credentials = await resolver.resolve(user, undefined);
    } catch (err) {
      return [fail('backend', check, err instanceof GatewayError ? `${err.code}: ${err.detail ?? err.message}` : errText(err), `add ${user} to backend.login.secretsFile`)];
    }
    const how = login.mode === 'master' ? `master user ${login.user}, ${login.method}` : `mapped account from ${login.secretsFile}`;
    const results: DoctorResult[] = [];
    const timeouts = { connectMs: config.backend.timeouts.connect, greetingMs: config.backend.timeouts.greeting, loginMs: config.backend.timeouts.login };
    for (const target of targetsForUser(backendTargets(config), user)) {
      const at = hostPort(target.host, target.port);
      try {
        const session = await openBackendSession({ target, timeouts, login: credentials });
        session.socket.on('error', () => undefined);
        session.socket.end('QUIT\r\n');
        setTimeout(() => session.socket.destroy(), 1_000).unref();
        results.push(ok('backend', `${check} at ${at}`, `accepted (${how}); QUIT sent at once: nothing in the maildrop was listed, read or deleted`));
      } catch (err) {
        const code = err instanceof GatewayError ? err.code : undefined;
        const detail = err instanceof GatewayError ? `${err.code}: ${err.detail ?? err.message}` : errText(err);
        const fix =
          code === 'BACKEND_LOGIN_REJECTED'
            ? login.mode === 'master'
              ? 'make backend.login user and password match the backend\'s master user (Dovecot: the master passdb, and auth_master_user_separator for user-separator)'
              : `correct ${user}'s entry in ${login.secretsFile}`
            : `make ${at} reachable and its TLS pass (see the lines above)`;
        results.push(fail('backend', `${check} at ${at}`, `refused: ${detail} (${how})`, fix));
      }
    }
    return results;
  } finally {
    resolver.close();
  }
}
