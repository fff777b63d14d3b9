/**
 * src/server/doctor/tls.ts against certificates from the openssl test PKI:
 * a good chain, an incomplete one (leaf without its intermediate), one the
 * system store does not know, a wrong name, one expiring in 10 days, an
 * expired one (the check's `now` moved past its end: no sleeping), and key
 * files with loose modes.
 */
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListenerConfig } from '../../src/config/index.js';
import { checkChain, checkExpiry, checkKeyMode, checkListenerTls, checkNames, defaultTrustAnchors, trustAnchorsFromFile, type TrustAnchors } from '../../src/server/doctor/tls.js';
import { parsePemCertificates } from '../../src/server/preflight.js';
import { issueCert, issueIntermediateCa, makeTempTestPki, makeWrongNameCert, type TestCert, type TestPki } from '../helpers/certs.js';

const DAY = 86_400_000;
let pki: TestPki;
let trust: TrustAnchors;
let viaIntermediate: TestCert;
let fullChainFile: string;
let soon: TestCert;
let shortLived: TestCert;
let wrongName: TestCert;

async function certs(file: string) {
  const parsed = parsePemCertificates(await readFile(file));
  if ('problem' in parsed) throw new Error(parsed.problem);
  return parsed.certificates;
}

function listener(cert: TestCert): ListenerConfig {
  return { name: 'pop3s-995', kind: 'pop3s', port: 995, tls: { certFile: cert.certFile, keyFile: cert.keyFile } } as unknown as ListenerConfig;
}

beforeAll(async () => {
  pki = await makeTempTestPki('popgate-doctor-tls-');
  trust = await trustAnchorsFromFile(pki.caFile);
  const inter = await issueIntermediateCa(pki);
  viaIntermediate = await issueCert(inter, { name: 'via-intermediate', dns: ['mail.doctor.test'] });
  fullChainFile = join(pki.dir, 'full-chain.pem');
  await writeFile(fullChainFile, Buffer.concat([await readFile(viaIntermediate.certFile), await readFile(inter.caFile)]));
  soon = await issueCert(pki, { name: 'soon', dns: ['localhost'], days: 10 });
  shortLived = await issueCert(pki, { name: 'short-lived', dns: ['localhost'], days: 1 });
  wrongName = await makeWrongNameCert(pki);
  for (const c of [pki, viaIntermediate, soon, shortLived, wrongName]) await chmod(c.keyFile, 0o600);
}, 60_000);

afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

describe('certificate chain', () => {
  it('a leaf signed by the configured CA verifies against it, and says which trust it used', async () => {
    const r = checkChain('listeners[0]', await certs(pki.certFile), trust);
    expect(r.status).toBe('ok');
    expect(r.detail).toContain(`the CA file ${pki.caFile}`);
  });

  it('leaf + intermediate in certFile verify; the leaf alone is an incomplete chain with the fix', async () => {
    expect(checkChain('l', await certs(fullChainFile), trust)).toMatchObject({ status: 'ok', detail: expect.stringContaining('via "popgate test intermediate CA"') as unknown });
    const r = checkChain('l', await certs(viaIntermediate.certFile), trust);
    expect(r).toMatchObject({ status: 'fail', check: 'l certificate chain' });
    expect(r.detail).toMatch(/^incomplete: the issuer "popgate test intermediate CA" of "mail.doctor.test" is neither in certFile nor in the CA file/);
    expect(r.fix).toMatch(/append the intermediate/);
  });

  it('a private CA is not in the system store: the chain fails there and names the store', async () => {
    const r = checkChain('l', await certs(pki.certFile), defaultTrustAnchors());
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('the system CA store');
  });

  it('a self-signed certificate in certFile that nobody trusts fails', async () => {
    const r = checkChain('l', await certs(pki.caFile), await trustAnchorsFromFile(shortLived.certFile));
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringMatching(/self-signed "popgate test CA"/) as unknown });
  });
});

describe('certificate names', () => {
  it('covered names pass; a wrong-name certificate fails naming what it covers', async () => {
    expect(checkNames('l', (await certs(pki.certFile))[0]!, ['localhost', '127.0.0.1'], '--hostname')).toMatchObject({ status: 'ok', detail: 'covers localhost, 127.0.0.1 (from --hostname)' });
    const r = checkNames('l', (await certs(wrongName.certFile))[0]!, ['localhost'], '--hostname');
    expect(r.status).toBe('fail');
    expect(r.detail).toBe('does not cover localhost (from --hostname); it is for wrong-name.popgate.test');
    expect(r.fix).toContain('subjectAltName includes localhost');
  });

  it('without a name to check it warns and says how to give one', async () => {
    const r = checkNames('l', (await certs(pki.certFile))[0]!, [], 'kerberos.servicePrincipals');
    expect(r.status).toBe('warn');
    expect(r.fix).toContain('--hostname');
  });
});

