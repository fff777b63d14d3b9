import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Paths pino censors wherever they appear in a log object. Secrets are also
 * masked at the source (the protocol core never hands a password to a logger);
 * this is the second belt.
 */
export const REDACT_PATHS: readonly string[] = [
  'password',
  'pass',
  'secret',
  'masterPassword',
  'credentials.password',
  '*.password',
  '*.pass',
  '*.secret',
  '*.masterPassword',
  'login.password',
  'config.backend.login.password',
  'req.headers.authorization',
  'headers["auth-pass"]',
];

export interface LoggerOptions {
  readonly level: LevelWithSilent;
  readonly destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { svc: 'popgate' },
      redact: { paths: [...REDACT_PATHS], censor: '***' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
