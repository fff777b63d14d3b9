/**
 * src/server/preflight.ts and src/cli/startup-config.ts (what `check-config`
 * and `serve` run before listening) against real files: certificates from the
 * openssl test PKI, a keytab exported by a private MIT KDC (test/helpers/kdc.ts),
 * real directories. One broken config must yield every problem at once, each
 * with its config path and file; a good one passes and says what it checked.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfigFile } from '../../src/cli/startup-config.js';
import { configLeafPaths, parseConfigText, type PopgateConfig } from '../../src/config/index.js';
import { PATH_FIELDS } from '../../src/config/schema.js';
import { CONFIG_FILE_KEYS, configFiles, preflight } from '../../src/server/preflight.js';
import { issueCert, makeTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { startKdc, type KdcInstance } from '../helpers/kdc.js';

const REALM = 'PREFLIGHT.TEST';
const SERVICE = `pop/localhost@${REALM}`;
const NOT_IN_KEYTAB = `pop/mail.preflight.test@${REALM}`;

let dir: string;
let pki: TestPki;
let other: TestCert;
let clientCa: TestPki;
let kdc: KdcInstance;
let keytab: string;
let rcache: string;

const f = (name: string): string => join(dir, name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-preflight-'));
  pki = await makeTestPki(f('pki'));
  other = await issueCert(pki, { name: 'other', dns: ['other.test'] });
  clientCa = await makeTestPki(f('client-pki'));
  kdc = await startKdc({ realm: REALM, services: ['pop/localhost'] });
  keytab = await kdc.keytab(f('pop.keytab'), [SERVICE]);
  rcache = f('rcache');
  await mkdir(rcache);
  await mkdir(f('a-directory'));
  await writeFile(f('garbage.pem'), 'REPLACE-ME: not a certificate\n');
  await writeFile(f('chain.pem'), `${await readText(pki.certFile)}${await readText(pki.caFile)}`);
  await writeFile(f('users'), 'alice:{PLAIN}alice-secret\nbob:$scrypt$not-a-real-hash\n# a comment\ncarol\n');
  await writeFile(f('good-users'), 'alice:{PLAIN}alice-secret\n# a comment\n\ndave:{PLAIN}dave-secret\n');
  await writeFile(f('secrets'), 'alice:alice-backend:pw\nbroken-line\n');
  await writeFile(f('good-secrets'), 'alice:alice-backend:pw:with:colons\n');
  await writeFile(f('headers'), 'X-Auth-Key: k3y\n');
  await writeFile(f('master'), 'master-password\n');
}, 120_000);

afterAll(async () => {
  await kdc?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function readText(file: string): Promise<string> {
  return readFile(file, 'utf8');
}

async function writeConfig(name: string, text: string): Promise<string> {
  const file = f(name);
  await writeFile(file, text);
  return file;
}

function parse(text: string): Promise<PopgateConfig> {
  return parseConfigText(text, { baseDir: dir, env: {}, readSecrets: false });
}

const kerberosYaml = (o: { keytab?: string; principals?: string[]; rcacheDir?: string; krb5Config?: string } = {}): string => `
kerberos:
  keytab: ${o.keytab ?? keytab}
  servicePrincipals: [${(o.principals ?? [SERVICE]).join(', ')}]
  rcacheDir: ${o.rcacheDir ?? rcache}
  krb5Config: ${o.krb5Config ?? kdc.krb5Config}
  mapping: { realms: [${REALM}] }
`;

describe('preflight: which files', () => {
  it('CONFIG_FILE_KEYS is exactly the file-valued keys of the schema (*File and PATH_FIELDS)', () => {
    const fileLeaves = configLeafPaths().filter((leaf) => (leaf.split('.').pop() ?? '').endsWith('File') || PATH_FIELDS.includes(leaf));
    expect(Object.keys(CONFIG_FILE_KEYS).sort()).toEqual(fileLeaves.sort());
  });

  it('configFiles names every file key of a config that sets them all, and which ones serve does not read', async () => {
    const common = `
listeners:
  - { kind: pop3s, port: 995, tls: { certFile: c.pem, keyFile: k.pem, clientCertificates: { mode: optional, caFile: client-ca.pem }, ticketKeysFile: ticket-keys } }
  - { kind: pop3, port: 110, tls: { certFile: c.pem, keyFile: k.pem, clientCertificates: { mode: none, caFile: unused-ca.pem } } }
  - { kind: pop3s, port: 996, tls: { certificates: [{ certFile: rsa.pem, keyFile: rsa.key }, { certFile: ec.pem, keyFile: ec.key }] } }
auth:
  userFile: users
  verifiers: [userFile, http, ldap]
  mechanisms: [PLAIN, EXTERNAL, OAUTHBEARER]
  http: { url: http://127.0.0.1:9000/auth, headersFile: headers }
  ldap: { urls: [ldaps://ldap.example.com], caFile: ldap-ca.pem, search: { bindDn: cn=popgate, bindPasswordFile: ldap-pw, base: dc=example, filter: '(uid=%u)' } }
  oauth: { issuer: https://login.example.com, audience: popgate, introspection: { url: https://login.example.com/introspect, clientId: popgate, clientSecretFile: oauth-secret } }
  throttle: { store: redis, redis: { sentinel: { masterName: m, sentinels: ['10.0.0.7:26379'], passwordFile: sentinel-pw }, passwordFile: redis-pw } }
routing:
  users: { alice: [{ host: 10.0.0.5, tls: { mode: starttls, caFile: alice-ca.pem } }] }
  domains: { example.com: [{ host: 10.0.0.6, tls: { mode: none, caFile: plain-ca.pem } }] }
${kerberosYaml({ keytab: 'kt', rcacheDir: 'rc', krb5Config: 'krb5.conf' })}`;
    const master = await parse(`${common}backend: { host: b, tls: { mode: implicit, caFile: backend-ca.pem }, login: { mode: master, user: m, passwordFile: master } }\n`);
    const mapped = await parse(`${common}backend: { host: b, tls: { mode: starttls, verify: false, caFile: backend-ca.pem }, login: { mode: mapped, secretsFile: secrets } }\n`);
    const refs = [...configFiles(master), ...configFiles(mapped)];
    expect(new Set(refs.map((r) => r.pattern))).toEqual(new Set(Object.keys(CONFIG_FILE_KEYS)));
    expect(configFiles(master).map((r) => [r.path, r.file.slice(dir.length + 1), r.unusedBecause])).toEqual([
      ['listeners[0].tls.certFile', 'c.pem', undefined],
      ['listeners[0].tls.keyFile', 'k.pem', undefined],
      ['listeners[0].tls.clientCertificates.caFile', 'client-ca.pem', undefined],
      ['listeners[0].tls.ticketKeysFile', 'ticket-keys', undefined],
      ['listeners[1].tls.certFile', 'c.pem', undefined],
      ['listeners[1].tls.keyFile', 'k.pem', undefined],
      ['listeners[1].tls.clientCertificates.caFile', 'unused-ca.pem', 'clientCertificates.mode is none'],
      ['listeners[2].tls.certificates[0].certFile', 'rsa.pem', undefined],
      ['listeners[2].tls.certificates[0].keyFile', 'rsa.key', undefined],
      ['listeners[2].tls.certificates[1].certFile', 'ec.pem', undefined],
      ['listeners[2].tls.certificates[1].keyFile', 'ec.key', undefined],
      ['auth.userFile', 'users', undefined],
      ['auth.http.headersFile', 'headers', undefined],
      ['auth.throttle.redis.passwordFile', 'redis-pw', undefined],
      ['auth.throttle.redis.sentinel.passwordFile', 'sentinel-pw', undefined],
      ['auth.oauth.introspection.clientSecretFile', 'oauth-secret', undefined],
      ['auth.ldap.caFile', 'ldap-ca.pem', undefined],
      ['auth.ldap.search.bindPasswordFile', 'ldap-pw', undefined],
      ['backend.login.passwordFile', 'master', undefined],
      ['backend.tls.caFile', 'backend-ca.pem', undefined],
      ['routing.users.alice[0].tls.caFile', 'alice-ca.pem', undefined],
      ['routing.domains.example.com[0].tls.caFile', 'plain-ca.pem', 'tls.mode is none'],
      ['kerberos.keytab', 'kt', undefined],
      ['kerberos.rcacheDir', 'rc', undefined],
      ['kerberos.krb5Config', 'krb5.conf', undefined],
    ]);
    expect(configFiles(mapped).find((r) => r.path === 'backend.tls.caFile')?.unusedBecause).toBe('tls.verify is false');
  });
});

describe('check-config / serve preflight (checkConfigFile)', () => {
  it('reports every problem of one config in one run, in config order, each with its config path and file', async () => {
    const file = await writeConfig(
      'broken.yaml',
      `
listeners:
  - { name: a, kind: pop3s, port: 995, tls: { certFile: missing-cert.pem, keyFile: ${pki.keyFile} } }
  - { name: b, kind: pop3s, port: 996, tls: { certFile: ${pki.certFile}, keyFile: ${other.keyFile} } }
  - { name: c, kind: pop3, port: 110, tls: { certFile: garbage.pem, keyFile: ${pki.keyFile}, clientCertificates: { mode: optional, caFile: a-directory } } }
  - { name: k, kind: kpop }
auth:
  userFile: users
  verifiers: [userFile, http]
  mechanisms: [PLAIN, EXTERNAL, GSSAPI]
  http: { url: http://127.0.0.1:9000/auth, headersFile: missing-headers }
backend: { host: 127.0.0.1, tls: { mode: starttls, caFile: garbage.pem }, login: { mode: mapped, secretsFile: secrets } }
${kerberosYaml({ principals: [SERVICE, NOT_IN_KEYTAB], rcacheDir: f('users') })}`,
    );
    const result = await checkConfigFile(file);
    expect(result.config).toBeUndefined();
    expect(result.issues.map((i) => [i.path, i.file, i.message])).toEqual([
      ['listeners[0].tls.certFile', f('missing-cert.pem'), `cannot read certificate file ${f('missing-cert.pem')} (ENOENT)`],
      ['listeners[1].tls.keyFile', other.keyFile, `private key ${other.keyFile} does not match the certificate in ${pki.certFile}`],
      ['listeners[2].tls.certFile', f('garbage.pem'), `certificate file ${f('garbage.pem')}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      ['listeners[2].tls.clientCertificates.caFile', f('a-directory'), `cannot read client CA file ${f('a-directory')} (EISDIR)`],
      ['auth.userFile', f('users'), `user file ${f('users')} line 2: unsupported or malformed hash (user bob)`],
      ['auth.userFile', f('users'), `user file ${f('users')} line 4: no ":" (expected user:hash)`],
      ['auth.http.headersFile', f('missing-headers'), `cannot read headers file ${f('missing-headers')} (ENOENT)`],
      ['backend.login.secretsFile', f('secrets'), `backend secrets file ${f('secrets')} line 2: expected user:backendUser:password`],
      ['backend.tls.caFile', f('garbage.pem'), `CA file ${f('garbage.pem')}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      ['kerberos.keytab', keytab, expect.stringMatching(new RegExp(`keytab ${keytab} has no key for ${NOT_IN_KEYTAB.replace(/\./g, '\\.')}$`))],
      ['kerberos.rcacheDir', f('users'), `replay cache directory ${f('users')}: not a directory`],
    ]);
    // Never a secret or a hash in a message.
    const text = JSON.stringify(result.issues);
    expect(text).not.toContain('not-a-real-hash');
    expect(text).not.toContain('alice-secret');
  });

  it('reports a missing secret file along with the other missing files', async () => {
    const file = await writeConfig(
      'missing-secret.yaml',
      `
listeners: [{ kind: pop3s, port: 995, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} } }]
auth: { userFile: no-such-users, mechanisms: [PLAIN, GSSAPI] }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: no-such-master } }
${kerberosYaml({ rcacheDir: f('no-such-rcache'), krb5Config: f('no-such-krb5.conf') })}`,
    );
    const result = await checkConfigFile(file);
    expect(result.issues.map((i) => [i.path, i.file, i.message])).toEqual([
      ['auth.userFile', f('no-such-users'), `cannot read user file ${f('no-such-users')} (ENOENT)`],
      ['backend.login.passwordFile', f('no-such-master'), `cannot read secret file ${f('no-such-master')} (ENOENT)`],
      ['kerberos.rcacheDir', f('no-such-rcache'), `replay cache directory ${f('no-such-rcache')}: does not exist`],
      ['kerberos.krb5Config', f('no-such-krb5.conf'), `cannot read krb5.conf ${f('no-such-krb5.conf')} (ENOENT)`],
    ]);
    // What did load is listed as checked.
    expect(result.checked.map((c) => c.path)).toEqual(['listeners[0].tls.certFile', 'listeners[0].tls.keyFile', 'kerberos.keytab']);
  });

  it('reports a missing backend secrets file', async () => {
    const file = await writeConfig(
      'missing-secrets.yaml',
      `
listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true }]
auth: { userFile: good-users }
backend: { host: 127.0.0.1, login: { mode: mapped, secretsFile: no-such-secrets } }
`,
    );
    const result = await checkConfigFile(file);
    expect(result.issues.map((i) => [i.path, i.file, i.message])).toEqual([
      ['backend.login.secretsFile', f('no-such-secrets'), `cannot read backend secrets file ${f('no-such-secrets')} (ENOENT)`],
    ]);
  });

  it('passes a config whose every file is good, and says what it found in each', async () => {
    const file = await writeConfig(
      'good.yaml',
      `
listeners:
  - { kind: pop3s, port: 995, tls: { certFile: chain.pem, keyFile: ${pki.keyFile}, clientCertificates: { mode: optional, caFile: ${clientCa.caFile} } } }
  - { kind: pop3, port: 110, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile}, clientCertificates: { mode: none, caFile: no-such-ca.pem } } }
  - { kind: kpop }
auth:
  userFile: good-users
  verifiers: [userFile, http]
  mechanisms: [PLAIN, EXTERNAL, GSSAPI]
  http: { url: http://127.0.0.1:9000/auth, headersFile: headers }
backend: { host: 127.0.0.1, tls: { mode: starttls, caFile: ${pki.caFile} }, login: { mode: mapped, secretsFile: good-secrets } }
routing:
  domains: { example.com: [{ host: 10.0.0.6, tls: { mode: implicit, caFile: ${clientCa.caFile} } }, { host: 10.0.0.7, tls: { mode: none, caFile: no-such-ca.pem } }] }
${kerberosYaml()}`,
    );
    const result = await checkConfigFile(file);
    expect(result.issues).toEqual([]);
    expect(result.config?.listeners).toHaveLength(3);
    expect(result.checked.map((c) => [c.path, c.detail])).toEqual([
      ['listeners[0].tls.certFile', expect.stringMatching(/^certificate CN=localhost \+ 1 chain certificate, valid until \d{4}-\d\d-\d\d$/)],
      ['listeners[0].tls.keyFile', 'private key (ec) matching the certificate; TLS context built'],
      ['listeners[0].tls.clientCertificates.caFile', '1 client CA certificate'],
      ['listeners[1].tls.certFile', expect.stringMatching(/^certificate CN=localhost, valid until /)],
      ['listeners[1].tls.keyFile', 'private key (ec) matching the certificate; TLS context built'],
      ['auth.userFile', 'user file, 2 users'],
      ['auth.http.headersFile', 'headers, read and merged with the configuration'],
      ['backend.login.secretsFile', 'backend secrets, 1 user'],
      ['backend.tls.caFile', '1 CA certificate'],
      ['routing.domains.example.com[0].tls.caFile', '1 CA certificate'],
      ['kerberos.keytab', `keytab with keys for ${SERVICE}`],
      ['kerberos.rcacheDir', 'replay cache directory, writable'],
      ['kerberos.krb5Config', 'krb5.conf, readable'],
    ]);
    // Files serve would not read are not read: they do not exist, and nothing complains.
    expect(result.unused.map((u) => [u.path, u.detail])).toEqual([
      ['listeners[1].tls.clientCertificates.caFile', 'not read: clientCertificates.mode is none'],
      ['routing.domains.example.com[1].tls.caFile', 'not read: tls.mode is none'],
    ]);
  });

  it('with schemaOnly reads no file but the config: the same broken config passes and lists its files as not checked', async () => {
    const file = await writeConfig(
      'schema-only.yaml',
      `
listeners: [{ kind: pop3s, port: 995, tls: { certFile: garbage.pem, keyFile: no-such.key } }]
auth: { userFile: no-such-users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: no-such-master } }
`,
    );
    const result = await checkConfigFile(file, { schemaOnly: true });
    expect(result.issues).toEqual([]);
    expect(result.config?.backend.login).toMatchObject({ mode: 'master', password: '***' });
    expect(result.notChecked.map((r) => r.path)).toEqual(['listeners[0].tls.certFile', 'listeners[0].tls.keyFile', 'auth.userFile', 'backend.login.passwordFile']);
    expect(result.checked).toEqual([]);
    // The full check of the same file finds all four.
    expect((await checkConfigFile(file)).issues.map((i) => i.path)).toEqual([
      'listeners[0].tls.certFile',
      'listeners[0].tls.keyFile',
      'auth.userFile',
      'backend.login.passwordFile',
    ]);
  });
});

describe('preflight: the listener TLS check is the listener\'s own loading code', () => {
  it('refuses what only building the real secure context reveals (a certificate with a 1024-bit RSA key)', async () => {
    // Parses, and the key matches: only OpenSSL's security level, applied when the context is built, refuses it.
    const weak = { certFile: f('weak.pem'), keyFile: f('weak.key') };
    const r = await runProgram('openssl', ['req', '-x509', '-newkey', 'rsa:1024', '-nodes', '-keyout', weak.keyFile, '-out', weak.certFile, '-subj', '/CN=weak.test', '-days', '30']);
    expect(r.code, r.stderr).toBe(0);
    const config = await parse(`
listeners: [{ kind: pop3s, port: 995, tls: { certFile: ${weak.certFile}, keyFile: ${weak.keyFile} } }]
auth: { userFile: good-users }
backend: { host: 127.0.0.1, login: { mode: passthrough } }
`);
    const report = await preflight(config);
    expect(report.issues).toEqual([
      { path: 'listeners[0].tls', file: weak.certFile, message: expect.stringMatching(/pop3s-995.*ee key too small/) },
    ]);
    expect(report.checked).toEqual([{ path: 'auth.userFile', file: f('good-users'), detail: 'user file, 2 users' }]);
  });

  it('names the listener of each problem when two share the same broken files', async () => {
    const config = await parse(`
listeners:
  - { kind: pop3s, port: 995, tls: { certFile: garbage.pem, keyFile: garbage.pem } }
  - { kind: pop3, port: 110, tls: { certFile: garbage.pem, keyFile: garbage.pem } }
auth: { userFile: good-users }
backend: { host: 127.0.0.1, login: { mode: passthrough } }
`);
    const report = await preflight(config);
    expect(report.issues.map((i) => [i.path, i.message])).toEqual([
      ['listeners[0].tls.certFile', `certificate file ${f('garbage.pem')}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      ['listeners[0].tls.keyFile', `private key file ${f('garbage.pem')}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)`],
      ['listeners[1].tls.certFile', `certificate file ${f('garbage.pem')}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      ['listeners[1].tls.keyFile', `private key file ${f('garbage.pem')}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)`],
    ]);
  });
});
