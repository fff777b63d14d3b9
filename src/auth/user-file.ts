/**
 * A PasswordVerifier backed by an htpasswd-compatible user file.
 *
 * Format: one `user:hash` per line; `#` comment lines and blank lines are
 * ignored; anything after a second colon (`user:hash:extra...`) is ignored.
 * The user is everything before the first colon, the hash everything up to
 * the next colon (supported hashes never contain `:`). Hash formats are those
 * of ./password-hash.ts (scrypt PHC strings, bcrypt $2y$/$2a$/$2b$, Dovecot's
 * `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`). Lines
 * without a colon, with an empty user or a user with surrounding whitespace,
 * with an unknown/out-of-bounds hash, or repeating an earlier user (the first
 * one wins) are skipped with a warning naming the file and line number,
 * never the hash.
 *
 * Plaintext-equivalent entries (Dovecot's scheme syntax), needed for APOP and
 * CRAM-MD5, which prove knowledge of the secret itself:
 *
 *   alice:{PLAIN}secret          the secret's UTF-8 bytes
 *   bob:{PLAIN.B64}c2VjcmV0      any bytes, standard padded base64
 *
 * (`CLEAR`/`CLEARTEXT` are aliases of `PLAIN`; scheme names are
 * case-insensitive.) The same field rule applies as for hashes: the secret
 * ends at the next colon, so a `{PLAIN}` secret cannot contain `:`, and the
 * trailing whitespace of a line is not part of it; a secret with a colon,
 * trailing whitespace or control characters must be written `{PLAIN.B64}`.
 * An empty secret is an invalid entry. Such entries verify ordinary passwords
 * too (constant-time comparison of UTF-8 bytes) and answer `verifyChallenge`;
 * hashed entries refuse challenges (reason 'disabled'). Anyone who can read
 * the file can log in as these users: keep it to the users who need APOP or
 * CRAM-MD5, and the file readable by popgate only.
 *
 * SCRAM-SHA-256: `scramCredentials` gives what a SCRAM exchange needs. A
 * `{SCRAM-SHA-256}` entry gives its keys as stored (no key derivation at
 * login); a plaintext-equivalent entry gives keys derived from its secret
 * (PBKDF2 once per user and table, remembered until the next reload) under
 * a salt fixed by the user name; an unknown user and a scrypt or bcrypt entry
 * (which cannot serve SCRAM) get dummy keys, `found: false`, so the
 * exchange fails at the proof like a wrong password. The dummies' salts
 * depend only on the name and a key hashed from the file's content: the
 * same in every worker and after a restart, so the salt a client is sent
 * does not tell a real user from an unknown one (only a reload that changes
 * the file changes them). They use the iteration count most SCRAM entries
 * have (4096 when there are none), and so do the keys of plaintext entries.
 *
 * User names are matched exactly: case-sensitive, no trimming, no Unicode
 * normalisation. `Alice` and `alice` are different users.
 *
 * Timing: every answer costs the same work whatever the user, so it does not
 * tell which users exist. A password check for an unknown user, and for a
 * plaintext-equivalent entry (before its comparison), runs against a dummy
 * like most of the file's entries (the same hash cost, or a plain compare
 * when most entries are plain). A challenge check computes one digest for an
 * unknown user, a hashed entry and a plaintext-equivalent one alike.
 *
 * The file is re-read when it changes, by stat polling (subscribeToFile:
 * one fs.watchFile per path), which follows symlinks and therefore notices
 * Kubernetes Secret/ConfigMap updates (an atomic swap of the `..data`
 * symlink), and whenever reload() is called
 * (SIGHUP). A reload replaces the whole user table at once and names the
 * users it added, removed or changed to onUsersChanged listeners (the
 * credentials cache); one that cannot read the file keeps the previous
 * table and logs an error.
 */
import { readFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import { subscribeToFile } from '../config/file-watch.js';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { ChallengeRequest, PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';
import { checkChallenge } from './challenge.js';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_SALT_BYTES,
  deriveScramCredentials,
  scramDummyCredentials,
  type ScramCredentials,
  type ScramLookup,
} from './scram.js';
import {
  defaultDummyHash,
  dummyHashLike,
  parseStoredSecret,
  verifyParsedHash,
  verifyPlainSecret,
  type ParsedHash,
  type PlainSecret,
  type StoredSecret,
} from './password-hash.js';

export interface UserFileVerifierOptions {
  readonly path: string;
  readonly logger: Logger;
  /** Stat polling interval for change detection; default 1000 ms. */
  readonly pollIntervalMs?: number;
  /** The hash check; injectable so tests can see which hash an unknown user is checked against. */
  readonly verifyHash?: (password: string, hash: ParsedHash) => Promise<boolean>;
}

export interface UserFileVerifier extends PasswordVerifier {
  /**
   * Re-read the file now (e.g. on SIGHUP). Never rejects: a failure keeps
   * the previous users and is logged.
   */
  reload(): Promise<void>;
  /** Number of users currently loaded. */
  get userCount(): number;
  /**
   * Whether some loaded entry is plaintext-equivalent, i.e. `verifyChallenge`
   * can succeed for someone: offer APOP / CRAM-MD5 only then. It follows
   * reloads, so read it per connection.
   */
  get canVerifyChallenges(): boolean;
  verifyChallenge(request: ChallengeRequest): Promise<VerifyOutcome>;
  /**
   * Whether some loaded entry can serve SCRAM-SHA-256 (a `{SCRAM-SHA-256}`
   * or a plaintext-equivalent entry): offer the SCRAM mechanisms only then.
   * It follows reloads, so read it per connection.
   */
  get canServeScram(): boolean;
  /**
   * The SCRAM-SHA-256 credentials for `username` (the name startScram
   * returned). `found: false` comes with dummy credentials: for an unknown
   * user (reason 'unknown-user') and for a scrypt or bcrypt entry, which
   * cannot serve SCRAM (reason 'disabled'); run the exchange with them all
   * the same and fail it as a wrong password. Rejects with
   * GatewayError('VERIFIER_UNAVAILABLE') only when deriving the keys of a
   * plaintext-equivalent entry fails.
   */
  scramCredentials(username: string): Promise<ScramLookup>;
  /**
   * Calls `listener` after each reload that added, removed or changed some
   * users, with their names (a credentials cache drops their entries).
   * Returns the unsubscribe function.
   */
  onUsersChanged(listener: (users: ReadonlySet<string>) => void): () => void;
}

export type UserFileProblem = 'missing-colon' | 'empty-user' | 'user-whitespace' | 'invalid-hash' | 'duplicate-user';

export interface UserFileLineProblem {
  /** 1-based line number. */
  readonly line: number;
  readonly problem: UserFileProblem;
  /** The user name, when the line had a usable one. */
  readonly user?: string;
}

export interface ParsedUserFile {
  /** Hashes and plaintext-equivalent secrets (`algorithm: 'plain'`). */
  readonly users: ReadonlyMap<string, StoredSecret>;
  readonly problems: readonly UserFileLineProblem[];
}

/** Parse user-file text (see the module comment). Pure; never throws. */
export function parseUserFile(text: string): ParsedUserFile {
  const users = new Map<string, StoredSecret>();
  const problems: UserFileLineProblem[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const lines = body.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] ?? '').replace(/\s+$/, '');
    const content = line.trimStart();
    if (content === '' || content.startsWith('#')) continue;
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
    const parsed = parseStoredSecret(hashText);
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

function costKey(h: StoredSecret): string {
  switch (h.algorithm) {
    case 'plain':
      return 'plain';
    case 'scrypt':
      return `scrypt:${h.logN}:${h.r}:${h.p}:${h.hash.length}`;
    case 'bcrypt':
      return `bcrypt:${h.cost}`;
    case 'scram-sha-256':
      return `scram:${h.iterations}`;
  }
}

/** A secret no one knows (fresh random bytes), for work that must not match. */
function dummyPlainSecret(): PlainSecret {
  return { algorithm: 'plain', secret: randomBytes(32) };
}

/**
 * The dummy for unknown users: same algorithm and cost as most of the file's
 * entries so an unknown user takes as long as a wrong password (the default
 * scrypt parameters when the file has no users; a random plain secret when
 * plaintext-equivalent entries are the majority).
 */
function pickDummy(users: ReadonlyMap<string, StoredSecret>): StoredSecret {
  const counts = new Map<string, { n: number; sample: StoredSecret }>();
  let best: { n: number; sample: StoredSecret } | undefined;
  for (const h of users.values()) {
    const key = costKey(h);
    const entry = counts.get(key) ?? { n: 0, sample: h };
    entry.n++;
    counts.set(key, entry);
    if (!best || entry.n > best.n) best = entry;
  }
  if (!best) return defaultDummyHash();
  return best.sample.algorithm === 'plain' ? dummyPlainSecret() : dummyHashLike(best.sample);
}

/** Whether two stored secrets are the same entry (same algorithm, parameters and bytes). */
function sameSecret(a: StoredSecret, b: StoredSecret): boolean {
  switch (a.algorithm) {
    case 'plain':
      return b.algorithm === 'plain' && a.secret.equals(b.secret);
    case 'bcrypt':
      return b.algorithm === 'bcrypt' && a.encoded === b.encoded;
    case 'scrypt':
      return b.algorithm === 'scrypt' && a.logN === b.logN && a.r === b.r && a.p === b.p && a.salt.equals(b.salt) && a.hash.equals(b.hash);
    case 'scram-sha-256':
      return (
        b.algorithm === 'scram-sha-256' &&
        a.iterations === b.iterations &&
        a.salt.equals(b.salt) &&
        a.storedKey.equals(b.storedKey) &&
        a.serverKey.equals(b.serverKey)
      );
  }
}

/** Users added, removed or given another secret between two tables. */
function changedUsers(before: ReadonlyMap<string, StoredSecret>, after: ReadonlyMap<string, StoredSecret>): Set<string> {
  const changed = new Set<string>();
  for (const [user, secret] of before) {
    const now = after.get(user);
    if (!now || !sameSecret(secret, now)) changed.add(user);
  }
  for (const user of after.keys()) if (!before.has(user)) changed.add(user);
  return changed;
}

interface UserTable {
  readonly users: ReadonlyMap<string, StoredSecret>;
  /** What a password check for an unknown user runs against. */
  readonly dummy: StoredSecret;
  /** What a challenge check runs against when there is no plaintext-equivalent secret. */
  readonly challengeDummy: Buffer;
  /** Number of plaintext-equivalent entries. */
  readonly plainCount: number;
  /** Number of `{SCRAM-SHA-256}` entries. */
  readonly scramCount: number;
  /** Keys the SCRAM dummies and the salts of plaintext entries: a hash of the file's content. */
  readonly scramKey: Buffer;
  /** The iteration count most SCRAM entries have: for dummies and plaintext entries. */
  readonly scramIterations: number;
  /** SCRAM keys derived from plaintext-equivalent entries, per user, for this table's life. */
  readonly scramFromPlain: Map<string, Promise<ScramCredentials>>;
}

/** The most common SCRAM iteration count of the file (the default when it has no SCRAM entry). */
function commonIterations(users: ReadonlyMap<string, StoredSecret>): number {
  const counts = new Map<number, number>();
  let best = SCRAM_DEFAULT_ITERATIONS;
  let bestCount = 0;
  for (const h of users.values()) {
    if (h.algorithm !== 'scram-sha-256') continue;
    const n = (counts.get(h.iterations) ?? 0) + 1;
    counts.set(h.iterations, n);
    if (n > bestCount) {
      best = h.iterations;
      bestCount = n;
    }
  }
  return best;
}

async function loadTable(path: string, logger: Logger): Promise<UserTable> {
  const text = await readFile(path, 'utf8');
  const { users, problems } = parseUserFile(text);
  for (const p of problems) {
    logger.warn(
      { file: path, line: p.line, problem: p.problem, ...(p.user !== undefined ? { user: p.user } : {}) },
      'user file: skipping invalid line',
    );
  }
  if (users.size === 0) logger.warn({ file: path }, 'user file contains no valid users');
  let plainCount = 0;
  let scramCount = 0;
  for (const h of users.values()) {
    if (h.algorithm === 'plain') plainCount++;
    else if (h.algorithm === 'scram-sha-256') scramCount++;
  }
  return {
    users,
    dummy: pickDummy(users),
    challengeDummy: randomBytes(32),
    plainCount,
    scramCount,
    scramKey: createHash('sha256').update('popgate user-file scram key\0').update(text).digest(),
    scramIterations: commonIterations(users),
    scramFromPlain: new Map(),
  };
}

function errorSummary(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Load the user file and watch it. Rejects with an Error naming the path if
 * the file cannot be read.
 */
export async function createUserFileVerifier(opts: UserFileVerifierOptions): Promise<UserFileVerifier> {
  const verifyHash = opts.verifyHash ?? verifyParsedHash;
  const { path } = opts;
  const logger = opts.logger;
  const interval = opts.pollIntervalMs ?? 1000;
  if (!Number.isFinite(interval) || interval <= 0) throw new RangeError('pollIntervalMs must be positive');

  let table: UserTable;
  try {
    table = await loadTable(path, logger);
  } catch (err) {
    throw new Error(`cannot read user file ${path}: ${errorSummary(err)}`, { cause: err });
  }
  logger.info({ file: path, users: table.users.size, plaintextEquivalent: table.plainCount }, 'user file loaded');

  let closed = false;
  let chain: Promise<void> = Promise.resolve();
  const changeListeners = new Set<(users: ReadonlySet<string>) => void>();

  const doReload = async (): Promise<void> => {
    let changed: Set<string>;
    try {
      const next = await loadTable(path, logger);
      changed = changedUsers(table.users, next.users);
      table = next; // atomic swap: verify() sees the old or the new table, never a mix
      logger.info({ file: path, users: next.users.size, plaintextEquivalent: next.plainCount }, 'user file reloaded');
    } catch (err) {
      logger.error(
        { file: path, err, users: table.users.size },
        'user file reload failed; keeping the previous users',
      );
      return;
    }
    // Synchronously after the swap: no verify can start between the new table and the listeners.
    if (changed.size > 0) for (const listener of changeListeners) listener(changed);
  };

  // Serialise reloads so an older read can never overwrite a newer one.
  const reload = (): Promise<void> => {
    chain = chain.then(doReload);
    return chain;
  };

  const onChange = (curr: Stats, prev: Stats): void => {
    if (closed) return;
    logger.debug({ file: path, mtimeMs: curr.mtimeMs, prevMtimeMs: prev.mtimeMs }, 'user file changed');
    void reload();
  };
  const unwatch = subscribeToFile(path, onChange, interval);

  return {
    name: 'user-file',
    get userCount(): number {
      return table.users.size;
    },
    get canVerifyChallenges(): boolean {
      return table.plainCount > 0;
    },
    get canServeScram(): boolean {
      return table.plainCount + table.scramCount > 0;
    },
    async scramCredentials(username: string): Promise<ScramLookup> {
      const current = table;
      const stored = current.users.get(username);
      if (stored?.algorithm === 'scram-sha-256') {
        const { iterations, salt, storedKey, serverKey } = stored;
        return { found: true, credentials: { iterations, salt, storedKey, serverKey } };
      }
      if (stored?.algorithm === 'plain') {
        let pending = current.scramFromPlain.get(username);
        if (pending === undefined) {
          const salt = createHmac('sha256', current.scramKey).update(`plain-entry salt\0${username}`).digest().subarray(0, SCRAM_SALT_BYTES);
          pending = deriveScramCredentials(stored.secret, salt, current.scramIterations);
          current.scramFromPlain.set(username, pending);
        }
        try {
          return { found: true, credentials: await pending };
        } catch (err) {
          current.scramFromPlain.delete(username);
          throw new GatewayError('VERIFIER_UNAVAILABLE', `user file ${path}: SCRAM key derivation failed`, { cause: err });
        }
      }
      const credentials = scramDummyCredentials(username, current.scramKey, current.scramIterations);
      if (stored) logger.debug({ file: path, user: username }, 'SCRAM login refused: the entry is not SCRAM-SHA-256 or plaintext-equivalent');
      return { found: false, reason: stored ? 'disabled' : 'unknown-user', credentials };
    },
    reload,
    onUsersChanged(listener) {
      changeListeners.add(listener);
      return () => changeListeners.delete(listener);
    },
    async verify(request: PasswordRequest): Promise<VerifyOutcome> {
      const current = table;
      const stored = current.users.get(request.username);
      const check = (secret: StoredSecret): Promise<boolean> | boolean =>
        secret.algorithm === 'plain' ? verifyPlainSecret(request.password, secret) : verifyHash(request.password, secret);
      try {
        if (!stored) {
          await check(current.dummy);
          return { ok: false, reason: 'unknown-user' };
        }
        // A plain comparison is instant: do the unknown-user work first so
        // timing does not single out plaintext-equivalent entries.
        if (stored.algorithm === 'plain') await check(current.dummy);
        return (await check(stored)) ? { ok: true, user: request.username } : { ok: false, reason: 'bad-password' };
      } catch (err) {
        throw new GatewayError('VERIFIER_UNAVAILABLE', `user file ${path}: hash computation failed`, { cause: err });
      }
    },
    async verifyChallenge(request: ChallengeRequest): Promise<VerifyOutcome> {
      const current = table;
      const stored = current.users.get(request.username);
      try {
        if (stored?.algorithm === 'plain') {
          return checkChallenge(request, stored.secret) ? { ok: true, user: request.username } : { ok: false, reason: 'bad-password' };
        }
        // The same digest work as a real check, for unknown users and hashed entries alike.
        checkChallenge(request, current.challengeDummy);
        if (!stored) return { ok: false, reason: 'unknown-user' };
        logger.debug(
          { file: path, user: request.username, mechanism: request.mechanism },
          'challenge login refused: user has no plaintext-equivalent secret',
        );
        return { ok: false, reason: 'disabled' };
      } catch (err) {
        throw new GatewayError('VERIFIER_UNAVAILABLE', `user file ${path}: digest computation failed`, { cause: err });
      }
    },
    close(): void {
      if (closed) return;
      closed = true;
      unwatch();
      changeListeners.clear();
    },
  };
}
