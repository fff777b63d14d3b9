/**
 * Splits a byte stream into protocol lines, with a hard per-line cap.
 *
 * Sans-I/O: the host pushes whatever the socket delivered and pulls lines one
 * at a time, passing the cap that applies to the *next* line (the session's
 * `lineLimit`, which grows while a SASL exchange waits for a continuation).
 *
 * Storage is one growing buffer with a read offset; the search for LF resumes
 * where the previous search stopped, so every byte is scanned once and the
 * total work stays linear in the input, however it is chunked.
 */

/** One result of {@link LineFramer.next}. */
export type FramedLine =
  /** A complete line without its terminator (LF, or CRLF with the CR stripped); `octets`: as received, terminator included. */
  | { readonly kind: 'line'; readonly line: Buffer; readonly octets: number }
  /** The line exceeds the cap: reply `-ERR` and close. The framer stays poisoned. */
  | { readonly kind: 'overflow' };

const LF = 0x0a;
const CR = 0x0d;
const OVERFLOW: FramedLine = Object.freeze({ kind: 'overflow' });
const INITIAL_CAPACITY = 1024;
/** An emptied buffer larger than this is released rather than kept (one huge SASL token should not pin memory). */
const RETAIN_LIMIT = 64 * 1024;

export class LineFramer {
  private buf: Buffer;
  /** First unconsumed byte. */
  private start = 0;
  /** One past the last buffered byte. */
  private end = 0;
  /** Bytes in [start, scan) are known to hold no LF: the next search starts here. */
  private scan = 0;
  private poisoned = false;

  constructor(initialCapacity: number = INITIAL_CAPACITY) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialCapacity));
  }

  /** Bytes received and not yet returned as lines. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** True once a line exceeded its cap; every later `next()` reports overflow. */
  get overflowed(): boolean {
    return this.poisoned;
  }

  /**
   * Appends bytes from the socket. Nothing is bounded here: the cap is applied
   * by `next()`, which the host calls after every push while it is reading
   * commands. While the session awaits a login the host must pause the socket
   * (bytes pipelined behind the login are kept for the relay, not capped).
   */
  push(chunk: Buffer): void {
    // A poisoned framer is about to be closed; do not grow for a hostile peer.
    if (chunk.length === 0 || this.poisoned) return;
    this.reserve(chunk.length);
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /**
   * The next complete line, `undefined` if more bytes are needed, or overflow.
   *
   * `maxLine` counts the octets of the line as received, terminator included
   * (RFC 2449: 255 for commands, so 253 octets of text plus CRLF). Overflow is
   * reported as soon as it is certain: a complete line longer than the cap, or
   * a partial line that already fills the cap (its LF would make it longer).
   */
  next(maxLine: number): FramedLine | undefined {
    if (this.poisoned) return OVERFLOW;
    const rel = this.buf.subarray(this.scan, this.end).indexOf(LF);
    if (rel < 0) {
      this.scan = this.end;
      if (this.end - this.start >= maxLine) return this.poison();
      return undefined;
    }
    const lf = this.scan + rel;
    if (lf - this.start + 1 > maxLine) return this.poison();
    let contentEnd = lf;
    if (contentEnd > this.start && this.buf[contentEnd - 1] === CR) contentEnd -= 1;
    // Copy: the backing buffer is compacted and reused by later pushes.
    const line = Buffer.from(this.buf.subarray(this.start, contentEnd));
    const octets = lf + 1 - this.start;
    this.consume(lf + 1);
    return { kind: 'line', line, octets };
  }

  /**
   * Drops every buffered byte and returns how many there were. Used on STLS:
   * whatever the client sent in plaintext after `STLS\r\n` must never be
   * interpreted once the channel is protected (CVE-2011-0411 class).
   */
  discardBuffered(): number {
    const n = this.bufferedBytes;
    this.consume(this.end);
    return n;
  }

  /** Returns and clears the unparsed bytes (hand-off to the relay after login). */
  takeBuffered(): Buffer {
    const out = Buffer.from(this.buf.subarray(this.start, this.end));
    this.consume(this.end);
    return out;
  }

  private poison(): FramedLine {
    this.poisoned = true;
    this.consume(this.end);
    return OVERFLOW;
  }

  /** Marks everything before `to` as consumed. */
  private consume(to: number): void {
    this.start = to;
    this.scan = to;
    if (this.start === this.end) {
      this.start = this.end = this.scan = 0;
      if (this.buf.length > RETAIN_LIMIT) this.buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
    }
  }

  /** Makes room for `n` more bytes after `end`. */
  private reserve(n: number): void {
    if (this.end + n <= this.buf.length) return;
    const live = this.end - this.start;
    // Compact in place only when that leaves at least half the buffer free:
    // otherwise a long partial line followed by many short pushes would be
    // moved again and again (quadratic). Growing doubles, so copies amortise.
    if (live + n <= this.buf.length >>> 1) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, live + n));
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
    }
    this.scan -= this.start;
    this.end = live;
    this.start = 0;
  }
}
