/**
 * The backend login machine without sockets: every state, every refusal,
 * line framing oddities, STLS and XCLIENT, fed bytes and events as the host
 * (src/backend/client.ts) would.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  assertSafeCredentials,
  BackendLoginMachine,
  classifyLoginFailure,
  MAX_BACKEND_LINE,
  MAX_CAPA_LINES,
  readGreeting,
  type LoginAction,
  type LoginMachineOptions,
} from '../../src/backend/login-machine.js';
import type { BackendLogin } from '../../src/backend/types.js';
import { GatewayError } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';

const W = '127.0.0.1:110';
const USER_PASS: BackendLogin = { method: 'user-pass', user: 'alice*gw', password: 'm4ster-secret' };
const PLAIN: BackendLogin = { method: 'auth-plain', authzid: 'alice', authcid: 'gw', password: 'm4ster-secret' };
const TOKEN = Buffer.from('alice\0gw\0m4ster-secret').toString('base64');
const XCLIENT = 'XCLIENT ADDR=192.0.2.7 PORT=51000';

function machine(over: Partial<LoginMachineOptions> = {}): BackendLoginMachine {
  return new BackendLoginMachine({ where: W, tls: 'none', login: USER_PASS, ...over });
}

/** A machine past connect (plaintext): waiting for the greeting. */
function greeted(over: Partial<LoginMachineOptions> = {}): BackendLoginMachine {
  const m = machine(over);
  expect(m.connected()).toEqual([]);
  return m;
}

function feed(m: BackendLoginMachine, ...chunks: string[]): LoginAction[] {
  return chunks.flatMap((c) => m.receive(Buffer.from(c, 'latin1')));
}

const send = (line: string): LoginAction => ({ kind: 'send', line });

/** The single fail action's error. */
function failure(actions: readonly LoginAction[]): GatewayError {
  const last = actions.at(-1);
  if (last?.kind !== 'fail') throw new Error(`expected a failure, got ${JSON.stringify(actions)}`);
  return last.error;
}

function doneOf(actions: readonly LoginAction[]): Extract<LoginAction, { kind: 'done' }> {
  const last = actions.at(-1);
  if (last?.kind !== 'done') throw new Error(`expected done, got ${JSON.stringify(actions)}`);
  return last;
}

describe('BackendLoginMachine: connect and greeting', () => {
  it('starts in connect, then waits for the greeting on a plaintext or STLS link', () => {
    const m = machine();
    expect(m.phase).toBe('connect');
    expect(m.status).toBe('waiting');
    expect(m.connected()).toEqual([]);
    expect(m.phase).toBe('greeting');
    expect(m.connected()).toEqual([]); // only once
    expect(machine({ tls: 'starttls' }).connected()).toEqual([]);
  });

  it('implicit TLS: handshake first, then the greeting', () => {
    const m = machine({ tls: 'implicit' });
    expect(m.connected()).toEqual([{ kind: 'startTls' }]);
    expect(m.phase).toBe('tls');
    expect(m.tlsReady()).toEqual([]);
    expect(m.phase).toBe('greeting');
    expect(m.tlsReady()).toEqual([]); // ignored outside the handshake
    expect(feed(m, '+OK ready\r\n')).toEqual([send('USER alice*gw')]);
  });

  it('a +OK greeting starts the login; the facts keep it', () => {
    const m = greeted();
    expect(feed(m, '+OK Dovecot ready.\r\n')).toEqual([send('USER alice*gw')]);
    expect(m.phase).toBe('login');
    expect(m.facts).toEqual({ greeting: '+OK Dovecot ready.', xclientOffered: false, xclientSent: false, capaAsked: false, pipelined: false });
  });

  it.each(['+OK', '+ok hello', '+OK\tx'])('accepts the greeting %j', (g) => {
    expect(feed(greeted(), `${g}\r\n`)).toEqual([send('USER alice*gw')]);
  });

  it.each([
    ['-ERR [SYS/TEMP] go away', 'bad greeting: -ERR [SYS/TEMP] go away'],
    ['+OKAY', 'bad greeting: +OKAY'],
    ['', 'bad greeting: '],
    ['hello\x01world', 'bad greeting: hello?world'],
  ])('refuses the greeting %j', (g, detail) => {
    const m = greeted();
    const err = failure(feed(m, `${g}\r\n`));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toBe(`${W}: ${detail}`);
    expect(m.status).toBe('failed');
    expect(m.phase).toBe('greeting');
  });

  it('truncates long backend text in the detail', () => {
    const err = failure(feed(greeted(), `-ERR ${'x'.repeat(500)}\r\n`));
    expect(err.detail).toBe(`${W}: bad greeting: -ERR ${'x'.repeat(195)}...`);
  });

  it('data before the connection is up, or during a handshake, is refused', () => {
    const m = machine();
    expect(failure(feed(m, '+OK early\r\n')).detail).toBe(`${W}: unexpected data during connect: +OK early`);
    const t = machine({ tls: 'implicit' });
    t.connected();
    expect(failure(feed(t, 'x\r\n')).detail).toBe(`${W}: unexpected data during tls: x`);
  });
});

