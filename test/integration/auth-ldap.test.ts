/**
 * The LDAP verifier against real slapd servers (test/helpers/slapd.ts) over
 * plain LDAP, StartTLS and LDAPS: bind mode, search+bind, group and filter
 * restrictions (a group's member, memberOf kept by the memberof overlay, a
 * filter), filter injection, the unauthenticated bind, a server down or hung,
 * failover to a second server, passwords with LDIF and filter specials, the
 * pool of user-bind connections (counted by slapd itself: `-d stats`), and
 * that no password reaches the log.
 */
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { Writable } from 'node:stream';
import { Client } from 'ldapts';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLdapVerifier, type LdapVerifierOptions } from '../../src/auth/ldap.js';
import type { PasswordVerifier, VerifyOutcome } from '../../src/auth/types.js';
import { parseConfigText } from '../../src/config/index.js';
import { checkLdap } from '../../src/server/doctor/services.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { freePort } from '../helpers/ports.js';
import {
  slapdConnections,
  startSlapd,
  TEST_LDAP_BASE,
  TEST_LDAP_GROUP,
  TEST_LDAP_PEOPLE,
  TEST_LDAP_ROOT,
  TEST_LDAP_SERVICE,
  TEST_LDAP_USERS as U,
  type SlapdConnection,
  type TestSlapd,
} from '../helpers/slapd.js';
import { unavailable } from '../helpers/verifier.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let ca: string;
let primary: TestSlapd;
let second: TestSlapd;
let logText = '';
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logText += chunk.toString('utf8');
      done();
    },
  }),
);

beforeAll(async () => {
  pki = await makeTempTestPki('popgate-ldap-');
  ca = await readFile(pki.caFile, 'utf8');
  [primary, second] = await Promise.all([startSlapd(pki, { mailPort: 1110 }), startSlapd(pki)]);
});

