/**
 * Issue 5 item 6: no password, internal credential or ticket ever appears in
 * any log line at any level. One file, real components (Dovecot with a master
 * user, an MIT KDC, the nginx-style auth service, Redis with an ACL user, a
 * TLS client certificate), the gateways logging at trace level, and a full
 * session (login, STAT, RETR, QUIT) for every way in:
 *
 *   gateway A (master login, auth-plain; verifiers userFile > kerberos; the
 *   throttle's counters in Redis through a URL with user:password@):
 *     USER/PASS, AUTH PLAIN (initial response and continuation), AUTH LOGIN
 *     (after STLS), APOP, AUTH CRAM-MD5 (a {PLAIN.B64} user-file entry),
 *     AUTH EXTERNAL (client certificate), AUTH GSSAPI (the full RFC 4752
 *     exchange), KPOP (krb5_sendauth AP-REQ, then USER/PASS), a realm
 *     password (kerberos verifier), and a wrong password for each password
 *     mechanism;
 *   gateway B (mapped login from a secrets file; verifiers userFile > http,
 *   the auth service guarded by a static X-Auth-Key header):
 *     USER/PASS with a mapped backend secret, AUTH PLAIN / APOP / CRAM-MD5
 *     answered by the service with backend credentials (Auth-User/Auth-Pass),
 *     wrong passwords, and backend refusals of a stale mapped secret and of a
 *     stale Auth-Pass;
 *   gateway C (passthrough, auth-plain): USER/PASS, AUTH LOGIN, a wrong
 *     password, and a front password the backend refuses;
 *   gateway D (master login, user-separator, a master password Dovecot
 *     refuses): the backend refusal path;
 *   gateway E (master login; OAUTHBEARER, XOAUTH2, SCRAM-SHA-256 and
 *   SCRAM-SHA-256-PLUS; auth.oauth pointing at a real token issuer on
 *   loopback, oauth2-mock-server; alice's user-file entry holds SCRAM keys):
 *     AUTH OAUTHBEARER and AUTH XOAUTH2 with a signed JWT as initial response
 *     and as continuation, refused tokens (expired, another audience) through
 *     the error challenge (`+ <JSON>`, `AQ==`, `-ERR [AUTH]`), AUTH
 *     SCRAM-SHA-256 (initial response and continuation) and
 *     SCRAM-SHA-256-PLUS (tls-exporter) computed by an independent client
 *     here (server signature checked), a wrong SCRAM password, and USER/PASS
 *     against the SCRAM entry.
 *
 * Then every gateway's raw log is searched for every secret in every form an
 * accident could produce: the text, JSON-escaped, \u-escaped, mis-decoded as
 * latin1, percent-escaped (nginx's Auth-Pass escaping too), base64 at all
 * three alignments (so a secret inside any base64 blob is found), hex; the
 * SASL messages the client and popgate sent (PLAIN `authz\0user\0pass`, LOGIN
 * lines, CRAM-MD5 responses, APOP digests), the GSSAPI tokens and the KPOP
 * AP-REQ (base64 and hex, head and middle), the service's keys from the
 * keytab, the TLS private key; every bearer token (the JWT in all the
 * forms above, each of its three parts, its signature's bytes and every
 * 24-character window of it, so a truncated token is found; the OAUTHBEARER
 * and XOAUTH2 messages), the SCRAM SaltedPassword, ClientKey, StoredKey,
 * ServerKey and ClientProof (base64 and hex), the client-final messages and
 * the user-file entry (its StoredKey / ServerKey are password-equivalent for
 * SCRAM). Every password-like secret also carries one random tag that must
 * not appear in the logs at all, nor may their common prefix (a truncated
 * secret); tokens and keys are random enough to be found as they are.
 */
