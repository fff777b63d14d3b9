/**
 * OAuth 2.0 bearer tokens and SCRAM, end to end: real clients through popgate
 * to a real Dovecot (popgate logs in there as its master user), tokens from a
 * real issuer on loopback (oauth2-mock-server: discovery, JWKS; RS256 keys).
 *
 * - curl `--oauth2-bearer` with AUTH=OAUTHBEARER and AUTH=XOAUTH2, and mpop
 *   `--auth=oauthbearer|xoauth2` with `--passwordeval`: every message
 *   byte-exact; the audit line names the mechanism, the user and the token's
 *   subject never the token.
 * - mpop `--auth=scram-sha-256` (GNU SASL's client) against a
 *   `{SCRAM-SHA-256}` user-file entry; SCRAM-SHA-256-PLUS with tls-exporter
 *   from a client in this file (its own TLS session's exporter), and the same
 *   proof bound to another session refused.
 * - Refusals: an expired token and a token for another audience get the RFC
 *   7628 error challenge, then `-ERR [AUTH]` after the client's `AQ==`; a token
 *   for alice used to ask for bob is refused; the issuer stopped gives
 *   `-ERR [SYS/TEMP]`; a wrong SCRAM password (mpop, and a scripted client) and
 *   a replayed client-final are refused with [AUTH]; each refusal is one
 *   `login` audit event with its reason.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/index.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { curlPop3 } from '../helpers/clients.js';
import { pop3Wire, startDovecot, TWO_USER_MAIL, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type LogRecord, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { lfShas, runMpop, sha256Hex } from '../helpers/mpop.js';
import { freePort } from '../helpers/ports.js';

const MASTER = { name: 'popgate', password: `master-${randomBytes(9).toString('hex')}` };
/** alice's SCRAM password at popgate (Dovecot knows only popgate's master user for her). */
const ALICE_SCRAM = `Alice-scram-${randomBytes(6).toString('hex')}`;
const MSGS = TWO_USER_MAIL;
const sha = sha256Hex;
const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const unb64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

let work: string;
let pki: TestPki;
let dovecot: DovecotInstance;
let issuer: OAuth2Server;
let gw: TestGateway;

/** A token from the issuer: for popgate (aud), naming `user`, valid 10 minutes unless `claims` say otherwise. */
function token(user: string, claims: Record<string, unknown> = {}, expiresIn = 600): Promise<string> {
  return issuer.issuer.buildToken({
    expiresIn,
    scopesOrTransform: (_header, payload) => {
      Object.assign(payload, { aud: 'popgate', preferred_username: user, sub: `sub-${user}` }, claims);
    },
  });
}

/** The login audit events of `mechanism` so far. */
function audits(mechanism: string): LogRecord[] {
  return gw.logs.filter((l) => l.event === 'login' && l.mechanism === mechanism);
}

async function audited(mechanism: string, outcome: 'success' | 'failure', before: number): Promise<LogRecord> {
  await waitForLog(gw, () => audits(mechanism).filter((l) => l.outcome === outcome).length > before);
  const recs = audits(mechanism).filter((l) => l.outcome === outcome);
  return recs[recs.length - 1]!;
}

/** POP3S to popgate; returns the client after the greeting. */
async function pop3s(): Promise<LineClient> {
  const c = await LineClient.connect({ port: gw.port('pop3s'), tls: { ca: readFileSync(pki.caFile), servername: 'localhost' } });
  expect(await c.line()).toMatch(/^\+OK/);
  return c;
}

/** An OAUTHBEARER client message (RFC 7628 3.1). */
const oauthbearer = (tok: string, authzid = ''): string => `n,${authzid ? `a=${authzid}` : ''},\x01host=localhost\x01port=995\x01auth=Bearer ${tok}\x01\x01`;

