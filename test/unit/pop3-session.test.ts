import { describe, expect, it } from 'vitest';
import { errorReply, type ErrorCode } from '../../src/errors.js';
import { buildCapabilities } from '../../src/pop3/capa.js';
import { LineFramer } from '../../src/pop3/framer.js';
import { Pop3Session } from '../../src/pop3/session.js';
import {
  isChallengeCredentials,
  isKerberosCredentials,
  isPasswordCredentials,
  type Pop3Action,
  type Pop3SessionOptions,
} from '../../src/pop3/types.js';
import { capaOf, credentialsOf, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

function options(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  // A pop3s listener with the password mechanisms only.
  return sessionOptions({ tls: true, stlsAvailable: false, saslMechanisms: ['PLAIN', 'LOGIN'], ...over });
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line);
const kinds = (actions: Pop3Action[]): string[] => actions.map((a) => a.kind);
const capa = capaOf;

/** A minimal host: framer + session, obeying the host contract of Pop3Session. */
class TestHost {
  readonly framer = new LineFramer();
  readonly session: Pop3Session;
  readonly fed: string[] = [];
  readonly out: Pop3Action[] = [];
  discarded = 0;
  constructor(opts: Pop3SessionOptions) {
    this.session = new Pop3Session(opts);
    this.out.push(...this.session.greet());
  }
  receive(data: string): void {
    this.framer.push(Buffer.from(data, 'latin1'));
    this.pump();
  }
  pump(): void {
    while (this.session.awaiting === undefined && this.session.state !== 'CLOSED' && this.session.state !== 'RELAY') {
      const r = this.framer.next(this.session.lineLimit);
      if (!r) return;
      if (r.kind === 'overflow') {
        this.handle(this.session.overflow());
        return;
      }
      this.fed.push(r.line.toString('latin1'));
      this.handle(this.session.feedLine(r.line));
    }
  }
  handle(actions: Pop3Action[]): void {
    for (const a of actions) {
      this.out.push(a);
      if (a.kind === 'startTls') {
        // The host's duty: plaintext after STLS is never interpreted.
        this.discarded += this.framer.discardBuffered();
        this.session.tlsStarted();
      }
    }
  }
}

describe('Pop3Session: greeting and basics', () => {
  it('greets with +OK and the configured text', () => {
    const s = new Pop3Session(options());
    expect(s.greet()).toEqual([{ kind: 'reply', line: '+OK popgate ready' }]);
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.awaiting).toBeUndefined();
  });

  it('never puts CR/LF from the configured greeting on the wire', () => {
    const s = new Pop3Session(options({ greeting: 'hi\r\n-ERR x' }));
    expect(replies(s.greet())).toEqual(['+OK hi  -ERR x']);
  });

  it('answers NOOP and QUIT; after QUIT nothing more is processed', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'noop')).toEqual([{ kind: 'reply', line: '+OK' }]);
    const q = feed(s, 'Quit');
    expect(replies(q)).toEqual(['+OK Bye']);
    expect(q.at(-1)).toEqual({ kind: 'close', reason: 'QUIT' });
    expect(s.state).toBe('CLOSED');
    expect(feed(s, 'CAPA')).toEqual([]);
    expect(s.overflow()).toEqual([]);
    expect(s.timeout()).toEqual([]);
    expect(s.greet()).toEqual([]);
  });

  it('rejects invalid option values', () => {
    expect(() => new Pop3Session(options({ maxErrors: 0 }))).toThrow(RangeError);
    expect(() => new Pop3Session(options({ maxSaslLine: 1.5 }))).toThrow(RangeError);
  });
});

describe('Pop3Session: CAPA per channel', () => {
  it('on TLS advertises USER and SASL, not STLS', () => {
    const s = new Pop3Session(options({ tls: true, stlsAvailable: true }));
    expect(capa(s)).toEqual(['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'USER', 'SASL PLAIN LOGIN', 'IMPLEMENTATION popgate']);
  });

  it('on plaintext with STLS hides password auth and offers STLS', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true }));
    const caps = capa(s);
    expect(caps).toContain('STLS');
    expect(caps).not.toContain('USER');
    expect(caps.some((c) => c.startsWith('SASL'))).toBe(false);
    expect(caps).toEqual(expect.arrayContaining(['RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'TOP', 'UIDL']));
  });

  it('on plaintext without STLS offers neither', () => {
    const caps = capa(new Pop3Session(options({ tls: false, stlsAvailable: false })));
    expect(caps).not.toContain('STLS');
    expect(caps).not.toContain('USER');
  });

  it('on plaintext with allowPlaintextAuth offers USER and SASL', () => {
    const caps = capa(new Pop3Session(options({ tls: false, allowPlaintextAuth: true, stlsAvailable: true })));
    expect(caps).toEqual(expect.arrayContaining(['USER', 'SASL PLAIN LOGIN', 'STLS']));
  });

  it('lists only configured mechanisms and omits the SASL line when none', () => {
    expect(capa(new Pop3Session(options({ saslMechanisms: ['LOGIN'] })))).toContain('SASL LOGIN');
    expect(capa(new Pop3Session(options({ saslMechanisms: [] }))).some((c) => c.startsWith('SASL'))).toBe(false);
  });

  it('omits IMPLEMENTATION when unset', () => {
    const { implementation: _omit, ...rest } = options();
    expect(capa(new Pop3Session(rest)).some((c) => c.startsWith('IMPLEMENTATION'))).toBe(false);
  });

  it('never passes through backend capabilities it decides itself or that would break the list', () => {
    const caps = buildCapabilities({
      ...options({ tls: false, implementation: undefined }),
      backendCapabilities: ['TOP', 'STLS', 'SASL GSSAPI', 'USER', '.', '.hidden', 'BAD\r\nCAP', 'top', '', 'LOGIN-DELAY 900'],
    });
    expect(caps).toEqual(['TOP', 'LOGIN-DELAY 900', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']);
  });

  it('rejects CAPA with an argument', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'CAPA x'))).toEqual([errorReply('BAD_SYNTAX')]);
  });
});

