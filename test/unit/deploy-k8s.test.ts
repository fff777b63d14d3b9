/**
 * deploy/k8s: every kustomization is rendered offline with `kubectl kustomize`
 * (kubectl from PATH, or $KUBECTL), every rendered object is validated with
 * kubernetes-models, and each overlay is checked for consistency between the
 * manifests and the popgate config they carry:
 *
 *  - the container runs `serve --config P` and P is a key of the mounted
 *    popgate-config ConfigMap;
 *  - every listener port and the admin port are containerPorts, and every
 *    Service targetPort resolves to one of popgate's containerPorts;
 *  - liveness /healthz and readiness /readyz on the config's admin port;
 *  - terminationGracePeriodSeconds > preStop sleep + shutdown.drainTimeout;
 *  - hardening (non-root, read-only root, no capabilities, seccomp), resources,
 *    Prometheus annotations;
 *  - THE POD'S FILE TREE: the popgate container's volumeMounts are built in a
 *    temp dir from the rendered ConfigMap, the placeholder Secrets of
 *    deploy/k8s/secrets-example and emptyDirs (items and paths as Kubernetes
 *    would lay them out). Every path in the config (certFile, keyFile,
 *    userFile, passwordFile, keytab, krb5Config, rcacheDir, ...) must exist in
 *    that tree (rcacheDir on a writable emptyDir);
 *  - the overlay's popgate.yaml, exactly as shipped, passes the real
 *    `popgate check-config --schema-only` (dist/cli/main.js: `npm run build`
 *    first); and the full `popgate check-config` on the Pod's file tree (the
 *    config's absolute paths re-rooted into the temp dir) loads every file and
 *    refuses exactly the placeholder contents of secrets-example (certificate,
 *    key, keytab): no file is missing or unreadable at the path the config
 *    names.
 *
 * The kustomizations must also render with kustomize v2.0.3 (Debian's kubectl
 * 1.20, what scripts/setup.sh installs when kubectl is missing): a static check
 * keeps them to fields v2.0.3 knows. With POPGATE_KUBECTL_LEGACY=/path/to/kubectl
 * (e.g. kubectl 1.20 unpacked from Debian's kubernetes-client) the first test
 * also renders with it and compares the objects (ConfigMap hash suffixes and
 * empty label/annotation maps aside).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ConfigMap,
  Secret,
  Service,
  type IConfigMap,
  type IContainer,
  type IPodSpec,
  type ISecret,
  type IService,
} from 'kubernetes-models/v1';
import {
  adminOf,
  checkRerooted,
  checkSchemaOnly,
  DEPLOY,
  drainTimeoutSeconds,
  get,
  listenersOf,
  parseYaml,
  pathEntries,
  reportedProblems,
  requireBuiltCli,
  writeFileMkdir,
  type Tree,
} from '../helpers/deploy.js';

const K8S = join(DEPLOY, 'k8s');
const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const LEGACY_KUBECTL = process.env.POPGATE_KUBECTL_LEGACY;

/** Every kustomization under deploy/k8s (a new one must be added here, and so get checked). */
const KUSTOMIZATIONS = [
  'base',
  'overlays/sidecar',
  'overlays/standalone-common',
  'overlays/standalone',
  'overlays/standalone-redis',
  'overlays/standalone-proxy-protocol',
  'overlays/standalone-local-traffic',
  'secrets-example',
  'extras/servicemonitor',
  'extras/prometheusrule',
];
/** Shared pieces, not deployable: their popgate-config has krb5.conf only (the overlays add popgate.yaml). */
const PARTIAL = ['base', 'overlays/standalone-common'];
/** The deployable ones: each is a full popgate deployment. */
const OVERLAYS = [
  'overlays/sidecar',
  'overlays/standalone',
  'overlays/standalone-redis',
  'overlays/standalone-proxy-protocol',
  'overlays/standalone-local-traffic',
];
/** Replicas behind a LoadBalancer (overlays/standalone-common and what builds on it). */
const STANDALONE = ['overlays/standalone', 'overlays/standalone-redis', 'overlays/standalone-proxy-protocol', 'overlays/standalone-local-traffic'];
/** The standalone variants whose load balancer sends PROXY headers. */
const PROXY_PROTOCOL = ['overlays/standalone', 'overlays/standalone-redis', 'overlays/standalone-proxy-protocol'];
/** The namespace the NetworkPolicy admits to the admin port (networkpolicy.yaml, docs/kubernetes-traffic.md). */
const MONITORING_NAMESPACE = 'monitoring';

/** The image's user (deploy/Dockerfile: USER 10001:10001). */
const IMAGE_UID = 10001;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------
// Rendering

function findKustomizations(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findKustomizations(full));
    else if (entry.name === 'kustomization.yaml' || entry.name === 'kustomization.yml' || entry.name === 'Kustomization') {
      out.push(relative(K8S, dir));
    }
  }
  return out;
}

function render(kubectl: string, dir: string): K8sObject[] {
  const r = spawnSync(kubectl, ['kustomize', join(K8S, dir)], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`cannot run ${kubectl} kustomize ${dir}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${kubectl} kustomize ${dir} failed (exit ${r.status}):\n${r.stderr}`);
  return YAML.parseAllDocuments(r.stdout)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${dir}: rendered YAML does not parse: ${d.errors[0]?.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/** Objects compared across kustomize versions: sorted, hash suffixes and empty maps dropped. */
function normalizeForComparison(objects: readonly K8sObject[]): string[] {
  const text = JSON.stringify(objects, (key, value: unknown) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value).sort()) {
        const v = (value as Record<string, unknown>)[k];
        if ((k === 'labels' || k === 'annotations') && v !== null && typeof v === 'object' && Object.keys(v).length === 0) continue;
        out[k] = v;
      }
      return out;
    }
    return typeof value === 'string' ? value.replace(/^(popgate-[a-z-]+)-[a-z0-9]{10}$/, '$1-HASH') : value;
  });
  return (JSON.parse(text) as unknown[]).map((o) => JSON.stringify(o)).sort();
}

