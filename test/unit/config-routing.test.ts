import { describe, expect, it } from 'vitest';
import type { BackendTarget } from '../../src/backend/types.js';
import { backendTargets, targetsForUser } from '../../src/config/index.js';
import { issuesOf, parseConfig as parse } from '../helpers/config.js';

const FRONT = `
listeners:
  - { kind: pop3, port: 110 }
auth:
  userFile: /etc/popgate/users
`;

/** A config with `backend` extra lines (2-space indented) and an optional tail (e.g. routing). */
function config(backendExtra = '', tail = ''): string {
  const extra = backendExtra === '' ? '' : `${backendExtra.replace(/^/gm, '  ')}\n`;
  return `${FRONT}backend:\n  host: pop.internal\n${extra}  login: { mode: master, user: popgate, password: s3cret }\n${tail}`;
}

describe('backend tls, proxyProtocol and xclient', () => {
  it('default to plaintext, no PROXY header, XCLIENT when offered, port 110', async () => {
    const cfg = await parse(config());
    expect(cfg.backend).toMatchObject({ port: 110, tls: { mode: 'none', verify: true }, proxyProtocol: 'none', xclient: true });
    expect(cfg.backend.tls).toEqual({ mode: 'none', verify: true });
  });

  it('default the port to 995 with implicit TLS, and keep an explicit port', async () => {
    expect((await parse(config('tls: { mode: implicit }'))).backend.port).toBe(995);
    expect((await parse(config('tls: { mode: starttls }'))).backend.port).toBe(110);
    expect((await parse(config('port: 1995\ntls: { mode: implicit }'))).backend.port).toBe(1995);
  });

  it('takes every key and resolves caFile relative to the config directory', async () => {
    const cfg = await parse(
      config('tls: { mode: starttls, caFile: ca/backend.pem, serverName: pop.internal.example.com, verify: true }\nproxyProtocol: v2\nxclient: false'),
      { baseDir: '/srv/popgate' },
    );
    expect(cfg.backend).toMatchObject({
      port: 110,
      tls: { mode: 'starttls', caFile: '/srv/popgate/ca/backend.pem', serverName: 'pop.internal.example.com', verify: true },
      proxyProtocol: 'v2',
      xclient: false,
    });
  });

  it('accepts verify: false as an explicit opt-out', async () => {
    const cfg = await parse(config('tls: { mode: implicit, verify: false }'));
    expect(cfg.backend.tls).toEqual({ mode: 'implicit', verify: false });
  });

  it('lists allowed values and keys', async () => {
    expect(await issuesOf(config('tls: { mode: stls }\nproxyProtocol: V2'))).toEqual([
      { path: 'backend.tls.mode', message: "expected one of 'none', 'starttls', 'implicit'" },
      { path: 'backend.proxyProtocol', message: "expected one of 'none', 'v1', 'v2'", hint: "did you mean 'v2'?" },
    ]);
    expect(await issuesOf(config('tls: { mode: implicit, verifyCert: false }'))).toEqual([
      { path: 'backend.tls.verifyCert', message: 'unknown key', hint: "did you mean 'verify'? allowed keys: mode, caFile, serverName, verify" },
    ]);
    expect(await issuesOf(config('tls: { mode: implicit, serverName: "bad name" }'))).toEqual([
      { path: 'backend.tls.serverName', message: 'must be an IPv4/IPv6 address (without brackets) or a hostname' },
    ]);
  });
});

