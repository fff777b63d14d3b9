/**
 * Pieces for playing a rendered Kubernetes overlay under `podman kube play`
 * (test/deploy/standalone-pod.test.ts; the same steps as
 * test/deploy/sidecar-pod.test.ts): render, Secrets with real test content,
 * the projected secrets volume written out as a hostPath directory, the
 * legacy POP3 image with this run's users and seed mail, and a Kerberos realm
 * for the keytab — the last two made from what the overlay's popgate.yaml
 * says (overlayFacts), so that file is the one source of ports, master user
 * and service principal.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import YAML from 'yaml';
import { hashPassword } from '../../src/auth/index.js';
import { parseConfigText } from '../../src/config/load.js';
import { issueCert, makeTestPki } from './certs.js';
import { runProgram } from './clients.js';
import { startKdc, type KdcInstance } from './kdc.js';
import { podman, podmanOk } from './podman.js';
import { waitFor } from './wait.js';

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; [k: string]: unknown }; [k: string]: unknown };
export interface Probe { httpGet: { path: string; port: string | number }; [k: string]: unknown }
export interface Container {
  name: string;
  image: string;
  ports?: Array<{ name: string; containerPort: number; protocol?: string; hostPort?: number; hostIP?: string }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: unknown;
  securityContext?: { runAsUser?: number; capabilities?: { drop?: string[]; add?: string[] }; [k: string]: unknown };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  [k: string]: unknown;
}
export interface Volume {
  name: string;
  projected?: { defaultMode?: number; sources: Array<{ secret: { name: string; items: Array<{ key: string; path: string }> } }> };
  emptyDir?: unknown;
  configMap?: { name: string };
  hostPath?: { path: string; type?: string };
}
export interface PodSpec {
  containers: Container[];
  volumes: Volume[];
  securityContext?: { fsGroup?: number; [k: string]: unknown };
  hostAliases?: Array<{ ip: string; hostnames: string[] }>;
  [k: string]: unknown;
}
export interface Deployment extends K8sObject { spec: { replicas?: number; template: { spec: PodSpec; [k: string]: unknown }; [k: string]: unknown } }
export interface ConfigMap extends K8sObject { data: Record<string, string> }

/** `kubectl kustomize <dir>`, parsed. */
export async function renderOverlay(dir: string): Promise<K8sObject[]> {
  const render = await runProgram('kubectl', ['kustomize', dir]);
  if (render.code !== 0) throw new Error(`kubectl kustomize ${dir}: ${render.stderr}`);
  return YAML.parseAllDocuments(render.stdout).map((d) => d.toJS() as K8sObject).filter(Boolean);
}

export const deploymentOf = (objs: K8sObject[]): Deployment => {
  const d = objs.find((o) => o.kind === 'Deployment');
  if (!d) throw new Error('no Deployment');
  return d as Deployment;
};

export const containerOf = (objs: K8sObject[], name: string): Container => {
  const c = deploymentOf(objs).spec.template.spec.containers.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
};

/** Builds scripts/container-images.sh and scripts/legacy-pop3-image.sh (both cached). */
export async function buildTestImages(): Promise<void> {
  const build = await runProgram('bash', ['scripts/container-images.sh'], { timeoutMs: 15 * 60_000 });
  if (build.code !== 0) throw new Error(`scripts/container-images.sh failed (exit ${build.code}):\n${build.stderr}`);
  const legacy = await runProgram('bash', ['scripts/legacy-pop3-image.sh'], { timeoutMs: 15 * 60_000 });
  if (legacy.code !== 0) throw new Error(`scripts/legacy-pop3-image.sh failed (exit ${legacy.code}):\n${legacy.stderr}`);
}

/**
 * What the overlay's popgate.yaml says the Pod's other parts must agree with,
 * read through popgate's own config parser (defaults included, secrets not
 * read): the backend popgate logs in to, and the Kerberos service it accepts
 * tickets for. The legacy server's port and master user, and the test realm,
 * are made from these: popgate.yaml is their one source.
 */
export interface OverlayFacts {
  backend: { host: string; port: number; masterUser: string; separator: string };
  kerberos: { servicePrincipal: string; service: string; host: string; realm: string };
}

