/**
 * The sans-I/O session's side of OAUTHBEARER (RFC 7628), XOAUTH2 and
 * SCRAM-SHA-256[-PLUS] (RFC 5802/7677 over RFC 5034): which channels offer
 * them, the message parsing that hands a token to the host, the RFC 7628
 * error challenge before the `-ERR`, long initial responses, and the
 * host-read SCRAM steps (`saslStep` → saslContinue / saslProved / saslFailed).
 */
import { describe, expect, it } from 'vitest';
import { errorReply } from '../../src/errors.js';
import { decodeOAuthBearer, decodeXOAuth2 } from '../../src/pop3/sasl.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action, Pop3SessionOptions } from '../../src/pop3/types.js';
import { capaOf, credentialsOf, errActions, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

const TOKEN = `eyJhbGciOiJSUzI1NiJ9.${'x'.repeat(1200)}.sig-_~+/=`;
const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line);
const oauthbearer = (token: string, authzid = ''): string =>
  `n,${authzid === '' ? '' : `a=${authzid.replace(/=/g, '=3D').replace(/,/g, '=2C')}`},\x01host=mail.example.com\x01port=995\x01auth=Bearer ${token}\x01\x01`;
const xoauth2 = (user: string, token: string): string => `user=${user}\x01auth=Bearer ${token}\x01\x01`;

function options(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  return sessionOptions({ tls: true, stlsAvailable: false, maxSaslLine: 16_384, saslMechanisms: ['OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'PLAIN'], ...over });
}

describe('message parsing', () => {
  it('reads OAUTHBEARER with and without an authzid, undoing RFC 5801 escapes', () => {
    expect(decodeOAuthBearer(Buffer.from(oauthbearer('abc.def')))).toEqual({ ok: true, requestedUser: '', token: 'abc.def' });
    expect(decodeOAuthBearer(Buffer.from(oauthbearer('t', 'a,b=c')))).toEqual({ ok: true, requestedUser: 'a,b=c', token: 't' });
    expect(decodeOAuthBearer(Buffer.from('n,,\x01auth=bearer tok\x01\x01'))).toEqual({ ok: true, requestedUser: '', token: 'tok' });
  });

  it.each([
    ['y,,\x01auth=Bearer t\x01\x01', 'syntax'],
    ['p=tls-unique,,\x01auth=Bearer t\x01\x01', 'syntax'],
    ['n,,auth=Bearer t\x01\x01', 'syntax'],
    ['n,,\x01auth=Bearer t\x01', 'syntax'],
    ['n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01', 'syntax'],
    ['n,a=x=41,\x01auth=Bearer t\x01\x01', 'syntax'],
    ['n,,\x01auth=Basic dXNlcg==\x01\x01', 'no-token'],
    ['n,,\x01auth=Bearer \x01\x01', 'no-token'],
    ['n,,\x01auth=Bearer a b\x01\x01', 'no-token'],
    ['n,,\x01host=x\x01\x01', 'no-token'],
    ['n,a=al\rice,\x01auth=Bearer t\x01\x01', 'bad-characters'],
  ])('refuses OAUTHBEARER %j (%s)', (message, reason) => {
    expect(decodeOAuthBearer(Buffer.from(message, 'latin1'))).toEqual({ ok: false, reason });
  });

  it('reads XOAUTH2 and refuses what is not its shape', () => {
    expect(decodeXOAuth2(Buffer.from(xoauth2('alice@example.com', 'ya29.tok')))).toEqual({ ok: true, requestedUser: 'alice@example.com', token: 'ya29.tok' });
    expect(decodeXOAuth2(Buffer.from('auth=Bearer t\x01\x01'))).toEqual({ ok: false, reason: 'syntax' });
    expect(decodeXOAuth2(Buffer.from('user=a\x01auth=Bearer t\x01'))).toEqual({ ok: false, reason: 'syntax' });
    expect(decodeXOAuth2(Buffer.from('user=a\x01\x01'))).toEqual({ ok: false, reason: 'no-token' });
    expect(decodeXOAuth2(Buffer.from([0x75, 0x73, 0x65, 0x72, 0x3d, 0xff, 0x01, 0x01]))).toEqual({ ok: false, reason: 'bad-utf8' });
  });
});

describe('where the mechanisms are offered', () => {
  it('all of them on TLS, in configured order', () => {
    expect(capaOf(new Pop3Session(options()))).toContain('SASL OAUTHBEARER XOAUTH2 SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN');
  });

  it('on plaintext: none without allowPlaintextAuth; with it, all but -PLUS (no channel to bind)', () => {
    expect(capaOf(new Pop3Session(options({ tls: false, stlsAvailable: true }))).some((l) => l.startsWith('SASL'))).toBe(false);
    expect(capaOf(new Pop3Session(options({ tls: false, allowPlaintextAuth: true })))).toContain('SASL OAUTHBEARER XOAUTH2 SCRAM-SHA-256 PLAIN');
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true }));
    expect(feed(s, `AUTH OAUTHBEARER ${b64(oauthbearer('t'))}`)).toEqual(errActions('PLAINTEXT_AUTH_DISALLOWED'));
  });
});