import { createHash, createHmac, createPrivateKey, pbkdf2Sync, randomBytes, randomInt } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { OAuth2Server } from 'oauth2-mock-server';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apopDigest, cramMd5Digest } from '../../src/auth/challenge.js';
import { hashPassword } from '../../src/auth/password-hash.js';
import { kpopApReqFrame, kpopClientHello } from '../../src/kerberos/kpop-framing.js';
import { issueCert, makeTempTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { KPOP_LISTENER, masterLogin, startTestGateway, waitForLog, type LogRecord, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { apReqFromGssToken, GssClient, startKdc, type KdcInstance } from '../helpers/kdc.js';
import { LineClient } from '../helpers/line-client.js';
import { b64, createNeedleSet } from '../helpers/secret-needles.js';
import { freePort } from '../helpers/ports.js';
import { startAuthService, type AuthService } from '../helpers/nginx-auth.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

// ---------------------------------------------------------------------------
// The secrets. TAG is in every one of them and in nothing else.

const TAG = `Q${Array.from({ length: 11 }, () => String.fromCharCode(65 + randomInt(26))).join('')}`;
const secret = (what: string): string => `S3cr3t-${what}-${TAG}`;

const REALM = 'POPGATE.TEST';
const MASTER = { name: 'popgate', password: secret('master') };
/** Quotes, a backslash, a space, "%20" and a non-ASCII letter: every escaping makes a different string. */
const ALICE_FRONT = `S3cr3t-front "alice" \\ %20 \u00fc-${TAG}`;
const ALICE_KINIT = secret('kinit-alice');
const RITA_REALM = secret('realm-rita');
const KPOP_PASS = secret('kpop-pass');
const MIA_FRONT = secret('front-mia');
const MIA_BACKEND = secret('mapped-mia');
const MIA2_FRONT = secret('front-mia2');
const MAPPED_STALE = secret('mapped-stale');
/** A space and a "%": nginx's Auth-Pass escaping (%20, %25) changes it. */
const HENRY_FRONT = `S3cr3t http%henry ${TAG}`;
const HENRY_BACKEND = secret('http-backend-henry');
const HENRY2_FRONT = secret('front-henry2');
const HTTP_STALE = secret('http-backend-stale');
const IVY = secret('http-ivy');
const HTTP_KEY = secret('http-header-key');
const REDIS_PW = secret('redis');
const PAT = secret('passthrough-pat');
const PAT2_FRONT = secret('passthrough-stale');
const WRONG_MASTER = secret('wrong-master');
/** alice's password on gateway E, where her user-file entry holds SCRAM keys made from it. */
const SCRAM_PW = secret('scram-alice');
const WRONG = {
  user: secret('wrong-user'),
  plain: secret('wrong-plain'),
  login: secret('wrong-login'),
  apop: secret('wrong-apop'),
  cram: secret('wrong-cram'),
  realm: secret('wrong-realm'),
  mapped: secret('wrong-mapped'),
  http: `S3cr3t wrong%http ${TAG}`,
  passthrough: secret('wrong-passthrough'),
  scram: secret('wrong-scram'),
};
/** Dovecot's own passwords (popgate never needs most of them: master mode). */
const DOVECOT_USERS = [
  { name: 'alice', password: secret('dovecot-alice') },
  { name: 'rita', password: secret('dovecot-rita') },
  { name: 'legacy_mia', password: MIA_BACKEND },
  { name: 'henry', password: HENRY_BACKEND },
  { name: 'ivy', password: IVY },
  { name: 'pat', password: PAT },
  { name: 'pat2', password: secret('dovecot-pat2') },
];

// ---------------------------------------------------------------------------
// Needles: the forms a secret could take in a log line (test/helpers/secret-needles.ts).

const needles = createNeedleSet();
const { add, secretForms, tokenForms, plainMessageForms } = needles;

// ---------------------------------------------------------------------------
// Components

let work: string;
let pki: TestPki;
let aliceCert: TestCert;
let kdc: KdcInstance;
let dovecot: DovecotInstance;
let redis: TestRedis;
let svc: AuthService;
let aliceEnv: Record<string, string>;
let ga: TestGateway;
let gb: TestGateway;
let gc: TestGateway;
let gd: TestGateway;
let ge: TestGateway;
let issuer: OAuth2Server;
/** Gateway E's user-file entry for alice: `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`. */
let scramEntry: string;
const gateways: TestGateway[] = [];
const stopped = new Set<TestGateway>();

async function stopGateway(gw: TestGateway): Promise<void> {
  if (stopped.has(gw)) return;
  stopped.add(gw);
  await gw.stop();
}

function run(file: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

async function gateway(opts: Partial<TestGatewayOptions> & Pick<TestGatewayOptions, 'users' | 'login'>): Promise<TestGateway> {
  const gw = await startTestGateway({ backendPort: dovecot.port, certFile: pki.certFile, keyFile: pki.keyFile, ...opts });
  gateways.push(gw);
  return gw;
}

function portOf(gw: TestGateway, name: string): number {
  const l = gw.gateway.bound.find((b) => b.name === name);
  if (!l) throw new Error(`no listener ${name}`);
  return l.port;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-secrets-'));
  await mkdir(join(work, 'rcache'));
  const message = (user: string): Buffer => Buffer.from(`From: x@example.test\r\nSubject: for ${user}\r\n\r\nhello ${user}\r\n`);
  // A real token issuer on loopback (JWKS, discovery); its tokens name alice for audience popgate.
  issuer = new OAuth2Server();
  await issuer.issuer.keys.generate('RS256');
  const issuerPort = await freePort();
  issuer.issuer.url = `http://127.0.0.1:${issuerPort}`;
  await issuer.start(issuerPort, '127.0.0.1');
  scramEntry = await hashPassword(SCRAM_PW, { algorithm: 'scram-sha-256' });
  [pki, kdc, dovecot, redis, svc] = await Promise.all([
    makeTempTestPki('popgate-pki-secrets-'),
    startKdc({
      realm: REALM,
      principals: [
        { name: 'alice', password: ALICE_KINIT },
        { name: 'rita', password: RITA_REALM },
      ],
      services: ['pop/localhost'],
    }),
    startDovecot({
      users: DOVECOT_USERS,
      masterUser: MASTER,
      messages: Object.fromEntries(DOVECOT_USERS.map((u) => [u.name, [message(u.name)]])),
    }),
    startRedis(),
    startAuthService(work, 'secrets', [
      '--user', `henry=${HENRY_FRONT}`,
      '--login', `henry=henry:${HENRY_BACKEND}`,
      '--user', `henry2=${HENRY2_FRONT}`,
      '--login', `henry2=henry:${HTTP_STALE}`,
      // No --login: Auth-Pass is ivy's own secret (APOP/CRAM-MD5 need it back), also her Dovecot password.
      '--user', `ivy=${IVY}`,
      '--shared-secret', HTTP_KEY,
      '--fail-wait', '0',
    ]),
  ]);
  aliceCert = await issueCert(pki, { name: 'alice-client', cn: 'Alice Example', emails: ['alice@example.test'], eku: 'clientAuth' });
  const keytab = await kdc.keytab(join(work, 'pop.keytab'), [`pop/localhost@${REALM}`]);
  aliceEnv = { ...kdc.env, KRB5CCNAME: await kdc.kinit('alice', ALICE_KINIT, join(work, 'cc-alice')) };

  // Redis: popgate logs in as an ACL user with a password (the URL carries both).
  const admin = createClient({ url: redis.url });
  await admin.connect();
  try {
    await admin.sendCommand(['ACL', 'SETUSER', 'popgate', 'on', `>${REDIS_PW}`, '~*', '+@all']);
  } finally {
    await admin.close();
  }
  const redisUrl = `redis://popgate:${REDIS_PW}@127.0.0.1:${redis.port}`;

  // Internal credentials the gateway holds: the service keys in the keytab, the TLS private key.
  const klist = await run('/usr/bin/klist', ['-k', '-K', '-e', keytab], kdc.env);
  const keys = [...klist.matchAll(/\(0x([0-9a-f]+)\)/gi)].map((m) => Buffer.from(m[1]!, 'hex'));
  expect(keys.length, klist).toBeGreaterThan(0);
  keys.forEach((k, i) => tokenForms(`keytab key ${i}`, k));
  const d = createPrivateKey(readFileSync(pki.keyFile)).export({ format: 'jwk' }).d;
  tokenForms('TLS private key', Buffer.from(d!, 'base64url'));

  const tlsBlock = `tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile}, clientCertificates: { mode: optional, caFile: ${pki.caFile}, identity: san-email, stripDomain: true } }`;
  ga = await gateway({
    users: [],
    // {PLAIN.B64}: APOP and CRAM-MD5 need the secret; base64 because it has a space and quotes.
    files: { users: `alice:{PLAIN.B64}${b64(ALICE_FRONT)}\n` },
    login: masterLogin(MASTER),
    mechanisms: ['PLAIN', 'LOGIN', 'CRAM-MD5', 'EXTERNAL', 'GSSAPI'],
    verifiers: ['userFile', 'kerberos'],
    authExtra: ['apop: true'],
    throttle: `{ enabled: true, store: redis, redis: { url: "${redisUrl}" }, delays: [0s], maxFailures: 1000 }`,
    extraListeners: [KPOP_LISTENER, `{ name: t-ext, kind: pop3s, address: 127.0.0.1, port: 0, ${tlsBlock} }`],
    extra: `
kerberos:
  keytab: ${keytab}
  servicePrincipals: [pop/localhost@${REALM}]
  rcacheDir: ${join(work, 'rcache')}
  krb5Config: ${kdc.krb5Config}
  mapping: { realms: [${REALM}] }
`,
  });
  gb = await gateway({
    users: [
      { name: 'mia', password: MIA_FRONT },
      { name: 'mia2', password: MIA2_FRONT },
    ],
    files: { 'backend-secrets': `mia:legacy_mia:${MIA_BACKEND}\nmia2:legacy_mia:${MAPPED_STALE}\n` },
    login: '{ mode: mapped, method: auth-plain, secretsFile: backend-secrets }',
    mechanisms: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
    verifiers: ['userFile', 'http'],
    authExtra: ['apop: true', `http: { url: "${svc.url}", proxy: none, timeout: 5s, headers: { X-Auth-Key: "${HTTP_KEY}" } }`],
  });
  gc = await gateway({
    users: [
      { name: 'pat', password: PAT },
      { name: 'pat2', password: PAT2_FRONT },
    ],
    login: '{ mode: passthrough, method: auth-plain }',
  });
  gd = await gateway({
    users: [{ name: 'alice', password: ALICE_FRONT }],
    login: `{ mode: master, method: user-separator, user: ${MASTER.name}, password: ${WRONG_MASTER} }`,
  });

  ge = await gateway({
    users: [],
    files: { users: `alice:${scramEntry}\n` },
    login: masterLogin(MASTER),
    mechanisms: ['OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'],
    authExtra: [`oauth: { issuer: "${issuer.issuer.url}", audience: popgate }`],
  });

  // Needles for everything the test itself sends; the exchanges add theirs (digests, tokens).
  const plain: Array<[string, string]> = [
    ['master password', MASTER.password], ['alice front password', ALICE_FRONT], ['alice kinit password', ALICE_KINIT],
    ['rita realm password', RITA_REALM], ['KPOP PASS argument', KPOP_PASS], ['mia front password', MIA_FRONT],
    ['mia mapped backend secret', MIA_BACKEND], ['mia2 front password', MIA2_FRONT], ['stale mapped secret', MAPPED_STALE],
    ['henry front password', HENRY_FRONT], ['henry Auth-Pass', HENRY_BACKEND], ['henry2 front password', HENRY2_FRONT],
    ['stale Auth-Pass', HTTP_STALE], ['ivy secret / Auth-Pass', IVY], ['X-Auth-Key header', HTTP_KEY], ['redis password', REDIS_PW],
    ['pat passthrough password', PAT], ['pat2 front password', PAT2_FRONT], ['refused master password', WRONG_MASTER],
    ['alice SCRAM password', SCRAM_PW],
    ...Object.entries(WRONG).map(([k, v]): [string, string] => [`wrong ${k} password`, v]),
    ...DOVECOT_USERS.map((u): [string, string] => [`dovecot ${u.name} password`, u.password]),
  ];
  for (const [label, s] of plain) secretForms(label, s);
  add('redis URL', redisUrl);
  add('redis credentials as Basic auth', b64(`popgate:${REDIS_PW}`));
  add('user-file line', `alice:{PLAIN.B64}${b64(ALICE_FRONT)}`);
  // The SCRAM keys are password-equivalent (StoredKey verifies a proof, ServerKey signs as the server).
  add('SCRAM user-file line', `alice:${scramEntry}`);
  const [, , storedKey, serverKey] = scramEntry.replace(/^\{SCRAM-SHA-256\}/, '').split(',');
  for (const [label, key] of [['StoredKey', storedKey], ['ServerKey', serverKey]] as const) {
    add(`SCRAM ${label} of the user file (base64)`, key!);
    tokenForms(`SCRAM ${label} of the user file`, Buffer.from(key!, 'base64'));
  }
  plainMessageForms('popgate->Dovecot master', 'alice', MASTER.name, MASTER.password);
  plainMessageForms('popgate->Dovecot master', 'rita', MASTER.name, MASTER.password);
  for (const [user, pw] of [['legacy_mia', MIA_BACKEND], ['legacy_mia', MAPPED_STALE], ['pat', PAT], ['pat2', PAT2_FRONT]] as const) {
    plainMessageForms(`popgate->Dovecot ${user}`, '', user, pw);
    plainMessageForms(`popgate->Dovecot ${user}`, user, user, pw);
  }
  add('popgate->Dovecot PASS of the refused master login', `PASS ${WRONG_MASTER}`);
}, 120_000);

afterAll(async () => {
  for (const gw of gateways) await stopGateway(gw).catch(() => undefined);
  await svc?.stop();
  await issuer?.stop();
  await redis?.stop();
  await dovecot?.stop();
  await kdc?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Session helpers

async function pop3s(gw: TestGateway, port = gw.port('pop3s')): Promise<{ c: LineClient; greeting: string }> {
  const c = await LineClient.tls(port, pki.caFile);
  const greeting = await c.line();
  expect(greeting).toMatch(/^\+OK/);
  return { c, greeting };
}

/** After a login: STAT, RETR 1 (the user's message), QUIT, and the connection closes. */
async function mailbox(c: LineClient, mailboxUser: string): Promise<void> {
  expect(await c.cmd('STAT')).toMatch(/^\+OK [1-9]\d* \d+$/);
  const retr = await c.cmdMultiline('RETR 1');
  expect(retr.status).toMatch(/^\+OK/);
  expect(retr.body.toString('latin1')).toContain(`Subject: for ${mailboxUser}`);
  expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
  await c.closed();
}

function timestampOf(greeting: string): string {
  const ts = /(<[^<>]+>)$/.exec(greeting)?.[1];
  if (!ts) throw new Error(`no APOP timestamp in ${greeting}`);
  return ts;
}

async function userPass(c: LineClient, user: string, password: string): Promise<string> {
  expect(await c.cmd(`USER ${user}`)).toMatch(/^\+OK/);
  return c.cmd(`PASS ${password}`);
}

async function authPlain(c: LineClient, user: string, password: string, continuation = false): Promise<string> {
  plainMessageForms(`client ${user}`, '', user, password);
  const response = b64(`\0${user}\0${password}`);
  if (!continuation) return c.cmd(`AUTH PLAIN ${response}`);
  expect(await c.cmd('AUTH PLAIN')).toBe('+ ');
  return c.cmd(response);
}

async function authLogin(c: LineClient, user: string, password: string): Promise<string> {
  add(`client AUTH LOGIN password line for ${user}`, b64(password));
  expect(await c.cmd('AUTH LOGIN')).toMatch(/^\+ /);
  expect(await c.cmd(b64(user))).toMatch(/^\+ /);
  return c.cmd(b64(password));
}

async function apop(c: LineClient, greeting: string, user: string, password: string): Promise<string> {
  const digest = apopDigest(timestampOf(greeting), password);
  add(`APOP digest for ${user}`, digest);
  add(`APOP digest for ${user} (base64 of the hex)`, b64(digest));
  return c.cmd(`APOP ${user} ${digest}`);
}

async function cramMd5(c: LineClient, user: string, password: string): Promise<string> {
  const challenge = await c.cmd('AUTH CRAM-MD5');
  expect(challenge).toMatch(/^\+ \S+$/);
  const digest = cramMd5Digest(Buffer.from(challenge.slice(2), 'base64').toString('latin1'), password);
  const response = `${user} ${digest}`;
  add(`CRAM-MD5 digest for ${user}`, digest);
  add(`CRAM-MD5 response for ${user} (base64)`, b64(response));
  add(`CRAM-MD5 response for ${user} (text)`, response);
  return c.cmd(b64(response));
}

// ---- Bearer tokens (gateway E) ----------------------------------------------

/** A JWT of the loopback issuer for alice (audience popgate unless `aud`), with its needles. */
async function bearerToken(label: string, opts: { expiresIn?: number; aud?: string } = {}): Promise<string> {
  const token = await issuer.issuer.buildToken({
    scopesOrTransform: (_header, payload) => {
      payload.aud = opts.aud ?? 'popgate';
      payload.preferred_username = 'alice';
      // RS256 is deterministic: without a fresh jti, tokens built in the same second would be one token.
      payload.jti = randomBytes(12).toString('hex');
    },
    expiresIn: opts.expiresIn ?? 600,
  });
  const parts = token.split('.');
  expect(parts).toHaveLength(3);
  secretForms(`${label} token`, token);
  parts.forEach((part, i) => add(`${label} token part ${i + 1}`, part));
  add(`${label} token signature (base64)`, Buffer.from(parts[2]!, 'base64url').toString('base64'));
  // Any 32 characters of the signature hold one of these: a truncated token (its tail too) is found.
  const sig = parts[2]!;
  for (const i of [...Array.from({ length: Math.floor((sig.length - 24) / 8) + 1 }, (_, k) => k * 8), sig.length - 24]) {
    add(`${label} token signature (characters ${i}..${i + 24})`, sig.slice(i, i + 24));
  }
  tokenForms(`${label} token signature`, Buffer.from(parts[2]!, 'base64url'));
  return token;
}

function bearerMessage(mechanism: 'OAUTHBEARER' | 'XOAUTH2', token: string): string {
  return mechanism === 'OAUTHBEARER' ? `n,a=alice,\x01auth=Bearer ${token}\x01\x01` : `user=alice\x01auth=Bearer ${token}\x01\x01`;
}

/** AUTH OAUTHBEARER / XOAUTH2 with the token as initial response or after `+ `: the server's answer. */
async function authBearer(c: LineClient, mechanism: 'OAUTHBEARER' | 'XOAUTH2', token: string, continuation = false): Promise<string> {
  const message = b64(bearerMessage(mechanism, token));
  add(`client ${mechanism} message (base64)`, message);
  if (!continuation) return c.cmd(`AUTH ${mechanism} ${message}`);
  expect(await c.cmd(`AUTH ${mechanism}`)).toBe('+ ');
  return c.cmd(message);
}

/** A refused token: the error challenge (RFC 7628 3.2.2, JSON), the client's dummy `AQ==`, then the failure. */
async function refusedBearer(c: LineClient, mechanism: 'OAUTHBEARER' | 'XOAUTH2', token: string, continuation = false): Promise<string> {
  const challenge = await authBearer(c, mechanism, token, continuation);
  expect(challenge).toMatch(/^\+ \S+$/);
  const json = JSON.parse(Buffer.from(challenge.slice(2), 'base64').toString('utf8')) as Record<string, unknown>;
  expect(json.status).toMatch(/^(invalid_token|401)$/);
  return c.cmd('AQ==');
}

// ---- SCRAM-SHA-256 (gateway E): an independent client on node:crypto (RFC 5802 section 3) ----

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const hmac = (key: Buffer, s: string | Buffer): Buffer => createHmac('sha256', key).update(s).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ b[i]!));

interface ScramOptions {
  /** Send the client-first message after `+ ` instead of as the initial response. */
  readonly continuation?: boolean;
  /** SCRAM-SHA-256-PLUS bound to this TLS socket (tls-exporter, RFC 9266). */
  readonly plus?: TLSSocket;
}

/**
 * AUTH SCRAM-SHA-256[-PLUS] for `user`: client-first, server-first, client-final;
 * with the right password the server-final's `v=` is checked and the empty
 * answer sent. Returns the server's last line. Every derived secret becomes a needle.
 */
async function scram(c: LineClient, user: string, password: string, opts: ScramOptions = {}): Promise<string> {
  const mechanism = opts.plus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
  const gs2 = opts.plus ? 'p=tls-exporter,,' : 'n,,';
  const cbData = opts.plus ? opts.plus.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) : Buffer.alloc(0);
  const bare = `n=${user},r=${randomBytes(18).toString('base64')}`;
  let line: string;
  if (opts.continuation) {
    expect(await c.cmd(`AUTH ${mechanism}`)).toBe('+ ');
    line = await c.cmd(b64(gs2 + bare));
  } else {
    line = await c.cmd(`AUTH ${mechanism} ${b64(gs2 + bare)}`);
  }
  expect(line).toMatch(/^\+ \S+$/);
  const serverFirst = Buffer.from(line.slice(2), 'base64').toString('utf8');
  const f = Object.fromEntries(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)]));
  expect(f.r!.startsWith(bare.slice(bare.indexOf(',r=') + 3))).toBe(true);
  const salted = pbkdf2Sync(Buffer.from(password, 'utf8'), Buffer.from(f.s!, 'base64'), Number(f.i), 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  const storedKey = sha256(clientKey);
  const serverKey = hmac(salted, 'Server Key');
  const withoutProof = `c=${Buffer.concat([Buffer.from(gs2), cbData]).toString('base64')},r=${f.r!}`;
  const authMessage = `${bare},${serverFirst},${withoutProof}`;
  const proof = xor(clientKey, hmac(storedKey, authMessage));
  const clientFinal = `${withoutProof},p=${proof.toString('base64')}`;
  const label = `SCRAM ${mechanism} ${user} (${password === SCRAM_PW ? 'right' : 'wrong'} password)`;
  for (const [what, key] of [['SaltedPassword', salted], ['ClientKey', clientKey], ['StoredKey', storedKey], ['ServerKey', serverKey], ['ClientProof', proof]] as const) {
    add(`${label} ${what} (base64)`, key.toString('base64'));
    tokenForms(`${label} ${what}`, key);
  }
  add(`${label} client-final (text)`, clientFinal);
  add(`${label} client-final (base64)`, b64(clientFinal));
  add(`${label} proof attribute`, `p=${proof.toString('base64')}`);

  line = await c.cmd(b64(clientFinal));
  if (password !== SCRAM_PW) return line;
  // The keys the client derived are the user file's: the exchange really ran against the entry.
  expect(scramEntry).toContain(`,${storedKey.toString('base64')},${serverKey.toString('base64')}`);
  expect(line).toMatch(/^\+ \S+$/);
  expect(Buffer.from(line.slice(2), 'base64').toString('utf8')).toBe(`v=${hmac(serverKey, authMessage).toString('base64')}`);
  return c.cmd('');
}

