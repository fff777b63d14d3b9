/**
 * What TLS links to backends keep between connections: one SecureContext per
 * set of TLS settings (handing `ca` to tls.connect would parse the CA bundle
 * into a new context on every connection), and the last TLS session each
 * backend issued, offered on the next connection so it can skip the full
 * handshake.
 *
 * A resumed handshake skips the certificate and name checks (the session
 * carries the verdict of the handshake that made it), so a session is only
 * ever kept once its link passed both, and only offered to a connection that
 * would run the same checks: same context (verify setting, CA bundle
 * content), same mode, host, port and checked name. A changed CA file (seen
 * by loadCa's stat) builds a new context and drops the old one's sessions.
 */
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { loadCa, tlsCheckName, tlsContextOptions } from './tls-link.js';
import type { BackendTarget } from './types.js';

/** Counters for tests and measurements. */
export interface BackendTlsStats {
  /** SecureContexts built so far. */
  readonly contextsBuilt: number;
  /** Verified handshakes that resumed a kept session. */
  readonly resumed: number;
  /** Verified handshakes that did not. */
  readonly full: number;
}

export interface BackendTlsCacheOptions {
  /** Contexts kept (least recently used dropped first); default 64. */
  readonly maxContexts?: number;
  /** Sessions kept per context (one per backend and name); default 1024. */
  readonly maxSessions?: number;
}

interface ContextEntry {
  /** contextKey() of the settings it was built for. */
  readonly key: string;
  /** The CA bundle the context trusts; undefined: the system store (or no verification). */
  ca: Buffer | undefined;
  readonly context: SecureContext;
  /** Session key (see sessionKey) → the last session that backend issued, DER. */
  readonly sessions: Map<string, Buffer>;
}

/** Everything a context is shaped by; the other options are the same for every backend. */
function contextKey(target: BackendTarget): string {
  const { verify, caFile } = target.tls;
  // No verification never loads the CA, and must never share sessions with a verified link.
  return verify ? `verify\0${caFile ?? ''}` : 'no-verify';
}

/** Which backend, reached how, under which name: a session is offered only to the same. */
function sessionKey(target: BackendTarget): string {
  return `${target.tls.mode}\0${target.host}\0${target.port}\0${tlsCheckName(target)}`;
}

/** Map order as recency: `key` becomes the most recent; the oldest go past `max`. */
function touch<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}

/** The SecureContexts and sessions of backend links; one per process (see backendTls), fresh ones in tests. */
export class BackendTlsCache {
  private readonly contexts = new Map<string, ContextEntry>();
  private readonly maxContexts: number;
  private readonly maxSessions: number;
  private counts = { contextsBuilt: 0, resumed: 0, full: 0 };

  constructor(opts: BackendTlsCacheOptions = {}) {
    this.maxContexts = opts.maxContexts ?? 64;
    this.maxSessions = opts.maxSessions ?? 1024;
  }

  /**
   * The context and session for one connection to `target`. Stats the CA
   * file (rejects with its fs error when unreadable); a changed bundle
   * builds a new context.
   */
  async link(target: BackendTarget): Promise<BackendTlsLink> {
    const { verify, caFile } = target.tls;
    const ca = verify && caFile !== undefined ? await loadCa(caFile) : undefined;
    const key = contextKey(target);
    let entry = this.contexts.get(key);
    if (entry && entry.ca !== ca) {
      // A new Buffer from loadCa: the file was touched; only new content needs a new context.
      if (entry.ca && ca && entry.ca.equals(ca)) entry.ca = ca;
      else entry = undefined;
    }
    if (!entry) {
      entry = { key, ca, context: createSecureContext(tlsContextOptions(ca)), sessions: new Map() };
      this.counts.contextsBuilt++;
    }
    touch(this.contexts, key, entry, this.maxContexts);
    return new BackendTlsLink(this, entry, sessionKey(target));
  }

  /** Drops every context and session (configuration reload: the next links start afresh). */
  clear(): void {
    this.contexts.clear();
  }

  get stats(): BackendTlsStats {
    return { ...this.counts };
  }

  /** @internal BackendTlsLink's bookkeeping. */
  keep(entry: ContextEntry, key: string, session: Buffer): void {
    // Only into a context still in use: one replaced by a CA change keeps nothing.
    if (this.contexts.get(entry.key) !== entry) return;
    touch(entry.sessions, key, session, this.maxSessions);
  }

  /** @internal */
  counted(resumed: boolean): void {
    if (resumed) this.counts.resumed++;
    else this.counts.full++;
  }
}

/**
 * One connection's view: the context and session to hand tls.connect, and
 * what to do with the sessions the backend issues and with the outcome of
 * the checks.
 */
export class BackendTlsLink {
  /** Sessions issued before the checks passed (TLS 1.2 issues them mid-handshake). */
  private pending: Buffer | undefined;
  private verified = false;

  constructor(
    private readonly cache: BackendTlsCache,
    private readonly entry: ContextEntry,
    private readonly key: string,
  ) {}

  get context(): SecureContext {
    return this.entry.context;
  }

  /** The session to offer (the last one this backend issued to a verified link), if any. */
  get session(): Buffer | undefined {
    return this.entry.sessions.get(this.key);
  }

  /** The TLSSocket's 'session' listener: TLS 1.3 tickets and TLS 1.2 sessions. */
  readonly onSession = (session: Buffer): void => {
    if (this.verified) this.cache.keep(this.entry, this.key, session);
    else this.pending = session;
  };

  /** The handshake finished and the certificate and name checks passed: sessions may be kept. */
  verifiedBy(socket: TLSSocket): void {
    this.verified = true;
    this.cache.counted(socket.isSessionReused());
    if (this.pending) this.cache.keep(this.entry, this.key, this.pending);
    this.pending = undefined;
  }

  /** The handshake or a check failed: nothing from it is kept, and the session offered is dropped. */
  failed(): void {
    this.pending = undefined;
    if (this.verified) return;
    this.entry.sessions.delete(this.key);
  }
}

/** The process's backend TLS state, used unless a caller passes its own. */
export const backendTls = new BackendTlsCache();
