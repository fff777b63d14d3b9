/**
 * One POP3 / POP3S / KPOP listener at run time: binds its socket, holds the
 * settings a config reload may replace (TLS certificate and handshaker,
 * PROXY trust, greeting, ...), watches its certificate files, and makes the
 * context each connection it accepts is served with.
 */
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ListenerConfig, PopgateConfig } from '../config/index.js';
import { KPOP_DEFAULT_MAX_AP_REQ_LENGTH } from '../kerberos/kpop-framing.js';
import type { ListenerMetrics, Metrics } from '../observability/metrics.js';
import type { AdmissionPoint } from './admission.js';
import type { ConnectionContext } from './connection.js';
import type { LoginService } from './login-service.js';
import { canVerifyChallenges, challengeString, usableMechanisms, type Services } from './services.js';
import { TrustedNetworks } from '../net/index.js';
import { ALL_TICKET_KEYS_DECRYPT, CertificatePairError, TicketKeysError, TlsContextStore } from './tls-context.js';
import { TlsHandshaker } from './tls-handshaker.js';
import type { ProxyOptions } from './transport.js';

export interface BoundListener {
  readonly name: string;
  readonly kind: ListenerConfig['kind'];
  readonly address: string;
  readonly port: number;
}

/** What a listener's TLS needs, made from its config before anything is swapped. */
export interface ListenerTls {
  readonly store: TlsContextStore | undefined;
}

/** What every connection shares, whatever its listener. */
export interface SharedContext {
  readonly login: LoginService;
  readonly shutdownSignal: AbortSignal;
  readonly metrics: Metrics;
}

export interface ListenerOptions {
  readonly log: Logger;
  readonly metrics: ListenerMetrics;
  /** The gateway stops: certificate reloads are skipped. */
  readonly stopping: () => boolean;
  /** A TCP connection accepted on this listener. */
  readonly onSocket: (socket: Socket, listener: Listener) => void;
}

/** How often certificate files are polled for changes. */
const CERT_WATCH_INTERVAL_MS = 2_000;

/**
 * Everything but the socket (name, kind, address, port) can be replaced by a
 * config reload: connections read these fields when they are accepted and
 * keep what they got.
 */
export class Listener implements AdmissionPoint {
  readonly name: string;
  private readonly server: Server;
  readonly metrics: ListenerMetrics;
  private current: ListenerConfig;
  private tlsStore: TlsContextStore | undefined;
  private proxyOptions: ProxyOptions | undefined;
  /** Server-side handshakes (pop3s and STLS alike), with the listener's client-certificate policy. */
  private tlsHandshaker: TlsHandshaker | undefined;
  /** The client-certificate policy and timeout the handshaker was made with. */
  private handshakerKey: string | undefined;
  /** Stops watching the certificate files. */
  private unwatch: (() => void) | undefined;
  /** Carries `listener: name`. */
  readonly log: Logger;

  private constructor(
    config: ListenerConfig,
    private readonly opts: ListenerOptions,
  ) {
    this.name = config.name;
    this.current = config;
    this.metrics = opts.metrics;
    this.log = opts.log.child({ listener: config.name });
    // A client may send QUIT and FIN at once; it must still read the backend's +OK.
    this.server = createNetServer({ allowHalfOpen: true }, (socket) => opts.onSocket(socket, this));
  }

  /** Loads the listener's certificate, binds its socket and logs `listening`; throws (nothing left open) when either fails. */
  static async open(config: ListenerConfig, gatewayConfig: PopgateConfig, opts: ListenerOptions): Promise<Listener> {
    const tls = await loadListenerTls(config);
    const listener = new Listener(config, opts);
    listener.configure(config, tls, gatewayConfig);
    try {
      await listener.bind();
    } catch (err) {
      listener.unwatch?.();
      throw err;
    }
    listener.log.info({ kind: config.kind, address: config.address, port: listener.bound.port }, 'listening');
    return listener;
  }

  private async bind(): Promise<void> {
    const { server, current: config } = this;
    server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
    server.listen({ host: config.address, port: config.port });
    // Both handlers go once the bind is decided: a later 'error' is the logger's alone.
    await new Promise<void>((resolve, reject) => {
      const onListening = (): void => {
        server.removeListener('error', onError);
        resolve();
      };
      const onError = (err: Error): void => {
        server.removeListener('listening', onListening);
        reject(new Error(`listener ${this.name}: cannot listen on ${config.address}:${config.port}: ${err.message}`));
      };
      server.once('listening', onListening);
      server.once('error', onError);
    });
  }

  get config(): ListenerConfig {
    return this.current;
  }

  get kind(): ListenerConfig['kind'] {
    return this.current.kind;
  }

  /** The certificate store (undefined: no TLS on this listener). */
  get tls(): TlsContextStore | undefined {
    return this.tlsStore;
  }

  /** PROXY header handling, when the listener accepts one. */
  get proxy(): ProxyOptions | undefined {
    return this.proxyOptions;
  }

