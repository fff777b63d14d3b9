/**
 * Admission: which accepted TCP connections the gateway serves. Counts every
 * connection from accept to close (TLS handshakes and PROXY waits included),
 * refuses those over `limits.maxConnections` or, per client address,
 * `limits.maxConnectionsPerIp`, and those arriving while the gateway stops;
 * each refusal is counted, logged (rate-limited) and answered in one place.
 */
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { LimitsConfig, ListenerKind } from '../config/schema.js';
import { errorReply, type ErrorCode } from '../errors.js';
import type { ListenerMetrics } from '../observability/metrics.js';
import { addressKey, LogRateLimiter, PerAddressCounter, type AddressSlots, type ReleaseSlot } from './address-limit.js';
import type { PeerInfo } from './transport.js';

/** The parts of a socket admission touches (a net.Socket, or a TLSSocket after a pop3s handshake). */
export interface AdmittedSocket {
  readonly remoteAddress?: string | undefined;
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
  end(data: string): unknown;
  destroy(): unknown;
}

/** The listener a connection arrived on, as admission sees it. */
export interface AdmissionPoint {
  readonly name: string;
  readonly kind: ListenerKind;
  readonly metrics: Pick<ListenerMetrics, 'accepted' | 'refused'>;
  /** Whether `address` is a PROXY-protocol load balancer this listener trusts. */
  trustsProxy(address: string | undefined): boolean;
}

export type LimitRefusal = Extract<ErrorCode, 'TOO_MANY_CONNECTIONS' | 'TOO_MANY_FROM_ADDRESS'>;

export interface AdmissionOptions {
  readonly log: Logger;
  /** The limits of the configuration in force (a reload may change them). */
  readonly limits: () => Pick<LimitsConfig, 'maxConnections' | 'maxConnectionsPerIp'>;
  /** True once the gateway stops: everything new is refused. */
  readonly stopping: () => boolean;
  /** A POP3 refusal's socket is destroyed this long after the reply if the client does not close. */
  readonly lingerMs?: number;
  /**
   * Where per-address slots come from, for a given maximum. Default: a
   * PerAddressCounter of this process; a worker process passes one backed by
   * the primary (asynchronous: admit() and admitPeer() then return promises).
   */
  readonly addressSlots?: (max: number) => AddressSlots;
}

export class Admission {
  private open = 0;
  /** Every admitted socket until it closes. */
  private readonly sockets = new Set<AdmittedSocket>();
  /** Created on first use, and afresh when limits.maxConnectionsPerIp changes (resetAddressSlots). */
  private addressSlots: AddressSlots | undefined;
  /** Refusal log lines: at most one per limit and address (or per limit, for the global one) every 10 s. */
  private readonly refusalLog = new LogRateLimiter({ windowMs: 10_000 });

  constructor(private readonly opts: AdmissionOptions) {}

  /** Admitted TCP connections not yet closed. */
  get openConnections(): number {
    return this.open;
  }

  /**
   * At accept: counts `socket` until it closes, or refuses it (false). A
   * peer the listener trusts for PROXY is a load balancer carrying many
   * clients: counting it per address would cap the whole balancer, so its
   * connections are counted per address in `admitPeer()` once the header
   * has named the real client (or, without a header, by the balancer's own
   * address). Until then only the global limit and the PROXY header timeout
   * bound them, and on pop3s listeners the TLS handshake also runs first.
   * With slots shared by workers the answer is a promise; the socket counts
   * against maxConnections while it waits.
   */
  admit(socket: AdmittedSocket, point: AdmissionPoint): boolean | Promise<boolean> {
    if (this.refuseWhenStopping(socket, point)) return false;
    if (this.open >= this.opts.limits().maxConnections) {
      this.refuse(socket, point, 'TOO_MANY_CONNECTIONS', '*', 'connection limit reached, refusing', {
        remote: socket.remoteAddress,
        open: this.open,
      });
      return false;
    }
    const viaBalancer = point.trustsProxy(socket.remoteAddress);
    const claimed = viaBalancer || this.claimAddressSlot(socket, socket.remoteAddress ?? '', point);
    if (claimed === false) return false;
    this.track(socket);
    if (claimed === true) {
      point.metrics.accepted();
      return true;
    }
    return claimed.then((ok) => {
      if (ok) point.metrics.accepted();
      return ok;
    });
  }

