import type { Socket } from 'node:net';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { ListenerConfig, PopgateConfig } from '../config/index.js';
import { backendTargets } from '../config/routing.js';
import { createMetrics, noopMetrics, type Metrics } from '../observability/metrics.js';
import { startAdminServer, type AdminServer, type Readiness } from '../observability/admin-server.js';
import { Admission } from './admission.js';
import type { AddressSlots } from './address-limit.js';
import { Generations, describeRestarts, planReload, type ReloadChange } from './config-reload.js';
import { ClientConnection } from './connection.js';
import { Listener, loadListenerTls, type BoundListener, type ListenerTls } from './listener.js';
import type { LoginService } from './login-service.js';
import { buildServices, carriedParts, currentLoginService, servicesCloser, type Services } from './services.js';
import { BackendProbe } from './readiness.js';
import { gatewayChecks } from './readiness-checks.js';
import { openTransport, type PeerInfo } from './transport.js';

export type { BoundListener } from './listener.js';

/** Where the admin HTTP listener (metrics, health, readiness) is bound. */
export interface BoundAdmin {
  readonly address: string;
  readonly port: number;
}

export interface GatewayOptions {
  /**
   * Where metrics go. Default: a fresh private registry when the config has
   * an admin section (which serves it at /metrics), else nowhere.
   */
  readonly metrics?: Metrics;
  /**
   * Worker hooks (src/server/workers): whether this gateway serves the admin
   * listener itself (default true; a worker leaves it to the primary), and
   * where per-address slots come from (default: counted in this process).
   */
  readonly serveAdmin?: boolean;
  readonly addressSlots?: (max: number) => AddressSlots;
}

/**
 * The running gateway: listeners, live connections, and the shared services
 * (verifier, internal-login resolver) they use. Owns start, reload and drain;
 * listeners (listener.ts), admission (admission.ts), per-login services
 * (services.ts) and readiness (readiness-checks.ts) do the rest.
 */
export class Gateway {
  private readonly listeners: Listener[] = [];
  private readonly connections = new Set<ClientConnection>();
  /** Aborted when the gateway stops; every relayed session listens (so no listener cap). */
  private readonly shutdown = (() => {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
  })();
  private nextId = 0;
  private readonly admission: Admission;
  private stopping: Promise<void> | undefined;
  /** Every configured listener is bound (start() got past them). */
  private started = false;
  private adminServer: AdminServer | undefined;
  /** /readyz: "a backend is reachable", probed at most every 2 s. */
  private readonly backendProbe = new BackendProbe();
  /** Why the last keytab re-check (SIGHUP) failed; undefined while it is fine. */
  private keytabProblem: string | undefined;
  /** Per-login services; a config reload swaps them, old ones close once their in-flight logins finish. */
  private readonly services: Generations<Services>;
  /** Closes a retired generation's services (shares its bookkeeping between generations). */
  private readonly closeServices: (old: Services, alive: readonly Services[]) => Promise<void>;
  /** Every login goes to the services current when it starts (pre-auth connections pick up a reload too). */
  private readonly login: LoginService;

  private constructor(
    initial: Services,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    addressSlots: GatewayOptions['addressSlots'],
  ) {
    this.closeServices = servicesCloser(log);
    this.services = new Generations(initial, this.closeServices);
    this.login = currentLoginService(this.services);
    this.admission = new Admission({
      log,
      limits: () => this.config.limits,
      stopping: () => this.stopping !== undefined,
      ...(addressSlots ? { addressSlots } : {}),
    });
  }

  private get config(): PopgateConfig {
    return this.services.current.config;
  }

  static async start(config: PopgateConfig, log: Logger, opts: GatewayOptions = {}): Promise<Gateway> {
    const metrics = opts.metrics ?? (config.admin ? createMetrics() : noopMetrics);
    const services = await buildServices(config, log, metrics);
    const gateway = new Gateway(services, log, metrics, opts.addressSlots);
    try {
      for (const listener of config.listeners) {
        gateway.listeners.push(
          await Listener.open(listener, config, {
            log,
            metrics: metrics.listener(listener.name),
            stopping: () => gateway.stopping !== undefined,
            onSocket: (socket, l) => gateway.onConnection(socket, l),
          }),
        );
      }
      gateway.started = true;
      // Read at each scrape: a reload or a certificate swapped on disk shows at once.
      metrics.certificates(() => gateway.listeners.flatMap((l) => (l.tls?.expiries ?? []).map((c) => ({ listener: l.name, ...c }))));
      if (config.admin && opts.serveAdmin !== false) {
        gateway.adminServer = await startAdminServer({
          address: config.admin.address,
          port: config.admin.port,
          metrics,
          readiness: () => gateway.readiness(),
          log,
        });
      }
    } catch (err) {
      await gateway.stop(0);
      throw err;
    }
    return gateway;
  }

