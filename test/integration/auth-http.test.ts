/**
 * The auth_http verifier against a real nginx-style auth service
 * (test/fixtures/nginx-auth/auth.py, python3 http.server) and through a
 * recording HTTP forward proxy.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { apopDigest, cramMd5Digest } from '../../src/auth/challenge.js';
import { createHttpAuthVerifier, type HttpAuthOptions, type HttpAuthVerifier } from '../../src/auth/http-auth.js';
import type { ClientContext } from '../../src/auth/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/http-proxy.js';
import { startAuthService as startAuthServiceIn, type AuthService } from '../helpers/nginx-auth.js';
import { freePort } from '../helpers/ports.js';
import { unavailable } from '../helpers/verifier.js';

let dir: string;
const services: AuthService[] = [];
async function startAuthService(name: string, args: string[]): Promise<AuthService> {
  const svc = await startAuthServiceIn(dir, name, args);
  services.push(svc);
  return svc;
}

const verifiers: HttpAuthVerifier[] = [];
function verifier(url: string, over: Partial<HttpAuthOptions> = {}): HttpAuthVerifier {
  const v = createHttpAuthVerifier({
    url,
    timeoutMs: 5000,
    maxConcurrent: 4,
    maxQueue: 16,
    maxWaits: 3,
    headers: {},
    proxy: 'none',
    authorizeTicketLogins: true,
    logger: pino({ level: 'silent' }),
    maxWaitSeconds: 0.2,
    ...over,
  });
  verifiers.push(v);
  return v;
}

const tlsClient: ClientContext = {
  remoteAddress: '198.51.100.23',
  remotePort: 40001,
  localAddress: '127.0.0.1',
  localPort: 995,
  loginAttempt: 1,
  listener: 'pop3s',
  tls: {
    protocol: 'TLSv1.3',
    cipher: 'TLS_AES_128_GCM_SHA256',
    verify: 'SUCCESS',
    subject: 'CN=alice',
    issuer: 'CN=Test CA',
    serial: '01',
    fingerprint: 'aa:bb',
  },
};

// Two users routed to two different backends with different internal
// credentials: alice via a Dovecot master login, bob with his own password
// (which needs escaping: space, %, non-ASCII).
const BOB_PASS = 'b0b pa%ss ü';
const ROUTING = [
  '--user', 'alice=wonderland',
  '--user', `bob=${BOB_PASS}`,
  '--backend', 'alice=127.0.0.1:1110',
  '--backend', 'bob=127.0.0.1:2110',
  '--login', 'alice=alice*popgate:masterpw',
];

let main: AuthService;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-auth-http-'));
  main = await startAuthService('main', [...ROUTING, '--fail-wait', '1']);
});

afterAll(async () => {
  for (const v of verifiers) v.close();
  await Promise.all(services.map((svc) => svc.stop()));
  await rm(dir, { recursive: true, force: true });
});

describe('auth_http against the nginx-style python service', () => {
  it('plain OK: each user routed to its backend with its internal credentials', async () => {
    const v = verifier(main.url);
    expect(await v.verify({ username: 'alice', password: 'wonderland', mechanism: 'USER', tls: true, client: tlsClient })).toEqual({
      ok: true,
      user: 'alice', // the client's user; Auth-User names the backend account
      route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'alice*popgate', password: 'masterpw' } },
    });
    expect(await v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'PLAIN', tls: true })).toEqual({
      ok: true,
      user: 'bob',
      route: { endpoint: { host: '127.0.0.1', port: 2110 }, login: { user: 'bob', password: BOB_PASS } },
    });
  });

  it('wrong password / unknown user: the service text, retryable (Auth-Wait)', async () => {
    const clock = new FakeClock();
    const v = verifier(main.url, { clock });
    const expected = { ok: false, reason: 'bad-password', clientText: 'Invalid login or password', retryable: true };
    for (const [username, password] of [['alice', 'nope'], ['mallory', 'x']] as const) {
      const call = v.verify({ username, password, mechanism: 'USER', tls: true });
      (await clock.nextTimer(200)).fire(); // the failure delay: the service's Auth-Wait, capped at 0.2 s
      expect(await call).toEqual(expected);
    }
  });

  it('sends Client-IP, Auth-SSL-* and the other nginx headers (seen in the service log)', async () => {
    const v = verifier(main.url);
    await v.verify({ username: 'alice', password: 'wonderland', mechanism: 'USER', tls: true, client: { ...tlsClient, loginAttempt: 2 } });
    const rec = (await main.log()).at(-1)!;
    expect(rec.path).toBe('/auth');
    expect(rec.headers).toMatchObject({
      'Auth-Method': 'plain',
      'Auth-User': 'alice',
      'Auth-Pass-Present': 'yes',
      'Auth-Protocol': 'pop3',
      'Auth-Login-Attempt': '2',
      'Client-IP': '198.51.100.23',
      'Client-Host': '[UNAVAILABLE]',
      'Auth-SSL': 'on',
      'Auth-SSL-Protocol': 'TLSv1.3',
      'Auth-SSL-Cipher': 'TLS_AES_128_GCM_SHA256',
      'Auth-SSL-Verify': 'SUCCESS',
      'Auth-SSL-Subject': 'CN=alice',
      'Auth-SSL-Issuer': 'CN=Test CA',
      'Auth-SSL-Serial': '01',
      'Auth-SSL-Fingerprint': 'aa:bb',
    });
    expect(rec.headers['Auth-Pass']).toBeUndefined();
  });

  it('APOP: the service checks the digest (nginx style) and returns the secret; popgate checks it too', async () => {
    const v = verifier(main.url);
    const ts = '<31337.1700000000@popgate.test>';
    const ok = await v.verifyChallenge!({ username: 'bob', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, BOB_PASS) });
    expect(ok).toEqual({
      ok: true,
      user: 'bob',
      route: { endpoint: { host: '127.0.0.1', port: 2110 }, login: { user: 'bob', password: BOB_PASS } },
    });
    const rec = (await main.log()).at(-1)!;
    expect(rec.headers['Auth-Method']).toBe('apop');
    expect(rec.headers['Auth-Salt']).toBe(ts);
    const bad = await v.verifyChallenge!({ username: 'bob', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'guess') });
    expect(bad).toMatchObject({ ok: false, reason: 'bad-password', clientText: 'Invalid login or password' });
  });

  it('CRAM-MD5: HMAC-MD5 digest accepted, a wrong one refused', async () => {
    const v = verifier(main.url);
    const ch = '<4711.1700000001@popgate.test>';
    const ok = await v.verifyChallenge!({ username: 'alice', mechanism: 'CRAM-MD5', challenge: ch, response: cramMd5Digest(ch, 'wonderland') });
    // alice's service answer carries the master credentials: with the digest
    // check on, popgate would refuse them (not alice's secret); nginx-style
    // services like this one verify digests themselves.
    expect(ok).toEqual({ ok: false, reason: 'bad-password' });
    const trusting = verifier(main.url, { checkChallengeDigest: false });
    expect(await trusting.verifyChallenge!({ username: 'alice', mechanism: 'CRAM-MD5', challenge: ch, response: cramMd5Digest(ch, 'wonderland') })).toEqual({
      ok: true,
      user: 'alice', // the client's user; Auth-User names the backend account
      route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'alice*popgate', password: 'masterpw' } },
    });
    expect(await v.verifyChallenge!({ username: 'bob', mechanism: 'CRAM-MD5', challenge: ch, response: cramMd5Digest(ch, BOB_PASS) })).toMatchObject({
      ok: true,
      user: 'bob',
    });
    expect(await v.verifyChallenge!({ username: 'bob', mechanism: 'CRAM-MD5', challenge: ch, response: cramMd5Digest(ch, 'guess') })).toMatchObject({
      ok: false,
      clientText: 'Invalid login or password',
    });
    const rec = (await main.log()).at(-1)!;
    expect(rec.headers['Auth-Method']).toBe('cram-md5');
    expect(rec.headers['Auth-Salt']).toBe(ch);
  });

  it('a service that does not check digests cannot let a wrong digest in: popgate checks it', async () => {
    const naive = await startAuthService('naive', [...ROUTING, '--no-digest-check']);
    const v = verifier(naive.url);
    const ts = '<1.2@popgate.test>';
    expect(await v.verifyChallenge!({ username: 'bob', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, 'guess') })).toEqual({
      ok: false,
      reason: 'bad-password',
    });
    expect((await v.verifyChallenge!({ username: 'bob', mechanism: 'APOP', challenge: ts, response: apopDigest(ts, BOB_PASS) })).ok).toBe(true);
    await naive.stop();
  });

  it('ticket logins (authorize): gssapi with the principal and an empty Auth-Pass', async () => {
    const v = verifier(main.url);
    expect(await v.authorize!({ user: 'alice', mechanism: 'GSSAPI', identity: 'alice@EXAMPLE.TEST' })).toEqual({
      ok: true,
      user: 'alice', // the client's user; Auth-User names the backend account
      route: { endpoint: { host: '127.0.0.1', port: 1110 }, login: { user: 'alice*popgate', password: 'masterpw' } },
    });
    const rec = (await main.log()).at(-1)!;
    expect(rec.headers).toMatchObject({ 'Auth-Method': 'gssapi', 'Auth-User': 'alice', 'Auth-Principal': 'alice@EXAMPLE.TEST', 'Auth-Pass-Present': 'yes' });
    expect(await v.authorize!({ user: 'nobody', mechanism: 'KPOP', identity: 'nobody@EXAMPLE.TEST' })).toMatchObject({ ok: false, reason: 'bad-password' });
  });

  it('WAIT once, then OK: two questions, one answer', async () => {
    const svc = await startAuthService('wait', [...ROUTING, '--wait-once']);
    const clock = new FakeClock();
    const v = verifier(svc.url, { clock });
    const call = v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true });
    await clock.nextTimer(200); // Auth-Wait: 1, capped at 0.2 s here
    clock.advance(200);
    expect(await call).toMatchObject({ ok: true, user: 'bob' });
    // Each question's deadline (the second on what is left of the 5 s) and the one wait between.
    expect(clock.requested).toEqual([5000, 200, 4800]);
    const log = await svc.log();
    expect(log.map((r) => [r.headers['Auth-User'], r.headers['Auth-Login-Attempt']])).toEqual([
      ['bob', '1'],
      ['bob', '1'],
    ]);
    await svc.stop();
  });

  it('shared secret: required by the service; without it -> VERIFIER_UNAVAILABLE', async () => {
    const svc = await startAuthService('secret', [...ROUTING, '--shared-secret', 'k3y']);
    const without = verifier(svc.url);
    const err = await unavailable(without.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
    expect(err.detail).toMatch(/HTTP 403/);
    const wrong = verifier(svc.url, { headers: { 'X-Auth-Key': 'nope' } });
    await unavailable(wrong.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
    const withKey = verifier(svc.url, { headers: { 'X-Auth-Key': 'k3y' } });
    expect((await withKey.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true })).ok).toBe(true);
    expect((await svc.log()).at(-1)!.headers['X-Auth-Key']).toBe('k3y');
    await svc.stop();
  });

  it('service down -> VERIFIER_UNAVAILABLE', async () => {
    const svc = await startAuthService('down', ROUTING);
    await svc.stop();
    const v = verifier(svc.url);
    const err = await unavailable(v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
    expect(err.detail).toMatch(/ECONNREFUSED/);
    const never = verifier(`http://127.0.0.1:${await freePort()}/auth`);
    await unavailable(never.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
  });

  it('many calls in flight at once raise no MaxListenersExceededWarning (one abort listener each is not a leak)', async () => {
    const svc = await startAuthService('busy', [...ROUTING, '--delay-ms', '300']);
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const v = verifier(svc.url, { maxConcurrent: 24, maxQueue: 0, timeoutMs: 5_000 });
      const answers = await Promise.all(
        Array.from({ length: 16 }, () => v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true })),
      );
      expect(answers.every((a) => a.ok)).toBe(true);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await svc.stop();
    }
  });

  it('service too slow -> VERIFIER_UNAVAILABLE after timeoutMs', async () => {
    const svc = await startAuthService('slow', [...ROUTING, '--delay-ms', '1500']);
    const clock = new FakeClock();
    const v = verifier(svc.url, { timeoutMs: 300, clock });
    const call = unavailable(v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
    // The deadline is timeoutMs, not the service's 1.5 s: firing it fails the call.
    (await clock.nextTimer(300)).fire();
    const err = await call;
    expect(err.detail).toMatch(/timed out/);
    await svc.stop();
  });
});

describe('auth_http through an HTTP forward proxy', () => {
  let proxy: RecordingProxy;
  beforeAll(async () => {
    proxy = await startRecordingProxy();
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('explicit proxy: the question goes through it (absolute-form GET)', async () => {
    const before = proxy.requests.length;
    const v = verifier(main.url, { proxy: proxy.url });
    expect(v.proxyUrl).toBe(`${proxy.url}/`);
    expect(await v.verify({ username: 'alice', password: 'wonderland', mechanism: 'USER', tls: true })).toMatchObject({
      ok: true,
      route: { login: { user: 'alice*popgate' } },
    });
    const seen = proxy.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'GET', target: main.url });
    expect(seen[0]!.headers['auth-user']).toBe('alice');
    // The proxy forwarded it (node lowercases header names on the way).
    expect((await main.log()).at(-1)!.headers['auth-user']).toBe('alice');
  });

  it('proxy from HTTP_PROXY when proxy is null', async () => {
    const before = proxy.requests.length;
    const v = verifier(main.url, { proxy: null, env: { HTTP_PROXY: proxy.url } });
    expect((await v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true })).ok).toBe(true);
    expect(proxy.requests.slice(before).map((r) => r.target)).toEqual([main.url]);
  });

  it('NO_PROXY bypass: direct to the service, the proxy sees nothing', async () => {
    const before = proxy.requests.length;
    const logBefore = (await main.log()).length;
    const v = verifier(main.url, { proxy: null, env: { http_proxy: proxy.url, no_proxy: 'example.org, 127.0.0.0/8' } });
    expect(v.proxyUrl).toBeNull();
    expect((await v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true })).ok).toBe(true);
    expect(proxy.requests.length).toBe(before);
    expect((await main.log()).length).toBe(logBefore + 1);
  });

  it('proxy down -> VERIFIER_UNAVAILABLE', async () => {
    const v = verifier(main.url, { proxy: `http://127.0.0.1:${await freePort()}` });
    await unavailable(v.verify({ username: 'bob', password: BOB_PASS, mechanism: 'USER', tls: true }));
  });
});
