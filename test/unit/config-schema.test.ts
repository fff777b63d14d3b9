import { describe, expect, it } from 'vitest';
import type { ConfigError, PopgateConfig } from '../../src/config/index.js';
import { formatDuration, parseDuration } from '../../src/config/duration.js';
import { DEFAULT_ECDH_CURVE, INTERMEDIATE_TLS12_CIPHERS } from '../../src/config/tls-profile.js';
import { configError, MINIMAL_CONFIG as MINIMAL, parseConfig } from '../helpers/config.js';

const parse = (text: string, env: NodeJS.ProcessEnv = {}): Promise<PopgateConfig> => parseConfig(text, { env });
/** The ConfigError (issues and message) of a config that must fail. */
const issuesOf = (text: string, env: NodeJS.ProcessEnv = {}): Promise<ConfigError> => configError(parse(text, env));

/** MINIMAL with `patch` lines replacing the line starting with `find`. */
function withLine(find: string, replacement: string): string {
  const lines = MINIMAL.split('\n');
  const i = lines.findIndex((l) => l.trimStart().startsWith(find));
  if (i < 0) throw new Error(`no line ${find}`);
  lines[i] = replacement;
  return lines.join('\n');
}

describe('defaults', () => {
  it('fills every default from the schema for a minimal config', async () => {
    const cfg = await parse(MINIMAL);
    expect(cfg.log).toEqual({ level: 'info' });
    expect(cfg.listeners).toEqual([
      {
        name: 'pop3s-995',
        kind: 'pop3s',
        address: '0.0.0.0',
        port: 995,
        tls: {
          certFile: '/etc/popgate/tls/tls.crt',
          keyFile: '/etc/popgate/tls/tls.key',
          minVersion: 'TLSv1.2',
          ciphers: INTERMEDIATE_TLS12_CIPHERS,
          ecdhCurve: DEFAULT_ECDH_CURVE,
        },
        allowPlaintextAuth: false,
        greeting: 'POP3 gateway ready.',
      },
    ]);
    expect(cfg.auth).toEqual({
      verifiers: ['userFile'],
      userFile: '/etc/popgate/users',
      mechanisms: ['PLAIN', 'LOGIN'],
      apop: false,
      maxAttempts: 3,
      failureDelay: 2000,
      throttle: {
        enabled: true,
        delays: [2_000, 4_000, 8_000, 15_000],
        maxFailures: 10,
        window: 900_000,
        lockout: 900_000,
        repeatedPasswords: 5,
        trustedNetworks: [],
        store: 'memory',
      },
      cache: { ttl: 300_000, negativeTtl: 5_000, maxEntries: 100_000 },
    });
    expect(cfg.kerberos).toBeUndefined();
    expect(cfg.backend).toEqual({
      host: '127.0.0.1',
      port: 110,
      tls: { mode: 'none', verify: true },
      proxyProtocol: 'none',
      xclient: true,
      pipelining: 'auto',
      capabilities: ['TOP', 'UIDL'],
      timeouts: { connect: 10_000, greeting: 10_000, login: 30_000 },
      login: { mode: 'master', method: 'auth-plain', user: 'popgate', password: 's3cret', separator: '*' },
    });
    expect(cfg.limits).toEqual({
      maxCommandLine: 255,
      maxSaslLine: 16_384,
      maxErrors: 10,
      preAuthTimeout: 60_000,
      idleTimeout: 600_000,
      maxConnections: 5000,
      maxConnectionsPerIp: 50,
      greetingDelay: 0,
    });
    expect(cfg.routing).toEqual({ users: {}, domains: {} });
    expect(cfg.shutdown).toEqual({ drainTimeout: 30_000 });
    expect(cfg.implementation).toBe('popgate');
  });

  it('defaults mapped and passthrough methods to user-pass', async () => {
    const mapped = await parse(withLine('login:', '  login: { mode: mapped, secretsFile: secrets }'));
    expect(mapped.backend.login).toEqual({ mode: 'mapped', secretsFile: '/etc/popgate/secrets', method: 'user-pass' });
    const pass = await parse(withLine('login:', '  login: { mode: passthrough, method: auth-plain }'));
    expect(pass.backend.login).toEqual({ mode: 'passthrough', method: 'auth-plain' });
  });

  it('hides IMPLEMENTATION with "" or null', async () => {
    expect((await parse(`${MINIMAL}implementation: ""\n`)).implementation).toBeNull();
    expect((await parse(`${MINIMAL}implementation: null\n`)).implementation).toBeNull();
    expect((await parse(`${MINIMAL}implementation: gw 1.0\n`)).implementation).toBe('gw 1.0');
  });

  it('names listeners <kind>-<port> unless named', async () => {
    const cfg = await parse(
      withLine('- kind: pop3s', '  - { kind: pop3, port: 110 }\n  - name: secure\n    kind: pop3s'),
    );
    expect(cfg.listeners.map((l) => l.name)).toEqual(['pop3-110', 'secure']);
    expect(cfg.listeners[0]?.tls).toBeUndefined();
  });
});

