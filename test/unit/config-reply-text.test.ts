/** Config text that ends up in POP3 reply lines is bounded so lines stay within RFC 2449's 512 octets. */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/index.js';

const base = (listenerExtra: string, backendExtra = ''): string => `
listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true${listenerExtra} }]
auth: { userFile: users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, password: x }${backendExtra} }
`;

describe('reply-line text in config', () => {
  it('bounds the greeting in octets, not characters', async () => {
    await expect(parseConfigText(base(`, greeting: "${'中'.repeat(66)}"`), { baseDir: '/tmp' })).resolves.toBeDefined();
    await expect(parseConfigText(base(`, greeting: "${'中'.repeat(100)}"`), { baseDir: '/tmp' })).rejects.toThrow(
      /listeners\[0\]\.greeting: must be at most 200 octets/,
    );
  });

  it('bounds backend capabilities advertised in CAPA', async () => {
    await expect(parseConfigText(base('', `, capabilities: [TOP, "X ${'a'.repeat(300)}"]`), { baseDir: '/tmp' })).rejects.toThrow(
      /backend\.capabilities\[1\]: must be at most 200 characters/,
    );
  });
});
