import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactConfig, type ParseConfigOptions, type PopgateConfig } from '../../src/config/index.js';
import { configError as failure, parseConfig } from '../helpers/config.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-config-'));
  await mkdir(join(dir, 'secrets'));
  await writeFile(join(dir, 'secrets', 'master'), 'm4ster-Secret\n');
  await writeFile(join(dir, 'secrets', 'crlf'), 'crlf-secret\r\n\r\n');
  await writeFile(join(dir, 'secrets', 'empty'), '\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const LISTENERS = `
listeners:
  - kind: pop3s
    port: 995
    tls: { certFile: tls/tls.crt, keyFile: /abs/tls.key }
auth:
  userFile: users
`;

function config(login: string, extra = ''): string {
  return `${LISTENERS}backend:\n  host: 127.0.0.1\n  login:\n${login
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}\n${extra}`;
}

const MASTER = config('mode: master\nuser: popgate\npassword: inline-Secret');

/** Relative paths (secrets, tls) resolve in the temporary directory. */
const parse = (text: string, opts: Partial<ParseConfigOptions> = {}): Promise<PopgateConfig> => parseConfig(text, { baseDir: dir, ...opts });

function masterPassword(cfg: PopgateConfig): string | undefined {
  return cfg.backend.login.mode === 'master' ? cfg.backend.login.password : undefined;
}

describe('environment interpolation', () => {
  it('replaces ${VAR} and ${VAR:-default} in string scalars', async () => {
    const cfg = await parse(
      config('mode: master\nuser: ${MASTER_USER}\npassword: "${MASTER_PW}"', 'log: { level: "${LEVEL:-debug}" }\nimplementation: "gw-${VERSION:-dev}/${HOSTNAME}"\n'),
      { env: { MASTER_USER: 'admin', MASTER_PW: 'pw', HOSTNAME: 'box' } },
    );
    expect(cfg.backend.login).toMatchObject({ user: 'admin', password: 'pw' });
    expect(cfg.log.level).toBe('debug');
    expect(cfg.implementation).toBe('gw-dev/box');
  });

  it('uses the default when the variable is empty, the value when set', async () => {
    const text = config('mode: passthrough', 'log: { level: "${LEVEL:-warn}" }\n');
    expect((await parse(text, { env: { LEVEL: '' } })).log.level).toBe('warn');
    expect((await parse(text, { env: { LEVEL: 'error' } })).log.level).toBe('error');
  });

  it('treats $${ as a literal ${', async () => {
    const cfg = await parse(config('mode: master\nuser: popgate\npassword: "a$${NOT_A_VAR}b"'), { env: { NOT_A_VAR: 'x' } });
    expect(masterPassword(cfg)).toBe('a${NOT_A_VAR}b');
  });

  it('names the config path and variable when a variable is unset', async () => {
    const { issues, message } = await failure(parse(config('mode: master\nuser: popgate\npassword: ${MASTER_PW}')));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('backend.login.password');
    expect(issues[0]?.message).toBe('environment variable MASTER_PW is not set');
    expect(issues[0]?.hint).toContain('${MASTER_PW:-value}');
    expect(message).toContain('backend.login.password: environment variable MASTER_PW is not set');
  });

  it('refuses a malformed reference', async () => {
    const { issues } = await failure(parse(config('mode: master\nuser: "${BAD NAME}"\npassword: p')));
    expect(issues[0]?.path).toBe('backend.login.user');
    expect(issues[0]?.message).toMatch(/invalid \$\{\.\.\.\} reference/);
  });

  it('cannot inject YAML structure', async () => {
    const cfg = await parse(config('mode: master\nuser: ${U}\npassword: p'), {
      env: { U: 'x\nlimits: { idleTimeout: 1s }' },
    }).catch((e: unknown) => e);
    // The value stays one string (and is refused for its whitespace), never a new key.
    expect(cfg).toBeInstanceOf(ConfigError);
    expect((cfg as ConfigError).issues).toEqual([{ path: 'backend.login.user', message: 'must not contain whitespace' }]);
  });

  it('turns a whole ${VAR} into a number or boolean where the schema wants one', async () => {
    const text = `${LISTENERS.replace('port: 995', 'port: ${PORT}').replace('kind: pop3s', 'kind: pop3s\n    allowPlaintextAuth: ${PLAIN:-false}')}backend:
  host: h
  port: "\${BACKEND_PORT:-110}"
  login: { mode: master, user: u, password: "\${PW}" }
`;
    const cfg = await parse(text, { env: { PORT: '1995', PW: '12345', PLAIN: 'true' } });
    expect(cfg.listeners[0]?.port).toBe(1995);
    expect(cfg.listeners[0]?.allowPlaintextAuth).toBe(true);
    expect(cfg.backend.port).toBe(110);
    // A numeric password stays a string.
    expect(masterPassword(cfg)).toBe('12345');
    const bad = await failure(parse(text, { env: { PORT: 'http', PW: 'x' } }));
    expect(bad.issues).toEqual([{ path: 'listeners[0].port', message: 'expected number, got string' }]);
  });
});

describe('secret files', () => {
  it('reads passwordFile (relative to the config directory) into password', async () => {
    const cfg = await parse(config('mode: master\nuser: popgate\npasswordFile: secrets/master'));
    expect(cfg.backend.login).toEqual({
      mode: 'master',
      method: 'auth-plain',
      user: 'popgate',
      password: 'm4ster-Secret',
      passwordFile: join(dir, 'secrets', 'master'),
      separator: '*',
    });
  });

  it('trims trailing CRLF newlines', async () => {
    const cfg = await parse(config(`mode: master\nuser: popgate\npasswordFile: ${join(dir, 'secrets', 'crlf')}`));
    expect(masterPassword(cfg)).toBe('crlf-secret');
  });

  it('refuses password and passwordFile together', async () => {
    const { issues, message } = await failure(parse(config('mode: master\nuser: popgate\npassword: inline-Secret\npasswordFile: secrets/master')));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('backend.login');
    expect(issues[0]?.message).toBe('both password and passwordFile are given; use exactly one');
    expect(message).not.toContain('inline-Secret');
  });

  it('requires one of password and passwordFile', async () => {
    const { issues } = await failure(parse(config('mode: master\nuser: popgate')));
    expect(issues).toEqual([{ path: 'backend.login.password', message: 'required: set password or passwordFile' }]);
  });

  it('reports an unreadable file with its path', async () => {
    const { issues, message } = await failure(parse(config('mode: master\nuser: popgate\npasswordFile: secrets/missing')));
    const missing = join(dir, 'secrets', 'missing');
    expect(issues).toEqual([
      { path: 'backend.login.passwordFile', file: missing, message: `cannot read secret file ${missing} (ENOENT)`, hint: expect.any(String) },
    ]);
    expect(message).toContain(missing);
    // Other problems are reported along with it.
    const both = await failure(parse(config('mode: master\nuser: popgate\npasswordFile: secrets/missing', 'limits: { maxErrors: 0 }\n')));
    expect(both.issues.map((i) => i.path)).toEqual(['backend.login.passwordFile', 'limits.maxErrors']);
  });

  it('reports a path that is not a readable file (a directory)', async () => {
    const { issues } = await failure(parse(config('mode: master\nuser: popgate\npasswordFile: secrets')));
    expect(issues[0]?.message).toBe(`cannot read secret file ${join(dir, 'secrets')} (EISDIR)`);
  });

  it('refuses an empty secret file', async () => {
    const { issues } = await failure(parse(config('mode: master\nuser: popgate\npasswordFile: secrets/empty')));
    expect(issues[0]).toEqual({ path: 'backend.login.passwordFile', file: join(dir, 'secrets', 'empty'), message: `secret file ${join(dir, 'secrets', 'empty')} is empty` });
  });

  it('blames passwordFile, not the filled-in password, in a mode without it', async () => {
    const { issues } = await failure(parse(config('mode: passthrough\npasswordFile: secrets/master')));
    expect(issues).toEqual([
      { path: 'backend.login.passwordFile', message: 'unknown key', hint: 'allowed keys: mode, method' },
    ]);
  });

  it('does not read files with readSecrets: false', async () => {
    const cfg = await parse(config('mode: master\nuser: popgate\npasswordFile: /nonexistent/secret'), { readSecrets: false });
    expect(masterPassword(cfg)).toBe('***');
  });

  it('keeps secret values out of every error message', async () => {
    const text = config('mode: master\nuser: popgate\npassword: "inline-Secret\\r\\n"', 'limits: { maxErrors: "inline-Secret" }\n');
    const { message } = await failure(parse(text));
    expect(message).toContain('backend.login.password: must not contain line breaks');
    expect(message).not.toContain('inline-Secret');
    // A YAML error on the secret's line must not echo the line either.
    const broken = await failure(parse('backend:\n  login:\n    password: "inline-Secret\n  x: 1\n'));
    expect(broken.message).not.toContain('inline-Secret');
  });
});

describe('paths', () => {
  it('resolves relative certFile, keyFile, userFile and secretsFile against the config directory', async () => {
    const cfg = await parse(config('mode: mapped\nsecretsFile: ./backend/secrets'));
    expect(cfg.listeners[0]?.tls).toMatchObject({ certFile: join(dir, 'tls', 'tls.crt'), keyFile: '/abs/tls.key' });
    expect(cfg.auth.userFile).toBe(join(dir, 'users'));
    expect(cfg.backend.login).toEqual({ mode: 'mapped', secretsFile: join(dir, 'backend', 'secrets'), method: 'user-pass' });
  });

  it('loadConfig uses the directory of the file', async () => {
    const file = join(dir, 'popgate.yaml');
    await writeFile(file, config('mode: master\nuser: popgate\npasswordFile: secrets/master'));
    const cfg = await loadConfig(file, {});
    expect(cfg.auth.userFile).toBe(join(dir, 'users'));
    expect(masterPassword(cfg)).toBe('m4ster-Secret');
  });

  it('loadConfig reports a missing file', async () => {
    const { issues } = await failure(loadConfig(join(dir, 'nope.yaml'), {}));
    expect(issues[0]?.message).toBe(`cannot read configuration file ${join(dir, 'nope.yaml')} (ENOENT)`);
  });

  it('loadConfig names the file in errors', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, `${MASTER}limits: { idleTimeout: 1m }\n`);
    const { message } = await failure(loadConfig(file, {}));
    expect(message).toMatch(/^invalid configuration in .*bad\.yaml \(1 problem\):\n {2}limits\.idleTimeout: must be at least 10m \(hint: RFC 1939/);
  });
});

describe('YAML syntax errors', () => {
  it('reports line and column', async () => {
    const { issues, message } = await failure(parse('log:\n  level: info\n listeners: [\n'));
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.line).toBe(3);
    expect(issues[0]?.column).toBeTypeOf('number');
    expect(issues[0]?.message).toMatch(/^YAML syntax error at line 3, column \d+: /);
    expect(message).toContain('YAML syntax error at line 3');
  });

  it('refuses duplicate keys', async () => {
    const { issues } = await failure(parse(`${MASTER}log: { level: info }\nlog: { level: debug }\n`));
    expect(issues[0]?.message).toMatch(/Map keys must be unique/);
  });
});

describe('redactConfig', () => {
  it('replaces secrets with *** in a copy', async () => {
    const cfg = await parse(config('mode: master\nuser: popgate\npasswordFile: secrets/master'));
    const red = redactConfig(cfg);
    expect(red.backend.login).toMatchObject({ password: '***', user: 'popgate', passwordFile: join(dir, 'secrets', 'master') });
    expect(JSON.stringify(red)).not.toContain('m4ster-Secret');
    expect(red.listeners).toEqual(cfg.listeners);
    expect(red.listeners).not.toBe(cfg.listeners);
    // The original is untouched.
    expect(masterPassword(cfg)).toBe('m4ster-Secret');
  });

  it('leaves configs without secrets alone', async () => {
    const cfg = await parse(config('mode: passthrough'));
    expect(redactConfig(cfg)).toEqual(cfg);
  });
});

describe('redactConfig and URLs', () => {
  it('masks credentials embedded in URLs (Redis, proxies) and leaves other URLs alone', async () => {
    const { redactConfig } = await import('../../src/config/index.js');
    const out = redactConfig({ a: 'redis://:S3cret@10.0.0.5:6379', b: 'rediss://user:pw@redis:6380/0', c: 'http://127.0.0.1:9000/auth' } as never) as unknown as Record<string, string>;
    expect(out.a).toBe('redis://***@10.0.0.5:6379');
    expect(out.b).toBe('rediss://***@redis:6380/0');
    expect(out.c).toBe('http://127.0.0.1:9000/auth');
  });
});
