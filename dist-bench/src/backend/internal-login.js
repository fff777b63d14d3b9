import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import { GatewayError } from '../errors.js';
export const DEFAULT_MASTER_SEPARATOR = '*';
export const DEFAULT_WATCH_INTERVAL_MS = 1000;
/**
 * Parses `user:backendUser:password` lines. The split is at the first two
 * colons (the password may contain colons); blank lines and `#` comments are
 * skipped. A later duplicate replaces an earlier one and is reported.
 */
export function parseSecrets(text) {
    const entries = new Map();
    const problems = [];
    const lines = text.split('\n');
    lines.forEach((raw, i) => {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        const trimmed = line.trim();
        if (trimmed === '' || trimmed.startsWith('#'))
            return;
        const first = line.indexOf(':');
        const second = first < 0 ? -1 : line.indexOf(':', first + 1);
        if (first < 0 || second < 0) {
            problems.push({ line: i + 1, reason: 'expected user:backendUser:password' });
            return;
        }
        const user = line.slice(0, first).trim();
        const backendUser = line.slice(first + 1, second).trim();
        const password = line.slice(second + 1);
        if (user === '' || backendUser === '' || password === '') {
            problems.push({ line: i + 1, reason: 'empty user, backend user or password' });
            return;
        }
        if (/[\r\n\0]/.test(backendUser) || /[\r\n\0]/.test(password)) {
            problems.push({ line: i + 1, reason: 'control character in backend user or password' });
            return;
        }
        if (entries.has(user))
            problems.push({ line: i + 1, reason: 'duplicate user, this line wins' });
        entries.set(user, { backendUser, password });
    });
    return { entries, problems };
}
/**
 * Builds the resolver that turns a verified client login into backend
 * credentials. For `mapped`, the first read of the secrets file must succeed
 * (else this rejects with an Error naming the path); later changes are picked
 * up by an unref'd fs.watchFile and by `reload()`.
 */
export async function createInternalLoginResolver(cfg, logger) {
    switch (cfg.mode) {
        case 'master':
            return masterResolver(cfg);
        case 'passthrough':
            return passthroughResolver(cfg.method);
        case 'mapped':
            return mappedResolver(cfg, logger);
    }
}
function masterResolver(cfg) {
    const masterUser = cfg.user;
    const masterPassword = cfg.password;
    const separator = cfg.separator ?? DEFAULT_MASTER_SEPARATOR;
    if (masterUser === '' || masterPassword === '')
        throw new Error('internal login: master user and password must be set');
    if (cfg.method === 'user-separator' && separator === '') {
        throw new Error('internal login: master separator must not be empty');
    }
    const method = cfg.method;
    return {
        mode: 'master',
        async resolve(user) {
            if (user === '')
                throw new GatewayError('NO_BACKEND_CREDENTIALS', 'empty user name');
            if (method === 'auth-plain') {
                return { method: 'auth-plain', authzid: user, authcid: masterUser, password: masterPassword };
            }
            // `bob*x` + `*master` would let the backend split at the wrong separator.
            if (user.includes(separator)) {
                throw new GatewayError('NO_BACKEND_CREDENTIALS', `user name contains the master separator '${separator}'`);
            }
            return { method: 'user-pass', user: `${user}${separator}${masterUser}`, password: masterPassword };
        },
        async reload() { },
        close() { },
    };
}
function passthroughResolver(method) {
    return {
        mode: 'passthrough',
        async resolve(user, verifiedPassword) {
            if (verifiedPassword === undefined) {
                throw new GatewayError('NO_BACKEND_CREDENTIALS', 'passthrough login needs the client password, none was given');
            }
            return method === 'auth-plain'
                ? { method: 'auth-plain', authzid: '', authcid: user, password: verifiedPassword }
                : { method: 'user-pass', user, password: verifiedPassword };
        },
        async reload() { },
        close() { },
    };
}
async function mappedResolver(cfg, logger) {
    const file = cfg.secretsFile;
    const method = cfg.method;
    let entries = new Map();
    let generation = 0;
    let closed = false;
    const load = async () => {
        const mine = ++generation;
        let text;
        try {
            text = await readFile(file, 'utf8');
        }
        catch (err) {
            const why = err.code ?? err.message;
            throw new Error(`cannot read backend secrets file ${file}: ${why}`, { cause: err });
        }
        if (mine !== generation)
            return; // a newer read has started; it wins
        const parsed = parseSecrets(text);
        for (const p of parsed.problems)
            logger.warn({ file, line: p.line }, `backend secrets file: ${p.reason}`);
        entries = parsed.entries;
        logger.info({ file, entries: entries.size }, 'backend secrets loaded');
    };
    await load();
    const onChange = (curr, prev) => {
        if (closed || (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino))
            return;
        load().catch((err) => {
            logger.warn({ file, err: err.message }, 'backend secrets reload failed; keeping the previous entries');
        });
    };
    watchFile(file, { persistent: false, interval: cfg.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS }, onChange);
    return {
        mode: 'mapped',
        async resolve(user) {
            const e = entries.get(user);
            if (!e)
                throw new GatewayError('NO_BACKEND_CREDENTIALS', `no entry for the user in ${file}`);
            return method === 'auth-plain'
                ? { method: 'auth-plain', authzid: '', authcid: e.backendUser, password: e.password }
                : { method: 'user-pass', user: e.backendUser, password: e.password };
        },
        reload: load,
        close() {
            if (closed)
                return;
            closed = true;
            unwatchFile(file, onChange);
        },
    };
}
//# sourceMappingURL=internal-login.js.map