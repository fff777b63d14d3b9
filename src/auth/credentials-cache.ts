/**
 * A verified-credentials cache in front of a PasswordVerifier (like
 * Dovecot's auth_cache): mail clients poll every few minutes, each poll a
 * full login, and each login costs an scrypt, an auth-service call or a KDC
 * exchange. A definite answer is remembered for a while under a key that
 * only the same (verifier, user, password[, client facts]) reproduces.
 *
 * Key: HMAC-SHA256 under a random per-process secret of the verifier name,
 * the user name and the password (and, when the verifier's answer can depend
 * on them, the client facts an auth service is sent). Neither the password
 * nor an unkeyed hash of it is stored: a memory dump gives no offline
 * guessing oracle without the secret, and the secret never leaves the
 * process. A wrong password gives another key, so it never meets a cached
 * success.
 *
 * What is cached: a success (the verifier's whole outcome: user, and an auth
 * service's route and backend credentials) for `ttlMs`; a definite failure
 * (unknown user, bad password, disabled) for `negativeTtlMs` (0: never),
 * except one the service marked retryable (auth_http Auth-Wait: it asked to
 * be asked again after a pause). A rejection (verifier unavailable) is never
 * cached. A hit returns the same outcome the verifier gave, so the login
 * service counts one attempt per login exactly as without the cache.
 *
 * Challenge logins (APOP, CRAM-MD5) carry a fresh challenge each time and
 * could never hit; they and ticket/certificate authorizations pass through.
 *
 * Bound: at most `maxEntries`, in a Map kept in least-recently-used order (a
 * hit moves its entry to the end); the front one goes when a new one would
 * exceed the bound. Expired entries go when met.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import type { ClientContext, PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';

/** What the cache reports, for popgate_auth_cache_events_total. */
export type CredentialsCacheEvent = 'hit' | 'negative-hit' | 'miss' | 'evicted' | 'invalidated';

export interface CredentialsCacheOptions {
  readonly verifier: PasswordVerifier;
  /** How long a success is served from the cache; must be positive (0 means: do not build a cache). */
  readonly ttlMs: number;
  /** How long a definite failure is served from the cache; 0: failures are not cached. */
  readonly negativeTtlMs: number;
  readonly maxEntries: number;
  /**
   * Whether the verifier's answer may depend on who is asking (an auth
   * service is sent the client's address, our address, TLS facts): then
   * these are part of the key.
   */
  readonly keyClientFacts: boolean;
  readonly clock?: Clock;
  /** Default: 32 fresh random bytes (per process, per cache). */
  readonly secret?: Buffer;
  readonly onEvent?: (event: CredentialsCacheEvent, count: number) => void;
}

export interface CredentialsCache extends PasswordVerifier {
  /** Drops every entry for these user names (as the client typed them), e.g. their user-file lines changed. */
  invalidateUsers(users: Iterable<string>): void;
  /** Drops every entry. */
  clear(): void;
  /** Entries held now (expired ones included until met or evicted). */
  readonly size: number;
}

interface Entry {
  readonly outcome: VerifyOutcome;
  readonly expiresAt: number;
  /** The requested user name, for invalidateUsers. */
  readonly user: string;
}

/**
 * The client facts an auth_http service is sent and may decide on: the
 * client's address, our address and port, PROXY or not, the TLS facts. Not
 * the client's port (new on every connection: the cache would never hit, and
 * no service decides on it) nor the attempt number (the first login of each
 * poll is attempt 1 anyway; a service that refuses later attempts refuses
 * failures, which live only `negativeTtl`).
 */
function clientFacts(request: PasswordRequest): unknown[] {
  const c: ClientContext | undefined = request.client;
  const t = c?.tls;
  return [
    c?.remoteAddress ?? request.remoteAddress ?? '',
    c?.localAddress ?? '',
    c?.localPort ?? 0,
    c?.proxiedBy !== undefined,
    request.tls,
    t ? [t.protocol, t.cipher, t.verify, t.subject ?? '', t.issuer ?? '', t.serial ?? '', t.fingerprint ?? ''] : null,
  ];
}

/**
 * The cache key of `request`: base64url HMAC-SHA256 under `secret` of a
 * JSON array (unambiguous field boundaries: `a`+`bc` never meets `ab`+`c`).
 * The mechanism is left out: USER, PLAIN and LOGIN check the same password
 * the same way (auth_http sends all three as Auth-Method: plain).
 */
