/**
 * Issue 18: no password of a directory or system account, and no LDAP
 * service account password, appears in any log line at any level. The
 * companion of secrets.test.ts (same needles, test/helpers/secret-needles.ts),
 * for the ldap and pam verifiers, with real components: Dovecot with a master
 * user, a private OpenLDAP slapd whose passwords hold quotes, a backslash,
 * "%20", a space and a non-ASCII letter, and a PAM stack under pam_wrapper.
 *
 *   gateway L (ldap, search then bind over StartTLS, the service account's
 *   password from a file; logging at trace):
 *     USER/PASS, AUTH PLAIN (initial response and continuation), AUTH LOGIN;
 *     wrong passwords in each,
 *     an unknown user; then the directory stops: [SYS/TEMP];
 *   gateway M (ldap, bind as the user over LDAPS):
 *     USER/PASS and AUTH PLAIN, a wrong password;
 *   gateway N (ldap, search with a wrong service account password): [SYS/TEMP];
 *   gateway P (`popgate serve` under pam_wrapper, trace; a child process):
 *     USER/PASS, AUTH PLAIN, AUTH LOGIN, wrong passwords, an unknown user, a
 *     locked account (refused in the account stack).
 *
 * Then every gateway's whole log output is searched for every password in
 * every form an accident could produce (secret-needles.ts), the PLAIN and
 * LOGIN messages that carried them, the master password and popgate's PLAIN
 * message to Dovecot; and for the random tag every secret carries and their
 * common prefix (a truncated secret).
 */
import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { startPamGateway, type PamGateway } from '../helpers/pam-gateway.js';
import { createPamSandbox, type PamSandbox } from '../helpers/pam-wrapper.js';
import { b64, createNeedleSet } from '../helpers/secret-needles.js';
import { startSlapd, TEST_LDAP_BASE, TEST_LDAP_PEOPLE, TEST_LDAP_SERVICE, type TestSlapd } from '../helpers/slapd.js';
import { waitFor } from '../helpers/wait.js';

const TAG = `Q${Array.from({ length: 11 }, () => String.fromCharCode(65 + randomInt(26))).join('')}`;
const secret = (what: string): string => `S3cr3t-${what}-${TAG}`;

const MASTER = { name: 'gatekeeper', password: secret('master') };
/** Quotes, a backslash, a space, "%20" and a non-ASCII letter: every escaping makes a different string. */
const LDAP_PW = {
  service: `S3cr3t service "bind" \\ %20 \u00fc-${TAG}`,
  alice: `S3cr3t ldap "alice" \\ %20 \u00fc-${TAG}`,
  bob: secret('ldap-bob'),
  ohara: secret('ldap-ohara'),
  carol: secret('ldap-carol'),
};
const WRONG_SERVICE = secret('wrong-service');
/** pam_matrix holds `user:password:service` lines: no ":" in these. */
const PAM_PW = { alice: `S3cr3t pam "alice" \\ %20 \u00fc-${TAG}`, bob: secret('pam-bob'), locked: secret('pam-locked') };
const WRONG = {
  ldapUser: secret('wrong-ldap-user'),
  ldapPlain: secret('wrong-ldap-plain'),
  ldapLogin: secret('wrong-ldap-login'),
  ldapUnknown: secret('wrong-ldap-unknown'),
  ldapBind: secret('wrong-ldap-bind'),
  pamUser: secret('wrong-pam-user'),
  pamPlain: secret('wrong-pam-plain'),
  pamLogin: secret('wrong-pam-login'),
  pamUnknown: secret('wrong-pam-unknown'),
};

const needles = createNeedleSet();
for (const [label, pw] of [
  ['LDAP service account password', LDAP_PW.service],
  ['LDAP alice', LDAP_PW.alice],
  ['LDAP bob', LDAP_PW.bob],
  ['LDAP o\'hara', LDAP_PW.ohara],
  ['LDAP carol', LDAP_PW.carol],
  ['wrong service account password', WRONG_SERVICE],
  ['PAM alice', PAM_PW.alice],
  ['PAM bob', PAM_PW.bob],
  ['PAM locked', PAM_PW.locked],
  ['master password', MASTER.password],
  ...Object.entries(WRONG).map(([k, v]) => [`wrong password (${k})`, v] as const),
] as const) {
  needles.secretForms(label, pw);
}
// popgate's PLAIN to Dovecot for each user: authzid user, authcid the master user.
for (const user of ['alice', 'bob', 'locked']) needles.plainMessageForms(`popgate->Dovecot ${user}`, user, MASTER.name, MASTER.password);

let pki: TestPki;
let dovecot: DovecotInstance;
let slapd: TestSlapd;
let sandbox: PamSandbox;
let gl: TestGateway;
let gm: TestGateway;
let gn: TestGateway;
let gp: PamGateway;
const inProcess: TestGateway[] = [];

