/**
 * A scripted POP3 client over plain TCP or TLS, with an in-place STLS upgrade,
 * for exchanges real clients refuse to produce (pipelining bursts, injection,
 * dropping a connection mid-session).
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
export class LineClient {
    socket;
    buf = Buffer.alloc(0);
    waiters = [];
    ended = false;
    constructor(socket) {
        this.socket = socket;
        this.attach(socket);
    }
    attach(socket) {
        socket.on('data', (chunk) => {
            this.buf = Buffer.concat([this.buf, chunk]);
            this.wake();
        });
        socket.on('end', () => {
            this.ended = true;
            this.wake();
        });
        socket.on('close', () => {
            this.ended = true;
            this.wake();
        });
        socket.on('error', () => {
            this.ended = true;
            this.wake();
        });
    }
    wake() {
        const w = this.waiters;
        this.waiters = [];
        w.forEach((fn) => fn());
    }
    static async plain(port, host = '127.0.0.1') {
        const s = netConnect({ port, host });
        await new Promise((resolve, reject) => {
            s.once('connect', resolve);
            s.once('error', reject);
        });
        return new LineClient(s);
    }
    static async tls(port, caFile, host = '127.0.0.1') {
        const s = tlsConnect({ port, host, ca: readFileSync(caFile), servername: 'localhost' });
        await new Promise((resolve, reject) => {
            s.once('secureConnect', resolve);
            s.once('error', reject);
        });
        return new LineClient(s);
    }
    /** Upgrade after `+OK` to STLS; unread plaintext bytes are returned (should be none). */
    async startTls(caFile) {
        const leftover = this.buf;
        this.buf = Buffer.alloc(0);
        const plain = this.socket;
        plain.removeAllListeners('data');
        plain.removeAllListeners('end');
        plain.removeAllListeners('close');
        plain.removeAllListeners('error');
        const secure = tlsConnect({ socket: plain, ca: readFileSync(caFile), servername: 'localhost' });
        await new Promise((resolve, reject) => {
            secure.once('secureConnect', resolve);
            secure.once('error', reject);
        });
        this.socket = secure;
        this.ended = false;
        this.attach(secure);
        return leftover;
    }
    get isTls() {
        return 'encrypted' in this.socket;
    }
    send(data) {
        this.socket.write(data);
    }
    /** Next CRLF-terminated line (without CRLF). Rejects on timeout or close. */
    async line(timeoutMs = 10_000) {
        const b = await this.until((buf) => {
            const i = buf.indexOf('\r\n');
            return i < 0 ? -1 : i + 2;
        }, timeoutMs);
        return b.subarray(0, b.length - 2).toString('utf8');
    }
    /** A multi-line reply: status line plus lines up to the terminating "." (raw bytes, still stuffed). */
    async multiline(timeoutMs = 30_000) {
        const status = await this.line(timeoutMs);
        if (!status.startsWith('+OK'))
            return { status, body: Buffer.alloc(0) };
        const end = Buffer.from('\r\n.\r\n');
        const data = await this.until((buf) => {
            if (buf.subarray(0, 3).equals(Buffer.from('.\r\n')))
                return 3;
            const i = buf.indexOf(end);
            return i < 0 ? -1 : i + 5;
        }, timeoutMs);
        return { status, body: data.subarray(0, Math.max(0, data.length - 3)) };
    }
    /** Resolves true if nothing arrives within `ms` (and leaves any bytes buffered). */
    async silentFor(ms) {
        await new Promise((r) => setTimeout(r, ms));
        return this.buf.length === 0;
    }
    /** Resolves when the server closes the connection. */
    async closed(timeoutMs = 10_000) {
        const deadline = Date.now() + timeoutMs;
        while (!this.ended) {
            if (Date.now() > deadline)
                throw new Error('connection not closed by server');
            await new Promise((r) => {
                this.waiters.push(r);
                setTimeout(r, 50);
            });
        }
    }
    /** `find` returns the end (exclusive) of the wanted bytes, or -1. */
    async until(find, timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const end = find(this.buf);
            if (end >= 0) {
                const out = this.buf.subarray(0, end);
                this.buf = this.buf.subarray(end);
                return out;
            }
            if (this.ended)
                throw new Error(`connection closed; unread: ${JSON.stringify(this.buf.toString('latin1'))}`);
            if (Date.now() > deadline)
                throw new Error(`timeout; unread: ${JSON.stringify(this.buf.toString('latin1'))}`);
            await new Promise((r) => {
                this.waiters.push(r);
                setTimeout(r, 50);
            });
        }
    }
    /** Close our side gracefully (FIN). */
    end() {
        this.socket.end();
    }
    /** Drop the connection without QUIT, as a crashing client would. */
    destroy() {
        this.socket.destroy();
    }
}
//# sourceMappingURL=line-client.js.map