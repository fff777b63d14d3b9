import { createServer, type Server, type Socket } from 'node:net';

/**
 * An in-memory RFC 1939 POP3 server (no TLS) for `popgate demo`, the
 * benchmark and tests. Deletions happen only on QUIT from TRANSACTION (the
 * UPDATE state); a dropped connection deletes nothing.
 */

export interface DemoBackendOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** user → password. */
  readonly users: Readonly<Record<string, string>>;
  /** Dovecot-style master user: `AUTH PLAIN` with authzid, or `USER alice*master` + master password. */
  readonly masterUser?: string;
  readonly masterPassword?: string;
  /** Separator for `USER <user><sep><master>`; default `*`. */
  readonly masterSeparator?: string;
  /** Per user, raw RFC 5322 messages with CRLF line ends; Buffers are used as given, not copied (a benchmark's 50 MB message is held once). */
  readonly messages: Readonly<Record<string, readonly string[] | readonly Buffer[]>>;
  /** Record each command's verb for commandLog(); default true. Off for benchmarks: millions of logins would grow it without bound. */
  readonly logCommands?: boolean;
  /** List PIPELINING in CAPA (RFC 2449 §6.6); default true. Commands are answered in order either way. */
  readonly pipelining?: boolean;
}

export interface DemoBackend {
  readonly port: number;
  readonly host: string;
  /** Stops listening and drops every connection (without applying deletions). */
  close(): Promise<void>;
  /** The user's messages now (after applied deletions). */
  mailbox(user: string): readonly Buffer[];
  /** Verbs received so far on all connections, in order (arguments omitted), e.g. to check no QUIT arrived. */
  commandLog(): readonly string[];
  /**
   * The same verbs grouped by the read they arrived in (reads that completed
   * no line left out), e.g. to see USER and PASS pipelined in one write.
   */
  readLog(): readonly (readonly string[])[];
  /** Connections open now: 0 once every client's socket has closed here (its session is over). */
  openConnections(): number;
}

export const DEMO_GREETING = '+OK Demo POP3 backend ready.';
/** Commands and SASL lines longer than this (including CRLF) end the connection. */
const MAX_LINE = 8192;
const CRLF = Buffer.from('\r\n');
const DOT = Buffer.from('.');
const TERMINATOR = Buffer.from('.\r\n');

interface Message {
  readonly uid: string;
  readonly data: Buffer;
  /** The RETR reply (status line, stuffed body, terminator), built on first use: every later RETR is a few writes of views. */
  retr?: readonly Buffer[];
}

/**
 * A multi-line response body: lines starting with `.` get another `.`
 * (RFC 1939 byte-stuffing), a missing final CRLF is added and the
 * terminating `.` line appended. Returns views on `body`, never a copy.
 */
export function dotStuff(body: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  let start = 0;
  if (body.length > 0 && body[0] === 0x2e) pieces.push(DOT);
  let i = body.indexOf('\n.');
  while (i >= 0) {
    pieces.push(body.subarray(start, i + 1), DOT);
    start = i + 1;
    i = body.indexOf('\n.', start);
  }
  if (start < body.length) pieces.push(body.subarray(start));
  if (body.length > 0 && body[body.length - 1] !== 0x0a) pieces.push(CRLF);
  pieces.push(TERMINATOR);
  return pieces;
}

/** The header block, the blank line and the first `lines` body lines (for TOP). */
export function topOf(msg: Buffer, lines: number): Buffer {
  let bodyStart: number;
  const crlf = msg.indexOf('\r\n\r\n');
  const lf = msg.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) bodyStart = crlf + 4;
  else if (lf >= 0) bodyStart = lf + 2;
  else return msg;
  let end = bodyStart;
  for (let n = 0; n < lines && end < msg.length; n++) {
    const nl = msg.indexOf(0x0a, end);
    end = nl < 0 ? msg.length : nl + 1;
  }
  return msg.subarray(0, end);
}