export async function overlayFacts(popgateYaml: string): Promise<OverlayFacts> {
  const config = await parseConfigText(popgateYaml, { baseDir: '/', readSecrets: false, env: {} });
  const { host, port, login } = config.backend;
  if (login.mode !== 'master' || login.method !== 'user-separator') {
    throw new Error(`overlayFacts: the legacy test server speaks USER <user><separator><master>; the overlay logs in with ${login.mode}/${'method' in login ? login.method : '-'}`);
  }
  const principal = config.kerberos?.servicePrincipals[0];
  const m = principal ? /^([^/@]+)\/([^/@]+)@(.+)$/.exec(principal) : null;
  if (!principal || !m) throw new Error(`overlayFacts: no service/host@REALM principal in kerberos.servicePrincipals (${String(principal)})`);
  return {
    backend: { host, port, masterUser: login.user, separator: login.separator },
    kerberos: { servicePrincipal: principal, service: m[1]!, host: m[2]!, realm: m[3]! },
  };
}

/**
 * Dovecot settings that must match popgate's backend section: the listener
 * port and the master-user separator (test/fixtures/legacy-pop3/dovecot.conf
 * includes them from /etc/dovecot/legacy-pop3/backend.conf).
 */
export function legacyBackendConf(backend: OverlayFacts['backend']): string {
  return [
    '# Written by test/helpers/kube-play.ts from the overlay\'s popgate.yaml (backend section).',
    `auth_master_user_separator = ${backend.separator}`,
    'service pop3-login {',
    '  inet_listener pop3 {',
    `    port = ${backend.port}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Builds `tag` FROM the legacy test image with Dovecot users (backend
 * passwords), the overlay's master user and backend port (legacyBackendConf)
 * and seed mail (Maildir per user); `doveconf -n` checks the result.
 */
export async function buildLegacyImage(opts: {
  dir: string; base: string; tag: string; backend: OverlayFacts['backend']; backendPasswords: Record<string, string>; master: string; mail: Record<string, Buffer[]>;
}): Promise<void> {
  const ctx = join(opts.dir, 'legacy-ctx');
  await mkdir(ctx, { recursive: true });
  const passwd = (name: string, pw: string): string => `${name}:{PLAIN.b64}${Buffer.from(pw).toString('base64')}::::::\n`;
  await writeFile(join(ctx, 'users.passwd'), Object.entries(opts.backendPasswords).map(([u, p]) => passwd(u, p)).join(''));
  await writeFile(join(ctx, 'master.passwd'), passwd(opts.backend.masterUser, opts.master));
  await writeFile(join(ctx, 'backend.conf'), legacyBackendConf(opts.backend));
  const base = Math.floor(Date.now() / 1000) - 86_400;
  let seq = 0;
  for (const [user, msgs] of Object.entries(opts.mail)) {
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(ctx, 'seed', user, sub), { recursive: true });
    for (const m of msgs) {
      seq++;
      await writeFile(join(ctx, 'seed', user, 'new', `${base + seq}.M${seq}P1Q${seq}.legacy`), m);
    }
  }
  await writeFile(join(ctx, 'Containerfile'), [
    `FROM ${opts.base}`,
    'COPY users.passwd master.passwd backend.conf /etc/dovecot/legacy-pop3/',
    'COPY seed /usr/local/share/legacy-pop3/seed',
    'RUN doveconf -n >/dev/null',
    '',
  ].join('\n'));
  await podmanOk(['build', '--pull=never', '--network', 'host', '--format', 'docker', '-t', opts.tag, ctx], 300_000);
}

/**
 * A Kerberos realm for a played Pod, made from the overlay's kerberos
 * section: a real MIT KDC on the host's loopback with the overlay's realm,
 * the service principal popgate.yaml names (random key, exported into the
 * keytab the Pod mounts) and users with passwords. popgate in the Pod never
 * talks to this KDC: ticket checks need only the keytab. Clients on the host
 * get their tickets here.
 */
export interface PodRealm {
  readonly kdc: KdcInstance;
  /** The keytab for the popgate-keytab Secret. */
  readonly keytab: Buffer;
  /** Client environment (KRB5_CONFIG, KRB5CCNAME) with a TGT for `user`. */
  clientEnv(user: string): Promise<Record<string, string>>;
}

export async function startPodRealm(facts: OverlayFacts['kerberos'], users: Record<string, string>): Promise<PodRealm> {
  const kdc = await startKdc({
    realm: facts.realm,
    principals: Object.entries(users).map(([name, password]) => ({ name, password })),
    services: [`${facts.service}/${facts.host}`],
  });
  try {
    const keytab = await readFile(await kdc.keytab(join(kdc.dir, 'pod.keytab'), [facts.servicePrincipal]));
    return {
      kdc,
      keytab,
      async clientEnv(user) {
        return { ...kdc.env, KRB5CCNAME: await kdc.kinit(user, users[user]!, join(kdc.dir, `cc-pod-${user}`)) };
      },
    };
  } catch (err) {
    await kdc.stop();
    throw err;
  }
}

/** A CRLF message (Dovecot sends it unchanged) with a dot-led line. */
export function testMessage(to: string, subject: string): Buffer {
  return Buffer.from([
    'From: Legacy <legacy@example.com>',
    `To: ${to}@example.com`,
    `Subject: ${subject}`,
    '',
    ...Array.from({ length: 120 }, (_, i) => `line ${i} ${randomBytes(12).toString('hex')}`),
    '.starts with a dot',
    '',
  ].join('\r\n'));
}

/**
 * The Secrets of deploy/k8s/secrets-example (names and keys) with real
 * content: a test PKI certificate for localhost and `serverName` (the host of
 * the Kerberos service principal, the name clients connect to), a users file,
 * the master password and the keytab. Throws if the names or keys differ from
 * the example.
 */
export async function secretContent(opts: {
  root: string; pkiDir: string; users: Record<string, string>; master: string; keytab: Buffer; serverName: string;
}): Promise<{ content: Record<string, Record<string, Buffer>>; caFile: string }> {
  const examples = YAML.parseAllDocuments(await readFile(join(opts.root, 'deploy/k8s/secrets-example/secrets.yaml'), 'utf8'))
    .map((d) => d.toJS() as K8sObject & { stringData: Record<string, string> });
  const pki = await makeTestPki(opts.pkiDir);
  const cert = await issueCert(pki, { name: 'pod', dns: ['localhost', opts.serverName], ips: ['127.0.0.1'] });
  const content: Record<string, Record<string, Buffer>> = {
    'popgate-tls': { 'tls.crt': await readFile(cert.certFile), 'tls.key': await readFile(cert.keyFile) },
    'popgate-users': {
      users: Buffer.from((await Promise.all(Object.entries(opts.users).map(async ([u, p]) => `${u}:${await hashPassword(p, { scryptLogN: 10 })}\n`))).join('')),
    },
    'popgate-backend': { 'master-password': Buffer.from(`${opts.master}\n`) },
    'popgate-keytab': { 'popgate.keytab': opts.keytab },
  };
  const want = Object.fromEntries(examples.map((e) => [e.metadata.name, Object.keys(e.stringData).sort()]));
  const have = Object.fromEntries(Object.entries(content).map(([n, keys]) => [n, Object.keys(keys).sort()]));
  if (JSON.stringify(want, Object.keys(want).sort()) !== JSON.stringify(have, Object.keys(want).sort())
    || Object.keys(want).length !== Object.keys(have).length) {
    throw new Error(`secrets-example differs from the test's Secrets: ${JSON.stringify(want)} vs ${JSON.stringify(have)}`);
  }
  return { content, caFile: pki.caFile };
}