describe('routing', () => {
  it('defaults to no routes', async () => {
    expect((await parse(config())).routing).toEqual({ users: {}, domains: {} });
    expect((await parse(config('', 'routing: {}\n'))).routing).toEqual({ users: {}, domains: {} });
  });

  it('keeps entries as written (inheritance is resolved by backendTargets) and lowercases domains', async () => {
    const cfg = await parse(
      config('', 'routing:\n  users: { alice: [{ host: 10.0.0.5, port: 110 }] }\n  domains:\n    Example.COM.: [{ host: 10.0.0.6 }, { host: 10.0.0.7, port: 995, tls: { mode: implicit } }]\n'),
    );
    expect(cfg.routing).toEqual({
      users: { alice: [{ host: '10.0.0.5', port: 110 }] },
      domains: { 'example.com': [{ host: '10.0.0.6' }, { host: '10.0.0.7', port: 995, tls: { mode: 'implicit', verify: true } }] },
    });
  });

  it('resolves relative caFile in route entries', async () => {
    const cfg = await parse(config('', 'routing:\n  users: { alice: [{ host: h, tls: { mode: implicit, caFile: ca.pem } }] }\n'), { baseDir: '/srv/popgate' });
    expect(cfg.routing.users.alice?.[0]?.tls?.caFile).toBe('/srv/popgate/ca.pem');
  });

  it('refuses empty lists and bad keys at their paths', async () => {
    const issues = await issuesOf(
      config('', 'routing:\n  users:\n    "bob smith": [{ host: h }]\n    carol: []\n  domains:\n    "user@example.com": [{ host: h }]\n    "10.0.0.1": [{ host: h }]\n    "bad_domain!": [{ host: h }]\n'),
    );
    expect(issues).toEqual([
      { path: 'routing.users.carol', message: 'at least one backend is required' },
      { path: 'routing.users.bob smith', message: 'key must be a POP3 user name (not empty; no spaces, control characters or ":")' },
      { path: 'routing.domains.user@example.com', message: 'key must be a mail domain (e.g. example.com)', hint: 'route single users under routing.users' },
      { path: 'routing.domains.10.0.0.1', message: 'key must be a mail domain (e.g. example.com)', hint: 'route single users under routing.users' },
      { path: 'routing.domains.bad_domain!', message: 'key must be a mail domain (e.g. example.com)', hint: 'route single users under routing.users' },
    ]);
  });

  it('refuses domains that differ only in case or a trailing dot', async () => {
    expect(await issuesOf(config('', 'routing:\n  domains:\n    example.com: [{ host: a }]\n    EXAMPLE.com.: [{ host: b }]\n'))).toEqual([
      { path: 'routing.domains.EXAMPLE.com.', message: 'the same domain as "example.com" (domains are case-insensitive)' },
    ]);
  });

  it('refuses a backend repeated within one route, comparing resolved ports', async () => {
    const issues = await issuesOf(
      config(
        'tls: { mode: implicit }',
        'routing:\n  users:\n    alice: [{ host: a }, { host: A, port: 995 }, { host: a, tls: { mode: none } }]\n  domains:\n    example.com: [{ host: b, port: 110 }, { host: b, tls: { mode: starttls } }]\n',
      ),
    );
    expect(issues).toEqual([
      { path: 'routing.users.alice[1]', message: 'duplicate backend A port 995 (also entry 0 of this list)', hint: expect.any(String) },
      { path: 'routing.domains.example.com[1]', message: 'duplicate backend b port 110 (also entry 0 of this list)', hint: expect.any(String) },
    ]);
  });

  it('suggests keys and values inside route entries', async () => {
    expect(await issuesOf(config('', 'routing:\n  users: { alice: [{ hots: h }] }\n'))).toEqual([
      { path: 'routing.users.alice[0].host', message: 'required (expected string)' },
      { path: 'routing.users.alice[0].hots', message: 'unknown key', hint: "did you mean 'host'? allowed keys: host, port, tls, proxyProtocol, xclient" },
    ]);
    expect(await issuesOf(config('', 'routing:\n  domains: { example.com: [{ host: h, tls: { mode: implict } }] }\n'))).toEqual([
      { path: 'routing.domains.example.com[0].tls.mode', message: "expected one of 'none', 'starttls', 'implicit'", hint: "did you mean 'implicit'?" },
    ]);
    expect(await issuesOf(config('', 'routing:\n  user: {}\n'))).toEqual([
      { path: 'routing.user', message: 'unknown key', hint: "did you mean 'users'? allowed keys: users, domains" },
    ]);
  });
});

