/**
 * Kerberos principal -> local POP3 user authorization.
 *
 * Always authorize the principal Kerberos returned (never what the client
 * typed). The order of decisions, first hit wins:
 *
 *   1. `map`: explicit principal -> user entries; may name foreign realms and
 *      instances (`pop/host@R`).
 *   2. `rules`: JavaScript regexes (no flags) tested against the whole
 *      canonical principal string; the user is
 *      `principal.replace(match, replace)` (String.prototype.replace, so
 *      `$1`, `$<name>`, `$&` work; anchor the regex yourself). The first rule
 *      whose regex matches decides, even when its result is unusable.
 *   3. `realms` + `stripRealm`: a single-component principal of an allowed
 *      realm becomes its name (`alice@EXAMPLE.COM` -> `alice`; a name holding
 *      an escaped `@`, `/` or `\` is refused), or the whole canonical
 *      principal with `stripRealm: false`.
 *
 * Anything else is refused: foreign realms, instances (`a/b@R`), malformed
 * names, and results that are not usable POP3 user names. `lowercase`
 * applies to rule and realm results, never to explicit `map` values (those
 * are taken verbatim).
 *
 * Pure; no Kerberos library needed, and no other popgate module: it sits at
 * the bottom of the layers (docs/development.md) because the config schema,
 * the Kerberos and OAuth verifiers, the server and the CLI all use it.
 * Principal syntax follows MIT krb5_parse_name / krb5_unparse_name:
 * components separated by `/`, the realm after the first unescaped `@`, and
 * `\/ \@ \\ \n \t \b \0` escapes (any other escaped character stands for
 * itself).
 */
// Whitespace (any Unicode space), C0 controls, DEL and ':' (the user-file separator).
// eslint-disable-next-line no-control-regex -- the controls are what is refused
const BAD_USER_CHARS = /[\s\x00-\x1f\x7f:]/u;

/**
 * A usable POP3 user name: non-empty, no whitespace, control characters or
 * `:`. One rule for the user file, mapped principals, certificate names and
 * `popgate hash-password`, so a name accepted in one place works in the others.
 */
export function isValidPop3User(user: string): boolean {
  return user.length > 0 && !BAD_USER_CHARS.test(user);
}

/** The problem reported for a configured user name isValidPop3User refuses (Kerberos and OAuth mappings alike). */
export const NOT_A_POP3_USER = 'must be a POP3 user name (not empty; no spaces, control characters or ":")';

/** Longest principal string considered (longer ones are 'malformed'). */
export const MAX_PRINCIPAL_LENGTH = 1024;

export interface ParsedPrincipal {
  /** Unescaped name components (`['pop', 'mail.example.com']`). */
  readonly components: readonly string[];
  /** Unescaped realm (never empty). */
  readonly realm: string;
}

const UNESCAPE: Readonly<Record<string, string>> = { n: '\n', t: '\t', b: '\b', '0': '\0' };

/**
 * Parses a principal with a realm (`name[/instance...]@REALM`, krb5 escapes
 * honoured). Undefined when malformed: no realm or an empty one, an empty
 * component, a trailing backslash, an unescaped `/` or `@` inside the realm,
 * or longer than MAX_PRINCIPAL_LENGTH.
 */
export function parsePrincipal(s: string): ParsedPrincipal | undefined {
  if (s.length === 0 || s.length > MAX_PRINCIPAL_LENGTH) return undefined;
  const components: string[] = [];
  let current = '';
  let realm: string | undefined;
  for (let i = 0; i < s.length; i += 1) {
    const c = s[i] as string;
    if (c === '\\') {
      i += 1;
      const e = s[i];
      if (e === undefined) return undefined;
      const ch = UNESCAPE[e] ?? e;
      if (realm === undefined) current += ch;
      else realm += ch;
    } else if (realm !== undefined) {
      if (c === '/' || c === '@') return undefined;
      realm += c;
    } else if (c === '/') {
      components.push(current);
      current = '';
    } else if (c === '@') {
      components.push(current);
      current = '';
      realm = '';
    } else {
      current += c;
    }
  }
  if (realm === undefined || realm === '') return undefined;
  if (components.some((x) => x === '')) return undefined;
  return { components, realm };
}

const ESCAPE: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '/': '\\/',
  '@': '\\@',
  '\n': '\\n',
  '\t': '\\t',
  '\b': '\\b',
  '\0': '\\0',
};

