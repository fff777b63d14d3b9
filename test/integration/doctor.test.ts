/**
 * `popgate doctor` (the built CLI, dist/cli/main.js, as a child process)
 * against a real Dovecot with a master user and TLS (STLS and implicit TLS):
 * a healthy setup passes with exit 0 and leaves the maildrop as it was; a
 * dead backend port, a backend certificate for another name, and a wrong
 * master password each fail with exit 1 and their own ✗ line; --json prints
 * the same checklist as JSON. The Redis probe against a real redis-server
 * and a dead port.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/index.js';
import type { PopgateConfig } from '../../src/config/index.js';
import { checkRedis } from '../../src/server/doctor/services.js';
import type { DoctorResult } from '../../src/server/doctor/types.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { CLI } from '../helpers/cli-process.js';
import { runProgram } from '../helpers/clients.js';
import { startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { startRedis } from '../helpers/redis.js';

const MASTER = { name: 'gatekeeper', password: 'Master-Pw-d0c7' };
const MESSAGE = Buffer.from('Subject: keep me\r\n\r\nnothing may touch this\r\n');

let dir: string;
let pki: TestPki;
let dovecot: DovecotInstance;
let deadPort: number;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Setup {
  backendPort?: number;
  serverName?: string;
  masterPassword?: string;
}

/** A config file: a pop3s listener with the test certificate, STLS to Dovecot, bob routed over implicit TLS. */
async function config(name: string, s: Setup = {}): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  const tls = `{ mode: starttls, caFile: ${pki.caFile}, serverName: ${s.serverName ?? 'localhost'} }`;
  await writeFile(
    file,
    `
listeners:
  - kind: pop3s
    port: 0
    tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} }
auth:
  userFile: ${join(dir, 'users')}
backend:
  host: 127.0.0.1
  port: ${s.backendPort ?? dovecot.port}
  tls: ${tls}
  login: { mode: master, user: ${MASTER.name}, password: ${s.masterPassword ?? MASTER.password} }
routing:
  users:
    bob:
      - { host: 127.0.0.1, port: ${dovecot.tlsPort ?? 0}, tls: { mode: implicit, caFile: ${pki.caFile}, serverName: localhost } }
`,
  );
  return file;
}

function doctor(file: string, ...extra: string[]) {
  return runProgram(process.execPath, [CLI, 'doctor', '--config', file, '--hostname', 'localhost', '--ca-file', pki.caFile, ...extra], { timeoutMs: 30_000 });
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npx tsc -p tsconfig.build.json" first`);
  dir = await mkdtemp(join(tmpdir(), 'popgate-doctor-'));
  pki = await makeTestPki(join(dir, 'pki'));
  await chmod(pki.keyFile, 0o600);
  await writeFile(join(dir, 'users'), `alice:${await hashPassword('front-pw', { scryptLogN: 10 })}\n`);
  dovecot = await startDovecot({ masterUser: MASTER, tls: { certFile: pki.certFile, keyFile: pki.keyFile }, messages: { alice: [MESSAGE] } });
  deadPort = await freePort();
}, 60_000);

