/**
 * Password hashing and verification for user files.
 *
 * Supported stored formats:
 *
 * - scrypt, PHC-style: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` where salt and
 *   hash are standard base64 without padding (passlib's "adapted" base64,
 *   which writes `.` for `+`, is accepted too). N = 2^ln. Computed with
 *   node:crypto `scrypt`, which runs on the libuv thread pool (off the event
 *   loop; concurrency is bounded by UV_THREADPOOL_SIZE, shared with fs).
 * - bcrypt, `$2y$` / `$2a$` / `$2b$` (htpasswd -B, Apache, Dovecot BLF-CRYPT),
 *   via bcryptjs. bcryptjs is pure JavaScript: its async compare runs on the
 *   main thread in slices and yields between them.
 * - SCRAM-SHA-256 keys in Dovecot's format (`doveadm pw -s SCRAM-SHA-256`):
 *   `{SCRAM-SHA-256}<iterations>,<salt>,<StoredKey>,<ServerKey>`, each part
 *   standard padded base64 (RFC 5802 section 3, RFC 7677). One entry serves
 *   AUTH SCRAM-SHA-256(-PLUS) (./scram.ts, without any key derivation at
 *   login) and the password logins: a password is checked by deriving
 *   SaltedPassword with PBKDF2-HMAC-SHA-256 (node:crypto `pbkdf2`, on the
 *   thread pool) and comparing StoredKey in constant time.
 *
 * scrypt and bcrypt hash a password as its UTF-8 bytes, without Unicode
 * normalisation. SCRAM entries are written from the SASLprep'd password (RFC
 * 5802 Normalize; the raw UTF-8 bytes when SASLprep refuses it, see
 * scramPasswordBytes), as SCRAM clients prepare it. Dovecot writes the raw
 * bytes instead; the two agree on every password SASLprep leaves alone
 * (printable ASCII among them), and a password check tries the raw bytes
 * too when SASLprep changed them, so Dovecot's entries keep working for
 * USER/PASS and PLAIN whatever the password.
 *
 * User files may also hold plaintext-equivalent secrets (see
 * parseStoredSecret): not hashes, but what APOP and CRAM-MD5 need, since
 * both prove knowledge of the secret itself. parseHash never accepts them.
 *
 * bcrypt only looks at the first 72 bytes of the UTF-8 password: longer
 * passwords that share those 72 bytes are equivalent under bcrypt (a limit of
 * the algorithm, for hashes made here or by htpasswd alike). scrypt has no
 * such limit, one more reason it is the default.
 *
 * Parameters outside sane bounds are refused without computing anything, so
 * a bad or hostile user file cannot make each login burn minutes of CPU or
 * gigabytes of memory: scrypt ln 10..20, r 1..32, p 1..16 and at most 1 GiB
 * of memory (128 * N * r); bcrypt cost 4..17 (the range htpasswd accepts);
 * SCRAM iterations 4096 (Dovecot's floor and RFC 7677's minimum) to
 * 10,000,000, a salt of 8..64 bytes.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import bcrypt from 'bcryptjs';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_KEY_BYTES,
  SCRAM_SALT_BYTES,
  decodeBase64Canonical,
  pbkdf2Sha256,
  scramKeys,
  scramPasswordBytes,
  type ScramCredentials,
} from './scram.js';

export const SCRYPT_DEFAULT_LOG_N = 15;
export const SCRYPT_DEFAULT_R = 8;
export const SCRYPT_DEFAULT_P = 1;
export const SCRYPT_SALT_BYTES = 16;
export const SCRYPT_KEY_BYTES = 32;
export const BCRYPT_DEFAULT_COST = 10;
export { SCRAM_DEFAULT_ITERATIONS };

/** Inclusive bounds a stored hash's parameters must lie in to be used. */
export const HASH_BOUNDS = {
  scryptLogN: { min: 10, max: 20 },
  scryptR: { min: 1, max: 32 },
  scryptP: { min: 1, max: 16 },
  /** 128 * N * r, the memory one scrypt computation needs. */
  scryptMaxMemoryBytes: 1024 * 1024 * 1024,
  scryptSaltBytes: { min: 8, max: 64 },
  scryptKeyBytes: { min: 16, max: 64 },
  bcryptCost: { min: 4, max: 17 },
  scramIterations: { min: 4096, max: 10_000_000 },
  scramSaltBytes: { min: 8, max: 64 },
} as const;

