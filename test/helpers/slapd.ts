/**
 * A PRIVATE OpenLDAP slapd per test file (apt package slapd, installed by
 * scripts/setup.sh): a slapd.conf (`slapd -f`) and an mdb database in a temp
 * dir, the test tree loaded with slapadd before start, listening on free
 * loopback ports, ldap:// (StartTLS offered) and ldaps:// with the test PKI's
 * server certificate. Stopped by its own PID; never a system slapd.
 *
 * The tree (TEST_LDAP_*): ou=people with alice, bob (password "bob-secret",
 * not in the group), `o'hara*)(x` (a uid with filter and DN specials) and
 * carol (employeeType disabled); ou=groups with cn=mail (alice, o'hara);
 * ou=services with cn=popgate (the service account). Passwords are stored in
 * clear (slapd compares them on bind). `allow bind_anon_dn`: an empty
 * password with a DN is an anonymous bind that succeeds, as on many servers.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import type { TestPki } from './certs.js';
import { waitFor } from './wait.js';

export const SLAPD_BIN = process.env.SLAPD ?? '/usr/sbin/slapd';
export const SLAPADD_BIN = process.env.SLAPADD ?? '/usr/sbin/slapadd';

export const TEST_LDAP_BASE = 'dc=example,dc=com';
export const TEST_LDAP_PEOPLE = `ou=people,${TEST_LDAP_BASE}`;
export const TEST_LDAP_GROUP = `cn=mail,ou=groups,${TEST_LDAP_BASE}`;
export const TEST_LDAP_SERVICE = { dn: `cn=popgate,ou=services,${TEST_LDAP_BASE}`, password: 'service-secret' };
export const TEST_LDAP_USERS = {
  alice: { uid: 'alice', password: 'alice-secret', mailbox: 'alice-box', mailHost: '127.0.0.1' },
  bob: { uid: 'bob', password: 'bob-secret' },
  ohara: { uid: "o'hara*)(x", password: 'ohara-secret' },
  carol: { uid: 'carol', password: 'carol-secret' },
} as const;

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
  /** SIGTERM (SIGKILL after 5 s), then removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** The test tree's LDIF; `mailPort` is written into alice's entry (a backend port for routing). */
export function testLdif(mailPort: number): string {
  const u = TEST_LDAP_USERS;
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
userPassword: ${TEST_LDAP_SERVICE.password}

dn: uid=alice,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
employeeType: mail
description: ${u.alice.mailbox}
street: ${u.alice.mailHost}
postalCode: ${mailPort}
userPassword: ${u.alice.password}

dn: uid=bob,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
employeeType: mail
userPassword: ${u.bob.password}

dn: uid=o'hara*)(x,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: ${u.ohara.uid}
cn: O'Hara
sn: O
employeeType: mail
userPassword: ${u.ohara.password}

dn: uid=carol,${TEST_LDAP_PEOPLE}
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: C
employeeType: disabled
userPassword: ${u.carol.password}

dn: ${TEST_LDAP_GROUP}
objectClass: groupOfNames
cn: mail
member: uid=alice,${TEST_LDAP_PEOPLE}
member: uid=o'hara*)(x,${TEST_LDAP_PEOPLE}
member: uid=carol,${TEST_LDAP_PEOPLE}
`;
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

export async function startSlapd(pki: TestPki, options: { mailPort?: number } = {}): Promise<TestSlapd> {
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
        `pidfile ${dir}/slapd.pid`,
        `argsfile ${dir}/slapd.args`,
        `TLSCACertificateFile ${pki.caFile}`,
        `TLSCertificateFile ${pki.certFile}`,
        `TLSCertificateKeyFile ${pki.keyFile}`,
        'database mdb',
        `suffix "${TEST_LDAP_BASE}"`,
        `rootdn "cn=admin,${TEST_LDAP_BASE}"`,
        'rootpw admin-secret',
        `directory ${db}`,
        'maxsize 10485760',
        'access to attrs=userPassword by anonymous auth by * none',
        'access to * by users read by * none',
        '',
      ].join('\n'),
    );
    const ldif = path.join(dir, 'tree.ldif');
    await writeFile(ldif, testLdif(options.mailPort ?? 110));
    await run(SLAPADD_BIN, ['-f', conf, '-l', ldif]);
    for (let attempt = 1; ; attempt++) {
      const [port, tlsPort] = [await freePort(), await freePort()];
      try {
        return await startOn(conf, dir, port, tlsPort);
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startOn(conf: string, dir: string, port: number, tlsPort: number): Promise<TestSlapd> {
  // -d 0: stay in the foreground (no fork) with no debug output; errors still go to stderr.
  const child: ChildProcess = spawn(SLAPD_BIN, ['-f', conf, '-h', `ldap://127.0.0.1:${port}/ ldaps://127.0.0.1:${tlsPort}/`, '-d', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let exited: string | undefined;
  child.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exit ${code ?? signal}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `spawn error ${err.message}`;
      resolve();
    });
  });
  try {
    // Listening on both ports, or gone: an exit ends the wait at once.
    await waitFor(`slapd on ports ${port}/${tlsPort}`, async () => exited !== undefined || ((await canConnect(port)) && (await canConnect(tlsPort))), {
      timeoutMs: 10_000,
    });
    if (exited !== undefined) throw new Error(exited);
  } catch (err) {
    if (exited === undefined) child.kill('SIGKILL');
    throw new Error(`slapd on ports ${port}/${tlsPort} did not start (${exited ?? (err as Error).message}).\n--- output ---\n${output}`);
  }
  let stopping: Promise<void> | undefined;
  const pid = child.pid!;
  return {
    url: `ldap://127.0.0.1:${port}`,
    ldapsUrl: `ldaps://127.0.0.1:${tlsPort}`,
    pid,
    output: () => output,
    pause: () => process.kill(pid, 'SIGSTOP'),
    resume: () => process.kill(pid, 'SIGCONT'),
    stop() {
      stopping ??= (async () => {
        if (exited === undefined) {
          process.kill(pid, 'SIGCONT');
          process.kill(pid, 'SIGTERM');
          const killer = setTimeout(() => {
            if (exited === undefined) process.kill(pid, 'SIGKILL');
          }, 5_000);
          await exit;
          clearTimeout(killer);
        }
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
