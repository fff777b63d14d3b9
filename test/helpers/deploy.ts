/**
 * Shared by the deploy-*.test.ts files (deploy/: container image, Kubernetes,
 * systemd) and the CLI's e2e test: the built CLI, `popgate check-config`, and
 * re-rooting a popgate config so that a deployment's absolute paths
 * (/etc/popgate/..., /run/secrets/..., /var/lib/popgate/...) point into a
 * temp directory.
 *
 * What each kind of check claims:
 *  - `check-config --schema-only` on a shipped file, paths untouched: the
 *    file is valid as shipped (structure, types, ${ENV}, cross-field rules);
 *    no other file is read.
 *  - the full `check-config` on a RE-ROOTED copy: every path-valued key
 *    (`*File`, and PATH_FIELDS: kerberos.keytab, kerberos.rcacheDir,
 *    kerberos.krb5Config) holding an absolute path P becomes `<root>/P`, and
 *    the test puts files there (real ones with writeRealFiles, or the Pod's
 *    files for Kubernetes). That shows the deployment's files are loadable
 *    at those paths, not that they exist on a real host.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import YAML from 'yaml';
import { FREE_FORM_FIELDS, PATH_FIELDS } from '../../src/config/schema.js';
import { makeTestPki } from './certs.js';
import { runProgram, type RunResult } from './clients.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEPLOY = join(ROOT, 'deploy');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

/** Throws (never skips) when the CLI has not been built. */
export function requireBuiltCli(): void {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing: run "npm run build" first (scripts/test.sh and scripts/setup.sh do)`);
  }
}

/** `node dist/cli/main.js check-config [OPTIONS] FILE`. */
export function checkConfig(file: string, env: NodeJS.ProcessEnv = process.env, options: readonly string[] = []): Promise<RunResult> {
  return runProgram(process.execPath, [CLI, 'check-config', ...options, file], { env, timeoutMs: 30_000 });
}

/**
 * `check-config --schema-only FILE` with an environment of PATH alone, so
 * that no `${VAR}` of the config can be satisfied by the test runner's
 * environment.
 */
export function checkSchemaOnly(file: string): Promise<RunResult> {
  return checkConfig(file, { PATH: process.env.PATH ?? '/usr/bin:/bin' }, ['--schema-only']);
}

/**
 * The problems `check-config` printed (stderr), as [config path, message]
 * pairs: the lines under the "invalid configuration" heading.
 */
export function reportedProblems(stderr: string): Array<[string, string]> {
  return stderr
    .split('\n')
    .filter((l) => /^ {2}\S/.test(l))
    .map((l): [string, string] => {
      const m = /^ {2}([^:\s]+): (.*)$/.exec(l);
      return m ? [m[1]!, m[2]!] : ['', l.trim()];
    });
}

export type Tree = unknown;
type Segment = string | number;

/** One path-valued key of a config. */
export interface PathEntry {
  /** Dotted config path with `[]` for list items, e.g. `listeners[].tls.certFile`. */
  readonly pattern: string;
  /** The key itself (`certFile`, `keytab`, `rcacheDir`, ...). */
  readonly key: string;
  readonly value: string;
  readonly holder: Record<string, unknown>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function patternOf(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += '[]';
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** Every path-valued key of a parsed config (as the loader sees them: `*File` and PATH_FIELDS). */
export function pathEntries(tree: Tree): PathEntry[] {
  const out: PathEntry[] = [];
  const walk = (v: unknown, path: Segment[]): void => {
    if (Array.isArray(v)) v.forEach((item, i) => walk(item, [...path, i]));
    else if (isRecord(v)) {
      if (FREE_FORM_FIELDS.includes(patternOf(path))) return;
      for (const [k, child] of Object.entries(v)) {
        const pattern = patternOf([...path, k]);
        const isPath = k.endsWith('File') || PATH_FIELDS.includes(pattern);
        if (isPath && typeof child === 'string') out.push({ pattern, key: k, value: child, holder: v });
        else walk(child, [...path, k]);
      }
    }
  };
  walk(tree, []);
  return out;
}

/** A deep copy of `tree` with every absolute path P rewritten to `<root>/P`. */
export function rerootConfig(tree: Tree, root: string): Tree {
  const copy = structuredClone(tree);
  for (const e of pathEntries(copy)) {
    if (isAbsolute(e.value)) e.holder[e.key] = join(root, e.value);
  }
  return copy;
}

export function parseYaml(text: string): Tree {
  return YAML.parse(text, { uniqueKeys: true }) as Tree;
}

export function stringifyYaml(tree: Tree): string {
  return YAML.stringify(tree);
}

export async function writeFileMkdir(file: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, data);
}

/** `shutdown.drainTimeout` of a raw config in seconds (default 30 s). */
export function drainTimeoutSeconds(tree: Tree): number {
  const shutdown = isRecord(tree) ? tree.shutdown : undefined;
  const raw = isRecord(shutdown) ? shutdown.drainTimeout : undefined;
  if (raw === undefined) return 30;
  return parseDurationSeconds(raw);
}

/** `30`, `30s`, `500ms`, `10m`, `1h`, `1h30m` -> seconds. */
export function parseDurationSeconds(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw !== 'string') throw new Error(`not a duration: ${String(raw)}`);
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  if (/^\d+(\.\d+)?$/.test(raw.trim())) return Number(raw);
  let total = 0;
  let rest = raw.trim();
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)\s*/.exec(rest);
    if (!m) throw new Error(`not a duration: ${raw}`);
    total += Number(m[1]) * (units[m[2] ?? 's'] ?? 1);
    rest = rest.slice(m[0].length);
  }
  return total;
}

export interface ListenerInfo {
  readonly name: string;
  readonly kind: string;
  readonly address: string;
  readonly port: number;
  readonly proxyProtocol?: unknown;
  readonly tls?: unknown;
}

/** The listeners of a raw config (kpop defaults to 1109, as the schema does). */
export function listenersOf(tree: Tree): ListenerInfo[] {
  const list = isRecord(tree) && Array.isArray(tree.listeners) ? (tree.listeners as unknown[]) : [];
  return list.filter(isRecord).map((l) => {
    const kind = String(l.kind);
    const port = typeof l.port === 'number' ? l.port : kind === 'kpop' ? 1109 : NaN;
    return {
      name: typeof l.name === 'string' ? l.name : `${kind}-${port}`,
      kind,
      address: typeof l.address === 'string' ? l.address : '0.0.0.0',
      port,
      proxyProtocol: l.proxyProtocol,
      tls: l.tls,
    };
  });
}

/** The admin section of a raw config (undefined when absent: no admin listener). */
export function adminOf(tree: Tree): { address: string; port: number } | undefined {
  const admin = isRecord(tree) ? tree.admin : undefined;
  if (!isRecord(admin)) return undefined;
  return {
    address: typeof admin.address === 'string' ? admin.address : '127.0.0.1',
    port: typeof admin.port === 'number' ? admin.port : 9110,
  };
}

export function get(tree: Tree, path: readonly Segment[]): unknown {
  let v: unknown = tree;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

/**
 * A temp directory for one test file: made (after checking the built CLI is
 * there) before its tests, removed after them. Call at module level.
 */
export function fileTempDir(prefix: string): () => string {
  let dir = '';
  beforeAll(async () => {
    requireBuiltCli();
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return () => {
    if (!dir) throw new Error('fileTempDir: used outside the tests');
    return dir;
  };
}

/** A keytab for `principals`, made offline with MIT ktutil (krb5-user, installed by scripts/setup.sh). */
export async function makeKeytab(file: string, principals: readonly string[]): Promise<void> {
  const script = principals.map((p) => `addent -password -p ${p} -k 1 -e aes256-cts-hmac-sha1-96\nservice-key-password\n`).join('') + `wkt ${file}\nquit\n`;
  const r = await runProgram('ktutil', [], { input: script, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`ktutil failed (exit ${r.code}): ${r.stderr}`);
  const check = await runProgram('klist', ['-k', file]);
  for (const p of principals) if (!check.stdout.includes(p)) throw new Error(`ktutil wrote no key for ${p}: ${check.stdout}${check.stderr}`);
}

/**
 * Real files at every path `config` names (its paths taken as they are:
 * re-root the config first): a test certificate and its key, a user file, a
 * master password, a keytab holding kerberos.servicePrincipals, a krb5.conf,
 * the replay cache directory. Throws for a kind of file it cannot make, so a
 * new key in a deploy config is noticed. Returns the replay cache directory.
 */
export async function writeRealFiles(config: Tree, pkiDir: string): Promise<{ rcacheDir: string | undefined }> {
  const pki = await makeTestPki(pkiDir);
  let rcacheDir: string | undefined;
  for (const e of pathEntries(config)) {
    await mkdir(dirname(e.value), { recursive: true });
    switch (e.key) {
      case 'certFile':
        await copyFile(pki.certFile, e.value);
        break;
      case 'keyFile':
        await copyFile(pki.keyFile, e.value);
        break;
      case 'userFile':
        await writeFileMkdir(e.value, 'alice:{PLAIN}alice-password\n');
        break;
      case 'passwordFile':
        await writeFileMkdir(e.value, 'master-password\n');
        break;
      case 'keytab':
        await makeKeytab(e.value, get(config, ['kerberos', 'servicePrincipals']) as string[]);
        break;
      case 'krb5Config':
        await writeFileMkdir(e.value, '[libdefaults]\n    default_realm = EXAMPLE.COM\n    rdns = false\n');
        break;
      case 'rcacheDir':
        await mkdir(e.value, { recursive: true });
        rcacheDir = e.value;
        break;
      default:
        throw new Error(`writeRealFiles: no test file for ${e.pattern}`);
    }
  }
  return { rcacheDir };
}

/** The full `popgate check-config` on `config` with its absolute paths moved under `root`, written to `root/relFile`. */
export async function checkRerooted(config: Tree, root: string, relFile: string): Promise<RunResult & { file: string }> {
  const file = join(root, relFile);
  await writeFileMkdir(file, stringifyYaml(rerootConfig(config, root)));
  return { ...(await checkConfig(file)), file };
}
