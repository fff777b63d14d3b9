/**
 * The one scripted POP3 client of the test suite: plain TCP or TLS (to any
 * host/port, with a connect timeout), an in-place STLS upgrade, CRLF lines,
 * multi-line replies (parsed or as raw still-stuffed bytes), reads up to any
 * terminator, streaming of bodies too big to buffer, and raw byte access.
 * For exchanges real clients refuse to produce (pipelining bursts, injection,
 * dropping a connection mid-session) and for unit tests of our own servers.
 *
 * Every read takes a timeout and rejects, naming the unread bytes, when it
 * expires or when the peer has closed before the wanted bytes arrived.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';

/** TLS settings: a CA file to trust (the name checked is "localhost"), or full tls.connect options. */
export type LineClientTls = string | ConnectionOptions;

export interface LineClientConnectOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** TLS from the first byte (POP3S); plain TCP when absent. */
  tls?: LineClientTls;
  /** Rejects when the connection (and TLS handshake) is not up within this time. Default 10 s. */
  timeoutMs?: number;
  /** Source address to connect from (e.g. a spare loopback address such as 127.0.0.5). */
  localAddress?: string;
}

/** A terminator to read through: bytes (strings are taken as latin1), or a function returning the end index (exclusive) of the wanted bytes, or -1 for "not yet". */
export type ReadUntil = string | Buffer | ((buffered: Buffer) => number);

const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
const EMPTY_BODY = Buffer.from('.\r\n', 'latin1');

function tlsOptions(t: LineClientTls): ConnectionOptions {
  return typeof t === 'string' ? { ca: readFileSync(t), servername: 'localhost' } : t;
}

function asBytes(t: string | Buffer): Buffer {
  return typeof t === 'string' ? Buffer.from(t, 'latin1') : t;
}

