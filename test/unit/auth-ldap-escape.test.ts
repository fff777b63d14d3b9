/** RFC 4515 filter values and RFC 4514 DN values, as the LDAP verifier escapes user names. */
import { describe, expect, it } from 'vitest';
import { escapeDnValue, escapeFilterValue, expandTemplate } from '../../src/auth/ldap.js';

describe('escapeFilterValue (RFC 4515 3)', () => {
  it('escapes *, (, ), \\ and NUL as \\XX and leaves the rest', () => {
    expect(escapeFilterValue('*)(uid=*')).toBe('\\2a\\29\\28uid=\\2a');
    expect(escapeFilterValue('a\\b\0c')).toBe('a\\5cb\\00c');
    expect(escapeFilterValue("o'hara.é")).toBe("o'hara.é");
  });
});

describe('escapeDnValue (RFC 4514 2.4)', () => {
  it('escapes the DN specials, a leading space or # and a trailing space', () => {
    expect(escapeDnValue('a,b+c;d<e>f"g\\h=i')).toBe('a\\,b\\+c\\;d\\<e\\>f\\"g\\\\h\\=i');
    expect(escapeDnValue('#x')).toBe('\\#x');
    expect(escapeDnValue(' x ')).toBe('\\ x\\ ');
    expect(escapeDnValue('a\0b')).toBe('a\\00b');
    expect(escapeDnValue("o'hara*)(x")).toBe("o'hara*)(x");
  });
});

describe('expandTemplate', () => {
  it('replaces every %u with the escaped user name', () => {
    expect(expandTemplate('(|(uid=%u)(mail=%u))', 'a*', escapeFilterValue)).toBe('(|(uid=a\\2a)(mail=a\\2a))');
  });

  it("knows Dovecot's %n (before the first @), %d (after it) and %%, each value escaped", () => {
    expect(expandTemplate('(&(uid=%n)(o=%d)(mail=%u))', 'a*b@ex(1).com', escapeFilterValue)).toBe('(&(uid=a\\2ab)(o=ex\\281\\29.com)(mail=a\\2ab@ex\\281\\29.com))');
    // No @: %n is the whole name, %d empty; a second @ stays in the domain.
    expect(expandTemplate('uid=%n,dc=%d', 'alice', escapeDnValue)).toBe('uid=alice,dc=');
    expect(expandTemplate('(&(uid=%n)(o=%d))', 'a@b@c', escapeFilterValue)).toBe('(&(uid=a)(o=b@c))');
    // %% is a literal %, never the start of a variable; a value's own % is not expanded again.
    expect(expandTemplate('(cn=%%u %u)', '%n', escapeFilterValue)).toBe('(cn=%u %n)');
  });
});
