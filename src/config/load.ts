/**
 * Loading the YAML configuration: parse, interpolate `${VAR}` from the
 * environment, resolve relative paths (`*File` keys and PATH_FIELDS), read
 * `*File` secrets, validate with the schema, and turn every problem into one
 * ConfigError that names config paths and gives hints (but never secret
 * values).
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { typeName } from './duration.js';
import {
  allowedKeysAt,
  allowedValuesAt,
  checkStaticHeader,
  configSchema,
  FREE_FORM_FIELDS,
  HEADER_MAP_FIELDS,
  PATH_FIELDS,
  SECRET_FIELDS,
  SECRET_MAPS,
  type PopgateConfig,
} from './schema.js';

export interface ConfigIssue {
  /** Config path in `a.b[0].c` form; empty for the whole document. */
  readonly path: string;
  readonly message: string;
  readonly hint?: string;
  /** The file the problem is in, for a file the config names (the message names it too). */
  readonly file?: string;
  /** 1-based position in the YAML text (syntax errors only). */
  readonly line?: number;
  readonly column?: number;
}

/** Everything wrong with a configuration, in one error. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  readonly source: string | undefined;

  constructor(issues: readonly ConfigIssue[], source?: string) {
    super(formatConfigIssues(issues, source));
    this.name = 'ConfigError';
    this.issues = issues;
    this.source = source;
  }
}

/** Renders issues as `path: message (hint: ...)` lines under a heading. */
export function formatConfigIssues(issues: readonly ConfigIssue[], source?: string): string {
  const head = `invalid configuration${source ? ` in ${source}` : ''} (${issues.length} problem${issues.length === 1 ? '' : 's'}):`;
  const lines = issues.map((i) => `  ${i.path ? `${i.path}: ` : ''}${i.message}${i.hint ? ` (hint: ${i.hint})` : ''}`);
  return [head, ...lines].join('\n');
}

export function isConfigError(err: unknown): err is ConfigError {
  return err instanceof ConfigError;
}

export interface ParseConfigOptions {
  /** Directory relative paths (`*File` keys) are resolved against. */
  readonly baseDir: string;
  /** Variables for `${VAR}` interpolation; defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Name of the text's origin (file name) for error messages. */
  readonly source?: string;
  /**
   * Read `*File` secrets (default true). With false the files are not
   * touched and each secret is set to "***": for validating a config on a
   * machine without the secrets, never for running.
   */
  readonly readSecrets?: boolean;
}

/** What redactConfig (and readSecrets: false) put in place of a secret. */
export const REDACTED = '***';

type Segment = string | number;
type Tree = unknown;

/** `['listeners', 0, 'tls']` → `listeners[0].tls`. */
export function formatConfigPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Path with array indexes generalised, to match SECRET_FIELDS: `listeners[].tls.x`. */
function pathPattern(path: readonly Segment[]): string {
  return formatConfigPath(path.map((s) => (typeof s === 'number' ? -1 : s))).replace(/\[-1\]/g, '[]');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function getAt(root: Tree, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

// ---------------------------------------------------------------------------
// Levenshtein suggestions

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const cur = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/**
 * The candidate closest to `word`, if it is close enough to be a likely typo
 * (small edit distance, ignoring case, or one is a prefix of the other).
 */
export function closestMatch(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const lc = c.toLowerCase();
    const d = levenshtein(w, lc);
    const limit = Math.max(2, Math.floor(Math.max(w.length, lc.length) / 3));
    const prefix = Math.min(w.length, lc.length) >= 3 && (w.startsWith(lc) || lc.startsWith(w));
    if ((d <= limit || prefix) && d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------
// Stage 1: YAML

function parseYaml(text: string, source: string | undefined): Tree {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e): ConfigIssue => {
      // The library's message ends with an excerpt of the source, which may
      // contain a secret: keep only the description.
      const description = (e.message.split('\n')[0] ?? e.code).replace(/ at line \d+, column \d+:?\s*$/, '');
      const pos = e.linePos?.[0];
      return pos
        ? { path: '', message: `YAML syntax error at line ${pos.line}, column ${pos.col}: ${description}`, line: pos.line, column: pos.col }
        : { path: '', message: `YAML syntax error: ${description}` };
    });
    throw new ConfigError(issues, source);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 }) as Tree;
  } catch (err) {
    const msg = err instanceof Error ? (err.message.split('\n')[0] ?? '') : '';
    throw new ConfigError([{ path: '', message: `YAML error: ${msg}` }], source);
  }
}

