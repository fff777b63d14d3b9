/**
 * deploy/monitoring, checked: the alert rules pass `promtool check rules` and
 * `promtool test rules` (deploy/monitoring/alerts.test.yaml, at least one
 * firing test per alert), the PrometheusRule extra carries the same groups,
 * the Grafana dashboard is an importable dashboard, docs/monitoring.md
 * explains every alert, and EVERY metric name the rules and the dashboard
 * query is one popgate really exports.
 *
 * That last check has no list of names of its own: it starts a real gateway
 * with its admin listener in front of the in-memory demo backend, logs in
 * once (and fails once) so the labelled series exist, scrapes /metrics and
 * takes every name it declares (`# TYPE` lines: a histogram's _bucket, _sum
 * and _count count as its name). The primary of `workers` > 1 serves the sum
 * of its workers' metrics plus its own (popgate_worker_restarts_total): those
 * come from the same createPrimaryMetrics() the primary uses. Names are
 * parsed out of the PromQL (strings, label matchers, ranges and grouping
 * clauses removed; identifiers followed by `(` are functions). `up` is the
 * one series Prometheus makes itself that the rules may use.
 *
 * promtool is Debian's `prometheus` package (scripts/setup.sh installs it).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { createPrimaryMetrics } from '../../src/observability/metrics.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { parsePrometheus } from '../helpers/prometheus.js';

const MONITORING = resolve('deploy/monitoring');
const RULES = join(MONITORING, 'popgate.rules.yaml');
const RULE_TESTS = join(MONITORING, 'alerts.test.yaml');
const DASHBOARD = join(MONITORING, 'popgate-dashboard.json');
const PROMETHEUS_RULE = resolve('deploy/k8s/extras/prometheusrule/prometheusrule.yaml');
const DOC = resolve('docs/monitoring.md');
const PROMTOOL = process.env.PROMTOOL ?? 'promtool';

/** Series Prometheus itself adds to every target (not popgate's to export). */
const PROMETHEUS_OWN = new Set(['up']);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}

const readYaml = <T>(path: string): T => YAML.parse(readFileSync(path, 'utf8'), { uniqueKeys: true }) as T;
const rules = (): Rule[] => readYaml<RuleFile>(RULES).groups.flatMap((g) => g.rules);
const alerts = (): string[] => rules().flatMap((r) => (r.alert ? [r.alert] : []));

function promtool(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) {
    throw new Error(`cannot run ${PROMTOOL} (${r.error.message}): it is in Debian's prometheus package; run scripts/setup.sh`);
  }
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

// ---------------------------------------------------------------------------
// Metric names in PromQL

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** The metric names a PromQL expression (or a Grafana query with $variables) selects. */
function metricNamesIn(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?[0-9a-z]+/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  // Numbers first, so that 1e3 or 0x1f never yield an identifier.
  for (const m of stripped.matchAll(/(0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, num, ident, call] = m;
    if (num !== undefined || ident === undefined || call !== undefined) continue;
    if (PROMQL_KEYWORDS.has(ident.toLowerCase())) continue;
    names.add(ident);
  }
  return names;
}

/** Every PromQL string of the dashboard: panel targets (rows' nested panels too) and query variables. */
function dashboardQueries(dashboard: Dashboard): string[] {
  const out: string[] = [];
  const panels = (list: readonly Panel[]): void => {
    for (const p of list) {
      for (const t of p.targets ?? []) out.push(t.expr);
      panels(p.panels ?? []);
    }
  };
  panels(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    // label_values(metric{...}, label): the metric; label_values(label) selects none.
    const lv = /^label_values\((.*),\s*[a-zA-Z_]\w*\s*\)$/.exec(q.trim());
    out.push(lv ? lv[1]! : q.replace(/^query_result\((.*)\)$/, '$1'));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Grafana dashboard

interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  __inputs?: Array<{ name: string; type: string; pluginId: string }>;
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating?: { list: Array<{ name: string; type: string; query: string | { query: string }; datasource?: { type: string; uid: string } }> };
}

const readDashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const DS = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };

// ---------------------------------------------------------------------------

describe('deploy/monitoring: alert rules', () => {
  it('pass `promtool check rules`', () => {
    const r = promtool(['check', 'rules', RULES]);
    expect(r.out).toContain('SUCCESS');
    expect(r.code, r.out).toBe(0);
  });

  it('pass `promtool test rules` (alerts.test.yaml), which has a firing test for every alert', () => {
    const r = promtool(['test', 'rules', RULE_TESTS]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
    const tests = readYaml<{ rule_files: string[]; tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }> }>(RULE_TESTS);
    expect(tests.rule_files.map((f) => resolve(MONITORING, f))).toEqual([RULES]);
    const firing = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => (a.exp_alerts ?? []).length > 0).map((a) => a.alertname)));
    expect([...firing].sort()).toEqual([...alerts()].sort());
  });

  it('are all alerts, uniquely named, each with a severity, a summary and a description', () => {
    const all = rules();
    expect(all.length).toBeGreaterThan(0);
    expect(new Set(alerts()).size).toBe(all.length);
    for (const r of all) {
      expect(['critical', 'warning'], `${r.alert}: severity`).toContain(r.labels?.severity);
      expect(r.annotations?.summary, `${r.alert}: summary`).toBeTruthy();
      expect(r.annotations?.description, `${r.alert}: description`).toBeTruthy();
    }
  });

  it('are exactly the groups of the PrometheusRule in deploy/k8s/extras/prometheusrule', () => {
    const pr = readYaml<{ apiVersion: string; kind: string; spec: RuleFile }>(PROMETHEUS_RULE);
    expect(pr.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(pr.kind).toBe('PrometheusRule');
    expect(pr.spec.groups).toEqual(readYaml<RuleFile>(RULES).groups);
  });

  it('each has a section in docs/monitoring.md', () => {
    const doc = readFileSync(DOC, 'utf8');
    for (const a of alerts()) expect(doc, a).toMatch(new RegExp(`^#{2,4} ${a}\\b`, 'm'));
  });
});

