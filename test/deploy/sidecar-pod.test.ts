/**
 * The Kubernetes sidecar overlay, run for real (issue 13): the objects of
 * `kubectl kustomize deploy/k8s/overlays/sidecar` are played with
 * `podman kube play` — popgate's image (scripts/container-images.sh) next to a
 * legacy POP3 server (Dovecot, plaintext only on 127.0.0.1:110:
 * test/fixtures/legacy-pop3, scripts/legacy-pop3-image.sh) in one Pod. Real
 * clients on the host (curl, fetchmail, Python poplib) reach popgate's pop3s
 * and kpop ports through hostPorts; the backend's port 110 stays inside the
 * Pod. Kerberos is on as rendered: a real MIT KDC on the host with the
 * overlay's realm and service principal issues the keytab the Pod mounts and
 * the users' tickets (curl AUTH=GSSAPI, fetchmail KPOP).
 *
 * One source of truth: the legacy server's port, master user and separator
 * and the realm are made from the rendered popgate.yaml (overlayFacts), not
 * written a second time here or in the fixture.
 *
 * The rendered objects are used as they are where podman 4.3 can; every change
 * is listed in CHANGES below (and in deploy/README.md, sidecar section) and
 * asserted by the first test. podman has to work here (root, runc, and
 * `catatonit` for the Pod's infra container: Debian package catatonit): when
 * it does not, beforeAll fails with podman's own reason; nothing is skipped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curlPop3, poplibFetch } from '../helpers/clients.js';
import { pop3Wire } from '../helpers/dovecot.js';
import { runFetchmail } from '../helpers/fetchmail.js';
import { LineClient } from '../helpers/line-client.js';
import {
  buildTestImages,
  containerOf,
  legacyBackendConf,
  type OverlayFacts,
  type PodRealm,
  deploymentOf,
  projectSecretsToHostPath,
  renderOverlay,
  testMessage,
  type Deployment,
  type K8sObject,
  LEGACY_EXTRA_CAPS,
  PLACEHOLDER_LEGACY,
  PLACEHOLDER_POPGATE,
  POPGATE_IMAGE,
  printLogs,
  playPod,
  preparePodParts,
} from '../helpers/kube-play.js';
import { freePort, podman, podmanOk } from '../helpers/podman.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = resolve('.');
/** The legacy image plus this run's users, master password and seed mail (removed in afterAll). */
const LEGACY_IMAGE = `localhost/legacy-pop3:sidecar-${process.pid}`;
/** podman 4.3 names a played Deployment's (first) Pod `<name>-pod-0` and its containers `<pod>-<container>`. */
const POD = 'popgate-pod-0';
const POPGATE_CTR = `${POD}-popgate`;
const LEGACY_CTR = `${POD}-legacy-pop3`;

/**
 * What the test changes in the rendered objects before `podman kube play`,
 * and why (also in deploy/README.md, sidecar section). Each entry is checked
 * against the objects in the first test.
 */
const CHANGES = [
  'images: example.org/legacy-pop3:latest -> the test legacy image, popgate:0.1.0 -> localhost/popgate:test',
  'popgate container: hostPort (hostIP 127.0.0.1, a free port) added to the pop3s containerPort 1995; it stands in for the Service, which podman 4.3 ignores (it plays Pods, Deployments and PVCs)',
  'popgate container: hostPorts (hostIP 127.0.0.1, free ports) added to the other containerPorts too (pop3 1110, kpop 1109, admin 9110): podman 4.3 publishes a containerPort without hostPort on 0.0.0.0:<containerPort> of the host, unlike Kubernetes',
  'volume secrets: the projected volume becomes a hostPath directory holding exactly its projection of the four Secrets (same keys -> paths), files 0440 root:10001 as defaultMode 288 + fsGroup 10001 make them in Kubernetes; podman 4.3 refuses projected (and secret) volumes: "HostPath, ConfigMap, EmptyDir, and PersistentVolumeClaim are currently the only supported VolumeSource"',
  'volume maildrops: emptyDir -> hostPath (a test directory), the persistent mail store the overlay asks for, so the mail can be inspected after kube down and the Pod played again on it',
  'popgate container: livenessProbe/readinessProbe removed: podman 4.3 turns the liveness httpGet into a healthcheck `curl -f http://localhost:0/healthz` (the named port admin becomes 0; the image has no curl; its timers need systemd); the test GETs /healthz and /readyz inside the Pod and through the admin hostPort instead',
  'legacy-pop3 container: capabilities CHOWN, SETGID, SETUID, SYS_CHROOT added to NET_BIND_SERVICE: Dovecot starts as root, chowns the mail to its mail user, switches each process to its own user and chroots the login and helper processes, all of which the overlay\'s drop ALL (honoured by podman) forbids; the overlay expects a server that needs only port 110 (without SYS_CHROOT: "anvil: Fatal: chroot(/run/dovecot/empty) failed")',
] as const;