  /** The handshake a pop3s listener runs before anything else. */
  get implicitTls(): TlsHandshaker | undefined {
    return this.current.kind === 'pop3s' ? this.tlsHandshaker : undefined;
  }

  get bound(): BoundListener {
    const addr = this.server.address();
    const port = addr && typeof addr === 'object' ? addr.port : this.current.port;
    return { name: this.name, kind: this.current.kind, address: this.current.address, port };
  }

  /** The socket is bound (readiness). */
  get listening(): boolean {
    return this.server.listening;
  }

  /** A configured certificate is not loaded (readiness). */
  get certificateMissing(): boolean {
    return this.current.tls !== undefined && !this.tlsStore?.currentOptions;
  }

  trustsProxy(address: string | undefined): boolean {
    return this.proxyOptions?.trusted.has(address) ?? false;
  }

  /**
   * Sets everything about the listener but its socket from `config` (`tls`
   * already loaded from it): what connections accepted from now on get.
   * The TLS handshaker is kept (with the new certificate) when its
   * client-certificate policy and timeout are unchanged, and the certificate
   * files are watched for changes.
   */
  configure(config: ListenerConfig, tls: ListenerTls, gatewayConfig: PopgateConfig): void {
    const clientCerts = config.tls?.clientCertificates;
    const wantCerts = clientCerts !== undefined && clientCerts.mode !== 'none';
    const handshakeTimeoutMs = gatewayConfig.limits.preAuthTimeout;
    const store = tls.store;
    // A handshaker made for one certificate never looks at SNI: going to several makes a new one.
    const handshakerKey = JSON.stringify([wantCerts, clientCerts?.mode, handshakeTimeoutMs, store?.selectsByName ?? false]);
    let handshaker: TlsHandshaker | undefined;
    if (store?.currentOptions) {
      if (this.tlsHandshaker && this.tlsStore && this.handshakerKey === handshakerKey) {
        handshaker = this.tlsHandshaker;
        // New handshakes use the new context; live sessions keep theirs.
        if (this.tlsStore !== store) handshaker.setContext(store.currentOptions, store.ticketKeys, store.select);
      } else {
        handshaker = new TlsHandshaker(
          store.currentOptions,
          { requestCert: wantCerts, rejectUnauthorized: clientCerts?.mode === 'required', handshakeTimeoutMs },
          store.ticketKeys,
          store.select,
        );
      }
      if (this.tlsStore !== store) this.warnIfOlderKeysIgnored(store);
    }
    if (this.tlsStore !== store) {
      this.unwatch?.();
      this.unwatch = store?.watch(() => void this.reloadTls(store, 'certificate files changed'), { intervalMs: CERT_WATCH_INTERVAL_MS });
    }
    this.handshakerKey = handshakerKey;
    this.current = config;
    this.tlsStore = store;
    this.tlsHandshaker = handshaker;
    this.proxyOptions = config.proxyProtocol
      ? {
          trusted: new TrustedNetworks(config.proxyProtocol.trustedNetworks),
          required: config.proxyProtocol.required,
          timeoutMs: config.proxyProtocol.timeout,
        }
      : undefined;
  }

  /** Re-reads the certificate files of `store` (the current one unless a reload replaced it); a bad pair keeps the old context. */
  async reloadTls(store: TlsContextStore, reason: string): Promise<void> {
    if (this.tlsStore !== store || this.opts.stopping()) return; // replaced by a config reload meanwhile
    try {
      const report = await store.load();
      if (this.tlsStore !== store) return;
      // New handshakes use the new context; live sessions keep theirs.
      if (store.currentOptions) this.tlsHandshaker?.setContext(store.currentOptions, store.ticketKeys, store.select);
      this.opts.log.info({ listener: this.name, reason, ...(store.files.certificates ? { certificates: store.pairs.length } : {}) }, 'TLS certificate reloaded');
      if (report.ticketKeysProblem !== undefined) {
        this.opts.log.warn(
          { listener: this.name, reason, file: store.files.ticketKeysFile, err: report.ticketKeysProblem },
          'TLS session ticket keys not reloaded; keeping the old ones',
        );
      } else if (report.ticketKeysChanged) {
        this.opts.log.info({ listener: this.name, reason, file: store.files.ticketKeysFile, keys: store.ticketKeys?.length }, 'TLS session ticket keys reloaded');
        this.warnIfOlderKeysIgnored(store);
      }
    } catch (err) {
      this.opts.log.error({ listener: this.name, reason, err: (err as Error).message }, 'TLS certificate reload failed; keeping the old one');
    }
  }

  /** On a Node without the ticket key callback, tickets under the file's older keys get a full handshake: say so. */
  private warnIfOlderKeysIgnored(store: TlsContextStore): void {
    if (ALL_TICKET_KEYS_DECRYPT || (store.ticketKeys?.length ?? 0) < 2) return;
    this.opts.log.warn(
      { listener: this.name, file: store.files.ticketKeysFile },
      'TLS session tickets: this Node decrypts with the first key only; tickets under the older keys get a full handshake',
    );
  }