describe('BackendLoginMachine: line framing', () => {
  it('reassembles a greeting cut anywhere, and takes a bare LF', () => {
    const m = greeted();
    expect(feed(m, '+O', 'K re', 'ady\r')).toEqual([]);
    expect(feed(m, '\n')).toEqual([send('USER alice*gw')]);
    expect(feed(greeted(), '+OK bare\n')).toEqual([send('USER alice*gw')]);
  });

  it('answers pipelined lines in order (greeting and both login answers in one read)', () => {
    const m = greeted();
    const actions = feed(m, '+OK hi\r\n+OK user\r\n+OK logged in\r\nLEFT');
    expect(actions.slice(0, 2)).toEqual([send('USER alice*gw'), send('PASS m4ster-secret')]);
    const done = doneOf(actions);
    expect(done.loginReply).toBe('+OK logged in');
    expect(done.leftover.toString()).toBe('LEFT');
  });

  it('a line of exactly MAX_BACKEND_LINE octets (CRLF included) passes; one more fails', () => {
    const ok = `+OK ${'a'.repeat(MAX_BACKEND_LINE - 6)}\r\n`;
    expect(Buffer.byteLength(ok)).toBe(MAX_BACKEND_LINE);
    expect(feed(greeted(), ok)).toEqual([send('USER alice*gw')]);
    const long = `+OK ${'a'.repeat(MAX_BACKEND_LINE - 5)}\r\n`;
    const err = failure(feed(greeted(), long));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toBe(`${W}: response line longer than ${MAX_BACKEND_LINE} octets`);
  });

  it('a partial line that fills the cap fails at once, in any phase', () => {
    const m = greeted();
    expect(feed(m, '+OK\r\n')).toHaveLength(1);
    const err = failure(feed(m, 'x'.repeat(1000), 'x'.repeat(MAX_BACKEND_LINE - 1000)));
    expect(err.detail).toBe(`${W}: response line longer than ${MAX_BACKEND_LINE} octets`);
    expect(m.phase).toBe('login');
  });

  it('decodes backend text as UTF-8 for the detail', () => {
    expect(failure(feed(greeted(), '-ERR d\xc3\xa9j\xc3\xa0\r\n')).detail).toBe(`${W}: bad greeting: -ERR déjà`);
  });
});