describe('durations', () => {
  it('parses seconds and unit strings to integer milliseconds', () => {
    const cases: [unknown, number][] = [
      [30, 30_000],
      [0.5, 500],
      ['45', 45_000],
      ['500ms', 500],
      ['30s', 30_000],
      ['10m', 600_000],
      ['1h', 3_600_000],
      ['1h30m', 5_400_000],
      ['1.5s', 1500],
      ['2d', 172_800_000],
      [0, 0],
    ];
    for (const [input, ms] of cases) expect(parseDuration(input)).toEqual({ ok: true, ms });
  });

  it('rejects malformed durations', () => {
    for (const bad of ['10 minutes', 'm', '', '-5s', '5x', -1, true, null, Number.NaN, '100d']) {
      expect(parseDuration(bad).ok, String(bad)).toBe(false);
    }
  });

  it('formats durations for messages', () => {
    expect(formatDuration(600_000)).toBe('10m');
    expect(formatDuration(1500)).toBe('1500ms');
    expect(formatDuration(3_600_000)).toBe('1h');
  });

  it('converts durations in the config', async () => {
    const cfg = await parse(
      `${MINIMAL}limits: { preAuthTimeout: 90, idleTimeout: 1h }\nshutdown: { drainTimeout: 1500ms }\n`,
    );
    expect(cfg.limits.preAuthTimeout).toBe(90_000);
    expect(cfg.limits.idleTimeout).toBe(3_600_000);
    expect(cfg.shutdown.drainTimeout).toBe(1500);
  });

  it('reports a bad duration with its path', async () => {
    const { issues } = await issuesOf(`${MINIMAL}shutdown: { drainTimeout: soon }\n`);
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('shutdown.drainTimeout');
    expect(issues[0]?.message).toMatch(/invalid duration/);
  });

  it('refuses idleTimeout below 10 minutes with an RFC 1939 hint', async () => {
    const { issues, message } = await issuesOf(`${MINIMAL}limits: { idleTimeout: 5m }\n`);
    expect(issues).toEqual([
      { path: 'limits.idleTimeout', message: 'must be at least 10m', hint: expect.stringMatching(/RFC 1939/) },
    ]);
    expect(message).toContain('limits.idleTimeout: must be at least 10m (hint: RFC 1939');
    await expect(parse(`${MINIMAL}limits: { idleTimeout: 600 }\n`)).resolves.toBeDefined();
  });
});

