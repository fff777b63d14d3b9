/**
 * AUTH GSSAPI (RFC 4752 over RFC 5034) in the sans-I/O session: the session
 * asks the host for GSS operations (gssAccept / gssWrap / gssUnwrap), the
 * test plays the host.
 */
import { describe, expect, it } from 'vitest';
import { errorReply } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';
import {
  GSSAPI_LAYER_NONE,
  decodeGssapiLayerResponse,
  gssapiLayerOffer,
  saslChallenge,
} from '../../src/pop3/sasl.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action, Pop3SessionOptions } from '../../src/pop3/types.js';
import { capaOf, credentialsOf, errActions, feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

const options = sessionOptions;

const PRINCIPAL = 'alice@EXAMPLE.COM';
/** A client's first context token (GSS-API framing + AP-REQ), as bytes and base64. */
const AP_REQ = Buffer.from([0x60, 0x82, 0x01, 0x02, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00, 0x6e]);
const AP_REQ_B64 = AP_REQ.toString('base64');
/** The server's mutual-auth token (AP-REP). */
const AP_REP = Buffer.from([0x6f, 0x81, 0x88, 0x30, 0x81, 0x85]);
/** Wrap tokens (RFC 4121 0x0504...): opaque to the session. */
const WRAPPED_OFFER = Buffer.from([0x05, 0x04, 0x00, 0xff, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]);
const CLIENT_WRAPPED = Buffer.from([0x05, 0x04, 0x01, 0xff, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x61]);
const OFFER = Buffer.from([0x01, 0x00, 0x00, 0x00]);

const b64 = (b: Buffer): string => b.toString('base64');
const feed = (s: Pop3Session, line: string): Pop3Action[] => feedLine(s, line, 'latin1');
const err = errActions;
/** The client's unwrapped security-layer answer: chosen layer, max size, authzid. */
const layerAnswer = (layer: number, authzid: string | Buffer = '', size: [number, number, number] = [0, 0, 0]): Buffer =>
  Buffer.concat([Buffer.from([layer, ...size]), typeof authzid === 'string' ? Buffer.from(authzid, 'utf8') : authzid]);

const capa = capaOf;

/** A session that has sent AUTH GSSAPI with an initial token and waits for the acceptor. */
function accepting(over: Partial<Pop3SessionOptions> = {}): Pop3Session {
  const s = new Pop3Session(options(over));
  expect(feed(s, `AUTH GSSAPI ${AP_REQ_B64}`)).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
  return s;
}
/** A session whose context is established (no final token) and that waits for the wrapped offer. */
function wrapping(over: Partial<Pop3SessionOptions> = {}): Pop3Session {
  const s = accepting(over);
  expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL })).toEqual([{ kind: 'gssWrap', data: OFFER }]);
  return s;
}
/** A session that sent the wrapped offer and waits for the client's wrapped answer. */
function layering(over: Partial<Pop3SessionOptions> = {}): Pop3Session {
  const s = wrapping(over);
  expect(s.gssWrapped(WRAPPED_OFFER)).toEqual([{ kind: 'reply', line: `+ ${b64(WRAPPED_OFFER)}` }]);
  expect(s.state).toBe('SASL');
  return s;
}
/** A session that asked the host to unwrap the client's answer. */
function unwrapping(over: Partial<Pop3SessionOptions> = {}): Pop3Session {
  const s = layering(over);
  expect(feed(s, b64(CLIENT_WRAPPED))).toEqual([{ kind: 'gssUnwrap', token: CLIENT_WRAPPED }]);
  expect(s.awaiting).toBe('gss');
  return s;
}