const rendered = new Map<string, K8sObject[]>();

function objectsOf(dir: string): K8sObject[] {
  const objs = rendered.get(dir);
  if (!objs) throw new Error(`${dir} was not rendered`);
  return objs;
}

function find<T>(dir: string, kind: string, name?: string): T[] {
  return objectsOf(dir).filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name)) as unknown as T[];
}

function one<T>(dir: string, kind: string, name?: string): T {
  const all = find<T>(dir, kind, name);
  if (all.length !== 1) throw new Error(`${dir}: expected one ${kind}${name ? ` ${name}` : ''}, found ${all.length}`);
  return all[0] as T;
}

// ---------------------------------------------------------------------------
// Validation with kubernetes-models

type ModelCtor = new (data: never) => { validate(): void };

const MODELS: Record<string, ModelCtor> = {
  'v1/ConfigMap': ConfigMap as unknown as ModelCtor,
  'v1/Secret': Secret as unknown as ModelCtor,
  'v1/Service': Service as unknown as ModelCtor,
  'apps/v1/Deployment': Deployment as unknown as ModelCtor,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as ModelCtor,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler as unknown as ModelCtor,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as unknown as ModelCtor,
};

/** ServiceMonitor (Prometheus Operator CRD; kubernetes-models has no schema for it): its required shape. */
function validateServiceMonitor(o: K8sObject): void {
  const spec = o.spec as { selector?: { matchLabels?: Record<string, string> }; endpoints?: Array<Record<string, unknown>> } | undefined;
  if (!spec?.selector?.matchLabels || Object.keys(spec.selector.matchLabels).length === 0) throw new Error('ServiceMonitor: spec.selector.matchLabels is required');
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0) throw new Error('ServiceMonitor: spec.endpoints is required');
  for (const e of spec.endpoints) {
    if (typeof e.port !== 'string') throw new Error('ServiceMonitor: endpoints[].port must name a Service port');
    if (e.path !== undefined && (typeof e.path !== 'string' || !e.path.startsWith('/'))) throw new Error('ServiceMonitor: endpoints[].path must be an absolute path');
  }
}

/** PrometheusRule (Prometheus Operator CRD; no kubernetes-models schema either): its required shape. */
function validatePrometheusRule(o: K8sObject): void {
  const spec = o.spec as { groups?: Array<{ name?: unknown; rules?: Array<Record<string, unknown>> }> } | undefined;
  if (!Array.isArray(spec?.groups) || spec.groups.length === 0) throw new Error('PrometheusRule: spec.groups is required');
  const names = new Set<string>();
  for (const g of spec.groups) {
    if (typeof g.name !== 'string' || g.name === '') throw new Error('PrometheusRule: groups[].name is required');
    if (names.has(g.name)) throw new Error(`PrometheusRule: group ${g.name} twice`);
    names.add(g.name);
    if (!Array.isArray(g.rules) || g.rules.length === 0) throw new Error(`PrometheusRule: group ${g.name} has no rules`);
    for (const r of g.rules) {
      if ((typeof r.alert === 'string') === (typeof r.record === 'string')) throw new Error(`PrometheusRule: group ${g.name}: each rule is an alert or a record`);
      if (typeof r.expr !== 'string' || r.expr.trim() === '') throw new Error(`PrometheusRule: group ${g.name}: a rule without expr`);
    }
  }
}

function validateObject(o: K8sObject): void {
  if (typeof o.metadata?.name !== 'string' || o.metadata.name === '') throw new Error(`${o.kind}: metadata.name is missing`);
  const key = `${o.apiVersion}/${o.kind}`;
  if (key === 'monitoring.coreos.com/v1/ServiceMonitor') return validateServiceMonitor(o);
  if (key === 'monitoring.coreos.com/v1/PrometheusRule') return validatePrometheusRule(o);
  const Model = MODELS[key];
  if (!Model) throw new Error(`no kubernetes-models schema registered for ${key} (${o.metadata.name}): add it to MODELS`);
  new Model(o as never).validate();
}

// ---------------------------------------------------------------------------
// Pod helpers

function podSpecOf(dep: IDeployment): IPodSpec {
  const spec = dep.spec?.template.spec;
  if (!spec) throw new Error(`${dep.metadata?.name}: no pod spec`);
  return spec;
}

function popgateContainer(dep: IDeployment): IContainer {
  const c = podSpecOf(dep).containers.find((x) => x.name === 'popgate');
  if (!c) throw new Error(`${dep.metadata?.name}: no container named popgate`);
  return c;
}

