/**
 * The three internal-login modes against a real Dovecot: master (both
 * methods), mapped (secrets file, reloaded live) and passthrough; plus the
 * SASL LOGIN mechanism, QUIT+FIN half-close and the pre-auth timeout;
 * USER and PASS pipelined to Dovecot (it lists PIPELINING), seen by a relay
 * that records what popgate writes to it in each read.
 */
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { curlPop3, poplibFetch } from '../helpers/clients.js';
import { pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { closeServer, listenLoopback } from '../helpers/servers.js';
import { waitFor } from '../helpers/wait.js';

const MASTER = { name: 'gatekeeper', password: 'Master-Pw-7d1f' };
const BACKEND = [
  { name: 'alice', password: 'alice-backend-pw' },
  { name: 'legacy_bob', password: 'bob-backend-pw' },
  { name: 'quinn', password: 'quinn-same-pw' },
];
const MSG = {
  alice: Buffer.from('Subject: for alice\r\n\r\nhello alice\r\n'),
  bob: Buffer.from('Subject: for bob\r\n\r\nhello bob\r\n'),
  quinn: Buffer.from('Subject: for quinn\r\n\r\n.dot line\r\nhello quinn\r\n'),
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let pki: TestPki;
let dovecot: DovecotInstance;
const gateways: TestGateway[] = [];

async function gateway(
  login: string,
  files?: Record<string, string>,
  extra?: string,
  backendPort?: number,
  backendExtra?: string,
): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [
      { name: 'alice', password: 'alice-front' },
      { name: 'bob', password: 'bob-front' },
      { name: 'quinn', password: 'quinn-same-pw' },
      { name: 'zed', password: 'zed-front' },
    ],
    backendPort: backendPort ?? dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login,
    ...(backendExtra ? { backendExtra } : {}),
    ...(files ? { files } : {}),
    ...(extra ? { extra } : {}),
  });
  gateways.push(gw);
  return gw;
}

beforeAll(async () => {
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: BACKEND,
    masterUser: MASTER,
    messages: { alice: [MSG.alice], legacy_bob: [MSG.bob], quinn: [MSG.quinn] },
  });
});

afterAll(async () => {
  for (const gw of gateways) await gw.stop();
  await dovecot?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

describe('master mode', () => {
  it('user-separator method (USER alice*master) logs in as the user', async () => {
    const gw = await gateway(`{ mode: master, method: user-separator, user: ${MASTER.name}, password: ${MASTER.password} }`);
    const { result } = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile,
      user: 'alice', password: 'alice-front', retrieve: 'all',
    });
    expect(result.error).toBeNull();
    expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG.alice))]);
    expect(await dovecot.readLog()).toMatch(/master/i);
  });

  it('AUTH LOGIN from the client (curl) also works', async () => {
    const gw = await gateway(masterLogin(MASTER));
    const r = await curlPop3({
      url: `pop3s://localhost:${gw.port('pop3s')}/1`, user: 'alice', password: 'alice-front', caFile: pki.caFile,
      extra: ['--login-options', 'AUTH=LOGIN'],
    });
    expect(r.code).toBe(0);
    expect(r.body.equals(pop3Wire(MSG.alice))).toBe(true);
    await waitForLog(gw, (l) => l.event === 'login' && l.outcome === 'success' && l.mechanism === 'LOGIN');
  });
});

describe('mapped mode', () => {
  it('logs in with the mapped backend account, and picks up secrets file changes live', async () => {
    const secrets = 'alice:alice:alice-backend-pw\n# bob is a legacy account name\nbob:legacy_bob:bob-backend-pw\n';
    const gw = await gateway(`{ mode: mapped, method: user-pass, secretsFile: backend-secrets }`, { 'backend-secrets': secrets });
    const bob = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile,
      user: 'bob', password: 'bob-front', retrieve: 'all',
    });
    expect(bob.result.error).toBeNull();
    expect(bob.result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG.bob))]);

    // zed verifies at the gateway but has no backend account: permanent server-side problem.
    const zed = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile, user: 'zed', password: 'zed-front',
    });
    expect(zed.result.error).toMatch(/^-ERR \[SYS\/PERM\] /);
    await waitForLog(gw, (l) => l.event === 'login' && l.code === 'NO_BACKEND_CREDENTIALS');

    // Map zed onto quinn's account: the running gateway follows the file.
    await writeFile(join(gw.dir, 'backend-secrets'), `${secrets}zed:quinn:quinn-same-pw\n`);
    await waitForLog(gw, (l) => l.msg === 'backend secrets loaded' && l.entries === 3, 10_000);
    const zed2 = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile,
      user: 'zed', password: 'zed-front', retrieve: [1],
    });
    expect(zed2.result.error).toBeNull();
    expect(zed2.result.messages[0]?.sha256).toBe(sha(pop3Wire(MSG.quinn)));
    expect(gw.rawLog()).not.toContain('bob-backend-pw');
  });
});