describe('deploy/monitoring: Grafana dashboard', () => {
  it('parses and is an importable Grafana dashboard with a ${DS_PROMETHEUS} datasource input', () => {
    const d = readDashboard();
    expect(typeof d.title).toBe('string');
    expect(d.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(Number.isInteger(d.schemaVersion)).toBe(true);
    expect((d as unknown as { id: unknown }).id, 'an exported dashboard has id null').toBeNull();
    expect(d.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    // No other ${...} input is referenced (import would leave it unresolved).
    const text = readFileSync(DASHBOARD, 'utf8');
    expect(new Set(text.match(/\$\{[A-Z_]+\}/g))).toEqual(new Set(['${DS_PROMETHEUS}']));
    for (const v of d.templating?.list ?? []) if (v.type === 'query') expect(v.datasource, v.name).toEqual(DS);
  });

  it('has rows and panels on the 24-column grid, unique ids, and Prometheus targets on every graph', () => {
    const d = readDashboard();
    const flat = d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    expect(new Set(flat.map((p) => p.id)).size).toBe(flat.length);
    const variables = new Set((d.templating?.list ?? []).map((v) => v.name));
    let graphs = 0;
    for (const p of flat) {
      expect(typeof p.title, String(p.id)).toBe('string');
      const g = p.gridPos;
      for (const k of ['h', 'w', 'x', 'y'] as const) expect(Number.isInteger(g[k]), `${p.title}: gridPos.${k}`).toBe(true);
      expect(g.x + g.w, `${p.title}: inside 24 columns`).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      graphs++;
      expect(['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'heatmap'], p.title).toContain(p.type);
      expect(p.datasource, p.title).toEqual(DS);
      expect(p.targets?.length, `${p.title}: targets`).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `${p.title}: refIds`).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.expr.trim(), `${p.title}: expr`).not.toBe('');
        for (const [, name] of t.expr.matchAll(/\$(?:\{)?([a-zA-Z_]\w*)/g)) {
          expect(variables.has(name!) || name!.startsWith('__'), `${p.title}: $${name} is no dashboard variable`).toBe(true);
        }
      }
    }
    expect(graphs).toBeGreaterThan(10);
    // No two panels overlap.
    const boxes = flat.map((p) => p.gridPos);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]!;
        const b = boxes[j]!;
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `${flat[i]!.title} overlaps ${flat[j]!.title}`).toBe(false);
      }
    }
  });
});

