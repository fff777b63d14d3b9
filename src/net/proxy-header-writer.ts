/**
 * The sending side of the PROXY protocol: the header popgate writes to a
 * backend before anything else so the backend (e.g. Dovecot with
 * `haproxy = yes` on the listener and popgate's address in
 * `haproxy_trusted_networks`) sees the real client address.
 *
 * Only TCP over IPv4/IPv6 is produced. An IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4 clients) is
 * sent as IPv4; when one side is IPv4 and the other real IPv6, the IPv4 one is
 * sent as IPv4-mapped IPv6 (the two addresses of a header share one family).
 * Without a client the header says "unknown": v1 `PROXY UNKNOWN\r\n`, v2 the
 * LOCAL command (the receiver then uses the connection's own addresses).
 */
import { GatewayError } from '../errors.js';
import { formatIp, mapIpv4, parseIp, unmapIpv4 } from './ip-address.js';
import {
  PROXY_V1_PREFIX,
  PROXY_V2_FIXED,
  PROXY_V2_LOCAL,
  PROXY_V2_PROXY,
  PROXY_V2_SIGNATURE,
  PROXY_V2_TCP4,
  PROXY_V2_TCP6,
  PROXY_V2_UNSPEC,
  PROXY_V2_VERSION,
} from './proxy-protocol.js';

/** The client connection a header describes (backend/types.ts calls it ForwardedClient). */
export interface ProxyClient {
  readonly address: string;
  readonly port: number;
  /** The address/port the client connected to (the header's destination). */
  readonly localAddress: string;
  readonly localPort: number;
}

function bad(what: string): GatewayError {
  return new GatewayError('INTERNAL', `cannot encode PROXY header: ${what}`);
}

/** 4 bytes for an IPv4 (or IPv4-mapped IPv6) address, else 16. */
function ipBytes(text: string, what: string): Buffer {
  const bytes = parseIp(text);
  if (!bytes) throw bad(`${what} ${JSON.stringify(text)} is not an IP address`);
  return unmapIpv4(bytes);
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad(`${what} ${String(port)} is not a TCP port`);
  return port;
}

/** Both addresses in one family (4 or 16 bytes each), ports checked. */
function normalise(client: ProxyClient): { src: Buffer; dst: Buffer; sport: number; dport: number } {
  let src = ipBytes(client.address, 'client address');
  let dst = ipBytes(client.localAddress, 'local address');
  if (src.length !== dst.length) {
    src = mapIpv4(src);
    dst = mapIpv4(dst);
  }
  return {
    src,
    dst,
    sport: checkPort(client.port, 'client port'),
    dport: checkPort(client.localPort, 'local port'),
  };
}

/**
 * PROXY protocol v1 (text): `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`,
 * or `PROXY UNKNOWN\r\n` without a client. Throws GatewayError('INTERNAL')
 * for an address or port that cannot be encoded (never emits a bad header).
 */
export function encodeProxyV1(client?: ProxyClient): Buffer {
  if (!client) return Buffer.from(`${PROXY_V1_PREFIX}UNKNOWN\r\n`, 'latin1');
  const { src, dst, sport, dport } = normalise(client);
  const proto = src.length === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`${PROXY_V1_PREFIX}${proto} ${formatIp(src)} ${formatIp(dst)} ${sport} ${dport}\r\n`, 'latin1');
}

/**
 * PROXY protocol v2 (binary): signature, version 2 + command (0x21 PROXY,
 * 0x20 LOCAL), family/transport (0x11 TCP/IPv4, 0x21 TCP/IPv6, 0x00 for
 * LOCAL), 16-bit big-endian length of what follows (12 / 36 / 0), then
 * source address, destination address, source port, destination port. No TLVs.
 */
export function encodeProxyV2(client?: ProxyClient): Buffer {
  if (!client) {
    const local = Buffer.alloc(PROXY_V2_FIXED);
    PROXY_V2_SIGNATURE.copy(local, 0);
    local[12] = PROXY_V2_VERSION | PROXY_V2_LOCAL;
    local[13] = PROXY_V2_UNSPEC;
    local.writeUInt16BE(0, 14);
    return local;
  }
  const { src, dst, sport, dport } = normalise(client);
  const v4 = src.length === 4;
  const len = v4 ? 12 : 36;
  const out = Buffer.alloc(PROXY_V2_FIXED + len);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = PROXY_V2_VERSION | PROXY_V2_PROXY;
  out[13] = v4 ? PROXY_V2_TCP4 : PROXY_V2_TCP6;
  out.writeUInt16BE(len, 14);
  src.copy(out, 16);
  dst.copy(out, 16 + src.length);
  out.writeUInt16BE(sport, 16 + 2 * src.length);
  out.writeUInt16BE(dport, 18 + 2 * src.length);
  return out;
}

/** The header for a target's `proxyProtocol` setting (empty for 'none'). */
export function encodeProxyHeader(version: 'none' | 'v1' | 'v2', client?: ProxyClient): Buffer {
  if (version === 'v1') return encodeProxyV1(client);
  if (version === 'v2') return encodeProxyV2(client);
  return Buffer.alloc(0);
}

/**
 * The address to put in `XCLIENT ADDR=`: the same spelling as in a PROXY
 * header (IPv4-mapped IPv6 as plain IPv4, IPv6 compressed, no zone). Throws
 * GatewayError('INTERNAL') when `address` is not an IP address.
 */
export function forwardedAddressText(address: string): string {
  return formatIp(ipBytes(address, 'client address'));
}
