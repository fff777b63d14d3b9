/**
 * The HAProxy PROXY protocol's wire constants
 * (haproxy.org/download/2.9/doc/proxy-protocol.txt), shared by the reader
 * (./proxy-header-reader.ts, a load balancer in front of popgate) and the
 * writer (./proxy-header-writer.ts, popgate in front of a backend).
 *
 *   v1  "PROXY TCP4|TCP6|UNKNOWN <src> <dst> <sport> <dport>\r\n"  (at most 107 octets)
 *   v2  signature(12) ver|cmd(1) family|transport(1) length(2, BE) body(length)
 *       body for TCP: src addr, dst addr (4 or 16 bytes each), src port, dst port, then TLVs
 */

/** The 12-byte v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** How every v1 line starts. */
export const PROXY_V1_PREFIX = 'PROXY ';
/** The spec's longest v1 line, CRLF included. */
export const PROXY_V1_MAX_LINE = 107;

/** Signature, ver|cmd, family, length: the fixed part of a v2 header. */
export const PROXY_V2_FIXED = 16;
/** Addresses and TLVs after the fixed part that the reader is willing to buffer. */
export const PROXY_V2_MAX_BODY = 2048;

/** High nibble of byte 12: protocol version 2. */
export const PROXY_V2_VERSION = 0x20;
/** Low nibble of byte 12: LOCAL (a health check, no client) or PROXY (a relayed client). */
export const PROXY_V2_LOCAL = 0x0;
export const PROXY_V2_PROXY = 0x1;
/** Byte 13: address family and transport. */
export const PROXY_V2_UNSPEC = 0x00;
export const PROXY_V2_TCP4 = 0x11;
export const PROXY_V2_TCP6 = 0x21;
