import { describe, expect, it } from 'vitest';
import { PATH_FIELDS } from '../../src/config/schema.js';
import { issuesOf, MASTER_BACKEND as BACKEND, parseConfig as parse } from '../helpers/config.js';

const KERBEROS = `
kerberos:
  keytab: /etc/popgate/popgate.keytab
  servicePrincipals: [pop/mail.example.com@EXAMPLE.COM, pop/localhost@EXAMPLE.COM]
  rcacheDir: /var/lib/popgate/rcache
  mapping:
    realms: [EXAMPLE.COM]
`;

/** A kpop listener, USER/PASS checked by the user file, and a kerberos section. */
const KPOP = `
listeners:
  - kind: kpop
auth:
  userFile: /etc/popgate/users
${KERBEROS}${BACKEND}`;

/** `text` with `find` replaced literally (no `$` patterns, unlike String.replace). */
function sub(text: string, find: string, replacement: string): string {
  if (!text.includes(find)) throw new Error(`no ${find}`);
  return text.split(find).join(replacement);
}

describe('kerberos section', () => {
  it('is optional and absent by default', async () => {
    const cfg = await parse(`listeners: [{ kind: pop3, port: 110 }]\nauth: { userFile: users }\n${BACKEND}`);
    expect(cfg.kerberos).toBeUndefined();
    expect(cfg.auth.verifiers).toEqual(['userFile']);
  });

  it('fills its defaults from the schema', async () => {
    const cfg = await parse(KPOP);
    expect(cfg.kerberos).toEqual({
      keytab: '/etc/popgate/popgate.keytab',
      servicePrincipals: ['pop/mail.example.com@EXAMPLE.COM', 'pop/localhost@EXAMPLE.COM'],
      rcacheDir: '/var/lib/popgate/rcache',
      kdc: { maxConcurrent: 4, timeout: 10_000, maxQueue: 100 },
      ticketChecks: { maxQueue: 10_000 },
      passwordServicePrincipal: 'pop/mail.example.com@EXAMPLE.COM',
      mapping: { realms: ['EXAMPLE.COM'], stripRealm: true, lowercase: false, map: {}, rules: [] },
    });
    expect(cfg.kerberos?.krb5Config).toBeUndefined();
    // Unset: the binding caps ticket checks at one per core (DEFAULT_TICKET_GATE).
    expect(cfg.kerberos?.ticketChecks.maxConcurrent).toBeUndefined();
  });

  it('takes every key', async () => {
    const cfg = await parse(
      sub(
        KPOP,
        'mapping:\n    realms: [EXAMPLE.COM]',
        [
          'krb5Config: /etc/popgate/krb5.conf',
          '  kdc: { maxConcurrent: 8, timeout: 2500ms, maxQueue: 0 }',
          '  ticketChecks: { maxConcurrent: 3, maxQueue: 50 }',
          '  passwordServicePrincipal: pop/localhost@EXAMPLE.COM',
          '  mapping:',
          '    realms: [EXAMPLE.COM, EXAMPLE.ORG]',
          '    stripRealm: false',
          '    lowercase: true',
          '    map: { "bob@PARTNER.ORG": bob, "pop/robot@EXAMPLE.COM": robot }',
          "    rules: [{ match: '^(.+)@LEGACY\\.EXAMPLE\\.COM$', replace: '$1' }]",
        ].join('\n'),
      ),
    );
    expect(cfg.kerberos).toMatchObject({
      krb5Config: '/etc/popgate/krb5.conf',
      kdc: { maxConcurrent: 8, timeout: 2500, maxQueue: 0 },
      ticketChecks: { maxConcurrent: 3, maxQueue: 50 },
      passwordServicePrincipal: 'pop/localhost@EXAMPLE.COM',
      mapping: {
        realms: ['EXAMPLE.COM', 'EXAMPLE.ORG'],
        stripRealm: false,
        lowercase: true,
        map: { 'bob@PARTNER.ORG': 'bob', 'pop/robot@EXAMPLE.COM': 'robot' },
        rules: [{ match: '^(.+)@LEGACY\\.EXAMPLE\\.COM$', replace: '$1' }],
      },
    });
  });

  it('resolves keytab, rcacheDir and krb5Config like *File paths', async () => {
    expect(PATH_FIELDS).toEqual(['kerberos.keytab', 'kerberos.rcacheDir', 'kerberos.krb5Config']);
    const cfg = await parse(
      KPOP.replace('keytab: /etc/popgate/popgate.keytab', 'keytab: keys/pop.keytab\n  krb5Config: ./krb5.conf').replace(
        'rcacheDir: /var/lib/popgate/rcache',
        'rcacheDir: ../rcache',
      ),
      { baseDir: '/srv/popgate/conf' },
    );
    expect(cfg.kerberos).toMatchObject({
      keytab: '/srv/popgate/conf/keys/pop.keytab',
      rcacheDir: '/srv/popgate/rcache',
      krb5Config: '/srv/popgate/conf/krb5.conf',
    });
    expect(cfg.auth.userFile).toBe('/etc/popgate/users');
  });

  it('leaves mapping.map values alone even when a principal ends in "File"', async () => {
    const cfg = await parse(KPOP.replace('realms: [EXAMPLE.COM]', 'realms: [EXAMPLE.COM]\n    map: { "alice@MyFile": alice }'));
    expect(cfg.kerberos?.mapping.map).toEqual({ 'alice@MyFile': 'alice' });
  });

  it('requires keytab, servicePrincipals, rcacheDir and mapping.realms', async () => {
    const issues = await issuesOf(KPOP.replace(KERBEROS, '\nkerberos: { mapping: {} }\n'));
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'kerberos.keytab', message: 'required (expected string)' },
        { path: 'kerberos.servicePrincipals', message: 'required (expected list (array))' },
        { path: 'kerberos.rcacheDir', message: 'required (expected string)' },
        { path: 'kerberos.mapping.realms', message: 'required (expected list (array))' },
      ]),
    );
    const empty = await issuesOf(
      KPOP.replace('servicePrincipals: [pop/mail.example.com@EXAMPLE.COM, pop/localhost@EXAMPLE.COM]', 'servicePrincipals: []').replace(
        'realms: [EXAMPLE.COM]',
        'realms: []',
      ),
    );
    expect(empty).toEqual([
      { path: 'kerberos.servicePrincipals', message: 'at least one service principal is required' },
      { path: 'kerberos.mapping.realms', message: 'at least one realm is required' },
    ]);
  });

  it('refuses service principals without a realm, malformed or repeated', async () => {
    const issues = await issuesOf(
      KPOP.replace(
        'servicePrincipals: [pop/mail.example.com@EXAMPLE.COM, pop/localhost@EXAMPLE.COM]',
        'servicePrincipals: [pop/mail.example.com, "pop/x@A@B", pop/localhost@EXAMPLE.COM, pop/localhost@EXAMPLE.COM]\n  passwordServicePrincipal: "pop/"',
      ),
    );
    expect(issues).toEqual([
      { path: 'kerberos.servicePrincipals[0]', message: expect.stringMatching(/^must be a Kerberos principal with its realm/) },
      { path: 'kerberos.servicePrincipals[1]', message: expect.stringMatching(/^must be a Kerberos principal with its realm/) },
      { path: 'kerberos.servicePrincipals[3]', message: 'duplicate principal pop/localhost@EXAMPLE.COM' },
      { path: 'kerberos.passwordServicePrincipal', message: expect.stringMatching(/^must be a Kerberos principal/) },
    ]);
  });

  it('refuses an invalid regex and a replacement naming a missing group at their paths', async () => {
    const issues = await issuesOf(
      sub(
        KPOP,
        'realms: [EXAMPLE.COM]',
        "realms: [EXAMPLE.COM]\n    rules:\n      - { match: '^(a)@X$', replace: '$1' }\n      - { match: '^(unclosed@X$', replace: x }\n      - { match: '^(b)@X$', replace: '$2' }\n      - { match: '', replace: x }",
      ),
    );
    expect(issues).toEqual([
      { path: 'kerberos.mapping.rules[1].match', message: expect.stringMatching(/^not a valid regular expression: .*Unterminated group/) },
      { path: 'kerberos.mapping.rules[2].replace', message: 'refers to group $2, but the regex has 1 capture group' },
      { path: 'kerberos.mapping.rules[3].match', message: 'must not be empty' },
    ]);
  });

  it('refuses bad map keys, unusable map users and bad realms at their paths', async () => {
    const issues = await issuesOf(
      KPOP.replace(
        'realms: [EXAMPLE.COM]',
        'realms: [EXAMPLE.COM, "BAD REALM", EXAMPLE.COM]\n    map: { "no-realm": a, "carol@X": "carol smith", "dave@X": "" , "x\\\\y@R": xy, "xy@R": xy2 }',
      ),
    );
    expect(issues).toEqual([
      { path: 'kerberos.mapping.realms[1]', message: expect.stringMatching(/^must be a realm name/) },
      { path: 'kerberos.mapping.realms[2]', message: 'duplicate realm EXAMPLE.COM' },
      { path: 'kerberos.mapping.map.no-realm', message: expect.stringMatching(/^key must be a principal with a realm/) },
      { path: 'kerberos.mapping.map.carol@X', message: expect.stringMatching(/^must be a POP3 user name/) },
      { path: 'kerberos.mapping.map.dave@X', message: expect.stringMatching(/^must be a POP3 user name/) },
      // "x\y@R" (an escaped y) and "xy@R" are the same principal.
      { path: 'kerberos.mapping.map.xy@R', message: 'the same principal as "x\\y@R"' },
    ]);
  });

  it('bounds the KDC settings', async () => {
    const issues = await issuesOf(KPOP.replace('rcacheDir:', 'kdc: { maxConcurrent: 0, timeout: 10m, maxQueue: -1 }\n  rcacheDir:'));
    expect(issues).toEqual([
      { path: 'kerberos.kdc.maxConcurrent', message: 'must be at least 1' },
      { path: 'kerberos.kdc.timeout', message: 'must be at most 5m' },
      { path: 'kerberos.kdc.maxQueue', message: 'must be at least 0' },
    ]);
  });

  it('refuses unknown keys with a suggestion', async () => {
    const issues = await issuesOf(KPOP.replace('keytab:', 'keyTab: x\n  keytab:'));
    expect(issues).toEqual([
      {
        path: 'kerberos.keyTab',
        message: 'unknown key',
        hint: "did you mean 'keytab'? allowed keys: keytab, servicePrincipals, rcacheDir, krb5Config, kdc, ticketChecks, passwordServicePrincipal, mapping",
      },
    ]);
  });
});

