import type { LoginThrottle } from '../auth/throttle/index.js';
import type { AuthorizedRequest, BearerValidator, ClientContext, PasswordVerifier, VerifiedRoute, VerifyOutcome } from '../auth/types.js';
import { openBackendWithFailover } from '../backend/failover.js';
import type { BackendLogin, BackendObserver, BackendSession, BackendTarget, BackendTimeouts, InternalLoginResolver } from '../backend/types.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { PrincipalMapResult } from '../identity/principal-mapper.js';
import {
  isBearerCredentials,
  isExternalCredentials,
  isKerberosCredentials,
  isPasswordCredentials,
  type BearerCredentials,
  type KerberosCredentials,
  type LoginCredentials,
} from '../pop3/types.js';
import type { Metrics } from '../observability/metrics.js';

export interface LoginRequest {
  readonly credentials: LoginCredentials;
  readonly client: ClientContext;
  readonly tls: boolean;
  /** The user a verified TLS client certificate names (SASL EXTERNAL). */
  readonly certificateUser?: string;
  /** auth.failureDelay of the client's listener: the wait before an AUTH_FAILED reply when the throttle sets none. */
  readonly failureDelayMs: number;
  readonly signal: AbortSignal;
}

export interface LoginSuccess {
  readonly ok: true;
  /** Local user name: from the verifier, or mapped from the Kerberos principal / certificate. */
  readonly user: string;
  readonly backend: BackendSession;
  /** Which mapping rule turned the principal into the user (Kerberos logins). */
  readonly mappedBy?: string;
}

/** A refused login: the catalogue error (its code decides the reply) and how long the reply waits. */
export interface LoginFailure {
  readonly ok: false;
  readonly error: GatewayError;
  /** The throttle's delay on AUTH_FAILED (it replaces auth.failureDelay), else auth.failureDelay on AUTH_FAILED, else 0. */
  readonly delayMs: number;
  /** Why the throttle did not count this AUTH_FAILED (it was delayed all the same): for the log line. */
  readonly throttle?: 'repeated-password';
}

export type LoginResult = LoginSuccess | LoginFailure;

/** A failure decided before login() was reached: an AUTH GSSAPI token refused (replayed, forged, skewed). */
export interface Refusal {
  readonly error: GatewayError;
  /** The name the client claimed ('' before it named one): the throttle's user key. */
  readonly claimedUser: string;
  readonly failureDelayMs: number;
}

/**
 * Turns a client's credentials into a logged-in backend session: verify (or
 * authorize what Kerberos / a client certificate authenticated) → pick the
 * backend(s) → internal credentials → backend login. Owns the failure
 * policy: every failure, whichever way it came, is counted and delayed the
 * same way (`LoginFailure`). Failures resolve, never reject (the throttle
 * fails open, so counting one cannot fail either).
 */
export interface LoginService {
  login(request: LoginRequest): Promise<LoginResult>;
  /** Counts a refusal (AUTH_FAILED) against the client's address and claimed user, as login() counts its own. */
  recordFailure(client: ClientContext, refusal: Refusal): Promise<LoginFailure>;
  /**
   * The refusal (LOGIN_THROTTLED) when the client's address or `user` is
   * locked out, else undefined. For exchanges that check a password-derived
   * proof before login() (SCRAM): the proof must not even be tried while
   * locked, or a right guess would answer differently from a wrong one.
   */
  locked(client: ClientContext, user: string): Promise<GatewayError | undefined>;
}

/** Where users go: exact user, then domain, then the default backend(s). */
export interface BackendRoutes {
  targetsFor(user: string): readonly BackendTarget[];
  /** A backend named by the auth service, with the default link settings. */
  targetFor(endpoint: { host: string; port: number }): BackendTarget;
}

