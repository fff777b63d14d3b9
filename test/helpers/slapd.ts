/**
 * A PRIVATE OpenLDAP slapd per test file (apt package slapd, installed by
 * scripts/setup.sh): a slapd.conf (`slapd -f`) and an mdb database in a temp
 * dir, the test tree loaded with slapadd before start, listening on free
 * loopback ports, ldap:// (StartTLS offered) and ldaps:// with the test PKI's
 * server certificate. Stopped by its own PID; never a system slapd.
 *
 * The tree (TEST_LDAP_*): ou=people with alice, bob (password "bob-secret",
 * not in the group), `o'hara*)(x` (a uid with filter and DN specials) and
 * carol (employeeType disabled); ou=groups with cn=mail (alice, o'hara,
 * carol); ou=services with cn=popgate (the service account). Passwords are
 * stored in clear (slapd compares them on bind); `passwords` in startSlapd's
 * options replaces any of them. `allow bind_anon_dn`: an empty password with
 * a DN is an anonymous bind that succeeds, as on many servers.
 *
 * The memberof overlay (slapo-memberof) is loaded, so the members' entries
 * carry `memberOf: cn=mail,...` as with Active Directory. The overlay acts on
 * LDAP adds and modifies only, not on slapadd: the group is added over LDAP
 * as the rootdn once slapd listens, and start-up checks that every member's
 * entry then has memberOf (and bob's has none).
 *
 * `logConnections` runs it with `-d stats`: its output then has slapd's own
 * record of each connection (`conn=N fd=F ACCEPT`, `conn=N op=M BIND dn=...`,
 * `conn=N fd=F closed`), read by slapdConnections. `restart()` stops it and
 * starts it again on the same ports with the same database.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'ldapts';
import { freePort } from './ports.js';
import type { TestPki } from './certs.js';
import { spawnChildServer, type ChildServer } from './child-server.js';

export const SLAPD_BIN = process.env.SLAPD ?? '/usr/sbin/slapd';
export const SLAPADD_BIN = process.env.SLAPADD ?? '/usr/sbin/slapadd';

export const TEST_LDAP_BASE = 'dc=example,dc=com';
export const TEST_LDAP_PEOPLE = `ou=people,${TEST_LDAP_BASE}`;
export const TEST_LDAP_GROUP = `cn=mail,ou=groups,${TEST_LDAP_BASE}`;
/** The rootdn: the group is added as it (the memberof overlay maintains memberOf on LDAP writes). */
export const TEST_LDAP_ROOT = { dn: `cn=admin,${TEST_LDAP_BASE}`, password: 'admin-secret' };
export const TEST_LDAP_SERVICE = { dn: `cn=popgate,ou=services,${TEST_LDAP_BASE}`, password: 'service-secret' };
export const TEST_LDAP_USERS = {
  alice: { uid: 'alice', password: 'alice-secret', mailbox: 'alice-box', mailHost: '127.0.0.1' },
  bob: { uid: 'bob', password: 'bob-secret' },
  ohara: { uid: "o'hara*)(x", password: 'ohara-secret' },
  carol: { uid: 'carol', password: 'carol-secret' },
} as const;
/** The members of TEST_LDAP_GROUP (their entries carry memberOf). */
export const TEST_LDAP_GROUP_MEMBERS = [TEST_LDAP_USERS.alice.uid, TEST_LDAP_USERS.ohara.uid, TEST_LDAP_USERS.carol.uid].map(
  (uid) => `uid=${uid},${TEST_LDAP_PEOPLE}`,
);

/** Other passwords than TEST_LDAP_SERVICE's and TEST_LDAP_USERS' for this server (any text: written to the LDIF safely). */
export interface TestLdapPasswords {
  readonly service?: string;
  readonly alice?: string;
  readonly bob?: string;
  readonly ohara?: string;
  readonly carol?: string;
}

export interface StartSlapdOptions {
  /** Written into alice's entry (postalCode); default 110. */
  readonly mailPort?: number;
  readonly passwords?: TestLdapPasswords;
  /** `-d stats`: connections, binds and closes in output() (see slapdConnections). */
  readonly logConnections?: boolean;
}

export interface TestSlapd {
  /** ldap://127.0.0.1:<port> (StartTLS offered). */
  readonly url: string;
  /** ldaps://127.0.0.1:<port>. */
  readonly ldapsUrl: string;
  readonly pid: number;
  output(): string;
  /** SIGSTOP: the ports still accept connections, nothing answers (a hung server). */
  pause(): void;
  resume(): void;
  /** SIGTERM, then the same server again on the same ports (its connections are gone). */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), then removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * `name: value` as an LDIF line (RFC 2849): `name:: <base64>` of the UTF-8
 * bytes when the value is not a SAFE-STRING (it starts with a space, `:` or
 * `<`, has a NUL, CR, LF or a non-ASCII character) or ends with a space.
 */