describe('GSSAPI security-layer helpers (RFC 4752 section 3.1)', () => {
  it('offers only "no security layer" with a zero maximum size, in a fresh buffer each time', () => {
    expect(GSSAPI_LAYER_NONE).toBe(0x01);
    const a = gssapiLayerOffer();
    expect(a).toEqual(OFFER);
    a[0] = 0x07;
    expect(gssapiLayerOffer()).toEqual(OFFER);
  });

  it('renders challenges as "+ " and base64, "+ " alone when empty', () => {
    expect(saslChallenge(Buffer.alloc(0))).toBe('+ ');
    expect(saslChallenge(Buffer.from('abc'))).toBe('+ YWJj');
  });

  it('reads the layer answer and its authzid', () => {
    expect(decodeGssapiLayerResponse(layerAnswer(1, 'alice'))).toEqual({ ok: true, authzid: 'alice' });
    expect(decodeGssapiLayerResponse(layerAnswer(1))).toEqual({ ok: true, authzid: '' });
    expect(decodeGssapiLayerResponse(layerAnswer(1, 'jürgen', [0xff, 0xff, 0xff]))).toEqual({ ok: true, authzid: 'jürgen' });
  });

  it.each(['00', '02', '03', '04', '05', '07', '81', 'ff'])('refuses chosen layer 0x%s', (hex) => {
    const layer = parseInt(hex, 16);
    expect(decodeGssapiLayerResponse(layerAnswer(layer, 'alice'))).toEqual({ ok: false, reason: 'layer' });
  });

  it('refuses short answers and bad authzids', () => {
    for (const n of [0, 1, 2, 3]) expect(decodeGssapiLayerResponse(OFFER.subarray(0, n))).toEqual({ ok: false, reason: 'short' });
    expect(decodeGssapiLayerResponse(layerAnswer(1, Buffer.from([0xc3, 0x28])))).toEqual({ ok: false, reason: 'bad-utf8' });
    for (const bad of ['a\rb', 'a\nb', 'a\0b', 'alice\r\n']) {
      expect(decodeGssapiLayerResponse(layerAnswer(1, bad))).toEqual({ ok: false, reason: 'bad-characters' });
    }
  });
});

