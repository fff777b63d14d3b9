/**
 * Turns `backend` and `routing` into the BackendTarget lists the backend
 * client connects to: route entries inherit tls, proxyProtocol and xclient
 * from `backend` unless they give their own; a port not given is 110, or
 * 995 with implicit TLS (never inherited).
 */
import type { BackendTarget, BackendTls } from './backend-target.js';
import { defaultBackendPort, type BackendConfig, type BackendTlsConfig, type PopgateConfig, type RouteEntryConfig } from './schema.js';

/** Backends per route, each list tried in order until one is reachable. */
export interface BackendTargets {
  /** The route of users without a users/domains entry: [backend]. */
  readonly defaultTargets: BackendTarget[];
  /** routing.users: exact user name → backends. */
  readonly users: Map<string, BackendTarget[]>;
  /** routing.domains: lowercase domain (no trailing dot) → backends. */
  readonly domains: Map<string, BackendTarget[]>;
}

function toBackendTls(tls: BackendTlsConfig): BackendTls {
  return {
    mode: tls.mode,
    ...(tls.caFile !== undefined ? { caFile: tls.caFile } : {}),
    ...(tls.serverName !== undefined ? { serverName: tls.serverName } : {}),
    verify: tls.verify,
  };
}

/** One route entry with backend's settings filled in. */
export function resolveRouteEntry(entry: RouteEntryConfig, backend: BackendConfig): BackendTarget {
  const tls = toBackendTls(entry.tls ?? backend.tls);
  return {
    host: entry.host,
    port: entry.port ?? defaultBackendPort(tls.mode),
    tls,
    proxyProtocol: entry.proxyProtocol ?? backend.proxyProtocol,
    xclient: entry.xclient ?? backend.xclient,
  };
}

/** Resolves every route of the configuration into BackendTargets. */
export function backendTargets(config: Pick<PopgateConfig, 'backend' | 'routing'>): BackendTargets {
  const { backend, routing } = config;
  const resolveList = (list: readonly RouteEntryConfig[]): BackendTarget[] => list.map((e) => resolveRouteEntry(e, backend));
  return {
    defaultTargets: [
      {
        host: backend.host,
        port: backend.port,
        tls: toBackendTls(backend.tls),
        proxyProtocol: backend.proxyProtocol,
        xclient: backend.xclient,
      },
    ],
    users: new Map(Object.entries(routing.users).map(([user, list]) => [user, resolveList(list)])),
    domains: new Map(Object.entries(routing.domains).map(([domain, list]) => [domain, resolveList(list)])),
  };
}

/**
 * The backends for `user`: users[user] (exact, case-sensitive), else
 * domains[the part after the last "@", lowercased], else defaultTargets.
 */
export function targetsForUser(targets: BackendTargets, user: string): readonly BackendTarget[] {
  const own = targets.users.get(user);
  if (own) return own;
  const at = user.lastIndexOf('@');
  if (at >= 0) {
    const domain = targets.domains.get(user.slice(at + 1).toLowerCase().replace(/\.$/, ''));
    if (domain) return domain;
  }
  return targets.defaultTargets;
}