describe('BackendLoginMachine: STLS', () => {
  it('sends STLS after the greeting, hands over to TLS on +OK, then logs in', () => {
    const m = greeted({ tls: 'starttls' });
    expect(feed(m, '+OK ready\r\n')).toEqual([send('STLS')]);
    expect(m.phase).toBe('starttls');
    expect(feed(m, '+OK Begin TLS negotiation now.\r\n')).toEqual([{ kind: 'startTls' }]);
    expect(m.phase).toBe('tls');
    expect(m.tlsReady()).toEqual([send('USER alice*gw')]); // no second greeting
    expect(m.phase).toBe('login');
  });

  it('a refused STLS is a failure, never a fallback to plaintext', () => {
    const m = greeted({ tls: 'starttls' });
    feed(m, '+OK\r\n');
    const err = failure(feed(m, '-ERR not now\r\n'));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toBe(`${W}: STLS refused: -ERR not now`);
    expect(m.phase).toBe('starttls');
  });

  it('refuses bytes queued behind the STLS answer (response injection)', () => {
    const m = greeted({ tls: 'starttls' });
    feed(m, '+OK\r\n');
    const err = failure(feed(m, '+OK go\r\n+OK Logged in.\r\n'));
    expect(err.detail).toBe(`${W}: 16 bytes after the STLS answer, before TLS`);
    const partial = greeted({ tls: 'starttls' });
    feed(partial, '+OK\r\n');
    expect(failure(feed(partial, '+OK go\r\nX')).detail).toBe(`${W}: 1 bytes after the STLS answer, before TLS`);
  });

  it('XCLIENT offered in the plaintext greeting is sent after the handshake', () => {
    const m = greeted({ tls: 'starttls', xclient: XCLIENT });
    expect(feed(m, '+OK [XCLIENT] ready\r\n')).toEqual([send('STLS')]);
    feed(m, '+OK\r\n');
    expect(m.tlsReady()).toEqual([send(XCLIENT)]);
    expect(m.phase).toBe('xclient');
  });
});

describe('BackendLoginMachine: XCLIENT', () => {
  it('is sent when offered and configured; +OK leads to the login', () => {
    const m = greeted({ xclient: XCLIENT });
    expect(feed(m, '+OK [XCLIENT] Dovecot ready.\r\n')).toEqual([send(XCLIENT)]);
    expect(m.phase).toBe('xclient');
    expect(feed(m, '+OK Updated\r\n')).toEqual([send('USER alice*gw')]);
    expect(m.facts).toEqual({ greeting: '+OK [XCLIENT] Dovecot ready.', xclientOffered: true, xclientSent: true, capaAsked: false, pipelined: false });
  });

  it('is not sent when the greeting does not offer it, or nothing is to be forwarded', () => {
    const notOffered = greeted({ xclient: XCLIENT });
    expect(feed(notOffered, '+OK ready\r\n')).toEqual([send('USER alice*gw')]);
    const notAsked = greeted();
    expect(feed(notAsked, '+OK [xclient] ready\r\n')).toEqual([send('USER alice*gw')]);
    expect(notAsked.facts).toMatchObject({ xclientOffered: true, xclientSent: false });
  });

  it('a refused XCLIENT stops before any credential', () => {
    const m = greeted({ xclient: XCLIENT });
    feed(m, '+OK [XCLIENT]\r\n');
    const actions = feed(m, '-ERR not trusted\r\n');
    expect(actions).toHaveLength(1);
    expect(failure(actions).detail).toBe(`${W}: XCLIENT refused: -ERR not trusted`);
    expect(m.phase).toBe('xclient');
  });
});

describe('BackendLoginMachine: USER/PASS', () => {
  it('USER, +OK, PASS, +OK: done with the reply and what followed it', () => {
    const m = greeted();
    feed(m, '+OK\r\n');
    expect(feed(m, '+OK send PASS\r\n')).toEqual([send('PASS m4ster-secret')]);
    const done = doneOf(feed(m, '+OK Logged in.\r\n+OK 2 messages\r\n'));
    expect(done).toMatchObject({ loginReply: '+OK Logged in.', facts: { greeting: '+OK' } });
    expect(done.leftover.toString()).toBe('+OK 2 messages\r\n');
    expect(m.status).toBe('done');
    expect(m.phase).toBe('done');
    expect(feed(m, 'more\r\n')).toEqual([]); // the relay reads from here on
  });

  it('-ERR to USER stops before PASS is sent', () => {
    const m = greeted();
    feed(m, '+OK\r\n');
    const actions = feed(m, '-ERR no such user\r\n');
    expect(actions).toHaveLength(1);
    const err = failure(actions);
    expect(err.code).toBe('BACKEND_LOGIN_REJECTED');
    expect(err.detail).toBe(`${W}: USER refused: -ERR no such user`);
  });

  it.each([
    ['-ERR [AUTH] Authentication failed.', 'BACKEND_LOGIN_REJECTED'],
    ['-ERR', 'BACKEND_LOGIN_REJECTED'],
    ['-ERR [IN-USE] locked', 'BACKEND_IN_USE'],
    ['-ERR [SYS/TEMP] try later', 'BACKEND_LOGIN_TEMP'],
    ['-err [login-delay] slow down', 'BACKEND_LOGIN_TEMP'],
  ])('PASS answered %j → %s', (reply, code) => {
    const m = greeted();
    feed(m, '+OK\r\n', '+OK\r\n');
    const err = failure(feed(m, `${reply}\r\n`));
    expect(err.code).toBe(code);
    expect(err.detail).toBe(`${W}: PASS refused: ${reply}`);
    expect(err.detail).not.toContain('m4ster-secret');
  });

  it.each(['* weird', '-ERRX', '+ ', '+OKAY', ''])('an answer that is neither +OK nor a proper -ERR (%j) is a generic failure', (reply) => {
    const m = greeted();
    feed(m, '+OK\r\n');
    const err = failure(feed(m, `${reply}\r\n`));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toBe(`${W}: unexpected answer to login: ${reply}`);
  });
});

