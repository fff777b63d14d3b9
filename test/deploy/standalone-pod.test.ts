/**
 * The Kubernetes standalone overlay, run for real (issue 13 part 4): the
 * Deployment and ConfigMap of `kubectl kustomize
 * deploy/k8s/overlays/standalone` are played with `podman kube play`, one
 * replica, with the Secrets of deploy/k8s/secrets-example filled with real
 * test content. A client on the host logs in through a hostPort on 127.0.0.1
 * and reads a message byte for byte; the rendered liveness and readiness
 * probe paths answer 200 inside the Pod; popgate runs as uid 10001 with the
 * rendered mounts.
 *
 * The overlay's backend is `legacy-pop3.mail.svc.cluster.local:110`, a
 * Service somewhere else in the cluster. Here that name resolves, through a
 * hostAliases entry (an /etc/hosts line in the Pod), to 127.0.0.1, where the
 * legacy POP3 server (Dovecot: test/fixtures/legacy-pop3,
 * scripts/legacy-pop3-image.sh) runs as a second container of the Pod: the
 * legacy-pop3 container of the rendered *sidecar* overlay, as the sidecar
 * test plays it. popgate.yaml keeps its backend section unchanged.
 *
 * PROXY protocol: the overlay's listeners trust 10.0.0.0/8 with
 * `required: false` (a trusted peer may omit the header). Connections to a
 * hostPort on 127.0.0.1 reach the Pod from the bridge gateway of the network
 * podman 4.3 gives played Pods (podman-default-kube-network, 10.89.0.1,
 * inside 10.0.0.0/8): to popgate they come from a
 * trusted load balancer. So curl logs in without a header (what in-cluster
 * clients and health checks do), and a raw socket sends a PROXY v1 header
 * first, then TLS and USER/PASS/RETR (what the LoadBalancer does): popgate
 * logs the address from the header as the client and the gateway as `via`.
 *
 * Every change to the rendered objects is in CHANGES (and in
 * deploy/README.md, standalone bullet) and checked by the first test.
 * Nothing is skipped: when podman cannot play the Pod, beforeAll fails.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { curlPop3 } from '../helpers/clients.js';
import { LineClient } from '../helpers/line-client.js';
import { pop3Wire } from '../helpers/dovecot.js';
import {
  buildTestImages,
  containerOf,
  deploymentOf,
  LEGACY_EXTRA_CAPS,
  PLACEHOLDER_LEGACY,
  PLACEHOLDER_POPGATE,
  POPGATE_IMAGE,
  printLogs,
  projectSecretsToHostPath,
  renderOverlay,
  testMessage,
  type PodRealm,
  type ConfigMap,
  type Container,
  type Deployment,
  type K8sObject,
  type PodSpec,
  playPod,
  preparePodParts,
} from '../helpers/kube-play.js';
import { freePort, podman, podmanOk } from '../helpers/podman.js';

const ROOT = resolve('.');
const LEGACY_IMAGE = `localhost/legacy-pop3:standalone-${process.pid}`;
const RENDERED_NAME = 'popgate';
/** Not `popgate`: the sidecar test's Pod is `popgate-pod-0`, and vitest runs the files in parallel. */
const NAME = 'popgate-standalone';
/** podman 4.3 names a played Deployment's Pod `<name>-pod-0` and its containers `<pod>-<container>`. */
const POD = `${NAME}-pod-0`;
const POPGATE_CTR = `${POD}-popgate`;
const LEGACY_CTR = `${POD}-legacy-pop3`;
const BACKEND_HOST = 'legacy-pop3.mail.svc.cluster.local';
/** A client address the "load balancer" claims in its PROXY header (TEST-NET-3). */
const CLAIMED = { address: '203.0.113.7', port: 40_123 };

