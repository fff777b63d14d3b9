/**
 * Which Node popgate runs on: the supported-version check main.ts applies,
 * kept in step with package.json `engines`, scripts/toolchain.sh and the
 * container image; the toolchain script's choice of Node; `popgate version`.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { MINIMUM_NODE, runtimeDescription, unsupportedNode } from '../../src/cli/runtime.js';

const run = promisify(execFile);
const ROOT = resolve('.');
const toolchain = readFileSync(join(ROOT, 'scripts/toolchain.sh'), 'utf8');
const pinned = /^POPGATE_NODE_VERSION=(\d+\.\d+\.\d+)$/m.exec(toolchain)?.[1];

describe('supported Node versions', () => {
  it('refuses Node 20 and 22.11, admits 22.12, 23 and 24', () => {
    expect(unsupportedNode('20.20.2')).toMatch(/needs Node\.js 22\.12\.0 or newer .*this is v20\.20\.2/);
    expect(unsupportedNode('v18.19.0')).toMatch(/this is v18\.19\.0/);
    expect(unsupportedNode('22.11.9')).toBeDefined();
    expect(unsupportedNode('22.12.0')).toBeUndefined();
    expect(unsupportedNode('23.0.0')).toBeUndefined();
    expect(unsupportedNode('24.22.3')).toBeUndefined();
  });

  it('this test run is on a supported Node (npm test puts Node 24 first on PATH on an older machine)', () => {
    expect(unsupportedNode(process.versions.node)).toBeUndefined();
  });

  it('one minimum everywhere: runtime.ts, package.json engines, scripts/toolchain.sh', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MINIMUM_NODE.replace(/\.0$/, '')}`);
    expect(/^POPGATE_NODE_MIN=(\S+)$/m.exec(toolchain)?.[1]).toBe(MINIMUM_NODE);
  });

  it('the toolchain pins a Node 24 LTS, the major the container image runs', () => {
    expect(pinned).toMatch(/^24\./);
    const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
    expect(/^ARG NODE_IMAGE=node:(\d+)-/m.exec(dockerfile)?.[1]).toBe(pinned?.split('.')[0]);
  });
});

describe('scripts/toolchain.sh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'popgate-toolchain-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Sources the script with a fake `node` reporting `version` first on PATH; returns what it chose. */
  async function choose(version: string): Promise<{ node: string; bin: string; nodedir: string }> {
    const shimDir = join(dir, version);
    rmSync(shimDir, { recursive: true, force: true });
    mkdirSync(shimDir, { recursive: true });
    const shim = join(shimDir, 'node');
    writeFileSync(shim, `#!/bin/sh\necho ${version}\n`);
    chmodSync(shim, 0o755);
    const script = 'set -e; unset npm_config_nodedir; source scripts/toolchain.sh; ' +
      'printf "%s\\n%s\\n%s\\n" "$(node -p process.versions.node)" "$POPGATE_NODE_BIN" "${npm_config_nodedir:-}"';
    const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH: `${shimDir}:/usr/local/bin:/usr/bin:/bin` };
    const { stdout } = await run('bash', ['-c', script], { cwd: ROOT, env, timeout: 120_000 });
    const [node = '', bin = '', nodedir = ''] = stdout.trim().split('\n');
    return { node, bin, nodedir };
  }

  it('on a machine whose node is 20, puts the pinned Node 24 with its headers first on PATH', async () => {
    const got = await choose('20.20.2');
    expect(got.node).toBe(pinned);
    expect(got.bin).toBe(join(ROOT, `.toolchain/node-v${pinned}-linux-${process.arch}/bin/node`));
    expect(got.nodedir).toBe(join(ROOT, `.toolchain/node-v${pinned}-linux-${process.arch}`));
    expect(readFileSync(join(got.nodedir, 'include/node/node_api.h'), 'utf8')).toContain('napi_module_register');
  });

  it('keeps a node on PATH that is new enough', async () => {
    const got = await choose('24.1.0');
    expect(got.node).toBe('24.1.0');
    expect(got.bin).toBe(join(dir, '24.1.0', 'node'));
    expect(got.nodedir).toBe('');
  });
});

describe('popgate version', () => {
  it('prints the Node and OpenSSL it runs on', async () => {
    const { stdout } = await run(process.execPath, [resolve('dist/cli/main.js'), 'version']);
    expect(stdout).toBe(`popgate ${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version} (Node v${process.versions.node}, OpenSSL ${process.versions.openssl})\n`);
    expect(runtimeDescription({ ...process.versions, node: '24.22.3', openssl: '3.5.9' })).toBe('Node v24.22.3, OpenSSL 3.5.9');
  });
});
