import { pino } from 'pino';
/**
 * Paths pino censors wherever they appear in a log object. Secrets are also
 * masked at the source (the protocol core never hands a password to a logger);
 * this is the second belt.
 */
export const REDACT_PATHS = [
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
export function createLogger(opts) {
    return pino({
        level: opts.level,
        base: { svc: 'popgate' },
        redact: { paths: [...REDACT_PATHS], censor: '***' },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
    }, opts.destination ?? pino.destination({ dest: 1, sync: false }));
}
//# sourceMappingURL=logger.js.map