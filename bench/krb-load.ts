/**
 * Kerberos load client for the benchmark: KPOP (krb5_sendauth KPOPV1.0)
 * handshakes and logins, and the accept step of AUTH GSSAPI, each with one
 * pre-generated single-use token per connection (popgate keeps a replay
 * cache: a token is accepted once).
 *
 * Kinds (one TCP connection each, plaintext, closed by us at the end):
 *  - `kpop`:        hello + AP-REQ (no mutual auth) in one write; read the
 *                   version byte `00`, the OK frame `00 00 00 00` and the
 *                   POP3 greeting; close.
 *  - `kpop-mutual`: the same with an AP-REQ asking for mutual authentication:
 *                   the OK frame is followed by `u32 len + AP-REP` (0x6f...),
 *                   read in full (not decrypted: the client context is gone).
 *  - `kpop-login`:  as `kpop`, then `USER <user>`, `PASS krb_ticket` (popgate
 *                   logs in to the backend), `QUIT`.
 *  - `gss-accept`:  greeting, `AUTH GSSAPI`, `+ `, the initial GSS token,
 *                   popgate's `+ <mutual token>` (the accept step); close.
 *
 * Every failure (an unexpected byte, a KRB-ERROR, an -ERR, a timeout, a
 * dropped connection) is a Pop3Error naming the step; the load stops at the
 * first one.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { kpopApReqFrame, kpopClientHello } from '../src/kerberos/kpop-framing.js';
import { Pop3Error, DEFAULT_TIMEOUT_MS } from './pop3-load.js';

export type KrbKind = 'kpop' | 'kpop-mutual' | 'kpop-login' | 'gss-accept';

export interface KrbEndpoint {
  readonly label: string;
  readonly host: string;
  readonly port: number;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const HELLO = kpopClientHello();
const MAX_LINE = 65_536;

type Waiter =
  | { readonly kind: 'bytes'; readonly n: number; readonly step: string; readonly resolve: (b: Buffer) => void; readonly reject: (e: Error) => void }
  | { readonly kind: 'line'; readonly step: string; readonly resolve: (l: string) => void; readonly reject: (e: Error) => void };

/** A socket with "next n bytes" / "next CRLF line" reads and one deadline for the whole connection. */
class Conn {
  private buf: Buffer = EMPTY;
  private waiter: Waiter | undefined;
  private broken: Error | undefined;
  private done = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly socket: net.Socket,
    private readonly label: string,
    timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.pump();
    });
    socket.on('error', (err: Error) => this.fail('connection', err.message));
    socket.on('close', () => {
      if (!this.done) this.fail('connection', 'connection closed by the server');
    });
    this.timer = setTimeout(() => this.fail('connection', `not finished within ${timeoutMs} ms`), timeoutMs);
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  bytes(n: number, step: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.broken) return reject(new Pop3Error(this.label, step, this.broken.message));
      this.waiter = { kind: 'bytes', n, step, resolve, reject };
      this.pump();
    });
  }

  line(step: string): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.broken) return reject(new Pop3Error(this.label, step, this.broken.message));
      this.waiter = { kind: 'line', step, resolve, reject };
      this.pump();
    });
  }

  /** Closes our side (no error for the close that follows). */
  close(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.socket.destroy();
  }

  private fail(step: string, detail: string): void {
    const w = this.waiter;
    const err = new Pop3Error(this.label, w?.step ?? step, detail);
    this.broken ??= err;
    this.waiter = undefined;
    this.done = true;
    clearTimeout(this.timer);
    this.socket.destroy();
    w?.reject(err);
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (w.kind === 'bytes') {
      if (this.buf.length < w.n) return;
      const out = this.buf.subarray(0, w.n);
      this.buf = this.buf.subarray(w.n);
      this.waiter = undefined;
      w.resolve(out);
      return;
    }
    const nl = this.buf.indexOf(CRLF);
    if (nl < 0) {
      if (this.buf.length > MAX_LINE) this.fail(w.step, 'line too long');
      return;
    }
    const line = this.buf.toString('latin1', 0, nl);
    this.buf = this.buf.subarray(nl + 2);
    this.waiter = undefined;
    w.resolve(line);
  }
}

const show = (s: string): string => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);

async function expectOk(c: Conn, label: string, step: string): Promise<string> {
  const line = await c.line(step);
  if (!line.startsWith('+OK')) throw new Pop3Error(label, step, `server replied ${show(line)}`);
  return line;
}

/**
 * The KPOP preamble: version byte `00`, then the recvauth reply: `00 00 00 00`
 * (success) followed, when mutual authentication was asked for, by
 * `u32 len + AP-REP`; a failure is `u32 len + KRB-ERROR` instead.
 */