const CHANGES = [
  'only the Deployment and the ConfigMap are played; the Service (LoadBalancer), PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy are rendered but not played: podman 4.3 plays Pods, Deployments, ConfigMaps and PVCs only',
  'Deployment: metadata.name popgate -> popgate-standalone (Pod popgate-standalone-pod-0), so it does not clash with the sidecar test\'s popgate-pod-0 when vitest runs both files at once',
  'Deployment: replicas 3 -> 1 (podman 4.3 plays one Pod per Deployment anyway)',
  'popgate container: image popgate:0.1.0 -> localhost/popgate:test',
  'popgate container: hostPorts (hostIP 127.0.0.1, free ports) on every containerPort (pop3s 1995, pop3 1110, kpop 1109, admin 9110): pop3s stands in for the LoadBalancer Service; without a hostPort podman 4.3 would publish each on 0.0.0.0:<containerPort> of the host',
  'popgate container: livenessProbe/readinessProbe removed: podman 4.3 turns the liveness httpGet into a healthcheck `curl -f http://localhost:0/healthz` (named port admin -> 0; the image has no curl); the test GETs the rendered probe paths inside the Pod instead',
  'volume secrets: the projected volume becomes a hostPath directory holding exactly its projection of the four Secrets (same keys -> paths, files 0440 root:10001 as defaultMode 288 + fsGroup 10001 make them); podman 4.3 refuses projected and secret volumes',
  'Pod: hostAliases 127.0.0.1 -> legacy-pop3.mail.svc.cluster.local, standing in for the cluster DNS and the legacy server\'s Service (popgate.yaml\'s backend section unchanged)',
  'Pod: container legacy-pop3 and volume maildrops added, exactly as the rendered sidecar overlay has them, except image example.org/legacy-pop3:latest -> this run\'s legacy test image and capabilities CHOWN, SETGID, SETUID, SYS_CHROOT added to NET_BIND_SERVICE (Dovecot starts as root and chroots; see the sidecar test)',
] as const;

const MASTER = randomBytes(12).toString('hex');
const REALM_USERS = { alice: randomBytes(9).toString('hex') };
const USERS = { alice: 'alice-gateway-pw', bob: 'bob-gateway-pw' } as const;
const BACKEND_PW = { alice: randomBytes(9).toString('hex'), bob: randomBytes(9).toString('hex') };
const MAIL = {
  alice: [testMessage('alice', 'first for alice'), testMessage('alice', 'second for alice')],
  bob: [testMessage('bob', 'for bob through the balancer')],
};

/**
 * A POP3 session over pop3s as the LoadBalancer hands it on: a PROXY v1
 * header first on the plain TCP connection, then TLS, USER/PASS, RETR n,
 * QUIT. Returns the RETR body (dot-unstuffed, terminator removed).
 */
async function retrViaProxyHeader(opts: { port: number; caFile: string; user: string; password: string; msg: number }): Promise<Buffer> {
  const c = await LineClient.connect({ port: opts.port });
  try {
    c.send(`PROXY TCP4 ${CLAIMED.address} 127.0.0.1 ${CLAIMED.port} 995\r\n`);
    expect(await c.startTls(opts.caFile)).toHaveLength(0);
    expect(await c.line(20_000)).toMatch(/^\+OK/);
    expect(await c.cmd(`USER ${opts.user}`)).toMatch(/^\+OK/);
    expect(await c.cmd(`PASS ${opts.password}`)).toMatch(/^\+OK/);
    expect(await c.cmd(`RETR ${opts.msg}`)).toMatch(/^\+OK/);
    const body = await c.multilineBody(20_000);
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    // Dot-stuffed through ".\r\n": drop the terminator, unstuff each line.
    const lines = body.subarray(0, body.length - 3).toString('latin1').split('\r\n');
    return Buffer.from(lines.map((l) => (l.startsWith('.') ? l.slice(1) : l)).join('\r\n'), 'latin1');
  } finally {
    c.destroy();
  }
}

