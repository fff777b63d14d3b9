import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHeaderLines, redactConfig, type ConfigIssue, type ParseConfigOptions, type PopgateConfig } from '../../src/config/index.js';
import { issuesOf as issuesOfConfig, MASTER_BACKEND as BACKEND, parseConfig } from '../helpers/config.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-config-http-'));
  await writeFile(join(dir, 'auth-headers'), '# shared with the auth service\r\nX-Auth-Key:  k3y-Secret \r\n\r\nX-Tenant: blue\n');
  await writeFile(join(dir, 'clash-headers'), 'x-gateway: other\n');
  await writeFile(join(dir, 'bad-headers'), 'X-Ok: fine\nno colon here\nAuth-User: admin\nBad Name: v\nX-Ok: again\nX-Ctl: a\u0001b\n');
  await writeFile(join(dir, 'empty-headers'), '# nothing yet\n\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const LISTENER = `
listeners:
  - kind: pop3s
    port: 995
    tls: { certFile: /etc/popgate/tls.crt, keyFile: /etc/popgate/tls.key }
`;

/** A config whose auth section is `auth` (2-space indented lines under `auth:`). */
function withAuth(auth: string, listeners = LISTENER): string {
  return `${listeners}auth:\n${auth.replace(/^/gm, '  ')}\n${BACKEND}`;
}

const HTTP = 'verifiers: [userFile, http]\nuserFile: /etc/popgate/users\nhttp:\n  url: http://127.0.0.1:9000/auth';

/** Relative paths (headersFile) resolve in the temporary directory. */
const parse = (text: string, opts: Partial<ParseConfigOptions> = {}): Promise<PopgateConfig> => parseConfig(text, { baseDir: dir, ...opts });
const issuesOf = (text: string, opts: Partial<ParseConfigOptions> = {}): Promise<readonly ConfigIssue[]> =>
  issuesOfConfig(text, { baseDir: dir, ...opts });

describe('auth.http', () => {
  it('fills its defaults from the schema', async () => {
    const cfg = await parse(withAuth(HTTP));
    expect(cfg.auth.http).toEqual({
      url: 'http://127.0.0.1:9000/auth',
      timeout: 10_000,
      maxConcurrent: 32,
      maxQueue: 256,
      maxWaits: 3,
      headers: {},
      proxy: null,
      authorizeTicketLogins: true,
    });
    expect(cfg.auth.verifiers).toEqual(['userFile', 'http']);
  });

  it('takes every key', async () => {
    const cfg = await parse(
      withAuth(
        'verifiers: [http]\nhttp:\n  url: https://auth.example.com:8443/pop?tenant=1\n  timeout: 2s\n  maxConcurrent: 4\n  maxQueue: 0\n  maxWaits: 0\n  headers: { X-Auth-Key: abc, "X-Weird_Name!": "v a l" }\n  proxy: http://proxy.example.com:3128\n  authorizeTicketLogins: false',
      ),
    );
    expect(cfg.auth.http).toEqual({
      url: 'https://auth.example.com:8443/pop?tenant=1',
      timeout: 2000,
      maxConcurrent: 4,
      maxQueue: 0,
      maxWaits: 0,
      headers: { 'X-Auth-Key': 'abc', 'X-Weird_Name!': 'v a l' },
      proxy: 'http://proxy.example.com:3128',
      authorizeTicketLogins: false,
    });
    expect(cfg.auth.userFile).toBeUndefined();
    expect((await parse(withAuth(`${HTTP}\n  proxy: none`))).auth.http?.proxy).toBe('none');
  });

  it('is required when verifiers include http', async () => {
    expect(await issuesOf(withAuth('verifiers: [http]'))).toEqual([
      { path: 'auth.http', message: 'required when auth.verifiers includes http', hint: expect.stringMatching(/^add http: \{ url:/) },
    ]);
  });

  it('is refused when verifiers do not include http', async () => {
    expect(await issuesOf(withAuth('userFile: /u\nhttp: { url: http://127.0.0.1:9000/auth }'))).toEqual([
      {
        path: 'auth.http',
        message: 'configured but not used: auth.verifiers does not include http',
        hint: 'add http to auth.verifiers (e.g. verifiers: [userFile, http]), or remove auth.http',
      },
    ]);
  });

  it('requires an http(s) URL without credentials or fragment, never echoing it', async () => {
    const cases: [string, string][] = [
      ['ftp://auth.example.com/x', 'must be an http:// or https:// URL, not ftp:'],
      ['127.0.0.1:9000/auth', 'must be an http:// or https:// URL (it has no scheme)'],
      ['localhost:9000', 'must be an http:// or https:// URL (it has no scheme)'],
      ['not a url', 'must be an http:// or https:// URL (without spaces or line breaks)'],
      ['http://', 'must be an http:// or https:// URL'],
      ['http://svc:Pa55@auth/x', 'must not contain credentials (user:password@)'],
      ['http://auth/x#frag', 'must not contain a #fragment'],
    ];
    for (const [url, message] of cases) {
      const issues = await issuesOf(withAuth(`verifiers: [http]\nhttp: { url: "${url}" }`));
      expect(issues, url).toEqual([{ path: 'auth.http.url', message, ...(issues[0]?.hint ? { hint: expect.any(String) } : {}) }]);
    }
    const secret = await issuesOf(withAuth('verifiers: [http]\nhttp: { url: "http://svc:Pa55@auth/x" }'));
    expect(secret[0]?.hint).toMatch(/static header/);
    expect(JSON.stringify(secret)).not.toContain('Pa55');
  });

  it('validates proxy: null, "none" or an http(s) URL', async () => {
    expect(await issuesOf(withAuth(`${HTTP}\n  proxy: socks5://p:1080`))).toEqual([
      { path: 'auth.http.proxy', message: 'must be "none" or an http:// or https:// URL, not socks5:' },
    ]);
    expect(await issuesOf(withAuth(`${HTTP}\n  proxy: off`))).toEqual([
      { path: 'auth.http.proxy', message: 'must be "none" or an http:// or https:// URL (it has no scheme)' },
    ]);
    expect(await issuesOf(withAuth(`${HTTP}\n  proxy: "http://[::1"`))).toEqual([
      { path: 'auth.http.proxy', message: 'must be "none" or an http:// or https:// URL', hint: expect.stringMatching(/proxy\.example\.com/) },
    ]);
    expect(await issuesOf(withAuth(`${HTTP}\n  proxy: http://u:p@proxy:3128`))).toEqual([
      { path: 'auth.http.proxy', message: 'must not contain credentials (user:password@)', hint: expect.stringMatching(/not supported/) },
    ]);
    expect((await parse(withAuth(`${HTTP}\n  proxy: null`))).auth.http?.proxy).toBeNull();
  });

  it('bounds its numbers and timeout', async () => {
    const issues = await issuesOf(withAuth(`${HTTP}\n  timeout: 50ms\n  maxConcurrent: 0\n  maxQueue: -1\n  maxWaits: 101`));
    expect(issues).toEqual([
      { path: 'auth.http.timeout', message: 'must be at least 100ms' },
      { path: 'auth.http.maxConcurrent', message: 'must be at least 1' },
      { path: 'auth.http.maxQueue', message: 'must be at least 0' },
      { path: 'auth.http.maxWaits', message: 'must be at most 100' },
    ]);
  });

  it('validates static header names and values at their paths', async () => {
    const issues = await issuesOf(
      withAuth(`${HTTP}\n  headers:\n    "Bad Name": x\n    auth-user: admin\n    X-Key: "a\\r\\nInjected: 1"\n    X-A: "1"\n    x-a: "2"\n    X-Num: 5`),
    );
    expect(issues).toEqual([
      { path: 'auth.http.headers.X-Num', message: 'expected string, got number' },
    ]);
    const strings = await issuesOf(withAuth(`${HTTP}\n  headers:\n    "Bad Name": x\n    auth-user: admin\n    X-Key: "a\\r\\nInjected: 1"\n    X-A: "1"\n    x-a: "2"`));
    expect(strings).toEqual([
      { path: 'auth.http.headers.Bad Name', message: expect.stringMatching(/^header name must be an HTTP token/) },
      { path: 'auth.http.headers.auth-user', message: 'auth-user is sent by popgate itself and cannot be set statically', hint: expect.stringMatching(/X-Auth-Key/) },
      { path: 'auth.http.headers.X-Key', message: 'header value must not contain line breaks or other control characters' },
      { path: 'auth.http.headers.x-a', message: 'the same header as "X-A" (header names are case-insensitive)' },
    ]);
  });

  it('merges headersFile (relative to the config directory) into headers', async () => {
    const cfg = await parse(withAuth(`${HTTP}\n  headers: { X-Gateway: popgate }\n  headersFile: auth-headers`));
    expect(cfg.auth.http?.headers).toEqual({ 'X-Gateway': 'popgate', 'X-Auth-Key': 'k3y-Secret', 'X-Tenant': 'blue' });
    expect(cfg.auth.http?.headersFile).toBe(join(dir, 'auth-headers'));
    // Without inline headers, too.
    const only = await parse(withAuth(`${HTTP}\n  headersFile: ${join(dir, 'auth-headers')}`));
    expect(only.auth.http?.headers).toEqual({ 'X-Auth-Key': 'k3y-Secret', 'X-Tenant': 'blue' });
  });

  it('refuses a header set both inline and in headersFile', async () => {
    const issues = await issuesOf(withAuth(`${HTTP}\n  headers: { X-Gateway: popgate }\n  headersFile: clash-headers`));
    const file = join(dir, 'clash-headers');
    expect(issues).toEqual([
      {
        path: 'auth.http.headersFile',
        file,
        message: `header x-gateway from ${file} is also set in auth.http.headers (as X-Gateway)`,
        hint: 'set each header in one place',
      },
    ]);
  });

  it('reports every bad line of headersFile by number, without values', async () => {
    const issues = await issuesOf(withAuth(`${HTTP}\n  headersFile: bad-headers`));
    const file = join(dir, 'bad-headers');
    expect(issues.map((i) => [i.path, i.message])).toEqual([
      ['auth.http.headersFile', `${file}: line 2: expected "Name: value"`],
      ['auth.http.headersFile', `${file}: line 3: Auth-User is sent by popgate itself and cannot be set statically`],
      ['auth.http.headersFile', `${file}: line 4: header name must be an HTTP token (letters, digits and !#$%&'*+-.^_\`|~; no spaces or ":")`],
      ['auth.http.headersFile', `${file}: line 5: X-Ok repeats the header of line 1`],
      ['auth.http.headersFile', `${file}: line 6 (X-Ctl): header value must not contain line breaks or other control characters`],
    ]);
    expect(JSON.stringify(issues)).not.toContain('admin');
  });

  it('refuses a missing or empty headersFile', async () => {
    const missing = join(dir, 'nope');
    expect(await issuesOf(withAuth(`${HTTP}\n  headersFile: nope`))).toEqual([
      { path: 'auth.http.headersFile', file: missing, message: `cannot read headers file ${missing} (ENOENT)`, hint: expect.any(String) },
    ]);
    expect(await issuesOf(withAuth(`${HTTP}\n  headersFile: empty-headers`))).toEqual([
      { path: 'auth.http.headersFile', file: join(dir, 'empty-headers'), message: `${join(dir, 'empty-headers')}: contains no headers`, hint: expect.any(String) },
    ]);
  });

  it('does not read headersFile with readSecrets: false', async () => {
    const cfg = await parse(withAuth(`${HTTP}\n  headers: { X-Gateway: popgate }\n  headersFile: /nonexistent/headers`), { readSecrets: false });
    expect(cfg.auth.http?.headers).toEqual({ 'X-Gateway': 'popgate' });
  });

  it('leaves header names ending in "File" alone (headers are data, not config keys)', async () => {
    const cfg = await parse(withAuth(`${HTTP}\n  headers: { X-ConfigFile: relative/name }`));
    expect(cfg.auth.http?.headers).toEqual({ 'X-ConfigFile': 'relative/name' });
  });

  it('has every header value redacted by redactConfig', async () => {
    const cfg = await parse(withAuth(`${HTTP}\n  headers: { X-Gateway: popgate }\n  headersFile: auth-headers`));
    const red = redactConfig(cfg);
    expect(red.auth.http?.headers).toEqual({ 'X-Gateway': '***', 'X-Auth-Key': '***', 'X-Tenant': '***' });
    expect(JSON.stringify(red)).not.toContain('k3y-Secret');
    expect(red.auth.http?.url).toBe('http://127.0.0.1:9000/auth');
    expect(cfg.auth.http?.headers['X-Auth-Key']).toBe('k3y-Secret');
  });

  it('suggests keys inside the section', async () => {
    expect(await issuesOf(withAuth(`${HTTP}\n  maxWait: 3`))).toEqual([
      {
        path: 'auth.http.maxWait',
        message: 'unknown key',
        hint: "did you mean 'maxWaits'? allowed keys: url, timeout, maxConcurrent, maxQueue, maxWaits, headers, headersFile, proxy, authorizeTicketLogins",
      },
    ]);
  });
});