describe('Pop3Session: STLS', () => {
  it('starts TLS, waits, then resets to AUTHORIZATION with USER forgotten', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true, allowPlaintextAuth: true }));
    expect(replies(feed(s, 'USER alice'))).toEqual(['+OK']);
    const r = feed(s, 'stls');
    expect(r).toEqual([{ kind: 'reply', line: '+OK Begin TLS negotiation' }, { kind: 'startTls' }]);
    expect(s.state).toBe('TLS_PENDING');
    expect(s.awaiting).toBe('tls');
    expect(() => feed(s, 'CAPA')).toThrow(/TLS_PENDING/);
    s.tlsStarted();
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.awaiting).toBeUndefined();
    expect(s.tls).toBe(true);
    expect(replies(feed(s, 'PASS secret'))).toEqual([errorReply('BAD_SEQUENCE')]);
    expect(capa(s)).not.toContain('STLS');
  });

  it('refuses STLS when TLS is active or unavailable', () => {
    expect(replies(feed(new Pop3Session(options({ tls: true, stlsAvailable: true })), 'STLS'))).toEqual([
      errorReply('TLS_ALREADY_ACTIVE'),
    ]);
    expect(replies(feed(new Pop3Session(options({ tls: false, stlsAvailable: false })), 'STLS'))).toEqual([
      errorReply('TLS_UNAVAILABLE'),
    ]);
    expect(replies(feed(new Pop3Session(options({ tls: false, stlsAvailable: true })), 'STLS now'))).toEqual([
      errorReply('BAD_SYNTAX'),
    ]);
  });

  it('with the host discarding buffered bytes, a CAPA pipelined behind STLS is never dispatched', () => {
    const host = new TestHost(options({ tls: false, stlsAvailable: true }));
    host.receive('STLS\r\nCAPA\r\n');
    expect(host.fed).toEqual(['STLS']);
    expect(host.discarded).toBe(6);
    expect(replies(host.out)).toEqual(['+OK popgate ready', '+OK Begin TLS negotiation']);
    expect(host.session.state).toBe('AUTHORIZATION');
    host.receive('CAPA\r\n');
    expect(host.fed).toEqual(['STLS', 'CAPA']);
    expect(replies(host.out)).toContain('USER');
  });

  it('injected plaintext credentials after STLS never reach authentication', () => {
    const host = new TestHost(options({ tls: false, stlsAvailable: true }));
    host.receive(`STLS\r\nUSER mallory\r\nPASS x\r\nAUTH PLAIN ${b64('\0mallory\0x')}\r\n`);
    expect(host.out.some((a) => a.kind === 'authenticate')).toBe(false);
    expect(host.session.username).toBeUndefined();
  });
});

describe('Pop3Session: plaintext policy', () => {
  it('refuses USER, PASS and AUTH PLAIN/LOGIN before TLS', () => {
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true, maxErrors: 10 }));
    const denied = errorReply('PLAINTEXT_AUTH_DISALLOWED');
    expect(denied).toMatch(/^-ERR \[AUTH\] /);
    expect(replies(feed(s, 'USER alice'))).toEqual([denied]);
    expect(replies(feed(s, 'PASS secret'))).toEqual([denied]);
    expect(replies(feed(s, 'AUTH PLAIN'))).toEqual([denied]);
    expect(replies(feed(s, `AUTH PLAIN ${b64('\0alice\0secret')}`))).toEqual([denied]);
    expect(replies(feed(s, 'AUTH LOGIN'))).toEqual([denied]);
    expect(s.username).toBeUndefined();
    expect(replies(feed(s, 'AUTH'))).toEqual(['+OK Available mechanisms', '.']);
  });

  it('accepts them on plaintext when allowPlaintextAuth is set', () => {
    const s = new Pop3Session(options({ tls: false, allowPlaintextAuth: true }));
    feed(s, 'USER alice');
    expect(credentialsOf(feed(s, 'PASS secret'))).toEqual({ mechanism: 'USER', username: 'alice', password: 'secret' });
  });
});

