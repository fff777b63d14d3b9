/**
 * `popgate doctor`'s HTTP probes go the way the gateway's requests go: through
 * a REAL forward proxy (a private tinyproxy, test/helpers/tinyproxy.ts) when
 * auth.http.proxy / auth.oauth.proxy (or HTTPS_PROXY from the environment)
 * says so, direct for a NO_PROXY-listed host. What is asserted is
 * tinyproxy's own log of CONNECT lines, and the detail naming the way. The
 * services speak https with the test PKI's certificate: the nginx-style auth
 * service (test/fixtures/nginx-auth/auth.py --tls-cert) and an OAuth issuer
 * (oauth2-mock-server). The test CA is a default trust anchor of this
 * (forked) test process, as NODE_EXTRA_CA_CERTS is for the built CLI, which
 * the last test runs with HTTPS_PROXY in its environment.
 *
 * A proxy that is down, and one that refuses the CONNECT (a port not in its
 * ConnectPort list: HTTP 403), are ✗ with a fix naming the proxy setting.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopgateConfig } from '../../src/config/index.js';
import { checkAuthHttp, checkOauth } from '../../src/server/doctor/services.js';
import type { DoctorResult } from '../../src/server/doctor/types.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { CLI } from '../helpers/cli-process.js';
import { runProgram } from '../helpers/clients.js';
import { startHttpsServices, type HttpsServices } from '../helpers/https-services.js';
import type { AuthService } from '../helpers/nginx-auth.js';
import { freePort } from '../helpers/ports.js';
import { startTinyproxy, type TestTinyproxy, type TinyproxyRequest } from '../helpers/tinyproxy.js';

let pki: TestPki;
let dir: string;
let services: HttpsServices;
let proxy: TestTinyproxy;
/** A tinyproxy that admits CONNECT to no port of ours: it refuses (403). */
let strict: TestTinyproxy;
let issuerPort: number;
let issuer: string;
let auth: AuthService;
let authPort: number;
/** host:port of the auth service's URL. */
let authHost: string;

beforeAll(async () => {
  pki = await makeTempTestPki();
  dir = await mkdtemp(join(tmpdir(), 'popgate-doctor-egress-'));
  services = await startHttpsServices(pki, dir);
  ({ issuerPort, auth, authPort } = services);
  issuer = services.issuerUrl;
  authHost = new URL(auth.url).host;

  proxy = await startTinyproxy({ connectPorts: [issuerPort, authPort] });
  strict = await startTinyproxy({ connectPorts: [await freePort()] });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await strict?.stop();
  await services?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** What tinyproxy logs from now on: call the result for the requests since. */
const mark = (p: TestTinyproxy = proxy): Promise<() => Promise<TinyproxyRequest[]>> => p.mark();

const authConfig = (proxySetting: string | null, url = auth.url) => ({ auth: { verifiers: ['http'], http: { url, timeout: 5_000, proxy: proxySetting } } }) as unknown as PopgateConfig;
const oauthConfig = (proxySetting: string | null) => ({ auth: { oauth: { issuer, timeout: 5_000, proxy: proxySetting } } }) as unknown as PopgateConfig;

describe('doctor: auth_http over https through tinyproxy', () => {
  it('auth.http.proxy set: one CONNECT through the proxy, and the detail says so', async () => {
    const since = await mark();
    const [r] = await checkAuthHttp(authConfig(proxy.url), {});
    expect(r).toMatchObject({ status: 'ok', check: `auth_http service https://${authHost}` });
    expect(r?.detail).toMatch(new RegExp(`^answers HTTP \\d+ .*to a request without credentials \\(through proxy http://127\\.0\\.0\\.1:${proxy.port} \\(auth\\.http\\.proxy\\)\\)$`));
    expect(await since()).toEqual([{ method: 'CONNECT', target: authHost }]);
  });

  it('proxy null: HTTPS_PROXY from the environment; a NO_PROXY-listed host goes direct', async () => {
    let since = await mark();
    const [viaEnv] = await checkAuthHttp(authConfig(null), { HTTPS_PROXY: proxy.url, HTTP_PROXY: 'http://127.0.0.1:9' });
    expect(viaEnv).toMatchObject({ status: 'ok', detail: expect.stringContaining(`(through proxy ${proxy.url} (HTTPS_PROXY from the environment, auth.http.proxy being null))`) as unknown });
    expect(await since()).toEqual([{ method: 'CONNECT', target: authHost }]);

    since = await mark();
    const [direct] = await checkAuthHttp(authConfig(null), { HTTPS_PROXY: proxy.url, NO_PROXY: `example.org, ${new URL(auth.url).hostname}` });
    expect(direct).toMatchObject({ status: 'ok', detail: expect.stringMatching(/\(direct\)$/) as unknown });
    expect(await since()).toEqual([]);
  });

  it('a proxy that is down: ✗, the fix names the proxy and auth.http.proxy', async () => {
    const gone = await startTinyproxy({ connectPorts: [authPort] });
    await gone.stop();
    const [r] = await checkAuthHttp(authConfig(gone.url), {});
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringMatching(new RegExp(`the proxy ${gone.url} does not answer: .*ECONNREFUSED`)) as unknown });
    expect(r?.fix).toBe(`start the proxy ${gone.url} and let it through to ${authHost}, or correct auth.http.proxy (none: direct; null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment)`);
  });

  it('a proxy that refuses the CONNECT: ✗ with its status, not taken for the service\'s answer', async () => {
    const since = await mark(strict);
    const [r] = await checkAuthHttp(authConfig(strict.url), {});
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringContaining(`the proxy ${strict.url} refused the CONNECT to ${authHost}: HTTP 403`) as unknown });
    expect(r?.fix).toContain('correct auth.http.proxy');
    expect(await since()).toEqual([{ method: 'CONNECT', target: authHost }]);
  });
});

