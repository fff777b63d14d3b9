/**
 * The bearer-token validator (src/auth/oauth/token-validator.ts) against a
 * real token issuer on loopback: oauth2-mock-server signs real JWTs with real
 * keys and serves /.well-known/openid-configuration, /jwks and /introspect.
 * Every request the issuer receives is counted (node's
 * `http.server.request.start` diagnostics channel), so the tests can say how
 * often the validator asked it. Time moves on a FakeClock (request deadlines,
 * introspection cache) or on a faked Date (jose's JWKS cooldown); nothing
 * sleeps.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { HttpProxyAgent } from 'http-proxy-agent';
import { SignJWT } from 'jose';
import { Events, OAuth2Issuer, OAuth2Server, type MutableResponse } from 'oauth2-mock-server';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTokenValidator, type TokenValidator, type TokenValidatorDeps } from '../../src/auth/oauth/token-validator.js';
import { oauthSchema, type OAuthConfig, type OAuthConfigInput } from '../../src/config/oauth.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startRecordingProxy } from '../helpers/http-proxy.js';
import { freePort } from '../helpers/ports.js';
import { closeServer, listenLoopback } from '../helpers/servers.js';
import { waitFor } from '../helpers/wait.js';
import { unavailable } from '../helpers/verifier.js';

const AUDIENCE = 'popgate';

let server: OAuth2Server;
let port: number;
let issuer: string;
/** Requests the issuer received, by path. */
const hits = new Map<string, number>();
const count = (path: string): number => hits.get(path) ?? 0;

function onRequest(message: unknown): void {
  const { request } = message as { request: IncomingMessage };
  if (request.socket.localPort !== port) return;
  const path = (request.url ?? '/').split('?')[0] ?? '/';
  hits.set(path, count(path) + 1);
}

beforeAll(async () => {
  server = new OAuth2Server();
  await server.issuer.keys.generate('RS256');
  port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  server.issuer.url = issuer;
  await server.start(port, '127.0.0.1');
  subscribe('http.server.request.start', onRequest);
});

afterAll(async () => {
  unsubscribe('http.server.request.start', onRequest);
  await server.stop();
});

const validators: TokenValidator[] = [];
afterEach(() => {
  for (const v of validators.splice(0)) v.close();
  server.service.removeAllListeners();
  vi.useRealTimers();
});

function config(over: Partial<OAuthConfigInput> = {}): OAuthConfig {
  return oauthSchema.parse({ issuer, audience: AUDIENCE, ...over });
}

function validator(over: Partial<OAuthConfigInput> = {}, deps: TokenValidatorDeps = {}): TokenValidator {
  const v = createTokenValidator(config(over), deps);
  validators.push(v);
  return v;
}

