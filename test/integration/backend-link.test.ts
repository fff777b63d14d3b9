/**
 * The backend link against a REAL Dovecot 2.3: implicit TLS and STLS with
 * the certificate name checked, the HAProxy PROXY header (v1/v2) on a
 * `haproxy = yes` listener, Dovecot's XCLIENT, and failover. Dovecot's own
 * login log line (`pop3-login: Info: Login: user=<...>, method=..., rip=...,
 * rport=..., lip=..., mpid=..., TLS, session=<...>`) proves which client
 * address it saw.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendErrorPhase, openBackendSession } from '../../src/backend/client.js';
import { openBackendWithFailover } from '../../src/backend/failover.js';
import type { BackendLinkSession, BackendTarget, BackendTimeouts, ForwardedClient } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { makeTempTestPki, makeWrongNameCert, type TestPki } from '../helpers/certs.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { LineClient } from '../helpers/line-client.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const T: BackendTimeouts = { connectMs: 5000, greetingMs: 5000, loginMs: 10_000 };
const USER = { name: 'alice', password: 'alice-secret' };
const LOGIN = { method: 'user-pass', user: USER.name, password: USER.password } as const;
const MSG = Buffer.from('Subject: link test\r\n\r\nhello\r\n');
/** Dovecot's default login_log_format_elements plus the remote port (rport). */
const LOG_FORMAT = 'login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c session=<%{session}>';

let pki: TestPki;
let dovecot: DovecotInstance;
/** A Dovecot whose certificate is for wrong-name.popgate.test only. */
let impostor: DovecotInstance;

beforeAll(async () => {
  pki = await makeTempTestPki();
  const wrong = await makeWrongNameCert(pki);
  [dovecot, impostor] = await Promise.all([
    startDovecot({
      users: [USER],
      messages: { alice: [MSG] },
      tls: { certFile: pki.certFile, keyFile: pki.keyFile },
      haproxy: true,
      extraConfig: LOG_FORMAT,
    }),
    startDovecot({ users: [USER], tls: { certFile: wrong.certFile, keyFile: wrong.keyFile }, extraConfig: LOG_FORMAT }),
  ]);
});

