import { describe, expect, it } from 'vitest';
import { ProxyHeaderReader } from '../../src/net/proxy-header-reader.js';

function v2(fam: number, body: Buffer, cmd = 0x21): Buffer {
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, cmd, fam, 0, 0]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}
const tcp4 = Buffer.from([127, 0, 0, 5, 10, 0, 0, 1, 0xc3, 0x50, 0x00, 0x6e]); // 127.0.0.5:50000 -> 10.0.0.1:110

/**
 * Feeds `header + rest` split at every position inside the header: the result
 * must not depend on TCP segmentation.
 */
function everySplit(header: Buffer, rest: Buffer, check: (e: ReturnType<ProxyHeaderReader['feed']>) => void): void {
  const bytes = Buffer.concat([header, rest]);
  for (let i = 1; i < header.length; i++) {
    const r = new ProxyHeaderReader();
    const first = r.feed(bytes.subarray(0, i));
    expect(first.kind).toBe('need-more');
    check(r.feed(bytes.subarray(i)));
  }
}

describe('PROXY header reader', () => {
  it('reads v1 TCP4/TCP6 and keeps the bytes after the header', () => {
    everySplit(Buffer.from('PROXY TCP4 127.0.0.5 10.0.0.1 50000 110\r\n'), Buffer.from('CAPA\r\n'), (e) => {
      expect(e).toEqual({
        kind: 'done',
        version: 1,
        address: { sourceAddress: '127.0.0.5', sourcePort: 50000, destinationAddress: '10.0.0.1', destinationPort: 110 },
        rest: Buffer.from('CAPA\r\n'),
      });
    });
    const six = new ProxyHeaderReader().feed(Buffer.from('PROXY TCP6 2001:db8::5 2001:db8::1 4000 995\r\n'));
    expect(six).toMatchObject({ kind: 'done', address: { sourceAddress: '2001:db8::5', destinationPort: 995 } });
    expect(new ProxyHeaderReader().feed(Buffer.from('PROXY UNKNOWN\r\n'))).toMatchObject({ kind: 'done', address: undefined });
  });

  it('reads v2 PROXY (TCP4, TCP6) and LOCAL, keeping the rest (e.g. a TLS ClientHello)', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01]);
    everySplit(v2(0x11, tcp4), hello, (e) => {
      expect(e).toEqual({
        kind: 'done',
        version: 2,
        address: { sourceAddress: '127.0.0.5', sourcePort: 50000, destinationAddress: '10.0.0.1', destinationPort: 110 },
        rest: hello,
      });
    });
    const src6 = Buffer.alloc(16);
    src6.writeUInt16BE(0x2001, 0);
    src6.writeUInt16BE(0xdb8, 2);
    src6[15] = 5;
    const body6 = Buffer.concat([src6, Buffer.alloc(16), Buffer.from([0x0f, 0xa0, 0x03, 0xe3])]);
    expect(new ProxyHeaderReader().feed(v2(0x21, body6))).toMatchObject({
      kind: 'done',
      address: { sourceAddress: '2001:db8::5', destinationAddress: '::', sourcePort: 4000, destinationPort: 995 },
    });
    // TLVs after the addresses are skipped.
    const withTlv = Buffer.concat([tcp4, Buffer.from([0x04, 0x00, 0x01, 0x00])]);
    expect(new ProxyHeaderReader().feed(v2(0x11, withTlv))).toMatchObject({ kind: 'done', rest: Buffer.alloc(0) });
    expect(new ProxyHeaderReader().feed(v2(0x00, Buffer.alloc(0), 0x20))).toMatchObject({ kind: 'done', address: undefined });
  });

  it('refuses a missing or malformed header without unbounded buffering', () => {
    expect(new ProxyHeaderReader().feed(Buffer.from('USER alice\r\n'))).toEqual({ kind: 'error', reason: 'no PROXY protocol header' });
    expect(new ProxyHeaderReader().feed(Buffer.from([0x16, 0x03, 0x01]))).toMatchObject({ kind: 'error' });
    expect(new ProxyHeaderReader().feed(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n'))).toMatchObject({ kind: 'error' });
    expect(new ProxyHeaderReader().feed(Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n'))).toMatchObject({ kind: 'error' });
    expect(new ProxyHeaderReader().feed(Buffer.from(`PROXY ${'x'.repeat(200)}`))).toEqual({ kind: 'error', reason: 'PROXY v1 line too long' });
    const huge = v2(0x11, tcp4);
    huge.writeUInt16BE(0xffff, 14);
    expect(new ProxyHeaderReader().feed(huge)).toEqual({ kind: 'error', reason: 'PROXY v2 header too long' });
    const badVersion = v2(0x11, tcp4, 0x11);
    expect(new ProxyHeaderReader().feed(badVersion)).toMatchObject({ kind: 'error' });
  });
});