describe('AUTH GSSAPI: complete exchanges', () => {
  it('with an initial response: accept, wrap, unwrap, authenticate, relay', () => {
    const s = new Pop3Session(options());
    expect(s.gssInProgress).toBe(false);
    const first = feed(s, `AUTH GSSAPI ${AP_REQ_B64}`);
    expect(first).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
    expect(s.state).toBe('GSS_PENDING');
    expect(s.awaiting).toBe('gss');
    expect(s.gssInProgress).toBe(true);
    expect(() => feed(s, 'NOOP')).toThrow(/GSS_PENDING/);

    expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL })).toEqual([
      { kind: 'gssWrap', data: OFFER },
    ]);
    expect(s.awaiting).toBe('gss');
    expect(s.username).toBe(PRINCIPAL);

    expect(s.gssWrapped(WRAPPED_OFFER)).toEqual([{ kind: 'reply', line: `+ ${b64(WRAPPED_OFFER)}` }]);
    expect(s.state).toBe('SASL');
    expect(s.awaiting).toBeUndefined();

    expect(feed(s, b64(CLIENT_WRAPPED))).toEqual([{ kind: 'gssUnwrap', token: CLIENT_WRAPPED }]);
    expect(s.awaiting).toBe('gss');

    const auth = s.gssUnwrapped(layerAnswer(1, 'alice'));
    expect(auth).toEqual([
      { kind: 'authenticate', credentials: { mechanism: 'GSSAPI', principal: PRINCIPAL, requestedUser: 'alice' } },
    ]);
    expect(s.state).toBe('LOGIN_PENDING');
    expect(s.awaiting).toBe('login');
    expect(s.gssInProgress).toBe(false);

    expect(s.loginSucceeded('+OK Logged in.')).toEqual([{ kind: 'reply', line: '+OK Logged in.' }, { kind: 'relay' }]);
    expect(s.state).toBe('RELAY');
    expect(s.counters).toEqual({ errors: 0, authFailures: 0 });
  });

  it('without an initial response: "+ " first, then the token arrives as a continuation', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'auth gssapi')).toEqual([{ kind: 'reply', line: '+ ' }]);
    expect(s.state).toBe('SASL');
    expect(s.gssInProgress).toBe(true);
    expect(feed(s, AP_REQ_B64)).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
    expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL })).toEqual([
      { kind: 'gssWrap', data: OFFER },
    ]);
    expect(replies(s.gssWrapped(WRAPPED_OFFER))).toEqual([`+ ${b64(WRAPPED_OFFER)}`]);
    expect(feed(s, b64(CLIENT_WRAPPED))).toEqual([{ kind: 'gssUnwrap', token: CLIENT_WRAPPED }]);
    expect(credentialsOf(s.gssUnwrapped(layerAnswer(1, 'alice')))).toEqual({
      mechanism: 'GSSAPI',
      principal: PRINCIPAL,
      requestedUser: 'alice',
    });
  });

  it('"=" as initial response is an empty one: the server asks for the token', () => {
    const s = new Pop3Session(options());
    expect(feed(s, 'AUTH GSSAPI =')).toEqual([{ kind: 'reply', line: '+ ' }]);
    expect(feed(s, AP_REQ_B64)).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
  });

  it('runs several accept rounds; only the first token is marked first', () => {
    const s = accepting();
    const round1 = Buffer.from('server-round-1');
    expect(s.gssAcceptResult({ done: false, output: round1 })).toEqual([{ kind: 'reply', line: `+ ${b64(round1)}` }]);
    expect(s.state).toBe('SASL');
    expect(s.gssInProgress).toBe(true);
    const c2 = Buffer.from('client-round-2');
    expect(feed(s, b64(c2))).toEqual([{ kind: 'gssAccept', token: c2, first: false }]);
    // A round without output still yields "+ ".
    expect(s.gssAcceptResult({ done: false, output: Buffer.alloc(0) })).toEqual([{ kind: 'reply', line: '+ ' }]);
    const c3 = Buffer.from('client-round-3');
    expect(feed(s, b64(c3))).toEqual([{ kind: 'gssAccept', token: c3, first: false }]);
    expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL })).toEqual([
      { kind: 'gssWrap', data: OFFER },
    ]);
    s.gssWrapped(WRAPPED_OFFER);
    feed(s, b64(CLIENT_WRAPPED));
    expect(credentialsOf(s.gssUnwrapped(layerAnswer(1)))).toMatchObject({ mechanism: 'GSSAPI', principal: PRINCIPAL });
  });

  it('a non-empty final token (mutual auth) is sent, then the client\'s empty answer leads to the wrap', () => {
    const s = accepting();
    expect(s.gssAcceptResult({ done: true, output: AP_REP, principal: PRINCIPAL })).toEqual([
      { kind: 'reply', line: `+ ${b64(AP_REP)}` },
    ]);
    expect(s.state).toBe('SASL');
    expect(s.awaiting).toBeUndefined();
    expect(s.lineLimit).toBe(8192);
    expect(feed(s, '')).toEqual([{ kind: 'gssWrap', data: OFFER }]);
    expect(s.awaiting).toBe('gss');
    expect(replies(s.gssWrapped(WRAPPED_OFFER))).toEqual([`+ ${b64(WRAPPED_OFFER)}`]);
    expect(feed(s, b64(CLIENT_WRAPPED))).toEqual([{ kind: 'gssUnwrap', token: CLIENT_WRAPPED }]);
    expect(credentialsOf(s.gssUnwrapped(layerAnswer(1, 'alice')))).toEqual({
      mechanism: 'GSSAPI',
      principal: PRINCIPAL,
      requestedUser: 'alice',
    });
  });

  it('the answer to the final token carries no data; if a client sends some it is not used', () => {
    const s = accepting();
    s.gssAcceptResult({ done: true, output: AP_REP, principal: PRINCIPAL });
    expect(feed(s, b64(Buffer.from('ignored')))).toEqual([{ kind: 'gssWrap', data: OFFER }]);
  });

  it('an empty authzid is passed on as an empty requestedUser; the client\'s max size is ignored', () => {
    expect(credentialsOf(unwrapping().gssUnwrapped(layerAnswer(1)))).toEqual({
      mechanism: 'GSSAPI',
      principal: PRINCIPAL,
      requestedUser: '',
    });
    expect(credentialsOf(unwrapping().gssUnwrapped(layerAnswer(1, 'bob', [0x01, 0x00, 0x00])))).toEqual({
      mechanism: 'GSSAPI',
      principal: PRINCIPAL,
      requestedUser: 'bob',
    });
  });

  it('passes the principal and authzid on unchanged: mapping and authorization are the host\'s job', () => {
    const s = new Pop3Session(options());
    feed(s, `AUTH GSSAPI ${AP_REQ_B64}`);
    s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: 'pop/host.example.com@EXAMPLE.COM' });
    s.gssWrapped(WRAPPED_OFFER);
    feed(s, b64(CLIENT_WRAPPED));
    expect(credentialsOf(s.gssUnwrapped(layerAnswer(1, 'root')))).toEqual({
      mechanism: 'GSSAPI',
      principal: 'pop/host.example.com@EXAMPLE.COM',
      requestedUser: 'root',
    });
  });

  it('a continuation line is a token, never a command', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH GSSAPI');
    // 'QUIT' happens to be valid base64.
    expect(feed(s, 'QUIT')).toEqual([{ kind: 'gssAccept', token: Buffer.from('QUIT', 'base64'), first: true }]);
    expect(s.state).toBe('GSS_PENDING');
  });

  it('forgets a pending USER name, like the other mechanisms', () => {
    const s = new Pop3Session(options({ tls: true }));
    expect(replies(feed(s, 'USER alice'))).toEqual(['+OK']);
    feed(s, 'AUTH GSSAPI');
    feed(s, '*');
    expect(feed(s, 'PASS secret')).toEqual(err('BAD_SEQUENCE'));
  });
});

