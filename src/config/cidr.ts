/**
 * IP networks in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or a single
 * address meaning /32 or /128), as written in `listeners[].proxyProtocol.
 * trustedNetworks`, and a matcher the runtime uses to decide whether a peer
 * may send a PROXY header.
 */
import { isIP } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** The network address as written (IPv6 lowercased). */
  readonly address: string;
  readonly prefix: number;
  /** `address/prefix`: the normalised form kept in the parsed configuration. */
  readonly text: string;
}

export type CidrParse =
  | { readonly ok: true; readonly cidr: Cidr }
  | { readonly ok: false; readonly message: string; readonly hint?: string };

const BITS = { 4: 32, 6: 128 } as const;

/** IPv4 dotted quad to a number (the caller has checked it with isIP). */
function ipv4Value(address: string): bigint {
  return address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/** IPv6 text (as accepted by isIP, no zone) to a 128-bit number. */
export function ipv6Value(address: string): bigint {
  let text = address;
  let tail: bigint[] = [];
  // An embedded IPv4 tail (::ffff:10.1.2.3) is two 16-bit groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1]) {
    const v4 = ipv4Value(dotted[1]);
    tail = [v4 >> 16n, v4 & 0xffffn];
    text = text.slice(0, -dotted[1].length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head = '', rest] = text.split('::');
  const groups = (s: string | undefined): bigint[] => (s ? s.split(':').filter((g) => g !== '').map((g) => BigInt(`0x${g}`)) : []);
  const left = groups(head);
  const right = [...groups(rest), ...tail];
  const fill = rest === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => 0n);
  return [...left, ...fill, ...right].reduce((acc, g) => (acc << 16n) | g, 0n);
}

function valueOf(address: string, family: 4 | 6): bigint {
  return family === 4 ? ipv4Value(address) : ipv6Value(address);
}

function formatIpv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => (value >> BigInt(112 - 16 * i)) & 0xffffn);
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0n) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0n) j += 1;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Parses `address` or `address/prefix` (IPv4 or IPv6, no brackets or zone). */
export function parseCidr(input: string): CidrParse {
  const text = input.trim();
  const example = 'e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8';
  const slash = text.indexOf('/');
  const rawAddress = slash < 0 ? text : text.slice(0, slash);
  const rawPrefix = slash < 0 ? undefined : text.slice(slash + 1);
  if (rawAddress.includes('%')) {
    return { ok: false, message: 'must not contain an IPv6 zone (%...)', hint: example };
  }
  const kind = isIP(rawAddress);
  if (kind !== 4 && kind !== 6) {
    return {
      ok: false,
      message: 'must be an IP address or network in CIDR notation (address/prefix)',
      hint: `${example}; no brackets around IPv6 addresses, no host names`,
    };
  }
  const family: 4 | 6 = kind;
  const bits = BITS[family];
  const address = family === 6 ? rawAddress.toLowerCase() : rawAddress;
  let prefix: number = bits;
  if (rawPrefix !== undefined) {
    if (!/^\d{1,3}$/.test(rawPrefix) || Number(rawPrefix) > bits) {
      return { ok: false, message: `prefix length must be a number from 0 to ${bits} for an IPv${family} network` };
    }
    prefix = Number(rawPrefix);
  }
  const value = valueOf(address, family);
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    const network = value & ~hostMask;
    const suggestion = `${family === 4 ? formatIpv4(network) : formatIpv6(network)}/${prefix}`;
    return {
      ok: false,
      message: `${address}/${prefix} has host bits set (the address is not the start of the network)`,
      hint: `did you mean ${suggestion}? For a single address write it without a prefix`,
    };
  }
  return { ok: true, cidr: { family, address, prefix, text: `${address}/${prefix}` } };
}