async function gateway(opts: Pick<TestGatewayOptions, 'authExtra'> & Partial<TestGatewayOptions>): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [],
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    verifiers: ['ldap'],
    ...opts,
  });
  inProcess.push(gw);
  return gw;
}

const ldapCommon = (url: string): string[] => ['ldap:', `  urls: [${url}]`, `  caFile: ${pki.caFile}`, '  serverName: localhost'];
const searchLines = (passwordFile: string): string[] => [
  '  search:',
  `    bindDn: "${TEST_LDAP_SERVICE.dn}"`,
  `    bindPasswordFile: ${passwordFile}`,
  `    base: "${TEST_LDAP_BASE}"`,
  '    filter: "(&(objectClass=inetOrgPerson)(uid=%u))"',
];

beforeAll(async () => {
  [pki, sandbox] = await Promise.all([makeTempTestPki('popgate-secrets-dir-'), createPamSandbox({ users: PAM_PW })]);
  dovecot = await startDovecot({
    users: ['alice', 'bob', 'carol', 'locked'].map((name) => ({ name, password: secret(`dovecot-${name}`) })),
    masterUser: MASTER,
    messages: { alice: [Buffer.from('Subject: for alice\r\n\r\nhello\r\n')], bob: [Buffer.from('Subject: for bob\r\n\r\nhello\r\n')] },
  });
  slapd = await startSlapd(pki, { passwords: LDAP_PW });
  gl = await gateway({
    files: { 'bind-password': `${LDAP_PW.service}\n` },
    authExtra: [...ldapCommon(slapd.url), '  startTls: true', ...searchLines('bind-password')],
  });
  gm = await gateway({ authExtra: [...ldapCommon(slapd.ldapsUrl), `  userDnTemplate: "uid=%u,${TEST_LDAP_PEOPLE}"`] });
  gn = await gateway({ files: { 'bind-password': `${WRONG_SERVICE}\n` }, authExtra: [...ldapCommon(slapd.url), '  startTls: true', ...searchLines('bind-password')] });
  gp = await startPamGateway(sandbox, {
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    sections: `auth:
  verifiers: [pam]
  pam: { service: popgate-gateway }
  failureDelay: 0s
  throttle: { enabled: false }
backend:
  host: 127.0.0.1
  port: ${dovecot.port}
  login: ${masterLogin(MASTER)}`,
  });
}, 90_000);