afterAll(async () => {
  for (const v of verifiers) v.close();
  await Promise.all([primary?.stop(), second?.stop()]);
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

const verifiers: PasswordVerifier[] = [];
function make(over: Partial<LdapVerifierOptions> = {}): PasswordVerifier {
  const v = createLdapVerifier({
    urls: [primary.url],
    startTls: false,
    ca,
    timeoutMs: 2000,
    connectTimeoutMs: 2000,
    lookup: { mode: 'bind', dnTemplate: `uid=%u,${TEST_LDAP_PEOPLE}` },
    logger,
    ...over,
  });
  verifiers.push(v);
  return v;
}

const searchLookup: LdapVerifierOptions['lookup'] = {
  mode: 'search',
  bindDn: TEST_LDAP_SERVICE.dn,
  bindPassword: TEST_LDAP_SERVICE.password,
  base: TEST_LDAP_BASE,
  filter: '(&(objectClass=inetOrgPerson)(uid=%u))',
  scope: 'sub',
};

/** The memberOf restriction as operators write it (Active Directory, OpenLDAP with slapo-memberof). */
const memberOfFilter = `(memberOf=${TEST_LDAP_GROUP})`;

/** Passwords for a second server (startSlapd's `passwords`): LDIF (a space, non-ASCII) and filter/escape specials. */
const OTHER = {
  service: 'S3cr3t "svc" \\ %u ü',
  alice: 'S3cr3t "x" \\ %20 ü',
  bob: ' bob: <leading space> ',
} as const;

function check(v: PasswordVerifier, username: string, password: string): Promise<VerifyOutcome> {
  return v.verify({ username, password, mechanism: 'USER', tls: true });
}

describe('bind mode (DN template)', () => {
  it('accepts the right password and refuses a wrong one or an unknown user alike', async () => {
    const v = make();
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    expect(await check(v, 'nobody', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
  });

  it('escapes the user name for the DN (RFC 4514): a uid with specials binds, DN syntax does not smuggle', async () => {
    const v = make();
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    // "alice,ou=people..." would be another DN if not escaped.
    expect(await check(v, `alice,${TEST_LDAP_PEOPLE}`, U.alice.password)).toMatchObject({ ok: false });
    expect(await check(v, 'alice+cn=Alice', U.alice.password)).toMatchObject({ ok: false });
  });

  it("user@domain logins with Dovecot's %n: bind as uid=<part before @>, in bind and search mode", async () => {
    const bind = make({ lookup: { mode: 'bind', dnTemplate: `uid=%n,${TEST_LDAP_PEOPLE}` } });
    expect(await check(bind, 'alice@example.com', U.alice.password)).toEqual({ ok: true, user: 'alice@example.com' });
    expect(await check(bind, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(bind, 'alice@example.com', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    // The local name from the entry (attributes.user), as Dovecot's user=%{ldap:uid}.
    const named = make({ lookup: { mode: 'bind', dnTemplate: `uid=%n,${TEST_LDAP_PEOPLE}` }, attributes: { user: 'uid' } });
    expect(await check(named, 'alice@example.com', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    const search = make({ lookup: { ...searchLookup, filter: '(&(objectClass=inetOrgPerson)(uid=%n))' } });
    expect(await check(search, 'bob@example.com', U.bob.password)).toEqual({ ok: true, user: 'bob@example.com' });
    // The part before @ is escaped like %u: specials in it match only the literal uid.
    expect(await check(search, `${U.ohara.uid}@example.com`, U.ohara.password)).toEqual({ ok: true, user: `${U.ohara.uid}@example.com` });
    expect(await check(search, '*@example.com', U.alice.password)).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('refuses an empty password before any bind (the unauthenticated bind would succeed)', async () => {
    // The hole itself: slapd answers a simple bind with a DN and no password with success.
    const raw = new Client({ url: primary.url });
    await raw.bind(`uid=alice,${TEST_LDAP_PEOPLE}`, '');
    await raw.unbind();
    expect(await check(make(), 'alice', '')).toEqual({ ok: false, reason: 'bad-password' });
    expect(await check(make({ lookup: searchLookup }), 'alice', '')).toEqual({ ok: false, reason: 'bad-password' });
    const v = make({ urls: ['ldap://127.0.0.1:1'] }); // no server: a bind attempt would be VERIFIER_UNAVAILABLE
    expect(await check(v, 'alice', '')).toEqual({ ok: false, reason: 'bad-password' });
  });

  it('reads attributes as the user: local name, backend route and backend account', async () => {
    const v = make({ attributes: { user: 'description', host: 'street', port: 'postalCode', backendUser: 'description' } });
    expect(await check(v, 'alice', U.alice.password)).toEqual({
      ok: true,
      user: U.alice.mailbox,
      route: { endpoint: { host: U.alice.mailHost, port: 1110 }, login: { user: U.alice.mailbox, password: U.alice.password } },
    });
    // bob's entry has none of them: the plain outcome.
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: true, user: 'bob' });
  });

  it('a group and a filter that must match: otherwise disabled', async () => {
    const v = make({ requireGroup: { dn: TEST_LDAP_GROUP, memberAttribute: 'member' }, requireFilter: '(employeeType=mail)' });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: false, reason: 'disabled' }); // not in the group
    expect(await check(v, 'carol', U.carol.password)).toEqual({ ok: false, reason: 'disabled' }); // filter does not match
    expect(await check(v, 'bob', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
  });

  it('memberOf is on the members\' entries (the memberof overlay), not on bob\'s', async () => {
    const root = new Client({ url: primary.url });
    try {
      await root.bind(TEST_LDAP_ROOT.dn, TEST_LDAP_ROOT.password);
      const memberOf = async (uid: string) =>
        (await root.search(`uid=${uid},${TEST_LDAP_PEOPLE}`, { scope: 'base', attributes: ['memberOf'] })).searchEntries[0]?.memberOf;
      expect(await memberOf('alice')).toBe(TEST_LDAP_GROUP);
      expect(await memberOf(U.ohara.uid)).toBe(TEST_LDAP_GROUP);
      expect(await memberOf('bob')).toEqual([]);
    } finally {
      await root.unbind();
    }
  });

  it('requireFilter with memberOf: a member logs in, bob is disabled', async () => {
    const v = make({ requireFilter: memberOfFilter });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: false, reason: 'disabled' });
    expect(await check(v, 'bob', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    // With another condition, as an operator would combine them: carol is a member but not employeeType mail.
    const w = make({ requireFilter: `(&${memberOfFilter}(employeeType=mail))` });
    expect(await check(w, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(w, 'carol', U.carol.password)).toEqual({ ok: false, reason: 'disabled' });
  });
});

describe('search then bind (service account)', () => {
  it('finds the entry, binds as it; a wrong password is bad-password, an unknown user unknown-user', async () => {
    const v = make({ lookup: searchLookup, attributes: { user: 'description' } });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: U.alice.mailbox });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: true, user: 'bob' });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    expect(await check(v, 'nobody', 'wrong')).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('escapes every user-supplied value in the filter (RFC 4515): no injection', async () => {
    const v = make({ lookup: searchLookup });
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    // A wildcard or a closing parenthesis would match alice (or everyone) if not escaped.
    for (const attack of ['*', 'a*', 'alic*', '*)(uid=*', 'alice)(uid=*', 'x)(|(uid=*', 'alice\0', '\\2a']) {
      expect(await check(v, attack, U.alice.password), attack).toMatchObject({ ok: false, reason: 'unknown-user' });
    }
  });

  it('group restriction in search mode', async () => {
    const v = make({ lookup: searchLookup, requireGroup: { dn: TEST_LDAP_GROUP, memberAttribute: 'member' } });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: false, reason: 'disabled' });
  });

  it('requireFilter with memberOf in search mode: a member logs in, bob is disabled', async () => {
    const v = make({ lookup: searchLookup, requireFilter: memberOfFilter });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: false, reason: 'disabled' });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
  });

  it('memberOf in the search filter: a non-member is an unknown user', async () => {
    const v = make({ lookup: { ...searchLookup, filter: `(&(objectClass=inetOrgPerson)(uid=%u)${memberOfFilter})` } });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, U.ohara.uid, U.ohara.password)).toEqual({ ok: true, user: U.ohara.uid });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: false, reason: 'unknown-user' });
    // Escaped %u still: a wildcard does not reach a member.
    expect(await check(v, 'a*', U.alice.password)).toEqual({ ok: false, reason: 'unknown-user' });
  });

  it('a refused service account is VERIFIER_UNAVAILABLE', async () => {
    const v = make({ lookup: { ...searchLookup, bindPassword: 'wrong' } });
    await unavailable(check(v, 'alice', U.alice.password));
  });

  it('reuses the service account connection and survives its loss', async () => {
    const v = make({ lookup: searchLookup });
    for (let i = 0; i < 5; i++) expect(await check(v, 'alice', U.alice.password)).toMatchObject({ ok: true });
    // A kept connection that the server closed is noticed at once, over StartTLS too (not after the operation timeout).
    for (const startTls of [false, true]) {
      const extra = await startSlapd(pki);
      try {
        const w = make({ urls: [extra.url], lookup: searchLookup, startTls, timeoutMs: 600_000 });
        expect(await check(w, 'bob', U.bob.password)).toMatchObject({ ok: true });
        await extra.stop();
        // With a 10-minute operation timeout, only noticing the close ends this before the test's own timeout.
        const err = await unavailable(check(w, 'bob', U.bob.password));
        expect(err.message, `startTls ${startTls}`).toMatch(/ECONNREFUSED/);
      } finally {
        await extra.stop();
      }
    }
  });
});