/** bcrypt ignores password bytes past this many. */
export const BCRYPT_MAX_PASSWORD_BYTES = 72;

export type HashAlgorithm = 'scrypt' | 'bcrypt' | 'scram-sha-256';

export interface ScryptHash {
  readonly algorithm: 'scrypt';
  readonly logN: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

export interface BcryptHash {
  readonly algorithm: 'bcrypt';
  /** The prefix letter as stored; all three verify identically. */
  readonly variant: '2a' | '2b' | '2y';
  readonly cost: number;
  /** The full 60-character modular-crypt string. */
  readonly encoded: string;
}

/** `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`: what a SCRAM exchange needs, and enough to check a password. */
export interface ScramHash extends ScramCredentials {
  readonly algorithm: 'scram-sha-256';
}

/** A stored password hash that parsed and lies within HASH_BOUNDS. */
export type ParsedHash = ScryptHash | BcryptHash | ScramHash;

export interface HashPasswordOptions {
  /** Default 'scrypt'. */
  readonly algorithm?: HashAlgorithm;
  /** log2(N) for scrypt, default 15; must lie within HASH_BOUNDS.scryptLogN. */
  readonly scryptLogN?: number;
  /** bcrypt cost, default 10; must lie within HASH_BOUNDS.bcryptCost. */
  readonly bcryptCost?: number;
  /** SCRAM-SHA-256 iteration count, default 4096 (as Dovecot); must lie within HASH_BOUNDS.scramIterations. */
  readonly scramIterations?: number;
}

function inRange(value: number, range: { readonly min: number; readonly max: number }): boolean {
  return Number.isSafeInteger(value) && value >= range.min && value <= range.max;
}

function scryptMemory(logN: number, r: number): number {
  return 128 * 2 ** logN * r;
}

function scryptParamsOk(logN: number, r: number, p: number): boolean {
  return (
    inRange(logN, HASH_BOUNDS.scryptLogN) &&
    inRange(r, HASH_BOUNDS.scryptR) &&
    inRange(p, HASH_BOUNDS.scryptP) &&
    scryptMemory(logN, r) <= HASH_BOUNDS.scryptMaxMemoryBytes
  );
}

function b64encode(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '');
}

const B64_CHARS = /^[A-Za-z0-9+/.]+$/;

/** Strict unpadded base64 decode: rejects stray characters and non-canonical text. */
function b64decode(text: string): Buffer | undefined {
  if (!B64_CHARS.test(text) || text.length % 4 === 1) return undefined;
  const normalised = text.replace(/\./g, '+');
  const buf = Buffer.from(normalised, 'base64');
  return b64encode(buf) === normalised ? buf : undefined;
}

function scryptAsync(password: Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, opts, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

function deriveScrypt(password: string, logN: number, r: number, p: number, salt: Buffer, keylen: number): Promise<Buffer> {
  const N = 2 ** logN;
  return scryptAsync(Buffer.from(password, 'utf8'), salt, keylen, { N, r, p, maxmem: 128 * N * r * 2 });
}

function encodeScrypt(logN: number, r: number, p: number, salt: Buffer, hash: Buffer): string {
  return `$scrypt$ln=${logN},r=${r},p=${p}$${b64encode(salt)}$${b64encode(hash)}`;
}

function encodeScram(h: ScramCredentials): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  return `{SCRAM-SHA-256}${h.iterations},${b64(h.salt)},${b64(h.storedKey)},${b64(h.serverKey)}`;
}

/**
 * Hash a password for storage in a user file. scrypt (default) yields
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`; bcrypt yields a `$2y$` hash as
 * htpasswd -B writes it (see the 72-byte note above); scram-sha-256 yields
 * `{SCRAM-SHA-256}4096,<salt>,<StoredKey>,<ServerKey>` as Dovecot writes it
 * (16-byte salt; the password SASLprep'd). Throws RangeError for parameters
 * outside HASH_BOUNDS.
 */