describe('AUTH GSSAPI: cancel and malformed client lines at every step', () => {
  /** Brings a session to each step where the client speaks, in SASL state. */
  const steps: Record<string, () => Pop3Session> = {
    'first token (no initial response)': () => {
      const s = new Pop3Session(options());
      feed(s, 'AUTH GSSAPI');
      return s;
    },
    'next accept round': () => {
      const s = accepting();
      s.gssAcceptResult({ done: false, output: Buffer.from('more') });
      return s;
    },
    'answer to the final token': () => {
      const s = accepting();
      s.gssAcceptResult({ done: true, output: AP_REP, principal: PRINCIPAL });
      return s;
    },
    'security-layer answer': () => layering(),
  };

  it.each(Object.keys(steps))('"*" cancels at the %s', (name) => {
    const s = steps[name]?.() ?? new Pop3Session(options());
    expect(s.state).toBe('SASL');
    expect(s.maskLine(Buffer.from('*'))).toBe('*');
    expect(feed(s, '*')).toEqual(err('AUTH_CANCELLED'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.gssInProgress).toBe(false);
    expect(s.lineLimit).toBe(255);
    expect(s.counters).toEqual({ errors: 1, authFailures: 0 });
    // A new exchange starts over with a fresh context.
    expect(feed(s, `AUTH GSSAPI ${AP_REQ_B64}`)).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
  });

  it.each(Object.keys(steps))('bad base64 is refused at the %s', (name) => {
    const s = steps[name]?.() ?? new Pop3Session(options());
    expect(feed(s, 'YII*AgYJ')).toEqual(err('BAD_BASE64'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.gssInProgress).toBe(false);
    expect(s.counters.errors).toBe(1);
  });

  it('bad base64 in the initial response is refused, non-canonical encodings too', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    expect(feed(s, 'AUTH GSSAPI YII*AgYJ')).toEqual(err('BAD_BASE64'));
    expect(feed(s, 'AUTH GSSAPI QR==')).toEqual(err('BAD_BASE64'));
    expect(feed(s, 'AUTH GSSAPI *')).toEqual(err('BAD_BASE64'));
    feed(s, 'AUTH GSSAPI');
    expect(s.feedLine(Buffer.from([0x59, 0x49, 0x49, 0xc3]))).toEqual(err('BAD_BASE64'));
    expect(s.counters.errors).toBe(4);
    expect(s.state).toBe('AUTHORIZATION');
  });

  it('an empty context token or an empty layer answer is a syntax error, not sent to the host', () => {
    const s = new Pop3Session(options());
    feed(s, 'AUTH GSSAPI');
    expect(feed(s, '')).toEqual(err('BAD_SYNTAX'));
    const t = accepting();
    t.gssAcceptResult({ done: false, output: Buffer.from('more') });
    expect(feed(t, '=')).toEqual(err('BAD_SYNTAX'));
    const u = layering();
    expect(feed(u, '')).toEqual(err('BAD_SYNTAX'));
    expect(u.gssInProgress).toBe(false);
  });

  it('protocol errors in the exchange spend the error budget and close at its end', () => {
    const s = new Pop3Session(options({ maxErrors: 2 }));
    feed(s, 'AUTH GSSAPI');
    expect(feed(s, '!!!')).toEqual(err('BAD_BASE64'));
    feed(s, 'AUTH GSSAPI');
    expect(feed(s, '*')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_ERRORS') },
      { kind: 'close', reason: 'TOO_MANY_ERRORS' },
    ]);
    expect(s.state).toBe('CLOSED');
  });
});