function quote(s: string): string {
  return s.replace(/[\\/@\n\t\b\0]/g, (c) => ESCAPE[c] ?? c);
}

/** The canonical string form (as krb5_unparse_name writes it). */
export function unparsePrincipal(p: ParsedPrincipal): string {
  return `${p.components.map(quote).join('/')}@${quote(p.realm)}`;
}

/** `s` in canonical form, or undefined when it does not parse. */
export function canonicalPrincipal(s: string): string | undefined {
  const p = parsePrincipal(s);
  return p === undefined ? undefined : unparsePrincipal(p);
}


/** A realm name as written in configuration: non-empty, no whitespace/controls, `/`, `@` or `\`. */
export function isValidRealm(realm: string): boolean {
  // eslint-disable-next-line no-control-regex -- the controls are what is refused
  return realm.length > 0 && !/[\s\x00-\x1f\x7f/@\\]/u.test(realm);
}

// ---------------------------------------------------------------------------

export interface PrincipalMappingRule {
  /** JavaScript regex source (no flags), tested against the canonical principal. */
  readonly match: string;
  /** Replacement (String.prototype.replace syntax: `$1`, `$<name>`, `$&`, `$$`). */
  readonly replace: string;
}

export interface PrincipalMappingOptions {
  /** Realms whose single-component principals map by name (non-empty). */
  readonly realms: readonly string[];
  /** `alice@REALM` -> `alice` (true, default) or the whole principal (false). */
  readonly stripRealm?: boolean;
  /** Lowercase rule and realm results (never explicit map values). Default false. */
  readonly lowercase?: boolean;
  /** Explicit principal -> user entries; checked first. */
  readonly map?: Readonly<Record<string, string>>;
  /** Checked after `map`, before the realm rule; the first matching rule decides. */
  readonly rules?: readonly PrincipalMappingRule[];
}

export type PrincipalRefusal = 'foreign-realm' | 'instance' | 'malformed' | 'unmapped';

export type PrincipalMapResult =
  | {
      readonly ok: true;
      readonly user: string;
      /** What decided, for logs: `map[bob@PARTNER.ORG]`, `rules[0]` or `realm`. */
      readonly rule: string;
    }
  | { readonly ok: false; readonly reason: PrincipalRefusal };

/** One problem with mapping options; `path` is relative to the options object. */
export interface MappingProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Number of capture groups in a compiled regex. */
function groupCount(re: RegExp): number {
  return (new RegExp(`${re.source}|`, re.flags).exec('')?.length ?? 1) - 1;
}

/**
 * Compiles a rule's regex, or describes why it cannot be used. Also refuses
 * `$n` references to groups the regex does not have (replace would leave
 * them as literal text).
 */
export function compileMappingRule(rule: PrincipalMappingRule): { ok: true; re: RegExp } | { ok: false; field: 'match' | 'replace'; message: string } {
  if (rule.match === '') return { ok: false, field: 'match', message: 'must not be empty' };
  let re: RegExp;
  try {
    re = new RegExp(rule.match);
  } catch (err) {
    const detail = err instanceof Error ? err.message.replace(/^Invalid regular expression: /, '') : String(err);
    return { ok: false, field: 'match', message: `not a valid regular expression: ${detail}` };
  }
  const groups = groupCount(re);
  // As String.prototype.replace reads them: `$$` is a literal `$`; `$nn` is
  // group nn when it exists, else group n followed by a digit.
  for (const m of rule.replace.matchAll(/\$(\$|\d\d?)/g)) {
    const ref = m[1] ?? '';
    if (ref === '$') continue;
    if (ref.length === 2 && Number(ref) >= 1 && Number(ref) <= groups) continue;
    const n = Number(ref[0]);
    if (n === 0) return { ok: false, field: 'replace', message: '$0 is literal text in JavaScript; use $& for the whole match' };
    if (n > groups) {
      return { ok: false, field: 'replace', message: `refers to group $${n}, but the regex has ${groups} capture group${groups === 1 ? '' : 's'}` };
    }
  }
  return { ok: true, re };
}

/**
 * Every problem with mapping options (empty when usable). The config schema
 * reports these with their paths; PrincipalMapper throws on the first.
 */