/** A token of the test issuer for alice, with `claims` over the usual ones (a claim set to undefined is left out). */
function token(claims: Record<string, unknown> = {}, opts: { kid?: string; expiresIn?: number; from?: OAuth2Issuer } = {}): Promise<string> {
  return (opts.from ?? server.issuer).buildToken({
    ...(opts.kid !== undefined ? { kid: opts.kid } : {}),
    ...(opts.expiresIn !== undefined ? { expiresIn: opts.expiresIn } : {}),
    scopesOrTransform: (_header, payload) => {
      Object.assign(payload, { aud: AUDIENCE, sub: 'user-1', preferred_username: 'alice', scope: 'openid mail', ...claims });
      for (const [k, v] of Object.entries(claims)) if (v === undefined) delete payload[k];
    },
  });
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

describe('JWT access tokens', () => {
  it('accepts a good token: the user, subject, deciding claim, scopes and expiry', async () => {
    const v = validator();
    const t = await token({}, { expiresIn: 600 });
    const exp = (JSON.parse(Buffer.from(t.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp;
    expect(await v.validate(t)).toEqual({ ok: true, user: 'alice', subject: 'user-1', claim: 'preferred_username', scopes: ['openid', 'mail'], expiresAt: exp * 1000 });
  });

  it('refuses expired, not yet valid, other-audience and other-issuer tokens', async () => {
    const v = validator();
    expect(await v.validate(await token({}, { expiresIn: -3600 }))).toMatchObject({ ok: false, reason: 'expired' });
    expect(await v.validate(await token({ nbf: nowSeconds() + 3600 }))).toMatchObject({ ok: false, reason: 'not-yet-valid' });
    expect(await v.validate(await token({ aud: 'another-service' }))).toMatchObject({ ok: false, reason: 'audience' });
    expect(await v.validate(await token({ aud: undefined }))).toMatchObject({ ok: false, reason: 'audience' });
    expect(await v.validate(await token({ iss: 'https://evil.example.com' }))).toMatchObject({ ok: false, reason: 'issuer' });
    // Within the clock tolerance (30 s) an expired token still passes; the tolerance is configurable.
    expect(await v.validate(await token({}, { expiresIn: -10 }))).toMatchObject({ ok: true });
    expect(await validator({ clockTolerance: 0 }).validate(await token({}, { expiresIn: -10 }))).toMatchObject({ ok: false, reason: 'expired' });
    // A list audience: one of them is enough.
    expect(await validator({ audience: ['other', AUDIENCE] }).validate(await token({ aud: ['x', AUDIENCE] }))).toMatchObject({ ok: true });
  });

  it('refuses a token signed by a key the JWKS lacks, and 50 such tokens fetch the JWKS once', async () => {
    const v = validator();
    expect(await v.validate(await token())).toMatchObject({ ok: true });
    const jwksBefore = count('/jwks');
    const rogue = new OAuth2Issuer();
    rogue.url = issuer;
    await rogue.keys.generate('RS256');
    const forged = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        rogue.buildToken({
          scopesOrTransform: (header, payload) => {
            header.kid = `made-up-${i}`;
            Object.assign(payload, { aud: AUDIENCE, sub: 'user-1', preferred_username: 'alice' });
          },
        }),
      ),
    );
    const results = await Promise.all(forged.map((t) => v.validate(t)));
    expect(new Set(results.map((r) => (r.ok ? 'ok' : r.reason)))).toEqual(new Set(['unknown-key']));
    // Within the cooldown (30 s) not one refetch; a fresh validator fetches once for all 50.
    expect(count('/jwks') - jwksBefore).toBe(0);
    const fresh = validator();
    const freshBefore = count('/jwks');
    const again = await Promise.all(forged.map((t) => fresh.validate(t)));
    expect(again.every((r) => !r.ok && r.reason === 'unknown-key')).toBe(true);
    expect(count('/jwks') - freshBefore).toBe(1);
  });

  it('refuses a token whose signature does not verify', async () => {
    const v = validator();
    const [h, p] = (await token()).split('.');
    const [, , otherSig] = (await token({ preferred_username: 'mallory' })).split('.');
    expect(await v.validate(`${h}.${p}.${otherSig}`)).toMatchObject({ ok: false, reason: 'signature' });
    // The payload changed under a valid signature: the same refusal.
    const tampered = `${h}.${b64url({ iss: issuer, aud: AUDIENCE, sub: 'user-1', preferred_username: 'root', exp: nowSeconds() + 60 })}.${otherSig}`;
    expect(await v.validate(tampered)).toMatchObject({ ok: false, reason: 'signature' });
  });

  it('refuses alg none without asking the issuer anything', async () => {
    const v = validator();
    const before = count('/jwks') + count('/.well-known/openid-configuration');
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ iss: issuer, aud: AUDIENCE, sub: 'user-1', preferred_username: 'alice', exp: nowSeconds() + 60 })}.`;
    expect(await v.validate(unsigned)).toMatchObject({ ok: false, reason: 'algorithm' });
    expect(await v.validate(`${unsigned}AAAA`)).toMatchObject({ ok: false, reason: 'algorithm' });
    expect(count('/jwks') + count('/.well-known/openid-configuration') - before).toBe(0);
  });

  it('refuses an HS256 token "signed" with the issuer\'s public key', async () => {
    const v = validator();
    const jwk = server.issuer.keys.toJSON()[0];
    if (!jwk) throw new Error('the issuer has no key');
    const publicPem = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const secret of [Buffer.from(publicPem), Buffer.from(JSON.stringify(jwk))]) {
      const forged = await new SignJWT({ aud: AUDIENCE, sub: 'user-1', preferred_username: 'alice' })
        .setProtectedHeader({ alg: 'HS256', kid: jwk.kid })
        .setIssuer(issuer)
        .setExpirationTime('5m')
        .sign(secret);
      expect(await v.validate(forged)).toMatchObject({ ok: false, reason: 'algorithm' });
    }
    // An algorithm of the issuer's key type that the configuration does not allow is refused too.
    expect(await validator({ algorithms: ['ES256'] }).validate(await token())).toMatchObject({ ok: false, reason: 'algorithm' });
  });

  it('refuses malformed tokens, and an opaque one when no introspection is configured', async () => {
    const v = validator();
    for (const t of ['', 'x'.repeat(20_000), 'abc.def.ghi', `${b64url([1])}.${b64url({})}.sig`, 'not a token', 'opaque-token-123']) {
      expect(await v.validate(t), t.slice(0, 30)).toMatchObject({ ok: false, reason: 'malformed' });
    }
  });

  it('maps email claims: allowed domains stripped, others refused, explicit map and rules first', async () => {
    const v = validator({
      userClaim: 'email',
      emailDomains: ['example.com'],
      map: { 'boss@partner.org': 'boss' },
      rules: [{ match: '^(.+)@legacy\\.example\\.net$', replace: 'old-$1' }],
    });
    expect(await v.validate(await token({ email: 'Alice@Example.COM' }))).toMatchObject({ ok: true, user: 'Alice', claim: 'email' });
    expect(await v.validate(await token({ email: 'alice@evil.org' }))).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(await v.validate(await token({ email: 'alice@example.com.evil.org' }))).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(await v.validate(await token({ email: 'alice@example.com', email_verified: false }))).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(await v.validate(await token({ email: 'boss@partner.org' }))).toMatchObject({ ok: true, user: 'boss', claim: 'map[boss@partner.org]' });
    expect(await v.validate(await token({ email: 'carol@legacy.example.net' }))).toMatchObject({ ok: true, user: 'old-carol', claim: 'rules[0]' });
    expect(await v.validate(await token({ email: 'bad user@example.com' }))).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(await v.validate(await token({ email: undefined }))).toMatchObject({ ok: false, reason: 'unmapped' });
    // userClaim sub: the subject as is.
    expect(await validator({ userClaim: 'sub' }).validate(await token({ sub: 'u42' }))).toMatchObject({ ok: true, user: 'u42', claim: 'sub' });
  });

  it('refuses a token without the required scopes (scope or scp) or issued to another client', async () => {
    const v = validator({ requiredScopes: ['mail'], authorizedParty: 'thunderbird' });
    expect(await v.validate(await token({ scope: 'openid profile', azp: 'thunderbird' }))).toEqual({ ok: false, reason: 'scope', detail: 'missing scope mail' });
    expect(await v.validate(await token({ scope: undefined, scp: ['openid', 'mail'], azp: 'thunderbird' }))).toMatchObject({ ok: true, scopes: ['openid', 'mail'] });
    expect(await v.validate(await token({ scope: 'mail', azp: 'evil-app' }))).toMatchObject({ ok: false, reason: 'azp' });
    expect(await v.validate(await token({ scope: 'mail' }))).toMatchObject({ ok: false, reason: 'azp' });
    // RFC 9068 tokens name the client in client_id.
    expect(await v.validate(await token({ scope: 'mail', client_id: 'thunderbird' }))).toMatchObject({ ok: true, user: 'alice' });
  });

  it('follows a key rotation: a new kid is refetched once the cooldown has passed, exactly once', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const v = validator();
    expect(await v.validate(await token())).toMatchObject({ ok: true });
    const fetched = count('/jwks');
    await server.issuer.keys.generate('RS256', { kid: 'rotated-1' });
    const rotated = await token({}, { kid: 'rotated-1' });
    // Within the cooldown the new kid is unknown (no refetch)...
    expect(await v.validate(rotated)).toMatchObject({ ok: false, reason: 'unknown-key' });
    expect(count('/jwks')).toBe(fetched);
    // ...after it, one refetch finds it, and the next tokens need none.
    vi.setSystemTime(Date.now() + 31_000);
    expect(await v.validate(rotated)).toMatchObject({ ok: true, user: 'alice' });
    expect(await v.validate(await token({}, { kid: 'rotated-1' }))).toMatchObject({ ok: true });
    expect(count('/jwks')).toBe(fetched + 1);
  });

  it('finds the keys by discovery (one discovery request) or at an explicit jwksUrl (none)', async () => {
    const t = await token();
    const before = { doc: count('/.well-known/openid-configuration'), jwks: count('/jwks') };
    const discovered = validator();
    expect(await discovered.validate(t)).toMatchObject({ ok: true });
    expect(await discovered.validate(t)).toMatchObject({ ok: true });
    expect({ doc: count('/.well-known/openid-configuration') - before.doc, jwks: count('/jwks') - before.jwks }).toEqual({ doc: 1, jwks: 1 });
    const explicit = validator({ jwksUrl: `${issuer}/jwks` });
    expect(await explicit.validate(t)).toMatchObject({ ok: true });
    expect({ doc: count('/.well-known/openid-configuration') - before.doc, jwks: count('/jwks') - before.jwks }).toEqual({ doc: 1, jwks: 2 });
  });

  it('does not trust a discovery document that names another issuer', async () => {
    server.service.once(Events.BeforeWellKnownOpenIdConfiguration, (doc: MutableResponse) => {
      if (doc.body !== '') doc.body['issuer'] = 'https://evil.example.com';
    });
    const err = await unavailable(validator().validate(await token()));
    expect(err.detail).toMatch(/^issuer-invalid: the discovery document .* names issuer "https:\/\/evil\.example\.com", not the configured one$/);
  });

  it('never writes a token into its log lines', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const v = validator({ requiredScopes: ['mail'] }, { logger: pino({ level: 'debug' }, sink) });
    const good = await token();
    const refused = await token({ scope: 'openid' });
    await v.validate(good);
    await v.validate(refused);
    const text = lines.join('');
    expect(text).toContain('bearer token accepted');
    expect(text).toContain('bearer token refused');
    for (const t of [good, refused]) {
      for (const part of t.split('.')) expect(text).not.toContain(part);
    }
  });
});

describe('opaque tokens: RFC 7662 introspection', () => {
  interface Call {
    readonly authorization: string | undefined;
    readonly contentType: string | undefined;
    body?: string;
  }
  let calls: Call[];
  let answer: MutableResponse;

  /** Every introspection request is recorded and gets `answer`. */
  function answerIntrospection(): void {
    calls = [];
    server.service.on(Events.BeforeIntrospect, (response: MutableResponse, req: IncomingMessage) => {
      const call: Call = { authorization: req.headers.authorization, contentType: req.headers['content-type'] };
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => (call.body = Buffer.concat(chunks).toString()));
      calls.push(call);
      response.statusCode = answer.statusCode;
      response.body = answer.body;
    });
  }

  const active = (over: Record<string, unknown> = {}): MutableResponse => ({
    statusCode: 200,
    body: { active: true, iss: issuer, aud: AUDIENCE, sub: 'user-3', username: 'carol', scope: 'mail', client_id: 'thunderbird', exp: nowSeconds() + 600, ...over },
  });

  function introspecting(clock: FakeClock, over: Partial<OAuthConfigInput> = {}): TokenValidator {
    answerIntrospection();
    return validator(
      { introspection: { url: `${issuer}/introspect`, clientId: 'popgate app', clientSecret: 's3cr:et', cacheTtl: '1m' }, requiredScopes: ['mail'], ...over },
      { clock },
    );
  }

  it('accepts an active token, asks with the client credentials, and caches the answer for cacheTtl', async () => {
    const clock = new FakeClock(Date.now());
    const v = introspecting(clock);
    answer = active();
    expect(await v.validate('opaque-token-1')).toEqual({
      ok: true,
      user: 'carol',
      subject: 'user-3',
      claim: 'preferred_username',
      scopes: ['mail'],
      expiresAt: ((answer.body as { exp: number }).exp) * 1000,
    });
    expect(calls).toHaveLength(1);
    const call = await waitFor('the introspection body', () => calls[0]?.body !== undefined && calls[0]);
    expect(call.contentType).toBe('application/x-www-form-urlencoded');
    expect(call.body).toBe('token=opaque-token-1&token_type_hint=access_token');
    // RFC 6749 2.3.1: the id and secret are form-encoded before Basic.
    expect(call.authorization).toBe(`Basic ${Buffer.from('popgate+app:s3cr%3Aet').toString('base64')}`);

    // Cached: no second question, even for ten at once.
    await Promise.all(Array.from({ length: 10 }, () => v.validate('opaque-token-1')));
    expect(calls).toHaveLength(1);
    clock.advance(61_000);
    expect(await v.validate('opaque-token-1')).toMatchObject({ ok: true });
    expect(calls).toHaveLength(2);
  });

  it('asks once for concurrent logins with one token, and keeps at most cacheMaxEntries answers (the oldest go first)', async () => {
    const clock = new FakeClock(Date.now());
    const v = introspecting(clock);
    answer = active();
    const results = await Promise.all(Array.from({ length: 5 }, () => v.validate('shared-token')));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(calls).toHaveLength(1);

    const small = validator(
      { introspection: { url: `${issuer}/introspect`, clientId: 'popgate', clientSecret: 's', cacheTtl: '1m', cacheMaxEntries: 2 } },
      { clock },
    );
    calls.length = 0;
    for (const t of ['t-1', 't-2', 't-3', 't-2', 't-3']) expect(await small.validate(t)).toMatchObject({ ok: true });
    expect(calls).toHaveLength(3);
    // t-1 was dropped to make room for t-3: asked again.
    expect(await small.validate('t-1')).toMatchObject({ ok: true });
    expect(calls).toHaveLength(4);
  });

  it('never caches past the token\'s exp', async () => {
    const clock = new FakeClock(Date.now());
    const v = introspecting(clock, { clockTolerance: 0 });
    answer = active({ exp: Math.floor(clock.now() / 1000) + 5 });
    expect(await v.validate('short-lived')).toMatchObject({ ok: true });
    clock.advance(6_000);
    expect(await v.validate('short-lived')).toMatchObject({ ok: false, reason: 'expired' });
    expect(calls).toHaveLength(2);
  });

  it('refuses inactive tokens (and caches that too) and applies the iss, aud, exp, scope and azp checks to the answer', async () => {
    const clock = new FakeClock(Date.now());
    const v = introspecting(clock, { authorizedParty: 'thunderbird' });
    answer = { statusCode: 200, body: { active: false } };
    expect(await v.validate('revoked-token')).toMatchObject({ ok: false, reason: 'inactive' });
    expect(await v.validate('revoked-token')).toMatchObject({ ok: false, reason: 'inactive' });
    expect(calls).toHaveLength(1);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ iss: 'https://evil.example.com' }, 'issuer'],
      [{ aud: 'other' }, 'audience'],
      [{ aud: undefined }, 'audience'],
      [{ exp: nowSeconds() - 3600 }, 'expired'],
      [{ nbf: nowSeconds() + 3600 }, 'not-yet-valid'],
      [{ scope: 'openid' }, 'scope'],
      [{ client_id: 'evil-app' }, 'azp'],
      [{ username: 'bad user' }, 'unmapped'],
    ];
    for (const [over, reason] of cases) {
      answer = active(over);
      if (over['aud'] === undefined && 'aud' in over) delete (answer.body as Record<string, unknown>)['aud'];
      expect(await v.validate(`token-${reason}`), reason).toMatchObject({ ok: false, reason });
    }
  });

  it('treats an endpoint answering garbage as unavailable, never as a refusal', async () => {
    const clock = new FakeClock(Date.now());
    const v = introspecting(clock);
    answer = { statusCode: 200, body: { username: 'carol' } };
    expect((await unavailable(v.validate('garbage-1'))).detail).toBe('introspection-invalid: the answer has no boolean "active" member');
    answer = active({ exp: 'tomorrow' });
    expect((await unavailable(v.validate('garbage-2'))).detail).toBe('introspection-invalid: the answer\'s "exp" member has the wrong type');
    answer = { statusCode: 500, body: { error: 'boom' } };
    expect((await unavailable(v.validate('garbage-3'))).detail).toMatch(/^introspection-invalid: .*\/introspect answered HTTP 500$/);
    // Nothing was cached: the next answer counts.
    answer = active();
    expect(await v.validate('garbage-3')).toMatchObject({ ok: true });
  });
});

describe('egress', () => {
  it('sends discovery, JWKS and introspection requests through the agent it is given (an HTTP forward proxy)', async () => {
    const proxy = await startRecordingProxy();
    const agent = new HttpProxyAgent(proxy.url);
    try {
      server.service.on(Events.BeforeIntrospect, (response: MutableResponse) => {
        response.body = { active: true, iss: issuer, aud: AUDIENCE, username: 'carol', exp: nowSeconds() + 60 };
      });
      const v = validator({ introspection: { url: `${issuer}/introspect`, clientId: 'popgate', clientSecret: 's' } }, { agents: { http: agent } });
      expect(await v.validate(await token())).toMatchObject({ ok: true, user: 'alice' });
      expect(await v.validate('opaque-via-proxy')).toMatchObject({ ok: true, user: 'carol' });
      expect(proxy.requests.map((r) => `${r.method} ${r.target}`)).toEqual([
        `GET ${issuer}/.well-known/openid-configuration`,
        `GET ${issuer}/jwks`,
        `POST ${issuer}/introspect`,
      ]);
      // The token travels in the body only, never in the URL or a header the proxy logs.
      expect(JSON.stringify(proxy.requests)).not.toContain('opaque-via-proxy');
    } finally {
      agent.destroy();
      await proxy.close();
    }
  });
});

describe('an issuer that cannot answer', () => {
  it('is VERIFIER_UNAVAILABLE when stopped (discovery and jwksUrl alike), remembered for the cooldown', async () => {
    const gone = new OAuth2Server();
    await gone.issuer.keys.generate('RS256');
    const gonePort = await freePort();
    const goneIssuer = `http://127.0.0.1:${gonePort}`;
    gone.issuer.url = goneIssuer;
    await gone.start(gonePort, '127.0.0.1');
    const t = await gone.issuer.buildToken({ scopesOrTransform: (_h, p) => Object.assign(p, { aud: AUDIENCE, preferred_username: 'alice' }) });
    await gone.stop();

    const clock = new FakeClock(Date.now());
    const discovering = createTokenValidator(oauthSchema.parse({ issuer: goneIssuer, audience: AUDIENCE }), { clock });
    validators.push(discovering);
    expect((await unavailable(discovering.validate(t))).detail).toMatch(/^issuer-unreachable: ECONNREFUSED from http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration$/);
    expect((await unavailable(discovering.validate(t))).detail).toMatch(/^issuer-unreachable: .*\(remembered; asking again in 30000 ms\)$/);
    const direct = createTokenValidator(oauthSchema.parse({ issuer: goneIssuer, jwksUrl: `${goneIssuer}/jwks`, audience: AUDIENCE }), { clock });
    validators.push(direct);
    expect((await unavailable(direct.validate(t))).detail).toMatch(/^jwks-unreachable: ECONNREFUSED/);
    expect((await unavailable(direct.validate(t))).detail).toMatch(/^jwks-unreachable: ECONNREFUSED.*\(remembered; asking again in 30000 ms\)$/);
    clock.advance(30_000);
    expect((await unavailable(direct.validate(t))).detail).toMatch(/^jwks-unreachable: ECONNREFUSED from http:\/\/127\.0\.0\.1:\d+\/jwks$/);
  });

  it('is VERIFIER_UNAVAILABLE when it does not answer within the timeout', async () => {
    const sockets = new Set<net.Socket>();
    /** The request lines it received (and never answered). */
    const requests: string[] = [];
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('data', (d: Buffer) => requests.push(d.toString('latin1').split('\r\n')[0] ?? ''));
    });
    const silentPort = await listenLoopback(silent);
    try {
      const clock = new FakeClock(Date.now());
      const v = createTokenValidator(oauthSchema.parse({ issuer: `http://127.0.0.1:${silentPort}`, audience: AUDIENCE, timeout: '2s' }), { clock });
      validators.push(v);
      const pending = v.validate(await token());
      const deadline = await clock.nextTimer(2_000);
      await waitFor('the discovery request', () => requests.length === 1);
      expect(requests).toEqual(['GET /.well-known/openid-configuration HTTP/1.1']);
      deadline.fire();
      expect((await unavailable(pending)).detail).toMatch(/^issuer-timeout: no answer from http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration within 2000 ms$/);
      // A login given up on (the client left) stops waiting at once (past the remembered failure: a new question).
      clock.advance(30_000);
      const ac = new AbortController();
      const abandoned = v.validate(await token(), ac.signal);
      await waitFor('the second discovery request', () => requests.length === 2);
      ac.abort();
      expect((await unavailable(abandoned)).detail).toBe('abandoned: the login was cancelled');
    } finally {
      await closeServer(silent, sockets);
    }
  });

  it('is VERIFIER_UNAVAILABLE when it answers garbage (discovery document, JWKS)', async () => {
    let reply: { status: number; body: string } = { status: 200, body: 'hello' };
    const junk = http.createServer((_req, res) => res.writeHead(reply.status, { 'content-type': 'application/json' }).end(reply.body));
    const junkPort = await listenLoopback(junk);
    const junkIssuer = `http://127.0.0.1:${junkPort}`;
    try {
      const t = await token();
      const check = async (over: Partial<OAuthConfigInput>, expected: RegExp): Promise<void> => {
        const v = validator({ issuer: junkIssuer, ...over });
        expect((await unavailable(v.validate(t))).detail).toMatch(expected);
      };
      await check({}, /^issuer-invalid: .* answered something that is not JSON$/);
      reply = { status: 200, body: JSON.stringify({ issuer: junkIssuer }) };
      await check({}, /^issuer-invalid: the discovery document .* has no usable jwks_uri$/);
      reply = { status: 200, body: JSON.stringify({ issuer: junkIssuer, jwks_uri: 'http://jwks.example.com/keys' }) };
      await check({}, /^issuer-invalid: jwks_uri http:\/\/jwks\.example\.com\/keys is not https:\/\/$/);
      reply = { status: 302, body: '' };
      await check({ jwksUrl: `${junkIssuer}/jwks` }, /^jwks-invalid: .* answered HTTP 302$/);
      reply = { status: 200, body: JSON.stringify({ keys: 'none' }) };
      await check({ jwksUrl: `${junkIssuer}/jwks` }, /^jwks-invalid: /);
    } finally {
      junk.closeAllConnections();
      await closeServer(junk, []);
    }
  });
});