export async function hashPassword(password: string, opts: HashPasswordOptions = {}): Promise<string> {
  const algorithm = opts.algorithm ?? 'scrypt';
  if (algorithm === 'scram-sha-256') {
    const iterations = opts.scramIterations ?? SCRAM_DEFAULT_ITERATIONS;
    if (!inRange(iterations, HASH_BOUNDS.scramIterations)) {
      throw new RangeError(
        `SCRAM iterations must be an integer in ${HASH_BOUNDS.scramIterations.min}..${HASH_BOUNDS.scramIterations.max}`,
      );
    }
    const salt = randomBytes(SCRAM_SALT_BYTES);
    const salted = await pbkdf2Sha256(scramPasswordBytes(password), salt, iterations);
    return encodeScram({ iterations, salt, ...scramKeys(salted) });
  }
  if (algorithm === 'bcrypt') {
    const cost = opts.bcryptCost ?? BCRYPT_DEFAULT_COST;
    if (!inRange(cost, HASH_BOUNDS.bcryptCost)) {
      throw new RangeError(
        `bcrypt cost must be an integer in ${HASH_BOUNDS.bcryptCost.min}..${HASH_BOUNDS.bcryptCost.max}`,
      );
    }
    const hashed = await bcrypt.hash(password, cost);
    // bcryptjs writes $2b$; $2y$ is the same algorithm and what htpasswd,
    // Apache and Dovecot files carry, and every bcrypt reader accepts it.
    return `$2y$${hashed.slice(4)}`;
  }
  if (algorithm !== 'scrypt') throw new RangeError('unknown hash algorithm');
  const logN = opts.scryptLogN ?? SCRYPT_DEFAULT_LOG_N;
  if (!scryptParamsOk(logN, SCRYPT_DEFAULT_R, SCRYPT_DEFAULT_P)) {
    throw new RangeError(
      `scrypt log2(N) must be an integer in ${HASH_BOUNDS.scryptLogN.min}..${HASH_BOUNDS.scryptLogN.max}`,
    );
  }
  const salt = randomBytes(SCRYPT_SALT_BYTES);
  const key = await deriveScrypt(password, logN, SCRYPT_DEFAULT_R, SCRYPT_DEFAULT_P, salt, SCRYPT_KEY_BYTES);
  return encodeScrypt(logN, SCRYPT_DEFAULT_R, SCRYPT_DEFAULT_P, salt, key);
}

const SCRYPT_PARAM = /^(ln|r|p)=(0|[1-9][0-9]{0,5})$/;
const BCRYPT_RE = /^\$(2[aby])\$([0-9]{2})\$[./A-Za-z0-9]{53}$/;

function parseScrypt(encoded: string): ScryptHash | undefined {
  const parts = encoded.split('$');
  if (parts.length !== 5) return undefined;
  const [, , paramText, saltText, hashText] = parts;
  if (paramText === undefined || saltText === undefined || hashText === undefined) return undefined;
  const params = new Map<string, number>();
  for (const item of paramText.split(',')) {
    const m = SCRYPT_PARAM.exec(item);
    if (!m || m[1] === undefined || m[2] === undefined || params.has(m[1])) return undefined;
    params.set(m[1], Number(m[2]));
  }
  const logN = params.get('ln');
  const r = params.get('r');
  const p = params.get('p');
  if (logN === undefined || r === undefined || p === undefined || params.size !== 3) return undefined;
  if (!scryptParamsOk(logN, r, p)) return undefined;
  const salt = b64decode(saltText);
  const hash = b64decode(hashText);
  if (!salt || !hash) return undefined;
  if (!inRange(salt.length, HASH_BOUNDS.scryptSaltBytes) || !inRange(hash.length, HASH_BOUNDS.scryptKeyBytes)) {
    return undefined;
  }
  return { algorithm: 'scrypt', logN, r, p, salt, hash };
}

function parseBcrypt(encoded: string): BcryptHash | undefined {
  const m = BCRYPT_RE.exec(encoded);
  if (!m || m[1] === undefined || m[2] === undefined) return undefined;
  const cost = Number(m[2]);
  if (!inRange(cost, HASH_BOUNDS.bcryptCost)) return undefined;
  return { algorithm: 'bcrypt', variant: m[1] as BcryptHash['variant'], cost, encoded };
}

const SCRAM_PREFIX = '{SCRAM-SHA-256}';
const SCRAM_ITERATIONS = /^[1-9][0-9]{0,9}$/;

