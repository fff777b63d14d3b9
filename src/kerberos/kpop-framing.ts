/**
 * KPOP (Kerberos 5 `krb5_sendauth` / `krb5_recvauth`, application version
 * `KPOPV1.0`) wire framing, sans I/O: bytes in, events out. No sockets, no
 * timers; the host glues it to a socket, verifies the AP-REQ with the addon
 * and writes the replies.
 *
 * ```
 * C->S  00 00 00 13 "KRB5_SENDAUTH_V1.0\0" 00 00 00 09 "KPOPV1.0\0"  (the server never speaks first)
 * S->C  00 ok | 01 bad sendauth version | 02 bad application version (then close)
 * C->S  u32be len + AP-REQ (DER, first byte 0x6e)
 * S->C  failure: u32be len + KRB-ERROR, close       -> kpopErrorFrame()
 *       success: 00 00 00 00 [+ u32be len + AP-REP]  -> kpopOkFrame()
 * then plain POP3 on the same stream (+OK greeting first)
 * ```
 *
 * Memory: at most 4 header bytes plus the declared length of the current
 * message are held, and a length is checked before anything is allocated
 * (version strings up to 64 bytes, the AP-REQ up to `maxApReqLength`).
 * Bytes pipelined behind the AP-REQ (Heimdal `push` sends
 * `USER u\r\nPASS x\r\nSTAT\r\n` right away) are kept for `takeRemaining()`,
 * up to `maxPipelined`.
 */

/** MIT `sendauth_version`. */
export const SENDAUTH_VERSION = 'KRB5_SENDAUTH_V1.0';
/** The application version fetchmail and Heimdal `push` send for Kerberos 5 KPOP. */
export const KPOP_APP_VERSION = 'KPOPV1.0';
/** Kerberos 4 KPOP's application version (krb4 is unsupported). */
export const KPOP_KRB4_APP_VERSION = 'KPOPV0.1';
/** Longest version string accepted (both are under 20 bytes in practice). */
export const KPOP_MAX_VERSION_LENGTH = 64;
export const KPOP_DEFAULT_MAX_AP_REQ_LENGTH = 64 * 1024;
export const KPOP_DEFAULT_MAX_PIPELINED = 64 * 1024;

/** The recvauth version-check reply byte. */
export const KPOP_VERSION_OK = 0;
export const KPOP_BAD_SENDAUTH_VERSION = 1;
export const KPOP_BAD_APP_VERSION = 2;

const AP_REQ_TAG = 0x6e; // [APPLICATION 14]
const SENDAUTH_BYTES = Buffer.from(`${SENDAUTH_VERSION}\0`, 'latin1');
const APP_BYTES = Buffer.from(`${KPOP_APP_VERSION}\0`, 'latin1');
const KRB4_APP_BYTES = Buffer.from(`${KPOP_KRB4_APP_VERSION}\0`, 'latin1');
const EMPTY = Buffer.alloc(0);

/** Where in the handshake a refusal happened. */
export type KpopStage = 'sendauth-version' | 'app-version' | 'ap-req' | 'pipelined';

export type KpopEvent =
  /** Send these bytes (the one-byte version acknowledgement `00`). */
  | { readonly kind: 'write'; readonly bytes: Buffer }
  /**
   * The complete AP-REQ (its own copy). The handshake consumes no more
   * protocol bytes; later bytes are for the POP3 framer (takeRemaining()).
   */
  | { readonly kind: 'ap-req'; readonly apReq: Buffer }
  /**
   * Send `bytes` (may be empty), then close. For the AP-REQ stage `bytes` is
   * empty: the host may send a KRB-ERROR built by the addon (kpopErrorFrame)
   * or just close. `reason` is for the log only (client bytes are escaped).
   */
  | { readonly kind: 'reject'; readonly bytes: Buffer; readonly reason: string; readonly stage: KpopStage };

export type KpopState = 'sendauth-version' | 'app-version' | 'ap-req' | 'done' | 'rejected';

export interface KpopHandshakeOptions {
  /** Largest AP-REQ accepted, in bytes. Default 64 KiB. */
  readonly maxApReqLength?: number;
  /** Most bytes kept behind the AP-REQ until takeRemaining(). Default 64 KiB. */
  readonly maxPipelined?: number;
}

/** Client bytes for a log line: JSON-escaped latin1, at most `max` bytes. */
function show(bytes: Buffer, max = KPOP_MAX_VERSION_LENGTH): string {
  const s = JSON.stringify(bytes.subarray(0, max).toString('latin1'));
  return bytes.length > max ? `${s}...` : s;
}

