/**
 * IP networks in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or a single
 * address meaning /32 or /128), as written in the configuration's
 * `trustedNetworks` lists: the strict parser the config schema validates
 * them with (it names the mistake and suggests the fix).
 */
import { isIP } from 'node:net';
import { formatIp, networkOf, parseIp } from './ip-address.js';

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
  const bytes = parseIp(rawAddress);
  if ((kind !== 4 && kind !== 6) || bytes === undefined) {
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
  const network = networkOf(bytes, prefix);
  if (!network.equals(bytes)) {
    return {
      ok: false,
      message: `${address}/${prefix} has host bits set (the address is not the start of the network)`,
      hint: `did you mean ${formatIp(network)}/${prefix}? For a single address write it without a prefix`,
    };
  }
  return { ok: true, cidr: { family, address, prefix, text: `${address}/${prefix}` } };
}
