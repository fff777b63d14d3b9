/**
 * Kerberos operations: start-up checks with clear errors, keytab re-keying
 * and SIGHUP-style reload with a live session, and a KDC that never answers
 * (capped, timed out, and ticket logins still served meanwhile).
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kpopApReqFrame, kpopClientHello } from '../../src/kerberos/kpop-framing.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { KPOP_LISTENER, masterLogin, startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { apReqFromGssToken, gssInitialToken, startBlackHole, startKdc, type BlackHole, type KdcInstance } from '../helpers/kdc.js';
import { LineClient } from '../helpers/line-client.js';

const REALM = 'OPS.TEST';
const MASTER = { name: 'popgate', password: 'Ops-Master-Pw' };
const SERVICE = `pop/localhost@${REALM}`;

let kdc: KdcInstance;
let dovecot: DovecotInstance;
let pki: TestPki;
let work: string;
let daveEnv: Record<string, string>;

function kerberosYaml(o: { keytab?: string; rcacheDir?: string; krb5Config?: string; principals?: string[]; kdc?: string }): string {
  return `
kerberos:
  keytab: ${o.keytab ?? join(work, 'pop.keytab')}
  servicePrincipals: [${(o.principals ?? [SERVICE]).join(', ')}]
  rcacheDir: ${o.rcacheDir ?? join(work, 'rcache')}
  krb5Config: ${o.krb5Config ?? kdc.krb5Config}
  kdc: ${o.kdc ?? '{ maxConcurrent: 2, timeout: 5s, maxQueue: 10 }'}
  mapping: { realms: [${REALM}] }
`;
}

function gateway(extra: string, verifiers = ['kerberos']): Promise<TestGateway> {
  return startTestGateway({
    users: [],
    backendPort: dovecot.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: masterLogin(MASTER),
    extraListeners: [KPOP_LISTENER],
    mechanisms: ['PLAIN', 'LOGIN', 'GSSAPI'],
    verifiers,
    extra,
  });
}

/** A fresh ticket for the service, as a KPOP AP-REQ without mutual auth. */
async function apReq(): Promise<Buffer> {
  return apReqFromGssToken(await gssInitialToken(daveEnv, SERVICE, { mutual: false }));
}

/** KPOP login as dave; returns the session after `+OK Logged in`. */
async function kpopLogin(port: number): Promise<LineClient> {
  const c = await LineClient.plain(port);
  c.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(await apReq()), Buffer.from('USER dave\r\nPASS krb_ticket\r\n')]));
  expect(await c.readUntil(Buffer.from([0, 0, 0, 0, 0]))).toEqual(Buffer.from([0, 0, 0, 0, 0]));
  expect(await c.line()).toMatch(/^\+OK/);
  expect(await c.line()).toBe('+OK');
  expect(await c.line()).toMatch(/^\+OK Logged in/);
  return c;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'popgate-krbops-'));
  await mkdir(join(work, 'rcache'));
  kdc = await startKdc({ realm: REALM, principals: [{ name: 'dave', password: 'dave-realm-pw' }], services: ['pop/localhost'] });
  await kdc.keytab(join(work, 'pop.keytab'), [SERVICE]);
  daveEnv = { ...kdc.env, KRB5CCNAME: await kdc.kinit('dave', 'dave-realm-pw', join(work, 'cc-dave')) };
  pki = await makeTempTestPki();
  dovecot = await startDovecot({
    users: [{ name: 'dave', password: 'dovecot-dave' }],
    masterUser: MASTER,
    messages: { dave: [Buffer.from('Subject: ops\r\n\r\nops\r\n')] },
  });
}, 120_000);

