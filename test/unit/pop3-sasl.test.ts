import { describe, expect, it } from 'vitest';
import {
  LOGIN_PASSWORD_CHALLENGE,
  LOGIN_USERNAME_CHALLENGE,
  MAX_CHALLENGE_LENGTH,
  cramMd5Challenge,
  decodeBase64Strict,
  decodeCramMd5Response,
  decodeNameDigest,
  decodePlain,
  hasForbiddenCredentialChars,
  isValidChallengeString,
  loginPrompt,
  normaliseHexDigest,
} from '../../src/pop3/sasl.js';

const plain = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('decodeBase64Strict', () => {
  it('decodes canonical base64 with and without padding', () => {
    expect(decodeBase64Strict('YWxpY2U=')?.toString()).toBe('alice');
    expect(decodeBase64Strict('Ym9i')?.toString()).toBe('bob');
    expect(decodeBase64Strict('YQ==')?.toString()).toBe('a');
    expect(decodeBase64Strict('+/+/')).toEqual(Buffer.from([0xfb, 0xff, 0xbf]));
  });

  it('treats "=" and the empty string as an empty response', () => {
    expect(decodeBase64Strict('=')).toEqual(Buffer.alloc(0));
    expect(decodeBase64Strict('')).toEqual(Buffer.alloc(0));
  });

  it.each([
    ['bad character', 'YWxp*2U='],
    ['whitespace', 'YWxp Y2U='],
    ['trailing newline', 'YWxpY2U=\n'],
    ['url-safe alphabet', 'YW-_'],
    ['missing padding', 'YWxpY2U'],
    ['wrong length', 'YWx'],
    ['too much padding', 'YQ==='],
    ['padding in the middle', 'YQ==YQ=='],
    ['three pad chars', 'Y==='],
    ['double equals alone', '=='],
    ['non-canonical trailing bits', 'YR=='],
    ['non-ASCII', 'YWxpY2Ué'],
  ])('rejects %s', (_name, input) => {
    expect(decodeBase64Strict(input)).toBeUndefined();
  });

  it('round-trips random binary data', () => {
    let seed = 7;
    for (let len = 0; len < 64; len++) {
      const data = Buffer.alloc(len);
      for (let i = 0; i < len; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        data[i] = seed >>> 24;
      }
      expect(decodeBase64Strict(data.toString('base64'))).toEqual(data);
    }
  });
});

describe('decodePlain (RFC 4616)', () => {
  it('splits authzid, authcid and password', () => {
    expect(decodePlain(plain('\0alice\0secret'))).toEqual({ ok: true, authzid: '', authcid: 'alice', passwd: 'secret' });
    expect(decodePlain(plain('admin\0alice\0pass word'))).toEqual({
      ok: true,
      authzid: 'admin',
      authcid: 'alice',
      passwd: 'pass word',
    });
    expect(decodePlain(plain('\0jürgen\0pässwörd'))).toMatchObject({ ok: true, authcid: 'jürgen', passwd: 'pässwörd' });
  });

  it('requires exactly three fields', () => {
    expect(decodePlain(plain(''))).toEqual({ ok: false, reason: 'field-count' });
    expect(decodePlain(plain('alice'))).toEqual({ ok: false, reason: 'field-count' });
    expect(decodePlain(plain('alice\0secret'))).toEqual({ ok: false, reason: 'field-count' });
    expect(decodePlain(plain('\0alice\0sec\0ret'))).toEqual({ ok: false, reason: 'nul-in-field' });
    expect(decodePlain(plain('\0\0\0'))).toEqual({ ok: false, reason: 'nul-in-field' });
  });

  it('requires non-empty authcid and password', () => {
    expect(decodePlain(plain('\0\0secret'))).toEqual({ ok: false, reason: 'empty-authcid' });
    expect(decodePlain(plain('\0alice\0'))).toEqual({ ok: false, reason: 'empty-password' });
  });

  it('rejects CR and LF inside any field', () => {
    expect(decodePlain(plain('\0alice\r\nRETR 1\0secret'))).toEqual({ ok: false, reason: 'bad-characters' });
    expect(decodePlain(plain('\0alice\0sec\nret'))).toEqual({ ok: false, reason: 'bad-characters' });
    expect(decodePlain(plain('a\rb\0alice\0secret'))).toEqual({ ok: false, reason: 'bad-characters' });
  });

  it('rejects invalid UTF-8', () => {
    const buf = Buffer.concat([plain('\0alice\0'), Buffer.from([0xc3, 0x28])]);
    expect(decodePlain(buf)).toEqual({ ok: false, reason: 'bad-utf8' });
  });
});