/** POP3S on a TLS socket of our own (for the channel binding), read by a LineClient. */
async function pop3sSocket(gw: TestGateway): Promise<{ c: LineClient; socket: TLSSocket }> {
  const socket = tlsConnect({ host: '127.0.0.1', port: gw.port('pop3s'), ca: readFileSync(pki.caFile), servername: 'localhost' });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const c = LineClient.wrap(socket);
  expect(await c.line()).toMatch(/^\+OK/);
  return { c, socket };
}

/** Waits for one login record per `expected` entry ([outcome, mechanism, user, code]). */
async function expectLogins(gw: TestGateway, expected: ReadonlyArray<readonly [string, string, string, string?]>): Promise<void> {
  for (const [outcome, mechanism, user, code] of expected) {
    const want = expected.filter((e) => e[0] === outcome && e[1] === mechanism && e[2] === user && e[3] === code).length;
    const matching = (l: LogRecord): boolean =>
      l.event === 'login' && l.outcome === outcome && l.mechanism === mechanism && l.user === user && (code === undefined || l.code === code);
    await waitForLog(gw, () => gw.logs.filter(matching).length >= want);
    expect(gw.logs.filter(matching).length, `${outcome} ${mechanism} ${user}`).toBe(want);
  }
}

const OK = /^\+OK/;
const AUTH_ERR = /^-ERR \[AUTH\] /;
const PERM_ERR = /^-ERR \[SYS\/PERM\] /;

