import { describe, expect, it } from 'vitest';
import { TrustedNetworks } from '../../src/net/trusted-networks.js';

describe('trusted networks', () => {
  it('matches IPv4/IPv6 subnets and single addresses, including IPv4-mapped peers', () => {
    const t = new TrustedNetworks(['10.0.0.0/8', '127.0.0.1', 'fd00::/8']);
    expect(t.has('10.1.2.3')).toBe(true);
    expect(t.has('::ffff:10.1.2.3')).toBe(true);
    expect(t.has('127.0.0.1')).toBe(true);
    expect(t.has('127.0.0.2')).toBe(false);
    expect(t.has('fd12::1')).toBe(true);
    expect(t.has('2001:db8::1')).toBe(false);
    expect(t.has(undefined)).toBe(false);
    expect(() => new TrustedNetworks(['not-an-ip/8'])).toThrow(/not an IP network/);
  });

  it('matches by prefix like the config validates them, with zones ignored and /0 per family', () => {
    const trusted = new TrustedNetworks(['10.0.0.0/8', '192.168.1.10/32', 'fd00::/8', '2001:db8:1::/48']);
    expect(trusted.has('10.255.0.1')).toBe(true);
    expect(trusted.has('11.0.0.1')).toBe(false);
    expect(trusted.has('192.168.1.11')).toBe(false);
    expect(trusted.has('2001:db8:1:ffff::1')).toBe(true);
    expect(trusted.has('2001:db8:2::1')).toBe(false);
    expect(trusted.has('::ffff:11.1.2.3')).toBe(false);
    expect(trusted.has('fd00::1%eth0')).toBe(true);
    expect(trusted.has('not-an-ip')).toBe(false);
    expect(new TrustedNetworks([]).has('10.0.0.1')).toBe(false);
    expect(new TrustedNetworks(['0.0.0.0/0']).has('203.0.113.9')).toBe(true);
    expect(new TrustedNetworks(['0.0.0.0/0']).has('2001:db8::1')).toBe(false);
  });
});