  /** Counts `socket` as open until it closes. */
  private track(socket: AdmittedSocket): void {
    this.open++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.open--;
      this.sockets.delete(socket);
    });
  }

  /**
   * After the PROXY header and implicit TLS: whether the POP3 session may
   * start. Takes the per-address slot `admit()` left to a trusted balancer's
   * connections (a promise with slots shared by workers).
   */
  admitPeer(socket: AdmittedSocket, peer: PeerInfo, point: AdmissionPoint): boolean | Promise<boolean> {
    if (this.refuseWhenStopping(socket, point)) return false;
    const balancer = peer.proxiedBy?.address ?? peer.remoteAddress;
    if (!point.trustsProxy(balancer)) return true;
    if (socket.destroyed) return false; // gone during the header or handshake: nothing to count or serve
    return this.claimAddressSlot(socket, peer.remoteAddress, point, peer.proxiedBy?.address);
  }

  /** limits.maxConnectionsPerIp changed: open connections release their slots in the old counter; new ones count in a fresh one. */
  resetAddressSlots(): void {
    this.addressSlots = undefined;
  }

  /** Cuts every admitted socket still open (the last step of a drain). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  private refuseWhenStopping(socket: AdmittedSocket, point: AdmissionPoint): boolean {
    if (!this.opts.stopping()) return false;
    point.metrics.refused('SHUTTING_DOWN');
    socket.destroy();
    return true;
  }

  /**
   * Takes one of `address`'s `limits.maxConnectionsPerIp` slots for `socket`
   * until it closes; refuses the socket (false) when there is none left.
   */
  private claimAddressSlot(socket: AdmittedSocket, address: string, point: AdmissionPoint, via?: string): boolean | Promise<boolean> {
    const max = this.opts.limits().maxConnectionsPerIp;
    this.addressSlots ??= this.opts.addressSlots?.(max) ?? new PerAddressCounter(max);
    const slots = this.addressSlots;
    const got = slots.acquire(address);
    if (!(got instanceof Promise)) return this.settleSlot(socket, address, point, via, slots.max, got);
    return got.then((release) => {
      // The client left while the primary answered: nothing to serve, and no 'close' left to free the slot.
      if (socket.destroyed) {
        release?.();
        return false;
      }
      return this.settleSlot(socket, address, point, via, slots.max, release);
    });
  }

  private settleSlot(socket: AdmittedSocket, address: string, point: AdmissionPoint, via: string | undefined, max: number, release: ReleaseSlot | undefined): boolean {
    if (release) {
      socket.once('close', release);
      return true;
    }
    const key = addressKey(address);
    this.refuse(socket, point, 'TOO_MANY_FROM_ADDRESS', key, 'per-address connection limit reached, refusing', {
      remote: address,
      ...(via !== undefined ? { via } : {}),
      ...(key !== address ? { addressKey: key } : {}),
      limit: max,
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
    socket: AdmittedSocket,
    point: AdmissionPoint,
    code: LimitRefusal,
    logKey: string,
    msg: string,
    fields: Record<string, unknown>,
  ): void {
    point.metrics.refused(code);
    const note = this.refusalLog.take(`${code} ${logKey}`);
    if (note.log) {
      this.opts.log.warn(
        { ...fields, listener: point.name, code, ...(note.suppressed > 0 ? { suppressed: note.suppressed } : {}) },
        msg,
      );
    }
    if (readsPop3(socket, point.kind)) {
      socket.end(errorReply(code) + '\r\n');
      setTimeout(() => socket.destroy(), this.opts.lingerMs ?? 1_000).unref();
    } else {
      socket.destroy();
    }
  }
}

/** Whether the client on `socket` reads POP3 replies now (not a TLS handshake or KPOP preamble first). */
function readsPop3(socket: AdmittedSocket, kind: ListenerKind): boolean {
  return kind === 'pop3' || (kind === 'pop3s' && socket instanceof TLSSocket);
}
