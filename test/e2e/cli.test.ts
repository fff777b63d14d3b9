/**
 * The shipped CLI (dist/cli/main.js) as an operator runs it: hash-password,
 * check-config, serve with SIGHUP/SIGTERM, and the demo with its printed
 * commands pasted into a shell.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyPasswordHash } from '../../src/auth/index.js';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

const CLI = resolve('dist/cli/main.js');

interface Running {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(args: string[]): Running {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}


function logRecords(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (scripts/test.sh does)`);
});

describe('popgate hash-password', () => {
  it('prints a user-file line whose hash verifies the password read from stdin', async () => {
    const r = await runProgram(process.execPath, [CLI, 'hash-password', '--user', 'bob'], { input: 'correct horse\n' });
    expect(r.code).toBe(0);
    const [user, hash] = r.stdout.trim().split(':');
    expect(user).toBe('bob');
    expect(hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$/);
    expect(await verifyPasswordHash('correct horse', hash!)).toBe(true);
    expect(await verifyPasswordHash('wrong', hash!)).toBe(false);
  });

  it('emits bcrypt $2y$ on request and refuses bad user names', async () => {
    const r = await runProgram(process.execPath, [CLI, 'hash-password', '--algorithm', 'bcrypt'], { input: 'pw\n' });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\$2y\$10\$/);
    const bad = await runProgram(process.execPath, [CLI, 'hash-password', '--user', 'a:b'], { input: 'pw\n' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/user names cannot/);
  });
});

describe('popgate check-config', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-cc-'));
    await writeFile(join(dir, 'users'), '');
    await writeFile(join(dir, 'master'), 'S3cret-master-pw\n');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('accepts a valid file and prints it with secrets masked', async () => {
    const file = join(dir, 'ok.yaml');
    await writeFile(
      file,
      `listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true }]
auth: { userFile: users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: master } }
`,
    );
    const r = await runProgram(process.execPath, [CLI, 'check-config', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(': OK');
    expect(r.stdout).toContain('"idleTimeout": 600000');
    expect(r.stdout).not.toContain('S3cret-master-pw');
  });

  it('accepts config.example.yaml as shipped, once the files it names exist', async () => {
    const root = await mkdtemp(join(tmpdir(), 'popgate-example-'));
    try {
      // Its absolute paths, moved under a temp root; each named file created.
      const text = (await readFile('config.example.yaml', 'utf8')).replace(/(?<=[\s:"'])\/(etc\/popgate|run\/secrets|var\/lib\/popgate)\//g, `${root}/$1/`);
      const named = [...new Set(text.match(new RegExp(`${root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^\\s"',}\\]]+`, 'g')) ?? [])];
      for (const file of named) {
        await mkdir(dirname(file), { recursive: true });
        if (file.endsWith('/rcache')) await mkdir(file, { recursive: true });
        else await writeFile(file, file.endsWith('master-password') ? 'a-master-password\n' : '');
      }
      const config = join(root, 'popgate.yaml');
      await writeFile(config, text);
      const r = await runProgram(process.execPath, [CLI, 'check-config', config]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('listeners');
      expect(named.length).toBeGreaterThan(2);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('refuses unknown keys and wrong types with the exact path and a hint', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      `listeners: [{ kind: pop3s, port: "nine", tls: { certFile: a, keyfile: b } }]
auth: { userFile: users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: master } }
`,
    );
    const r = await runProgram(process.execPath, [CLI, 'check-config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/listeners\[0\]\.port: .*number/);
    expect(r.stderr).toMatch(/listeners\[0\]\.tls\.keyfile: .*did you mean 'keyFile'/);
  });
});

describe('popgate serve', () => {
  let pki: TestPki;
  let backend: DemoBackend;
  let dir: string;
  let gw: Running;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-serve-'));
    pki = await makeTestPki(dir);
    backend = await startDemoBackend({
      users: { frank: 'backend-only' },
      masterUser: 'popgate',
      masterPassword: 'Master-S3cret',
      messages: { frank: [Buffer.from('Subject: one\r\n\r\nfirst\r\n'), Buffer.from('Subject: two\r\n\r\nsecond\r\n')] },
    });
    const hashed = await runProgram(process.execPath, [CLI, 'hash-password', '--user', 'frank'], { input: 'Frank-front-pw\n' });
    await writeFile(join(dir, 'users'), hashed.stdout);
    await writeFile(join(dir, 'master'), 'Master-S3cret\n');
    await writeFile(
      join(dir, 'popgate.yaml'),
      `log: { level: info }
listeners:
  - { name: s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} } }
auth: { userFile: users, failureDelay: 0s }
backend:
  host: 127.0.0.1
  port: \${BACKEND_PORT}
  login: { mode: master, method: auth-plain, user: popgate, passwordFile: master }
shutdown: { drainTimeout: 1s }
`,
    );
    process.env.BACKEND_PORT = String(backend.port);
    gw = start(['serve', '--config', join(dir, 'popgate.yaml')]);
  });

  afterAll(async () => {
    gw?.child.kill('SIGKILL');
    await backend?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves, reloads on SIGHUP, and on SIGTERM drains then cuts a live session without QUIT', async () => {
    const port = await waitFor('listening log line', () => {
      const rec = logRecords(gw.stdout()).find((r) => r.msg === 'listening');
      return rec ? Number(rec.port) : undefined;
    });
    const c = await LineClient.tls(port, pki.caFile);
    expect(await c.line()).toMatch(/^\+OK/);
    c.send('USER frank\r\nPASS Frank-front-pw\r\nDELE 1\r\n');
    expect(await c.line()).toBe('+OK');
    expect(await c.line()).toMatch(/^\+OK Logged in/);
    expect(await c.line()).toMatch(/^\+OK/);

    gw.child.kill('SIGHUP');
    await waitFor('reload log', () => logRecords(gw.stdout()).find((r) => r.msg === 'TLS certificate reloaded'));
    // The live session survived the reload.
    c.send('STAT\r\n');
    expect(await c.line()).toMatch(/^\+OK 1 /);

    gw.child.kill('SIGTERM');
    // Drain deadline (1 s) passes with the session idle: it is cut, the client sees the close.
    await c.closed(10_000);
    expect(await gw.exited).toBe(0);
    const records = logRecords(gw.stdout());
    expect(records.find((r) => r.event === 'session-end')?.endedBy).toBe('shutdown');
    expect(records.some((r) => r.msg === 'stopped')).toBe(true);
    // DELE without a completed QUIT: both messages are still there.
    expect(backend.mailbox('frank')).toHaveLength(2);
    expect(backend.commandLog().filter((cmd) => cmd === 'QUIT')).toHaveLength(0);
    expect(gw.stdout() + gw.stderr()).not.toContain('Master-S3cret');
    expect(gw.stdout() + gw.stderr()).not.toContain('Frank-front-pw');
  });

  it('refuses to start on an invalid config with exit code 78 and the path', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'listeners: []\n');
    const r = await runProgram(process.execPath, [CLI, 'serve', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/listeners/);
  });
});

describe('popgate demo', () => {
  it('prints commands that work when pasted into a shell, and stops cleanly on Ctrl-C', async () => {
    const demo = start(['demo', '--pop3s-port', '0', '--pop3-port', '0']);
    try {
      const text = await waitFor('demo instructions', () => (demo.stdout().includes('python3 -c') ? demo.stdout() : undefined));
      const lines = text.split('\n').map((l) => l.trim());
      const python = lines.find((l) => l.startsWith('python3 -c'))!;
      const curl = lines.find((l) => l.startsWith('curl --cacert'))!;
      const curlStls = lines.find((l) => l.startsWith('curl --ssl-reqd'))!;
      const openssl = lines.find((l) => l.includes('openssl s_client -quiet -connect'))!;

      const py = await runProgram('bash', ['-c', python.replace(/^python3 /, '/usr/bin/python3 ')]);
      expect(py.stderr).toBe('');
      expect(py.stdout).toMatch(/^\(3, \d+\)/);
      expect(py.stdout).toContain('Subject: Running late');

      for (const cmd of [curl, curlStls]) {
        const r = await runProgram('bash', ['-c', cmd]);
        expect(r.code).toBe(0);
        expect(r.stdout).toContain('Subject: Running late');
      }
      const s = await runProgram('bash', ['-c', openssl]);
      expect(s.stdout).toMatch(/\+OK Logged in/);
      expect(s.stdout).toContain('Subject: Running late');
    } finally {
      demo.child.kill('SIGINT');
    }
    expect(await demo.exited).toBe(0);
    expect(demo.stdout()).toContain('"msg":"stopped"');
  });
});
