/**
 * LineFramer alone: any chunking of any byte stream yields the same lines as a
 * reference splitter, no line exceeds its cap, overflow is sticky, and the
 * buffer stays bounded by the cap plus the last chunk. A second property runs
 * random operation sequences (push / next / discardBuffered / takeBuffered)
 * against a trivially correct model, with chunks large enough to make the
 * framer grow, compact and release its buffer.
 */
import fc from 'fast-check';
import { describe } from 'vitest';
import { LineFramer, type FramedLine } from '../../src/pop3/framer.js';
import { chunk, chunkingArb, fuzzIt, invariant, mutate, mutationArb, show } from './common.js';

const LF = 0x0a;
const CR = 0x0d;

/** A piece of a byte stream: raw bytes, a text line with some terminator, or a long run of one byte. */
const segmentArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) },
  {
    weight: 5,
    arbitrary: fc
      .tuple(
        fc.constantFrom('CAPA', 'USER alice', 'PASS x y', 'AUTH PLAIN', '', '*', '=', 'QUIT', 'dGVzdA==', '\r', 'a\rb'),
        fc.constantFrom('\r\n', '\r\n', '\n', '', '\r', '\r\r\n', '\n\n'),
      )
      .map(([l, t]) => Buffer.from(l + t, 'latin1')),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constantFrom(253, 254, 255, 256, 8190, 8191, 8192, 8193)), fc.constantFrom(0x41, LF, CR, 0x00))
      .map(([n, byte]) => Buffer.alloc(n, byte)),
  },
);

const streamArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.array(segmentArb, { maxLength: 24 }), fc.array(mutationArb, { maxLength: 3 }))
  .map(([segments, muts]) => mutate(Buffer.concat(segments), muts));

/** Caps for successive lines (cyclic), as a host passes `session.lineLimit`. */
const capsArb = fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(255, 256, 512, 8192)), { minLength: 1, maxLength: 8 });

interface Framed {
  readonly lines: Buffer[];
  readonly overflow: boolean;
  /** Bytes left unconsumed at the end (0 after overflow). */
  readonly rest: number;
}

/** The whole stream at once, the obvious way. */
function reference(bytes: Buffer, capFor: (k: number) => number): Framed {
  const lines: Buffer[] = [];
  let pos = 0;
  for (let k = 0; ; k++) {
    const cap = capFor(k);
    const lf = bytes.indexOf(LF, pos);
    if (lf < 0) {
      const tail = bytes.length - pos;
      return tail >= cap ? { lines, overflow: true, rest: 0 } : { lines, overflow: false, rest: tail };
    }
    if (lf - pos + 1 > cap) return { lines, overflow: true, rest: 0 };
    let end = lf;
    if (end > pos && bytes[end - 1] === CR) end--;
    lines.push(bytes.subarray(pos, end));
    pos = lf + 1;
  }
}