  /** Stops accepting; resolves once the server is closed (after the last connection is gone). */
  close(): Promise<void> {
    return new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Stops watching the certificate files. */
  stopWatching(): void {
    this.unwatch?.();
  }

  /** What a connection accepted now is served with: this listener's settings and the current per-login `services`. */
  connectionContext(services: Services, shared: SharedContext): ConnectionContext {
    const { config, kerberos } = services;
    const listener = this.current;
    const kpop = listener.kind === 'kpop';
    const gssEnabled = kerberos !== undefined && config.auth.mechanisms.includes('GSSAPI');
    const challenges = canVerifyChallenges(services);
    // SCRAM keys live in the user file (the schema requires it for the SCRAM mechanisms).
    const scramFile = config.auth.mechanisms.some((m) => m.startsWith('SCRAM-')) ? services.userFile : undefined;
    const certs = listener.tls?.clientCertificates;
    return {
      listenerName: this.name,
      ...(this.tlsHandshaker && listener.kind === 'pop3' ? { tls: this.tlsHandshaker } : {}),
      ...(certs && certs.mode !== 'none' ? { certificateIdentity: { identity: certs.identity, stripDomain: certs.stripDomain } } : {}),
      ...(config.auth.apop && challenges && !kpop ? { apopTimestamp: () => challengeString() } : {}),
      ...(kpop && kerberos
        ? {
            kpop: {
              verifyApReq: (apReq: Buffer) => kerberos.binding.verifyApReq(apReq, kerberos.acceptor),
              maxApReqLength: KPOP_DEFAULT_MAX_AP_REQ_LENGTH,
            },
          }
        : {}),
      ...(gssEnabled ? { gss: () => kerberos.binding.createGssAcceptor(kerberos.acceptor) } : {}),
      ...(scramFile ? { scramCredentials: (user: string) => scramFile.scramCredentials(user) } : {}),
      session: {
        stlsAvailable: listener.kind === 'pop3' && this.tlsStore !== undefined,
        allowPlaintextAuth: listener.allowPlaintextAuth,
        // A KPOP session is authenticated by its ticket; it offers no SASL.
        saslMechanisms: kpop ? [] : usableMechanisms(services),
        challengeFactory: challengeString,
        greeting: listener.greeting,
        implementation: config.implementation || undefined,
        backendCapabilities: config.backend.capabilities,
        maxAuthAttempts: config.auth.maxAttempts,
        maxErrors: config.limits.maxErrors,
        maxCommandLine: config.limits.maxCommandLine,
        maxSaslLine: config.limits.maxSaslLine,
      },
      login: shared.login,
      preAuthTimeoutMs: config.limits.preAuthTimeout,
      idleTimeoutMs: config.limits.idleTimeout,
      failureDelayMs: config.auth.failureDelay,
      greetingDelayMs: config.limits.greetingDelay,
      shutdownSignal: shared.shutdownSignal,
      metrics: shared.metrics,
      listenerMetrics: this.metrics,
    };
  }
}

/** A listener's certificate and ticket key store, loaded (none for a listener without TLS). Throws on unreadable or bad files. */
export async function loadListenerTls(config: ListenerConfig): Promise<ListenerTls> {
  if (!config.tls) return { store: undefined };
  const clientCerts = config.tls.clientCertificates;
  const wantCerts = clientCerts !== undefined && clientCerts.mode !== 'none';
  const store = new TlsContextStore({
    ...(config.tls.certificates ? { certificates: config.tls.certificates } : { certFile: config.tls.certFile, keyFile: config.tls.keyFile }),
    minVersion: config.tls.minVersion,
    ciphers: config.tls.ciphers,
    ecdhCurve: config.tls.ecdhCurve,
    ...(wantCerts ? { clientCaFile: clientCerts.caFile } : {}),
    ...(config.tls.ticketKeysFile !== undefined ? { ticketKeysFile: config.tls.ticketKeysFile } : {}),
    // Sessions resume on the same listener of any process or replica, under the same client-certificate policy.
    sessionScope: JSON.stringify([config.name, wantCerts ? clientCerts.mode : 'none']),
  });
  try {
    await store.load();
  } catch (err) {
    if (err instanceof TicketKeysError) throw new Error(`listener ${config.name}: TLS session ticket keys ${err.message}`);
    if (err instanceof CertificatePairError) throw new Error(`listener ${config.name}: TLS ${err.message}`);
    if (config.tls.certificates) throw new Error(`listener ${config.name}: TLS certificates: ${(err as Error).message}`);
    throw new Error(`listener ${config.name}: TLS certificate ${config.tls.certFile} / key ${config.tls.keyFile}: ${(err as Error).message}`);
  }
  return { store };
}
