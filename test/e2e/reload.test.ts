/**
 * Live reconfiguration of the shipped CLI (dist/cli/main.js serve): SIGHUP
 * re-reads the config file (new connections get the new settings, live
 * sessions keep going, an invalid file is refused), certificate files are
 * picked up from disk without a signal, and listener changes that need a
 * restart are logged and left alone.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { issueCert, makeTestPki, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { CLI, logRecords, startCli, type RunningCli } from '../helpers/cli-process.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

/** The serial number of the certificate a new TLS client sees. */
function peerSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolvePromise(serial);
    });
    s.once('error', reject);
  });
}

async function hashed(user: string, password: string): Promise<string> {
  const r = await runProgram(process.execPath, [CLI, 'hash-password', '--user', user], { input: `${password}\n` });
  if (r.code !== 0) throw new Error(`hash-password failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (scripts/test.sh does)`);
});

describe('popgate serve: live reload', () => {
  let pki: TestPki;
  let backend: DemoBackend;
  let dir: string;
  let configFile: string;
  let gw: RunningCli;
  let port: number;
  let session: LineClient;

  const config = (o: { greeting: string; userFile: string; port?: number }): string => `log: { level: info }
listeners:
  - name: s
    kind: pop3s
    address: 127.0.0.1
    port: ${o.port ?? 0}
    greeting: ${o.greeting}
    tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} }
auth: { userFile: ${o.userFile}, failureDelay: 0s }
backend:
  host: 127.0.0.1
  port: ${backend.port}
  login: { mode: master, method: auth-plain, user: popgate, passwordFile: master }
shutdown: { drainTimeout: 1s }
`;

  /** A new client: its greeting, and whether `user` / `password` logs in. */
  async function fresh(user: string, password: string): Promise<{ greeting: string; loggedIn: boolean }> {
    const c = await LineClient.tls(port, pki.caFile);
    try {
      const greeting = await c.line();
      c.send(`USER ${user}\r\nPASS ${password}\r\n`);
      await c.line();
      const reply = await c.line();
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      return { greeting, loggedIn: reply.startsWith('+OK') };
    } finally {
      c.end();
    }
  }

  async function stat(): Promise<string> {
    session.send('STAT\r\n');
    return session.line();
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-reload-'));
    pki = await makeTestPki(dir);
    backend = await startDemoBackend({
      users: { frank: 'backend-only', gina: 'backend-only-2' },
      masterUser: 'popgate',
      masterPassword: 'Master-S3cret',
      messages: {
        frank: [Buffer.from('Subject: one\r\n\r\nfirst\r\n')],
        gina: [Buffer.from('Subject: g\r\n\r\nhers\r\n')],
      },
    });
    await writeFile(join(dir, 'users'), await hashed('frank', 'Frank-front-pw'));
    await writeFile(join(dir, 'users2'), (await hashed('frank', 'Frank-front-pw')) + (await hashed('gina', 'Gina-front-pw')));
    await writeFile(join(dir, 'master'), 'Master-S3cret\n');
    configFile = join(dir, 'popgate.yaml');
    await writeFile(configFile, config({ greeting: 'First greeting', userFile: 'users' }));
    gw = startCli(['serve', '--config', configFile]);
    port = await waitFor('listening log line', () => {
      const rec = logRecords(gw.output()).find((r) => r.msg === 'listening');
      return rec ? Number(rec.port) : undefined;
    });
    // The live, relayed session every test checks on.
    session = await LineClient.tls(port, pki.caFile);
    expect(await session.line()).toMatch(/^\+OK First greeting/);
    session.send('USER frank\r\nPASS Frank-front-pw\r\n');
    expect(await session.line()).toBe('+OK');
    expect(await session.line()).toMatch(/^\+OK Logged in/);
  }, 60_000);

  afterAll(async () => {
    gw?.child.kill('SIGKILL');
    await backend?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('SIGHUP applies a changed config to new connections; the live session keeps working', async () => {
    expect(await fresh('gina', 'Gina-front-pw')).toEqual({ greeting: expect.stringMatching(/^\+OK First greeting/), loggedIn: false });
    await writeFile(configFile, config({ greeting: 'Second greeting', userFile: 'users2' }));
    gw.child.kill('SIGHUP');
    await waitFor('configuration reloaded', () => logRecords(gw.output()).find((r) => r.msg === 'configuration reloaded'));
    const after = await fresh('gina', 'Gina-front-pw');
    expect(after.greeting).toMatch(/^\+OK Second greeting/);
    expect(after.loggedIn).toBe(true);
    expect(await stat()).toMatch(/^\+OK 1 /);
  });

  it('SIGHUP with an invalid config logs the error with the path and keeps serving the old one', async () => {
    await writeFile(configFile, 'listeners: [{ kind: pop3s, port: "nine" }]\nbogus: 1\n');
    gw.child.kill('SIGHUP');
    const rec = await waitFor('refusal log line', () => logRecords(gw.output()).find((r) => String(r.msg).startsWith('config reload refused')));
    expect(rec.level).toBe('error');
    expect(String(rec.msg)).toContain(configFile);
    expect(rec.file).toBe(configFile);
    expect(String(rec.err)).toMatch(/listeners\[0\]\.port/);
    expect(String(rec.err)).not.toContain('\n');
    // Still the second config: its greeting and its user file.
    const after = await fresh('gina', 'Gina-front-pw');
    expect(after.greeting).toMatch(/^\+OK Second greeting/);
    expect(after.loggedIn).toBe(true);
    expect(await stat()).toMatch(/^\+OK 1 /);
    expect(gw.child.exitCode).toBeNull();
  });

  it('picks up a new certificate/key pair from disk without a signal', async () => {
    const ca = await readFile(pki.caFile);
    const before = await peerSerial(port, ca);
    const hupsBefore = logRecords(gw.output()).filter((r) => String(r.msg).startsWith('SIGHUP')).length;
    const next = await issueCert(pki, { name: 'server2', dns: ['localhost'], ips: ['127.0.0.1'], cn: 'renewed' });
    // Replace both files the way a renewal tool does: write elsewhere, rename over.
    await copyFile(next.keyFile, `${pki.keyFile}.new`);
    await copyFile(next.certFile, `${pki.certFile}.new`);
    await rename(`${pki.keyFile}.new`, pki.keyFile);
    await rename(`${pki.certFile}.new`, pki.certFile);
    const after = await waitFor(
      'the new certificate',
      async () => {
        const s = await peerSerial(port, ca);
        return s !== before ? s : undefined;
      },
      20_000,
    );
    expect(after).not.toBe(before);
    const rec = logRecords(gw.output()).find((r) => r.msg === 'TLS certificate reloaded' && r.reason === 'certificate files changed');
    expect(rec?.listener).toBe('s');
    expect(logRecords(gw.output()).filter((r) => String(r.msg).startsWith('SIGHUP'))).toHaveLength(hupsBefore);
    expect(await stat()).toMatch(/^\+OK 1 /);
  }, 30_000);

  it('a listener port change logs "restart needed" and the old port keeps serving', async () => {
    await writeFile(configFile, config({ greeting: 'Third greeting', userFile: 'users2', port: 1 }));
    gw.child.kill('SIGHUP');
    const rec = await waitFor('restart warning', () => logRecords(gw.output()).find((r) => String(r.msg).includes('restart needed')));
    expect(rec.level).toBe('warn');
    expect(rec.changes).toEqual(['listener s: port 0 -> 1']);
    // The listener is left as it was, greeting included; the rest of the config applies.
    const after = await fresh('gina', 'Gina-front-pw');
    expect(after.greeting).toMatch(/^\+OK Second greeting/);
    expect(after.loggedIn).toBe(true);
    expect(await stat()).toMatch(/^\+OK 1 /);

    gw.child.kill('SIGTERM');
    await session.closed(10_000);
    expect(await gw.exited).toBe(0);
  });
});