// ---------------------------------------------------------------------------
// Stage 2: ${VAR} interpolation

const VAR_REF = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;
const WHOLE_REF = /^\$\{[^}]*\}$/;

interface InterpolationState {
  readonly env: NodeJS.ProcessEnv;
  readonly issues: ConfigIssue[];
  /** Paths whose whole value was one `${...}` (may be coerced to number/boolean). */
  readonly whole: Set<string>;
}

function interpolateString(s: string, path: readonly Segment[], st: InterpolationState): string {
  if (!s.includes('$')) return s;
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (s.startsWith('$${', i)) {
      out += '${';
      i += 3;
    } else if (s.startsWith('${', i)) {
      const end = s.indexOf('}', i + 2);
      const m = end < 0 ? null : VAR_REF.exec(s.slice(i + 2, end));
      if (!m) {
        st.issues.push({
          path: formatConfigPath(path),
          message: `invalid \${...} reference at character ${i + 1}`,
          hint: 'use ${NAME} or ${NAME:-default}; write $${ for a literal ${',
        });
        return s;
      }
      const name = m[1] ?? '';
      const fallback = m[2];
      const value = st.env[name];
      if (value !== undefined && (value !== '' || fallback === undefined)) out += value;
      else if (fallback !== undefined) out += fallback;
      else {
        st.issues.push({
          path: formatConfigPath(path),
          message: `environment variable ${name} is not set`,
          hint: `set ${name}, give a default with \${${name}:-value}, or write $\${ for a literal \${`,
        });
      }
      i = (end < 0 ? s.length : end) + 1;
    } else {
      out += s[i];
      i += 1;
    }
  }
  if (WHOLE_REF.test(s)) st.whole.add(JSON.stringify(path));
  return out;
}

/** A copy of the tree with `${VAR}` expanded in string scalars (never in keys). */
function interpolate(v: Tree, path: Segment[], st: InterpolationState): Tree {
  if (typeof v === 'string') return interpolateString(v, path, st);
  if (Array.isArray(v)) return v.map((item, i) => interpolate(item, [...path, i], st));
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, child] of Object.entries(v)) setOwn(out, k, interpolate(child, [...path, k], st));
    return out;
  }
  return v;
}

// ---------------------------------------------------------------------------
// Stage 3: relative paths and *File secrets

/**
 * Resolves every relative path against `baseDir` (in place): `*File` keys
 * and the keys in PATH_FIELDS. Free-form maps (FREE_FORM_FIELDS) are left alone.
 */
function resolvePaths(v: Tree, baseDir: string, path: Segment[] = []): void {
  if (Array.isArray(v)) v.forEach((item, i) => resolvePaths(item, baseDir, [...path, i]));
  else if (isRecord(v)) {
    if (FREE_FORM_FIELDS.includes(pathPattern(path))) return;
    for (const [k, child] of Object.entries(v)) {
      const isPath = k.endsWith('File') || PATH_FIELDS.includes(pathPattern([...path, k]));
      if (isPath && typeof child === 'string' && child !== '' && !isAbsolute(child)) {
        setOwn(v, k, resolve(baseDir, child));
      } else resolvePaths(child, baseDir, [...path, k]);
    }
  }
}

interface SecretRef {
  readonly obj: Record<string, unknown>;
  readonly path: readonly Segment[];
  /** The secret key (`password`); the file key is `${key}File`. */
  readonly key: string;
}