/** The first line a TCP server sends, or the connection error's code. */
function firstLine(host: string, port: number): Promise<{ line?: string; error?: string }> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    let buf = '';
    const timer = setTimeout(() => { socket.destroy(); done({ line: buf }); }, 5_000);
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\n')) { clearTimeout(timer); socket.destroy(); done({ line: buf.split('\n')[0] }); }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); done({ error: e.code ?? e.message }); });
  });
}

const MASTER = randomBytes(12).toString('hex');
/** Realm users (Kerberos passwords), mapped by the overlay to local users of the same name. */
const REALM_USERS = { alice: randomBytes(9).toString('hex') };
const USERS = { alice: 'alice-gateway-pw', bob: 'bob-gateway-pw' } as const;
const BACKEND_PW = { alice: randomBytes(9).toString('hex'), bob: randomBytes(9).toString('hex') };
const MAIL = {
  alice: [testMessage('alice', 'first for alice'), testMessage('alice', 'second for alice')],
  bob: [testMessage('bob', 'kept by bob'), testMessage('bob', 'deleted by bob')],
};

describe('the sidecar overlay under podman kube play', () => {
  let dir: string;
  let playFile: string;
  let caFile: string;
  let pop3sPort: number;
  /** containerPort name -> hostPort on 127.0.0.1. */
  const hostPorts = new Map<string, number>();
  let rendered: K8sObject[];
  let played: K8sObject[];
  const timings: Record<string, number> = {};
  let podUp = false;
  let realm: PodRealm | undefined;
  let facts: OverlayFacts;
  /** The Kerberos service's host (mail.example.com): clients connect to it, mapped to 127.0.0.1. */
  let serviceHost: string;

  const mailDir = (): string => join(dir, 'maildrops');

  beforeAll(async () => {
    let t = Date.now();
    await buildTestImages();
    timings.imagesSeconds = (Date.now() - t) / 1000;

    dir = await mkdtemp(join(tmpdir(), 'popgate-sidecar-'));
    await chmod(dir, 0o755);

    // ---- the overlay, rendered, and what its popgate.yaml says
    rendered = await renderOverlay(join(ROOT, 'deploy/k8s/overlays/sidecar'));
    played = structuredClone(rendered);
    // ---- this run's legacy image (the overlay's master user and port), its realm, its Secrets
    const parts = await preparePodParts({
      root: ROOT, dir, rendered, legacyTag: LEGACY_IMAGE, users: USERS, realmUsers: REALM_USERS,
      backendPasswords: BACKEND_PW, master: MASTER, mail: MAIL,
    });
    ({ facts, realm } = parts);
    serviceHost = facts.kerberos.host;
    timings.legacyOverlaySeconds = parts.legacySeconds;

    // Images.
    const dep = deploymentOf(played);
    const spec = dep.spec.template.spec;
    for (const c of spec.containers) {
      if (c.image === PLACEHOLDER_LEGACY) c.image = LEGACY_IMAGE;
      else if (c.image === PLACEHOLDER_POPGATE) c.image = POPGATE_IMAGE;
      else throw new Error(`unexpected image ${c.image}`);
    }
    // hostPort for pop3s.
    pop3sPort = await freePort();
    const popgate = containerOf(played, 'popgate');
    for (const p of popgate.ports!) {
      p.hostPort = p.name === 'pop3s' ? pop3sPort : await freePort();
      p.hostIP = '127.0.0.1';
      hostPorts.set(p.name, p.hostPort);
    }
    // The Secrets' projection, computed from the rendered volume, into a hostPath directory.
    caFile = parts.secrets.caFile;
    await projectSecretsToHostPath(spec.volumes.find((v) => v.name === 'secrets')!, spec.securityContext!.fsGroup!, join(dir, 'secrets'), parts.secrets.content);
    // The mail store.
    await mkdir(mailDir());
    const maildrops = spec.volumes.find((v) => v.name === 'maildrops')!;
    delete maildrops.emptyDir;
    maildrops.hostPath = { path: mailDir(), type: 'Directory' };
    // Probes.
    delete popgate.livenessProbe;
    delete popgate.readinessProbe;
    // The legacy server's capabilities.
    const legacyCaps = containerOf(played, 'legacy-pop3').securityContext!.capabilities!;
    legacyCaps.add = [...(legacyCaps.add ?? []), ...LEGACY_EXTRA_CAPS];

    // Nothing of ours on the host's port 110 (see the port-110 test).
    playFile = join(dir, 'sidecar.yaml');
    podUp = true;
    timings.podStartSeconds = await playPod(playFile, played, POPGATE_CTR, LEGACY_CTR);
  }, 15 * 60_000);

  afterAll(async () => {
    if (podUp && playFile) {
      // Still up: a test failed before kube down. Show both containers' logs.
      await printLogs([POPGATE_CTR, LEGACY_CTR]);
      await podman(['kube', 'down', playFile], 180_000);
    }
    await podman(['rmi', '--force', LEGACY_IMAGE]);
    await realm?.kdc.stop();
    if (dir && !process.env['POPGATE_KEEP_TEST_DIRS']) await rm(dir, { recursive: true, force: true });
    console.log(`sidecar-pod timings: ${JSON.stringify(timings)}`);
  }, 5 * 60_000);

  it('plays the rendered objects with exactly the listed changes', () => {
    expect(rendered.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Service']);
    // The Service goes along unchanged (podman ignores it).
    expect(played.find((o) => o.kind === 'Service')).toEqual(rendered.find((o) => o.kind === 'Service'));
    const before = deploymentOf(rendered).spec.template.spec;
    const after = deploymentOf(played).spec.template.spec;
    // Undo the listed changes on a copy of what was played: the rendered Deployment again.
    const undone = structuredClone(after);
    for (const c of undone.containers) {
      c.image = c.image === LEGACY_IMAGE ? PLACEHOLDER_LEGACY : c.image === POPGATE_IMAGE ? PLACEHOLDER_POPGATE : c.image;
      for (const p of c.ports ?? []) { delete p.hostPort; delete p.hostIP; }
      if (c.name === 'popgate') {
        const orig = before.containers.find((x) => x.name === 'popgate')!;
        c.livenessProbe = orig.livenessProbe;
        c.readinessProbe = orig.readinessProbe;
      }
      if (c.name === 'legacy-pop3') c.securityContext!.capabilities!.add = ['NET_BIND_SERVICE'];
    }
    for (const v of undone.volumes) {
      const orig = before.volumes.find((x) => x.name === v.name)!;
      if (v.name === 'secrets' || v.name === 'maildrops') {
        delete v.hostPath;
        Object.assign(v, orig);
      }
    }
    expect(undone).toEqual(before);
    // And the changed fields are what CHANGES says.
    expect(after.containers.find((c) => c.name === 'popgate')!.ports!.filter((p) => p.hostPort)).toEqual([
      { name: 'pop3s', containerPort: 1995, protocol: 'TCP', hostPort: pop3sPort, hostIP: '127.0.0.1' },
      { name: 'pop3', containerPort: 1110, protocol: 'TCP', hostPort: hostPorts.get('pop3'), hostIP: '127.0.0.1' },
      { name: 'kpop', containerPort: 1109, protocol: 'TCP', hostPort: hostPorts.get('kpop'), hostIP: '127.0.0.1' },
      { name: 'admin', containerPort: 9110, protocol: 'TCP', hostPort: hostPorts.get('admin'), hostIP: '127.0.0.1' },
    ]);
    expect(after.containers.find((c) => c.name === 'legacy-pop3')!.ports).toBeUndefined();
    expect(after.volumes.filter((v) => v.hostPath).map((v) => v.name).sort()).toEqual(['maildrops', 'secrets']);
    // The ConfigMap (popgate.yaml, krb5.conf) is played as rendered.
    expect(played.find((o) => o.kind === 'ConfigMap')).toEqual(rendered.find((o) => o.kind === 'ConfigMap'));
    expect(CHANGES).toHaveLength(7);
  });

  it('relays a message byte for byte to curl over pop3s through the hostPort', async () => {
    const curl = await curlPop3({ url: `pop3s://localhost:${pop3sPort}/1`, user: 'alice', password: USERS.alice, caFile });
    expect(curl.code, curl.stderr).toBe(0);
    expect(curl.body.equals(pop3Wire(MAIL.alice[0]!))).toBe(true);
    const list = await curlPop3({ url: `pop3s://localhost:${pop3sPort}/`, user: 'alice', password: USERS.alice, caFile });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.trim().split(/\r?\n/)).toHaveLength(2);
    // A wrong gateway password is refused by popgate (the backend password is not it).
    const bad = await curlPop3({ url: `pop3s://localhost:${pop3sPort}/1`, user: 'alice', password: BACKEND_PW.alice, caFile });
    expect(bad.code).not.toBe(0);
  });

  it('lets fetchmail log in over pop3s and read every message', async () => {
    const r = await runFetchmail({
      poll: `poll localhost protocol POP3 service ${pop3sPort} user "alice" there password "${USERS.alice}" ssl sslcertck sslcertfile "${caFile}"`,
      env: {},
      timeoutMs: 120_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map((m) => m.toString('latin1').replace(/\r\n/g, '\n')).sort())
      .toEqual(MAIL.alice.map((m) => m.toString('latin1').replace(/\r\n/g, '\n')).sort());
  });

  it('logs in with AUTH GSSAPI: curl with alice@REALM\'s ticket over pop3s, checked against the keytab the Pod mounts', async () => {
    const env = await realm!.clientEnv('alice');
    // curl asks for a ticket to pop@<URL host>: the principal popgate.yaml names, so the URL names its host.
    const r = await curlPop3({
      url: `pop3s://${serviceHost}:${pop3sPort}/2`, user: '', password: '', caFile, env,
      extra: ['--resolve', `${serviceHost}:${pop3sPort}:127.0.0.1`, '--login-options', 'AUTH=GSSAPI'],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.body.equals(pop3Wire(MAIL.alice[1]!))).toBe(true);
    const login = (await podmanOk(['logs', POPGATE_CTR])).split('\n').filter((l) => /"event":"login"/.test(l) && /"GSSAPI"/.test(l));
    expect(login.length, 'a GSSAPI login line').toBeGreaterThan(0);
    expect(JSON.parse(login.at(-1)!)).toMatchObject({ outcome: 'success', user: 'alice', mechanism: 'GSSAPI', principal: `alice@${facts.kerberos.realm}` });
  });

  it('logs in with KPOP: fetchmail\'s krb5_sendauth on the kpop hostPort, then reads every message', async () => {
    const r = await runFetchmail({
      poll: `poll ${serviceHost} protocol KPOP auth kerberos_v5 user "alice" there sslproto ''`,
      env: await realm!.clientEnv('alice'),
      kpopPort: hostPorts.get('kpop')!,
      hosts: { [serviceHost]: '127.0.0.1' },
      timeoutMs: 120_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.messages.map((m) => m.toString('latin1').replace(/\r\n/g, '\n')).sort())
      .toEqual(MAIL.alice.map((m) => m.toString('latin1').replace(/\r\n/g, '\n')).sort());
    const login = (await podmanOk(['logs', POPGATE_CTR])).split('\n').filter((l) => /"event":"login"/.test(l) && /"listener":"kpop"/.test(l));
    expect(login.length, 'a login line from the kpop listener').toBeGreaterThan(0);
    expect(JSON.parse(login.at(-1)!)).toMatchObject({ outcome: 'success', user: 'alice', principal: `alice@${facts.kerberos.realm}` });
  });

  it('runs the legacy server as popgate.yaml expects it: backend port and master user from the one source', async () => {
    expect(facts.backend).toEqual({ host: '127.0.0.1', port: 110, masterUser: 'popgate', separator: '*' });
    const conf = await podmanOk(['exec', LEGACY_CTR, 'doveconf', '-h', 'auth_master_user_separator']);
    expect(conf.trim()).toBe(facts.backend.separator);
    expect((await podmanOk(['exec', LEGACY_CTR, 'cat', '/etc/dovecot/legacy-pop3/backend.conf']))).toBe(legacyBackendConf(facts.backend));
    expect((await podmanOk(['exec', LEGACY_CTR, 'cut', '-d:', '-f1', '/etc/dovecot/legacy-pop3/master.passwd'])).trim()).toBe(facts.backend.masterUser);
    // popgate's master logins (it knows no backend password) landed as the users themselves.
    const legacyLog = await podman(['logs', LEGACY_CTR]);
    expect(legacyLog.stdout + legacyLog.stderr).toMatch(/pop3-login: Info: Login: user=<alice>, method=PLAIN/);
  });

  it('keeps the backend port 110 inside the Pod', async () => {
    // Inside the Pod (popgate's container): Dovecot's greeting on 127.0.0.1:110.
    const inside = await podmanOk(['exec', POPGATE_CTR, 'node', '-e',
      "const s=require('net').connect(110,'127.0.0.1');s.once('data',d=>{process.stdout.write(d.toString().split('\\n')[0]);s.destroy()});s.on('error',e=>{console.log('ERR '+e.code);process.exit(1)})"]);
    expect(inside).toMatch(/^\+OK .*Dovecot/);
    // On the host: nothing, or at least not this Dovecot.
    const host = await firstLine('127.0.0.1', 110);
    if (host.error) expect(host.error).toBe('ECONNREFUSED');
    else expect(host.line ?? '').not.toMatch(/Dovecot/);
    // The Pod publishes popgate's ports, on the host's loopback only, and not 110.
    const ports = (await podmanOk(['port', POPGATE_CTR])).trim().split('\n').sort();
    expect(ports).toEqual(containerOf(played, 'popgate').ports!.map((p) => `${p.containerPort}/tcp -> 127.0.0.1:${p.hostPort}`).sort());
  });

  it('agrees with the rendered objects: ports, probe paths, mounts', async () => {
    const orig = containerOf(rendered, 'popgate');
    const byName = new Map(orig.ports!.map((p) => [p.name, p.containerPort]));
    // Probes of the rendered object, asked inside the Pod on the named port.
    const probes = [orig.livenessProbe!.httpGet, orig.readinessProbe!.httpGet].map((g) => ({
      path: g.path, port: typeof g.port === 'number' ? g.port : byName.get(g.port)!,
    }));
    expect(probes.map((p) => p.path)).toEqual(['/healthz', '/readyz']);
    for (const p of probes) {
      const code = await podmanOk(['exec', POPGATE_CTR, 'node', '-e',
        `require('http').get('http://127.0.0.1:${p.port}${p.path}',r=>{console.log(r.statusCode);r.resume()}).on('error',e=>{console.log(e.code);process.exit(1)})`]);
      expect(code.trim(), p.path).toBe('200');
    }
    // The same through the admin port's hostPort (what the kubelet would ask).
    for (const p of probes) {
      const res = await fetch(`http://127.0.0.1:${hostPorts.get('admin')}${p.path}`);
      expect(res.status, p.path).toBe(200);
      await res.arrayBuffer();
    }
    // Every container port popgate listens on.
    for (const [name, port] of byName) {
      const r = await podman(['exec', POPGATE_CTR, 'node', '-e',
        `const s=require('net').connect(${port},'127.0.0.1',()=>{s.destroy();console.log('open')});s.on('error',e=>{console.log(e.code)})`]);
      expect(r.stdout.trim(), `${name} ${port}`).toBe('open');
    }
    // Mount paths, per container, as rendered.
    for (const name of ['popgate', 'legacy-pop3']) {
      const inspect = JSON.parse(await podmanOk(['inspect', `${POD}-${name}`])) as Array<{ Mounts: Array<{ Destination: string }> }>;
      const dests = inspect[0]!.Mounts.map((m) => m.Destination);
      for (const m of containerOf(rendered, name).volumeMounts ?? []) expect(dests, `${name} ${m.mountPath}`).toContain(m.mountPath);
    }
    // The files popgate.yaml names, where the projection puts them, readable by uid 10001.
    const check = await podman(['exec', POPGATE_CTR, 'popgate', 'check-config', '/etc/popgate/popgate.yaml']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect((await podmanOk(['exec', POPGATE_CTR, 'id', '-u'])).trim()).toBe('10001');
    expect((await podmanOk(['exec', POPGATE_CTR, 'cat', '/run/secrets/popgate/backend/master-password'])).trim()).toBe(MASTER);
  });

  it('stops as the kubelet does: preStop hooks, then SIGTERM per container; the legacy server outlives popgate\'s drain, a QUIT sent while draining commits, mail deleted without QUIT survives', async () => {
    // bob deletes message 1 and drops the connection without QUIT: nothing is deleted.
    const noQuit = await poplibFetch({ host: 'localhost', port: pop3sPort, mode: 'ssl', caFile, user: 'bob', password: USERS.bob, retrieve: [1], dele: [1], quit: false });
    expect(noQuit.result.ok, JSON.stringify(noQuit.result)).toBe(true);
    expect(noQuit.result.stat).toEqual([2, MAIL.bob[0]!.length + MAIL.bob[1]!.length]);
    // A session in flight when the Pod is deleted: bob reads and deletes message 2, QUIT comes later.
    const inFlight = await LineClient.connect({ port: pop3sPort, tls: caFile });
    expect(await inFlight.line()).toMatch(/^\+OK/);
    expect(await inFlight.cmd('USER bob')).toMatch(/^\+OK/);
    expect(await inFlight.cmd(`PASS ${USERS.bob}`)).toMatch(/^\+OK/);
    const retr = await inFlight.cmdMultiline('RETR 2');
    expect(retr.status).toMatch(/^\+OK/);
    expect(await inFlight.cmd('DELE 2')).toMatch(/^\+OK/);

    // What the kubelet does on Pod deletion, per container and at once: run
    // the preStop hook, then send SIGTERM, and kill what is left when the
    // grace period ends. podman 4.3 runs no preStop hook and gives 10 s, so
    // the test runs each rendered hook with `podman exec` and stops the
    // container with `podman stop --time <what is left of the grace period>`.
    const grace = (rendered.find((o) => o.kind === 'Deployment') as Deployment & { spec: { template: { spec: { terminationGracePeriodSeconds: number } } } })
      .spec.template.spec.terminationGracePeriodSeconds;
    expect(grace).toBe(45);
    const hookOf = (name: string): string[] => (containerOf(rendered, name).lifecycle as { preStop: { exec: { command: string[] } } }).preStop.exec.command;
    expect(hookOf('popgate')).toEqual(['sleep', '5']);
    expect(hookOf('legacy-pop3')).toEqual(['sleep', '35']);
    const started = Date.now();
    const exitOrder: string[] = [];
    const kubelet = (name: string): Promise<void> => (async () => {
      const ctr = `${POD}-${name}`;
      await podmanOk(['exec', ctr, ...hookOf(name)], grace * 1000);
      const left = Math.max(1, grace - Math.ceil((Date.now() - started) / 1000));
      const stop = await podman(['stop', '--time', String(left), ctr], (left + 30) * 1000);
      expect(stop.code, stop.stderr).toBe(0);
      exitOrder.push(name);
    })();
    // allSettled: a failure below must not leave a rejection unhandled while the hooks still run.
    const stopping = Promise.allSettled([kubelet('popgate'), kubelet('legacy-pop3')]);

    // popgate gets SIGTERM after its 5 s hook: readiness goes to 503 while it drains.
    await waitFor('popgate draining', async () => {
      const l = await podman(['logs', POPGATE_CTR]);
      return /"msg":"signal received, draining"/.test(l.stdout + l.stderr) ? true : undefined;
    }, 60_000, 100);
    // (Asked through the admin hostPort: podman refuses `exec` into a container it is stopping.)
    const ready = await fetch(`http://127.0.0.1:${hostPorts.get('admin')}/readyz`);
    await ready.arrayBuffer();
    expect(ready.status).toBe(503);
    // The session in flight still reaches the backend, which its 35 s hook keeps up: QUIT commits the DELE.
    expect(await inFlight.cmd('QUIT')).toMatch(/^\+OK/);
    await inFlight.closed();
    for (const r of await stopping) if (r.status === 'rejected') throw r.reason;
    timings.podStopSeconds = (Date.now() - started) / 1000;
    // popgate was done before the legacy server got its SIGTERM (after its 35 s hook).
    expect(exitOrder).toEqual(['popgate', 'legacy-pop3']);

    const logs = await podman(['logs', POPGATE_CTR]);
    expect(logs.stdout + logs.stderr).toMatch(/"signal":"SIGTERM","msg":"signal received, draining"/);
    expect(logs.stdout + logs.stderr).toMatch(/"msg":"stopped"/);
    expect(logs.stdout + logs.stderr).not.toMatch(/drain deadline reached/);
    const legacyLogs = await podman(['logs', LEGACY_CTR]);
    expect(legacyLogs.stdout + legacyLogs.stderr).toMatch(/master: Warning: Killed with signal 15/);
    // Dovecot worked with the capabilities it was given: no error in its whole log.
    expect((legacyLogs.stdout + legacyLogs.stderr).split('\n').filter((l) => /\b(Error|Fatal|Panic):/.test(l))).toEqual([]);
    for (const c of [POPGATE_CTR, LEGACY_CTR]) {
      expect((await podmanOk(['inspect', '--format', '{{.State.ExitCode}}', c])).trim(), c).toBe('0');
    }
    let t = Date.now();
    const down = await podman(['kube', 'down', playFile], 180_000);
    timings.kubeDownSeconds = (Date.now() - t) / 1000;
    expect(down.code, down.stderr).toBe(0);
    podUp = false;
    expect((await podman(['pod', 'exists', POD])).code).not.toBe(0);

    // The mail store (the hostPath behind /var/mail): bob keeps exactly message 1, alice both.
    const files = async (user: string): Promise<Buffer[]> => {
      const out: Buffer[] = [];
      for (const sub of ['cur', 'new']) {
        for (const f of (await readdir(join(mailDir(), user, sub))).sort()) out.push(await readFile(join(mailDir(), user, sub, f)));
      }
      return out;
    };
    expect((await files('bob')).map((b) => b.equals(MAIL.bob[0]!))).toEqual([true]);
    expect((await files('alice')).length).toBe(2);

    // Played again on the same mail store (not re-seeded): bob sees his one message.
    await podmanOk(['kube', 'play', playFile], 300_000);
    podUp = true;
    await waitFor('popgate ready again', async () => {
      const l = await podman(['logs', POPGATE_CTR]);
      return /"msg":"popgate ready"/.test(l.stdout + l.stderr) ? true : undefined;
    }, 120_000, 250);
    expect((await podman(['logs', LEGACY_CTR])).stderr).not.toMatch(/seeded/);
    const again = await waitFor('bob\'s mailbox through the replayed Pod', async () => {
      const r = await poplibFetch({ host: 'localhost', port: pop3sPort, mode: 'ssl', caFile, user: 'bob', password: USERS.bob, retrieve: 'all' });
      return r.result.ok ? r.result : undefined;
    }, 60_000, 250);
    expect(again.messages.map((m) => m.sha256)).toEqual([createHash('sha256').update(pop3Wire(MAIL.bob[0]!)).digest('hex')]);
    expect((await podman(['kube', 'down', playFile], 180_000)).code).toBe(0);
    podUp = false;
  }, 5 * 60_000);
});