describe('fuzz: LineFramer', () => {
  fuzzIt(
    'framer: any chunking gives the reference lines; caps, sticky overflow and buffer bounds hold',
    fc.property(streamArb, chunkingArb, capsArb, fc.integer({ min: 1, max: 2048 }), (bytes, how, caps, initial) => {
      const capFor = (k: number): number => caps[k % caps.length] as number;
      const expected = reference(bytes, capFor);
      const framer = new LineFramer(initial);
      const lines: Buffer[] = [];
      let overflow = false;
      for (const piece of chunk(bytes, how)) {
        const cap = capFor(lines.length);
        const before = framer.bufferedBytes;
        framer.push(piece);
        if (overflow) {
          // Poisoned: nothing more is kept, every next() is overflow.
          invariant(framer.bufferedBytes === 0, 'a poisoned framer buffered a push');
          invariant(framer.next(cap)?.kind === 'overflow', 'overflow is not sticky after a push');
          continue;
        }
        // Drained before this push: less than one cap was pending; bounded by cap + this chunk now.
        invariant(before < cap, () => `drained framer holds ${before} >= cap ${cap}`);
        invariant(framer.bufferedBytes === before + piece.length, 'push lost or invented bytes');
        invariant(framer.bufferedBytes <= cap - 1 + piece.length, 'buffer exceeds cap + last chunk');
        for (;;) {
          const k = lines.length;
          const r: FramedLine | undefined = framer.next(capFor(k));
          if (r === undefined) break;
          if (r.kind === 'overflow') {
            overflow = true;
            invariant(framer.overflowed, 'overflowed not set');
            invariant(framer.bufferedBytes === 0, 'overflow kept bytes');
            invariant(framer.next(capFor(k))?.kind === 'overflow', 'overflow is not sticky');
            invariant(framer.next(1 << 30)?.kind === 'overflow', 'overflow is not sticky under a larger cap');
            break;
          }
          // Content plus at least the LF fits the cap; no LF inside.
          invariant(r.line.length + 1 <= capFor(k), () => `line of ${r.line.length} octets under cap ${capFor(k)}`);
          invariant(!r.line.includes(LF), 'LF inside a line');
          lines.push(r.line);
        }
        if (!overflow) invariant(framer.bufferedBytes < capFor(lines.length), 'drained framer holds a full cap');
      }
      invariant(overflow === expected.overflow, () => `overflow ${overflow}, reference ${expected.overflow}`);
      invariant(lines.length === expected.lines.length, () => `${lines.length} lines, reference ${expected.lines.length}`);
      lines.forEach((l, i) => invariant(l.equals(expected.lines[i] as Buffer), () => `line ${i}: ${show(l)} vs ${show(expected.lines[i] as Buffer)}`));
      invariant(framer.bufferedBytes === expected.rest, () => `${framer.bufferedBytes} left, reference ${expected.rest}`);
      invariant(framer.overflowed === expected.overflow, 'overflowed flag differs');
    }),
  );

  type Op =
    | { readonly op: 'push'; readonly bytes: Buffer }
    | { readonly op: 'next'; readonly cap: number }
    | { readonly op: 'discard' }
    | { readonly op: 'take' };

  const bigChunkArb = fc
    .tuple(fc.integer({ min: 60_000, max: 140_000 }), fc.constantFrom(0x41, 0x00), fc.array(fc.nat(), { maxLength: 3 }))
    .map(([n, fill, lfs]) => {
      const b = Buffer.alloc(n, fill);
      for (const at of lfs) b[at % n] = LF;
      return b;
    });

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: segmentArb.map((bytes) => ({ op: 'push' as const, bytes })) },
    { weight: 1, arbitrary: fc.nat({ max: 99 }).chain((n) => (n < 4 ? bigChunkArb : fc.constant(Buffer.alloc(0)))).map((bytes) => ({ op: 'push' as const, bytes })) },
    {
      weight: 6,
      arbitrary: fc
        .oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(255, 8192, 200_000))
        .map((cap) => ({ op: 'next' as const, cap })),
    },
    { weight: 1, arbitrary: fc.constant({ op: 'discard' as const }) },
    { weight: 1, arbitrary: fc.constant({ op: 'take' as const }) },
  );

  fuzzIt(
    'framer: push/next/discardBuffered/takeBuffered agree with a model',
    fc.property(fc.array(opArb, { maxLength: 40 }), fc.integer({ min: 1, max: 4096 }), (ops, initial) => {
      const framer = new LineFramer(initial);
      let pending = Buffer.alloc(0);
      let poisoned = false;
      for (const o of ops) {
        switch (o.op) {
          case 'push':
            framer.push(o.bytes);
            if (!poisoned) pending = Buffer.concat([pending, o.bytes]);
            break;
          case 'next': {
            const r = framer.next(o.cap);
            let want: { kind: 'line'; line: Buffer; octets: number } | { kind: 'overflow' } | undefined;
            if (poisoned) want = { kind: 'overflow' };
            else {
              const lf = pending.indexOf(LF);
              if (lf < 0) {
                if (pending.length >= o.cap) want = { kind: 'overflow' };
              } else if (lf + 1 > o.cap) {
                want = { kind: 'overflow' };
              } else {
                const end = lf > 0 && pending[lf - 1] === CR ? lf - 1 : lf;
                want = { kind: 'line', line: Buffer.from(pending.subarray(0, end)), octets: lf + 1 };
                pending = pending.subarray(lf + 1);
              }
              if (want?.kind === 'overflow') {
                poisoned = true;
                pending = Buffer.alloc(0);
              }
            }
            if (want === undefined) invariant(r === undefined, () => `next(${o.cap}) gave ${r?.kind}, model: need more`);
            else if (want.kind === 'overflow') invariant(r?.kind === 'overflow', () => `next(${o.cap}) gave ${r?.kind}, model: overflow`);
            else {
              const line = want.line;
              invariant(r?.kind === 'line' && r.line.equals(line), () => `next(${o.cap}) gave ${r?.kind === 'line' ? show(r.line) : r?.kind}, model: ${show(line)}`);
              invariant(r.octets === want.octets, () => `next(${o.cap}) reported ${r.octets} octets, model: ${want.octets}`);
            }
            break;
          }
          case 'discard':
            invariant(framer.discardBuffered() === pending.length, 'discardBuffered count differs from the model');
            pending = Buffer.alloc(0);
            break;
          case 'take':
            invariant(framer.takeBuffered().equals(pending), 'takeBuffered differs from the model');
            pending = Buffer.alloc(0);
            break;
        }
        invariant(framer.bufferedBytes === pending.length, () => `bufferedBytes ${framer.bufferedBytes}, model ${pending.length}`);
        invariant(framer.overflowed === poisoned, 'overflowed differs from the model');
      }
    }),
  );
});
