/**
 * The verifiers' https egress through a REAL forward proxy: a private
 * tinyproxy (test/helpers/tinyproxy.ts) in front of
 *
 * - an OAuth issuer over https on loopback (oauth2-mock-server with the test
 *   PKI's certificate): discovery, JWKS and introspection through a CONNECT
 *   tunnel (auth.oauth.proxy);
 * - the nginx-style auth service over https (test/fixtures/nginx-auth/auth.py
 *   with --tls-cert): the auth_http question through a CONNECT tunnel.
 *
 * What is asserted is tinyproxy's own log of the CONNECT request lines, not
 * just that a login works: and with the proxy stopped or unreachable the
 * same configuration fails as VERIFIER_UNAVAILABLE ([SYS/TEMP]), so the
 * requests cannot have gone around it. A NO_PROXY-listed host goes direct
 * (tinyproxy logs nothing). The test CA is made a default trust anchor of
 * this (forked) test process, as NODE_EXTRA_CA_CERTS would be in production:
 * the tunnelled TLS is checked like any other (an untrusted CA fails, and so
 * does a certificate that does not name an IP-literal origin's address).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { Events, OAuth2Server, type MutableResponse } from 'oauth2-mock-server';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHttpAuthVerifier, type HttpAuthOptions, type HttpAuthVerifier } from '../../src/auth/http-auth.js';
import { createTokenValidator, type TokenValidator, type TokenValidatorDeps } from '../../src/auth/oauth/token-validator.js';
import { oauthSchema, type OAuthConfigInput } from '../../src/config/oauth.js';
import { issueCert, makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startHttpsServices, type HttpsServices } from '../helpers/https-services.js';
import type { AuthService } from '../helpers/nginx-auth.js';
import { freePort } from '../helpers/ports.js';
import { startTinyproxy, type TestTinyproxy, type TinyproxyRequest } from '../helpers/tinyproxy.js';
import { unavailable } from '../helpers/verifier.js';

const AUDIENCE = 'popgate';

let pki: TestPki;
let dir: string;
let services: HttpsServices;
let proxy: TestTinyproxy;
/** The https issuer: https://localhost:<port> (the test certificate names localhost and 127.0.0.1). */
let server: OAuth2Server;
let issuerPort: number;
let issuer: string;
/** The https auth service. */
let auth: AuthService;
let authPort: number;
/** An issuer on 127.0.0.2 whose certificate names localhost only, not its address. */
let misnamed: OAuth2Server;
let misnamedPort: number;

beforeAll(async () => {
  pki = await makeTempTestPki();
  dir = await mkdtemp(join(tmpdir(), 'popgate-egress-'));
  services = await startHttpsServices(pki, dir);
  ({ server, issuerPort, auth, authPort } = services);
  issuer = services.issuerUrl;

  const localhostOnly = await issueCert(pki, { name: 'localhost-only', dns: ['localhost'] });
  misnamed = new OAuth2Server(localhostOnly.keyFile, localhostOnly.certFile);
  await misnamed.issuer.keys.generate('RS256');
  misnamedPort = await freePort('127.0.0.2');
  misnamed.issuer.url = `https://127.0.0.2:${misnamedPort}`;
  await misnamed.start(misnamedPort, '127.0.0.2');

  proxy = await startTinyproxy({ connectPorts: [issuerPort, authPort, misnamedPort] });
});

afterAll(async () => {
  await proxy?.stop();
  await misnamed?.stop();
  await services?.stop();
  await rm(dir, { recursive: true, force: true });
  await rm(pki.dir, { recursive: true, force: true });
});

const validators: TokenValidator[] = [];
const verifiers: HttpAuthVerifier[] = [];
afterEach(() => {
  for (const v of validators.splice(0)) v.close();
  for (const v of verifiers.splice(0)) v.close();
  server.service.removeAllListeners();
});

function validator(over: Partial<OAuthConfigInput>, deps: TokenValidatorDeps = {}): TokenValidator {
  const v = createTokenValidator(oauthSchema.parse({ issuer, audience: AUDIENCE, ...over }), { env: {}, ...deps });
  validators.push(v);
  return v;
}

function token(from: OAuth2Server = server): Promise<string> {
  return from.issuer.buildToken({
    scopesOrTransform: (_header, payload) => Object.assign(payload, { aud: AUDIENCE, sub: 'user-1', preferred_username: 'alice' }),
  });
}

/** What tinyproxy logs from now on: call the result for the requests since. */
const mark = (p: TestTinyproxy = proxy): Promise<() => Promise<TinyproxyRequest[]>> => p.mark();

