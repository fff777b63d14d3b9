/**
 * PROXY protocol header reader (v1 text, v2 binary): valid headers followed by
 * client bytes, split at any point, give the same address and the same
 * following bytes as one read; what popgate's own writer produces for random
 * clients (IPv4, IPv6, IPv4-mapped, mixed families, zones, any port) reads
 * back as the same client; arbitrary, mutated and long inputs never throw,
 * never buffer more than a v1 line (107 octets) or a v2 header (16 + 2048)
 * while waiting, end exactly once, and split reads agree with one read.
 */
import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe } from 'vitest';
import { encodeProxyHeader, ProxyHeaderReader, type ProxyClient, type ProxyHeaderEvent } from '../../src/net/index.js';
import { Choices, Reached, chunk, chunkingArb, fuzzIt, invariant, mutate, mutationArb, show, type Chunking } from './common.js';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The documented bounds: the spec's longest v1 line, and the v2 header plus addresses and TLVs accepted. */
const V1_MAX = 107;
const V2_MAX = 16 + 2048;

type Expected =
  | { readonly kind: 'v1'; readonly family: 'TCP4' | 'TCP6' | 'UNKNOWN'; readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number }
  | { readonly kind: 'v2'; readonly command: 'LOCAL' | 'PROXY'; readonly family: 0x00 | 0x11 | 0x21; readonly src: Buffer; readonly dst: Buffer; readonly sport: number; readonly dport: number };

const portArb = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(0, 110, 995, 65535));

const v1Arb: fc.Arbitrary<Expected> = fc.oneof(
  fc.record({ kind: fc.constant('v1' as const), family: fc.constant('TCP4' as const), src: fc.ipV4(), dst: fc.ipV4(), sport: portArb, dport: portArb }),
  fc.record({ kind: fc.constant('v1' as const), family: fc.constant('TCP6' as const), src: fc.ipV6(), dst: fc.ipV6(), sport: portArb, dport: portArb }),
  fc.record({ kind: fc.constant('v1' as const), family: fc.constant('UNKNOWN' as const), src: fc.constant(''), dst: fc.constant(''), sport: fc.constant(0), dport: fc.constant(0) }),
);

const v2Arb: fc.Arbitrary<Expected> = fc
  .record({
    kind: fc.constant('v2' as const),
    command: fc.constantFrom('LOCAL' as const, 'PROXY' as const),
    family: fc.constantFrom(0x00 as const, 0x11 as const, 0x21 as const),
    src: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
    dst: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
    sport: portArb,
    dport: portArb,
  });

/** TLVs (or anything) after the addresses: skipped by the reader, within the 2048-byte body limit. */
const tlvArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(Buffer.alloc(0)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.integer({ min: 1900, max: 2048 - 36 }).map((n) => Buffer.alloc(n, 0x20)) },
);