describe('metric names: a PromQL reader', () => {
  it('finds selected metrics, not functions, labels, variables, keywords or numbers', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (job, le) (rate(a_seconds_bucket{job=~"$job", x="b_total"}[$__rate_interval]))) > 1e3 ' +
          'and on (job) group_left (version) b_total offset 5m unless sum(c) without (instance) or d{code!~"e|f"} / ignoring(x) bool 2',
      ),
    ).toEqual(new Set(['a_seconds_bucket', 'b_total', 'c', 'd']));
  });
});

describe('every metric the rules and the dashboard use is one popgate exports', () => {
  let pki: TestPki | undefined;
  let backend: DemoBackend | undefined;
  let gw: TestGateway | undefined;
  /** Metric names as declared (# TYPE) by /metrics and by the primary of workers > 1. */
  const exported = new Map<string, string>();

  beforeAll(async () => {
    pki = await makeTempTestPki();
    backend = await startDemoBackend({
      users: { alice: 'unused' },
      masterUser: 'popgate',
      masterPassword: 'Demo-Master',
      messages: { alice: [Buffer.from('Subject: one\r\n\r\nmonitored\r\n')] },
    });
    gw = await startTestGateway({
      users: [{ name: 'alice', password: 'Alice-front-pw' }],
      backendPort: backend.port,
      certFile: pki.certFile,
      keyFile: pki.keyFile,
      login: '{ mode: master, method: auth-plain, user: popgate, password: Demo-Master }',
      admin: true,
    });
    // One failed and one good login, a message relayed: the labelled series exist.
    const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
    try {
      expect(await c.line()).toMatch(/^\+OK/);
      expect(await c.cmd('USER alice')).toBe('+OK');
      expect(await c.cmd('PASS wrong')).toMatch(/^-ERR/);
      expect(await c.cmd('USER alice')).toBe('+OK');
      expect(await c.cmd('PASS Alice-front-pw')).toMatch(/^\+OK/);
      expect((await c.cmdMultiline('RETR 1')).status).toMatch(/^\+OK/);
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
    } finally {
      c.destroy();
    }
    const res = await fetch(`http://127.0.0.1:${gw.adminPort()}/metrics`);
    expect(res.status).toBe(200);
    const single = parsePrometheus(await res.text());
    const primary = parsePrometheus(await createPrimaryMetrics().render([]));
    for (const [name, type] of [...single.type, ...primary.type]) exported.set(name, type);
    // The login happened: its series are there.
    expect(single.samples.some((s) => s.name === 'popgate_auth_attempts_total' && s.labels.outcome === 'success')).toBe(true);
    expect(single.samples.some((s) => s.name === 'popgate_auth_attempts_total' && s.labels.outcome === 'failure')).toBe(true);
    expect(single.samples.some((s) => s.name === 'popgate_backend_login_seconds_count' && s.value > 0)).toBe(true);
  });

  afterAll(async () => {
    await gw?.stop();
    await backend?.close();
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  /** A name as exported: itself, or a histogram's or summary's series (_bucket, _sum, _count). */
  function isExported(name: string): boolean {
    if (exported.has(name)) return true;
    const m = /^(.*)_(bucket|sum|count)$/.exec(name);
    if (!m) return false;
    const type = exported.get(m[1]!);
    return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
  }

  it('the alert rules', () => {
    const used = new Set(rules().flatMap((r) => [...metricNamesIn(r.expr)]));
    expect(used.size).toBeGreaterThan(5);
    const unknown = [...used].filter((n) => !PROMETHEUS_OWN.has(n) && !isExported(n));
    expect(unknown, `not in /metrics: ${unknown.join(', ')}`).toEqual([]);
  });

  it('the dashboard', () => {
    const used = new Set(dashboardQueries(readDashboard()).flatMap((q) => [...metricNamesIn(q)]));
    expect(used.size).toBeGreaterThan(10);
    const unknown = [...used].filter((n) => !PROMETHEUS_OWN.has(n) && !isExported(n));
    expect(unknown, `not in /metrics: ${unknown.join(', ')}`).toEqual([]);
  });

  it('and the dashboard shows every popgate_* metric (a new metric gets a panel)', () => {
    const used = new Set(
      dashboardQueries(readDashboard())
        .flatMap((q) => [...metricNamesIn(q)])
        .map((n) => (exported.has(n) ? n : n.replace(/_(bucket|sum|count)$/, ''))),
    );
    const missing = [...exported.keys()].filter((n) => n.startsWith('popgate_') && !used.has(n));
    expect(missing).toEqual([]);
  });
});
