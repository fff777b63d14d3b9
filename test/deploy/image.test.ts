/**
 * The container image, built and run for real (issue 13): deploy/Dockerfile
 * built unchanged by podman from a stand-in of the official base image
 * (scripts/container-images.sh), then run as the docs say — read-only root,
 * /tmp a tmpfs, the config directory mounted read-only, as its non-root user
 * — in front of a POP3 backend on the host's loopback. Real clients (curl,
 * Python poplib) log in through it; SIGTERM to PID 1 drains and exits 0.
 *
 * podman has to work here (root, runc): when it does not, the build in
 * beforeAll fails with podman's own reason; nothing is skipped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { hashPassword } from '../../src/auth/index.js';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTestPki } from '../helpers/certs.js';
import { curlPop3, poplibFetch, runProgram, type RunResult } from '../helpers/clients.js';
import { freePort, podman, podmanOk } from '../helpers/podman.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = resolve('.');
const IMAGE = 'localhost/popgate:test';
const NAME = `popgate-image-test-${process.pid}`;
const MARKER = 'popgate-build-secret-marker';

const MESSAGE = [
  'From: Legacy <legacy@example.com>',
  'To: alice@example.com',
  'Subject: through the container',
  '',
  ...Array.from({ length: 200 }, (_, i) => `line ${i} ${randomBytes(12).toString('hex')}`),
  '.starts with a dot',
  '',
].join('\r\n');

describe('the container image (deploy/Dockerfile, built with podman)', () => {
  let dir: string;
  let backend: DemoBackend;
  let ports: { pop3s: number; pop3: number; admin: number };
  let caFile: string;
  let build: RunResult;

  beforeAll(async () => {
    build = await runProgram('bash', ['scripts/container-images.sh'], { timeoutMs: 15 * 60_000 });
    if (build.code !== 0) throw new Error(`scripts/container-images.sh failed (exit ${build.code}):\n${build.stderr}`);

    dir = await mkdtemp(join(tmpdir(), 'popgate-image-'));
    const etc = join(dir, 'etc');
    await mkdir(join(etc, 'tls'), { recursive: true });
    const pki = await makeTestPki(join(dir, 'pki'));
    caFile = pki.caFile;
    await writeFile(join(etc, 'tls/tls.crt'), await readFile(pki.certFile));
    await writeFile(join(etc, 'tls/tls.key'), await readFile(pki.keyFile));
    const master = randomBytes(12).toString('hex');
    await writeFile(join(etc, 'master-password'), `${master}\n`);
    await writeFile(join(etc, 'users'), `alice:${await hashPassword('alice-pw', { scryptLogN: 10 })}\n`);
    backend = await startDemoBackend({ users: { alice: 'not-used' }, masterUser: 'popgate', masterPassword: master, messages: { alice: [MESSAGE] } });

    // deploy/docker/popgate.yaml as shipped, but on loopback ports of this test
    // (the container shares the host's network) and without Kerberos, which
    // needs a keytab and a KDC of its own (the Kerberos tests have those).
    ports = { pop3s: await freePort(), pop3: await freePort(), admin: await freePort() };
    const config = YAML.parse(await readFile(join(ROOT, 'deploy/docker/popgate.yaml'), 'utf8')) as {
      listeners: Array<{ name: string; kind: string; address: string; port: number }>;
      admin: { address: string; port: number };
      auth: { mechanisms: string[] };
      kerberos?: unknown;
      backend: { host: string; port: number };
    };
    config.listeners = config.listeners.filter((l) => l.kind !== 'kpop');
    for (const l of config.listeners) {
      l.address = '127.0.0.1';
      l.port = l.kind === 'pop3s' ? ports.pop3s : ports.pop3;
    }
    config.admin = { address: '127.0.0.1', port: ports.admin };
    config.auth.mechanisms = config.auth.mechanisms.filter((m) => m !== 'GSSAPI');
    delete config.kerberos;
    config.backend.host = '127.0.0.1';
    config.backend.port = backend.port;
    await writeFile(join(etc, 'popgate.yaml'), YAML.stringify(config));
    // Readable by the image's uid 10001, as a mounted Secret would be.
    for (const f of ['tls/tls.crt', 'tls/tls.key', 'master-password', 'users', 'popgate.yaml']) await chmod(join(etc, f), 0o644);
    for (const d of [dir, etc, join(etc, 'tls')]) await chmod(d, 0o755);

    await podman(['rm', '--force', NAME]);
    await podmanOk([
      'run', '--detach', '--name', NAME, '--network', 'host',
      '--read-only', '--tmpfs', '/tmp', '--stop-timeout', '45',
      '--volume', `${etc}:/etc/popgate:ro`,
      IMAGE,
    ]);
    await waitFor('popgate ready in the container', async () => {
      const logs = await podman(['logs', NAME]);
      if (/start-up failed|not starting/.test(logs.stdout + logs.stderr)) throw new Error(`popgate did not start:\n${logs.stdout}${logs.stderr}`);
      return /"msg":"popgate ready"/.test(logs.stdout + logs.stderr) ? true : undefined;
    }, 60_000, 250);
  }, 20 * 60_000);

  afterAll(async () => {
    await podman(['rm', '--force', '--time', '0', NAME]);
    await backend?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs as its non-root user on a read-only root filesystem', async () => {
    expect((await podmanOk(['exec', NAME, 'id', '-u'])).trim()).toBe('10001');
    const write = await podman(['exec', NAME, 'sh', '-c', 'touch /app/written']);
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    // PID 1 is tini, which hands signals on to popgate.
    expect((await podmanOk(['exec', NAME, 'cat', '/proc/1/cmdline'])).split('\0')[0]).toBe('/usr/bin/tini');
  });

  it('logs a client in over pop3s (curl) and STLS (poplib) and relays the message byte for byte', async () => {
    const curl = await curlPop3({ url: `pop3s://localhost:${ports.pop3s}/1`, user: 'alice', password: 'alice-pw', caFile });
    expect(curl.code, curl.stderr).toBe(0);
    expect(curl.body.equals(Buffer.from(MESSAGE))).toBe(true);
    const pop = await poplibFetch({ host: 'localhost', port: ports.pop3, mode: 'stls', caFile, user: 'alice', password: 'alice-pw', retrieve: [1] });
    expect(pop.result.ok, JSON.stringify(pop.result)).toBe(true);
    expect(pop.result.messages?.[0]?.sha256).toBe(createHash('sha256').update(MESSAGE).digest('hex'));
  });

  it('accepts the mounted config in `popgate check-config` and passes its HEALTHCHECK', async () => {
    const check = await podman(['exec', NAME, 'popgate', 'check-config', '/etc/popgate/popgate.yaml']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/^\/etc\/popgate\/popgate\.yaml: OK/);
    expect(check.stdout).toContain('listeners[0].tls.keyFile: /etc/popgate/tls/tls.key');
    const inspect = JSON.parse(await podmanOk(['image', 'inspect', IMAGE])) as Array<{ Healthcheck?: { Test: string[] } }>;
    const test = inspect[0]?.Healthcheck?.Test ?? [];
    expect(test[0]).toBe('CMD');
    // The image's own HEALTHCHECK command, run inside the container; it asks POPGATE_ADMIN_PORT.
    const health = await podman(['exec', '--env', `POPGATE_ADMIN_PORT=${ports.admin}`, NAME, ...test.slice(1)]);
    expect(health.code, health.stderr).toBe(0);
  });

  it('holds no compiler, no npm cache and no build secret', async () => {
    const tools = await podman(['run', '--rm', '--user', '0', '--entrypoint', 'sh', IMAGE, '-c',
      'for t in gcc g++ cc c++ make python3 pkg-config; do command -v $t; done; ls -d /root/.npm /root/.npmrc /run/secrets 2>/dev/null; true']);
    expect(tools.code).toBe(0);
    expect(tools.stdout.trim()).toBe('');
    const archive = join(dir, 'image.tar');
    await podmanOk(['save', '--format', 'docker-archive', '--output', archive, IMAGE], 300_000);
    const grep = await runProgram('grep', ['-a', '-c', MARKER, archive]);
    expect(grep.stdout.trim()).toBe('0');
    const layers = (await runProgram('tar', ['-tf', archive])).stdout.split('\n').filter((f) => f.endsWith('.tar'));
    expect(layers.length).toBeGreaterThan(1);
    for (const layer of layers) {
      const files = await runProgram('bash', ['-c', `tar -xOf "$1" "$2" | tar -t`, 'list', archive, layer], { timeoutMs: 120_000 });
      expect(files.stdout.split('\n').filter((f) => /(^|\/)\.npmrc$|npm-ca\.crt$|^root\/\.npm\//.test(f)), layer).toEqual([]);
    }
  });

  it('drains on SIGTERM to PID 1 and exits 0, deleting nothing', async () => {
    const stop = await podman(['stop', '--time', '45', NAME], 90_000);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', NAME])).trim()).toBe('0');
    const logs = await podman(['logs', NAME]);
    expect(logs.stdout + logs.stderr).toMatch(/"msg":"signal received, draining".*"signal":"SIGTERM"|"signal":"SIGTERM".*"msg":"signal received, draining"/);
    expect(logs.stdout + logs.stderr).toMatch(/"msg":"stopped"/);
    expect(backend.mailbox('alice')).toHaveLength(1);
  });
});
