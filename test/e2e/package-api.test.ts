/**
 * The package's programmatic entry (`exports` in package.json → dist/index.js)
 * as another program imports it: `import { ... } from 'popgate'` resolves,
 * and a gateway started through it logs a client in to a backend and drains.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { LineClient } from '../helpers/line-client.js';

const ROOT = resolve('.');

/** Runs in a child Node from the repository root, so 'popgate' resolves through the package's own exports. */
const EMBEDDER = `
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as popgate from 'popgate';
const { parseConfigText, Gateway, createLogger, hashPassword, MINIMUM_NODE } = popgate;
const dir = process.env.DIR;
await writeFile(join(dir, 'users'), 'alice:' + (await hashPassword('alice-pw')) + '\\n');
const config = await parseConfigText(\`
listeners: [{ name: embedded, kind: pop3, address: 127.0.0.1, port: 0, allowPlaintextAuth: true }]
auth: { userFile: users, failureDelay: 0s }
backend: { host: 127.0.0.1, port: \${process.env.BACKEND_PORT}, login: { mode: master, method: auth-plain, user: popgate, password: master-pw } }
\`, { baseDir: dir, source: 'embedded' });
const gateway = await Gateway.start(config, createLogger({ level: 'silent' }));
process.stdout.write(JSON.stringify({ exports: Object.keys(popgate).sort(), minimum: MINIMUM_NODE, port: gateway.bound[0].port }) + '\\n');
process.stdin.resume();
process.stdin.on('end', async () => { await gateway.stop(1000); process.stdout.write('stopped\\n'); });
`;

describe("import from 'popgate'", () => {
  let backend: DemoBackend;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-api-'));
    backend = await startDemoBackend({
      users: { alice: 'backend-only' },
      masterUser: 'popgate',
      masterPassword: 'master-pw',
      messages: { alice: ['Subject: hi\r\n\r\nhello\r\n'] },
    });
  });
  afterAll(async () => {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves through package.json exports and runs a gateway that logs in and relays', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> };
    expect(pkg.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' });
    readFileSync(join(ROOT, 'dist/index.d.ts')); // the declared types exist after the build

    const child = spawn(process.execPath, ['--input-type=module', '-e', EMBEDDER], {
      cwd: ROOT,
      env: { ...process.env, DIR: dir, BACKEND_PORT: String(backend.port) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const first = await new Promise<string>((resolveLine, reject) => {
        const onData = (): void => {
          const nl = out.indexOf('\n');
          if (nl >= 0) resolveLine(out.slice(0, nl));
        };
        child.stdout.on('data', onData);
        void exited.then((code) => reject(new Error(`embedder exited ${code}: ${err}`)));
      });
      const info = JSON.parse(first) as { exports: string[]; minimum: string; port: number };
      expect(info.exports).toEqual(
        expect.arrayContaining(['ConfigError', 'Gateway', 'createLogger', 'hashPassword', 'loadConfig', 'parseConfigText', 'redactConfig']),
      );
      expect(info.minimum).toBe('22.12.0');

      const client = await LineClient.plain(info.port);
      expect(await client.line()).toMatch(/^\+OK/);
      expect(await client.cmd('USER alice')).toMatch(/^\+OK/);
      expect(await client.cmd('PASS alice-pw')).toMatch(/^\+OK/);
      expect(await client.cmd('STAT')).toBe('+OK 1 22');
      expect(await client.cmd('QUIT')).toMatch(/^\+OK/);
      await client.closed();
    } finally {
      child.stdin.end();
    }
    expect(await exited).toBe(0);
    expect(out).toContain('stopped\n');
  });
});
