/**
 * KPOP sessions: the host ran krb5_sendauth before the greeting and passes
 * the authenticated principal as `kerberosPrincipal`. The session then takes
 * USER/PASS on any channel, ignores the PASS value and emits KPOP credentials.
 */
import { describe, expect, it } from 'vitest';
import { errorReply } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action, Pop3SessionOptions } from '../../src/pop3/types.js';
import { capaOf, credentialsOf, errActions, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

const PRINCIPAL = 'alice@EXAMPLE.COM';

function options(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  // A KPOP listener: plaintext, no password auth allowed, every mechanism configured.
  return sessionOptions({ stlsAvailable: false, greeting: 'popgate KPOP ready', kerberosPrincipal: PRINCIPAL, ...over });
}

const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line);
const err = errActions;
const capa = capaOf;

describe('KPOP: options', () => {
  it('greets as usual', () => {
    expect(new Pop3Session(options()).greet()).toEqual([{ kind: 'reply', line: '+OK popgate KPOP ready' }]);
  });

  it.each(['', 'alice\r\n@EXAMPLE.COM', 'alice\0', 'a\nb'])('rejects kerberosPrincipal %j', (principal) => {
    expect(() => new Pop3Session(options({ kerberosPrincipal: principal }))).toThrow(RangeError);
  });
});

describe('KPOP: CAPA', () => {
  it('lists USER, no STLS and no SASL, whatever the listener settings', () => {
    const expected = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'USER', 'IMPLEMENTATION popgate'];
    expect(capa(new Pop3Session(options()))).toEqual(expected);
    // Even where STLS and password mechanisms would otherwise be offered.
    expect(capa(new Pop3Session(options({ stlsAvailable: true, allowPlaintextAuth: true })))).toEqual(expected);
    expect(capa(new Pop3Session(options({ tls: true })))).toEqual(expected);
  });

  it('differs from the same listener without Kerberos, which offers neither USER nor PLAIN/LOGIN', () => {
    const caps = capa(new Pop3Session(options({ kerberosPrincipal: undefined })));
    expect(caps).not.toContain('USER');
    expect(caps).toContain('SASL GSSAPI');
  });
});

