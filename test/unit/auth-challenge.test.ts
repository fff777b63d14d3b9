/** APOP (RFC 1939) and CRAM-MD5 (RFC 2195) digests and their check, against the RFCs' own examples. */
import { describe, expect, it } from 'vitest';
import { apopDigest, challengeDigest, checkChallenge, cramMd5Digest } from '../../src/auth/challenge.js';

const APOP = { timestamp: '<1896.697170952@dbc.mtview.ca.us>', secret: 'tanstaaf', digest: 'c4c9334bac560ecc979e58001b3e22fb' };
const CRAM = {
  challenge: '<1896.697170952@postoffice.reston.mci.net>',
  secret: 'tanstaaftanstaaf',
  digest: 'b913a602c7eda7a495b4e6e7334d3890',
};

describe('digests', () => {
  it('APOP: RFC 1939 section 7 example (mrose)', () => {
    expect(apopDigest(APOP.timestamp, APOP.secret)).toBe(APOP.digest);
    expect(apopDigest(APOP.timestamp, Buffer.from(APOP.secret))).toBe(APOP.digest);
    expect(challengeDigest('APOP', APOP.timestamp, APOP.secret)).toBe(APOP.digest);
  });

  it('CRAM-MD5: RFC 2195 section 2 example (tim)', () => {
    expect(cramMd5Digest(CRAM.challenge, CRAM.secret)).toBe(CRAM.digest);
    expect(challengeDigest('CRAM-MD5', CRAM.challenge, Buffer.from(CRAM.secret))).toBe(CRAM.digest);
  });

  it('CRAM-MD5 is HMAC-MD5, long keys included (RFC 2202 test cases 2 and 6)', () => {
    expect(cramMd5Digest('what do ya want for nothing?', 'Jefe')).toBe('750c783e6ab0b503eaa86e310a5db738');
    expect(cramMd5Digest('Test Using Larger Than Block-Size Key - Hash Key First', Buffer.alloc(80, 0xaa))).toBe(
      '6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd',
    );
  });

  it('hashes strings as UTF-8', () => {
    expect(apopDigest('<a@b>', 'p\u00e4ss')).toBe(apopDigest('<a@b>', Buffer.from('p\u00e4ss', 'utf8')));
    expect(apopDigest('<a@b>', 'p\u00e4ss')).not.toBe(apopDigest('<a@b>', Buffer.from('p\u00e4ss', 'latin1')));
  });
});

describe('checkChallenge', () => {
  it('accepts the right digest, in either case', () => {
    expect(checkChallenge({ mechanism: 'APOP', challenge: APOP.timestamp, response: APOP.digest }, APOP.secret)).toBe(true);
    expect(checkChallenge({ mechanism: 'APOP', challenge: APOP.timestamp, response: APOP.digest.toUpperCase() }, APOP.secret)).toBe(true);
    expect(checkChallenge({ mechanism: 'CRAM-MD5', challenge: CRAM.challenge, response: CRAM.digest }, CRAM.secret)).toBe(true);
  });

  it('refuses a wrong secret, another challenge, or the other mechanism', () => {
    expect(checkChallenge({ mechanism: 'APOP', challenge: APOP.timestamp, response: APOP.digest }, 'tanstaaF')).toBe(false);
    expect(checkChallenge({ mechanism: 'APOP', challenge: '<1897.697170952@dbc.mtview.ca.us>', response: APOP.digest }, APOP.secret)).toBe(false);
    expect(checkChallenge({ mechanism: 'CRAM-MD5', challenge: APOP.timestamp, response: APOP.digest }, APOP.secret)).toBe(false);
    expect(checkChallenge({ mechanism: 'APOP', challenge: CRAM.challenge, response: CRAM.digest }, CRAM.secret)).toBe(false);
  });

  it.each(['', APOP.digest.slice(1), `${APOP.digest}0`, `${APOP.digest.slice(1)}g`, ` ${APOP.digest.slice(1)}`, '0'.repeat(32)])(
    'never matches the malformed or wrong response %j',
    (response) => {
      expect(checkChallenge({ mechanism: 'APOP', challenge: APOP.timestamp, response }, APOP.secret)).toBe(false);
    },
  );
});

// Moved from auth-http.test.ts: the http verifier checks digests with these same functions.
describe('digests (the http verifier\'s check)', () => {
  it('APOP and CRAM-MD5 match the RFC examples', () => {
    // RFC 1939 section 7
    expect(apopDigest('<1896.697170952@dbc.mtview.ca.us>', 'tanstaaf')).toBe('c4c9334bac560ecc979e58001b3e22fb');
    // RFC 2195 section 2
    expect(cramMd5Digest('<1896.697170952@postoffice.reston.mci.net>', 'tanstaaftanstaaf')).toBe(
      'b913a602c7eda7a495b4e6e7334d3890',
    );
  });
});