export function ldifLine(name: string, value: string): string {
  const safe = /^(?:[^\0\n\r :<\x80-\uffff][^\0\n\r\x80-\uffff]*)?$/.test(value) && !value.endsWith(' ');
  return safe ? `${name}: ${value}` : `${name}:: ${Buffer.from(value, 'utf8').toString('base64')}`;
}

/**
 * The test tree's LDIF for slapadd, without the group (added over LDAP, see
 * addGroup); `mailPort` is written into alice's entry (a backend port for
 * routing), `passwords` replace the default ones.
 */
export function testLdif(mailPort: number, passwords: TestLdapPasswords = {}): string {
  const u = TEST_LDAP_USERS;
  const pw = (name: string, value: string | undefined, fallback: string) => ldifLine(name, value ?? fallback);
  return `dn: ${TEST_LDAP_BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ${TEST_LDAP_PEOPLE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,${TEST_LDAP_BASE}
objectClass: organizationalUnit
ou: groups

dn: ou=services,${TEST_LDAP_BASE}
objectClass: organizationalUnit
ou: services

dn: ${TEST_LDAP_SERVICE.dn}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: popgate
${pw('userPassword', passwords.service, TEST_LDAP_SERVICE.password)}

dn: uid=alice,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
employeeType: mail
description: ${u.alice.mailbox}
street: ${u.alice.mailHost}
postalCode: ${mailPort}
${pw('userPassword', passwords.alice, u.alice.password)}

dn: uid=bob,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
employeeType: mail
${pw('userPassword', passwords.bob, u.bob.password)}

dn: uid=o'hara*)(x,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: ${u.ohara.uid}
cn: O'Hara
sn: O
employeeType: mail
${pw('userPassword', passwords.ohara, u.ohara.password)}

dn: uid=carol,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: C
employeeType: disabled
${pw('userPassword', passwords.carol, u.carol.password)}
`;
}

/**
 * Adds TEST_LDAP_GROUP over LDAP as the rootdn, so that the memberof overlay
 * writes memberOf into the members' entries, and checks that it did.
 */
async function addGroup(url: string): Promise<void> {
  const admin = new Client({ url, timeout: 10_000, connectTimeout: 10_000 });
  try {
    await admin.bind(TEST_LDAP_ROOT.dn, TEST_LDAP_ROOT.password);
    await admin.add(TEST_LDAP_GROUP, { objectClass: 'groupOfNames', cn: 'mail', member: TEST_LDAP_GROUP_MEMBERS });
    // memberOf is operational: returned only when asked for by name.
    const { searchEntries } = await admin.search(TEST_LDAP_PEOPLE, { scope: 'one', filter: '(objectClass=inetOrgPerson)', attributes: ['memberOf'] });
    const memberOf = new Map(searchEntries.map((e) => [e.dn.toLowerCase(), ([] as unknown[]).concat(e.memberOf ?? []).map((v) => String(v).toLowerCase())]));
    const expected = new Map([...memberOf.keys()].map((dn) => [dn, TEST_LDAP_GROUP_MEMBERS.some((m) => m.toLowerCase() === dn) ? [TEST_LDAP_GROUP.toLowerCase()] : []]));
    if (memberOf.size !== 4 || JSON.stringify([...memberOf]) !== JSON.stringify([...expected])) {
      throw new Error(`memberOf not as expected after adding ${TEST_LDAP_GROUP}: ${JSON.stringify([...memberOf])}`);
    }
  } finally {
    await admin.unbind().catch(() => undefined);
  }
}

