import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ListenerConfig, PopgateConfig } from '../config/index.js';
import { createHttpAuthVerifier, createUserFileVerifier, createVerifierChain, type UserFileVerifier } from '../auth/index.js';
import { createKerberosPasswordVerifier } from '../auth/kerberos-verifier.js';
import { createLoginThrottle, type LoginThrottle } from '../auth/throttle.js';
import type { PasswordVerifier } from '../auth/types.js';
import { createInternalLoginResolver, type ReloadableLoginResolver } from '../backend/index.js';
import { errorReply, type ErrorCode } from '../errors.js';
import { backendTargets, resolveRouteEntry, targetsForUser } from '../config/routing.js';
import type { SaslMechanism } from '../pop3/types.js';
import { ClientConnection, type ConnectionContext } from './connection.js';
import { createLoginService, type BackendRoutes, type LoginService } from './login-service.js';
import { TrustedNetworks } from '../net/index.js';
import { addressKey, LogRateLimiter, PerAddressCounter } from './address-limit.js';
import { openTransport, type ProxyOptions } from './transport.js';
import { TlsHandshaker } from './tls-handshaker.js';
import { setupKerberos, type KerberosServices } from './kerberos-services.js';
import { TlsContextStore } from './tls-context.js';
import { Generations, listenerRestartChanges, sameConfig } from './config-reload.js';
import type { PeerInfo } from './transport.js';
import { KerberosError, type PasswordCheck } from '../kerberos/types.js';
import { createMetrics, noopMetrics, type ListenerMetrics, type Metrics } from '../observability/metrics.js';
import { startAdminServer, type AdminServer, type Readiness, type ReadinessCheck } from '../observability/admin-server.js';
import { BackendProbe } from './readiness.js';

export interface BoundListener {
  readonly name: string;
  readonly kind: ListenerConfig['kind'];
  readonly address: string;
  readonly port: number;
}

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
}

/**
 * One listener. Everything but the socket (name, kind, address, port) can be
 * replaced by a config reload: connections read these fields when they are
 * accepted and keep what they got.
 */
interface ListenerRuntime {
  config: ListenerConfig;
  readonly name: string;
  readonly server: Server;
  tls: TlsContextStore | undefined;
  proxy: ProxyOptions | undefined;
  /** Server-side handshakes (pop3s and STLS alike), with the listener's client-certificate policy. */
  handshaker: TlsHandshaker | undefined;
  /** Stops watching the certificate files. */
  unwatch: (() => void) | undefined;
  readonly metrics: ListenerMetrics;
}

/** The per-login services one config describes; a reload builds a new set and swaps it in for new logins. */
interface Services {
  readonly config: PopgateConfig;
  readonly verifier: PasswordVerifier;
  readonly userFile: UserFileVerifier | undefined;
  readonly resolver: ReloadableLoginResolver;
  readonly login: LoginService;
  readonly kerberos: KerberosServices | undefined;
  readonly throttle: LoginThrottle | undefined;
}

/** What a listener's TLS needs, made from its config before anything is swapped. */
export interface ListenerTls {
  readonly store: TlsContextStore | undefined;
}

/** How often certificate files are polled for changes. */
const CERT_WATCH_INTERVAL_MS = 2_000;

/**
 * The running gateway: listeners, live connections, and the shared services
 * (verifier, internal-login resolver) they use. Owns start, reload and drain.
 */
export class Gateway {
  private readonly listeners: ListenerRuntime[] = [];
  private readonly connections = new Set<ClientConnection>();
  /** Aborted when the gateway stops; every relayed session listens (so no listener cap). */
  private readonly shutdown = (() => {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
  })();
  private nextId = 0;
  private openSockets = 0;
  /** Every accepted TCP socket until it closes (handshakes and PROXY waits included). */
  private readonly rawSockets = new Set<Socket>();
  /** limits.maxConnectionsPerIp bookkeeping (created on first use: the config is a constructor parameter). */
  private addressSlots: PerAddressCounter | undefined;
  /** Refusal log lines: at most one per limit and address (or per limit, for the global one) every 10 s. */
  private readonly refusalLog = new LogRateLimiter({ windowMs: 10_000 });
  /** The client-certificate policy and timeout each listener's handshaker was made with. */
  private readonly handshakerKeys = new WeakMap<ListenerRuntime, string>();
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
  /** Throttles already closed (a throttle can be shared by several generations of services). */
  private readonly closedThrottles = new WeakSet<LoginThrottle>();
  /** Every login goes to the services current when it starts (pre-auth connections pick up a reload too). */
  private readonly login: LoginService = {
    login: (request) => this.services.use((s) => s.login.login(request)),
    recordFailure: (client, claimedUser) => this.services.use((s) => s.login.recordFailure(client, claimedUser)),
  };

