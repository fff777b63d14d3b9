/**
 * OAuth 2.0 bearer-token validation: the verifier side of SASL OAUTHBEARER
 * (RFC 7628) and XOAUTH2. A token is either
 *
 * - a JWT (three base64url parts, a JSON header with `alg`): its `alg` must be
 *   one of `algorithms` (never `none`, never HS*: checked before any key is
 *   looked up, so an HS256 token "signed" with the issuer's public key is
 *   refused as 'algorithm'), its signature must verify with a key of the
 *   issuer's JWKS (jose createRemoteJWKSet: fetched from `jwksUrl` or the
 *   discovery document's `jwks_uri`; an unknown `kid` refetches at most once
 *   per `jwksCooldown`, so a flood of made-up kids cannot hammer the issuer),
 *   and `iss`, `aud`, `exp`, `nbf` must hold (jwtVerify, with
 *   `clockTolerance` and the injected clock's time);
 * - or opaque: asked at the RFC 7662 introspection endpoint when one is
 *   configured (cached, see ./introspection.ts), and the answer's `iss` (when
 *   present), `aud` (required), `exp` and `nbf` checked the same way; without
 *   introspection an opaque token is 'malformed'.
 *
 * Then, for both: `requiredScopes` (in `scope`, space-separated, or `scp`),
 * `authorizedParty` (`azp`, else `client_id`), and the claim mapping
 * (./claim-mapper.ts) to a POP3 user.
 *
 * Outcomes: a definite answer resolves (`ok: true` with the user, or a
 * refusal with its reason); an issuer that cannot answer (down, slow past
 * `timeout`, garbage, a discovery document naming another issuer) rejects
 * with GatewayError('VERIFIER_UNAVAILABLE'), detail `issuer-…`, `jwks-…` or
 * `introspection-…` (`-unreachable`, `-timeout`, `-invalid`). A failed
 * discovery or JWKS fetch is remembered for `jwksCooldown`: logins fail fast
 * meanwhile instead of each asking a dead issuer (introspection is asked
 * per token; its answers, not its failures, are cached).
 *
 * Tokens never appear in logs or details: a log line carries at most
 * `tokenId`, the first 12 hex digits of the token's SHA-256.
 */
import { setMaxListeners } from 'node:events';
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, errors, jwtVerify, type FetchImplementation, type JWTPayload } from 'jose';
import { pino, type Logger } from 'pino';
import { systemClock, type Clock } from '../../clock.js';
import { discoveryUrl, isLoopbackHost, type OAuthConfig } from '../../config/oauth.js';
import { GatewayError } from '../../errors.js';
import { ClaimMapper } from './claim-mapper.js';
import { createIntrospector, tokenDigest, type Introspector } from './introspection.js';
import { abandonable, createIssuerHttp, shownUrl, unavailable, type IssuerAgents, type IssuerHttp } from './issuer-http.js';
import type { ProxyEnv } from '../proxy-env.js';

export type TokenRefusal =
  | 'malformed'
  | 'expired'
  | 'not-yet-valid'
  | 'audience'
  | 'issuer'
  | 'signature'
  | 'unknown-key'
  | 'algorithm'
  | 'scope'
  | 'azp'
  | 'inactive'
  | 'unmapped';

export type TokenResult =
  | {
      readonly ok: true;
      /** The POP3 user the token may act as. */
      readonly user: string;
      /** The token's `sub`, or '' when it has none (introspection answers may omit it). */
      readonly subject: string;
      /** What decided the user: the claim's name, `map[<value>]` or `rules[<i>]`. */
      readonly claim: string;
      /** When the token expires, in clock milliseconds (exp * 1000), when it says. */
      readonly expiresAt?: number;
      readonly scopes: readonly string[];
    }
  | {
      readonly ok: false;
      readonly reason: TokenRefusal;
      /** Why, for the log; never the token. */
      readonly detail: string;
    };

export interface TokenValidator {
  /**
   * Checks `token` (the bearer token exactly as the client sent it). Resolves
   * with the user or a refusal; rejects with GatewayError('VERIFIER_UNAVAILABLE')
   * when the issuer cannot answer or `signal` aborts.
   */
  validate(token: string, signal?: AbortSignal): Promise<TokenResult>;
  /** Stops requests in flight, drops the caches; validate() fails afterwards. */
  close(): void;
}

export interface TokenValidatorDeps {
  /** Time for exp/nbf checks, request deadlines, caches; default the system clock. */
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Agents for the requests to the issuer, replacing the choice by cfg.proxy; default popgate's own. */
  readonly agents?: IssuerAgents;
  /** The environment consulted when cfg.proxy is null (HTTP_PROXY, HTTPS_PROXY, NO_PROXY); default process.env. */
  readonly env?: ProxyEnv;
}