/**
 * Writes the projection of a `projected` secrets volume into `dir` (same
 * keys -> paths, files with the volume's defaultMode, root:fsGroup, as the
 * kubelet makes them) and turns the volume into a hostPath on it: podman 4.3
 * refuses projected and secret volumes.
 */
export async function projectSecretsToHostPath(volume: Volume, fsGroup: number, dir: string, content: Record<string, Record<string, Buffer>>): Promise<void> {
  const projected = volume.projected;
  if (!projected) throw new Error(`volume ${volume.name} is not projected`);
  for (const source of projected.sources) {
    for (const item of source.secret.items) {
      const file = join(dir, item.path);
      const data = content[source.secret.name]?.[item.key];
      if (!data) throw new Error(`no content for ${source.secret.name}/${item.key}`);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, data);
      await chown(file, 0, fsGroup);
      await chmod(file, projected.defaultMode!);
    }
  }
  for (const d of [dir, ...(await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => join(dir, e.name))]) {
    await chown(d, 0, fsGroup);
    await chmod(d, 0o750);
  }
  delete volume.projected;
  volume.hostPath = { path: dir, type: 'Directory' };
}

/** The images the overlays name (placeholders) and the ones the tests build. */
export const POPGATE_IMAGE = 'localhost/popgate:test';
export const LEGACY_BASE_IMAGE = 'localhost/legacy-pop3:test';
export const PLACEHOLDER_POPGATE = 'popgate:0.1.0';
export const PLACEHOLDER_LEGACY = 'example.org/legacy-pop3:latest';
/**
 * What Dovecot needs besides the overlay's NET_BIND_SERVICE: it starts as
 * root, chowns mail, switches each process to its own user and chroots the
 * login processes ("anvil: Fatal: chroot(/run/dovecot/empty) failed" without SYS_CHROOT).
 */