describe('passthrough mode', () => {
  it('forwards the verified password to the backend', async () => {
    const gw = await gateway(`{ mode: passthrough, method: auth-plain }`);
    const { result } = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile,
      user: 'quinn', password: 'quinn-same-pw', retrieve: 'all',
    });
    expect(result.error).toBeNull();
    expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG.quinn))]);
    // A password the backend does not share is a backend refusal, not the user's fault.
    const alice = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile, user: 'alice', password: 'alice-front',
    });
    expect(alice.result.error).toMatch(/^-ERR \[SYS\/PERM\] /);
    expect(gw.rawLog()).not.toContain('quinn-same-pw');
  });
});

/**
 * A TCP relay in front of Dovecot recording, per connection, each chunk
 * popgate wrote as it was read (one write of a few lines on loopback is one read).
 */
async function recordingRelay(): Promise<{ port: number; reads: () => string[][]; close: () => Promise<void> }> {
  const links: string[][] = [];
  const sockets = new Set<Socket>();
  const server = createServer((front) => {
    const reads: string[] = [];
    links.push(reads);
    const back = connect(dovecot.port, '127.0.0.1');
    for (const s of [front, back]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        front.destroy();
        back.destroy();
      });
    }
    front.on('data', (c: Buffer) => {
      reads.push(c.toString('latin1'));
      back.write(c);
    });
    back.pipe(front);
  });
  const port = await listenLoopback(server);
  return { port, reads: () => links.map((l) => [...l]), close: () => closeServer(server, sockets) };
}

describe('pipelining (backend.pipelining)', () => {
  const login = async (gw: TestGateway): Promise<void> => {
    const { result } = await poplibFetch({
      host: '127.0.0.1', port: gw.port('pop3s'), mode: 'ssl', caFile: pki.caFile,
      user: 'quinn', password: 'quinn-same-pw', retrieve: 'all',
    });
    expect(result.error).toBeNull();
    expect(result.messages.map((m) => m.sha256)).toEqual([sha(pop3Wire(MSG.quinn))]);
  };
  const backendLogins = (gw: TestGateway): unknown[] =>
    gw.logs.filter((r) => r.msg === 'login succeeded').map((r) => (r as Record<string, unknown>).backendLogin);

  it('auto: CAPA once, then USER and PASS reach Dovecot in one write, and the mail comes', async () => {
    const relay = await recordingRelay();
    try {
      const gw = await gateway('{ mode: passthrough, method: user-pass }', undefined, undefined, relay.port);
      await login(gw);
      await login(gw);
      const [first, second] = relay.reads();
      // The first link asks CAPA, learns PIPELINING and already pipelines; the second does not ask.
      expect(first?.some((r) => r === 'CAPA\r\n')).toBe(true);
      expect(first?.filter((r) => /^USER quinn\r\nPASS /.test(r))).toHaveLength(1);
      expect(second?.some((r) => r.includes('CAPA'))).toBe(false);
      expect(second?.filter((r) => /^USER quinn\r\nPASS [^\r\n]*\r\n$/.test(r))).toHaveLength(1);
      await waitFor('two login lines', () => backendLogins(gw).length === 2);
      expect(backendLogins(gw)).toEqual(['user-pass-pipelined', 'user-pass-pipelined']);
    } finally {
      await relay.close();
    }
  });

  it('off: no CAPA, USER and then PASS after its answer', async () => {
    const relay = await recordingRelay();
    try {
      const gw = await gateway('{ mode: passthrough, method: user-pass }', undefined, undefined, relay.port, 'pipelining: off');
      await login(gw);
      const [only] = relay.reads();
      expect(only?.some((r) => r.includes('CAPA'))).toBe(false);
      const user = only?.findIndex((r) => r === 'USER quinn\r\n') ?? -1;
      expect(user).toBeGreaterThanOrEqual(0);
      expect(only?.[user + 1]).toMatch(/^PASS [^\r\n]*\r\n$/);
      await waitFor('the login line', () => backendLogins(gw).length === 1);
      expect(backendLogins(gw)).toEqual(['user-pass']);
    } finally {
      await relay.close();
    }
  });
});

describe('connection lifecycle', () => {
  it('QUIT followed at once by FIN still delivers the backend +OK and the deletion', async () => {
    const gw = await gateway(masterLogin(MASTER));
    await dovecot.deliver('alice', Buffer.from('Subject: delete me\r\n\r\nbye\r\n'));
    const before = (await dovecot.listMessages('alice')).length;
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send(`USER alice\r\nPASS alice-front\r\nDELE ${before}\r\nQUIT\r\n`);
    c.end(); // half-close right after QUIT
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.line()).toMatch(/^\+OK Logging out/);
    await c.closed();
    expect(await dovecot.listMessages('alice')).toHaveLength(before - 1);
  });

  it('a silent client is closed after the pre-auth timeout with a log line', async () => {
    const gw = await gateway(
      masterLogin(MASTER),
      undefined,
      'limits: { preAuthTimeout: 1s }',
    );
    const c = await LineClient.plain(gw.port('pop3'));
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.line(5_000)).toMatch(/^-ERR .*[Tt]imeout/);
    await c.closed();
    await waitForLog(gw, (l) => l.msg === 'closing connection' && l.reason === 'PREAUTH_TIMEOUT');
  });
});