function findSecretFiles(v: Tree, path: Segment[], out: SecretRef[]): void {
  if (Array.isArray(v)) v.forEach((item, i) => findSecretFiles(item, [...path, i], out));
  else if (isRecord(v)) {
    if (FREE_FORM_FIELDS.includes(pathPattern(path))) return;
    for (const [k, child] of Object.entries(v)) {
      if (k.length > 4 && k.endsWith('File')) {
        const key = k.slice(0, -4);
        if (SECRET_FIELDS.includes(pathPattern([...path, key]))) out.push({ obj: v, path, key });
      }
      findSecretFiles(child, [...path, k], out);
    }
  }
}

/**
 * Reads `<key>File` into `<key>` for every secret field. Returns the config
 * paths (JSON) of the secrets that were filled in.
 */
async function loadSecretFiles(root: Tree, readSecrets: boolean, issues: ConfigIssue[]): Promise<Set<string>> {
  const refs: SecretRef[] = [];
  findSecretFiles(root, [], refs);
  const filled = new Set<string>();
  await Promise.all(
    refs.map(async ({ obj, path, key }) => {
      const fileKey = `${key}File`;
      const file = obj[fileKey];
      const filePath = formatConfigPath([...path, fileKey]);
      if (file === undefined || file === null) return;
      if (obj[key] !== undefined && obj[key] !== null) {
        issues.push({
          path: formatConfigPath(path),
          message: `both ${key} and ${fileKey} are given; use exactly one`,
          hint: `prefer ${fileKey} (e.g. a mounted Kubernetes Secret) and remove ${key}`,
        });
        return;
      }
      if (typeof file !== 'string' || file === '') return; // the schema reports it
      // On failure the placeholder keeps the schema from also calling the
      // secret missing; the collected issue makes the load fail anyway.
      let value = REDACTED;
      if (readSecrets) {
        try {
          const text = (await readFile(file, 'utf8')).replace(/(?:\r?\n)+$/, '');
          if (text === '') issues.push({ path: filePath, file, message: `secret file ${file} is empty` });
          else value = text;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'read error';
          issues.push({
            path: filePath,
            file,
            message: `cannot read secret file ${file} (${code})`,
            hint: 'check that the file exists and is readable by the popgate user',
          });
        }
      }
      setOwn(obj, key, value);
      filled.add(JSON.stringify([...path, key]));
    }),
  );
  return filled;
}

/**
 * Parses a headers file: one `Name: value` per line, as in an HTTP request.
 * Blank lines and lines starting with `#` are skipped; the value is all
 * after the first `:`, surrounding spaces trimmed, taken literally (no
 * quoting or escapes). Problems name lines and headers, never values.
 */
export function parseHeaderLines(text: string): { headers: Map<string, string>; problems: string[] } {
  const headers = new Map<string, string>();
  const lowered = new Map<string, number>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const n = i + 1;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon < 0) {
      problems.push(`line ${n}: expected "Name: value"`);
      return;
    }
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    const problem = checkStaticHeader(name, value);
    if (problem) {
      // An invalid name is not echoed: it may be part of a mangled secret.
      problems.push(`line ${n}${problem.field === 'value' ? ` (${name})` : ''}: ${problem.message}`);
      return;
    }
    const first = lowered.get(name.toLowerCase());
    if (first !== undefined) {
      problems.push(`line ${n}: ${name} repeats the header of line ${first}`);
      return;
    }
    lowered.set(name.toLowerCase(), n);
    headers.set(name, value);
  });
  if (headers.size === 0 && problems.length === 0) problems.push('contains no headers');
  return { headers, problems };
}

interface HeaderFileRef {
  readonly obj: Record<string, unknown>;
  readonly path: readonly Segment[];
  readonly key: string;
}

