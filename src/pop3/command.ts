/**
 * POP3 command-line parsing (RFC 1939 section 3) and log masking.
 *
 * A command is a case-insensitive keyword, then optionally one space and the
 * argument text. The argument text is returned unmodified because PASS takes
 * the whole rest of the line as the password (it may contain spaces, even
 * leading ones); commands that take tokens split it themselves.
 */

/** Keywords are 3-4 characters in practice; extensions may be longer. */
export const MAX_KEYWORD_LENGTH = 40;

export interface Pop3Command {
  readonly ok: true;
  /** The keyword in upper case. */
  readonly verb: string;
  /** Everything after the first space, decoded as UTF-8, unmodified ('' when absent). */
  readonly args: string;
  /** Whether a space followed the keyword (`args` may still be ''). */
  readonly hasArgs: boolean;
  /** The line as received (without its terminator). */
  readonly raw: Buffer;
}

export type CommandParseFailure = 'empty' | 'nul' | 'bad-keyword' | 'bad-utf8';

export interface CommandParseError {
  readonly ok: false;
  readonly reason: CommandParseFailure;
  /** The keyword, when it was itself well formed (lets the caller pick a better reply). */
  readonly verb?: string;
}

export type ParsedCommand = Pop3Command | CommandParseError;

const SP = 0x20;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isKeywordByte(b: number): boolean {
  return b >= 0x21 && b <= 0x7e;
}

/** Parses one command line (terminator already stripped). Never throws. */
export function parseCommand(line: Buffer): ParsedCommand {
  if (line.length === 0) return { ok: false, reason: 'empty' };

  const sp = line.indexOf(SP);
  const kwEnd = sp < 0 ? line.length : sp;
  let verb: string | undefined;
  if (kwEnd > 0 && kwEnd <= MAX_KEYWORD_LENGTH) {
    let printable = true;
    for (let i = 0; i < kwEnd; i++) {
      if (!isKeywordByte(line[i] as number)) {
        printable = false;
        break;
      }
    }
    if (printable) verb = line.toString('latin1', 0, kwEnd).toUpperCase();
  }

  // NUL is never legitimate in a command (RFC 1939 arguments are printable);
  // report it distinctly so credentials with NUL get BAD_CHARACTERS.
  if (line.indexOf(0) >= 0) return verb === undefined ? { ok: false, reason: 'nul' } : { ok: false, reason: 'nul', verb };
  if (verb === undefined) return { ok: false, reason: 'bad-keyword' };

  let args = '';
  if (sp >= 0) {
    try {
      args = utf8.decode(line.subarray(sp + 1));
    } catch {
      return { ok: false, reason: 'bad-utf8', verb };
    }
  }
  return { ok: true, verb, args, hasArgs: sp >= 0, raw: line };
}

/** Escapes control characters so a logged line cannot forge log lines or terminal sequences. */
function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * A rendering of a client line that is safe to log: the PASS argument, the
 * APOP digest, an AUTH initial response and SASL continuation lines (CRAM-MD5
 * responses included) become `***`; control characters are escaped.
 *
 * `kind` says how the session will read the line: pass 'continuation' while a
 * SASL exchange waits for a response (see `Pop3Session.maskLine`). The keyword
 * is cut at the first non-alphanumeric character, so a malformed line such as
 * `PASS\tsecret` is still masked.
 *
 * Only the commands of RFC 1939/2449/2595 without secrets are shown whole.
 * Anything else (an unknown keyword, a line starting with a blank, a SASL
 * response sent when no exchange waits for it) may be a credential a client
 * sent at the wrong moment: it is shown as `***` with its length.
 */
export function maskCommandForLog(line: Buffer | string, kind: 'command' | 'continuation' = 'command'): string {
  const text = typeof line === 'string' ? line : line.toString('utf8');
  if (kind === 'continuation') return text === '*' ? '*' : '***';

  const kwLen = /^[A-Za-z0-9]*/.exec(text)?.[0].length ?? 0;
  const keyword = text.slice(0, kwLen);
  const rest = text.slice(kwLen);
  switch (keyword.toUpperCase()) {
    case 'PASS':
      return rest === '' ? escapeControls(keyword) : `${escapeControls(keyword)} ***`;
    case 'APOP': {
      // Keep the name's first word (as USER shows names), hide everything
      // after it: the digest, wherever a malformed line puts it. A lone
      // token may be a digest: hide it too.
      const args = rest.replace(/^ +/, '');
      if (args === '') return escapeControls(keyword);
      const sp = args.indexOf(' ');
      return sp <= 0 ? `${escapeControls(keyword)} ***` : `${escapeControls(keyword)} ${escapeControls(args.slice(0, sp))} ***`;
    }
    case 'AUTH': {
      // Keep the mechanism name (SASL names are [A-Z0-9-_], RFC 4422), hide
      // whatever follows it: the initial response, or anything malformed.
      const m = /^ +([A-Za-z0-9_-]*)/.exec(rest);
      if (!m) return rest === '' ? escapeControls(keyword) : `${escapeControls(keyword)} ***`;
      const mech = m[1] ?? '';
      const tail = rest.slice(m[0].length);
      return tail === '' ? `${keyword} ${mech}` : `${keyword} ${mech} ***`;
    }
    default:
      if (kwLen > 0 && PLAIN_COMMANDS.has(keyword.toUpperCase())) return escapeControls(text);
      return `*** (${Buffer.byteLength(text)} bytes)`;
  }
}

/** Commands whose arguments are never secret (names, message numbers, STLS). */
const PLAIN_COMMANDS: ReadonlySet<string> = new Set(['USER', 'STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'QUIT', 'TOP', 'UIDL', 'CAPA', 'STLS', 'UTF8', 'LANG']);
