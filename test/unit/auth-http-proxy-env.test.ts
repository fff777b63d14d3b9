import { describe, expect, it } from 'vitest';
import { effectivePort, noProxyMatches, redactUrl, resolveProxy } from '../../src/auth/proxy-env.js';

describe('noProxyMatches', () => {
  const cases: Array<[string, string, number, boolean]> = [
    // [NO_PROXY, host, port, bypass?]
    ['*', 'anything.example', 80, true],
    ['', 'auth.example.com', 80, false],
    ['example.com', 'example.com', 80, true],
    ['example.com', 'auth.example.com', 80, true],
    ['example.com', 'deep.auth.example.com', 80, true],
    ['example.com', 'badexample.com', 80, false],
    ['example.com', 'example.com.evil', 80, false],
    ['.example.com', 'auth.example.com', 80, true],
    ['.example.com', 'example.com', 80, true],
    ['*.example.com', 'auth.example.com', 80, true],
    ['EXAMPLE.com', 'Auth.Example.COM', 80, true],
    ['example.com.', 'auth.example.com', 80, true],
    ['example.com', 'auth.example.com.', 80, true],
    ['other.org, example.com', 'auth.example.com', 80, true],
    ['other.org  example.com', 'auth.example.com', 80, true],
    ['other.org,,', 'auth.example.com', 80, false],
    // ports
    ['example.com:8080', 'auth.example.com', 8080, true],
    ['example.com:8080', 'auth.example.com', 80, false],
    ['example.com:notaport', 'auth.example.com', 80, false],
    // IPv4
    ['127.0.0.1', '127.0.0.1', 9000, true],
    ['127.0.0.1', '127.0.0.2', 9000, false],
    ['127.0.0.1:9000', '127.0.0.1', 9000, true],
    ['127.0.0.1:9001', '127.0.0.1', 9000, false],
    ['10.0.0.0/8', '10.20.30.40', 80, true],
    ['10.0.0.0/8', '11.0.0.1', 80, false],
    ['10.0.0.0/33', '10.0.0.1', 80, false],
    ['localhost', '127.0.0.1', 80, false], // names are never resolved
    ['1.2.3.4', 'host.1.2.3.4', 80, false],
    // IPv6
    ['::1', '[::1]', 80, true],
    ['[::1]', '[::1]', 80, true],
    ['[::1]:8080', '[::1]', 8080, true],
    ['[::1]:8080', '[::1]', 80, false],
    ['0:0:0:0:0:0:0:1', '[::1]', 80, true],
    ['fd00::/8', '[fd12::5]', 80, true],
    ['fd00::/8', '[fe80::1]', 80, false],
    ['10.0.0.0/8', '[::1]', 80, false],
    ['::1', '127.0.0.1', 80, false],
  ];
  it.each(cases)('NO_PROXY=%j host=%s port=%i -> %s', (noProxy, host, port, expected) => {
    expect(noProxyMatches(noProxy, host, port)).toBe(expected);
  });
});

describe('resolveProxy', () => {
  const http = new URL('http://auth.internal:9000/auth');
  const https = new URL('https://auth.internal/auth');

  it("'none' and an empty environment mean direct", () => {
    expect(resolveProxy(http, 'none', { HTTP_PROXY: 'http://p:3128' })).toBeNull();
    expect(resolveProxy(http, null, {})).toBeNull();
    expect(resolveProxy(http, null, { HTTP_PROXY: '  ' })).toBeNull();
  });

  it('an explicit proxy is used even when NO_PROXY would bypass it', () => {
    expect(resolveProxy(http, 'http://proxy:3128', { NO_PROXY: '*' })?.href).toBe('http://proxy:3128/');
  });

  it('reads http_proxy (lowercase first) for http URLs, https_proxy for https URLs', () => {
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://upper:1', http_proxy: 'http://lower:2' })?.host).toBe('lower:2');
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://upper:1' })?.host).toBe('upper:1');
    expect(resolveProxy(http, null, { HTTPS_PROXY: 'http://s:1' })).toBeNull();
    expect(resolveProxy(https, null, { HTTP_PROXY: 'http://p:1' })).toBeNull();
    expect(resolveProxy(https, null, { https_proxy: 'http://s:1' })?.host).toBe('s:1');
  });

  it('applies no_proxy/NO_PROXY to environment proxies', () => {
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://p:1', NO_PROXY: '.internal' })).toBeNull();
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://p:1', no_proxy: 'auth.internal:9000' })).toBeNull();
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://p:1', no_proxy: 'auth.internal:80' })?.host).toBe('p:1');
    expect(resolveProxy(http, null, { HTTP_PROXY: 'http://p:1', no_proxy: 'other', NO_PROXY: 'auth.internal' })?.host).toBe(
      'p:1',
    );
  });

  it('accepts a proxy without scheme and refuses other schemes', () => {
    expect(resolveProxy(http, null, { http_proxy: 'proxy.lan:3128' })?.href).toBe('http://proxy.lan:3128/');
    expect(() => resolveProxy(http, 'socks5://p:1080', {})).toThrow(/unsupported proxy scheme/);
    expect(() => resolveProxy(http, 'http://[bad', {})).toThrow(/invalid proxy URL/);
  });

  it('effectivePort and redactUrl', () => {
    expect(effectivePort(http)).toBe(9000);
    expect(effectivePort(https)).toBe(443);
    expect(effectivePort(new URL('http://x/'))).toBe(80);
    expect(redactUrl('http://user:secret@proxy:3128/p?q=secret')).toBe('http://proxy:3128/p');
  });
});