describe('doctor: OAuth issuer over https through tinyproxy', () => {
  it('auth.oauth.proxy set: discovery and JWKS through CONNECT tunnels, each detail naming the proxy', async () => {
    const since = await mark();
    const results = await checkOauth(oauthConfig(proxy.url), {});
    expect(results.map((r) => [r.check, r.status])).toEqual([
      ['oauth issuer discovery', 'ok'],
      ['oauth issuer JWKS', 'ok'],
    ]);
    for (const r of results) expect(r.detail).toMatch(new RegExp(`\\(through proxy ${proxy.url.replace(/\./g, '\\.')} \\(auth\\.oauth\\.proxy\\)\\)$`));
    // One probe, one connection each (no keep-alive in doctor).
    expect(await since()).toEqual([
      { method: 'CONNECT', target: `localhost:${issuerPort}` },
      { method: 'CONNECT', target: `localhost:${issuerPort}` },
    ]);
  });

  it('NO_PROXY lists localhost: direct, tinyproxy sees nothing', async () => {
    const since = await mark();
    const results = await checkOauth(oauthConfig(null), { HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost' });
    expect(results.map((r) => r.status)).toEqual(['ok', 'ok']);
    for (const r of results) expect(r.detail).toMatch(/\(direct\)$/);
    expect(await since()).toEqual([]);
  });

  it('a proxy that refuses or is down: ✗ on discovery, the fix names auth.oauth.proxy', async () => {
    const [refused] = await checkOauth(oauthConfig(null), { HTTPS_PROXY: strict.url });
    expect(refused).toMatchObject({ status: 'fail', check: 'oauth issuer discovery', detail: expect.stringContaining('refused the CONNECT') as unknown });
    expect(refused?.fix).toContain('correct auth.oauth.proxy (null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment;');
    const closed = await freePort();
    const down = await checkOauth(oauthConfig(`http://127.0.0.1:${closed}`), {});
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({ status: 'fail', fix: expect.stringContaining(`start the proxy http://127.0.0.1:${closed}`) as unknown });
  });
});

describe('doctor CLI: HTTPS_PROXY in its environment', () => {
  it('the built CLI probes auth_http through the proxy the environment names', async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npx tsc -p tsconfig.build.json" first`);
    await chmod(pki.keyFile, 0o600);
    const file = join(dir, 'egress.yaml');
    const deadBackend = await freePort();
    await writeFile(
      file,
      `
listeners:
  - kind: pop3s
    port: 0
    tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} }
auth:
  verifiers: [http]
  http: { url: "${auth.url}" }
backend:
  host: 127.0.0.1
  port: ${deadBackend}
  login: { mode: master, user: popgate, password: x }
`,
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_EXTRA_CA_CERTS: pki.caFile, HTTPS_PROXY: proxy.url };
    const since = await mark();
    const r = await runProgram(process.execPath, [CLI, 'doctor', '--config', file, '--hostname', 'localhost', '--ca-file', pki.caFile, '--json'], { timeoutMs: 30_000, env });
    const results = JSON.parse(r.stdout) as DoctorResult[];
    const line = results.find((x) => x.check.startsWith('auth_http service'));
    expect(line, r.stdout + r.stderr).toMatchObject({ status: 'ok', detail: expect.stringContaining(`(through proxy ${proxy.url} (HTTPS_PROXY from the environment, auth.http.proxy being null))`) as unknown });
    expect(await since()).toEqual([{ method: 'CONNECT', target: authHost }]);
  });
});
