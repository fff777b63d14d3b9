import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { backendTargets, configLeafPaths, parseConfigText, targetsForUser } from '../../src/config/index.js';
import { PrincipalMapper } from '../../src/identity/principal-mapper.js';

const EXAMPLE = fileURLToPath(new URL('../../config.example.yaml', import.meta.url));

/** Leaves that the example documents only in comments (alternatives and optional extras). */
const COMMENTED_ONLY = new Set([
  // auth.oauth: emailDomains goes with userClaim email; clientSecretFile is the alternative to clientSecret.
  'auth.oauth.emailDomains',
  'auth.oauth.introspection.clientSecretFile',
  'listeners[].tls.ciphers',
  'listeners[].tls.ecdhCurve',
  'listeners[].tls.ticketKeysFile',
  // tls.certificates is the alternative to certFile/keyFile.
  'listeners[].tls.certificates[].certFile',
  'listeners[].tls.certificates[].keyFile',
  'backend.login.password',
  'backend.login.secretsFile',
  'backend.tls.caFile',
  'backend.tls.serverName',
  // auth.throttle.redis: sentinel and cluster are alternatives to url; the credentials, tls and database go with them.
  'auth.throttle.redis.sentinel.masterName',
  'auth.throttle.redis.sentinel.sentinels',
  'auth.throttle.redis.sentinel.username',
  'auth.throttle.redis.sentinel.password',
  'auth.throttle.redis.sentinel.passwordFile',
  'auth.throttle.redis.cluster.nodes',
  'auth.throttle.redis.username',
  'auth.throttle.redis.password',
  'auth.throttle.redis.passwordFile',
  'auth.throttle.redis.tls',
  'auth.throttle.redis.database',
  // auth.ldap: an example to enable by hand (it needs ldap in auth.verifiers).
  ...[
    'urls', 'startTls', 'caFile', 'serverName', 'timeout', 'connectTimeout', 'poolSize', 'poolIdleTimeout', 'userDnTemplate',
    'search.bindDn', 'search.bindPassword', 'search.bindPasswordFile', 'search.base', 'search.filter', 'search.scope',
    'attributes.user', 'attributes.host', 'attributes.port', 'attributes.backendUser',
    'requireGroup.dn', 'requireGroup.memberAttribute', 'requireFilter',
  ].map((k) => `auth.ldap.${k}`),
]);

/**
 * The example with its commented-out optional parts enabled: one "#" removed
 * from the start of every line between a "# --- optional: ..." marker and the
 * next "# --- end ..." marker (what the file tells readers to do).
 */
