/**
 * The services part of `popgate doctor`: the auth_http service answers HTTP
 * (a request with no credentials: it can authenticate nobody), the Redis
 * throttle store answers in its topology (./redis.ts), and the OAuth issuer
 * serves its discovery document and a JWK Set, and each LDAP server of
 * auth.ldap answers (over its TLS, certificate checked) and, in search mode,
 * lets the service account bind. Each request has a deadline.
 *
 * The HTTP probes go the way the gateway's requests go: the agent is chosen
 * per URL by ../../auth/proxy-agent.ts from auth.http.proxy /
 * auth.oauth.proxy (null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the
 * environment), and each detail says which way it went (`direct`, or
 * `through proxy http://proxy:3128`). A proxy that is down, or refuses the
 * CONNECT, fails with a fix naming the proxy setting.
 */
import http from 'node:http';
import https from 'node:https';
import { TLSSocket } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { Client } from 'ldapts';
import { ldapTlsOptions } from '../../auth/ldap.js';
import { createEgressAgents, type EgressAgents, type EgressKind } from '../../auth/proxy-agent.js';
import type { ProxyEnv, ProxySetting } from '../../auth/proxy-env.js';
import type { PopgateConfig } from '../../config/index.js';
import { discoveryUrl } from '../../config/oauth.js';
import { errText, fail, ok, type DoctorResult } from './types.js';

export { checkRedis } from './redis.js';

/** A URL without its path and query (they may hold a key): scheme, host and port. */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(unparsable URL)';
  }
}

/** Which way a probe went, for its detail and its fix. */
export interface ProbeWay {
  readonly kind: EgressKind;
  /** The proxy (scheme, host, port), or null when direct. */
  readonly proxy: string | null;
}

/** The proxy setting's name and value, as the fixes name them. */
export interface ProxyChoice {
  /** `auth.http.proxy` or `auth.oauth.proxy`. */
  readonly name: string;
  readonly setting: ProxySetting;
  readonly env: ProxyEnv;
}

/** How a proxy URL and where it came from read in a detail. */
export function wayShown(target: URL, proxy: URL | null, choice: Pick<ProxyChoice, 'name' | 'setting'>): string {
  if (proxy === null) return 'direct';
  const from = choice.setting === null ? `${target.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY'} from the environment, ${choice.name} being null` : choice.name;
  return `through proxy ${proxy.protocol}//${proxy.host} (${from})`;
}

/** The fix for a probe that failed on its way through a proxy. */
export function proxyFix(choice: Pick<ProxyChoice, 'name' | 'setting'>, proxy: string, target: URL): string {
  const where = `${target.hostname}:${target.port || (target.protocol === 'https:' ? '443' : '80')}`;
  const setting =
    choice.setting === null
      ? `${choice.name} (null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment; list the host in NO_PROXY or set none to go direct)`
      : `${choice.name} (none: direct; null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment)`;
  return `start the proxy ${proxy} and let it through to ${where}, or correct ${setting}`;
}

/** A probe that failed because of the proxy, not the service. */
export class ProxyFault extends Error {}

export interface HttpAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** The connection-level error codes that, at the proxy's port, mean the proxy is not there. */
const NOT_THERE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * GET `url` with no credentials (not even a user:password@ in the URL)
 * through `egress`, the agent the gateway would use for it; the answer, or
 * rejects (no answer; a ProxyFault when the proxy is down or refused the
 * CONNECT). Body capped; the whole exchange has `timeoutMs`.
 */
