/**
 * docs/development.md's module map names every file under src/ exactly once,
 * and names no file that is gone: a module added, moved or removed without
 * its line in the map fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** The `- `src/...ts`: what it owns.` lines of the module map. */
function mapEntries(): Array<{ file: string; owns: string }> {
  const md = readFileSync(path.join(ROOT, 'docs/development.md'), 'utf8');
  const section = md.slice(md.indexOf('## Module map'));
  return [...section.matchAll(/^- `(src\/[^`]+\.ts)`: (.*)$/gm)].map((m) => ({ file: m[1]!, owns: m[2]! }));
}

describe('docs/development.md module map', () => {
  it('names every source file once, with what it owns, and nothing else', () => {
    const entries = mapEntries();
    const named = entries.map((e) => e.file);
    const duplicates = named.filter((f, i) => named.indexOf(f) !== i);
    expect(duplicates, 'named twice').toEqual([]);
    const files = sourceFiles('src').sort();
    expect(files.filter((f) => !named.includes(f)), 'in src/ but not in the map').toEqual([]);
    expect(named.filter((f) => !files.includes(f)), 'in the map but not in src/').toEqual([]);
    for (const e of entries) expect(e.owns.length, e.file).toBeGreaterThan(10);
  });
});
