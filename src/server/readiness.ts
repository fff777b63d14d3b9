/**
 * The backend part of /readyz: can popgate reach a backend at all? Each
 * default backend target is probed with a TCP connect (after which a
 * plaintext or STLS backend must greet with +OK) under a short deadline; the
 * answer is cached for a couple of seconds so probes cannot hammer the
 * backends however often /readyz is asked.
 */
import { connect } from 'node:net';
import { readGreeting } from '../backend/login-machine.js';
import { encodeProxyHeader, hostPort } from '../net/index.js';
import { LineFramer } from '../pop3/framer.js';
import type { BackendTarget } from '../backend/types.js';
import type { ReadinessCheck } from '../observability/admin-server.js';

/** Deadline for one probe (connect + greeting). */
export const BACKEND_PROBE_TIMEOUT_MS = 1_000;
/** How long a probe result is reused. */
export const BACKEND_PROBE_TTL_MS = 2_000;

/**
 * Probes one backend: connects, sends the PROXY header (LOCAL / UNKNOWN, as a
 * health check) when the target expects one, and for `none` / `starttls`
 * links reads the greeting, which must be `+OK`, then says QUIT. An implicit
 * TLS target only needs the TCP connect (no handshake). Resolves undefined
 * when reachable, else the reason. Never rejects.
 */
export function probeBackend(target: BackendTarget, timeoutMs: number = BACKEND_PROBE_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: target.host, port: target.port });
    // The login machine's own greeting step: same framing, line cap and +OK test.
    const framer = new LineFramer(256);
    let settled = false;
    const finish = (reason: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (reason === undefined && target.tls.mode !== 'implicit') socket.end('QUIT\r\n');
      else socket.destroy();
      // The socket may still report its teardown.
      socket.on('error', () => undefined);
      setTimeout(() => socket.destroy(), 1_000).unref();
      resolve(reason);
    };
    const timer = setTimeout(
      () => finish(`no ${framer.bufferedBytes === 0 ? 'connection or greeting' : 'complete greeting'} within ${timeoutMs} ms`),
      timeoutMs,
    );
    timer.unref();
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    socket.once('close', () => finish('connection closed before the greeting'));
    socket.once('connect', () => {
      const header = encodeProxyHeader(target.proxyProtocol);
      if (header.length > 0) socket.write(header);
      if (target.tls.mode === 'implicit') finish(undefined);
    });
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk);
      const greeting = readGreeting(framer, 'latin1');
      if (greeting === undefined) return;
      if (greeting.kind === 'overflow') finish('greeting line too long');
      else finish(greeting.kind === 'ok' ? undefined : `bad greeting: ${greeting.text.slice(0, 80).replace(/[^\x20-\x7e]/g, '?')}`);
    });
  });
}

export interface BackendProbeOptions {
  readonly ttlMs?: number;
  readonly timeoutMs?: number;
  /** Replaces probeBackend (tests). */
  readonly probe?: (target: BackendTarget, timeoutMs: number) => Promise<string | undefined>;
  /** Milliseconds clock (tests). Default Date.now. */
  readonly now?: () => number;
}

/**
 * "At least one backend reachable", cached: concurrent askers share one
 * round of probes, and its result is reused for `ttlMs` (unless the targets
 * changed, after a config reload).
 */
export class BackendProbe {
  private cached: { key: string; at: number; result: ReadinessCheck } | undefined;
  private inFlight: { key: string; promise: Promise<ReadinessCheck> } | undefined;
  private readonly ttlMs: number;
  private readonly timeoutMs: number;
  private readonly probe: (target: BackendTarget, timeoutMs: number) => Promise<string | undefined>;
  private readonly now: () => number;

  constructor(opts: BackendProbeOptions = {}) {
    this.ttlMs = opts.ttlMs ?? BACKEND_PROBE_TTL_MS;
    this.timeoutMs = opts.timeoutMs ?? BACKEND_PROBE_TIMEOUT_MS;
    this.probe = opts.probe ?? probeBackend;
    this.now = opts.now ?? Date.now;
  }

  check(targets: readonly BackendTarget[]): Promise<ReadinessCheck> {
    const key = JSON.stringify(targets);
    const hit = this.cached;
    if (hit && hit.key === key && this.now() - hit.at < this.ttlMs) return Promise.resolve(hit.result);
    if (this.inFlight?.key === key) return this.inFlight.promise;
    const promise = this.run(targets).then((result) => {
      this.cached = { key, at: this.now(), result };
      if (this.inFlight?.promise === promise) this.inFlight = undefined;
      return result;
    });
    this.inFlight = { key, promise };
    return promise;
  }

  private async run(targets: readonly BackendTarget[]): Promise<ReadinessCheck> {
    if (targets.length === 0) return { name: 'backend', ok: false, detail: 'no backend configured' };
    const reasons = await Promise.all(targets.map((t) => this.probe(t, this.timeoutMs).catch((err: unknown) => String(err))));
    const up = targets.filter((_t, i) => reasons[i] === undefined);
    if (up.length > 0) return { name: 'backend', ok: true, detail: `reachable: ${up.map((t) => hostPort(t.host, t.port)).join(', ')}` };
    return { name: 'backend', ok: false, detail: targets.map((t, i) => `${hostPort(t.host, t.port)} ${reasons[i] ?? ''}`).join('; ') };
  }
}
