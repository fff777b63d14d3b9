/**
 * What backend TLS links keep between connections (tls-sessions.ts): one
 * SecureContext for many links, rebuilt when the CA file changes, and TLS
 * session resumption per backend and name, never across targets, verify
 * settings or a failed check. Real TLS on loopback against Node fake POP3
 * servers; each test has its own BackendTlsCache.
 */
import { copyFile, rm, utimes, writeFile, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, getCACertificates, setDefaultCACertificates, TLSSocket, type SecureContext } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backendErrorPhase, openBackendSession } from '../../src/backend/client.js';
import { BackendTlsCache } from '../../src/backend/tls-sessions.js';
import type { BackendLinkSession, BackendTarget, BackendTimeouts } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { makeTempTestPki, makeWrongNameCert, type TestCert, type TestPki } from '../helpers/certs.js';
import { closeServer, listenLoopback, plainTarget } from '../helpers/servers.js';

const T: BackendTimeouts = { connectMs: 5000, greetingMs: 5000, loginMs: 5000 };
const LOGIN = { method: 'user-pass', user: 'alice', password: 'pw' } as const;

let pki: TestPki;
let otherPki: TestPki;
let wrongName: TestCert;

beforeAll(async () => {
  pki = await makeTempTestPki();
  otherPki = await makeTempTestPki(); // a CA the client does not trust
  wrongName = await makeWrongNameCert(pki);
});
afterAll(async () => {
  await rm(pki.dir, { recursive: true, force: true });
  await rm(otherPki.dir, { recursive: true, force: true });
});

type Version = 'TLSv1.2' | 'TLSv1.3';

/** A server context; two fakes given the same one share its ticket keys (either would resume the other's session). */
function serverContext(cert: TestCert, maxVersion: Version = 'TLSv1.3'): SecureContext {
  return createSecureContext({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile), maxVersion });
}

interface Fake {
  port: number;
  /** One entry per finished server-side handshake: did it resume? */
  handshakes: boolean[];
  /** Destroy the next connection as soon as it arrives (a handshake that fails). */
  dropNext: boolean;
  /** The context the next handshakes use. */
  context: SecureContext;
  close(): Promise<void>;
}

const fakes: Fake[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

/** A POP3 backend: implicit TLS or STLS, then USER/PASS accepted. */
async function fake(mode: 'implicit' | 'starttls', context: SecureContext): Promise<Fake> {
  const sockets = new Set<Duplex>();
  const toTls = (sock: Socket, then: (t: TLSSocket) => void): void => {
    const t = new TLSSocket(sock, { isServer: true, secureContext: f.context });
    sockets.add(t);
    t.on('error', () => {});
    t.once('secure', () => {
      f.handshakes.push(t.isSessionReused());
      then(t);
    });
  };
  const converse = (s: Duplex, allowStls: boolean, raw: Socket): void => {
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const cmd = buf.slice(0, i).split(' ')[0]?.toUpperCase();
        buf = buf.slice(i + 2);
        if (cmd === 'STLS' && allowStls) {
          s.write('+OK Begin TLS negotiation now.\r\n');
          s.removeListener('data', onData);
          toTls(raw, (t) => converse(t, false, raw));
          return;
        }
        s.write(cmd === 'PASS' ? '+OK Logged in.\r\n' : '+OK\r\n');
      }
    };
    s.on('data', onData);
  };
  const greet = (s: Duplex, raw: Socket): void => {
    s.write('+OK fake ready.\r\n');
    converse(s, mode === 'starttls', raw);
  };
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
    if (f.dropNext) {
      f.dropNext = false;
      sock.destroy();
      return;
    }
    if (mode === 'implicit') toTls(sock, (t) => greet(t, sock));
    else greet(sock, sock);
  });
  const f: Fake = {
    port: 0,
    handshakes: [],
    dropNext: false,
    context,
    close: () => closeServer(server, sockets),
  };
  f.port = await listenLoopback(server);
  fakes.push(f);
  return f;
}

function target(port: number, tls: Partial<BackendTarget['tls']> = {}): BackendTarget {
  return {
    host: '127.0.0.1',
    port,
    tls: { mode: 'implicit', caFile: pki.caFile, serverName: 'localhost', verify: true, ...tls },
    proxyProtocol: 'none',
    xclient: false,
  };
}

