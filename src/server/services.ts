/**
 * The per-login services one config describes (verifier chain, internal
 * login resolver, routes, throttle, Kerberos) and how the gateway builds,
 * shares and closes them. A reload builds a new set and swaps it in for new
 * logins (see Generations in config-reload.ts).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { PAM_DEFAULTS, type AuthConfig, type HttpAuthConfig, type LdapAuthConfig, type PamAuthConfig, type PopgateConfig } from '../config/index.js';
import {
  createCredentialsCache,
  createHttpAuthVerifier,
  createUserFileVerifier,
  createVerifierChain,
  type UserFileVerifier,
} from '../auth/index.js';
import { createKerberosPasswordVerifier } from '../auth/kerberos-verifier.js';
import { createPamVerifier, pamGate } from '../auth/pam-verifier.js';
import { createLdapVerifier, type LdapLookup } from '../auth/ldap.js';
import { createLoginThrottle, type LoginThrottle } from '../auth/throttle/index.js';
import type { BearerValidator, PasswordVerifier } from '../auth/types.js';
import { createBearerValidator } from '../auth/oauth/index.js';
import { createInternalLoginResolver, type ReloadableLoginResolver } from '../backend/index.js';
import { backendTargets, resolveRouteEntry, targetsForUser } from '../config/routing.js';
import { loadNativeAddon } from '../kerberos/binding.js';
import { KerberosError, type PasswordCheck } from '../kerberos/types.js';
import { noopMetrics, type Metrics } from '../observability/metrics.js';
import type { SaslMechanism } from '../pop3/types.js';
import type { Generations, ReusablePart } from './config-reload.js';
import { setupKerberos, type KerberosServices } from './kerberos-services.js';
import { createLoginService, type BackendRoutes, type LoginService } from './login-service.js';

/** The per-login services one config describes. */
export interface Services {
  readonly config: PopgateConfig;
  readonly verifier: PasswordVerifier;
  readonly userFile: UserFileVerifier | undefined;
  readonly resolver: ReloadableLoginResolver;
  readonly login: LoginService;
  readonly kerberos: KerberosServices | undefined;
  readonly throttle: LoginThrottle | undefined;
  /** OAUTHBEARER / XOAUTH2 token validation (auth.oauth). */
  readonly bearer: BearerValidator | undefined;
}

/** Parts taken over from the running services instead of being built again. */
export interface CarriedParts {
  readonly kerberos?: KerberosServices | undefined;
  readonly throttle?: LoginThrottle | undefined;
}

/** One listed password verifier with the config it needs (the schema makes sure it is there). */
export type VerifierPlan =
  | { readonly kind: 'userFile'; readonly path: string }
  | { readonly kind: 'http'; readonly http: HttpAuthConfig }
  | { readonly kind: 'pam'; readonly pam: PamAuthConfig }
  | { readonly kind: 'ldap'; readonly ldap: LdapAuthConfig }
  | { readonly kind: 'kerberos'; readonly kerberos: KerberosServices; readonly defaultRealm: string };

/** The parts of `previous` a reload keeps (`reused` comes from planReload). */
export function carriedParts(previous: Services, reused: readonly ReusablePart[]): CarriedParts {
  return {
    ...(reused.includes('kerberos') ? { kerberos: previous.kerberos } : {}),
    ...(reused.includes('throttle') ? { throttle: previous.throttle } : {}),
  };
}

/**
 * Pairs each of `auth.verifiers` with its settings. Throws when one is
 * missing, which a config that passed the schema never has.
 */
export function planVerifiers(auth: AuthConfig, kerberos: KerberosServices | undefined): VerifierPlan[] {
  return auth.verifiers.map((name): VerifierPlan => {
    if (name === 'userFile') {
      if (auth.userFile === undefined) throw new Error('auth.verifiers includes userFile but auth.userFile is not set');
      return { kind: 'userFile', path: auth.userFile };
    }
    if (name === 'http') {
      if (auth.http === undefined) throw new Error('auth.verifiers includes http but auth.http is not set');
      return { kind: 'http', http: auth.http };
    }
    if (name === 'pam') return { kind: 'pam', pam: auth.pam ?? PAM_DEFAULTS };
    if (name === 'ldap') {
      if (auth.ldap === undefined) throw new Error('auth.verifiers includes ldap but auth.ldap is not set');
      return { kind: 'ldap', ldap: auth.ldap };
    }
    const defaultRealm = kerberos?.config.mapping.realms[0];
    if (!kerberos || defaultRealm === undefined) throw new Error('auth.verifiers includes kerberos but no Kerberos realm is set up');
    return { kind: 'kerberos', kerberos, defaultRealm };
  });
}

/**
 * The per-login services `config` describes, with Kerberos and the login
 * throttle (whose memory store holds failure counts) taken from `carried`
 * when given; everything else is built afresh. On failure, whatever was
 * built is closed again and the error thrown.
 */
