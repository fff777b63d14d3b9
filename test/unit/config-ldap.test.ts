/** The auth.ldap section: URLs, the two lookup modes, templates and filters, secrets. */
import { describe, expect, it } from 'vitest';
import { redactConfig } from '../../src/config/index.js';
import { issuesOf, MASTER_BACKEND, parseConfig } from '../helpers/config.js';

const head = `listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true }]\n${MASTER_BACKEND}`;
const withLdap = (ldap: string, verifiers = '[ldap]') => `${head}auth:\n  verifiers: ${verifiers}\n  ldap: ${ldap}\n`;

describe('auth.ldap', () => {
  it('bind mode with defaults', async () => {
    const cfg = await parseConfig(withLdap('{ urls: [ldap://127.0.0.1:389], userDnTemplate: "uid=%u,ou=people,dc=example,dc=com" }'));
    expect(cfg.auth.ldap).toEqual({
      urls: ['ldap://127.0.0.1:389'],
      startTls: false,
      timeout: 5000,
      connectTimeout: 3000,
      poolSize: 4,
      poolIdleTimeout: 60_000,
      userDnTemplate: 'uid=%u,ou=people,dc=example,dc=com',
      attributes: {},
    });
  });

  it("templates take Dovecot's %u, %n, %d and %%; they must name the user; other % sequences are refused", async () => {
    const ok = await parseConfig(withLdap('{ urls: [ldap://a], userDnTemplate: "uid=%n,ou=%d,dc=example,dc=com", requireFilter: "(mail=%u)" }'));
    expect(ok.auth.ldap?.userDnTemplate).toBe('uid=%n,ou=%d,dc=example,dc=com');
    const problems = async (ldap: string) => (await issuesOf(withLdap(ldap))).map((i) => `${i.path}: ${i.message}`);
    expect(await problems('{ urls: [ldap://a], userDnTemplate: "uid=%d,dc=example" }')).toEqual([
      'auth.ldap.userDnTemplate: must contain %u (the user name) or %n (its part before @) in the DN template',
    ]);
    expect(await problems('{ urls: [ldap://a], userDnTemplate: "uid=%%u" }')).toHaveLength(1);
    expect((await problems('{ urls: [ldap://a], userDnTemplate: "uid=%u,o=%x" }'))[0]).toMatch(/^auth\.ldap\.userDnTemplate: unknown variable "%x"/);
    expect((await problems('{ urls: [ldap://a], userDnTemplate: "uid=%u", requireFilter: "(o=%L)" }'))[0]).toMatch(/^auth\.ldap\.requireFilter: unknown variable "%L"/);
    expect(await problems('{ urls: [ldap://a], userDnTemplate: "uid=%u%" }')).toEqual(['auth.ldap.userDnTemplate: unknown variable "%": use %u (user), %n (before @), %d (domain) or %% (a %)']);
  });

  it('the user-bind pool: poolSize 0..256 (0: none), poolIdleTimeout at least 1s', async () => {
    const cfg = await parseConfig(withLdap('{ urls: [ldap://a], userDnTemplate: "uid=%u", poolSize: 0, poolIdleTimeout: 5m }'));
    expect(cfg.auth.ldap).toMatchObject({ poolSize: 0, poolIdleTimeout: 300_000 });
    const paths = async (ldap: string) => (await issuesOf(withLdap(ldap))).map((i) => i.path);
    expect(await paths('{ urls: [ldap://a], userDnTemplate: "uid=%u", poolSize: 257 }')).toEqual(['auth.ldap.poolSize']);
    expect(await paths('{ urls: [ldap://a], userDnTemplate: "uid=%u", poolSize: 1.5 }')).toEqual(['auth.ldap.poolSize']);
    expect(await paths('{ urls: [ldap://a], userDnTemplate: "uid=%u", poolSize: -1 }')).toEqual(['auth.ldap.poolSize']);
    expect(await paths('{ urls: [ldap://a], userDnTemplate: "uid=%u", poolIdleTimeout: 500ms }')).toEqual(['auth.ldap.poolIdleTimeout']);
  });

  it('search mode: the bind password from a file (a secret, redacted) or inline', async () => {
    const cfg = await parseConfig(
      withLdap('{ urls: [ldaps://ldap.example.com], search: { bindDn: "cn=popgate,dc=example,dc=com", bindPassword: "s3cret", base: "dc=example,dc=com", filter: "(&(objectClass=person)(uid=%u))" } }'),
    );
    expect(cfg.auth.ldap?.search).toMatchObject({ bindPassword: 's3cret', scope: 'sub' });
    expect(JSON.stringify(redactConfig(cfg))).not.toContain('s3cret');
    const missing = await issuesOf(withLdap('{ urls: [ldaps://ldap.example.com], search: { bindDn: "cn=p", base: "dc=e", filter: "(uid=%u)" } }'));
    expect(missing).toEqual([expect.objectContaining({ path: 'auth.ldap.search.bindPassword', message: 'required: set bindPassword or bindPasswordFile' })]);
  });

  it('refuses bad URLs, a template or filter without %u, an unbalanced filter, both or neither mode', async () => {
    const paths = async (ldap: string) => (await issuesOf(withLdap(ldap))).map((i) => [i.path, i.message]);
    expect(await paths('{ urls: [http://ldap.example.com], userDnTemplate: "uid=%u" }')).toEqual([['auth.ldap.urls[0]', 'must be an ldap:// or ldaps:// URL, not http:']]);
    expect(await paths('{ urls: ["ldap://ldap.example.com/dc=example"], userDnTemplate: "uid=%u" }')).toEqual([
      ['auth.ldap.urls[0]', 'must name only the server (scheme, host, port)'],
    ]);
    expect(await paths('{ urls: ["ldap://u:p@ldap.example.com"], userDnTemplate: "uid=%u" }')).toEqual([['auth.ldap.urls[0]', 'must not contain credentials']]);
    expect(await paths('{ urls: [ldap://a], userDnTemplate: "uid=alice" }')).toEqual([['auth.ldap.userDnTemplate', 'must contain %u (the user name) or %n (its part before @) in the DN template']]);
    expect(await paths('{ urls: [ldap://a], search: { bindDn: c, bindPassword: p, base: b, filter: "(&(uid=%u)" } }')).toEqual([
      ['auth.ldap.search.filter', 'must be an LDAP filter in balanced parentheses'],
    ]);
    expect(await paths('{ urls: [ldap://a] }')).toEqual([
      ['auth.ldap', 'set exactly one of userDnTemplate (bind as the user) and search (search, then bind)'],
    ]);
    expect(await paths('{ urls: [ldaps://a], startTls: true, userDnTemplate: "uid=%u", attributes: { host: mailHost } }')).toEqual([
      ['auth.ldap.attributes', 'host and port go together: set both or neither'],
      ['auth.ldap.urls[0]', 'startTls is for ldap:// URLs; this one is ldaps:// (TLS already)'],
    ]);
    expect(await paths('{ urls: [], userDnTemplate: "uid=%u" }')).toEqual([['auth.ldap.urls', 'at least one URL is required']]);
  });

  it('is required with the ldap verifier and refused without it', async () => {
    expect((await issuesOf(`${head}auth: { verifiers: [ldap] }\n`)).map((i) => i.path)).toEqual(['auth.ldap']);
    const unused = await issuesOf(withLdap('{ urls: [ldap://a], userDnTemplate: "uid=%u" }', '[userFile]\n  userFile: users'));
    expect(unused.map((i) => [i.path, i.message])).toEqual([['auth.ldap', 'configured but not used: auth.verifiers does not include ldap']]);
  });
});
