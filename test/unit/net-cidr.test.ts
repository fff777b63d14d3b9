import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/net/cidr.js';

describe('parseCidr', () => {
  it('parses networks and single addresses', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ ok: true, cidr: { family: 4, address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' } });
    expect(parseCidr(' 192.0.2.7 ')).toEqual({ ok: true, cidr: { family: 4, address: '192.0.2.7', prefix: 32, text: '192.0.2.7/32' } });
    expect(parseCidr('2001:DB8::/32')).toEqual({ ok: true, cidr: { family: 6, address: '2001:db8::', prefix: 32, text: '2001:db8::/32' } });
    expect(parseCidr('::ffff:10.0.0.0/104')).toMatchObject({ ok: true, cidr: { family: 6, prefix: 104 } });
    expect(parseCidr('0.0.0.0/0')).toMatchObject({ ok: true });
  });

  it('suggests the network address when host bits are set', () => {
    expect(parseCidr('2001:db8::1/32')).toEqual({
      ok: false,
      message: '2001:db8::1/32 has host bits set (the address is not the start of the network)',
      hint: 'did you mean 2001:db8::/32? For a single address write it without a prefix',
    });
    expect(parseCidr('172.16.5.4/12')).toMatchObject({ ok: false, hint: expect.stringMatching(/^did you mean 172\.16\.0\.0\/12\?/) });
    expect(parseCidr('::ffff:10.1.2.3/120')).toMatchObject({ ok: false, hint: expect.stringMatching(/^did you mean ::ffff:a01:200\/120\?/) });
  });

  it('refuses what is not an address', () => {
    for (const bad of ['', 'localhost', '10.0.0', '10.0.0.0/-1', '10.0.0.0/08x', '1.2.3.4/ 8', '::1/1000', '[::1]/128', 'fe80::1%1']) {
      expect(parseCidr(bad).ok, bad).toBe(false);
    }
  });
});