  private constructor(
    initial: Services,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.services = new Generations(initial, (old, alive) => this.closeServices(old, alive));
  }

  private get config(): PopgateConfig {
    return this.services.current.config;
  }

  static async start(config: PopgateConfig, log: Logger, opts: GatewayOptions = {}): Promise<Gateway> {
    const metrics = opts.metrics ?? (config.admin ? createMetrics() : noopMetrics);
    const services = await buildServices(config, log, undefined, metrics);
    const gateway = new Gateway(services, log, metrics);
    try {
      for (const listener of config.listeners) await gateway.listen(listener);
      gateway.started = true;
      if (config.admin) {
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

  /** Closes what `old` holds that no live generation (`alive`) shares. */
  private async closeServices(old: Services, alive: readonly Services[]): Promise<void> {
    try {
      old.verifier.close();
      old.resolver.close();
      const throttle = old.throttle;
      if (throttle && !this.closedThrottles.has(throttle) && !alive.some((s) => s.throttle === throttle)) {
        this.closedThrottles.add(throttle);
        await throttle.close();
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'closing the previous configuration\'s services failed');
    }
  }

  get bound(): BoundListener[] {
    return this.listeners.map((l) => {
      const addr = l.server.address();
      const port = addr && typeof addr === 'object' ? addr.port : l.config.port;
      return { name: l.name, kind: l.config.kind, address: l.config.address, port };
    });
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
    const checks: ReadinessCheck[] = [];
    if (this.stopping) checks.push({ name: 'draining', ok: false, detail: 'shutting down' });
    const unbound = this.listeners.filter((l) => !l.server.listening).map((l) => l.name);
    checks.push(
      this.started && unbound.length === 0
        ? { name: 'listeners', ok: true }
        : { name: 'listeners', ok: false, detail: unbound.length > 0 ? `not listening: ${unbound.join(', ')}` : 'starting' },
    );
    checks.push({ name: 'config', ok: true });
    const noCert = this.listeners.filter((l) => l.config.tls !== undefined && !l.tls?.currentOptions).map((l) => l.name);
    checks.push(noCert.length === 0 ? { name: 'tls', ok: true } : { name: 'tls', ok: false, detail: `no certificate loaded: ${noCert.join(', ')}` });
    if (config.kerberos) {
      const problem = kerberos ? this.keytabProblem : 'not set up';
      checks.push(problem === undefined ? { name: 'kerberos', ok: true } : { name: 'kerberos', ok: false, detail: problem });
    }
    checks.push(await this.backendProbe.check(backendTargets(config).defaultTargets));
    return { ready: checks.every((c) => c.ok), checks };
  }

  /** Accepted TCP connections not yet closed, including those still in a TLS handshake or PROXY wait. */
  get openTcpConnections(): number {
    return this.openSockets;
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  private async listen(config: ListenerConfig): Promise<void> {
    const name = config.name;
    const tls = await loadListenerTls(config);
    const log = this.log.child({ listener: name });
    const runtime: ListenerRuntime = {
      config,
      name,
      tls: undefined,
      proxy: undefined,
      handshaker: undefined,
      unwatch: undefined,
      metrics: this.metrics.listener(name),
      // A client may send QUIT and FIN at once; it must still read the backend's +OK.
      server: createNetServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket, runtime, log)),
    };
    this.configureListener(runtime, config, tls, this.config);
    const { server } = runtime;
    server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
    server.listen({ host: config.address, port: config.port });
    try {
      // Both handlers go once the bind is decided: a later 'error' is the logger's alone.
      await new Promise<void>((resolve, reject) => {
        const onListening = (): void => {
          server.removeListener('error', onError);
          resolve();
        };
        const onError = (err: Error): void => {
          server.removeListener('listening', onListening);
          reject(new Error(`listener ${name}: cannot listen on ${config.address}:${config.port}: ${err.message}`));
        };
        server.once('listening', onListening);
        server.once('error', onError);
      });
    } catch (err) {
      runtime.unwatch?.();
      throw err;
    }
    this.listeners.push(runtime);
    const bound = server.address();
    log.info({ kind: config.kind, address: config.address, port: bound && typeof bound === 'object' ? bound.port : config.port }, 'listening');
  }

  /**
   * Sets everything about a listener but its socket from `config` (`tls`
   * already loaded from it): what connections accepted from now on get.
   * The TLS handshaker is kept (with the new certificate) when its
   * client-certificate policy and timeout are unchanged, and the certificate
   * files are watched for changes.
   */
  private configureListener(runtime: ListenerRuntime, config: ListenerConfig, tls: ListenerTls, gatewayConfig: PopgateConfig): void {
    const clientCerts = config.tls?.clientCertificates;
    const wantCerts = clientCerts !== undefined && clientCerts.mode !== 'none';
    const handshakeTimeoutMs = gatewayConfig.limits.preAuthTimeout;
    const handshakerKey = JSON.stringify([wantCerts, clientCerts?.mode, handshakeTimeoutMs]);
    const store = tls.store;
    let handshaker: TlsHandshaker | undefined;
    if (store?.currentOptions) {
      if (runtime.handshaker && runtime.tls && this.handshakerKeys.get(runtime) === handshakerKey) {
        handshaker = runtime.handshaker;
        // New handshakes use the new context; live sessions keep theirs.
        if (runtime.tls !== store) handshaker.setContext(store.currentOptions);
      } else {
        handshaker = new TlsHandshaker(store.currentOptions, {
          requestCert: wantCerts,
          rejectUnauthorized: clientCerts?.mode === 'required',
          handshakeTimeoutMs,
        });
      }
    }
    if (runtime.tls !== store) {
      runtime.unwatch?.();
      runtime.unwatch = store?.watch(() => void this.reloadListenerTls(runtime, store, 'certificate files changed'), {
        intervalMs: CERT_WATCH_INTERVAL_MS,
      });
    }
    this.handshakerKeys.set(runtime, handshakerKey);
    runtime.config = config;
    runtime.tls = store;
    runtime.handshaker = handshaker;
    runtime.proxy = config.proxyProtocol
      ? {
          trusted: new TrustedNetworks(config.proxyProtocol.trustedNetworks),
          required: config.proxyProtocol.required,
          timeoutMs: config.proxyProtocol.timeout,
        }
      : undefined;
  }

  /** Re-reads a listener's certificate files; a bad pair keeps the old context. */
  private async reloadListenerTls(l: ListenerRuntime, store: TlsContextStore, reason: string): Promise<void> {
    if (l.tls !== store || this.stopping) return; // replaced by a config reload meanwhile
    try {
      await store.load();
      if (l.tls !== store) return;
      // New handshakes use the new context; live sessions keep theirs.
      if (store.currentOptions) l.handshaker?.setContext(store.currentOptions);
      this.log.info({ listener: l.name, reason }, 'TLS certificate reloaded');
    } catch (err) {
      this.log.error({ listener: l.name, reason, err: (err as Error).message }, 'TLS certificate reload failed; keeping the old one');
    }
  }

  /** accept → admission → PROXY header / implicit TLS → POP3. */
  private onConnection(raw: Socket, listener: ListenerRuntime, log: Logger): void {
    if (!this.admit(raw, listener)) return;
    void openTransport(
      raw,
      {
        ...(listener.proxy ? { proxy: listener.proxy } : {}),
        ...(listener.config.kind === 'pop3s' && listener.handshaker ? { tls: listener.handshaker } : {}),
        metrics: listener.metrics,
      },
      log,
    ).then((opened) => {
      if (opened) this.accept(opened.socket, opened.peer, listener);
    });
  }

  /**
   * Count every TCP connection from accept to close, TLS handshakes included,
   * and refuse those over `limits.maxConnections` or, per client address,
   * `limits.maxConnectionsPerIp` (see `refuse` for how).
   *
   * A peer in the listener's PROXY `trustedNetworks` is a load balancer
   * carrying many clients: counting it here would cap the whole balancer at
   * the per-address limit. Its connections are counted per address in
   * `accept()` instead, once the header has named the real client (or, for a
   * connection without header, by the balancer's own address). Until then
   * only the global limit and the PROXY header timeout bound them, and on
   * pop3s listeners the TLS handshake also runs before that count.
   */
  private admit(socket: Socket, listener: ListenerRuntime): boolean {
    if (this.stopping) {
      listener.metrics.refused('SHUTTING_DOWN');
      socket.destroy();
      return false;
    }
    if (this.openSockets >= this.config.limits.maxConnections) {
      this.refuse(socket, listener, 'TOO_MANY_CONNECTIONS', '*', 'connection limit reached, refusing', {
        remote: socket.remoteAddress,
        open: this.openSockets,
      });
      return false;
    }
    const viaBalancer = listener.proxy?.trusted.has(socket.remoteAddress) ?? false;
    if (!viaBalancer && !this.claimAddressSlot(socket, socket.remoteAddress ?? '', listener)) return false;
    listener.metrics.accepted();
    this.openSockets++;
    this.rawSockets.add(socket);
    socket.once('close', () => {
      this.openSockets--;
      this.rawSockets.delete(socket);
    });
    return true;
  }

  /**
   * Takes one of `address`'s `limits.maxConnectionsPerIp` slots for `socket`
   * until it closes; refuses the socket (false) when there is none left.
   */
  private claimAddressSlot(socket: Socket, address: string, listener: ListenerRuntime, via?: string): boolean {
    this.addressSlots ??= new PerAddressCounter(this.config.limits.maxConnectionsPerIp);
    const release = this.addressSlots.acquire(address);
    if (release) {
      socket.once('close', release);
      return true;
    }
    const key = addressKey(address);
    this.refuse(socket, listener, 'TOO_MANY_FROM_ADDRESS', key, 'per-address connection limit reached, refusing', {
      remote: address,
      ...(via !== undefined ? { via } : {}),
      ...(key !== address ? { addressKey: key } : {}),
      limit: this.addressSlots.max,
    });
    return false;
  }

  /**
   * Refuses a connection over a limit: with the catalogue's POP3 reply where
   * the client reads POP3 now (a plaintext pop3 listener, or a pop3s one after
   * its handshake), by just closing where a TLS handshake or the KPOP preamble
   * comes first. One warn line per limit and `logKey` every 10 s; the next
   * one counts the refusals it did not log (`suppressed`).
   */
  private refuse(
    socket: Socket,
    listener: ListenerRuntime,
    code: Extract<ErrorCode, 'TOO_MANY_CONNECTIONS' | 'TOO_MANY_FROM_ADDRESS'>,
    logKey: string,
    msg: string,
    fields: Record<string, unknown>,
  ): void {
    listener.metrics.refused(code);
    const note = this.refusalLog.take(`${code} ${logKey}`);
    if (note.log) {
      this.log.warn(
        { ...fields, listener: listener.name, code, ...(note.suppressed > 0 ? { suppressed: note.suppressed } : {}) },
        msg,
      );
    }
    const readsPop3 = listener.config.kind === 'pop3' || (listener.config.kind === 'pop3s' && socket instanceof TLSSocket);
    if (readsPop3) {
      socket.end(errorReply(code) + '\r\n');
      setTimeout(() => socket.destroy(), 1_000).unref();
    } else {
      socket.destroy();
    }
  }

  private accept(socket: Socket, peer: PeerInfo, listener: ListenerRuntime): void {
    if (this.stopping) {
      listener.metrics.refused('SHUTTING_DOWN');
      socket.destroy();
      return;
    }
    // From a trusted PROXY peer: the per-address count admit() left to us.
    const balancer = peer.proxiedBy?.address ?? peer.remoteAddress;
    if (listener.proxy?.trusted.has(balancer)) {
      if (socket.destroyed) return; // gone during the header or handshake: nothing to count or serve
      if (!this.claimAddressSlot(socket, peer.remoteAddress, listener, peer.proxiedBy?.address)) return;
    }
    const services = this.services.current;
    const { config, kerberos } = services;
    const kpop = listener.config.kind === 'kpop';
    const gssEnabled = kerberos !== undefined && config.auth.mechanisms.includes('GSSAPI');
    const mechanisms = usableMechanisms(services);
    const challenges = canVerifyChallenges(services);
    const certs = listener.config.tls?.clientCertificates;
    const ctx: ConnectionContext = {
      listenerName: listener.name,
      ...(listener.handshaker && listener.config.kind === 'pop3' ? { tls: listener.handshaker } : {}),
      ...(certs && certs.mode !== 'none' ? { certificateIdentity: { identity: certs.identity, stripDomain: certs.stripDomain } } : {}),
      ...(config.auth.apop && challenges && !kpop ? { apopTimestamp: () => challengeString() } : {}),
      ...(kpop && kerberos
        ? { kpop: { verifyApReq: (apReq: Buffer) => kerberos.binding.verifyApReq(apReq, kerberos.acceptor), maxApReqLength: 64 * 1024 } }
        : {}),
      ...(gssEnabled ? { gss: () => kerberos.binding.createGssAcceptor(kerberos.acceptor) } : {}),
      session: {
        stlsAvailable: listener.config.kind === 'pop3' && listener.tls !== undefined,
        allowPlaintextAuth: listener.config.allowPlaintextAuth,
        // A KPOP session is authenticated by its ticket; it offers no SASL.
        saslMechanisms: kpop ? [] : mechanisms,
        challengeFactory: challengeString,
        greeting: listener.config.greeting,
        implementation: config.implementation || undefined,
        backendCapabilities: config.backend.capabilities,
        maxAuthAttempts: config.auth.maxAttempts,
        maxErrors: config.limits.maxErrors,
        maxCommandLine: config.limits.maxCommandLine,
        maxSaslLine: config.limits.maxSaslLine,
      },
      login: this.login,
      preAuthTimeoutMs: config.limits.preAuthTimeout,
      idleTimeoutMs: config.limits.idleTimeout,
      failureDelayMs: config.auth.failureDelay,
      greetingDelayMs: config.limits.greetingDelay,
      shutdownSignal: this.shutdown.signal,
      metrics: this.metrics,
      listenerMetrics: listener.metrics,
    };
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
    const restart = listenerRestartChanges(
      this.listeners.map((l) => l.config),
      next.listeners,
    );
    if (restart.length > 0) {
      this.log.warn({ changes: restart }, `config reload: listener changes need a restart (restart needed): ${restart.join('; ')}; keeping the running listeners`);
    }
    if (!sameConfig(current.config.admin, next.admin)) {
      this.log.warn(
        { current: current.config.admin ?? null, next: next.admin ?? null },
        'config reload: admin listener changes need a restart (restart needed); keeping the running admin listener',
      );
    }
    const blocked = new Set(restart.map((c) => /^listener (\S+?):? /.exec(c)?.[1]));
    // Load every changed certificate first: a bad one refuses the whole config.
    const updates: Array<{ runtime: ListenerRuntime; config: ListenerConfig; tls: ListenerTls }> = [];
    try {
      for (const runtime of this.listeners) {
        const config = next.listeners.find((l) => l.name === runtime.name);
        if (!config || blocked.has(runtime.name)) continue;
        const tls = sameConfig(runtime.config.tls, config.tls) ? { store: runtime.tls } : await loadListenerTls(config);
        updates.push({ runtime, config, tls });
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'config reload failed: cannot load a listener certificate; keeping the running configuration');
      return false;
    }
    let services: Services;
    try {
      services = await buildServices(next, this.log, current, this.metrics);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'config reload failed; keeping the running configuration');
      return false;
    }
    if (this.stopping) {
      await this.closeServices(services, [current]);
      return false;
    }
    // The swap: from here on, no await until everything is in place.
    if (next.limits.maxConnectionsPerIp !== current.config.limits.maxConnectionsPerIp) {
      // Open connections release their slots in the old counter; new ones count in a fresh one.
      this.addressSlots = undefined;
    }
    this.services.swap(services);
    for (const u of updates) this.configureListener(u.runtime, u.config, u.tls, next);
    this.log.info({ listeners: updates.map((u) => u.runtime.name), retiring: this.services.retiringCount }, 'configuration reloaded');
    return true;
  }

  /**
   * Re-read certificates, the user file and mapped secrets. Each part keeps
   * its previous state if its new files are bad; live sessions are untouched.
   */
  async reload(): Promise<void> {
    for (const l of this.listeners) {
      if (l.tls) await this.reloadListenerTls(l, l.tls, 'reload');
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
    const closing = this.listeners.map((l) => new Promise<void>((r) => l.server.close(() => r())));
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
    for (const socket of this.rawSockets) socket.destroy();
    await Promise.all(closing);
    for (const l of this.listeners) l.unwatch?.();
    await this.services.closeAll();
    // Last: /readyz answers 503 (draining) until the very end.
    await this.adminServer?.close();
    this.log.info('stopped');
  }
}

/** Whether some verifier can check APOP / CRAM-MD5 now ({PLAIN} entries come and go with reloads). */
function canVerifyChallenges(services: Services): boolean {
  return services.config.auth.verifiers.includes('http') || (services.userFile?.canVerifyChallenges ?? false);
}

/** Configured mechanisms minus those nothing can answer right now. */
function usableMechanisms(services: Services): SaslMechanism[] {
  const challenges = canVerifyChallenges(services);
  return services.config.auth.mechanisms.filter((m) => m !== 'CRAM-MD5' || challenges);
}

/** A listener's certificate store, loaded (none for a listener without TLS). Throws on unreadable or bad files. */
export async function loadListenerTls(config: ListenerConfig): Promise<ListenerTls> {
  if (!config.tls) return { store: undefined };
  const clientCerts = config.tls.clientCertificates;
  const wantCerts = clientCerts !== undefined && clientCerts.mode !== 'none';
  const store = new TlsContextStore({
    certFile: config.tls.certFile,
    keyFile: config.tls.keyFile,
    minVersion: config.tls.minVersion,
    ciphers: config.tls.ciphers,
    ecdhCurve: config.tls.ecdhCurve,
    ...(wantCerts ? { clientCaFile: clientCerts.caFile } : {}),
  });
  try {
    await store.load();
  } catch (err) {
    throw new Error(`listener ${config.name}: TLS certificate ${config.tls.certFile} / key ${config.tls.keyFile}: ${(err as Error).message}`);
  }
  return { store };
}

/** RFC 1939 / RFC 2195 challenge: `<random.time@host>`, fresh per use. */
function challengeString(): string {
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, '') || 'popgate';
  return `<${randomBytes(12).toString('hex')}.${Date.now()}@${host}>`;
}

/** Per-user routes from config, with the default backend's link settings for auth-service answers. */
function backendRoutes(config: PopgateConfig): BackendRoutes {
  const targets = backendTargets(config);
  return {
    targetsFor: (user) => targetsForUser(targets, user),
    targetFor: (endpoint) => resolveRouteEntry({ host: endpoint.host, port: endpoint.port }, config.backend),
  };
}

/**
 * The per-login services `config` describes. Kerberos and the login throttle
 * (whose memory store holds failure counts) are taken over from `previous`
 * when their settings did not change; everything else is built afresh. On
 * failure, whatever was built is closed again and the error thrown.
 */
async function buildServices(config: PopgateConfig, log: Logger, previous: Services | undefined, metrics: Metrics): Promise<Services> {
  const kerberos =
    previous?.kerberos && config.kerberos && sameConfig(previous.config.kerberos, config.kerberos)
      ? previous.kerberos
      : config.kerberos
        ? await setupKerberos(config.kerberos, log)
        : undefined;
  let userFile: UserFileVerifier | undefined;
  const verifiers: PasswordVerifier[] = [];
  try {
    for (const name of config.auth.verifiers) {
      if (name === 'userFile') {
        // The schema guarantees userFile is set when this verifier is listed.
        userFile = await createUserFileVerifier({ path: config.auth.userFile!, logger: log });
        verifiers.push(countingErrors(userFile, metrics));
      } else if (name === 'http') {
        const http = config.auth.http!;
        const service = createHttpAuthVerifier({
          url: http.url,
          timeoutMs: http.timeout,
          maxConcurrent: http.maxConcurrent,
          maxQueue: http.maxQueue,
          maxWaits: http.maxWaits,
          headers: http.headers,
          proxy: http.proxy,
          authorizeTicketLogins: http.authorizeTicketLogins,
          logger: log,
        });
        verifiers.push(countingErrors(service, metrics));
      } else {
        const binding = kerberos!.binding;
        const realm = createKerberosPasswordVerifier({
          binding: { verifyPassword: (check) => timedPasswordCheck(binding, check, metrics) },
          keytab: kerberos!.config.keytab,
          servicePrincipal: kerberos!.config.passwordServicePrincipal,
          defaultRealm: kerberos!.config.mapping.realms[0]!,
          mapper: kerberos!.mapper,
        });
        verifiers.push(countingErrors(realm, metrics));
      }
    }
  } catch (err) {
    for (const v of verifiers) v.close();
    throw err;
  }
  const verifier = createVerifierChain(verifiers);
  let resolver: ReloadableLoginResolver;
  try {
    resolver = await createInternalLoginResolver(config.backend.login, log);
  } catch (err) {
    verifier.close();
    throw err;
  }
  let throttle: LoginThrottle | undefined;
  try {
    throttle =
      previous?.throttle && sameConfig(previous.config.auth.throttle, config.auth.throttle)
        ? previous.throttle
        : await createLoginThrottle(config.auth.throttle, log);
  } catch (err) {
    verifier.close();
    resolver.close();
    throw err;
  }
  const login = createLoginService({
    verifier,
    resolver,
    ...(kerberos ? { principalMapper: kerberos.mapper } : {}),
    ...(throttle ? { throttle } : {}),
    metrics,
    routes: backendRoutes(config),
    timeouts: {
      connectMs: config.backend.timeouts.connect,
      greetingMs: config.backend.timeouts.greeting,
      loginMs: config.backend.timeouts.login,
    },
  });
  return { config, verifier, userFile, resolver, login, kerberos, throttle };
}

/**
 * `v` with every rejection (the verifier could not answer: KDC, auth
 * service, user file) counted in popgate_verifier_errors_total.
 */
function countingErrors(v: PasswordVerifier, metrics: Metrics): PasswordVerifier {
  if (metrics === noopMetrics) return v;
  const counted = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      metrics.verifierError(v.name);
      throw err;
    });
  const verifyChallenge = v.verifyChallenge?.bind(v);
  const authorize = v.authorize?.bind(v);
  return {
    name: v.name,
    verify: (request) => counted(v.verify(request)),
    ...(verifyChallenge ? { verifyChallenge: (request: Parameters<typeof verifyChallenge>[0]) => counted(verifyChallenge(request)) } : {}),
    ...(authorize ? { authorize: (request: Parameters<typeof authorize>[0]) => counted(authorize(request)) } : {}),
    close: () => v.close(),
  };
}

/** A realm password check at the KDC, timed into popgate_kerberos_verify_seconds{check="password"}. */
async function timedPasswordCheck(
  binding: { verifyPassword(check: PasswordCheck): Promise<boolean> },
  check: PasswordCheck,
  metrics: Metrics,
): Promise<boolean> {
  const started = performance.now();
  try {
    const ok = await binding.verifyPassword(check);
    metrics.kerberosCheck('password', (performance.now() - started) / 1000, ok ? undefined : 'bad-password');
    return ok;
  } catch (err) {
    metrics.kerberosCheck('password', (performance.now() - started) / 1000, err instanceof KerberosError ? err.failure : 'other');
    throw err;
  }
}
