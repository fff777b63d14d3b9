import { createServer } from 'node:net';
export const DEMO_GREETING = '+OK Demo POP3 backend ready.';
/** Commands and SASL lines longer than this (including CRLF) end the connection. */
const MAX_LINE = 8192;
/** Large responses are written in pieces of at most this size, waiting for 'drain'. */
const WRITE_PIECE = 256 * 1024;
const CRLF = Buffer.from('\r\n');
const DOT = Buffer.from('.');
const TERMINATOR = Buffer.from('.\r\n');
/**
 * A multi-line response body: lines starting with `.` get another `.`
 * (RFC 1939 byte-stuffing), a missing final CRLF is added and the
 * terminating `.` line appended. Returns views on `body`, never a copy.
 */
export function dotStuff(body) {
    const pieces = [];
    let start = 0;
    if (body.length > 0 && body[0] === 0x2e)
        pieces.push(DOT);
    let i = body.indexOf('\n.');
    while (i >= 0) {
        pieces.push(body.subarray(start, i + 1), DOT);
        start = i + 1;
        i = body.indexOf('\n.', start);
    }
    if (start < body.length)
        pieces.push(body.subarray(start));
    if (body.length > 0 && body[body.length - 1] !== 0x0a)
        pieces.push(CRLF);
    pieces.push(TERMINATOR);
    return pieces;
}
/** The header block, the blank line and the first `lines` body lines (for TOP). */
export function topOf(msg, lines) {
    let bodyStart;
    const crlf = msg.indexOf('\r\n\r\n');
    const lf = msg.indexOf('\n\n');
    if (crlf >= 0 && (lf < 0 || crlf < lf))
        bodyStart = crlf + 4;
    else if (lf >= 0)
        bodyStart = lf + 2;
    else
        return msg;
    let end = bodyStart;
    for (let n = 0; n < lines && end < msg.length; n++) {
        const nl = msg.indexOf(0x0a, end);
        end = nl < 0 ? msg.length : nl + 1;
    }
    return msg.subarray(0, end);
}
/** A function, so TypeScript does not keep a narrowing across handler calls that change the state. */
const isDone = (s) => s.state === 'done';
export async function startDemoBackend(opts) {
    const host = opts.host ?? '127.0.0.1';
    const separator = opts.masterSeparator ?? '*';
    const users = new Map(Object.entries(opts.users));
    const store = new Map();
    const commands = [];
    let uidCounter = 0;
    for (const [user, list] of Object.entries(opts.messages)) {
        store.set(user, Array.from(list, (m) => ({
            uid: `demo-${++uidCounter}`,
            data: typeof m === 'string' ? Buffer.from(m, 'utf8') : Buffer.from(m),
        })));
    }
    const masterOk = (authcid, password) => opts.masterUser !== undefined &&
        opts.masterPassword !== undefined &&
        authcid === opts.masterUser &&
        password === opts.masterPassword;
    /** Checks a login; `authzid` is the user to log in as when a master user authenticates. */
    const checkLogin = (authzid, authcid, password) => {
        if (authzid !== '' && authzid !== authcid) {
            return masterOk(authcid, password) && users.has(authzid) ? authzid : undefined;
        }
        return users.get(authcid) === password ? authcid : undefined;
    };
    const enterTransaction = (s, user) => {
        s.state = 'transaction';
        s.user = user;
        s.messages = [...(store.get(user) ?? [])];
        s.deleted = new Set();
        return '+OK Logged in.';
    };
    const live = (s) => s.messages.flatMap((msg, index) => (s.deleted.has(index) ? [] : [{ index, msg }]));
    /** Resolves a 1-based message number argument; undefined when absent, deleted or out of range. */
    const pick = (s, arg) => {
        if (arg === undefined || !/^[0-9]{1,9}$/.test(arg))
            return undefined;
        const index = Number(arg) - 1;
        const msg = s.messages[index];
        if (!msg || s.deleted.has(index))
            return undefined;
        return { index, msg };
    };
    const capa = (s) => {
        const lines = ['+OK Capability list follows', 'TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
        if (s.state === 'authorization')
            lines.push('USER', 'SASL PLAIN');
        lines.push('IMPLEMENTATION popgate-demo', '.');
        return lines.join('\r\n');
    };
    const saslPlain = (s, token) => {
        if (token === '*')
            return '-ERR Authentication cancelled.';
        const raw = token === '=' ? '' : token;
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(raw) || raw.length % 4 !== 0)
            return '-ERR Invalid base64 data.';
        const parts = Buffer.from(raw, 'base64').toString('utf8').split('\0');
        if (parts.length !== 3)
            return '-ERR [AUTH] Authentication failed.';
        const [authzid = '', authcid = '', password = ''] = parts;
        const user = checkLogin(authzid, authcid, password);
        return user === undefined ? '-ERR [AUTH] Authentication failed.' : enterTransaction(s, user);
    };
    const authorization = {
        CAPA: capa,
        USER: (s, args) => {
            if (!args[0])
                return '-ERR Missing user name.';
            s.pendingUser = args.join(' ');
            return '+OK';
        },
        PASS: (s, args) => {
            const name = s.pendingUser;
            s.pendingUser = undefined;
            if (name === undefined)
                return '-ERR No user name given.';
            const password = args.join(' ');
            const at = name.lastIndexOf(separator);
            const user = at > 0 && separator !== ''
                ? checkLogin(name.slice(0, at), name.slice(at + separator.length), password)
                : checkLogin('', name, password);
            return user === undefined ? '-ERR [AUTH] Authentication failed.' : enterTransaction(s, user);
        },
        AUTH: (s, args) => {
            const mech = args[0]?.toUpperCase();
            if (mech === undefined)
                return '+OK\r\nPLAIN\r\n.';
            if (mech !== 'PLAIN')
                return '-ERR Unsupported authentication mechanism.';
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
    const transaction = {
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
            return [`+OK ${l.length} messages (${size} octets)`, ...l.map((m) => `${m.index + 1} ${m.msg.data.length}`), '.'].join('\r\n');
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
            if (!m)
                return '-ERR No such message.';
            return [Buffer.from(`+OK ${m.msg.data.length} octets\r\n`), ...dotStuff(m.msg.data)];
        },
        TOP: (s, args) => {
            const m = pick(s, args[0]);
            const n = args[1];
            if (!m)
                return '-ERR No such message.';
            if (n === undefined || !/^[0-9]{1,9}$/.test(n))
                return '-ERR Invalid line count.';
            return [Buffer.from('+OK\r\n'), ...dotStuff(topOf(m.msg.data, Number(n)))];
        },
        DELE: (s, args) => {
            const m = pick(s, args[0]);
            if (!m)
                return '-ERR No such message.';
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
            if (current && gone.size > 0)
                store.set(s.user, current.filter((m) => !gone.has(m)));
            const removed = gone.size;
            s.state = 'done';
            return `+OK Logging out${removed > 0 ? `, ${removed} messages deleted` : ''}.`;
        },
    };
    const sockets = new Set();
    const serve = (socket) => {
        sockets.add(socket);
        socket.setNoDelay(true);
        const session = {
            state: 'authorization',
            pendingUser: undefined,
            awaitingSasl: false,
            user: '',
            messages: [],
            deleted: new Set(),
        };
        let input = Buffer.alloc(0);
        let busy = false;
        /** The peer half-closed: answer what it sent, then close (without applying deletions). */
        let eof = false;
        const flushed = (ok) => ok || socket.destroyed
            ? Promise.resolve()
            : new Promise((resolve) => {
                const done = () => {
                    socket.removeListener('drain', done);
                    socket.removeListener('close', done);
                    resolve();
                };
                socket.on('drain', done);
                socket.on('close', done);
            });
        const send = async (reply) => {
            if (!socket.writable)
                return;
            if (typeof reply === 'string') {
                await flushed(socket.write(`${reply}\r\n`));
                return;
            }
            for (const piece of reply) {
                for (let off = 0; off < piece.length; off += WRITE_PIECE) {
                    if (!socket.writable)
                        return;
                    await flushed(socket.write(piece.subarray(off, Math.min(piece.length, off + WRITE_PIECE))));
                }
            }
        };
        const handle = (line) => {
            if (session.awaitingSasl) {
                session.awaitingSasl = false;
                commands.push('AUTH-RESPONSE');
                return saslPlain(session, line.trim());
            }
            const parts = line.split(' ').filter((p) => p !== '');
            const verb = (parts[0] ?? '').toUpperCase();
            commands.push(verb);
            const table = session.state === 'authorization' ? authorization : transaction;
            const handler = Object.hasOwn(table, verb) ? table[verb] : undefined;
            if (!handler)
                return verb === '' ? '-ERR Empty command.' : '-ERR Unknown command or wrong state.';
            return handler(session, parts.slice(1));
        };
        const pump = async () => {
            if (busy)
                return;
            busy = true;
            try {
                for (;;) {
                    if (session.state === 'done' || socket.destroyed)
                        return;
                    const lf = input.indexOf(0x0a);
                    if (lf < 0) {
                        if (input.length > MAX_LINE) {
                            await send('-ERR Line too long.');
                            socket.destroy();
                        }
                        else if (eof) {
                            socket.end();
                        }
                        return;
                    }
                    const end = lf > 0 && input[lf - 1] === 0x0d ? lf - 1 : lf;
                    const line = input.toString('utf8', 0, end);
                    input = input.subarray(lf + 1);
                    socket.pause();
                    await send(handle(line));
                    if (isDone(session)) {
                        socket.end();
                        return;
                    }
                    socket.resume();
                }
            }
            finally {
                busy = false;
            }
        };
        socket.on('data', (chunk) => {
            input = input.length === 0 ? chunk : Buffer.concat([input, chunk]);
            void pump();
        });
        socket.on('end', () => {
            eof = true;
            void pump();
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
    const server = createServer({ allowHalfOpen: true }, serve);
    await new Promise((resolve, reject) => {
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
        close: () => new Promise((resolve) => {
            server.close(() => resolve());
            for (const s of sockets)
                s.destroy();
        }),
        mailbox: (user) => (store.get(user) ?? []).map((m) => m.data),
        commandLog: () => [...commands],
    };
}
//# sourceMappingURL=backend.js.map