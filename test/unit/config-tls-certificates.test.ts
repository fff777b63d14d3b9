/**
 * listeners[].tls.certificates (several certificates chosen by SNI) in the
 * configuration: exactly one of the two forms (certFile/keyFile or
 * certificates), refused with a hint otherwise; and check-config's preflight
 * reading every pair, naming the pair that is wrong, and building the
 * listener's contexts as serve does.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfigFile } from '../../src/cli/startup-config.js';
import { issueCert, makeTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { issuesOf, MASTER_BACKEND, parseConfig } from '../helpers/config.js';

/** A config with one pop3s listener whose tls section is `tls` (a YAML flow map). */
const withTls = (tls: string): string => `
listeners:
  - { kind: pop3s, port: 995, tls: ${tls} }
auth: { userFile: /etc/popgate/users }
${MASTER_BACKEND}`;

describe('schema: tls.certificates or certFile/keyFile, exactly one', () => {
  it('takes a list of pairs, relative paths resolved', async () => {
    const cfg = await parseConfig(withTls('{ certificates: [{ certFile: rsa.pem, keyFile: rsa.key }, { certFile: /tls/ec.pem, keyFile: /tls/ec.key }] }'));
    expect(cfg.listeners[0]?.tls).toMatchObject({
      certificates: [
        { certFile: '/etc/popgate/rsa.pem', keyFile: '/etc/popgate/rsa.key' },
        { certFile: '/tls/ec.pem', keyFile: '/tls/ec.key' },
      ],
      minVersion: 'TLSv1.2',
    });
    expect(cfg.listeners[0]?.tls?.certFile).toBeUndefined();
  });

  it('keeps certFile/keyFile as they were', async () => {
    const cfg = await parseConfig(withTls('{ certFile: c.pem, keyFile: k.pem }'));
    expect(cfg.listeners[0]?.tls).toMatchObject({ certFile: '/etc/popgate/c.pem', keyFile: '/etc/popgate/k.pem' });
    expect(cfg.listeners[0]?.tls?.certificates).toBeUndefined();
  });

  it('refuses both forms together, with a hint', async () => {
    const issues = await issuesOf(withTls('{ certFile: c.pem, keyFile: k.pem, certificates: [{ certFile: a.pem, keyFile: a.key }] }'));
    expect(issues).toEqual([
      {
        path: 'listeners[0].tls.certificates',
        message: 'certificates replaces certFile and keyFile: give one form, not both',
        hint: expect.stringMatching(/certFile and keyFile for one certificate, or a certificates list/),
      },
    ]);
  });

  it('refuses neither form, with a hint', async () => {
    const issues = await issuesOf(withTls('{ minVersion: TLSv1.3 }'));
    expect(issues).toEqual([
      {
        path: 'listeners[0].tls',
        message: 'no certificate: certFile and keyFile, or certificates, are required',
        hint: expect.stringMatching(/docs\/sni\.md/),
      },
    ]);
  });

  it('refuses half a pair, an empty list, a pair without its key and a certificate listed twice', async () => {
    expect(await issuesOf(withTls('{ certFile: c.pem }'))).toEqual([{ path: 'listeners[0].tls.keyFile', message: 'required with certFile (expected string)' }]);
    expect(await issuesOf(withTls('{ keyFile: k.pem }'))).toEqual([{ path: 'listeners[0].tls.certFile', message: 'required with keyFile (expected string)' }]);
    expect(await issuesOf(withTls('{ certificates: [] }'))).toEqual([{ path: 'listeners[0].tls.certificates', message: 'at least one { certFile, keyFile } is required' }]);
    const noKey = await issuesOf(withTls('{ certificates: [{ certFile: a.pem }] }'));
    expect(noKey.map((i) => i.path)).toEqual(['listeners[0].tls.certificates[0].keyFile']);
    const twice = await issuesOf(withTls('{ certificates: [{ certFile: a.pem, keyFile: a.key }, { certFile: a.pem, keyFile: b.key }] }'));
    expect(twice).toEqual([{ path: 'listeners[0].tls.certificates[1]', message: 'duplicate certFile /etc/popgate/a.pem' }]);
  });
});

