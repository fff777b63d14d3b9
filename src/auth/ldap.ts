/**
 * A PasswordVerifier that checks passwords by binding to an LDAP directory
 * (OpenLDAP, 389-ds, Active Directory), with ldapts.
 *
 * Two ways to find the user's entry:
 * - bind: the DN comes from a template, `uid=%u,ou=people,dc=example,dc=com`,
 *   with the user name escaped as an RDN value (RFC 4514). One simple bind
 *   as that DN with the client's password is the whole check.
 * - search: a service account (bindDn + its password) searches `base` with
 *   `filter`, `(&(objectClass=person)(uid=%u))`, the user name escaped as a
 *   filter value (RFC 4515: `*`, `(`, `)`, `\` and NUL as \XX). Exactly one
 *   entry must match; then a bind as that entry's DN checks the password.
 *   When none matches, a bind as a DN that does not exist (with the client's
 *   password) is still made, so an unknown user costs one round trip more
 *   like a known one; the outcome is `unknown-user` (the chain may ask the
 *   next verifier) and the client's reply is the same as for a bad password.
 *
 * Before any bind an empty password is refused: a simple bind with a DN and
 * no password is an "unauthenticated bind" (RFC 4513 5.1.2) that many
 * servers answer with success.
 *
 * After a successful user bind, optional restrictions (a group the DN must
 * be a member of, a filter the entry must match) and optional attributes
 * of the entry: the local user name, the backend host and port (both or
 * neither, like auth_http's Auth-Server/Auth-Port) and the backend account
 * (logged into with the client's password, like auth_http's Auth-User with
 * Auth-Pass). A restriction that does not match is `disabled`.
 *
 * Transport: every URL in `urls` is tried in order until one connects
 * (failover); ldaps:// or ldap:// with StartTLS, checked against `ca` (else
 * the system's roots) and the server's name (or `tlsServerName`). The
 * service account's connection is kept open and reused (bound once, rebound
 * when it was lost). User binds reuse connections too (ldap-pool.ts): up to
 * `poolSize` idle ones are kept, each for `poolIdleTimeoutMs`; a login takes
 * one (or connects), so no two logins share one, and every use starts with
 * the user's bind, which replaces the connection's identity (RFC 4513 5.1).
 * One that failed is closed, not kept; a bind that fails on a kept one for
 * any reason but invalidCredentials (the server may have closed it while
 * idle) is tried once more on a new connection. poolSize 0: a connection of
 * its own per login, closed after it.
 * `timeoutMs` bounds each LDAP operation, `connectTimeoutMs` each connect.
 * A connection failure, a timeout or any LDAP result other than
 * invalidCredentials rejects with GatewayError('VERIFIER_UNAVAILABLE').
 *
 * Logging: user names, DNs and result codes; never a password.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { Client, InvalidCredentialsError, type Entry } from 'ldapts';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { createIdlePool } from './ldap-pool.js';
import type { PasswordRequest, PasswordVerifier, VerifiedRoute, VerifyOutcome } from './types.js';

export type LdapLookup =
  | { readonly mode: 'bind'; readonly dnTemplate: string }
  | {
      readonly mode: 'search';
      readonly bindDn: string;
      readonly bindPassword: string;
      readonly base: string;
      readonly filter: string;
      readonly scope: 'base' | 'one' | 'sub';
    };

export interface LdapAttributes {
  /** The local user name (the outcome's user). */
  readonly user?: string | undefined;
  /** Backend host and port (both or neither). */
  readonly host?: string | undefined;
  readonly port?: string | undefined;
  /** The backend account, logged into with the client's password. */
  readonly backendUser?: string | undefined;
}

export interface LdapVerifierOptions {
  /** ldap:// or ldaps:// URLs, tried in order. */
  readonly urls: readonly string[];
  /** Upgrade ldap:// connections with StartTLS (refused on ldaps://). */
  readonly startTls: boolean;
  /** PEM trust anchors; undefined: the system's roots. */
  readonly ca?: string | Buffer | undefined;
  /** The name the server's certificate must carry; default the URL's host. */
  readonly tlsServerName?: string | undefined;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly lookup: LdapLookup;
  readonly attributes?: LdapAttributes;
  /** DN of a group whose `memberAttribute` must name the user's DN. */
  readonly requireGroup?: { readonly dn: string; readonly memberAttribute: string } | undefined;
  /** A filter the user's entry must match (`%u` the user name, escaped). */
  readonly requireFilter?: string | undefined;
  /** Idle user-bind connections kept for the next logins; 0: none (a connection per login). Default 4. */
  readonly poolSize?: number;
  /** An idle kept connection is closed after this long. Default 60 s. */
  readonly poolIdleTimeoutMs?: number;
  /** Times the idle limit (tests). Default the real clock, timers unref'd. */
  readonly clock?: Clock;
  /** Called with each new connection, before it is used (tests, benchmarks). */
  readonly onConnect?: (client: Client, use: 'user' | 'service') => void;
  readonly logger: Logger;
}

