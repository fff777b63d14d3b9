/**
 * The one POP3 wire client of every benchmark: plain TCP or implicit TLS
 * (one client SecureContext per CA, optional session resumption, optional
 * source address), CRLF lines, raw byte reads (KPOP framing) and a RETR that
 * only counts bytes (no copy, no un-stuffing) until the terminating
 * `CRLF.CRLF`.
 *
 * Every failure (an -ERR, a timeout, a dropped connection, a TLS error) is a
 * Pop3Error naming the target and the step, so a benchmark aborts with a clear
 * message instead of reporting numbers for failed logins. Passwords never
 * appear in errors (commands are named by their verb only).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';

export interface Pop3Endpoint {
  /** Shown in errors and progress lines. */
  readonly label: string;
  readonly host: string;
  readonly port: number;
  /** Implicit TLS (POP3S), verified against this CA and server name. */
  readonly tls?: { readonly ca: string | Buffer; readonly servername: string };
  /** Source address (the hostile load test spreads its clients over 127.0.x.y). */
  readonly localAddress?: string;
}

export interface Pop3Target extends Pop3Endpoint {
  readonly user: string;
  readonly password: string;
}

export class Pop3Error extends Error {
  constructor(
    readonly target: string,
    readonly step: string,
    readonly detail: string,
    /** A short stable key for tallies: an errno code, 'closed by server', 'client timeout' or 'reply'. */
    readonly code = 'reply',
  ) {
    super(`${target}: ${step}: ${detail}`);
    this.name = 'Pop3Error';
  }
}

export interface RetrHooks {
  /** Called synchronously right before the RETR command is written. */
  readonly beforeRetr?: () => void;
  /** Called synchronously as soon as the terminating dot line has arrived. */
  readonly afterRetr?: () => void;
}

export interface ConnectOptions {
  /** Per read; default DEFAULT_TIMEOUT_MS. */
  readonly timeoutMs?: number;
  /** A TLS session to resume. */
  readonly session?: Buffer;
  /** Gets each TLS session (ticket) the server sends. */
  readonly onSession?: (session: Buffer) => void;
}

export const DEFAULT_TIMEOUT_MS = 15_000;
const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('\r\n.\r\n');
/** A line longer than this is a protocol error. */
const MAX_LINE = 65_536;

/** One SecureContext per CA: tls.connect with a `ca` option would build one per connection and bill the load generator for it. */
const contexts = new Map<string | Buffer, tls.SecureContext>();
function contextFor(ca: string | Buffer): tls.SecureContext {
  let c = contexts.get(ca);
  if (!c) {
    c = tls.createSecureContext({ ca });
    contexts.set(ca, c);
  }
  return c;
}

type Wait =
  | { readonly kind: 'line'; readonly step: string; readonly resolve: (line: string) => void; readonly reject: (e: Error) => void }
  | { readonly kind: 'bytes'; readonly n: number; readonly step: string; readonly resolve: (b: Buffer) => void; readonly reject: (e: Error) => void }
  | RetrWait;

interface RetrWait {
  readonly kind: 'retr';
  readonly step: 'RETR';
  readonly resolve: (bodyBytes: number) => void;
  readonly reject: (e: Error) => void;
  readonly afterRetr: (() => void) | undefined;
  statusSeen: boolean;
  /** Bytes after the status line so far. */
  bytes: number;
  /** The last (up to 4) bytes seen, to find a terminator split across chunks. */
  tail: Buffer;
}

export class Pop3Conn {
  readonly socket: net.Socket;
  readonly label: string;
  /** Resolves once the socket has closed (for whatever reason). */
  readonly closed: Promise<void>;
  /** Lines that arrive while no read waits (e.g. a timeout notice); without it they wait for the next read. */
  onUnsolicited: ((line: string) => void) | undefined;
  private buf: Buffer = EMPTY;
  private wait: Wait | undefined;
  private timer: NodeJS.Timeout | undefined;
  private error: Pop3Error | undefined;
  private done = false;
  /** When the last RETR's terminating dot arrived (before its afterRetr hook ran). */
  private retrEndedAt = 0;
  private readonly timeoutMs: number;

