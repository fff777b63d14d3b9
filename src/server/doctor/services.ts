/**
 * The services part of `popgate doctor`: the auth_http service answers HTTP
 * (a request with no credentials: it can authenticate nobody), Redis answers
 * PING when the throttle store is redis, and the OAuth issuer serves its
 * discovery document and a JWK Set, and each LDAP server of auth.ldap
 * answers (over its TLS, certificate checked) and, in search mode, lets the
 * service account bind. Each request has a deadline.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { Client } from 'ldapts';
import { createClient } from 'redis';
import { ldapTlsOptions } from '../../auth/ldap.js';
import type { PopgateConfig } from '../../config/index.js';
import { discoveryUrl } from '../../config/oauth.js';
import { errText, fail, ok, warn, type DoctorResult } from './types.js';

/** A URL without its path and query (they may hold a key): scheme, host and port. */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(unparsable URL)';
  }
}

/** A redis:// URL as scheme, host and port: no credentials, no database. */
function redisShown(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(unparsable URL)';
  }
}

/** GET `url` with no credentials; the status and headers, or rejects (no answer). Body capped and dropped. */
export function httpProbe(url: string, timeoutMs: number, maxBody = 1024 * 1024): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'GET', timeout: timeoutMs, headers: { accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > maxBody) req.destroy(new Error(`answer larger than ${maxBody} bytes`));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** auth.http: any HTTP answer to a request without credentials. */
export async function checkAuthHttp(config: PopgateConfig): Promise<DoctorResult[]> {
  const http = config.auth.http;
  if (http === undefined || !config.auth.verifiers.includes('http')) return [];
  const check = `auth_http service ${origin(http.url)}`;
  try {
    const res = await httpProbe(http.url, http.timeout);
    const status = res.headers['auth-status'];
    return [ok('services', check, `answers HTTP ${res.status}${status !== undefined ? ` (Auth-Status: ${String(status)})` : ''} to a request without credentials${http.proxy !== null ? '; asked directly, not through auth.http.proxy' : ''}`)];
  } catch (err) {
    return [fail('services', check, `no HTTP answer: ${errText(err)}`, 'start the auth service, or correct auth.http.url')];
  }
}