/** RFC 4515 3: a value inside a filter, with `*`, `(`, `)`, `\` and NUL as \XX. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** RFC 4514 2.4: an attribute value inside a DN. */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\"+,;<>=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * `template` with Dovecot's variables replaced, each value escaped by
 * `escape`: `%u` the user name as typed, `%n` its part before the first
 * `@` (all of it without one), `%d` the part after (empty without one);
 * `%%` is a `%`. The config schema refuses any other `%` sequence.
 */
export function expandTemplate(template: string, user: string, escape: (v: string) => string): string {
  const at = user.indexOf('@');
  const values: Record<string, string> = {
    u: user,
    n: at < 0 ? user : user.slice(0, at),
    d: at < 0 ? '' : user.slice(at + 1),
  };
  return template.replace(/%([und%])/g, (_, v: string) => (v === '%' ? '%' : escape(values[v] ?? '')));
}

function unavailable(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('VERIFIER_UNAVAILABLE', detail, cause !== undefined ? { cause } : undefined);
}

function firstValue(entry: Entry, attribute: string | undefined): string | undefined {
  if (attribute === undefined) return undefined;
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  const value = key === undefined ? undefined : entry[key];
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined) return undefined;
  const text = typeof first === 'string' ? first : first.toString('utf8');
  return text === '' ? undefined : text;
}

/** TLS options for `url` (ldaps:// or StartTLS): certificate checked against `ca` and the URL's host or `serverName`. */
export function ldapTlsOptions(url: string, ca: string | Buffer | undefined, serverName: string | undefined): ConnectionOptions {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  const sni = serverName ?? host;
  return {
    rejectUnauthorized: true,
    ...(ca !== undefined ? { ca } : {}),
    // SNI carries names only (RFC 6066); node checks an IP address against the certificate's IP SANs.
    ...(isIP(sni) === 0 ? { servername: sni } : {}),
    // The configured name is checked instead of the URL's host (e.g. a URL with an IP address).
    ...(serverName !== undefined ? { checkServerIdentity: (_h, cert) => checkServerIdentity(serverName, cert) } : {}),
  };
}