export function checkMappingOptions(opts: PrincipalMappingOptions): MappingProblem[] {
  const problems: MappingProblem[] = [];
  if (opts.realms.length === 0) problems.push({ path: ['realms'], message: 'at least one realm is required' });
  const realms = new Set<string>();
  opts.realms.forEach((realm, i) => {
    if (!isValidRealm(realm)) problems.push({ path: ['realms', i], message: 'must be a realm name (no spaces, "/", "@" or "\\")' });
    else if (realms.has(realm)) problems.push({ path: ['realms', i], message: `duplicate realm ${realm}` });
    realms.add(realm);
  });
  const seen = new Map<string, string>();
  for (const [principal, user] of Object.entries(opts.map ?? {})) {
    const canonical = canonicalPrincipal(principal);
    if (canonical === undefined) {
      problems.push({ path: ['map', principal], message: 'key must be a principal with a realm, e.g. "bob@PARTNER.ORG"' });
      continue;
    }
    const twin = seen.get(canonical);
    if (twin !== undefined) problems.push({ path: ['map', principal], message: `the same principal as "${twin}"` });
    seen.set(canonical, principal);
    if (!isValidPop3User(user)) {
      problems.push({ path: ['map', principal], message: NOT_A_POP3_USER });
    }
  }
  (opts.rules ?? []).forEach((rule, i) => {
    const compiled = compileMappingRule(rule);
    if (!compiled.ok) problems.push({ path: ['rules', i, compiled.field], message: compiled.message });
  });
  return problems;
}

interface CompiledRule {
  readonly re: RegExp;
  readonly replace: string;
  readonly label: string;
}

/** Maps authenticated principals to POP3 user names (see the module comment). */
export class PrincipalMapper {
  readonly #realms: ReadonlySet<string>;
  readonly #stripRealm: boolean;
  readonly #lowercase: boolean;
  /** Canonical principal -> [user, label]. */
  readonly #explicit: ReadonlyMap<string, readonly [string, string]>;
  readonly #rules: readonly CompiledRule[];

  /** Throws TypeError for unusable options (see checkMappingOptions). */
  constructor(opts: PrincipalMappingOptions) {
    const problem = checkMappingOptions(opts)[0];
    if (problem) {
      const where = problem.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
      throw new TypeError(`principal mapping${where}: ${problem.message}`);
    }
    this.#realms = new Set(opts.realms);
    this.#stripRealm = opts.stripRealm ?? true;
    this.#lowercase = opts.lowercase ?? false;
    const explicit = new Map<string, readonly [string, string]>();
    for (const [principal, user] of Object.entries(opts.map ?? {})) {
      const canonical = canonicalPrincipal(principal) as string;
      explicit.set(canonical, [user, `map[${canonical}]`]);
    }
    this.#explicit = explicit;
    this.#rules = (opts.rules ?? []).map((rule, i) => {
      const compiled = compileMappingRule(rule);
      if (!compiled.ok) throw new TypeError(`principal mapping.rules[${i}].${compiled.field}: ${compiled.message}`);
      return { re: compiled.re, replace: rule.replace, label: `rules[${i}]` };
    });
  }

  /** Decides which POP3 user `principal` (as Kerberos returned it) may act as. */
  map(principal: string): PrincipalMapResult {
    const parsed = parsePrincipal(principal);
    if (parsed === undefined) return { ok: false, reason: 'malformed' };
    const canonical = unparsePrincipal(parsed);

    const explicit = this.#explicit.get(canonical);
    if (explicit !== undefined) return this.#result(explicit[0], explicit[1], false);

    for (const rule of this.#rules) {
      if (rule.re.test(canonical)) return this.#result(canonical.replace(rule.re, rule.replace), rule.label, this.#lowercase);
    }

    if (!this.#realms.has(parsed.realm)) return { ok: false, reason: 'foreign-realm' };
    if (parsed.components.length !== 1) return { ok: false, reason: 'instance' };
    const name = parsed.components[0] ?? '';
    if (this.#stripRealm) {
      // Escaped separators: `alice\@OTHER.ORG@EXAMPLE.COM` would pass for another
      // realm's user, `a\/b@EXAMPLE.COM` for an instance (or a path on the backend).
      if (/[@/\\]/.test(name)) return { ok: false, reason: 'unmapped' };
      return this.#result(name, 'realm', this.#lowercase);
    }
    return this.#result(canonical, 'realm', this.#lowercase);
  }

  #result(user: string, rule: string, lowercase: boolean): PrincipalMapResult {
    const out = lowercase ? user.toLowerCase() : user;
    return isValidPop3User(out) ? { ok: true, user: out, rule } : { ok: false, reason: 'unmapped' };
  }
}