/** `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey` (scheme name in any case, as Dovecot). */
function parseScram(encoded: string): ScramHash | undefined {
  if (encoded.slice(0, SCRAM_PREFIX.length).toUpperCase() !== SCRAM_PREFIX) return undefined;
  const fields = encoded.slice(SCRAM_PREFIX.length).split(',');
  if (fields.length !== 4) return undefined;
  const [iterText, saltText, storedText, serverText] = fields as [string, string, string, string];
  if (!SCRAM_ITERATIONS.test(iterText)) return undefined;
  const iterations = Number(iterText);
  if (!inRange(iterations, HASH_BOUNDS.scramIterations)) return undefined;
  const salt = decodeBase64Canonical(saltText);
  const storedKey = decodeBase64Canonical(storedText);
  const serverKey = decodeBase64Canonical(serverText);
  if (!salt || !storedKey || !serverKey || !inRange(salt.length, HASH_BOUNDS.scramSaltBytes)) return undefined;
  if (storedKey.length !== SCRAM_KEY_BYTES || serverKey.length !== SCRAM_KEY_BYTES) return undefined;
  return { algorithm: 'scram-sha-256', iterations, salt, storedKey, serverKey };
}

/**
 * Parse a stored hash. Returns undefined for anything unrecognised,
 * malformed or outside HASH_BOUNDS: such a hash can never verify.
 */
export function parseHash(encoded: string): ParsedHash | undefined {
  if (encoded.startsWith('$scrypt$')) return parseScrypt(encoded);
  if (encoded.startsWith('$2')) return parseBcrypt(encoded);
  if (encoded.startsWith('{')) return parseScram(encoded);
  return undefined;
}

/** The user-file text of SCRAM-SHA-256 credentials: `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`. */
export function formatScramHash(h: ScramCredentials): string {
  return encodeScram(h);
}

/** Whether `password` gives this entry's StoredKey; the raw UTF-8 bytes are tried too when SASLprep changed them. */
async function verifyScram(password: string, h: ScramHash): Promise<boolean> {
  const check = async (bytes: Buffer): Promise<boolean> => {
    const salted = await pbkdf2Sha256(bytes, h.salt, h.iterations);
    return timingSafeEqual(scramKeys(salted).storedKey, h.storedKey);
  };
  const prepped = scramPasswordBytes(password);
  if (await check(prepped)) return true;
  const raw = Buffer.from(password, 'utf8');
  return !raw.equals(prepped) && (await check(raw));
}

/**
 * Check a password against a parsed hash. Resolves true/false; rejects only
 * if the computation itself fails (e.g. out of memory), never with the
 * password in the error.
 */
export async function verifyParsedHash(password: string, parsed: ParsedHash): Promise<boolean> {
  if (parsed.algorithm === 'scram-sha-256') return verifyScram(password, parsed);
  if (parsed.algorithm === 'scrypt') {
    const { logN, r, p, salt, hash } = parsed;
    const key = await deriveScrypt(password, logN, r, p, salt, hash.length);
    return timingSafeEqual(key, hash);
  }
  // bcryptjs accepts 2a/2b/2y alike and compares in constant time; normalise
  // to $2b$ anyway so nothing depends on its handling of the $2y$ prefix.
  return bcrypt.compare(password, `$2b$${parsed.encoded.slice(4)}`);
}

/**
 * Check a password against a stored hash string. Unknown, malformed or
 * out-of-bounds hashes resolve false without computing anything (callers
 * that want to report them should use parseHash first).
 */
export async function verifyPasswordHash(password: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  if (!parsed) return false;
  return verifyParsedHash(password, parsed);
}

/**
 * Dummy hashes of each kind, with the default parameters, that no password
 * is expected to match: verify against one when there is no real hash (e.g.
 * unknown user) so the reply takes about as long as a real check.
 */
export const DUMMY_SCRYPT_HASH =
  '$scrypt$ln=15,r=8,p=1$cG9wZ2F0ZS1kdW1teS1zYQ$dW5rbm93bi11c2VyIHRpbWluZyBlcXVhbGlzYXRpb24';
export const DUMMY_BCRYPT_HASH = '$2y$10$g9lVcvsxI.qAoyFpLtVfXexhpmuKaZX0/G9OBLFBEUIf/5gQwmTlK';
export const DUMMY_SCRAM_HASH =
  '{SCRAM-SHA-256}4096,cG9wZ2F0ZS1kdW1teS1zYQ==,cG9wZ2F0ZSBzY3JhbSBkdW1teSBzdG9yZWQga2V5ISE=,cG9wZ2F0ZSBzY3JhbSBkdW1teSBzZXJ2ZXIga2V5ISE=';

