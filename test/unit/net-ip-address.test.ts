import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { hostPort } from '../../src/net/host-port.js';
import { formatIp, isIpv4Mapped, mapIpv4, networkOf, parseIp, parseIpv6, unmapIpv4 } from '../../src/net/ip-address.js';

const canonical = (text: string): string => new URL(`http://[${text}]/`).hostname.slice(1, -1);

describe('IP address text', () => {
  it('parses IPv4 to 4 bytes and IPv6 (with ::, a dotted tail or a zone) to 16', () => {
    expect(parseIp('192.0.2.7')).toEqual(Buffer.from([192, 0, 2, 7]));
    expect(parseIp('::1')?.toString('hex')).toBe('00000000000000000000000000000001');
    expect(parseIp('::ffff:192.0.2.7')?.toString('hex')).toBe('00000000000000000000ffffc0000207');
    expect(parseIp('FE80::1%eth0')?.toString('hex')).toBe('fe800000000000000000000000000001');
    for (const bad of ['', 'localhost', '1.2.3', '256.0.0.1', '1::2::3', '[::1]', '1.2.3.4%eth0']) expect(parseIp(bad), bad).toBeUndefined();
  });

  it('writes the canonical form (what the WHATWG URL serialiser writes)', () => {
    for (const text of ['::', '::1', '1::', '2001:db8::1', '2001:db8:0:1:1:1:1:1', '2001:0:0:1::1', '1:0:0:2:0:0:0:3', '::ffff:192.0.2.7', 'FE80:0:0:0:0:0:0:1']) {
      const bytes = parseIpv6(text)!;
      expect(formatIp(bytes), text).toBe(canonical(text));
      expect(parseIpv6(formatIp(bytes)), text).toEqual(bytes);
    }
    expect(formatIp(Buffer.from([10, 0, 0, 1]))).toBe('10.0.0.1');
    expect(isIP(formatIp(Buffer.alloc(16)))).toBe(6);
  });

  it('maps and unmaps IPv4 in IPv6', () => {
    const v4 = Buffer.from([192, 0, 2, 7]);
    expect(isIpv4Mapped(mapIpv4(v4))).toBe(true);
    expect(unmapIpv4(mapIpv4(v4))).toEqual(v4);
    expect(isIpv4Mapped(parseIp('::192.0.2.7')!)).toBe(false);
    expect(unmapIpv4(parseIp('2001:db8::1')!)).toHaveLength(16);
  });

  it('keeps the first prefix bits of an address', () => {
    expect(formatIp(networkOf(parseIp('172.16.5.4')!, 12))).toBe('172.16.0.0');
    expect(formatIp(networkOf(parseIp('2001:db8:1:2:3::1')!, 64))).toBe('2001:db8:1:2::');
    expect(formatIp(networkOf(parseIp('10.1.2.3')!, 0))).toBe('0.0.0.0');
    expect(formatIp(networkOf(parseIp('10.1.2.3')!, 32))).toBe('10.1.2.3');
  });
});

describe('hostPort', () => {
  it('brackets IPv6 hosts only', () => {
    expect(hostPort('mail.example.org', 110)).toBe('mail.example.org:110');
    expect(hostPort('192.0.2.7', 995)).toBe('192.0.2.7:995');
    expect(hostPort('2001:db8::1', 110)).toBe('[2001:db8::1]:110');
    expect(hostPort('fe80::1%eth0', 110)).toBe('[fe80::1%eth0]:110');
  });
});
