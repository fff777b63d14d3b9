/**
 * A lean in-memory POP3 backend for the nginx comparison (bench/compare/),
 * run as a child process of its own:
 *
 *   node dist-bench/bench/compare/fast-backend.js '{"masterUser":"popgate","masterPassword":"..."}'
 *
 * Prints `READY <port>` once it listens on 127.0.0.1 (an ephemeral port).
 * Dovecot forks per session and tops out near 100 logins/s; this one costs a
 * few tens of microseconds of CPU per login, so proxies in front of it are
 * measured, not the backend.
 *
 * - USER/PASS: anyone is accepted; a name of the form `user*<master>` must
 *   come with the master password (checks that the auth service's internal
 *   credentials really arrive).
 * - AUTH PLAIN (initial response or continuation): authzid + the master
 *   user/password (Dovecot's master login, what popgate sends), or any
 *   authcid with an empty authzid.
 * - Every mailbox holds the same two messages from preallocated buffers:
 *   1 = BIG_BYTES (50 MB, CRLF lines, no line starting with "."), 2 = a
 *   small one. RETR 1 is ONE socket.write of a prebuilt buffer (status line +
 *   body + terminating dot): no copy, no dot-stuffing pass.
 * - STAT, LIST [n], UIDL [n], NOOP, CAPA, RSET, DELE (ignored), QUIT.
 * Replies are written synchronously, in order; commands pipelined by the
 * client are answered in order.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { exitWithParent } from './child-exit.js';

interface Options {
  readonly masterUser: string;
  readonly masterPassword: string;
  /** Size of message 1 in bytes; default 50,000,000. */
  readonly bigBytes?: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options;
if (!opts.masterUser || !opts.masterPassword) throw new Error('fast-backend: masterUser and masterPassword are required');
const BIG_BYTES = opts.bigBytes ?? 50_000_000;

/** BIG_BYTES of 76-character base64 lines with CRLF (the last line shorter), ending in CRLF. */
function bigBody(size: number): Buffer {
  const header = Buffer.from(
    'From: bench@example.test\r\nTo: alice@example.test\r\nSubject: popgate compare 50 MB\r\n' +
      'Message-ID: <compare-big@example.test>\r\n\r\n',
    'latin1',
  );
  const out = Buffer.allocUnsafe(size);
  header.copy(out, 0);
  const alphabet = randomBytes(Math.ceil(((size - header.length) * 3) / 4) + 3).toString('base64').replace(/[+/=]/g, 'A');
  let o = header.length;
  let a = 0;
  while (o < size) {
    const left = size - o;
    if (left <= 2) {
      // Too short for a line of its own: pad the previous line.
      out.fill(0x41, o - 2, size - 2);
      out[size - 2] = 0x0d;
      out[size - 1] = 0x0a;
      break;
    }
    const n = Math.min(76, left - 2);
    o += out.write(alphabet.slice(a, a + n), o, 'latin1');
    a += n;
    out[o++] = 0x0d;
    out[o++] = 0x0a;
  }
  return out;
}

const big = bigBody(BIG_BYTES);
const small = Buffer.from(
  'From: bench@example.test\r\nTo: alice@example.test\r\nSubject: small\r\nMessage-ID: <compare-small@example.test>\r\n\r\nhello\r\n',
  'latin1',
);
const messages = [big, small];
const total = big.length + small.length;
/** Whole RETR replies, prebuilt: status line, body, terminating dot line. */
const retrReply = messages.map((m) => Buffer.concat([Buffer.from(`+OK ${m.length} octets\r\n`, 'latin1'), m, Buffer.from('.\r\n', 'latin1')]));

const CAPA = '+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION popgate-bench-fast\r\n.\r\n';
const OK_LOGIN = '+OK Logged in.\r\n';
const AUTH_FAILED = '-ERR [AUTH] Authentication failed.\r\n';

function saslPlain(token: string): boolean {
  if (token === '' || token === '*' || !/^[A-Za-z0-9+/]*={0,2}$/.test(token)) return false;
  const parts = Buffer.from(token, 'base64').toString('utf8').split('\0');
  if (parts.length !== 3) return false;
  const [authzid = '', authcid = '', password = ''] = parts;
  if (authcid === '') return false;
  if (authzid === '' || authzid === authcid) return true;
  return authcid === opts.masterUser && password === opts.masterPassword;
}

