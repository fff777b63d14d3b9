/**
 * The TLS, PROXY-header and XCLIENT parts of openBackendSession against Node
 * fake POP3 servers (real TLS, certificates made by the openssl CLI).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createSecureContext, TLSSocket, type PeerCertificate, type SecureContext } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backendErrorPhase, openBackendSession, type OpenBackendOptions } from '../../src/backend/client.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/net/index.js';
import { spliceSessions } from '../../src/backend/splice.js';
import { checkBackendIdentity } from '../../src/backend/tls-identity.js';
import type { BackendLinkSession, BackendTarget, BackendTimeouts, ForwardedClient } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { issueCert, makeTempTestPki, makeWrongNameCert, type TestCert, type TestPki } from '../helpers/certs.js';
import { LineClient } from '../helpers/line-client.js';
import { closeServer, listenLoopback } from '../helpers/servers.js';

const T: BackendTimeouts = { connectMs: 3000, greetingMs: 3000, loginMs: 3000 };
const LOGIN = { method: 'user-pass', user: 'alice', password: 'pw' } as const;
const CLIENT: ForwardedClient = { address: '127.0.0.5', port: 40000, localAddress: '127.0.0.1', localPort: 995 };

let pki: TestPki;
let otherPki: TestPki;
let wrongName: TestCert;
let partialWildcard: TestCert;
let wildcard: TestCert;
let cnOnly: TestCert;
let cnWithOtherSan: TestCert;

beforeAll(async () => {
  pki = await makeTempTestPki();
  otherPki = await makeTempTestPki(); // a CA the client does not trust
  wrongName = await makeWrongNameCert(pki);
  partialWildcard = await issueCert(pki, { name: 'partial', dns: ['f*.popgate.test'] });
  wildcard = await issueCert(pki, { name: 'wildcard', dns: ['*.popgate.test'] });
  cnOnly = await issueCert(pki, { name: 'cn-only', cn: 'localhost' });
  cnWithOtherSan = await issueCert(pki, { name: 'cn-other-san', cn: 'localhost', dns: ['other.popgate.test'] });
});
afterAll(async () => {
  await rm(pki.dir, { recursive: true, force: true });
  await rm(otherPki.dir, { recursive: true, force: true });
});

const ctx = (cert: TestCert): SecureContext =>
  createSecureContext({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) });

interface FakeOptions {
  /** 'implicit': TLS from the first byte (after a PROXY header, if expected); 'starttls': plain, STLS offered. */
  mode: 'implicit' | 'starttls' | 'plain';
  cert?: TestCert;
  greeting?: string;
  /** Expect a PROXY header before anything else ('v1' line or 'v2' binary). */
  proxy?: 'v1' | 'v2';
  /** Answer to STLS (default `+OK Begin TLS negotiation now.\r\n`); the upgrade only follows +OK. */
  stlsReply?: string;
  xclientReply?: string;
  /** After the login, echo every line back prefixed with "echo: ". */
  echo?: boolean;
  /** Server-side TLS options (e.g. maxVersion). */
  tlsOptions?: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' | 'TLSv1.1' | 'TLSv1' };
  /** Called with the server side of the connection once the client has logged in. */
  onLogin?: (s: Duplex) => void;
}

interface Fake {
  port: number;
  /** Command lines received, with '[tls]' marking where TLS started. */
  lines: string[];
  /** The PROXY header bytes received, if one was expected. */
  header(): Buffer | undefined;
  /** SNI seen by the server (false when none). */
  sni(): string | false | null | undefined;
  connections(): number;
  close(): Promise<void>;
}