/** The server side of krb5_recvauth for KPOP, fed incrementally. */
export class KpopHandshake {
  readonly #maxApReqLength: number;
  readonly #maxPipelined: number;
  #state: KpopState = 'sendauth-version';
  readonly #header = Buffer.alloc(4);
  #headerFill = 0;
  #body: Buffer | undefined;
  #bodyFill = 0;
  #remaining: Buffer[] = [];
  #remainingLength = 0;

  constructor(opts: KpopHandshakeOptions = {}) {
    const max = opts.maxApReqLength ?? KPOP_DEFAULT_MAX_AP_REQ_LENGTH;
    const pipelined = opts.maxPipelined ?? KPOP_DEFAULT_MAX_PIPELINED;
    if (!Number.isInteger(max) || max < 1 || max > 0xffff_ffff) throw new RangeError('maxApReqLength must be an integer in 1..2^32-1');
    if (!Number.isInteger(pipelined) || pipelined < 0) throw new RangeError('maxPipelined must be a non-negative integer');
    this.#maxApReqLength = max;
    this.#maxPipelined = pipelined;
  }

  get state(): KpopState {
    return this.#state;
  }

  /** Whether the AP-REQ has been handed out. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /**
   * Consumes a chunk. After an 'ap-req' event further chunks are only kept
   * for takeRemaining(); after a 'reject' they are ignored.
   */
  feed(chunk: Buffer): KpopEvent[] {
    const events: KpopEvent[] = [];
    let off = 0;
    while (off < chunk.length && this.#inHandshake()) {
      if (this.#body === undefined) {
        const n = Math.min(4 - this.#headerFill, chunk.length - off);
        chunk.copy(this.#header, this.#headerFill, off, off + n);
        this.#headerFill += n;
        off += n;
        if (this.#headerFill < 4) break;
        this.#headerFill = 0;
        const refusal = this.#checkLength(this.#header.readUInt32BE(0));
        if (refusal) {
          events.push(this.#reject(refusal));
          break;
        }
      } else {
        if (this.#state === 'ap-req' && this.#bodyFill === 0 && chunk[off] !== AP_REQ_TAG) {
          const tag = (chunk[off] ?? 0).toString(16).padStart(2, '0');
          events.push(this.#reject({ bytes: EMPTY, reason: `not an AP-REQ (first byte 0x${tag}, expected 0x6e)` }));
          break;
        }
        const n = Math.min(this.#body.length - this.#bodyFill, chunk.length - off);
        chunk.copy(this.#body, this.#bodyFill, off, off + n);
        this.#bodyFill += n;
        off += n;
        if (this.#bodyFill < this.#body.length) break;
        const message = this.#body;
        this.#body = undefined;
        this.#bodyFill = 0;
        this.#onMessage(message, events);
      }
    }
    if (this.#state === 'done' && off < chunk.length) {
      const overflow = this.#keep(chunk.subarray(off));
      if (overflow) {
        // Never hand out an AP-REQ and take it back in the same call.
        const at = events.findIndex((e) => e.kind === 'ap-req');
        if (at >= 0) events.splice(at, 1);
        events.push(overflow);
      }
    }
    return events;
  }

  /**
   * The bytes received after the AP-REQ, in order, and forgets them (feed
   * them to the POP3 framer). Empty before the AP-REQ and after a refusal.
   */
  takeRemaining(): Buffer {
    const out = this.#remaining.length === 1 ? (this.#remaining[0] as Buffer) : Buffer.concat(this.#remaining, this.#remainingLength);
    this.#remaining = [];
    this.#remainingLength = 0;
    return out;
  }

  #inHandshake(): boolean {
    return this.#state === 'sendauth-version' || this.#state === 'app-version' || this.#state === 'ap-req';
  }

  /** Checks a declared length and allocates the body, or says why not. */
  #checkLength(len: number): { bytes: Buffer; reason: string } | undefined {
    switch (this.#state) {
      case 'sendauth-version':
        if (len === 0 || len > KPOP_MAX_VERSION_LENGTH) {
          return { bytes: Buffer.from([KPOP_BAD_SENDAUTH_VERSION]), reason: this.#badFirstLength(len) };
        }
        break;
      case 'app-version':
        if (len === 0 || len > KPOP_MAX_VERSION_LENGTH) {
          return { bytes: Buffer.from([KPOP_BAD_APP_VERSION]), reason: `application version length ${len} is not in 1..${KPOP_MAX_VERSION_LENGTH}` };
        }
        break;
      default:
        if (len === 0) return { bytes: EMPTY, reason: 'empty AP-REQ' };
        if (len > this.#maxApReqLength) return { bytes: EMPTY, reason: `AP-REQ length ${len} exceeds the limit of ${this.#maxApReqLength}` };
    }
    this.#body = Buffer.alloc(len);
    this.#bodyFill = 0;
    return undefined;
  }

  #badFirstLength(len: number): string {
    const text = Buffer.from(this.#header);
    const base = `sendauth version length ${len} is not in 1..${KPOP_MAX_VERSION_LENGTH}`;
    // Kerberos 4 sendauth has no length prefix: it starts "AUTHV0.1" then "KPOPV0.1".
    if (text.toString('latin1') === 'AUTH') return `${base}: looks like Kerberos 4 sendauth (AUTHV0.1, KPOPV0.1); krb4 is unsupported`;
    if (/^[\x20-\x7e]{4}$/.test(text.toString('latin1'))) return `${base}: got text ${show(text)}, not a krb5_sendauth client`;
    return base;
  }

  #onMessage(message: Buffer, events: KpopEvent[]): void {
    switch (this.#state) {
      case 'sendauth-version':
        if (!message.equals(SENDAUTH_BYTES)) {
          events.push(this.#reject({ bytes: Buffer.from([KPOP_BAD_SENDAUTH_VERSION]), reason: `unsupported sendauth version ${show(message)}` }));
          return;
        }
        this.#state = 'app-version';
        return;
      case 'app-version':
        if (message.equals(APP_BYTES)) {
          this.#state = 'ap-req';
          events.push({ kind: 'write', bytes: Buffer.from([KPOP_VERSION_OK]) });
          return;
        }
        events.push(
          this.#reject({
            bytes: Buffer.from([KPOP_BAD_APP_VERSION]),
            reason: message.equals(KRB4_APP_BYTES)
              ? `application version ${KPOP_KRB4_APP_VERSION} is Kerberos 4 KPOP; krb4 is unsupported`
              : `unsupported application version ${show(message)} (expected ${KPOP_APP_VERSION})`,
          }),
        );
        return;
      default:
        this.#state = 'done';
        events.push({ kind: 'ap-req', apReq: message });
    }
  }

  #keep(bytes: Buffer): KpopEvent | undefined {
    if (this.#remainingLength + bytes.length > this.#maxPipelined) {
      this.#remaining = [];
      this.#remainingLength = 0;
      this.#state = 'rejected';
      return {
        kind: 'reject',
        bytes: EMPTY,
        reason: `more than ${this.#maxPipelined} bytes pipelined behind the AP-REQ`,
        stage: 'pipelined',
      };
    }
    // A copy: a slice would pin the whole socket chunk.
    this.#remaining.push(Buffer.from(bytes));
    this.#remainingLength += bytes.length;
    return undefined;
  }

  #reject(r: { bytes: Buffer; reason: string }): KpopEvent {
    const stage: KpopStage = this.#state === 'app-version' ? 'app-version' : this.#state === 'ap-req' ? 'ap-req' : 'sendauth-version';
    this.#state = 'rejected';
    this.#body = undefined;
    return { kind: 'reject', bytes: r.bytes, reason: r.reason, stage };
  }
}

// ---------------------------------------------------------------------------
// Encoders

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function lengthPrefixed(what: string, data: Buffer): Buffer {
  if (data.length === 0) throw new RangeError(`${what} must not be empty (a zero length means success on the wire)`);
  return Buffer.concat([u32(data.length), data]);
}

/**
 * The recvauth success reply: `00 00 00 00`, then `u32be len + AP-REP` when
 * mutual authentication was requested. One buffer, so one write (separate
 * writes stall ~40 ms on Nagle + delayed ACK).
 */
export function kpopOkFrame(apRep?: Buffer): Buffer {
  return apRep === undefined ? u32(0) : Buffer.concat([u32(0), lengthPrefixed('AP-REP', apRep)]);
}

/** The recvauth failure reply: `u32be len + KRB-ERROR` (then close). */
export function kpopErrorFrame(krbError: Buffer): Buffer {
  return lengthPrefixed('KRB-ERROR', krbError);
}

/** Client side (tests): both version strings, as krb5_sendauth writes them. */
export function kpopClientHello(app: string = KPOP_APP_VERSION): Buffer {
  return Buffer.concat([lengthPrefixed('version', SENDAUTH_BYTES), lengthPrefixed('version', Buffer.from(`${app}\0`, 'latin1'))]);
}

/** Client side (tests): the length-prefixed AP-REQ. */
export function kpopApReqFrame(apReq: Buffer): Buffer {
  return lengthPrefixed('AP-REQ', apReq);
}