function passOk(user: string, password: string): boolean {
  const star = user.lastIndexOf('*');
  if (star > 0) return user.slice(star + 1) === opts.masterUser && password === opts.masterPassword;
  return user !== '';
}

function pick(arg: string | undefined): number {
  if (arg === undefined || !/^[0-9]{1,9}$/.test(arg)) return -1;
  const i = Number(arg) - 1;
  return i >= 0 && i < messages.length ? i : -1;
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let authed = false;
  let user: string | undefined;
  let saslPending = false;
  let buf = '';
  socket.on('error', () => {
    /* a client that resets is normal here */
  });
  /** The reply to one line: text, a prebuilt RETR buffer, or null after QUIT (the socket is ended). */
  const reply = (line: string): string | Buffer | null => {
    if (saslPending) {
      saslPending = false;
      if (saslPlain(line.trim())) {
        authed = true;
        return OK_LOGIN;
      }
      return AUTH_FAILED;
    }
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const rest = sp < 0 ? '' : line.slice(sp + 1);
    switch (verb) {
      case 'QUIT':
        return null;
      case 'NOOP':
        return '+OK\r\n';
      case 'CAPA':
        return CAPA;
    }
    if (!authed) {
      switch (verb) {
        case 'USER':
          user = rest;
          return '+OK\r\n';
        case 'PASS': {
          const u = user;
          user = undefined;
          if (u !== undefined && passOk(u, rest)) {
            authed = true;
            return OK_LOGIN;
          }
          return AUTH_FAILED;
        }
        case 'AUTH': {
          const [mech = '', ir] = rest.split(' ');
          if (mech.toUpperCase() !== 'PLAIN') return '-ERR Unsupported authentication mechanism.\r\n';
          if (ir === undefined) {
            saslPending = true;
            return '+ \r\n';
          }
          if (saslPlain(ir)) {
            authed = true;
            return OK_LOGIN;
          }
          return AUTH_FAILED;
        }
        default:
          return '-ERR Unknown command or wrong state.\r\n';
      }
    }
    switch (verb) {
      case 'STAT':
        return `+OK 2 ${total}\r\n`;
      case 'LIST': {
        if (rest === '') return `+OK 2 messages (${total} octets)\r\n1 ${big.length}\r\n2 ${small.length}\r\n.\r\n`;
        const i = pick(rest);
        return i < 0 ? '-ERR No such message.\r\n' : `+OK ${i + 1} ${messages[i]!.length}\r\n`;
      }
      case 'UIDL': {
        if (rest === '') return '+OK\r\n1 big\r\n2 small\r\n.\r\n';
        const i = pick(rest);
        return i < 0 ? '-ERR No such message.\r\n' : `+OK ${i + 1} ${i === 0 ? 'big' : 'small'}\r\n`;
      }
      case 'RETR': {
        const i = pick(rest);
        return i < 0 ? '-ERR No such message.\r\n' : retrReply[i]!;
      }
      case 'DELE':
        return pick(rest) < 0 ? '-ERR No such message.\r\n' : '+OK Marked to be deleted.\r\n';
      case 'RSET':
        return '+OK\r\n';
      default:
        return '-ERR Unknown command or wrong state.\r\n';
    }
  };
  socket.on('data', (chunk: Buffer) => {
    if (!socket.writable) return;
    buf += chunk.toString('latin1');
    let out = '';
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.charCodeAt(nl - 1) === 13 ? buf.slice(0, nl - 1) : buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const r = reply(line);
      if (r === null) {
        socket.end(`${out}+OK Logging out.\r\n`);
        return;
      }
      if (typeof r === 'string') {
        out += r;
      } else {
        // A prebuilt RETR reply: what came before it goes first (order!), then the buffer itself, uncopied.
        if (out !== '') socket.write(out);
        out = '';
        socket.write(r);
      }
      nl = buf.indexOf('\n');
    }
    if (buf.length > 8192) {
      socket.destroy();
      return;
    }
    if (out !== '' && socket.writable) socket.write(out);
  });
  socket.write('+OK fast POP3 backend ready.\r\n');
});

server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`READY ${typeof a === 'object' && a ? a.port : 0} ${big.length} ${small.length}\n`);
});
exitWithParent();
