/**
 * A minimal POP3 load client for the benchmark: plain TCP or implicit TLS,
 * USER/PASS login, single-line commands and a RETR that only counts bytes
 * (no copying, no un-stuffing) until the terminating `CRLF.CRLF`.
 *
 * Every failure (an -ERR, a timeout, a dropped connection, a TLS error) is a
 * Pop3Error naming the target and the step, so the benchmark aborts with a
 * clear message instead of reporting numbers for failed logins. Passwords
 * never appear in errors.
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

export interface RetrResult {
  /** Bytes between the +OK line and the terminating `.CRLF` (still dot-stuffed). */
  readonly bodyBytes: number;
  /** From writing RETR to receiving the terminating dot line. */
  readonly ms: number;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('\r\n.\r\n');
/** A status line longer than this is a protocol error. */
const MAX_LINE = 4096;
export const DEFAULT_TIMEOUT_MS = 15_000;

interface LineWait {
  readonly kind: 'line';
  /** The step being waited for (a command verb or "greeting"), for errors. */
  readonly step: string;
  readonly resolve: (line: string) => void;
  readonly reject: (err: Error) => void;
}

interface RetrWait {
  readonly kind: 'retr';
  readonly step: 'RETR';
  readonly resolve: (bodyBytes: number, endedAt: number) => void;
  readonly reject: (err: Error) => void;
  readonly afterRetr: (() => void) | undefined;
  statusSeen: boolean;
  /** Bytes after the status line so far. */
  bytes: number;
  /** The last (up to 4) bytes seen, to find a terminator split across chunks. */
  tail: Buffer;
}

type Wait = LineWait | RetrWait;

export class Pop3Client {
  private buf: Buffer = EMPTY;
  private wait: Wait | undefined;
  private broken: Error | undefined;
  private quitting = false;

  private constructor(
    private readonly socket: net.Socket,
    readonly label: string,
    private readonly timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.fail('connection', err.message));
    socket.on('close', () => {
      if (!this.quitting) this.fail('connection', 'connection closed by the server');
    });
  }

  /** Connects (and for TLS handshakes) and reads the +OK greeting. */
  static async connect(endpoint: Pop3Endpoint, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Pop3Client> {
    const socket = endpoint.tls
      ? tls.connect({
          host: endpoint.host,
          port: endpoint.port,
          ca: endpoint.tls.ca,
          servername: endpoint.tls.servername,
        })
      : net.connect({ host: endpoint.host, port: endpoint.port });
    const client = new Pop3Client(socket, endpoint.label, timeoutMs);
    const greeting = await client.readLine('greeting');
    if (!greeting.startsWith('+OK')) {
      client.destroy();
      throw new Pop3Error(endpoint.label, 'greeting', `expected +OK, got ${JSON.stringify(greeting)}`);
    }
    return client;
  }

  /** Sends one command and returns its +OK line; throws Pop3Error on anything else. */
  async command(line: string): Promise<string> {
    const verb = line.split(' ', 1)[0] ?? line;
    this.checkUsable(verb);
    this.send(line);
    const reply = await this.readLine(verb);
    if (!reply.startsWith('+OK')) {
      throw new Pop3Error(this.label, verb, `server replied ${JSON.stringify(reply)}`);
    }
    return reply;
  }

  async login(user: string, password: string): Promise<void> {
    await this.command(`USER ${user}`);
    // Never put the password into an error: command() names the step by verb only.
    await this.command(`PASS ${password}`);
  }

  /** `STAT`: message count and mailbox size. */
  async stat(): Promise<{ count: number; octets: number }> {
    const reply = await this.command('STAT');
    const m = /^\+OK (\d+) (\d+)/.exec(reply);
    if (!m) throw new Pop3Error(this.label, 'STAT', `unparsable reply ${JSON.stringify(reply)}`);
    return { count: Number(m[1]), octets: Number(m[2]) };
  }

  /** `LIST n`: the size of one message. */
  async listSize(msg: number): Promise<number> {
    const reply = await this.command(`LIST ${msg}`);
    const m = /^\+OK \d+ (\d+)/.exec(reply);
    if (!m) throw new Pop3Error(this.label, 'LIST', `unparsable reply ${JSON.stringify(reply)}`);
    return Number(m[1]);
  }

  /** RETR a message, counting its bytes; timed from the write to the terminating dot. */
  retr(msg: number, hooks: RetrHooks = {}): Promise<RetrResult> {
    this.checkUsable('RETR');
    return new Promise<RetrResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail('RETR', `no terminating dot line within ${this.timeoutMs} ms`);
      }, this.timeoutMs);
      let started = 0;
      this.wait = {
        kind: 'retr',
        step: 'RETR',
        statusSeen: false,
        bytes: 0,
        // The status line's CRLF precedes the body: an empty body is just ".CRLF".
        tail: CRLF,
        afterRetr: hooks.afterRetr,
        resolve: (bodyBytes, endedAt) => {
          clearTimeout(timer);
          resolve({ bodyBytes, ms: endedAt - started });
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      hooks.beforeRetr?.();
      started = performance.now();
      this.send(`RETR ${msg}`);
      this.pump();
    });
  }

  /** QUIT, wait for its +OK, then close our side. */
  async quit(): Promise<void> {
    await this.command('QUIT');
    this.quitting = true;
    this.socket.end();
  }

  /** e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" for a TLS connection, else undefined. */
  tlsSummary(): string | undefined {
    if (!(this.socket instanceof tls.TLSSocket)) return undefined;
    return `${this.socket.getProtocol() ?? '?'} ${this.socket.getCipher().name}`;
  }

  destroy(): void {
    this.quitting = true;
    this.socket.destroy();
  }

  // ------------------------------------------------------------------ internals

  private checkUsable(step: string): void {
    if (this.broken) throw new Pop3Error(this.label, step, this.broken.message);
    if (this.wait) throw new Error(`${this.label}: ${step} while another command is pending`);
  }

  private send(line: string): void {
    this.socket.write(`${line}\r\n`);
  }

  private readLine(step: string): Promise<string> {
    if (this.broken) return Promise.reject(new Pop3Error(this.label, step, this.broken.message));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(step, `no reply within ${this.timeoutMs} ms`), this.timeoutMs);
      this.wait = {
        kind: 'line',
        step,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.pump();
    });
  }

  /** Breaks the connection; the pending wait (if any) rejects, naming its own step. */
  private fail(step: string, detail: string): void {
    const w = this.wait;
    const err = new Pop3Error(this.label, w?.step ?? step, detail);
    this.broken ??= err;
    this.wait = undefined;
    this.socket.destroy();
    w?.reject(err);
  }

  private onData(chunk: Buffer): void {
    const w = this.wait;
    if (w?.kind === 'retr' && w.statusSeen) {
      this.countBody(w, chunk);
      return;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.pump();
  }

  /** Serves the pending wait from buffered bytes. */
  private pump(): void {
    const w = this.wait;
    if (!w || (w.kind === 'retr' && w.statusSeen)) return;
    const nl = this.buf.indexOf(CRLF);
    if (nl < 0) {
      if (this.buf.length > MAX_LINE) this.fail(w.kind === 'line' ? 'reply' : 'RETR', 'status line too long');
      return;
    }
    const line = this.buf.toString('latin1', 0, nl);
    const rest = this.buf.subarray(nl + 2);
    this.buf = EMPTY;
    if (w.kind === 'line') {
      this.buf = rest;
      this.wait = undefined;
      w.resolve(line);
      return;
    }
    if (!line.startsWith('+OK')) {
      this.fail('RETR', `server replied ${JSON.stringify(line)}`);
      return;
    }
    w.statusSeen = true;
    if (rest.length > 0) this.countBody(w, rest);
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
      w.tail =
        chunk.length >= keep
          ? Buffer.from(chunk.subarray(chunk.length - keep))
          : Buffer.concat([w.tail, chunk]).subarray(-keep);
      return;
    }
    const endedAt = performance.now();
    w.afterRetr?.();
    if (end !== w.bytes) {
      this.fail('RETR', `${w.bytes - end} unexpected bytes after the terminating dot line`);
      return;
    }
    this.wait = undefined;
    // `end` counts the body plus ".\r\n" (the CRLF before the dot ends the last body line).
    w.resolve(end - 3, endedAt);
  }
}