describe('Pop3Session: USER/PASS', () => {
  it('emits authenticate with the whole rest of the line as password', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'USER alice'))).toEqual(['+OK']);
    expect(s.username).toBe('alice');
    const r = feed(s, 'PASS  correct horse battery ');
    expect(kinds(r)).toEqual(['authenticate']);
    expect(credentialsOf(r)).toEqual({ mechanism: 'USER', username: 'alice', password: ' correct horse battery ' });
    expect(s.state).toBe('LOGIN_PENDING');
    expect(s.awaiting).toBe('login');
    expect(() => feed(s, 'NOOP')).toThrow();
  });

  it('needs USER before PASS, and a USER is used once', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'PASS secret'))).toEqual([errorReply('BAD_SEQUENCE')]);
    feed(s, 'USER alice');
    feed(s, 'PASS wrong');
    expect(replies(s.loginFailed('AUTH_FAILED'))).toEqual([errorReply('AUTH_FAILED')]);
    expect(replies(feed(s, 'PASS again'))).toEqual([errorReply('BAD_SEQUENCE')]);
  });

  it('rejects empty names and passwords, and CR/LF/NUL in them', () => {
    const s = new Pop3Session(options({ maxErrors: 20 }));
    expect(replies(feed(s, 'USER'))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(replies(feed(s, 'USER a\rb'))).toEqual([errorReply('BAD_CHARACTERS')]);
    expect(replies(feed(s, 'USER a\0b'))).toEqual([errorReply('BAD_CHARACTERS')]);
    expect(replies(s.feedLine(Buffer.from([0x55, 0x53, 0x45, 0x52, 0x20, 0xff])))).toEqual([errorReply('BAD_CHARACTERS')]);
    feed(s, 'USER alice');
    expect(replies(feed(s, 'PASS'))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(replies(feed(s, 'PASS se\rcret'))).toEqual([errorReply('BAD_CHARACTERS')]);
    expect(replies(feed(s, 'PASS se\0cret'))).toEqual([errorReply('BAD_CHARACTERS')]);
    expect(s.state).toBe('AUTHORIZATION');
  });
});

describe('Pop3Session: AUTH PLAIN', () => {
  it('with an initial response authenticates directly', () => {
    const s = new Pop3Session(options());
    const r = feed(s, `AUTH PLAIN ${b64('\0alice\0s3cret pw')}`);
    expect(credentialsOf(r)).toEqual({ mechanism: 'PLAIN', username: 'alice', password: 's3cret pw' });
    expect(s.username).toBe('alice');
  });

  it('without an initial response sends "+ " and raises the line limit until the response', () => {
    const s = new Pop3Session(options());
    expect(s.lineLimit).toBe(255);
    expect(feed(s, 'auth plain')).toEqual([{ kind: 'reply', line: '+ ' }]);
    expect(s.state).toBe('SASL');
    expect(s.lineLimit).toBe(8192);
    expect(s.maskLine(Buffer.from(b64('\0alice\0pw')))).toBe('***');
    const r = feed(s, b64('\0alice\0pw'));
    expect(credentialsOf(r)).toEqual({ mechanism: 'PLAIN', username: 'alice', password: 'pw' });
    expect(s.lineLimit).toBe(255);
  });

  it('accepts authzid equal to authcid and passes it on', () => {
    const s = new Pop3Session(options());
    expect(credentialsOf(feed(s, `AUTH PLAIN ${b64('alice\0alice\0pw')}`))).toEqual({
      mechanism: 'PLAIN',
      username: 'alice',
      authzid: 'alice',
      password: 'pw',
    });
  });

  it('refuses a different authzid as a failed login without verification', () => {
    const s = new Pop3Session(options());
    const r = feed(s, `AUTH PLAIN ${b64('root\0alice\0pw')}`);
    expect(r).toEqual([{ kind: 'reply', line: errorReply('AUTH_FAILED') }]);
    expect(s.counters).toEqual({ errors: 0, authFailures: 1 });
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('"=" is an empty initial response (a malformed PLAIN message)', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH PLAIN ='))).toEqual([errorReply('BAD_SYNTAX')]);
  });

  it('rejects bad base64 in the initial response and in the continuation', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH PLAIN not*base64'))).toEqual([errorReply('BAD_BASE64')]);
    feed(s, 'AUTH PLAIN');
    expect(replies(feed(s, 'AGFsaWNlAHB3'.slice(0, 11)))).toEqual([errorReply('BAD_BASE64')]);
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('rejects a wrong number of fields', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, `AUTH PLAIN ${b64('alice\0pw')}`))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(replies(feed(s, `AUTH PLAIN ${b64('alice')}`))).toEqual([errorReply('BAD_SYNTAX')]);
  });

  it('rejects CR, LF and NUL injected into fields', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    for (const msg of ['\0alice\r\nDELE 1\0pw', '\0alice\0p\nw', '\0alice\0p\rw', '\0ali\0ce\0pw', 'x\ny\0alice\0pw']) {
      expect(replies(feed(s, `AUTH PLAIN ${b64(msg)}`))).toEqual([errorReply('BAD_CHARACTERS')]);
    }
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('rejects extra tokens after the initial response', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH PLAIN AAAA AAAA'))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(replies(feed(s, 'AUTH PLAIN '))).toEqual([errorReply('BAD_SYNTAX')]);
  });

  it('"*" cancels the exchange', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH PLAIN');
    expect(s.maskLine(Buffer.from('*'))).toBe('*');
    expect(replies(feed(s, '*'))).toEqual([errorReply('AUTH_CANCELLED')]);
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.lineLimit).toBe(255);
  });

  it('a continuation line is never read as a command', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH PLAIN');
    // 'CAPA' happens to be valid base64: it is decoded as a (malformed) PLAIN message.
    expect(replies(feed(s, 'CAPA'))).toEqual([errorReply('BAD_SYNTAX')]);
    feed(s, 'AUTH PLAIN');
    expect(replies(feed(s, 'QUIT now'))).toEqual([errorReply('BAD_BASE64')]);
    expect(s.state).toBe('AUTHORIZATION');
  });
});

