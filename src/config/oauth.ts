/**
 * `auth.oauth`: how OAuth 2.0 bearer tokens (SASL OAUTHBEARER, RFC 7628, and
 * Google's XOAUTH2) are checked. Here, not in src/auth, because schema.ts
 * embeds it and src/auth already imports src/config (a folder cycle
 * otherwise; see test/unit/import-layers.test.ts).
 *
 * The claim mapping follows the Kerberos principal mapping
 * (src/identity/principal-mapper.ts), with the claim value in place of the
 * principal: explicit `map` entries first (taken verbatim), then `rules`
 * (regexes over the whole claim value; the first that matches decides), then
 * the plain value (for `email`: only addresses of `emailDomains`, the domain
 * stripped). Rules are compiled and refused by the mapper's own code, so the
 * messages are the same.
 *
 * Loader conventions (schema.ts lists, when it embeds this): `clientSecret`
 * is a SECRET_FIELDS entry (`auth.oauth.introspection.clientSecret`, filled
 * from clientSecretFile) and `map` a FREE_FORM_FIELDS entry (`auth.oauth.map`:
 * its keys are claim values).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { duration } from './duration.js';
import { proxySettingSchema } from './http-url.js';
import {
  compileMappingRule,
  isValidPop3User,
  NOT_A_POP3_USER,
  type MappingProblem,
  type PrincipalMappingRule,
} from '../identity/principal-mapper.js';

const SECOND = 1_000;
const MINUTE = 60_000;

/** Signature algorithms a token may use (asymmetric only: the issuer's public keys verify them). */
export const OAUTH_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export const OAUTH_DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'PS256', 'EdDSA'] as const;
export type OAuthAlgorithm = (typeof OAUTH_ALGORITHMS)[number];

/** The claims that can name the user. */
export const OAUTH_USER_CLAIMS = ['preferred_username', 'email', 'sub'] as const;
export type OAuthUserClaim = (typeof OAUTH_USER_CLAIMS)[number];

/** RFC 6749 section 3.3 scope-token: printable ASCII but space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Longest claim value (map key) considered; longer values are unmapped. */
export const MAX_CLAIM_VALUE_LENGTH = 1024;

function hint(text: string): { params: { hint: string } } {
  return { params: { hint: text } };
}

const nonEmpty = z.string().min(1, 'must not be empty');

/** True for `localhost`, 127.0.0.0/8 and ::1, the hosts plain http is allowed to. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (host.toLowerCase() === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * An https:// URL (http:// only to a loopback host): tokens, keys and client
 * secrets must not cross a network in the clear. Never echoes the value.
 */
function endpointUrl(what: string, opts: { query: boolean }) {
  return nonEmpty.superRefine((value, ctx) => {
    let url: URL | undefined;
    try {
      if (!/[\s\0]/.test(value) && /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value)) url = new URL(value);
    } catch {
      // reported below
    }
    if (url === undefined) {
      ctx.addIssue({ code: 'custom', message: `${what} must be an https:// URL`, ...hint('e.g. https://login.example.com/realms/mail') });
    } else if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      ctx.addIssue({ code: 'custom', message: `${what} must be an https:// URL, not ${url.protocol}` });
    } else if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      ctx.addIssue({
        code: 'custom',
        message: `${what} must be https:// (plain http:// only to localhost, 127.0.0.0/8 or ::1)`,
        ...hint('tokens and keys must not cross the network in the clear; use the https:// URL of the issuer'),
      });
    } else if (url.username !== '' || url.password !== '') {
      ctx.addIssue({ code: 'custom', message: 'must not contain credentials (user:password@)' });
    } else if (url.hash !== '') {
      ctx.addIssue({ code: 'custom', message: 'must not contain a #fragment' });
    } else if (!opts.query && url.search !== '') {
      ctx.addIssue({ code: 'custom', message: 'must not contain a ?query (an OpenID issuer identifier has none)' });
    }
  });
}

