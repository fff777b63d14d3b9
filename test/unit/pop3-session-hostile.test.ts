/**
 * The session's pre-dispatch checks (`screen`): early talkers, a TLS
 * ClientHello on a plaintext channel, HTTP requests; and that the
 * too-many-errors rule still applies to everything else.
 */
import { describe, expect, it } from 'vitest';
import { errorReply } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';
import { looksLikeHttpRequest, looksLikeTlsClientHello } from '../../src/pop3/hostile.js';
import { Pop3Session } from '../../src/pop3/session.js';
import type { Pop3Action } from '../../src/pop3/types.js';
import { feedLine, replies, sessionOptions } from '../helpers/pop3-session.js';

const closeWith = (code: Parameters<typeof errorReply>[0]): Pop3Action[] => [
  { kind: 'reply', line: errorReply(code) },
  { kind: 'close', reason: code },
];

/** The start of a real TLS 1.2/1.3 ClientHello record: handshake(22), 3.1, length, client_hello(1). */
const CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0a, 0x41]);

function greeted(over: Parameters<typeof sessionOptions>[0] = {}): Pop3Session {
  const s = new Pop3Session(sessionOptions(over));
  expect(replies(s.greet())[0]).toMatch(/^\+OK/);
  return s;
}

describe('recognisers', () => {
  it('TLS ClientHello: 0x16 then major version 3; a lone 0x16 is enough', () => {
    expect(looksLikeTlsClientHello(CLIENT_HELLO)).toBe(true);
    expect(looksLikeTlsClientHello(Buffer.from([0x16]))).toBe(true);
    expect(looksLikeTlsClientHello(Buffer.from([0x16, 0x04]))).toBe(false);
    expect(looksLikeTlsClientHello(Buffer.from('CAPA\r\n'))).toBe(false);
    expect(looksLikeTlsClientHello(Buffer.alloc(0))).toBe(false);
  });

  it('HTTP request lines, and nothing a POP3 client sends', () => {
    for (const line of [
      'GET / HTTP/1.1',
      'POST /login HTTP/1.0',
      'HEAD /x?y=1 HTTP/1.1',
      'CONNECT mail.example:110 HTTP/1.1',
      'PUT /a HTTP/1.1',
      'OPTIONS * HTTP/1.1',
      'PRI * HTTP/2.0',
    ]) {
      expect(looksLikeHttpRequest(Buffer.from(line)), line).toBe(true);
    }
    for (const line of ['GET /', 'GET / HTTP/3', 'get / HTTP/1.1', 'USER GET / HTTP/1.1', 'GET  / HTTP/1.1', 'CAPA', 'USER alice', 'GET / HTTP/1.1 x']) {
      expect(looksLikeHttpRequest(Buffer.from(line)), line).toBe(false);
    }
  });
});

describe('early talker', () => {
  it('bytes before the greeting close the connection with EARLY_TALKER', () => {
    const s = new Pop3Session(sessionOptions());
    expect(s.firstBytes(Buffer.from('CAPA\r\n'))).toEqual(closeWith('EARLY_TALKER'));
    expect(s.state).toBe('CLOSED');
    // Nothing after that: no greeting, no lines.
    expect(s.greet()).toEqual([]);
    expect(feedLine(s, 'CAPA')).toEqual([]);
  });

  it('bytes after the greeting are fine, and only the first chunk is screened', () => {
    const s = greeted();
    expect(s.firstBytes(Buffer.from('CAPA\r\n'))).toEqual([]);
    expect(s.firstBytes(CLIENT_HELLO)).toEqual([]);
    expect(replies(feedLine(s, 'NOOP'))).toEqual(['+OK']);
  });

  it('an empty chunk is not client input', () => {
    const s = new Pop3Session(sessionOptions());
    expect(s.firstBytes(Buffer.alloc(0))).toEqual([]);
    s.greet();
    expect(s.firstBytes(Buffer.from('NOOP\r\n'))).toEqual([]);
  });

  it('KPOP: lines fed after the greeting (Heimdal push pipelining behind its AP-REQ) are not early talk', () => {
    const s = new Pop3Session(sessionOptions({ kerberosPrincipal: 'alice@EXAMPLE.COM' }));
    s.greet();
    expect(replies(feedLine(s, 'USER alice'))).toEqual(['+OK']);
  });
});

