/**
 * HAProxy PROXY protocol headers (haproxy.org/download/2.9/doc/proxy-protocol.txt),
 * written by popgate to a backend before anything else so the backend (e.g.
 * Dovecot with `haproxy = yes` on the listener and popgate's address in
 * `haproxy_trusted_networks`) sees the real client address.
 *
 * Only TCP over IPv4/IPv6 is produced. An IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4 clients) is
 * sent as IPv4; when one side is IPv4 and the other real IPv6, the IPv4 one is
 * sent as IPv4-mapped IPv6 (the two addresses of a header share one family).
 * Without a client the header says "unknown": v1 `PROXY UNKNOWN\r\n`, v2 the
 * LOCAL command (the receiver then uses the connection's own addresses).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { GatewayError } from '../errors.js';
import type { ForwardedClient } from './types.js';

/** The 12-byte v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);

/** A parsed address: 4 bytes (IPv4) or 16 bytes (IPv6). */
interface Ip {
  readonly bytes: Buffer;
}

function bad(what: string): GatewayError {
  return new GatewayError('INTERNAL', `cannot encode PROXY header: ${what}`);
}

function parseIPv4(text: string): Buffer | undefined {
  if (!isIPv4(text)) return undefined;
  return Buffer.from(text.split('.').map((p) => Number(p)));
}

/** RFC 4291 text form (with `::` and an optional dotted IPv4 tail) to 16 bytes. */
function parseIPv6(text: string): Buffer | undefined {
  const noZone = text.split('%')[0] ?? '';
  if (!isIPv6(noZone)) return undefined;
  let head = noZone;
  const lastColon = head.lastIndexOf(':');
  const tail = head.slice(lastColon + 1);
  if (tail.includes('.')) {
    // A dotted IPv4 tail stands for the last two groups.
    const v4 = parseIPv4(tail);
    if (!v4) return undefined;
    head = `${head.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(':'));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const fill = 8 - left.length - right.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const all = [...left, ...Array<string>(halves.length === 2 ? fill : 0).fill('0'), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function parseIp(text: string, what: string): Ip {
  const v4 = parseIPv4(text);
  if (v4) return { bytes: v4 };
  const v6 = parseIPv6(text);
  if (!v6) throw bad(`${what} ${JSON.stringify(text)} is not an IP address`);
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) {
    return { bytes: Buffer.from(v6.subarray(12)) };
  }
  return { bytes: v6 };
}

function toMapped(ip: Ip): Ip {
  if (ip.bytes.length === 16) return ip;
  const out = Buffer.alloc(16);
  out[10] = 0xff;
  out[11] = 0xff;
  ip.bytes.copy(out, 12);
  return { bytes: out };
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad(`${what} ${String(port)} is not a TCP port`);
  return port;
}

/** Both addresses in one family (4 or 16 bytes each), ports checked. */
function normalise(client: ForwardedClient): { src: Buffer; dst: Buffer; sport: number; dport: number } {
  let src = parseIp(client.address, 'client address');
  let dst = parseIp(client.localAddress, 'local address');
  if (src.bytes.length !== dst.bytes.length) {
    src = toMapped(src);
    dst = toMapped(dst);
  }
  return {
    src: src.bytes,
    dst: dst.bytes,
    sport: checkPort(client.port, 'client port'),
    dport: checkPort(client.localPort, 'local port'),
  };
}

/** Text form: dotted quad, or RFC 5952 style IPv6 (lower case, longest zero run as `::`). */
function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * PROXY protocol v1 (text): `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`,
 * or `PROXY UNKNOWN\r\n` without a client. Throws GatewayError('INTERNAL')
 * for an address or port that cannot be encoded (never emits a bad header).
 */
export function encodeProxyV1(client?: ForwardedClient): Buffer {
  if (!client) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const { src, dst, sport, dport } = normalise(client);
  const proto = src.length === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${ipText(src)} ${ipText(dst)} ${sport} ${dport}\r\n`, 'latin1');
}

/**
 * PROXY protocol v2 (binary): signature, version 2 + command (0x21 PROXY,
 * 0x20 LOCAL), family/transport (0x11 TCP/IPv4, 0x21 TCP/IPv6, 0x00 for
 * LOCAL), 16-bit big-endian length of what follows (12 / 36 / 0), then
 * source address, destination address, source port, destination port. No TLVs.
 */
export function encodeProxyV2(client?: ForwardedClient): Buffer {
  if (!client) {
    const local = Buffer.alloc(16);
    PROXY_V2_SIGNATURE.copy(local, 0);
    local[12] = 0x20; // v2, LOCAL
    local[13] = 0x00; // AF_UNSPEC, UNSPEC
    local.writeUInt16BE(0, 14);
    return local;
  }
  const { src, dst, sport, dport } = normalise(client);
  const v4 = src.length === 4;
  const len = v4 ? 12 : 36;
  const out = Buffer.alloc(16 + len);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // v2, PROXY
  out[13] = v4 ? 0x11 : 0x21; // AF_INET|AF_INET6, STREAM
  out.writeUInt16BE(len, 14);
  src.copy(out, 16);
  dst.copy(out, 16 + src.length);
  out.writeUInt16BE(sport, 16 + 2 * src.length);
  out.writeUInt16BE(dport, 18 + 2 * src.length);
  return out;
}

/** The header for a target's `proxyProtocol` setting (empty for 'none'). */
export function encodeProxyHeader(version: 'none' | 'v1' | 'v2', client?: ForwardedClient): Buffer {
  if (version === 'v1') return encodeProxyV1(client);
  if (version === 'v2') return encodeProxyV2(client);
  return Buffer.alloc(0);
}

/**
 * The address to put in `XCLIENT ADDR=`: IPv4-mapped IPv6 as plain IPv4,
 * IPv6 in compressed form (no zone). Throws GatewayError('INTERNAL') when
 * `address` is not an IP address.
 */
export function forwardedAddressText(address: string): string {
  return ipText(parseIp(address, 'client address').bytes);
}