function run(bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 30_000 }, (err, _stdout, stderr) => (err ? reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve()));
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startSlapd(pki: TestPki, options: StartSlapdOptions = {}): Promise<TestSlapd> {
  if (!existsSync(SLAPD_BIN)) throw new Error(`${SLAPD_BIN} not found: install the apt package slapd (scripts/setup.sh does)`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'popgate-slapd-'));
  try {
    const db = path.join(dir, 'db');
    await mkdir(db);
    const conf = path.join(dir, 'slapd.conf');
    await writeFile(
      conf,
      [
        ...['core', 'cosine', 'inetorgperson', 'nis'].map((s) => `include /etc/ldap/schema/${s}.schema`),
        // Like many directories (Active Directory among them): a DN with an empty password binds
        // anonymously with success (RFC 4513 5.1.2), the hole the verifier must close itself.
        'allow bind_anon_dn',
        'modulepath /usr/lib/ldap',
        'moduleload back_mdb',
        'moduleload memberof',
        `pidfile ${dir}/slapd.pid`,
        `argsfile ${dir}/slapd.args`,
        `TLSCACertificateFile ${pki.caFile}`,
        `TLSCertificateFile ${pki.certFile}`,
        `TLSCertificateKeyFile ${pki.keyFile}`,
        'database mdb',
        `suffix "${TEST_LDAP_BASE}"`,
        `rootdn "${TEST_LDAP_ROOT.dn}"`,
        `rootpw ${TEST_LDAP_ROOT.password}`,
        `directory ${db}`,
        'maxsize 10485760',
        'access to attrs=userPassword by anonymous auth by * none',
        'access to * by users read by * none',
        // memberOf on the members of a groupOfNames (member), kept by the server on LDAP writes.
        'overlay memberof',
        '',
      ].join('\n'),
    );
    const ldif = path.join(dir, 'tree.ldif');
    await writeFile(ldif, testLdif(options.mailPort ?? 110, options.passwords));
    await run(SLAPADD_BIN, ['-f', conf, '-l', ldif]);
    let slapd: TestSlapd;
    for (let attempt = 1; ; attempt++) {
      const [port, tlsPort] = [await freePort(), await freePort()];
      try {
        slapd = await startOn(conf, dir, port, tlsPort, options.logConnections === true);
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
    try {
      await addGroup(slapd.url);
    } catch (err) {
      await slapd.stop();
      throw new Error(`${(err as Error).message}\n--- slapd output ---\n${slapd.output()}`);
    }
    return slapd;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startOn(conf: string, dir: string, port: number, tlsPort: number, logConnections: boolean): Promise<TestSlapd> {
  // One per launch (restart() launches again); output() is all of theirs, in order.
  const runs: ChildServer[] = [];
  const current = (): ChildServer => runs[runs.length - 1]!;
  const output = (): string => runs.map((r) => r.output()).join('');
  const pidFile = path.join(dir, 'slapd.pid');
  async function launch(): Promise<void> {
    await rm(pidFile, { force: true });
    // -d 0: stay in the foreground (no fork) with no debug output; errors still go to stderr. -d stats: connections too.
    // 'close': exited, and its output read to the end.
    const server = spawnChildServer(SLAPD_BIN, ['-f', conf, '-h', `ldap://127.0.0.1:${port}/ ldaps://127.0.0.1:${tlsPort}/`, '-d', logConnections ? 'stats' : '0'], {
      exitEvent: 'close',
    });
    runs.push(server);
    try {
      // Ours and listening on both ports, or gone. The ports alone are not enough: when freePort's
      // port was taken meanwhile by another test's server, slapd fails to bind and exits, but a
      // connect may reach that other server first. slapd writes its pidfile only after binding.
      const ours = async (): Promise<boolean> => (await readFile(pidFile, 'utf8').catch(() => '')).trim() === String(server.pid);
      await server.waitReady(
        `slapd on ports ${port}/${tlsPort}`,
        async () => (await ours()) && (await canConnect(port)) && (await canConnect(tlsPort)),
        10_000,
      );
    } catch (err) {
      throw new Error(`slapd on ports ${port}/${tlsPort} did not start (${(err as Error).message}).\n--- output ---\n${output()}`);
    }
  }
  async function terminate(): Promise<void> {
    const server = current();
    if (server.exited() !== undefined) return;
    process.kill(server.pid, 'SIGCONT');
    await server.stop(5_000);
  }
  await launch();
  let stopping: Promise<void> | undefined;
  return {
    url: `ldap://127.0.0.1:${port}`,
    ldapsUrl: `ldaps://127.0.0.1:${tlsPort}`,
    get pid() {
      return current().pid;
    },
    output,
    pause: () => process.kill(current().pid, 'SIGSTOP'),
    resume: () => process.kill(current().pid, 'SIGCONT'),
    async restart() {
      if (stopping) throw new Error('slapd restart after stop');
      await terminate();
      await launch();
    },
    stop() {
      stopping ??= (async () => {
        await terminate();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

export interface SlapdConnection {
  readonly conn: number;
  /** The DNs bound as, in order. */
  readonly binds: string[];
  closed: boolean;
}

/** slapd's own record of its connections (a server started with logConnections), in order of acceptance. */
export function slapdConnections(output: string): SlapdConnection[] {
  // Numbers start again after a restart: the latest connection of a number is the one meant.
  const all: SlapdConnection[] = [];
  const byConn = new Map<number, SlapdConnection>();
  for (const line of output.split('\n')) {
    let m = /\bconn=(\d+) fd=\d+ ACCEPT from/.exec(line);
    if (m) {
      const c: SlapdConnection = { conn: Number(m[1]), binds: [], closed: false };
      all.push(c);
      byConn.set(c.conn, c);
    }
    m = /\bconn=(\d+) op=\d+ BIND dn="([^"]*)" method=/.exec(line);
    if (m) byConn.get(Number(m[1]))?.binds.push(m[2]!);
    m = /\bconn=(\d+) fd=\d+ closed/.exec(line);
    if (m) {
      const c = byConn.get(Number(m[1]));
      if (c) c.closed = true;
    }
  }
  return all;
}