describe('Pop3Session: AUTH LOGIN and mechanism handling', () => {
  it('runs the two-step LOGIN exchange', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH LOGIN'))).toEqual(['+ VXNlcm5hbWU6']);
    expect(s.lineLimit).toBe(8192);
    expect(replies(feed(s, b64('alice')))).toEqual(['+ UGFzc3dvcmQ6']);
    expect(s.username).toBe('alice');
    expect(s.state).toBe('SASL');
    const r = feed(s, b64('pass word'));
    expect(credentialsOf(r)).toEqual({ mechanism: 'LOGIN', username: 'alice', password: 'pass word' });
    expect(s.awaiting).toBe('login');
  });

  it('takes the user name as initial response', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, `AUTH LOGIN ${b64('bob')}`))).toEqual(['+ UGFzc3dvcmQ6']);
    expect(credentialsOf(feed(s, b64('pw')))).toMatchObject({ mechanism: 'LOGIN', username: 'bob', password: 'pw' });
  });

  it('can be cancelled at the password step', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH LOGIN');
    feed(s, b64('alice'));
    expect(replies(feed(s, '*'))).toEqual([errorReply('AUTH_CANCELLED')]);
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('rejects CR/LF/NUL and empty values in LOGIN steps', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    feed(s, 'AUTH LOGIN');
    expect(replies(feed(s, b64('alice\r\nRETR 1')))).toEqual([errorReply('BAD_CHARACTERS')]);
    feed(s, 'AUTH LOGIN');
    feed(s, b64('alice'));
    expect(replies(feed(s, b64('p\0w')))).toEqual([errorReply('BAD_CHARACTERS')]);
    expect(replies(feed(s, 'AUTH LOGIN ='))).toEqual([errorReply('BAD_SYNTAX')]);
    feed(s, 'AUTH LOGIN');
    feed(s, b64('alice'));
    expect(replies(feed(s, ''))).toEqual([errorReply('BAD_SYNTAX')]);
  });

  it('answers unknown or disabled mechanisms with UNSUPPORTED_MECHANISM', () => {
    const s = new Pop3Session(options({ saslMechanisms: ['PLAIN'] }));
    expect(replies(feed(s, 'AUTH CRAM-MD5'))).toEqual([errorReply('UNSUPPORTED_MECHANISM')]);
    expect(replies(feed(s, 'AUTH LOGIN'))).toEqual([errorReply('UNSUPPORTED_MECHANISM')]);
  });

  it('lists usable mechanisms for a bare AUTH', () => {
    const s = new Pop3Session(options());
    expect(replies(feed(s, 'AUTH'))).toEqual(['+OK Available mechanisms', 'PLAIN', 'LOGIN', '.']);
  });
});