/** connect, [TLS], USER/PASS, STAT, QUIT. Resolves with the login's duration in ms. */
export async function loginOnce(target: Pop3Target, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
  const t0 = performance.now();
  const client = await Pop3Client.connect(target, timeoutMs);
  try {
    await client.login(target.user, target.password);
    await client.stat();
    await client.quit();
  } catch (err) {
    client.destroy();
    throw err;
  }
  return performance.now() - t0;
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
export async function retrSession(
  target: Pop3Target,
  msg: number,
  times = 1,
  hooks: RetrHooks = {},
  timeoutMs = 60_000,
): Promise<RetrSessionResult> {
  if (!Number.isSafeInteger(times) || times < 1) throw new RangeError('times must be >= 1');
  const client = await Pop3Client.connect(target, timeoutMs);
  try {
    await client.login(target.user, target.password);
    const listSize = await client.listSize(msg);
    const bodyBytes: number[] = [];
    let ms = 0;
    for (let i = 0; i < times; i++) {
      const r = await client.retr(msg, {
        beforeRetr: i === 0 ? hooks.beforeRetr : undefined,
        afterRetr: i === times - 1 ? hooks.afterRetr : undefined,
      });
      bodyBytes.push(r.bodyBytes);
      ms += r.ms;
    }
    await client.quit();
    return { listSize, bodyBytes, ms };
  } catch (err) {
    client.destroy();
    throw err;
  }
}

export interface LoginLoadOptions {
  readonly concurrency: number;
  readonly durationMs: number;
  readonly timeoutMs?: number;
}

export interface LoginLoadResult {
  readonly logins: number;
  /** Wall time from the first connect to the end of the last login. */
  readonly elapsedMs: number;
  readonly perSecond: number;
  /** Duration of each completed login (connect to QUIT +OK), ms. */
  readonly latenciesMs: readonly number[];
}

/**
 * `concurrency` workers each run back-to-back logins until durationMs has
 * passed (a login under way then is finished and counted). The first failure
 * stops every worker and is thrown.
 */
export async function runLoginLoad(target: Pop3Target, opts: LoginLoadOptions): Promise<LoginLoadResult> {
  if (!Number.isSafeInteger(opts.concurrency) || opts.concurrency < 1) throw new RangeError('concurrency must be >= 1');
  const start = performance.now();
  const deadline = start + opts.durationMs;
  const latenciesMs: number[] = [];
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && performance.now() < deadline) {
      try {
        latenciesMs.push(await loginOnce(target, opts.timeoutMs));
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  if (failure !== undefined) throw failure;
  const elapsedMs = performance.now() - start;
  if (latenciesMs.length === 0) throw new Pop3Error(target.label, 'load', 'no login completed');
  return { logins: latenciesMs.length, elapsedMs, perSecond: (latenciesMs.length * 1000) / elapsedMs, latenciesMs };
}