afterAll(async () => {
  await dovecot?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('popgate doctor', () => {
  it('a healthy setup: every line ✓, exit 0, and the internal login leaves the maildrop as it was', async () => {
    const r = await doctor(await config('healthy'), '--user', 'alice');
    expect(r.stderr).toBe('');
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).not.toMatch(/[✗!] /);
    expect(r.stdout).toContain(`✓ 127.0.0.1:${dovecot.port} (backend) greeting: greets "+OK`);
    expect(r.stdout).toMatch(new RegExp(`✓ 127\\.0\\.0\\.1:${dovecot.port} \\(backend\\) TLS: STLS, TLSv1\\.[23]; certificate verified for localhost against the CA file`));
    expect(r.stdout).toMatch(new RegExp(`✓ 127\\.0\\.0\\.1:${dovecot.tlsPort} \\(routing\\.users\\.bob\\[0\\]\\) TLS: implicit TLS`));
    expect(r.stdout).toContain('✓ listeners[0] (pop3s-0) certificate chain');
    expect(r.stdout).toContain('✓ listeners[0] (pop3s-0) certificate names: covers localhost (from --hostname)');
    expect(r.stdout).toContain(`✓ internal login for alice at 127.0.0.1:${dovecot.port}: accepted (master user ${MASTER.name}, auth-plain); QUIT sent at once: nothing in the maildrop was listed, read or deleted`);
    expect(r.stdout).toMatch(/0 failed, 0 warnings/);
    expect(await dovecot.listMessages('alice')).toEqual([MESSAGE]);
    const log = await dovecot.readLog();
    expect(log).not.toMatch(/pop3\(alice\).*(retr|dele)=[1-9]/);
  });

  it('a dead backend port: ✗ with the fix, exit 1', async () => {
    const r = await doctor(await config('dead', { backendPort: deadPort }));
    expect(r.code, r.stdout).toBe(1);
    expect(r.stdout).toContain(`✗ 127.0.0.1:${deadPort} (backend) greeting: cannot connect: ECONNREFUSED`);
    expect(r.stdout).toContain(`fix: start the POP3 server at 127.0.0.1:${deadPort}, or correct host/port under backend`);
    // The routed backend is still checked, and still fine.
    expect(r.stdout).toContain(`✓ 127.0.0.1:${dovecot.tlsPort} (routing.users.bob[0]) greeting`);
  });

  it('a backend certificate that does not name tls.serverName: the STLS line fails', async () => {
    const r = await doctor(await config('wrong-name', { serverName: 'mail.elsewhere.test' }));
    expect(r.code, r.stdout).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`✗ 127\\.0\\.0\\.1:${dovecot.port} \\(backend\\) TLS: STLS handshake failed: .*mail\\.elsewhere\\.test`));
  });

  it('a wrong master password: the internal login is refused, ✗, exit 1', async () => {
    const r = await doctor(await config('wrong-master', { masterPassword: 'not-the-master-pw' }), '--user', 'alice');
    expect(r.code, r.stdout).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`✗ internal login for alice at 127\\.0\\.0\\.1:${dovecot.port}: refused: BACKEND_LOGIN_REJECTED`));
    expect(r.stdout).toContain('fix: make backend.login user and password match the backend\'s master user');
    // Connecting and TLS are fine: only the login line fails.
    expect(r.stdout.match(/✗/g)).toHaveLength(1);
  });

  it('--json: the same checklist as [{group, check, status, detail, fix?}]', async () => {
    const r = await doctor(await config('json', { backendPort: deadPort }), '--json');
    expect(r.code).toBe(1);
    const results = JSON.parse(r.stdout) as DoctorResult[];
    expect(new Set(results.map((x) => x.group))).toEqual(new Set(['config', 'tls', 'backend']));
    const dead = results.find((x) => x.status === 'fail');
    expect(dead).toMatchObject({ group: 'backend', check: `127.0.0.1:${deadPort} (backend) greeting`, fix: expect.stringContaining('start the POP3 server') as unknown });
  });

  it('a configuration that does not load: exit 78, like check-config', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'listeners: []\n');
    const r = await doctor(file);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('invalid configuration');
  });
});

describe('doctor: redis (throttle store)', () => {
  const redisConfig = (url: string) => ({ auth: { throttle: { enabled: true, store: 'redis', redis: { url } } } }) as unknown as PopgateConfig;

  it('a live Redis answers PING; a dead port fails with the fix', async () => {
    const redis = await startRedis();
    try {
      expect(await checkRedis(redisConfig(redis.url), 2_000)).toEqual([
        { group: 'services', check: `redis redis://127.0.0.1:${redis.port}`, status: 'ok', detail: 'answers PING with PONG' },
      ]);
    } finally {
      await redis.stop();
    }
    const [dead] = await checkRedis(redisConfig(`redis://127.0.0.1:${deadPort}`), 2_000);
    expect(dead).toMatchObject({ status: 'fail', detail: expect.stringContaining('ECONNREFUSED') as unknown, fix: expect.stringContaining('start Redis') as unknown });
  });
});
