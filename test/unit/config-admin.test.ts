import { describe, expect, it } from 'vitest';
import { issuesOf, MINIMAL_CONFIG, parseConfig } from '../helpers/config.js';

describe('admin section', () => {
  it('is absent by default (no admin listener)', async () => {
    expect((await parseConfig(MINIMAL_CONFIG)).admin).toBeUndefined();
  });

  it('defaults to 127.0.0.1:9110 when present', async () => {
    expect((await parseConfig(`${MINIMAL_CONFIG}admin: {}\n`)).admin).toEqual({ address: '127.0.0.1', port: 9110 });
  });

  it('takes an address and port, 0 for an ephemeral port', async () => {
    expect((await parseConfig(`${MINIMAL_CONFIG}admin: { address: "::1", port: 0 }\n`)).admin).toEqual({ address: '::1', port: 0 });
    expect((await parseConfig(`${MINIMAL_CONFIG}admin: { address: 0.0.0.0, port: 9100 }\n`)).admin).toEqual({ address: '0.0.0.0', port: 9100 });
  });

  it('refuses unknown keys with a hint, bad ports and bad addresses', async () => {
    const unknown = await issuesOf(`${MINIMAL_CONFIG}admin: { prot: 9110 }\n`);
    expect(unknown.map((i) => i.path)).toEqual(['admin.prot']);
    expect(unknown[0]?.hint).toMatch(/port/);
    expect((await issuesOf(`${MINIMAL_CONFIG}admin: { port: 70000 }\n`)).map((i) => i.path)).toEqual(['admin.port']);
    expect((await issuesOf(`${MINIMAL_CONFIG}admin: { port: "9110x" }\n`)).map((i) => i.path)).toEqual(['admin.port']);
    expect((await issuesOf(`${MINIMAL_CONFIG}admin: { address: "not an address" }\n`)).map((i) => i.path)).toEqual(['admin.address']);
  });

  it('refuses the address and port of a mail listener', async () => {
    const issues = await issuesOf(`${MINIMAL_CONFIG}admin: { address: 0.0.0.0, port: 995 }\n`);
    expect(issues.map((i) => i.path)).toEqual(['admin.port']);
    expect(issues[0]?.message).toBe('address 0.0.0.0 port 995 is already used by listeners[0]');
    // Another address, or the same port number elsewhere, is fine.
    expect((await parseConfig(`${MINIMAL_CONFIG}admin: { port: 995 }\n`)).admin).toEqual({ address: '127.0.0.1', port: 995 });
  });
});
