/**
 * Challenge-response logins in the sans-I/O session: APOP (RFC 1939 section
 * 7, the greeting timestamp the host generates) and AUTH CRAM-MD5 (RFC 2195,
 * a challenge from the host's challengeFactory). The session only carries
 * the digest to the host; the test checks it with src/auth/challenge.ts as a
 * verifier would.
 */
import { describe, expect, it } from 'vitest';
import { checkChallenge } from '../../src/auth/challenge.js';
import { errorReply } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';
import { Pop3Session } from '../../src/pop3/session.js';
import { isChallengeCredentials, type Pop3Action, type Pop3SessionOptions } from '../../src/pop3/types.js';
import { capaOf, credentialsOf, errActions, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

/** RFC 1939's APOP example. */
const APOP_TS = '<1896.697170952@dbc.mtview.ca.us>';
const APOP_DIGEST = 'c4c9334bac560ecc979e58001b3e22fb';
/** RFC 2195's CRAM-MD5 example. */
const CRAM_CHALLENGE = '<1896.697170952@postoffice.reston.mci.net>';
const CRAM_CHALLENGE_LINE = '+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+';
const CRAM_RESPONSE_B64 = 'dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw';
const CRAM_DIGEST = 'b913a602c7eda7a495b4e6e7334d3890';

const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line);
const err = errActions;
const capa = capaOf;

/** A factory handing out the given challenges in order, counting calls. */
function challenges(...list: string[]): { factory: () => string; calls: () => number } {
  let n = 0;
  return {
    factory: () => {
      const c = list[Math.min(n, list.length - 1)] ?? '';
      n++;
      return c;
    },
    calls: () => n,
  };
}

/** A pop3s listener with APOP and every password mechanism (CRAM-MD5 answering RFC 2195's challenge). */
function options(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  return sessionOptions({
    tls: true,
    stlsAvailable: false,
    saslMechanisms: ['PLAIN', 'CRAM-MD5', 'LOGIN'],
    apopTimestamp: APOP_TS,
    challengeFactory: challenges(CRAM_CHALLENGE).factory,
    ...over,
  });
}

describe('APOP: options and greeting', () => {
  it('appends the timestamp to the greeting', () => {
    expect(new Pop3Session(options()).greet()).toEqual([{ kind: 'reply', line: `+OK popgate ready ${APOP_TS}` }]);
    expect(replies(new Pop3Session(options({ greeting: '' })).greet())).toEqual([`+OK ${APOP_TS}`]);
  });

  it('keeps the timestamp the first <...> of the greeting: < and > leave the greeting text', () => {
    const s = new Pop3Session(options({ greeting: '<popgate> ready <x@y>\r\n' }));
    expect(replies(s.greet())).toEqual([`+OK popgate ready x@y ${APOP_TS}`]);
    // Without APOP the greeting text is left alone.
    expect(replies(new Pop3Session(options({ greeting: '<popgate>', apopTimestamp: undefined })).greet())).toEqual(['+OK <popgate>']);
  });

  it.each(['', 'no-brackets', '<no-at-sign>', '<a@b> trailing', '<a b@c>', '<a@b@c>', '<a@b>\r\n-ERR', `<${'x'.repeat(200)}@h>`])(
    'rejects apopTimestamp %j',
    (apopTimestamp) => {
      expect(() => new Pop3Session(options({ apopTimestamp }))).toThrow(RangeError);
    },
  );

  it('without a timestamp, the greeting has none and APOP is an unknown command', () => {
    const s = new Pop3Session(options({ apopTimestamp: undefined }));
    expect(replies(s.greet())).toEqual(['+OK popgate ready']);
    expect(feed(s, `APOP mrose ${APOP_DIGEST}`)).toEqual(err('UNKNOWN_COMMAND'));
    expect(s.counters.errors).toBe(1);
  });

  it('on a plaintext port that can never carry password logins, shows no timestamp and knows no APOP', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: false, allowPlaintextAuth: false }));
    expect(replies(s.greet())).toEqual(['+OK popgate ready']);
    expect(feed(s, `APOP mrose ${APOP_DIGEST}`)).toEqual(err('UNKNOWN_COMMAND'));
  });

  it('on KPOP sessions, is ignored', () => {
    const s = new Pop3Session(options({ kerberosPrincipal: 'alice@EXAMPLE.COM', tls: false }));
    expect(replies(s.greet())).toEqual(['+OK popgate ready']);
    expect(feed(s, `APOP mrose ${APOP_DIGEST}`)).toEqual(err('UNKNOWN_COMMAND'));
  });

  it('is not a CAPA tag', () => {
    const caps = capa(new Pop3Session(options()));
    expect(caps.some((c) => c.startsWith('APOP'))).toBe(false);
    expect(caps).toContain('SASL PLAIN CRAM-MD5 LOGIN');
  });
});

