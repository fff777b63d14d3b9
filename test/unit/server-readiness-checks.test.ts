import { describe, expect, it } from 'vitest';
import { gatewayChecks, type GatewayState } from '../../src/server/readiness-checks.js';

const ready: GatewayState = {
  draining: false,
  started: true,
  listeners: [
    { name: 'a', listening: true, certificateMissing: false },
    { name: 'b', listening: true, certificateMissing: false },
  ],
  kerberos: undefined,
};

describe('gatewayChecks', () => {
  it('passes listeners, config and tls for a started gateway; no kerberos check without Kerberos', () => {
    expect(gatewayChecks(ready)).toEqual([
      { name: 'listeners', ok: true },
      { name: 'config', ok: true },
      { name: 'tls', ok: true },
    ]);
  });

  it('fails while starting, draining, or with a listener unbound or without its certificate', () => {
    expect(gatewayChecks({ ...ready, started: false })[0]).toEqual({ name: 'listeners', ok: false, detail: 'starting' });
    const broken = gatewayChecks({
      ...ready,
      draining: true,
      listeners: [
        { name: 'a', listening: false, certificateMissing: true },
        { name: 'b', listening: false, certificateMissing: false },
      ],
    });
    expect(broken).toEqual([
      { name: 'draining', ok: false, detail: 'shutting down' },
      { name: 'listeners', ok: false, detail: 'not listening: a, b' },
      { name: 'config', ok: true },
      { name: 'tls', ok: false, detail: 'no certificate loaded: a' },
    ]);
  });

  it('reports the keytab problem when Kerberos is configured', () => {
    expect(gatewayChecks({ ...ready, kerberos: { problem: undefined } }).at(-1)).toEqual({ name: 'kerberos', ok: true });
    expect(gatewayChecks({ ...ready, kerberos: { problem: 'not set up' } }).at(-1)).toEqual({ name: 'kerberos', ok: false, detail: 'not set up' });
  });
});
