/**
 * deploy/docker-entrypoint.sh, run with /bin/sh against this checkout: its
 * variables point it at the built CLI (POPGATE_NODE = this Node,
 * POPGATE_CLI = dist/cli/main.js), a config made from deploy/docker/popgate.yaml
 * (paths re-rooted into a temp dir holding a real test certificate, user file,
 * master password, a keytab made offline with ktutil and a krb5.conf;
 * listeners and the admin port moved to 127.0.0.1 port 0) and a temp replay
 * cache directory. The entrypoint runs the full check-config on it, which
 * loads every one of those files as serve does. The serve case also runs the image's HEALTHCHECK command
 * (taken from deploy/Dockerfile) against the live admin listener.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProgram, type RunResult } from '../helpers/clients.js';
import { freePort } from '../helpers/ports.js';
import {
  CLI,
  DEPLOY,
  ROOT,
  parseYaml,
  reportedProblems,
  requireBuiltCli,
  rerootConfig,
  stringifyYaml,
  writeFileMkdir,
  writeRealFiles,
  type Tree,
} from '../helpers/deploy.js';
import { waitFor } from '../helpers/wait.js';

const SCRIPT = join(DEPLOY, 'docker-entrypoint.sh');
const SH = '/bin/sh';
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let tmp: string;
let configFile: string;
let badConfigFile: string;
let rcacheDir: string;
let env: NodeJS.ProcessEnv;

function entrypoint(args: string[], extraEnv: NodeJS.ProcessEnv = {}, input?: string): Promise<RunResult> {
  return runProgram(SH, [SCRIPT, ...args], { env: { ...env, ...extraEnv }, input, timeoutMs: 30_000 });
}

/** deploy/docker/popgate.yaml on loopback ephemeral ports, every file created under `root`. */
async function makeConfig(root: string): Promise<Tree> {
  const config = parseYaml(await readFile(join(DEPLOY, 'docker', 'popgate.yaml'), 'utf8')) as Record<string, unknown>;
  for (const l of config.listeners as Array<Record<string, unknown>>) {
    l.address = '127.0.0.1';
    l.port = 0;
  }
  config.admin = { address: '127.0.0.1', port: 0 };
  const backend = config.backend as Record<string, unknown>;
  backend.host = '127.0.0.1';
  backend.port = await freePort(); // nothing listens: the gateway starts without its backend
  const rerooted = rerootConfig(config, root);
  const files = await writeRealFiles(rerooted, join(tmp, 'pki'));
  if (!files.rcacheDir) throw new Error('deploy/docker/popgate.yaml has no kerberos.rcacheDir');
  rcacheDir = files.rcacheDir;
  return rerooted;
}

interface LogRecord {
  msg?: string;
  kind?: string;
  port?: number;
}

function records(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogRecord);
}


function readGreeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no greeting within 10 s'));
    }, 10_000);
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        sock.end('QUIT\r\n');
        sock.destroy();
        resolve(buf.slice(0, end));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** The HEALTHCHECK CMD of deploy/Dockerfile (exec form). */
function healthcheckArgv(): string[] {
  const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
  const block = text.slice(text.search(/^HEALTHCHECK /m));
  const m = /CMD\s+(\[.*\])/.exec(block);
  if (!m) throw new Error('deploy/Dockerfile: no HEALTHCHECK CMD [...]');
  return JSON.parse(m[1]!) as string[];
}

