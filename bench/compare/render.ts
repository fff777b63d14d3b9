/**
 * Re-renders bench/results/compare.md and compare-logins.svg from
 * bench/results/compare.json (the raw figures of the last comparison run),
 * e.g. after a change to the report's layout:
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/compare/render.js [compare.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../lib/process.js';
import { renderMarkdown, renderSvg, type CompareResults } from './report.js';

const dir = path.join(REPO_ROOT, 'bench/results');
const file = process.argv[2] ?? path.join(dir, 'compare.json');
const raw = JSON.parse(readFileSync(file, 'utf8')) as CompareResults & { startedAt: string };
const results: CompareResults = { ...raw, startedAt: new Date(raw.startedAt) };
writeFileSync(path.join(dir, 'compare.md'), renderMarkdown(results));
writeFileSync(path.join(dir, 'compare-logins.svg'), renderSvg(results));
process.stdout.write(`rendered ${path.relative(REPO_ROOT, path.join(dir, 'compare.md'))} and compare-logins.svg from ${file}\n`);
