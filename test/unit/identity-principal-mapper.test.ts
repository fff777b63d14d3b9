import { describe, expect, it } from 'vitest';
import {
  canonicalPrincipal,
  checkMappingOptions,
  isValidPop3User,
  MAX_PRINCIPAL_LENGTH,
  parsePrincipal,
  PrincipalMapper,
  unparsePrincipal,
} from '../../src/identity/principal-mapper.js';

describe('parsePrincipal', () => {
  it('splits components and realm', () => {
    expect(parsePrincipal('alice@EXAMPLE.COM')).toEqual({ components: ['alice'], realm: 'EXAMPLE.COM' });
    expect(parsePrincipal('pop/mail.example.com@EXAMPLE.COM')).toEqual({ components: ['pop', 'mail.example.com'], realm: 'EXAMPLE.COM' });
    expect(parsePrincipal('a/b/c@R')).toEqual({ components: ['a', 'b', 'c'], realm: 'R' });
  });

  it('honours krb5 escapes', () => {
    expect(parsePrincipal('a\\/b@R')).toEqual({ components: ['a/b'], realm: 'R' });
    expect(parsePrincipal('a\\@b@R')).toEqual({ components: ['a@b'], realm: 'R' });
    expect(parsePrincipal('a\\\\b@R')).toEqual({ components: ['a\\b'], realm: 'R' });
    expect(parsePrincipal('\\n\\t\\0\\b@R')).toEqual({ components: ['\n\t\0\b'], realm: 'R' });
    // Any other escaped character stands for itself (as in MIT krb5_parse_name).
    expect(parsePrincipal('a\\qb@R')).toEqual({ components: ['aqb'], realm: 'R' });
    expect(parsePrincipal('a@R\\@S\\/T')).toEqual({ components: ['a'], realm: 'R@S/T' });
  });

  it('refuses malformed names', () => {
    for (const bad of ['', 'alice', 'alice@', '@R', 'a//b@R', 'a/@R', 'a@R/x', 'a@R@S', 'a@R\\', 'a\\', 'x'.repeat(MAX_PRINCIPAL_LENGTH - 1) + '@R']) {
      expect(parsePrincipal(bad), JSON.stringify(bad.slice(0, 20))).toBeUndefined();
    }
    expect(parsePrincipal('x'.repeat(MAX_PRINCIPAL_LENGTH - 2) + '@R')).toBeDefined();
  });

  it('writes the canonical form back with escapes', () => {
    expect(unparsePrincipal({ components: ['a/b', 'c@d', 'e\\f', '\n\t\0\b'], realm: 'R@S' })).toBe('a\\/b/c\\@d/e\\\\f/\\n\\t\\0\\b@R\\@S');
    for (const s of ['alice@EXAMPLE.COM', 'pop/mail.example.com@EXAMPLE.COM', 'a\\/b@R', 'a\\@b@R\\/S', '\\n\\t\\0\\b@R']) {
      expect(canonicalPrincipal(s)).toBe(s);
    }
    expect(canonicalPrincipal('a\\qb@R')).toBe('aqb@R');
    expect(canonicalPrincipal('nope')).toBeUndefined();
  });
});

describe('isValidPop3User', () => {
  it('wants a non-empty name without whitespace, controls or ":"', () => {
    for (const good of ['alice', 'alice@example.com', 'o\'brien', 'jürgen', 'a.b-c_d+e']) expect(isValidPop3User(good), good).toBe(true);
    for (const bad of ['', 'a b', 'a\tb', 'a\r', 'a\nb', 'a\0', 'a:b', 'a\x7f', 'a\u00a0b', '\u2028']) expect(isValidPop3User(bad), JSON.stringify(bad)).toBe(false);
  });
});