export async function buildServices(config: PopgateConfig, log: Logger, metrics: Metrics, carried: CarriedParts = {}): Promise<Services> {
  const kerberos = carried.kerberos ?? (config.kerberos ? await setupKerberos(config.kerberos, log) : undefined);
  const plans = planVerifiers(config.auth, kerberos);
  let userFile: UserFileVerifier | undefined;
  const verifiers: PasswordVerifier[] = [];
  try {
    for (const plan of plans) {
      if (plan.kind === 'userFile') {
        userFile = await createUserFileVerifier({ path: plan.path, logger: log });
        verifiers.push(countingErrors(userFile, metrics));
      } else if (plan.kind === 'pam') {
        verifiers.push(countingErrors(pamVerifier(plan.pam), metrics));
      } else if (plan.kind === 'ldap') {
        verifiers.push(countingErrors(await ldapVerifier(plan.ldap, log), metrics));
      } else {
        verifiers.push(countingErrors(plan.kind === 'http' ? httpVerifier(plan.http, log) : realmVerifier(plan, metrics), metrics));
      }
    }
  } catch (err) {
    for (const v of verifiers) v.close();
    throw err;
  }
  const verifier = cachedVerifier(createVerifierChain(verifiers), config.auth, userFile, metrics);
  let resolver: ReloadableLoginResolver;
  try {
    resolver = await createInternalLoginResolver(config.backend.login, log);
  } catch (err) {
    verifier.close();
    throw err;
  }
  let throttle: LoginThrottle | undefined;
  try {
    throttle = carried.throttle ?? (await createLoginThrottle(config.auth.throttle, log, () => metrics.throttle('store-error')));
  } catch (err) {
    verifier.close();
    resolver.close();
    throw err;
  }
  const bearer = config.auth.oauth ? createBearerValidator(config.auth.oauth, { logger: log }) : undefined;
  const login = createLoginService({
    verifier,
    resolver,
    ...(bearer ? { bearer } : {}),
    ...(kerberos ? { principalMapper: kerberos.mapper } : {}),
    ...(throttle ? { throttle } : {}),
    metrics,
    routes: backendRoutes(config),
    pipelining: config.backend.pipelining,
    timeouts: {
      connectMs: config.backend.timeouts.connect,
      greetingMs: config.backend.timeouts.greeting,
      loginMs: config.backend.timeouts.login,
    },
  });
  return { config, verifier, userFile, resolver, login, kerberos, throttle, bearer };
}

/**
 * `chain` behind the credentials cache when auth.cache.ttl is set. Each
 * services generation gets its own, empty cache rather than a carried one:
 * its new user-file verifier reads the file afresh, so a change the old
 * one had not yet polled would never be reported to a carried cache, and
 * any verifier's settings may differ. A user-file reload drops the entries
 * of the users whose lines changed.
 */
function cachedVerifier(chain: PasswordVerifier, auth: AuthConfig, userFile: UserFileVerifier | undefined, metrics: Metrics): PasswordVerifier {
  const { ttl, negativeTtl, maxEntries } = auth.cache;
  if (ttl === 0) return chain;
  const cache = createCredentialsCache({
    verifier: chain,
    ttlMs: ttl,
    negativeTtlMs: negativeTtl,
    maxEntries,
    // An auth service is sent the client's facts and may answer by them; a user file or the KDC never does.
    keyClientFacts: auth.verifiers.includes('http'),
    onEvent: (event, count) => metrics.authCache(event, count),
  });
  // Unsubscribed when the user file verifier closes (with the cache, which closes the chain).
  userFile?.onUsersChanged((users) => cache.invalidateUsers(users));
  return cache;
}

function httpVerifier(http: HttpAuthConfig, log: Logger): PasswordVerifier {
  return createHttpAuthVerifier({
    url: http.url,
    timeoutMs: http.timeout,
    maxConcurrent: http.maxConcurrent,
    maxQueue: http.maxQueue,
    maxWaits: http.maxWaits,
    headers: http.headers,
    proxy: http.proxy,
    authorizeTicketLogins: http.authorizeTicketLogins,
    logger: log,
  });
}

function pamVerifier(pam: PamAuthConfig): PasswordVerifier {
  return createPamVerifier({
    pam: loadNativeAddon(),
    service: pam.service,
    accountCheck: pam.accountCheck,
    gate: pamGate({ maxConcurrent: pam.maxConcurrent, maxQueue: pam.maxQueue, timeoutMs: pam.timeout }),
  });
}

/** The LDAP verifier of auth.ldap (its CA file read now: a reload reads it again). */
export async function ldapVerifier(ldap: LdapAuthConfig, log: Logger): Promise<PasswordVerifier> {
  const lookup: LdapLookup = ldap.search
    ? { mode: 'search', ...ldap.search }
    : { mode: 'bind', dnTemplate: ldap.userDnTemplate ?? '' };
  return createLdapVerifier({
    urls: ldap.urls,
    startTls: ldap.startTls,
    ca: ldap.caFile !== undefined ? await readFile(ldap.caFile, 'utf8') : undefined,
    tlsServerName: ldap.serverName,
    timeoutMs: ldap.timeout,
    connectTimeoutMs: ldap.connectTimeout,
    poolSize: ldap.poolSize,
    poolIdleTimeoutMs: ldap.poolIdleTimeout,
    lookup,
    attributes: ldap.attributes,
    requireGroup: ldap.requireGroup,
    requireFilter: ldap.requireFilter,
    logger: log,
  });
}