// ---------------------------------------------------------------------------

describe('gateway A: master login, user file + Kerberos realm, Redis throttle with credentials', () => {
  it('USER/PASS, AUTH PLAIN (initial response and continuation), AUTH LOGIN after STLS', async () => {
    let s = await pop3s(ga);
    expect(await userPass(s.c, 'alice', ALICE_FRONT)).toMatch(OK);
    await mailbox(s.c, 'alice');

    s = await pop3s(ga);
    expect(await authPlain(s.c, 'alice', ALICE_FRONT)).toMatch(OK);
    await mailbox(s.c, 'alice');

    s = await pop3s(ga);
    expect(await authPlain(s.c, 'alice', ALICE_FRONT, true)).toMatch(OK);
    await mailbox(s.c, 'alice');

    const c = await LineClient.plain(ga.port('pop3'));
    expect(await c.line()).toMatch(OK);
    expect(await c.cmd('STLS')).toMatch(OK);
    await c.startTls(pki.caFile);
    expect(await authLogin(c, 'alice', ALICE_FRONT)).toMatch(OK);
    await mailbox(c, 'alice');
  });

  it('credentials sent at the wrong moment: PASS after a blank, a SASL response with no exchange waiting', async () => {
    const stray = secret('stray-pass');
    const strayPlain = secret('stray-sasl');
    plainMessageForms('stray SASL response', '', 'alice', strayPlain);
    const s = await pop3s(ga);
    expect(await s.c.cmd(`USER alice`)).toMatch(OK);
    // Not PASS to the parser (a leading blank): refused, and must not be logged as typed.
    expect(await s.c.cmd(` PASS ${stray}`)).toMatch(/^-ERR /);
    // A mechanism popgate does not offer, then the client's response anyway.
    expect(await s.c.cmd('AUTH XOAUTH2')).toMatch(/^-ERR /);
    expect(await s.c.cmd(b64(`\0alice\0${strayPlain}`))).toMatch(/^-ERR /);
    expect(await s.c.cmd('QUIT')).toMatch(OK);
    // The QUIT reply came after the trace lines of every command before it.
    const raw = ga.rawLog();
    expect(raw).not.toContain(stray);
    expect(raw).not.toContain(strayPlain);
    expect(raw).not.toContain(b64(`\0alice\0${strayPlain}`).slice(0, 24));
    // They were logged, masked.
    expect(ga.logs.filter((l) => l.msg === 'client command' && /^\*\*\* \(\d+ bytes\)$/.test(String(l.cmd))).length).toBeGreaterThanOrEqual(2);
  });

  it('APOP and AUTH CRAM-MD5 against the {PLAIN.B64} entry', async () => {
    let s = await pop3s(ga);
    expect(await apop(s.c, s.greeting, 'alice', ALICE_FRONT)).toMatch(OK);
    await mailbox(s.c, 'alice');

    s = await pop3s(ga);
    expect(await cramMd5(s.c, 'alice', ALICE_FRONT)).toMatch(OK);
    await mailbox(s.c, 'alice');
  });

  it('AUTH EXTERNAL with a TLS client certificate', async () => {
    const c = await LineClient.connect({
      port: portOf(ga, 't-ext'),
      tls: { ca: readFileSync(pki.caFile), servername: 'localhost', cert: readFileSync(aliceCert.certFile), key: readFileSync(aliceCert.keyFile) },
    });
    expect(await c.line()).toMatch(OK);
    expect(await c.cmd('AUTH EXTERNAL =')).toMatch(OK);
    await mailbox(c, 'alice');
  });

  it('AUTH GSSAPI (full RFC 4752 exchange) and KPOP (AP-REQ, then USER/PASS)', async () => {
    const gss = GssClient.start(aliceEnv);
    try {
      const { c } = await pop3s(ga);
      const first = await gss.init(`pop/localhost@${REALM}`);
      tokenForms('GSSAPI initial token', first);
      tokenForms('GSSAPI AP-REQ', apReqFromGssToken(first));
      expect(await c.cmd('AUTH GSSAPI')).toBe('+ ');
      let line = await c.cmd(first.toString('base64'));
      let complete = false;
      let rounds = 0;
      while (line.startsWith('+ ') && rounds++ < 5) {
        const serverToken = Buffer.from(line.slice(2), 'base64');
        let reply: Buffer;
        if (!complete) {
          const next = await gss.step(serverToken);
          complete = next.complete;
          reply = next.token;
        } else {
          // RFC 4752 3.1: the wrapped security-layer offer; answer "no layer" + authzid alice.
          const offer = await gss.unwrap(serverToken);
          expect(offer.data[0]! & 1).toBe(1);
          reply = await gss.wrap(Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.from('alice')]));
        }
        if (reply.length >= 16) tokenForms(`GSSAPI client token ${rounds}`, reply);
        line = await c.cmd(reply.toString('base64'));
      }
      expect(complete).toBe(true);
      expect(line).toMatch(OK);
      await mailbox(c, 'alice');

      const token = await gss.init(`pop/localhost@${REALM}`, { mutual: false });
      const apReq = apReqFromGssToken(token);
      tokenForms('KPOP AP-REQ', apReq);
      const k = await LineClient.plain(ga.port('kpop'));
      k.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(apReq)]));
      // Version accepted (00), no AP-REP (00000000), then the POP3 greeting.
      expect(await k.readUntil(Buffer.from([0, 0, 0, 0, 0]))).toEqual(Buffer.from([0, 0, 0, 0, 0]));
      expect(await k.line()).toMatch(OK);
      expect(await userPass(k, 'alice', KPOP_PASS)).toMatch(OK);
      await mailbox(k, 'alice');
    } finally {
      gss.close();
    }
  });

  it('a realm password (kerberos verifier) for a user the user file does not know', async () => {
    const { c } = await pop3s(ga);
    expect(await userPass(c, 'rita', RITA_REALM)).toMatch(OK);
    await mailbox(c, 'rita');
  });

  it('wrong passwords in every password mechanism are refused with [AUTH]', async () => {
    let s = await pop3s(ga);
    expect(await userPass(s.c, 'alice', WRONG.user)).toMatch(AUTH_ERR);
    expect(await authPlain(s.c, 'alice', WRONG.plain)).toMatch(AUTH_ERR);
    expect(await authLogin(s.c, 'alice', WRONG.login)).toMatch(AUTH_ERR);
    s.c.destroy();
    s = await pop3s(ga);
    expect(await apop(s.c, s.greeting, 'alice', WRONG.apop)).toMatch(AUTH_ERR);
    expect(await cramMd5(s.c, 'alice', WRONG.cram)).toMatch(AUTH_ERR);
    expect(await userPass(s.c, 'rita', WRONG.realm)).toMatch(AUTH_ERR);
    s.c.destroy();

    await expectLogins(ga, [
      ['success', 'USER', 'alice'], ['success', 'PLAIN', 'alice'], ['success', 'PLAIN', 'alice'], ['success', 'LOGIN', 'alice'],
      ['success', 'APOP', 'alice'], ['success', 'CRAM-MD5', 'alice'], ['success', 'EXTERNAL', 'alice'],
      ['success', 'GSSAPI', 'alice'], ['success', 'KPOP', 'alice'], ['success', 'USER', 'rita'],
      ['failure', 'USER', 'alice', 'AUTH_FAILED'], ['failure', 'PLAIN', 'alice', 'AUTH_FAILED'], ['failure', 'LOGIN', 'alice', 'AUTH_FAILED'],
      ['failure', 'APOP', 'alice', 'AUTH_FAILED'], ['failure', 'CRAM-MD5', 'alice', 'AUTH_FAILED'], ['failure', 'USER', 'rita', 'AUTH_FAILED'],
    ]);
    // The throttle really talks to Redis as the ACL user (the credentials in the URL work).
    await waitForLog(ga, (l) => l.msg === 'login throttle: redis connection ready');
    const admin = createClient({ url: redis.url });
    await admin.connect();
    try {
      expect(await admin.keys('popgate:fail:*')).toEqual(expect.arrayContaining(['popgate:fail:user:rita']));
    } finally {
      await admin.close();
    }
  });
});

