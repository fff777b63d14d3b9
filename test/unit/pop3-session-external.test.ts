/**
 * AUTH EXTERNAL (RFC 4422 appendix A over RFC 5034) in the sans-I/O session:
 * the host verified a TLS client certificate and mapped it to
 * `externalIdentity` (an option on pop3s, `tlsStarted({ externalIdentity })`
 * after STLS); the client only names the user it wants (the authzid).
 */
import { describe, expect, it } from 'vitest';
import { errorReply } from '../../src/errors.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action, Pop3SessionOptions } from '../../src/pop3/types.js';
import { capaOf, credentialsOf, errActions, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

const IDENTITY = 'alice';

const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line);
const err = errActions;
const capa = capaOf;
const external = (requestedUser: string): Pop3Action[] => [
  { kind: 'authenticate', credentials: { mechanism: 'EXTERNAL', requestedUser } },
];

/** A pop3s listener whose client presented a verified certificate mapped to alice. */
function options(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  return sessionOptions({
    tls: true,
    stlsAvailable: false,
    saslMechanisms: ['EXTERNAL', 'PLAIN', 'GSSAPI'],
    externalIdentity: IDENTITY,
    ...over,
  });
}

/** A plaintext listener with STLS, EXTERNAL configured. */
function stlsOptions(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  return options({ tls: false, stlsAvailable: true, externalIdentity: undefined, ...over });
}

describe('EXTERNAL: options', () => {
  it.each(['', 'ali\r\nce', 'alice\0', 'a\nb'])('rejects externalIdentity %j', (externalIdentity) => {
    expect(() => new Pop3Session(options({ externalIdentity }))).toThrow(RangeError);
  });

  it('rejects an externalIdentity on a plaintext channel (a certificate comes with TLS)', () => {
    expect(() => new Pop3Session(options({ tls: false }))).toThrow(RangeError);
  });

  it('rejects an invalid identity from tlsStarted', () => {
    const s = new Pop3Session(stlsOptions());
    feed(s, 'STLS');
    expect(() => s.tlsStarted({ externalIdentity: 'a\r\nb' })).toThrow(RangeError);
  });
});

describe('EXTERNAL: CAPA and AUTH listing', () => {
  it('is advertised, in configured order, with TLS and a certificate identity', () => {
    const s = new Pop3Session(options());
    expect(capa(s)).toContain('SASL EXTERNAL PLAIN GSSAPI');
    expect(replies(feed(s, 'AUTH'))).toEqual(['+OK Available mechanisms', 'EXTERNAL', 'PLAIN', 'GSSAPI', '.']);
  });

  it('is not advertised without a certificate identity, or when not configured', () => {
    expect(capa(new Pop3Session(options({ externalIdentity: undefined })))).toContain('SASL PLAIN GSSAPI');
    expect(capa(new Pop3Session(options({ saslMechanisms: ['PLAIN'] })))).toContain('SASL PLAIN');
  });

  it('is never advertised on plaintext, even with allowPlaintextAuth', () => {
    const s = new Pop3Session(stlsOptions({ allowPlaintextAuth: true }));
    expect(capa(s)).toContain('SASL PLAIN GSSAPI');
  });

  it('after STLS, follows the identity the host passed to tlsStarted', () => {
    const withCert = new Pop3Session(stlsOptions());
    expect(capa(withCert)).toContain('SASL GSSAPI');
    feed(withCert, 'STLS');
    withCert.tlsStarted({ externalIdentity: IDENTITY });
    expect(capa(withCert)).toContain('SASL EXTERNAL PLAIN GSSAPI');
    expect(feed(withCert, 'AUTH EXTERNAL =')).toEqual(external(''));

    const without = new Pop3Session(stlsOptions());
    feed(without, 'STLS');
    without.tlsStarted();
    expect(capa(without)).toContain('SASL PLAIN GSSAPI');
    expect(feed(without, 'AUTH EXTERNAL =')).toEqual(err('NO_CLIENT_CERTIFICATE'));
  });

  it('is not offered on KPOP sessions', () => {
    const s = new Pop3Session(options({ tls: false, externalIdentity: undefined, kerberosPrincipal: 'alice@EXAMPLE.COM' }));
    expect(capa(s).some((c) => c.startsWith('SASL'))).toBe(false);
    expect(feed(s, 'AUTH EXTERNAL =')).toEqual(err('UNSUPPORTED_MECHANISM'));
  });
});