/** auth.throttle.redis with a url: connect and PING. Sentinel and cluster: not probed (a warning). */
export async function checkRedis(config: PopgateConfig, timeoutMs: number): Promise<DoctorResult[]> {
  const t = config.auth.throttle;
  if (!t.enabled || t.store !== 'redis' || t.redis === undefined) return [];
  if (t.redis.url === undefined) {
    return [warn('services', 'redis', `not probed: doctor pings a url store only (this one is ${t.redis.sentinel ? 'sentinel' : 'cluster'})`, 'check the nodes with redis-cli PING')];
  }
  const check = `redis ${redisShown(t.redis.url)}`;
  const client = createClient({ url: t.redis.url, socket: { connectTimeout: timeoutMs, reconnectStrategy: false } });
  let lastError: unknown;
  client.on('error', (err: unknown) => (lastError = err));
  try {
    const answer = await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise<never>((_r, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
    return [ok('services', check, `answers PING with ${answer}`)];
  } catch (err) {
    return [fail('services', check, `no PONG: ${errText(lastError ?? err)}`, 'start Redis, or correct auth.throttle.redis.url (credentials, rediss:// for TLS)')];
  } finally {
    // destroy() throws on a client that never opened (connection refused).
    if (client.isOpen) client.destroy();
  }
}

/** auth.oauth: the discovery document (unless jwksUrl is set) names the issuer, and the JWKS has keys. */
export async function checkOauth(config: PopgateConfig): Promise<DoctorResult[]> {
  const o = config.auth.oauth;
  if (o === undefined) return [];
  const results: DoctorResult[] = [];
  let jwksUrl = o.jwksUrl;
  if (jwksUrl === undefined) {
    const url = discoveryUrl(o.issuer);
    const check = 'oauth issuer discovery';
    try {
      const res = await httpProbe(url, o.timeout);
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const doc = JSON.parse(res.body) as { issuer?: unknown; jwks_uri?: unknown };
      if (doc.issuer !== o.issuer) throw new Error(`the document names the issuer ${JSON.stringify(doc.issuer)}, not ${o.issuer}`);
      if (typeof doc.jwks_uri !== 'string') throw new Error('the document has no jwks_uri');
      jwksUrl = doc.jwks_uri;
      results.push(ok('services', check, `${url} names ${o.issuer} and its JWKS ${jwksUrl}`));
    } catch (err) {
      results.push(fail('services', check, `${url}: ${errText(err)}`, 'correct auth.oauth.issuer (exactly as tokens carry it in iss), or set auth.oauth.jwksUrl'));
      return results;
    }
  }
  const check = 'oauth issuer JWKS';
  try {
    const res = await httpProbe(jwksUrl, o.timeout);
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const keys = (JSON.parse(res.body) as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || keys.length === 0) throw new Error('no keys in it');
    results.push(ok('services', check, `${origin(jwksUrl)} serves ${keys.length} key${keys.length === 1 ? '' : 's'}`));
  } catch (err) {
    results.push(fail('services', check, `${origin(jwksUrl)}: ${errText(err)}`, 'make the issuer serve its JWK Set, or correct auth.oauth.jwksUrl'));
  }
  return results;
}

/**
 * auth.ldap: each URL answers a Who am I? request (RFC 4532) over its TLS
 * (ldaps://, or StartTLS when set), and in search mode the service account
 * binds on the first one that answers. No user password is tried.
 */
export async function checkLdap(config: PopgateConfig): Promise<DoctorResult[]> {
  const l = config.auth.ldap;
  if (l === undefined || !config.auth.verifiers.includes('ldap')) return [];
  let ca: string | undefined;
  try {
    ca = l.caFile !== undefined ? await readFile(l.caFile, 'utf8') : undefined;
  } catch (err) {
    return [fail('services', 'ldap', `CA file ${l.caFile}: ${errText(err)}`, 'correct auth.ldap.caFile')];
  }
  const results: DoctorResult[] = [];
  let answering: string | undefined;
  for (const url of l.urls) {
    const check = `ldap server ${url}`;
    const tls = ldapTlsOptions(url, ca, l.serverName);
    const client = new Client({ url, timeout: l.timeout, connectTimeout: l.connectTimeout, ...(url.startsWith('ldaps:') ? { tlsOptions: tls } : {}) });
    try {
      if (l.startTls) await client.startTLS(tls);
      await client.exop('1.3.6.1.4.1.4203.1.11.3');
      results.push(ok('services', check, `answers${url.startsWith('ldaps:') || l.startTls ? ` over ${l.startTls ? 'StartTLS' : 'TLS'}, certificate checked` : ' (no TLS)'}`));
      answering ??= url;
    } catch (err) {
      results.push(fail('services', check, `no answer: ${errText(err)}`, 'start the directory, or correct auth.ldap.urls, caFile, serverName or startTls'));
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }
  const search = l.search;
  if (search !== undefined && answering !== undefined) {
    const check = 'ldap service account';
    const client = new Client({ url: answering, timeout: l.timeout, connectTimeout: l.connectTimeout, ...(answering.startsWith('ldaps:') ? { tlsOptions: ldapTlsOptions(answering, ca, l.serverName) } : {}) });
    try {
      if (l.startTls) await client.startTLS(ldapTlsOptions(answering, ca, l.serverName));
      await client.bind(search.bindDn, search.bindPassword);
      results.push(ok('services', check, `${search.bindDn} binds at ${answering}`));
    } catch (err) {
      results.push(fail('services', check, `${search.bindDn} does not bind at ${answering}: ${errText(err)}`, 'correct auth.ldap.search.bindDn or its password (bindPasswordFile)'));
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }
  return results;
}