// ---------------------------------------------------------------- a SCRAM client of our own (RFC 5802)

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** The client side of one SCRAM-SHA-256 exchange; `binding` makes it -PLUS with tls-exporter data. */
function scramClient(user: string, password: string, binding?: Buffer): {
  first: Buffer;
  final(serverFirst: string): { message: Buffer; serverFinal: string };
} {
  const nonce = randomBytes(18).toString('base64');
  const gs2 = binding ? 'p=tls-exporter,,' : 'n,,';
  const bare = `n=${user},r=${nonce}`;
  return {
    first: Buffer.from(gs2 + bare),
    final(serverFirst) {
      const attrs = new Map(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      const salted = pbkdf2Sync(password, Buffer.from(attrs.get('s') ?? '', 'base64'), Number(attrs.get('i')), 32, 'sha256');
      const clientKey = hmac(salted, 'Client Key');
      const storedKey = createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=${b64(Buffer.concat([Buffer.from(gs2), binding ?? Buffer.alloc(0)]))},r=${attrs.get('r') ?? ''}`;
      const authMessage = `${bare},${serverFirst},${withoutProof}`;
      const signature = hmac(storedKey, authMessage);
      const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
      return {
        message: Buffer.from(`${withoutProof},p=${proof.toString('base64')}`),
        serverFinal: `v=${hmac(hmac(salted, 'Server Key'), authMessage).toString('base64')}`,
      };
    },
  };
}

/** A TLS connection of our own to popgate's POP3S listener, greeted; its exporter gives SCRAM-PLUS its binding. */
async function pop3sSocket(): Promise<{ c: LineClient; socket: TLSSocket }> {
  const socket = tlsConnect({ host: '127.0.0.1', port: gw.port('pop3s'), ca: readFileSync(pki.caFile), servername: 'localhost' });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const c = LineClient.wrap(socket);
  expect(await c.line()).toMatch(/^\+OK/);
  return { c, socket };
}

const exporter = (s: TLSSocket): Buffer => s.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));

// ---------------------------------------------------------------- setup

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-oauth-scram-'));
  pki = await makeTempTestPki('popgate-pki-oauth-');
  dovecot = await startDovecot({
    users: [
      { name: 'alice', password: `dovecot-${randomBytes(6).toString('hex')}` },
      { name: 'bob', password: `dovecot-${randomBytes(6).toString('hex')}` },
    ],
    masterUser: MASTER,
    messages: MSGS,
  });
  issuer = new OAuth2Server();
  await issuer.issuer.keys.generate('RS256');
  await issuer.start(await freePort('127.0.0.1'), '127.0.0.1');
  gw = await oauthGateway(['PLAIN', 'OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
}, 120_000);

/** popgate in front of Dovecot (master login) with alice's SCRAM entry, tokens checked against `issuerUrl` (default: the test issuer). */
async function oauthGateway(mechanisms: readonly string[], opts: { issuerUrl?: string; maxAuthAttempts?: number } = {}): Promise<TestGateway> {
  return startTestGateway({
    users: [
      { name: 'alice', password: ALICE_SCRAM, hash: await hashPassword(ALICE_SCRAM, { algorithm: 'scram-sha-256' }) },
      { name: 'bob', password: 'bob-front-pw' },
    ],
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    mechanisms,
    ...(opts.maxAuthAttempts !== undefined ? { maxAuthAttempts: opts.maxAuthAttempts } : {}),
    authExtra: [`oauth: { issuer: "${opts.issuerUrl ?? issuer.issuer.url}", audience: popgate, timeout: 2s }`],
  });
}

afterAll(async () => {
  await gw?.stop().catch(() => undefined);
  await issuer?.stop().catch(() => undefined);
  await dovecot?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------- OAuth

describe('OAuth bearer tokens with real clients', () => {
  // curl 7.88 takes OAUTHBEARER whenever the server offers it, AUTH=XOAUTH2 or not: its XOAUTH2 run
  // goes to a gateway offering only XOAUTH2.
  it.each(['OAUTHBEARER', 'XOAUTH2'] as const)('curl --oauth2-bearer with AUTH=%s RETRs every message byte-exact', async (mech) => {
    const target = mech === 'OAUTHBEARER' ? gw : await oauthGateway([mech]);
    try {
      const tok = await token('alice');
      for (const [i, msg] of MSGS.alice.entries()) {
        const r = await curlPop3({
          url: `pop3s://localhost:${target.port('pop3s')}/${i + 1}`,
          user: 'alice',
          password: '',
          caFile: pki.caFile,
          extra: ['--oauth2-bearer', tok, '--login-options', `AUTH=${mech}`],
        });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(sha(r.body)).toBe(sha(pop3Wire(msg)));
      }
      const rec = await waitForLog(target, (l) => l.event === 'login' && l.mechanism === mech && l.outcome === 'success');
      expect(rec.user).toBe('alice');
      expect(target.rawLog()).not.toContain(tok);
      expect(target.rawLog()).not.toContain(tok.split('.')[2]);
    } finally {
      if (target !== gw) await target.stop();
    }
  });

  it.each(['oauthbearer', 'xoauth2'])('mpop --auth=%s with --passwordeval fetches every message byte-exact', async (auth) => {
    const tok = await token('alice');
    const r = await runMpop(work, [
      '--host=localhost',
      `--port=${gw.port('pop3s')}`,
      '--tls=on',
      '--tls-starttls=off',
      `--tls-trust-file=${pki.caFile}`,
      `--auth=${auth}`,
      '--user=alice',
      `--passwordeval=echo ${tok}`,
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map((m) => sha(m)).sort()).toEqual(lfShas(MSGS.alice));
  });

  it('an expired token and one for another audience: the error challenge, AQ==, then -ERR [AUTH], audited with the reason', async () => {
    for (const [tok, reason] of [
      [await token('alice', {}, -120), 'expired'],
      [await token('alice', { aud: 'someone-else' }), 'audience'],
    ] as const) {
      const before = audits('OAUTHBEARER').filter((l) => l.outcome === 'failure').length;
      const c = await pop3s();
      try {
        const challenge = await c.cmd(`AUTH OAUTHBEARER ${b64(oauthbearer(tok))}`);
        expect(challenge).toMatch(/^\+ /);
        const json = JSON.parse(unb64(challenge.slice(2))) as Record<string, unknown>;
        expect(json['status']).toBe('invalid_token');
        expect(json['openid-configuration']).toBe(`${issuer.issuer.url}/.well-known/openid-configuration`);
        expect(await c.cmd('AQ==')).toMatch(/^-ERR \[AUTH\]/);
        // The session goes on: the client may try again.
        expect(await c.cmd('NOOP')).toMatch(/^\+OK/);
      } finally {
        c.destroy();
      }
      const rec = await audited('OAUTHBEARER', 'failure', before);
      expect(rec.reason).toBe(reason);
      expect(gw.rawLog()).not.toContain(tok);
    }
  });

  it('XOAUTH2 refusals carry Google’s error JSON', async () => {
    const c = await pop3s();
    try {
      const tok = await token('alice', {}, -120);
      const challenge = await c.cmd(`AUTH XOAUTH2 ${b64(`user=alice\x01auth=Bearer ${tok}\x01\x01`)}`);
      expect(JSON.parse(unb64(challenge.slice(2)))).toMatchObject({ status: '401', schemes: 'bearer' });
      expect(await c.cmd('')).toMatch(/^-ERR \[AUTH\]/);
    } finally {
      c.destroy();
    }
  });

  it('a token for alice cannot ask for bob (authzid), and a valid token logs in without one', async () => {
    const tok = await token('alice');
    const c = await pop3s();
    try {
      const refused = await c.cmd(`AUTH OAUTHBEARER ${b64(oauthbearer(tok, 'bob'))}`);
      expect(refused).toMatch(/^\+ /);
      expect(await c.cmd('AQ==')).toMatch(/^-ERR \[AUTH\]/);
      expect(await c.cmd(`AUTH OAUTHBEARER ${b64(oauthbearer(tok))}`)).toMatch(/^\+OK/);
      expect((await c.cmd('STAT')).startsWith(`+OK ${MSGS.alice.length} `)).toBe(true);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    } finally {
      c.destroy();
    }
    const refusal = audits('OAUTHBEARER').filter((l) => l.outcome === 'failure' && String(l.reason).startsWith('authzid'));
    expect(refusal.length).toBeGreaterThan(0);
  });

  it('an issuer that cannot be reached gives -ERR [SYS/TEMP], not counted as a failed attempt', async () => {
    // A gateway of its own whose issuer address has nothing listening (it never fetched keys).
    const dead = await oauthGateway(['OAUTHBEARER'], { issuerUrl: `http://127.0.0.1:${await freePort('127.0.0.1')}`, maxAuthAttempts: 2 });
    const tok = await token('alice');
    try {
      const c = await LineClient.connect({ port: dead.port('pop3s'), tls: { ca: readFileSync(pki.caFile), servername: 'localhost' } });
      try {
        expect(await c.line()).toMatch(/^\+OK/);
        // More tries than maxAttempts: [SYS/TEMP] spends none, so the connection stays open.
        for (let i = 0; i < 3; i++) expect(await c.cmd(`AUTH OAUTHBEARER ${b64(oauthbearer(tok))}`)).toMatch(/^-ERR \[SYS\/TEMP\]/);
        expect(await c.cmd('NOOP')).toMatch(/^\+OK/);
      } finally {
        c.destroy();
      }
      const rec = await waitForLog(dead, (l) => l.event === 'login' && l.mechanism === 'OAUTHBEARER');
      expect(String(rec.reason)).toMatch(/^issuer-unreachable|^jwks-unreachable|unreachable/);
      expect(dead.rawLog()).not.toContain(tok);
    } finally {
      await dead.stop();
    }
  });
});