describe('AUTH LOGIN prompts and credential checks', () => {
  it('uses the customary base64 prompts', () => {
    expect(Buffer.from(LOGIN_USERNAME_CHALLENGE, 'base64').toString()).toBe('Username:');
    expect(Buffer.from(LOGIN_PASSWORD_CHALLENGE, 'base64').toString()).toBe('Password:');
    expect(loginPrompt('username')).toBe('+ VXNlcm5hbWU6');
    expect(loginPrompt('password')).toBe('+ UGFzc3dvcmQ6');
  });

  it('flags CR, LF and NUL only', () => {
    expect(hasForbiddenCredentialChars('p a$$\tword')).toBe(false);
    expect(hasForbiddenCredentialChars('a\rb')).toBe(true);
    expect(hasForbiddenCredentialChars('a\nb')).toBe(true);
    expect(hasForbiddenCredentialChars('a\0b')).toBe(true);
  });
});

describe('APOP / CRAM-MD5 helpers', () => {
  const DIGEST = 'b913a602c7eda7a495b4e6e7334d3890';

  it('accepts msg-id form challenges <left@right> only', () => {
    for (const ok of ['<1896.697170952@dbc.mtview.ca.us>', '<1896.697170952@postoffice.reston.mci.net>', '<a@b>', '<x!#$%&*+-/=?^_`{|}~.y@[127.0.0.1]>']) {
      expect(isValidChallengeString(ok), ok).toBe(true);
    }
    for (const bad of ['', '<>', '<@>', '<a@>', '<@b>', 'a@b', '<a@b', 'a@b>', '<a@b@c>', '<a b@c>', '<a@b> ', ' <a@b>', '<a<@b>', '<a@b>>', '<a@b\r\n>', '<\u00e9@b>', '<a\0@b>']) {
      expect(isValidChallengeString(bad), JSON.stringify(bad)).toBe(false);
    }
    const longest = `<${'x'.repeat(MAX_CHALLENGE_LENGTH - 4)}@h>`;
    expect(longest).toHaveLength(MAX_CHALLENGE_LENGTH);
    expect(isValidChallengeString(longest)).toBe(true);
    expect(isValidChallengeString(`<x${longest.slice(1)}`)).toBe(false);
  });

  it('renders the CRAM-MD5 challenge line as RFC 2195 shows it', () => {
    expect(cramMd5Challenge('<1896.697170952@postoffice.reston.mci.net>')).toBe(
      '+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+',
    );
  });

  it('normalises 32-hex-digit digests to lowercase and refuses anything else', () => {
    expect(normaliseHexDigest(DIGEST.toUpperCase())).toBe(DIGEST);
    expect(normaliseHexDigest(DIGEST)).toBe(DIGEST);
    for (const bad of ['', DIGEST.slice(1), `${DIGEST}0`, `${DIGEST.slice(1)}g`, ` ${DIGEST.slice(1)}`]) {
      expect(normaliseHexDigest(bad)).toBeUndefined();
    }
  });

  it('splits "name digest" at the last space', () => {
    expect(decodeNameDigest(`tim ${DIGEST}`)).toEqual({ ok: true, username: 'tim', digest: DIGEST });
    expect(decodeNameDigest(`Tim Berners ${DIGEST.toUpperCase()}`)).toEqual({ ok: true, username: 'Tim Berners', digest: DIGEST });
    for (const bad of ['', 'tim', DIGEST, ` ${DIGEST}`, `tim ${DIGEST} `, `tim ${DIGEST.slice(2)}`, `tim  ${DIGEST}x`]) {
      expect(decodeNameDigest(bad), JSON.stringify(bad)).toEqual({ ok: false, reason: 'syntax' });
    }
    expect(decodeNameDigest(`t\rim ${DIGEST}`)).toEqual({ ok: false, reason: 'bad-characters' });
    expect(decodeNameDigest(`t\0im ${DIGEST}`)).toEqual({ ok: false, reason: 'bad-characters' });
  });

  it('decodes the RFC 2195 example response and refuses non-UTF-8', () => {
    const response = decodeBase64Strict('dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw');
    expect(response).toBeDefined();
    expect(decodeCramMd5Response(response ?? Buffer.alloc(0))).toEqual({ ok: true, username: 'tim', digest: DIGEST });
    expect(decodeCramMd5Response(Buffer.concat([Buffer.from([0xff]), Buffer.from(` ${DIGEST}`)]))).toEqual({ ok: false, reason: 'bad-utf8' });
    expect(decodeCramMd5Response(Buffer.alloc(0))).toEqual({ ok: false, reason: 'syntax' });
    expect(decodeCramMd5Response(Buffer.from(`j\u00fcrgen ${DIGEST}`))).toEqual({ ok: true, username: 'j\u00fcrgen', digest: DIGEST });
  });
});
