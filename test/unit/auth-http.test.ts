import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import pino, { type Logger } from 'pino';
import { apopDigest, cramMd5Digest } from '../../src/auth/challenge.js';
import {
  buildAuthHeaders,
  createHttpAuthVerifier,
  escapeMailAuth,
  parseAuthAnswer,
  type HttpAuthOptions,
  type HttpAuthVerifier,
} from '../../src/auth/http-auth.js';
import type { ClientContext } from '../../src/auth/types.js';
import { GatewayError } from '../../src/errors.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait.js';

function memoryLogger(): { logger: Logger; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => chunks.join('') };
}

/** Bytes as a latin1 "byte string", the form node:http header values use. */
const bytes = (...parts: Array<string | number[]>): string =>
  parts.map((p) => (typeof p === 'string' ? p : Buffer.from(p).toString('latin1'))).join('');

interface Seen {
  headers: http.IncomingHttpHeaders;
  raw: string[];
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

interface TestServer {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startServer(handler: Handler): Promise<TestServer> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ headers: req.headers, raw: req.rawHeaders });
    handler(req, res, seen.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const close = (): Promise<void> =>
    new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  cleanups.push(close);
  return { url: `http://127.0.0.1:${port}/auth`, seen, close };
}

function answer(res: http.ServerResponse, headers: Record<string, string>, status = 200): void {
  res.writeHead(status, headers);
  res.end();
}

function verifier(url: string, over: Partial<HttpAuthOptions> = {}): HttpAuthVerifier {
  const v = createHttpAuthVerifier({
    url,
    timeoutMs: 2000,
    maxConcurrent: 4,
    maxQueue: 16,
    maxWaits: 2,
    headers: {},
    proxy: 'none',
    authorizeTicketLogins: false,
    logger: pino({ level: 'silent' }),
    maxWaitSeconds: 0.05,
    ...over,
  });
  cleanups.push(() => v.close());
  return v;
}

async function expectUnavailable(p: Promise<unknown>, detail?: RegExp): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  const g = err as GatewayError;
  expect(g.code).toBe('VERIFIER_UNAVAILABLE');
  if (detail) expect(g.detail).toMatch(detail);
  return g;
}

const client: ClientContext = {
  remoteAddress: '203.0.113.7',
  remotePort: 51234,
  localAddress: '192.0.2.1',
  localPort: 995,
  loginAttempt: 2,
  listener: 'pop3s',
};

