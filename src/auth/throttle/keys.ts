/**
 * The throttle's keys: a client address's (addressKey) and a user name's
 * (userKey), and the fingerprint of a failed password (passwordFingerprint).
 */
import { createHash, createHmac } from 'node:crypto';
import { addressKey as keyOf } from '../../net/index.js';

/** User names longer than this are keyed by their SHA-256 (bounded key size). */
const MAX_USER_KEY = 128;

/**
 * The address part of a key (src/net/address-key.ts): IPv4 as is (IPv4-mapped
 * IPv6 too), IPv6 as its /64 network in canonical text (`2001:db8:1:2::/64`:
 * one end site; the spelling already in Redis), a zone dropped. Text that is
 * not an address is trimmed, lower-cased and cut to 64 characters (keys stay
 * bounded); an empty address has no key.
 */
export function addressKey(address: string): string | undefined {
  const bare = (address.split('%')[0] ?? '').trim().toLowerCase();
  if (bare === '') return undefined;
  return keyOf(bare, 'compressed') ?? bare.slice(0, 64);
}

/** The user part of a key: case-folded; long names hashed. */
export function userKey(user: string): string | undefined {
  if (user === '') return undefined;
  const folded = user.toLowerCase();
  return folded.length > MAX_USER_KEY ? `sha256:${createHash('sha256').update(folded).digest('hex')}` : folded;
}

/** Bytes of HMAC a fingerprint keeps: a chance of 2^-64 per remembered password that a different one passes for it. */
const FINGERPRINT_BYTES = 8;

/**
 * A failed password as the throttle remembers it: HMAC-SHA-256 under the
 * store's secret of the user key (folded, as the counters are keyed), a NUL
 * and the password (UTF-8), cut to 8 bytes, hex. The user is in it so that
 * one password of two users gives two fingerprints.
 */
export function passwordFingerprint(secret: string, user: string, password: string): string {
  return createHmac('sha256', secret).update(user).update('\0').update(password).digest().subarray(0, FINGERPRINT_BYTES).toString('hex');
}
