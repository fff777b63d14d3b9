/**
 * src/server/doctor/backend.ts against loopback fakes: which targets are
 * probed (default and routing, each once), a backend greeting -ERR, one
 * refusing STLS, and a healthy plaintext one that is told QUIT and nothing
 * else. The real Dovecot cases are in test/integration/doctor.test.ts.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BackendTarget } from '../../src/backend/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { distinctTargets, probeTarget } from '../../src/server/doctor/backend.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

/** A fake backend: `greeting` on connect, `answers[line]` to each line; returns the port and the lines it got. */
async function fakeBackend(greeting: string, answers: Record<string, string> = {}): Promise<{ port: number; lines: string[] }> {
  const lines: string[] = [];
  const server = createServer((sock: Socket) => {
    sock.write(`${greeting}\r\n`);
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        lines.push(line);
        const answer = answers[line];
        if (answer !== undefined) sock.write(`${answer}\r\n`);
        if (line === 'QUIT') sock.end();
      }
    });
    sock.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, lines };
}

const target = (port: number, mode: BackendTarget['tls']['mode'] = 'none'): BackendTarget => ({
  host: '127.0.0.1',
  port,
  tls: { mode, verify: true },
  proxyProtocol: 'none',
  xclient: true,
});
const TIMEOUTS = { connectMs: 5_000, greetingMs: 5_000 };

describe('distinctTargets', () => {
  it('the default backend and every routing entry, a target named twice probed once with both paths', async () => {
    const config = await parseConfigText(
      `
listeners: [{ kind: pop3, port: 110 }]
auth: { userFile: /etc/popgate/users }
backend: { host: 10.0.0.1, login: { mode: master, user: m, password: p } }
routing:
  users: { bob: [{ host: 10.0.0.2 }, { host: 10.0.0.1 }] }
  domains: { example.com: [{ host: 10.0.0.2 }] }
`,
      { baseDir: '/etc/popgate', env: {}, source: 't.yaml' },
    );
    expect(distinctTargets(config).map((t) => [`${t.target.host}:${t.target.port}`, t.where])).toEqual([
      ['10.0.0.1:110', ['backend', 'routing.users.bob[1]']],
      ['10.0.0.2:110', ['routing.users.bob[0]', 'routing.domains.example.com[0]']],
    ]);
  });
});

describe('probeTarget', () => {
  it('a healthy plaintext backend: greeting and link ok, and it was told QUIT and nothing else', async () => {
    const b = await fakeBackend('+OK ready');
    const rs = await probeTarget(target(b.port), ['backend'], TIMEOUTS);
    expect(rs.map((r) => [r.check, r.status])).toEqual([
      [`127.0.0.1:${b.port} (backend) greeting`, 'ok'],
      [`127.0.0.1:${b.port} (backend) TLS`, 'ok'],
    ]);
    await expect.poll(() => b.lines).toEqual(['QUIT']);
  });

  it('a greeting that is not +OK fails', async () => {
    const b = await fakeBackend('-ERR [SYS/TEMP] go away');
    const [r] = await probeTarget(target(b.port), ['backend'], TIMEOUTS);
    expect(r).toMatchObject({ status: 'fail', detail: 'greets "-ERR [SYS/TEMP] go away", not +OK' });
  });

  it('STLS refused: the TLS line fails and names it (never a fallback to plaintext)', async () => {
    const b = await fakeBackend('+OK ready', { STLS: '-ERR TLS not available' });
    const rs = await probeTarget(target(b.port, 'starttls'), ['backend'], TIMEOUTS);
    expect(rs.map((r) => r.status)).toEqual(['ok', 'fail']);
    await expect.poll(() => b.lines).toEqual(['STLS', 'QUIT']);
    expect(rs[1]).toMatchObject({ detail: 'STLS refused: "-ERR TLS not available"', fix: expect.stringContaining('ssl = yes') as unknown });
  });
});