describe('TLS ClientHello on a plaintext port', () => {
  it('as the first chunk: closes with TLS_ON_PLAINTEXT_PORT, naming POP3S and STLS', () => {
    const s = greeted();
    const actions = s.firstBytes(CLIENT_HELLO);
    expect(actions).toEqual(closeWith('TLS_ON_PLAINTEXT_PORT'));
    expect(replies(actions)[0]).toBe('-ERR This port speaks POP3; use port 995 for POP3S or STLS');
    expect(s.state).toBe('CLOSED');
  });

  it('a ClientHello split after its first byte is still recognised', () => {
    const s = greeted();
    expect(s.firstBytes(Buffer.from([0x16]))).toEqual(closeWith('TLS_ON_PLAINTEXT_PORT'));
  });

  it('as the first line, when the host framed it without calling firstBytes', () => {
    const s = greeted();
    const framer = new LineFramer();
    framer.push(Buffer.concat([CLIENT_HELLO, Buffer.from('\n')]));
    const framed = framer.next(s.lineLimit);
    expect(framed?.kind).toBe('line');
    if (framed?.kind !== 'line') return;
    expect(s.feedLine(framed.line)).toEqual(closeWith('TLS_ON_PLAINTEXT_PORT'));
  });

  it('is not checked inside TLS (pop3s), where the bytes are decrypted POP3', () => {
    const s = greeted({ tls: true, stlsAvailable: false });
    expect(s.firstBytes(CLIENT_HELLO)).toEqual([]);
    // The line itself is then just junk: a counted protocol error.
    expect(replies(s.feedLine(CLIENT_HELLO))).toEqual([errorReply('BAD_SYNTAX')]);
  });

  it('0x16 later in the session is a counted protocol error, not a ClientHello', () => {
    const s = greeted();
    expect(replies(feedLine(s, 'NOOP'))).toEqual(['+OK']);
    expect(replies(s.feedLine(CLIENT_HELLO))).toEqual([errorReply('BAD_SYNTAX')]);
    expect(s.counters.errors).toBe(1);
    expect(s.state).toBe('AUTHORIZATION');
  });
});

describe('HTTP request on the POP3 port', () => {
  it('closes with HTTP_ON_POP3_PORT at once, without spending the error budget first', () => {
    const s = greeted({ maxErrors: 10 });
    const actions = feedLine(s, 'GET / HTTP/1.1');
    expect(actions).toEqual(closeWith('HTTP_ON_POP3_PORT'));
    expect(s.counters.errors).toBe(0);
    // The headers that follow are never processed.
    expect(feedLine(s, 'Host: 127.0.0.1:110')).toEqual([]);
    expect(feedLine(s, 'USER alice')).toEqual([]);
  });

  it('also after other commands, and in the middle of a SASL exchange', () => {
    const a = greeted();
    expect(replies(feedLine(a, 'CAPA'))[0]).toMatch(/^\+OK/);
    expect(feedLine(a, 'POST /form HTTP/1.1')).toEqual(closeWith('HTTP_ON_POP3_PORT'));

    const b = greeted({ tls: true, stlsAvailable: false });
    expect(replies(feedLine(b, 'AUTH PLAIN'))).toEqual(['+ ']);
    expect(b.state).toBe('SASL');
    expect(feedLine(b, 'GET / HTTP/1.0')).toEqual(closeWith('HTTP_ON_POP3_PORT'));
  });

  it('a bare "GET" or "GET /" without a version is just an unknown command', () => {
    const s = greeted();
    expect(replies(feedLine(s, 'GET /'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(replies(feedLine(s, 'GET'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(s.state).toBe('AUTHORIZATION');
  });
});

describe('too many unknown commands (unchanged)', () => {
  it('closes with TOO_MANY_ERRORS on the maxErrors-th bad command', () => {
    const s = greeted({ maxErrors: 3 });
    expect(s.firstBytes(Buffer.from('XYZZY\r\n'))).toEqual([]);
    expect(replies(feedLine(s, 'XYZZY'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(replies(feedLine(s, 'HELO x'))).toEqual([errorReply('UNKNOWN_COMMAND')]);
    expect(feedLine(s, 'EHLO x')).toEqual(closeWith('TOO_MANY_ERRORS'));
  });
});