/** Why `alg` cannot be allowed, or undefined when it can. */
function algorithmProblem(alg: string): { message: string; hint: string } | undefined {
  if (alg.toLowerCase() === 'none') {
    return { message: 'alg "none" is never accepted: it marks an unsigned token anyone can write', hint: `use the issuer's signature algorithm, e.g. ${OAUTH_DEFAULT_ALGORITHMS.join(', ')}` };
  }
  if (/^HS\d+$/i.test(alg)) {
    return {
      message: `${alg} is refused: an HMAC key is a secret shared with the issuer, and a verifier that accepts HS* can be fooled with a token "signed" with the issuer's public key`,
      hint: `use the issuer's asymmetric algorithm, e.g. ${OAUTH_DEFAULT_ALGORITHMS.join(', ')}`,
    };
  }
  if (!(OAUTH_ALGORITHMS as readonly string[]).includes(alg)) {
    return { message: `${alg} is not a supported signature algorithm`, hint: `one of ${OAUTH_ALGORITHMS.join(', ')}` };
  }
  return undefined;
}

const algorithmsSchema = z
  .array(z.string())
  .min(1, 'at least one algorithm is required')
  .superRefine((algs, ctx) => {
    const seen = new Set<string>();
    algs.forEach((alg, i) => {
      const problem = algorithmProblem(alg);
      if (problem) ctx.addIssue({ code: 'custom', path: [i], message: problem.message, ...hint(problem.hint) });
      else if (seen.has(alg)) ctx.addIssue({ code: 'custom', path: [i], message: `duplicate algorithm ${alg}` });
      seen.add(alg);
    });
  })
  .transform((algs) => algs as OAuthAlgorithm[]);

const scopeSchema = z.string().regex(SCOPE_TOKEN, 'must be one scope token (printable ASCII, no spaces, quotes or backslashes)');

function unique(what: string) {
  return (items: readonly string[], ctx: z.RefinementCtx): void => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(item)) ctx.addIssue({ code: 'custom', path: [i], message: `duplicate ${what} ${item}` });
      seen.add(item);
    });
  };
}

const mappingRuleSchema = z.strictObject({
  /** JavaScript regex (no flags) tested against the whole claim value; anchor it yourself. */
  match: z.string(),
  /** Replacement with $1, $<name>, $& (String.prototype.replace). */
  replace: z.string(),
});

/** RFC 7662 token introspection, for opaque (non-JWT) access tokens. */
const introspectionSchema = z
  .strictObject({
    url: endpointUrl('the introspection endpoint', { query: true }),
    /** popgate's client at the authorization server (HTTP Basic, RFC 6749 section 2.3.1). */
    clientId: nonEmpty.regex(/^[^\r\n\0]*$/, 'must not contain line breaks'),
    /** The client secret; the loader fills it from clientSecretFile when that is given instead. */
    clientSecret: z
      .string({ error: (iss) => (iss.input === undefined ? 'required: set clientSecret or clientSecretFile' : undefined) })
      .min(1, 'must not be empty')
      .regex(/^[^\r\n\0]*$/, 'must not contain line breaks'),
    clientSecretFile: nonEmpty.optional(),
    /** How long an answer is reused; never beyond the token's own exp. 0: every login asks. */
    cacheTtl: duration({ max: 10 * MINUTE }).prefault('1m'),
    /** Most answers held; the oldest goes first. */
    cacheMaxEntries: z.number().int().min(1).max(1_000_000).default(10_000),
  });

/**
 * `auth.oauth`. Output durations are milliseconds; `audience` is always a
 * list; `emailDomains` lowercase.
 */
