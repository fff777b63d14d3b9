/**
 * The node:http agent an outgoing request of the verifiers (auth_http, the
 * OAuth issuer's discovery, JWKS and introspection) goes through, chosen per
 * target URL from a proxy setting (./proxy-env.ts: a URL, 'none', or null for
 * HTTP_PROXY/HTTPS_PROXY/NO_PROXY):
 *
 * - no proxy applies: a plain keep-alive http.Agent / https.Agent;
 * - an http:// target through a proxy: http-proxy-agent (absolute-form
 *   requests, `GET http://host/path`);
 * - an https:// target through a proxy: https-proxy-agent (`CONNECT
 *   host:port`, then TLS to the origin through the tunnel with node's normal
 *   certificate checks: the default CAs, or NODE_EXTRA_CA_CERTS, and the
 *   origin's name). For an IP-literal origin the identity check is pinned to
 *   that address: https-proxy-agent leaves the TLS `host` out, and node would
 *   otherwise check the certificate against the proxy's host.
 *
 * All agents get the same options (keep-alive, maxSockets, LIFO, idle
 * timeout), so a proxied service sees the same bounded pool of connections
 * as a direct one. Agents are created on first use, one per (kind, proxy),
 * and reused for every target that resolves to them; destroy() closes them.
 * Proxy authentication is not supported (the schema refuses credentials in a
 * configured proxy URL).
 */
import http from 'node:http';
import https from 'node:https';
import { isIP, type Socket } from 'node:net';
import tls from 'node:tls';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { redactUrl, resolveProxy, type ProxyEnv, type ProxySetting } from './proxy-env.js';

/** How a target is reached: directly, or through a proxy by absolute-form (http) or CONNECT (https). */
export type EgressKind = 'direct-http' | 'direct-https' | 'proxy-http' | 'proxy-connect';

export interface EgressRoute {
  readonly kind: EgressKind;
  readonly agent: http.Agent;
  /** The proxy, or null when direct. */
  readonly proxy: URL | null;
  /** For logs: the proxy without credentials, or 'none'. */
  readonly shownProxy: string;
}

export interface EgressAgents {
  /** The route for `target` (an http: or https: URL). Throws on an unusable proxy URL. */
  route(target: URL): EgressRoute;
  /** Destroys every agent handed out. */
  destroy(): void;
}

export interface EgressAgentsOptions {
  readonly proxy: ProxySetting;
  /** Consulted when proxy is null; default process.env. */
  readonly env?: ProxyEnv;
  readonly agentOptions: http.AgentOptions;
}

type ConnectOpts = Parameters<HttpsProxyAgent<string>['connect']>[1];

/** https-proxy-agent, with the origin's identity checked against an IP-literal origin too (see above). */
class ConnectTunnelAgent extends HttpsProxyAgent<string> {
  override connect(req: http.ClientRequest, opts: ConnectOpts): Promise<Socket> {
    if (opts.secureEndpoint && opts.host !== undefined && isIP(opts.host) !== 0 && opts.checkServerIdentity === undefined) {
      const origin = opts.host;
      return super.connect(req, { ...opts, checkServerIdentity: (_host, cert) => tls.checkServerIdentity(origin, cert) });
    }
    return super.connect(req, opts);
  }
}

export function createEgressAgents(opts: EgressAgentsOptions): EgressAgents {
  const env = opts.env ?? process.env;
  const agents = new Map<string, http.Agent>();

  function agentFor(kind: EgressKind, proxy: URL | null): http.Agent {
    const key = `${kind} ${proxy?.href ?? ''}`;
    let agent = agents.get(key);
    if (!agent) {
      const o = { ...opts.agentOptions };
      agent =
        kind === 'direct-http'
          ? new http.Agent(o)
          : kind === 'direct-https'
            ? new https.Agent(o)
            : kind === 'proxy-http'
              ? new HttpProxyAgent(proxy as URL, o)
              : new ConnectTunnelAgent(proxy!.href, o);
      agents.set(key, agent);
    }
    return agent;
  }

  return {
    route(target: URL): EgressRoute {
      if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`not an http(s) URL: ${target.protocol}`);
      const proxy = resolveProxy(target, opts.proxy, env);
      const secure = target.protocol === 'https:';
      const kind: EgressKind = proxy ? (secure ? 'proxy-connect' : 'proxy-http') : secure ? 'direct-https' : 'direct-http';
      return { kind, agent: agentFor(kind, proxy), proxy, shownProxy: proxy ? redactUrl(proxy) : 'none' };
    },
    destroy(): void {
      for (const agent of agents.values()) agent.destroy();
      agents.clear();
    },
  };
}
