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
import { judgeCluster, judgeSentinels } from '../../src/server/doctor/redis.js';
import { proxyAnswered, proxyFix, wayShown } from '../../src/server/doctor/services.js';
import { fail, ok, warn } from '../../src/server/doctor/types.js';
import { startRecordingProxy } from '../helpers/http-proxy.js';

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

  const authConfig = (url: string, proxy: string | null = null) => ({ auth: { verifiers: ['http'], http: { url, timeout: 2000, proxy } } }) as unknown as PopgateConfig;
  const oauthConfig = (issuer: string, proxy: string | null = null) => ({ auth: { oauth: { issuer, timeout: 2000, proxy } } }) as unknown as PopgateConfig;

  it('auth_http: a user:password@ in the URL is not sent either', async () => {
    const before = seen.length;
    const [r] = await checkAuthHttp(authConfig(`${base.replace('//', '//svc:secret@')}/auth`), {});
    expect(r).toMatchObject({ status: 'ok', check: `auth_http service ${base}` });
    expect(seen.slice(before).map((s) => s.headers.authorization)).toEqual([undefined]);
  });

  it('an http:// service through a proxy: absolute-form through it, said in the detail; NO_PROXY goes direct', async () => {
    const proxy = await startRecordingProxy();
    try {
      const [r] = await checkAuthHttp(authConfig(`${base}/auth`, proxy.url), {});
      expect(r).toMatchObject({ status: 'ok', detail: `answers HTTP 200 (Auth-Status: Invalid login) to a request without credentials (through proxy ${proxy.url} (auth.http.proxy))` });
      expect(proxy.requests.map((q) => `${q.method} ${q.target}`)).toEqual([`GET ${base}/auth`]);
      const env = { http_proxy: proxy.url, no_proxy: '127.0.0.1' };
      const [direct] = await checkAuthHttp(authConfig(`${base}/auth`), env);
      expect(direct?.detail).toMatch(/\(direct\)$/);
      issuerName = `${base}/realm`;
      const viaEnv = await checkOauth(oauthConfig(`${base}/realm`), { HTTP_PROXY: proxy.url });
      expect(viaEnv.map((x) => x.detail)).toEqual([
        `${base}/realm/.well-known/openid-configuration names ${base}/realm and its JWKS ${base}/realm/jwks (through proxy ${proxy.url} (HTTP_PROXY from the environment, auth.oauth.proxy being null))`,
        `${base} serves 1 key (through proxy ${proxy.url} (HTTP_PROXY from the environment, auth.oauth.proxy being null))`,
      ]);
      expect(proxy.requests).toHaveLength(3);
    } finally {
      await proxy.close();
    }
  });

  it('a proxy that is down: ✗ naming the proxy and its setting', async () => {
    const [r] = await checkAuthHttp(authConfig(`${base}/auth`, 'http://127.0.0.1:1'), {});
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringMatching(/the proxy http:\/\/127\.0\.0\.1:1 does not answer: .*ECONNREFUSED/) as unknown });
    expect(r?.fix).toMatch(/^start the proxy http:\/\/127\.0\.0\.1:1 and let it through to 127\.0\.0\.1:\d+, or correct auth\.http\.proxy/);
    const [o] = await checkOauth(oauthConfig(`${base}/realm`), { HTTP_PROXY: 'http://127.0.0.1:1' });
    expect(o).toMatchObject({ status: 'fail', check: 'oauth issuer discovery' });
    expect(o?.fix).toContain('auth.oauth.proxy (null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment');
    const [bad] = await checkAuthHttp(authConfig(`${base}/auth`), { http_proxy: 'socks5://127.0.0.1:1080' });
    expect(bad).toMatchObject({ status: 'fail', detail: expect.stringContaining('unsupported proxy scheme') as unknown, fix: expect.stringContaining('auth.http.proxy') as unknown });
  });

  it('auth_http: an answer without credentials passes (nothing Auth-* is sent); no answer fails', async () => {
    const [r] = await checkAuthHttp(authConfig(`${base}/auth?key=secret`), {});
    expect(r).toMatchObject({ status: 'ok', check: `auth_http service ${base}`, detail: 'answers HTTP 404 to a request without credentials (direct)' });
    const [r2] = await checkAuthHttp(authConfig(`${base}/auth`), {});
    expect(r2?.detail).toContain('(Auth-Status: Invalid login)');
    expect(seen.every((s) => Object.keys(s.headers).every((h) => !h.startsWith('auth-')))).toBe(true);
    const [dead] = await checkAuthHttp(authConfig('http://127.0.0.1:1/auth'), {});
    expect(dead).toMatchObject({ status: 'fail', detail: expect.stringContaining('ECONNREFUSED') as unknown, fix: 'start the auth service, or correct auth.http.url' });
  });

  it('oauth: discovery naming the issuer and a JWKS with keys pass; another issuer in discovery fails', async () => {
    issuerName = `${base}/realm`;
    const good = await checkOauth(oauthConfig(`${base}/realm`), {});
    expect(good.map((r) => r.status)).toEqual(['ok', 'ok']);
    expect(good[1]?.detail).toBe(`${base} serves 1 key (direct)`);
    issuerName = 'https://elsewhere.example';
    const bad = await checkOauth(oauthConfig(`${base}/realm`), {});
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ status: 'fail', detail: expect.stringContaining('names the issuer "https://elsewhere.example"') as unknown });
  });
});