afterAll(async () => {
  await dovecot?.stop();
  await kdc?.stop();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

describe('start-up checks', () => {
  it('refuses a missing replay cache directory, an unreadable keytab and a principal the keytab lacks', async () => {
    await expect(gateway(kerberosYaml({ rcacheDir: join(work, 'no-such-dir') }))).rejects.toThrow(
      /kerberos\.rcacheDir .*no-such-dir.*must exist/,
    );
    await expect(gateway(kerberosYaml({ keytab: join(work, 'missing.keytab') }))).rejects.toThrow(/kerberos\.keytab .*missing\.keytab/);
    await expect(gateway(kerberosYaml({ principals: [SERVICE, `pop/mail.example@${REALM}`] }))).rejects.toThrow(
      /kerberos\.keytab .*pop\/mail\.example/,
    );
  });

  it('popgate serve exits 78 (EX_CONFIG) with the reason, config path and file, on stderr', async () => {
    const file = join(work, 'bad.yaml');
    await writeFile(join(work, 'users'), '');
    await writeFile(
      file,
      `listeners: [{ kind: kpop, address: 127.0.0.1, port: 0 }]
auth: { userFile: users }
backend: { host: 127.0.0.1, port: ${dovecot.port}, login: { mode: master, user: x, password: y } }
${kerberosYaml({ keytab: join(work, 'missing.keytab') })}`,
    );
    const r = await runProgram(process.execPath, [resolve('dist/cli/main.js'), 'serve', '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/^ {2}kerberos\.keytab: cannot read keytab .*missing\.keytab/m);
  });
});

describe('keytab re-keying and reload', () => {
  it('a re-keyed keytab is used for new tickets at once; reload keeps live sessions', async () => {
    const gw = await gateway(kerberosYaml({}));
    try {
      const live = await kpopLogin(gw.port('kpop'));
      // Re-key the service and swap the keytab file atomically (as a k8s Secret update would).
      await kdc.kadmin(`cpw -randkey ${SERVICE}`);
      await kdc.keytab(join(work, 'pop.keytab.new'), [SERVICE]);
      await rename(join(work, 'pop.keytab.new'), join(work, 'pop.keytab'));
      // The client's cached ticket carries the old key: get a fresh one for the new key.
      daveEnv = { ...kdc.env, KRB5CCNAME: await kdc.kinit('dave', 'dave-realm-pw', join(work, 'cc-dave-2')) };
      await gw.gateway.reload();
      await waitForLog(gw, (l) => l.msg === 'kerberos keytab checked');
      const fresh = await kpopLogin(gw.port('kpop'));
      fresh.send('QUIT\r\n');
      expect(await fresh.line()).toMatch(/^\+OK/);
      // The session opened before the re-key and the reload is still relayed.
      live.send('STAT\r\n');
      expect(await live.line()).toMatch(/^\+OK 1 /);
      live.send('QUIT\r\n');
      expect(await live.line()).toMatch(/^\+OK/);
    } finally {
      await gw.stop();
    }
  });
});

describe('a KDC that never answers', () => {
  let hole: BlackHole;
  beforeAll(async () => {
    hole = await startBlackHole();
  });
  afterAll(async () => {
    await hole?.close();
  });

  it('password checks are capped and time out with [SYS/TEMP]; ticket logins are served meanwhile', async () => {
    const conf = join(work, 'krb5-blackhole.conf');
    await kdc.writeKrb5Config(conf);
    const { readFile } = await import('node:fs/promises');
    await writeFile(conf, (await readFile(conf, 'utf8')).replaceAll(`127.0.0.1:${kdc.port}`, hole.address));
    const gw = await gateway(kerberosYaml({ krb5Config: conf, kdc: '{ maxConcurrent: 1, timeout: 1500ms, maxQueue: 1 }' }));
    try {
      const attempts = await Promise.all(
        [0, 1, 2].map(async () => {
          const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
          expect(await c.line()).toMatch(/^\+OK/);
          c.send('USER dave\r\nPASS dave-realm-pw\r\n');
          expect(await c.line()).toBe('+OK');
          const reply = await c.line(15_000);
          c.destroy();
          return reply;
        }),
      );
      for (const reply of attempts) expect(reply).toMatch(/^-ERR \[SYS\/TEMP\] /);
      const reasons = gw.logs.filter((l) => l.code === 'VERIFIER_UNAVAILABLE').map((l) => String(l.reason));
      expect(reasons.some((r) => /timeout/.test(r))).toBe(true);
      expect(hole.hits).toBeGreaterThan(0);
      // The stuck KDC call holds at most maxConcurrent threads: tickets still verify.
      const c = await kpopLogin(gw.port('kpop'));
      c.send('QUIT\r\n');
      expect(await c.line()).toMatch(/^\+OK/);
    } finally {
      await gw.stop();
    }
  });
});
