/**
 * The receiving side of the PROXY protocol (v1 text, v2 binary), sans I/O: a
 * load balancer in front of popgate tells it the real client address. Feed
 * it what the socket reads until it says done or error. It never holds more
 * than one v1 line (107 octets) or one v2 header (16 + 2048) while waiting.
 * Whether a peer may send a header at all is ./trusted-networks.ts's job.
 */
import { isIP } from 'node:net';
import { formatIp } from './ip-address.js';
import {
  PROXY_V1_MAX_LINE,
  PROXY_V1_PREFIX,
  PROXY_V2_FIXED,
  PROXY_V2_LOCAL,
  PROXY_V2_MAX_BODY,
  PROXY_V2_PROXY,
  PROXY_V2_SIGNATURE,
  PROXY_V2_TCP4,
  PROXY_V2_TCP6,
  PROXY_V2_UNSPEC,
} from './proxy-protocol.js';

export interface ProxiedAddress {
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

export type ProxyHeaderEvent =
  | { readonly kind: 'need-more' }
  /** `address` is undefined for v1 UNKNOWN / v2 LOCAL (a health check): use the peer's own address. */
  | { readonly kind: 'done'; readonly version: 1 | 2; readonly address: ProxiedAddress | undefined; readonly rest: Buffer }
  | { readonly kind: 'error'; readonly reason: string };

const V1_PREFIX = Buffer.from(PROXY_V1_PREFIX, 'latin1');
const V2_MAX = PROXY_V2_FIXED + PROXY_V2_MAX_BODY;

/** Incremental reader: feed chunks until it says done or error. */
export class ProxyHeaderReader {
  private buf: Buffer = Buffer.alloc(0);
  private finished = false;

  feed(chunk: Buffer): ProxyHeaderEvent {
    if (this.finished) return { kind: 'error', reason: 'header already read' };
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const event = this.parse();
    if (event.kind !== 'need-more') {
      this.finished = true;
      this.buf = Buffer.alloc(0);
    }
    return event;
  }

  private parse(): ProxyHeaderEvent {
    const b = this.buf;
    // Decide the version from as many signature bytes as have arrived.
    const v2Prefix = b.subarray(0, Math.min(b.length, PROXY_V2_SIGNATURE.length));
    if (PROXY_V2_SIGNATURE.subarray(0, v2Prefix.length).equals(v2Prefix)) {
      return b.length < PROXY_V2_SIGNATURE.length ? { kind: 'need-more' } : this.parseV2(b);
    }
    const v1Prefix = b.subarray(0, Math.min(b.length, V1_PREFIX.length));
    if (V1_PREFIX.subarray(0, v1Prefix.length).equals(v1Prefix)) {
      return b.length < V1_PREFIX.length ? { kind: 'need-more' } : this.parseV1(b);
    }
    return { kind: 'error', reason: 'no PROXY protocol header' };
  }

  private parseV1(b: Buffer): ProxyHeaderEvent {
    const end = b.indexOf('\r\n');
    if (end < 0) return b.length >= PROXY_V1_MAX_LINE ? { kind: 'error', reason: 'PROXY v1 line too long' } : { kind: 'need-more' };
    if (end + 2 > PROXY_V1_MAX_LINE) return { kind: 'error', reason: 'PROXY v1 line too long' };
    const line = b.toString('latin1', 0, end);
    const rest = b.subarray(end + 2);
    const parts = line.split(' ');
    if (parts[1] === 'UNKNOWN') return { kind: 'done', version: 1, address: undefined, rest };
    if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { kind: 'error', reason: 'malformed PROXY v1 line' };
    const [, family, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
    const want = family === 'TCP4' ? 4 : 6;
    const sp = port(sport);
    const dp = port(dport);
    if (isIP(src) !== want || isIP(dst) !== want || sp === undefined || dp === undefined) {
      return { kind: 'error', reason: 'malformed PROXY v1 addresses' };
    }
    return { kind: 'done', version: 1, address: { sourceAddress: src, sourcePort: sp, destinationAddress: dst, destinationPort: dp }, rest };
  }

  private parseV2(b: Buffer): ProxyHeaderEvent {
    if (b.length < PROXY_V2_FIXED) return { kind: 'need-more' };
    const verCmd = b[12]!;
    const fam = b[13]!;
    const len = b.readUInt16BE(14);
    if (verCmd >> 4 !== 2) return { kind: 'error', reason: 'unsupported PROXY v2 version' };
    if (PROXY_V2_FIXED + len > V2_MAX) return { kind: 'error', reason: 'PROXY v2 header too long' };
    if (b.length < PROXY_V2_FIXED + len) return { kind: 'need-more' };
    const body = b.subarray(PROXY_V2_FIXED, PROXY_V2_FIXED + len);
    const rest = b.subarray(PROXY_V2_FIXED + len);
    const command = verCmd & 0x0f;
    if (command === PROXY_V2_LOCAL) return { kind: 'done', version: 2, address: undefined, rest };
    if (command !== PROXY_V2_PROXY) return { kind: 'error', reason: 'unsupported PROXY v2 command' };
    // TCP over IPv4 (4-byte addresses) or IPv6 (16-byte): src, dst, sport, dport.
    const size = fam === PROXY_V2_TCP4 ? 4 : fam === PROXY_V2_TCP6 ? 16 : 0;
    if (size > 0 && body.length >= 2 * size + 4) {
      return {
        kind: 'done',
        version: 2,
        address: {
          sourceAddress: formatIp(body.subarray(0, size)),
          destinationAddress: formatIp(body.subarray(size, 2 * size)),
          sourcePort: body.readUInt16BE(2 * size),
          destinationPort: body.readUInt16BE(2 * size + 2),
        },
        rest,
      };
    }
    if (fam === PROXY_V2_UNSPEC) return { kind: 'done', version: 2, address: undefined, rest };
    return { kind: 'error', reason: `unsupported PROXY v2 address family 0x${fam.toString(16)}` };
  }
}

function port(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}