describe('certificate expiry', () => {
  it('expiring in 10 days warns; far off passes', async () => {
    const r = checkExpiry('l', await certs(soon.certFile), Date.now());
    expect(r.status).toBe('warn');
    expect(r.detail).toMatch(/expires on \d{4}-\d\d-\d\d, in (9|10) days/);
    expect(checkExpiry('l', await certs(pki.certFile), Date.now()).status).toBe('ok');
  });

  it('past its end (the clock moved 3 days on) fails; before its start fails too', async () => {
    const c = await certs(shortLived.certFile);
    const r = checkExpiry('l', c, Date.now() + 3 * DAY);
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringMatching(/expired on/) as unknown, fix: expect.stringMatching(/renew/) as unknown });
    expect(checkExpiry('l', c, Date.now() - 3 * DAY).detail).toMatch(/not valid before/);
  });

  it('the warning threshold is 21 days: a 10-day certificate is ok with a 5-day threshold', async () => {
    expect(checkExpiry('l', await certs(soon.certFile), Date.now(), 5).status).toBe('ok');
  });
});

describe('key file mode', () => {
  it('0600 passes, 0640 warns, 0644 fails with chmod as the fix', async () => {
    const key = soon.keyFile;
    await chmod(key, 0o600);
    expect((await checkKeyMode('l', key)).status).toBe('ok');
    await chmod(key, 0o640);
    expect((await checkKeyMode('l', key)).status).toBe('warn');
    await chmod(key, 0o644);
    const r = await checkKeyMode('l', key);
    expect(r).toMatchObject({ status: 'fail', detail: `${key} is readable by every user (mode 0644)`, fix: `chmod 600 ${key} (or 640 with a group only popgate is in)` });
    await chmod(key, 0o600);
  });
});

describe('checkListenerTls', () => {
  it('a healthy listener: four ok lines', async () => {
    const rs = await checkListenerTls(listener(pki), 0, { now: Date.now(), trust, hostnames: ['localhost'], hostnameSource: '--hostname' });
    expect(rs.map((r) => [r.check, r.status])).toEqual([
      ['listeners[0] (pop3s-995) certificate chain', 'ok'],
      ['listeners[0] (pop3s-995) certificate names', 'ok'],
      ['listeners[0] (pop3s-995) certificate validity', 'ok'],
      ['listeners[0] (pop3s-995) key file permissions', 'ok'],
    ]);
  });

  it('several certificates (tls.certificates): each is checked, and a name counts as covered when one of them covers it', async () => {
    const several = {
      name: 'pop3s-995',
      kind: 'pop3s',
      port: 995,
      tls: { certificates: [{ certFile: pki.certFile, keyFile: pki.keyFile }, { certFile: soon.certFile, keyFile: soon.keyFile }, { certFile: wrongName.certFile, keyFile: wrongName.keyFile }] },
    } as unknown as ListenerConfig;
    const rs = await checkListenerTls(several, 0, { now: Date.now(), trust, hostnames: ['localhost'], hostnameSource: '--hostname' });
    const byCheck = new Map(rs.map((r) => [r.check, r.status]));
    expect(byCheck.get('listeners[0] (pop3s-995) certificates[0] certificate validity')).toBe('ok');
    expect(byCheck.get('listeners[0] (pop3s-995) certificates[1] certificate validity')).toBe('warn');
    expect(byCheck.get('listeners[0] (pop3s-995) certificates[2] key file permissions')).toBe('ok');
    expect(byCheck.get('listeners[0] (pop3s-995) certificate names')).toBe('ok');
    const uncovered = await checkListenerTls(several, 0, { now: Date.now(), trust, hostnames: ['localhost', 'nowhere.doctor.test'], hostnameSource: '--hostname' });
    expect(uncovered.at(-1)).toMatchObject({ status: 'fail', detail: expect.stringContaining('does not cover nowhere.doctor.test') as unknown });
  });

  it('a listener without TLS has no TLS checks; a missing certificate file fails', async () => {
    expect(await checkListenerTls({ name: 'p', kind: 'pop3', port: 110 } as unknown as ListenerConfig, 1, { now: 0, trust, hostnames: [], hostnameSource: '' })).toEqual([]);
    const rs = await checkListenerTls(listener({ ...pki, certFile: join(pki.dir, 'missing.pem') }), 0, { now: Date.now(), trust, hostnames: [], hostnameSource: '' });
    expect(rs[0]).toMatchObject({ status: 'fail', detail: expect.stringContaining('ENOENT') as unknown });
  });
});
