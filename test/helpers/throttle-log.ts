import type { LoginThrottleOptions } from '../../src/auth/throttle/index.js';

/** One call the throttle made on its logger. */
export interface LogCall {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

/** A throttle logger that records every call into `calls`. */
export function recordingLog(calls: LogCall[]): NonNullable<LoginThrottleOptions['log']> {
  const at =
    (level: LogCall['level']) =>
    (obj: unknown, msg?: string): void => {
      calls.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
    };
  // Only the three methods the throttle calls; pino's overloads are not needed here.
  return { info: at('info'), warn: at('warn'), error: at('error') } as unknown as NonNullable<LoginThrottleOptions['log']>;
}
