import { describe, expect, it } from 'vitest';
import { DEFAULT_ECDH_CURVE, INTERMEDIATE_TLS12_CIPHERS } from '../../src/config/tls-profile.js';
import { issuesOf, parseConfig as parse } from '../helpers/config.js';

const BASE = `
listeners:
  - kind: pop3s
    port: 995
    tls:
      certFile: /etc/popgate/tls/tls.crt
      keyFile: /etc/popgate/tls/tls.key
auth:
  userFile: /etc/popgate/users
backend:
  host: 127.0.0.1
  login: { mode: master, user: popgate, password: s3cret }
`;

/** BASE with `lines` added to the first listener (4-space indented YAML). */
function listener(lines: string): string {
  return BASE.replace('    port: 995\n', `    port: 995\n${lines.replace(/^/gm, '    ')}\n`);
}

/** BASE with `lines` added to the first listener's tls section. */
function tls(lines: string): string {
  return BASE.replace('      keyFile: /etc/popgate/tls/tls.key\n', `      keyFile: /etc/popgate/tls/tls.key\n${lines.replace(/^/gm, '      ')}\n`);
}

describe('listeners[].proxyProtocol', () => {
  it('is absent unless configured', async () => {
    expect((await parse(BASE)).listeners[0]?.proxyProtocol).toBeUndefined();
  });

  it('fills defaults and normalises networks to address/prefix', async () => {
    const cfg = await parse(listener('proxyProtocol:\n  trustedNetworks: [10.0.0.0/8, "fd00::/8", 192.168.1.10, "::1", "FD12:3456::/32"]'));
    expect(cfg.listeners[0]?.proxyProtocol).toEqual({
      trustedNetworks: ['10.0.0.0/8', 'fd00::/8', '192.168.1.10/32', '::1/128', 'fd12:3456::/32'],
      required: true,
      timeout: 5000,
    });
  });

  it('takes required and timeout', async () => {
    const cfg = await parse(listener('proxyProtocol: { trustedNetworks: [0.0.0.0/0, "::/0"], required: false, timeout: 1500ms }'));
    expect(cfg.listeners[0]?.proxyProtocol).toEqual({ trustedNetworks: ['0.0.0.0/0', '::/0'], required: false, timeout: 1500 });
  });

  it('requires a non-empty trustedNetworks list', async () => {
    expect(await issuesOf(listener('proxyProtocol: { required: false }'))).toEqual([
      { path: 'listeners[0].proxyProtocol.trustedNetworks', message: 'required (expected list (array))' },
    ]);
    expect(await issuesOf(listener('proxyProtocol: { trustedNetworks: [] }'))).toEqual([
      { path: 'listeners[0].proxyProtocol.trustedNetworks', message: 'at least one trusted network is required' },
    ]);
  });

  it('reports each invalid network at its exact path', async () => {
    const issues = await issuesOf(
      listener(
        'proxyProtocol:\n  trustedNetworks: [10.0.0.0/8, lb.example.com, 10.0.0.0/33, "fd00::/129", "[::1]", 10.1.2.3/8, "fe80::1%eth0", 10.0.0.0/x, "10.0.0.0/"]',
      ),
    );
    const at = (i: number): string => `listeners[0].proxyProtocol.trustedNetworks[${i}]`;
    expect(issues).toEqual([
      { path: at(1), message: 'must be an IP address or network in CIDR notation (address/prefix)', hint: expect.stringMatching(/no host names/) },
      { path: at(2), message: 'prefix length must be a number from 0 to 32 for an IPv4 network' },
      { path: at(3), message: 'prefix length must be a number from 0 to 128 for an IPv6 network' },
      { path: at(4), message: 'must be an IP address or network in CIDR notation (address/prefix)', hint: expect.stringMatching(/no brackets/) },
      {
        path: at(5),
        message: '10.1.2.3/8 has host bits set (the address is not the start of the network)',
        hint: 'did you mean 10.0.0.0/8? For a single address write it without a prefix',
      },
      { path: at(6), message: 'must not contain an IPv6 zone (%...)', hint: expect.any(String) },
      { path: at(7), message: 'prefix length must be a number from 0 to 32 for an IPv4 network' },
      { path: at(8), message: 'prefix length must be a number from 0 to 32 for an IPv4 network' },
    ]);
  });

  it('refuses a non-string network and repeated networks (after normalisation)', async () => {
    expect(await issuesOf(listener('proxyProtocol: { trustedNetworks: [10] }'))).toEqual([
      { path: 'listeners[0].proxyProtocol.trustedNetworks[0]', message: 'expected string, got number' },
    ]);
    expect(await issuesOf(listener('proxyProtocol: { trustedNetworks: [10.0.0.1, 10.0.0.1/32] }'))).toEqual([
      { path: 'listeners[0].proxyProtocol.trustedNetworks[1]', message: 'duplicate network 10.0.0.1/32' },
    ]);
  });

  it('bounds the timeout and refuses unknown keys', async () => {
    expect(await issuesOf(listener('proxyProtocol: { trustedNetworks: [10.0.0.0/8], timeout: 10m }'))).toEqual([
      { path: 'listeners[0].proxyProtocol.timeout', message: 'must be at most 5m' },
    ]);
    const unknown = await issuesOf(listener('proxyProtocol: { trustedNetworks: [10.0.0.0/8], trustedNetwork: [] }'));
    expect(unknown).toEqual([
      {
        path: 'listeners[0].proxyProtocol.trustedNetwork',
        message: 'unknown key',
        hint: "did you mean 'trustedNetworks'? allowed keys: trustedNetworks, required, timeout",
      },
    ]);
  });

  it('is allowed on kpop listeners (the header precedes krb5_sendauth)', async () => {
    const text = `${BASE.replace('listeners:\n', 'listeners:\n  - { kind: kpop, proxyProtocol: { trustedNetworks: [10.0.0.0/8] } }\n')}kerberos:
  keytab: /k
  servicePrincipals: [pop/mail.example.com@EXAMPLE.COM]
  rcacheDir: /r
  mapping: { realms: [EXAMPLE.COM] }
`;
    const cfg = await parse(text);
    expect(cfg.listeners[0]?.proxyProtocol?.trustedNetworks).toEqual(['10.0.0.0/8']);
  });
});