describe('OAUTHBEARER and XOAUTH2', () => {
  it('takes a token longer than the 255-octet command line as AUTH initial response', () => {
    const s = new Pop3Session(options());
    const line = `AUTH OAUTHBEARER ${b64(oauthbearer(TOKEN, 'alice'))}`;
    expect(line.length).toBeGreaterThan(1600);
    expect(s.lineLimit).toBe(16_384);
    expect(credentialsOf(feed(s, line))).toEqual({ mechanism: 'OAUTHBEARER', token: TOKEN, requestedUser: 'alice' });
    expect(s.username).toBe('alice');
  });

  it('holds every other command to the command cap', () => {
    const s = new Pop3Session(options());
    expect(feed(s, `USER ${'a'.repeat(300)}`)).toEqual([{ kind: 'reply', line: errorReply('LINE_TOO_LONG') }, { kind: 'close', reason: 'LINE_TOO_LONG' }]);
    // Without a bearer mechanism the framer's cap is the command line's again.
    expect(new Pop3Session(options({ saslMechanisms: ['PLAIN'] })).lineLimit).toBe(255);
  });

  it('asks for the message with an empty challenge when there is no initial response', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH XOAUTH2'))).toEqual(['+ ']);
    expect(credentialsOf(feed(s, b64(xoauth2('bob', 'tok'))))).toEqual({ mechanism: 'XOAUTH2', token: 'tok', requestedUser: 'bob' });
  });

  it('sends a refusal’s error challenge, then answers the client’s reply with the -ERR and spends an attempt', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, `AUTH OAUTHBEARER ${b64(oauthbearer('t'))}`);
    const challenge = Buffer.from('{"status":"invalid_token"}');
    expect(s.loginFailed('AUTH_FAILED', { errorChallenge: challenge })).toEqual([{ kind: 'reply', line: `+ ${b64(challenge)}` }]);
    expect(s.state).toBe('SASL');
    expect(feed(s, 'AQ==')).toEqual(errActions('AUTH_FAILED'));
    expect(s.counters.authFailures).toBe(1);
    // A second refusal, answered with a cancel: the attempt budget closes the connection.
    feed(s, `AUTH OAUTHBEARER ${b64(oauthbearer('t'))}`);
    s.loginFailed('AUTH_FAILED', { errorChallenge: challenge });
    expect(feed(s, '*')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
  });

  it('answers an issuer outage at once with [SYS/TEMP], not counted', () => {
    const s = new Pop3Session(options());
    feed(s, `AUTH XOAUTH2 ${b64(xoauth2('bob', 'tok'))}`);
    expect(s.loginFailed('VERIFIER_UNAVAILABLE')).toEqual(errActions('VERIFIER_UNAVAILABLE'));
    expect(s.counters.authFailures).toBe(0);
  });

  it('refuses malformed messages as protocol errors', () => {
    const s = new Pop3Session(options());
    expect(feed(s, `AUTH OAUTHBEARER ${b64('n,,\x01auth=Basic x\x01\x01')}`)).toEqual(errActions('BAD_SYNTAX'));
    expect(feed(s, 'AUTH XOAUTH2 !!!')).toEqual(errActions('BAD_BASE64'));
  });
});

describe('SCRAM: host-read steps', () => {
  const clientFirst = Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');

  it('hands each client message to the host and sends its challenges, then the server-final, then authenticates', () => {
    const s = new Pop3Session(options());
    expect(feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`)).toEqual([{ kind: 'saslStep', mechanism: 'SCRAM-SHA-256', data: clientFirst, first: true }]);
    expect(s.awaiting).toBe('sasl');
    expect(s.saslContinue(Buffer.from('r=x,s=y,i=4096'))).toEqual([{ kind: 'reply', line: `+ ${b64('r=x,s=y,i=4096')}` }]);
    expect(feed(s, b64('c=biws,r=x,p=z'))).toEqual([{ kind: 'saslStep', mechanism: 'SCRAM-SHA-256', data: Buffer.from('c=biws,r=x,p=z'), first: false }]);
    expect(s.saslProved({ username: 'user', requestedUser: '', final: Buffer.from('v=abc') })).toEqual([{ kind: 'reply', line: `+ ${b64('v=abc')}` }]);
    expect(s.username).toBe('user');
    expect(credentialsOf(feed(s, ''))).toEqual({ mechanism: 'SCRAM-SHA-256', username: 'user', requestedUser: '' });
  });

  it('asks for the client-first message when there is no initial response (-PLUS on TLS)', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH SCRAM-SHA-256-PLUS'))).toEqual(['+ ']);
    expect(feed(s, b64(clientFirst))).toEqual([{ kind: 'saslStep', mechanism: 'SCRAM-SHA-256-PLUS', data: clientFirst, first: true }]);
  });

  it('counts a refused proof like a wrong password, and host trouble not at all', () => {
    const s = new Pop3Session(options());
    feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`);
    expect(s.saslFailed('AUTH_FAILED')).toEqual(errActions('AUTH_FAILED'));
    expect(s.counters.authFailures).toBe(1);
    feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`);
    expect(s.saslFailed('VERIFIER_UNAVAILABLE')).toEqual(errActions('VERIFIER_UNAVAILABLE'));
    expect(s.counters.authFailures).toBe(1);
  });

  it('wants an empty answer to the server-final message, and honours a cancel mid-exchange', () => {
    const s = new Pop3Session(options());
    feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`);
    s.saslProved({ username: 'user', requestedUser: '', final: Buffer.from('v=abc') });
    expect(feed(s, b64('extra'))).toEqual(errActions('BAD_SYNTAX'));
    feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`);
    s.saslContinue(Buffer.from('r=x,s=y,i=4096'));
    expect(feed(s, '*')).toEqual(errActions('AUTH_CANCELLED'));
  });

  it('treats host answers out of turn as bugs', () => {
    const s = new Pop3Session(options());
    expect(() => s.saslContinue(Buffer.alloc(0))).toThrow(/SASL_PENDING|state/);
    feed(s, `AUTH SCRAM-SHA-256 ${b64(clientFirst)}`);
    expect(() => s.saslProved({ username: 'a\r\nb', requestedUser: '', final: Buffer.alloc(0) })).toThrow(/user name/);
    expect(() => feed(s, 'NOOP')).toThrow(/SASL_PENDING/);
  });
});