describe('the standalone overlay under podman kube play', () => {
  let dir: string;
  let playFile: string;
  let caFile: string;
  const hostPorts = new Map<string, number>();
  let rendered: K8sObject[];
  let sidecarLegacy: { container: Container; maildrops: PodSpec['volumes'][number] };
  let played: K8sObject[];
  const timings: Record<string, number> = {};
  let podUp = false;
  let failed = false;
  let realm: PodRealm | undefined;
  let serviceHost: string;

  afterEach((ctx) => { if (ctx.task.result?.state === 'fail') failed = true; });

  beforeAll(async () => {
    let t = Date.now();
    await buildTestImages();
    timings.imagesSeconds = (Date.now() - t) / 1000;

    dir = await mkdtemp(join(tmpdir(), 'popgate-standalone-'));
    await chmod(dir, 0o755);
    // ---- the overlays, rendered: standalone, and the sidecar's legacy container
    rendered = await renderOverlay(join(ROOT, 'deploy/k8s/overlays/standalone'));
    // The legacy server, the realm and the Secrets as the overlay's popgate.yaml says.
    const parts = await preparePodParts({
      root: ROOT, dir, rendered, legacyTag: LEGACY_IMAGE, users: USERS, realmUsers: REALM_USERS,
      backendPasswords: BACKEND_PW, master: MASTER, mail: MAIL,
    });
    realm = parts.realm;
    serviceHost = parts.facts.kerberos.host;
    timings.legacyOverlaySeconds = parts.legacySeconds;
    const sidecar = await renderOverlay(join(ROOT, 'deploy/k8s/overlays/sidecar'));
    sidecarLegacy = {
      container: containerOf(sidecar, 'legacy-pop3'),
      maildrops: deploymentOf(sidecar).spec.template.spec.volumes.find((v) => v.name === 'maildrops')!,
    };
    played = rendered.filter((o) => o.kind === 'Deployment' || o.kind === 'ConfigMap').map((o) => structuredClone(o));

    const dep = deploymentOf(played);
    dep.metadata.name = NAME;
    dep.spec.replicas = 1;
    const spec = dep.spec.template.spec;
    const popgate = containerOf(played, 'popgate');
    if (popgate.image !== PLACEHOLDER_POPGATE) throw new Error(`unexpected image ${popgate.image}`);
    popgate.image = POPGATE_IMAGE;
    for (const p of popgate.ports!) {
      p.hostPort = await freePort();
      p.hostIP = '127.0.0.1';
      hostPorts.set(p.name, p.hostPort);
    }
    delete popgate.livenessProbe;
    delete popgate.readinessProbe;
    caFile = parts.secrets.caFile;
    await projectSecretsToHostPath(spec.volumes.find((v) => v.name === 'secrets')!, spec.securityContext!.fsGroup!, join(dir, 'secrets'), parts.secrets.content);

    // The backend: the legacy server in the Pod, its Service name on 127.0.0.1.
    spec.hostAliases = [{ ip: '127.0.0.1', hostnames: [BACKEND_HOST] }];
    const legacy = structuredClone(sidecarLegacy.container);
    if (legacy.image !== PLACEHOLDER_LEGACY) throw new Error(`unexpected image ${legacy.image}`);
    legacy.image = LEGACY_IMAGE;
    legacy.securityContext!.capabilities!.add = [...(legacy.securityContext!.capabilities!.add ?? []), ...LEGACY_EXTRA_CAPS];
    spec.containers.push(legacy);
    spec.volumes.push(structuredClone(sidecarLegacy.maildrops));

    playFile = join(dir, 'standalone.yaml');
    podUp = true;
    timings.podStartSeconds = await playPod(playFile, played, POPGATE_CTR, LEGACY_CTR);
  }, 15 * 60_000);

  afterAll(async () => {
    if (podUp && playFile) {
      // A test (or beforeAll) failed: show both containers' logs first.
      await printLogs(failed || !timings.podStartSeconds ? [POPGATE_CTR, LEGACY_CTR] : []);
      const t = Date.now();
      await podman(['kube', 'down', playFile], 180_000);
      timings.kubeDownSeconds = (Date.now() - t) / 1000;
    }
    await podman(['rmi', '--force', LEGACY_IMAGE]);
    await realm?.kdc.stop();
    if (dir && !process.env['POPGATE_KEEP_TEST_DIRS']) await rm(dir, { recursive: true, force: true });
    console.log(`standalone-pod timings: ${JSON.stringify(timings)}`);
  }, 5 * 60_000);

  it('plays the rendered Deployment and ConfigMap with exactly the listed changes', () => {
    expect(rendered.map((o) => o.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'Service']);
    expect(played.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment']);
    const before = deploymentOf(rendered);
    const after = deploymentOf(played);
    expect(before.spec.replicas).toBe(3);
    expect(after.spec.replicas).toBe(1);

    // Undo the listed changes on a copy of what was played: the rendered Deployment again.
    const undone = structuredClone(after) as Deployment;
    undone.metadata.name = RENDERED_NAME;
    undone.spec.replicas = before.spec.replicas;
    const spec = undone.spec.template.spec;
    delete spec.hostAliases;
    spec.containers = spec.containers.filter((c) => c.name !== 'legacy-pop3');
    spec.volumes = spec.volumes.filter((v) => v.name !== 'maildrops');
    const popgate = spec.containers.find((c) => c.name === 'popgate')!;
    const orig = before.spec.template.spec.containers.find((c) => c.name === 'popgate')!;
    popgate.image = PLACEHOLDER_POPGATE;
    for (const p of popgate.ports ?? []) { delete p.hostPort; delete p.hostIP; }
    popgate.livenessProbe = orig.livenessProbe;
    popgate.readinessProbe = orig.readinessProbe;
    const secretsVolume = spec.volumes.find((v) => v.name === 'secrets')!;
    delete secretsVolume.hostPath;
    Object.assign(secretsVolume, before.spec.template.spec.volumes.find((v) => v.name === 'secrets'));
    expect(undone).toEqual(before);

    // The changed fields are what CHANGES says.
    const played0 = after.spec.template.spec;
    expect(played0.hostAliases).toEqual([{ ip: '127.0.0.1', hostnames: [BACKEND_HOST] }]);
    expect(played0.containers.find((c) => c.name === 'popgate')!.ports).toEqual(
      orig.ports!.map((p) => ({ ...p, hostPort: hostPorts.get(p.name), hostIP: '127.0.0.1' })));
    const legacy = structuredClone(played0.containers.find((c) => c.name === 'legacy-pop3')!);
    expect(legacy.securityContext!.capabilities!.add).toEqual(['NET_BIND_SERVICE', ...LEGACY_EXTRA_CAPS]);
    legacy.image = PLACEHOLDER_LEGACY;
    legacy.securityContext!.capabilities!.add = ['NET_BIND_SERVICE'];
    expect(legacy).toEqual(sidecarLegacy.container);
    expect(played0.volumes.find((v) => v.name === 'maildrops')).toEqual(sidecarLegacy.maildrops);
    expect(played0.volumes.filter((v) => v.hostPath).map((v) => v.name)).toEqual(['secrets']);

    // The ConfigMap (popgate.yaml, krb5.conf) is played as rendered.
    const cmAfter = played.find((o) => o.kind === 'ConfigMap') as ConfigMap;
    expect(cmAfter).toEqual(rendered.find((o) => o.kind === 'ConfigMap'));
    const yAfter = YAML.parse(cmAfter.data['popgate.yaml']!) as { backend: { host: string }; listeners: Array<{ kind: string; proxyProtocol: unknown }> };
    expect(yAfter.backend.host).toBe(BACKEND_HOST);
    // The PROXY settings this test relies on (see the header comment), as rendered.
    for (const l of yAfter.listeners) {
      expect(l.proxyProtocol, l.kind).toEqual({ trustedNetworks: ['10.0.0.0/8'], required: false, timeout: '5s' });
    }
    expect(CHANGES).toHaveLength(9);
  });

  it('lets curl log in over pop3s through the hostPort and read a message byte for byte', async () => {
    const port = hostPorts.get('pop3s')!;
    const curl = await curlPop3({ url: `pop3s://localhost:${port}/1`, user: 'alice', password: USERS.alice, caFile });
    expect(curl.code, curl.stderr).toBe(0);
    expect(curl.body.equals(pop3Wire(MAIL.alice[0]!))).toBe(true);
    const second = await curlPop3({ url: `pop3s://localhost:${port}/2`, user: 'alice', password: USERS.alice, caFile });
    expect(second.code, second.stderr).toBe(0);
    expect(second.body.equals(pop3Wire(MAIL.alice[1]!))).toBe(true);
    // The backend password is not the gateway password.
    const bad = await curlPop3({ url: `pop3s://localhost:${port}/1`, user: 'alice', password: BACKEND_PW.alice, caFile });
    expect(bad.code).not.toBe(0);
    // No header, so popgate saw the hostPort's own peer: the trusted bridge gateway.
    const logins = (await podmanOk(['logs', POPGATE_CTR])).split('\n').filter((l) => /"event":"login"/.test(l) && /"alice"/.test(l));
    expect(logins.length).toBeGreaterThan(0);
    const remote = (JSON.parse(logins[0]!) as { remote: string }).remote;
    expect(remote, 'the hostPort peer is inside trustedNetworks 10.0.0.0/8').toMatch(/^(::ffff:)?10\./);
  });

  it('logs in with AUTH GSSAPI (curl, alice@REALM\'s ticket) against the keytab the Pod mounts', async () => {
    const port = hostPorts.get('pop3s')!;
    const r = await curlPop3({
      url: `pop3s://${serviceHost}:${port}/2`, user: '', password: '', caFile, env: await realm!.clientEnv('alice'),
      extra: ['--resolve', `${serviceHost}:${port}:127.0.0.1`, '--login-options', 'AUTH=GSSAPI'],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.body.equals(pop3Wire(MAIL.alice[1]!))).toBe(true);
    const logins = (await podmanOk(['logs', POPGATE_CTR])).split('\n').filter((l) => /"event":"login"/.test(l) && /"GSSAPI"/.test(l));
    expect(logins.length).toBeGreaterThan(0);
    expect(JSON.parse(logins.at(-1)!)).toMatchObject({ outcome: 'success', user: 'alice', mechanism: 'GSSAPI' });
  });

  it('takes a PROXY v1 header from the trusted peer, then TLS, USER/PASS and RETR byte for byte', async () => {
    const body = await retrViaProxyHeader({ port: hostPorts.get('pop3s')!, caFile, user: 'bob', password: USERS.bob, msg: 1 });
    expect(body.toString('latin1')).toBe(pop3Wire(MAIL.bob[0]!).toString('latin1'));
    expect(body.equals(pop3Wire(MAIL.bob[0]!))).toBe(true);
    const logins = (await podmanOk(['logs', POPGATE_CTR])).split('\n').filter((l) => /"event":"login"/.test(l) && /"bob"/.test(l));
    expect(logins.length).toBeGreaterThan(0);
    const login = JSON.parse(logins.at(-1)!) as { remote: string; rport: number; via?: string };
    expect(login.remote).toBe(CLAIMED.address);
    expect(login.rport).toBe(CLAIMED.port);
    expect(login.via).toMatch(/^(::ffff:)?10\./);
  });

  it('answers the rendered probe paths inside the Pod; popgate runs as uid 10001 with the rendered mounts', async () => {
    const orig = containerOf(rendered, 'popgate');
    const byName = new Map(orig.ports!.map((p) => [p.name, p.containerPort]));
    const probes = [orig.livenessProbe!.httpGet, orig.readinessProbe!.httpGet].map((g) => ({
      path: g.path, port: typeof g.port === 'number' ? g.port : byName.get(g.port)!,
    }));
    expect(probes).toEqual([{ path: '/healthz', port: 9110 }, { path: '/readyz', port: 9110 }]);
    for (const p of probes) {
      const code = await podmanOk(['exec', POPGATE_CTR, 'node', '-e',
        `require('http').get('http://127.0.0.1:${p.port}${p.path}',r=>{console.log(r.statusCode);r.resume()}).on('error',e=>{console.log(e.code);process.exit(1)})`]);
      expect(code.trim(), p.path).toBe('200');
    }
    // The backend name resolves inside the Pod to the legacy server on 127.0.0.1:110.
    const greeting = await podmanOk(['exec', POPGATE_CTR, 'node', '-e',
      `const s=require('net').connect(110,'${BACKEND_HOST}');s.once('data',d=>{process.stdout.write(d.toString().split('\\n')[0]);s.destroy()});s.on('error',e=>{console.log('ERR '+e.code);process.exit(1)})`]);
    expect(greeting).toMatch(/^\+OK .*Dovecot/);
    // uid/gid as rendered.
    expect(orig.securityContext!.runAsUser).toBe(10001);
    expect((await podmanOk(['exec', POPGATE_CTR, 'id', '-u'])).trim()).toBe('10001');
    expect((await podmanOk(['exec', POPGATE_CTR, 'id', '-g'])).trim()).toBe('10001');
    const inspect = JSON.parse(await podmanOk(['inspect', POPGATE_CTR])) as Array<{ Mounts: Array<{ Destination: string; RW: boolean }> }>;
    const mounts = new Map(inspect[0]!.Mounts.map((m) => [m.Destination, m]));
    for (const m of orig.volumeMounts ?? []) {
      expect(mounts.has(m.mountPath), m.mountPath).toBe(true);
      expect(mounts.get(m.mountPath)!.RW, m.mountPath).toBe(!m.readOnly);
    }
    // The config popgate runs with, and the files it names, as the kubelet would lay them out.
    const check = await podman(['exec', POPGATE_CTR, 'popgate', 'check-config', '/etc/popgate/popgate.yaml']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect((await podmanOk(['exec', POPGATE_CTR, 'cat', '/run/secrets/popgate/backend/master-password'])).trim()).toBe(MASTER);
    expect((await podmanOk(['exec', POPGATE_CTR, 'cat', '/etc/popgate/krb5.conf'])))
      .toBe((rendered.find((o) => o.kind === 'ConfigMap') as ConfigMap).data['krb5.conf']);
    // Read-only root filesystem as rendered.
    const touch = await podman(['exec', POPGATE_CTR, 'touch', '/app/x']);
    expect(touch.code).not.toBe(0);
  });
});