describe('listeners[].tls.clientCertificates', () => {
  it('is absent unless configured and defaults to mode none', async () => {
    expect((await parse(BASE)).listeners[0]?.tls?.clientCertificates).toBeUndefined();
    const cfg = await parse(tls('clientCertificates: {}'));
    expect(cfg.listeners[0]?.tls?.clientCertificates).toEqual({ mode: 'none', identity: 'san-email', stripDomain: false });
  });

  it('takes every key and resolves caFile relative to the config directory', async () => {
    const cfg = await parse(tls('clientCertificates: { mode: required, caFile: ca/clients.pem, identity: cn, stripDomain: true }'), { baseDir: '/srv/popgate' });
    expect(cfg.listeners[0]?.tls?.clientCertificates).toEqual({
      mode: 'required',
      caFile: '/srv/popgate/ca/clients.pem',
      identity: 'cn',
      stripDomain: true,
    });
  });

  it('requires caFile unless mode is none', async () => {
    for (const mode of ['optional', 'required']) {
      expect(await issuesOf(tls(`clientCertificates: { mode: ${mode} }`))).toEqual([
        {
          path: 'listeners[0].tls.clientCertificates.caFile',
          message: `required when mode is ${mode} (the CAs that issue client certificates)`,
          hint: expect.stringMatching(/mode: none/),
        },
      ]);
    }
  });

  it('lists allowed modes and identities', async () => {
    expect(await issuesOf(tls('clientCertificates: { mode: require, caFile: /ca.pem, identity: email }'))).toEqual([
      { path: 'listeners[0].tls.clientCertificates.mode', message: "expected one of 'none', 'optional', 'required'", hint: "did you mean 'required'?" },
      { path: 'listeners[0].tls.clientCertificates.identity', message: "expected one of 'san-email', 'cn'" },
    ]);
  });

  it('is refused on a kpop listener, at its own path', async () => {
    const text = `${BASE.replace(
      'listeners:\n',
      'listeners:\n  - kind: kpop\n    tls: { certFile: c, keyFile: k, clientCertificates: { mode: required, caFile: /ca.pem } }\n',
    )}kerberos:
  keytab: /k
  servicePrincipals: [pop/mail.example.com@EXAMPLE.COM]
  rcacheDir: /r
  mapping: { realms: [EXAMPLE.COM] }
`;
    expect(await issuesOf(text)).toEqual([
      { path: 'listeners[0].tls', message: expect.stringMatching(/^a kpop listener cannot use TLS/), hint: expect.any(String) },
      {
        path: 'listeners[0].tls.clientCertificates',
        message: 'a kpop listener cannot ask for TLS client certificates (its clients authenticate with Kerberos tickets)',
        hint: 'move clientCertificates to a pop3s or pop3 listener',
      },
    ]);
  });

  it('is accepted on a pop3 listener (asked for in the STLS handshake)', async () => {
    const cfg = await parse(tls('clientCertificates: { mode: optional, caFile: /ca.pem }').replace('kind: pop3s\n    port: 995', 'kind: pop3\n    port: 110'));
    expect(cfg.listeners[0]).toMatchObject({ kind: 'pop3', tls: { clientCertificates: { mode: 'optional' } } });
  });
});

describe('listeners[].tls profile', () => {
  it('defaults to Mozilla intermediate: ECDHE with AES-GCM or ChaCha20 for TLS 1.2, X25519/P-256/P-384', async () => {
    const t = (await parse(BASE)).listeners[0]?.tls;
    expect(t).toMatchObject({ minVersion: 'TLSv1.2', ciphers: INTERMEDIATE_TLS12_CIPHERS, ecdhCurve: DEFAULT_ECDH_CURVE });
    for (const suite of INTERMEDIATE_TLS12_CIPHERS.split(':')) expect(suite).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    // The post-quantum hybrid leads where this Node's OpenSSL has it (3.5 and later).
    expect(DEFAULT_ECDH_CURVE).toBe('X25519:P-256:P-384');
  });

  it('takes ciphers, ecdhCurve and minVersion as overrides', async () => {
    const cfg = await parse(tls('minVersion: TLSv1.3\nciphers: ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384\necdhCurve: P-384'));
    expect(cfg.listeners[0]?.tls).toMatchObject({ minVersion: 'TLSv1.3', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384', ecdhCurve: 'P-384' });
  });

  it('refuses a cipher or group list OpenSSL cannot use, at its path', async () => {
    expect(await issuesOf(tls('ciphers: NO-SUCH-CIPHER\necdhCurve: X25519:P-999'))).toEqual([
      { path: 'listeners[0].tls.ciphers', message: expect.stringMatching(/^OpenSSL refuses it: /), hint: expect.stringMatching(/cipher list/) },
      { path: 'listeners[0].tls.ecdhCurve', message: expect.stringMatching(/^OpenSSL refuses it: /), hint: expect.stringMatching(/X25519:P-256:P-384/) },
    ]);
  });
});