let dir: string;
let pki: TestPki;
let rsa: TestCert;
let ec: TestCert;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-sni-config-'));
  pki = await makeTestPki(join(dir, 'pki'));
  [rsa, ec] = await Promise.all([
    issueCert(pki, { name: 'rsa', dns: ['mail.example.test'], keyType: 'rsa' }),
    issueCert(pki, { name: 'ec', dns: ['mail.example.test', '*.example.test'] }),
  ]);
  await writeFile(join(dir, 'garbage.pem'), 'not a certificate\n');
  await writeFile(join(dir, 'users'), 'alice:{PLAIN}alice-secret\n');
}, 60_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function check(tls: string): Promise<Awaited<ReturnType<typeof checkConfigFile>>> {
  const file = join(dir, 'popgate.yaml');
  await writeFile(
    file,
    `
listeners:
  - { kind: pop3s, port: 995, tls: ${tls} }
auth: { userFile: users }
backend: { host: 127.0.0.1, login: { mode: passthrough } }
`,
  );
  return checkConfigFile(file, { env: {} });
}

describe('check-config: every pair of tls.certificates', () => {
  it('checks each certificate and key, with the names each one carries', async () => {
    const result = await check(`{ certificates: [{ certFile: ${rsa.certFile}, keyFile: ${rsa.keyFile} }, { certFile: ${ec.certFile}, keyFile: ${ec.keyFile} }] }`);
    expect(result.issues).toEqual([]);
    expect(result.checked.filter((c) => c.path.startsWith('listeners')).map((c) => [c.path, c.detail])).toEqual([
      ['listeners[0].tls.certificates[0].certFile', expect.stringMatching(/^certificate CN=mail\.example\.test for mail\.example\.test, valid until /)],
      ['listeners[0].tls.certificates[0].keyFile', 'private key (rsa) matching the certificate; TLS context built'],
      ['listeners[0].tls.certificates[1].certFile', expect.stringMatching(/^certificate CN=mail\.example\.test for mail\.example\.test, \*\.example\.test, valid until /)],
      ['listeners[0].tls.certificates[1].keyFile', 'private key (ec) matching the certificate; TLS context built'],
    ]);
  });

  it('names the pair that is wrong: a missing file, garbage, a key of another certificate', async () => {
    const result = await check(
      `{ certificates: [{ certFile: ${rsa.certFile}, keyFile: ${rsa.keyFile} }, { certFile: garbage.pem, keyFile: ${ec.keyFile} }, { certFile: ${ec.certFile}, keyFile: ${rsa.keyFile} }, { certFile: ${pki.certFile}, keyFile: no-such.key }] }`,
    );
    expect(result.config).toBeUndefined();
    const g = join(dir, 'garbage.pem');
    const missing = join(dir, 'no-such.key');
    expect(result.issues.map((i) => [i.path, i.message])).toEqual([
      ['listeners[0].tls.certificates[1].certFile', `certificate file ${g}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      ['listeners[0].tls.certificates[2].keyFile', `private key ${rsa.keyFile} does not match the certificate in ${ec.certFile}`],
      ['listeners[0].tls.certificates[3].keyFile', `cannot read private key file ${missing} (ENOENT)`],
    ]);
  });

  it('refuses both forms with the hint (check-config --schema-only as well)', async () => {
    const tls = `{ certFile: ${rsa.certFile}, keyFile: ${rsa.keyFile}, certificates: [{ certFile: ${ec.certFile}, keyFile: ${ec.keyFile} }] }`;
    for (const schemaOnly of [false, true]) {
      const file = join(dir, 'both.yaml');
      await writeFile(file, `listeners: [{ kind: pop3s, port: 995, tls: ${tls} }]\nauth: { userFile: users }\nbackend: { host: 127.0.0.1, login: { mode: passthrough } }\n`);
      const result = await checkConfigFile(file, { env: {}, schemaOnly });
      expect(result.issues).toEqual([expect.objectContaining({ path: 'listeners[0].tls.certificates', hint: expect.stringContaining('certificates list') })]);
    }
  });
});