describe('validation errors', () => {
  it('refuses an unknown key and suggests the closest one', async () => {
    const { issues, message } = await issuesOf(
      MINIMAL.replace('tls: { certFile:', 'tls: { certfile: /x, minVersion: TLSv1.3, certFile:'),
    );
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('listeners[0].tls.certfile');
    expect(issues[0]?.message).toBe('unknown key');
    expect(issues[0]?.hint).toBe("did you mean 'certFile'? allowed keys: certFile, keyFile, certificates, minVersion, ciphers, ecdhCurve, clientCertificates, ticketKeysFile");
    expect(message).toContain("listeners[0].tls.certfile: unknown key (hint: did you mean 'certFile'?");
  });

  it('lists allowed keys without a suggestion when nothing is close', async () => {
    const { issues } = await issuesOf(`${MINIMAL}limits: { frobnicate: 1 }\n`);
    expect(issues[0]?.path).toBe('limits.frobnicate');
    expect(issues[0]?.hint).toBe(
      'allowed keys: maxCommandLine, maxSaslLine, maxErrors, preAuthTimeout, idleTimeout, maxConnections, maxConnectionsPerIp, greetingDelay',
    );
  });

  it('suggests keys of the selected login mode', async () => {
    const { issues } = await issuesOf(withLine('login:', '  login: { mode: mapped, secretFile: x }'));
    const unknown = issues.find((i) => i.message === 'unknown key');
    expect(unknown?.path).toBe('backend.login.secretFile');
    expect(unknown?.hint).toBe("did you mean 'secretsFile'? allowed keys: mode, secretsFile, method");
  });

  it('refuses unknown top-level keys', async () => {
    const { issues } = await issuesOf(`${MINIMAL}limit: {}\n`);
    expect(issues[0]).toMatchObject({ path: 'limit', message: 'unknown key', hint: expect.stringMatching(/^did you mean 'limits'\?/) });
  });

  it('reports a wrong type with its path', async () => {
    const { issues, message } = await issuesOf(MINIMAL.replace('port: 995', 'port: "nine"'));
    expect(issues).toEqual([{ path: 'listeners[0].port', message: 'expected number, got string' }]);
    expect(message).toContain('listeners[0].port: expected number, got string');
  });

  it('hints at quotes around numbers, and names integers', async () => {
    const quoted = await issuesOf(MINIMAL.replace('port: 995', 'port: "995"'));
    expect(quoted.issues[0]).toEqual({ path: 'listeners[0].port', message: 'expected number, got string', hint: 'remove the quotes around the number' });
    const fraction = await issuesOf(`${MINIMAL}limits: { maxErrors: 2.5 }\n`);
    expect(fraction.issues[0]).toEqual({ path: 'limits.maxErrors', message: 'expected integer, got a number with a fraction' });
  });

  it('reports missing required keys', async () => {
    const { issues } = await issuesOf('auth: {}\nbackend: { host: h, login: { mode: passthrough } }\n');
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'listeners', message: 'required (expected list (array))' },
        { path: 'auth.userFile', message: 'required when auth.verifiers includes userFile (the default)', hint: expect.stringMatching(/verifiers: \[kerberos\]/) },
      ]),
    );
  });

  it('lists allowed enum values and suggests a close one', async () => {
    const { issues } = await issuesOf(`${MINIMAL}log: { level: warning }\n`);
    expect(issues).toEqual([
      {
        path: 'log.level',
        message: "expected one of 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'",
        hint: "did you mean 'warn'?",
      },
    ]);
    const tls = await issuesOf(MINIMAL.replace('tls: {', 'tls: { minVersion: TLSv1.1,'));
    expect(tls.issues[0]?.path).toBe('listeners[0].tls.minVersion');
    expect(tls.issues[0]?.message).toBe("expected one of 'TLSv1.2', 'TLSv1.3'");
  });

  it('lists login modes for a bad or missing mode', async () => {
    const bad = await issuesOf(withLine('login:', '  login: { mode: masters, user: u, password: p }'));
    expect(bad.issues).toEqual([
      { path: 'backend.login.mode', message: "expected one of 'master', 'mapped', 'passthrough'", hint: "did you mean 'master'?" },
    ]);
    const missing = await issuesOf(withLine('login:', '  login: { user: u }'));
    expect(missing.issues[0]).toEqual({ path: 'backend.login.mode', message: "required: expected one of 'master', 'mapped', 'passthrough'" });
  });

  it('refuses a bad mechanism and duplicates', async () => {
    const bad = await issuesOf(MINIMAL.replace('userFile: /etc/popgate/users', 'userFile: /u\n  mechanisms: [PLAIN, DIGEST-MD5]'));
    expect(bad.issues[0]?.path).toBe('auth.mechanisms[1]');
    expect(bad.issues[0]?.message).toBe(
      "expected one of 'PLAIN', 'LOGIN', 'GSSAPI', 'CRAM-MD5', 'EXTERNAL', 'OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'",
    );
    const dup = await issuesOf(MINIMAL.replace('userFile: /etc/popgate/users', 'userFile: /u\n  mechanisms: [LOGIN, LOGIN]'));
    expect(dup.issues).toEqual([{ path: 'auth.mechanisms[1]', message: 'duplicate mechanism LOGIN' }]);
  });

  it('checks numeric bounds', async () => {
    const { issues } = await issuesOf(`${MINIMAL}limits: { maxCommandLine: 100, maxSaslLine: 2000000 }\n`);
    expect(issues).toEqual([
      { path: 'limits.maxCommandLine', message: 'must be at least 255' },
      { path: 'limits.maxSaslLine', message: 'must be at most 1048576' },
    ]);
    const port = await issuesOf(MINIMAL.replace('port: 995', 'port: 70000'));
    expect(port.issues).toEqual([{ path: 'listeners[0].port', message: 'must be at most 65535' }]);
  });

  it('refuses a pop3s listener without tls', async () => {
    const { issues, message } = await issuesOf(withLine('tls:', ''));
    expect(issues).toHaveLength(1);
    expect(issues[0]?.path).toBe('listeners[0].tls');
    expect(issues[0]?.message).toMatch(/pop3s listener \(implicit TLS\) requires a tls section/);
    expect(issues[0]?.hint).toMatch(/kind: pop3/);
    expect(message).toContain('listeners[0].tls: a pop3s listener');
  });

  it('refuses duplicate listener names and (address, port) pairs', async () => {
    const names = await issuesOf(
      MINIMAL.replace('listeners:\n', 'listeners:\n  - { name: pop3s, kind: pop3, port: 110 }\n').replace('- kind: pop3s', '- name: pop3s\n    kind: pop3s'),
    );
    expect(names.issues).toEqual([
      { path: 'listeners[1].name', message: 'duplicate listener name "pop3s" (also used by listeners[0])', hint: 'give each listener a unique name' },
    ]);
    const ports = await issuesOf(MINIMAL.replace('listeners:\n', 'listeners:\n  - { kind: pop3, port: 995 }\n'));
    expect(ports.issues).toEqual([
      { path: 'listeners[1].port', message: 'address 0.0.0.0 port 995 is already used by listeners[0]', hint: 'each listener needs its own (address, port) pair' },
    ]);
    // Same port on different addresses, and several ephemeral ports, are fine.
    await expect(parse(MINIMAL.replace('listeners:\n', 'listeners:\n  - { kind: pop3, port: 995, address: "::1" }\n'))).resolves.toBeDefined();
    const eph = await parse(
      MINIMAL.replace('listeners:\n', 'listeners:\n  - { name: a, kind: pop3, port: 0 }\n  - { name: b, kind: pop3, port: 0 }\n'),
    );
    expect(eph.listeners).toHaveLength(3);
  });

  it('refuses an empty listener list', async () => {
    const { issues } = await issuesOf(MINIMAL.replace(/listeners:[\s\S]*?auth:/, 'listeners: []\nauth:'));
    expect(issues).toEqual([{ path: 'listeners', message: 'at least one listener is required' }]);
  });

  it('refuses capabilities that popgate announces itself', async () => {
    const { issues } = await issuesOf(MINIMAL.replace('host: 127.0.0.1', 'host: 127.0.0.1\n  capabilities: [top, STLS]'));
    expect(issues).toEqual([{ path: 'backend.capabilities[1]', message: 'STLS is advertised by popgate itself', hint: expect.any(String) }]);
    const ok = await parse(MINIMAL.replace('host: 127.0.0.1', 'host: 127.0.0.1\n  capabilities: [top, uidl, "EXPIRE 30"]'));
    expect(ok.backend.capabilities).toEqual(['TOP', 'UIDL', 'EXPIRE 30']);
  });

  it('refuses line breaks in the greeting', async () => {
    const { issues } = await issuesOf(MINIMAL.replace('port: 995', 'port: 995\n    greeting: "hi\\r\\n+OK injected"'));
    expect(issues).toEqual([{ path: 'listeners[0].greeting', message: 'must not contain line breaks' }]);
  });

  it('reports every problem at once', async () => {
    const { issues } = await issuesOf(`${MINIMAL}log: { level: loud }\nlimits: { idleTimeout: 1m, maxErrors: x }\n`);
    expect(issues.map((i) => i.path).sort()).toEqual(['limits.idleTimeout', 'limits.maxErrors', 'log.level']);
  });

  it('refuses an empty document', async () => {
    const { issues } = await issuesOf('# nothing\n');
    expect(issues[0]?.message).toBe('the configuration is empty');
    const scalar = await issuesOf('just a string\n');
    expect(scalar.issues).toEqual([{ path: '', message: 'expected mapping (object), got string' }]);
  });
});