describe('BackendLoginMachine: CAPA and pipelined USER/PASS', () => {
  const capabilities = (pipelining: boolean): LoginAction => ({ kind: 'capabilities', pipelining });
  /** CAPA broke the link: remembered until restart, never asked again. */
  const broken: LoginAction = { kind: 'capabilities', pipelining: false, capaBroken: true };
  const BOTH = [send('USER alice*gw'), send('PASS m4ster-secret')];
  const CAPA_PIPELINING = '+OK Capability list follows\r\nTOP\r\nUIDL\r\nPIPELINING\r\nUSER\r\n.\r\n';
  const CAPA_PLAIN = '+OK\r\nTOP\r\nUSER\r\n.\r\n';

  it('unknown backend: CAPA after the greeting; PIPELINING learned, then USER and PASS together', () => {
    const m = greeted({ pipelining: 'ask' });
    expect(feed(m, '+OK ready\r\n')).toEqual([send('CAPA')]);
    expect(m.phase).toBe('capa');
    expect(feed(m, CAPA_PIPELINING)).toEqual([capabilities(true), ...BOTH]);
    expect(m.phase).toBe('login');
    expect(feed(m, '+OK\r\n')).toEqual([]);
    const done = doneOf(feed(m, '+OK Logged in.\r\n'));
    expect(done.facts).toMatchObject({ capaAsked: true, pipelined: true });
  });

  it('the CAPA answer may come in any pieces, the tag in any case, byte-stuffed', () => {
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n');
    expect(feed(m, '+OK\r\n..X\r', '\nSASL PLAIN\r\npipelining\r\n', '.', '\r\n')).toEqual([capabilities(true), ...BOTH]);
  });

  it('no PIPELINING in CAPA: learned as such, then USER, wait, PASS', () => {
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n');
    expect(feed(m, CAPA_PLAIN)).toEqual([capabilities(false), send('USER alice*gw')]);
    expect(feed(m, '+OK\r\n')).toEqual([send('PASS m4ster-secret')]);
    expect(doneOf(feed(m, '+OK\r\n')).facts).toMatchObject({ capaAsked: true, pipelined: false });
  });

  it('PIPELINING only as an argument or a prefix does not count', () => {
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n');
    expect(feed(m, '+OK\r\nX-PIPELINING\r\nIMPLEMENTATION PIPELINING\r\nPIPELININGX\r\n.\r\n')).toEqual([
      capabilities(false),
      send('USER alice*gw'),
    ]);
  });

  it.each(['-ERR', '-ERR unknown command', '-err [SYS/TEMP] no'])('CAPA answered %j: no capabilities, USER then PASS', (reply) => {
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n');
    expect(feed(m, `${reply}\r\n`)).toEqual([capabilities(false), send('USER alice*gw')]);
  });

  it.each(['* weird', '+OKAY', '-ERRX', ''])('CAPA answered %j: a protocol failure, before any credential', (reply) => {
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n');
    const actions = feed(m, `${reply}\r\n`);
    expect(actions[0]).toEqual(broken); // never asked again
    const err = failure(actions);
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toBe(`${W}: unexpected answer to CAPA: ${reply}`);
    expect(m.phase).toBe('capa');
  });

  it('a CAPA answer of too many lines, or an over-long line, fails in the capa phase', () => {
    const many = greeted({ pipelining: 'ask' });
    feed(many, '+OK\r\n');
    const lines = Array.from({ length: MAX_CAPA_LINES }, (_, i) => `X-CAP-${i}\r\n`).join('');
    expect(feed(many, `+OK\r\n${lines}`)).toEqual([]);
    const actions = feed(many, 'PIPELINING\r\n.\r\n');
    expect(actions).toHaveLength(2);
    expect(actions[0]).toEqual(broken);
    expect(failure(actions).detail).toBe(`${W}: CAPA answer longer than ${MAX_CAPA_LINES} lines`);
    expect(many.phase).toBe('capa');

    const long = greeted({ pipelining: 'ask' });
    feed(long, '+OK\r\n');
    const over = feed(long, `+OK\r\n${'A'.repeat(MAX_BACKEND_LINE)}`);
    expect(over[0]).toEqual(broken);
    expect(failure(over).detail).toContain('longer than');
  });

  it('CAPA is asked once the link is final: after STLS + TLS and after XCLIENT', () => {
    const m = machine({ tls: 'starttls', pipelining: 'ask', xclient: XCLIENT });
    m.connected();
    expect(feed(m, '+OK [XCLIENT] ready\r\n')).toEqual([send('STLS')]);
    expect(feed(m, '+OK go\r\n')).toEqual([{ kind: 'startTls' }]);
    expect(m.tlsReady()).toEqual([send(XCLIENT)]);
    expect(feed(m, '+OK\r\n')).toEqual([send('CAPA')]);
    expect(feed(m, CAPA_PIPELINING)).toEqual([capabilities(true), ...BOTH]);
  });

  it('known to pipeline: no CAPA, USER and PASS in one go; leftover after the second +OK', () => {
    const m = greeted({ pipelining: 'yes' });
    expect(feed(m, '+OK\r\n')).toEqual(BOTH);
    const done = doneOf(feed(m, '+OK\r\n+OK Logged in.\r\n+OK 2 messages\r\n'));
    expect(done.loginReply).toBe('+OK Logged in.');
    expect(done.leftover.toString()).toBe('+OK 2 messages\r\n');
    expect(done.facts).toMatchObject({ capaAsked: false, pipelined: true });
  });

  it('pipelined USER refused: fails with its code at once; the PASS answer behind it is not read', () => {
    const m = greeted({ pipelining: 'yes' });
    feed(m, '+OK\r\n');
    const actions = feed(m, '-ERR [IN-USE] no such mailbox\r\n-ERR No user name given.\r\n');
    expect(actions).toHaveLength(1);
    const err = failure(actions);
    expect(err.code).toBe('BACKEND_IN_USE');
    expect(err.detail).toBe(`${W}: USER refused: -ERR [IN-USE] no such mailbox`);
    expect(m.phase).toBe('login');
    expect(feed(m, '+OK\r\n')).toEqual([]);
  });

  it.each([
    ['-ERR [AUTH] Authentication failed.', 'BACKEND_LOGIN_REJECTED'],
    ['-ERR [SYS/TEMP] later', 'BACKEND_LOGIN_TEMP'],
  ])('pipelined PASS answered %j → %s', (reply, code) => {
    const m = greeted({ pipelining: 'yes' });
    feed(m, '+OK\r\n');
    const err = failure(feed(m, `+OK\r\n${reply}\r\n`));
    expect(err.code).toBe(code);
    expect(err.detail).toBe(`${W}: PASS refused: ${reply}`);
  });

  it.each([
    ['* garbage', ''],
    ['+ ', ''],
    ['+OK', '+OKAY'],
    ['+OK', '* garbage'],
  ])('pipelined answers %j then %j: a protocol failure', (first, second) => {
    const m = greeted({ pipelining: 'yes' });
    feed(m, '+OK\r\n');
    const err = failure(feed(m, `${first}\r\n${second}\r\n`));
    expect(err.code).toBe('BACKEND_PROTOCOL');
    expect(err.detail).toMatch(/unexpected answer to login/);
  });

  it('the secret is in the send action only: the machine holds it no more once both lines are out', () => {
    const m = greeted({ pipelining: 'yes' });
    feed(m, '+OK\r\n');
    expect(inspect(m, { depth: 10, showHidden: true })).not.toContain('m4ster-secret');
  });

  it.each(['yes', 'ask'] as const)('AUTH PLAIN ignores pipelining %j: no CAPA, one command', (pipelining) => {
    const m = greeted({ login: PLAIN, pipelining });
    expect(feed(m, '+OK\r\n')).toEqual([send(`AUTH PLAIN ${TOKEN}`)]);
    expect(doneOf(feed(m, '+OK\r\n')).facts).toMatchObject({ capaAsked: false, pipelined: false });
  });

  it('a deadline or a close during CAPA names the capa phase, and the backend is never asked again', () => {
    // A legacy server silent at, or closing on, an unknown command would otherwise fail a login each time.
    const m = greeted({ pipelining: 'ask' });
    feed(m, '+OK\r\n', '+OK\r\nTOP\r\n');
    expect(m.timedOut(5)).toEqual([broken, { kind: 'fail', error: expect.any(GatewayError) as unknown }]);
    expect(m.phase).toBe('capa');
    const c = greeted({ pipelining: 'ask' });
    feed(c, '+OK\r\n');
    const closed = c.closed('end');
    expect(closed[0]).toEqual(broken);
    expect(failure(closed).detail).toBe(`${W}: connection closed by the backend during capa`);
  });

  it('a deadline or a close before CAPA (greeting) or during the login teaches nothing', () => {
    const g = machine({ pipelining: 'ask' });
    g.connected();
    expect(g.closed('end').map((a) => a.kind)).toEqual(['fail']);
    const l = greeted({ pipelining: 'ask' });
    feed(l, '+OK\r\n', CAPA_PLAIN);
    expect(l.timedOut(5).map((a) => a.kind)).toEqual(['fail']);
  });
});

