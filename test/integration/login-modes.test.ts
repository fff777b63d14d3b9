/**
 * The three internal-login modes against a real Dovecot: master (both
 * methods), mapped (secrets file, reloaded live) and passthrough; plus the
 * SASL LOGIN mechanism, QUIT+FIN half-close and the pre-auth timeout.
 */
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { curlPop3, poplibFetch } from '../helpers/clients.js';
import { pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin, startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';

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

async function gateway(login: string, files?: Record<string, string>, extra?: string): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [
      { name: 'alice', password: 'alice-front' },
      { name: 'bob', password: 'bob-front' },
      { name: 'quinn', password: 'quinn-same-pw' },
      { name: 'zed', password: 'zed-front' },
    ],
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login,
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