describe('EXTERNAL: exchange', () => {
  it('"=" is an empty authzid: act as the certificate user', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'AUTH EXTERNAL =')).toEqual(external(''));
    expect(s.awaiting).toBe('login');
    expect(s.username).toBe(IDENTITY);
  });

  it('passes a requested authzid on for the host to check', () => {
    const s = new Pop3Session(options());
    expect(feed(s, `auth external ${b64('alice')}`)).toEqual(external('alice'));
    const t = new Pop3Session(options());
    expect(feed(t, `AUTH EXTERNAL ${b64('shared-mailbox')}`)).toEqual(external('shared-mailbox'));
    expect(t.username).toBe(IDENTITY);
    const u = new Pop3Session(options());
    expect(feed(u, `AUTH EXTERNAL ${b64('j\u00fcrgen')}`)).toEqual(external('j\u00fcrgen'));
  });

  it('without an initial response, sends "+ " and reads the authzid from the next line', () => {
    for (const [line, requested] of [['', ''], ['=', ''], [b64('bob'), 'bob']] as const) {
      const s = new Pop3Session(options());
      expect(feed(s, 'AUTH EXTERNAL')).toEqual([{ kind: 'reply', line: '+ ' }]);
      expect(s.state).toBe('SASL');
      expect(s.maskLine(Buffer.from(line))).toBe('***');
      expect(feed(s, line)).toEqual(external(requested));
    }
  });

  it('"*" cancels', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH EXTERNAL');
    expect(feed(s, '*')).toEqual(err('AUTH_CANCELLED'));
    expect(s.state).toBe('AUTHORIZATION');
  });

  it.each([
    ['AUTH EXTERNAL not*base64', 'BAD_BASE64'],
    [`AUTH EXTERNAL ${b64('a\r\nDELE 1')}`, 'BAD_CHARACTERS'],
    [`AUTH EXTERNAL ${b64('a\0b')}`, 'BAD_CHARACTERS'],
    [`AUTH EXTERNAL ${b64(Buffer.from([0xff, 0xfe]))}`, 'BAD_CHARACTERS'],
    ['AUTH EXTERNAL = =', 'BAD_SYNTAX'],
    ['AUTH EXTERNAL ', 'BAD_SYNTAX'],
  ] as const)('refuses %j with %s', (line, code) => {
    const s = new Pop3Session(options());
    expect(feed(s, line)).toEqual(err(code));
    expect(s.counters).toEqual({ errors: 1, authFailures: 0 });
  });

  it('refuses bad continuation lines like the initial response', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    for (const [line, code] of [['!!', 'BAD_BASE64'], [b64('x\ny'), 'BAD_CHARACTERS']] as const) {
      feed(s, 'AUTH EXTERNAL');
      expect(feed(s, line)).toEqual(err(code));
    }
  });

  it('without a certificate identity, or on plaintext, answers NO_CLIENT_CERTIFICATE ([AUTH], a protocol error)', () => {
    expect(errorReply('NO_CLIENT_CERTIFICATE')).toMatch(/^-ERR \[AUTH\] /);
    const s = new Pop3Session(options({ externalIdentity: undefined }));
    expect(feed(s, 'AUTH EXTERNAL =')).toEqual(err('NO_CLIENT_CERTIFICATE'));
    expect(feed(s, 'AUTH EXTERNAL')).toEqual(err('NO_CLIENT_CERTIFICATE'));
    expect(s.counters).toEqual({ errors: 2, authFailures: 0 });
    const plain = new Pop3Session(stlsOptions({ allowPlaintextAuth: true }));
    expect(feed(plain, 'AUTH EXTERNAL =')).toEqual(err('NO_CLIENT_CERTIFICATE'));
  });

  it('is unsupported when not configured, certificate or not', () => {
    const s = new Pop3Session(options({ saslMechanisms: ['PLAIN'] }));
    expect(feed(s, 'AUTH EXTERNAL =')).toEqual(err('UNSUPPORTED_MECHANISM'));
  });

  it('a refused EXTERNAL login spends an attempt and may be retried', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, `AUTH EXTERNAL ${b64('root')}`);
    expect(s.loginFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    expect(credentialsOf(feed(s, 'AUTH EXTERNAL ='))).toEqual({ mechanism: 'EXTERNAL', requestedUser: '' });
    expect(s.loginSucceeded('+OK Logged in.')).toEqual([{ kind: 'reply', line: '+OK Logged in.' }, { kind: 'relay' }]);
  });

  it('masks the initial response in logs', () => {
    const s = new Pop3Session(options());
    expect(s.maskLine(Buffer.from(`AUTH EXTERNAL ${b64('alice')}`))).toBe('AUTH EXTERNAL ***');
  });
});