// ---------------------------------------------------------------- SCRAM

describe('SCRAM-SHA-256 and -PLUS', () => {
  it('mpop --auth=scram-sha-256 (GNU SASL) fetches every message byte-exact; a wrong password is refused', async () => {
    const args = (password: string): string[] => [
      '--host=localhost',
      `--port=${gw.port('pop3s')}`,
      '--tls=on',
      '--tls-starttls=off',
      `--tls-trust-file=${pki.caFile}`,
      '--auth=scram-sha-256',
      '--user=alice',
      `--passwordeval=echo ${password}`,
    ];
    const before = audits('SCRAM-SHA-256').filter((l) => l.outcome === 'success').length;
    const r = await runMpop(work, args(ALICE_SCRAM));
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map((m) => sha(m)).sort()).toEqual(lfShas(MSGS.alice));
    expect((await audited('SCRAM-SHA-256', 'success', before)).user).toBe('alice');

    const failedBefore = audits('SCRAM-SHA-256').filter((l) => l.outcome === 'failure').length;
    const bad = await runMpop(work, args('not-the-password'));
    expect(bad.code, bad.out).not.toBe(0);
    expect(bad.messages).toEqual([]);
    expect((await audited('SCRAM-SHA-256', 'failure', failedBefore)).reason).toBe('scram: invalid-proof');
    expect(gw.rawLog()).not.toContain(ALICE_SCRAM);
  });

  it('SCRAM-SHA-256-PLUS with tls-exporter: the server signature checks out and the session relays', async () => {
    const { c, socket } = await pop3sSocket();
    try {
      const client = scramClient('alice', ALICE_SCRAM, exporter(socket));
      const first = await c.cmd(`AUTH SCRAM-SHA-256-PLUS ${b64(client.first)}`);
      expect(first).toMatch(/^\+ /);
      const { message, serverFinal } = client.final(unb64(first.slice(2)));
      const last = await c.cmd(b64(message));
      expect(unb64(last.slice(2))).toBe(serverFinal);
      expect(await c.cmd('')).toMatch(/^\+OK/);
      expect((await c.cmd('STAT')).startsWith(`+OK ${MSGS.alice.length} `)).toBe(true);
    } finally {
      c.destroy();
    }
  });

  it('refuses a proof bound to another TLS session, and a client-final replayed into a new exchange', async () => {
    const other = await pop3sSocket();
    const { c, socket } = await pop3sSocket();
    try {
      expect(exporter(other.socket).equals(exporter(socket))).toBe(false);
      // Bound to `other`'s channel, sent on this one.
      const wrong = scramClient('alice', ALICE_SCRAM, exporter(other.socket));
      const first = await c.cmd(`AUTH SCRAM-SHA-256-PLUS ${b64(wrong.first)}`);
      expect(await c.cmd(b64(wrong.final(unb64(first.slice(2))).message))).toMatch(/^-ERR \[AUTH\]/);

      // A whole honest exchange, then its client-final again in a fresh exchange: the server nonce differs.
      const honest = scramClient('alice', ALICE_SCRAM);
      const f1 = await c.cmd(`AUTH SCRAM-SHA-256 ${b64(honest.first)}`);
      const { message } = honest.final(unb64(f1.slice(2)));
      expect(await c.cmd('*')).toMatch(/^-ERR/);
      const f2 = await c.cmd(`AUTH SCRAM-SHA-256 ${b64(honest.first)}`);
      expect(f2).not.toBe(f1);
      expect(await c.cmd(b64(message))).toMatch(/^-ERR \[AUTH\]/);
    } finally {
      c.destroy();
      other.c.destroy();
    }
    const reasons = audits('SCRAM-SHA-256-PLUS').concat(audits('SCRAM-SHA-256')).map((l) => l.reason);
    expect(reasons).toContain('scram: channel-bindings-dont-match');
    expect(reasons).toContain('scram: nonce-mismatch');
  });

  it('an unknown user fails at the proof like a wrong password', async () => {
    const c = await pop3s();
    try {
      const client = scramClient('nobody', 'whatever');
      const first = await c.cmd(`AUTH SCRAM-SHA-256 ${b64(client.first)}`);
      expect(first).toMatch(/^\+ r=|^\+ /);
      expect(unb64(first.slice(2))).toMatch(/^r=[^,]+,s=[^,]+,i=\d+$/);
      expect(await c.cmd(b64(client.final(unb64(first.slice(2))).message))).toMatch(/^-ERR \[AUTH\]/);
    } finally {
      c.destroy();
    }
  });
});