describe('pure parts of the service probes', () => {
  it('the way a probe goes, and the fix when the proxy fails', () => {
    const target = new URL('https://auth.example:8443/x');
    expect(wayShown(target, null, { name: 'auth.http.proxy', setting: null })).toBe('direct');
    expect(wayShown(target, new URL('http://proxy:3128'), { name: 'auth.http.proxy', setting: 'http://proxy:3128' })).toBe('through proxy http://proxy:3128 (auth.http.proxy)');
    expect(wayShown(target, new URL('http://proxy:3128'), { name: 'auth.oauth.proxy', setting: null })).toBe(
      'through proxy http://proxy:3128 (HTTPS_PROXY from the environment, auth.oauth.proxy being null)',
    );
    expect(proxyFix({ name: 'auth.http.proxy', setting: 'http://proxy:3128' }, 'http://proxy:3128', new URL('https://auth.example/x'))).toBe(
      'start the proxy http://proxy:3128 and let it through to auth.example:443, or correct auth.http.proxy (none: direct; null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment)',
    );
    expect(proxyAnswered('proxy-http', 502)).toBe(true);
    expect(proxyAnswered('proxy-http', 401)).toBe(false);
    expect(proxyAnswered('direct-http', 502)).toBe(false);
  });

  it('sentinels: all naming one master ok, one silent or a split a warning, none a failure', () => {
    const a = { sentinel: 'h:1', master: 'm:6379' };
    const b = { sentinel: 'h:2', master: 'm:6379' };
    expect(judgeSentinels('pg', [a, b])).toEqual({ status: 'ok', master: 'm:6379', detail: '2 of 2 sentinels answered (h:1, h:2), naming master m:6379' });
    expect(judgeSentinels('pg', [a, { sentinel: 'h:3', error: 'ECONNREFUSED' }, b])).toEqual({
      status: 'warn',
      master: 'm:6379',
      detail: '2 of 3 sentinels answered (h:1, h:2), naming master m:6379; h:3: ECONNREFUSED',
    });
    expect(judgeSentinels('pg', [{ sentinel: 'h:1', master: 'old:1' }, a, b])).toEqual({
      status: 'warn',
      master: 'm:6379',
      detail: '3 of 3 sentinels answered and disagree: h:1 names old:1; h:1, h:2 name m:6379',
    });
    expect(judgeSentinels('pg', [{ sentinel: 'h:1', error: 'ECONNREFUSED' }, { sentinel: 'h:2', error: 'does not know pg' }])).toEqual({
      status: 'fail',
      detail: 'no sentinel names a master for pg (h:1: ECONNREFUSED; h:2: does not know pg)',
    });
  });

  it('cluster: cluster_state:ok passes, another state fails naming it, no answer fails', () => {
    const okInfo = 'cluster_state:ok\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:3\r\n';
    expect(judgeCluster([{ node: 'a:1', info: okInfo }])).toEqual({ status: 'ok', detail: 'cluster_state:ok at a:1 (3 known nodes, 16384 of 16384 slots ok)' });
    expect(judgeCluster([{ node: 'a:1', info: okInfo }, { node: 'b:2', error: 'ECONNREFUSED' }]).status).toBe('warn');
    expect(judgeCluster([{ node: 'a:1', info: 'cluster_state:fail\r\ncluster_slots_ok:10923\r\n' }, { node: 'b:2', error: 'ECONNREFUSED' }])).toEqual({
      status: 'fail',
      detail: 'a:1 says cluster_state:fail (10923 of 16384 slots ok); b:2: ECONNREFUSED',
    });
    expect(judgeCluster([{ node: 'b:2', error: 'ECONNREFUSED' }])).toEqual({ status: 'fail', detail: 'no root node answers CLUSTER INFO (b:2: ECONNREFUSED)' });
  });
});