  private constructor(endpoint: Pop3Endpoint, opts: ConnectOptions) {
    this.label = endpoint.label;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const { host, port, localAddress } = endpoint;
    const tcp = (): net.Socket => net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    if (endpoint.tls) {
      // tls.connect's typings lack localAddress: hand it a TCP socket bound to the source address.
      const raw = localAddress ? tcp() : undefined;
      raw?.on('error', () => undefined); // surfaces on the TLS socket
      this.socket = tls.connect({
        ...(raw ? { socket: raw } : { host, port }),
        secureContext: contextFor(endpoint.tls.ca),
        servername: endpoint.tls.servername,
        ...(opts.session ? { session: opts.session } : {}),
      });
      if (opts.onSession) this.socket.on('session', opts.onSession);
    } else {
      this.socket = tcp();
    }
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail('connection', err.message, err.code ?? 'socket error'));
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        if (!this.done) this.fail('connection', 'connection closed by the server', 'closed by server');
        resolve();
      }),
    );
  }

  /** Starts connecting; nothing is read yet (the greeting is the first line). */
  static open(endpoint: Pop3Endpoint, opts: ConnectOptions = {}): Pop3Conn {
    return new Pop3Conn(endpoint, opts);
  }

  /** Connects (and for TLS handshakes) and reads the +OK greeting. */
  static async connect(endpoint: Pop3Endpoint, opts: ConnectOptions = {}): Promise<Pop3Conn> {
    const c = new Pop3Conn(endpoint, opts);
    try {
      await c.expectOk('greeting');
    } catch (err) {
      c.destroy();
      throw err;
    }
    return c;
  }

  /** The error that broke the connection, if any. */
  get broken(): Pop3Error | undefined {
    return this.error;
  }

  write(data: string | Buffer): void {
    if (!this.error && !this.socket.destroyed) this.socket.write(data);
  }

  /** The next CRLF line (without the CRLF). */
  line(step: string, timeoutMs = this.timeoutMs): Promise<string> {
    return this.await<string>(step, timeoutMs, (resolve, reject) => ({ kind: 'line', step, resolve, reject }));
  }

  /** The next `n` raw bytes. */
  bytes(n: number, step: string, timeoutMs = this.timeoutMs): Promise<Buffer> {
    return this.await<Buffer>(step, timeoutMs, (resolve, reject) => ({ kind: 'bytes', n, step, resolve, reject }));
  }

  /** Reads one line, which must start with +OK. */
  async expectOk(step: string): Promise<string> {
    const line = await this.line(step);
    if (!line.startsWith('+OK')) throw this.refuse(step, line);
    return line;
  }

  /** Sends one command and returns its +OK line; the step is the verb (never the arguments: passwords). */
  command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.expectOk(line.split(' ', 1)[0] ?? line);
  }

  async login(user: string, password: string): Promise<void> {
    await this.command(`USER ${user}`);
    await this.command(`PASS ${password}`);
  }

  /** AUTH PLAIN with an initial response (one round trip). */
  async authPlain(user: string, password: string): Promise<void> {
    await this.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64')}`);
  }

  async stat(): Promise<{ count: number; octets: number }> {
    const reply = await this.command('STAT');
    const m = /^\+OK (\d+) (\d+)/.exec(reply);
    if (!m) throw new Pop3Error(this.label, 'STAT', `unparsable reply ${JSON.stringify(reply)}`);
    return { count: Number(m[1]), octets: Number(m[2]) };
  }

  async listSize(msg: number): Promise<number> {
    const reply = await this.command(`LIST ${msg}`);
    const m = /^\+OK \d+ (\d+)/.exec(reply);
    if (!m) throw new Pop3Error(this.label, 'LIST', `unparsable reply ${JSON.stringify(reply)}`);
    return Number(m[1]);
  }

  /** RETR a message, counting its (still dot-stuffed) body bytes; timed from the write to the terminating dot. */
  async retr(msg: number, hooks: RetrHooks = {}): Promise<{ bodyBytes: number; ms: number }> {
    let started = 0;
    const bodyBytes = await this.await<number>('RETR', this.timeoutMs, (resolve, reject) => {
      hooks.beforeRetr?.();
      started = performance.now();
      this.socket.write(`RETR ${msg}\r\n`);
      // The status line's CRLF precedes the body: an empty body is just ".CRLF".
      return { kind: 'retr', step: 'RETR', statusSeen: false, bytes: 0, tail: CRLF, afterRetr: hooks.afterRetr, resolve, reject };
    });
    return { bodyBytes, ms: this.retrEndedAt - started };
  }

  /** QUIT, wait for its +OK, then close our side. */
  async quit(): Promise<void> {
    await this.command('QUIT');
    this.done = true;
    this.socket.end();
  }

  /** e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" for a TLS connection, else undefined. */
  tlsSummary(): string | undefined {
    if (!(this.socket instanceof tls.TLSSocket)) return undefined;
    return `${this.socket.getProtocol() ?? '?'} ${this.socket.getCipher().name}`;
  }

  resumed(): boolean {
    return this.socket instanceof tls.TLSSocket && this.socket.isSessionReused();
  }

  /** Closes at once; the close that follows is no failure. */
  destroy(): void {
    this.done = true;
    this.socket.destroy();
  }

  // ------------------------------------------------------------------ internals

  private refuse(step: string, line: string): Pop3Error {
    const shown = line.length > 200 ? `${line.slice(0, 200)}...` : line;
    return new Pop3Error(this.label, step, `server replied ${JSON.stringify(shown)}`);
  }

  private await<T>(step: string, timeoutMs: number, make: (resolve: (v: T) => void, reject: (e: Error) => void) => Wait): Promise<T> {
    if (this.error) return Promise.reject(new Pop3Error(this.label, step, this.error.detail, this.error.code));
    if (this.wait) return Promise.reject(new Error(`${this.label}: ${step} while ${this.wait.step} is pending`));
    return new Promise<T>((resolve, reject) => {
      this.timer = setTimeout(() => this.fail(step, `no reply within ${timeoutMs} ms`, 'client timeout'), timeoutMs);
      this.wait = make(
        (v) => {
          clearTimeout(this.timer);
          resolve(v);
        },
        (e) => {
          clearTimeout(this.timer);
          reject(e);
        },
      );
      this.pump();
    });
  }

  /** Breaks the connection; the pending read (if any) rejects, naming its own step. */
  private fail(step: string, detail: string, code: string): void {
    const w = this.wait;
    this.error ??= new Pop3Error(this.label, w?.step ?? step, detail, code);
    this.wait = undefined;
    this.done = true;
    this.socket.destroy();
    w?.reject(w.step === this.error.step ? this.error : new Pop3Error(this.label, w.step, detail, code));
  }

  private onData(chunk: Buffer): void {
    const w = this.wait;
    if (w?.kind === 'retr' && w.statusSeen) return this.countBody(w, chunk);
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.pump();
  }

  /** Serves the pending read (or the unsolicited-line listener) from buffered bytes. */
  private pump(): void {
    for (;;) {
      const w = this.wait;
      if (w?.kind === 'bytes') {
        if (this.buf.length < w.n) return;
        const out = this.buf.subarray(0, w.n);
        this.buf = this.buf.subarray(w.n);
        this.wait = undefined;
        return w.resolve(out);
      }
      if ((!w && !this.onUnsolicited) || (w?.kind === 'retr' && w.statusSeen)) return;
      const nl = this.buf.indexOf(CRLF);
      if (nl < 0) {
        if (this.buf.length > MAX_LINE) this.fail(w?.step ?? 'reply', 'line too long', 'reply');
        return;
      }
      const line = this.buf.toString('latin1', 0, nl);
      this.buf = this.buf.subarray(nl + 2);
      if (!w) {
        this.onUnsolicited?.(line);
        continue;
      }
      if (w.kind === 'line') {
        this.wait = undefined;
        return w.resolve(line);
      }
      if (!line.startsWith('+OK')) return this.fail('RETR', this.refuse('RETR', line).detail, 'reply');
      w.statusSeen = true;
      const rest = this.buf;
      this.buf = EMPTY;
      if (rest.length > 0) this.countBody(w, rest);
      return;
    }
  }

  private countBody(w: RetrWait, chunk: Buffer): void {
    const before = w.bytes;
    w.bytes += chunk.length;
    // A line holding only "." ends the body (other lines starting with "." are stuffed).
    let end = -1;
    const joint = Buffer.concat([w.tail, chunk.subarray(0, TERMINATOR.length - 1)]);
    const j = joint.indexOf(TERMINATOR);
    if (j >= 0) {
      end = before + (j + TERMINATOR.length - w.tail.length);
    } else {
      const k = chunk.indexOf(TERMINATOR);
      if (k >= 0) end = before + k + TERMINATOR.length;
    }
    if (end < 0) {
      const keep = TERMINATOR.length - 1;
      w.tail = chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([w.tail, chunk]).subarray(-keep);
      return;
    }
    this.retrEndedAt = performance.now();
    w.afterRetr?.();
    if (end !== w.bytes) return this.fail('RETR', `${w.bytes - end} unexpected bytes after the terminating dot line`, 'reply');
    this.wait = undefined;
    // `end` counts the body plus ".\r\n" (the CRLF before the dot ends the last body line).
    w.resolve(end - 3);
  }
}