export const LEGACY_EXTRA_CAPS = ['CHOWN', 'SETGID', 'SETUID', 'SYS_CHROOT'];

/**
 * What both Pod tests make from a rendered overlay before playing it, all
 * from its popgate.yaml (overlayFacts): the legacy image with this run's
 * users, master password and mail; the overlay's Kerberos realm; the Secrets
 * of deploy/k8s/secrets-example with real content (certificate for the
 * service principal's host, users file, master password, keytab).
 */
export interface PodParts {
  readonly facts: OverlayFacts;
  readonly realm: PodRealm;
  readonly secrets: { content: Record<string, Record<string, Buffer>>; caFile: string };
  /** How long the legacy image took to build. */
  readonly legacySeconds: number;
}

export async function preparePodParts(opts: {
  root: string; dir: string; rendered: readonly K8sObject[]; legacyTag: string;
  users: Record<string, string>; realmUsers: Record<string, string>;
  backendPasswords: Record<string, string>; master: string; mail: Record<string, Buffer[]>;
}): Promise<PodParts> {
  const cm = opts.rendered.find((o) => o.kind === 'ConfigMap') as ConfigMap | undefined;
  if (!cm?.data['popgate.yaml']) throw new Error('preparePodParts: no popgate.yaml in the rendered ConfigMap');
  const facts = await overlayFacts(cm.data['popgate.yaml']);
  const t = Date.now();
  await buildLegacyImage({
    dir: opts.dir, base: LEGACY_BASE_IMAGE, tag: opts.legacyTag, backend: facts.backend,
    backendPasswords: opts.backendPasswords, master: opts.master, mail: opts.mail,
  });
  const legacySeconds = (Date.now() - t) / 1000;
  const realm = await startPodRealm(facts.kerberos, opts.realmUsers);
  try {
    const secrets = await secretContent({
      root: opts.root, pkiDir: join(opts.dir, 'pki'), users: opts.users, master: opts.master,
      keytab: realm.keytab, serverName: facts.kerberos.host,
    });
    return { facts, realm, secrets, legacySeconds };
  } catch (err) {
    await realm.kdc.stop();
    throw err;
  }
}

/** Writes the play file, plays it and waits for popgate and Dovecot; returns the seconds it took. */
export async function playPod(playFile: string, objs: readonly K8sObject[], popgateCtr: string, legacyCtr: string): Promise<number> {
  await writePlayFile(playFile, objs);
  const t = Date.now();
  await kubePlay(playFile);
  await waitForPodServices(popgateCtr, legacyCtr);
  return (Date.now() - t) / 1000;
}

/** Writes `objs` as one multi-document YAML file for `podman kube play`. */
export async function writePlayFile(file: string, objs: readonly K8sObject[]): Promise<void> {
  await writeFile(file, objs.map((o) => YAML.stringify(o)).join('---\n'));
}

/** `podman kube play` of `playFile`, after taking down whatever an earlier run left of it. */
export async function kubePlay(playFile: string): Promise<void> {
  await podman(['kube', 'down', playFile]);
  await podmanOk(['kube', 'play', playFile], 300_000);
}

/** Waits until popgate says it is ready and Dovecot has started in the Pod; throws with the log on a failed start. */
export async function waitForPodServices(popgateCtr: string, legacyCtr: string): Promise<void> {
  await waitFor('popgate ready in the Pod', async () => {
    const logs = await podman(['logs', popgateCtr]);
    const text = logs.stdout + logs.stderr;
    if (/start-up failed|not starting/.test(text)) throw new Error(`popgate did not start:\n${text}`);
    return /"msg":"popgate ready"/.test(text) ? true : undefined;
  }, 120_000, 250);
  await waitFor('Dovecot up in the Pod', async () => {
    const logs = await podman(['logs', legacyCtr]);
    const text = logs.stdout + logs.stderr;
    if (/Fatal|Error/.test(text)) throw new Error(`Dovecot did not start:\n${text}`);
    return /starting up/.test(text) ? true : undefined;
  }, 120_000, 250);
}

/** Prints the last lines of each container's log (after a failure, before the Pod goes). */
export async function printLogs(containers: readonly string[]): Promise<void> {
  for (const c of containers) {
    const logs = await podman(['logs', '--tail', '40', c]);
    console.log(`--- ${c}\n${logs.stdout}${logs.stderr}`);
  }
}