describe('APOP: login', () => {
  it('emits the RFC 1939 example as APOP credentials with the greeting timestamp', () => {
    const s = new Pop3Session(options());
    const r = feed(s, `APOP mrose ${APOP_DIGEST}`);
    expect(r).toEqual([
      { kind: 'authenticate', credentials: { mechanism: 'APOP', username: 'mrose', challenge: APOP_TS, response: APOP_DIGEST } },
    ]);
    expect(s.awaiting).toBe('login');
    expect(s.username).toBe('mrose');
    // What a verifier holding mrose's secret concludes.
    const c = credentialsOf(r);
    expect(isChallengeCredentials(c) && checkChallenge(c, 'tanstaaf')).toBe(true);
    expect(isChallengeCredentials(c) && checkChallenge(c, 'tanstaaF')).toBe(false);
  });

  it('accepts an uppercase digest and emits it lowercase', () => {
    const s = new Pop3Session(options());
    expect(credentialsOf(feed(s, `apop mrose ${APOP_DIGEST.toUpperCase()}`))).toMatchObject({ response: APOP_DIGEST });
  });

  it('takes the name up to the last space (names with spaces, as USER allows)', () => {
    const s = new Pop3Session(options());
    expect(credentialsOf(feed(s, `APOP Marshall Rose ${APOP_DIGEST}`))).toMatchObject({ username: 'Marshall Rose' });
  });

  it.each([
    ['APOP', 'BAD_SYNTAX'],
    ['APOP mrose', 'BAD_SYNTAX'],
    [`APOP ${APOP_DIGEST}`, 'BAD_SYNTAX'],
    [`APOP mrose ${APOP_DIGEST.slice(1)}`, 'BAD_SYNTAX'],
    [`APOP mrose ${APOP_DIGEST}0`, 'BAD_SYNTAX'],
    [`APOP mrose ${APOP_DIGEST.slice(1)}g`, 'BAD_SYNTAX'],
    [`APOP mrose ${APOP_DIGEST} `, 'BAD_SYNTAX'],
    [`APOP  ${APOP_DIGEST}`, 'BAD_SYNTAX'],
    [`APOP mr\rose ${APOP_DIGEST}`, 'BAD_CHARACTERS'],
    [`APOP mr\0ose ${APOP_DIGEST}`, 'BAD_CHARACTERS'],
  ] as const)('refuses %j with %s', (line, code) => {
    const s = new Pop3Session(options());
    expect(feed(s, line)).toEqual(err(code));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters).toEqual({ errors: 1, authFailures: 0 });
  });

  it('refuses a name that is not UTF-8 as bad characters', () => {
    const s = new Pop3Session(options());
    const line = Buffer.concat([Buffer.from('APOP m'), Buffer.from([0xff]), Buffer.from(` ${APOP_DIGEST}`)]);
    expect(s.feedLine(line)).toEqual(err('BAD_CHARACTERS'));
  });

  it('follows the USER/PASS channel rule: refused before STLS, accepted after it with the same timestamp', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true }));
    expect(replies(s.greet())).toEqual([`+OK popgate ready ${APOP_TS}`]);
    expect(feed(s, `APOP mrose ${APOP_DIGEST}`)).toEqual(err('PLAINTEXT_AUTH_DISALLOWED'));
    expect(s.username).toBeUndefined();
    feed(s, 'STLS');
    s.tlsStarted();
    expect(credentialsOf(feed(s, `APOP mrose ${APOP_DIGEST}`))).toEqual({
      mechanism: 'APOP',
      username: 'mrose',
      challenge: APOP_TS,
      response: APOP_DIGEST,
    });
  });

  it('is accepted on plaintext when allowPlaintextAuth is set', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: false, allowPlaintextAuth: true }));
    expect(replies(s.greet())).toEqual([`+OK popgate ready ${APOP_TS}`]);
    expect(credentialsOf(feed(s, `APOP mrose ${APOP_DIGEST}`))).toMatchObject({ mechanism: 'APOP' });
  });

  it('a failed APOP spends an attempt and may be retried; the last one closes', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, `APOP mrose ${'0'.repeat(32)}`);
    expect(s.loginFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    expect(credentialsOf(feed(s, `APOP mrose ${APOP_DIGEST}`))).toMatchObject({ challenge: APOP_TS });
    expect(s.loginFailed('AUTH_FAILED')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
  });

  it('a pending USER is dropped by APOP', () => {
    const s = new Pop3Session(options());
    feed(s, 'USER alice');
    feed(s, `APOP mrose ${APOP_DIGEST}`);
    s.loginFailed('AUTH_FAILED');
    expect(feed(s, 'PASS secret')).toEqual(err('BAD_SEQUENCE'));
  });

  it('masks the digest in logs', () => {
    const s = new Pop3Session(options());
    const masked = s.maskLine(Buffer.from(`APOP mrose ${APOP_DIGEST}`));
    expect(masked).toBe('APOP mrose ***');
  });
});