const fakes: Fake[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

/** Length of a complete PROXY header at the start of buf, or -1. */
function proxyHeaderLength(buf: Buffer, v: 'v1' | 'v2'): number {
  if (v === 'v1') {
    const i = buf.indexOf('\r\n');
    return i < 0 ? -1 : i + 2;
  }
  if (buf.length < 16) return -1;
  const len = 16 + buf.readUInt16BE(14);
  return buf.length >= len ? len : -1;
}

async function fake(opts: FakeOptions): Promise<Fake> {
  const lines: string[] = [];
  const sockets = new Set<Duplex>();
  let header: Buffer | undefined;
  let sni: string | false | null | undefined;
  let connections = 0;
  const secureContext = !opts.cert
    ? undefined
    : opts.tlsOptions?.maxVersion
      ? createSecureContext({
          cert: readFileSync(opts.cert.certFile),
          key: readFileSync(opts.cert.keyFile),
          maxVersion: opts.tlsOptions.maxVersion,
          minVersion: 'TLSv1',
          ciphers: 'DEFAULT:@SECLEVEL=0',
        })
      : ctx(opts.cert);

  const toTls = (sock: Duplex, then: (s: TLSSocket) => void): void => {
    const t = new TLSSocket(sock, {
      isServer: true,
      ...(secureContext ? { secureContext } : {}),
    });
    sockets.add(t);
    t.on('error', () => {});
    t.once('secure', () => {
      sni = t.servername;
      lines.push('[tls]');
      then(t);
    });
  };

  const converse = (s: Duplex, allowStls: boolean): void => {
    let buf = '';
    let loggedIn = false;
    const onData = (c: Buffer): void => {
      buf += c.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        lines.push(line);
        if (loggedIn && opts.echo) {
          s.write(`echo: ${line}\r\n`);
          continue;
        }
        const cmd = line.split(' ')[0]?.toUpperCase();
        if (cmd === 'STLS' && allowStls) {
          const reply = opts.stlsReply ?? '+OK Begin TLS negotiation now.\r\n';
          s.write(reply);
          if (reply.startsWith('+OK')) {
            s.removeListener('data', onData);
            toTls(s, (t) => converse(t, false));
          }
          return;
        }
        if (cmd === 'XCLIENT') s.write(opts.xclientReply ?? '+OK Updated\r\n');
        else if (cmd === 'USER') s.write('+OK\r\n');
        else if (cmd === 'PASS') {
          loggedIn = true;
          s.write('+OK Logged in.\r\n');
          opts.onLogin?.(s);
        } else if (cmd === 'QUIT') s.end('+OK bye\r\n');
        else s.write('-ERR unknown\r\n');
      }
    };
    s.on('data', onData);
  };

  const greet = (s: Duplex): void => {
    s.write(opts.greeting ?? '+OK fake ready.\r\n');
    converse(s, opts.mode === 'starttls');
  };

  const afterHeader = (sock: Duplex): void => {
    if (opts.mode === 'implicit') toTls(sock, greet);
    else greet(sock);
  };

  const server: Server = createServer((sock) => {
    connections++;
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
    if (!opts.proxy) {
      afterHeader(sock);
      return;
    }
    const v = opts.proxy;
    let got = Buffer.alloc(0);
    const onHeader = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      const n = proxyHeaderLength(got, v);
      if (n < 0) return;
      sock.removeListener('data', onHeader);
      header = got.subarray(0, n);
      // Anything after the header belongs to the next layer: relay through a
      // stream (a TLSSocket over the raw socket would read its handle and miss it).
      const rest = new Duplex({
        read() {},
        write(chunk: Buffer, _enc, cb) {
          sock.write(chunk, cb);
        },
        final(cb) {
          sock.end();
          cb();
        },
      });
      sockets.add(rest);
      if (got.length > n) rest.push(got.subarray(n));
      sock.on('data', (c: Buffer) => rest.push(c));
      sock.on('end', () => rest.push(null));
      afterHeader(rest);
    };
    sock.on('data', onHeader);
  });
  const f: Fake = {
    port: await listenLoopback(server),
    lines,
    header: () => header,
    sni: () => sni,
    connections: () => connections,
    close: () => closeServer(server, sockets),
  };
  fakes.push(f);
  return f;
}

function target(port: number, o: Partial<BackendTarget> & { tls?: BackendTarget['tls'] } = {}): BackendTarget {
  return {
    host: '127.0.0.1',
    port,
    tls: { mode: 'implicit', caFile: pki.caFile, serverName: 'localhost', verify: true },
    proxyProtocol: 'none',
    xclient: false,
    ...o,
  };
}

const open = (t: BackendTarget, o: Partial<OpenBackendOptions> = {}): Promise<BackendLinkSession> =>
  openBackendSession({ target: t, timeouts: T, login: LOGIN, ...o });

