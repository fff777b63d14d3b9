/**
 * `popgate doctor`'s Kerberos group (src/server/doctor/kerberos.ts) against a
 * private MIT KDC (test/helpers/kdc.ts) with MIT's klist and kinit: a keytab
 * holding every service principal passes with its kvno and enctypes; a
 * principal missing from the keytab, a clock 400 s off (the check's clock
 * moved: no sleeping, no change to the host clock; ticket times have whole
 * seconds, so 399 to 401 s) and a missing replay cache
 * directory each fail with their own line. The built CLI shows the group.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/index.js';
import { parseConfigText } from '../../src/config/index.js';
import type { KerberosConfig } from '../../src/config/schema.js';
import { checkKerberos } from '../../src/server/doctor/kerberos.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { CLI } from '../helpers/cli-process.js';
import { runProgram } from '../helpers/clients.js';
import { startKdc, type KdcInstance } from '../helpers/kdc.js';

const REALM = 'DOCTOR.TEST';
const SERVICE = `pop/localhost@${REALM}`;
const MISSING = `pop/mail.doctor.test@${REALM}`;

let dir: string;
let kdc: KdcInstance;
let keytab: string;
let rcache: string;
let pki: TestPki;

function yaml(principals: string[], rcacheDir = rcache): string {
  return `
listeners:
  - kind: pop3s
    port: 0
    tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} }
auth:
  userFile: ${join(dir, 'users')}
backend:
  host: 127.0.0.1
  port: 1
  login: { mode: master, user: m, password: p }
kerberos:
  keytab: ${keytab}
  servicePrincipals: [${principals.join(', ')}]
  rcacheDir: ${rcacheDir}
  krb5Config: ${kdc.krb5Config}
  mapping: { realms: [${REALM}] }
`;
}

async function kerberosConfig(principals: string[], rcacheDir = rcache): Promise<KerberosConfig> {
  const config = await parseConfigText(yaml(principals, rcacheDir), { baseDir: dir, env: {}, source: 'doctor.yaml' });
  if (config.kerberos === undefined) throw new Error('no kerberos section');
  return config.kerberos;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-doctor-krb-'));
  kdc = await startKdc({ realm: REALM, services: ['pop/localhost', 'pop/mail.doctor.test'] });
  keytab = await kdc.keytab(join(dir, 'pop.keytab'), [SERVICE]);
  rcache = join(dir, 'rcache');
  await mkdir(rcache);
  pki = await makeTestPki(join(dir, 'pki'));
  await chmod(pki.keyFile, 0o600);
  await writeFile(join(dir, 'users'), `alice:${await hashPassword('pw', { scryptLogN: 10 })}\n`);
}, 60_000);

afterAll(async () => {
  await kdc?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('doctor: kerberos', () => {
  it('a keytab with every principal, a KDC that answers, a close clock, a writable replay cache: all ok', async () => {
    const rs = await checkKerberos(await kerberosConfig([SERVICE]), { now: Date.now });
    expect(rs.map((r) => [r.check, r.status])).toEqual([
      [`keytab key for ${SERVICE}`, 'ok'],
      [`KDC answers for ${SERVICE}`, 'ok'],
      ['clock skew', 'ok'],
      ['replay cache directory', 'ok'],
    ]);
    expect(rs[0]?.detail).toMatch(/^kvno \d+: .*aes256-cts/);
    expect(rs[2]?.detail).toMatch(/^this host is \d+ s (behind|ahead of) the KDC \(limit 300 s\)$/);
  });

  it('a service principal missing from the keytab: ✗ with the ktadd fix', async () => {
    const rs = await checkKerberos(await kerberosConfig([SERVICE, MISSING]), { now: Date.now });
    const missing = rs.find((r) => r.check === `keytab key for ${MISSING}`);
    expect(missing).toMatchObject({ status: 'fail', detail: `not in ${keytab}`, fix: `export its key into the keytab: kadmin -q "ktadd -k ${keytab} ${MISSING}"` });
  });

  it('a clock 400 s behind the KDC: the skew line fails', async () => {
    const rs = await checkKerberos(await kerberosConfig([SERVICE]), { now: () => Date.now() - 400_000 });
    expect(rs.find((r) => r.check === 'clock skew')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^this host is (399|40\d) s behind the KDC/) as unknown });
  });

  it('a missing replay cache directory fails', async () => {
    const rs = await checkKerberos(await kerberosConfig([SERVICE], join(dir, 'no-such-dir')), { now: Date.now });
    expect(rs.find((r) => r.check === 'replay cache directory')).toMatchObject({ status: 'fail', detail: expect.stringContaining('ENOENT') as unknown });
  });

  it('the CLI: the kerberos group follows the others, and the certificate names come from the service principals', async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npx tsc -p tsconfig.build.json" first`);
    const file = join(dir, 'doctor.yaml');
    await writeFile(file, yaml([SERVICE]));
    const r = await runProgram(process.execPath, [CLI, 'doctor', '--config', file, '--ca-file', pki.caFile], { timeoutMs: 30_000 });
    expect(r.stdout).toMatch(/\nkerberos\n {2}✓ keytab key for pop\/localhost@DOCTOR\.TEST: kvno/);
    expect(r.stdout).toContain('certificate names: covers localhost (from kerberos.servicePrincipals)');
    // backend port 1 is dead: exit 1.
    expect(r.code, r.stdout).toBe(1);
  });
});
