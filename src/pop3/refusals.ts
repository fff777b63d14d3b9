/**
 * Which catalogue code (src/errors.ts) refuses client input that cannot be
 * used: a user name or password, a command line that does not parse, and
 * each failure reason of the message parsers in sasl.ts.
 */
import type { ErrorCode } from '../errors.js';
import type { CommandParseError } from './command.js';
import type { Failure } from './outcome.js';
import {
  hasForbiddenCredentialChars,
  type BearerFailure,
  type GssapiLayerFailure,
  type NameDigestFailure,
  type PlainFailure,
} from './sasl.js';

/** The reply to a user name or password that cannot be used, or undefined when it can. */
export function credentialProblem(s: string): ErrorCode | undefined {
  if (s === '') return 'BAD_SYNTAX';
  if (hasForbiddenCredentialChars(s)) return 'BAD_CHARACTERS';
  return undefined;
}

export const PLAIN_FAILURE: Record<PlainFailure, ErrorCode> = {
  'field-count': 'BAD_SYNTAX',
  'empty-authcid': 'BAD_SYNTAX',
  'empty-password': 'BAD_SYNTAX',
  'nul-in-field': 'BAD_CHARACTERS',
  'bad-characters': 'BAD_CHARACTERS',
  'bad-utf8': 'BAD_CHARACTERS',
};

/** Refusals of APOP arguments and CRAM-MD5 responses. */
export const NAME_DIGEST_FAILURE: Record<NameDigestFailure, ErrorCode> = {
  syntax: 'BAD_SYNTAX',
  'bad-characters': 'BAD_CHARACTERS',
  'bad-utf8': 'BAD_CHARACTERS',
};

/** Refusals of OAUTHBEARER and XOAUTH2 messages (RFC 7628): malformed, so protocol errors. */
export const BEARER_FAILURE: Record<BearerFailure, ErrorCode> = {
  syntax: 'BAD_SYNTAX',
  'no-token': 'BAD_SYNTAX',
  'bad-utf8': 'BAD_CHARACTERS',
  'bad-characters': 'BAD_CHARACTERS',
};

/**
 * Refusals of the client's RFC 4752 security-layer answer. Malformed data
 * follows the PLAIN rules (protocol errors); choosing a layer that was not
 * offered fails the login and spends an attempt.
 */
export const GSSAPI_LAYER_FAILURE: Record<GssapiLayerFailure, Failure> = {
  short: { fail: 'BAD_SYNTAX', count: 'error' },
  layer: { fail: 'UNSUPPORTED_SECURITY_LAYER', count: 'auth' },
  'bad-utf8': { fail: 'BAD_CHARACTERS', count: 'error' },
  'bad-characters': { fail: 'BAD_CHARACTERS', count: 'error' },
};

/** Verbs whose arguments are credentials: a NUL or bad UTF-8 there is a credential problem. */
const CREDENTIAL_VERBS: ReadonlySet<string> = new Set(['USER', 'PASS', 'APOP', 'AUTH']);

export function parseFailureCode(err: CommandParseError): ErrorCode {
  if ((err.reason === 'nul' || err.reason === 'bad-utf8') && err.verb !== undefined && CREDENTIAL_VERBS.has(err.verb)) {
    return 'BAD_CHARACTERS';
  }
  return err.reason === 'bad-keyword' ? 'UNKNOWN_COMMAND' : 'BAD_SYNTAX';
}