export interface LoginServiceDeps {
  readonly verifier: PasswordVerifier;
  readonly resolver: InternalLoginResolver;
  readonly routes: BackendRoutes;
  readonly timeouts: BackendTimeouts;
  /** backend.pipelining: USER and PASS in one write to a backend that lists PIPELINING (default off here). */
  readonly pipelining?: 'auto' | 'off';
  /** Principal → local user; undefined when Kerberos is not configured. */
  readonly principalMapper?: { map(principal: string): PrincipalMapResult };
  /** OAUTHBEARER / XOAUTH2 token validation (auth.oauth); undefined when not configured. */
  readonly bearer?: BearerValidator;
  /** Brute-force protection (auth.throttle); undefined when disabled. */
  readonly throttle?: LoginThrottle;
  /** Throttle events and backend latencies / errors; none when undefined. */
  readonly metrics?: Metrics;
}

/** The name a client claims before anything is verified: the throttle's user key. */
function claimedUser(req: LoginRequest): string {
  const c = req.credentials;
  if (isKerberosCredentials(c)) return c.requestedUser || c.principal;
  if (isExternalCredentials(c)) return c.requestedUser || (req.certificateUser ?? '');
  // Whose token it is is known only once it is validated.
  if (isBearerCredentials(c)) return c.requestedUser;
  return c.username;
}

/** The password a password login failed with (the throttle fingerprints it); none for tickets, certificates, digests. */
function triedPassword(req: LoginRequest): string | undefined {
  return isPasswordCredentials(req.credentials) ? req.credentials.password : undefined;
}