describe('escapeMailAuth (nginx NGX_ESCAPE_MAIL_AUTH)', () => {
  it('escapes space, % and 0x00-0x1F with uppercase hex, nothing else', () => {
    expect(escapeMailAuth('plain')).toBe('plain');
    expect(escapeMailAuth('a b%c')).toBe('a%20b%25c');
    expect(escapeMailAuth('\x00\x01\t\n\r\x1b\x1f')).toBe('%00%01%09%0A%0D%1B%1F');
    expect(escapeMailAuth('!"#$&\'()*+,-./:;<=>?@[\\]^_`{|}~')).toBe('!"#$&\'()*+,-./:;<=>?@[\\]^_`{|}~');
    // UTF-8 bytes go raw (as latin1 chars for node:http): é = C3 A9, € = E2 82 AC
    expect(escapeMailAuth('é€')).toBe(bytes([0xc3, 0xa9, 0xe2, 0x82, 0xac]));
    // DEL: nginx sends it raw, node refuses it raw: %7F
    expect(escapeMailAuth('a\x7fb')).toBe('a%7Fb');
  });

  it('puts the escaped bytes on the wire exactly', async () => {
    let raw = Buffer.alloc(0);
    const srv = net.createServer((s) => {
      s.on('data', (d: Buffer) => {
        raw = Buffer.concat([raw, d]);
        if (raw.includes('\r\n\r\n')) s.end('HTTP/1.1 200 OK\r\nAuth-Status: x\r\nContent-Length: 0\r\n\r\n');
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const v = verifier(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/a?b=1`, {
      headers: { 'X-Auth-Key': 's3cret' },
    });
    const out = await v.verify({ username: 'j doe', password: 'p%ss\r\n\u00e9 \x7f', mechanism: 'USER', tls: false, client });
    expect(out).toEqual({ ok: false, reason: 'bad-password', clientText: 'x', retryable: false });
    const expected = Buffer.concat([
      Buffer.from('GET /a?b=1 HTTP/1.1\r\n'),
      Buffer.from('Auth-Method: plain\r\n'),
      Buffer.from('Auth-User: j%20doe\r\n'),
      Buffer.from('Auth-Pass: p%25ss%0D%0A'),
      Buffer.from([0xc3, 0xa9]),
      Buffer.from('%20%7F\r\n'),
      Buffer.from('Auth-Protocol: pop3\r\nAuth-Login-Attempt: 2\r\nClient-IP: 203.0.113.7\r\nClient-Host: [UNAVAILABLE]\r\n'),
      Buffer.from('X-Auth-Key: s3cret\r\n'),
    ]);
    expect(raw.subarray(0, expected.length).toString('hex')).toBe(expected.toString('hex'));
  });
});

describe('buildAuthHeaders', () => {
  it('sends everything nginx sends for a TLS client behind a PROXY header', () => {
    const h = buildAuthHeaders(
      {
        method: 'apop',
        user: 'alice',
        pass: 'c4c9334bac560ecc979e58001b3e22fb',
        salt: '<1896.697170952@dbc.mtview.ca.us>',
        client: {
          ...client,
          remoteAddress: '::ffff:198.51.100.9',
          proxiedBy: { address: '10.0.0.5', port: 40000 },
          tls: {
            protocol: 'TLSv1.3',
            cipher: 'TLS_AES_256_GCM_SHA384',
            verify: 'SUCCESS',
            subject: 'CN=alice,O=Example Ümlaut',
            issuer: 'CN=Example CA',
            serial: '0A1B',
            fingerprint: 'ab:cd',
          },
        },
      },
      3,
      { 'X-Auth-Key': 'k' },
    );
    expect(Object.entries(h)).toEqual([
      ['Auth-Method', 'apop'],
      ['Auth-User', 'alice'],
      ['Auth-Pass', 'c4c9334bac560ecc979e58001b3e22fb'],
      ['Auth-Salt', '<1896.697170952@dbc.mtview.ca.us>'],
      ['Auth-Protocol', 'pop3'],
      ['Auth-Login-Attempt', '3'],
      ['Client-IP', '198.51.100.9'],
      ['Client-Host', '[UNAVAILABLE]'],
      ['Proxy-Protocol-Addr', '198.51.100.9'],
      ['Proxy-Protocol-Port', '51234'],
      ['Proxy-Protocol-Server-Addr', '192.0.2.1'],
      ['Proxy-Protocol-Server-Port', '995'],
      ['Auth-SSL', 'on'],
      ['Auth-SSL-Protocol', 'TLSv1.3'],
      ['Auth-SSL-Cipher', 'TLS_AES_256_GCM_SHA384'],
      ['Auth-SSL-Verify', 'SUCCESS'],
      ['Auth-SSL-Subject', bytes('CN=alice,O=Example ', [0xc3, 0x9c], 'mlaut')],
      ['Auth-SSL-Issuer', 'CN=Example CA'],
      ['Auth-SSL-Serial', '0A1B'],
      ['Auth-SSL-Fingerprint', 'ab:cd'],
      ['X-Auth-Key', 'k'],
    ]);
  });

  it('plain without TLS: no salt, no SSL or proxy headers; bare TLS flag gives Auth-SSL: on', () => {
    const h = buildAuthHeaders({ method: 'plain', user: 'u', pass: 'p', salt: 'ignored', remoteAddress: '10.1.1.1' }, 1);
    expect(h['Auth-Salt']).toBeUndefined();
    expect(h['Client-IP']).toBe('10.1.1.1');
    expect(Object.keys(h).filter((k) => k.startsWith('Auth-SSL') || k.startsWith('Proxy-Protocol'))).toEqual([]);
    const t = buildAuthHeaders({ method: 'plain', user: 'u', pass: 'p', tls: true }, 1);
    expect(t['Auth-SSL']).toBe('on');
    expect(t['Auth-SSL-Protocol']).toBeUndefined();
    expect(t['Client-IP']).toBeUndefined();
  });

  it('ticket logins: empty Auth-Pass and an escaped Auth-Principal', () => {
    const h = buildAuthHeaders({ method: 'gssapi', user: 'alice', pass: '', principal: 'alice@EXAMPLE.ORG' }, 1);
    expect(h['Auth-Method']).toBe('gssapi');
    expect(h['Auth-Pass']).toBe('');
    expect(h['Auth-Principal']).toBe('alice@EXAMPLE.ORG');
    const x = buildAuthHeaders({ method: 'external', user: 'bob', pass: '', principal: 'CN=Bob Smith,O=X' }, 1);
    expect(x['Auth-Principal']).toBe('CN=Bob%20Smith,O=X');
  });
});

describe('parseAuthAnswer', () => {
  it('OK with route and internal credentials', () => {
    expect(
      parseAuthAnswer(200, {
        'auth-status': ['OK'],
        'auth-server': ['10.0.0.7'],
        'auth-port': ['110'],
        'auth-user': ['alice*popgate'],
        'auth-pass': ['master pw'],
      }),
    ).toEqual({ kind: 'ok', user: 'alice*popgate', pass: 'master pw', endpoint: { host: '10.0.0.7', port: 110 } });
  });

  it('OK minimal; bracketed IPv6 and host names as Auth-Server; empty Auth-Pass kept', () => {
    expect(parseAuthAnswer(200, { 'auth-status': ['OK'] })).toEqual({ kind: 'ok' });
    expect(parseAuthAnswer(204, { 'auth-status': 'OK', 'auth-server': '[::1]', 'auth-port': '1110' })).toEqual({
      kind: 'ok',
      endpoint: { host: '::1', port: 1110 },
    });
    expect(parseAuthAnswer(200, { 'auth-status': 'OK', 'auth-server': 'mail-2.example.net', 'auth-port': '110', 'auth-pass': '' }))
      .toEqual({ kind: 'ok', pass: '', endpoint: { host: 'mail-2.example.net', port: 110 } });
  });

  it('decodes UTF-8 credentials from the latin1 header text', () => {
    const latin1 = Buffer.from('pässwörd', 'utf8').toString('latin1');
    expect(parseAuthAnswer(200, { 'auth-status': 'OK', 'auth-pass': latin1 })).toEqual({ kind: 'ok', pass: 'pässwörd' });
  });

  it('the last of duplicate headers wins', () => {
    expect(parseAuthAnswer(200, { 'auth-status': ['Bad', 'OK'], 'auth-pass': ['a', 'b'] })).toEqual({ kind: 'ok', pass: 'b' });
  });

  it('failure text, with and without Auth-Wait; OK/WAIT are case-sensitive', () => {
    expect(parseAuthAnswer(200, { 'auth-status': 'Invalid login or password', 'auth-wait': '3' })).toEqual({
      kind: 'fail',
      text: 'Invalid login or password',
      waitSeconds: 3,
    });
    expect(parseAuthAnswer(200, { 'auth-status': 'Nope' })).toEqual({ kind: 'fail', text: 'Nope' });
    expect(parseAuthAnswer(200, { 'auth-status': 'Nope', 'auth-wait': 'soon' })).toEqual({ kind: 'fail', text: 'Nope' });
    expect(parseAuthAnswer(200, { 'auth-status': 'ok' })).toEqual({ kind: 'fail', text: 'ok' });
    expect(parseAuthAnswer(200, { 'auth-status': 'wait' })).toEqual({ kind: 'fail', text: 'wait' });
  });

  it('WAIT with and without Auth-Wait', () => {
    expect(parseAuthAnswer(200, { 'auth-status': 'WAIT', 'auth-wait': '2' })).toEqual({ kind: 'wait', waitSeconds: 2 });
    expect(parseAuthAnswer(200, { 'auth-status': 'WAIT' })).toEqual({ kind: 'wait', waitSeconds: 0 });
  });

  it.each<[string, number, Record<string, string>, RegExp]>([
    ['non-2xx', 500, { 'auth-status': 'OK' }, /HTTP 500/],
    ['redirect', 302, { 'auth-status': 'OK' }, /HTTP 302/],
    ['no Auth-Status', 200, {}, /no Auth-Status/],
    ['server without port', 200, { 'auth-status': 'OK', 'auth-server': '10.0.0.1' }, /without Auth-Port/],
    ['port without server', 200, { 'auth-status': 'OK', 'auth-port': '110' }, /without Auth-Port/],
    ['port 0', 200, { 'auth-status': 'OK', 'auth-server': '10.0.0.1', 'auth-port': '0' }, /Auth-Port/],
    ['port 70000', 200, { 'auth-status': 'OK', 'auth-server': '10.0.0.1', 'auth-port': '70000' }, /Auth-Port/],
    ['port 11a', 200, { 'auth-status': 'OK', 'auth-server': '10.0.0.1', 'auth-port': '11a' }, /Auth-Port/],
    ['bad server', 200, { 'auth-status': 'OK', 'auth-server': 'a b/c', 'auth-port': '110' }, /Auth-Server/],
    ['NUL in Auth-Pass', 200, { 'auth-status': 'OK', 'auth-pass': 'a\0b' }, /Auth-Pass with NUL/],
    ['LF in Auth-User', 200, { 'auth-status': 'OK', 'auth-user': 'a\nb' }, /Auth-User with NUL/],
    ['empty Auth-User', 200, { 'auth-status': 'OK', 'auth-user': '' }, /empty Auth-User/],
    ['invalid UTF-8', 200, { 'auth-status': 'OK', 'auth-pass': '\xff\xfe' }, /not UTF-8/],
  ])('%s -> VERIFIER_UNAVAILABLE', (_name, status, headers, detail) => {
    let err: unknown;
    try {
      parseAuthAnswer(status, headers);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('VERIFIER_UNAVAILABLE');
    expect((err as GatewayError).detail).toMatch(detail);
  });
});

describe('createHttpAuthVerifier against an in-process service', () => {
  it('plain OK: route endpoint + internal login, headers as nginx sends them', async () => {
    const srv = await startServer((_req, res) =>
      answer(res, {
        'Auth-Status': 'OK',
        'Auth-Server': '127.0.0.1',
        'Auth-Port': '1110',
        'Auth-User': 'alice*popgate',
        'Auth-Pass': 'masterpw',
      }),
    );
    const v = verifier(srv.url);
    expect(v.name).toBe('http');
    expect(v.authorize).toBeUndefined();
    const out = await v.verify({ username: 'alice', password: 'wonder land', mechanism: 'PLAIN', tls: true, client });
    expect(out).toEqual({
      ok: true,
      user: 'alice', // the client's user; Auth-User names the backend account
      route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'alice*popgate', password: 'masterpw' } },
    });
    const h = srv.seen[0]!.headers;
    expect(h['auth-method']).toBe('plain');
    expect(h['auth-user']).toBe('alice');
    expect(h['auth-pass']).toBe('wonder%20land');
    expect(h['auth-protocol']).toBe('pop3');
    expect(h['auth-login-attempt']).toBe('2');
    expect(h['client-ip']).toBe('203.0.113.7');
    expect(h['auth-ssl']).toBe('on');
  });

  it('OK without Auth-Pass: no internal login override; without anything: just the user', async () => {
    let n = 0;
    const srv = await startServer((_req, res) =>
      answer(res, n++ === 0 ? { 'Auth-Status': 'OK', 'Auth-Server': '10.0.0.2', 'Auth-Port': '110' } : { 'Auth-Status': 'OK' }),
    );
    const v = verifier(srv.url);
    expect(await v.verify({ username: 'bob', password: 'x', mechanism: 'USER', tls: false })).toEqual({
      ok: true,
      user: 'bob',
      route: { endpoint: { host: '10.0.0.2', port: 110 } },
    });
    expect(await v.verify({ username: 'bob', password: 'x', mechanism: 'USER', tls: false })).toEqual({ ok: true, user: 'bob' });
  });

  it('failure: client text, retryable iff Auth-Wait >= 1, and the answer is delayed by Auth-Wait (capped)', async () => {
    const srv = await startServer((req, res) => {
      const wait: Record<string, string> = req.headers['auth-user'] === 'w' ? { 'Auth-Wait': '3' } : req.headers['auth-user'] === 'z' ? { 'Auth-Wait': '0' } : {};
      answer(res, { 'Auth-Status': 'Invalid login or password', ...wait });
    });
    const clock = new FakeClock();
    const v = verifier(srv.url, { maxWaitSeconds: 0.3, clock });
    let answered = false;
    const w = v.verify({ username: 'w', password: 'x', mechanism: 'USER', tls: true }).finally(() => (answered = true));
    // The answer is held back by the failure delay: Auth-Wait 3, capped at 0.3 s.
    const delay = await clock.nextTimer(300);
    expect(answered).toBe(false);
    delay.fire();
    expect(await w).toEqual({
      ok: false,
      reason: 'bad-password',
      clientText: 'Invalid login or password',
      retryable: true,
    });
    expect(await v.verify({ username: 'z', password: 'x', mechanism: 'USER', tls: true })).toMatchObject({ retryable: false });
    expect(await v.verify({ username: 'n', password: 'x', mechanism: 'USER', tls: true })).toMatchObject({ retryable: false });
    // Each question's 2 s deadline, and one delay (for 'w'): none for Auth-Wait 0 or absent.
    expect(clock.requested).toEqual([2000, 300, 2000, 2000]);
  });

  it('WAIT then OK: asks again after the wait, with the same Auth-Login-Attempt', async () => {
    const srv = await startServer((_req, res, n) =>
      answer(res, n === 1 ? { 'Auth-Status': 'WAIT', 'Auth-Wait': '1' } : { 'Auth-Status': 'OK', 'Auth-Pass': 'pw' }),
    );
    const clock = new FakeClock();
    const v = verifier(srv.url, { maxWaitSeconds: 0.1, clock });
    const call = v.verify({ username: 'u', password: 'pw', mechanism: 'USER', tls: true, client });
    await clock.nextTimer(100); // Auth-Wait 1, capped at 0.1 s
    expect(srv.seen).toHaveLength(1); // not asked again before the wait is over
    clock.advance(100);
    expect(await call).toEqual({
      ok: true,
      user: 'u',
      route: { login: { user: 'u', password: 'pw' } },
    });
    // The second question runs on what is left of the one deadline.
    expect(clock.requested).toEqual([2000, 100, 1900]);
    expect(srv.seen.map((s) => s.headers['auth-login-attempt'])).toEqual(['2', '2']);
  });

  it('WAIT loop is bounded by maxWaits', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'WAIT' }));
    const v = verifier(srv.url, { maxWaits: 3 });
    await expectUnavailable(v.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true }), /WAIT after 3 waits/);
    expect(srv.seen).toHaveLength(4);
    const v0 = verifier(srv.url, { maxWaits: 0 });
    await expectUnavailable(v0.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true }), /WAIT/);
    expect(srv.seen).toHaveLength(5);
  });

  it('a WAIT beyond the overall timeout fails at once', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'WAIT', 'Auth-Wait': '5' }));
    const clock = new FakeClock();
    const v = verifier(srv.url, { timeoutMs: 1000, maxWaitSeconds: 10, clock });
    // The fake clock never moves here: failing proves no sleep was waited out.
    await expectUnavailable(v.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true }), /beyond the timeout/);
    expect(clock.requested).toEqual([1000]); // the question's deadline only, no WAIT sleep
    expect(srv.seen).toHaveLength(1);
  });

  it('timeout -> VERIFIER_UNAVAILABLE', async () => {
    const srv = await startServer(() => {
      /* never answers */
    });
    const clock = new FakeClock();
    const v = verifier(srv.url, { timeoutMs: 200, clock });
    const call = v.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true });
    const deadline = await clock.nextTimer();
    expect(deadline.ms).toBe(200);
    await waitFor('the question at the service', () => srv.seen.length === 1);
    clock.advance(199);
    expect(deadline.pending).toBe(true);
    clock.advance(1);
    await expectUnavailable(call, /timed out/);
  });

  it('connection refused and non-2xx -> VERIFIER_UNAVAILABLE', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'OK' }, 503));
    const v = verifier(srv.url);
    await expectUnavailable(v.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true }), /HTTP 503/);
    const url = srv.url;
    await srv.close();
    const dead = verifier(url);
    await expectUnavailable(dead.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true }), /ECONNREFUSED/);
  });

  it('concurrency: at most maxConcurrent in flight, maxQueue waiting, the rest fail fast', async () => {
    let inFlight = 0;
    let peak = 0;
    const held: Array<() => void> = [];
    const srv = await startServer((_req, res) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      held.push(() => {
        inFlight--;
        answer(res, { 'Auth-Status': 'OK' });
      });
    });
    const clock = new FakeClock();
    const v = verifier(srv.url, { maxConcurrent: 2, maxQueue: 2, timeoutMs: 5000, clock });
    const call = (u: string) => v.verify({ username: u, password: 'p', mechanism: 'USER', tls: true });
    const calls = ['a', 'b', 'c', 'd'].map(call);
    // The fifth finds 2 in flight and 2 queued: refused without a request, and
    // at once (the fake clock never moves, so no deadline or wait can pass).
    await expectUnavailable(call('e'), /busy: 2 in flight, 2 queued/);
    await waitFor('a and b at the service', () => held.length === 2);
    // a, b: their question's deadline; c, d: their wait for a slot; e: nothing.
    expect(clock.requested).toEqual([5000, 5000, 5000, 5000]);
    expect(srv.seen).toHaveLength(2);
    // Release one at a time; the queue drains in order, never above 2 at once.
    held.shift()!();
    await waitFor('c at the service', () => srv.seen.length === 3 && held.length === 2);
    held.shift()!();
    await waitFor('d at the service', () => srv.seen.length === 4 && held.length === 2);
    while (held.length > 0) held.shift()!();
    const outs = await Promise.all(calls);
    expect(outs.map((o) => o.ok && o.user)).toEqual(['a', 'b', 'c', 'd']);
    expect(peak).toBe(2);
    expect(srv.seen.map((s) => s.headers['auth-user'])).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a queued call that gets no slot in time fails with VERIFIER_UNAVAILABLE', async () => {
    const srv = await startServer(() => {
      /* hold */
    });
    const clock = new FakeClock();
    const v = verifier(srv.url, { maxConcurrent: 1, maxQueue: 1, timeoutMs: 300, clock });
    const first = v.verify({ username: 'a', password: 'p', mechanism: 'USER', tls: true });
    const second = v.verify({ username: 'b', password: 'p', mechanism: 'USER', tls: true });
    // first: its question's deadline; second: its wait for the one slot, same deadline.
    expect((await clock.whenPending(2)).map((t) => t.ms)).toEqual([300, 300]);
    await waitFor('the first question at the service', () => srv.seen.length === 1);
    clock.advance(300);
    await expectUnavailable(first, /timed out/);
    await expectUnavailable(second, /slot|timed out/);
    expect(srv.seen).toHaveLength(1);
  });

  it('close() fails calls in flight', async () => {
    const srv = await startServer(() => {
      /* hold */
    });
    const v = verifier(srv.url);
    const p = v.verify({ username: 'a', password: 'p', mechanism: 'USER', tls: true });
    await waitFor('the question at the service', () => srv.seen.length === 1);
    v.close();
    await expectUnavailable(p, /closed/);
    await expectUnavailable(v.verify({ username: 'a', password: 'p', mechanism: 'USER', tls: true }), /closed/);
  });

  describe('verifyChallenge', () => {
    const ts = '<1896.697170952@dbc.mtview.ca.us>';
    const secretServer = () =>
      startServer((req, res) =>
        req.headers['auth-user'] === 'nopass'
          ? answer(res, { 'Auth-Status': 'OK' })
          : answer(res, { 'Auth-Status': 'OK', 'Auth-Server': '127.0.0.1', 'Auth-Port': '1110', 'Auth-Pass': 'tanstaaf' }),
      );

    it('APOP: sends the digest and salt like nginx, checks the digest against Auth-Pass', async () => {
      const srv = await secretServer();
      const v = verifier(srv.url);
      const good = await v.verifyChallenge!({ username: 'mrose', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'tanstaaf'), client });
      expect(good).toEqual({
        ok: true,
        user: 'mrose',
        route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'mrose', password: 'tanstaaf' } },
      });
      const h = srv.seen[0]!.headers;
      expect(h['auth-method']).toBe('apop');
      expect(h['auth-salt']).toBe(ts);
      expect(h['auth-pass']).toBe('c4c9334bac560ecc979e58001b3e22fb');
      const bad = await v.verifyChallenge!({ username: 'mrose', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'wrong') });
      expect(bad).toEqual({ ok: false, reason: 'bad-password' });
      const short = await v.verifyChallenge!({ username: 'mrose', mechanism: 'APOP', challenge: ts, response: 'abc' });
      expect(short).toEqual({ ok: false, reason: 'bad-password' });
    });

    it('CRAM-MD5: HMAC-MD5 check; uppercase hex from the client is accepted', async () => {
      const srv = await secretServer();
      const v = verifier(srv.url);
      const ch = '<42.1700000000@popgate>';
      const ok = await v.verifyChallenge!({ username: 'u', mechanism: 'CRAM-MD5', challenge: ch, response: cramMd5Digest(ch, 'tanstaaf').toUpperCase() });
      expect(ok.ok).toBe(true);
      expect(srv.seen[0]!.headers['auth-method']).toBe('cram-md5');
      expect(srv.seen[0]!.headers['auth-salt']).toBe(ch);
      const bad = await v.verifyChallenge!({ username: 'u', mechanism: 'CRAM-MD5', challenge: ch, response: apopDigest(ch, 'tanstaaf') });
      expect(bad).toEqual({ ok: false, reason: 'bad-password' });
    });

    it('OK without Auth-Pass is a broken answer (nginx: "did not send password")', async () => {
      const srv = await secretServer();
      const v = verifier(srv.url);
      await expectUnavailable(
        v.verifyChallenge!({ username: 'nopass', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'x') }),
        /without sending Auth-Pass/,
      );
    });

    it('checkChallengeDigest: false trusts the service (which checked the digest itself)', async () => {
      const srv = await secretServer();
      const v = verifier(srv.url, { checkChallengeDigest: false });
      const out = await v.verifyChallenge!({ username: 'mrose', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'other') });
      expect(out.ok).toBe(true);
    });
  });

  it('authorize (authorizeTicketLogins): gssapi/kpop/external with the principal and an empty Auth-Pass', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'OK', 'Auth-Server': '127.0.0.1', 'Auth-Port': '1110', 'Auth-Pass': 'internal' }));
    const v = verifier(srv.url, { authorizeTicketLogins: true });
    expect(typeof v.authorize).toBe('function');
    const out = await v.authorize!({ user: 'alice', mechanism: 'GSSAPI', identity: 'alice@EXAMPLE.ORG', client });
    expect(out).toEqual({
      ok: true,
      user: 'alice',
      route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'alice', password: 'internal' } },
    });
    await v.authorize!({ user: 'alice', mechanism: 'KPOP', identity: 'alice@EXAMPLE.ORG' });
    await v.authorize!({ user: 'bob', mechanism: 'EXTERNAL', identity: 'CN=Bob Smith' });
    expect(srv.seen.map((s) => [s.headers['auth-method'], s.headers['auth-pass'], s.headers['auth-principal']])).toEqual([
      ['gssapi', '', 'alice@EXAMPLE.ORG'],
      ['kpop', '', 'alice@EXAMPLE.ORG'],
      ['external', '', 'CN=Bob%20Smith'],
    ]);
    expect(srv.seen[0]!.raw).toContain('Auth-Pass');
  });

  it('authorize: a bearer token login sends Auth-Method oauthbearer/xoauth2 with the token as Auth-Pass; SCRAM sends scram-sha-256 and no secret', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'OK' }));
    const v = verifier(srv.url, { authorizeTicketLogins: true });
    const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
    await v.authorize!({ user: 'alice', mechanism: 'OAUTHBEARER', identity: 'sub-alice', token, client });
    await v.authorize!({ user: 'alice', mechanism: 'XOAUTH2', identity: 'sub-alice', token });
    await v.authorize!({ user: 'alice', mechanism: 'SCRAM-SHA-256-PLUS', identity: 'alice' });
    expect(srv.seen.map((s) => [s.headers['auth-method'], s.headers['auth-pass'], s.headers['auth-principal']])).toEqual([
      ['oauthbearer', token, 'sub-alice'],
      ['xoauth2', token, 'sub-alice'],
      ['scram-sha-256', '', 'alice'],
    ]);
  });

  it('never logs the password, the digest or Auth-Pass; logs the status text', async () => {
    const srv = await startServer((req, res) =>
      req.headers['auth-user'] === 'good'
        ? answer(res, { 'Auth-Status': 'OK', 'Auth-Pass': 'INTERNAL-SECRET' })
        : answer(res, { 'Auth-Status': 'Account locked' }),
    );
    const mem = memoryLogger();
    const v = verifier(srv.url, { logger: mem.logger });
    await v.verify({ username: 'good', password: 'CLIENT-SECRET', mechanism: 'USER', tls: true });
    await v.verify({ username: 'bad', password: 'CLIENT-SECRET', mechanism: 'USER', tls: true });
    await v.verifyChallenge!({ username: 'good', mechanism: 'APOP', challenge: '<1@x>', response: 'deadbeefdeadbeefdeadbeefdeadbeef' });
    const text = mem.text();
    expect(text).toContain('Account locked');
    expect(text).not.toContain('CLIENT-SECRET');
    expect(text).not.toContain('INTERNAL-SECRET');
    expect(text).not.toContain('deadbeef');
  });

  it('Basic auth from URL userinfo, never logged', async () => {
    const srv = await startServer((_req, res) => answer(res, { 'Auth-Status': 'Nope' }));
    const mem = memoryLogger();
    const v = verifier(srv.url.replace('http://', 'http://svc:p%40ss@'), { logger: mem.logger });
    await v.verify({ username: 'u', password: 'p', mechanism: 'USER', tls: true });
    expect(srv.seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from('svc:p@ss').toString('base64')}`);
    expect(mem.text()).not.toContain('p%40ss');
  });

  it('reuses a kept-alive connection, and retries once when the service dropped it unanswered', async () => {
    // Raw server: connection 1 answers its first request (keep-alive) and
    // drops the connection when a second request arrives on it, as a service
    // closing an idle connection at the wrong moment does; others answer.
    let connections = 0;
    const perConnection: number[] = [];
    const srv = net.createServer((s) => {
      const id = connections++;
      perConnection[id] = 0;
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          perConnection[id]!++;
          if (id === 0 && perConnection[id] === 2) {
            s.destroy();
            return;
          }
          s.write('HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n');
        }
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const v = verifier(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/`);
    expect((await v.verify({ username: 'a', password: 'p', mechanism: 'USER', tls: true })).ok).toBe(true);
    expect((await v.verify({ username: 'b', password: 'p', mechanism: 'USER', tls: true })).ok).toBe(true);
    expect(perConnection).toEqual([2, 1]);
    expect((await v.verify({ username: 'c', password: 'p', mechanism: 'USER', tls: true })).ok).toBe(true);
    expect(perConnection).toEqual([2, 2]); // kept alive and reused
  });

  describe('construction', () => {
    it('refuses bad options', () => {
      const base = { url: 'http://127.0.0.1:1/', timeoutMs: 1000, maxConcurrent: 1, maxQueue: 0, maxWaits: 0, headers: {}, proxy: 'none' as const, authorizeTicketLogins: false, logger: pino({ level: 'silent' }) };
      expect(() => createHttpAuthVerifier({ ...base, url: 'ftp://x/' })).toThrow(/http/);
      expect(() => createHttpAuthVerifier({ ...base, url: 'not a url' })).toThrow(/invalid URL/);
      expect(() => createHttpAuthVerifier({ ...base, maxConcurrent: 0 })).toThrow(/maxConcurrent/);
      expect(() => createHttpAuthVerifier({ ...base, headers: { 'Auth-User': 'x' } })).toThrow(/generated by popgate/);
      expect(() => createHttpAuthVerifier({ ...base, headers: { 'X-Key': 'a\r\nb' } })).toThrow(/control characters/);
      expect(() => createHttpAuthVerifier({ ...base, headers: { 'Bad Name': 'a' } })).toThrow(/invalid header name/);
    });

    it('an https auth URL goes through the proxy (a CONNECT tunnel) unless NO_PROXY or proxy none says otherwise', () => {
      const base = { timeoutMs: 1000, maxConcurrent: 1, maxQueue: 0, maxWaits: 0, headers: {}, authorizeTicketLogins: false, logger: pino({ level: 'silent' }) };
      const explicit = createHttpAuthVerifier({ ...base, url: 'https://auth.example/', proxy: 'http://127.0.0.1:3128' });
      expect(explicit.proxyUrl).toBe('http://127.0.0.1:3128/');
      explicit.close();
      const fromEnv = createHttpAuthVerifier({ ...base, url: 'https://auth.example/', proxy: null, env: { HTTPS_PROXY: 'http://127.0.0.1:3128', HTTP_PROXY: 'http://other:1' } });
      expect(fromEnv.proxyUrl).toBe('http://127.0.0.1:3128/');
      fromEnv.close();
      const none = createHttpAuthVerifier({ ...base, url: 'https://auth.example/', proxy: 'none', env: { HTTPS_PROXY: 'http://p:1' } });
      expect(none.proxyUrl).toBeNull();
      none.close();
      expect(() => createHttpAuthVerifier({ ...base, url: 'https://auth.example/', proxy: null, env: { HTTPS_PROXY: 'ftp://p:1' } })).toThrow(/auth_http: unsupported proxy scheme/);
      const a = createHttpAuthVerifier({ ...base, url: 'https://auth.example/', proxy: null, env: { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'example' } });
      expect(a.proxyUrl).toBeNull();
      a.close();
      const b = createHttpAuthVerifier({ ...base, url: 'http://auth.example/', proxy: null, env: { http_proxy: 'http://u:pw@p:1' } });
      expect(b.proxyUrl).toBe('http://p:1/');
      b.close();
    });
  });
});