/** Logs in, closes the link, and says whether its handshake resumed (as the client saw it). */
async function login(t: BackendTarget, cache: BackendTlsCache): Promise<boolean> {
  // What the observer (popgate_backend_tls_handshakes_total) is told about each verified handshake.
  const told: boolean[] = [];
  const observer = { connected() {}, loggedIn() {}, failed() {}, tlsHandshake: (resumed: boolean) => void told.push(resumed) };
  const s: BackendLinkSession = await openBackendSession({ target: t, timeouts: T, login: LOGIN, tlsCache: cache, observer });
  const resumed = s.link.tls?.resumed;
  expect(resumed).toBe(s.socket instanceof TLSSocket && s.socket.isSessionReused());
  expect(told).toEqual(t.tls.mode === 'none' ? [] : [resumed === true]);
  s.socket.destroy();
  return resumed === true;
}

async function loginFails(t: BackendTarget, cache: BackendTlsCache, code: GatewayError['code']): Promise<GatewayError> {
  const err = await openBackendSession({ target: t, timeouts: T, login: LOGIN, tlsCache: cache }).then(
    (s) => {
      s.socket.destroy();
      throw new Error('expected the login to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  expect(backendErrorPhase(err)).toBe('tls');
  return err as GatewayError;
}

describe('session resumption', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    for (const mode of ['implicit', 'starttls'] as const) {
      it(`${mode} over ${version}: the next link to the same backend resumes; one context for all`, async () => {
        const f = await fake(mode, serverContext(pki, version));
        const cache = new BackendTlsCache();
        const t = target(f.port, { mode });
        expect(await login(t, cache)).toBe(false);
        expect(await login(t, cache)).toBe(true);
        expect(await login(t, cache)).toBe(true);
        expect(f.handshakes).toEqual([false, true, true]);
        expect(cache.stats).toEqual({ contextsBuilt: 1, full: 1, resumed: 2 });
      });
    }
  }

  it('a session is never offered to another backend, even one that would take it', async () => {
    const shared = serverContext(pki); // same ticket keys: b would resume a's session if offered
    const a = await fake('implicit', shared);
    const b = await fake('implicit', shared);
    const cache = new BackendTlsCache();
    expect(await login(target(a.port), cache)).toBe(false);
    expect(await login(target(b.port), cache)).toBe(false);
    expect(await login(target(a.port), cache)).toBe(true);
    expect(b.handshakes).toEqual([false]);
    expect(cache.stats.contextsBuilt).toBe(1); // same settings: one context for both backends
  });

  it('nor under another name', async () => {
    const f = await fake('implicit', serverContext(pki));
    const cache = new BackendTlsCache();
    expect(await login(target(f.port), cache)).toBe(false);
    const { serverName: _dropped, ...byAddress } = target(f.port).tls;
    expect(await login({ ...target(f.port), tls: byAddress }, cache)).toBe(false); // checked as 127.0.0.1
    expect(f.handshakes).toEqual([false, false]);
  });

  it('a session from an unverified link is not offered to a verified one (which checks the name again)', async () => {
    const f = await fake('implicit', serverContext(wrongName));
    const cache = new BackendTlsCache();
    expect(await login(target(f.port, { verify: false }), cache)).toBe(false);
    expect(await login(target(f.port, { verify: false }), cache)).toBe(true);
    // Resuming would skip the name check and let this through.
    const err = await loginFails(target(f.port), cache, 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('name mismatch');
    expect(f.handshakes.slice(0, 2)).toEqual([false, true]);
  });

  it('nor from an unverified link to a verified one sharing the system store', async () => {
    // The test CA in the default store (this worker only): both links' contexts would trust the same
    // roots, so only the verify setting keeps them apart, and a resumed link would skip the name check.
    const system = getCACertificates('default');
    setDefaultCACertificates([...system, await readFile(pki.caFile, 'utf8')]);
    try {
      const f = await fake('implicit', serverContext(wrongName));
      const cache = new BackendTlsCache();
      const noCaFile = { caFile: undefined };
      expect(await login(target(f.port, { ...noCaFile, verify: false }), cache)).toBe(false);
      expect(await login(target(f.port, { ...noCaFile, verify: false }), cache)).toBe(true);
      const err = await loginFails(target(f.port, noCaFile), cache, 'BACKEND_PROTOCOL');
      expect(err.detail).toContain('name mismatch');
    } finally {
      setDefaultCACertificates(system);
    }
  });

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`a link that failed its certificate check leaves no session behind (${version})`, async () => {
      const f = await fake('implicit', serverContext(wrongName, version));
      const cache = new BackendTlsCache();
      await loginFails(target(f.port), cache, 'BACKEND_PROTOCOL');
      // Resuming would skip the name check and let this through.
      await loginFails(target(f.port), cache, 'BACKEND_PROTOCOL');
      expect(cache.stats).toEqual({ contextsBuilt: 1, full: 0, resumed: 0 });
    });
  }

  it('a failed handshake drops the session it was offered', async () => {
    const f = await fake('implicit', serverContext(pki));
    const cache = new BackendTlsCache();
    expect(await login(target(f.port), cache)).toBe(false);
    f.dropNext = true;
    await loginFails(target(f.port), cache, 'BACKEND_UNREACHABLE');
    expect(await login(target(f.port), cache)).toBe(false);
    expect(await login(target(f.port), cache)).toBe(true);
  });

  it('clear() (configuration reload) starts afresh: a new context, a full handshake', async () => {
    const f = await fake('implicit', serverContext(pki));
    const cache = new BackendTlsCache();
    expect(await login(target(f.port), cache)).toBe(false);
    cache.clear();
    expect(await login(target(f.port), cache)).toBe(false);
    expect(cache.stats.contextsBuilt).toBe(2);
  });

  it('plaintext links build no context', async () => {
    const server = createServer((s) => {
      s.on('error', () => {});
      s.write('+OK plain\r\n');
      s.on('data', (c: Buffer) => s.write(c.toString().startsWith('PASS') ? '+OK Logged in.\r\n' : '+OK\r\n'));
    });
    const port = await listenLoopback(server);
    const cache = new BackendTlsCache();
    try {
      const s = await openBackendSession({ target: plainTarget(port), timeouts: T, login: LOGIN, tlsCache: cache });
      s.socket.destroy();
      expect(s.link.tls).toBeUndefined();
      expect(cache.stats).toEqual({ contextsBuilt: 0, full: 0, resumed: 0 });
    } finally {
      await closeServer(server, []);
    }
  });
});