describe('TLS', () => {
  it('StartTLS with the CA file, bind and search modes', async () => {
    const v = make({ startTls: true });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    const w = make({ startTls: true, lookup: searchLookup });
    expect(await check(w, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    expect(await check(w, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
  });

  it('LDAPS with the CA file', async () => {
    const v = make({ urls: [primary.ldapsUrl], lookup: searchLookup });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
  });

  it('refuses an untrusted certificate or a wrong name: VERIFIER_UNAVAILABLE', async () => {
    await unavailable(check(make({ urls: [primary.ldapsUrl], ca: undefined }), 'alice', U.alice.password));
    await unavailable(check(make({ startTls: true, ca: undefined }), 'alice', U.alice.password));
    await unavailable(check(make({ urls: [primary.ldapsUrl], tlsServerName: 'ldap.example.net' }), 'alice', U.alice.password));
    // The configured name is what is checked: localhost is on the certificate.
    expect(await check(make({ urls: [primary.ldapsUrl], tlsServerName: 'localhost' }), 'alice', U.alice.password)).toMatchObject({ ok: true });
  });
});

describe('server down, hung, failover', () => {
  it('no server at all: VERIFIER_UNAVAILABLE ([SYS/TEMP])', async () => {
    const port = await freePort();
    const err = await unavailable(check(make({ urls: [`ldap://127.0.0.1:${port}`] }), 'alice', U.alice.password));
    expect(err.message).toContain(`127.0.0.1:${port}`);
    await unavailable(check(make({ urls: [`ldap://127.0.0.1:${port}`], lookup: searchLookup }), 'alice', U.alice.password));
  });

  it('a hung server times out: VERIFIER_UNAVAILABLE', async () => {
    const hung = await startSlapd(pki);
    try {
      // Search mode with a kept service connection, made while the server still answered.
      const kept = make({ urls: [hung.url], lookup: searchLookup, timeoutMs: 300, connectTimeoutMs: 300 });
      expect(await check(kept, 'bob', U.bob.password)).toMatchObject({ ok: true });
      hung.pause();
      for (const v of [make({ urls: [hung.url], timeoutMs: 300, connectTimeoutMs: 300 }), kept]) {
        const err = await unavailable(check(v, 'alice', U.alice.password));
        expect(err.message).toMatch(/timed out/);
      }
    } finally {
      await hung.stop();
    }
  });

  it('fails over to the next URL when the first does not answer, in both modes', async () => {
    const dead = `ldap://127.0.0.1:${await freePort()}`;
    expect(await check(make({ urls: [dead, second.url] }), 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    const v = make({ urls: [dead, second.url], lookup: searchLookup });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
  });
});

describe('other passwords (startSlapd passwords)', () => {
  it('a server with passwords holding quotes, backslashes, %, a leading space and non-ASCII: bind and search modes', async () => {
    const other = await startSlapd(pki, { passwords: OTHER });
    try {
      const bind = make({ urls: [other.url] });
      expect(await check(bind, 'alice', OTHER.alice)).toEqual({ ok: true, user: 'alice' });
      expect(await check(bind, 'bob', OTHER.bob)).toEqual({ ok: true, user: 'bob' });
      expect(await check(bind, 'alice', U.alice.password)).toEqual({ ok: false, reason: 'bad-password' });
      expect(await check(bind, 'bob', OTHER.bob.trim())).toEqual({ ok: false, reason: 'bad-password' });
      // Not overridden: the default.
      expect(await check(bind, 'carol', U.carol.password)).toEqual({ ok: true, user: 'carol' });

      const search = make({ urls: [other.url], lookup: { ...searchLookup, bindPassword: OTHER.service } });
      expect(await check(search, 'alice', OTHER.alice)).toEqual({ ok: true, user: 'alice' });
      expect(await check(search, 'alice', U.alice.password)).toEqual({ ok: false, reason: 'bad-password' });
      // The default service password no longer binds.
      await unavailable(check(make({ urls: [other.url], lookup: searchLookup }), 'alice', OTHER.alice));
    } finally {
      await other.stop();
    }
  });
});

describe('the pool of user-bind connections', () => {
  /** A server that logs its connections (-d stats): slapd's own count. */
  let dir: TestSlapd;
  beforeAll(async () => {
    dir = await startSlapd(pki, { logConnections: true });
  });
  afterAll(async () => {
    await dir?.stop();
  });

  /** slapd's connections accepted after `mark` (a count from an earlier call), once `ready` holds for them. */
  function connectionsSince(mark: number, ready: (c: SlapdConnection[]) => boolean, what: string): Promise<SlapdConnection[]> {
    return waitFor(what, () => {
      const c = slapdConnections(dir.output()).slice(mark);
      return ready(c) && c;
    }, { detail: () => JSON.stringify(slapdConnections(dir.output()).slice(mark)) });
  }
  const mark = (): number => slapdConnections(dir.output()).length;
  const isService = (c: SlapdConnection): boolean => c.binds[0] === TEST_LDAP_SERVICE.dn;
  const bindCount = (c: SlapdConnection[]): number => c.filter((x) => !isService(x)).reduce((n, x) => n + x.binds.length, 0);

  it('ten logins in a row over StartTLS bind on one user connection, bind and search mode; a wrong password does not poison it', async () => {
    for (const mode of ['bind', 'search'] as const) {
      const start = mark();
      const v = make({ urls: [dir.url], startTls: true, ...(mode === 'search' ? { lookup: searchLookup } : {}) });
      for (let i = 0; i < 10; i++) {
        const who = i % 2 ? 'alice' : 'bob';
        expect(await check(v, who, U[who].password), `${mode} ${i}`).toEqual({ ok: true, user: who });
        if (i === 4) expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
      }
      // After the refused bind (now anonymous) the next right password binds, the next wrong one is refused.
      expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
      if (mode === 'search') expect(await check(v, 'nobody', 'wrong')).toEqual({ ok: false, reason: 'unknown-user' });
      const binds = mode === 'search' ? 13 : 12;
      const conns = await connectionsSince(start, (c) => bindCount(c) === binds, `${binds} user binds (${mode})`);
      const users = conns.filter((c) => !isService(c));
      expect(users, mode).toHaveLength(1);
      expect(users[0]!.closed).toBe(false);
      // Search mode: the service account's connection besides, kept too; the unknown user's bind (a made-up DN) on the pooled one.
      expect(conns.filter(isService)).toHaveLength(mode === 'search' ? 1 : 0);
      if (mode === 'search') expect(users[0]!.binds.at(-1)).toMatch(/^cn=popgate-no-such-user-/);
    }
  });

  it('concurrent logins (c=4) never share a connection; the pool keeps poolSize (2) afterwards', async () => {
    const start = mark();
    /** Operations in flight per user-bind connection, and the most ever seen on one. */
    const inFlight = new Map<Client, number>();
    let most = 0;
    const v = make({
      urls: [dir.url],
      startTls: true,
      lookup: searchLookup,
      poolSize: 2,
      onConnect(client, use) {
        if (use !== 'user') return;
        inFlight.set(client, 0);
        for (const op of ['bind', 'search'] as const) {
          const original = client[op].bind(client) as (...a: unknown[]) => Promise<unknown>;
          (client as unknown as Record<string, unknown>)[op] = async (...args: unknown[]) => {
            inFlight.set(client, inFlight.get(client)! + 1);
            most = Math.max(most, inFlight.get(client)!);
            try {
              return await original(...args);
            } finally {
              inFlight.set(client, inFlight.get(client)! - 1);
            }
          };
        }
      },
    });
    const logins: Array<[string, string, VerifyOutcome]> = [
      ['alice', U.alice.password, { ok: true, user: 'alice' }],
      ['bob', U.bob.password, { ok: true, user: 'bob' }],
      ['carol', 'wrong', { ok: false, reason: 'bad-password' }],
      ['nobody', U.alice.password, { ok: false, reason: 'unknown-user' }],
    ];
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(logins.map(([u, p]) => check(v, u, p)));
      expect(got, `round ${round}`).toEqual(logins.map(([, , o]) => o));
    }
    expect(most).toBe(1);
    expect(inFlight.size).toBeGreaterThanOrEqual(4); // four at once needed four connections
    // Afterwards: the service connection and two kept user connections stay open, every other is closed.
    const conns = await connectionsSince(
      start,
      (c) => bindCount(c) === 12 && c.filter((x) => !isService(x) && !x.closed).length === 2,
      'two open user connections',
    );
    expect(conns.filter((c) => isService(c) && !c.closed)).toHaveLength(1);
    expect([...inFlight.keys()].filter((c) => c.isConnected)).toHaveLength(2);
  });

  it('a restarted server: the next login connects again, the closed kept connection dropped unused (bind and search mode, StartTLS)', async () => {
    const v = make({ urls: [dir.url], startTls: true });
    const w = make({ urls: [dir.url], startTls: true, lookup: searchLookup });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(w, 'bob', U.bob.password)).toEqual({ ok: true, user: 'bob' });
    const before = logText.length;
    await dir.restart();
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(w, 'bob', U.bob.password)).toEqual({ ok: true, user: 'bob' });
    expect(await check(w, 'bob', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    // The server closed the kept connections while they were idle: seen then (lost), dropped when taken, no bind tried on them.
    expect(logText.slice(before)).not.toContain('retrying on a new one');
  });

  it('a kept connection reset unnoticed (a middlebox forgot it): the bind is retried once on a new connection', async () => {
    // A relay between verifier and slapd; cut() closes the slapd side and answers the next client bytes with a RST,
    // so the verifier sees nothing until its bind fails, as behind a firewall that dropped the idle connection.
    const upstreamPort = Number(new URL(dir.url).port);
    const pairs: Array<{ client: net.Socket; upstream: net.Socket; cut: boolean }> = [];
    const relay = net.createServer((client) => {
      const upstream = net.connect(upstreamPort, '127.0.0.1');
      const pair = { client, upstream, cut: false };
      pairs.push(pair);
      client.on('data', (d) => (pair.cut ? client.resetAndDestroy() : upstream.write(d)));
      upstream.on('data', (d) => client.write(d));
      upstream.on('close', () => pair.cut || client.destroy());
      client.on('close', () => upstream.destroy());
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const url = `ldap://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    try {
      for (const startTls of [false, true]) {
        pairs.length = 0;
        const before = logText.length;
        const v = make({ urls: [url], startTls });
        expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
        expect(pairs).toHaveLength(1);
        pairs[0]!.cut = true;
        pairs[0]!.upstream.destroy();
        expect(await check(v, 'alice', U.alice.password), `startTls ${startTls}`).toEqual({ ok: true, user: 'alice' });
        expect(pairs).toHaveLength(2);
        expect(logText.slice(before)).toContain('LDAP bind on a kept connection failed: retrying on a new one');
        // The new connection is the kept one now.
        expect(await check(v, 'bob', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
        expect(pairs).toHaveLength(2);
        v.close();
      }
    } finally {
      await new Promise((r) => relay.close(r));
      for (const p of pairs) p.client.destroy();
    }
  });

  it('poolSize 0: a connection per login, closed after it', async () => {
    const start = mark();
    const v = make({ urls: [dir.url], startTls: true, poolSize: 0 });
    for (let i = 0; i < 5; i++) expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    expect(await check(v, 'alice', 'wrong')).toEqual({ ok: false, reason: 'bad-password' });
    const conns = await connectionsSince(start, (c) => c.length === 6 && c.every((x) => x.closed), 'six connections, all closed');
    expect(conns.map((c) => c.binds.length)).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('closes a connection idle for poolIdleTimeout (fake clock); the next login connects anew', async () => {
    const clock = new FakeClock();
    const start = mark();
    const v = make({ urls: [dir.url], startTls: true, poolIdleTimeoutMs: 30_000, clock });
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    const timer = await clock.nextTimer(30_000);
    clock.advance(29_999);
    expect(timer.pending).toBe(true);
    expect(await check(v, 'bob', U.bob.password)).toEqual({ ok: true, user: 'bob' }); // still the kept one, idle again from now
    await connectionsSince(start, (c) => c.length === 1 && c[0]!.binds.length === 2 && !c[0]!.closed, 'one open connection, two binds');
    clock.advance(29_999);
    expect(clock.pending).toHaveLength(1);
    clock.advance(1);
    expect(clock.pending).toHaveLength(0);
    await connectionsSince(start, (c) => c.length === 1 && c[0]!.closed, 'the idle connection closed');
    expect(await check(v, 'alice', U.alice.password)).toEqual({ ok: true, user: 'alice' });
    await connectionsSince(start, (c) => c.length === 2 && !c[1]!.closed, 'a new connection');
    v.close();
    await connectionsSince(start, (c) => c.length === 2 && c.every((x) => x.closed), 'close() closes the kept connection');
  });
});

describe('popgate doctor (checkLdap)', () => {
  const config = (ldap: string) =>
    parseConfigText(
      `listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true }]
auth: { verifiers: [ldap], ldap: ${ldap} }
backend: { host: 127.0.0.1, login: { mode: master, user: m, password: p } }
`,
      { baseDir: pki.dir, env: {}, source: 'test.yaml' },
    );

  it('says each server answers (over StartTLS, certificate checked) and the service account binds', async () => {
    const dead = `ldap://127.0.0.1:${await freePort()}`;
    const search = `{ bindDn: "${TEST_LDAP_SERVICE.dn}", bindPassword: "${TEST_LDAP_SERVICE.password}", base: "${TEST_LDAP_BASE}", filter: "(uid=%u)" }`;
    const results = await checkLdap(await config(`{ urls: [${dead}, ${primary.url}], startTls: true, caFile: ca.pem, search: ${search} }`));
    expect(results.map((r) => [r.check, r.status])).toEqual([
      [`ldap server ${dead}`, 'fail'],
      [`ldap server ${primary.url}`, 'ok'],
      ['ldap service account', 'ok'],
    ]);
    expect(results[1]?.detail).toBe('answers over StartTLS, certificate checked');
    const wrong = await checkLdap(await config(`{ urls: [${primary.ldapsUrl}], caFile: ca.pem, search: ${search.replace(TEST_LDAP_SERVICE.password, 'wrong')} }`));
    expect(wrong.map((r) => [r.check, r.status])).toEqual([
      [`ldap server ${primary.ldapsUrl}`, 'ok'],
      ['ldap service account', 'fail'],
    ]);
    expect(JSON.stringify(wrong)).not.toContain('wrong');
    // No CA: the test CA is not trusted.
    expect((await checkLdap(await config(`{ urls: [${primary.ldapsUrl}], userDnTemplate: "uid=%u,${TEST_LDAP_PEOPLE}" }`))).map((r) => r.status)).toEqual(['fail']);
  });
});

describe('logging', () => {
  it('never logs a password (the user\'s or the service account\'s)', () => {
    expect(logText).not.toBe('');
    for (const secret of [U.alice.password, U.bob.password, U.ohara.password, U.carol.password, TEST_LDAP_SERVICE.password, ...Object.values(OTHER)]) {
      expect(logText).not.toContain(secret);
    }
  });
});