describe('gateway B: mapped backend secrets, and the auth service handing out backend credentials', () => {
  it('USER/PASS with a mapped backend secret (popgate logs in to Dovecot as legacy_mia with AUTH PLAIN)', async () => {
    const { c } = await pop3s(gb);
    expect(await userPass(c, 'mia', MIA_FRONT)).toMatch(OK);
    await mailbox(c, 'legacy_mia');
  });

  it('AUTH PLAIN, APOP and CRAM-MD5 answered by the service with Auth-User/Auth-Pass', async () => {
    let s = await pop3s(gb);
    expect(await authPlain(s.c, 'henry', HENRY_FRONT)).toMatch(OK);
    await mailbox(s.c, 'henry');

    s = await pop3s(gb);
    expect(await apop(s.c, s.greeting, 'ivy', IVY)).toMatch(OK);
    await mailbox(s.c, 'ivy');

    s = await pop3s(gb);
    expect(await cramMd5(s.c, 'ivy', IVY)).toMatch(OK);
    await mailbox(s.c, 'ivy');
    // The service saw the static header (it answers 403 without it).
    const asked = await svc.log();
    expect(asked.length).toBeGreaterThanOrEqual(3);
    expect(asked.every((q) => q.headers['X-Auth-Key'] === HTTP_KEY)).toBe(true);
  });

  it('wrong passwords, a stale mapped secret and a stale Auth-Pass', async () => {
    let s = await pop3s(gb);
    expect(await userPass(s.c, 'mia', WRONG.mapped)).toMatch(AUTH_ERR);
    s.c.destroy();
    s = await pop3s(gb);
    expect(await userPass(s.c, 'henry', WRONG.http)).toBe('-ERR [AUTH] Invalid login or password');
    s.c.destroy();
    s = await pop3s(gb);
    expect(await userPass(s.c, 'mia2', MIA2_FRONT)).toMatch(PERM_ERR);
    s.c.destroy();
    s = await pop3s(gb);
    expect(await userPass(s.c, 'henry2', HENRY2_FRONT)).toMatch(PERM_ERR);
    s.c.destroy();
    // A reload re-reads the user file and the mapped secrets (and logs about it).
    await gb.gateway.reload();

    await expectLogins(gb, [
      ['success', 'USER', 'mia'], ['success', 'PLAIN', 'henry'], ['success', 'APOP', 'ivy'], ['success', 'CRAM-MD5', 'ivy'],
      ['failure', 'USER', 'mia', 'AUTH_FAILED'], ['failure', 'USER', 'henry', 'AUTH_FAILED'],
      ['failure', 'USER', 'mia2', 'BACKEND_LOGIN_REJECTED'], ['failure', 'USER', 'henry2', 'BACKEND_LOGIN_REJECTED'],
    ]);
  });
});