describe('parseHeaderLines', () => {
  it('reads Name: value lines, skipping blanks and comments', () => {
    const { headers, problems } = parseHeaderLines('\uFEFFX-A: 1\n  # note\n\nX-B:two: parts \r\nX-Empty:\n');
    expect(problems).toEqual([]);
    expect([...headers]).toEqual([
      ['X-A', '1'],
      ['X-B', 'two: parts'],
      ['X-Empty', ''],
    ]);
  });
});

describe('challenge mechanisms and APOP', () => {
  it('defaults apop to false and accepts CRAM-MD5 and APOP with a userFile verifier', async () => {
    expect((await parse(withAuth('userFile: /u'))).auth.apop).toBe(false);
    const cfg = await parse(withAuth('userFile: /u\nmechanisms: [CRAM-MD5, PLAIN]\napop: true'));
    expect(cfg.auth).toMatchObject({ mechanisms: ['CRAM-MD5', 'PLAIN'], apop: true });
  });

  it('accepts them with the http verifier alone', async () => {
    const cfg = await parse(withAuth('verifiers: [http]\nmechanisms: [CRAM-MD5]\napop: true\nhttp: { url: http://a/auth }'));
    expect(cfg.auth).toMatchObject({ verifiers: ['http'], mechanisms: ['CRAM-MD5'], apop: true });
  });

  it('refuses them when only kerberos checks passwords, at their paths', async () => {
    const text = `${withAuth('verifiers: [kerberos]\nmechanisms: [PLAIN, CRAM-MD5]\napop: true')}kerberos:
  keytab: /k
  servicePrincipals: [pop/mail.example.com@EXAMPLE.COM]
  rcacheDir: /r
  mapping: { realms: [EXAMPLE.COM] }
`;
    const hint = 'add userFile or http to auth.verifiers: a Kerberos KDC cannot check APOP/CRAM-MD5 digests';
    expect(await issuesOf(text)).toEqual([
      { path: 'auth.apop', message: 'APOP needs a verifier that can check challenges (userFile or http); auth.verifiers is [kerberos]', hint },
      { path: 'auth.mechanisms[1]', message: 'CRAM-MD5 needs a verifier that can check challenges (userFile or http); auth.verifiers is [kerberos]', hint },
    ]);
  });
});