export function credentialsCacheKey(secret: Buffer, verifierName: string, request: PasswordRequest, keyClientFacts: boolean): string {
  const fields: unknown[] = [verifierName, request.username, request.password];
  if (keyClientFacts) fields.push(clientFacts(request));
  return createHmac('sha256', secret).update(JSON.stringify(fields)).digest('base64url');
}

export function createCredentialsCache(opts: CredentialsCacheOptions): CredentialsCache {
  const { verifier, ttlMs, negativeTtlMs, maxEntries, keyClientFacts } = opts;
  if (!(ttlMs > 0)) throw new RangeError('ttlMs must be positive');
  if (!(negativeTtlMs >= 0)) throw new RangeError('negativeTtlMs must not be negative');
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
  const clock = opts.clock ?? systemClock;
  const secret = opts.secret ?? randomBytes(32);
  const report = opts.onEvent ?? (() => {});
  const entries = new Map<string, Entry>();
  /** Key sets per requested user name, for invalidateUsers. */
  const byUser = new Map<string, Set<string>>();
  /**
   * Bumped by every invalidation: an answer computed against data that
   * changed while it was being computed (a user-file reload mid-scrypt) is
   * not stored.
   */
  let epoch = 0;

  function remove(key: string, entry: Entry): void {
    entries.delete(key);
    const keys = byUser.get(entry.user);
    keys?.delete(key);
    if (keys?.size === 0) byUser.delete(entry.user);
  }

  function store(key: string, user: string, outcome: VerifyOutcome, lifetimeMs: number): void {
    const old = entries.get(key);
    if (old) remove(key, old);
    let evicted = 0;
    while (entries.size >= maxEntries) {
      const first = entries.entries().next();
      if (first.done === true) break;
      remove(first.value[0], first.value[1]);
      evicted++;
    }
    if (evicted > 0) report('evicted', evicted);
    entries.set(key, { outcome, expiresAt: clock.now() + lifetimeMs, user });
    let keys = byUser.get(user);
    if (!keys) byUser.set(user, (keys = new Set()));
    keys.add(key);
  }

  /** How long `outcome` may be served from the cache; 0: not at all. */
  function lifetime(outcome: VerifyOutcome): number {
    if (outcome.ok) return ttlMs;
    return outcome.retryable === true ? 0 : negativeTtlMs;
  }

  const cache: CredentialsCache = {
    name: verifier.name,
    get size() {
      return entries.size;
    },
    async verify(request) {
      const key = credentialsCacheKey(secret, verifier.name, request, keyClientFacts);
      const found = entries.get(key);
      if (found) {
        if (found.expiresAt > clock.now()) {
          // Least recently used goes first: move this one to the end.
          entries.delete(key);
          entries.set(key, found);
          report(found.outcome.ok ? 'hit' : 'negative-hit', 1);
          return found.outcome;
        }
        remove(key, found);
      }
      report('miss', 1);
      const started = epoch;
      const outcome = await verifier.verify(request); // a rejection (unavailable) propagates, uncached
      const ms = lifetime(outcome);
      if (ms > 0 && epoch === started) store(key, request.username, outcome, ms);
      return outcome;
    },
    invalidateUsers(users) {
      epoch++;
      let dropped = 0;
      for (const user of users) {
        const keys = byUser.get(user);
        if (!keys) continue;
        for (const key of [...keys]) {
          const entry = entries.get(key);
          if (entry) {
            remove(key, entry);
            dropped++;
          }
        }
        byUser.delete(user);
      }
      if (dropped > 0) report('invalidated', dropped);
    },
    clear() {
      epoch++;
      const dropped = entries.size;
      entries.clear();
      byUser.clear();
      if (dropped > 0) report('invalidated', dropped);
    },
    close() {
      entries.clear();
      byUser.clear();
      verifier.close();
    },
  };
  // Challenge checks and authorizations are not cached (see the module comment).
  const verifyChallenge = verifier.verifyChallenge?.bind(verifier);
  const authorize = verifier.authorize?.bind(verifier);
  return Object.assign(cache, verifyChallenge ? { verifyChallenge } : {}, authorize ? { authorize } : {});
}