async function expectGatewayError(p: Promise<unknown>, code: GatewayError['code']): Promise<GatewayError> {
  const err = await p.then(
    (s) => {
      (s as BackendLinkSession).socket.destroy();
      throw new Error(`expected ${code}, got a session`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  return err as GatewayError;
}

describe('implicit TLS', () => {
  it('logs in over TLS when the certificate and name check out; SNI is the server name', async () => {
    const f = await fake({ mode: 'implicit', cert: pki });
    const s = await open(target(f.port));
    try {
      expect(s.socket).toBeInstanceOf(TLSSocket);
      expect(s.loginReply).toBe('+OK Logged in.');
      expect(s.endpoint).toEqual({ host: '127.0.0.1', port: f.port });
      expect(s.link.tls).toMatchObject({ mode: 'implicit', verified: true, checkedName: 'localhost' });
      expect(s.link.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
      expect(s.link.greeting).toBe('+OK fake ready.');
      expect(f.lines).toEqual(['[tls]', 'USER alice', 'PASS pw']);
      expect(f.sni()).toBe('localhost');
      expect(s.socket.isPaused()).toBe(true);
      for (const ev of ['data', 'secureConnect']) expect(s.socket.listenerCount(ev)).toBe(0);
    } finally {
      s.socket.destroy();
    }
  });

  it('without serverName the host is checked: an IP literal against IP SANs, and no SNI is sent', async () => {
    const f = await fake({ mode: 'implicit', cert: pki });
    const s = await open(target(f.port, { tls: { mode: 'implicit', caFile: pki.caFile, verify: true } }));
    s.socket.destroy();
    expect(s.link.tls?.checkedName).toBe('127.0.0.1');
    expect(f.sni()).toBe(false);
  });

  it('a certificate for another name is refused before any credential is sent', async () => {
    const f = await fake({ mode: 'implicit', cert: wrongName });
    const err = await expectGatewayError(open(target(f.port)), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('TLS certificate name mismatch');
    expect(err.detail).toContain('localhost');
    expect(backendErrorPhase(err)).toBe('tls');
    expect(f.lines.filter((l) => l !== '[tls]')).toEqual([]);
  });

  it('a certificate from an unknown CA is refused', async () => {
    const f = await fake({ mode: 'implicit', cert: otherPki });
    const err = await expectGatewayError(open(target(f.port)), 'BACKEND_PROTOCOL');
    expect(err.detail).toMatch(/TLS certificate verification failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(f.lines).toEqual([]);
  });

  it('the system store does not trust the test CA (no caFile)', async () => {
    const f = await fake({ mode: 'implicit', cert: pki });
    const err = await expectGatewayError(
      open(target(f.port, { tls: { mode: 'implicit', serverName: 'localhost', verify: true } })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('TLS certificate verification failed');
  });

  it('verify: false accepts an unknown CA with a wrong name', async () => {
    const f = await fake({ mode: 'implicit', cert: otherPki });
    const s = await open(target(f.port, { tls: { mode: 'implicit', serverName: 'mail.popgate.test', verify: false } }));
    s.socket.destroy();
    expect(s.loginReply).toBe('+OK Logged in.');
    expect(s.link.tls).toMatchObject({ mode: 'implicit', verified: false });
    expect(s.link.tls?.checkedName).toBeUndefined();
  });

  it.each([
    ['a partial-label wildcard f*.popgate.test for foo.popgate.test', () => partialWildcard, 'foo.popgate.test', false],
    ['a whole-label wildcard *.popgate.test for mail.popgate.test', () => wildcard, 'mail.popgate.test', true],
    ['a wildcard for two labels (a.b.popgate.test)', () => wildcard, 'a.b.popgate.test', false],
    ['the CN of a certificate without SAN', () => cnOnly, 'localhost', true],
    ['the CN when a DNS SAN exists (ignored)', () => cnWithOtherSan, 'localhost', false],
  ] as const)('name check: %s → accepted=%s', async (_name, cert, serverName, ok) => {
    const f = await fake({ mode: 'implicit', cert: cert() });
    const p = open(target(f.port, { tls: { mode: 'implicit', caFile: pki.caFile, serverName, verify: true } }));
    if (ok) {
      const s = await p;
      s.socket.destroy();
      expect(s.link.tls?.checkedName).toBe(serverName);
    } else {
      const err = await expectGatewayError(p, 'BACKEND_PROTOCOL');
      expect(err.detail).toContain('name mismatch');
    }
  });

  it('a plaintext server on the TLS port is a TLS failure (BACKEND_PROTOCOL), not an outage', async () => {
    const f = await fake({ mode: 'plain' });
    const err = await expectGatewayError(open(target(f.port)), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('TLS handshake failed');
    expect(backendErrorPhase(err)).toBe('tls');
  });

  it('a server dropping the connection during the handshake is BACKEND_UNREACHABLE in phase tls', async () => {
    const srv = createServer((s) => s.destroy());
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const err = await expectGatewayError(open(target((srv.address() as { port: number }).port)), 'BACKEND_UNREACHABLE');
      expect(backendErrorPhase(err)).toBe('tls');
    } finally {
      srv.close();
    }
  });

  it('a silent TLS server times out in phase tls, on the connectMs deadline', async () => {
    const srv = createServer(() => undefined);
    const held: Socket[] = [];
    srv.on('connection', (s) => held.push(s));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const clock = new FakeClock();
      const p = open(target((srv.address() as { port: number }).port), {
        clock,
        timeouts: { connectMs: 200, greetingMs: 5000, loginMs: 5000 },
      });
      // Connected: the handshake gets a deadline of its own, connectMs again (not greetingMs).
      const handshake = await clock.nthTimer(2);
      expect(clock.requested).toEqual([200, 200]);
      expect(clock.pending).toEqual([handshake]);
      handshake.fire();
      const err = await expectGatewayError(p, 'BACKEND_TIMEOUT');
      expect(err.detail).toContain('(tls)');
      expect(backendErrorPhase(err)).toBe('tls');
    } finally {
      held.forEach((s) => s.destroy());
      srv.close();
    }
  });

  it('refuses a server that only speaks TLS 1.1 (minimum TLSv1.2)', async () => {
    const f = await fake({ mode: 'implicit', cert: pki, tlsOptions: { maxVersion: 'TLSv1.1' } });
    const err = await expectGatewayError(open(target(f.port)), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('TLS handshake failed');
  });

  it('an unreadable CA file is INTERNAL, before connecting', async () => {
    const f = await fake({ mode: 'implicit', cert: pki });
    const err = await expectGatewayError(
      open(target(f.port, { tls: { mode: 'implicit', caFile: `${pki.dir}/missing.pem`, verify: true } })),
      'INTERNAL',
    );
    expect(err.detail).toContain('missing.pem');
    expect(err.detail).toContain('ENOENT');
    expect(f.connections()).toBe(0);
  });
});

describe('STLS', () => {
  it('upgrades after +OK to STLS; no second greeting; the login runs over TLS', async () => {
    const f = await fake({ mode: 'starttls', cert: pki });
    const s = await open(target(f.port, { tls: { mode: 'starttls', caFile: pki.caFile, serverName: 'localhost', verify: true } }));
    try {
      expect(s.socket).toBeInstanceOf(TLSSocket);
      expect(f.lines).toEqual(['STLS', '[tls]', 'USER alice', 'PASS pw']);
      expect(s.link.tls).toMatchObject({ mode: 'starttls', verified: true, checkedName: 'localhost' });
      expect(f.sni()).toBe('localhost');
    } finally {
      s.socket.destroy();
    }
  });

  it('a refused STLS fails; it never falls back to plaintext', async () => {
    const f = await fake({ mode: 'starttls', cert: pki, stlsReply: '-ERR TLS not configured\r\n' });
    const err = await expectGatewayError(
      open(target(f.port, { tls: { mode: 'starttls', caFile: pki.caFile, verify: true } })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('STLS refused: -ERR TLS not configured');
    expect(backendErrorPhase(err)).toBe('starttls');
    expect(f.lines).toEqual(['STLS']);
  });

  it('plaintext queued behind the STLS answer is refused (response injection)', async () => {
    const f = await fake({ mode: 'starttls', cert: pki, stlsReply: '+OK go ahead\r\n+OK Logged in.\r\n' });
    const err = await expectGatewayError(
      open(target(f.port, { tls: { mode: 'starttls', caFile: pki.caFile, verify: true } })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('after the STLS answer');
    expect(f.lines.filter((l) => l.startsWith('USER') || l.startsWith('PASS'))).toEqual([]);
  });

  it('a wrong-name certificate after STLS is refused', async () => {
    const f = await fake({ mode: 'starttls', cert: wrongName });
    const err = await expectGatewayError(
      open(target(f.port, { tls: { mode: 'starttls', caFile: pki.caFile, serverName: 'localhost', verify: true } })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('name mismatch');
    expect(f.lines).toEqual(['STLS']);
  });
});

describe('PROXY header', () => {
  it.each(['v1', 'v2'] as const)('%s goes first on a plain link, byte-exact', async (v) => {
    const f = await fake({ mode: 'plain', proxy: v });
    const s = await open(target(f.port, { tls: { mode: 'none', verify: true }, proxyProtocol: v }), { client: CLIENT });
    s.socket.destroy();
    const expected = v === 'v1' ? encodeProxyV1(CLIENT) : encodeProxyV2(CLIENT);
    expect(f.header()?.equals(expected)).toBe(true);
    expect(f.lines).toEqual(['USER alice', 'PASS pw']);
    expect(s.link.proxyProtocol).toBe(v);
  });

  it('v2 goes before the TLS handshake on an implicit-TLS link', async () => {
    const f = await fake({ mode: 'implicit', cert: pki, proxy: 'v2' });
    const s = await open(target(f.port, { proxyProtocol: 'v2' }), { client: CLIENT });
    s.socket.destroy();
    expect(f.header()?.equals(encodeProxyV2(CLIENT))).toBe(true);
    expect(f.lines).toEqual(['[tls]', 'USER alice', 'PASS pw']);
  });

  it('without a client: v1 UNKNOWN / v2 LOCAL', async () => {
    const f1 = await fake({ mode: 'plain', proxy: 'v1' });
    (await open(target(f1.port, { tls: { mode: 'none', verify: true }, proxyProtocol: 'v1' }))).socket.destroy();
    expect(f1.header()?.toString()).toBe('PROXY UNKNOWN\r\n');
    const f2 = await fake({ mode: 'plain', proxy: 'v2' });
    (await open(target(f2.port, { tls: { mode: 'none', verify: true }, proxyProtocol: 'v2' }))).socket.destroy();
    expect(f2.header()?.toString('hex')).toBe('0d0a0d0a000d0a515549540a20000000');
  });

  it('an address that cannot be encoded is INTERNAL, before connecting', async () => {
    const f = await fake({ mode: 'plain', proxy: 'v1' });
    await expectGatewayError(
      open(target(f.port, { tls: { mode: 'none', verify: true }, proxyProtocol: 'v1' }), {
        client: { ...CLIENT, address: 'not-an-ip' },
      }),
      'INTERNAL',
    );
    expect(f.connections()).toBe(0);
  });
});

describe('XCLIENT', () => {
  const plain = (port: number): BackendTarget => target(port, { tls: { mode: 'none', verify: true }, xclient: true });

  it('is sent after a greeting offering [XCLIENT], before the login', async () => {
    const f = await fake({ mode: 'plain', greeting: '+OK [XCLIENT] Dovecot ready.\r\n' });
    const s = await open(plain(f.port), { client: { ...CLIENT, address: '::ffff:127.0.0.5' } });
    s.socket.destroy();
    expect(f.lines).toEqual(['XCLIENT ADDR=127.0.0.5 PORT=40000', 'USER alice', 'PASS pw']);
    expect(s.link).toMatchObject({ xclientOffered: true, xclientSent: true });
  });

  it('after STLS, over TLS', async () => {
    const f = await fake({ mode: 'starttls', cert: pki, greeting: '+OK [XCLIENT] ready.\r\n' });
    const s = await open(
      target(f.port, { tls: { mode: 'starttls', caFile: pki.caFile, serverName: 'localhost', verify: true }, xclient: true }),
      { client: CLIENT },
    );
    s.socket.destroy();
    expect(f.lines).toEqual(['STLS', '[tls]', 'XCLIENT ADDR=127.0.0.5 PORT=40000', 'USER alice', 'PASS pw']);
  });

  it('is not sent when the greeting does not offer it, or without a client', async () => {
    const f = await fake({ mode: 'plain', greeting: '+OK ready.\r\n' });
    const s = await open(plain(f.port), { client: CLIENT });
    s.socket.destroy();
    expect(s.link).toMatchObject({ xclientOffered: false, xclientSent: false });
    const g = await fake({ mode: 'plain', greeting: '+OK [XCLIENT] ready.\r\n' });
    const s2 = await open(plain(g.port));
    s2.socket.destroy();
    expect(s2.link).toMatchObject({ xclientOffered: true, xclientSent: false });
    expect([...f.lines, ...g.lines]).toEqual(['USER alice', 'PASS pw', 'USER alice', 'PASS pw']);
  });

  it('anything but +OK to XCLIENT is BACKEND_PROTOCOL, and no credential is sent', async () => {
    const f = await fake({
      mode: 'plain',
      greeting: '+OK [XCLIENT] ready.\r\n',
      xclientReply: "-ERR You aren't allowed to use XCLIENT\r\n",
    });
    const err = await expectGatewayError(open(plain(f.port), { client: CLIENT }), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('XCLIENT refused');
    expect(backendErrorPhase(err)).toBe('xclient');
    expect(f.lines).toEqual(['XCLIENT ADDR=127.0.0.5 PORT=40000']);
  });
});

describe('renegotiation asked for by the backend', () => {
  it('is refused: the backend aborts the handshake it asked for, and the link reports an error', async () => {
    let server: TLSSocket | undefined;
    const f = await fake({ mode: 'implicit', cert: pki, tlsOptions: { maxVersion: 'TLSv1.2' }, onLogin: (s) => (server = s as TLSSocket) });
    const s = await open(target(f.port));
    try {
      expect(s.link.tls?.protocol).toBe('TLSv1.2');
      expect(server).toBeInstanceOf(TLSSocket);
      // OpenSSL on our side answers the HelloRequest with a no_renegotiation
      // warning; the backend's OpenSSL then ends with a handshake_failure
      // alert, which our side reports (the splice cuts both sides on it).
      const outcome = new Promise<string>((resolve) => {
        s.socket.once('error', (e: NodeJS.ErrnoException) => resolve(`error: ${e.message}`));
        server!.renegotiate({}, (err) => resolve(err ? `renegotiate failed: ${err.message}` : 'renegotiated'));
      });
      s.socket.resume(); // the client reads, so it sees the HelloRequest
      expect(await outcome).toMatch(/^error: .*alert handshake failure/);
    } finally {
      s.socket.destroy();
      server?.destroy();
    }
  });
});

describe('splice over a TLS backend', () => {
  it('relays both ways and passes the client FIN on', async () => {
    const f = await fake({ mode: 'implicit', cert: pki, echo: true });
    const backend = await open(target(f.port));
    // A client connection pair: `front` is the gateway side, `user` the client.
    const srv = createServer({ allowHalfOpen: true });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const frontP = once(srv, 'connection') as Promise<[Socket]>;
    const user = await LineClient.plain((srv.address() as { port: number }).port);
    const [front] = await frontP;
    const result = spliceSessions({ client: front, backend, pendingClientBytes: Buffer.from('FIRST\r\n'), idleTimeoutMs: 5000 });
    try {
      expect(await user.line()).toBe('echo: FIRST');
      expect(await user.cmd('NOOP over tls')).toBe('echo: NOOP over tls');
      user.end();
      const r = await result;
      expect(r.endedBy).toBe('client');
      expect(r.bytesToBackend).toBe('FIRST\r\nNOOP over tls\r\n'.length);
      expect(r.bytesToClient).toBe('echo: FIRST\r\necho: NOOP over tls\r\n'.length);
      expect(f.lines.slice(-2)).toEqual(['FIRST', 'NOOP over tls']);
    } finally {
      user.destroy();
      srv.close();
    }
  });
});

describe('checkBackendIdentity (RFC 7817 on top of Node)', () => {
  const cert = (san: string | undefined, cn = 'ignored.example'): PeerCertificate =>
    ({ subject: { CN: cn }, ...(san !== undefined ? { subjectaltname: san } : {}) }) as unknown as PeerCertificate;

  it.each<[string, PeerCertificate, boolean]>([
    ['mail.example.com', cert('DNS:mail.example.com'), true],
    ['MAIL.Example.COM', cert('DNS:mail.example.com'), true],
    ['mail.example.com', cert('DNS:*.example.com'), true],
    ['a.b.example.com', cert('DNS:*.example.com'), false],
    ['example.com', cert('DNS:*.example.com'), false],
    ['foo.example.com', cert('DNS:f*.example.com'), false], // Node alone accepts this one
    ['foo.example.com', cert('DNS:*o.example.com'), false],
    ['mail.com', cert('DNS:*.com'), false],
    ['mail.example.com', cert(undefined, 'mail.example.com'), true],
    ['mail.example.com', cert('DNS:other.example.com', 'mail.example.com'), false],
    ['mail.example.com', cert('IP Address:192.0.2.1', 'mail.example.com'), true], // no DNS SAN: CN counts
    ['192.0.2.1', cert('IP Address:192.0.2.1'), true],
    ['192.0.2.1', cert('DNS:192.0.2.1', '192.0.2.1'), false], // IP literals only match IP SANs
  ])('%s vs %o → %s', (name, c, ok) => {
    const err = checkBackendIdentity(name, c);
    if (ok) expect(err).toBeUndefined();
    else expect((err as NodeJS.ErrnoException | undefined)?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });
});
