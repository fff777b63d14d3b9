/**
 * End to end: a POP3 client logs in through the gateway, whose chain is
 * [userFile, ldap] (search+bind over StartTLS, the service account's password
 * from a file), to a real Dovecot as the master user; the backend port comes
 * from the user's LDAP entry.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { poplibFetch } from '../helpers/clients.js';
import { pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { startSlapd, TEST_LDAP_BASE, TEST_LDAP_SERVICE, TEST_LDAP_USERS as U, type TestSlapd } from '../helpers/slapd.js';

const MASTER = { name: 'gatekeeper', password: 'Master-Pw-ldap' };
const MSG = Buffer.from('Subject: for alice\r\n\r\nhello from the directory\r\n');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let pki: TestPki;
let dovecot: DovecotInstance;
let slapd: TestSlapd;
let gw: TestGateway;

beforeAll(async () => {
  pki = await makeTempTestPki('popgate-ldap-gw-');
  dovecot = await startDovecot({ users: [{ name: 'alice', password: 'alice-backend-pw' }], masterUser: MASTER, messages: { alice: [MSG] } });
  slapd = await startSlapd(pki, { mailPort: dovecot.port });
  gw = await startTestGateway({
    users: [],
    // Nothing listens here: alice reaches Dovecot only through the port in her LDAP entry.
    backendPort: await freePort(),
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    verifiers: ['userFile', 'ldap'],
    files: { 'ldap-bind-password': `${TEST_LDAP_SERVICE.password}\n` },
    authExtra: [
      'ldap:',
      `  urls: [${slapd.url}]`,
      '  startTls: true',
      `  caFile: ${pki.caFile}`,
      '  search:',
      `    bindDn: "${TEST_LDAP_SERVICE.dn}"`,
      '    bindPasswordFile: ldap-bind-password',
      `    base: "${TEST_LDAP_BASE}"`,
      '    filter: "(&(objectClass=inetOrgPerson)(uid=%u))"',
      '  attributes: { host: street, port: postalCode }',
    ],
  });
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([dovecot?.stop(), slapd?.stop()]);
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

const fetch = (user: string, password: string) =>
  poplibFetch({ host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile, user, password, retrieve: 'all' });

describe('gateway with the ldap verifier', () => {
  it('logs alice in with her directory password, routed by her entry, as the master user at Dovecot', async () => {
    const { result } = await fetch('alice', U.alice.password);
    expect(result.error).toBeNull();
    expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG))]);
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success');
  });

  it('refuses a wrong password and an unknown user with [AUTH]; never logs a password', async () => {
    expect((await fetch('alice', 'wrong')).result.error).toMatch(/^-ERR \[AUTH\]/);
    expect((await fetch('nobody', 'wrong')).result.error).toMatch(/^-ERR \[AUTH\]/);
    for (const secret of [U.alice.password, TEST_LDAP_SERVICE.password, 'wrong']) expect(gw.rawLog()).not.toContain(secret);
  });

  it('answers [SYS/TEMP] while the directory is down', async () => {
    await slapd.stop();
    // bob: never verified before, so no cached answer (auth.cache) stands in for the directory.
    expect((await fetch('bob', U.bob.password)).result.error).toMatch(/^-ERR \[SYS\/TEMP\]/);
  });
});
