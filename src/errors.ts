/**
 * The one error catalogue. Every failure popgate reports to a client is a
 * GatewayError with a code from this table; the table decides the POP3 reply
 * (with its RFC 3206 response code) and the log level. Layers throw, the
 * connection boundary logs once and replies.
 */

/** RFC 2449 / RFC 3206 / RFC 2449 extended response codes popgate uses. */
export type RespCode = 'AUTH' | 'SYS/TEMP' | 'SYS/PERM' | 'IN-USE' | 'LOGIN-DELAY';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

interface CatalogueEntry {
  /** RFC 3206 code shown to the client, if one fits. */
  readonly resp: RespCode | undefined;
  /** Text shown to the client: never reveals whether a user exists. */
  readonly text: string;
  readonly level: LogLevel;
  /** Whether the connection is closed after the reply. */
  readonly close: boolean;
}

export const ERRORS = {
  // Client-side protocol problems
  LINE_TOO_LONG: { resp: undefined, text: 'Line too long', level: 'info', close: true },
  UNKNOWN_COMMAND: { resp: undefined, text: 'Unknown command', level: 'debug', close: false },
  TOO_MANY_ERRORS: { resp: undefined, text: 'Too many errors, closing connection', level: 'info', close: true },
  BAD_SYNTAX: { resp: undefined, text: 'Syntax error', level: 'debug', close: false },
  BAD_SEQUENCE: { resp: undefined, text: 'Bad command sequence', level: 'debug', close: false },
  BAD_BASE64: { resp: undefined, text: 'Invalid base64 data', level: 'debug', close: false },
  AUTH_CANCELLED: { resp: undefined, text: 'Authentication cancelled', level: 'debug', close: false },
  UNSUPPORTED_MECHANISM: { resp: undefined, text: 'Unsupported authentication mechanism', level: 'debug', close: false },
  UNSUPPORTED_SECURITY_LAYER: { resp: undefined, text: 'Unsupported SASL security layer', level: 'info', close: false },
  TLS_ALREADY_ACTIVE: { resp: undefined, text: 'TLS already active', level: 'debug', close: false },
  TLS_UNAVAILABLE: { resp: undefined, text: 'STLS not available on this port', level: 'debug', close: false },
  PLAINTEXT_AUTH_DISALLOWED: {
    resp: 'AUTH',
    text: 'Plaintext authentication disallowed on non-secure connection; use STLS first',
    level: 'info',
    close: false,
  },
  BAD_CHARACTERS: { resp: 'AUTH', text: 'Invalid characters in credentials', level: 'info', close: false },
  NO_CLIENT_CERTIFICATE: { resp: 'AUTH', text: 'No verified TLS client certificate', level: 'info', close: false },
  PREAUTH_TIMEOUT: { resp: undefined, text: 'Timeout, closing connection', level: 'info', close: true },
  // Hostile or misdirected clients (Pop3Session's pre-dispatch checks)
  TLS_ON_PLAINTEXT_PORT: { resp: undefined, text: 'This port speaks POP3; use port 995 for POP3S or STLS', level: 'info', close: true },
  HTTP_ON_POP3_PORT: { resp: undefined, text: 'This port speaks POP3, not HTTP', level: 'info', close: true },
  EARLY_TALKER: { resp: undefined, text: 'Protocol error: data sent before the greeting', level: 'info', close: true },
  // Authentication outcomes
  AUTH_FAILED: { resp: 'AUTH', text: 'Authentication failed', level: 'info', close: false },
  TOO_MANY_AUTH_ATTEMPTS: { resp: 'AUTH', text: 'Too many authentication failures', level: 'info', close: true },
  /** The login throttle locked the client's address or the user (auth.throttle). */
  LOGIN_THROTTLED: { resp: 'LOGIN-DELAY', text: 'Too many failed logins, try again later', level: 'info', close: true },
  VERIFIER_UNAVAILABLE: { resp: 'SYS/TEMP', text: 'Authentication service temporarily unavailable', level: 'error', close: false },
  // Backend problems
  BACKEND_UNREACHABLE: { resp: 'SYS/TEMP', text: 'Mail server temporarily unavailable', level: 'error', close: true },
  BACKEND_TIMEOUT: { resp: 'SYS/TEMP', text: 'Mail server temporarily unavailable', level: 'error', close: true },
  BACKEND_PROTOCOL: { resp: 'SYS/TEMP', text: 'Mail server temporarily unavailable', level: 'error', close: true },
  BACKEND_LOGIN_REJECTED: { resp: 'SYS/PERM', text: 'Mail server refused the login', level: 'error', close: true },
  BACKEND_IN_USE: { resp: 'IN-USE', text: 'Mailbox is in use', level: 'warn', close: true },
  BACKEND_LOGIN_TEMP: { resp: 'SYS/TEMP', text: 'Mail server temporarily unavailable', level: 'warn', close: true },
  NO_BACKEND_CREDENTIALS: { resp: 'SYS/PERM', text: 'No mail server account for this user', level: 'error', close: true },
  // Server problems
  TOO_MANY_CONNECTIONS: { resp: 'SYS/TEMP', text: 'Too many connections, try again later', level: 'warn', close: true },
  TOO_MANY_FROM_ADDRESS: { resp: 'SYS/TEMP', text: 'Too many connections from your address', level: 'warn', close: true },
  SHUTTING_DOWN: { resp: 'SYS/TEMP', text: 'Server shutting down', level: 'info', close: true },
  INTERNAL: { resp: 'SYS/TEMP', text: 'Internal server error', level: 'error', close: true },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Why a client connection is closed (its `closing` debug line and the
 * `closing connection` info line): the catalogue code of the reply that said
 * why, or one of these, where no catalogue reply was sent.
 */
export type CloseReason =
  | ErrorCode
  /** The client's QUIT (before the relay). */
  | 'QUIT'
  /** The client's FIN before the relay. */
  | 'client closed'
  /** The gateway stops (after a SHUTTING_DOWN reply). */
  | 'shutdown'
  /** The STLS handshake failed, or TLS broke before the relay. */
  | 'tls error'
  /** STLS accepted without a handshaker (a misconfiguration the core should have refused). */
  | 'STLS without TLS'
  /** The KPOP preamble was refused (its audit line says why). */
  | 'KPOP handshake failed';

/**
 * A failure with a catalogue code. `detail` is for the log only (it may name
 * the backend's text or a file path); the client sees the catalogue text.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  /** Replaces the catalogue text in the client's reply (an auth service's Auth-Status text). */
  readonly clientText: string | undefined;
  /** Close after replying even if the catalogue would not (nginx: failure without Auth-Wait). */
  readonly closeAfter: boolean;
  /** What a SASL mechanism sends as a challenge before the `-ERR` (RFC 7628 3.2.2: OAUTHBEARER's error JSON). */
  readonly saslError: Buffer | undefined;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; clientText?: string; closeAfter?: boolean; saslError?: Buffer }) {
    super(detail ? `${code}: ${detail}` : code, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
    this.clientText = options?.clientText;
    this.closeAfter = options?.closeAfter ?? false;
    this.saslError = options?.saslError;
  }

  get entry(): CatalogueEntry {
    return ERRORS[this.code];
  }
}

/**
 * The POP3 reply line (without CRLF) for a catalogue code. `text` replaces
 * the catalogue text (it is cleaned to printable characters and capped so the
 * line stays within RFC 2449's 512 octets).
 */
export function errorReply(code: ErrorCode, text?: string): string {
  const e: CatalogueEntry = ERRORS[code];
  // Control characters are what the reply must not carry (a CR LF would end the line early).
  // eslint-disable-next-line no-control-regex
  const shown = text === undefined ? e.text : clip(text.replace(/[\x00-\x1f\x7f]/g, ' ').trim(), 200) || e.text;
  return e.resp ? `-ERR [${e.resp}] ${shown}` : `-ERR ${shown}`;
}

/** At most `max` UTF-8 octets, never splitting a character. */
function clip(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let size = 0;
  for (const ch of text) {
    size += Buffer.byteLength(ch);
    if (size > max) break;
    out += ch;
  }
  return out;
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}
