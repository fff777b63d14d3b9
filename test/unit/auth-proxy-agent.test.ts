/**
 * Which agent an outgoing verifier request gets (src/auth/proxy-agent.ts),
 * per target URL and proxy setting, and that auth_http and the OAuth issuer
 * client (src/auth/oauth/issuer-http.ts, the token validator's start-up log)
 * use that choice. No network: the agents are only inspected.
 */
import http from 'node:http';
import https from 'node:https';
import { Writable } from 'node:stream';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpAuthVerifier } from '../../src/auth/http-auth.js';
import { createIssuerHttp } from '../../src/auth/oauth/issuer-http.js';
import { createTokenValidator } from '../../src/auth/oauth/token-validator.js';
import { createEgressAgents, type EgressAgents, type EgressKind } from '../../src/auth/proxy-agent.js';
import type { ProxyEnv, ProxySetting } from '../../src/auth/proxy-env.js';
import { oauthSchema } from '../../src/config/oauth.js';
import { FakeClock } from '../helpers/fake-clock.js';

const AGENT_OPTIONS: http.AgentOptions = { keepAlive: true, maxSockets: 7, maxFreeSockets: 7, scheduling: 'lifo', timeout: 30_000 };
const ENV: ProxyEnv = {
  http_proxy: 'http://plain-proxy.example:3128',
  HTTPS_PROXY: 'http://tunnel-proxy.example:3128',
  NO_PROXY: 'internal.example, 10.0.0.0/8, direct.example:8443',
};

const made: EgressAgents[] = [];
afterEach(() => {
  for (const e of made.splice(0)) e.destroy();
});

function egress(proxy: ProxySetting, env: ProxyEnv = ENV): EgressAgents {
  const e = createEgressAgents({ proxy, env, agentOptions: AGENT_OPTIONS });
  made.push(e);
  return e;
}

const AGENT_CLASS: Record<EgressKind, new (...args: never[]) => http.Agent> = {
  'direct-http': http.Agent,
  'direct-https': https.Agent,
  'proxy-http': HttpProxyAgent,
  'proxy-connect': HttpsProxyAgent,
};

describe('createEgressAgents: the agent per URL and proxy setting', () => {
  const cases: Array<[ProxySetting, string, EgressKind, string | null]> = [
    // [setting, target, kind, proxy]
    ['none', 'http://auth.example/auth', 'direct-http', null],
    ['none', 'https://auth.example/auth', 'direct-https', null],
    ['http://proxy.example:3128', 'http://auth.example/auth', 'proxy-http', 'http://proxy.example:3128/'],
    ['http://proxy.example:3128', 'https://auth.example/auth', 'proxy-connect', 'http://proxy.example:3128/'],
    // An explicit proxy is used for every host: NO_PROXY is the environment's.
    ['http://proxy.example:3128', 'https://internal.example/', 'proxy-connect', 'http://proxy.example:3128/'],
    ['https://tls-proxy.example', 'https://auth.example/', 'proxy-connect', 'https://tls-proxy.example/'],
    // null: HTTP_PROXY for http, HTTPS_PROXY for https, NO_PROXY bypasses.
    [null, 'http://auth.example/', 'proxy-http', 'http://plain-proxy.example:3128/'],
    [null, 'https://auth.example/', 'proxy-connect', 'http://tunnel-proxy.example:3128/'],
    [null, 'https://login.internal.example/realms/mail', 'direct-https', null],
    [null, 'http://internal.example/auth', 'direct-http', null],
    [null, 'https://10.1.2.3/jwks', 'direct-https', null],
    [null, 'https://direct.example:8443/', 'direct-https', null],
    [null, 'https://direct.example/', 'proxy-connect', 'http://tunnel-proxy.example:3128/'],
    [null, 'https://[fd00::1]/', 'proxy-connect', 'http://tunnel-proxy.example:3128/'],
  ];
  it.each(cases)('proxy %s, %s -> %s via %s', (setting, target, kind, proxy) => {
    const r = egress(setting).route(new URL(target));
    expect(r.kind).toBe(kind);
    expect(r.agent).toBeInstanceOf(AGENT_CLASS[kind]);
    if (kind === 'direct-http') expect(r.agent).not.toBeInstanceOf(HttpProxyAgent);
    expect(r.proxy?.href ?? null).toBe(proxy);
    expect(r.shownProxy).toBe(proxy ?? 'none');
  });

  it('null without proxy variables: direct; empty values count as unset', () => {
    expect(egress(null, {}).route(new URL('https://auth.example/')).kind).toBe('direct-https');
    expect(egress(null, { HTTPS_PROXY: '  ', HTTP_PROXY: 'http://p:1' }).route(new URL('https://auth.example/')).kind).toBe('direct-https');
  });

  it('every agent gets the same bounded keep-alive options; one agent per (kind, proxy), shared by targets', () => {
    const e = egress(null);
    const a = e.route(new URL('https://issuer.example/.well-known/openid-configuration'));
    const b = e.route(new URL('https://keys.example/jwks'));
    const c = e.route(new URL('https://login.internal.example/jwks'));
    const d = e.route(new URL('http://auth.example/'));
    expect(b.agent).toBe(a.agent);
    expect(c.agent).not.toBe(a.agent);
    for (const r of [a, c, d]) {
      const agent = r.agent as http.Agent & { keepAlive: boolean; options: http.AgentOptions };
      expect(agent.keepAlive).toBe(true);
      expect(agent.maxSockets).toBe(7);
      expect(agent.maxFreeSockets).toBe(7);
    }
  });

  it('a tunnel through the proxy never sends proxy credentials from the configuration (the schema refuses them)', () => {
    const r = egress('http://proxy.example:3128').route(new URL('https://auth.example/'));
    expect((r.agent as HttpsProxyAgent<string>).proxy.username).toBe('');
  });

  it('refuses an unusable proxy URL from the environment', () => {
    expect(() => egress(null, { HTTPS_PROXY: 'socks5://p:1080' }).route(new URL('https://a.example/'))).toThrow(/unsupported proxy scheme/);
    expect(() => egress(null, {}).route(new URL('ftp://a.example/'))).toThrow(/not an http/);
  });
});

