/**
 * popgate's Prometheus metrics behind a small typed interface: the rest of
 * the code calls `metrics.loginAttempt(...)`, `listener.accepted()`, ...
 * and never prom-client directly. Each gateway gets its own Registry (never
 * the global one), with prom-client's default process metrics.
 *
 * Hot path: the per-connection calls (accepted, session start/end, bytes)
 * only bump plain numbers in objects made once per listener; the prom-client
 * metrics read them when scraped (`collect`). Per-login calls (auth
 * outcomes, latencies) go to prom-client directly.
 *
 * `noopMetrics` does nothing: what a gateway without an admin listener uses.
 */
import { readFileSync } from 'node:fs';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Every mechanism a session can log in with, plus `none` (not logged in). */
export const SESSION_MECHANISMS = ['none', 'USER', 'PLAIN', 'LOGIN', 'APOP', 'CRAM-MD5', 'GSSAPI', 'KPOP', 'EXTERNAL'] as const;

/**
 * Why a connection was turned away: at admission (the connection limits, a
 * gateway shutting down), a refused PROXY header, or one of the pre-dispatch
 * checks that close a hostile or misdirected client before any command.
 */
export const REFUSAL_REASONS = [
  'TOO_MANY_CONNECTIONS',
  'TOO_MANY_FROM_ADDRESS',
  'SHUTTING_DOWN',
  'PROXY_HEADER',
  'TLS_ON_PLAINTEXT_PORT',
  'HTTP_ON_POP3_PORT',
  'EARLY_TALKER',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export type LoginOutcome = 'success' | 'failure' | 'abandoned';

/**
 * Login throttle events: `delay` a failure answered after a throttle delay,
 * `lockout` a failure that locked an address or user, `refused` a login
 * refused because its address or user is locked, `store-error` a failure
 * store call that failed (the throttle then fails open), `repeated-password`
 * a failure not counted because its password was one of the user's recent
 * failed ones.
 */
export type ThrottleEvent = 'delay' | 'lockout' | 'refused' | 'store-error' | 'repeated-password';

/**
 * Verified-credentials cache events: `hit` a success served from the cache,
 * `negative-hit` a failure served from it, `miss` the verifier was asked,
 * `evicted` entries dropped for room (auth.cache.maxEntries), `invalidated`
 * entries dropped because their user-file lines changed.
 */
export const AUTH_CACHE_EVENTS = ['hit', 'negative-hit', 'miss', 'evicted', 'invalidated'] as const;
export type AuthCacheEvent = (typeof AUTH_CACHE_EVENTS)[number];

/** Kerberos checks: KPOP AP-REQs, AUTH GSSAPI accept steps, realm passwords (KDC). */
export type KerberosCheck = 'kpop' | 'gssapi' | 'password';

/** The counters of one listener; made once per listener, shared by its connections. */
export interface ListenerMetrics {
  /** A TCP connection was admitted (under the connection limits). */
  accepted(): void;
  refused(reason: RefusalReason): void;
  /** A TLS handshake failed (pop3s or after STLS). */
  tlsHandshakeFailed(): void;
  /** A client asked to renegotiate TLS; the connection was closed. */
  tlsRenegotiationRefused(): void;
  /** A POP3 session began (after the PROXY header and implicit TLS): active with mechanism `none`. */
  sessionStarted(): void;
  /** The session logged in: it moves from `none` to `mechanism`. */
  sessionLoggedIn(mechanism: string): void;
  /** The session ended; `mechanism` is what it logged in with (undefined: never logged in). */
  sessionEnded(mechanism: string | undefined): void;
}

export interface LoginAttempt {
  readonly mechanism: string;
  readonly outcome: LoginOutcome;
  /** The error catalogue code of a failure (src/errors.ts). */
  readonly code?: string | undefined;
}

/** A certificate a listener serves, and when it stops being valid. */
export interface CertificateExpiry {
  readonly listener: string;
  /** The certificate file (listeners[].tls.certFile or one of tls.certificates). */
  readonly certFile: string;
  /** The leaf certificate's notAfter, in ms since the epoch. */
  readonly notAfterMs: number;
}

export interface Metrics {
  /** The counters of listener `name` (the same object on every call). */
  listener(name: string): ListenerMetrics;
  /** One login attempt (the same one the `event: "login"` audit line describes). */
  loginAttempt(attempt: LoginAttempt): void;
  throttle(event: ThrottleEvent): void;
  /** The TCP connection to a backend was up `seconds` after connect() was called. */
  backendConnected(seconds: number): void;
  /** A backend accepted the internal login `seconds` after it was sent. */
  backendLoggedIn(seconds: number): void;
  /** One backend attempt failed: catalogue `code`, in `phase` (connect, tls, greeting, starttls, xclient, capa, login). */
  backendError(code: string, phase: string): void;
  /** A TLS handshake to a backend passed its checks, resuming a kept session or not. */
  backendTlsHandshake(resumed: boolean): void;
  /** A relayed session ended having moved these bytes. */
  bytesRelayed(clientToBackend: number, backendToClient: number): void;
  /** One Kerberos check took `seconds`; `failure` is its KerberosFailure (undefined: it succeeded). */
  kerberosCheck(check: KerberosCheck, seconds: number, failure?: string): void;
  /** A credential verifier (user file, Kerberos realm/KDC, auth service) could not answer. */
  verifierError(verifier: string): void;
  /** `count` credentials-cache events of one kind. */
  authCache(event: AuthCacheEvent, count: number): void;
  /** Where the loaded listener certificates are read from at each scrape (the last call wins). */
  certificates(source: () => Iterable<CertificateExpiry>): void;
  /** The Prometheus text exposition. */
  render(): Promise<string>;
  readonly contentType: string;
}

const NOOP_LISTENER: ListenerMetrics = {
  accepted() {},
  refused() {},
  tlsHandshakeFailed() {},
  tlsRenegotiationRefused() {},
  sessionStarted() {},
  sessionLoggedIn() {},
  sessionEnded() {},
};

/** Metrics that go nowhere (no admin listener). */
export const noopMetrics: Metrics = {
  listener: () => NOOP_LISTENER,
  loginAttempt() {},
  throttle() {},
  backendConnected() {},
  backendLoggedIn() {},
  backendError() {},
  backendTlsHandshake() {},
  bytesRelayed() {},
  kerberosCheck() {},
  verifierError() {},
  authCache() {},
  certificates() {},
  render: () => Promise.resolve(''),
  contentType: 'text/plain; version=0.0.4; charset=utf-8',
};

/** Per-listener numbers, read by the collectors at scrape time. */
class ListenerCounters implements ListenerMetrics {
  acceptedCount = 0;
  tlsFailures = 0;
  renegotiationsRefused = 0;
  readonly refusals = new Map<string, number>(REFUSAL_REASONS.map((r) => [r, 0]));
  /** Live sessions by mechanism. */
  readonly active = new Map<string, number>(SESSION_MECHANISMS.map((m) => [m, 0]));
  /** Ended sessions by mechanism. */
  readonly ended = new Map<string, number>(SESSION_MECHANISMS.map((m) => [m, 0]));

  constructor(readonly name: string) {}

  accepted(): void {
    this.acceptedCount++;
  }

  refused(reason: RefusalReason): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }

  tlsHandshakeFailed(): void {
    this.tlsFailures++;
  }

  tlsRenegotiationRefused(): void {
    this.renegotiationsRefused++;
  }

  sessionStarted(): void {
    this.active.set('none', (this.active.get('none') ?? 0) + 1);
  }

  sessionLoggedIn(mechanism: string): void {
    this.active.set('none', (this.active.get('none') ?? 0) - 1);
    this.active.set(mechanism, (this.active.get(mechanism) ?? 0) + 1);
  }

  sessionEnded(mechanism: string | undefined): void {
    const m = mechanism ?? 'none';
    this.active.set(m, (this.active.get(m) ?? 0) - 1);
    this.ended.set(m, (this.ended.get(m) ?? 0) + 1);
  }
}