beforeAll(async () => {
  requireBuiltCli();
  tmp = await mkdtemp(join(tmpdir(), 'popgate-entrypoint-'));
  const root = join(tmp, 'root');
  const config = await makeConfig(root);
  configFile = join(root, 'etc', 'popgate', 'popgate.yaml');
  await writeFileMkdir(configFile, stringifyYaml(config));
  // The same config with a misspelt key.
  const bad = structuredClone(config) as { listeners: Array<{ tls?: Record<string, unknown> }> };
  const tls = bad.listeners[0]!.tls!;
  tls.keyfile = tls.keyFile;
  delete tls.keyFile;
  badConfigFile = join(root, 'etc', 'popgate', 'bad.yaml');
  await writeFileMkdir(badConfigFile, stringifyYaml(bad));
  env = {
    ...process.env,
    POPGATE_NODE: process.execPath,
    POPGATE_CLI: CLI,
    POPGATE_CONFIG: configFile,
    POPGATE_RCACHE_DIR: rcacheDir,
  };
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('deploy/docker-entrypoint.sh', () => {
  it('is valid POSIX sh (sh -n)', async () => {
    const r = await runProgram(SH, ['-n', SCRIPT]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('passes `version` and `hash-password` through to the CLI', async () => {
    const v = await entrypoint(['version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(`popgate ${VERSION} (Node v${process.versions.node}, OpenSSL ${process.versions.openssl})`);
    const h = await entrypoint(['hash-password', '--user', 'bob'], {}, 'bob-password\n');
    expect(h.code).toBe(0);
    expect(h.stdout.trim()).toMatch(/^bob:\$scrypt\$/);
  });

  it('check-config without a file checks POPGATE_CONFIG', async () => {
    const r = await entrypoint(['check-config']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${configFile}: OK`);
  });

  it('runs any other command (e.g. a shell for debugging)', async () => {
    const r = await entrypoint(['echo', 'hello from the image']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello from the image\n');
  });

  it('refuses to serve an invalid config: exit 78 with the checker\'s message', async () => {
    const r = await entrypoint([], { POPGATE_CONFIG: badConfigFile });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('invalid configuration');
    expect(r.stderr).toContain("listeners[0].tls.keyfile: unknown key (hint: did you mean 'keyFile'?");
    expect(r.stderr).toContain(`popgate-entrypoint: configuration check failed for ${badConfigFile} (exit 78); not starting`);
    expect(records(r.stdout).filter((x) => x.msg === 'listening')).toEqual([]);
  });

  it('checks the file given with serve --config, not POPGATE_CONFIG', async () => {
    const r = await entrypoint(['serve', '--config', badConfigFile]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`configuration check failed for ${badConfigFile}`);
  });

  it('refuses to serve when files the config names are unusable: exit 78, each listed (serve itself too, without the check)', async () => {
    const broken = parseYaml(await readFile(configFile, 'utf8')) as { listeners: Array<{ tls?: Record<string, unknown> }>; auth: Record<string, unknown> };
    const missingKey = join(tmp, 'missing', 'tls.key');
    const missingUsers = join(tmp, 'missing', 'users');
    broken.listeners[0]!.tls!.keyFile = missingKey;
    broken.auth.userFile = missingUsers;
    const brokenFile = join(tmp, 'root', 'etc', 'popgate', 'broken-files.yaml');
    await writeFileMkdir(brokenFile, stringifyYaml(broken));
    for (const skip of ['0', '1']) {
      const r = await entrypoint([], { POPGATE_CONFIG: brokenFile, POPGATE_SKIP_CHECK: skip });
      expect(r.code, `POPGATE_SKIP_CHECK=${skip}: ${r.stderr}`).toBe(78);
      expect(reportedProblems(r.stderr)).toEqual([
        ['listeners[0].tls.keyFile', `cannot read private key file ${missingKey} (ENOENT)`],
        ['auth.userFile', `cannot read user file ${missingUsers} (ENOENT)`],
      ]);
      expect(records(r.stdout).filter((x) => x.msg === 'listening'), 'nothing listens').toEqual([]);
      if (skip === '0') expect(r.stderr).toContain(`popgate-entrypoint: configuration check failed for ${brokenFile} (exit 78); not starting`);
    }
  });

  it('refuses to serve without the replay cache directory, saying what to mount', async () => {
    const missing = join(tmp, 'no-such-rcache');
    const r = await entrypoint(['serve'], { POPGATE_RCACHE_DIR: missing });
    expect(r.code).toBe(73);
    expect(r.stderr).toContain(`the Kerberos replay cache directory ${missing} does not exist`);
    expect(r.stderr).toContain('emptyDir');
    expect(r.stderr).toContain('POPGATE_RCACHE_DIR');
  });

  it('execs serve with a valid config: the gateway greets, the image HEALTHCHECK passes, SIGTERM exits 0', async () => {
    const child = spawn(SH, [SCRIPT], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    try {
      const pop3Port = await waitFor(`the pop3 listener (stdout: ${out} stderr: ${err})`, () =>
        records(out).find((x) => x.msg === 'listening' && x.kind === 'pop3')?.port,
      );
      const adminPort = await waitFor('the admin listener', () => records(out).find((x) => x.msg === 'admin listener ready')?.port);
      expect(err).toContain(`popgate-entrypoint: configuration ${configFile} is valid`);
      expect(records(out).some((x) => x.msg === 'listening' && x.kind === 'kpop')).toBe(true);

      // exec: the shell's process is now the gateway itself (tini's direct child in the image).
      const cmdline = (await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).split('\0');
      expect(cmdline.slice(0, 5)).toEqual([process.execPath, CLI, 'serve', '--config', configFile]);

      expect(await readGreeting(pop3Port)).toMatch(/^\+OK /);

      const [cmd, ...args] = healthcheckArgv();
      expect(cmd).toBe('node');
      const hc = await runProgram(process.execPath, args, { env: { ...process.env, POPGATE_ADMIN_PORT: String(adminPort) }, timeoutMs: 10_000 });
      expect(hc.code, hc.stderr).toBe(0);
      const closed = await freePort();
      const hcDown = await runProgram(process.execPath, args, { env: { ...process.env, POPGATE_ADMIN_PORT: String(closed) }, timeoutMs: 10_000 });
      expect(hcDown.code, 'the health check fails when nothing answers').toBe(1);
    } finally {
      child.kill('SIGTERM');
    }
    const { code, signal } = await exited;
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(records(out).some((x) => x.msg === 'signal received, draining')).toBe(true);
  }, 60_000);
});