describe('auth_http: the proxy per URL', () => {
  const base = { timeoutMs: 1000, maxConcurrent: 1, maxQueue: 0, maxWaits: 0, headers: {}, authorizeTicketLogins: false };

  function proxyOf(url: string, proxy: ProxySetting, env: ProxyEnv = ENV): { proxyUrl: string | null; logged: string[] } {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
    const v = createHttpAuthVerifier({ ...base, url, proxy, env, logger });
    v.close();
    return { proxyUrl: v.proxyUrl, logged: lines };
  }

  it('none, explicit and environment (with NO_PROXY), http and https alike; the choice is logged once', () => {
    expect(proxyOf('https://auth.example/auth', 'none').proxyUrl).toBeNull();
    expect(proxyOf('https://auth.example/auth', 'http://proxy.example:3128').proxyUrl).toBe('http://proxy.example:3128/');
    expect(proxyOf('http://auth.example/auth', null).proxyUrl).toBe('http://plain-proxy.example:3128/');
    expect(proxyOf('https://auth.example/auth', null).proxyUrl).toBe('http://tunnel-proxy.example:3128/');
    expect(proxyOf('https://auth.internal.example/auth', null).proxyUrl).toBeNull();
    const { logged } = proxyOf('https://user:secret@auth.example/auth?key=k', null, { HTTPS_PROXY: 'http://pu:ppw@tunnel-proxy.example:3128' });
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({ authUrl: 'https://auth.example/auth', proxy: 'http://tunnel-proxy.example:3128/' });
    expect(logged[0]).not.toMatch(/secret|ppw|key=k/);
  });
});

describe('OAuth: the proxy per issuer URL', () => {
  it('issuer-http routes discovery, JWKS and introspection hosts independently', () => {
    const h = createIssuerHttp({ timeoutMs: 1000, clock: new FakeClock(), proxy: null, env: ENV });
    try {
      expect(h.route(new URL('https://login.example/.well-known/openid-configuration')).shownProxy).toBe('http://tunnel-proxy.example:3128/');
      expect(h.route(new URL('https://keys.internal.example/jwks')).shownProxy).toBe('none');
      expect(h.route(new URL('https://10.9.9.9/introspect')).shownProxy).toBe('none');
      expect(h.route(new URL('http://127.0.0.1:8080/jwks')).shownProxy).toBe('http://plain-proxy.example:3128/');
      expect(h.route(new URL('https://login.example/x')).agent).toBeInstanceOf(HttpsProxyAgent);
    } finally {
      h.close();
    }
    const none = createIssuerHttp({ timeoutMs: 1000, clock: new FakeClock(), proxy: 'none', env: ENV });
    expect(none.route(new URL('https://login.example/')).agent).toBeInstanceOf(https.Agent);
    expect(none.route(new URL('https://login.example/')).agent).not.toBeInstanceOf(HttpsProxyAgent);
    none.close();
    const explicit = createIssuerHttp({ timeoutMs: 1000, clock: new FakeClock(), proxy: 'http://proxy.example:3128', env: ENV });
    expect(explicit.route(new URL('https://keys.internal.example/jwks')).shownProxy).toBe('http://proxy.example:3128/');
    explicit.close();
  });

  it('the token validator logs the way of each configured issuer URL at start, and refuses a bad environment proxy', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
    const cfg = oauthSchema.parse({
      issuer: 'https://login.example/realms/mail',
      audience: 'popgate',
      introspection: { url: 'https://introspect.internal.example/introspect?x=1', clientId: 'popgate', clientSecret: 's' },
    });
    expect(cfg.proxy).toBeNull();
    createTokenValidator(cfg, { logger, env: ENV, clock: new FakeClock() }).close();
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>).map(({ endpoint, url, proxy }) => ({ endpoint, url, proxy }))).toEqual([
      { endpoint: 'issuer', url: 'https://login.example/realms/mail/.well-known/openid-configuration', proxy: 'http://tunnel-proxy.example:3128/' },
      { endpoint: 'introspection', url: 'https://introspect.internal.example/introspect', proxy: 'none' },
    ]);
    lines.length = 0;
    createTokenValidator({ ...cfg, jwksUrl: 'https://keys.example/jwks', proxy: 'none' }, { logger, env: ENV, clock: new FakeClock() }).close();
    expect(lines.map((l) => (JSON.parse(l) as { endpoint: string; proxy: string }).endpoint + ' ' + (JSON.parse(l) as { proxy: string }).proxy)).toEqual([
      'jwks none',
      'introspection none',
    ]);
    expect(() => createTokenValidator(cfg, { logger, env: { HTTPS_PROXY: 'socks5://p:1080' } })).toThrow(/auth\.oauth: unsupported proxy scheme/);
  });
});
