/**
 * `popgate doctor`'s results: one line of the checklist each. A check is a
 * function that returns results and never throws for what it finds (a dead
 * backend is a `fail` result, not an exception).
 */

export const DOCTOR_GROUPS = ['config', 'tls', 'backend', 'services', 'kerberos'] as const;
export type DoctorGroup = (typeof DOCTOR_GROUPS)[number];

export type DoctorStatus = 'ok' | 'fail' | 'warn';

export interface DoctorResult {
  readonly group: DoctorGroup;
  /** What was checked, e.g. `listeners[0] (pop3s-995) certificate chain`. */
  readonly check: string;
  readonly status: DoctorStatus;
  /** What was found. */
  readonly detail: string;
  /** On fail or warn: the fix in one sentence. */
  readonly fix?: string;
}

export function ok(group: DoctorGroup, check: string, detail: string): DoctorResult {
  return { group, check, status: 'ok', detail };
}

export function fail(group: DoctorGroup, check: string, detail: string, fix: string): DoctorResult {
  return { group, check, status: 'fail', detail, fix };
}

export function warn(group: DoctorGroup, check: string, detail: string, fix: string): DoctorResult {
  return { group, check, status: 'warn', detail, fix };
}

/** An error's code or message, for a detail. */
export function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