export function httpProbe(url: URL, egress: EgressAgents, timeoutMs: number, maxBody = 1024 * 1024): { way: ProbeWay; answer: Promise<HttpAnswer> } | { error: Error } {
  let route: ReturnType<EgressAgents['route']>;
  try {
    route = egress.route(url);
  } catch (err) {
    return { error: err instanceof Error ? err : new Error(String(err)) };
  }
  const proxy = route.proxy !== null ? `${route.proxy.protocol}//${route.proxy.host}` : null;
  const way: ProbeWay = { kind: route.kind, proxy };
  const answer = new Promise<HttpAnswer>((resolve, reject) => {
    const options: https.RequestOptions = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? undefined : Number(url.port),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { accept: 'application/json' },
      agent: route.agent,
    };
    const fault = (err: Error): Error => {
      const e = err as NodeJS.ErrnoException & { port?: number; hostname?: string };
      const proxyPort = route.proxy !== null ? Number(route.proxy.port || (route.proxy.protocol === 'https:' ? 443 : 80)) : undefined;
      if (proxyPort !== undefined && e.code !== undefined && NOT_THERE.has(e.code) && (e.port === proxyPort || e.hostname === route.proxy?.hostname)) {
        return new ProxyFault(`the proxy ${proxy} does not answer: ${errText(err)}`);
      }
      return err;
    };
    const req = (url.protocol === 'https:' ? https.request : http.request)(options, (res) => {
      // https-proxy-agent hands a refused CONNECT back as the answer, on a plain socket: not the service's.
      if (route.kind === 'proxy-connect' && !(res.socket instanceof TLSSocket)) {
        res.resume();
        finish(new ProxyFault(`the proxy ${proxy} refused the CONNECT to ${url.host}: HTTP ${res.statusCode ?? 0}`));
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > maxBody) finish(new Error(`answer larger than ${maxBody} bytes`));
      });
      res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', (err) => finish(fault(err)));
    });
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    function finish(err: Error | undefined, a?: HttpAnswer): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(a!);
    }
    req.on('error', (err) => finish(fault(err)));
    req.end();
  });
  return { way, answer };
}

/** The egress agents of one check: no keep-alive (one question each), the gateway's choice of route. */
function probeAgents(choice: ProxyChoice): EgressAgents {
  return createEgressAgents({ proxy: choice.setting, env: choice.env, agentOptions: { keepAlive: false } });
}

/** Who a failed probe points at: the proxy, the proxy or the service (through a proxy), or the service (direct). */
type Blame = 'proxy' | 'either' | 'service';

type ProbeOutcome = { answer: HttpAnswer; way: string; kind: EgressKind } | { error: string; way: string; blame: Blame; fix?: string };

/** One GET as the gateway would send it: the answer and the way, or a failure's detail and who is to blame. */
async function probe(url: string, egress: EgressAgents, choice: ProxyChoice, timeoutMs: number): Promise<ProbeOutcome> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { error: 'not a URL', way: 'no way', blame: 'service' };
  }
  const p = httpProbe(target, egress, timeoutMs);
  if ('error' in p) {
    const fix = `correct ${choice.name}${choice.setting === null ? ' (null: HTTP_PROXY/HTTPS_PROXY from the environment)' : ''}`;
    return { error: `the proxy setting is unusable: ${errText(p.error)}`, way: 'no way', blame: 'proxy', fix };
  }
  const way = wayShown(target, p.way.proxy === null ? null : new URL(p.way.proxy), choice);
  try {
    return { answer: await p.answer, way, kind: p.way.kind };
  } catch (err) {
    if (p.way.proxy === null) return { error: errText(err), way, blame: 'service' };
    if (err instanceof ProxyFault) return { error: errText(err), way, blame: 'proxy', fix: proxyFix(choice, p.way.proxy, target) };
    return { error: errText(err), way, blame: 'either' };
  }
}

/** The fix of a failed probe: the service's own, or the proxy's (named by its setting). */
function fixOf(r: { blame: Blame; fix?: string }, choice: ProxyChoice, own: string): string {
  if (r.blame === 'proxy') return r.fix ?? `correct ${choice.name}`;
  if (r.blame === 'either') return `${own}; or check that the proxy (${choice.name}) lets popgate through`;
  return own;
}

/**
 * Through an http:// proxy (absolute-form requests) the proxy answers for a
 * service it cannot reach: 502/503/504 (and 407, it wants credentials) are
 * taken as the proxy's, not the service's.
 */
export function proxyAnswered(kind: EgressKind, status: number): boolean {
  return kind === 'proxy-http' && [407, 502, 503, 504].includes(status);
}

