import { describe, expect, it } from 'vitest';
import { encodeProxyHeader, encodeProxyV1, encodeProxyV2, forwardedAddressText } from '../../src/net/proxy-header-writer.js';
import { PROXY_V2_SIGNATURE } from '../../src/net/proxy-protocol.js';
import type { ProxyClient as ForwardedClient } from '../../src/net/proxy-header-writer.js';
import { GatewayError } from '../../src/errors.js';

const v4: ForwardedClient = { address: '192.0.2.1', port: 56324, localAddress: '198.51.100.7', localPort: 995 };
const v6: ForwardedClient = { address: '2001:db8::1', port: 1024, localAddress: '2001:db8:0:0:1:0:0:2', localPort: 110 };
const hex = (b: Buffer): string => b.toString('hex');

describe('PROXY v1', () => {
  it('TCP4', () => {
    expect(encodeProxyV1(v4).toString('latin1')).toBe('PROXY TCP4 192.0.2.1 198.51.100.7 56324 995\r\n');
  });

  it('TCP6, addresses in compressed lower-case form', () => {
    expect(encodeProxyV1(v6).toString('latin1')).toBe('PROXY TCP6 2001:db8::1 2001:db8::1:0:0:2 1024 110\r\n');
    expect(
      encodeProxyV1({ address: '2001:DB8:0:0:0:0:0:A', port: 1, localAddress: '::1', localPort: 2 }).toString(),
    ).toBe('PROXY TCP6 2001:db8::a ::1 1 2\r\n');
  });

  it('IPv4-mapped IPv6 on both sides (dual-stack socket) becomes TCP4', () => {
    const mapped = { address: '::ffff:127.0.0.5', port: 40000, localAddress: '::FFFF:127.0.0.1', localPort: 110 };
    expect(encodeProxyV1(mapped).toString()).toBe('PROXY TCP4 127.0.0.5 127.0.0.1 40000 110\r\n');
    // The same mapping written in hex groups.
    expect(encodeProxyV1({ ...mapped, address: '::ffff:7f00:5' }).toString()).toBe(
      'PROXY TCP4 127.0.0.5 127.0.0.1 40000 110\r\n',
    );
  });

  it('mixed families: the IPv4 side is sent IPv4-mapped in a TCP6 header', () => {
    expect(encodeProxyV1({ address: '192.0.2.1', port: 5, localAddress: '2001:db8::2', localPort: 6 }).toString()).toBe(
      'PROXY TCP6 ::ffff:c000:201 2001:db8::2 5 6\r\n',
    );
  });

  it('no client: PROXY UNKNOWN', () => {
    expect(encodeProxyV1().toString('latin1')).toBe('PROXY UNKNOWN\r\n');
  });

  it('the longest possible v1 header is within the 107-byte limit', () => {
    const longest = encodeProxyV1({
      address: '1111:2222:3333:4444:5555:6666:7777:8888',
      port: 65535,
      localAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe',
      localPort: 65535,
    });
    expect(longest.length).toBeLessThanOrEqual(107);
    expect(longest.toString()).toBe(
      'PROXY TCP6 1111:2222:3333:4444:5555:6666:7777:8888 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n',
    );
  });
});

describe('PROXY v2', () => {
  it('the 12-byte signature', () => {
    expect(hex(PROXY_V2_SIGNATURE)).toBe('0d0a0d0a000d0a515549540a');
    expect(PROXY_V2_SIGNATURE.toString('latin1')).toBe('\r\n\r\n\0\r\nQUIT\n');
  });

  it('TCP over IPv4: ver/cmd 0x21, fam 0x11, length 12, addresses, ports big-endian', () => {
    const b = encodeProxyV2(v4);
    expect(b.length).toBe(16 + 12);
    expect(hex(b)).toBe(
      '0d0a0d0a000d0a515549540a' + // signature
        '21' + // version 2, PROXY
        '11' + // AF_INET, STREAM
        '000c' + // 12 bytes follow
        'c0000201' + // 192.0.2.1
        'c6336407' + // 198.51.100.7
        'dc04' + // 56324
        '03e3', // 995
    );
  });

  it('TCP over IPv6: fam 0x21, length 36', () => {
    const b = encodeProxyV2(v6);
    expect(b.length).toBe(16 + 36);
    expect(hex(b)).toBe(
      '0d0a0d0a000d0a515549540a' +
        '21' +
        '21' + // AF_INET6, STREAM
        '0024' + // 36
        '20010db8000000000000000000000001' +
        '20010db8000000000001000000000002' +
        '0400' + // 1024
        '006e', // 110
    );
  });

  it('IPv4-mapped IPv6 is sent as TCP over IPv4', () => {
    const b = encodeProxyV2({ address: '::ffff:127.0.0.5', port: 40000, localAddress: '::ffff:127.0.0.1', localPort: 110 });
    expect(hex(b)).toBe('0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + '7f000005' + '7f000001' + '9c40' + '006e');
  });

  it('an IPv6 zone id is dropped, an embedded dotted tail is parsed', () => {
    const b = encodeProxyV2({ address: 'fe80::1%eth0', port: 1, localAddress: '64:ff9b::192.0.2.33', localPort: 2 });
    expect(hex(b.subarray(16))).toBe(
      'fe800000000000000000000000000001' + '0064ff9b0000000000000000c0000221' + '0001' + '0002',
    );
  });

  it('no client: LOCAL command, AF_UNSPEC, no address block', () => {
    const b = encodeProxyV2();
    expect(hex(b)).toBe('0d0a0d0a000d0a515549540a' + '20' + '00' + '0000');
  });

  it('encodeProxyHeader picks the version; none is empty', () => {
    expect(encodeProxyHeader('none', v4).length).toBe(0);
    expect(encodeProxyHeader('v1', v4).equals(encodeProxyV1(v4))).toBe(true);
    expect(encodeProxyHeader('v2', v4).equals(encodeProxyV2(v4))).toBe(true);
    expect(encodeProxyHeader('v2').equals(encodeProxyV2())).toBe(true);
  });
});

describe('bad input is refused, never encoded', () => {
  it.each<[string, ForwardedClient]>([
    ['a host name', { ...v4, address: 'client.example.org' }],
    ['CRLF in an address', { ...v4, address: '192.0.2.1\r\nUSER x' }],
    ['an empty local address', { ...v4, localAddress: '' }],
    ['a port above 65535', { ...v4, port: 65536 }],
    ['a negative port', { ...v4, localPort: -1 }],
    ['a fractional port', { ...v4, port: 1.5 }],
  ])('%s', (_name, client) => {
    for (const enc of [encodeProxyV1, encodeProxyV2]) {
      let caught: unknown;
      try {
        enc(client);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(GatewayError);
      expect((caught as GatewayError).code).toBe('INTERNAL');
    }
  });
});

describe('forwardedAddressText (XCLIENT ADDR=)', () => {
  it.each([
    ['127.0.0.5', '127.0.0.5'],
    ['::ffff:127.0.0.5', '127.0.0.5'],
    ['2001:DB8::0:1', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::', '::'],
  ])('%s → %s', (input, out) => {
    expect(forwardedAddressText(input)).toBe(out);
  });
});