describe('BackendLoginMachine: AUTH PLAIN', () => {
  it('sends the initial response in one line', () => {
    const m = greeted({ login: PLAIN });
    expect(feed(m, '+OK\r\n')).toEqual([send(`AUTH PLAIN ${TOKEN}`)]);
    expect(doneOf(feed(m, '+OK Logged in.\r\n')).loginReply).toBe('+OK Logged in.');
  });

  it('sends it again after "+ ", once', () => {
    const m = greeted({ login: PLAIN });
    feed(m, '+OK\r\n');
    expect(feed(m, '+ \r\n')).toEqual([send(TOKEN)]);
    const again = greeted({ login: PLAIN });
    feed(again, '+OK\r\n', '+\r\n');
    expect(failure(feed(again, '+ \r\n')).detail).toBe(`${W}: unexpected answer to login: + `);
  });

  it('a refusal names AUTH PLAIN, also after the continuation', () => {
    const m = greeted({ login: PLAIN });
    feed(m, '+OK\r\n');
    expect(failure(feed(m, '-ERR [AUTH] no\r\n')).detail).toBe(`${W}: AUTH PLAIN refused: -ERR [AUTH] no`);
    const c = greeted({ login: PLAIN });
    feed(c, '+OK\r\n', '+ \r\n');
    const err = failure(feed(c, '-ERR [IN-USE] busy\r\n'));
    expect(err.code).toBe('BACKEND_IN_USE');
    expect(err.detail).toBe(`${W}: AUTH PLAIN refused: -ERR [IN-USE] busy`);
  });
});