describe('the CA file', () => {
  /** A copy of the trusted CA the test may rewrite; distinct mtimes so loadCa's stat sees every change. */
  async function caCopy(): Promise<{ file: string; rewrite(data: Buffer | string, mtimeS: number): Promise<void> }> {
    const file = `${pki.dir}/ca-copy-${fakes.length}-${Math.random().toString(36).slice(2)}.pem`;
    await copyFile(pki.caFile, file);
    await utimes(file, 1_000_000, 1_000_000);
    return {
      file,
      async rewrite(data, mtimeS) {
        await writeFile(file, data);
        await utimes(file, mtimeS, mtimeS);
      },
    };
  }

  it('an unchanged file keeps the context; a touched one with the same content too', async () => {
    const f = await fake('implicit', serverContext(pki));
    const ca = await caCopy();
    const cache = new BackendTlsCache();
    const t = target(f.port, { caFile: ca.file });
    expect(await login(t, cache)).toBe(false);
    expect(await login(t, cache)).toBe(true);
    await ca.rewrite(await readFile(pki.caFile), 2_000_000);
    expect(await login(t, cache)).toBe(true);
    expect(cache.stats.contextsBuilt).toBe(1);
  });

  it('new content builds a new context and drops the sessions of the old one', async () => {
    const f = await fake('implicit', serverContext(pki));
    const ca = await caCopy();
    const cache = new BackendTlsCache();
    const t = target(f.port, { caFile: ca.file });
    expect(await login(t, cache)).toBe(false);
    const both = `${await readFile(pki.caFile, 'utf8')}${await readFile(otherPki.caFile, 'utf8')}`;
    await ca.rewrite(both, 2_000_000);
    expect(await login(t, cache)).toBe(false);
    expect(await login(t, cache)).toBe(true);
    expect(cache.stats.contextsBuilt).toBe(2);
  });

  it('a CA that no longer trusts the backend fails it, kept session or not', async () => {
    const f = await fake('implicit', serverContext(pki));
    const ca = await caCopy();
    const cache = new BackendTlsCache();
    const t = target(f.port, { caFile: ca.file });
    expect(await login(t, cache)).toBe(false);
    await ca.rewrite(await readFile(otherPki.caFile), 2_000_000);
    const err = await loginFails(t, cache, 'BACKEND_PROTOCOL');
    // Resuming would carry the old verdict and let this through.
    expect(err.detail).toContain('certificate verification failed');
  });
});