function podLabels(dep: IDeployment): Record<string, string> {
  return dep.spec?.template.metadata?.labels ?? {};
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** A container port (name or number) -> number, or undefined when the container has no such port. */
function resolvePort(container: IContainer, port: string | number | undefined): number | undefined {
  const ports = container.ports ?? [];
  if (typeof port === 'number') return ports.some((p) => p.containerPort === port) ? port : undefined;
  return ports.find((p) => p.name === port)?.containerPort;
}

function preStopSleepSeconds(container: IContainer): number {
  const cmd = container.lifecycle?.preStop?.exec?.command;
  if (cmd && cmd[0] === 'sleep' && cmd.length === 2) return Number(cmd[1]);
  const sleep = (container.lifecycle?.preStop as { sleep?: { seconds?: number } } | undefined)?.sleep?.seconds;
  return sleep ?? 0;
}

/** `--config P` (or `-c P`, `--config=P`) in the container's args. */
function configArg(container: IContainer): string | undefined {
  const args = container.args ?? [];
  for (let i = 0; i < args.length; i += 1) {
    const a = args[i] ?? '';
    if ((a === '--config' || a === '-c') && i + 1 < args.length) return args[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

function under(path: string, dir: string): boolean {
  const d = dir.endsWith('/') ? dir : `${dir}/`;
  return path === dir || path.startsWith(d);
}

/** The volumeMount holding `path` (the longest mountPath prefix). */
function mountFor(container: IContainer, path: string): { name: string; mountPath: string; readOnly?: boolean; subPath?: string } | undefined {
  return (container.volumeMounts ?? [])
    .filter((m) => under(path, m.mountPath))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
}

function secretData(s: ISecret): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64');
  for (const [k, v] of Object.entries(s.stringData ?? {})) out[k] = Buffer.from(v, 'utf8');
  return out;
}

function configMapData(c: IConfigMap): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(c.data ?? {})) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(c.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

/** The placeholder Secrets of deploy/k8s/secrets-example, by name. */
function exampleSecrets(): Map<string, ISecret> {
  return new Map(find<ISecret>('secrets-example', 'Secret').map((s) => [s.metadata?.name ?? '', s]));
}

/**
 * Lays out the popgate container's volumeMounts under `root` as the kubelet
 * would: ConfigMaps from the rendered overlay, Secrets from secrets-example,
 * emptyDirs as empty directories. Returns the mount paths that are writable.
 */
async function buildPodFs(dir: string, dep: IDeployment, root: string): Promise<Set<string>> {
  const spec = podSpecOf(dep);
  const container = popgateContainer(dep);
  const secrets = exampleSecrets();
  const writable = new Set<string>();
  const writeItems = async (
    what: string,
    data: Record<string, Buffer>,
    items: ReadonlyArray<{ key: string; path: string }> | undefined,
    target: string,
  ): Promise<void> => {
    const list = items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const item of list) {
      const value = data[item.key];
      if (value === undefined) throw new Error(`${dir}: ${what} has no key ${item.key}`);
      await writeFileMkdir(join(target, item.path), value);
    }
  };
  const configMap = (name: string): IConfigMap => one<IConfigMap>(dir, 'ConfigMap', name);
  const secret = (name: string): ISecret => {
    const s = secrets.get(name);
    if (!s) throw new Error(`${dir}: Secret ${name} is mounted but not in deploy/k8s/secrets-example`);
    return s;
  };

  for (const m of container.volumeMounts ?? []) {
    if (m.subPath !== undefined) throw new Error(`${dir}: volumeMount ${m.name} uses subPath (it would not see Secret/ConfigMap updates)`);
    const vol = (spec.volumes ?? []).find((v) => v.name === m.name);
    if (!vol) throw new Error(`${dir}: volumeMount ${m.name} has no volume`);
    const target = join(root, m.mountPath);
    await mkdir(target, { recursive: true });
    if (vol.configMap) {
      await writeItems(`ConfigMap ${vol.configMap.name}`, configMapData(configMap(vol.configMap.name ?? '')), vol.configMap.items, target);
    } else if (vol.secret) {
      await writeItems(`Secret ${vol.secret.secretName}`, secretData(secret(vol.secret.secretName ?? '')), vol.secret.items, target);
    } else if (vol.projected) {
      for (const src of vol.projected.sources ?? []) {
        if (src.secret) await writeItems(`Secret ${src.secret.name}`, secretData(secret(src.secret.name ?? '')), src.secret.items, target);
        else if (src.configMap) await writeItems(`ConfigMap ${src.configMap.name}`, configMapData(configMap(src.configMap.name ?? '')), src.configMap.items, target);
        else throw new Error(`${dir}: projected volume ${vol.name} has a source this test does not lay out`);
      }
    } else if (vol.emptyDir) {
      if (m.readOnly !== true) writable.add(m.mountPath);
    } else {
      throw new Error(`${dir}: volume ${vol.name} is of a kind this test does not lay out`);
    }
  }
  return writable;
}

interface Overlay {
  dir: string;
  dep: IDeployment;
  container: IContainer;
  configPath: string;
  configText: string;
  config: Tree;
}

function overlay(dir: string): Overlay {
  const dep = one<IDeployment>(dir, 'Deployment', 'popgate');
  const container = popgateContainer(dep);
  const configPath = configArg(container);
  if (!configPath) throw new Error(`${dir}: the popgate container's args have no --config`);
  const mount = mountFor(container, configPath);
  if (!mount) throw new Error(`${dir}: ${configPath} is not under any volumeMount`);
  const vol = (podSpecOf(dep).volumes ?? []).find((v) => v.name === mount.name);
  const cmName = vol?.configMap?.name;
  if (!cmName) throw new Error(`${dir}: ${configPath} is not on a ConfigMap volume`);
  const cm = one<IConfigMap>(dir, 'ConfigMap', cmName);
  const key = relative(mount.mountPath, configPath);
  const item = vol.configMap?.items?.find((i) => i.path === key);
  const configText = cm.data?.[item ? item.key : key];
  if (configText === undefined) throw new Error(`${dir}: ConfigMap ${cmName} has no ${key}`);
  return { dir, dep, container, configPath, configText, config: parseYaml(configText) };
}

/** The NetworkPolicies that select the overlay's gateway Pods (they add up). */
function gatewayPolicies(dir: string, o: Overlay): INetworkPolicy[] {
  return find<INetworkPolicy>(dir, 'NetworkPolicy').filter((p) => selects(p.spec?.podSelector?.matchLabels, podLabels(o.dep)));
}

/** The popgate listeners a Service's ports lead to. */
function listenersBehind(o: Overlay, svc: IService): ReturnType<typeof listenersOf> {
  const ports = (svc.spec?.ports ?? []).map((p) => resolvePort(o.container, p.targetPort ?? p.port));
  return listenersOf(o.config).filter((l) => ports.includes(l.port));
}

// ---------------------------------------------------------------------------

let tmp: string;

beforeAll(async () => {
  const probe = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' });
  if (probe.error) {
    throw new Error(
      `${KUBECTL} not found (${probe.error.message}): the deploy/k8s tests render the overlays with \`kubectl kustomize\`. ` +
        "Run scripts/setup.sh: it installs Debian's kubernetes-client when kubectl is missing.",
    );
  }
  requireBuiltCli();
  for (const dir of KUSTOMIZATIONS) rendered.set(dir, render(KUBECTL, dir));
  tmp = await mkdtemp(join(tmpdir(), 'popgate-k8s-'));
}, 120_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('deploy/k8s: rendering and schema validation', () => {
  it('lists every kustomization, and each renders with kubectl kustomize', () => {
    expect(findKustomizations(K8S).sort()).toEqual([...KUSTOMIZATIONS].sort());
    for (const dir of KUSTOMIZATIONS) expect(objectsOf(dir).length, dir).toBeGreaterThan(0);
    if (LEGACY_KUBECTL) {
      for (const dir of KUSTOMIZATIONS) {
        expect(normalizeForComparison(render(LEGACY_KUBECTL, dir)), `${dir} with ${LEGACY_KUBECTL}`).toEqual(
          normalizeForComparison(objectsOf(dir)),
        );
      }
    }
  });

  it('uses only kustomization fields kustomize v2.0.3 (kubectl 1.20) also understands', () => {
    const allowed = new Set(['apiVersion', 'kind', 'resources', 'bases', 'patchesStrategicMerge', 'configMapGenerator', 'namespace', 'namePrefix', 'images', 'generatorOptions']);
    for (const dir of KUSTOMIZATIONS) {
      const k = parseYaml(readFileSync(join(K8S, dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
      for (const key of Object.keys(k)) expect(allowed.has(key), `${dir}: ${key} (not in kustomize v2.0.3, or deprecated in v5 in a way that changes output)`).toBe(true);
      // v2.0.3: `resources` are files only, directories go in `bases`.
      for (const r of (k.resources as string[] | undefined) ?? []) expect(statSync(join(K8S, dir, r)).isFile(), `${dir}: resources entry ${r} must be a file`).toBe(true);
      for (const b of (k.bases as string[] | undefined) ?? []) expect(existsSync(join(K8S, dir, b, 'kustomization.yaml')), `${dir}: bases entry ${b}`).toBe(true);
      for (const p of (k.patchesStrategicMerge as string[] | undefined) ?? []) expect(statSync(join(K8S, dir, p)).isFile(), `${dir}: patch ${p}`).toBe(true);
      for (const g of (k.configMapGenerator as Array<Record<string, unknown>> | undefined) ?? []) {
        for (const key of Object.keys(g)) expect(['name', 'behavior', 'files', 'literals'], `${dir}: configMapGenerator key ${key}`).toContain(key);
        // Files beside the kustomization (both versions refuse files outside its root).
        for (const f of (g.files as string[] | undefined) ?? []) expect(f, `${dir}: generator file ${f}`).toMatch(/^[^/=]+$/);
      }
    }
  });

  it('every rendered object validates against kubernetes-models (ServiceMonitor, PrometheusRule: their required shape)', () => {
    const problems: string[] = [];
    for (const dir of KUSTOMIZATIONS) {
      const seen = new Set<string>();
      for (const o of objectsOf(dir)) {
        const id = `${o.kind}/${o.metadata?.name}`;
        if (seen.has(id)) problems.push(`${dir}: ${id} twice`);
        seen.add(id);
        try {
          validateObject(o);
        } catch (err) {
          problems.push(`${dir}: ${id}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('the placeholder Secrets are clearly marked and hold every key the overlays mount', () => {
    const secrets = exampleSecrets();
    expect(secrets.size).toBeGreaterThan(0);
    for (const s of secrets.values()) {
      expect(s.metadata?.annotations?.['popgate.example.org/placeholder'], s.metadata?.name).toBe('true');
      for (const [k, v] of Object.entries(secretData(s))) expect(v.toString('utf8'), `${s.metadata?.name}.${k}`).toContain('REPLACE-ME');
    }
    for (const dir of OVERLAYS) {
      for (const vol of podSpecOf(one<IDeployment>(dir, 'Deployment', 'popgate')).volumes ?? []) {
        const refs = [
          ...(vol.secret ? [{ name: vol.secret.secretName ?? '', items: vol.secret.items }] : []),
          ...(vol.projected?.sources ?? []).flatMap((src) => (src.secret ? [{ name: src.secret.name ?? '', items: src.secret.items }] : [])),
        ];
        for (const ref of refs) {
          const s = secrets.get(ref.name);
          expect(s, `${dir}: Secret ${ref.name}`).toBeDefined();
          for (const item of ref.items ?? []) expect(Object.keys(secretData(s!)), `${dir}: Secret ${ref.name}`).toContain(item.key);
        }
      }
    }
    const tls = secrets.get('popgate-tls');
    expect(tls?.type).toBe('kubernetes.io/tls');
  });

  it('base (and standalone-common) is only a base: its popgate-config has krb5.conf, each overlay adds popgate.yaml', () => {
    for (const dir of PARTIAL) {
      const base = one<IConfigMap>(dir, 'ConfigMap');
      expect(Object.keys(base.data ?? {}), dir).toEqual(['krb5.conf']);
    }
    for (const dir of OVERLAYS) {
      const cm = one<IConfigMap>(dir, 'ConfigMap');
      expect(Object.keys(cm.data ?? {}).sort(), dir).toEqual(['krb5.conf', 'popgate.yaml']);
      expect(cm.metadata?.name, dir).toMatch(/^popgate-config-[a-z0-9]{10}$/);
    }
  });
});

describe.each(OVERLAYS)('deploy/k8s/%s', (dir) => {
  it('runs `serve --config P` where P is the popgate.yaml of the mounted ConfigMap (and POPGATE_CONFIG says so)', () => {
    const o = overlay(dir);
    expect(o.container.args?.[0]).toBe('serve');
    expect(o.configPath).toBe('/etc/popgate/popgate.yaml');
    expect(o.container.env?.find((e) => e.name === 'POPGATE_CONFIG')?.value).toBe(o.configPath);
    expect(o.configText).toBe(readFileSync(join(K8S, dir, 'popgate.yaml'), 'utf8'));
  });

  it('every listener port and the admin port are containerPorts, and Services target only popgate ports', () => {
    const o = overlay(dir);
    const ports = o.container.ports ?? [];
    const listeners = listenersOf(o.config);
    const admin = adminOf(o.config);
    expect(admin, 'the config needs an admin section for the probes').toBeDefined();
    expect(listeners.length).toBeGreaterThan(0);
    for (const l of listeners) {
      expect(ports.map((p) => p.containerPort), `${dir}: listener ${l.name}`).toContain(l.port);
      expect(['0.0.0.0', '::'], `${dir}: listener ${l.name} must listen on the Pod IP`).toContain(l.address);
    }
    expect(ports.find((p) => p.name === 'admin')?.containerPort).toBe(admin!.port);
    expect(['0.0.0.0', '::'], 'the kubelet probes the Pod IP').toContain(admin!.address);
    // No stale containerPort: each is a listener or the admin port.
    for (const p of ports) expect([...listeners.map((l) => l.port), admin!.port], `${dir}: containerPort ${p.name}`).toContain(p.containerPort);

    const labels = podLabels(o.dep);
    const services = find<IService>(dir, 'Service').filter((s) => selects(s.spec?.selector, labels));
    expect(services.map((s) => s.metadata?.name)).toContain('popgate');
    for (const svc of services) {
      for (const sp of svc.spec?.ports ?? []) {
        const target = resolvePort(o.container, sp.targetPort ?? sp.port);
        expect(target, `${dir}: Service ${svc.metadata?.name} port ${sp.name} -> ${String(sp.targetPort)}`).toBeDefined();
        expect(target, 'the admin port is not exposed by the client Service').not.toBe(admin!.port);
      }
    }
    // The client Service offers the standard ports.
    const svc = one<IService>(dir, 'Service', 'popgate');
    expect(Object.fromEntries((svc.spec?.ports ?? []).map((p) => [p.name, p.port]))).toEqual({ pop3s: 995, pop3: 110, kpop: 1109 });
  });

  it('probes /healthz (liveness) and /readyz (readiness) on the admin port of the config', () => {
    const o = overlay(dir);
    const admin = adminOf(o.config)!;
    const live = o.container.livenessProbe?.httpGet;
    const ready = o.container.readinessProbe?.httpGet;
    expect(live?.path).toBe('/healthz');
    expect(ready?.path).toBe('/readyz');
    expect(resolvePort(o.container, live?.port)).toBe(admin.port);
    expect(resolvePort(o.container, ready?.port)).toBe(admin.port);
    const ann = o.dep.spec?.template.metadata?.annotations ?? {};
    expect(ann['prometheus.io/scrape']).toBe('true');
    expect(ann['prometheus.io/port']).toBe(String(admin.port));
    expect(ann['prometheus.io/path']).toBe('/metrics');
  });

  it('terminationGracePeriodSeconds covers the preStop sleep and shutdown.drainTimeout with a margin', () => {
    const o = overlay(dir);
    const drain = drainTimeoutSeconds(o.config);
    const preStop = preStopSleepSeconds(o.container);
    const grace = podSpecOf(o.dep).terminationGracePeriodSeconds ?? 30;
    expect(preStop).toBeGreaterThan(0);
    expect(grace).toBeGreaterThanOrEqual(preStop + drain + 5);
  });

  it('is hardened: non-root uid of the image, read-only root, no capabilities, seccomp, limits, no token', () => {
    const o = overlay(dir);
    const pod = podSpecOf(o.dep);
    const sc = o.container.securityContext;
    expect(sc?.runAsNonRoot).toBe(true);
    expect(sc?.runAsUser).toBe(IMAGE_UID);
    expect(sc?.readOnlyRootFilesystem).toBe(true);
    expect(sc?.allowPrivilegeEscalation).toBe(false);
    expect(sc?.capabilities?.drop).toContain('ALL');
    expect(sc?.capabilities?.add ?? []).toEqual([]);
    expect(sc?.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(pod.securityContext?.fsGroup).toBe(IMAGE_UID);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks, 'a Service named popgate would inject POPGATE_* variables').toBe(false);
    for (const r of ['cpu', 'memory']) {
      expect(o.container.resources?.requests?.[r], `requests.${r}`).toBeDefined();
      expect(o.container.resources?.limits?.[r], `limits.${r}`).toBeDefined();
    }
  });

  it('every path in the config is inside the Pod: the files exist in the mounted volumes, rcacheDir on a writable emptyDir', async () => {
    const o = overlay(dir);
    const root = join(tmp, dir.replace(/\//g, '_'), 'paths');
    const writable = await buildPodFs(dir, o.dep, root);
    const entries = pathEntries(o.config);
    expect(entries.map((e) => e.pattern)).toEqual(expect.arrayContaining(['auth.userFile', 'kerberos.keytab', 'kerberos.rcacheDir', 'backend.login.passwordFile']));
    for (const e of entries) {
      expect(e.value, `${e.pattern} must be absolute`).toMatch(/^\//);
      const mount = mountFor(o.container, e.value);
      expect(mount, `${dir}: ${e.pattern} = ${e.value} is under no volumeMount of the popgate container`).toBeDefined();
      const st = await stat(join(root, e.value)).catch(() => undefined);
      expect(st, `${dir}: ${e.pattern} = ${e.value} does not exist in the Pod (volume items/paths)`).toBeDefined();
      if (e.key === 'rcacheDir') {
        expect(st!.isDirectory()).toBe(true);
        expect(writable.has(mount!.mountPath), `${dir}: rcacheDir must be on a writable emptyDir`).toBe(true);
        expect(o.container.env?.find((x) => x.name === 'POPGATE_RCACHE_DIR')?.value, 'the entrypoint checks this directory').toBe(e.value);
      } else {
        expect(st!.isFile(), `${e.pattern} is a file`).toBe(true);
        expect(mount!.readOnly, `${e.pattern}: secrets and config are mounted read-only`).toBe(true);
      }
    }
    const tmpMount = (o.container.volumeMounts ?? []).find((m) => m.mountPath === '/tmp');
    expect(tmpMount && writable.has('/tmp'), 'TMPDIR=/tmp is a writable emptyDir').toBe(true);
  });

  it('its popgate.yaml, exactly as shipped, passes `popgate check-config --schema-only`', async () => {
    const r = await checkSchemaOnly(join(K8S, dir, 'popgate.yaml'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('the full `popgate check-config` on the Pod\'s files (re-rooted) finds every file and refuses only the placeholder Secrets', async () => {
    const o = overlay(dir);
    const root = join(tmp, dir.replace(/\//g, '_'), 'check');
    await buildPodFs(dir, o.dep, root);
    const r = await checkRerooted(o.config, root, 'check/popgate.yaml');
    expect(r.code, r.stderr).toBe(78);
    const problems = reportedProblems(r.stderr);
    // The TLS Secret's placeholders on every TLS listener, and the keytab's: nothing else.
    const tlsListeners = listenersOf(o.config)
      .map((l, i) => ({ l, i }))
      .filter(({ l }) => l.kind !== 'kpop');
    expect(problems.map(([path]) => path).sort()).toEqual(
      [...tlsListeners.flatMap(({ i }) => [`listeners[${i}].tls.certFile`, `listeners[${i}].tls.keyFile`]), 'kerberos.keytab'].sort(),
    );
    for (const [path, message] of problems) {
      expect(message, `${path}: the file is there`).not.toMatch(/ENOENT|EACCES|EISDIR|not found|does not exist/);
      expect(message, path).toContain(root);
    }
    expect(problems.find(([p]) => p === 'listeners[0].tls.certFile')?.[1]).toMatch(/no PEM certificate/);
    expect(problems.find(([p]) => p === 'listeners[0].tls.keyFile')?.[1]).toMatch(/no PEM private key/);
    expect(problems.find(([p]) => p === 'kerberos.keytab')?.[1]).toMatch(/Unsupported key table format/);
  });
});

describe('deploy/k8s/overlays/sidecar', () => {
  const dir = 'overlays/sidecar';

  it('runs one replica with the legacy server on 127.0.0.1:110 in the Pod, reachable only through popgate', () => {
    const o = overlay(dir);
    expect(o.dep.spec?.replicas).toBe(1);
    const names = podSpecOf(o.dep).containers.map((c) => c.name);
    expect(names.sort()).toEqual(['legacy-pop3', 'popgate']);
    const legacy = podSpecOf(o.dep).containers.find((c) => c.name === 'legacy-pop3')!;
    expect(legacy.ports ?? [], 'the legacy server declares no ports').toEqual([]);
    expect(get(o.config, ['backend', 'host'])).toBe('127.0.0.1');
    const backendPort = (get(o.config, ['backend', 'port']) as number | undefined) ?? 110;
    expect(backendPort).toBe(110);
    // popgate's own pop3 listener cannot take 110 in the shared network namespace.
    for (const l of listenersOf(o.config)) expect(l.port, l.name).not.toBe(backendPort);
    // Kubernetes stops both containers at once: the backend must outlive the drain.
    const drain = drainTimeoutSeconds(o.config);
    expect(preStopSleepSeconds(legacy)).toBeGreaterThanOrEqual(preStopSleepSeconds(o.container) + drain);
    expect(preStopSleepSeconds(legacy)).toBeLessThan(podSpecOf(o.dep).terminationGracePeriodSeconds ?? 30);
    expect(find(dir, 'HorizontalPodAutoscaler')).toEqual([]);
  });
});

describe.each(STANDALONE)('deploy/k8s/%s (standalone)', (dir) => {
  it('runs several replicas behind a LoadBalancer Service', () => {
    const o = overlay(dir);
    expect(o.dep.spec?.replicas).toBeGreaterThanOrEqual(2);
    expect(one<IService>(dir, 'Service', 'popgate').spec?.type).toBe('LoadBalancer');
  });

  it('has a PodDisruptionBudget, an autoscaling/v2 HPA and NetworkPolicies that fit the Deployment', () => {
    const o = overlay(dir);
    const labels = podLabels(o.dep);
    const pdb = one<IPodDisruptionBudget>(dir, 'PodDisruptionBudget', 'popgate');
    expect(selects(pdb.spec?.selector?.matchLabels, labels)).toBe(true);
    expect(pdb.spec?.maxUnavailable ?? pdb.spec?.minAvailable).toBeDefined();

    const hpa = one<IHorizontalPodAutoscaler>(dir, 'HorizontalPodAutoscaler', 'popgate');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec?.scaleTargetRef).toMatchObject({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'popgate' });
    expect(hpa.spec?.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec?.maxReplicas).toBeGreaterThanOrEqual(hpa.spec?.minReplicas ?? 1);

    const policies = gatewayPolicies(dir, o);
    expect(policies.length).toBeGreaterThan(0);
    const ingressPorts = policies.flatMap((p) => (p.spec?.ingress ?? []).flatMap((r) => (r.ports ?? []).map((x) => x.port)));
    for (const l of listenersOf(o.config)) expect(ingressPorts, `${dir}: ingress to listener ${l.name}`).toContain(l.port);
    expect(ingressPorts).toContain(adminOf(o.config)!.port);
    const egressPorts = policies.flatMap((p) => (p.spec?.egress ?? []).flatMap((r) => (r.ports ?? []).map((x) => x.port)));
    expect(egressPorts).toContain(53);
    expect(egressPorts).toContain((get(o.config, ['backend', 'port']) as number | undefined) ?? 110);
  });

  it('NetworkPolicies restrict the admin port only: every listener port from anywhere, the admin port from the monitoring namespace alone', () => {
    const o = overlay(dir);
    const policies = gatewayPolicies(dir, o);
    expect(policies.some((p) => (p.spec?.policyTypes ?? []).includes('Ingress')), 'an Ingress policy selects the gateway Pods').toBe(true);
    const rules = policies.flatMap((p) => p.spec?.ingress ?? []);
    /** The rules admitting a container port (a rule without ports admits every port). */
    const admitting = (port: number): typeof rules =>
      rules.filter((r) => r.ports === undefined || r.ports.length === 0 || r.ports.some((x) => resolvePort(o.container, x.port) === port));
    const fromAnywhere = (r: (typeof rules)[number]): boolean => r.from === undefined || r.from.length === 0;
    for (const l of listenersOf(o.config)) {
      expect(admitting(l.port).some(fromAnywhere), `${dir}: listener ${l.name} (${l.port}) is open to every client`).toBe(true);
    }
    const admin = adminOf(o.config)!.port;
    const adminRules = admitting(admin);
    expect(adminRules.length, `${dir}: a rule admits the admin port`).toBeGreaterThan(0);
    for (const r of adminRules) {
      expect(r.from, `${dir}: every rule admitting the admin port ${admin} names its peers`).toEqual([
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': MONITORING_NAMESPACE } } },
      ]);
      // Such a rule opens the admin port only, not the mail ports to the monitoring namespace alone (they are open anyway).
      expect((r.ports ?? []).map((x) => resolvePort(o.container, x.port)), `${dir}: the monitoring rule`).toEqual([admin]);
    }
  });
});

describe.each(PROXY_PROTOCOL)('deploy/k8s/%s (PROXY protocol)', (dir) => {
  it('the LoadBalancer has a PROXY protocol annotation, and every listener behind it accepts PROXY headers from trustedNetworks', () => {
    const o = overlay(dir);
    const svc = one<IService>(dir, 'Service', 'popgate');
    expect(svc.metadata?.annotations?.['service.beta.kubernetes.io/aws-load-balancer-proxy-protocol']).toBe('*');
    const publicListeners = listenersBehind(o, svc);
    expect(publicListeners.map((l) => l.name).sort()).toEqual(['kpop', 'pop3', 'pop3s']);
    for (const l of publicListeners) {
      const pp = l.proxyProtocol as { trustedNetworks?: string[] } | undefined;
      expect(pp?.trustedNetworks?.length, `${dir}: listener ${l.name} accepts PROXY headers`).toBeGreaterThan(0);
      for (const n of pp!.trustedNetworks!) expect(['0.0.0.0/0', '::/0'], `${dir}: listener ${l.name} trusts every peer`).not.toContain(n);
    }
  });
});

describe('deploy/k8s/overlays/standalone-proxy-protocol', () => {
  const dir = 'overlays/standalone-proxy-protocol';

  it('the public listeners require a PROXY header from trustedNetworks; the in-cluster ones take none, behind their own ClusterIP Service', () => {
    const o = overlay(dir);
    const publicListeners = listenersBehind(o, one<IService>(dir, 'Service', 'popgate'));
    for (const l of publicListeners) {
      const pp = l.proxyProtocol as { trustedNetworks?: string[]; required?: boolean } | undefined;
      expect(pp?.required, `${dir}: listener ${l.name} requires the header`).toBe(true);
      expect(pp?.trustedNetworks?.length, `${dir}: listener ${l.name}`).toBeGreaterThan(0);
    }

    const internal = one<IService>(dir, 'Service', 'popgate-internal');
    expect(internal.spec?.type ?? 'ClusterIP').toBe('ClusterIP');
    expect(selects(internal.spec?.selector, podLabels(o.dep))).toBe(true);
    expect(Object.fromEntries((internal.spec?.ports ?? []).map((p) => [p.name, p.port]))).toEqual({ pop3s: 995, pop3: 110 });
    const inCluster = listenersBehind(o, internal);
    expect(inCluster.map((l) => l.kind).sort()).toEqual(['pop3', 'pop3s']);
    for (const l of inCluster) {
      expect(l.proxyProtocol, `${dir}: in-cluster listener ${l.name} takes no PROXY header`).toBeUndefined();
      expect(l.tls, `${dir}: in-cluster listener ${l.name} has TLS (pop3s, or STLS)`).toBeDefined();
      expect(publicListeners.map((x) => x.name), `${dir}: ${l.name} is not behind the public Service too`).not.toContain(l.name);
    }
    // Every listener is behind one of the two Services.
    expect([...publicListeners, ...inCluster].map((l) => l.name).sort()).toEqual(listenersOf(o.config).map((l) => l.name).sort());
  });
});

describe('deploy/k8s/overlays/standalone-local-traffic', () => {
  const dir = 'overlays/standalone-local-traffic';

  it('keeps the client address with externalTrafficPolicy: Local and no PROXY protocol anywhere', () => {
    const o = overlay(dir);
    const svc = one<IService>(dir, 'Service', 'popgate');
    expect(svc.spec?.type).toBe('LoadBalancer');
    expect(svc.spec?.externalTrafficPolicy).toBe('Local');
    // Left to Kubernetes (allocated from the NodePort range) unless pinned; when pinned, a node port.
    const hc = svc.spec?.healthCheckNodePort;
    if (hc !== undefined) expect(hc >= 30000 && hc <= 32767, `healthCheckNodePort ${hc}`).toBe(true);
    for (const key of Object.keys(svc.metadata?.annotations ?? {})) expect(key, 'no PROXY protocol annotation').not.toMatch(/proxy.?protocol/i);
    for (const l of listenersOf(o.config)) expect(l.proxyProtocol, `${dir}: listener ${l.name}`).toBeUndefined();
    expect(listenersBehind(o, svc).map((l) => l.name).sort()).toEqual(['kpop', 'pop3', 'pop3s']);
    expect(find<IService>(dir, 'Service').map((x) => x.metadata?.name), 'one Service serves clients outside and inside the cluster').toEqual(['popgate']);
  });
});

describe('deploy/k8s/overlays/standalone-redis', () => {
  const dir = 'overlays/standalone-redis';

  it('points auth.throttle at the Redis Service it deploys, and lets popgate (only) reach it', () => {
    const o = overlay(dir);
    expect(get(o.config, ['auth', 'throttle', 'store'])).toBe('redis');
    const url = new URL(String(get(o.config, ['auth', 'throttle', 'redis', 'url'])));
    const svc = one<IService>(dir, 'Service', url.hostname);
    const port = svc.spec?.ports?.find((p) => p.port === Number(url.port || 6379));
    expect(port, `Service ${url.hostname} port ${url.port}`).toBeDefined();
    const redis = one<IDeployment>(dir, 'Deployment', 'popgate-redis');
    expect(selects(svc.spec?.selector, podLabels(redis))).toBe(true);
    expect(selects(svc.spec?.selector, podLabels(o.dep)), 'the Redis Service must not select gateway Pods').toBe(false);
    const redisContainer = podSpecOf(redis).containers[0]!;
    const redisPort = resolvePort(redisContainer, port!.targetPort);
    expect(redisPort).toBe(6379);
    expect(redisContainer.securityContext?.runAsNonRoot).toBe(true);
    expect(redisContainer.securityContext?.readOnlyRootFilesystem).toBe(true);

    const policies = find<INetworkPolicy>(dir, 'NetworkPolicy');
    const gatewayEgress = policies
      .filter((p) => selects(p.spec?.podSelector?.matchLabels, podLabels(o.dep)))
      .flatMap((p) => p.spec?.egress ?? [])
      .filter((r) => (r.to ?? []).some((t) => selects(t.podSelector?.matchLabels, podLabels(redis))));
    expect(gatewayEgress.flatMap((r) => (r.ports ?? []).map((x) => x.port))).toContain(redisPort);
    const redisIngress = policies
      .filter((p) => selects(p.spec?.podSelector?.matchLabels, podLabels(redis)))
      .flatMap((p) => p.spec?.ingress ?? []);
    expect(redisIngress.length).toBeGreaterThan(0);
    for (const r of redisIngress) {
      expect((r.from ?? []).length, 'Redis ingress is limited to named peers').toBeGreaterThan(0);
      for (const f of r.from ?? []) expect(selects(f.podSelector?.matchLabels, podLabels(o.dep))).toBe(true);
    }
  });
});

describe('deploy/k8s/extras/servicemonitor', () => {
  const dir = 'extras/servicemonitor';

  it('scrapes /metrics from an admin Service that reaches the admin port of every overlay', () => {
    const sm = one<K8sObject>(dir, 'ServiceMonitor');
    const spec = sm.spec as { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path?: string }> };
    const svc = find<IService>(dir, 'Service').find((s) => selects(spec.selector.matchLabels, s.metadata?.labels ?? {}));
    expect(svc, 'the ServiceMonitor selects a Service of this kustomization').toBeDefined();
    for (const e of spec.endpoints) {
      expect(e.path ?? '/metrics').toBe('/metrics');
      const sp = svc!.spec?.ports?.find((p) => p.name === e.port);
      expect(sp, `Service port ${e.port}`).toBeDefined();
      for (const ov of OVERLAYS) {
        const o = overlay(ov);
        expect(selects(svc!.spec?.selector, podLabels(o.dep)), `${ov}: the admin Service selects the gateway Pods`).toBe(true);
        expect(resolvePort(o.container, sp!.targetPort), ov).toBe(adminOf(o.config)!.port);
      }
    }
  });
});

describe('deploy/k8s/extras/prometheusrule', () => {
  const dir = 'extras/prometheusrule';

  it('carries exactly the rule groups of deploy/monitoring/popgate.rules.yaml', () => {
    const rule = one<K8sObject>(dir, 'PrometheusRule');
    const plain = parseYaml(readFileSync(join(DEPLOY, 'monitoring', 'popgate.rules.yaml'), 'utf8')) as { groups: unknown[] };
    expect((rule.spec as { groups: unknown[] }).groups).toEqual(plain.groups);
  });
});
