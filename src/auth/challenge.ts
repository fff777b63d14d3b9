/**
 * Challenge-response digests (RFC 1939 APOP, RFC 2195 CRAM-MD5) and their
 * constant-time check. Both prove knowledge of the secret itself, so only
 * plaintext-equivalent entries (`{PLAIN}`, see ./password-hash.ts) can be
 * checked; MD5 is what the RFCs define, and both are weak against offline
 * guessing from a captured exchange (the session allows them only where it
 * allows passwords).
 *
 * Strings (timestamp, challenge, secret) are taken as UTF-8 bytes; the
 * digests are lowercase hex. The one implementation: the user-file verifier
 * checks against its stored secret, the http verifier against the Auth-Pass
 * its service returns.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ChallengeRequest } from './types.js';

const bytes = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s);

/** RFC 1939 section 7: MD5(timestamp || secret), e.g. the greeting's `<1896.697170952@dbc.mtview.ca.us>`. */
export function apopDigest(timestamp: string, secret: string | Buffer): string {
  return createHash('md5').update(bytes(timestamp)).update(bytes(secret)).digest('hex');
}

/** RFC 2195 section 2: HMAC-MD5 keyed with the secret, over the challenge. */
export function cramMd5Digest(challenge: string, secret: string | Buffer): string {
  return createHmac('md5', bytes(secret)).update(bytes(challenge)).digest('hex');
}

/** The digest a client knowing `secret` sends for this mechanism and challenge. */
export function challengeDigest(mechanism: ChallengeRequest['mechanism'], challenge: string, secret: string | Buffer): string {
  return mechanism === 'APOP' ? apopDigest(challenge, secret) : cramMd5Digest(challenge, secret);
}

const HEX_DIGEST = /^[0-9a-fA-F]{32}$/;

/**
 * Whether `req.response` is the digest of `req.challenge` under `secret`.
 * The digest is always computed and compared in constant time; a response
 * that is not 32 hex digits (either case) never matches.
 */
export function checkChallenge(
  req: Pick<ChallengeRequest, 'mechanism' | 'challenge' | 'response'>,
  secret: string | Buffer,
): boolean {
  const expected = Buffer.from(challengeDigest(req.mechanism, req.challenge, secret), 'hex');
  const wellFormed = HEX_DIGEST.test(req.response);
  const given = wellFormed ? Buffer.from(req.response, 'hex') : Buffer.alloc(expected.length);
  return timingSafeEqual(expected, given) && wellFormed;
}