function findHeaderFiles(v: Tree, path: Segment[], out: HeaderFileRef[]): void {
  if (Array.isArray(v)) v.forEach((item, i) => findHeaderFiles(item, [...path, i], out));
  else if (isRecord(v)) {
    if (FREE_FORM_FIELDS.includes(pathPattern(path))) return;
    for (const [k, child] of Object.entries(v)) {
      if (k.length > 4 && k.endsWith('File') && HEADER_MAP_FIELDS.includes(pathPattern([...path, k.slice(0, -4)]))) {
        out.push({ obj: v, path, key: k.slice(0, -4) });
      }
      findHeaderFiles(child, [...path, k], out);
    }
  }
}

/**
 * Reads every `<key>File` of HEADER_MAP_FIELDS and merges its headers into
 * `<key>` (in place). Skipped with readSecrets false (the file holds secrets).
 */
async function loadHeaderFiles(root: Tree, readSecrets: boolean, issues: ConfigIssue[]): Promise<void> {
  if (!readSecrets) return;
  const refs: HeaderFileRef[] = [];
  findHeaderFiles(root, [], refs);
  await Promise.all(
    refs.map(async ({ obj, path, key }) => {
      const fileKey = `${key}File`;
      const file = obj[fileKey];
      const at = formatConfigPath([...path, fileKey]);
      if (typeof file !== 'string' || file === '') return; // the schema reports it
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'read error';
        issues.push({ path: at, file, message: `cannot read headers file ${file} (${code})`, hint: 'check that the file exists and is readable by the popgate user' });
        return;
      }
      const { headers, problems } = parseHeaderLines(text);
      for (const problem of problems) {
        issues.push({ path: at, file, message: `${file}: ${problem}`, hint: 'one "Name: value" per line; blank lines and lines starting with # are ignored' });
      }
      if (problems.length > 0) return;
      const inline = obj[key] ?? {};
      if (!isRecord(inline)) return; // the schema reports it
      const inlineNames = new Map(Object.keys(inline).map((n) => [n.toLowerCase(), n]));
      const merged: Record<string, unknown> = { ...inline };
      for (const [name, value] of headers) {
        const clash = inlineNames.get(name.toLowerCase());
        if (clash !== undefined) {
          issues.push({
            path: at,
            file,
            message: `header ${name} from ${file} is also set in ${formatConfigPath([...path, key])} (as ${clash})`,
            hint: 'set each header in one place',
          });
          continue;
        }
        setOwn(merged, name, value);
      }
      setOwn(obj, key, merged);
    }),
  );
}

// ---------------------------------------------------------------------------
// Stage 4: schema validation and issue translation

const EXPECTED_NAMES: Record<string, string> = { int: 'integer', object: 'mapping (object)', array: 'list (array)' };

function quoteList(values: readonly string[]): string {
  return values.map((v) => `'${v}'`).join(', ');
}