/** Seconds buckets for backend connects (loopback to a slow WAN) and logins (a backend's own auth). */
const BACKEND_CONNECT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BACKEND_LOGIN_BUCKETS = [0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Ticket checks take ~0.1 ms; KDC password checks milliseconds to seconds. */
const KERBEROS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** popgate's version from package.json ('unknown' when it cannot be read). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface CreateMetricsOptions {
  /** prom-client's default process metrics (CPU, memory, event loop, GC). Default true. */
  readonly processMetrics?: boolean;
  /** For build_info; default: package.json's version. */
  readonly version?: string;
}

/** One registry's metrics as data (what a worker sends its primary to be summed). */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Metrics on a registry of their own, which can also be read as data. */
export interface RegistryMetrics extends Metrics {
  snapshot(): Promise<MetricsSnapshot>;
}

/** A Metrics on a fresh private Registry. */
export function createMetrics(opts: CreateMetricsOptions = {}): RegistryMetrics {
  const registry = new Registry();
  const registers = [registry];
  const listeners = new Map<string, ListenerCounters>();
  let bytesToBackend = 0;
  let bytesToClient = 0;

  new Gauge({
    name: 'popgate_build_info',
    help: 'Always 1; the labels give the popgate version and the Node.js version.',
    labelNames: ['version', 'node'],
    registers,
    // Summed over workers it would read N: every worker runs the same build.
    aggregator: 'first',
  }).set({ version: opts.version ?? packageVersion(), node: process.version }, 1);

  new Counter({
    name: 'popgate_connections_accepted_total',
    help: 'TCP connections admitted by a listener (under limits.maxConnections and maxConnectionsPerIp).',
    labelNames: ['listener'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) this.inc({ listener: l.name }, l.acceptedCount);
    },
  });

  new Counter({
    name: 'popgate_connections_refused_total',
    help:
      'Connections turned away, by reason: at admission (TOO_MANY_CONNECTIONS, TOO_MANY_FROM_ADDRESS, SHUTTING_DOWN; ' +
      'not counted as accepted, except per-address refusals behind a trusted PROXY peer), or after acceptance and before ' +
      'any command (PROXY_HEADER refused, TLS_ON_PLAINTEXT_PORT, HTTP_ON_POP3_PORT, EARLY_TALKER).',
    labelNames: ['listener', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) for (const [reason, n] of l.refusals) this.inc({ listener: l.name, reason }, n);
    },
  });

  new Counter({
    name: 'popgate_tls_handshake_failures_total',
    help: 'Client TLS handshakes that failed (implicit TLS on pop3s listeners, and after STLS).',
    labelNames: ['listener'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) this.inc({ listener: l.name }, l.tlsFailures);
    },
  });

  new Counter({
    name: 'popgate_tls_renegotiations_refused_total',
    help: 'Client requests to renegotiate TLS 1.2 (pop3s, after STLS, or in a relayed session): refused, and the connection closed.',
    labelNames: ['listener'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) this.inc({ listener: l.name }, l.renegotiationsRefused);
    },
  });

  new Gauge({
    name: 'popgate_sessions_active',
    help: 'Open POP3 sessions by listener and the mechanism they logged in with (none: not logged in yet).',
    labelNames: ['listener', 'mechanism'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) for (const [mechanism, n] of l.active) this.set({ listener: l.name, mechanism }, n);
    },
  });

  new Counter({
    name: 'popgate_sessions_total',
    help: 'POP3 sessions ended, by listener and the mechanism they logged in with (none: never logged in); counted when the session ends.',
    labelNames: ['listener', 'mechanism'],
    registers,
    collect() {
      this.reset();
      for (const l of listeners.values()) for (const [mechanism, n] of l.ended) this.inc({ listener: l.name, mechanism }, n);
    },
  });

  const authAttempts = new Counter({
    name: 'popgate_auth_attempts_total',
    help:
      'Login attempts by mechanism, outcome (success, failure, abandoned: the client left mid-login) and code ' +
      '(the error catalogue code of a failure, e.g. AUTH_FAILED, LOGIN_THROTTLED, BACKEND_UNREACHABLE; none otherwise).',
    labelNames: ['mechanism', 'outcome', 'code'],
    registers,
  });

  const throttleEvents = new Counter({
    name: 'popgate_throttle_events_total',
    help:
      'Login throttle events: delay (a failure answered after a throttle delay), lockout (a failure that locked an ' +
      'address or user), refused (a login refused because its address or user is locked), store-error (a failure-store ' +
      'call failed; the throttle failed open), repeated-password (a failure not counted: the password was one of the ' +
      "user's recent failed ones).",
    labelNames: ['event'],
    registers,
  });
  for (const event of ['delay', 'lockout', 'refused', 'store-error', 'repeated-password'] as const) throttleEvents.inc({ event }, 0);

  const backendConnect = new Histogram({
    name: 'popgate_backend_connect_seconds',
    help: 'Time to establish the TCP connection to a backend (each attempt, failover included).',
    buckets: BACKEND_CONNECT_BUCKETS,
    registers,
  });

  const backendLogin = new Histogram({
    name: 'popgate_backend_login_seconds',
    help: 'Time from sending the internal login to the backend to its +OK.',
    buckets: BACKEND_LOGIN_BUCKETS,
    registers,
  });

  const backendErrors = new Counter({
    name: 'popgate_backend_errors_total',
    help: 'Failed backend attempts by catalogue code (BACKEND_UNREACHABLE, BACKEND_TIMEOUT, ...) and phase (connect, tls, greeting, starttls, xclient, capa, login).',
    labelNames: ['code', 'phase'],
    registers,
  });

  const backendTlsHandshakes = new Counter({
    name: 'popgate_backend_tls_handshakes_total',
    help: 'Verified TLS handshakes to backends, by whether they resumed a kept session (resumed="true") or were full.',
    labelNames: ['resumed'],
    registers,
  });
  for (const resumed of ['true', 'false']) backendTlsHandshakes.inc({ resumed }, 0);

  new Counter({
    name: 'popgate_relayed_bytes_total',
    help: 'Bytes relayed between logged-in clients and backends, by direction; counted when each session ends.',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      this.inc({ direction: 'client_to_backend' }, bytesToBackend);
      this.inc({ direction: 'backend_to_client' }, bytesToClient);
    },
  });

  const kerberosSeconds = new Histogram({
    name: 'popgate_kerberos_verify_seconds',
    help: 'Kerberos checks by kind: kpop (an AP-REQ), gssapi (one AUTH GSSAPI accept step), password (a realm password at the KDC).',
    labelNames: ['check'],
    buckets: KERBEROS_BUCKETS,
    registers,
  });
  const kerberosChildren = new Map((['kpop', 'gssapi', 'password'] as const).map((c) => [c, kerberosSeconds.labels({ check: c })]));
  for (const c of ['kpop', 'gssapi', 'password'] as const) kerberosSeconds.zero({ check: c });

  const kerberosFailures = new Counter({
    name: 'popgate_kerberos_failures_total',
    help: 'Failed Kerberos checks by kind (kpop, gssapi, password) and failure (replay, skew, wrong-principal, bad-token, bad-password, kdc-unreachable, timeout, config, other).',
    labelNames: ['check', 'failure'],
    registers,
  });

  const verifierErrors = new Counter({
    name: 'popgate_verifier_errors_total',
    help:
      'Credential checks a verifier could not answer (client sees [SYS/TEMP]): KDC down or slow (kerberos), auth service ' +
      'down (http), directory down or service account refused (ldap), PAM module error or timeout (pam), user file trouble (user-file).',
    labelNames: ['verifier'],
    registers,
  });

  const authCacheEvents = new Counter({
    name: 'popgate_auth_cache_events_total',
    help:
      'Verified-credentials cache (auth.cache) events: hit (a success served from the cache), negative-hit (a failure ' +
      'served from it), miss (the verifier was asked), evicted (dropped for room), invalidated (the user-file line changed).',
    labelNames: ['event'],
    registers,
  });
  for (const event of AUTH_CACHE_EVENTS) authCacheEvents.inc({ event }, 0);

  let certificateSource: () => Iterable<CertificateExpiry> = () => [];
  new Gauge({
    name: 'popgate_tls_certificate_expiry_timestamp_seconds',
    help:
      'When each certificate a listener serves stops being valid (its notAfter, Unix seconds), as last loaded ' +
      '(at start, SIGHUP or a change of the files on disk). Alert on time() - this.',
    labelNames: ['listener', 'cert_file'],
    registers,
    // Workers load the same files; with several, the earliest is the one that matters.
    aggregator: 'min',
    collect() {
      this.reset();
      for (const c of certificateSource()) this.set({ listener: c.listener, cert_file: c.certFile }, Math.floor(c.notAfterMs / 1000));
    },
  });

  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  // Every login counts an attempt and a cache event: their labelled series are
  // looked up once each (prom-client hashes the label object on every call).
  const attemptSeries = new Map<string, { inc(): void }>();
  const cacheSeries = new Map<string, { inc(n: number): void }>();

  return {
    listener(name) {
      let l = listeners.get(name);
      if (!l) {
        l = new ListenerCounters(name);
        listeners.set(name, l);
      }
      return l;
    },
    loginAttempt({ mechanism, outcome, code }) {
      const key = `${mechanism}\0${outcome}\0${code ?? 'none'}`;
      let series = attemptSeries.get(key);
      if (!series) {
        series = authAttempts.labels({ mechanism, outcome, code: code ?? 'none' });
        attemptSeries.set(key, series);
      }
      series.inc();
    },
    throttle(event) {
      throttleEvents.inc({ event });
    },
    backendConnected(seconds) {
      backendConnect.observe(seconds);
    },
    backendLoggedIn(seconds) {
      backendLogin.observe(seconds);
    },
    backendError(code, phase) {
      backendErrors.inc({ code, phase });
    },
    backendTlsHandshake(resumed) {
      backendTlsHandshakes.inc({ resumed: String(resumed) });
    },
    bytesRelayed(clientToBackend, backendToClient) {
      bytesToBackend += clientToBackend;
      bytesToClient += backendToClient;
    },
    kerberosCheck(check, seconds, failure) {
      kerberosChildren.get(check)?.observe(seconds);
      if (failure !== undefined) kerberosFailures.inc({ check, failure });
    },
    verifierError(verifier) {
      verifierErrors.inc({ verifier });
    },
    authCache(event, count) {
      let series = cacheSeries.get(event);
      if (!series) {
        series = authCacheEvents.labels({ event });
        cacheSeries.set(event, series);
      }
      series.inc(count);
    },
    certificates(source) {
      certificateSource = source;
    },
    render: () => registry.metrics(),
    snapshot: () => registry.getMetricsAsJSON(),
    contentType: registry.contentType,
  };
}

/** The primary's own metrics with `workers` > 1, and the sum of its workers'. */
export interface PrimaryMetrics {
  /** A worker process exited unasked and was replaced. */
  workerRestarted(): void;
  /**
   * The exposition /metrics serves: the workers' snapshots added up metric
   * by metric and label set by label set (prom-client's cluster aggregation:
   * counters, gauges and histograms summed, build and version info taken
   * once), plus the primary's own counters.
   */
  render(workers: readonly MetricsSnapshot[]): Promise<string>;
  readonly contentType: string;
}

export function createPrimaryMetrics(): PrimaryMetrics {
  const registry = new Registry();
  const restarts = new Counter({
    name: 'popgate_worker_restarts_total',
    help: 'Worker processes (workers > 1) that exited without being asked to and were replaced by a new one.',
    registers: [registry],
  });
  return {
    workerRestarted() {
      restarts.inc();
    },
    async render(workers) {
      const own = await registry.getMetricsAsJSON();
      return AggregatorRegistry.aggregate([...workers, own]).metrics();
    },
    contentType: registry.contentType,
  };
}
