/**
 * The manual is README.md (the front page), one page per reader task in
 * docs/, and deploy/README.md. Links between them break silently when a
 * section moves or a heading is renamed, so: every relative link in them
 * points at a file that exists, every #anchor in a link to a markdown file is
 * a heading of that file (GitHub's slugs), and README.md links every docs page.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCS = readdirSync(path.join(ROOT, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => `docs/${f}`);
/** Repository-relative paths of the pages whose links are checked. */
const PAGES = ['README.md', ...DOCS, 'deploy/README.md', 'bench/README.md'];

function read(rel: string): string {
  return readFileSync(path.join(ROOT, rel), 'utf8');
}

function readPages(): Map<string, string> {
  return new Map(PAGES.map((p) => [p, read(p)]));
}

/** The lines of a markdown text with fenced code blocks blanked (line numbers kept). */
function outsideFences(md: string): string[] {
  let fence: string | undefined;
  return md.split('\n').map((line) => {
    const m = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (fence !== undefined) {
      if (m?.[1] && m[1][0] === fence[0] && m[1].length >= fence.length && m[2]?.trim() === '') fence = undefined;
      return '';
    }
    if (m?.[1]) {
      fence = m[1];
      return '';
    }
    return line;
  });
}

/**
 * GitHub's heading anchor: the heading's text (no markup) lowercased, every
 * character but letters, digits, underscores, hyphens and spaces dropped,
 * spaces turned into hyphens.
 */
function githubSlug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link or image: its text
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/`/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors a markdown file has: one per ATX heading (repeats get -1, -2, ...), plus <a id|name>. */
function anchorsOf(md: string): Set<string> {
  const anchors = new Set<string>();
  for (const line of outsideFences(md)) {
    const h = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (h?.[1] !== undefined) {
      const base = githubSlug(h[1]);
      let slug = base;
      for (let n = 1; anchors.has(slug); n++) slug = `${base}-${n}`;
      anchors.add(slug);
    }
    for (const a of line.matchAll(/<a\s[^>]*\b(?:id|name)="([^"]+)"/g)) if (a[1]) anchors.add(a[1]);
  }
  return anchors;
}

interface Link {
  readonly line: number;
  readonly target: string;
}

/** Inline links and images `[text](target)` and reference definitions `[x]: target`, outside code. */
function linksOf(md: string): Link[] {
  // Code spans blanked too (newlines kept), so `[0](x)` in code is not a link.
  const text = outsideFences(md)
    .join('\n')
    .replace(/`[^`]*`/g, (code) => code.replace(/[^\n]/g, ' '));
  const lineAt = (index: number): number => text.slice(0, index).split('\n').length;
  const links: Link[] = [];
  const inline = /\[(?:[^[\]]|\[[^[\]]*\])*\]\(\s*<?([^\s)>]*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g;
  for (const m of text.matchAll(inline)) links.push({ line: lineAt(m.index ?? 0), target: m[1] ?? '' });
  for (const m of text.matchAll(/^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?/gm)) links.push({ line: lineAt(m.index ?? 0), target: m[1] ?? '' });
  return links;
}

/** Where a relative link from `from` points (repository-relative), and its anchor; undefined for URLs. */
function resolveLink(from: string, target: string): { file: string; anchor?: string } | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) return undefined; // https:, mailto:, ...
  const hash = target.indexOf('#');
  const filePart = decodeURI(hash < 0 ? target : target.slice(0, hash));
  const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const file =
    filePart === ''
      ? from
      : filePart.startsWith('/')
        ? path.posix.normalize(filePart.slice(1)) // GitHub: relative to the repository root
        : path.posix.normalize(path.posix.join(path.posix.dirname(from), filePart));
  return anchor === undefined || anchor === '' ? { file } : { file, anchor };
}

/**
 * Every broken link of the given pages, as `page:line: target: why`. A linked
 * markdown file's headings are taken from `pages` when it is one of them (so
 * an edited copy is checked as edited), else from disk.
 */