describe('KPOP: USER/PASS', () => {
  it('USER then PASS krb_ticket (fetchmail) emits KPOP credentials, without TLS', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'USER alice')).toEqual([{ kind: 'reply', line: '+OK' }]);
    expect(s.username).toBe('alice');
    const r = feed(s, 'PASS krb_ticket');
    expect(r).toEqual([{ kind: 'authenticate', credentials: { mechanism: 'KPOP', principal: PRINCIPAL, requestedUser: 'alice' } }]);
    expect(s.state).toBe('LOGIN_PENDING');
    expect(s.awaiting).toBe('login');
    expect(s.loginSucceeded('+OK Logged in.')).toEqual([{ kind: 'reply', line: '+OK Logged in.' }, { kind: 'relay' }]);
  });

  it.each(['PASS', 'PASS ', 'pass anything at all', 'PASS  spaced  '])('accepts %j: the PASS value is ignored', (line) => {
    const s = new Pop3Session(options());
    feed(s, 'user alice');
    expect(credentialsOf(feed(s, line))).toEqual({ mechanism: 'KPOP', principal: PRINCIPAL, requestedUser: 'alice' });
  });

  it('passes the requested user on unchecked: matching it against the principal is the host\'s job', () => {
    const s = new Pop3Session(options());
    feed(s, 'USER bob');
    expect(credentialsOf(feed(s, 'PASS krb_ticket'))).toEqual({ mechanism: 'KPOP', principal: PRINCIPAL, requestedUser: 'bob' });
  });

  it('needs USER before PASS, and a USER is used once', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'PASS krb_ticket')).toEqual(err('BAD_SEQUENCE'));
    feed(s, 'USER alice');
    feed(s, 'PASS krb_ticket');
    expect(s.loginFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    expect(feed(s, 'PASS krb_ticket')).toEqual(err('BAD_SEQUENCE'));
    expect(s.counters).toEqual({ errors: 2, authFailures: 1 });
  });

  it('refuses bad user names like any USER', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    expect(feed(s, 'USER')).toEqual(err('BAD_SYNTAX'));
    expect(feed(s, 'USER a\rb')).toEqual(err('BAD_CHARACTERS'));
    expect(feed(s, 'USER a\0b')).toEqual(err('BAD_CHARACTERS'));
    expect(s.feedLine(Buffer.from('USER \xff', 'latin1'))).toEqual(err('BAD_CHARACTERS'));
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('a PASS line with a NUL is still refused at parse level, before the value is ignored', () => {
    const s = new Pop3Session(options());
    feed(s, 'USER alice');
    expect(feed(s, 'PASS krb\0ticket')).toEqual(err('BAD_CHARACTERS'));
  });

  it('failed logins spend the attempt budget; the last one closes', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, 'USER alice');
    feed(s, 'PASS krb_ticket');
    expect(s.loginFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    feed(s, 'USER root');
    feed(s, 'PASS krb_ticket');
    expect(s.loginFailed('AUTH_FAILED')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
  });

  it('Heimdal push pipelines USER, PASS and STAT: the login is emitted and STAT stays buffered for the relay', () => {
    const framer = new LineFramer();
    const s = new Pop3Session(options());
    const out: Pop3Action[] = [...s.greet()];
    framer.push(Buffer.from('USER u\r\nPASS x\r\nSTAT\r\n'));
    while (s.awaiting === undefined) {
      const r = framer.next(s.lineLimit);
      if (r?.kind !== 'line') break;
      out.push(...s.feedLine(r.line));
    }
    expect(out).toEqual([
      { kind: 'reply', line: '+OK popgate KPOP ready' },
      { kind: 'reply', line: '+OK' },
      { kind: 'authenticate', credentials: { mechanism: 'KPOP', principal: PRINCIPAL, requestedUser: 'u' } },
    ]);
    expect(s.loginSucceeded('+OK')).toEqual([{ kind: 'reply', line: '+OK' }, { kind: 'relay' }]);
    expect(framer.takeBuffered().toString()).toBe('STAT\r\n');
  });
});

describe('KPOP: STLS and AUTH are refused', () => {
  it('refuses STLS with TLS_UNAVAILABLE, even when the listener could upgrade', () => {
    const s = new Pop3Session(options({ stlsAvailable: true }));
    expect(feed(s, 'STLS')).toEqual(err('TLS_UNAVAILABLE'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.tls).toBe(false);
    expect(new Pop3Session(options()).feedLine(Buffer.from('STLS'))).toEqual(err('TLS_UNAVAILABLE'));
    expect(feed(new Pop3Session(options({ tls: true })), 'STLS')).toEqual(err('TLS_ALREADY_ACTIVE'));
  });

  it('a USER given before a refused STLS is kept (nothing was reset)', () => {
    const s = new Pop3Session(options({ stlsAvailable: true }));
    feed(s, 'USER alice');
    feed(s, 'STLS');
    expect(credentialsOf(feed(s, 'PASS krb_ticket'))).toMatchObject({ mechanism: 'KPOP', requestedUser: 'alice' });
  });

  it.each(['AUTH GSSAPI', 'AUTH GSSAPI YII=', 'AUTH PLAIN', 'AUTH PLAIN AGFsaWNlAHB3', 'AUTH LOGIN', 'AUTH CRAM-MD5'])(
    'refuses %j with UNSUPPORTED_MECHANISM',
    (line) => {
      const s = new Pop3Session(options({ allowPlaintextAuth: true, tls: true }));
      expect(feed(s, line)).toEqual(err('UNSUPPORTED_MECHANISM'));
      expect(s.state).toBe('AUTHORIZATION');
      expect(s.gssInProgress).toBe(false);
    },
  );

  it('a bare AUTH lists no mechanism, as CAPA lists no SASL', () => {
    expect(replies(feed(new Pop3Session(options()), 'AUTH'))).toEqual(['+OK Available mechanisms', '.']);
  });
});
