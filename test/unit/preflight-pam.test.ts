import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, type PopgateConfig } from '../../src/config/index.js';
import { preflight } from '../../src/server/preflight.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-preflight-pam-'));
  await writeFile(join(dir, 'popgate'), 'auth required pam_unix.so\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = (auth: string): Promise<PopgateConfig> =>
  parseConfigText(
    `listeners:\n  - { kind: pop3, port: 110, allowPlaintextAuth: true }\nauth:\n${auth.replace(/^/gm, '  ')}\nbackend:\n  host: 127.0.0.1\n  login: { mode: master, user: popgate, password: s3cret }\n`,
    { baseDir: dir, env: {}, source: 'test.yaml' },
  );

describe('preflight: the PAM service file, and sections that do nothing', () => {
  it('is checked when the pam verifier is used, and only a warning when missing', async () => {
    const found = await preflight(await config('verifiers: [pam]'), { pamDirs: [dir] });
    expect(found.warnings).toEqual([]);
    expect(found.issues).toEqual([]);
    expect(found.checked).toContainEqual({ path: 'auth.verifiers', file: join(dir, 'popgate'), detail: 'PAM service popgate' });

    const missing = await preflight(await config('verifiers: [pam]\npam: { service: pop-mail }'), { pamDirs: [dir, join(dir, 'vendor')] });
    expect(missing.issues).toEqual([]);
    expect(missing.warnings).toHaveLength(1);
    expect(missing.warnings[0]).toMatchObject({ path: 'auth.pam.service' });
    expect(missing.warnings[0]?.message).toContain('"pop-mail" not found');
    expect(missing.warnings[0]?.hint).toContain(`${dir}/pop-mail`);
  });

  it('is not looked for without the pam verifier', async () => {
    const report = await preflight(await config('verifiers: [http]\nhttp: { url: http://127.0.0.1:9000/auth }'), { pamDirs: [join(dir, 'none')] });
    expect(report.warnings).toEqual([]);
  });

  it('an auth.pam section without the pam verifier is reported as doing nothing', async () => {
    const report = await preflight(await config('verifiers: [http]\nhttp: { url: http://127.0.0.1:9000/auth }\npam: { service: mail }'), { pamDirs: [dir] });
    expect(report.issues).toEqual([]);
    expect(report.warnings).toEqual([
      { path: 'auth.pam', message: 'configured but not used: auth.verifiers does not include pam', hint: 'add pam to auth.verifiers (e.g. verifiers: [http, pam]), or remove auth.pam' },
    ]);
  });

  it('an auth.oauth section without OAUTHBEARER or XOAUTH2 is reported as doing nothing', async () => {
    const oauth = 'oauth: { issuer: https://login.example.com, audience: popgate }';
    const unused = await preflight(await config(`verifiers: [http]\nhttp: { url: http://127.0.0.1:9000/auth }\n${oauth}`), { pamDirs: [dir] });
    expect(unused.warnings).toEqual([
      {
        path: 'auth.oauth',
        message: 'configured but not used: auth.mechanisms lists neither OAUTHBEARER nor XOAUTH2',
        hint: 'add them to auth.mechanisms (e.g. mechanisms: [PLAIN, LOGIN, OAUTHBEARER, XOAUTH2]), or remove auth.oauth',
      },
    ]);
    const used = await preflight(await config(`verifiers: [http]\nhttp: { url: http://127.0.0.1:9000/auth }\nmechanisms: [PLAIN, XOAUTH2]\n${oauth}`), { pamDirs: [dir] });
    expect(used.warnings).toEqual([]);
  });
});