export function createLdapVerifier(options: LdapVerifierOptions): PasswordVerifier {
  const { logger: log, lookup } = options;
  const attrs = options.attributes ?? {};
  const wanted = [attrs.user, attrs.host, attrs.port, attrs.backendUser].filter((a): a is string => a !== undefined);
  let closed = false;
  /** Clients whose socket closed (see connect). */
  const lost = new WeakSet<Client>();
  /** The service account's bound connection (search mode), reused between logins. */
  let service: Promise<Client> | undefined;

  const tlsOptions = (url: string): ConnectionOptions => ldapTlsOptions(url, options.ca, options.tlsServerName);

  /** Kept idle user-bind connections. Only live ones are taken: ldapts would reconnect a closed one by itself, without StartTLS. */
  const pool = createIdlePool<Client>({
    size: options.poolSize ?? 4,
    idleTimeoutMs: options.poolIdleTimeoutMs ?? 60_000,
    alive: (c) => c.isConnected && !lost.has(c),
    close: (c) => void c.unbind().catch(() => undefined),
    ...(options.clock ? { clock: options.clock } : {}),
  });

  /** A connected (and, with StartTLS, upgraded) client to the first URL that answers. */
  async function connect(use: 'user' | 'service'): Promise<Client> {
    const failures: string[] = [];
    for (const url of options.urls) {
      const client = new Client({
        url,
        timeout: options.timeoutMs,
        connectTimeout: options.connectTimeoutMs,
        ...(url.startsWith('ldaps:') ? { tlsOptions: tlsOptions(url) } : {}),
        // ldapts does not see the StartTLS socket close (isConnected stays true and the next
        // operation waits for its timeout): watch it here, so a kept connection is known lost.
        // Called as tls.connect is: (options) for StartTLS, (port, host, options) for ldaps://.
        createSecureConnection: ((...args: unknown[]) => {
          const socket = (tlsConnect as (...a: unknown[]) => TLSSocket)(...args);
          socket.once('close', () => lost.add(client));
          return socket;
        }) as typeof tlsConnect,
      });
      try {
        if (options.startTls) await client.startTLS(tlsOptions(url));
        else await client.exop('1.3.6.1.4.1.4203.1.11.3'); // Who am I? (RFC 4532): proves the server answers.
        options.onConnect?.(client, use);
        return client;
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
        await client.unbind().catch(() => undefined);
      }
    }
    throw unavailable(`no LDAP server answered (${failures.join('; ')})`);
  }

  /** Binds `client` as dn/password: true, false on invalidCredentials; other errors reject. */
  async function bindAs(client: Client, dn: string, password: string): Promise<boolean> {
    // ldapts reconnects a closed client inside bind(), on a plain socket (no StartTLS) for ldap://
    // URLs: the password would go out in the clear. Checked in the same tick as bind() starts.
    if (!client.isConnected || lost.has(client)) throw unavailable('LDAP bind: the connection was lost before the bind');
    try {
      await client.bind(dn, password);
      return true;
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return false;
      throw unavailable(`LDAP bind failed: ${(err as Error).message}`, err);
    }
  }

  /** The service account's bound connection: the kept one (`reused`) or a new one, then kept. */
  async function serviceClient(): Promise<{ client: Client; reused: boolean }> {
    if (lookup.mode !== 'search') throw new Error('no service account in bind mode');
    const current = service;
    if (current) {
      const client = await current.catch(() => undefined);
      if (client?.isConnected && !lost.has(client)) return { client, reused: true };
      if (service === current) service = undefined;
    }
    service ??= (async () => {
      const client = await connect('service');
      try {
        if (!(await bindAs(client, lookup.bindDn, lookup.bindPassword))) throw unavailable('the LDAP service account (bindDn) was refused: invalid credentials');
        return client;
      } catch (err) {
        await client.unbind().catch(() => undefined);
        throw err;
      }
    })();
    const pending = service;
    const client = await pending.catch((err: unknown) => {
      if (service === pending) service = undefined;
      throw err;
    });
    return { client, reused: false };
  }

  /** Stops keeping `client` (it failed) and closes it. */
  function dropService(client: Client): void {
    lost.add(client);
    void client.unbind().catch(() => undefined);
  }

  async function search(client: Client, base: string, filter: string, scope: 'base' | 'one' | 'sub', attributes: string[]): Promise<Entry[]> {
    try {
      const { searchEntries } = await client.search(base, { scope, filter, attributes: attributes.length ? attributes : ['1.1'], sizeLimit: 2 });
      return searchEntries;
    } catch (err) {
      if ((err as { code?: number }).code === 32) return []; // noSuchObject: the base (or group) does not exist
      if ((err as { code?: number }).code === 4) return [{ dn: '' }, { dn: '' }]; // sizeLimitExceeded: more than one
      throw unavailable(`LDAP search failed: ${(err as Error).message}`, err);
    }
  }

  /** The user's DN (search mode): one entry, or undefined when none or several match. */
  async function findUser(user: string): Promise<Entry | undefined> {
    if (lookup.mode !== 'search') return undefined;
    const filter = expandTemplate(lookup.filter, user, escapeFilterValue);
    const first = await serviceClient();
    let entries: Entry[];
    try {
      entries = await search(first.client, lookup.base, filter, lookup.scope, wanted);
    } catch (err) {
      dropService(first.client);
      // A kept connection may have broken since its last use: one more try on a fresh one.
      if (!first.reused) throw err;
      entries = await search((await serviceClient()).client, lookup.base, filter, lookup.scope, wanted);
    }
    if (entries.length > 1) log.warn({ user, filter }, 'LDAP search matched more than one entry: refused');
    return entries.length === 1 ? entries[0] : undefined;
  }

  /** Group and filter restrictions, checked as `client` (the user's bound connection, or the service account's). */
  async function restrictionsHold(client: Client, dn: string, user: string): Promise<boolean> {
    const group = options.requireGroup;
    if (group) {
      const found = await search(client, group.dn, `(${group.memberAttribute}=${escapeFilterValue(dn)})`, 'base', []);
      if (found.length !== 1) return false;
    }
    if (options.requireFilter !== undefined) {
      const found = await search(client, dn, expandTemplate(options.requireFilter, user, escapeFilterValue), 'base', []);
      if (found.length !== 1) return false;
    }
    return true;
  }

  function outcome(user: string, password: string, entry: Entry | undefined): VerifyOutcome {
    const local = entry ? firstValue(entry, attrs.user) : undefined;
    const host = entry ? firstValue(entry, attrs.host) : undefined;
    const portText = entry ? firstValue(entry, attrs.port) : undefined;
    const backendUser = entry ? firstValue(entry, attrs.backendUser) : undefined;
    if ((host === undefined) !== (portText === undefined)) {
      throw unavailable(`the LDAP entry of ${user} has only one of the backend host and port attributes`);
    }
    let route: VerifiedRoute | undefined;
    if (host !== undefined && portText !== undefined) {
      const port = Number(portText);
      if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw unavailable(`the LDAP entry of ${user} has a bad backend port`);
      route = { endpoint: { host, port } };
    }
    if (backendUser !== undefined) route = { ...route, login: { user: backendUser, password } };
    const name = local ?? user;
    return route ? { ok: true, user: name, route } : { ok: true, user: name };
  }

  async function verify(request: PasswordRequest): Promise<VerifyOutcome> {
    if (closed) throw unavailable('the LDAP verifier is closed');
    const { username: user, password } = request;
    // An empty password would make a simple bind "unauthenticated": success without a check.
    if (password === '') return { ok: false, reason: 'bad-password' };
    if (user === '') return { ok: false, reason: 'unknown-user' };

    let dn: string;
    let entry: Entry | undefined;
    if (lookup.mode === 'search') {
      entry = await findUser(user);
      dn = entry?.dn ?? `cn=popgate-no-such-user-${randomBytes(8).toString('hex')},${lookup.base}`;
    } else {
      dn = expandTemplate(lookup.dnTemplate, user, escapeDnValue);
    }

    // Taken from the pool or new: this login's alone until given back (or closed).
    const kept = pool.take();
    let client = kept ?? (await connect('user'));
    let healthy = false;
    try {
      let bound: boolean;
      try {
        bound = await bindAs(client, dn, password);
      } catch (err) {
        // A kept connection may have been closed by the server while idle: one more try on a new one.
        if (client !== kept) throw err;
        log.debug({ user, verifier: 'ldap', err: (err as Error).message }, 'LDAP bind on a kept connection failed: retrying on a new one');
        void client.unbind().catch(() => undefined);
        client = await connect('user');
        bound = await bindAs(client, dn, password);
      }
      const checked = await checkBound(client, bound, user, dn, entry);
      healthy = true;
      return typeof checked === 'string' ? { ok: false, reason: checked } : outcome(user, password, checked);
    } finally {
      if (healthy) pool.give(client);
      else void client.unbind().catch(() => undefined);
    }
  }

  /**
   * After the user's bind on `client` (`bound`: it succeeded): the refusal,
   * or the entry to answer from (read as the user in bind mode).
   */
  async function checkBound(client: Client, bound: boolean, user: string, dn: string, entry: Entry | undefined): Promise<'bad-password' | 'unknown-user' | 'disabled' | Entry | undefined> {
    if (!bound) {
      log.info({ user, verifier: 'ldap' }, entry || lookup.mode === 'bind' ? 'LDAP bind refused' : 'no LDAP entry for the user');
      return lookup.mode === 'search' && !entry ? 'unknown-user' : 'bad-password';
    }
    if (lookup.mode === 'search' && !entry) {
      // The made-up DN bound: the server lets anything bind. Refuse rather than trust it.
      throw unavailable('the LDAP server accepted a bind as a DN that does not exist');
    }
    if (!(await restrictionsHold(client, dn, user))) {
      log.info({ user, dn, verifier: 'ldap' }, 'LDAP restriction (group or filter) does not match');
      return 'disabled';
    }
    if (lookup.mode === 'bind' && wanted.length > 0) {
      const own = await search(client, dn, '(objectClass=*)', 'base', wanted);
      return own[0];
    }
    return entry;
  }

  return {
    name: 'ldap',
    verify,
    close() {
      closed = true;
      pool.close();
      const current = service;
      service = undefined;
      void current?.then((c) => c.unbind()).catch(() => undefined);
    },
  };
}
