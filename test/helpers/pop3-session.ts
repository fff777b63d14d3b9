/** Shared fixtures for the sans-I/O session tests: options, feeding lines, reading replies. */
import { expect } from 'vitest';
import { errorReply, type ErrorCode } from '../../src/errors.js';
import type { Pop3Session } from '../../src/pop3/session.js';
import type { LoginCredentials, Pop3Action, Pop3SessionOptions } from '../../src/pop3/types.js';

/** A plaintext pop3 listener with STLS and every mechanism, unless overridden. */
export function sessionOptions(over: Partial<Pop3SessionOptions> = {}): Pop3SessionOptions {
  return {
    tls: false,
    stlsAvailable: true,
    allowPlaintextAuth: false,
    saslMechanisms: ['PLAIN', 'LOGIN', 'GSSAPI'],
    greeting: 'popgate ready',
    implementation: 'popgate',
    backendCapabilities: ['TOP', 'UIDL'],
    maxAuthAttempts: 3,
    maxErrors: 5,
    maxCommandLine: 255,
    maxSaslLine: 8192,
    ...over,
  };
}

export const feedLine = (s: Pop3Session, line: string, encoding: BufferEncoding = 'utf8'): Pop3Action[] =>
  s.feedLine(Buffer.from(line, encoding));

export const replies = (actions: Pop3Action[]): string[] => actions.flatMap((a) => (a.kind === 'reply' ? [a.line] : []));

export const errActions = (code: ErrorCode): Pop3Action[] => [{ kind: 'reply', line: errorReply(code) }];

export function credentialsOf(actions: Pop3Action[]): LoginCredentials {
  const a = actions.find((x) => x.kind === 'authenticate');
  if (!a || a.kind !== 'authenticate') throw new Error(`no authenticate in ${JSON.stringify(actions)}`);
  return a.credentials;
}

/** The CAPA list without head and terminator. */
export function capaOf(s: Pop3Session): string[] {
  const r = replies(feedLine(s, 'CAPA'));
  expect(r[0]).toMatch(/^\+OK/);
  expect(r.at(-1)).toBe('.');
  return r.slice(1, -1);
}