function brokenLinks(pages: ReadonlyMap<string, string>): string[] {
  const anchorCache = new Map<string, Set<string>>();
  const anchors = (file: string): Set<string> => {
    let set = anchorCache.get(file);
    if (!set) {
      set = anchorsOf(pages.get(file) ?? read(file));
      anchorCache.set(file, set);
    }
    return set;
  };
  const problems: string[] = [];
  for (const [page, md] of pages) {
    for (const { line, target } of linksOf(md)) {
      const to = resolveLink(page, target);
      if (!to) continue;
      const where = `${page}:${line}: ${target}`;
      if (to.file === '..' || to.file.startsWith('../')) {
        problems.push(`${where}: points outside the repository`);
      } else if (!pages.has(to.file) && !existsSync(path.join(ROOT, to.file))) {
        problems.push(`${where}: no such file ${to.file}`);
      } else if (to.anchor !== undefined && to.file.endsWith('.md') && !anchors(to.file).has(to.anchor)) {
        problems.push(`${where}: no heading #${to.anchor} in ${to.file}`);
      }
    }
  }
  return problems;
}

describe('documentation links', () => {
  it('every relative link in README.md, docs/*.md and deploy/README.md points at an existing file and heading', () => {
    expect(DOCS.length).toBeGreaterThan(0);
    expect(brokenLinks(readPages())).toEqual([]);
  });

  it('README.md links every docs/*.md page', () => {
    const linked = new Set(
      linksOf(read('README.md'))
        .map((l) => resolveLink('README.md', l.target)?.file)
        .filter((f) => f !== undefined),
    );
    expect(DOCS.filter((page) => !linked.has(page))).toEqual([]);
  });

  it('reports a missing file, a renamed heading and a missing same-page anchor, and ignores links in code', () => {
    const pages = readPages();
    const readme = pages.get('README.md') ?? '';
    expect(readme).toContain('](docs/tls.md)');
    pages.set(
      'README.md',
      `${readme.replace('](docs/tls.md)', '](docs/tsl.md)')}
See [the replies](docs/operations.md#error-reply) and [this](#no-such-section).
Not links: \`[a](nowhere.md)\` and

\`\`\`md
[b](nowhere-either.md)
\`\`\`
`,
    );
    // A heading renamed on one page breaks the links to it from the others.
    const backends = pages.get('docs/backends.md') ?? '';
    expect(backends).toContain('\n## Logging in to the backend\n');
    pages.set('docs/backends.md', backends.replace('\n## Logging in to the backend\n', '\n## Logging in\n'));
    const problems = brokenLinks(pages);
    expect(problems.filter((p) => p.includes('no such file docs/tsl.md'))).toHaveLength(1);
    expect(problems.filter((p) => p.endsWith('no heading #error-reply in docs/operations.md'))).toHaveLength(1);
    expect(problems.filter((p) => p.endsWith('no heading #no-such-section in README.md'))).toHaveLength(1);
    expect(problems.some((p) => p.includes('#logging-in-to-the-backend: no heading #logging-in-to-the-backend in docs/backends.md'))).toBe(true);
    expect(problems.some((p) => p.includes('nowhere'))).toBe(false);
  });

  it("slugs headings as GitHub does, numbering repeats", () => {
    expect(githubSlug('External auth service (nginx `auth_http` compatible)')).toBe('external-auth-service-nginx-auth_http-compatible');
    expect(githubSlug('Brute-force protection (`auth.throttle`, on by default)')).toBe('brute-force-protection-auththrottle-on-by-default');
    expect(githubSlug("Migrating from nginx's mail proxy")).toBe('migrating-from-nginxs-mail-proxy');
    expect(githubSlug('Audit events: one `login` line per login attempt')).toBe('audit-events-one-login-line-per-login-attempt');
    expect([...anchorsOf('# Notes\n\n```sh\n# not a heading\n```\n\n## Notes\n### Notes ##\n')]).toEqual(['notes', 'notes-1', 'notes-2']);
  });
});

describe('documentation kept in step', () => {
  it('README.md and bench/README.md show the same headline benchmark figures as docs/performance.md', () => {
    const figures = (md: string): string => {
      const lines = md.split('\n');
      const start = lines.findIndex((l) => l.startsWith('Latest figures ('));
      expect(start).toBeGreaterThanOrEqual(0);
      let end = start + 2; // the sentence, a blank line, then the table
      while (lines[end]?.startsWith('|')) end++;
      expect(end - start).toBeGreaterThan(4);
      return lines.slice(start, end).join('\n');
    };
    expect(figures(read('README.md'))).toBe(figures(read('docs/performance.md')));
    expect(figures(read('bench/README.md'))).toBe(figures(read('docs/performance.md')));
  });
});