describe('gateway C: passthrough (the client password goes on to the backend)', () => {
  it('USER/PASS and AUTH LOGIN; a wrong password; a password the backend refuses', async () => {
    let s = await pop3s(gc);
    expect(await userPass(s.c, 'pat', PAT)).toMatch(OK);
    await mailbox(s.c, 'pat');
    s = await pop3s(gc);
    expect(await authLogin(s.c, 'pat', PAT)).toMatch(OK);
    await mailbox(s.c, 'pat');
    s = await pop3s(gc);
    expect(await userPass(s.c, 'pat', WRONG.passthrough)).toMatch(AUTH_ERR);
    s.c.destroy();
    s = await pop3s(gc);
    expect(await userPass(s.c, 'pat2', PAT2_FRONT)).toMatch(PERM_ERR);
    s.c.destroy();
    await expectLogins(gc, [
      ['success', 'USER', 'pat'], ['success', 'LOGIN', 'pat'],
      ['failure', 'USER', 'pat', 'AUTH_FAILED'], ['failure', 'USER', 'pat2', 'BACKEND_LOGIN_REJECTED'],
    ]);
  });
});

describe('gateway D: a master password the backend refuses', () => {
  it('USER/PASS gets [SYS/PERM] (USER alice*popgate / PASS <master> refused by Dovecot)', async () => {
    const { c } = await pop3s(gd);
    expect(await userPass(c, 'alice', ALICE_FRONT)).toMatch(PERM_ERR);
    c.destroy();
    await expectLogins(gd, [['failure', 'USER', 'alice', 'BACKEND_LOGIN_REJECTED']]);
  });
});

