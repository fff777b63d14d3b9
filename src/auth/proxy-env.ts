/**
 * Which HTTP forward proxy, if any, an outgoing auth-service request goes
 * through: an explicit proxy URL, none, or the conventional environment
 * variables (`http_proxy`/`HTTP_PROXY` for http URLs, `https_proxy`/
 * `HTTPS_PROXY` for https URLs, lowercase first, as curl and Python do;
 * empty values count as unset) filtered by `no_proxy`/`NO_PROXY`.
 *
 * NO_PROXY syntax (the curl/Go common ground):
 * - entries separated by commas and/or whitespace; case-insensitive;
 * - `*` alone bypasses the proxy for every host;
 * - `example.com`, `.example.com` and `*.example.com` all match
 *   `example.com` itself and every name under it (`a.example.com`), never
 *   `badexample.com`; a trailing dot on either side is ignored;
 * - an IP literal matches that address (IPv6 in any spelling, brackets
 *   optional); a CIDR block (`10.0.0.0/8`, `fd00::/8`) matches addresses in it.
 *   Names are never resolved: `localhost` does not match `127.0.0.1`;
 * - `host:port` / `[v6]:port` restricts the entry to that port (the URL's
 *   effective port: 80/443 when the URL has none).
 * Loopback is not bypassed implicitly (unlike Go): list it if you want it.
 */
import { BlockList, isIP } from 'node:net';

export type ProxyEnv = Readonly<Record<string, string | undefined>>;

/** How the proxy is chosen: a URL, 'none', or null for the environment. */
export type ProxySetting = string | null | 'none';

function envValue(env: ProxyEnv, lower: string): string | undefined {
  for (const name of [lower, lower.toUpperCase()]) {
    const v = env[name]?.trim();
    if (v) return v;
  }
  return undefined;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function normaliseHost(host: string): string {
  return stripBrackets(host.trim().toLowerCase()).replace(/\.$/, '');
}

function ipFamily(addr: string): 'ipv4' | 'ipv6' | undefined {
  const v = isIP(addr);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

interface NoProxyEntry {
  readonly host: string;
  readonly port?: number;
}

/** Split one NO_PROXY entry into host and optional port; undefined if malformed. */
function parseEntry(raw: string): NoProxyEntry | undefined {
  let host = raw;
  let portText: string | undefined;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close < 0) return undefined;
    host = raw.slice(1, close);
    const rest = raw.slice(close + 1);
    if (rest !== '') {
      // `[v6]:port`, or `[v6]/prefix` written with brackets.
      if (rest.startsWith(':')) portText = rest.slice(1);
      else if (rest.startsWith('/')) host += rest;
      else return undefined;
    }
  } else {
    const colons = raw.split(':').length - 1;
    if (colons === 1) {
      const i = raw.indexOf(':');
      host = raw.slice(0, i);
      portText = raw.slice(i + 1);
    }
    // 0 colons: a name or IPv4; 2+: a bare IPv6 literal/CIDR without a port.
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) return undefined;
    port = Number(portText);
    if (port < 1 || port > 65535) return undefined;
  }
  host = host.toLowerCase().replace(/^\*/, '').replace(/^\./, '').replace(/\.$/, '');
  if (host === '') return undefined;
  return port === undefined ? { host } : { host, port };
}

function entryMatches(entryHost: string, host: string): boolean {
  const hostFamily = ipFamily(host);
  const slash = entryHost.indexOf('/');
  if (slash >= 0) {
    const net = entryHost.slice(0, slash);
    const prefixText = entryHost.slice(slash + 1);
    const family = ipFamily(net);
    if (!family || !hostFamily || family !== hostFamily || !/^\d{1,3}$/.test(prefixText)) return false;
    const prefix = Number(prefixText);
    if (prefix > (family === 'ipv4' ? 32 : 128)) return false;
    const list = new BlockList();
    list.addSubnet(net, prefix, family);
    return list.check(host, hostFamily);
  }
  const entryFamily = ipFamily(entryHost);
  if (entryFamily || hostFamily) {
    if (!entryFamily || entryFamily !== hostFamily) return false;
    const list = new BlockList();
    list.addAddress(entryHost, entryFamily);
    return list.check(host, hostFamily);
  }
  return host === entryHost || host.endsWith(`.${entryHost}`);
}

/**
 * Whether `noProxy` (a NO_PROXY value) says to bypass the proxy for
 * `host`:`port`. `host` may be bracketed IPv6 as in URL.hostname.
 */
export function noProxyMatches(noProxy: string, host: string, port: number): boolean {
  const target = normaliseHost(host);
  for (const raw of noProxy.split(/[\s,]+/)) {
    if (raw === '') continue;
    if (raw === '*') return true;
    const entry = parseEntry(raw);
    if (!entry) continue;
    if (entry.port !== undefined && entry.port !== port) continue;
    if (entryMatches(entry.host, target)) return true;
  }
  return false;
}

/** The URL's port, or the scheme's default. */
export function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/**
 * The proxy URL to use for `target`, or null for a direct connection.
 * `setting` null consults `env`; a string other than 'none' is used as is
 * (NO_PROXY does not apply to an explicitly configured proxy). A proxy given
 * without a scheme (`proxy:3128`, as curl accepts) gets `http://`.
 * Throws on an unparsable proxy URL or a scheme other than http/https.
 */
export function resolveProxy(target: URL, setting: ProxySetting, env: ProxyEnv): URL | null {
  let raw: string | undefined;
  if (setting === 'none') return null;
  if (setting !== null) {
    raw = setting;
  } else {
    raw = envValue(env, target.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
    if (raw === undefined) return null;
    const noProxy = envValue(env, 'no_proxy');
    if (noProxy !== undefined && noProxyMatches(noProxy, target.hostname, effectivePort(target))) return null;
  }
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`invalid proxy URL ${JSON.stringify(redactUrl(withScheme))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`unsupported proxy scheme ${url.protocol} (http or https proxies only)`);
  }
  return url;
}

/** A URL for logs: no userinfo, no query. */
export function redactUrl(url: string | URL): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url;
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<unparsable URL>';
  }
}