function translateIssue(issue: z.core.$ZodIssue, root: Tree, filled: ReadonlySet<string>): ConfigIssue[] {
  const path = issue.path.filter((s): s is Segment => typeof s === 'string' || typeof s === 'number');
  const at = formatConfigPath(path);
  const input = getAt(root, path);
  const zodDefault = (prefix: string): boolean => issue.message.startsWith(prefix);
  const customHint = (issue.code === 'custom' ? (issue.params as { hint?: unknown } | undefined)?.hint : undefined);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeysAt(path, root);
      // A secret we filled from <key>File is unknown here: blame the key the user wrote.
      const shownKeys = new Set(issue.keys.map((key) => (filled.has(JSON.stringify([...path, key])) ? `${key}File` : key)));
      return [...shownKeys].map((shown): ConfigIssue => {
        const suggestion = closestMatch(shown, allowed);
        const allowedText = `allowed keys: ${allowed.join(', ')}`;
        return {
          path: formatConfigPath([...path, shown]),
          message: 'unknown key',
          hint: suggestion ? `did you mean '${suggestion}'? ${allowedText}` : allowedText,
        };
      });
    }
    case 'invalid_type': {
      if (!zodDefault('Invalid input')) return [{ path: at, message: issue.message }];
      if (input === undefined) return [{ path: at, message: `required (expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected})` }];
      const got = issue.expected === 'int' && typeof input === 'number' ? 'a number with a fraction' : typeName(input);
      const numeric = typeof input === 'string' && (issue.expected === 'number' || issue.expected === 'int') && /^-?\d+(\.\d+)?$/.test(input.trim());
      return [
        {
          path: at,
          message: `expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected}, got ${got}`,
          ...(numeric ? { hint: 'remove the quotes around the number' } : {}),
        },
      ];
    }
    case 'invalid_value': {
      const values = issue.values.map(String);
      const suggestion = typeof input === 'string' ? closestMatch(input, values) : undefined;
      return [
        {
          path: at,
          message: `${input === undefined ? 'required: ' : ''}expected one of ${quoteList(values)}`,
          ...(suggestion ? { hint: `did you mean '${suggestion}'?` } : {}),
        },
      ];
    }
    case 'invalid_union': {
      const disc = (issue as { discriminator?: unknown }).discriminator;
      if (typeof disc === 'string') {
        const values = allowedValuesAt(path, root);
        const suggestion = typeof input === 'string' ? closestMatch(input, values) : undefined;
        return [
          {
            path: at,
            message: `${input === undefined ? 'required: ' : ''}expected one of ${quoteList(values)}`,
            ...(suggestion ? { hint: `did you mean '${suggestion}'?` } : {}),
          },
        ];
      }
      return [{ path: at, message: 'invalid value' }];
    }
    case 'too_small':
    case 'too_big': {
      if (!zodDefault('Too small') && !zodDefault('Too big')) return [{ path: at, message: issue.message }];
      const bound = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
      const inclusive = issue.inclusive !== false;
      const word = issue.code === 'too_small' ? (inclusive ? 'at least' : 'more than') : inclusive ? 'at most' : 'less than';
      const unit = issue.origin === 'array' || issue.origin === 'set' ? ` item${bound === 1 ? '' : 's'}` : issue.origin === 'string' ? ` character${bound === 1 ? '' : 's'}` : '';
      const what = issue.origin === 'array' || issue.origin === 'set' || issue.origin === 'string' ? 'must have' : 'must be';
      return [{ path: at, message: `${what} ${word} ${bound}${unit}` }];
    }
    default:
      return [{ path: at, message: issue.message, ...(typeof customHint === 'string' ? { hint: customHint } : {}) }];
  }
}

/**
 * A value that came whole from `${VAR}` is a string even when it spells a
 * number; where the schema wants a number or boolean, convert it. Returns
 * whether anything changed.
 */
function coerceInterpolated(issues: readonly z.core.$ZodIssue[], root: Tree, whole: ReadonlySet<string>): boolean {
  let changed = false;
  for (const issue of issues) {
    if (issue.code !== 'invalid_type' || !whole.has(JSON.stringify(issue.path))) continue;
    const parentPath = issue.path.slice(0, -1);
    const key = issue.path[issue.path.length - 1];
    const parent = getAt(root, parentPath);
    if (key === undefined || parent === null || typeof parent !== 'object') continue;
    const value = (parent as Record<PropertyKey, unknown>)[key];
    if (typeof value !== 'string') continue;
    const text = value.trim();
    let next: number | boolean | undefined;
    if ((issue.expected === 'number' || issue.expected === 'int') && /^-?\d+(\.\d+)?$/.test(text)) next = Number(text);
    else if (issue.expected === 'boolean' && (text === 'true' || text === 'false')) next = text === 'true';
    if (next === undefined) continue;
    (parent as Record<PropertyKey, unknown>)[key] = next;
    changed = true;
  }
  return changed;
}

// ---------------------------------------------------------------------------

/**
 * What loading a configuration found: the validated config, or every problem
 * at once. Problems with the files the loader reads itself (`*File` secrets,
 * headers files) do not hide the config: `config` is set whenever the text
 * passed the schema, so that the other files it names can still be checked
 * (src/server/preflight.ts). With issues, such a config holds "***" for each
 * secret that could not be read: report it, never run it.
 */