type State = 'authorization' | 'transaction' | 'done';

interface Session {
  state: State;
  /** Name given with USER, waiting for PASS. */
  pendingUser: string | undefined;
  /** AUTH PLAIN sent without initial response: the next line is the token. */
  awaitingSasl: boolean;
  user: string;
  messages: readonly Message[];
  deleted: Set<number>;
}

/** A function, so TypeScript does not keep a narrowing across handler calls that change the state. */
const isDone = (s: Session): boolean => s.state === 'done';

type Reply = string | readonly Buffer[];
type Handler = (s: Session, args: readonly string[]) => Reply;

export async function startDemoBackend(opts: DemoBackendOptions): Promise<DemoBackend> {
  const host = opts.host ?? '127.0.0.1';
  const separator = opts.masterSeparator ?? '*';
  const users = new Map(Object.entries(opts.users));
  const store = new Map<string, Message[]>();
  const commands: string[] = [];
  const reads: string[][] = [];
  const logCommands = opts.logCommands ?? true;
  let uidCounter = 0;
  for (const [user, list] of Object.entries(opts.messages)) {
    store.set(
      user,
      Array.from(list as readonly (string | Buffer)[], (m) => ({
        uid: `demo-${++uidCounter}`,
        data: typeof m === 'string' ? Buffer.from(m, 'utf8') : m,
      })),
    );
  }

  const masterOk = (authcid: string, password: string): boolean =>
    opts.masterUser !== undefined &&
    opts.masterPassword !== undefined &&
    authcid === opts.masterUser &&
    password === opts.masterPassword;

  /** Checks a login; `authzid` is the user to log in as when a master user authenticates. */
  const checkLogin = (authzid: string, authcid: string, password: string): string | undefined => {
    if (authzid !== '' && authzid !== authcid) {
      return masterOk(authcid, password) && users.has(authzid) ? authzid : undefined;
    }
    return users.get(authcid) === password ? authcid : undefined;
  };

  const enterTransaction = (s: Session, user: string): string => {
    s.state = 'transaction';
    s.user = user;
    s.messages = [...(store.get(user) ?? [])];
    s.deleted = new Set();
    return '+OK Logged in.';
  };

  const live = (s: Session): { index: number; msg: Message }[] =>
    s.messages.flatMap((msg, index) => (s.deleted.has(index) ? [] : [{ index, msg }]));

  /** Resolves a 1-based message number argument; undefined when absent, deleted or out of range. */
  const pick = (s: Session, arg: string | undefined): { index: number; msg: Message } | undefined => {
    if (arg === undefined || !/^[0-9]{1,9}$/.test(arg)) return undefined;
    const index = Number(arg) - 1;
    const msg = s.messages[index];
    if (!msg || s.deleted.has(index)) return undefined;
    return { index, msg };
  };

  const capa = (s: Session): Reply => {
    const lines = ['+OK Capability list follows', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE'];
    if (opts.pipelining ?? true) lines.push('PIPELINING');
    if (s.state === 'authorization') lines.push('USER', 'SASL PLAIN');
    lines.push('IMPLEMENTATION popgate-demo', '.');
    return lines.join('\r\n');
  };

  const saslPlain = (s: Session, token: string): string => {
    if (token === '*') return '-ERR Authentication cancelled.';
    const raw = token === '=' ? '' : token;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(raw) || raw.length % 4 !== 0) return '-ERR Invalid base64 data.';
    const parts = Buffer.from(raw, 'base64').toString('utf8').split('\0');
    if (parts.length !== 3) return '-ERR [AUTH] Authentication failed.';
    const [authzid = '', authcid = '', password = ''] = parts;
    const user = checkLogin(authzid, authcid, password);
    return user === undefined ? '-ERR [AUTH] Authentication failed.' : enterTransaction(s, user);
  };

  const authorization: Record<string, Handler> = {
    CAPA: capa,
    USER: (s, args) => {
      if (!args[0]) return '-ERR Missing user name.';
      s.pendingUser = args.join(' ');
      return '+OK';
    },
    PASS: (s, args) => {
      const name = s.pendingUser;
      s.pendingUser = undefined;
      if (name === undefined) return '-ERR No user name given.';
      const password = args.join(' ');
      const at = name.lastIndexOf(separator);
      const user =
        at > 0 && separator !== ''
          ? checkLogin(name.slice(0, at), name.slice(at + separator.length), password)
          : checkLogin('', name, password);
      return user === undefined ? '-ERR [AUTH] Authentication failed.' : enterTransaction(s, user);
    },
    AUTH: (s, args) => {
      const mech = args[0]?.toUpperCase();
      if (mech === undefined) return '+OK\r\nPLAIN\r\n.';
      if (mech !== 'PLAIN') return '-ERR Unsupported authentication mechanism.';
      const ir = args[1];
      if (ir === undefined) {
        s.awaitingSasl = true;
        return '+ ';
      }
      return saslPlain(s, ir);
    },
    APOP: () => '-ERR APOP not supported.',
    QUIT: (s) => {
      s.state = 'done';
      return '+OK Logging out.';
    },
  };

  const transaction: Record<string, Handler> = {
    CAPA: capa,
    NOOP: () => '+OK',
    STAT: (s) => {
      const l = live(s);
      return `+OK ${l.length} ${l.reduce((n, m) => n + m.msg.data.length, 0)}`;
    },
    LIST: (s, args) => {
      if (args[0] !== undefined) {
        const m = pick(s, args[0]);
        return m ? `+OK ${m.index + 1} ${m.msg.data.length}` : '-ERR No such message.';
      }
      const l = live(s);
      const size = l.reduce((n, m) => n + m.msg.data.length, 0);
      return [`+OK ${l.length} messages (${size} octets)`, ...l.map((m) => `${m.index + 1} ${m.msg.data.length}`), '.'].join(
        '\r\n',
      );
    },
    UIDL: (s, args) => {
      if (args[0] !== undefined) {
        const m = pick(s, args[0]);
        return m ? `+OK ${m.index + 1} ${m.msg.uid}` : '-ERR No such message.';
      }
      return ['+OK', ...live(s).map((m) => `${m.index + 1} ${m.msg.uid}`), '.'].join('\r\n');
    },
    RETR: (s, args) => {
      const m = pick(s, args[0]);
      if (!m) return '-ERR No such message.';
      m.msg.retr ??= [Buffer.from(`+OK ${m.msg.data.length} octets\r\n`), ...dotStuff(m.msg.data)];
      return m.msg.retr;
    },
    TOP: (s, args) => {
      const m = pick(s, args[0]);
      const n = args[1];
      if (!m) return '-ERR No such message.';
      if (n === undefined || !/^[0-9]{1,9}$/.test(n)) return '-ERR Invalid line count.';
      return [Buffer.from('+OK\r\n'), ...dotStuff(topOf(m.msg.data, Number(n)))];
    },
    DELE: (s, args) => {
      const m = pick(s, args[0]);
      if (!m) return '-ERR No such message.';
      s.deleted.add(m.index);
      return `+OK Marked to be deleted.`;
    },
    RSET: (s) => {
      s.deleted.clear();
      return `+OK ${s.messages.length} messages.`;
    },
    QUIT: (s) => {
      // UPDATE state: apply the deletions of this session only now.
      const gone = new Set(s.messages.filter((_, i) => s.deleted.has(i)));
      const current = store.get(s.user);
      if (current && gone.size > 0) store.set(s.user, current.filter((m) => !gone.has(m)));
      const removed = gone.size;
      s.state = 'done';
      return `+OK Logging out${removed > 0 ? `, ${removed} messages deleted` : ''}.`;
    },
  };

  const sockets = new Set<Socket>();

  const serve = (socket: Socket): void => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const session: Session = {
      state: 'authorization',
      pendingUser: undefined,
      awaitingSasl: false,
      user: '',
      messages: [],
      deleted: new Set(),
    };
    let input: Buffer = Buffer.alloc(0);
    /** The peer half-closed: answer what it sent, then close (without applying deletions). */
    let eof = false;

    /** Writes a reply; false when the socket's buffer is full (wait for 'drain' before the next). */
    const send = (reply: Reply): boolean => {
      if (!socket.writable) return true;
      if (typeof reply === 'string') return socket.write(`${reply}\r\n`);
      // Views on the stored message, queued whole: no copy, and one wait for 'drain' per reply, not per piece.
      let ok = true;
      for (const piece of reply) ok = socket.write(piece);
      return ok;
    };

    /** The verbs completed by the latest read (in `reads` once it has one). */
    let thisRead: string[] = [];
    const logVerb = (verb: string): void => {
      commands.push(verb);
      if (thisRead.length === 0) reads.push(thisRead);
      thisRead.push(verb);
    };

    const handle = (line: string): Reply => {
      if (session.awaitingSasl) {
        session.awaitingSasl = false;
        if (logCommands) logVerb('AUTH-RESPONSE');
        return saslPlain(session, line.trim());
      }
      const parts = line.split(' ').filter((p) => p !== '');
      const verb = (parts[0] ?? '').toUpperCase();
      if (logCommands) logVerb(verb);
      const table = session.state === 'authorization' ? authorization : transaction;
      const handler = Object.hasOwn(table, verb) ? table[verb] : undefined;
      if (!handler) return verb === '' ? '-ERR Empty command.' : '-ERR Unknown command or wrong state.';
      return handler(session, parts.slice(1));
    };

    let waitingDrain = false;
    /**
     * Answers every complete line, in order, synchronously; corked, so replies
     * to pipelined commands leave in one write. Stops reading while a reply
     * waits for 'drain' (a slow reader of a large RETR).
     */
    const pump = (): void => {
      if (waitingDrain) return;
      socket.cork();
      try {
        for (;;) {
          if (session.state === 'done' || socket.destroyed) return;
          const lf = input.indexOf(0x0a);
          if (lf < 0) {
            if (input.length > MAX_LINE) {
              send('-ERR Line too long.');
              socket.uncork();
              socket.destroy();
            } else if (eof) {
              socket.end();
            }
            return;
          }
          const end = lf > 0 && input[lf - 1] === 0x0d ? lf - 1 : lf;
          const line = input.toString('utf8', 0, end);
          input = input.subarray(lf + 1);
          const flushed = send(handle(line));
          if (isDone(session)) {
            socket.end();
            return;
          }
          if (!flushed) {
            waitingDrain = true;
            socket.pause();
            socket.once('drain', () => {
              waitingDrain = false;
              socket.resume();
              pump();
            });
            return;
          }
        }
      } finally {
        socket.uncork();
      }
    };

    socket.on('data', (chunk: Buffer) => {
      input = input.length === 0 ? chunk : Buffer.concat([input, chunk]);
      thisRead = [];
      pump();
    });
    socket.on('end', () => {
      eof = true;
      pump();
    });
    socket.on('error', () => {
      /* a client that resets is normal here */
    });
    socket.on('close', () => {
      // A dropped connection deletes nothing: its session state is simply forgotten.
      sockets.delete(socket);
    });
    socket.write(`${DEMO_GREETING}\r\n`);
  };

  const server: Server = createServer({ allowHalfOpen: true }, serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? 0);

  return {
    port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
    mailbox: (user) => (store.get(user) ?? []).map((m) => m.data),
    commandLog: () => [...commands],
    readLog: () => reads.map((r) => [...r]),
    openConnections: () => sockets.size,
  };
}