function encode(h: Expected, tlv: Buffer): Buffer {
  if (h.kind === 'v1') {
    const line = h.family === 'UNKNOWN' ? 'PROXY UNKNOWN' : `PROXY ${h.family} ${h.src} ${h.dst} ${h.sport} ${h.dport}`;
    return Buffer.from(`${line}\r\n`, 'latin1');
  }
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(h.sport, 0);
  ports.writeUInt16BE(h.dport, 2);
  const addresses =
    h.family === 0x11 ? Buffer.concat([h.src.subarray(0, 4), h.dst.subarray(0, 4), ports]) : h.family === 0x21 ? Buffer.concat([h.src, h.dst, ports]) : Buffer.alloc(0);
  const body = Buffer.concat([addresses, tlv]);
  const head = Buffer.alloc(4);
  head[0] = h.command === 'LOCAL' ? 0x20 : 0x21;
  head[1] = h.family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

/** What follows the header: a POP3 command, a TLS ClientHello, nothing, noise. */
const restArb = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.constantFrom(Buffer.from('CAPA\r\n'), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
);

interface Result {
  readonly event: ProxyHeaderEvent;
  /** `rest` of a done event followed by the chunks never fed: what the host hands on. */
  readonly after: Buffer;
  readonly reads: number;
}

function buffered(r: ProxyHeaderReader): number {
  // White-box: the documented bound is on the private buffer.
  return (r as unknown as { buf: Buffer }).buf.length;
}

/** Feeds chunks until the reader decides, checking the buffer bound on every read. */
function read(chunks: readonly Buffer[]): Result {
  const reader = new ProxyHeaderReader();
  for (let i = 0; i < chunks.length; i++) {
    const event = reader.feed(chunks[i] as Buffer);
    if (event.kind === 'need-more') {
      const held = buffered(reader);
      invariant(held < V2_MAX, () => `holds ${held} bytes while waiting`);
      // Until a v2 signature is certain, at most a v1 line is held.
      const head = Buffer.concat(chunks.slice(0, i + 1)).subarray(0, 12);
      if (!(head.length === 12 && head.equals(V2_SIGNATURE))) invariant(held < V1_MAX, () => `holds ${held} bytes of a v1 line`);
      continue;
    }
    invariant(buffered(reader) === 0, 'keeps bytes after deciding');
    const again = reader.feed(Buffer.from('x'));
    invariant(again.kind === 'error', 'a second header after the first');
    const after = Buffer.concat([event.kind === 'done' ? event.rest : Buffer.alloc(0), ...chunks.slice(i + 1)]);
    checkDone(event);
    return { event, after, reads: i + 1 };
  }
  return { event: { kind: 'need-more' }, after: Buffer.alloc(0), reads: chunks.length };
}

function checkDone(e: ProxyHeaderEvent): void {
  if (e.kind !== 'done' || e.address === undefined) return;
  const a = e.address;
  for (const p of [a.sourcePort, a.destinationPort]) invariant(Number.isInteger(p) && p >= 0 && p <= 65535, () => `port ${p}`);
  const fs = isIP(a.sourceAddress);
  invariant(fs !== 0 && fs === isIP(a.destinationAddress), () => `addresses ${show(a.sourceAddress)} ${show(a.destinationAddress)}`);
}

function same(a: Result, b: Result): boolean {
  if (a.event.kind !== b.event.kind) return false;
  if (a.event.kind === 'error' && b.event.kind === 'error') return a.event.reason === b.event.reason;
  if (a.event.kind === 'done' && b.event.kind === 'done') {
    return a.event.version === b.event.version && JSON.stringify(a.event.address) === JSON.stringify(b.event.address) && a.after.equals(b.after);
  }
  return true;
}

function describeResult(r: Result): string {
  const e = r.event;
  if (e.kind === 'done') return `done v${e.version} ${JSON.stringify(e.address)} after=${show(r.after)}`;
  return e.kind === 'error' ? `error ${e.reason}` : 'need-more';
}

/** One read vs split reads of the same bytes. */
function compare(input: Buffer, how: Chunking): Result {
  const whole = read([input]);
  const split = read(chunk(input, how));
  invariant(same(whole, split), () => `one read: ${describeResult(whole)}; split: ${describeResult(split)}`);
  return whole;
}

function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** The IPv4 text an address stands for (plain or IPv4-mapped IPv6), else undefined. */
function v4Of(address: string): string | undefined {
  const bare = address.split('%')[0] ?? '';
  if (isIP(bare) === 4) return bare;
  const host = isIP(bare) === 6 ? new URL(`http://[${bare}]/`).hostname.slice(1, -1) : '';
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!mapped) return undefined;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
}

/** The same host, IPv4 and IPv4-mapped IPv6 being one (a header's two addresses share one family). */
function sameHost(read: string, sent: string): boolean {
  const v6 = (t: string): string => new URL(`http://[${isIP(t) === 4 ? `::ffff:${t}` : t.split('%')[0]}]/`).hostname;
  return v6(read) === v6(sent);
}

const v4TextArb = fc.ipV4();
const ipArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: v4TextArb },
  { weight: 3, arbitrary: fc.ipV6() },
  { weight: 1, arbitrary: v4TextArb.map((v4) => `::ffff:${v4}`) },
  { weight: 1, arbitrary: v4TextArb.map((v4) => `::FFFF:${v4}`) },
  { weight: 1, arbitrary: fc.ipV6().map((v6) => `${v6}%eth0`) },
);
const clientArb: fc.Arbitrary<ProxyClient> = fc.record({ address: ipArb, port: portArb, localAddress: ipArb, localPort: portArb });

