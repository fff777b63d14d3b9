/**
 * deploy/Dockerfile, checked by parsing it (no Docker engine here, and hadolint
 * is not installed): stages, what each installs, the user, ports, entrypoint,
 * health check and that what it copies exists in this checkout after
 * `npm run build`. The container config deploy/docker/popgate.yaml, exactly as
 * shipped, must pass the real `popgate check-config --schema-only`. The
 * entrypoint script itself, and the full check-config with real files at the
 * config's paths, run in deploy-entrypoint.test.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  adminOf,
  checkSchemaOnly,
  DEPLOY,
  get,
  listenersOf,
  parseYaml,
  pathEntries,
  requireBuiltCli,
  ROOT,
} from '../helpers/deploy.js';

interface Instruction {
  readonly op: string;
  /** Everything after the instruction word, continuation lines joined. */
  readonly args: string;
  readonly line: number;
}

interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (comments dropped, `\` continuations joined). */
function parseDockerfile(text: string): { preamble: Instruction[]; stages: Stage[] } {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  let current = '';
  let start = 0;
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    if (current === '' && (trimmed === '' || trimmed.startsWith('#'))) return;
    if (current !== '' && trimmed.startsWith('#')) return; // comment inside a continued instruction
    if (current === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      current += `${trimmed.slice(0, -1)} `;
      return;
    }
    current += trimmed;
    const m = /^(\S+)\s*([\s\S]*)$/.exec(current);
    if (m) instructions.push({ op: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim(), line: start });
    current = '';
  });
  const preamble: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      stages.push({ base: m?.[1] ?? '', name: m?.[2], instructions: [] });
    } else if (stages.length === 0) preamble.push(ins);
    else stages[stages.length - 1]!.instructions.push(ins);
  }
  return { preamble, stages };
}

/** Packages named by `apt-get install` commands in RUN instructions. */
function aptInstalls(stage: Stage): { packages: string[]; commands: string[] } {
  const packages: string[] = [];
  const commands: string[] = [];
  for (const ins of stage.instructions.filter((i) => i.op === 'RUN')) {
    for (const cmd of ins.args.split(/&&|;/)) {
      const m = /apt-get\s+install\s+(.*)$/.exec(cmd.trim());
      if (!m) continue;
      commands.push(cmd.trim());
      for (const word of (m[1] ?? '').split(/\s+/)) if (word !== '' && !word.startsWith('-')) packages.push(word);
    }
  }
  return { packages, commands };
}

function runText(stage: Stage): string {
  return stage.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
}

function jsonArray(args: string): string[] {
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`not a JSON string array: ${args}`);
  return parsed as string[];
}

const DOCKERFILE = join(DEPLOY, 'Dockerfile');
const DOCKER_CONFIG = join(DEPLOY, 'docker', 'popgate.yaml');
const text = readFileSync(DOCKERFILE, 'utf8');
const { stages } = parseDockerfile(text);
const builder = stages.find((s) => s.name === 'builder');
const runtime = stages[stages.length - 1]!;
const dockerConfig = parseYaml(readFileSync(DOCKER_CONFIG, 'utf8'));

function runtimeOps(op: string): Instruction[] {
  return runtime.instructions.filter((i) => i.op === op);
}

/** `ENV A=1 B=2` of the runtime stage. */
function runtimeEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of runtimeOps('ENV')) for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  return env;
}

describe('deploy/Dockerfile', () => {
  it('has a builder stage and a runtime stage on Debian bookworm Node 24 LTS', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(builder).toBeDefined();
    expect(runtime).not.toBe(builder);
    const argDefault = /ARG NODE_IMAGE=(\S+)/.exec(text)?.[1];
    for (const s of stages) {
      const base = s.base === '${NODE_IMAGE}' ? argDefault : s.base;
      expect(base, `stage ${s.name}`).toMatch(/^node:24[.\d]*-bookworm(-slim)?$/);
    }
  });

  it('builder: installs the toolchain, libkrb5-dev and libpam0g-dev, runs npm ci, npm run build, npm prune --omit=dev', () => {
    const { packages } = aptInstalls(builder!);
    expect(packages).toEqual(expect.arrayContaining(['python3', 'make', 'g++', 'libkrb5-dev', 'libpam0g-dev', 'pkg-config']));
    const run = runText(builder!);
    expect(run).toMatch(/npm ci\b/);
    expect(run).toMatch(/npm run build\b/);
    expect(run).toMatch(/npm prune --omit=dev\b/);
    expect(run.indexOf('npm run build')).toBeLessThan(run.indexOf('npm prune'));
    // Every local COPY source of the builder exists in the checkout.
    for (const ins of builder!.instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      for (const src of words.slice(0, -1)) expect(existsSync(join(ROOT, src)), `COPY ${src} (line ${ins.line})`).toBe(true);
    }
  });

  it('runtime: only run-time libraries (no -dev packages, no compilers), --no-install-recommends, apt lists removed', () => {
    const { packages, commands } = aptInstalls(runtime);
    expect(packages.sort()).toEqual(['ca-certificates', 'libgssapi-krb5-2', 'libkrb5-3', 'libpam0g', 'tini']);
    for (const p of packages) {
      expect(p).not.toMatch(/-dev$/);
      expect(['gcc', 'g++', 'make', 'cpp', 'clang', 'build-essential', 'python3', 'pkg-config', 'node-gyp']).not.toContain(p);
    }
    for (const c of commands) expect(c).toContain('--no-install-recommends');
    expect(runText(runtime)).toContain('rm -rf /var/lib/apt/lists/*');
    expect(runText(runtime)).not.toMatch(/npm (ci|install)\b/);
  });

  it('runs as a numeric non-root user', () => {
    const users = runtimeOps('USER');
    expect(users.length).toBe(1);
    const user = users[0]!.args;
    expect(user).toMatch(/^\d+(:\d+)?$/);
    const [uid, gid] = user.split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    if (gid !== undefined) expect(gid).toBeGreaterThan(0);
    expect(runText(runtime)).toContain(`--uid ${uid}`);
  });

  it('EXPOSEs the listener ports and the admin port of deploy/docker/popgate.yaml (995, 110, 1109, 9110)', () => {
    const exposed = runtimeOps('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.replace(/\/tcp$/, '')));
    const configPorts = [...listenersOf(dockerConfig).map((l) => l.port), adminOf(dockerConfig)!.port];
    expect(exposed.sort((a, b) => a - b)).toEqual(configPorts.sort((a, b) => a - b));
    expect(exposed.sort((a, b) => a - b)).toEqual([110, 995, 1109, 9110]);
  });

  it('starts the entrypoint under tini, with serve as the default command', () => {
    const entry = runtimeOps('ENTRYPOINT');
    expect(entry.length).toBe(1);
    expect(jsonArray(entry[0]!.args)).toEqual(['/usr/bin/tini', '--', '/usr/local/bin/popgate-entrypoint']);
    expect(jsonArray(runtimeOps('CMD')[0]!.args)).toEqual(['serve']);
    const copy = runtimeOps('COPY').find((i) => i.args.endsWith('/usr/local/bin/popgate-entrypoint'));
    expect(copy?.args).toMatch(/--chmod=0?755 deploy\/docker-entrypoint\.sh /);
    expect(existsSync(join(DEPLOY, 'docker-entrypoint.sh'))).toBe(true);
  });

  it('has a HEALTHCHECK asking the admin port of the config for /healthz (Node, no curl)', () => {
    const hc = runtimeOps('HEALTHCHECK');
    expect(hc.length).toBe(1);
    const cmd = /CMD\s+(\[.*\])\s*$/.exec(hc[0]!.args)?.[1];
    expect(cmd).toBeDefined();
    const argv = jsonArray(cmd!);
    expect(argv[0]).toBe('node');
    expect(argv.join(' ')).toContain("path:'/healthz'");
    expect(argv.join(' ')).toContain(String(adminOf(dockerConfig)!.port));
    expect(argv.join(' ')).toContain("host:'127.0.0.1'");
    // 127.0.0.1 reaches the admin listener: it binds all addresses or loopback.
    expect(['0.0.0.0', '::', '127.0.0.1']).toContain(adminOf(dockerConfig)!.address);
  });

  it('copies from the builder what the repository layout has after npm run build (dist, the addon, node_modules)', () => {
    const copies = runtimeOps('COPY').filter((i) => i.args.includes('--from=builder'));
    const builderWorkdir = builder!.instructions.filter((i) => i.op === 'WORKDIR').map((i) => i.args).pop();
    expect(builderWorkdir).toBe('/src');
    const runtimeWorkdir = runtimeOps('WORKDIR').map((i) => i.args).pop();
    expect(runtimeWorkdir).toBe('/app');
    const sources: string[] = [];
    for (const ins of copies) {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const [src, dest] = [words[0]!, words[1]!];
      expect(src.startsWith('/src/'), src).toBe(true);
      const rel = src.slice('/src/'.length);
      sources.push(rel);
      expect(existsSync(join(ROOT, rel)), `${rel} (built by npm run build / npm ci)`).toBe(true);
      // Same layout under /app: the addon loader looks for native/build/Release/ beside package.json.
      expect(dest.replace(/^\.\//, '/app/').replace(/\/$/, '')).toBe(`/app/${rel}`);
    }
    expect(sources.sort()).toEqual(['dist', 'native/build/Release/popgate_krb5.node', 'node_modules', 'package.json']);
  });

  it('keeps the build context clean (Dockerfile.dockerignore) without excluding what the builder copies', () => {
    const ignore = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(ignore).toEqual(expect.arrayContaining(['**/node_modules', 'dist', 'native/build', '.git']));
    for (const ins of builder!.instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      for (const src of words.slice(0, -1)) {
        for (const pattern of ignore) {
          const p = pattern.replace(/^\*\*\//, '');
          expect(src === p || src.startsWith(`${p}/`), `${src} is excluded by ${pattern}`).toBe(false);
        }
      }
    }
  });

  it('is read-only-root friendly: the replay cache is a volume, the entrypoint knows where it is, TMPDIR is /tmp', () => {
    const env = runtimeEnv();
    const rcache = String(get(dockerConfig, ['kerberos', 'rcacheDir']));
    expect(env.POPGATE_RCACHE_DIR).toBe(rcache);
    expect(env.POPGATE_CONFIG).toBe('/etc/popgate/popgate.yaml');
    expect(env.POPGATE_CLI).toBe('/app/dist/cli/main.js');
    expect(env.TMPDIR).toBe('/tmp');
    expect(jsonArray(runtimeOps('VOLUME')[0]!.args)).toEqual([rcache]);
    expect(runText(runtime)).toContain(`chown 10001:10001 /var/lib/popgate ${rcache}`);
    expect(runtimeOps('STOPSIGNAL')[0]?.args).toBe('SIGTERM');
    expect(runtimeOps('LABEL').map((i) => i.args).join(' ')).toContain('org.opencontainers.image.title="popgate"');
  });

  it('deploy/docker/popgate.yaml, as shipped, passes popgate check-config --schema-only', async () => {
    for (const e of pathEntries(dockerConfig)) expect(e.value, e.pattern).toMatch(/^\//);
    requireBuiltCli();
    const r = await checkSchemaOnly(DOCKER_CONFIG);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${DOCKER_CONFIG}: OK (--schema-only`);
    // It lists the files it did not read: exactly the config's paths.
    for (const e of pathEntries(dockerConfig)) expect(r.stdout, e.pattern).toContain(`: ${e.value} (`);
  });
});