/** Longest token considered; longer ones are 'malformed' (no issuer has ones near this). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** RFC 6750 section 2.1 b64token: what an opaque bearer token may hold. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** The short token id for logs: 12 hex digits of its SHA-256. */
export function tokenLogId(token: string): string {
  return tokenDigest(token).slice(0, 12);
}

type Refusal = Extract<TokenResult, { ok: false }>;

function refuse(reason: TokenRefusal, detail: string): Refusal {
  return { ok: false, reason, detail };
}

/** jose's verdicts as refusals; what says the issuer cannot answer as VERIFIER_UNAVAILABLE. */
function joseOutcome(err: unknown): Refusal {
  if (err instanceof GatewayError) throw err;
  if (err instanceof errors.JWTExpired) return refuse('expired', `the token expired (${err.claim})`);
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' && err.reason === 'check_failed') return refuse('not-yet-valid', 'the token is not valid yet (nbf)');
    if (err.claim === 'iss') return refuse('issuer', err.reason === 'missing' ? 'the token has no iss' : 'the token is from another issuer');
    if (err.claim === 'aud') return refuse('audience', err.reason === 'missing' ? 'the token has no aud' : 'the token is for another audience');
    return refuse('malformed', `the token's ${err.claim} claim: ${err.message}`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return refuse('algorithm', 'the token\'s alg is not allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSMultipleMatchingKeys) {
    return refuse('signature', 'the signature does not verify');
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKInvalid) {
    return refuse('unknown-key', 'no key of the issuer\'s JWKS matches the token\'s kid/alg');
  }
  if (err instanceof errors.JWKSTimeout) throw unavailable('jwks-timeout: the JWKS did not arrive in time', err);
  if (err instanceof errors.JWKSInvalid) throw unavailable('jwks-invalid: the answer is not a JWK Set', err);
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return refuse('malformed', err.message);
  }
  if (err instanceof errors.JOSEError) throw unavailable(`jwks-invalid: ${err.message}`, err);
  if (err instanceof TypeError) return refuse('malformed', err.message);
  throw err;
}

/** `scope` (space-separated) and `scp` (Okta, Azure: a list or a string); undefined when neither has a usable type. */
function scopesOf(claims: Readonly<Record<string, unknown>>): string[] | undefined {
  const out: string[] = [];
  for (const name of ['scope', 'scp'] as const) {
    const v = claims[name];
    if (v === undefined) continue;
    if (typeof v === 'string') out.push(...v.split(' ').filter((s) => s !== ''));
    else if (Array.isArray(v) && v.every((s) => typeof s === 'string')) out.push(...(v as string[]));
    else return undefined;
  }
  return [...new Set(out)];
}

/** The issuer URLs known from the configuration: discovery (without jwksUrl) or jwksUrl, and introspection. */
export function issuerUrls(cfg: OAuthConfig): Array<['issuer' | 'jwks' | 'introspection', URL]> {
  const out: Array<['issuer' | 'jwks' | 'introspection', URL]> = [];
  if (cfg.jwksUrl !== undefined) out.push(['jwks', new URL(cfg.jwksUrl)]);
  else out.push(['issuer', new URL(discoveryUrl(cfg.issuer))]);
  if (cfg.introspection) out.push(['introspection', new URL(cfg.introspection.url)]);
  return out;
}

/** Logs the way a discovered jwks_uri goes (once per discovery: the key set is then kept). */
function logRoute(endpoint: string, url: URL, issuerHttp: IssuerHttp, log: Logger): void {
  let proxy: string;
  try {
    proxy = issuerHttp.route(url).shownProxy;
  } catch (err) {
    proxy = `unusable: ${err instanceof Error ? err.message : String(err)}`;
  }
  log.info({ endpoint, url: shownUrl(url), proxy }, 'OAuth issuer egress');
}