function enableOptional(text: string): { text: string; blocks: string[] } {
  const blocks: string[] = [];
  let inside = false;
  const lines = text.split('\n').map((line) => {
    const start = /^\s*# --- optional: ([a-z-]+)/.exec(line);
    if (start?.[1]) {
      blocks.push(start[1]);
      inside = true;
      return line;
    }
    if (/^\s*# --- end /.test(line)) {
      inside = false;
      return line;
    }
    if (!inside) return line;
    if (!/^\s*#/.test(line)) throw new Error(`line inside an optional block is not commented out: ${line}`);
    return line.replace('#', '');
  });
  if (inside) throw new Error('an optional block has no end marker');
  return { text: lines.join('\n'), blocks };
}

/**
 * Whether `tree` has a value at a configLeafPaths path: `[]` matches any
 * list item, `{}` any value of a map (`routing.users{}[].host`).
 */
function hasPath(tree: unknown, path: string): boolean {
  // Each step: a key, or '[]' / '{}' for "some item" / "some value".
  const steps = path.split('.').flatMap((seg) => {
    const m = /^([^[{]+)((?:\[\]|\{\})*)$/.exec(seg);
    if (!m?.[1]) throw new Error(`bad leaf path ${path}`);
    return [m[1], ...(m[2]?.match(/\[\]|\{\}/g) ?? [])];
  });
  const walk = (v: unknown, i: number): boolean => {
    if (i === steps.length) return true;
    const step = steps[i] ?? '';
    if (step === '[]') return Array.isArray(v) && v.some((item) => walk(item, i + 1));
    const isMap = v !== null && typeof v === 'object' && !Array.isArray(v);
    if (step === '{}') return isMap && Object.values(v).some((child) => walk(child, i + 1));
    if (!isMap || !Object.prototype.hasOwnProperty.call(v, step)) return false;
    return walk((v as Record<string, unknown>)[step], i + 1);
  };
  return walk(tree, 0);
}

describe('config.example.yaml', () => {
  it('is valid against the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const cfg = await parseConfigText(text, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    expect(cfg.listeners.map((l) => [l.name, l.kind, l.port])).toEqual([
      ['pop3s', 'pop3s', 995],
      ['pop3', 'pop3', 110],
    ]);
    expect(cfg.backend.login).toMatchObject({ mode: 'master', passwordFile: '/run/secrets/master-password', password: '***' });
    expect(cfg.auth.userFile).toBe('/etc/popgate/users');
    expect(cfg.auth.verifiers).toEqual(['userFile']);
    expect(cfg.kerberos).toBeUndefined();
    expect(cfg.auth.http).toBeUndefined();
    expect(cfg.auth.pam).toBeUndefined();
    expect(cfg.listeners[0]?.proxyProtocol).toBeUndefined();
    expect(cfg.listeners[0]?.tls?.clientCertificates).toBeUndefined();
    expect(cfg.backend).toMatchObject({ port: 110, tls: { mode: 'none', verify: true }, proxyProtocol: 'none', xclient: true });
    expect(cfg.routing).toEqual({ users: {}, domains: {} });
    expect(cfg.admin).toBeUndefined();
    expect(cfg.limits.idleTimeout).toBe(600_000);
    expect(cfg.auth.throttle).toEqual({
      enabled: true,
      delays: [2_000, 4_000, 8_000, 15_000],
      maxFailures: 10,
      window: 900_000,
      lockout: 900_000,
      repeatedPasswords: 5,
      trustedNetworks: [],
      store: 'memory',
    });
  });

  it('documents valid sentinel and cluster alternatives to the redis url', async () => {
    const { text } = enableOptional(await readFile(EXAMPLE, 'utf8'));
    const lines = text.split('\n');
    const start = lines.findIndex((l) => /^\s*redis:\s*$/.test(l));
    const end = lines.findIndex((l, i) => i > start && /keyPrefix:/.test(l));
    /** The example with url replaced by one alternative: its lines, and the common keys named, uncommented. */
    const variant = (alt: 'sentinel' | 'cluster', common: readonly string[]): string => {
      let inAlt = false;
      return lines
        .map((line, i) => {
          if (i <= start || i >= end) return line;
          if (/^\s*url:/.test(line)) return '';
          // After enableOptional an alternative reads "    #  key:", its members "    #    ...".
          const top = /^ {4}# {2}([A-Za-z]+):/.exec(line)?.[1];
          if (top !== undefined) inAlt = top === alt;
          else if (!/^ {4}# {4}/.test(line)) inAlt = false;
          if (inAlt || (top !== undefined && common.includes(top))) return line.replace('#', '');
          return line;
        })
        .join('\n');
    };
    const parse = (t: string) => parseConfigText(t, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    const sentinel = await parse(variant('sentinel', ['username', 'passwordFile', 'tls', 'database']));
    expect(sentinel.auth.throttle.redis).toMatchObject({
      sentinel: { masterName: 'mymaster', sentinels: ['10.0.0.1:26379', '10.0.0.2:26379', '10.0.0.3:26379'], username: 'popgate', passwordFile: '/run/secrets/redis-sentinel-password' },
      username: 'popgate',
      passwordFile: '/run/secrets/redis-password',
      tls: false,
      database: 0,
    });
    expect(sentinel.auth.throttle.redis?.url).toBeUndefined();
    const cluster = await parse(variant('cluster', ['username', 'passwordFile', 'tls']));
    expect(cluster.auth.throttle.redis).toMatchObject({ cluster: { nodes: ['10.0.1.1:6379', '10.0.1.2:6379', '10.0.1.3:6379'] }, passwordFile: '/run/secrets/redis-password' });
  });

  it('documents a valid certificates alternative to certFile/keyFile', async () => {
    const lines = (await readFile(EXAMPLE, 'utf8')).split('\n');
    const start = lines.findIndex((l) => /^\s*# certificates:\s*$/.test(l));
    expect(start).toBeGreaterThan(0);
    let end = start + 1;
    while (/^\s*# {3}/.test(lines[end] ?? '')) end++;
    const first = (key: string): number => lines.findIndex((l) => new RegExp(`^\\s*${key}:`).test(l));
    const drop = new Set([first('certFile'), first('keyFile')]);
    const text = lines
      .map((l, i) => (i >= start && i < end ? l.replace('# ', '') : l))
      .filter((_, i) => !drop.has(i))
      .join('\n');
    const cfg = await parseConfigText(text, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    expect(cfg.listeners[0]?.tls).toMatchObject({
      certificates: [
        { certFile: '/etc/popgate/tls/mail-rsa.crt', keyFile: '/etc/popgate/tls/mail-rsa.key' },
        { certFile: '/etc/popgate/tls/mail-ecdsa.crt', keyFile: '/etc/popgate/tls/mail-ecdsa.key' },
      ],
    });
    expect(cfg.listeners[0]?.tls?.certFile).toBeUndefined();
  });

  it('documents a valid ldap example (bind mode, and search mode instead of the template)', async () => {
    const lines = (await readFile(EXAMPLE, 'utf8')).split('\n');
    const start = lines.findIndex((l) => /^\s*# --- example: ldap/.test(l));
    const end = lines.findIndex((l) => /^\s*# --- end ldap example/.test(l));
    expect(start).toBeGreaterThan(0);
    expect(end).toBeGreaterThan(start);
    const variant = (mode: 'bind' | 'search'): string => {
      let inSearch = false;
      return lines
        .map((l, i) => {
          if (i <= start || i >= end) return /^\s*userFile:/.test(l) ? `${l}\n  verifiers: [userFile, ldap]` : l;
          const key = /^ {2}# {2}([A-Za-z]+):/.exec(l)?.[1];
          if (key !== undefined) inSearch = key === 'search';
          if ((mode === 'bind' && inSearch) || (mode === 'search' && key === 'userDnTemplate')) return '';
          return l.replace('#', '');
        })
        .join('\n');
    };
    const parse = (t: string) => parseConfigText(t, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    const bind = await parse(variant('bind'));
    expect(bind.auth.verifiers).toEqual(['userFile', 'ldap']);
    expect(bind.auth.ldap).toEqual({
      urls: ['ldaps://ldap1.example.com', 'ldaps://ldap2.example.com'],
      startTls: false,
      caFile: '/etc/popgate/ldap-ca.pem',
      serverName: 'ldap.example.com',
      timeout: 5000,
      connectTimeout: 3000,
      poolSize: 4,
      poolIdleTimeout: 60_000,
      userDnTemplate: 'uid=%u,ou=people,dc=example,dc=com',
      attributes: { user: 'uid', host: 'mailHost', port: 'mailPort', backendUser: 'mailbox' },
      requireGroup: { dn: 'cn=mail,ou=groups,dc=example,dc=com', memberAttribute: 'member' },
      requireFilter: '(!(pwdAccountLockedTime=*))',
    });
    const search = await parse(variant('search'));
    expect(search.auth.ldap?.userDnTemplate).toBeUndefined();
    expect(search.auth.ldap?.search).toEqual({
      bindDn: 'cn=popgate,ou=services,dc=example,dc=com',
      bindPassword: '***',
      bindPasswordFile: '/run/secrets/ldap-bind-password',
      base: 'ou=people,dc=example,dc=com',
      filter: '(&(objectClass=inetOrgPerson)(uid=%u))',
      scope: 'sub',
    });
  });

  it('is valid with its optional parts enabled', async () => {
    const { text, blocks } = enableOptional(await readFile(EXAMPLE, 'utf8'));
    expect(blocks).toEqual(['client-certificates', 'proxy-protocol', 'kpop', 'redis', 'http', 'pam', 'oauth', 'kerberos', 'routing', 'admin']);
    const cfg = await parseConfigText(text, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    expect(cfg.listeners.map((l) => [l.name, l.kind, l.port, l.tls])).toEqual([
      ['pop3s', 'pop3s', 995, expect.anything()],
      ['pop3', 'pop3', 110, expect.anything()],
      ['kpop', 'kpop', 1109, undefined],
    ]);
    expect(cfg.listeners[0]?.tls?.clientCertificates).toEqual({
      mode: 'optional',
      caFile: '/etc/popgate/client-ca.pem',
      identity: 'san-email',
      stripDomain: false,
    });
    expect(cfg.listeners[0]?.proxyProtocol).toEqual({ trustedNetworks: ['10.0.0.0/8', 'fd00::/8'], required: true, timeout: 5000 });
    expect(cfg.auth.verifiers).toEqual(['userFile', 'http']);
    expect(cfg.auth.pam).toEqual({ service: 'popgate', accountCheck: true, maxConcurrent: 2, maxQueue: 32, timeout: 10_000 });
    expect(cfg.admin).toEqual({ address: '127.0.0.1', port: 9110 });
    expect(cfg.auth.throttle).toMatchObject({ store: 'redis', redis: { url: 'redis://127.0.0.1:6379', keyPrefix: 'popgate:' } });
    expect(cfg.auth.http).toEqual({
      url: 'http://127.0.0.1:9000/auth',
      timeout: 10_000,
      maxConcurrent: 32,
      maxQueue: 256,
      maxWaits: 3,
      headers: { 'X-Gateway': 'popgate' },
      headersFile: '/run/secrets/auth-headers',
      proxy: null,
      authorizeTicketLogins: true,
    });
    // The routing block resolves as its comments say.
    const targets = backendTargets(cfg);
    expect(targetsForUser(targets, 'alice')).toEqual([
      {
        host: '10.0.0.5',
        port: 110,
        tls: { mode: 'starttls', caFile: '/etc/popgate/backend-ca.pem', serverName: 'pop5.internal.example.com', verify: true },
        proxyProtocol: 'v2',
        xclient: false,
      },
    ]);
    expect(targetsForUser(targets, 'bob@Example.COM')).toEqual([
      { host: '10.0.0.6', port: 110, tls: { mode: 'none', verify: true }, proxyProtocol: 'none', xclient: true },
      {
        host: 'pop.example.net',
        port: 995,
        tls: { mode: 'implicit', caFile: '/etc/popgate/partner-ca.pem', serverName: 'pop.example.net', verify: true },
        proxyProtocol: 'none',
        xclient: true,
      },
    ]);
    expect(targetsForUser(targets, 'carol')).toEqual(targets.defaultTargets);
    expect(cfg.kerberos).toEqual({
      keytab: '/etc/popgate/popgate.keytab',
      servicePrincipals: ['pop/mail.example.com@EXAMPLE.COM'],
      rcacheDir: '/var/lib/popgate/rcache',
      krb5Config: '/etc/krb5.conf',
      kdc: { maxConcurrent: 4, timeout: 10_000, maxQueue: 100 },
      ticketChecks: { maxConcurrent: 2, maxQueue: 10_000 },
      passwordServicePrincipal: 'pop/mail.example.com@EXAMPLE.COM',
      mapping: {
        realms: ['EXAMPLE.COM'],
        stripRealm: true,
        lowercase: false,
        map: { 'bob@PARTNER.ORG': 'bob' },
        rules: [{ match: '^([^/@]+)@LEGACY\\.EXAMPLE\\.COM$', replace: '$1' }],
      },
    });
    // The documented mapping does what the comments say.
    const mapper = new PrincipalMapper(cfg.kerberos!.mapping);
    expect(mapper.map('alice@EXAMPLE.COM')).toEqual({ ok: true, user: 'alice', rule: 'realm' });
    expect(mapper.map('bob@PARTNER.ORG')).toEqual({ ok: true, user: 'bob', rule: 'map[bob@PARTNER.ORG]' });
    expect(mapper.map('carol@LEGACY.EXAMPLE.COM')).toEqual({ ok: true, user: 'carol', rule: 'rules[0]' });
    expect(mapper.map('eve@EVIL.ORG')).toEqual({ ok: false, reason: 'foreign-realm' });
    expect(mapper.map('alice/admin@EXAMPLE.COM')).toEqual({ ok: false, reason: 'instance' });
  });

  it('documents every leaf key of the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    // Optional sections count as documented when they are valid once enabled (tested above).
    const tree: unknown = YAML.parse(enableOptional(text).text);
    const leaves = configLeafPaths();
    // Sanity: the walk reaches into arrays and every login mode.
    expect(leaves).toEqual(
      expect.arrayContaining([
        'log.level',
        'listeners[].tls.certFile',
        'listeners[].tls.clientCertificates.caFile',
        'listeners[].proxyProtocol.trustedNetworks',
        'auth.http.headers',
        'auth.http.headersFile',
        'backend.login.secretsFile',
        'backend.tls.verify',
        'routing.users{}[].tls.serverName',
        'routing.domains{}[].xclient',
        'implementation',
        'kerberos.kdc.timeout',
        'kerberos.mapping.rules[].match',
      ]),
    );
    // Maps of plain values are leaves themselves.
    expect(leaves).toEqual(expect.arrayContaining(['kerberos.mapping.map', 'auth.http.headers']));
    expect(leaves.some((l) => l.startsWith('auth.http.headers.') || l.startsWith('kerberos.mapping.map{'))).toBe(false);
    expect(leaves.length).toBeGreaterThan(60);

    const commentKeys = new Set(
      text
        .split('\n')
        .map((l) => /^\s*#+\s*(?:- )?([A-Za-z]+):/.exec(l)?.[1])
        .filter((k): k is string => k !== undefined),
    );
    const missing = leaves.filter((leaf) => {
      if (hasPath(tree, leaf)) return false;
      const key = leaf.split('.').pop() ?? leaf;
      return !(COMMENTED_ONLY.has(leaf) && commentKeys.has(key));
    });
    expect(missing).toEqual([]);
  });

  it('documents each key with a comment', async () => {
    const lines = enableOptional(await readFile(EXAMPLE, 'utf8')).text.split('\n');
    // Every key line of the first listener and of the other sections follows a comment
    // (directly, or after other comment lines) or carries one itself.
    const undocumented: string[] = [];
    const seen = new Set<string>();
    lines.forEach((line, i) => {
      const m = /^\s*(?:- )?([A-Za-z]+):/.exec(line);
      if (!m?.[1] || seen.has(m[1])) return;
      seen.add(m[1]);
      const prev = lines[i - 1] ?? '';
      if (!line.includes('#') && !/^\s*#/.test(prev) && !/^\s*- #/.test(prev)) undocumented.push(m[1]);
    });
    expect(undocumented).toEqual([]);
  });
});
