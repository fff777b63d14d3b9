/**
 * The `auth.oauth` schema (src/config/oauth.ts) on its own: defaults, every
 * key, and the refusals (unsigned and symmetric algorithms, plain http to a
 * non-loopback issuer, email without domains, the claim mapping's rules and
 * users with the Kerberos mapper's own messages).
 */
import { describe, expect, it } from 'vitest';
import { OAUTH_DEFAULT_ALGORITHMS, oauthSchema, type OAuthConfigInput } from '../../src/config/oauth.js';
import { checkMappingOptions, NOT_A_POP3_USER } from '../../src/identity/principal-mapper.js';

const BASE = { issuer: 'https://login.example.com/realms/mail', audience: 'popgate' } satisfies OAuthConfigInput;

/** `path: message` of every issue of a config that must fail. */
function problems(input: unknown): string[] {
  const r = oauthSchema.safeParse(input);
  expect(r.success, 'the config should be refused').toBe(false);
  return (r.error?.issues ?? []).map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('auth.oauth schema', () => {
  it('fills the defaults from the schema', () => {
    expect(oauthSchema.parse(BASE)).toEqual({
      issuer: 'https://login.example.com/realms/mail',
      audience: ['popgate'],
      algorithms: [...OAUTH_DEFAULT_ALGORITHMS],
      clockTolerance: 30_000,
      requiredScopes: [],
      userClaim: 'preferred_username',
      map: {},
      rules: [],
      timeout: 5_000,
      jwksCooldown: 30_000,
      jwksCacheMaxAge: 600_000,
      proxy: null,
    });
    expect(OAUTH_DEFAULT_ALGORITHMS).toEqual(['RS256', 'ES256', 'PS256', 'EdDSA']);
  });

  it('takes every key', () => {
    const cfg = oauthSchema.parse({
      issuer: 'http://127.0.0.1:8080',
      jwksUrl: 'http://localhost:8080/jwks',
      audience: ['popgate', 'mail'],
      algorithms: ['ES384', 'EdDSA'],
      clockTolerance: '2m',
      requiredScopes: ['mail.read', 'https://mail.google.com/'],
      authorizedParty: 'thunderbird',
      userClaim: 'email',
      emailDomains: ['Example.COM', 'mail.example.org.'],
      map: { 'boss@partner.org': 'boss' },
      rules: [{ match: '^(.+)@legacy\\.example\\.com$', replace: 'old-$1' }],
      introspection: { url: 'https://login.example.com/introspect?tenant=1', clientId: 'popgate', clientSecret: 's3cret', cacheTtl: '30s', cacheMaxEntries: 50 },
      timeout: '2500ms',
      jwksCooldown: '1m',
      jwksCacheMaxAge: '1h',
      proxy: 'http://proxy.example.com:3128',
    });
    expect(cfg).toMatchObject({
      issuer: 'http://127.0.0.1:8080',
      jwksUrl: 'http://localhost:8080/jwks',
      audience: ['popgate', 'mail'],
      algorithms: ['ES384', 'EdDSA'],
      clockTolerance: 120_000,
      requiredScopes: ['mail.read', 'https://mail.google.com/'],
      authorizedParty: 'thunderbird',
      emailDomains: ['example.com', 'mail.example.org'],
      map: { 'boss@partner.org': 'boss' },
      introspection: { url: 'https://login.example.com/introspect?tenant=1', clientId: 'popgate', clientSecret: 's3cret', cacheTtl: 30_000, cacheMaxEntries: 50 },
      timeout: 2_500,
      jwksCooldown: 60_000,
      jwksCacheMaxAge: 3_600_000,
      proxy: 'http://proxy.example.com:3128',
    });
    expect(oauthSchema.parse({ ...BASE, introspection: { url: 'https://idp/introspect', clientId: 'c', clientSecret: 's' } }).introspection).toMatchObject({
      cacheTtl: 60_000,
      cacheMaxEntries: 10_000,
    });
  });

  it('proxy: null (the environment), "none" or an http(s) proxy URL without credentials, as auth.http.proxy', () => {
    expect(oauthSchema.parse({ ...BASE, proxy: 'none' }).proxy).toBe('none');
    expect(oauthSchema.parse({ ...BASE, proxy: null }).proxy).toBeNull();
    expect(oauthSchema.parse({ ...BASE, proxy: 'https://proxy.example.com' }).proxy).toBe('https://proxy.example.com');
    expect(problems({ ...BASE, proxy: 'socks5://p:1080' })).toEqual(['proxy: must be "none" or an http:// or https:// URL, not socks5:']);
    expect(problems({ ...BASE, proxy: 'off' })).toEqual(['proxy: must be "none" or an http:// or https:// URL (it has no scheme)']);
    expect(problems({ ...BASE, proxy: 'http://u:p@proxy:3128' })).toEqual(['proxy: must not contain credentials (user:password@)']);
    expect(problems({ ...BASE, proxy: '' })).toContain('proxy: must not be empty');
    const r = oauthSchema.safeParse({ ...BASE, proxy: 'http://u:p@proxy:3128' });
    expect((r.error?.issues[0] as { params?: unknown } | undefined)?.params).toEqual({ hint: expect.stringMatching(/proxy authentication is not supported/) });
  });

  it('refuses alg none and every HS* algorithm, with why', () => {
    const out = problems({ ...BASE, algorithms: ['RS256', 'none', 'HS256', 'hs512', 'XY999', 'RS256'] });
    expect(out).toEqual([
      'algorithms.1: alg "none" is never accepted: it marks an unsigned token anyone can write',
      expect.stringMatching(/^algorithms\.2: HS256 is refused: an HMAC key is a secret shared with the issuer/),
      expect.stringMatching(/^algorithms\.3: hs512 is refused/),
      'algorithms.4: XY999 is not a supported signature algorithm',
      'algorithms.5: duplicate algorithm RS256',
    ]);
    expect(problems({ ...BASE, algorithms: [] })).toEqual(['algorithms: at least one algorithm is required']);
  });

  it('refuses plain http to anything but loopback, and URLs with credentials, fragments or (issuer) queries', () => {
    expect(problems({ ...BASE, issuer: 'http://login.example.com' })).toEqual([
      'issuer: issuer must be https:// (plain http:// only to localhost, 127.0.0.0/8 or ::1)',
    ]);
    expect(problems({ ...BASE, jwksUrl: 'http://10.0.0.1/jwks' })).toEqual([
      'jwksUrl: jwksUrl must be https:// (plain http:// only to localhost, 127.0.0.0/8 or ::1)',
    ]);
    expect(problems({ ...BASE, introspection: { url: 'http://idp.example.com/introspect', clientId: 'c', clientSecret: 's' } })).toEqual([
      'introspection.url: the introspection endpoint must be https:// (plain http:// only to localhost, 127.0.0.0/8 or ::1)',
    ]);
    expect(problems({ ...BASE, issuer: 'ftp://login.example.com' })).toEqual(['issuer: issuer must be an https:// URL, not ftp:']);
    expect(problems({ ...BASE, issuer: 'login.example.com' })).toEqual(['issuer: issuer must be an https:// URL']);
    expect(problems({ ...BASE, issuer: 'https://u:p@login.example.com' })).toEqual(['issuer: must not contain credentials (user:password@)']);
    expect(problems({ ...BASE, issuer: 'https://login.example.com/#x' })).toEqual(['issuer: must not contain a #fragment']);
    expect(problems({ ...BASE, issuer: 'https://login.example.com/?t=1' })).toEqual([
      'issuer: must not contain a ?query (an OpenID issuer identifier has none)',
    ]);
    for (const issuer of ['http://localhost:8080', 'http://127.0.0.2', 'http://[::1]:9000/realm']) {
      expect(oauthSchema.safeParse({ ...BASE, issuer }).success, issuer).toBe(true);
    }
  });

  it('requires an audience, emailDomains with userClaim email (and only then), and a client secret for introspection', () => {
    expect(problems({ issuer: BASE.issuer })).toEqual([expect.stringMatching(/^audience: /)]);
    expect(problems({ ...BASE, audience: [] })).toEqual(['audience: at least one audience is required']);
    expect(problems({ ...BASE, userClaim: 'email' })).toEqual(['emailDomains: required (at least one domain) when userClaim is email']);
    expect(problems({ ...BASE, emailDomains: ['example.com'] })).toEqual(['emailDomains: configured but not used: userClaim is preferred_username']);
    expect(problems({ ...BASE, userClaim: 'email', emailDomains: ['not a domain'] })).toEqual(['emailDomains.0: must be a domain name, e.g. example.com']);
    expect(problems({ ...BASE, userClaim: 'upn' })).toEqual([expect.stringMatching(/^userClaim: /)]);
    expect(problems({ ...BASE, introspection: { url: 'https://idp/introspect', clientId: 'c' } })).toEqual([
      'introspection.clientSecret: required: set clientSecret or clientSecretFile',
    ]);
    expect(problems({ ...BASE, requiredScopes: ['two words'] })).toEqual([
      'requiredScopes.0: must be one scope token (printable ASCII, no spaces, quotes or backslashes)',
    ]);
  });

  it('bounds the durations', () => {
    expect(problems({ ...BASE, clockTolerance: '10m' })).toEqual(['clockTolerance: must be at most 5m']);
    expect(problems({ ...BASE, jwksCooldown: 0 })).toEqual(['jwksCooldown: must be at least 1s']);
    expect(problems({ ...BASE, introspection: { url: 'https://idp/i', clientId: 'c', clientSecret: 's', cacheTtl: '1h' } })).toEqual([
      'introspection.cacheTtl: must be at most 10m',
    ]);
    expect(problems({ ...BASE, jwksCooldown: '5m', jwksCacheMaxAge: '2m' })).toEqual(['jwksCacheMaxAge: must be at least jwksCooldown']);
  });

  it('refuses bad rules and map users with the principal mapper\'s own messages', () => {
    const rules = [
      { match: '', replace: 'x' },
      { match: '([a-z]+', replace: '$1' },
      { match: '^(.+)@example\\.com$', replace: '$2' },
      { match: '^.+$', replace: '$0' },
    ];
    const map = { 'bob@partner.org': 'bob smith', '': 'empty' };
    const kerberos = checkMappingOptions({ realms: ['EXAMPLE.COM'], rules }).map((p) => `${p.path.join('.')}: ${p.message}`);
    const out = problems({ ...BASE, map, rules });
    expect(out).toEqual([
      `map.bob@partner.org: ${NOT_A_POP3_USER}`,
      'map.: key must be a claim value (1 to 1024 characters)',
      ...kerberos,
    ]);
    expect(kerberos).toEqual([
      'rules.0.match: must not be empty',
      expect.stringMatching(/^rules\.1\.match: not a valid regular expression: /),
      'rules.2.replace: refers to group $2, but the regex has 1 capture group',
      'rules.3.replace: $0 is literal text in JavaScript; use $& for the whole match',
    ]);
  });

  it('is strict: a misspelt key is refused', () => {
    expect(problems({ ...BASE, audiance: 'x' })).toEqual([expect.stringMatching(/audiance/)]);
  });
});