export function createTokenValidator(cfg: OAuthConfig, deps: TokenValidatorDeps = {}): TokenValidator {
  const clock = deps.clock ?? systemClock;
  const log = (deps.logger ?? pino({ level: 'silent' })).child({ verifier: 'oauth' });
  const mapper = new ClaimMapper(cfg);
  const allowedAlgs = new Set<string>(cfg.algorithms);
  const issuerHttp = createIssuerHttp({
    timeoutMs: cfg.timeout,
    clock,
    proxy: cfg.proxy,
    ...(deps.env ? { env: deps.env } : {}),
    ...(deps.agents ? { agents: deps.agents } : {}),
  });
  // Which way each issuer URL known now goes (a bad proxy URL in the environment fails here, at start).
  try {
    for (const [endpoint, url] of issuerUrls(cfg)) {
      log.info({ endpoint, url: shownUrl(url), proxy: issuerHttp.route(url).shownProxy }, 'OAuth issuer egress');
    }
  } catch (err) {
    issuerHttp.close();
    throw new Error(`auth.oauth: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const introspector: Introspector | undefined = cfg.introspection ? createIntrospector(cfg.introspection, { http: issuerHttp, clock }) : undefined;
  const closer = new AbortController();
  // One listener per validation in flight: not a leak.
  setMaxListeners(0, closer.signal);

  // --- Keys: the JWKS, from jwksUrl or discovery -------------------------

  /** The last JWKS fetch failed: jose would try again on every token, so the failure is remembered for jwksCooldown. */
  let jwksFailure: { readonly detail: string; readonly until: number } | undefined;

  const joseFetch: FetchImplementation = async (url) => {
    if (jwksFailure && clock.now() < jwksFailure.until) {
      throw unavailable(`${jwksFailure.detail} (remembered; asking again in ${jwksFailure.until - clock.now()} ms)`);
    }
    // jose's own signal is ignored: issuerHttp's deadline (on the injected clock) governs.
    let jwks: Record<string, unknown>;
    try {
      jwks = await issuerHttp.json({ url: new URL(url), endpoint: 'jwks', headers: { accept: 'application/jwk-set+json, application/json' } });
      jwksFailure = undefined;
    } catch (err) {
      jwksFailure = { detail: err instanceof GatewayError && err.detail !== undefined ? err.detail : String(err), until: clock.now() + cfg.jwksCooldown };
      throw err;
    }
    log.debug({ jwksUrl: shownUrl(new URL(url)), keys: Array.isArray(jwks['keys']) ? jwks['keys'].length : 0 }, 'fetched the issuer\'s JWKS');
    return Response.json(jwks);
  };

  function remoteKeys(url: URL): ReturnType<typeof createRemoteJWKSet> {
    return createRemoteJWKSet(url, {
      timeoutDuration: cfg.timeout,
      cooldownDuration: cfg.jwksCooldown,
      cacheMaxAge: cfg.jwksCacheMaxAge,
      [customFetch]: joseFetch,
    });
  }

  let keys: ReturnType<typeof createRemoteJWKSet> | undefined = cfg.jwksUrl !== undefined ? remoteKeys(new URL(cfg.jwksUrl)) : undefined;
  let discovering: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;
  let discoveryFailure: { readonly detail: string; readonly until: number } | undefined;

  async function discover(): Promise<URL> {
    const where = new URL(discoveryUrl(cfg.issuer));
    const doc = await issuerHttp.json({ url: where, endpoint: 'issuer' });
    if (doc['issuer'] !== cfg.issuer) {
      throw unavailable(
        `issuer-invalid: the discovery document ${shownUrl(where)} names issuer ${JSON.stringify(String(doc['issuer']).slice(0, 200))}, not the configured one`,
      );
    }
    const uri = doc['jwks_uri'];
    let url: URL | undefined;
    try {
      if (typeof uri === 'string') url = new URL(uri);
    } catch {
      // reported below
    }
    if (url === undefined) throw unavailable(`issuer-invalid: the discovery document ${shownUrl(where)} has no usable jwks_uri`);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      throw unavailable(`issuer-invalid: jwks_uri ${shownUrl(url)} is not https://`);
    }
    log.debug({ jwksUrl: shownUrl(url) }, 'discovered the issuer\'s JWKS');
    logRoute('jwks', url, issuerHttp, log);
    return url;
  }

  function keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (keys) return Promise.resolve(keys);
    if (discoveryFailure && clock.now() < discoveryFailure.until) {
      return Promise.reject(unavailable(`${discoveryFailure.detail} (remembered; asking again in ${discoveryFailure.until - clock.now()} ms)`));
    }
    discovering ??= discover().then(
      (url) => {
        discovering = undefined;
        discoveryFailure = undefined;
        return (keys = remoteKeys(url));
      },
      (err: unknown) => {
        discovering = undefined;
        const detail = err instanceof GatewayError && err.detail !== undefined ? err.detail : String(err);
        discoveryFailure = { detail, until: clock.now() + cfg.jwksCooldown };
        throw err;
      },
    );
    return discovering;
  }

  // --- The checks ---------------------------------------------------------

  /** scope, azp and the user: the checks both kinds of token share. */
  function finish(claims: Readonly<Record<string, unknown>>): TokenResult {
    const scopes = scopesOf(claims);
    if (scopes === undefined) return refuse('malformed', 'the token\'s scope/scp claim has the wrong type');
    const missing = cfg.requiredScopes.filter((s) => !scopes.includes(s));
    if (missing.length > 0) return refuse('scope', `missing scope${missing.length === 1 ? '' : 's'} ${missing.join(' ')}`);
    if (cfg.authorizedParty !== undefined) {
      const azp = typeof claims['azp'] === 'string' ? claims['azp'] : typeof claims['client_id'] === 'string' ? claims['client_id'] : undefined;
      if (azp === undefined) return refuse('azp', 'the token names no authorized party (azp or client_id)');
      if (azp !== cfg.authorizedParty) return refuse('azp', 'the token was issued to another client (azp)');
    }
    const mapped = mapper.map(claims);
    if (!mapped.ok) return refuse('unmapped', mapped.detail);
    const exp = claims['exp'];
    return {
      ok: true,
      user: mapped.user,
      subject: typeof claims['sub'] === 'string' ? claims['sub'] : '',
      claim: mapped.rule,
      ...(typeof exp === 'number' ? { expiresAt: exp * 1000 } : {}),
      scopes,
    };
  }

  async function validateJwt(token: string, signal: AbortSignal): Promise<TokenResult> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      return refuse('malformed', 'the JWT header is not a JSON object');
    }
    if (typeof alg !== 'string') return refuse('malformed', 'the JWT header has no alg');
    if (!allowedAlgs.has(alg)) return refuse('algorithm', `alg ${JSON.stringify(alg.slice(0, 20))} is not allowed`);
    const keySource = await abandonable(keySet(), signal);
    let payload: JWTPayload;
    try {
      ({ payload } = await abandonable(
        jwtVerify(token, keySource, {
          issuer: cfg.issuer,
          audience: cfg.audience,
          algorithms: cfg.algorithms,
          clockTolerance: cfg.clockTolerance / 1000,
          currentDate: new Date(clock.now()),
        }),
        signal,
      ));
    } catch (err) {
      return joseOutcome(err);
    }
    return finish(payload);
  }

  async function validateOpaque(token: string, signal: AbortSignal): Promise<TokenResult> {
    if (!introspector) return refuse('malformed', 'not a JWT, and no introspection endpoint is configured for opaque tokens');
    if (!B64TOKEN.test(token)) return refuse('malformed', 'not a bearer token (RFC 6750 b64token)');
    const answer = await introspector.introspect(token, signal);
    if (!answer.active) return refuse('inactive', 'the introspection endpoint says the token is not active');
    const claims = answer.claims;
    if (claims['iss'] !== undefined && claims['iss'] !== cfg.issuer) return refuse('issuer', 'the token is from another issuer');
    const aud = claims['aud'];
    const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? (aud as string[]) : [];
    if (auds.length === 0) return refuse('audience', 'the introspection answer names no aud');
    if (!auds.some((a) => cfg.audience.includes(a))) return refuse('audience', 'the token is for another audience');
    const now = clock.now();
    const exp = claims['exp'];
    if (typeof exp === 'number' && exp * 1000 <= now - cfg.clockTolerance) return refuse('expired', 'the token expired (exp)');
    const nbf = claims['nbf'];
    if (typeof nbf === 'number' && nbf * 1000 > now + cfg.clockTolerance) return refuse('not-yet-valid', 'the token is not valid yet (nbf)');
    // RFC 7662 names the user `username`; it stands in for a missing preferred_username.
    const named = claims['preferred_username'] === undefined && typeof claims['username'] === 'string' ? { ...claims, preferred_username: claims['username'] } : claims;
    return finish(named);
  }

  function looksLikeJwt(token: string): boolean {
    if (!JWT_SHAPE.test(token)) return false;
    try {
      decodeProtectedHeader(token);
      return true;
    } catch {
      return false;
    }
  }

  return {
    async validate(token: string, signal?: AbortSignal): Promise<TokenResult> {
      if (closer.signal.aborted) throw unavailable('the token validator is closed');
      const stop = signal ? AbortSignal.any([signal, closer.signal]) : closer.signal;
      const id = tokenLogId(token);
      let result: TokenResult;
      if (token === '' || token.length > MAX_TOKEN_LENGTH) {
        result = refuse('malformed', token === '' ? 'empty token' : `longer than ${MAX_TOKEN_LENGTH} characters`);
      } else {
        try {
          result = looksLikeJwt(token) ? await validateJwt(token, stop) : await validateOpaque(token, stop);
        } catch (err) {
          if (err instanceof GatewayError) log.debug({ tokenId: id, detail: err.detail }, 'token issuer unavailable');
          throw err;
        }
      }
      if (result.ok) log.debug({ tokenId: id, user: result.user, claim: result.claim }, 'bearer token accepted');
      else log.debug({ tokenId: id, reason: result.reason, detail: result.detail }, 'bearer token refused');
      return result;
    },
    close(): void {
      closer.abort();
      introspector?.close();
      issuerHttp.close();
      keys = undefined;
    },
  };
}