describe('backendTargets', () => {
  const TEXT = config(
    'port: 1110\ntls: { mode: starttls, caFile: /ca/backend.pem, serverName: pop.internal.example.com }\nproxyProtocol: v1\nxclient: false',
    [
      'routing:',
      '  users:',
      '    alice: [{ host: 10.0.0.5 }, { host: 10.0.0.6, port: 2110, proxyProtocol: none, xclient: true }]',
      '    "bob@example.com": [{ host: 10.0.0.9, tls: { mode: implicit } }]',
      '  domains:',
      '    Example.com: [{ host: 10.0.0.7, tls: { mode: implicit, verify: false } }, { host: 10.0.0.8, tls: {} }]',
      '',
    ].join('\n'),
  );
  const inheritedTls = { mode: 'starttls', caFile: '/ca/backend.pem', serverName: 'pop.internal.example.com', verify: true } as const;

  it('makes [backend] the default route', async () => {
    const targets = backendTargets(await parse(TEXT));
    expect(targets.defaultTargets).toEqual<BackendTarget[]>([
      { host: 'pop.internal', port: 1110, tls: inheritedTls, proxyProtocol: 'v1', xclient: false },
    ]);
  });

  it('inherits tls, proxyProtocol and xclient unless given; port is 110 or 995, never inherited', async () => {
    const targets = backendTargets(await parse(TEXT));
    expect(targets.users.get('alice')).toEqual<BackendTarget[]>([
      { host: '10.0.0.5', port: 110, tls: inheritedTls, proxyProtocol: 'v1', xclient: false },
      { host: '10.0.0.6', port: 2110, tls: inheritedTls, proxyProtocol: 'none', xclient: true },
    ]);
    expect(targets.users.get('bob@example.com')).toEqual<BackendTarget[]>([
      { host: '10.0.0.9', port: 995, tls: { mode: 'implicit', verify: true }, proxyProtocol: 'v1', xclient: false },
    ]);
    // A tls section replaces backend.tls as a whole: no CA or name carried over.
    expect(targets.domains.get('example.com')).toEqual<BackendTarget[]>([
      { host: '10.0.0.7', port: 995, tls: { mode: 'implicit', verify: false }, proxyProtocol: 'v1', xclient: false },
      { host: '10.0.0.8', port: 110, tls: { mode: 'none', verify: true }, proxyProtocol: 'v1', xclient: false },
    ]);
    expect([...targets.domains.keys()]).toEqual(['example.com']);
  });

  it('produces BackendTls without undefined keys', async () => {
    const targets = backendTargets(await parse(config()));
    expect(Object.keys(targets.defaultTargets[0]?.tls ?? {})).toEqual(['mode', 'verify']);
    expect(targets.users.size).toBe(0);
    expect(targets.domains.size).toBe(0);
  });

  it('targetsForUser: exact user, else domain (case-insensitive, after the last "@"), else default', async () => {
    const targets = backendTargets(await parse(TEXT));
    expect(targetsForUser(targets, 'alice')).toBe(targets.users.get('alice'));
    expect(targetsForUser(targets, 'Alice')).toBe(targets.defaultTargets);
    expect(targetsForUser(targets, 'bob@example.com')).toBe(targets.users.get('bob@example.com'));
    expect(targetsForUser(targets, 'carol@EXAMPLE.COM')).toBe(targets.domains.get('example.com'));
    expect(targetsForUser(targets, 'dave@x@example.com')).toBe(targets.domains.get('example.com'));
    expect(targetsForUser(targets, 'erin@example.org')).toBe(targets.defaultTargets);
    expect(targetsForUser(targets, 'frank')).toBe(targets.defaultTargets);
  });
});
