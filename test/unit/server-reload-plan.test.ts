import { describe, expect, it } from 'vitest';
import { parseConfigText, type PopgateConfig } from '../../src/config/index.js';
import { describeRestarts, planReload, reusableParts } from '../../src/server/config-reload.js';

const LISTENERS = `
listeners:
  - { name: a, kind: pop3, address: 127.0.0.1, port: 110 }
  - { name: b, kind: pop3s, address: 127.0.0.1, port: 995, tls: { certFile: c.pem, keyFile: k.pem } }
`;

async function config(listeners = LISTENERS, extra = ''): Promise<PopgateConfig> {
  const yaml = `${listeners}
auth: { userFile: users, throttle: { enabled: false } }
backend: { host: 127.0.0.1, port: 1110, login: { mode: master, user: popgate, password: x } }
${extra}`;
  return parseConfigText(yaml, { baseDir: '/etc/popgate', env: {}, source: 't', readSecrets: false });
}

const running = (c: PopgateConfig) => ({ config: c, listeners: c.listeners });

describe('planReload', () => {
  it('reconfigures every listener live and rebuilds the services (Kerberos-free, throttle settings kept) when nothing else changed', async () => {
    const c = await config();
    expect(planReload(running(c), await config())).toEqual([
      { kind: 'listener-reconfigured', listener: 'a', tls: false },
      { kind: 'listener-reconfigured', listener: 'b', tls: false },
      { kind: 'services-rebuilt', reused: ['throttle'] },
    ]);
  });

  it('names listeners added, removed and rebound, keeps those blocked as they are, and logs them as before', async () => {
    const c = await config();
    const next = await config(`
listeners:
  - { name: a, kind: pop3, address: 0.0.0.0, port: 111 }
  - { name: c, kind: pop3, address: 127.0.0.1, port: 1110 }
`);
    const changes = planReload(running(c), next);
    expect(changes).toEqual([
      { kind: 'listener-rebind', listener: 'a', field: 'address', from: '127.0.0.1', to: '0.0.0.0' },
      { kind: 'listener-rebind', listener: 'a', field: 'port', from: '110', to: '111' },
      { kind: 'listener-removed', listener: 'b' },
      { kind: 'listener-added', listener: 'c' },
      { kind: 'services-rebuilt', reused: ['throttle'] },
    ]);
    expect(describeRestarts(changes)).toEqual([
      'listener a: address 127.0.0.1 -> 0.0.0.0',
      'listener a: port 110 -> 111',
      'listener b removed',
      'listener c added',
    ]);
  });

  it('diffs against the listeners as running, not the last config applied', async () => {
    const c = await config();
    const moved = await config(LISTENERS.replace('port: 110', 'port: 111'));
    // A blocked port change stays blocked (and reported) on the next reload too.
    const changes = planReload({ config: moved, listeners: c.listeners }, moved);
    expect(describeRestarts(changes)).toEqual(['listener a: port 110 -> 111']);
  });

  it('marks a listener whose TLS settings changed for a certificate load', async () => {
    const c = await config();
    const next = await config(LISTENERS.replace('c.pem', 'c2.pem'));
    expect(planReload(running(c), next)).toContainEqual({ kind: 'listener-reconfigured', listener: 'b', tls: true });
  });

  it('reports an admin listener change and a new per-address limit', async () => {
    const c = await config();
    const next = await config(LISTENERS, 'admin: { address: 127.0.0.1, port: 9100 }\nlimits: { maxConnectionsPerIp: 3 }');
    const changes = planReload(running(c), next);
    expect(changes).toContainEqual({ kind: 'admin-changed', from: undefined, to: next.admin });
    expect(changes).toContainEqual({ kind: 'address-limit-changed', from: c.limits.maxConnectionsPerIp, to: 3 });
    expect(describeRestarts(changes)).toEqual([]);
  });
});

describe('reusableParts', () => {
  it('keeps the throttle only while its settings are the same', async () => {
    const c = await config();
    const next = await config();
    expect(reusableParts(c, next)).toEqual(['throttle']);
    const changed = { ...next, auth: { ...next.auth, throttle: { ...next.auth.throttle, enabled: true } } };
    expect(reusableParts(c, changed)).toEqual([]);
  });

  it('keeps Kerberos only when both configs have the same kerberos section', async () => {
    const c = await config();
    const kerberos = {
      keytab: '/k',
      servicePrincipals: ['pop/h@R'],
      rcacheDir: '/r',
      passwordServicePrincipal: 'pop/h@R',
    } as unknown as NonNullable<PopgateConfig['kerberos']>;
    const withK = { ...c, kerberos };
    expect(reusableParts(withK, { ...c, kerberos })).toEqual(['kerberos', 'throttle']);
    expect(reusableParts(withK, { ...c, kerberos: { ...kerberos, keytab: '/k2' } })).toEqual(['throttle']);
    expect(reusableParts(c, withK)).toEqual(['throttle']);
  });
});
