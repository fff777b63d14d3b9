/**
 * `popgate doctor`'s output and exit code (src/cli/doctor.ts), and the
 * service probes of src/server/doctor/services.ts against loopback HTTP
 * servers: an auth_http service that answers, one that is gone, an OAuth
 * issuer with discovery and JWKS, and one whose discovery names another
 * issuer.
 */
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exitCode, formatResults, runDoctor } from '../../src/cli/doctor.js';
import type { PopgateConfig } from '../../src/config/index.js';
import { clientHostnames } from '../../src/server/doctor/run.js';
import { checkAuthHttp, checkOauth } from '../../src/server/doctor/services.js';
import { fail, ok, warn } from '../../src/server/doctor/types.js';

const RESULTS = [
  ok('tls', 'listeners[0] (pop3s-995) certificate chain', 'verifies'),
  warn('tls', 'listeners[0] (pop3s-995) certificate validity', 'expires in 10 days', 'renew it'),
  fail('backend', '127.0.0.1:1 (backend) greeting', 'cannot connect: ECONNREFUSED', 'start the POP3 server'),
];

describe('output and exit code', () => {
  it('one line per check under its group, the fix under a failure or warning, a summary', () => {
    expect(formatResults(RESULTS)).toBe(
      [
        'tls',
        '  ✓ listeners[0] (pop3s-995) certificate chain: verifies',
        '  ! listeners[0] (pop3s-995) certificate validity: expires in 10 days',
        '      fix: renew it',
        '',
        'backend',
        '  ✗ 127.0.0.1:1 (backend) greeting: cannot connect: ECONNREFUSED',
        '      fix: start the POP3 server',
        '',
        '3 checks: 1 failed, 1 warnings',
        '',
      ].join('\n'),
    );
  });

  it('exit 1 with any ✗, 0 with only ✓ and !', () => {
    expect(exitCode(RESULTS)).toBe(1);
    expect(exitCode(RESULTS.slice(0, 2))).toBe(0);
    expect(exitCode([])).toBe(0);
  });

  it('a configuration that does not load: its problems on stderr, exit 78', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'popgate-doctor-cli-'));
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await writeFile(join(dir, 'bad.yaml'), 'listeners: []\n');
      expect(await runDoctor(join(dir, 'bad.yaml'))).toBe(78);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/invalid configuration/);
    } finally {
      stderr.mockRestore();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the names to check: --hostname, else the hosts of the Kerberos service principals', () => {
    const config = { kerberos: { servicePrincipals: ['pop/mail.example.com@EX.COM', 'pop/pop.example.com@EX.COM'] } } as unknown as PopgateConfig;
    expect(clientHostnames(config, ['a.example'])).toEqual({ names: ['a.example'], source: '--hostname' });
    expect(clientHostnames(config, [])).toEqual({ names: ['mail.example.com', 'pop.example.com'], source: 'kerberos.servicePrincipals' });
    expect(clientHostnames({} as PopgateConfig, []).names).toEqual([]);
  });
});

describe('service probes', () => {
  let server: Server;
  let base: string;
  const seen: { url: string; headers: Record<string, unknown> }[] = [];
  let issuerName = '';

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      if (req.url === '/auth') res.writeHead(200, { 'Auth-Status': 'Invalid login' }).end();
      else if (req.url === '/realm/.well-known/openid-configuration') res.writeHead(200).end(JSON.stringify({ issuer: issuerName, jwks_uri: `${base}/realm/jwks` }));
      else if (req.url === '/realm/jwks') res.writeHead(200).end(JSON.stringify({ keys: [{ kty: 'EC' }] }));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const authConfig = (url: string) => ({ auth: { verifiers: ['http'], http: { url, timeout: 2000, proxy: null } } }) as unknown as PopgateConfig;
  const oauthConfig = (issuer: string) => ({ auth: { oauth: { issuer, timeout: 2000 } } }) as unknown as PopgateConfig;

  it('auth_http: an answer without credentials passes (nothing Auth-* is sent); no answer fails', async () => {
    const [r] = await checkAuthHttp(authConfig(`${base}/auth?key=secret`));
    expect(r).toMatchObject({ status: 'ok', check: `auth_http service ${base}`, detail: 'answers HTTP 404 to a request without credentials' });
    const [r2] = await checkAuthHttp(authConfig(`${base}/auth`));
    expect(r2?.detail).toContain('(Auth-Status: Invalid login)');
    expect(seen.every((s) => Object.keys(s.headers).every((h) => !h.startsWith('auth-')))).toBe(true);
    const [dead] = await checkAuthHttp(authConfig('http://127.0.0.1:1/auth'));
    expect(dead).toMatchObject({ status: 'fail', detail: expect.stringContaining('ECONNREFUSED') as unknown, fix: 'start the auth service, or correct auth.http.url' });
  });

  it('oauth: discovery naming the issuer and a JWKS with keys pass; another issuer in discovery fails', async () => {
    issuerName = `${base}/realm`;
    const good = await checkOauth(oauthConfig(`${base}/realm`));
    expect(good.map((r) => r.status)).toEqual(['ok', 'ok']);
    expect(good[1]?.detail).toBe(`${base} serves 1 key`);
    issuerName = 'https://elsewhere.example';
    const bad = await checkOauth(oauthConfig(`${base}/realm`));
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ status: 'fail', detail: expect.stringContaining('names the issuer "https://elsewhere.example"') as unknown });
  });
});