afterAll(async () => {
  await Promise.all([dovecot?.stop(), impostor?.stop()]);
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

function target(port: number, o: Partial<BackendTarget> = {}): BackendTarget {
  return { host: '127.0.0.1', port, tls: { mode: 'none', verify: true }, proxyProtocol: 'none', xclient: false, ...o };
}

const tlsSettings = (mode: 'implicit' | 'starttls', serverName?: string): BackendTarget['tls'] => ({
  mode,
  caFile: pki.caFile,
  ...(serverName !== undefined ? { serverName } : {}),
  verify: true,
});

/** A forwarded client 127.0.0.5 with a port unique to the test, to find its log line. */
let nextPort = 41000;
const forwarded = (address = '127.0.0.5'): ForwardedClient => ({
  address,
  port: nextPort++,
  localAddress: '127.0.0.1',
  localPort: 110,
});

/** Waits for Dovecot's `Login:` line with this rport and returns it. */
async function loginLine(d: DovecotInstance, rport: number, timeoutMs = 5000): Promise<string> {
  let log = '';
  return waitFor(
    `Dovecot's Login line with rport=${rport}`,
    async () => {
      log = await d.readLog();
      return log.split('\n').find((l) => l.includes(' Login: ') && l.includes(`rport=${rport},`));
    },
    { timeoutMs, detail: () => `the log:\n${log}` },
  );
}

/** The session works (STAT sees the delivered message) and is left without deleting anything. */
async function useAndClose(s: BackendLinkSession): Promise<void> {
  const c = LineClient.wrap(s.socket);
  try {
    expect(await c.cmd('STAT')).toBe(`+OK 1 ${MSG.length}`);
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
  } finally {
    c.destroy();
  }
}

async function rejection(p: Promise<BackendLinkSession>, code: GatewayError['code']): Promise<GatewayError> {
  const err = await p.then(
    (s) => {
      s.socket.destroy();
      throw new Error(`expected ${code}, got a session`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  return err as GatewayError;
}

const open = (t: BackendTarget, client?: ForwardedClient): Promise<BackendLinkSession> =>
  openBackendSession({ target: t, timeouts: T, login: LOGIN, ...(client ? { client } : {}) });

describe('TLS to Dovecot', () => {
  it('implicit TLS on tlsPort, name "localhost" checked', async () => {
    const s = await open(target(dovecot.tlsPort!, { tls: tlsSettings('implicit', 'localhost') }));
    const rport = s.socket.localPort!;
    expect(s.link.tls).toMatchObject({ mode: 'implicit', verified: true, checkedName: 'localhost' });
    expect(s.link.greeting).toMatch(/^\+OK /);
    await useAndClose(s);
    const line = await loginLine(dovecot, rport);
    expect(line).toContain('user=<alice>');
    expect(line).toContain('rip=127.0.0.1,');
    expect(line).toMatch(/, TLS, /);
  });

  it('implicit TLS to the IP literal (IP SAN 127.0.0.1), no serverName', async () => {
    const s = await open(target(dovecot.tlsPort!, { tls: tlsSettings('implicit') }));
    expect(s.link.tls?.checkedName).toBe('127.0.0.1');
    await useAndClose(s);
  });

  it('a Dovecot whose certificate is for another name is refused, nothing logged in', async () => {
    const err = await rejection(open(target(impostor.tlsPort!, { tls: tlsSettings('implicit', 'localhost') })), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('TLS certificate name mismatch');
    expect(err.detail).toContain('wrong-name.popgate.test');
    expect(backendErrorPhase(err)).toBe('tls');
    expect(await impostor.readLog()).not.toContain(' Login: ');
  });

  it('the right certificate checked against another name is refused', async () => {
    const err = await rejection(
      open(target(dovecot.tlsPort!, { tls: tlsSettings('implicit', 'mail.popgate.test') })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('name mismatch');
  });

  it('the system trust store does not know the test CA', async () => {
    const err = await rejection(
      open(target(dovecot.tlsPort!, { tls: { mode: 'implicit', serverName: 'localhost', verify: true } })),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('TLS certificate verification failed');
  });

  it('STLS on the plain port: no second greeting, the login runs over TLS', async () => {
    const s = await open(target(dovecot.port, { tls: tlsSettings('starttls', 'localhost') }));
    const rport = s.socket.localPort!;
    expect(s.link.tls).toMatchObject({ mode: 'starttls', verified: true });
    expect(s.loginReply).toBe('+OK Logged in.');
    await useAndClose(s);
    expect(await loginLine(dovecot, rport)).toMatch(/rip=127\.0\.0\.1, .*, TLS, /);
  });

  it('STLS to the impostor is refused after the handshake starts', async () => {
    const err = await rejection(open(target(impostor.port, { tls: tlsSettings('starttls', 'localhost') })), 'BACKEND_PROTOCOL');
    expect(err.detail).toContain('name mismatch');
  });
});

describe('forwarding the client address to Dovecot', () => {
  it.each(['v1', 'v2'] as const)('PROXY %s on the haproxy listener: Dovecot logs rip=127.0.0.5', async (v) => {
    const client = forwarded();
    const s = await open(target(dovecot.haproxyPort!, { proxyProtocol: v }), client);
    expect(s.link.proxyProtocol).toBe(v);
    await useAndClose(s);
    const line = await loginLine(dovecot, client.port);
    expect(line).toContain('user=<alice>');
    expect(line).toContain('rip=127.0.0.5,');
  });

  it('PROXY v2 then implicit TLS (header before the handshake)', async () => {
    const client = forwarded();
    const s = await open(target(dovecot.haproxyTlsPort!, { proxyProtocol: 'v2', tls: tlsSettings('implicit', 'localhost') }), client);
    await useAndClose(s);
    expect(await loginLine(dovecot, client.port)).toMatch(/rip=127\.0\.0\.5, .*, TLS, /);
  });

  it('PROXY v2 with an IPv6 client and v1 with an IPv4-mapped one', async () => {
    const six = { ...forwarded('2001:db8::7'), localAddress: '2001:db8::1' };
    const s6 = await open(target(dovecot.haproxyPort!, { proxyProtocol: 'v2' }), six);
    await useAndClose(s6);
    expect(await loginLine(dovecot, six.port)).toContain('rip=2001:db8::7,');
    const mapped = { ...forwarded('::ffff:127.0.0.5'), localAddress: '::ffff:127.0.0.1' };
    const s4 = await open(target(dovecot.haproxyPort!, { proxyProtocol: 'v1' }), mapped);
    await useAndClose(s4);
    expect(await loginLine(dovecot, mapped.port)).toContain('rip=127.0.0.5,');
  });

  it('no client: v2 LOCAL / v1 UNKNOWN, Dovecot keeps the connection address', async () => {
    for (const v of ['v2', 'v1'] as const) {
      const s = await open(target(dovecot.haproxyPort!, { proxyProtocol: v }));
      const rport = s.socket.localPort!;
      await useAndClose(s);
      expect(await loginLine(dovecot, rport)).toContain('rip=127.0.0.1,');
    }
  });

  it('XCLIENT: the greeting offers [XCLIENT] to 127.0.0.1; Dovecot logs rip=127.0.0.5', async () => {
    const client = forwarded();
    const s = await open(target(dovecot.port, { xclient: true }), client);
    expect(s.link.greeting).toContain('[XCLIENT]');
    expect(s.link).toMatchObject({ xclientOffered: true, xclientSent: true });
    await useAndClose(s);
    const line = await loginLine(dovecot, client.port);
    expect(line).toContain('rip=127.0.0.5,');
  });

  it('XCLIENT after STLS', async () => {
    const client = forwarded();
    const s = await open(target(dovecot.port, { xclient: true, tls: tlsSettings('starttls', 'localhost') }), client);
    expect(s.link.xclientSent).toBe(true);
    await useAndClose(s);
    expect(await loginLine(dovecot, client.port)).toMatch(/rip=127\.0\.0\.5, .*, TLS, /);
  });
});

describe('failover to Dovecot', () => {
  it('from a dead port to Dovecot', async () => {
    const dead = await freePort(); // nothing listens there any more
    const client = forwarded();
    const s = await openBackendWithFailover({
      targets: [target(dead, { tls: tlsSettings('implicit', 'localhost') }), target(dovecot.tlsPort!, { tls: tlsSettings('implicit', 'localhost'), xclient: true })],
      client,
      timeouts: T,
      login: LOGIN,
    });
    expect(s.endpoint).toEqual({ host: '127.0.0.1', port: dovecot.tlsPort });
    await useAndClose(s);
    expect(await loginLine(dovecot, client.port)).toMatch(/rip=127\.0\.0\.5, .*, TLS, /);
  });

  it('but never past a wrong certificate', async () => {
    const err = await rejection(
      openBackendWithFailover({
        targets: [
          target(impostor.tlsPort!, { tls: tlsSettings('implicit', 'localhost') }),
          target(dovecot.tlsPort!, { tls: tlsSettings('implicit', 'localhost') }),
        ],
        timeouts: T,
        login: LOGIN,
      }),
      'BACKEND_PROTOCOL',
    );
    expect(err.detail).toContain('stopped at backend 1 of 2');
  });
});

describe("Dovecot's side of the conversation, for the record", () => {
  it('greeting with [XCLIENT], "+OK" to XCLIENT and STLS, no second greeting after either', async () => {
    const c = await LineClient.plain(dovecot.port);
    try {
      const greeting = await c.line();
      expect(greeting).toMatch(/^\+OK \[XCLIENT\] /);
      const xclient = await c.cmd('XCLIENT ADDR=127.0.0.5 PORT=40999');
      expect(xclient).toMatch(/^\+OK/);
      // silentFor: the absence of a second greeting is what is tested, so a quiet window it is.
      expect(await c.silentFor(200)).toBe(true);
      const stls = await c.cmd('STLS');
      expect(stls).toMatch(/^\+OK/);
      expect(await c.startTls(pki.caFile)).toHaveLength(0);
      expect(await c.silentFor(200)).toBe(true); // POP3: no greeting after STLS (a quiet window, as above)
      expect(await c.cmd('CAPA')).toMatch(/^\+OK/);
      console.log(['greeting: ' + greeting, 'XCLIENT: ' + xclient, 'STLS: ' + stls].join('\n'));
    } finally {
      c.destroy();
    }
  });

  it('the login lines Dovecot wrote', async () => {
    const logins = (await dovecot.readLog()).split('\n').filter((l) => l.includes(' Login: '));
    console.log(logins.join('\n'));
    expect(logins.filter((l) => l.includes('rip=127.0.0.5,')).length).toBeGreaterThanOrEqual(7);
  });
});