/** connect, [TLS], USER/PASS, STAT, QUIT. */
export async function loginOnce(target: Pop3Target, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  const c = await Pop3Conn.connect(target, { timeoutMs });
  try {
    await c.login(target.user, target.password);
    await c.stat();
    await c.quit();
  } catch (err) {
    c.destroy();
    throw err;
  }
}

export interface RetrSessionResult {
  /** LIST size of the message. */
  readonly listSize: number;
  /** Body bytes of each RETR, in order. */
  readonly bodyBytes: readonly number[];
  /** From writing the first RETR to the terminating dot of the last. */
  readonly ms: number;
}

/**
 * Logs in, reads message `msg`'s LIST size, RETRs it `times` times back to
 * back in the same session, QUITs. hooks.beforeRetr runs before the first
 * RETR, hooks.afterRetr after the last one's terminating dot.
 */
export async function retrSession(target: Pop3Target, msg: number, times = 1, hooks: RetrHooks = {}, timeoutMs = 60_000): Promise<RetrSessionResult> {
  if (!Number.isSafeInteger(times) || times < 1) throw new RangeError('times must be >= 1');
  const c = await Pop3Conn.connect(target, { timeoutMs });
  try {
    await c.login(target.user, target.password);
    const listSize = await c.listSize(msg);
    const bodyBytes: number[] = [];
    let ms = 0;
    for (let i = 0; i < times; i++) {
      const r = await c.retr(msg, {
        ...(i === 0 && hooks.beforeRetr ? { beforeRetr: hooks.beforeRetr } : {}),
        ...(i === times - 1 && hooks.afterRetr ? { afterRetr: hooks.afterRetr } : {}),
      });
      bodyBytes.push(r.bodyBytes);
      ms += r.ms;
    }
    await c.quit();
    return { listSize, bodyBytes, ms };
  } catch (err) {
    c.destroy();
    throw err;
  }
}