afterAll(async () => {
  for (const gw of inProcess) await gw.stop().catch(() => undefined);
  await gp?.stop();
  await slapd?.stop();
  await dovecot?.stop();
  await sandbox?.cleanup();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Sessions

async function pop3s(port: number): Promise<LineClient> {
  const c = await LineClient.tls(port, pki.caFile);
  expect(await c.line()).toMatch(/^\+OK/);
  return c;
}

type Login = (c: LineClient, user: string, password: string) => Promise<string>;

const userPass: Login = async (c, user, password) => {
  expect(await c.cmd(`USER ${user}`)).toMatch(/^\+OK/);
  return c.cmd(`PASS ${password}`);
};
const plainInitial: Login = async (c, user, password) => {
  needles.plainMessageForms(`client ${user}`, '', user, password);
  return c.cmd(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}`);
};
const plainContinued: Login = async (c, user, password) => {
  needles.plainMessageForms(`client ${user}`, '', user, password);
  expect(await c.cmd('AUTH PLAIN')).toBe('+ ');
  return c.cmd(b64(`\0${user}\0${password}`));
};
const authLogin: Login = async (c, user, password) => {
  needles.add(`client AUTH LOGIN password line for ${user}`, b64(password));
  expect(await c.cmd('AUTH LOGIN')).toMatch(/^\+ /);
  expect(await c.cmd(b64(user))).toMatch(/^\+ /);
  return c.cmd(b64(password));
};

/** One login with `how`; on success STAT, RETR 1 when `mail`, QUIT. The reply to the login. */
async function login(port: number, how: Login, user: string, password: string, mail = true): Promise<string> {
  const c = await pop3s(port);
  try {
    const reply = await how(c, user, password);
    if (reply.startsWith('+OK')) {
      expect(await c.cmd('STAT')).toMatch(/^\+OK \d+ \d+$/);
      if (mail) expect((await c.cmdMultiline('RETR 1')).body.toString('latin1')).toContain(`Subject: for ${user}`);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
    }
    return reply;
  } finally {
    c.end();
  }
}

const OK = /^\+OK/;
const AUTH_ERR = /^-ERR \[AUTH\] /;
const TEMP_ERR = /^-ERR \[SYS\/TEMP\] /;

describe('ldap verifier at trace level', () => {
  it('gateway L (search then bind, StartTLS): every password mechanism, right and wrong, an unknown user', async () => {
    expect(await login(gl.port('pop3s'), userPass, 'alice', LDAP_PW.alice)).toMatch(OK);
    expect(await login(gl.port('pop3s'), plainInitial, 'bob', LDAP_PW.bob)).toMatch(OK);
    expect(await login(gl.port('pop3s'), plainContinued, 'alice', LDAP_PW.alice)).toMatch(OK);
    expect(await login(gl.port('pop3s'), authLogin, 'bob', LDAP_PW.bob)).toMatch(OK);
    expect(await login(gl.port('pop3s'), userPass, 'alice', WRONG.ldapUser)).toMatch(AUTH_ERR);
    expect(await login(gl.port('pop3s'), plainInitial, 'bob', WRONG.ldapPlain)).toMatch(AUTH_ERR);
    expect(await login(gl.port('pop3s'), authLogin, 'alice', WRONG.ldapLogin)).toMatch(AUTH_ERR);
    expect(await login(gl.port('pop3s'), userPass, 'nobody', WRONG.ldapUnknown)).toMatch(AUTH_ERR);
  });

  it('gateway M (bind as the user, LDAPS): USER/PASS, AUTH PLAIN, a wrong password', async () => {
    expect(await login(gm.port('pop3s'), userPass, 'alice', LDAP_PW.alice)).toMatch(OK);
    expect(await login(gm.port('pop3s'), plainInitial, 'bob', LDAP_PW.bob)).toMatch(OK);
    expect(await login(gm.port('pop3s'), userPass, 'bob', WRONG.ldapBind)).toMatch(AUTH_ERR);
  });

  it('gateway N (the service account refused) and gateway L with the directory down: [SYS/TEMP]', async () => {
    expect(await login(gn.port('pop3s'), userPass, 'alice', LDAP_PW.alice)).toMatch(TEMP_ERR);
    await slapd.stop();
    expect(await login(gl.port('pop3s'), plainInitial, 'carol', LDAP_PW.carol)).toMatch(TEMP_ERR);
  });
});

describe('pam verifier at trace level (popgate serve under pam_wrapper)', () => {
  it('gateway P: every password mechanism, right and wrong, an unknown user, a locked account', async () => {
    expect(await login(gp.port, userPass, 'alice', PAM_PW.alice)).toMatch(OK);
    expect(await login(gp.port, plainInitial, 'bob', PAM_PW.bob)).toMatch(OK);
    expect(await login(gp.port, plainContinued, 'alice', PAM_PW.alice)).toMatch(OK);
    expect(await login(gp.port, authLogin, 'bob', PAM_PW.bob)).toMatch(OK);
    expect(await login(gp.port, userPass, 'alice', WRONG.pamUser)).toMatch(AUTH_ERR);
    expect(await login(gp.port, plainInitial, 'bob', WRONG.pamPlain)).toMatch(AUTH_ERR);
    expect(await login(gp.port, authLogin, 'alice', WRONG.pamLogin)).toMatch(AUTH_ERR);
    expect(await login(gp.port, userPass, 'nobody', WRONG.pamUnknown)).toMatch(AUTH_ERR);
    expect(await login(gp.port, userPass, 'locked', PAM_PW.locked)).toMatch(AUTH_ERR);
  });
});

describe('secrets', () => {
  it('no password, in any form, appears in any log line of any gateway (trace level)', async () => {
    // Every relayed session has ended (its end is logged), then the gateway stops (and logs that too).
    const raws: Array<[string, string]> = [];
    for (const [name, gw] of [['L', gl], ['M', gm], ['N', gn]] as const) {
      const successes = gw.logs.filter((l) => l.event === 'login' && l.outcome === 'success').length;
      await waitForLog(gw, () => gw.logs.filter((l) => l.event === 'session-end').length >= successes);
      await gw.stop();
      inProcess.splice(inProcess.indexOf(gw), 1);
      expect(gw.logs.some((l) => l.level === 10 && l.msg === 'client command'), `gateway ${name} wrote no trace lines`).toBe(true);
      raws.push([`gateway ${name}`, gw.rawLog()]);
    }
    const pamSuccesses = (): number => gp.records().filter((r) => r.event === 'login' && r.outcome === 'success').length;
    await waitFor('gateway P sessions ended', () => gp.records().filter((r) => r.event === 'session-end').length >= pamSuccesses());
    expect(await gp.stop()).toBe(0);
    // The CLI's logger writes level labels (src/observability/logger.ts).
    expect(gp.records().some((r) => r.level === 'trace' && r.msg === 'client command'), 'gateway P wrote no trace lines').toBe(true);
    raws.push(['gateway P', gp.cli.output()]);

    // The refusals were logged with their reasons (so the logs were searched where secrets could be).
    const all = raws.map(([, raw]) => raw).join('\n');
    for (const text of ['"cmd":"PASS ***"', 'bad-password', 'unknown-user', 'disabled', 'VERIFIER_UNAVAILABLE']) expect(all).toContain(text);

    expect(needles.list.length).toBeGreaterThan(150);
    const nets = [{ label: "the secrets' random tag", text: TAG }, { label: "the secrets' common prefix", text: 'S3cr3t' }];
    const hits = raws.flatMap(([name, raw]) => needles.hits(name, raw, nets));
    expect(hits).toEqual([]);
  });
});