describe('BackendLoginMachine: the secret and the end', () => {
  const holds = (m: BackendLoginMachine, s: string): boolean => inspect(m, { depth: 10, showHidden: true }).includes(s);

  it('holds the secret only until it is written', () => {
    const up = greeted();
    expect(holds(up, 'm4ster-secret')).toBe(true);
    feed(up, '+OK\r\n');
    expect(holds(up, 'm4ster-secret')).toBe(true); // PASS still to come
    feed(up, '+OK\r\n');
    expect(holds(up, 'm4ster-secret')).toBe(false);

    const plain = greeted({ login: PLAIN });
    feed(plain, '+OK\r\n');
    expect(holds(plain, TOKEN)).toBe(true); // kept for a "+ " continuation
    feed(plain, '+OK\r\n');
    expect(holds(plain, TOKEN)).toBe(false);
    expect(holds(plain, 'm4ster-secret')).toBe(false);
  });

  it('drops it on failure and when the host gives up', () => {
    const failed = greeted();
    feed(failed, '-ERR\r\n');
    expect(holds(failed, 'm4ster-secret')).toBe(false);
    const abandoned = greeted({ login: PLAIN });
    feed(abandoned, '+OK\r\n');
    abandoned.abandon();
    expect(holds(abandoned, TOKEN)).toBe(false);
    expect(abandoned.status).toBe('failed');
    expect(abandoned.phase).toBe('login');
    expect(feed(abandoned, '+OK\r\n')).toEqual([]);
  });

  it('a connection closed before the login is done fails by phase', () => {
    const m = greeted();
    expect(failure(m.closed('end')).detail).toBe(`${W}: connection closed by the backend during greeting`);
    const c = greeted();
    feed(c, '+OK\r\n');
    expect(failure(c.closed('close'))).toMatchObject({ code: 'BACKEND_PROTOCOL', detail: `${W}: connection closed during login` });
    const t = machine({ tls: 'implicit' });
    t.connected();
    expect(failure(t.closed('end'))).toMatchObject({
      code: 'BACKEND_UNREACHABLE',
      detail: `${W}: connection closed by the backend during the TLS handshake`,
    });
    const t2 = machine({ tls: 'implicit' });
    t2.connected();
    expect(failure(t2.closed('close')).detail).toBe(`${W}: connection closed during the TLS handshake`);
    expect(t2.closed('close')).toEqual([]); // once
  });

  it('a deadline names the phase', () => {
    const m = machine();
    expect(failure(m.timedOut(250))).toMatchObject({ code: 'BACKEND_TIMEOUT', detail: `${W}: no answer within 250 ms (connect)` });
    const l = greeted();
    feed(l, '+OK\r\n');
    expect(failure(l.timedOut(900)).detail).toBe(`${W}: no answer within 900 ms (login)`);
    expect(l.timedOut(900)).toEqual([]);
  });
});