describe('AUTH GSSAPI: the security-layer answer', () => {
  it.each(['02', '04', '07', '03', '00', '05', '06', '81'])('refuses chosen layer 0x%s (not offered) as a failed login', (hex) => {
    const layer = parseInt(hex, 16);
    const s = unwrapping();
    expect(s.gssUnwrapped(layerAnswer(layer, 'alice', [0x00, 0x10, 0x00]))).toEqual(err('UNSUPPORTED_SECURITY_LAYER'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.gssInProgress).toBe(false);
    expect(s.counters).toEqual({ errors: 0, authFailures: 1 });
  });

  it('the last allowed attempt refused for its layer closes the connection', () => {
    const s = unwrapping({ maxAuthAttempts: 1 });
    expect(s.gssUnwrapped(layerAnswer(0x04))).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
  });

  it.each([0, 1, 2, 3])('refuses an unwrapped answer of %i octets', (n) => {
    const s = unwrapping();
    expect(s.gssUnwrapped(layerAnswer(1).subarray(0, n))).toEqual(err('BAD_SYNTAX'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters).toEqual({ errors: 1, authFailures: 0 });
  });

  it.each([
    ['CR', 'alice\rDELE 1'],
    ['LF', 'alice\nDELE 1'],
    ['CRLF', 'alice\r\n'],
    ['NUL', 'alice\0bob'],
  ])('refuses an authzid with %s', (_name, authzid) => {
    const s = unwrapping();
    expect(s.gssUnwrapped(layerAnswer(1, authzid))).toEqual(err('BAD_CHARACTERS'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters.errors).toBe(1);
  });

  it('refuses an authzid that is not UTF-8', () => {
    expect(unwrapping().gssUnwrapped(layerAnswer(1, Buffer.from([0x61, 0xff])))).toEqual(err('BAD_CHARACTERS'));
  });
});

describe('AUTH GSSAPI: host failures and login outcomes', () => {
  const stages: Record<string, () => Pop3Session> = { accept: accepting, wrap: wrapping, unwrap: unwrapping };

  it.each(Object.keys(stages))('gssFailed(AUTH_FAILED) during %s spends an attempt and lets the client retry', (stage) => {
    const s = stages[stage]?.() ?? new Pop3Session(options());
    expect(s.gssFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.awaiting).toBeUndefined();
    expect(s.gssInProgress).toBe(false);
    expect(s.lineLimit).toBe(255);
    expect(s.counters).toEqual({ errors: 0, authFailures: 1 });
    expect(feed(s, `AUTH GSSAPI ${AP_REQ_B64}`)).toEqual([{ kind: 'gssAccept', token: AP_REQ, first: true }]);
  });

  it('GSS failures, password failures and GSSAPI login failures share the attempt budget', () => {
    const s = accepting({ tls: true, maxAuthAttempts: 3 });
    expect(s.gssFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    feed(s, 'USER alice');
    feed(s, 'PASS wrong');
    expect(s.loginFailed('AUTH_FAILED')).toEqual(err('AUTH_FAILED'));
    feed(s, `AUTH GSSAPI ${AP_REQ_B64}`);
    s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL });
    s.gssWrapped(WRAPPED_OFFER);
    feed(s, b64(CLIENT_WRAPPED));
    expect(credentialsOf(s.gssUnwrapped(layerAnswer(1, 'mallory')))).toMatchObject({ requestedUser: 'mallory' });
    // The host refuses: the principal may not act as that user.
    expect(s.loginFailed('AUTH_FAILED')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
    expect(s.state).toBe('CLOSED');
  });

  it('loginFailed after GSSAPI replies [AUTH], counts, and a new exchange can follow', () => {
    const s = unwrapping();
    s.gssUnwrapped(layerAnswer(1, 'alice'));
    expect(s.loginFailed('AUTH_FAILED')).toEqual([{ kind: 'reply', line: '-ERR [AUTH] Authentication failed' }]);
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters).toEqual({ errors: 0, authFailures: 1 });
    expect(feed(s, 'AUTH GSSAPI')).toEqual([{ kind: 'reply', line: '+ ' }]);
  });

  it('loginFailed with backend trouble after GSSAPI closes as the catalogue says', () => {
    const s = unwrapping();
    s.gssUnwrapped(layerAnswer(1, 'alice'));
    expect(s.loginFailed('BACKEND_UNREACHABLE')).toEqual([
      { kind: 'reply', line: errorReply('BACKEND_UNREACHABLE') },
      { kind: 'close', reason: 'BACKEND_UNREACHABLE' },
    ]);
  });

  it('server-side trouble (KDC, keytab) is not counted as an attempt', () => {
    const s = accepting({ maxAuthAttempts: 1 });
    expect(s.gssFailed('VERIFIER_UNAVAILABLE')).toEqual(err('VERIFIER_UNAVAILABLE'));
    expect(s.state).toBe('AUTHORIZATION');
    expect(s.counters).toEqual({ errors: 0, authFailures: 0 });
  });

  it('a failure code whose catalogue entry closes, closes', () => {
    const s = wrapping();
    expect(s.gssFailed('INTERNAL')).toEqual([
      { kind: 'reply', line: errorReply('INTERNAL') },
      { kind: 'close', reason: 'INTERNAL' },
    ]);
    expect(s.state).toBe('CLOSED');
    expect(s.gssInProgress).toBe(false);
  });

  it('the last allowed GSS failure closes with TOO_MANY_AUTH_ATTEMPTS', () => {
    const s = accepting({ maxAuthAttempts: 1 });
    expect(s.gssFailed('AUTH_FAILED')).toEqual([
      { kind: 'reply', line: errorReply('TOO_MANY_AUTH_ATTEMPTS') },
      { kind: 'close', reason: 'TOO_MANY_AUTH_ATTEMPTS' },
    ]);
  });

  it('refuses a principal with CR/LF/NUL as a failed login (fail closed)', () => {
    const s = accepting();
    expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: 'alice\r\n@EXAMPLE.COM' })).toEqual(
      err('AUTH_FAILED'),
    );
    expect(s.counters.authFailures).toBe(1);
    expect(s.gssInProgress).toBe(false);
  });

  it('answers out of order are host bugs; answers after a close are ignored', () => {
    const idle = new Pop3Session(options());
    expect(() => idle.gssAcceptResult({ done: false, output: Buffer.alloc(0) })).toThrow(/INTERNAL/);
    expect(() => idle.gssWrapped(WRAPPED_OFFER)).toThrow(/INTERNAL/);
    expect(() => idle.gssUnwrapped(OFFER)).toThrow(/INTERNAL/);
    expect(() => idle.gssFailed('AUTH_FAILED')).toThrow(/INTERNAL/);

    const s = accepting();
    expect(() => s.gssWrapped(WRAPPED_OFFER)).toThrow(/waiting for accept/);
    expect(() => s.gssUnwrapped(OFFER)).toThrow(/waiting for accept/);
    expect(() => s.gssAcceptResult({ done: true, output: Buffer.alloc(0) })).toThrow(/principal/);
    expect(() => s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: '' })).toThrow(/principal/);
    expect(() => s.loginSucceeded('+OK')).toThrow(/INTERNAL/);
    // Nothing above changed the state: the real answer still works.
    expect(s.state).toBe('GSS_PENDING');
    expect(s.gssAcceptResult({ done: true, output: Buffer.alloc(0), principal: PRINCIPAL })).toEqual([
      { kind: 'gssWrap', data: OFFER },
    ]);
    expect(() => s.gssAcceptResult({ done: false, output: Buffer.alloc(0) })).toThrow(/waiting for wrap/);

    expect(s.timeout()).toEqual([
      { kind: 'reply', line: errorReply('PREAUTH_TIMEOUT') },
      { kind: 'close', reason: 'PREAUTH_TIMEOUT' },
    ]);
    expect(s.gssWrapped(WRAPPED_OFFER)).toEqual([]);
    expect(s.gssFailed('AUTH_FAILED')).toEqual([]);
    expect(s.gssInProgress).toBe(false);
  });
});

