import { BlockList, isIP } from 'node:net';

/**
 * The receiving side of the HAProxy PROXY protocol (v1 text, v2 binary), sans
 * I/O: a load balancer in front of popgate tells it the real client address.
 * Only peers in the listener's trusted networks may send one.
 */

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

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The spec's maximum v1 line, CRLF included. */
const V1_MAX = 107;
/** v2 header + addresses + TLVs we are willing to buffer. */
const V2_MAX = 16 + 2048;

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
    const v2Prefix = b.subarray(0, Math.min(b.length, V2_SIGNATURE.length));
    if (V2_SIGNATURE.subarray(0, v2Prefix.length).equals(v2Prefix)) {
      return b.length < V2_SIGNATURE.length ? { kind: 'need-more' } : this.parseV2(b);
    }
    const v1Prefix = b.subarray(0, Math.min(b.length, V1_PREFIX.length));
    if (V1_PREFIX.subarray(0, v1Prefix.length).equals(v1Prefix)) {
      return b.length < V1_PREFIX.length ? { kind: 'need-more' } : this.parseV1(b);
    }
    return { kind: 'error', reason: 'no PROXY protocol header' };
  }

  private parseV1(b: Buffer): ProxyHeaderEvent {
    const end = b.indexOf('\r\n');
    if (end < 0) return b.length >= V1_MAX ? { kind: 'error', reason: 'PROXY v1 line too long' } : { kind: 'need-more' };
    if (end + 2 > V1_MAX) return { kind: 'error', reason: 'PROXY v1 line too long' };
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
    if (b.length < 16) return { kind: 'need-more' };
    const verCmd = b[12]!;
    const fam = b[13]!;
    const len = b.readUInt16BE(14);
    if (verCmd >> 4 !== 2) return { kind: 'error', reason: 'unsupported PROXY v2 version' };
    if (16 + len > V2_MAX) return { kind: 'error', reason: 'PROXY v2 header too long' };
    if (b.length < 16 + len) return { kind: 'need-more' };
    const body = b.subarray(16, 16 + len);
    const rest = b.subarray(16 + len);
    const command = verCmd & 0x0f;
    if (command === 0x0) return { kind: 'done', version: 2, address: undefined, rest }; // LOCAL
    if (command !== 0x1) return { kind: 'error', reason: 'unsupported PROXY v2 command' };
    // TCP over IPv4 (4-byte addresses) or IPv6 (16-byte): src, dst, sport, dport.
    const size = fam === 0x11 ? 4 : fam === 0x21 ? 16 : 0;
    if (size > 0 && body.length >= 2 * size + 4) {
      const ip = size === 4 ? ipv4 : ipv6;
      return {
        kind: 'done',
        version: 2,
        address: {
          sourceAddress: ip(body.subarray(0, size)),
          destinationAddress: ip(body.subarray(size, 2 * size)),
          sourcePort: body.readUInt16BE(2 * size),
          destinationPort: body.readUInt16BE(2 * size + 2),
        },
        rest,
      };
    }
    if (fam === 0x00) return { kind: 'done', version: 2, address: undefined, rest }; // UNSPEC
    return { kind: 'error', reason: `unsupported PROXY v2 address family 0x${fam.toString(16)}` };
  }
}

function port(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // Canonical compressed form via URL parsing of a bracketed literal.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Networks allowed to send PROXY headers (CIDRs or single addresses, IPv4 and IPv6). */
export class TrustedNetworks {
  private readonly list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [addr = '', bits] = cidr.split('/');
      const family = isIP(addr);
      if (family === 0) throw new Error(`not an IP network: ${cidr}`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
  }

  /** IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, dual-stack listeners) match IPv4 networks. */
  has(peer: string | undefined): boolean {
    if (!peer) return false;
    const address = peer.split('%')[0] ?? ''; // zones (fe80::1%eth0) do not matter here
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.list.check(mapped[1]!, 'ipv4');
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
