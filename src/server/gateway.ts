import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { once } from 'node:events';
import type { Logger } from 'pino';
import type { ListenerConfig, PopgateConfig } from '../config/index.js';
import { createUserFileVerifier, createVerifierChain, type UserFileVerifier } from '../auth/index.js';
import { createKerberosPasswordVerifier } from '../auth/kerberos-verifier.js';
import type { PasswordVerifier } from '../auth/types.js';
import { createInternalLoginResolver, type ReloadableLoginResolver } from '../backend/index.js';
import { errorReply } from '../errors.js';
import { ClientConnection, type ConnectionContext } from './connection.js';
import { createLoginService, type LoginService } from './login-service.js';
import { setupKerberos, type KerberosServices } from './kerberos-services.js';
import { TlsContextStore } from './tls-context.js';

export interface BoundListener {
  readonly name: string;
  readonly kind: ListenerConfig['kind'];
  readonly address: string;
  readonly port: number;
}

interface ListenerRuntime {
  readonly config: ListenerConfig;
  readonly name: string;
  readonly server: Server | TlsServer;
  readonly tls: TlsContextStore | undefined;
}

/**
 * The running gateway: listeners, live connections, and the shared services
 * (verifier, internal-login resolver) they use. Owns start, reload and drain.
 */
export class Gateway {
  private readonly listeners: ListenerRuntime[] = [];
  private readonly connections = new Set<ClientConnection>();
  private readonly shutdown = new AbortController();
  private nextId = 0;
  private openSockets = 0;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly config: PopgateConfig,
    private readonly log: Logger,
    private readonly verifier: PasswordVerifier,
    private readonly userFile: UserFileVerifier | undefined,
    private readonly resolver: ReloadableLoginResolver,
    private readonly login: LoginService,
    private readonly kerberos: KerberosServices | undefined,
  ) {}

  static async start(config: PopgateConfig, log: Logger): Promise<Gateway> {
    const kerberos = config.kerberos ? await setupKerberos(config.kerberos, log) : undefined;
    let userFile: UserFileVerifier | undefined;
    const verifiers: PasswordVerifier[] = [];
    for (const name of config.auth.verifiers) {
      if (name === 'userFile') {
        // The schema guarantees userFile is set when this verifier is listed.
        userFile = await createUserFileVerifier({ path: config.auth.userFile!, logger: log });
        verifiers.push(userFile);
      } else {
        verifiers.push(
          createKerberosPasswordVerifier({
            binding: kerberos!.binding,
            keytab: kerberos!.config.keytab,
            servicePrincipal: kerberos!.config.passwordServicePrincipal,
            defaultRealm: kerberos!.config.mapping.realms[0]!,
            mapper: kerberos!.mapper,
          }),
        );
      }
    }
    const verifier = createVerifierChain(verifiers);
    let resolver: ReloadableLoginResolver;
    try {
      resolver = await createInternalLoginResolver(config.backend.login, log);
    } catch (err) {
      verifier.close();
      throw err;
    }
    const login = createLoginService({
      verifier,
      resolver,
      ...(kerberos ? { principalMapper: kerberos.mapper } : {}),
      endpoint: { host: config.backend.host, port: config.backend.port },
      timeouts: {
        connectMs: config.backend.timeouts.connect,
        greetingMs: config.backend.timeouts.greeting,
        loginMs: config.backend.timeouts.login,
      },
    });
    const gateway = new Gateway(config, log, verifier, userFile, resolver, login, kerberos);
    try {
      for (const listener of config.listeners) await gateway.listen(listener);
    } catch (err) {
      await gateway.stop(0);
      throw err;
    }
    return gateway;
  }

  get bound(): BoundListener[] {
    return this.listeners.map((l) => {
      const addr = l.server.address();
      const port = addr && typeof addr === 'object' ? addr.port : l.config.port;
      return { name: l.name, kind: l.config.kind, address: l.config.address, port };
    });
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  private async listen(config: ListenerConfig): Promise<void> {
    const name = config.name;
    let tls: TlsContextStore | undefined;
    if (config.tls) {
      tls = new TlsContextStore({
        certFile: config.tls.certFile,
        keyFile: config.tls.keyFile,
        minVersion: config.tls.minVersion,
        ciphers: config.tls.ciphers,
      });
      await tls.load();
    }
    const log = this.log.child({ listener: name });
    let server: Server | TlsServer;
    if (config.kind === 'pop3s') {
      const store = tls!;
      const tlsServer = createTlsServer({
        ...store.currentOptions,
        // A client may send QUIT and FIN at once; it must still read the backend's +OK.
        allowHalfOpen: true,
        handshakeTimeout: this.config.limits.preAuthTimeout });
      tlsServer.on('secureConnection', (socket) => this.accept(socket, runtime));
      // Admission happens on the raw TCP socket so the limit holds during handshakes.
      tlsServer.on('connection', (socket: Socket) => this.admit(socket, runtime));
      tlsServer.on('tlsClientError', (err, socket) =>
        log.info({ remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed'),
      );
      server = tlsServer;
    } else {
      server = createNetServer({ allowHalfOpen: true }, (socket) => {
        if (this.admit(socket, runtime)) this.accept(socket, runtime);
      });
    }
    server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
    const runtime: ListenerRuntime = { config, name, server, tls };
    server.listen({ host: config.address, port: config.port });
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]: unknown[]) => {
        throw new Error(`listener ${name}: cannot listen on ${config.address}:${config.port}: ${(err as Error).message}`);
      }),
    ]);
    this.listeners.push(runtime);
    const bound = server.address();
    log.info({ kind: config.kind, address: config.address, port: bound && typeof bound === 'object' ? bound.port : config.port }, 'listening');
  }

  /**
   * Count every TCP connection from accept to close, TLS handshakes included,
   * and refuse those over `limits.maxConnections`: with a POP3 reply where the
   * channel is plaintext, by closing where a TLS handshake would come first.
   */
  private admit(socket: Socket, listener: ListenerRuntime): boolean {
    if (this.stopping) {
      socket.destroy();
      return false;
    }
    if (this.openSockets >= this.config.limits.maxConnections) {
      this.log.warn(
        { remote: socket.remoteAddress, listener: listener.name, open: this.openSockets },
        'connection limit reached, refusing',
      );
      if (listener.config.kind === 'pop3') {
        socket.end(errorReply('TOO_MANY_CONNECTIONS') + '\r\n');
        setTimeout(() => socket.destroy(), 1_000).unref();
      } else {
        socket.destroy();
      }
      return false;
    }
    this.openSockets++;
    socket.once('close', () => this.openSockets--);
    return true;
  }

  private accept(socket: Socket, listener: ListenerRuntime): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const { config, kerberos } = this;
    const kpop = listener.config.kind === 'kpop';
    const gssEnabled = kerberos !== undefined && config.auth.mechanisms.includes('GSSAPI');
    const ctx: ConnectionContext = {
      listenerName: listener.name,
      ...(kpop && kerberos
        ? { kpop: { verifyApReq: (apReq: Buffer) => kerberos.binding.verifyApReq(apReq, kerberos.acceptor), maxApReqLength: 64 * 1024 } }
        : {}),
      ...(gssEnabled ? { gss: () => kerberos.binding.createGssAcceptor(kerberos.acceptor) } : {}),
      session: {
        stlsAvailable: listener.config.kind === 'pop3' && listener.tls !== undefined,
        allowPlaintextAuth: listener.config.allowPlaintextAuth,
        // A KPOP session is authenticated by its ticket; it offers no SASL.
        saslMechanisms: kpop ? [] : config.auth.mechanisms,
        greeting: listener.config.greeting,
        implementation: config.implementation || undefined,
        backendCapabilities: config.backend.capabilities,
        maxAuthAttempts: config.auth.maxAttempts,
        maxErrors: config.limits.maxErrors,
        maxCommandLine: config.limits.maxCommandLine,
        maxSaslLine: config.limits.maxSaslLine,
      },
      secureContext: () => listener.tls?.current,
      login: this.login,
      preAuthTimeoutMs: config.limits.preAuthTimeout,
      idleTimeoutMs: config.limits.idleTimeout,
      failureDelayMs: config.auth.failureDelay,
      shutdownSignal: this.shutdown.signal,
    };
    const id = (++this.nextId).toString(36).padStart(6, '0');
    const connection = new ClientConnection(socket, ctx, this.log, id);
    this.connections.add(connection);
    void connection.finished.then(() => this.connections.delete(connection));
    connection.start();
  }

  /**
   * Re-read certificates, the user file and mapped secrets. Each part keeps
   * its previous state if its new files are bad; live sessions are untouched.
   */
  async reload(): Promise<void> {
    for (const l of this.listeners) {
      if (!l.tls) continue;
      try {
        await l.tls.load();
        if (l.config.kind === 'pop3s' && l.tls.currentOptions) (l.server as TlsServer).setSecureContext(l.tls.currentOptions);
        this.log.info({ listener: l.name }, 'TLS certificate reloaded');
      } catch (err) {
        this.log.error({ listener: l.name, err: (err as Error).message }, 'TLS certificate reload failed; keeping the old one');
      }
    }
    await this.userFile?.reload();
    if (this.kerberos) {
      try {
        await this.kerberos.reload();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'kerberos reload: keytab check failed');
      }
    }
    try {
      await this.resolver.reload();
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
    await Promise.all(closing);
    this.verifier.close();
    this.resolver.close();
    this.log.info('stopped');
  }
}