describe('gateway E: OAUTHBEARER and XOAUTH2 against a real issuer, SCRAM-SHA-256[-PLUS] against user-file keys', () => {
  it('AUTH OAUTHBEARER and AUTH XOAUTH2 with a signed token, as initial response and as continuation', async () => {
    const { c } = await pop3s(ge);
    const capa = await c.cmdMultiline('CAPA');
    const sasl = capa.body.toString('latin1').split('\r\n').find((l) => l.startsWith('SASL '))?.split(' ') ?? [];
    expect(sasl).toEqual(expect.arrayContaining(['OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']));
    expect(await c.cmd('QUIT')).toMatch(OK);
    for (const mechanism of ['OAUTHBEARER', 'XOAUTH2'] as const) {
      for (const continuation of [false, true]) {
        const token = await bearerToken(`${mechanism} ${continuation ? 'continuation' : 'initial response'}`);
        // Past RFC 2449's 255 octets: allowed for AUTH because a bearer mechanism is offered.
        expect(`AUTH ${mechanism} ${b64(bearerMessage(mechanism, token))}`.length).toBeGreaterThan(700);
        const s = await pop3s(ge);
        expect(await authBearer(s.c, mechanism, token, continuation)).toMatch(OK);
        await mailbox(s.c, 'alice');
      }
    }
  });

  it('refused tokens (expired; another audience) get the error challenge, then [AUTH] after AQ==', async () => {
    let s = await pop3s(ge);
    expect(await refusedBearer(s.c, 'OAUTHBEARER', await bearerToken('expired OAUTHBEARER', { expiresIn: -600 }))).toMatch(AUTH_ERR);
    expect(await refusedBearer(s.c, 'XOAUTH2', await bearerToken('other-audience XOAUTH2', { aud: 'another-service' }), true)).toMatch(AUTH_ERR);
    s.c.destroy();
    s = await pop3s(ge);
    expect(await refusedBearer(s.c, 'XOAUTH2', await bearerToken('expired XOAUTH2', { expiresIn: -600 }))).toMatch(AUTH_ERR);
    expect(await refusedBearer(s.c, 'OAUTHBEARER', await bearerToken('other-audience OAUTHBEARER', { aud: 'another-service' }), true)).toMatch(AUTH_ERR);
    s.c.destroy();
  });

  it('AUTH SCRAM-SHA-256 (initial response, continuation) and SCRAM-SHA-256-PLUS, a wrong SCRAM password, USER/PASS against the SCRAM entry', async () => {
    let s = await pop3s(ge);
    expect(await scram(s.c, 'alice', SCRAM_PW)).toMatch(OK);
    await mailbox(s.c, 'alice');

    s = await pop3s(ge);
    expect(await scram(s.c, 'alice', SCRAM_PW, { continuation: true })).toMatch(OK);
    await mailbox(s.c, 'alice');

    const p = await pop3sSocket(ge);
    expect(p.socket.getProtocol()).toBe('TLSv1.3');
    expect(await scram(p.c, 'alice', SCRAM_PW, { plus: p.socket })).toMatch(OK);
    await mailbox(p.c, 'alice');

    s = await pop3s(ge);
    expect(await scram(s.c, 'alice', WRONG.scram)).toMatch(AUTH_ERR);
    s.c.destroy();

    s = await pop3s(ge);
    expect(await userPass(s.c, 'alice', SCRAM_PW)).toMatch(OK);
    await mailbox(s.c, 'alice');

    await expectLogins(ge, [
      ['success', 'OAUTHBEARER', 'alice'], ['success', 'OAUTHBEARER', 'alice'], ['success', 'XOAUTH2', 'alice'], ['success', 'XOAUTH2', 'alice'],
      ['failure', 'OAUTHBEARER', 'alice', 'AUTH_FAILED'], ['failure', 'OAUTHBEARER', 'alice', 'AUTH_FAILED'],
      ['failure', 'XOAUTH2', 'alice', 'AUTH_FAILED'], ['failure', 'XOAUTH2', 'alice', 'AUTH_FAILED'],
      ['success', 'SCRAM-SHA-256', 'alice'], ['success', 'SCRAM-SHA-256', 'alice'], ['success', 'SCRAM-SHA-256-PLUS', 'alice'],
      ['success', 'USER', 'alice'], ['failure', 'SCRAM-SHA-256', 'alice', 'AUTH_FAILED'],
    ]);
  });
});

