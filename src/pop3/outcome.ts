/**
 * What a command or an AUTH step comes to: the actions to emit, or a refusal
 * naming the budget it spends (the session's `settle` turns it into the
 * reply and counts it); and the reply-line builders both use.
 */
import { ERRORS, type ErrorCode } from '../errors.js';
import type { Pop3Action } from './types.js';

/**
 * A refused command. `count` says which budget it spends: 'error' the
 * protocol-error budget (maxErrors), 'auth' the failed-login budget
 * (maxAuthAttempts), 'none' neither (server-side trouble).
 */
export interface Failure {
  readonly fail: ErrorCode;
  readonly count: 'error' | 'auth' | 'none';
  /** Client-visible text instead of the catalogue's (auth service failure text). */
  readonly text?: string;
  /** Close after this reply even if the catalogue entry would not. */
  readonly close?: boolean;
}
export type Outcome = Pop3Action[] | Failure;

export const protocolError = (code: ErrorCode): Failure => ({ fail: code, count: 'error' });

export function reply(line: string): Pop3Action {
  return { kind: 'reply', line };
}

/** A multi-line reply: status line, items, terminating dot. Items are pre-sanitised. */
export function multiLine(head: string, items: readonly string[]): Pop3Action[] {
  return [reply(head), ...items.map(reply), reply('.')];
}

/** Server-side trouble ([SYS/*], [IN-USE]): not the client's fault, so it spends no attempt. */
export function isServerTrouble(code: ErrorCode): boolean {
  const resp: string | undefined = ERRORS[code].resp;
  return resp === 'SYS/TEMP' || resp === 'SYS/PERM' || resp === 'IN-USE';
}