export class LineClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiters = new Set<() => void>();
  /** No more data will come (FIN, close or error seen). */
  private ended = false;
  /** The socket has emitted 'close'. */
  private fullyClosed = false;
  private received = 0;
  private readonly onData = (chunk: Buffer): void => {
    this.received += chunk.length;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.wake();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.wake();
  };
  private readonly onClose = (): void => {
    this.ended = true;
    this.fullyClosed = true;
    this.wake();
  };

  private constructor(private sock: Socket | TLSSocket) {
    this.attach(sock);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', this.onEnd);
  }

  private detach(socket: Socket | TLSSocket): void {
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
    socket.off('error', this.onEnd);
  }

  private wake(): void {
    const w = [...this.waiters];
    this.waiters.clear();
    w.forEach((fn) => fn());
  }

  /** Waits for the next socket event, or until `deadline` (at most 1 s per call). */
  private wait(deadline: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(1000, Math.max(1, deadline - Date.now())));
      this.waiters.add(done);
    });
  }

  /** Connects to any host/port, over plain TCP or TLS, within a timeout. */
  static connect(opts: LineClientConnectOptions): Promise<LineClient> {
    const host = opts.host ?? '127.0.0.1';
    const { port } = opts;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const local = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const s = opts.tls ? tlsConnect({ ...tlsOptions(opts.tls), host, port, ...local }) : netConnect({ port, host, ...local });
    return new Promise<LineClient>((resolve, reject) => {
      const fail = (e: Error): void => {
        clearTimeout(timer);
        s.destroy();
        reject(new Error(`LineClient: connect to ${host}:${port} failed: ${e.message}`));
      };
      const timer = setTimeout(() => {
        s.off('error', fail);
        s.destroy();
        reject(new Error(`LineClient: connect to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('error', fail);
      s.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.off('error', fail);
        resolve(new LineClient(s));
      });
    });
  }

  static plain(port: number, host = '127.0.0.1'): Promise<LineClient> {
    return LineClient.connect({ port, host });
  }

  /** POP3S, trusting `caFile` and checking the name "localhost". */
  static tls(port: number, caFile: string, host = '127.0.0.1'): Promise<LineClient> {
    return LineClient.connect({ port, host, tls: caFile });
  }

  /** Reads an already connected socket (resumed if paused), e.g. one handed out by the code under test. */
  static wrap(socket: Socket | TLSSocket): LineClient {
    const c = new LineClient(socket);
    socket.resume();
    return c;
  }

  /**
   * Upgrades the connection to TLS in place (after `+OK` to STLS). Plaintext
   * bytes received but not read before the upgrade are returned (should be
   * none) and dropped from the buffer.
   */
  async startTls(tls: LineClientTls): Promise<Buffer> {
    const leftover = this.buf;
    this.buf = Buffer.alloc(0);
    const plain = this.sock;
    this.detach(plain);
    const secure = tlsConnect({ ...tlsOptions(tls), socket: plain });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => {
        secure.off('error', reject);
        resolve();
      });
      secure.once('error', reject);
    });
    this.sock = secure;
    this.ended = false;
    this.attach(secure);
    return leftover;
  }

  /** The current socket (a TLSSocket after startTls()), for pause()/resume() or resetAndDestroy(). */
  get socket(): Socket | TLSSocket {
    return this.sock;
  }

  get isTls(): boolean {
    return 'encrypted' in this.sock;
  }

  /** Application bytes received so far (decrypted for TLS). */
  get bytesReceived(): number {
    return this.received;
  }

  /** The socket has closed (see closed()). */
  get isClosed(): boolean {
    return this.fullyClosed;
  }

  /** Bytes received but not read yet (a copy). */
  pending(): Buffer {
    return Buffer.from(this.buf);
  }

  send(data: string | Buffer): void {
    this.sock.write(data);
  }

  /** Next CRLF-terminated line (without CRLF), UTF-8 decoded. Rejects on timeout or close. */
  async line(timeoutMs = 10_000): Promise<string> {
    const b = await this.readUntil('\r\n', timeoutMs);
    return b.subarray(0, b.length - 2).toString('utf8');
  }

  /** Sends `line` + CRLF and returns the one-line reply. */
  async cmd(line: string, timeoutMs?: number): Promise<string> {
    this.send(`${line}\r\n`);
    return this.line(timeoutMs);
  }

  /**
   * The rest of a multi-line reply after its status line: the raw bytes
   * through the terminating ".\r\n" inclusive, still dot-stuffed.
   */
  async multilineBody(timeoutMs = 30_000): Promise<Buffer> {
    return this.readUntil((buf) => {
      if (buf.subarray(0, 3).equals(EMPTY_BODY)) return 3;
      const i = buf.indexOf(TERMINATOR);
      return i < 0 ? -1 : i + TERMINATOR.length;
    }, timeoutMs);
  }

  /**
   * A multi-line reply: the status line, and for `+OK` the body lines up to
   * (not including) the terminating "." line: raw bytes, still stuffed.
   */
  async multiline(timeoutMs = 30_000): Promise<{ status: string; body: Buffer }> {
    const status = await this.line(timeoutMs);
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    const data = await this.multilineBody(timeoutMs);
    return { status, body: data.subarray(0, data.length - EMPTY_BODY.length) };
  }

  /** Sends `line` + CRLF and reads a multi-line reply (see multiline()). */
  async cmdMultiline(line: string, timeoutMs?: number): Promise<{ status: string; body: Buffer }> {
    this.send(`${line}\r\n`);
    return this.multiline(timeoutMs);
  }

  /** Reads through a terminator (see ReadUntil) and returns the consumed bytes, terminator included. */
  async readUntil(until: ReadUntil, timeoutMs = 10_000): Promise<Buffer> {
    const find =
      typeof until === 'function'
        ? until
        : (buf: Buffer): number => {
            const term = asBytes(until);
            const i = buf.indexOf(term);
            return i < 0 ? -1 : i + term.length;
          };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = find(this.buf);
      if (end >= 0) {
        const out = Buffer.from(this.buf.subarray(0, end));
        this.buf = this.buf.subarray(end);
        return out;
      }
      await this.waitOrThrow(deadline, timeoutMs);
    }
  }

  /**
   * Consumes bytes through `until` (terminator included) without keeping
   * them: each piece goes to `sink` as it arrives. For bodies too big to
   * buffer. Returns the number of bytes consumed.
   */
  async streamUntil(until: string | Buffer, sink: (bytes: Buffer) => void, timeoutMs = 30_000): Promise<number> {
    const term = asBytes(until);
    const deadline = Date.now() + timeoutMs;
    let total = 0;
    const give = (n: number): void => {
      sink(this.buf.subarray(0, n));
      total += n;
      this.buf = this.buf.subarray(n);
    };
    for (;;) {
      const i = this.buf.indexOf(term);
      if (i >= 0) {
        give(i + term.length);
        return total;
      }
      // Keep a tail that may hold the start of the terminator.
      const take = this.buf.length - (term.length - 1);
      if (take > 0) give(take);
      await this.waitOrThrow(deadline, timeoutMs);
    }
  }

  private async waitOrThrow(deadline: number, timeoutMs: number): Promise<void> {
    const unread = (): string => JSON.stringify(this.buf.toString('latin1').slice(0, 500));
    if (this.ended) throw new Error(`LineClient: connection closed; unread: ${unread()}`);
    if (Date.now() >= deadline) throw new Error(`LineClient: timeout after ${timeoutMs} ms; unread: ${unread()}`);
    await this.wait(deadline);
  }

  /** Resolves true if nothing arrives within `ms` (and leaves any bytes buffered). */
  async silentFor(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.buf.length === 0;
  }

  /** Resolves once the socket has closed (peer closed, or we destroyed it); rejects on timeout. */
  async closed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.fullyClosed) {
      if (Date.now() >= deadline) throw new Error(`LineClient: connection not closed within ${timeoutMs} ms`);
      await this.wait(deadline);
    }
  }

  /** Close our side gracefully (FIN). */
  end(): void {
    this.sock.end();
  }

  /** Drop the connection without QUIT, as a crashing client would. */
  destroy(): void {
    this.sock.destroy();
  }
}
