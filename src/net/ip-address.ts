/**
 * IP address text <-> bytes: IPv4 as 4 bytes, IPv6 as 16. Every popgate
 * module that reads or writes an address goes through here, so a client
 * address is spelled one way in PROXY headers, XCLIENT, logs and keys.
 *
 * The text written is the canonical form: a dotted quad, or IPv6 in lower
 * case with the longest run (two or more) of zero groups as `::`, the first
 * such run on a tie, and no dotted IPv4 tail (RFC 5952 section 4, as the
 * WHATWG URL serialiser writes it).
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The address without an IPv6 zone (`fe80::1%eth0` -> `fe80::1`): a zone names a local interface, not a host. */
export function withoutZone(text: string): string {
  return text.split('%')[0] ?? '';
}

/** Dotted quad to 4 bytes; undefined when it is not one. */
export function parseIpv4(text: string): Buffer | undefined {
  if (!isIPv4(text)) return undefined;
  return Buffer.from(text.split('.').map((p) => Number(p)));
}

/** IPv6 text (`::`, a dotted IPv4 tail and a zone allowed) to 16 bytes; undefined when it is not IPv6. */
export function parseIpv6(text: string): Buffer | undefined {
  const noZone = withoutZone(text);
  if (!isIPv6(noZone)) return undefined;
  let head = noZone;
  const lastColon = head.lastIndexOf(':');
  const tail = head.slice(lastColon + 1);
  if (tail.includes('.')) {
    // A dotted IPv4 tail stands for the last two groups.
    const v4 = parseIpv4(tail);
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

/** IPv4 or IPv6 text (zone dropped) to 4 or 16 bytes; undefined for anything else. */
export function parseIp(text: string): Buffer | undefined {
  return parseIpv4(text) ?? parseIpv6(text);
}

/** Whether 16 bytes are an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4 peer). */
export function isIpv4Mapped(bytes: Buffer): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** An IPv4-mapped IPv6 address as its 4 IPv4 bytes; anything else unchanged. */
export function unmapIpv4(bytes: Buffer): Buffer {
  return isIpv4Mapped(bytes) ? Buffer.from(bytes.subarray(12)) : bytes;
}

/** 4 IPv4 bytes as `::ffff:a.b.c.d` (16 bytes); 16 bytes unchanged. */
export function mapIpv4(bytes: Buffer): Buffer {
  if (bytes.length === 16) return bytes;
  const out = Buffer.alloc(16);
  out[10] = 0xff;
  out[11] = 0xff;
  bytes.copy(out, 12);
  return out;
}

/** 4 bytes as a dotted quad, 16 bytes as canonical IPv6 text (see the module comment). */
export function formatIp(bytes: Buffer): string {
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

/** The first `prefix` bits of `bytes`, the rest zero (the network of an address). */
export function networkOf(bytes: Buffer, prefix: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.min(8, Math.max(0, prefix - 8 * i));
    out[i] = (out[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}
