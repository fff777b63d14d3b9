/**
 * A verified token's claims -> the POP3 user it may act as. The semantics of
 * the Kerberos principal mapper (src/identity/principal-mapper.ts) with the
 * claim value in place of the principal; first hit wins:
 *
 *   1. `map`: explicit claim value -> user (taken verbatim; may name any
 *      value, e.g. an address of a foreign domain).
 *   2. `rules`: regexes (no flags) over the whole claim value; the user is
 *      `value.replace(match, replace)`. The first rule that matches decides,
 *      even when its result is unusable.
 *   3. the plain value; for `email` only an address of `emailDomains`
 *      (case-insensitive), its domain stripped (`alice@Example.com` ->
 *      `alice`).
 *
 * The result must be a usable POP3 user (isValidPop3User), else the token is
 * refused as unmapped. An `email` claim with `email_verified: false` is never
 * mapped. Pure.
 */
import { checkClaimMapping, MAX_CLAIM_VALUE_LENGTH, type ClaimMappingOptions, type OAuthUserClaim } from '../../config/oauth.js';
import { compileMappingRule, isValidPop3User } from '../../identity/principal-mapper.js';

export interface ClaimMapperOptions extends ClaimMappingOptions {
  readonly userClaim: OAuthUserClaim;
  /** userClaim email: the domains mapped by local part (lowercase). */
  readonly emailDomains?: readonly string[];
}

export type ClaimMapResult =
  | {
      readonly ok: true;
      readonly user: string;
      /** What decided, for logs: `map[<value>]`, `rules[0]` or the claim's name. */
      readonly rule: string;
    }
  /** `detail` says why, for the log (never a token). */
  | { readonly ok: false; readonly detail: string };

interface CompiledRule {
  readonly re: RegExp;
  readonly replace: string;
  readonly label: string;
}

export class ClaimMapper {
  readonly #claim: OAuthUserClaim;
  readonly #domains: ReadonlySet<string>;
  readonly #explicit: ReadonlyMap<string, string>;
  readonly #rules: readonly CompiledRule[];

  /** Throws TypeError for unusable options (see checkClaimMapping). */
  constructor(opts: ClaimMapperOptions) {
    const problem = checkClaimMapping(opts)[0];
    if (problem) {
      const where = problem.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
      throw new TypeError(`claim mapping${where}: ${problem.message}`);
    }
    if (opts.userClaim === 'email' && (opts.emailDomains ?? []).length === 0) {
      throw new TypeError('claim mapping.emailDomains: required (at least one domain) when userClaim is email');
    }
    this.#claim = opts.userClaim;
    this.#domains = new Set((opts.emailDomains ?? []).map((d) => d.toLowerCase()));
    this.#explicit = new Map(Object.entries(opts.map ?? {}));
    this.#rules = (opts.rules ?? []).map((rule, i) => {
      const compiled = compileMappingRule(rule);
      if (!compiled.ok) throw new TypeError(`claim mapping.rules[${i}].${compiled.field}: ${compiled.message}`);
      return { re: compiled.re, replace: rule.replace, label: `rules[${i}]` };
    });
  }

  /** The claim this mapper reads. */
  get claim(): OAuthUserClaim {
    return this.#claim;
  }

  /** Decides which POP3 user the (already verified) claims may act as. */
  map(claims: Readonly<Record<string, unknown>>): ClaimMapResult {
    const value = claims[this.#claim];
    if (typeof value !== 'string' || value === '') return { ok: false, detail: `the token has no ${this.#claim} claim (a non-empty string)` };
    if (value.length > MAX_CLAIM_VALUE_LENGTH) return { ok: false, detail: `the ${this.#claim} claim is longer than ${MAX_CLAIM_VALUE_LENGTH} characters` };
    if (this.#claim === 'email' && claims['email_verified'] === false) return { ok: false, detail: 'the email claim is not verified (email_verified: false)' };

    const explicit = this.#explicit.get(value);
    if (explicit !== undefined) return result(explicit, `map[${value}]`);

    for (const rule of this.#rules) {
      if (rule.re.test(value)) return result(value.replace(rule.re, rule.replace), rule.label);
    }

    if (this.#claim !== 'email') return result(value, this.#claim);
    const at = value.lastIndexOf('@');
    const domain = value.slice(at + 1).toLowerCase().replace(/\.$/, '');
    if (at <= 0 || !this.#domains.has(domain)) return { ok: false, detail: 'the email domain is not one of emailDomains' };
    const local = value.slice(0, at);
    // A quoted local part holding an `@` ("a@b"@example.com) would pass for another address.
    if (local.includes('@')) return { ok: false, detail: 'the email local part holds an "@"' };
    return result(local, 'email');
  }
}

function result(user: string, rule: string): ClaimMapResult {
  return isValidPop3User(user) ? { ok: true, user, rule } : { ok: false, detail: `${rule} gives no usable POP3 user name` };
}
