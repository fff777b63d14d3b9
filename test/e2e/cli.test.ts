/**
 * The shipped CLI (dist/cli/main.js) as an operator runs it: --help of every
 * command, hash-password, check-config (the full check with real and with
 * missing files, --schema-only on the shipped configs), serve with
 * SIGHUP/SIGTERM and serve refusing a config whose files are missing, and
 * the demo with its printed commands pasted into a shell.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyPasswordHash } from '../../src/auth/index.js';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import {
  checkRerooted,
  checkSchemaOnly,
  DEPLOY,
  parseYaml,
  pathEntries,
  reportedProblems,
  rerootConfig,
  ROOT,
  writeRealFiles,
} from '../helpers/deploy.js';
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

  it('emits Dovecot-format {SCRAM-SHA-256} keys, 4096 iterations unless --iterations says otherwise', async () => {
    const r = await runProgram(process.execPath, [CLI, 'hash-password', '--algorithm', 'scram-sha-256', '--user', 'carol'], { input: 'pencil\n' });
    expect(r.code).toBe(0);
    const line = r.stdout.trim();
    expect(line).toMatch(/^carol:\{SCRAM-SHA-256\}4096,[A-Za-z0-9+/]{22}==,[A-Za-z0-9+/]{43}=,[A-Za-z0-9+/]{43}=$/);
    expect(await verifyPasswordHash('pencil', line.slice('carol:'.length))).toBe(true);
    const more = await runProgram(process.execPath, [CLI, 'hash-password', '-a', 'scram-sha-256', '-i', '5000'], { input: 'pencil\n' });
    expect(more.code).toBe(0);
    expect(more.stdout).toMatch(/^\{SCRAM-SHA-256\}5000,/);
    expect(await verifyPasswordHash('pencil', more.stdout.trim())).toBe(true);
    for (const args of [['--iterations', '5000'], ['-a', 'scram-sha-256', '-i', '100'], ['-a', 'scram-sha-256', '-i', 'many'], ['-a', 'md5']]) {
      const bad = await runProgram(process.execPath, [CLI, 'hash-password', ...args], { input: 'pw\n' });
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stdout, args.join(' ')).toBe('');
    }
  });
});

describe('popgate --help', () => {
  const COMMANDS = ['serve', 'check-config', 'doctor', 'hash-password', 'demo', 'version', 'help'];

  it('every subcommand answers --help (and -h) with its usage, exit 0, and runs nothing', async () => {
    for (const command of COMMANDS) {
      const outputs = new Set<string>();
      for (const args of [[command, '--help'], [command, '-h'], ['help', command]]) {
        // Were --help ignored: hash-password would read the empty stdin and exit 2, demo and serve would start.
        const r = await runProgram(process.execPath, [CLI, ...args], { timeoutMs: 10_000 });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stderr, args.join(' ')).toBe('');
        expect(r.stdout.startsWith(`Usage: popgate ${command}`), `${args.join(' ')}: ${r.stdout}`).toBe(true);
        outputs.add(r.stdout);
      }
      expect(outputs.size, `${command}: --help, -h and help ${command} print the same text`).toBe(1);
    }
    const top = await runProgram(process.execPath, [CLI, '--help']);
    expect(top.code).toBe(0);
    for (const command of COMMANDS) expect(top.stdout).toContain(`popgate ${command}`);
    expect(top.stdout).toContain('--schema-only');
  });

  it('an unknown option is a usage error (exit 2) that shows the command\'s usage', async () => {
    const r = await runProgram(process.execPath, [CLI, 'check-config', '--bogus', 'x.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("popgate check-config: Unknown option '--bogus'");
    expect(r.stderr).toContain('Usage: popgate check-config [--schema-only] FILE');
  });
});

describe('popgate check-config', () => {
  let dir: string;
  let pki: TestPki;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-cc-'));
    pki = await makeTestPki(join(dir, 'pki'));
    await writeFile(join(dir, 'users'), '');
    await writeFile(join(dir, 'master'), 'S3cret-master-pw\n');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('accepts a valid file and prints what it checked and the config with secrets masked', async () => {
    const file = join(dir, 'ok.yaml');
    await writeFile(
      file,
      `listeners: [{ kind: pop3, port: 110, allowPlaintextAuth: true }]
auth: { userFile: users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: master } }
`,
    );
    const r = await runProgram(process.execPath, [CLI, 'check-config', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${file}: OK`);
    expect(r.stdout).toContain(`  auth.userFile: ${join(dir, 'users')}: user file, 0 users`);
    expect(r.stdout).toContain(`  backend.login.passwordFile: ${join(dir, 'master')}: secret, read with the configuration`);
    expect(r.stdout).toContain('"idleTimeout": 600000');
    expect(r.stdout).not.toContain('S3cret-master-pw');
  });

  it('lists every missing file, each with its config path, and exits 78', async () => {
    const file = join(dir, 'missing.yaml');
    await writeFile(
      file,
      `listeners:
  - { kind: pop3s, port: 995, tls: { certFile: tls/cert.pem, keyFile: tls/key.pem } }
  - { kind: pop3, port: 110, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile}, clientCertificates: { mode: optional, caFile: client-ca.pem } } }
auth: { userFile: no-users, mechanisms: [PLAIN, EXTERNAL] }
backend: { host: 127.0.0.1, tls: { mode: starttls, caFile: backend-ca.pem }, login: { mode: master, user: popgate, passwordFile: no-master } }
`,
    );
    const r = await runProgram(process.execPath, [CLI, 'check-config', file]);
    expect(r.code).toBe(78);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`invalid configuration in ${file} (6 problems):`);
    expect(reportedProblems(r.stderr)).toEqual([
      ['listeners[0].tls.certFile', `cannot read certificate file ${join(dir, 'tls/cert.pem')} (ENOENT)`],
      ['listeners[0].tls.keyFile', `cannot read private key file ${join(dir, 'tls/key.pem')} (ENOENT)`],
      ['listeners[1].tls.clientCertificates.caFile', `cannot read client CA file ${join(dir, 'client-ca.pem')} (ENOENT)`],
      ['auth.userFile', `cannot read user file ${join(dir, 'no-users')} (ENOENT)`],
      [
        'backend.login.passwordFile',
        `cannot read secret file ${join(dir, 'no-master')} (ENOENT) (hint: check that the file exists and is readable by the popgate user)`,
      ],
      ['backend.tls.caFile', `cannot read CA file ${join(dir, 'backend-ca.pem')} (ENOENT)`],
    ]);
  });

  it('passes config.example.yaml with real files at its paths (re-rooted into a temp dir), listing each', async () => {
    const root = join(dir, 'example-root');
    const example = parseYaml(await readFile('config.example.yaml', 'utf8'));
    await writeRealFiles(rerootConfig(example, root), join(dir, 'example-pki'));
    const r = await checkRerooted(example, root, 'etc/popgate/popgate.yaml');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const entries = pathEntries(example);
    expect(entries.length).toBeGreaterThan(2);
    for (const e of entries) expect(r.stdout, e.pattern).toContain(`: ${join(root, e.value)}: `);
    expect(r.stdout).toMatch(/listeners\[0\]\.tls\.keyFile: .*: private key \(ec\) matching the certificate; TLS context built/);
  });

  it('--schema-only passes config.example.yaml and every config under deploy/ exactly as shipped, reading no other file', async () => {
    const shipped = [resolve('config.example.yaml'), ...deployConfigs()];
    expect(shipped.map((f) => relative(ROOT, f)).sort()).toEqual([
      'config.example.yaml',
      'deploy/docker/popgate.yaml',
      'deploy/k8s/overlays/sidecar/popgate.yaml',
      'deploy/k8s/overlays/standalone-local-traffic/popgate.yaml',
      'deploy/k8s/overlays/standalone-proxy-protocol/popgate.yaml',
      'deploy/k8s/overlays/standalone-redis/popgate.yaml',
      'deploy/k8s/overlays/standalone/popgate.yaml',
      'deploy/systemd/popgate.yaml',
    ]);
    for (const file of shipped) {
      const r = await checkSchemaOnly(file);
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`${file}: OK (--schema-only`);
      // None of the files it names is on this machine: nothing but the config was read.
      const named = pathEntries(parseYaml(await readFile(file, 'utf8')));
      expect(named.length, file).toBeGreaterThan(0);
      for (const e of named) {
        expect(existsSync(e.value), `${file}: ${e.value} must not exist here for this test to mean anything`).toBe(false);
        expect(r.stdout, `${file}: lists ${e.pattern} as not checked`).toContain(`: ${e.value} (`);
      }
    }
  });

  it('--schema-only still resolves ${ENV}: a missing variable is reported, a given one used', async () => {
    const file = join(dir, 'env.yaml');
    await writeFile(
      file,
      `listeners: [{ kind: pop3s, port: "\${POP3S_PORT}", tls: { certFile: /nowhere/cert.pem, keyFile: /nowhere/key.pem } }]
auth: { userFile: /nowhere/users }
backend: { host: 127.0.0.1, login: { mode: master, user: popgate, passwordFile: /nowhere/master } }
`,
    );
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const missing = await runProgram(process.execPath, [CLI, 'check-config', '--schema-only', file], { env });
    expect(missing.code).toBe(78);
    expect(reportedProblems(missing.stderr)).toEqual([
      ['listeners[0].port', expect.stringMatching(/^environment variable POP3S_PORT is not set/)],
    ]);
    const given = await runProgram(process.execPath, [CLI, 'check-config', '--schema-only', file], { env: { ...env, POP3S_PORT: '1995' } });
    expect(given.code, given.stderr).toBe(0);
    expect(given.stdout).toContain('"port": 1995');
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
    for (const options of [[], ['--schema-only']]) {
      const r = await runProgram(process.execPath, [CLI, 'check-config', ...options, file]);
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(/listeners\[0\]\.port: .*number/);
      expect(r.stderr).toMatch(/listeners\[0\]\.tls\.keyfile: .*did you mean 'keyFile'/);
    }
  });
});

/** Every popgate config under deploy/ (a file named popgate.yaml). */
function deployConfigs(): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name === 'popgate.yaml') out.push(full);
    }
  };
  walk(DEPLOY);
  return out;
}

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

  it('refuses to start when files the config names are missing: exit 78, every one listed, nothing listens', async () => {
    const file = join(dir, 'missing-files.yaml');
    await writeFile(
      file,
      `listeners: [{ name: s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: gone/cert.pem, keyFile: gone/key.pem } }]
auth: { userFile: gone/users }
backend: { host: 127.0.0.1, port: ${backend.port}, login: { mode: mapped, secretsFile: gone/secrets } }
`,
    );
    const r = await runProgram(process.execPath, [CLI, 'serve', '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`popgate: not starting: invalid configuration in ${file} (4 problems):`);
    expect(reportedProblems(r.stderr)).toEqual([
      ['listeners[0].tls.certFile', `cannot read certificate file ${join(dir, 'gone/cert.pem')} (ENOENT)`],
      ['listeners[0].tls.keyFile', `cannot read private key file ${join(dir, 'gone/key.pem')} (ENOENT)`],
      ['auth.userFile', `cannot read user file ${join(dir, 'gone/users')} (ENOENT)`],
      ['backend.login.secretsFile', `cannot read backend secrets file ${join(dir, 'gone/secrets')} (ENOENT)`],
    ]);
    expect(logRecords(r.stdout).filter((x) => x.msg === 'listening')).toEqual([]);
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