// ---------------------------------------------------------------------------

describe('secrets', () => {
  it('no secret, in any form, appears in any log line of any gateway (trace level)', async () => {
    const all: Array<[string, TestGateway]> = [['A', ga], ['B', gb], ['C', gc], ['D', gd], ['E', ge]];
    for (const [, gw] of all) {
      // Every relayed session has ended (its end is logged), then the gateway stops (and logs that too).
      const successes = gw.logs.filter((l) => l.event === 'login' && l.outcome === 'success').length;
      await waitForLog(gw, () => gw.logs.filter((l) => l.event === 'session-end').length >= successes);
      await stopGateway(gw);
    }
    expect(needles.list.length).toBeGreaterThan(200);
    // The tag (in every secret) and the common prefix (a truncated secret) must not appear at all.
    const nets = [{ label: 'the secrets\' random tag', text: TAG }, { label: 'the secrets\' common prefix', text: 'S3cr3t' }];
    const hits: string[] = [];
    for (const [name, gw] of all) {
      const raw = gw.rawLog();
      // Trace lines were really written (the client commands, masked).
      expect(gw.logs.some((l) => l.level === 10 && l.msg === 'client command'), `gateway ${name} wrote no trace lines`).toBe(true);
      expect(raw).toContain('"cmd":"PASS ***"');
      hits.push(...needles.hits(`gateway ${name}`, raw, nets));
    }
    expect(hits).toEqual([]);
  });
});