describe('PrincipalMapper', () => {
  const base = { realms: ['EXAMPLE.COM', 'EXAMPLE.ORG'] };

  it('strips allowed realms from plain principals', () => {
    const m = new PrincipalMapper(base);
    expect(m.map('alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice', rule: 'realm' });
    expect(m.map('bob@EXAMPLE.ORG')).toEqual({ ok: true, user: 'bob', rule: 'realm' });
  });

  it('keeps the whole principal with stripRealm: false', () => {
    const m = new PrincipalMapper({ ...base, stripRealm: false });
    expect(m.map('alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice@EXAMPLE.COM', rule: 'realm' });
  });

  it('refuses foreign realms (case-sensitively) and instances', () => {
    const m = new PrincipalMapper(base);
    expect(m.map('mallory@EVIL.ORG')).toEqual({ ok: false, reason: 'foreign-realm' });
    expect(m.map('alice@example.com')).toEqual({ ok: false, reason: 'foreign-realm' });
    expect(m.map('alice/admin@EXAMPLE.COM')).toEqual({ ok: false, reason: 'instance' });
    expect(m.map('pop/mail.example.com@EXAMPLE.COM')).toEqual({ ok: false, reason: 'instance' });
    // A foreign instance is foreign first.
    expect(m.map('alice/admin@EVIL.ORG')).toEqual({ ok: false, reason: 'foreign-realm' });
  });

  it('refuses malformed principals', () => {
    const m = new PrincipalMapper(base);
    for (const bad of ['', 'alice', 'alice@', 'a@EXAMPLE.COM@X', 'a@EXAMPLE.COM\\']) expect(m.map(bad)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses names that are not POP3 user names, and escaped separators in a stripped name', () => {
    const m = new PrincipalMapper(base);
    for (const p of ['john smith@EXAMPLE.COM', 'a:b@EXAMPLE.COM', 'a\\nb@EXAMPLE.COM', 'a\\0@EXAMPLE.COM', 'a\\tb@EXAMPLE.COM']) {
      expect(m.map(p), p).toEqual({ ok: false, reason: 'unmapped' });
    }
    // alice\@EVIL.ORG@EXAMPLE.COM must not become the user "alice@EVIL.ORG".
    expect(m.map('alice\\@EVIL.ORG@EXAMPLE.COM')).toEqual({ ok: false, reason: 'unmapped' });
    expect(m.map('a\\/b@EXAMPLE.COM')).toEqual({ ok: false, reason: 'unmapped' });
    expect(m.map('a\\\\b@EXAMPLE.COM')).toEqual({ ok: false, reason: 'unmapped' });
  });

  it('maps explicitly: foreign realms, instances, and over the realm rule', () => {
    const m = new PrincipalMapper({
      ...base,
      map: { 'bob@PARTNER.ORG': 'bob', 'pop/robot.example.com@EXAMPLE.COM': 'robot', 'alice@EXAMPLE.COM': 'alice.smith' },
      rules: [{ match: '^alice@', replace: 'ruled' }],
    });
    expect(m.map('bob@PARTNER.ORG')).toEqual({ ok: true, user: 'bob', rule: 'map[bob@PARTNER.ORG]' });
    expect(m.map('pop/robot.example.com@EXAMPLE.COM')).toEqual({ ok: true, user: 'robot', rule: 'map[pop/robot.example.com@EXAMPLE.COM]' });
    expect(m.map('alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice.smith', rule: 'map[alice@EXAMPLE.COM]' });
    // Exact principals only: another instance or realm is not the mapped one.
    expect(m.map('bob/admin@PARTNER.ORG')).toEqual({ ok: false, reason: 'foreign-realm' });
    expect(m.map('bob@partner.org')).toEqual({ ok: false, reason: 'foreign-realm' });
  });

  it('matches explicit entries on the canonical form', () => {
    const m = new PrincipalMapper({ ...base, map: { 'x\\yz@OTHER': 'xyz' } });
    expect(m.map('xyz@OTHER')).toEqual({ ok: true, user: 'xyz', rule: 'map[xyz@OTHER]' });
    expect(m.map('\\xyz@OTHER')).toEqual({ ok: true, user: 'xyz', rule: 'map[xyz@OTHER]' });
  });

  it('applies rules with captures after the map and before the realm rule; the first match decides', () => {
    const m = new PrincipalMapper({
      ...base,
      rules: [
        { match: '^(.+)@LEGACY\\.EXAMPLE\\.COM$', replace: '$1' },
        { match: '^([^/@]+)/admin@EXAMPLE\\.COM$', replace: '$1-admin' },
        { match: '^(?<user>[^/@]+)@PARTNER\\.ORG$', replace: 'partner-$<user>' },
        { match: '^carol@.*$', replace: 'first' },
        { match: '^carol@.*$', replace: 'second' },
      ],
    });
    expect(m.map('dave@LEGACY.EXAMPLE.COM')).toEqual({ ok: true, user: 'dave', rule: 'rules[0]' });
    expect(m.map('dave/admin@EXAMPLE.COM')).toEqual({ ok: true, user: 'dave-admin', rule: 'rules[1]' });
    expect(m.map('erin@PARTNER.ORG')).toEqual({ ok: true, user: 'partner-erin', rule: 'rules[2]' });
    // Before stripRealm: carol@EXAMPLE.COM would otherwise be "carol".
    expect(m.map('carol@EXAMPLE.COM')).toEqual({ ok: true, user: 'first', rule: 'rules[3]' });
    expect(m.map('frank@EXAMPLE.COM')).toEqual({ ok: true, user: 'frank', rule: 'realm' });
    // A rule regex that does not match leaves the principal to the realm check.
    expect(m.map('dave/root@EXAMPLE.COM')).toEqual({ ok: false, reason: 'instance' });
  });

  it('replaces only the match, like sed and String.prototype.replace (anchoring is the author’s job)', () => {
    const m = new PrincipalMapper({ realms: ['X'], rules: [{ match: '@CORP\\.EXAMPLE$', replace: '' }] });
    expect(m.map('gina@CORP.EXAMPLE')).toEqual({ ok: true, user: 'gina', rule: 'rules[0]' });
  });

  it('tests rules against the canonical principal string', () => {
    const m = new PrincipalMapper({ realms: ['X'], rules: [{ match: '^(a\\\\/b)@R$', replace: 'slashed' }, { match: '^aqb@R$', replace: 'plain' }] });
    expect(m.map('a\\/b@R')).toEqual({ ok: true, user: 'slashed', rule: 'rules[0]' });
    expect(m.map('a\\qb@R')).toEqual({ ok: true, user: 'plain', rule: 'rules[1]' });
  });

  it('refuses unusable rule results without falling through to later rules', () => {
    const m = new PrincipalMapper({
      ...base,
      rules: [
        { match: '^(.*)@EMPTY$', replace: '' },
        { match: '^(.+)@COLON$', replace: '$1:x' },
        { match: '^(.+)@SPACE$', replace: '$1 x' },
        { match: '^.*@.*$', replace: 'fallback' },
      ],
    });
    expect(m.map('h@EMPTY')).toEqual({ ok: false, reason: 'unmapped' });
    expect(m.map('h@COLON')).toEqual({ ok: false, reason: 'unmapped' });
    expect(m.map('h@SPACE')).toEqual({ ok: false, reason: 'unmapped' });
    expect(m.map('h@OTHER')).toEqual({ ok: true, user: 'fallback', rule: 'rules[3]' });
  });

  it('lowercases realm and rule results, not explicit map values', () => {
    const m = new PrincipalMapper({
      ...base,
      lowercase: true,
      map: { 'Bob@PARTNER.ORG': 'Bob' },
      rules: [{ match: '^(.+)@LEGACY$', replace: '$1' }],
    });
    expect(m.map('Alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice', rule: 'realm' });
    expect(m.map('DAVE@LEGACY')).toEqual({ ok: true, user: 'dave', rule: 'rules[0]' });
    expect(m.map('Bob@PARTNER.ORG')).toEqual({ ok: true, user: 'Bob', rule: 'map[Bob@PARTNER.ORG]' });
    // Principals stay case-sensitive: lowercase does not fold the lookup.
    expect(m.map('bob@PARTNER.ORG')).toEqual({ ok: false, reason: 'foreign-realm' });
    const full = new PrincipalMapper({ ...base, lowercase: true, stripRealm: false });
    expect(full.map('Alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice@example.com', rule: 'realm' });
  });

  it('refuses unusable options when built', () => {
    expect(() => new PrincipalMapper({ realms: [] })).toThrow('principal mapping.realms: at least one realm is required');
    expect(() => new PrincipalMapper({ realms: ['A B'] })).toThrow(/realms\[0\]: must be a realm name/);
    expect(() => new PrincipalMapper({ ...base, rules: [{ match: '(', replace: '' }] })).toThrow(/rules\[0\]\.match: not a valid regular expression/);
    expect(() => new PrincipalMapper({ ...base, rules: [{ match: '^(a)(b)$', replace: '$3' }] })).toThrow(
      'principal mapping.rules[0].replace: refers to group $3, but the regex has 2 capture groups',
    );
    expect(() => new PrincipalMapper({ ...base, map: { 'bob@P': 'b b' } })).toThrow(/map\.bob@P: must be a POP3 user name/);
    expect(() => new PrincipalMapper({ ...base, map: { bob: 'bob' } })).toThrow(/map\.bob: key must be a principal/);
  });

  it('checks $ references in replacements as String.prototype.replace reads them', () => {
    const problems = (match: string, replace: string) => checkMappingOptions({ realms: ['R'], rules: [{ match, replace }] });
    expect(problems('^(a)$', '$1')).toEqual([]);
    expect(problems('^(a)$', '$$1 $& $` $\'')).toEqual([]);
    // "$12" with one group is group 1 followed by "2".
    expect(problems('^(a)$', '$12')).toEqual([]);
    expect(problems('^' + '(a)'.repeat(12) + '$', '$12')).toEqual([]);
    expect(problems('^(a)$', '$0')).toEqual([{ path: ['rules', 0, 'replace'], message: '$0 is literal text in JavaScript; use $& for the whole match' }]);
    expect(problems('^a$', '$1')).toEqual([{ path: ['rules', 0, 'replace'], message: 'refers to group $1, but the regex has 0 capture groups' }]);
    expect(problems('', 'x')).toEqual([{ path: ['rules', 0, 'match'], message: 'must not be empty' }]);
  });
});