describe('OAuth issuer over https through tinyproxy', () => {
  it('auth.oauth.proxy: discovery and JWKS go through one CONNECT tunnel (kept alive), and the token validates', async () => {
    const since = await mark();
    const v = validator({ proxy: proxy.url });
    expect(await v.validate(await token())).toMatchObject({ ok: true, user: 'alice', subject: 'user-1' });
    // Discovery, then the JWKS, on the same kept-alive tunnel: one CONNECT, no plain request.
    expect(await since()).toEqual([{ method: 'CONNECT', target: `localhost:${issuerPort}` }]);
  });

  it('introspection (an opaque token, POST) goes through the tunnel too', async () => {
    server.service.on(Events.BeforeIntrospect, (response: MutableResponse) => {
      response.body = { active: true, iss: issuer, aud: AUDIENCE, username: 'carol', exp: Math.floor(Date.now() / 1000) + 60 };
    });
    const since = await mark();
    const v = validator({ proxy: proxy.url, introspection: { url: `${issuer}/introspect`, clientId: 'popgate', clientSecret: 's' } });
    expect(await v.validate('opaque-token-through-the-tunnel')).toMatchObject({ ok: true, user: 'carol' });
    expect(await since()).toEqual([{ method: 'CONNECT', target: `localhost:${issuerPort}` }]);
    expect(await proxy.log()).not.toContain('opaque-token-through-the-tunnel');
  });

  it('proxy null: HTTPS_PROXY from the environment; a NO_PROXY-listed host goes direct', async () => {
    let since = await mark();
    const viaEnv = validator({}, { env: { HTTPS_PROXY: proxy.url, HTTP_PROXY: 'http://127.0.0.1:9' } });
    expect(await viaEnv.validate(await token())).toMatchObject({ ok: true, user: 'alice' });
    expect(await since()).toEqual([{ method: 'CONNECT', target: `localhost:${issuerPort}` }]);

    since = await mark();
    const direct = validator({}, { env: { HTTPS_PROXY: proxy.url, NO_PROXY: 'example.org, localhost' } });
    expect(await direct.validate(await token())).toMatchObject({ ok: true, user: 'alice' });
    expect(await since()).toEqual([]);
  });

  it('a proxy that is not there: VERIFIER_UNAVAILABLE ([SYS/TEMP]), never a direct request', async () => {
    const closed = await freePort();
    const err = await unavailable(validator({ proxy: `http://127.0.0.1:${closed}` }).validate(await token()));
    expect(err.detail).toMatch(/^issuer-unreachable: ECONNREFUSED from https:\/\/localhost:\d+\/\.well-known\/openid-configuration$/);

    // A tinyproxy that worked, then stopped: the next validator (no cached keys) cannot reach the issuer.
    const second = await startTinyproxy({ connectPorts: [issuerPort] });
    try {
      expect(await validator({ proxy: second.url }).validate(await token())).toMatchObject({ ok: true });
      expect((await second.requests()).map((r) => r.method)).toEqual(['CONNECT']);
    } finally {
      await second.stop();
    }
    const after = await unavailable(validator({ proxy: second.url }).validate(await token()));
    expect(after.detail).toMatch(/^issuer-unreachable: ECONNREFUSED/);
  });

  it('the tunnelled TLS is checked: an untrusted CA fails, after the proxy did connect', async () => {
    const since = await mark();
    const trusted = tls.getCACertificates('default');
    tls.setDefaultCACertificates(services.defaultCas);
    try {
      const err = await unavailable(validator({ proxy: proxy.url }).validate(await token()));
      expect(err.detail).toMatch(/^issuer-unreachable: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN) from https:\/\/localhost:/);
    } finally {
      tls.setDefaultCACertificates(trusted);
    }
    expect(await since()).toEqual([{ method: 'CONNECT', target: `localhost:${issuerPort}` }]);
  });

  it('an IP-literal issuer is checked against its own address, not the proxy\'s name', async () => {
    // https-proxy-agent leaves the TLS host out for an IP origin, and node then checks the
    // certificate against the proxy socket's host name, or "localhost": popgate pins it to the origin.
    const misnamedIssuer = `https://127.0.0.2:${misnamedPort}`;
    for (const via of [proxy.url, `http://localhost:${proxy.port}`]) {
      const since = await mark();
      const err = await unavailable(validator({ issuer: misnamedIssuer, proxy: via }).validate(await token(misnamed)));
      expect(err.detail).toMatch(/^issuer-unreachable: ERR_TLS_CERT_ALTNAME_INVALID from https:\/\/127\.0\.0\.2:/);
      expect(await since()).toEqual([{ method: 'CONNECT', target: `127.0.0.2:${misnamedPort}` }]);
    }
    // The same issuer reached directly fails the same way.
    const direct = await unavailable(validator({ issuer: misnamedIssuer, proxy: 'none' }).validate(await token(misnamed)));
    expect(direct.detail).toMatch(/^issuer-unreachable: ERR_TLS_CERT_ALTNAME_INVALID/);
    // And an IP-literal issuer whose certificate does name its address validates through the tunnel.
    const byAddress = `https://127.0.0.1:${issuerPort}`;
    server.issuer.url = byAddress;
    try {
      const since = await mark();
      expect(await validator({ issuer: byAddress, proxy: proxy.url }).validate(await token())).toMatchObject({ ok: true, user: 'alice' });
      expect(await since()).toEqual([{ method: 'CONNECT', target: `127.0.0.1:${issuerPort}` }]);
    } finally {
      server.issuer.url = issuer;
    }
  });
});