  get bound(): BoundListener[] {
    return this.listeners.map((l) => l.bound);
  }

  /** The admin HTTP listener, when the config has an admin section. */
  get admin(): BoundAdmin | undefined {
    const a = this.adminServer;
    return a ? { address: a.address, port: a.port } : undefined;
  }

  /**
   * /readyz: every listener bound, the config loaded, every listener's
   * certificate loaded, the keytab checked (with Kerberos configured), at
   * least one default backend reachable (probed, cached ~2 s), and not
   * draining (after SIGTERM).
   */
  async readiness(): Promise<Readiness> {
    const { config, kerberos } = this.services.current;
    const checks = gatewayChecks({
      draining: this.stopping !== undefined,
      started: this.started,
      listeners: this.listeners.map((l) => ({ name: l.name, listening: l.listening, certificateMissing: l.certificateMissing })),
      kerberos: config.kerberos ? { problem: kerberos ? this.keytabProblem : 'not set up' } : undefined,
    });
    checks.push(await this.backendProbe.check(backendTargets(config).defaultTargets));
    return { ready: checks.every((c) => c.ok), checks };
  }

  /** Accepted TCP connections not yet closed, including those still in a TLS handshake or PROXY wait. */
  get openTcpConnections(): number {
    return this.admission.openConnections;
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  /** accept → admission → PROXY header / implicit TLS → admission (per address, behind a balancer) → POP3. */
  private onConnection(raw: Socket, listener: Listener): void {
    const admitted = this.admission.admit(raw, listener);
    if (admitted === true) this.open(raw, listener);
    // Slots shared by workers: the primary answers first.
    else if (admitted !== false) void admitted.then((ok) => ok && this.open(raw, listener));
  }

  private open(raw: Socket, listener: Listener): void {
    const tls = listener.implicitTls;
    const proxy = listener.proxy;
    void openTransport(raw, { ...(proxy ? { proxy } : {}), ...(tls ? { tls } : {}), metrics: listener.metrics }, listener.log).then(
      (opened) => {
        if (opened) this.serve(opened.socket, opened.peer, listener);
      },
    );
  }

  private serve(socket: Socket, peer: PeerInfo, listener: Listener): void {
    const admitted = this.admission.admitPeer(socket, peer, listener);
    if (admitted === true) this.begin(socket, peer, listener);
    else if (admitted !== false) void admitted.then((ok) => ok && this.begin(socket, peer, listener));
  }

  private begin(socket: Socket, peer: PeerInfo, listener: Listener): void {
    const ctx = listener.connectionContext(this.services.current, { login: this.login, shutdownSignal: this.shutdown.signal, metrics: this.metrics });
    const id = (++this.nextId).toString(36).padStart(6, '0');
    const connection = new ClientConnection(socket, peer, ctx, this.log, id);
    this.connections.add(connection);
    void connection.finished.then(() => this.connections.delete(connection));
    connection.start();
  }

  /**
   * Switch to a new configuration (SIGHUP) without dropping anything live:
   * new verifiers, internal-login resolver, routes, timeouts, throttle,
   * mechanisms and limits serve the logins and connections that start from
   * now on; relayed sessions keep their backend, accepted connections the
   * settings they were accepted with. The previous services close once no
   * login uses them any more. Listener certificates, greetings and other
   * per-listener settings are applied too, but a changed listener set
   * (listener added or removed, kind/address/port changed) needs a restart:
   * that is logged and the running listeners stay as they are. Resolves
   * false (with an error logged, nothing changed) when the new services or
   * certificates cannot be set up.
   */
  async applyConfig(next: PopgateConfig): Promise<boolean> {
    if (this.stopping) return false;
    const current = this.services.current;
    const changes = planReload({ config: current.config, listeners: this.listeners.map((l) => l.config) }, next);
    this.warnRestartNeeded(changes);
    // Load every changed certificate first: a bad one refuses the whole config.
    const updates: Array<{ listener: Listener; config: ListenerConfig; tls: ListenerTls }> = [];
    try {
      for (const listener of this.listeners) {
        const change = changes.find((c) => c.kind === 'listener-reconfigured' && c.listener === listener.name);
        const config = next.listeners.find((l) => l.name === listener.name);
        if (change?.kind !== 'listener-reconfigured' || !config) continue;
        updates.push({ listener, config, tls: change.tls ? await loadListenerTls(config) : { store: listener.tls } });
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'config reload failed: cannot load a listener certificate; keeping the running configuration');
      return false;
    }
    let services: Services;
    try {
      const reused = changes.find((c) => c.kind === 'services-rebuilt')?.reused ?? [];
      services = await buildServices(next, this.log, this.metrics, carriedParts(current, reused));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'config reload failed; keeping the running configuration');
      return false;
    }
    if (this.stopping) {
      await this.closeServices(services, [current]);
      return false;
    }
    // The swap: from here on, no await until everything is in place.
    if (changes.some((c) => c.kind === 'address-limit-changed')) this.admission.resetAddressSlots();
    this.services.swap(services);
    for (const u of updates) u.listener.configure(u.config, u.tls, next);
    this.log.info({ listeners: updates.map((u) => u.listener.name), retiring: this.services.retiringCount }, 'configuration reloaded');
    return true;
  }

