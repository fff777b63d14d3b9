/**
 * The error catalogue is the contract with clients and log readers: every
 * code's reply carries the right RFC 3206 code, and the table in
 * docs/errors.md lists exactly what the code does, so the
 * docs cannot drift.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, errorReply, GatewayError, type ErrorCode } from '../../src/errors.js';

const codes = Object.keys(ERRORS) as ErrorCode[];

describe('error catalogue', () => {
  it('documents every code in docs/errors.md with its exact reply, log level and close flag', () => {
    const doc = readFileSync('docs/errors.md', 'utf8');
    const documented = [...doc.matchAll(/^\| `([A-Z0-9_]+)` \| `([^`]+)` \| (\w+) \| (yes|no) \|$/gm)];
    expect(documented.map((m) => m[1]).sort()).toEqual([...codes].sort());
    for (const [, code, reply, level, close] of documented) {
      const entry = ERRORS[code as ErrorCode];
      expect(reply).toBe(errorReply(code as ErrorCode));
      expect(level).toBe(entry.level);
      expect(close === 'yes').toBe(entry.close);
    }
  });

  it('never blames the user for server trouble: backend, verifier and internal failures are SYS/*', () => {
    for (const code of codes.filter((c) => /^(BACKEND_|VERIFIER_|NO_BACKEND|INTERNAL|SHUTTING|TOO_MANY_CONN)/.test(c))) {
      expect(errorReply(code), code).toMatch(/^-ERR \[(SYS\/TEMP|SYS\/PERM|IN-USE)\] /);
    }
    expect(errorReply('AUTH_FAILED')).toBe('-ERR [AUTH] Authentication failed');
  });

  it('replies are single POP3 lines within the RFC 2449 512-octet response limit', () => {
    for (const code of codes) {
      const line = errorReply(code);
      expect(line).not.toMatch(/[\r\n\0]/);
      expect(Buffer.byteLength(line) + 2).toBeLessThanOrEqual(512);
    }
  });

  it('GatewayError keeps the detail for the log and the code for the reply', () => {
    const err = new GatewayError('BACKEND_UNREACHABLE', '127.0.0.1:110 ECONNREFUSED');
    expect(err.code).toBe('BACKEND_UNREACHABLE');
    expect(err.entry.resp).toBe('SYS/TEMP');
    expect(err.message).toContain('ECONNREFUSED');
    expect(errorReply(err.code)).not.toContain('ECONNREFUSED');
  });
});

describe('client-visible text from outside (auth service, backend)', () => {
  it('is cleaned and clipped by octets so the line stays within 512 octets', () => {
    const line = errorReply('AUTH_FAILED', `${'中'.repeat(300)}\r\nINJECTED`);
    expect(line).not.toMatch(/[\r\n]/);
    expect(Buffer.byteLength(line) + 2).toBeLessThanOrEqual(512);
    expect(line.startsWith('-ERR [AUTH] 中')).toBe(true);
  });
});