describe('kpop listeners', () => {
  it('default to port 1109 and are named after it', async () => {
    const cfg = await parse(KPOP);
    expect(cfg.listeners).toEqual([
      { name: 'kpop-1109', kind: 'kpop', address: '0.0.0.0', port: 1109, allowPlaintextAuth: false, greeting: 'POP3 gateway ready.' },
    ]);
    const explicit = await parse(KPOP.replace('- kind: kpop', '- { kind: kpop, port: 21109 }'));
    expect(explicit.listeners[0]).toMatchObject({ name: 'kpop-21109', port: 21109 });
  });

  it('still require a port for pop3 and pop3s', async () => {
    const issues = await issuesOf(KPOP.replace('- kind: kpop', '- kind: kpop\n  - kind: pop3'));
    expect(issues).toEqual([{ path: 'listeners[1].port', message: 'required for a pop3 listener (expected number)' }]);
  });

  it('refuse tls', async () => {
    const issues = await issuesOf(KPOP.replace('- kind: kpop', '- kind: kpop\n    tls: { certFile: c, keyFile: k }'));
    expect(issues).toEqual([
      {
        path: 'listeners[0].tls',
        message: expect.stringMatching(/^a kpop listener cannot use TLS/),
        hint: expect.stringMatching(/separate pop3s or pop3 listener/),
      },
    ]);
  });

  it('count toward duplicate endpoint checks with their default port', async () => {
    const issues = await issuesOf(KPOP.replace('- kind: kpop', '- kind: kpop\n  - { name: other, kind: pop3, port: 1109 }'));
    expect(issues).toEqual([
      { path: 'listeners[1].port', message: 'address 0.0.0.0 port 1109 is already used by listeners[0]', hint: expect.any(String) },
    ]);
  });
});