export interface ConfigInspection {
  readonly config: PopgateConfig | undefined;
  readonly issues: readonly ConfigIssue[];
}

/** Parses, interpolates, resolves and validates configuration text, collecting every problem. */
export async function inspectConfigText(text: string, opts: ParseConfigOptions): Promise<ConfigInspection> {
  const { baseDir, source } = opts;
  let raw: Tree;
  try {
    raw = parseYaml(text, source);
  } catch (err) {
    if (err instanceof ConfigError) return { config: undefined, issues: err.issues };
    throw err;
  }
  if (raw === null || raw === undefined) {
    return { config: undefined, issues: [{ path: '', message: 'the configuration is empty', hint: 'see config.example.yaml' }] };
  }
  const st: InterpolationState = { env: opts.env ?? process.env, issues: [], whole: new Set() };
  const tree = interpolate(raw, [], st);
  if (st.issues.length > 0) return { config: undefined, issues: st.issues };

  resolvePaths(tree, baseDir);
  const fileIssues: ConfigIssue[] = [];
  const filled = await loadSecretFiles(tree, opts.readSecrets ?? true, fileIssues);
  await loadHeaderFiles(tree, opts.readSecrets ?? true, fileIssues);

  let result = configSchema.safeParse(tree, { reportInput: false });
  for (let round = 0; !result.success && round < 3 && coerceInterpolated(result.error.issues, tree, st.whole); round += 1) {
    result = configSchema.safeParse(tree, { reportInput: false });
  }
  if (result.success) return { config: result.data, issues: fileIssues };
  return { config: undefined, issues: [...fileIssues, ...result.error.issues.flatMap((i) => translateIssue(i, tree, filled))] };
}

/** Parses, interpolates, resolves and validates configuration text; throws a ConfigError with every problem. */
export async function parseConfigText(text: string, opts: ParseConfigOptions): Promise<PopgateConfig> {
  const { config, issues } = await inspectConfigText(text, opts);
  if (config !== undefined && issues.length === 0) return config;
  throw new ConfigError(issues, opts.source);
}

/** Reads a configuration file and inspects it (see inspectConfigText). */
export async function inspectConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { readonly readSecrets?: boolean } = {},
): Promise<ConfigInspection> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    return { config: undefined, issues: [{ path: '', file: path, message: `cannot read configuration file ${path} (${code})` }] };
  }
  return inspectConfigText(text, { baseDir: dirname(path), env, source: file, ...opts });
}

/** Reads and validates a configuration file; throws a ConfigError with every problem. */
export async function loadConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { readonly readSecrets?: boolean } = {},
): Promise<PopgateConfig> {
  const { config, issues } = await inspectConfig(file, env, opts);
  if (config !== undefined && issues.length === 0) return config;
  throw new ConfigError(issues, file);
}

// ---------------------------------------------------------------------------

function redactAt(v: unknown, path: Segment[]): unknown {
  if (Array.isArray(v)) return v.map((item, i) => redactAt(item, [...path, i]));
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    if (SECRET_MAPS.includes(pathPattern(path))) {
      for (const k of Object.keys(v)) setOwn(out, k, REDACTED);
      return out;
    }
    for (const [k, child] of Object.entries(v)) {
      const secret = SECRET_FIELDS.includes(pathPattern([...path, k])) && child !== undefined && child !== null;
      setOwn(out, k, secret ? REDACTED : redactAt(child, [...path, k]));
    }
    return out;
  }
  // Credentials inside URLs (redis://:password@host, http://user:pw@proxy) are secrets too.
  if (typeof v === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*@/i.test(v)) {
    return v.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, `$1${REDACTED}@`);
  }
  return v;
}

/** A deep copy with every secret (SECRET_FIELDS, and each value of SECRET_MAPS) replaced by "***". */
export function redactConfig<T extends object = PopgateConfig>(cfg: T): T {
  return redactAt(cfg, []) as T;
}
