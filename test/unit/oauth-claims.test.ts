/**
 * The pure parts of OAuth bearer-token logins: the claim mapper
 * (src/auth/oauth/claim-mapper.ts) and the error JSON a refused client gets
 * (src/auth/oauth/error-challenge.ts).
 */
import { describe, expect, it } from 'vitest';
import { ClaimMapper } from '../../src/auth/oauth/claim-mapper.js';
import { challengeOptions, oauthbearerErrorJson, xoauth2ErrorJson } from '../../src/auth/oauth/error-challenge.js';
import type { TokenRefusal } from '../../src/auth/oauth/token-validator.js';
import { oauthSchema } from '../../src/config/oauth.js';

describe('ClaimMapper', () => {
  it('maps the plain claim value: preferred_username or sub', () => {
    expect(new ClaimMapper({ userClaim: 'preferred_username' }).map({ preferred_username: 'alice', sub: 'x' })).toEqual({ ok: true, user: 'alice', rule: 'preferred_username' });
    expect(new ClaimMapper({ userClaim: 'sub' }).map({ preferred_username: 'alice', sub: 'u-1' })).toEqual({ ok: true, user: 'u-1', rule: 'sub' });
  });

  it('refuses missing, non-string, empty, overlong and unusable values', () => {
    const m = new ClaimMapper({ userClaim: 'preferred_username' });
    for (const value of [undefined, 42, ['alice'], '', 'a'.repeat(1025), 'two words', 'tab\there', 'colon:name']) {
      expect(m.map({ preferred_username: value }).ok, JSON.stringify(value)).toBe(false);
    }
  });

  it('maps email addresses of the allowed domains by local part, case-insensitively by domain', () => {
    const m = new ClaimMapper({ userClaim: 'email', emailDomains: ['example.com'] });
    expect(m.map({ email: 'alice@example.com' })).toEqual({ ok: true, user: 'alice', rule: 'email' });
    expect(m.map({ email: 'Alice@EXAMPLE.com.' })).toEqual({ ok: true, user: 'Alice', rule: 'email' });
    expect(m.map({ email: 'alice@sub.example.com' })).toEqual({ ok: false, detail: 'the email domain is not one of emailDomains' });
    expect(m.map({ email: 'alice@example.com.evil.org' })).toMatchObject({ ok: false });
    expect(m.map({ email: '@example.com' })).toMatchObject({ ok: false });
    expect(m.map({ email: 'example.com' })).toMatchObject({ ok: false });
    expect(m.map({ email: '"a@b"@example.com' })).toEqual({ ok: false, detail: 'the email local part holds an "@"' });
    expect(m.map({ email: 'alice@example.com', email_verified: false })).toEqual({ ok: false, detail: 'the email claim is not verified (email_verified: false)' });
    expect(m.map({ email: 'alice@example.com', email_verified: true })).toMatchObject({ ok: true, user: 'alice' });
  });

  it('tries the explicit map first (verbatim), then the rules (the first match decides), then the plain value', () => {
    const m = new ClaimMapper({
      userClaim: 'email',
      emailDomains: ['example.com'],
      map: { 'boss@partner.org': 'boss', 'alice@example.com': 'Alice.Admin' },
      rules: [
        { match: '^(.+)@legacy\\.example\\.net$', replace: 'old-$1' },
        { match: '^(.+)@broken\\.example\\.net$', replace: 'bad user $1' },
        { match: '^(.+)@.*$', replace: 'never-$1' },
      ],
    });
    expect(m.map({ email: 'alice@example.com' })).toEqual({ ok: true, user: 'Alice.Admin', rule: 'map[alice@example.com]' });
    expect(m.map({ email: 'boss@partner.org' })).toEqual({ ok: true, user: 'boss', rule: 'map[boss@partner.org]' });
    expect(m.map({ email: 'carol@legacy.example.net' })).toEqual({ ok: true, user: 'old-carol', rule: 'rules[0]' });
    // The first matching rule decides even when its result is unusable.
    expect(m.map({ email: 'dave@broken.example.net' })).toEqual({ ok: false, detail: 'rules[1] gives no usable POP3 user name' });
    expect(m.map({ email: 'erin@anything.org' })).toEqual({ ok: true, user: 'never-erin', rule: 'rules[2]' });
  });

  it('refuses unusable options with the mapper\'s messages', () => {
    expect(() => new ClaimMapper({ userClaim: 'sub', rules: [{ match: '(', replace: '' }] })).toThrow(/^claim mapping\.rules\[0\]\.match: not a valid regular expression/);
    expect(() => new ClaimMapper({ userClaim: 'sub', map: { x: 'a b' } })).toThrow('claim mapping.map.x: must be a POP3 user name');
    expect(() => new ClaimMapper({ userClaim: 'email' })).toThrow('claim mapping.emailDomains: required');
  });
});

describe('error challenges', () => {
  const discovery = challengeOptions(oauthSchema.parse({ issuer: 'https://idp.example.com/realms/mail/', audience: 'popgate', requiredScopes: ['mail', 'openid'] }));
  const explicit = challengeOptions(oauthSchema.parse({ issuer: 'https://idp.example.com', jwksUrl: 'https://idp.example.com/keys', audience: 'popgate' }));

  it('RFC 7628: invalid_token, or insufficient_scope for a scope refusal; the discovery document only when discovery is used', () => {
    expect(discovery).toEqual({ scopes: ['mail', 'openid'], openidConfiguration: 'https://idp.example.com/realms/mail/.well-known/openid-configuration' });
    expect(JSON.parse(oauthbearerErrorJson('expired', discovery))).toEqual({
      status: 'invalid_token',
      scope: 'mail openid',
      'openid-configuration': 'https://idp.example.com/realms/mail/.well-known/openid-configuration',
    });
    expect(oauthbearerErrorJson('scope', discovery)).toBe(
      '{"status":"insufficient_scope","scope":"mail openid","openid-configuration":"https://idp.example.com/realms/mail/.well-known/openid-configuration"}',
    );
    expect(oauthbearerErrorJson('signature', explicit)).toBe('{"status":"invalid_token"}');
    const reasons: TokenRefusal[] = ['malformed', 'expired', 'not-yet-valid', 'audience', 'issuer', 'signature', 'unknown-key', 'algorithm', 'azp', 'inactive', 'unmapped'];
    for (const r of reasons) expect(JSON.parse(oauthbearerErrorJson(r, explicit)), r).toEqual({ status: 'invalid_token' });
  });

  it('XOAUTH2 (Google): status 400 for a malformed token, else 401; schemes bearer; the scope when required', () => {
    expect(xoauth2ErrorJson('expired', discovery)).toBe('{"status":"401","schemes":"bearer","scope":"mail openid"}');
    expect(xoauth2ErrorJson('malformed', explicit)).toBe('{"status":"400","schemes":"bearer"}');
    expect(JSON.parse(xoauth2ErrorJson('scope', explicit))).toEqual({ status: '401', schemes: 'bearer' });
  });
});