describe('AUTH CRAM-MD5', () => {
  it('requires a challengeFactory when configured', () => {
    expect(() => new Pop3Session(options({ challengeFactory: undefined }))).toThrow(RangeError);
    expect(() => new Pop3Session(options({ challengeFactory: undefined, saslMechanisms: ['PLAIN'] }))).not.toThrow();
  });

  it('runs the RFC 2195 example exchange', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'AUTH CRAM-MD5')).toEqual([{ kind: 'reply', line: CRAM_CHALLENGE_LINE }]);
    expect(s.state).toBe('SASL');
    expect(s.lineLimit).toBe(8192);
    expect(s.maskLine(Buffer.from(CRAM_RESPONSE_B64))).toBe('***');
    const r = feed(s, CRAM_RESPONSE_B64);
    expect(r).toEqual([
      { kind: 'authenticate', credentials: { mechanism: 'CRAM-MD5', username: 'tim', challenge: CRAM_CHALLENGE, response: CRAM_DIGEST } },
    ]);
    expect(s.username).toBe('tim');
    expect(s.awaiting).toBe('login');
    const c = credentialsOf(r);
    expect(isChallengeCredentials(c) && checkChallenge(c, 'tanstaaftanstaaf')).toBe(true);
  });

  it('asks the factory for a fresh challenge on every AUTH CRAM-MD5', () => {
    const source = challenges('<1.1@host>', '<2.2@host>');
    const s = new Pop3Session(options({ challengeFactory: source.factory }));
    expect(feed(s, 'auth cram-md5')).toEqual([{ kind: 'reply', line: `+ ${b64('<1.1@host>')}` }]);
    expect(feed(s, '*')).toEqual(err('AUTH_CANCELLED'));
    expect(feed(s, 'AUTH CRAM-MD5')).toEqual([{ kind: 'reply', line: `+ ${b64('<2.2@host>')}` }]);
    expect(credentialsOf(feed(s, b64(`tim ${CRAM_DIGEST.toUpperCase()}`)))).toEqual({
      mechanism: 'CRAM-MD5',
      username: 'tim',
      challenge: '<2.2@host>',
      response: CRAM_DIGEST,
    });
    expect(source.calls()).toBe(2);
  });

  it.each(['AUTH CRAM-MD5 =', `AUTH CRAM-MD5 ${CRAM_RESPONSE_B64}`])('refuses an initial response: %s', (line) => {
    const source = challenges(CRAM_CHALLENGE);
    const s = new Pop3Session(options({ challengeFactory: source.factory }));
    expect(feed(s, line)).toEqual(err('BAD_SYNTAX'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(source.calls()).toBe(0);
  });

  it.each([
    ['not base64!', 'BAD_BASE64'],
    ['', 'BAD_SYNTAX'],
    ['=', 'BAD_SYNTAX'],
    [b64('tim'), 'BAD_SYNTAX'],
    [b64(CRAM_DIGEST), 'BAD_SYNTAX'],
    [b64(`tim ${CRAM_DIGEST.slice(2)}`), 'BAD_SYNTAX'],
    [b64(`tim  ${CRAM_DIGEST}x`), 'BAD_SYNTAX'],
    [b64(`t\r\nim ${CRAM_DIGEST}`), 'BAD_CHARACTERS'],
    [b64(`t\0im ${CRAM_DIGEST}`), 'BAD_CHARACTERS'],
    [b64(Buffer.concat([Buffer.from([0xc3, 0x28]), Buffer.from(` ${CRAM_DIGEST}`)])), 'BAD_CHARACTERS'],
    ['*', 'AUTH_CANCELLED'],
  ] as const)('answers the response %j with %s', (line, code) => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH CRAM-MD5');
    expect(feed(s, line)).toEqual(err(code));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.lineLimit).toBe(255);
  });

  it('follows the password channel rule, without bothering the factory', () => {
    const source = challenges(CRAM_CHALLENGE);
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true, challengeFactory: source.factory }));
    expect(capa(s).some((c) => c.startsWith('SASL'))).toBe(false);
    expect(replies(feed(s, 'AUTH'))).toEqual(['+OK Available mechanisms', '.']);
    expect(feed(s, 'AUTH CRAM-MD5')).toEqual(err('PLAINTEXT_AUTH_DISALLOWED'));
    expect(source.calls()).toBe(0);
    feed(s, 'STLS');
    s.tlsStarted();
    expect(capa(s)).toContain('SASL PLAIN CRAM-MD5 LOGIN');
    expect(feed(s, 'AUTH CRAM-MD5')).toEqual([{ kind: 'reply', line: CRAM_CHALLENGE_LINE }]);

    const open = new Pop3Session(options({ tls: false, allowPlaintextAuth: true }));
    expect(capa(open)).toContain('SASL PLAIN CRAM-MD5 LOGIN');
    expect(replies(feed(open, 'AUTH'))).toEqual(['+OK Available mechanisms', 'PLAIN', 'CRAM-MD5', 'LOGIN', '.']);
  });

  it('is unsupported when not configured, and on KPOP', () => {
    expect(feed(new Pop3Session(options({ saslMechanisms: ['PLAIN'] })), 'AUTH CRAM-MD5')).toEqual(err('UNSUPPORTED_MECHANISM'));
    const kpop = new Pop3Session(options({ kerberosPrincipal: 'alice@EXAMPLE.COM' }));
    expect(feed(kpop, 'AUTH CRAM-MD5')).toEqual(err('UNSUPPORTED_MECHANISM'));
  });

  it('treats a malformed challenge from the host as a host bug', () => {
    const s = new Pop3Session(options({ challengeFactory: () => 'not a msg-id' }));
    expect(() => feed(s, 'AUTH CRAM-MD5')).toThrow(/INTERNAL/);
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('with a framer-driven host, the response is read under the SASL cap, never as a command', () => {
    const s = new Pop3Session(options());
    const framer = new LineFramer();
    const out: Pop3Action[] = [];
    framer.push(Buffer.from(`AUTH CRAM-MD5\r\nQUIT now\r\n`));
    for (let r = framer.next(s.lineLimit); r && s.awaiting === undefined; r = framer.next(s.lineLimit)) {
      if (r.kind === 'line') out.push(...s.feedLine(r.line));
    }
    expect(replies(out)).toEqual([CRAM_CHALLENGE_LINE, errorReply('BAD_BASE64')]);
    expect(s.state).toBe('AUTHORIZATION');
  });
});