describe('AUTH GSSAPI: channel policy, CAPA and AUTH listing', () => {
  it('CAPA advertises GSSAPI before TLS, without PLAIN/LOGIN or USER', () => {
    const caps = capa(new Pop3Session(options({ tls: false, stlsAvailable: true })));
    expect(caps).toEqual(['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'SASL GSSAPI', 'STLS', 'IMPLEMENTATION popgate']);
  });

  it('after TLS (or with allowPlaintextAuth) all configured mechanisms are listed in configured order', () => {
    expect(capa(new Pop3Session(options({ tls: true })))).toContain('SASL PLAIN LOGIN GSSAPI');
    expect(capa(new Pop3Session(options({ tls: false, allowPlaintextAuth: true, saslMechanisms: ['GSSAPI', 'PLAIN'] })))).toContain(
      'SASL GSSAPI PLAIN',
    );
    const s = new Pop3Session(options({ tls: false, stlsAvailable: true }));
    feed(s, 'STLS');
    s.tlsStarted();
    expect(capa(s)).toEqual(['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'USER', 'SASL PLAIN LOGIN GSSAPI', 'IMPLEMENTATION popgate']);
  });

  it('a bare AUTH lists what is usable on the channel', () => {
    expect(replies(feed(new Pop3Session(options({ tls: false })), 'AUTH'))).toEqual(['+OK Available mechanisms', 'GSSAPI', '.']);
    expect(replies(feed(new Pop3Session(options({ tls: true })), 'AUTH'))).toEqual([
      '+OK Available mechanisms',
      'PLAIN',
      'LOGIN',
      'GSSAPI',
      '.',
    ]);
  });

  it('before TLS, GSSAPI is accepted while PLAIN and LOGIN stay refused', () => {
    const s = new Pop3Session(options({ tls: false, maxErrors: 10 }));
    expect(feed(s, 'AUTH PLAIN')).toEqual(err('PLAINTEXT_AUTH_DISALLOWED'));
    expect(feed(s, 'AUTH LOGIN')).toEqual(err('PLAINTEXT_AUTH_DISALLOWED'));
    expect(feed(s, 'AUTH GSSAPI')).toEqual([{ kind: 'reply', line: '+ ' }]);
  });

  it('GSSAPI is refused when not configured, and is not advertised', () => {
    const s = new Pop3Session(options({ saslMechanisms: ['PLAIN', 'LOGIN'] }));
    expect(feed(s, 'AUTH GSSAPI')).toEqual(err('UNSUPPORTED_MECHANISM'));
    expect(feed(s, `AUTH GSSAPI ${AP_REQ_B64}`)).toEqual(err('UNSUPPORTED_MECHANISM'));
    expect(capa(s).some((c) => c.startsWith('SASL'))).toBe(false);
  });

  it('rejects malformed AUTH GSSAPI command lines', () => {
    const s = new Pop3Session(options({ maxErrors: 10 }));
    expect(feed(s, `AUTH GSSAPI ${AP_REQ_B64} extra`)).toEqual(err('BAD_SYNTAX'));
    expect(feed(s, 'AUTH GSSAPI ')).toEqual(err('BAD_SYNTAX'));
    expect(feed(s, 'AUTH  GSSAPI')).toEqual(err('BAD_SYNTAX'));
  });
});

describe('AUTH GSSAPI: line limits and masking', () => {
  it('lineLimit is the SASL cap for the whole exchange and the command cap afterwards', () => {
    const s = new Pop3Session(options());
    const limits: number[] = [s.lineLimit];
    feed(s, 'AUTH GSSAPI');
    limits.push(s.lineLimit);
    feed(s, AP_REQ_B64);
    limits.push(s.lineLimit); // GSS_PENDING: the next line will be a continuation
    s.gssAcceptResult({ done: false, output: Buffer.from('x') });
    limits.push(s.lineLimit);
    feed(s, AP_REQ_B64);
    s.gssAcceptResult({ done: true, output: AP_REP, principal: PRINCIPAL });
    limits.push(s.lineLimit);
    feed(s, '');
    limits.push(s.lineLimit);
    s.gssWrapped(WRAPPED_OFFER);
    limits.push(s.lineLimit);
    feed(s, b64(CLIENT_WRAPPED));
    limits.push(s.lineLimit);
    s.gssUnwrapped(layerAnswer(1));
    s.loginFailed('AUTH_FAILED');
    limits.push(s.lineLimit);
    expect(limits).toEqual([255, 8192, 8192, 8192, 8192, 8192, 8192, 8192, 255]);
  });

  it('through a framer: a large token fits as a continuation but not as an initial response', () => {
    const token = Buffer.alloc(3000, 0x6e);
    const framer = new LineFramer();
    const s = new Pop3Session(options());
    framer.push(Buffer.from(`AUTH GSSAPI\r\n${b64(token)}\r\n`));
    const first = framer.next(s.lineLimit);
    if (first?.kind !== 'line') throw new Error('expected a line');
    expect(s.feedLine(first.line)).toEqual([{ kind: 'reply', line: '+ ' }]);
    const second = framer.next(s.lineLimit);
    if (second?.kind !== 'line') throw new Error('expected a line');
    expect(s.feedLine(second.line)).toEqual([{ kind: 'gssAccept', token, first: true }]);

    const framer2 = new LineFramer();
    const t = new Pop3Session(options());
    framer2.push(Buffer.from(`AUTH GSSAPI ${b64(token)}\r\n`));
    expect(framer2.next(t.lineLimit)).toEqual({ kind: 'overflow' });
    expect(t.overflow()).toEqual([
      { kind: 'reply', line: errorReply('LINE_TOO_LONG') },
      { kind: 'close', reason: 'LINE_TOO_LONG' },
    ]);
  });

  it('masks tokens in the command, in every continuation, and while the host works', () => {
    const s = new Pop3Session(options());
    expect(s.maskLine(Buffer.from(`AUTH GSSAPI ${AP_REQ_B64}`))).toBe('AUTH GSSAPI ***');
    expect(s.maskLine(Buffer.from('AUTH GSSAPI'))).toBe('AUTH GSSAPI');
    feed(s, 'AUTH GSSAPI');
    expect(s.maskLine(Buffer.from(AP_REQ_B64))).toBe('***');
    feed(s, AP_REQ_B64);
    expect(s.maskLine(Buffer.from(AP_REQ_B64))).toBe('***');
    s.gssAcceptResult({ done: true, output: AP_REP, principal: PRINCIPAL });
    expect(s.maskLine(Buffer.from(''))).toBe('***');
    feed(s, '');
    s.gssWrapped(WRAPPED_OFFER);
    expect(s.maskLine(Buffer.from(b64(CLIENT_WRAPPED)))).toBe('***');
    expect(s.maskLine(Buffer.from('*'))).toBe('*');
    feed(s, '*');
    expect(s.maskLine(Buffer.from('CAPA'))).toBe('CAPA');
  });
});