export const oauthSchema = z
  .strictObject({
    /** The issuer identifier, exactly as tokens carry it in `iss`. */
    issuer: endpointUrl('issuer', { query: false }),
    /** The issuer's JWK Set. Default: `jwks_uri` from `${issuer}/.well-known/openid-configuration`. */
    jwksUrl: endpointUrl('jwksUrl', { query: true }).optional(),
    /** What `aud` must contain (one of them): popgate's own identifier at the issuer. */
    audience: z
      .union([nonEmpty, z.array(nonEmpty).min(1, 'at least one audience is required').superRefine(unique('audience'))])
      .transform((a) => (typeof a === 'string' ? [a] : a)),
    algorithms: algorithmsSchema.prefault([...OAUTH_DEFAULT_ALGORITHMS]),
    /** Leeway for exp/nbf against the issuer's clock. */
    clockTolerance: duration({ max: 5 * MINUTE }).prefault('30s'),
    /** Scopes a token must all carry (`scope` or `scp`). */
    requiredScopes: z.array(scopeSchema).superRefine(unique('scope')).default([]),
    /** When set, `azp` (or `client_id` without azp) must equal it: the client the token was issued to. */
    authorizedParty: nonEmpty.optional(),
    /** The claim that names the user. */
    userClaim: z.enum(OAUTH_USER_CLAIMS).default('preferred_username'),
    /** userClaim email: the domains whose addresses map to their local part (required then). */
    emailDomains: z
      .array(z.string().transform((d) => d.toLowerCase().replace(/\.$/, '')).pipe(z.string().regex(DOMAIN, 'must be a domain name, e.g. example.com')))
      .superRefine(unique('domain'))
      .optional(),
    /** Explicit claim value -> user entries; checked first, taken verbatim. */
    map: z.record(z.string(), z.string()).default({}),
    /** Checked after `map`: the first rule whose regex matches the claim value decides. */
    rules: z.array(mappingRuleSchema).default([]),
    introspection: introspectionSchema.optional(),
    /**
     * Forward proxy for the requests to the issuer (discovery, JWKS,
     * introspection), resolved per URL: null takes HTTP_PROXY/HTTPS_PROXY/
     * NO_PROXY from the environment; "none": never; else the proxy URL.
     */
    proxy: proxySettingSchema,
    /** Deadline of each request to the issuer (discovery, JWKS, introspection). */
    timeout: duration({ min: 100, max: MINUTE }).prefault('5s'),
    /** An unknown key id refetches the JWKS at most once per this long. */
    jwksCooldown: duration({ min: SECOND, max: 10 * MINUTE }).prefault('30s'),
    /** The JWKS is fetched again when older than this. */
    jwksCacheMaxAge: duration({ min: MINUTE, max: 24 * 60 * MINUTE }).prefault('10m'),
  })
  .superRefine((o, ctx) => {
    if (o.userClaim === 'email' && (o.emailDomains === undefined || o.emailDomains.length === 0)) {
      ctx.addIssue({
        code: 'custom',
        path: ['emailDomains'],
        message: 'required (at least one domain) when userClaim is email',
        ...hint('list the domains whose addresses are local users, e.g. emailDomains: [example.com]; map others explicitly in map or rules'),
      });
    }
    if (o.userClaim !== 'email' && o.emailDomains !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['emailDomains'],
        message: `configured but not used: userClaim is ${o.userClaim}`,
        ...hint('set userClaim: email, or remove emailDomains'),
      });
    }
    if (o.jwksCacheMaxAge < o.jwksCooldown) {
      ctx.addIssue({ code: 'custom', path: ['jwksCacheMaxAge'], message: 'must be at least jwksCooldown' });
    }
    // The mapper's own validation, at config paths: one source of truth with the runtime.
    for (const problem of checkClaimMapping(o)) ctx.addIssue({ code: 'custom', path: [...problem.path], message: problem.message });
  });

export type OAuthConfig = z.output<typeof oauthSchema>;
export type OAuthConfigInput = z.input<typeof oauthSchema>;
export type OAuthIntrospectionConfig = NonNullable<OAuthConfig['introspection']>;

export interface ClaimMappingOptions {
  readonly map?: Readonly<Record<string, string>>;
  readonly rules?: readonly PrincipalMappingRule[];
}

/**
 * Every problem with a claim mapping (empty when usable): map keys are claim
 * values, map values POP3 users, rules compile (compileMappingRule, the
 * Kerberos mapper's own check). The schema reports these with their paths;
 * the runtime mapper throws on the first.
 */
export function checkClaimMapping(opts: ClaimMappingOptions): MappingProblem[] {
  const problems: MappingProblem[] = [];
  for (const [value, user] of Object.entries(opts.map ?? {})) {
    if (value === '' || value.length > MAX_CLAIM_VALUE_LENGTH) {
      problems.push({ path: ['map', value], message: `key must be a claim value (1 to ${MAX_CLAIM_VALUE_LENGTH} characters)` });
    }
    if (!isValidPop3User(user)) problems.push({ path: ['map', value], message: NOT_A_POP3_USER });
  }
  (opts.rules ?? []).forEach((rule, i) => {
    const compiled = compileMappingRule(rule);
    if (!compiled.ok) problems.push({ path: ['rules', i, compiled.field], message: compiled.message });
  });
  return problems;
}

/** The OpenID discovery document of `issuer` (OpenID Connect Discovery 1.0 section 4: one trailing `/` dropped). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}
