/**
 * The folder layering of src/, checked over the real files: every relative
 * import and re-export (type-only ones too: a cycle through types still ties
 * two folders' designs together) of every src/**\/*.ts is read with the
 * TypeScript scanner, and
 *
 * - no folder may import one that imports it back, directly or through
 *   others (a folder-level cycle);
 * - src/net, the network primitives at the bottom, imports no other popgate
 *   folder (src/errors.ts aside).
 *
 * A failure lists the offending imports as `file:line 'specifier'`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve('src');
/** What src/net may import besides itself. */
const NET_MAY_IMPORT = new Set(['net', 'errors']);

interface Import {
  /** Path relative to the repository root, e.g. src/auth/throttle.ts. */
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  /** Top-level folder (or root module, e.g. `errors`) of the importer and of the imported module. */
  readonly from: string;
  readonly to: string;
}

/** `auth` for src/auth/x.ts, `errors` for src/errors.ts (imported as errors.js). */
function unitOf(absolute: string): string {
  const first = relative(SRC, absolute).split(sep)[0] ?? '';
  return first.replace(/\.[jt]s$/, '');
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.isFile() && e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import of every file under src (static, re-exports, dynamic import()). */
function srcImports(): Import[] {
  const out: Import[] = [];
  for (const file of tsFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const { importedFiles } = ts.preProcessFile(text, true, true);
    for (const ref of importedFiles) {
      if (!ref.fileName.startsWith('.')) continue; // node: builtins and npm packages
      const target = resolve(dirname(file), ref.fileName);
      if (relative(SRC, target).startsWith('..')) continue;
      out.push({
        file: relative(resolve('.'), file),
        line: text.slice(0, ref.pos).split('\n').length,
        specifier: ref.fileName,
        from: unitOf(file),
        to: unitOf(target),
      });
    }
  }
  return out;
}

/** The imports whose folder edge lies on a cycle: `to` reaches `from` again. */
function cycleImports(imports: readonly Import[]): Import[] {
  const edges = new Map<string, Set<string>>();
  for (const i of imports) {
    if (i.from === i.to) continue;
    const next = edges.get(i.from) ?? new Set<string>();
    next.add(i.to);
    edges.set(i.from, next);
  }
  const reaches = (start: string, goal: string): boolean => {
    const seen = new Set<string>();
    const stack = [start];
    while (stack.length > 0) {
      const at = stack.pop()!;
      if (at === goal) return true;
      if (seen.has(at)) continue;
      seen.add(at);
      stack.push(...(edges.get(at) ?? []));
    }
    return false;
  };
  return imports.filter((i) => i.from !== i.to && reaches(i.to, i.from));
}

function show(i: Import): string {
  return `${i.file}:${i.line} '${i.specifier}' (${i.from} -> ${i.to})`;
}

const fake = (from: string, to: string): Import => ({ file: `src/${from}/x.ts`, line: 1, specifier: `../${to}/y.js`, from, to });

describe('import layers', () => {
  const imports = srcImports();

  it('reads the real imports (the check is not vacuous)', () => {
    expect(imports.length).toBeGreaterThan(100);
    expect(imports.some((i) => i.from === 'server' && i.to === 'net')).toBe(true);
    expect(imports.some((i) => i.from === 'net' && i.to === 'errors')).toBe(true);
  });

  it('finds cycles of any length and nothing in a layered graph', () => {
    expect(cycleImports([fake('a', 'b'), fake('b', 'c')])).toEqual([]);
    expect(cycleImports([fake('a', 'b'), fake('b', 'a'), fake('a', 'c')]).map(show)).toEqual([
      "src/a/x.ts:1 '../b/y.js' (a -> b)",
      "src/b/x.ts:1 '../a/y.js' (b -> a)",
    ]);
    expect(cycleImports([fake('a', 'b'), fake('b', 'c'), fake('c', 'a'), fake('c', 'd')]).map((i) => `${i.from}>${i.to}`)).toEqual(['a>b', 'b>c', 'c>a']);
  });

  it('has no folder that imports one importing it back', () => {
    expect(cycleImports(imports).map(show)).toEqual([]);
  });

  it('keeps src/net at the bottom: it imports no other popgate folder but errors.ts', () => {
    expect(imports.filter((i) => i.from === 'net' && !NET_MAY_IMPORT.has(i.to)).map(show)).toEqual([]);
  });
});
