import { readFile } from 'node:fs/promises';
import { subscribeToFile } from '../config/file-watch.js';
import { GatewayError } from '../errors.js';
import type { InternalLoginResolver } from './types.js';

/** How popgate logs in to the backend; a discriminated union on `mode`. */
export type InternalLoginConfig =
  /**
   * One master account for every user (Dovecot master user). `auth-plain`:
   * authzid = the client's user, authcid = master user; `user-separator`:
   * `USER <user><separator><master user>` + `PASS <master password>`.
   */
  | {
      readonly mode: 'master';
      readonly method: 'auth-plain' | 'user-separator';
      readonly user: string;
      readonly password: string;
      /** Dovecot `auth_master_user_separator`; default `*`. */
      readonly separator?: string;
    }
  /** Per-user backend accounts from a file of `user:backendUser:password` lines. */
  | {
      readonly mode: 'mapped';
      readonly method: 'user-pass' | 'auth-plain';
      readonly secretsFile: string;
      /** Stat polling interval (subscribeToFile); default 1000 ms. */
      readonly watchIntervalMs?: number;
    }
  /** The client's own user and verified password are replayed to the backend. */
  | { readonly mode: 'passthrough'; readonly method: 'user-pass' | 'auth-plain' };

/** The part of a pino logger the resolver uses. */
export interface ResolverLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A resolver whose secrets can be re-read on demand (SIGHUP); a no-op for master/passthrough. */
export interface ReloadableLoginResolver extends InternalLoginResolver {
  /** Re-reads the secrets file; on failure keeps the previous entries and rejects. */
  reload(): Promise<void>;
}

export const DEFAULT_MASTER_SEPARATOR = '*';
export const DEFAULT_WATCH_INTERVAL_MS = 1000;

interface MappedEntry {
  readonly backendUser: string;
  readonly password: string;
}

export interface ParsedSecrets {
  readonly entries: Map<string, MappedEntry>;
  /** 1-based numbers of lines that were skipped, with why (never the line's text). */
  readonly problems: readonly { readonly line: number; readonly reason: string }[];
}

/**
 * Parses `user:backendUser:password` lines. The split is at the first two
 * colons (the password may contain colons); blank lines and `#` comments are
 * skipped. A later duplicate replaces an earlier one and is reported.
 */
export function parseSecrets(text: string): ParsedSecrets {
  const entries = new Map<string, MappedEntry>();
  const problems: { line: number; reason: string }[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
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
    if (entries.has(user)) problems.push({ line: i + 1, reason: 'duplicate user, this line wins' });
    entries.set(user, { backendUser, password });
  });
  return { entries, problems };
}

/**
 * Builds the resolver that turns a verified client login into backend
 * credentials. For `mapped`, the first read of the secrets file must succeed
 * (else this rejects with an Error naming the path); later changes are picked
 * up by an unref'd stat poller (subscribeToFile) and by `reload()`.
 */
export async function createInternalLoginResolver(
  cfg: InternalLoginConfig,
  logger: ResolverLogger,
): Promise<ReloadableLoginResolver> {
  switch (cfg.mode) {
    case 'master':
      return masterResolver(cfg);
    case 'passthrough':
      return passthroughResolver(cfg.method);
    case 'mapped':
      return mappedResolver(cfg, logger);
  }
}

function masterResolver(cfg: Extract<InternalLoginConfig, { mode: 'master' }>): ReloadableLoginResolver {
  const masterUser = cfg.user;
  const masterPassword = cfg.password;
  const separator = cfg.separator ?? DEFAULT_MASTER_SEPARATOR;
  if (masterUser === '' || masterPassword === '') throw new Error('internal login: master user and password must be set');
  if (cfg.method === 'user-separator' && separator === '') {
    throw new Error('internal login: master separator must not be empty');
  }
  const method = cfg.method;
  return {
    mode: 'master',
    async resolve(user) {
      if (user === '') throw new GatewayError('NO_BACKEND_CREDENTIALS', 'empty user name');
      if (method === 'auth-plain') {
        return { method: 'auth-plain', authzid: user, authcid: masterUser, password: masterPassword };
      }
      // `bob*x` + `*master` would let the backend split at the wrong separator.
      if (user.includes(separator)) {
        throw new GatewayError('NO_BACKEND_CREDENTIALS', `user name contains the master separator '${separator}'`);
      }
      return { method: 'user-pass', user: `${user}${separator}${masterUser}`, password: masterPassword };
    },
    async reload() {},
    close() {},
  };
}

function passthroughResolver(method: 'user-pass' | 'auth-plain'): ReloadableLoginResolver {
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
    async reload() {},
    close() {},
  };
}

async function mappedResolver(
  cfg: Extract<InternalLoginConfig, { mode: 'mapped' }>,
  logger: ResolverLogger,
): Promise<ReloadableLoginResolver> {
  const file = cfg.secretsFile;
  const method = cfg.method;
  let entries = new Map<string, MappedEntry>();
  let generation = 0;
  let closed = false;

  const load = async (): Promise<void> => {
    const mine = ++generation;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new Error(`cannot read backend secrets file ${file}: ${why}`, { cause: err });
    }
    if (mine !== generation) return; // a newer read has started; it wins
    const parsed = parseSecrets(text);
    for (const p of parsed.problems) logger.warn({ file, line: p.line }, `backend secrets file: ${p.reason}`);
    entries = parsed.entries;
    logger.info({ file, entries: entries.size }, 'backend secrets loaded');
  };

  await load();

  const onChange = (): void => {
    if (closed) return;
    load().catch((err: unknown) => {
      logger.warn({ file, err: (err as Error).message }, 'backend secrets reload failed; keeping the previous entries');
    });
  };
  const unwatch = subscribeToFile(file, onChange, cfg.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS);

  return {
    mode: 'mapped',
    async resolve(user) {
      const e = entries.get(user);
      if (!e) throw new GatewayError('NO_BACKEND_CREDENTIALS', `no entry for the user in ${file}`);
      return method === 'auth-plain'
        ? { method: 'auth-plain', authzid: '', authcid: e.backendUser, password: e.password }
        : { method: 'user-pass', user: e.backendUser, password: e.password };
    },
    reload: load,
    close() {
      if (closed) return;
      closed = true;
      unwatch();
    },
  };
}
