import type { Logger } from 'pino';
import type { LogLevel } from '../errors.js';
import type { LoginOutcome, Metrics } from '../observability/metrics.js';

/**
 * What one login attempt's audit line says besides the connection's own
 * bindings (cid, remote, rport, via, listener, tls, cipher). See
 * docs/operations.md, "Audit events".
 */
export interface LoginAuditFields {
  readonly mechanism: string;
  readonly outcome: LoginOutcome;
  /** Error catalogue code (failures). */
  readonly code?: string;
  /** Why it failed, for operators (never shown to the client). */
  readonly reason?: string;
  /** The user: the name the client claimed, or the verified / mapped user on success. */
  readonly user?: string;
  /** The Kerberos principal (KPOP, GSSAPI). */
  readonly principal?: string;
  /** `host:port` of the backend session (success). */
  readonly backend?: string;
  readonly [extra: string]: unknown;
}

/** The level an audit line is written at: never below info (a catalogue entry's debug level is for its other lines). */
export function auditLevel(level: LogLevel): Exclude<LogLevel, 'debug'> {
  return level === 'debug' ? 'info' : level;
}

/**
 * The one `event: "login"` line of a login attempt and its count in
 * popgate_auth_attempts_total: every place that decides a login attempt
 * reports it through here, exactly once. `log` undefined: the line's level
 * is disabled (the count still happens).
 */
export function auditLogin(log: Logger | undefined, metrics: Metrics, level: LogLevel, fields: LoginAuditFields, msg: string): void {
  log?.[auditLevel(level)]({ event: 'login', ...fields }, msg);
  metrics.loginAttempt({ mechanism: fields.mechanism, outcome: fields.outcome, code: fields.code });
}
