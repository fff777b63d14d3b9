import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ListenerKind } from '../../src/config/schema.js';
import { errorReply } from '../../src/errors.js';
import { Admission, type AdmissionPoint, type AdmittedSocket } from '../../src/server/admission.js';
import type { PeerInfo } from '../../src/server/transport.js';

/** A socket with what admission touches; `close()` plays the peer going away. */
class FakeSocket extends EventEmitter implements AdmittedSocket {
  destroyed = false;
  written: string[] = [];
  constructor(readonly remoteAddress: string | undefined) {
    super();
  }
  end(data: string): this {
    this.written.push(data);
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}

interface Setup {
  readonly admission: Admission;
  readonly point: AdmissionPoint & { readonly events: string[] };
  readonly logs: Array<Record<string, unknown>>;
  readonly limits: { maxConnections: number; maxConnectionsPerIp: number };
  stopping: boolean;
}

function setup(opts: { kind?: ListenerKind; trusted?: readonly string[]; maxConnections?: number; maxConnectionsPerIp?: number } = {}): Setup {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const events: string[] = [];
  const trusted = new Set(opts.trusted ?? []);
  const limits = { maxConnections: opts.maxConnections ?? 100, maxConnectionsPerIp: opts.maxConnectionsPerIp ?? 10 };
  const state: Setup = {
    logs,
    limits,
    stopping: false,
    point: {
      name: 'l1',
      kind: opts.kind ?? 'pop3',
      events,
      metrics: { accepted: () => void events.push('accepted'), refused: (code) => void events.push(`refused ${code}`) },
      trustsProxy: (address) => address !== undefined && trusted.has(address),
    },
    admission: new Admission({ log: pino(sink), limits: () => limits, stopping: () => state.stopping, lingerMs: 5 }),
  };
  return state;
}

const peer = (remoteAddress: string, balancer?: string): PeerInfo => ({
  remoteAddress,
  remotePort: 40000,
  localAddress: '127.0.0.1',
  localPort: 110,
  ...(balancer ? { proxiedBy: { address: balancer, port: 50000 } } : {}),
});

describe('Admission', () => {
  it('counts admitted sockets until they close', () => {
    const { admission, point } = setup();
    const a = new FakeSocket('192.0.2.1');
    const b = new FakeSocket('192.0.2.2');
    expect(admission.admit(a, point)).toBe(true);
    expect(admission.admit(b, point)).toBe(true);
    expect(admission.openConnections).toBe(2);
    a.destroy();
    expect(admission.openConnections).toBe(1);
    expect(point.events).toEqual(['accepted', 'accepted']);
  });

  it('refuses over the global limit with the catalogue reply on a pop3 listener, and logs once per window', () => {
    const { admission, point, logs } = setup({ maxConnections: 1 });
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(true);
    const refused = [new FakeSocket('192.0.2.2'), new FakeSocket('192.0.2.3')];
    for (const s of refused) expect(admission.admit(s, point)).toBe(false);
    expect(refused[0]!.written).toEqual([errorReply('TOO_MANY_CONNECTIONS') + '\r\n']);
    expect(point.events).toEqual(['accepted', 'refused TOO_MANY_CONNECTIONS', 'refused TOO_MANY_CONNECTIONS']);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ msg: 'connection limit reached, refusing', listener: 'l1', code: 'TOO_MANY_CONNECTIONS', remote: '192.0.2.2', open: 1 });
    expect(admission.openConnections).toBe(1);
  });

  it('just closes a refused socket where a TLS handshake or KPOP preamble comes first', () => {
    for (const kind of ['pop3s', 'kpop'] as const) {
      const { admission, point } = setup({ kind, maxConnections: 0 });
      const s = new FakeSocket('192.0.2.1');
      expect(admission.admit(s, point)).toBe(false);
      expect(s.written).toEqual([]);
      expect(s.destroyed).toBe(true);
    }
  });