const roundTripReached = new Reached(['v1:tcp4', 'v1:tcp6', 'v1:unknown', 'v2:tcp4', 'v2:tcp6', 'v2:unknown', 'mapped', 'mixed', 'zone']);
const longReached = new Reached(['need-more', 'error', 'done:2']);
const validReached = new Reached(['v1:TCP4', 'v1:TCP6', 'v1:UNKNOWN', 'v2:LOCAL', 'v2:PROXY:0x11', 'v2:PROXY:0x21', 'v2:PROXY:0x0']);
const arbitraryReached = new Reached(['need-more', 'done:1', 'done:2', 'error:no PROXY protocol header', 'error:PROXY v1 line too long', 'error:malformed PROXY v1 line', 'error:malformed PROXY v1 addresses', 'error:PROXY v2 header too long', 'error:unsupported PROXY v2 version', 'error:unsupported PROXY v2 command']);

describe('fuzz: PROXY header reader', () => {
  fuzzIt(
    'proxy-header: valid v1/v2 headers split anywhere parse like one read',
    fc.property(fc.oneof(v1Arb, v2Arb), tlvArb, restArb, chunkingArb, (h, tlv, rest, how) => {
      const header = encode(h, tlv);
      const r = compare(Buffer.concat([header, rest]), how);
      const e = r.event;
      invariant(e.kind === 'done', () => `valid header read as ${describeResult(r)}`);
      invariant(r.after.equals(rest), () => `hands on ${show(r.after)} instead of ${show(rest)}`);
      invariant(e.version === (h.kind === 'v1' ? 1 : 2), 'wrong version');
      const a = e.address;
      if (h.kind === 'v1') {
        validReached.hit(`v1:${h.family}`);
        if (h.family === 'UNKNOWN') invariant(a === undefined, 'UNKNOWN with an address');
        else {
          invariant(a !== undefined, 'no address');
          invariant(a.sourceAddress === h.src && a.destinationAddress === h.dst, () => `addresses ${a.sourceAddress} ${a.destinationAddress}`);
          invariant(a.sourcePort === h.sport && a.destinationPort === h.dport, 'ports');
        }
      } else {
        validReached.hit(h.command === 'LOCAL' ? 'v2:LOCAL' : `v2:PROXY:0x${h.family.toString(16)}`);
        if (h.command === 'LOCAL' || h.family === 0x00) invariant(a === undefined, 'LOCAL/UNSPEC with an address');
        else {
          invariant(a !== undefined, 'no address');
          invariant(a.sourcePort === h.sport && a.destinationPort === h.dport, 'ports');
          if (h.family === 0x11) {
            invariant(a.sourceAddress === [...h.src.subarray(0, 4)].join('.'), () => `source ${a.sourceAddress}`);
            invariant(a.destinationAddress === [...h.dst.subarray(0, 4)].join('.'), () => `destination ${a.destinationAddress}`);
          } else {
            // Same address as the raw 16 bytes, in canonical text.
            const canon = (t: string): string => new URL(`http://[${t}]/`).hostname;
            invariant(canon(a.sourceAddress) === canon(ipv6Text(h.src)), () => `source ${a.sourceAddress}`);
            invariant(canon(a.destinationAddress) === canon(ipv6Text(h.dst)), () => `destination ${a.destinationAddress}`);
          }
        }
      }
    }),
    () => validReached,
  );

  const arbitraryArb: fc.Arbitrary<Buffer> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(fc.oneof(v1Arb, v2Arb), tlvArb, restArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
        .map(([h, tlv, rest, m]) => mutate(Buffer.concat([encode(h, tlv), rest]), m)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('PROXY ', 'PROXY TCP4 ', 'PROXY TCP6 ', 'PROXY UNKNOWN', 'PROX', ''),
          fc.array(fc.constantFrom('1.2.3.4', '::1', '256.1.1.1', '65535', '65536', '-1', ' ', '\r', '\n', '\r\n', 'x'.repeat(90), '0x10'), { maxLength: 8 }),
        )
        .map(([a, parts]) => Buffer.from(a + parts.join(' '), 'latin1')),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.oneof(fc.constantFrom(0x20, 0x21, 0x22, 0x2f, 0x11), fc.integer({ min: 0, max: 255 })),
          fc.oneof(fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31), fc.integer({ min: 0, max: 255 })),
          fc.constantFrom(0, 12, 36, 2031, 2032, 2048, 2049, 0xffff), fc.uint8Array({ maxLength: 80 }))
        .map(([vc, fam, len, body]) => {
          const head = Buffer.from([vc, fam, 0, 0]);
          head.writeUInt16BE(len, 2);
          return Buffer.concat([V2_SIGNATURE, head, body]);
        }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  );

  fuzzIt(
    'proxy-header: arbitrary and mutated inputs never throw, stay bounded, split reads agree',
    fc.property(arbitraryArb, chunkingArb, (input, how) => {
      const r = compare(input, how);
      const e = r.event;
      arbitraryReached.hit(e.kind === 'done' ? `done:${e.version}` : e.kind === 'error' ? `error:${e.reason}` : 'need-more');
    }),
    () => arbitraryReached,
  );

  fuzzIt(
    'proxy-header: what the writer sends for a random client, the reader reads back (v1 and v2)',
    fc.property(fc.constantFrom('v1' as const, 'v2' as const), fc.option(clientArb, { freq: 8 }), restArb, chunkingArb, (version, client, rest, how) => {
      const header = encodeProxyHeader(version, client ?? undefined);
      const r = compare(Buffer.concat([header, rest]), how);
      const e = r.event;
      invariant(e.kind === 'done', () => `own ${version} header ${show(header)} read as ${describeResult(r)}`);
      invariant(e.version === (version === 'v1' ? 1 : 2), 'wrong version');
      invariant(r.after.equals(rest), () => `hands on ${show(r.after)} instead of ${show(rest)}`);
      if (client === null) {
        invariant(e.address === undefined, 'UNKNOWN/LOCAL with an address');
        roundTripReached.hit(`${version}:unknown`);
        return;
      }
      const a = e.address;
      invariant(a !== undefined, 'no address');
      invariant(a.sourcePort === client.port && a.destinationPort === client.localPort, () => `ports ${a.sourcePort} ${a.destinationPort}`);
      invariant(sameHost(a.sourceAddress, client.address), () => `source ${a.sourceAddress} for ${client.address}`);
      invariant(sameHost(a.destinationAddress, client.localAddress), () => `destination ${a.destinationAddress} for ${client.localAddress}`);
      // Both ends IPv4 (plain or mapped) travel as TCP4; anything else as TCP6.
      const bothV4 = v4Of(client.address) !== undefined && v4Of(client.localAddress) !== undefined;
      invariant(isIP(a.sourceAddress) === (bothV4 ? 4 : 6), () => `family of ${a.sourceAddress}`);
      roundTripReached.hit(`${version}:${bothV4 ? 'tcp4' : 'tcp6'}`);
      if (bothV4 !== (isIP(client.address) === 4 && isIP(client.localAddress) === 4)) roundTripReached.hit('mapped');
      if (isIP(v4Of(client.address) ?? client.address) !== isIP(v4Of(client.localAddress) ?? client.localAddress)) roundTripReached.hit('mixed');
      if (client.address.includes('%')) roundTripReached.hit('zone');
    }),
    () => roundTripReached,
  );

  fuzzIt(
    'proxy-header: long random streams behind a header start stay within the caps, byte by byte or in chunks',
    fc.property(
      fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY ', 'latin1'), Buffer.from('PROXY TCP6 ', 'latin1'), V2_SIGNATURE, Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x21, 0x08, 0x00])])),
      // Lengths spread evenly up to past the v2 cap; bytes from a seed (cheap to shrink).
      fc.tuple(fc.nat({ max: 3000 }), fc.nat()).map(([n, seed]) => new Choices([seed]).bytes(n)),
      chunkingArb,
      (start, noise, how) => {
        const r = compare(Buffer.concat([start, noise]), how);
        const e = r.event;
        longReached.hit(e.kind === 'done' ? `done:${e.version}` : e.kind === 'error' ? 'error' : 'need-more');
      },
    ),
    () => longReached,
  );
});