describe('Pop3Session: dispatch and error budget', () => {
  it('answers transaction commands before login with BAD_SEQUENCE', () => {
    const s = new Pop3Session(options({ maxErrors: 20 }));
    for (const verb of ['STAT', 'LIST', 'RETR 1', 'DELE 1', 'RSET', 'TOP 1 0', 'UIDL', 'LAST']) {
      expect(replies(feed(s, verb))).toEqual([errorReply('BAD_SEQUENCE')]);
    }
  });

  it('answers unknown commands and malformed lines', () => {
    const s = new Pop3Session(options({ maxErrors: 20 }));
    expect(replies(feed(s, 'APOP alice 0123'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(replies(feed(s, 'XYZZY'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(replies(feed(s, ''))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(replies(feed(s, '\tCAPA'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
  });

  it('closes with TOO_MANY_ERRORS on the maxErrors-th error', () => {
    const s = new Pop3Session(options({ maxErrors: 3 }));
    expect(replies(feed(s, 'BOGUS'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(replies(feed(s, 'NOOP'))).toEqual(['+OK']);
    expect(replies(feed(s, 'RETR 1'))).toEqual([errorReply('BAD_SEQUENCE')]);
    const last = feed(s, 'BOGUS');
    expect(last).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_ERRORS') },
      { kind: 'close', reason: 'TOO_MANY_ERRORS' },
    ]);
    expect(s.state).toBe('CLOSED');
    expect(feed(s, 'NOOP')).toEqual([]);
  });

  it('counts SASL errors too', () => {
    const s = new Pop3Session(options({ maxErrors: 2 }));
    feed(s, 'AUTH PLAIN');
    expect(replies(feed(s, '!!!'))).toEqual([errorReply('BAD_BASE64')]);
    feed(s, 'AUTH PLAIN');
    expect(kinds(feed(s, '*'))).toEqual(['reply', 'close']);
  });

  it('overflow and timeout reply and close', () => {
    const a = new Pop3Session(options());
    expect(a.overflow()).toEqual([{ kind: 'reply', line: errorReply('LINE_TOO_LONG') }, { kind: 'close', reason: 'LINE_TOO_LONG' }]);
    expect(a.state).toBe('CLOSED');
    const b = new Pop3Session(options());
    feed(b, 'AUTH LOGIN');
    expect(b.timeout()).toEqual([{ kind: 'reply', line: errorReply('PREAUTH_TIMEOUT') }, { kind: 'close', reason: 'PREAUTH_TIMEOUT' }]);
  });

  it('a host feeding an over-long line gets overflow through the framer', () => {
    const host = new TestHost(options());
    host.receive(`USER ${'x'.repeat(300)}`);
    expect(replies(host.out).at(-1)).toBe(errorReply('LINE_TOO_LONG'));
    expect(host.session.state).toBe('CLOSED');
  });

  it('the SASL cap applies to the continuation line only', () => {
    const host = new TestHost(options());
    const big = b64(`\0alice\0${'p'.repeat(2000)}`);
    host.receive(`AUTH PLAIN\r\n${big}\r\n`);
    expect(host.out.some((a) => a.kind === 'authenticate')).toBe(true);
    const host2 = new TestHost(options());
    host2.receive(`AUTH PLAIN ${big}\r\n`);
    expect(replies(host2.out).at(-1)).toBe(errorReply('LINE_TOO_LONG'));
  });
});

describe('Pop3Session: login outcomes', () => {
  function pending(over: Partial<Pop3SessionOptions> = {}): Pop3Session {
    const s = new Pop3Session(options(over));
    feed(s, 'USER alice');
    feed(s, 'PASS pw');
    expect(s.awaiting).toBe('login');
    return s;
  }

  it('loginSucceeded forwards the backend +OK line then relays', () => {
    const s = pending();
    expect(s.loginSucceeded('+OK Logged in.')).toEqual([{ kind: 'reply', line: '+OK Logged in.' }, { kind: 'relay' }]);
    expect(s.state).toBe('RELAY');
    expect(s.awaiting).toBeUndefined();
    expect(() => feed(s, 'STAT')).toThrow();
    expect(s.timeout()).toEqual([]);
  });

  it('loginSucceeded never forwards a multi-line or negative reply', () => {
    expect(replies(pending().loginSucceeded('+OK a\r\n-ERR b'))).toEqual(['+OK Logged in']);
    expect(replies(pending().loginSucceeded('-ERR no'))).toEqual(['+OK Logged in']);
    // Nor one longer than RFC 2449's 512 octets (a backend may send up to 2048).
    expect(replies(pending().loginSucceeded(`+OK ${'x'.repeat(600)}`))).toEqual(['+OK Logged in']);
  });

  it('loginFailed(AUTH_FAILED) replies [AUTH] and lets the client retry', () => {
    const s = pending();
    expect(s.loginFailed('AUTH_FAILED')).toEqual([{ kind: 'reply', line: '-ERR [AUTH] Authentication failed' }]);
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters.authFailures).toBe(1);
    expect(s.counters.errors).toBe(0);
  });

  it('closes with TOO_MANY_AUTH_ATTEMPTS on the maxAuthAttempts-th failure', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, 'USER alice');
    feed(s, 'PASS a');
    expect(kinds(s.loginFailed('AUTH_FAILED'))).toEqual(['reply']);
    feed(s, `AUTH PLAIN ${b64('\0alice\0b')}`);
    expect(s.loginFailed('AUTH_FAILED')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
    expect(s.state).toBe('CLOSED');
  });

  it('authzid refusals and verifier failures share the attempt budget', () => {
    const s = new Pop3Session(options({ maxAuthAttempts: 2 }));
    feed(s, `AUTH PLAIN ${b64('root\0alice\0pw')}`);
    feed(s, 'USER alice');
    feed(s, 'PASS pw');
    expect(replies(s.loginFailed('AUTH_FAILED'))).toEqual([errorReply('TOO_MANY_AUTH_ATTEMPTS')]);
  });

  it('a temporary failure is not counted as an attempt and does not close', () => {
    const s = pending({ maxAuthAttempts: 1 });
    expect(s.loginFailed('VERIFIER_UNAVAILABLE')).toEqual([{ kind: 'reply', line: errorReply('VERIFIER_UNAVAILABLE') }]);
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters.authFailures).toBe(0);
  });

  it.each<ErrorCode>(['BACKEND_UNREACHABLE', 'BACKEND_IN_USE', 'NO_BACKEND_CREDENTIALS'])(
    'closes after %s (catalogue close: true)',
    (code) => {
      const s = pending();
      expect(s.loginFailed(code)).toEqual([{ kind: 'reply', line: errorReply(code) }, { kind: 'close', reason: code }]);
      expect(s.state).toBe('CLOSED');
    },
  );

  it('outcomes after a timeout are ignored; outcomes out of state are host bugs', () => {
    const s = pending();
    s.timeout();
    expect(s.loginSucceeded('+OK')).toEqual([]);
    expect(s.loginFailed('AUTH_FAILED')).toEqual([]);
    const t = new Pop3Session(options());
    expect(() => t.loginSucceeded('+OK')).toThrow(/INTERNAL/);
    expect(() => t.tlsStarted()).toThrow(/INTERNAL/);
  });
});

// ---------------------------------------------------------------------------
// Seeded random input: invariants hold whatever the client sends.

/** mulberry32: small, seedable, good enough to explore input space. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Pop3Session: seeded random input', () => {
  const SEEDS = [1, 2, 3, 42, 1337, 20240601];
  const LINES = 4000;
  const CORPUS = [
    'CAPA', 'STLS', 'USER alice', 'PASS secret', 'PASS two words', 'AUTH', 'AUTH PLAIN', 'AUTH LOGIN', 'AUTH CRAM-MD5',
    `AUTH PLAIN ${b64('\0alice\0secret')}`, `AUTH PLAIN ${b64('bob\0alice\0secret')}`, `AUTH LOGIN ${b64('alice')}`,
    'AUTH PLAIN =', b64('\0alice\0pw'), b64('alice'), b64('pw'), '*', '=', '', 'QUIT', 'NOOP', 'STAT', 'RETR 1',
    'TOP 1 10', 'UIDL', 'APOP alice c4c9334bac560ecc979e58001b3e22fb', 'capa', 'uSeR x',
    // APOP, CRAM-MD5 and EXTERNAL, good and bad.
    'APOP alice C4C9334BAC560ECC979E58001B3E22FB', 'APOP alice c4c9', 'APOP c4c9334bac560ecc979e58001b3e22fb', 'APOP',
    'AUTH CRAM-MD5 =', 'auth Cram-MD5', 'AUTH CRAM-MD5', `AUTH CRAM-MD5 ${b64('tim b913a602c7eda7a495b4e6e7334d3890')}`, 'auth external', 'AUTH EXTERNAL =',
    `AUTH EXTERNAL ${b64('alice')}`, `AUTH EXTERNAL ${b64('a\r\nb')}`, b64('tim b913a602c7eda7a495b4e6e7334d3890'),
    // GSSAPI: commands, context tokens and (wrapped) security-layer answers; the fake host decides what they mean.
    'AUTH GSSAPI', 'AUTH GSSAPI =', 'auth gssapi YIIBAgYJKoZIhvcSAQICAQBu', 'YIIBAgYJKoZIhvcSAQICAQBu',
    Buffer.from([5, 4, 0, 0xff, 1, 0, 0, 0]).toString('base64'), Buffer.from('\x01\0\0\0alice', 'latin1').toString('base64'),
  ];
  const GSS_FAIL_CODES: ErrorCode[] = ['AUTH_FAILED', 'AUTH_FAILED', 'VERIFIER_UNAVAILABLE', 'INTERNAL', 'BAD_SYNTAX'];
  const PRINCIPALS = ['alice@EXAMPLE.COM', 'bob@EXAMPLE.COM', 'evil\r\nDELE 1@EXAMPLE.COM', 'nul\0@EXAMPLE.COM'];
  /** Unwrapped security-layer answers a client might send, good and bad. */
  const LAYER_ANSWERS = [
    [1, 0, 0, 0, ...Buffer.from('alice')], [1, 0, 0, 0], [1, 0xff, 0xff, 0xff, ...Buffer.from('bob')],
    [2, 0, 0x10, 0], [4, 0, 0x10, 0], [7, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0], [1, 0, 0], [],
    [1, 0, 0, 0, ...Buffer.from('a\r\nb')], [1, 0, 0, 0, 0x61, 0], [1, 0, 0, 0, 0xff, 0xfe],
  ].map((bytes) => Buffer.from(bytes));
  const randomBytes = (rnd: () => number, max: number): Buffer =>
    Buffer.from(Array.from({ length: Math.floor(rnd() * max) }, () => Math.floor(rnd() * 256)));

  /** What a client sends inside an exchange: tokens, empty answers, cancels. */
  const CONTINUATIONS = [
    'YIIBAgYJKoZIhvcSAQICAQBu', Buffer.from([5, 4, 0, 0xff, 1, 0, 0, 0]).toString('base64'), b64('\x01\0\0\0alice'),
    b64('\0alice\0pw'), b64('alice'), '', '', '*', '=', 'not base64!',
    b64('tim b913a602c7eda7a495b4e6e7334d3890'), b64('tim B913A602C7EDA7A495B4E6E7334D3890'), b64('tim b913'),
    b64('t\rm b913a602c7eda7a495b4e6e7334d3890'), b64('b913a602c7eda7a495b4e6e7334d3890'),
  ];
  const APOP_TIMESTAMP = '<1896.697170952@dbc.mtview.ca.us>';
  const CERT_IDENTITY = 'dave';

  /** What a KPOP client (fetchmail) sends after the greeting. */
  const KPOP_LINES = ['USER alice', 'PASS krb_ticket', 'PASS', 'PASS ', 'USER', 'STLS', 'AUTH GSSAPI'];

  /** Answers to a CRAM-MD5 challenge, good and bad. */
  const CRAM_ANSWERS = [
    b64('tim b913a602c7eda7a495b4e6e7334d3890'), b64('tim B913A602C7EDA7A495B4E6E7334D3890'),
    b64('tim b913a602c7eda7a495b4e6e7334d3890'), b64('tim B913A602C7EDA7A495B4E6E7334D3890'), b64('tim b913'),
    b64('t\rm b913a602c7eda7a495b4e6e7334d3890'), b64('b913a602c7eda7a495b4e6e7334d3890'), '*', '', '=', 'not base64!',
  ];

  function randomLine(rnd: () => number, s: Pop3Session, kpop: boolean, cram = false): Buffer {
    // Favour plausible lines for the session's situation so deep steps are reached.
    if (s.state === 'SASL' && cram && rnd() < 0.8) return Buffer.from(CRAM_ANSWERS[Math.floor(rnd() * CRAM_ANSWERS.length)] ?? '', 'latin1');
    if (s.state === 'SASL' && rnd() < 0.8) return Buffer.from(CONTINUATIONS[Math.floor(rnd() * CONTINUATIONS.length)] ?? '', 'latin1');
    if (kpop && rnd() < 0.4) return Buffer.from(KPOP_LINES[Math.floor(rnd() * KPOP_LINES.length)] ?? '');
    const pick = rnd();
    if (pick < 0.15) {
      // Pure noise, any bytes.
      const len = Math.floor(rnd() * 40);
      return Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
    }
    const base = Buffer.from(CORPUS[Math.floor(rnd() * CORPUS.length)] ?? '', 'utf8');
    if (pick < 0.6) return base;
    // Mutations: flip, insert special bytes, truncate, duplicate.
    const bytes = [...base];
    const n = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(rnd() * (bytes.length + 1));
      const op = rnd();
      const special = [0x00, 0x0d, 0x0a, 0x20, 0x2a, 0x3d, 0xff, 0xc3, 0x09][Math.floor(rnd() * 9)] ?? 0;
      if (op < 0.3) bytes.splice(at, 1, Math.floor(rnd() * 256));
      else if (op < 0.6) bytes.splice(at, 0, special);
      else if (op < 0.8) bytes.length = Math.min(bytes.length, at);
      else bytes.push(...bytes.slice(0, at));
    }
    return Buffer.from(bytes);
  }

  it.each(SEEDS)('seed %i: never throws, replies are well formed, nothing after close', (seed) => {
    const rnd = prng(seed);
    const failCodes: ErrorCode[] = ['AUTH_FAILED', 'VERIFIER_UNAVAILABLE', 'BACKEND_UNREACHABLE', 'BACKEND_IN_USE'];
    let linesFed = 0;
    let sessions = 0;
    /** Counter behind every session's challengeFactory: the last challenge issued is `<n.697170952@...>`. */
    let challenges = 0;
    const seen = {
      authenticate: 0, startTls: 0, relay: 0, close: 0, sasl: 0,
      gssAccept: 0, gssWrap: 0, gssUnwrap: 0, gssFailed: 0, GSSAPI: 0, KPOP: 0,
      APOP: 0, 'CRAM-MD5': 0, EXTERNAL: 0,
    };

    while (linesFed < LINES) {
      sessions++;
      const opts = options({
        tls: rnd() < 0.4,
        stlsAvailable: rnd() < 0.7,
        allowPlaintextAuth: rnd() < 0.2,
        saslMechanisms: (['PLAIN', 'LOGIN', 'GSSAPI', 'CRAM-MD5', 'EXTERNAL'] as const).filter(() => rnd() < 0.7),
        maxErrors: 1 + Math.floor(rnd() * 8),
        maxAuthAttempts: 1 + Math.floor(rnd() * 4),
        kerberosPrincipal: rnd() < 0.25 ? 'carol@EXAMPLE.COM' : undefined,
        apopTimestamp: rnd() < 0.6 ? APOP_TIMESTAMP : undefined,
        challengeFactory: () => `<${++challenges}.697170952@postoffice.example>`,
      });
      const withCert = opts.tls && rnd() < 0.6;
      const s = new Pop3Session(withCert ? { ...opts, externalIdentity: CERT_IDENTITY } : opts);
      let closed = false;
      let secure = opts.tls;
      /** The certificate identity the host gave the session (options, or tlsStarted after STLS). */
      let identity = withCert ? CERT_IDENTITY : undefined;
      let cramPending = false;

      /** Checks one batch of actions as the host would see it. */
      const check = (actions: Pop3Action[]): void => {
        const lines = replies(actions);
        for (const l of lines) expect(l).not.toMatch(/[\r\n]/);
        if (lines.length > 0) {
          const head = lines[0] ?? '';
          expect(head).toMatch(/^(\+OK( |$)|-ERR |\+ )/);
          if (lines.length > 1) {
            // Only a multi-line +OK reply has more than one line: items, then '.'.
            expect(head.startsWith('+OK')).toBe(true);
            expect(lines.at(-1)).toBe('.');
            for (const item of lines.slice(1, -1)) expect(item).toMatch(/^[\x21-\x2d\x2f-\x7e][\x20-\x7e]*$/);
          }
        }
        const closeAt = actions.findIndex((a) => a.kind === 'close');
        if (closeAt >= 0) {
          expect(closeAt).toBe(actions.length - 1);
          expect(s.state).toBe('CLOSED');
          closed = true;
        }
        // A request to the host is the last action of its batch, and the session then waits for it.
        const gssAt = actions.findIndex((a) => a.kind.startsWith('gss'));
        if (gssAt >= 0) {
          expect(gssAt).toBe(actions.length - 1);
          expect(s.awaiting).toBe('gss');
        } else {
          expect(s.awaiting).not.toBe('gss');
        }
        for (const a of actions) {
          if (a.kind === 'startTls' || a.kind === 'relay' || a.kind === 'close') seen[a.kind]++;
          if (a.kind === 'gssAccept' || a.kind === 'gssUnwrap') {
            seen[a.kind]++;
            // Only from an enabled GSSAPI, never on KPOP, never with an empty token.
            expect(opts.saslMechanisms).toContain('GSSAPI');
            expect(opts.kerberosPrincipal).toBeUndefined();
            expect(a.token.length).toBeGreaterThan(0);
          }
          if (a.kind === 'gssWrap') {
            seen.gssWrap++;
            expect(a.data).toEqual(Buffer.from([1, 0, 0, 0]));
          }
          if (a.kind !== 'authenticate') continue;
          seen.authenticate++;
          const c = a.credentials;
          if (isKerberosCredentials(c)) {
            seen[c.mechanism]++;
            expect(c.principal).not.toBe('');
            expect(`${c.principal}${c.requestedUser}`).not.toMatch(/[\r\n\0]/);
            if (c.mechanism === 'KPOP') {
              expect(c.principal).toBe(opts.kerberosPrincipal);
              expect(c.requestedUser).not.toBe('');
            } else {
              expect(opts.saslMechanisms).toContain('GSSAPI');
              expect(opts.kerberosPrincipal).toBeUndefined();
              expect(PRINCIPALS.slice(0, 2)).toContain(c.principal);
            }
          } else if (isPasswordCredentials(c)) {
            // Password logins only where they are allowed, with clean credentials.
            expect(opts.kerberosPrincipal).toBeUndefined();
            expect(secure || opts.allowPlaintextAuth).toBe(true);
            expect(c.username).not.toBe('');
            expect(c.password).not.toBe('');
            expect(`${c.username}${c.password}${c.authzid ?? ''}`).not.toMatch(/[\r\n\0]/);
            if (c.authzid !== undefined) expect(c.authzid).toBe(c.username);
          } else if (isChallengeCredentials(c)) {
            // APOP/CRAM-MD5 follow the password rule, digest normalised, challenge the one this session issued.
            seen[c.mechanism]++;
            expect(opts.kerberosPrincipal).toBeUndefined();
            expect(secure || opts.allowPlaintextAuth).toBe(true);
            expect(c.username).not.toBe('');
            expect(c.username).not.toMatch(/[\r\n\0]/);
            expect(c.response).toMatch(/^[0-9a-f]{32}$/);
            if (c.mechanism === 'APOP') {
              expect(c.challenge).toBe(opts.apopTimestamp);
            } else {
              expect(opts.saslMechanisms).toContain('CRAM-MD5');
              expect(c.challenge).toBe(`<${challenges}.697170952@postoffice.example>`);
            }
          } else {
            // EXTERNAL only on TLS with a certificate identity, with a clean authzid.
            seen.EXTERNAL++;
            expect(opts.saslMechanisms).toContain('EXTERNAL');
            expect(opts.kerberosPrincipal).toBeUndefined();
            expect(secure).toBe(true);
            expect(identity).toBe(CERT_IDENTITY);
            expect(c.requestedUser).not.toMatch(/[\r\n\0]/);
            expect(s.username).toBe(CERT_IDENTITY);
          }
        }
      };

      /** The fake GSS host: answers the pending request at random, well or badly. */
      const answerGss = (request: Pop3Action | undefined): Pop3Action[] => {
        if (rnd() < 0.12) {
          seen.gssFailed++;
          return s.gssFailed(GSS_FAIL_CODES[Math.floor(rnd() * GSS_FAIL_CODES.length)] ?? 'AUTH_FAILED');
        }
        switch (request?.kind) {
          case 'gssAccept':
            return s.gssAcceptResult({
              done: rnd() < 0.6,
              output: rnd() < 0.5 ? Buffer.alloc(0) : randomBytes(rnd, 64),
              principal: PRINCIPALS[Math.floor(rnd() * (rnd() < 0.8 ? 2 : PRINCIPALS.length))],
            });
          case 'gssWrap':
            return s.gssWrapped(randomBytes(rnd, 40));
          case 'gssUnwrap': {
            // Half the time one of the well-formed answers (the first three), else anything.
            const r = rnd();
            const answer = r < 0.2 ? randomBytes(rnd, 12) : LAYER_ANSWERS[Math.floor(rnd() * (r < 0.6 ? 3 : LAYER_ANSWERS.length))];
            return s.gssUnwrapped(answer ?? Buffer.alloc(0));
          }
          default:
            throw new Error(`awaiting gss after ${JSON.stringify(request)}`);
        }
      };

      const greeting = s.greet();
      check(greeting);
      // The timestamp is shown exactly when APOP is enabled on this connection.
      const apopOn = opts.apopTimestamp !== undefined && opts.kerberosPrincipal === undefined && (opts.tls || opts.stlsAvailable || opts.allowPlaintextAuth);
      expect(replies(greeting)[0]?.endsWith(` ${APOP_TIMESTAMP}`)).toBe(apopOn);
      for (let step = 0; step < 40 && !closed && linesFed < LINES; step++) {
        const line = randomLine(rnd, s, opts.kerberosPrincipal !== undefined, cramPending);
        // Host contract: a line longer than the current cap never reaches feedLine.
        const actions = line.length + 2 > s.lineLimit ? s.overflow() : s.feedLine(line);
        linesFed++;
        check(actions);
        // A CRAM-MD5 challenge ("+ " b64("<...")) waits for its answer.
        cramPending = replies(actions).at(-1)?.startsWith(`+ ${b64('<').slice(0, 2)}`) === true && s.state === 'SASL';
        if (s.state === 'SASL') seen.sasl++;
        if (closed) break;

        // Play the host's part for whatever the session asked (a GSS answer may lead to another request).
        let last = actions;
        while (s.awaiting === 'gss' && !closed) {
          last = answerGss(last.at(-1));
          check(last);
          if (s.state === 'SASL') seen.sasl++;
        }
        if (closed) break;
        if (s.awaiting === 'tls') {
          expect(actions.at(-1)).toEqual({ kind: 'startTls' });
          identity = rnd() < 0.5 ? CERT_IDENTITY : undefined;
          s.tlsStarted({ externalIdentity: identity });
          secure = true;
        } else if (s.awaiting === 'login') {
          const r = rnd();
          const outcome =
            r < 0.15 ? s.loginSucceeded('+OK Logged in.') : s.loginFailed(failCodes[Math.floor(r * failCodes.length)] ?? 'AUTH_FAILED');
          check(outcome);
          if (closed) break;
          if (s.state === 'RELAY') {
            expect(outcome.at(-1)).toEqual({ kind: 'relay' });
            break;
          }
        }
        // Outside an exchange the host may release its GSS context.
        if (s.state === 'AUTHORIZATION') expect(s.gssInProgress).toBe(false);
        expect(s.counters.errors).toBeLessThan(opts.maxErrors);
        expect(s.counters.authFailures).toBeLessThan(opts.maxAuthAttempts);
      }

      if (closed) {
        // Nothing is processed after close.
        expect(s.feedLine(Buffer.from('CAPA'))).toEqual([]);
        expect(s.feedLine(randomLine(rnd, s, false))).toEqual([]);
        expect(s.overflow()).toEqual([]);
        expect(s.timeout()).toEqual([]);
      }
    }
    expect(linesFed).toBeGreaterThanOrEqual(LINES);
    expect(sessions).toBeGreaterThan(10);
    // The generator must actually reach the interesting paths.
    for (const [what, n] of Object.entries(seen)) expect(n, what).toBeGreaterThan(0);
  });
});