describe('auth verifiers and mechanisms', () => {
  const NO_KERBEROS = `listeners:\n  - { kind: pop3, port: 110 }\nauth:\n  userFile: users\n${BACKEND}`;

  it('accepts GSSAPI and the kerberos verifier with a kerberos section', async () => {
    const cfg = await parse(
      KPOP.replace('userFile: /etc/popgate/users', 'verifiers: [kerberos]\n  mechanisms: [GSSAPI, PLAIN]'),
    );
    expect(cfg.auth).toEqual({
      verifiers: ['kerberos'],
      mechanisms: ['GSSAPI', 'PLAIN'],
      apop: false,
      maxAttempts: 3,
      failureDelay: 2000,
      throttle: expect.objectContaining({ enabled: true, store: 'memory' }),
      cache: { ttl: 300_000, negativeTtl: 5_000, maxEntries: 100_000 },
    });
    expect(cfg.auth.userFile).toBeUndefined();
    const both = await parse(KPOP.replace('userFile:', 'verifiers: [userFile, kerberos]\n  userFile:'));
    expect(both.auth.verifiers).toEqual(['userFile', 'kerberos']);
  });

  it('refuses kpop, GSSAPI and the kerberos verifier without a kerberos section, at the paths that need it', async () => {
    const issues = await issuesOf(
      NO_KERBEROS.replace('- { kind: pop3, port: 110 }', '- { kind: pop3, port: 110 }\n  - { kind: kpop }').replace(
        'userFile: users',
        'userFile: users\n  verifiers: [userFile, kerberos]\n  mechanisms: [PLAIN, GSSAPI]',
      ),
    );
    const hint = expect.stringMatching(/^add kerberos:/);
    expect(issues).toEqual([
      { path: 'listeners[1].kind', message: 'a kpop listener requires the kerberos section', hint },
      { path: 'auth.mechanisms[1]', message: 'the GSSAPI mechanism requires the kerberos section', hint },
      { path: 'auth.verifiers[1]', message: 'the kerberos verifier requires the kerberos section', hint },
    ]);
  });

  it('reports the missing kerberos section together with problems elsewhere', async () => {
    const issues = await issuesOf(`${NO_KERBEROS.replace('userFile: users', 'userFile: users\n  mechanisms: [GSSAPI]')}log: { level: loud }\n`);
    expect(issues.map((i) => i.path)).toEqual(['log.level', 'auth.mechanisms[0]']);
  });

  it('does not blame a missing section when the sections it reads are themselves invalid', async () => {
    const issues = await issuesOf(NO_KERBEROS.replace('userFile: users', 'userFile: users\n  mechanisms: [GSSAPI, DIGEST-MD5]'));
    expect(issues.map((i) => i.path)).toEqual(['auth.mechanisms[1]']);
  });

  it('requires userFile while the userFile verifier is configured', async () => {
    const issues = await issuesOf(KPOP.replace('userFile: /etc/popgate/users', 'verifiers: [kerberos, userFile]'));
    expect(issues).toEqual([
      {
        path: 'auth.userFile',
        message: 'required when auth.verifiers includes userFile (the default)',
        hint: expect.stringMatching(/verifiers: \[kerberos\]/),
      },
    ]);
  });

  it('refuses an empty, repeated or unknown verifier', async () => {
    expect(await issuesOf(NO_KERBEROS.replace('userFile: users', 'userFile: users\n  verifiers: []'))).toEqual([
      { path: 'auth.verifiers', message: 'at least one verifier is required' },
    ]);
    expect(await issuesOf(NO_KERBEROS.replace('userFile: users', 'userFile: users\n  verifiers: [userFile, userFile]'))).toEqual([
      { path: 'auth.verifiers[1]', message: 'duplicate verifier userFile' },
    ]);
    expect(await issuesOf(NO_KERBEROS.replace('userFile: users', 'userFile: users\n  verifiers: [userfile]'))).toEqual([
      { path: 'auth.verifiers[0]', message: "expected one of 'userFile', 'kerberos', 'http', 'pam', 'ldap'", hint: "did you mean 'userFile'?" },
    ]);
  });
});