  it('limits connections per address (IPv6 per /64) and frees the slot on close', () => {
    const { admission, point, logs } = setup({ maxConnectionsPerIp: 1 });
    const first = new FakeSocket('2001:db8:0:1::1');
    expect(admission.admit(first, point)).toBe(true);
    const second = new FakeSocket('2001:db8:0:1::2');
    expect(admission.admit(second, point)).toBe(false);
    expect(second.written).toEqual([errorReply('TOO_MANY_FROM_ADDRESS') + '\r\n']);
    expect(logs[0]).toMatchObject({
      msg: 'per-address connection limit reached, refusing',
      remote: '2001:db8:0:1::2',
      addressKey: '2001:db8:0:1::/64',
      limit: 1,
    });
    first.destroy();
    expect(admission.admit(new FakeSocket('2001:db8:0:1::3'), point)).toBe(true);
  });

  it('counts a trusted balancer per client address only after the PROXY header', () => {
    const { admission, point, logs } = setup({ trusted: ['10.0.0.9'], maxConnectionsPerIp: 1 });
    const sockets = [new FakeSocket('10.0.0.9'), new FakeSocket('10.0.0.9'), new FakeSocket('10.0.0.9')];
    for (const s of sockets) expect(admission.admit(s, point)).toBe(true);
    expect(admission.admitPeer(sockets[0]!, peer('198.51.100.1', '10.0.0.9'), point)).toBe(true);
    expect(admission.admitPeer(sockets[1]!, peer('198.51.100.2', '10.0.0.9'), point)).toBe(true);
    expect(admission.admitPeer(sockets[2]!, peer('198.51.100.1', '10.0.0.9'), point)).toBe(false);
    expect(logs[0]).toMatchObject({ remote: '198.51.100.1', via: '10.0.0.9', code: 'TOO_MANY_FROM_ADDRESS' });
  });

  it('does not count again a connection that was counted at accept, nor one gone meanwhile', () => {
    const { admission, point } = setup({ trusted: ['10.0.0.9'], maxConnectionsPerIp: 1 });
    const direct = new FakeSocket('192.0.2.1');
    expect(admission.admit(direct, point)).toBe(true);
    expect(admission.admitPeer(direct, peer('192.0.2.1'), point)).toBe(true);
    const gone = new FakeSocket('10.0.0.9');
    expect(admission.admit(gone, point)).toBe(true);
    gone.destroy();
    expect(admission.admitPeer(gone, peer('198.51.100.1', '10.0.0.9'), point)).toBe(false);
    expect(point.events).not.toContain('refused TOO_MANY_FROM_ADDRESS');
  });

  it('refuses everything while stopping, and cuts what is left', () => {
    const state = setup();
    const { admission, point } = state;
    const open = new FakeSocket('192.0.2.1');
    expect(admission.admit(open, point)).toBe(true);
    state.stopping = true;
    const late = new FakeSocket('192.0.2.2');
    expect(admission.admit(late, point)).toBe(false);
    expect(admission.admitPeer(open, peer('192.0.2.1'), point)).toBe(false);
    expect(late.destroyed).toBe(true);
    expect(point.events).toEqual(['accepted', 'refused SHUTTING_DOWN', 'refused SHUTTING_DOWN']);
    const other = new FakeSocket('192.0.2.3');
    state.stopping = false;
    expect(admission.admit(other, point)).toBe(true);
    admission.destroyAll();
    expect(other.destroyed).toBe(true);
    expect(admission.openConnections).toBe(0);
  });

  it('counts in a fresh per-address counter with the new limit after resetAddressSlots', () => {
    const { admission, point, limits } = setup({ maxConnectionsPerIp: 1 });
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(true);
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(false);
    limits.maxConnectionsPerIp = 2;
    admission.resetAddressSlots();
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(true);
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(true);
    expect(admission.admit(new FakeSocket('192.0.2.1'), point)).toBe(false);
  });
});
