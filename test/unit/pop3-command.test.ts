import { describe, expect, it } from 'vitest';
import { MAX_KEYWORD_LENGTH, maskCommandForLog, parseCommand } from '../../src/pop3/command.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('parseCommand', () => {
  it('upper-cases the keyword and returns the rest after one space, unmodified', () => {
    const r = parseCommand(b('pass  my secret  '));
    expect(r).toMatchObject({ ok: true, verb: 'PASS', args: ' my secret  ', hasArgs: true });
  });

  it('handles a bare keyword and a keyword with a trailing space', () => {
    expect(parseCommand(b('CAPA'))).toMatchObject({ ok: true, verb: 'CAPA', args: '', hasArgs: false });
    expect(parseCommand(b('Capa '))).toMatchObject({ ok: true, verb: 'CAPA', args: '', hasArgs: true });
  });

  it('decodes UTF-8 arguments', () => {
    expect(parseCommand(b('USER jürgen@example.org'))).toMatchObject({ ok: true, args: 'jürgen@example.org' });
  });

  it('keeps the raw line', () => {
    const line = b('NOOP');
    const r = parseCommand(line);
    expect(r.ok && r.raw).toBe(line);
  });

  it('rejects an empty line', () => {
    expect(parseCommand(Buffer.alloc(0))).toEqual({ ok: false, reason: 'empty' });
  });

  it('rejects NUL anywhere, naming the verb when it was well formed', () => {
    expect(parseCommand(b('USER a\0b'))).toEqual({ ok: false, reason: 'nul', verb: 'USER' });
    expect(parseCommand(b('US\0ER a'))).toEqual({ ok: false, reason: 'nul' });
  });

  it('rejects a non-printable, empty or over-long keyword', () => {
    expect(parseCommand(b('US\tER a'))).toEqual({ ok: false, reason: 'bad-keyword' });
    expect(parseCommand(b(' USER a'))).toEqual({ ok: false, reason: 'bad-keyword' });
    expect(parseCommand(b('CAPA\x7f'))).toEqual({ ok: false, reason: 'bad-keyword' });
    expect(parseCommand(Buffer.from([0xc3, 0xa9]))).toEqual({ ok: false, reason: 'bad-keyword' });
    expect(parseCommand(b('X'.repeat(MAX_KEYWORD_LENGTH)))).toMatchObject({ ok: true });
    expect(parseCommand(b('X'.repeat(MAX_KEYWORD_LENGTH + 1)))).toEqual({ ok: false, reason: 'bad-keyword' });
  });

  it('rejects invalid UTF-8 in arguments', () => {
    expect(parseCommand(Buffer.concat([b('PASS '), Buffer.from([0xff, 0xfe])]))).toEqual({
      ok: false,
      reason: 'bad-utf8',
      verb: 'PASS',
    });
  });
});

describe('maskCommandForLog', () => {
  it('masks the PASS argument in any case', () => {
    expect(maskCommandForLog(b('PASS hunter2'))).toBe('PASS ***');
    expect(maskCommandForLog('pass two words')).toBe('pass ***');
    expect(maskCommandForLog('PASS')).toBe('PASS');
  });

  it('masks an AUTH initial response but keeps the mechanism', () => {
    expect(maskCommandForLog('AUTH PLAIN AGFsaWNlAHNlY3JldA==')).toBe('AUTH PLAIN ***');
    expect(maskCommandForLog('auth login YWxpY2U=')).toBe('auth login ***');
    expect(maskCommandForLog('AUTH PLAIN')).toBe('AUTH PLAIN');
    expect(maskCommandForLog('AUTH')).toBe('AUTH');
  });

  it('masks malformed credential lines too', () => {
    expect(maskCommandForLog('PASS\tsecret')).toBe('PASS ***');
    expect(maskCommandForLog('AUTH PLAIN\tc2VjcmV0')).toBe('AUTH PLAIN ***');
  });

  it('masks the APOP digest but keeps the name, whatever the line looks like', () => {
    const digest = 'c4c9334bac560ecc979e58001b3e22fb';
    expect(maskCommandForLog(`APOP mrose ${digest}`)).toBe('APOP mrose ***');
    expect(maskCommandForLog(`apop mrose ${digest}`)).toBe('apop mrose ***');
    expect(maskCommandForLog(`APOP ${digest}`)).toBe('APOP ***');
    expect(maskCommandForLog(`APOP mrose ${digest} `)).toBe('APOP mrose ***');
    expect(maskCommandForLog(`APOP  mrose  ${digest}`)).toBe('APOP mrose ***');
    expect(maskCommandForLog(`APOP\tmrose ${digest}`)).toBe('APOP \\x09mrose ***');
    expect(maskCommandForLog('APOP')).toBe('APOP');
    for (const line of [`APOP mrose ${digest}`, `APOP ${digest}`, `APOP mr ose ${digest} x`, `APOP\t${digest}`]) {
      expect(maskCommandForLog(line)).not.toContain(digest.slice(0, 8));
    }
  });

  it('masks a CRAM-MD5 response line (a continuation) and an AUTH CRAM-MD5 initial response', () => {
    expect(maskCommandForLog('dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw', 'continuation')).toBe('***');
    expect(maskCommandForLog('AUTH CRAM-MD5 dGltIGI5MTNhNjAy')).toBe('AUTH CRAM-MD5 ***');
    expect(maskCommandForLog('AUTH EXTERNAL YWxpY2U=')).toBe('AUTH EXTERNAL ***');
  });

  it('masks every SASL continuation except the cancel line', () => {
    expect(maskCommandForLog('AGFsaWNlAHNlY3JldA==', 'continuation')).toBe('***');
    expect(maskCommandForLog('USER alice', 'continuation')).toBe('***');
    expect(maskCommandForLog('*', 'continuation')).toBe('*');
  });

  it('leaves other commands readable and escapes control characters', () => {
    expect(maskCommandForLog('USER alice')).toBe('USER alice');
    expect(maskCommandForLog('CAPA')).toBe('CAPA');
    expect(maskCommandForLog(b('USER a\rb\x1b[2J'))).toBe('USER a\\x0db\\x1b[2J');
    expect(maskCommandForLog('retr 1')).toBe('retr 1');
  });

  it('hides unknown and malformed lines: they may be a credential sent at the wrong moment', () => {
    // A SASL response after the mechanism was refused (base64 of "\0pat\0secret").
    expect(maskCommandForLog('AHBhdABzZWNyZXQ=')).toBe('*** (16 bytes)');
    // PASS with a leading blank is not PASS to the parser, and not shown either.
    expect(maskCommandForLog(' PASS hunter2')).toBe('*** (13 bytes)');
    expect(maskCommandForLog('\tPASS hunter2')).toBe('*** (13 bytes)');
    expect(maskCommandForLog('hunter2')).toBe('*** (7 bytes)');
    expect(maskCommandForLog('GET / HTTP/1.1')).toBe('*** (14 bytes)');
    expect(maskCommandForLog('')).toBe('*** (0 bytes)');
  });
});