describe('greeting step and helpers', () => {
  it('readGreeting frames, caps and judges one line in the caller’s encoding', () => {
    const f = new LineFramer();
    f.push(Buffer.from('+OK h\xe9\r\n-ERR', 'latin1'));
    expect(readGreeting(f, 'latin1')).toEqual({ kind: 'ok', text: '+OK hé' });
    expect(readGreeting(f, 'latin1')).toBeUndefined();
    f.push(Buffer.from('\r\n'));
    expect(readGreeting(f, 'utf8')).toEqual({ kind: 'bad', text: '-ERR' });
    f.push(Buffer.alloc(MAX_BACKEND_LINE, 0x41));
    expect(readGreeting(f, 'utf8')).toEqual({ kind: 'overflow' });
  });

  it('classifyLoginFailure maps RFC 3206 codes', () => {
    expect(classifyLoginFailure('-ERR [IN-USE] x')).toBe('BACKEND_IN_USE');
    expect(classifyLoginFailure('-ERR [SYS/TEMP]')).toBe('BACKEND_LOGIN_TEMP');
    expect(classifyLoginFailure('-ERR [LOGIN-DELAY] x')).toBe('BACKEND_LOGIN_TEMP');
    expect(classifyLoginFailure('-ERR [SYS/PERM] x')).toBe('BACKEND_LOGIN_REJECTED');
    expect(classifyLoginFailure('-ERR wrong')).toBe('BACKEND_LOGIN_REJECTED');
  });

  it('assertSafeCredentials refuses CR, LF and NUL in any field', () => {
    expect(() => assertSafeCredentials(USER_PASS)).not.toThrow();
    expect(() => assertSafeCredentials({ ...USER_PASS, user: 'a\r\nDELE 1' })).toThrow(GatewayError);
    expect(() => assertSafeCredentials({ ...PLAIN, authzid: 'a\0b' })).toThrow('credential contains CR/LF/NUL');
    expect(() => assertSafeCredentials({ ...PLAIN, password: 'x\n' })).toThrow(GatewayError);
  });
});
