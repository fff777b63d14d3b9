/**
 * A PasswordVerifier backed by an htpasswd-compatible user file.
 *
 * Format: one `user:hash` per line; `#` comment lines and blank lines are
 * ignored; anything after a second colon (`user:hash:extra...`) is ignored.
 * The user is everything before the first colon, the hash everything up to
 * the next colon (supported hashes never contain `:`). Hash formats are those
 * of ./password-hash.ts (scrypt PHC strings, bcrypt $2y$/$2a$/$2b$). Lines
 * without a colon, with an empty user or a user with surrounding whitespace,
 * with an unknown/out-of-bounds hash, or repeating an earlier user (the first
 * one wins) are skipped with a warning naming the file and line number,
 * never the hash.
 *
 * User names are matched exactly: case-sensitive, no trimming, no Unicode
 * normalisation. `Alice` and `alice` are different users.
 *
 * The file is re-read when it changes, by stat polling (fs.watchFile), which
 * follows symlinks and therefore notices Kubernetes Secret/ConfigMap updates
 * (an atomic swap of the `..data` symlink), and whenever reload() is called
 * (SIGHUP). A reload replaces the whole user table at once; one that cannot
 * read the file keeps the previous table and logs an error.
 */
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import { GatewayError } from '../errors.js';
import { defaultDummyHash, dummyHashLike, parseHash, verifyParsedHash } from './password-hash.js';
/** Parse user-file text (see the module comment). Pure; never throws. */
export function parseUserFile(text) {
    const users = new Map();
    const problems = [];
    const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
    const lines = body.split('\n');
    for (let i = 0; i < lines.length; i++) {
        const lineNo = i + 1;
        const line = (lines[i] ?? '').replace(/\s+$/, '');
        const content = line.trimStart();
        if (content === '' || content.startsWith('#'))
            continue;
        const colon = line.indexOf(':');
        if (colon < 0) {
            problems.push({ line: lineNo, problem: 'missing-colon' });
            continue;
        }
        const user = line.slice(0, colon);
        if (user === '') {
            problems.push({ line: lineNo, problem: 'empty-user' });
            continue;
        }
        if (user.trim() !== user) {
            problems.push({ line: lineNo, problem: 'user-whitespace' });
            continue;
        }
        const rest = line.slice(colon + 1);
        const next = rest.indexOf(':');
        const hashText = next < 0 ? rest : rest.slice(0, next);
        const parsed = parseHash(hashText);
        if (!parsed) {
            problems.push({ line: lineNo, problem: 'invalid-hash', user });
            continue;
        }
        if (users.has(user)) {
            problems.push({ line: lineNo, problem: 'duplicate-user', user });
            continue;
        }
        users.set(user, parsed);
    }
    return { users, problems };
}
function costKey(h) {
    return h.algorithm === 'scrypt' ? `scrypt:${h.logN}:${h.r}:${h.p}:${h.hash.length}` : `bcrypt:${h.cost}`;
}
/**
 * The dummy hash for unknown users: same algorithm and cost as most of the
 * file's hashes so an unknown user takes as long as a wrong password (the
 * default scrypt parameters when the file has no users).
 */
function pickDummy(users) {
    const counts = new Map();
    let best;
    for (const h of users.values()) {
        const key = costKey(h);
        const entry = counts.get(key) ?? { n: 0, sample: h };
        entry.n++;
        counts.set(key, entry);
        if (!best || entry.n > best.n)
            best = entry;
    }
    return best ? dummyHashLike(best.sample) : defaultDummyHash();
}
async function loadTable(path, logger) {
    const text = await readFile(path, 'utf8');
    const { users, problems } = parseUserFile(text);
    for (const p of problems) {
        logger.warn({ file: path, line: p.line, problem: p.problem, ...(p.user !== undefined ? { user: p.user } : {}) }, 'user file: skipping invalid line');
    }
    if (users.size === 0)
        logger.warn({ file: path }, 'user file contains no valid users');
    return { users, dummy: pickDummy(users) };
}
function errorSummary(err) {
    if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string')
        return err.code;
    return err instanceof Error ? err.message : String(err);
}
/**
 * Load the user file and watch it. Rejects with an Error naming the path if
 * the file cannot be read.
 */
export async function createUserFileVerifier(opts) {
    const verifyHash = opts.verifyHash ?? verifyParsedHash;
    const { path } = opts;
    const logger = opts.logger;
    const interval = opts.pollIntervalMs ?? 1000;
    if (!Number.isFinite(interval) || interval <= 0)
        throw new RangeError('pollIntervalMs must be positive');
    let table;
    try {
        table = await loadTable(path, logger);
    }
    catch (err) {
        throw new Error(`cannot read user file ${path}: ${errorSummary(err)}`, { cause: err });
    }
    logger.info({ file: path, users: table.users.size }, 'user file loaded');
    let closed = false;
    let chain = Promise.resolve();
    const doReload = async () => {
        try {
            const next = await loadTable(path, logger);
            table = next; // atomic swap: verify() sees the old or the new table, never a mix
            logger.info({ file: path, users: next.users.size }, 'user file reloaded');
        }
        catch (err) {
            logger.error({ file: path, err, users: table.users.size }, 'user file reload failed; keeping the previous users');
        }
    };
    // Serialise reloads so an older read can never overwrite a newer one.
    const reload = () => {
        chain = chain.then(doReload);
        return chain;
    };
    const onChange = (curr, prev) => {
        if (closed)
            return;
        logger.debug({ file: path, mtimeMs: curr.mtimeMs, prevMtimeMs: prev.mtimeMs }, 'user file changed');
        void reload();
    };
    const watcher = watchFile(path, { interval, persistent: false }, onChange);
    watcher.unref();
    return {
        name: 'user-file',
        get userCount() {
            return table.users.size;
        },
        reload,
        async verify(request) {
            const current = table;
            const stored = current.users.get(request.username);
            try {
                if (!stored) {
                    await verifyHash(request.password, current.dummy);
                    return { ok: false, reason: 'unknown-user' };
                }
                return (await verifyHash(request.password, stored))
                    ? { ok: true, user: request.username }
                    : { ok: false, reason: 'bad-password' };
            }
            catch (err) {
                throw new GatewayError('VERIFIER_UNAVAILABLE', `user file ${path}: hash computation failed`, { cause: err });
            }
        },
        close() {
            if (closed)
                return;
            closed = true;
            unwatchFile(path, onChange);
        },
    };
}
//# sourceMappingURL=user-file.js.map