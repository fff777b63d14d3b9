import { describe, expect, it } from 'vitest';
import {
  LOGIN_PASSWORD_CHALLENGE,
  LOGIN_USERNAME_CHALLENGE,
  decodeBase64Strict,
  decodePlain,
  hasForbiddenCredentialChars,
  loginPrompt,
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