export function createLoginService(deps: LoginServiceDeps): LoginService {
  const { verifier, metrics } = deps;
  const observer: BackendObserver | undefined = metrics
    ? {
        connected: (seconds) => metrics.backendConnected(seconds),
        loggedIn: (seconds) => metrics.backendLoggedIn(seconds),
        failed: (code, phase) => metrics.backendError(code, phase),
        tlsHandshake: (resumed) => metrics.backendTlsHandshake(resumed),
      }
    : undefined;

  /** A verifier that cannot answer is our trouble ([SYS/TEMP]), never the user's. */
  async function ask(what: () => Promise<VerifyOutcome>): Promise<VerifyOutcome> {
    try {
      return await what();
    } catch (err) {
      if (isGatewayError(err)) throw err;
      throw new GatewayError('VERIFIER_UNAVAILABLE', `${verifier.name}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  }

  /**
   * Authorize against the principal Kerberos authenticated, never against
   * what the client typed: the requested name (KPOP USER, GSSAPI authzid)
   * must be the mapped user (or the principal itself); empty means "mine".
   */
  function authorizePrincipal(credentials: KerberosCredentials): { user: string; rule: string } {
    if (!deps.principalMapper) throw new GatewayError('AUTH_FAILED', 'Kerberos login without a principal mapping');
    const mapped = deps.principalMapper.map(credentials.principal);
    if (!mapped.ok) throw new GatewayError('AUTH_FAILED', `principal ${credentials.principal} refused: ${mapped.reason}`);
    const requested = credentials.requestedUser;
    if (requested !== '' && requested !== mapped.user && requested !== credentials.principal) {
      throw new GatewayError(
        'AUTH_FAILED',
        `authorization refused: ${credentials.principal} maps to ${mapped.user}, not ${JSON.stringify(requested)}`,
      );
    }
    return { user: mapped.user, rule: mapped.rule };
  }

  /** Logins authenticated elsewhere still go to an auth service that routes (auth_http). */
  async function authorized(request: AuthorizedRequest): Promise<VerifyOutcome> {
    if (!verifier.authorize) return { ok: true, user: request.user };
    return ask(() => verifier.authorize!(request));
  }

  /**
   * A bearer token: validated (signature, issuer, audience, lifetime, scope)
   * and mapped to its user; the name the client asked for (authzid /
   * `user=`) must be that user, or empty. A refusal carries the mechanism's
   * error challenge; an issuer that cannot answer is our trouble ([SYS/TEMP]).
   */
  async function bearerUser(c: BearerCredentials, signal: AbortSignal): Promise<{ user: string; subject: string }> {
    if (!deps.bearer) throw new GatewayError('AUTH_FAILED', `${c.mechanism} without auth.oauth`);
    const bearer = deps.bearer;
    const outcome = await bearer.validate(c.token, signal).catch((err: unknown) => {
      if (isGatewayError(err)) throw err;
      throw new GatewayError('VERIFIER_UNAVAILABLE', `oauth: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    if (!outcome.ok) throw new GatewayError('AUTH_FAILED', outcome.reason, { saslError: bearer.errorChallenge(c.mechanism, outcome.reason) });
    if (c.requestedUser !== '' && c.requestedUser !== outcome.user) {
      throw new GatewayError('AUTH_FAILED', `authzid: the token names ${outcome.user}, not ${JSON.stringify(c.requestedUser)}`, {
        saslError: bearer.errorChallenge(c.mechanism, 'authzid'),
      });
    }
    return outcome;
  }

  async function verifyCredentials(req: LoginRequest): Promise<{ outcome: VerifyOutcome; password?: string; mappedBy?: string }> {
    const c = req.credentials;
    switch (c.mechanism) {
      case 'USER':
      case 'PLAIN':
      case 'LOGIN': {
        const outcome = await ask(() =>
          verifier.verify({
            username: c.username,
            password: c.password,
            mechanism: c.mechanism,
            remoteAddress: req.client.remoteAddress,
            tls: req.tls,
            client: req.client,
          }),
        );
        return { outcome, password: c.password };
      }
      case 'APOP':
      case 'CRAM-MD5': {
        if (!verifier.verifyChallenge) throw new GatewayError('AUTH_FAILED', `no verifier can check ${c.mechanism}`);
        const outcome = await ask(() =>
          verifier.verifyChallenge!({
            username: c.username,
            mechanism: c.mechanism,
            challenge: c.challenge,
            response: c.response,
            client: req.client,
          }),
        );
        return { outcome };
      }
      case 'GSSAPI':
      case 'KPOP': {
        const { user, rule } = authorizePrincipal(c);
        return { outcome: await authorized({ user, mechanism: c.mechanism, identity: c.principal, client: req.client }), mappedBy: rule };
      }
      case 'OAUTHBEARER':
      case 'XOAUTH2': {
        const { user, subject } = await bearerUser(c, req.signal);
        return { outcome: await authorized({ user, mechanism: c.mechanism, identity: subject, token: c.token, client: req.client }), mappedBy: 'token' };
      }
      case 'SCRAM-SHA-256':
      case 'SCRAM-SHA-256-PLUS': {
        // The SCRAM exchange proved the password; the authzid, if any, must be the same user.
        if (c.requestedUser !== '' && c.requestedUser !== c.username) {
          throw new GatewayError('AUTH_FAILED', `authorization refused: ${c.username} may not act as ${JSON.stringify(c.requestedUser)}`);
        }
        return { outcome: await authorized({ user: c.username, mechanism: c.mechanism, identity: c.username, client: req.client }) };
      }
      case 'EXTERNAL': {
        const user = req.certificateUser;
        if (!user) throw new GatewayError('AUTH_FAILED', 'EXTERNAL without a verified client certificate');
        if (c.requestedUser !== '' && c.requestedUser !== user) {
          throw new GatewayError('AUTH_FAILED', `authorization refused: certificate names ${user}, not ${JSON.stringify(c.requestedUser)}`);
        }
        return { outcome: await authorized({ user, mechanism: 'EXTERNAL', identity: user, client: req.client }), mappedBy: 'certificate' };
      }
    }
  }

  async function backendLogin(user: string, route: VerifiedRoute | undefined, password: string | undefined): Promise<BackendLogin> {
    // nginx semantics: Auth-User/Auth-Pass from the auth service are the backend credentials.
    if (route?.login) return { method: 'user-pass', user: route.login.user, password: route.login.password };
    return deps.resolver.resolve(user, deps.resolver.mode === 'passthrough' ? password : undefined);
  }

  /**
   * The one failure path: an AUTH_FAILED counts against the throttle (when
   * it is on), whose delay then replaces auth.failureDelay; every other code
   * is our trouble or already a refusal, answered at once. `password`: what
   * a password login failed with (a repeat of a recent one is not counted).
   */
  async function failed(error: GatewayError, ip: string, claimed: string, failureDelayMs: number, password?: string): Promise<LoginFailure> {
    if (error.code !== 'AUTH_FAILED') return { ok: false, error, delayMs: 0 };
    const t = deps.throttle ? await deps.throttle.failed(ip, claimed, password) : undefined;
    if (t?.locked) metrics?.throttle('lockout');
    if (!t || t.exempt) return { ok: false, error, delayMs: failureDelayMs };
    if (t.delayMs > 0) metrics?.throttle('delay');
    if (t.repeated) {
      metrics?.throttle('repeated-password');
      return { ok: false, error, delayMs: t.delayMs, throttle: 'repeated-password' };
    }
    return { ok: false, error, delayMs: t.delayMs };
  }

  async function locked(ip: string, user: string): Promise<GatewayError | undefined> {
    if (!deps.throttle || !(await deps.throttle.check(ip, user)).locked) return undefined;
    metrics?.throttle('refused');
    return new GatewayError('LOGIN_THROTTLED', 'address or user locked out after repeated failed logins');
  }

  async function attempt(req: LoginRequest, claimed: string): Promise<LoginSuccess> {
    const { throttle } = deps;
    const ip = req.client.remoteAddress;
    // A locked address or user is refused before its credentials are checked.
    const refusal = await locked(ip, claimed);
    if (refusal) throw refusal;
    const { outcome, password, mappedBy } = await verifyCredentials(req);
    if (!outcome.ok) {
      // An auth service's own failure text goes to the client; like nginx, close unless it said Auth-Wait.
      throw new GatewayError(
        'AUTH_FAILED',
        outcome.reason,
        outcome.clientText !== undefined ? { clientText: outcome.clientText, closeAfter: outcome.retryable !== true } : {},
      );
    }
    await throttle?.succeeded(ip, claimed);
    req.signal.throwIfAborted();
    const user = outcome.user;
    const targets = outcome.route?.endpoint ? [deps.routes.targetFor(outcome.route.endpoint)] : deps.routes.targetsFor(user);
    const login = await backendLogin(user, outcome.route, password);
    const backend = await openBackendWithFailover({
      targets,
      timeouts: deps.timeouts,
      ...(deps.pipelining ? { pipelining: deps.pipelining } : {}),
      login,
      signal: req.signal,
      ...(observer ? { observer } : {}),
      client: {
        address: req.client.remoteAddress,
        port: req.client.remotePort,
        localAddress: req.client.localAddress,
        localPort: req.client.localPort,
      },
    });
    return { ok: true, user, backend, ...(mappedBy !== undefined ? { mappedBy } : {}) };
  }

  return {
    recordFailure: (client, refusal) => failed(refusal.error, client.remoteAddress, refusal.claimedUser, refusal.failureDelayMs),
    locked: (client, user) => locked(client.remoteAddress, user),
    async login(req) {
      const claimed = claimedUser(req);
      try {
        return await attempt(req, claimed);
      } catch (err) {
        // Every AUTH_FAILED counts (Kerberos and EXTERNAL refusals too; not a repeat of a recent failed password); anything not from the catalogue is a bug of ours.
        const error = isGatewayError(err) ? err : new GatewayError('INTERNAL', String(err), { cause: err });
        return failed(error, req.client.remoteAddress, claimed, req.failureDelayMs, triedPassword(req));
      }
    },
  };
}