/**
 * A dummy hash with the same algorithm and cost parameters as `like`, so a
 * verification against it costs the same as against `like`.
 */
export function dummyHashLike(like: ParsedHash): ParsedHash {
  if (like.algorithm === 'scram-sha-256') {
    const dummy = parseHash(DUMMY_SCRAM_HASH) as ScramHash;
    return { ...dummy, iterations: like.iterations };
  }
  if (like.algorithm === 'scrypt') {
    const dummy = parseHash(DUMMY_SCRYPT_HASH) as ScryptHash;
    const hash = Buffer.alloc(like.hash.length);
    dummy.hash.copy(hash);
    return { ...dummy, logN: like.logN, r: like.r, p: like.p, hash };
  }
  const cost = String(like.cost).padStart(2, '0');
  return parseHash(`$2y$${cost}$${DUMMY_BCRYPT_HASH.slice(7)}`) as BcryptHash;
}

/** The dummy for DUMMY_SCRYPT_HASH, parsed. */
export function defaultDummyHash(): ParsedHash {
  return parseHash(DUMMY_SCRYPT_HASH) as ScryptHash;
}

// ---- plaintext-equivalent secrets --------------------------------------

/**
 * A plaintext-equivalent secret from a user file, Dovecot's scheme syntax:
 * `{PLAIN}secret` (the secret's UTF-8 bytes) or `{PLAIN.B64}base64` (any
 * bytes, standard padded base64). `CLEAR` and `CLEARTEXT` are accepted as
 * Dovecot's aliases of `PLAIN`; scheme names are case-insensitive. Whoever
 * reads the file can log in as these users: prefer hashes unless APOP or
 * CRAM-MD5 is needed.
 */
export interface PlainSecret {
  readonly algorithm: 'plain';
  readonly secret: Buffer;
}

/** What a user-file entry can hold: a password hash or a plaintext-equivalent secret. */
export type StoredSecret = ParsedHash | PlainSecret;

const SCHEME_PREFIX = /^\{([A-Za-z0-9.-]+)\}/;
const PLAIN_SCHEMES = new Set(['PLAIN', 'CLEAR', 'CLEARTEXT']);
const B64_PADDED = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Parse `{PLAIN}secret` / `{PLAIN.B64}base64` (see PlainSecret). Undefined
 * for anything else, an empty secret, non-canonical base64, or a `{PLAIN}`
 * secret with control characters (use `{PLAIN.B64}` for unusual bytes).
 */
export function parsePlainSecret(encoded: string): PlainSecret | undefined {
  const m = SCHEME_PREFIX.exec(encoded);
  if (!m || m[1] === undefined) return undefined;
  const scheme = m[1].toUpperCase();
  const body = encoded.slice(m[0].length);
  const b64 = scheme.endsWith('.B64');
  if (!PLAIN_SCHEMES.has(b64 ? scheme.slice(0, -4) : scheme)) return undefined;
  let secret: Buffer;
  if (b64) {
    if (!B64_PADDED.test(body)) return undefined;
    secret = Buffer.from(body, 'base64');
    if (secret.toString('base64') !== body) return undefined;
  } else {
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(body)) return undefined;
    secret = Buffer.from(body, 'utf8');
  }
  return secret.length > 0 ? { algorithm: 'plain', secret } : undefined;
}

/** Parse a user-file secret: a `{scheme}` plaintext-equivalent secret or a hash (parseHash, SCRAM keys among them). */
export function parseStoredSecret(encoded: string): StoredSecret | undefined {
  return (encoded.startsWith('{') ? parsePlainSecret(encoded) : undefined) ?? parseHash(encoded);
}

export function isPlaintextEquivalent(stored: StoredSecret): stored is PlainSecret {
  return stored.algorithm === 'plain';
}

/**
 * Compares two byte strings in time independent of where they differ and
 * (beyond SHA-256's own length dependence) of their lengths.
 */
export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

/** Check a password (its UTF-8 bytes) against a plaintext-equivalent secret, in constant time. */
export function verifyPlainSecret(password: string, stored: PlainSecret): boolean {
  return constantTimeEqual(Buffer.from(password, 'utf8'), stored.secret);
}
