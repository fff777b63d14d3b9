/**
 * The layering of src/ (docs/development.md, "Layers"), checked over the real
 * files: every relative import and re-export (type-only ones too: a cycle
 * through types still ties two folders' designs together) of every
 * src/**\/*.ts is read with the TypeScript scanner, and
 *
 * - every top-level unit of src/ (a folder, or a root module such as
 *   errors.ts) has a place in LAYERS: a new one fails until it is given one;
 * - imports go down the layers only: never to a higher layer, and within a
 *   layer only along the edges SIDEWAYS lists;
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

/**
 * Every top-level unit of src/, top layer first (docs/development.md draws the
 * same picture). A unit may import the layers below its own, never one above.
 */
const LAYERS: readonly (readonly string[])[] = [
  // The package entry: re-exports config, server, observability, auth and cli/runtime.
  ['index'],
  ['cli'],
  // `popgate demo` starts a Gateway (server); cli runs it. Its in-memory
  // backend (demo/backend.ts) imports nothing of popgate.
  ['demo'],
  ['server'],
  ['pop3', 'auth', 'kerberos', 'backend'],
  ['config', 'observability'],
  ['net', 'identity', 'errors', 'clock'],
];

/** The imports allowed between two units of the same layer, `from>to`; any other is refused. */
const SIDEWAYS = new Set([
  'auth>backend', // the backend endpoint an auth_http answer names
  'auth>kerberos', // the realm-password verifier and the PAM/KDC gate over the addon
  'backend>pop3', // the login machine reads backend replies with the POP3 line framer
  'net>errors',
]);

interface Import {
  /** Path relative to the repository root, e.g. src/auth/throttle/keys.ts. */
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

/** The layer of each unit: 0 for the top one. */
function layerIndex(layers: readonly (readonly string[])[]): Map<string, number> {
  return new Map(layers.flatMap((units, at) => units.map((u): [string, number] => [u, at])));
}

/**
 * The imports that go up the layers, sideways along an edge `sideways` does
 * not list, or from or to a unit that has no layer.
 */
function layerViolations(
  imports: readonly Import[],
  layers: readonly (readonly string[])[] = LAYERS,
  sideways: ReadonlySet<string> = SIDEWAYS,
): Import[] {
  const at = layerIndex(layers);
  return imports.filter((i) => {
    if (i.from === i.to) return false;
    const from = at.get(i.from);
    const to = at.get(i.to);
    if (from === undefined || to === undefined) return true;
    return to < from || (to === from && !sideways.has(`${i.from}>${i.to}`));
  });
}

/** The top-level units of src/: its folders and its root modules (`errors` for src/errors.ts). */
function srcUnits(): string[] {
  return readdirSync(SRC, { withFileTypes: true })
    .filter((e) => e.isDirectory() || (e.isFile() && e.name.endsWith('.ts')))
    .map((e) => e.name.replace(/\.ts$/, ''))
    .sort();
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

  it('places every unit of src/ in exactly one layer, and no unit that is gone', () => {
    const placed = LAYERS.flat();
    expect(placed.filter((u, i) => placed.indexOf(u) !== i), 'in two layers').toEqual([]);
    const units = srcUnits();
    expect(units.filter((u) => !placed.includes(u)), 'in src/ but in no layer: give it one in LAYERS').toEqual([]);
    expect(placed.filter((u) => !units.includes(u)), 'in LAYERS but not in src/').toEqual([]);
    for (const edge of SIDEWAYS) {
      const [from, to] = edge.split('>');
      const at = layerIndex(LAYERS);
      expect(at.get(from!) !== undefined && at.get(from!) === at.get(to!), `SIDEWAYS ${edge} joins one layer`).toBe(true);
    }
  });

  it('refuses imports up the layers, unlisted sideways ones and units with no layer', () => {
    const layers = [['top'], ['a', 'b'], ['low']];
    const sideways = new Set(['a>b']);
    const ok = [fake('top', 'a'), fake('top', 'low'), fake('a', 'low'), fake('a', 'b'), fake('a', 'a')];
    expect(layerViolations(ok, layers, sideways)).toEqual([]);
    const bad = [fake('low', 'a'), fake('a', 'top'), fake('b', 'a'), fake('new', 'low'), fake('top', 'new')];
    expect(layerViolations(bad, layers, sideways).map(show)).toEqual([
      "src/low/x.ts:1 '../a/y.js' (low -> a)",
      "src/a/x.ts:1 '../top/y.js' (a -> top)",
      "src/b/x.ts:1 '../a/y.js' (b -> a)",
      "src/new/x.ts:1 '../low/y.js' (new -> low)",
      "src/top/x.ts:1 '../new/y.js' (top -> new)",
    ]);
    // The real table: the config schema once imported the Kerberos principal mapper.
    expect(layerViolations([fake('config', 'kerberos'), fake('kerberos', 'config'), fake('config', 'identity')]).map(show)).toEqual([
      "src/config/x.ts:1 '../kerberos/y.js' (config -> kerberos)",
    ]);
  });

  it('imports only down the layers (or along a listed sideways edge)', () => {
    expect(layerViolations(imports).map(show)).toEqual([]);
  });

  it('has no folder that imports one importing it back', () => {
    expect(cycleImports(imports).map(show)).toEqual([]);
  });

  it('keeps src/net at the bottom: it imports no other popgate folder but errors.ts', () => {
    expect(imports.filter((i) => i.from === 'net' && !NET_MAY_IMPORT.has(i.to)).map(show)).toEqual([]);
  });
});
