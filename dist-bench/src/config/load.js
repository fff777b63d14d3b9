/**
 * Loading the YAML configuration: parse, interpolate `${VAR}` from the
 * environment, resolve relative paths, read `*File` secrets, validate with
 * the schema, and turn every problem into one ConfigError that names config
 * paths and gives hints (but never secret values).
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import YAML from 'yaml';
import { typeName } from './duration.js';
import { allowedKeysAt, allowedValuesAt, configSchema, SECRET_FIELDS } from './schema.js';
/** Everything wrong with a configuration, in one error. */
export class ConfigError extends Error {
    issues;
    source;
    constructor(issues, source) {
        super(formatConfigIssues(issues, source));
        this.name = 'ConfigError';
        this.issues = issues;
        this.source = source;
    }
}
/** Renders issues as `path: message (hint: ...)` lines under a heading. */
export function formatConfigIssues(issues, source) {
    const head = `invalid configuration${source ? ` in ${source}` : ''} (${issues.length} problem${issues.length === 1 ? '' : 's'}):`;
    const lines = issues.map((i) => `  ${i.path ? `${i.path}: ` : ''}${i.message}${i.hint ? ` (hint: ${i.hint})` : ''}`);
    return [head, ...lines].join('\n');
}
export function isConfigError(err) {
    return err instanceof ConfigError;
}
/** What redactConfig (and readSecrets: false) put in place of a secret. */
export const REDACTED = '***';
/** `['listeners', 0, 'tls']` → `listeners[0].tls`. */
export function formatConfigPath(path) {
    let out = '';
    for (const seg of path) {
        if (typeof seg === 'number')
            out += `[${seg}]`;
        else
            out += out === '' ? String(seg) : `.${String(seg)}`;
    }
    return out;
}
/** Path with array indexes generalised, to match SECRET_FIELDS: `listeners[].tls.x`. */
function pathPattern(path) {
    return formatConfigPath(path.map((s) => (typeof s === 'number' ? -1 : s))).replace(/\[-1\]/g, '[]');
}
function isRecord(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
}
function setOwn(obj, key, value) {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
function getAt(root, path) {
    let v = root;
    for (const seg of path) {
        if (v === null || typeof v !== 'object')
            return undefined;
        if (!Object.prototype.hasOwnProperty.call(v, seg))
            return undefined;
        v = v[seg];
    }
    return v;
}
// ---------------------------------------------------------------------------
// Levenshtein suggestions
function levenshtein(a, b) {
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
export function closestMatch(word, candidates) {
    let best;
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
function parseYaml(text, source) {
    const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
        const issues = doc.errors.map((e) => {
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
        return doc.toJS({ maxAliasCount: 100 });
    }
    catch (err) {
        const msg = err instanceof Error ? (err.message.split('\n')[0] ?? '') : '';
        throw new ConfigError([{ path: '', message: `YAML error: ${msg}` }], source);
    }
}
// ---------------------------------------------------------------------------
// Stage 2: ${VAR} interpolation
const VAR_REF = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;
const WHOLE_REF = /^\$\{[^}]*\}$/;
function interpolateString(s, path, st) {
    if (!s.includes('$'))
        return s;
    let out = '';
    let i = 0;
    while (i < s.length) {
        if (s.startsWith('$${', i)) {
            out += '${';
            i += 3;
        }
        else if (s.startsWith('${', i)) {
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
            if (value !== undefined && (value !== '' || fallback === undefined))
                out += value;
            else if (fallback !== undefined)
                out += fallback;
            else {
                st.issues.push({
                    path: formatConfigPath(path),
                    message: `environment variable ${name} is not set`,
                    hint: `set ${name}, give a default with \${${name}:-value}, or write $\${ for a literal \${`,
                });
            }
            i = (end < 0 ? s.length : end) + 1;
        }
        else {
            out += s[i];
            i += 1;
        }
    }
    if (WHOLE_REF.test(s))
        st.whole.add(JSON.stringify(path));
    return out;
}
/** A copy of the tree with `${VAR}` expanded in string scalars (never in keys). */
function interpolate(v, path, st) {
    if (typeof v === 'string')
        return interpolateString(v, path, st);
    if (Array.isArray(v))
        return v.map((item, i) => interpolate(item, [...path, i], st));
    if (isRecord(v)) {
        const out = {};
        for (const [k, child] of Object.entries(v))
            setOwn(out, k, interpolate(child, [...path, k], st));
        return out;
    }
    return v;
}
// ---------------------------------------------------------------------------
// Stage 3: relative paths and *File secrets
/** Resolves every relative `*File` path against `baseDir` (in place). */
function resolvePaths(v, baseDir) {
    if (Array.isArray(v))
        for (const item of v)
            resolvePaths(item, baseDir);
    else if (isRecord(v)) {
        for (const [k, child] of Object.entries(v)) {
            if (k.endsWith('File') && typeof child === 'string' && child !== '' && !isAbsolute(child)) {
                setOwn(v, k, resolve(baseDir, child));
            }
            else
                resolvePaths(child, baseDir);
        }
    }
}
function findSecretFiles(v, path, out) {
    if (Array.isArray(v))
        v.forEach((item, i) => findSecretFiles(item, [...path, i], out));
    else if (isRecord(v)) {
        for (const [k, child] of Object.entries(v)) {
            if (k.length > 4 && k.endsWith('File')) {
                const key = k.slice(0, -4);
                if (SECRET_FIELDS.includes(pathPattern([...path, key])))
                    out.push({ obj: v, path, key });
            }
            findSecretFiles(child, [...path, k], out);
        }
    }
}
/**
 * Reads `<key>File` into `<key>` for every secret field. Returns the config
 * paths (JSON) of the secrets that were filled in.
 */
async function loadSecretFiles(root, readSecrets, issues) {
    const refs = [];
    findSecretFiles(root, [], refs);
    const filled = new Set();
    await Promise.all(refs.map(async ({ obj, path, key }) => {
        const fileKey = `${key}File`;
        const file = obj[fileKey];
        const filePath = formatConfigPath([...path, fileKey]);
        if (file === undefined || file === null)
            return;
        if (obj[key] !== undefined && obj[key] !== null) {
            issues.push({
                path: formatConfigPath(path),
                message: `both ${key} and ${fileKey} are given; use exactly one`,
                hint: `prefer ${fileKey} (e.g. a mounted Kubernetes Secret) and remove ${key}`,
            });
            return;
        }
        if (typeof file !== 'string' || file === '')
            return; // the schema reports it
        // On failure the placeholder keeps the schema from also calling the
        // secret missing; the collected issue makes the load fail anyway.
        let value = REDACTED;
        if (readSecrets) {
            try {
                const text = (await readFile(file, 'utf8')).replace(/(?:\r?\n)+$/, '');
                if (text === '')
                    issues.push({ path: filePath, message: `secret file ${file} is empty` });
                else
                    value = text;
            }
            catch (err) {
                const code = err.code ?? 'read error';
                issues.push({
                    path: filePath,
                    message: `cannot read secret file ${file} (${code})`,
                    hint: 'check that the file exists and is readable by the popgate user',
                });
            }
        }
        setOwn(obj, key, value);
        filled.add(JSON.stringify([...path, key]));
    }));
    return filled;
}
// ---------------------------------------------------------------------------
// Stage 4: schema validation and issue translation
const EXPECTED_NAMES = { int: 'integer', object: 'mapping (object)', array: 'list (array)' };
function quoteList(values) {
    return values.map((v) => `'${v}'`).join(', ');
}
function translateIssue(issue, root, filled) {
    const path = issue.path.filter((s) => typeof s === 'string' || typeof s === 'number');
    const at = formatConfigPath(path);
    const input = getAt(root, path);
    const zodDefault = (prefix) => issue.message.startsWith(prefix);
    const customHint = (issue.code === 'custom' ? issue.params?.hint : undefined);
    switch (issue.code) {
        case 'unrecognized_keys': {
            const allowed = allowedKeysAt(path, root);
            // A secret we filled from <key>File is unknown here: blame the key the user wrote.
            const shownKeys = new Set(issue.keys.map((key) => (filled.has(JSON.stringify([...path, key])) ? `${key}File` : key)));
            return [...shownKeys].map((shown) => {
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
            if (!zodDefault('Invalid input'))
                return [{ path: at, message: issue.message }];
            if (input === undefined)
                return [{ path: at, message: `required (expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected})` }];
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
            const disc = issue.discriminator;
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
            if (!zodDefault('Too small') && !zodDefault('Too big'))
                return [{ path: at, message: issue.message }];
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
function coerceInterpolated(issues, root, whole) {
    let changed = false;
    for (const issue of issues) {
        if (issue.code !== 'invalid_type' || !whole.has(JSON.stringify(issue.path)))
            continue;
        const parentPath = issue.path.slice(0, -1);
        const key = issue.path[issue.path.length - 1];
        const parent = getAt(root, parentPath);
        if (key === undefined || parent === null || typeof parent !== 'object')
            continue;
        const value = parent[key];
        if (typeof value !== 'string')
            continue;
        const text = value.trim();
        let next;
        if ((issue.expected === 'number' || issue.expected === 'int') && /^-?\d+(\.\d+)?$/.test(text))
            next = Number(text);
        else if (issue.expected === 'boolean' && (text === 'true' || text === 'false'))
            next = text === 'true';
        if (next === undefined)
            continue;
        parent[key] = next;
        changed = true;
    }
    return changed;
}
// ---------------------------------------------------------------------------
/** Parses, interpolates, resolves and validates configuration text. */
export async function parseConfigText(text, opts) {
    const { baseDir, source } = opts;
    const raw = parseYaml(text, source);
    if (raw === null || raw === undefined) {
        throw new ConfigError([{ path: '', message: 'the configuration is empty', hint: 'see config.example.yaml' }], source);
    }
    const st = { env: opts.env ?? process.env, issues: [], whole: new Set() };
    const tree = interpolate(raw, [], st);
    if (st.issues.length > 0)
        throw new ConfigError(st.issues, source);
    resolvePaths(tree, baseDir);
    const secretIssues = [];
    const filled = await loadSecretFiles(tree, opts.readSecrets ?? true, secretIssues);
    let result = configSchema.safeParse(tree, { reportInput: false });
    for (let round = 0; !result.success && round < 3 && coerceInterpolated(result.error.issues, tree, st.whole); round += 1) {
        result = configSchema.safeParse(tree, { reportInput: false });
    }
    if (result.success && secretIssues.length === 0)
        return result.data;
    const schemaIssues = result.success ? [] : result.error.issues.flatMap((i) => translateIssue(i, tree, filled));
    throw new ConfigError([...secretIssues, ...schemaIssues], source);
}
/** Reads and validates a configuration file. */
export async function loadConfig(file, env = process.env, opts = {}) {
    const path = resolve(file);
    let text;
    try {
        text = await readFile(path, 'utf8');
    }
    catch (err) {
        const code = err.code ?? 'read error';
        throw new ConfigError([{ path: '', message: `cannot read configuration file ${path} (${code})` }], file);
    }
    return parseConfigText(text, { baseDir: dirname(path), env, source: file, ...opts });
}
// ---------------------------------------------------------------------------
function redactAt(v, path) {
    if (Array.isArray(v))
        return v.map((item, i) => redactAt(item, [...path, i]));
    if (isRecord(v)) {
        const out = {};
        for (const [k, child] of Object.entries(v)) {
            const secret = SECRET_FIELDS.includes(pathPattern([...path, k])) && child !== undefined && child !== null;
            setOwn(out, k, secret ? REDACTED : redactAt(child, [...path, k]));
        }
        return out;
    }
    return v;
}
/** A deep copy with every secret (see SECRET_FIELDS) replaced by "***". */
export function redactConfig(cfg) {
    return redactAt(cfg, []);
}
//# sourceMappingURL=load.js.map