/** auth.http: any HTTP answer to a request without credentials, asked the way the gateway asks. */
export async function checkAuthHttp(config: PopgateConfig, env: ProxyEnv = process.env): Promise<DoctorResult[]> {
  const h = config.auth.http;
  if (h === undefined || !config.auth.verifiers.includes('http')) return [];
  const check = `auth_http service ${origin(h.url)}`;
  const own = 'start the auth service, or correct auth.http.url';
  const choice: ProxyChoice = { name: 'auth.http.proxy', setting: h.proxy ?? null, env };
  const egress = probeAgents(choice);
  try {
    const r = await probe(h.url, egress, choice, h.timeout);
    if ('error' in r) return [fail('services', check, `no HTTP answer (${r.way}): ${r.error}`, fixOf(r, choice, own))];
    if (proxyAnswered(r.kind, r.answer.status)) {
      return [fail('services', check, `HTTP ${r.answer.status} (${r.way}): the proxy's answer for a service it cannot reach, or the service's own`, fixOf({ blame: 'either' }, choice, own))];
    }
    const status = r.answer.headers['auth-status'];
    return [ok('services', check, `answers HTTP ${r.answer.status}${status !== undefined ? ` (Auth-Status: ${String(status)})` : ''} to a request without credentials (${r.way})`)];
  } finally {
    egress.destroy();
  }
}

/** auth.oauth: the discovery document (unless jwksUrl is set) names the issuer, and the JWKS has keys; asked the way the gateway asks. */
export async function checkOauth(config: PopgateConfig, env: ProxyEnv = process.env): Promise<DoctorResult[]> {
  const o = config.auth.oauth;
  if (o === undefined) return [];
  const choice: ProxyChoice = { name: 'auth.oauth.proxy', setting: o.proxy ?? null, env };
  const egress = probeAgents(choice);
  const results: DoctorResult[] = [];
  /** The document at `url` as JSON, or a failure with its fix. */
  const getJson = async (url: string, own: string): Promise<{ doc: Record<string, unknown>; way: string } | { error: string; way: string; fix: string }> => {
    const r = await probe(url, egress, choice, o.timeout);
    if ('error' in r) return { error: r.error, way: r.way, fix: fixOf(r, choice, own) };
    const blame: Blame = r.kind === 'proxy-http' ? 'either' : 'service';
    if (r.answer.status !== 200) return { error: `HTTP ${r.answer.status}`, way: r.way, fix: fixOf({ blame }, choice, own) };
    try {
      const doc = JSON.parse(r.answer.body) as unknown;
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a JSON object');
      return { doc: doc as Record<string, unknown>, way: r.way };
    } catch (err) {
      return { error: `not JSON: ${errText(err)}`, way: r.way, fix: own };
    }
  };
  try {
    let jwksUrl = o.jwksUrl;
    if (jwksUrl === undefined) {
      const url = discoveryUrl(o.issuer);
      const check = 'oauth issuer discovery';
      const own = 'correct auth.oauth.issuer (exactly as tokens carry it in iss), or set auth.oauth.jwksUrl';
      const r = await getJson(url, own);
      if ('error' in r) {
        results.push(fail('services', check, `${url} (${r.way}): ${r.error}`, r.fix));
        return results;
      }
      if (r.doc.issuer !== o.issuer) {
        results.push(fail('services', check, `${url} (${r.way}): the document names the issuer ${JSON.stringify(r.doc.issuer)}, not ${o.issuer}`, own));
        return results;
      }
      if (typeof r.doc.jwks_uri !== 'string') {
        results.push(fail('services', check, `${url} (${r.way}): the document has no jwks_uri`, own));
        return results;
      }
      jwksUrl = r.doc.jwks_uri;
      results.push(ok('services', check, `${url} names ${o.issuer} and its JWKS ${jwksUrl} (${r.way})`));
    }
    const check = 'oauth issuer JWKS';
    const own = 'make the issuer serve its JWK Set, or correct auth.oauth.jwksUrl';
    const r = await getJson(jwksUrl, own);
    if ('error' in r) {
      results.push(fail('services', check, `${origin(jwksUrl)} (${r.way}): ${r.error}`, r.fix));
    } else if (!Array.isArray(r.doc.keys) || r.doc.keys.length === 0) {
      results.push(fail('services', check, `${origin(jwksUrl)} (${r.way}): no keys in it`, own));
    } else {
      const n = r.doc.keys.length;
      results.push(ok('services', check, `${origin(jwksUrl)} serves ${n} key${n === 1 ? '' : 's'} (${r.way})`));
    }
    return results;
  } finally {
    egress.destroy();
  }
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