  /** The operator's warnings for what a reload cannot apply (listener set, admin listener). */
  private warnRestartNeeded(changes: readonly ReloadChange[]): void {
    const restart = describeRestarts(changes);
    if (restart.length > 0) {
      this.log.warn({ changes: restart }, `config reload: listener changes need a restart (restart needed): ${restart.join('; ')}; keeping the running listeners`);
    }
    const admin = changes.find((c) => c.kind === 'admin-changed');
    if (admin) {
      this.log.warn(
        { current: admin.from ?? null, next: admin.to ?? null },
        'config reload: admin listener changes need a restart (restart needed); keeping the running admin listener',
      );
    }
  }

  /**
   * Re-read certificates, the user file and mapped secrets. Each part keeps
   * its previous state if its new files are bad; live sessions are untouched.
   */
  async reload(): Promise<void> {
    for (const l of this.listeners) {
      if (l.tls) await l.reloadTls(l.tls, 'reload');
    }
    const { userFile, kerberos, resolver } = this.services.current;
    await userFile?.reload();
    if (kerberos) {
      try {
        await kerberos.reload();
        this.keytabProblem = undefined;
      } catch (err) {
        this.keytabProblem = (err as Error).message;
        this.log.error({ err: (err as Error).message }, 'kerberos reload: keytab check failed');
      }
    }
    try {
      await resolver.reload();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'backend secrets reload failed; keeping the old entries');
    }
  }

  /**
   * Stop accepting, tell unauthenticated clients we are going, let relayed
   * sessions finish for up to `drainMs`, then cut them (without QUIT to the
   * backend, so nothing is deleted).
   */
  stop(drainMs: number = this.config.shutdown.drainTimeout): Promise<void> {
    this.stopping ??= this.doStop(drainMs);
    return this.stopping;
  }

  private async doStop(drainMs: number): Promise<void> {
    this.log.info({ connections: this.connections.size, drainMs }, 'stopping');
    const closing = this.listeners.map((l) => l.close());
    for (const c of this.connections) c.shutdown();
    const drained = Promise.all([...this.connections].map((c) => c.finished));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), drainMs);
    });
    const outcome = await Promise.race([drained.then(() => 'drained' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.log.warn({ connections: this.connections.size }, 'drain deadline reached, closing remaining sessions');
      this.shutdown.abort();
      await Promise.race([drained, new Promise((r) => setTimeout(r, 2_000).unref())]);
    }
    // Whatever is left (a TLS handshake or PROXY header still pending, a client
    // not reading its last reply) would hold server.close() open: cut it.
    this.admission.destroyAll();
    await Promise.all(closing);
    for (const l of this.listeners) l.stopWatching();
    await this.services.closeAll();
    // Last: /readyz answers 503 (draining) until the very end.
    await this.adminServer?.close();
    this.log.info('stopped');
  }
}
