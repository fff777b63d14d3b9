/**
 * The one address-key implementation with its two IPv6 spellings. The keys
 * each caller makes (server/address-limit.ts, auth/throttle/keys.ts) are pinned in
 * server-address-limit.test.ts and auth-throttle.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { addressKey } from '../../src/net/address-key.js';

describe('addressKey', () => {
  it('is the same for IPv4 and IPv4-mapped IPv6 in either spelling', () => {
    for (const spelling of ['groups', 'compressed'] as const) {
      expect(addressKey('192.0.2.7', spelling)).toBe('192.0.2.7');
      expect(addressKey('::ffff:192.0.2.7', spelling)).toBe('192.0.2.7');
      expect(addressKey('::FFFF:c000:0207', spelling)).toBe('192.0.2.7');
      expect(addressKey('192.0.2.7%eth0', spelling)).toBe('192.0.2.7');
    }
  });

  it('spells the IPv6 /64 with its four groups or in canonical text', () => {
    expect(addressKey('2001:db8:0:1::1', 'groups')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8:0:1::1', 'compressed')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::1', 'groups')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8::1', 'compressed')).toBe('2001:db8::/64');
    expect(addressKey('fe80::1%eth0', 'groups')).toBe('fe80:0:0:0::/64');
    expect(addressKey('fe80::1%eth0', 'compressed')).toBe('fe80::/64');
    expect(addressKey('::1', 'groups')).toBe('0:0:0:0::/64');
    expect(addressKey('::1', 'compressed')).toBe('::/64');
  });

  it('has no key for what is not an IP address (the caller decides)', () => {
    for (const text of ['', 'not-an-address', ' 192.0.2.7', '[::1]', '2001:db8::1::2']) {
      expect(addressKey(text, 'groups'), text).toBeUndefined();
      expect(addressKey(text, 'compressed'), text).toBeUndefined();
    }
  });
});
