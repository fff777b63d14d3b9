import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { configLeafPaths, parseConfigText } from '../../src/config/index.js';

const EXAMPLE = fileURLToPath(new URL('../../config.example.yaml', import.meta.url));

/** Leaves that the example documents only in comments (alternatives and optional extras). */
const COMMENTED_ONLY = new Set([
  'listeners[].tls.ciphers',
  'backend.login.password',
  'backend.login.secretsFile',
]);

function hasPath(tree: unknown, path: string): boolean {
  const segments = path.split('.');
  const walk = (v: unknown, i: number): boolean => {
    if (i === segments.length) return true;
    const seg = segments[i] ?? '';
    const isArray = seg.endsWith('[]');
    const key = isArray ? seg.slice(0, -2) : seg;
    if (v === null || typeof v !== 'object' || !Object.prototype.hasOwnProperty.call(v, key)) return false;
    const child = (v as Record<string, unknown>)[key];
    if (isArray) return Array.isArray(child) && child.some((item) => walk(item, i + 1));
    return walk(child, i + 1);
  };
  return walk(tree, 0);
}

describe('config.example.yaml', () => {
  it('is valid against the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const cfg = await parseConfigText(text, { baseDir: '/etc/popgate', env: {}, source: EXAMPLE, readSecrets: false });
    expect(cfg.listeners.map((l) => [l.name, l.kind, l.port])).toEqual([
      ['pop3s', 'pop3s', 995],
      ['pop3', 'pop3', 110],
    ]);
    expect(cfg.backend.login).toMatchObject({ mode: 'master', passwordFile: '/run/secrets/master-password', password: '***' });
    expect(cfg.auth.userFile).toBe('/etc/popgate/users');
    expect(cfg.limits.idleTimeout).toBe(600_000);
  });

  it('documents every leaf key of the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const tree: unknown = YAML.parse(text);
    const leaves = configLeafPaths();
    // Sanity: the walk reaches into arrays and every login mode.
    expect(leaves).toEqual(expect.arrayContaining(['log.level', 'listeners[].tls.certFile', 'backend.login.secretsFile', 'implementation']));
    expect(leaves.length).toBeGreaterThan(30);

    const commentKeys = new Set(
      text
        .split('\n')
        .map((l) => /^\s*#+\s*([A-Za-z]+):/.exec(l)?.[1])
        .filter((k): k is string => k !== undefined),
    );
    const missing = leaves.filter((leaf) => {
      if (hasPath(tree, leaf)) return false;
      const key = leaf.split('.').pop() ?? leaf;
      return !(COMMENTED_ONLY.has(leaf) && commentKeys.has(key));
    });
    expect(missing).toEqual([]);
  });

  it('documents each key with a comment', async () => {
    const lines = (await readFile(EXAMPLE, 'utf8')).split('\n');
    // Every key line of the first listener and of the other sections follows a comment
    // (directly, or after other comment lines) or carries one itself.
    const undocumented: string[] = [];
    const seen = new Set<string>();
    lines.forEach((line, i) => {
      const m = /^\s*(?:- )?([A-Za-z]+):/.exec(line);
      if (!m?.[1] || seen.has(m[1])) return;
      seen.add(m[1]);
      const prev = lines[i - 1] ?? '';
      if (!line.includes('#') && !/^\s*#/.test(prev) && !/^\s*- #/.test(prev)) undocumented.push(m[1]);
    });
    expect(undocumented).toEqual([]);
  });
});