async function kpopPreamble(c: Conn, label: string, mutual: boolean): Promise<void> {
  const version = await c.bytes(1, 'KPOP version byte');
  if (version[0] !== 0) throw new Pop3Error(label, 'KPOP version byte', `expected 00, got ${version.toString('hex')}`);
  const len = (await c.bytes(4, 'KPOP reply frame')).readUInt32BE(0);
  if (len !== 0) {
    if (len > 65_536) throw new Pop3Error(label, 'KPOP reply frame', `implausible length ${len}`);
    const body = await c.bytes(len, 'KPOP reply frame');
    throw new Pop3Error(
      label,
      'KPOP reply frame',
      body[0] === 0x7e
        ? "KRB-ERROR: the ticket was refused (a replay, a clock skew or a wrong key: see popgate's log)"
        : `unexpected ${len}-byte frame starting 0x${(body[0] ?? 0).toString(16)}`,
    );
  }
  if (!mutual) return;
  const repLen = (await c.bytes(4, 'KPOP AP-REP')).readUInt32BE(0);
  if (repLen === 0 || repLen > 65_536) throw new Pop3Error(label, 'KPOP AP-REP', `implausible AP-REP length ${repLen}`);
  const rep = await c.bytes(repLen, 'KPOP AP-REP');
  if (rep[0] !== 0x6f) throw new Pop3Error(label, 'KPOP AP-REP', `expected an AP-REP (0x6f), got 0x${(rep[0] ?? 0).toString(16)}`);
}

/**
 * One connection of `kind` with `token` (the raw AP-REQ for kpop kinds, the
 * GSS initial token for gss-accept). Resolves with its duration in ms, from
 * connect to the last byte needed.
 */
export async function krbOnce(
  kind: KrbKind,
  endpoint: KrbEndpoint,
  token: Buffer,
  opts: { user?: string; timeoutMs?: number } = {},
): Promise<number> {
  const t0 = performance.now();
  const label = endpoint.label;
  const socket = net.connect({ host: endpoint.host, port: endpoint.port });
  const c = new Conn(socket, label, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    if (kind === 'gss-accept') {
      await expectOk(c, label, 'greeting');
      c.write('AUTH GSSAPI\r\n');
      const go = await c.line('AUTH GSSAPI');
      if (go !== '+ ' && go !== '+') throw new Pop3Error(label, 'AUTH GSSAPI', `expected "+ ", got ${show(go)}`);
      c.write(`${token.toString('base64')}\r\n`);
      const reply = await c.line('GSSAPI initial token');
      if (!reply.startsWith('+ ') || reply.length < 4) {
        throw new Pop3Error(label, 'GSSAPI initial token', `expected "+ <mutual token>", got ${show(reply)}`);
      }
      c.close();
      return performance.now() - t0;
    }
    // One write: hello and AP-REQ, as krb5_sendauth's peer sees them without waiting.
    c.write(Buffer.concat([HELLO, kpopApReqFrame(token)]));
    await kpopPreamble(c, label, kind === 'kpop-mutual');
    await expectOk(c, label, 'greeting');
    if (kind === 'kpop-login') {
      c.write(`USER ${opts.user ?? ''}\r\n`);
      await expectOk(c, label, 'USER');
      c.write('PASS krb_ticket\r\n');
      await expectOk(c, label, 'PASS');
      c.write('QUIT\r\n');
      await expectOk(c, label, 'QUIT');
    }
    c.close();
    return performance.now() - t0;
  } catch (err) {
    c.close();
    throw err;
  }
}

/**
 * KPOP with a token that was already accepted once: resolves when popgate
 * refuses it with a KRB-ERROR (the replay cache is on), rejects otherwise.
 */
export async function expectKpopReplayRefused(endpoint: KrbEndpoint, apReq: Buffer): Promise<void> {
  try {
    await krbOnce('kpop', endpoint, apReq);
  } catch (err) {
    if (err instanceof Pop3Error && /KRB-ERROR/.test(err.detail)) return;
    throw err;
  }
  throw new Pop3Error(endpoint.label, 'replay check', 'a replayed AP-REQ was accepted: the replay cache is not in effect');
}

export interface KrbLoadOptions {
  readonly concurrency: number;
  /** Stop starting connections after this long (or when the tokens run out). */
  readonly durationMs: number;
  readonly user?: string;
  readonly timeoutMs?: number;
}

export interface KrbLoadResult {
  readonly ops: number;
  /** From the first connect to the end of the last connection. */
  readonly elapsedMs: number;
  readonly perSecond: number;
  readonly latenciesMs: readonly number[];
  /** The run ended because every token was used, before durationMs. */
  readonly ranOut: boolean;
}

/**
 * `concurrency` workers each take the next unused token and run one
 * connection with it, back to back, until durationMs has passed or the
 * tokens are used up. The first failure stops every worker and is thrown.
 */
export async function runKrbLoad(kind: KrbKind, endpoint: KrbEndpoint, tokens: readonly Buffer[], opts: KrbLoadOptions): Promise<KrbLoadResult> {
  if (!Number.isSafeInteger(opts.concurrency) || opts.concurrency < 1) throw new RangeError('concurrency must be >= 1');
  const start = performance.now();
  const deadline = start + opts.durationMs;
  const latenciesMs: number[] = [];
  let next = 0;
  let ranOut = false;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && performance.now() < deadline) {
      if (next >= tokens.length) {
        ranOut = true;
        return;
      }
      const token = tokens[next++]!;
      try {
        latenciesMs.push(await krbOnce(kind, endpoint, token, { user: opts.user, timeoutMs: opts.timeoutMs }));
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  if (failure !== undefined) throw failure;
  const elapsedMs = performance.now() - start;
  if (latenciesMs.length === 0) throw new Pop3Error(endpoint.label, 'load', 'no connection completed');
  return { ops: latenciesMs.length, elapsedMs, perSecond: (latenciesMs.length * 1000) / elapsedMs, latenciesMs, ranOut };
}