describe('SASL EXTERNAL', () => {
  const certListener = (mode: string): string =>
    LISTENER.replace('keyFile: /etc/popgate/tls.key }', `keyFile: /etc/popgate/tls.key, clientCertificates: { mode: ${mode}, caFile: /ca.pem } }`);

  it('is accepted with a listener asking for client certificates', async () => {
    for (const mode of ['optional', 'required']) {
      const cfg = await parse(withAuth('userFile: /u\nmechanisms: [PLAIN, EXTERNAL]', certListener(mode)));
      expect(cfg.auth.mechanisms).toEqual(['PLAIN', 'EXTERNAL']);
    }
  });

  it('is refused without such a listener (mode none does not count)', async () => {
    for (const listeners of [LISTENER, certListener('none')]) {
      expect(await issuesOf(withAuth('userFile: /u\nmechanisms: [PLAIN, EXTERNAL]', listeners))).toEqual([
        {
          path: 'auth.mechanisms[1]',
          message: 'EXTERNAL needs a listener that asks for TLS client certificates (tls.clientCertificates.mode optional or required)',
          hint: expect.stringMatching(/^add clientCertificates: \{ mode: optional/),
        },
      ]);
    }
  });

  it('is reported together with problems elsewhere, but not when listeners are invalid', async () => {
    const issues = await issuesOf(`${withAuth('userFile: /u\nmechanisms: [EXTERNAL]')}log: { level: loud }\n`);
    expect(issues.map((i) => i.path)).toEqual(['log.level', 'auth.mechanisms[0]']);
    const broken = await issuesOf(withAuth('userFile: /u\nmechanisms: [EXTERNAL]', LISTENER.replace('port: 995', 'port: -1')));
    expect(broken.map((i) => i.path)).toEqual(['listeners[0].port']);
  });
});
