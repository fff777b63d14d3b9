/**
 * RFC 7662 token introspection for opaque access tokens, with a bounded cache.
 *
 *   POST <url>   Authorization: Basic base64(form(clientId) ":" form(clientSecret))
 *                Content-Type: application/x-www-form-urlencoded
 *   token=<token>&token_type_hint=access_token
 *   -> 200 {"active": true, "scope": "...", "exp": ..., "sub": ..., ...} | {"active": false}
 *
 * The client credentials are form-encoded before Basic (RFC 6749 section
 * 2.3.1). An answer that is not 200 with a JSON object whose `active` is a
 * boolean, or whose standard members have the wrong types, is the endpoint
 * answering garbage: VERIFIER_UNAVAILABLE (`introspection-invalid`).
 *
 * Answers are cached under the SHA-256 of the token (never the token): an
 * active one until min(now + cacheTtl, exp), an inactive one for cacheTtl; at
 * most cacheMaxEntries, the oldest dropped first. Concurrent questions about
 * one token share one request. The claims are returned as the endpoint sent
 * them; the caller checks iss, aud, exp, scope and azp on every use (so a
 * cached answer expires with its token).
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../../clock.js';
import type { OAuthIntrospectionConfig } from '../../config/oauth.js';
import { abandonable, unavailable, type IssuerHttp } from './issuer-http.js';

export type IntrospectionAnswer =
  | { readonly active: true; readonly claims: Readonly<Record<string, unknown>> }
  | { readonly active: false };

export interface Introspector {
  /** The endpoint's answer about `token` (cached); rejects with VERIFIER_UNAVAILABLE. */
  introspect(token: string, signal?: AbortSignal): Promise<IntrospectionAnswer>;
  /** Entries in the cache (for tests and metrics). */
  readonly cacheSize: number;
  close(): void;
}

export interface IntrospectorDeps {
  readonly http: IssuerHttp;
  readonly clock: Clock;
}

/** The cache key of a token: SHA-256, hex. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** application/x-www-form-urlencoded for one value. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/** Members whose type RFC 7662 section 2.2 (and RFC 7519) fixes; a wrong type is a broken endpoint. */
const MEMBER_TYPES: ReadonlyArray<readonly [string, 'string' | 'number' | 'audience']> = [
  ['scope', 'string'],
  ['client_id', 'string'],
  ['username', 'string'],
  ['token_type', 'string'],
  ['sub', 'string'],
  ['iss', 'string'],
  ['jti', 'string'],
  ['exp', 'number'],
  ['iat', 'number'],
  ['nbf', 'number'],
  ['aud', 'audience'],
];

function wrongMember(claims: Readonly<Record<string, unknown>>): string | undefined {
  for (const [name, type] of MEMBER_TYPES) {
    const v = claims[name];
    if (v === undefined) continue;
    const fine =
      type === 'audience'
        ? typeof v === 'string' || (Array.isArray(v) && v.every((a) => typeof a === 'string'))
        : type === 'number'
          ? typeof v === 'number' && Number.isFinite(v)
          : typeof v === 'string';
    if (!fine) return name;
  }
  return undefined;
}

interface Entry {
  readonly answer: IntrospectionAnswer;
  readonly until: number;
}

export function createIntrospector(cfg: OAuthIntrospectionConfig, deps: IntrospectorDeps): Introspector {
  const url = new URL(cfg.url);
  const authorization = `Basic ${Buffer.from(`${formEncode(cfg.clientId)}:${formEncode(cfg.clientSecret)}`, 'utf8').toString('base64')}`;
  const cache = new Map<string, Entry>();
  const inFlight = new Map<string, Promise<IntrospectionAnswer>>();

  function remember(key: string, answer: IntrospectionAnswer): void {
    if (cfg.cacheTtl <= 0) return;
    const now = deps.clock.now();
    let until = now + cfg.cacheTtl;
    if (answer.active) {
      const exp = answer.claims['exp'];
      if (typeof exp === 'number') until = Math.min(until, exp * 1000);
    }
    if (until <= now) return;
    cache.delete(key);
    while (cache.size >= cfg.cacheMaxEntries) {
      const oldest = cache.keys().next();
      if (oldest.done === true) break;
      cache.delete(oldest.value);
    }
    cache.set(key, { answer, until });
  }

  async function ask(token: string): Promise<IntrospectionAnswer> {
    const body = await deps.http.json({
      url,
      endpoint: 'introspection',
      method: 'POST',
      headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${formEncode(token)}&token_type_hint=access_token`,
    });
    const active = body['active'];
    if (typeof active !== 'boolean') throw unavailable('introspection-invalid: the answer has no boolean "active" member');
    if (!active) return { active: false };
    const wrong = wrongMember(body);
    if (wrong !== undefined) throw unavailable(`introspection-invalid: the answer's "${wrong}" member has the wrong type`);
    return { active: true, claims: body };
  }

  return {
    async introspect(token, signal) {
      const key = tokenDigest(token);
      const hit = cache.get(key);
      if (hit) {
        if (hit.until > deps.clock.now()) return hit.answer;
        cache.delete(key);
      }
      let pending = inFlight.get(key);
      if (!pending) {
        pending = ask(token).then(
          (answer) => {
            remember(key, answer);
            return answer;
          },
        );
        const settled = pending.finally(() => inFlight.delete(key));
        settled.catch(() => {});
        inFlight.set(key, pending);
      }
      return signal ? abandonable(pending, signal) : pending;
    },
    get cacheSize() {
      return cache.size;
    },
    close() {
      cache.clear();
    },
  };
}