describe('auth_http over https through tinyproxy', () => {
  function verifier(over: Partial<HttpAuthOptions>): HttpAuthVerifier {
    const v = createHttpAuthVerifier({
      url: auth.url,
      timeoutMs: 5000,
      maxConcurrent: 2,
      maxQueue: 4,
      maxWaits: 0,
      headers: {},
      proxy: 'none',
      authorizeTicketLogins: false,
      logger: pino({ level: 'silent' }),
      env: {},
      ...over,
    });
    verifiers.push(v);
    return v;
  }
  const alice = { username: 'alice', password: 'wonderland', mechanism: 'USER' as const, tls: true };

  it('explicit proxy: the question goes through a CONNECT tunnel; the answer counts', async () => {
    const since = await mark();
    const questionsBefore = (await auth.log()).length;
    const v = verifier({ proxy: proxy.url });
    expect(v.proxyUrl).toBe(`${proxy.url}/`);
    expect(await v.verify(alice)).toMatchObject({ ok: true, user: 'alice' });
    expect(await v.verify({ ...alice, password: 'wrong' })).toMatchObject({ ok: false, reason: 'bad-password' });
    // python's http.server closes each connection after its answer: a tunnel per question.
    expect(await since()).toEqual([
      { method: 'CONNECT', target: `localhost:${authPort}` },
      { method: 'CONNECT', target: `localhost:${authPort}` },
    ]);
    const questions = (await auth.log()).slice(questionsBefore);
    expect(questions.map((q) => q.headers['Auth-User'])).toEqual(['alice', 'alice']);
    // Inside the tunnel the service saw an ordinary origin-form request, not a proxy's.
    expect(questions[0]?.path).toBe('/auth');
    expect(await proxy.log()).not.toContain('wonderland');
  });

  it('proxy null: HTTPS_PROXY (not HTTP_PROXY) for an https URL; NO_PROXY goes direct', async () => {
    let since = await mark();
    const v = verifier({ proxy: null, env: { HTTPS_PROXY: proxy.url, HTTP_PROXY: 'http://127.0.0.1:9' } });
    expect(v.proxyUrl).toBe(`${proxy.url}/`);
    expect(await v.verify(alice)).toMatchObject({ ok: true });
    expect(await since()).toEqual([{ method: 'CONNECT', target: `localhost:${authPort}` }]);

    since = await mark();
    const direct = verifier({ proxy: null, env: { HTTPS_PROXY: proxy.url, no_proxy: `localhost:${authPort}` } });
    expect(direct.proxyUrl).toBeNull();
    expect(await direct.verify(alice)).toMatchObject({ ok: true });
    expect(await since()).toEqual([]);
  });

  it('a proxy that is not there, or one that refuses the CONNECT: VERIFIER_UNAVAILABLE', async () => {
    const closed = await freePort();
    const err = await unavailable(verifier({ proxy: `http://127.0.0.1:${closed}` }).verify(alice));
    expect(err.detail).toMatch(/ECONNREFUSED/);
    // tinyproxy admits CONNECT only to its ConnectPort list: the auth port of another tinyproxy is not on it.
    const strict = await startTinyproxy({ connectPorts: [issuerPort] });
    try {
      const refused = await unavailable(verifier({ proxy: strict.url }).verify(alice));
      expect(refused.detail).toMatch(/HTTP 403/);
      expect(await strict.requests()).toEqual([{ method: 'CONNECT', target: `localhost:${authPort}` }]);
    } finally {
      await strict.stop();
    }
  });
});