function realmVerifier(plan: Extract<VerifierPlan, { kind: 'kerberos' }>, metrics: Metrics): PasswordVerifier {
  const { binding, config, mapper } = plan.kerberos;
  return createKerberosPasswordVerifier({
    binding: { verifyPassword: (check) => timedPasswordCheck(binding, check, metrics) },
    keytab: config.keytab,
    servicePrincipal: config.passwordServicePrincipal,
    defaultRealm: plan.defaultRealm,
    mapper,
  });
}

/**
 * The Generations close callback for services: closes what `old` holds that
 * no live generation (`alive`) shares. A throttle can be shared by several
 * generations, so each one is closed once, when the last user retires.
 */
export function servicesCloser(log: Logger): (old: Services, alive: readonly Services[]) => Promise<void> {
  const closedThrottles = new WeakSet<LoginThrottle>();
  return async (old, alive) => {
    try {
      old.verifier.close();
      old.resolver.close();
      old.bearer?.close();
      const throttle = old.throttle;
      if (throttle && !closedThrottles.has(throttle) && !alive.some((s) => s.throttle === throttle)) {
        closedThrottles.add(throttle);
        await throttle.close();
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'closing the previous configuration\'s services failed');
    }
  };
}

/** A LoginService whose every login goes to the services current when it starts (pre-auth connections pick up a reload too). */
export function currentLoginService(services: Generations<Services>): LoginService {
  return {
    login: (request) => services.use((s) => s.login.login(request)),
    recordFailure: (client, refusal) => services.use((s) => s.login.recordFailure(client, refusal)),
    locked: (client, user) => services.use((s) => s.login.locked(client, user)),
  };
}

/** Whether some verifier can check APOP / CRAM-MD5 now ({PLAIN} entries come and go with reloads). */
export function canVerifyChallenges(services: Pick<Services, 'config' | 'userFile'>): boolean {
  return services.config.auth.verifiers.includes('http') || (services.userFile?.canVerifyChallenges ?? false);
}

/** Configured mechanisms minus those nothing can answer right now. */
export function usableMechanisms(services: Pick<Services, 'config' | 'userFile'>): SaslMechanism[] {
  const challenges = canVerifyChallenges(services);
  return services.config.auth.mechanisms.filter((m) => m !== 'CRAM-MD5' || challenges);
}

/** RFC 1939 / RFC 2195 challenge: `<random.time@host>`, fresh per use. */
export function challengeString(): string {
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '') || 'popgate';
  return `<${randomBytes(12).toString('hex')}.${Date.now()}@${host}>`;
}

/** Per-user routes from config, with the default backend's link settings for auth-service answers. */
export function backendRoutes(config: PopgateConfig): BackendRoutes {
  const targets = backendTargets(config);
  return {
    targetsFor: (user) => targetsForUser(targets, user),
    targetFor: (endpoint) => resolveRouteEntry({ host: endpoint.host, port: endpoint.port }, config.backend),
  };
}

/**
 * `v` with every rejection (the verifier could not answer: KDC, auth
 * service, user file) counted in popgate_verifier_errors_total.
 */
export function countingErrors(v: PasswordVerifier, metrics: Metrics): PasswordVerifier {
  if (metrics === noopMetrics) return v;
  const counted = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      metrics.verifierError(v.name);
      throw err;
    });
  const verifyChallenge = v.verifyChallenge?.bind(v);
  const authorize = v.authorize?.bind(v);
  return {
    name: v.name,
    verify: (request) => counted(v.verify(request)),
    ...(verifyChallenge ? { verifyChallenge: (request: Parameters<typeof verifyChallenge>[0]) => counted(verifyChallenge(request)) } : {}),
    ...(authorize ? { authorize: (request: Parameters<typeof authorize>[0]) => counted(authorize(request)) } : {}),
    close: () => v.close(),
  };
}

/** A realm password check at the KDC, timed into popgate_kerberos_verify_seconds{check="password"}. */
export async function timedPasswordCheck(
  binding: { verifyPassword(check: PasswordCheck): Promise<boolean> },
  check: PasswordCheck,
  metrics: Metrics,
): Promise<boolean> {
  const started = performance.now();
  try {
    const ok = await binding.verifyPassword(check);
    metrics.kerberosCheck('password', (performance.now() - started) / 1000, ok ? undefined : 'bad-password');
    return ok;
  } catch (err) {
    metrics.kerberosCheck('password', (performance.now() - started) / 1000, err instanceof KerberosError ? err.failure : 'other');
    throw err;
  }
}
