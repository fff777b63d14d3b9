/**
 * KPOP (krb5_recvauth) handshake framing: valid client streams split at any
 * points give the same events as one read, and arbitrary or mutated streams
 * never throw, never allocate more than the documented bounds (a version
 * string of 64 bytes, an AP-REQ of maxApReqLength, maxPipelined bytes kept
 * behind it), and agree with a whole-input reference parser.
 */
import fc from 'fast-check';
import { describe } from 'vitest';
import {
  KPOP_APP_VERSION,
  KPOP_KRB4_APP_VERSION,
  KPOP_MAX_VERSION_LENGTH,
  KpopHandshake,
  SENDAUTH_VERSION,
  kpopApReqFrame,
  kpopClientHello,
  type KpopEvent,
  type KpopHandshakeOptions,
  type KpopState,
} from '../../src/kerberos/kpop-framing.js';
import { Reached, chunk, chunkingArb, fuzzIt, invariant, mutate, mutationArb, show, type Chunking } from './common.js';

const SENDAUTH = Buffer.from(`${SENDAUTH_VERSION}\0`, 'latin1');
const APP = Buffer.from(`${KPOP_APP_VERSION}\0`, 'latin1');
const EMPTY = Buffer.alloc(0);

interface Limits {
  readonly maxApReqLength: number;
  readonly maxPipelined: number;
}

/** Options as the host passes them (or the defaults). */
const limitsArb: fc.Arbitrary<Limits | undefined> = fc.option(
  fc.record({
    maxApReqLength: fc.oneof(fc.integer({ min: 1, max: 2048 }), fc.constantFrom(1, 64 * 1024, 0xffff_ffff)),
    maxPipelined: fc.oneof(fc.integer({ min: 0, max: 2048 }), fc.constant(64 * 1024)),
  }),
  { freq: 4, nil: undefined },
);

function effective(limits: Limits | undefined): Limits {
  return { maxApReqLength: limits?.maxApReqLength ?? 64 * 1024, maxPipelined: limits?.maxPipelined ?? 64 * 1024 };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A DER-looking AP-REQ: tag 0x6e then anything. */
const apReqArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 1600 })), fc.uint8Array({ maxLength: 16 }))
  .map(([n, seed]) => {
    const b = Buffer.alloc(1 + n);
    b[0] = 0x6e;
    for (let i = 1; i < b.length; i++) b[i] = (seed[i % Math.max(1, seed.length)] ?? 0) ^ (i * 37 + 11);
    return b;
  });

/** What a POP3 client pipelines behind the AP-REQ (Heimdal `push`). */
const pipelinedArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(EMPTY),
  fc.constant(Buffer.from('USER alice\r\nPASS x\r\nSTAT\r\n')),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 1000, max: 3000 }).map((n) => Buffer.alloc(n, 0x41)),
);

const validStreamArb = fc.record({
  apReq: apReqArb,
  pipelined: pipelinedArb,
  app: fc.oneof({ weight: 8, arbitrary: fc.constant(KPOP_APP_VERSION) }, { weight: 2, arbitrary: fc.constantFrom(KPOP_KRB4_APP_VERSION, 'KPOPV1.1', '') }),
});

function validStream(v: { apReq: Buffer; pipelined: Buffer; app: string }): Buffer {
  return Buffer.concat([kpopClientHello(v.app), kpopApReqFrame(v.apReq), v.pipelined]);
}

/** Arbitrary streams: mutated valid ones, frames with boundary lengths, or noise. */
const arbitraryStreamArb: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .tuple(validStreamArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
      .map(([v, m]) => mutate(validStream(v), m)),
  },
  {
    weight: 3,
    arbitrary: fc
      .array(
        fc.oneof(
          fc.constantFrom(0, 1, 4, 9, 19, 63, 64, 65, 0x6e, 1024, 65535, 65536, 65537, 0x7fff_ffff, 0xffff_ffff).map(u32),
          fc.constantFrom(SENDAUTH, APP, Buffer.from('AUTHV0.1'), Buffer.from('KPOPV0.1\0'), Buffer.from([0x6e]), Buffer.from('USER a\r\n')),
          fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
        ),
        { maxLength: 8 },
      )
      .map((parts) => Buffer.concat(parts)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
);

interface Outcome {
  readonly events: KpopEvent[];
  readonly state: KpopState;
  readonly remaining: Buffer;
  /** Largest Buffer.alloc during feeds. */
  readonly maxAlloc: number;
}

/** Feeds the chunks, watching allocations; checks the per-event invariants along the way. */
function run(chunks: readonly Buffer[], limits: Limits | undefined): Outcome {
  const eff = effective(limits);
  const hs = limits === undefined ? new KpopHandshake() : new KpopHandshake(limits satisfies KpopHandshakeOptions);
  const events: KpopEvent[] = [];
  let maxAlloc = 0;
  const alloc = Buffer.alloc;
  for (const c of chunks) {
    const stateBefore = hs.state;
    let out: KpopEvent[];
    Buffer.alloc = ((size: number, ...rest: never[]) => {
      maxAlloc = Math.max(maxAlloc, size);
      return alloc(size, ...rest);
    }) as typeof Buffer.alloc;
    try {
      out = hs.feed(c);
    } finally {
      Buffer.alloc = alloc;
    }
    if (stateBefore === 'rejected') invariant(out.length === 0, 'events after a reject');
    for (const e of out) {
      switch (e.kind) {
        case 'write':
          invariant(e.bytes.equals(Buffer.from([0])), () => `write ${show(e.bytes)}`);
          invariant(!events.some((x) => x.kind === 'write'), 'second version ack');
          break;
        case 'ap-req':
          invariant(e.apReq[0] === 0x6e, 'AP-REQ without its tag');
          invariant(e.apReq.length >= 1 && e.apReq.length <= eff.maxApReqLength, () => `AP-REQ of ${e.apReq.length} bytes`);
          invariant(!events.some((x) => x.kind === 'ap-req'), 'second AP-REQ');
          invariant(events.some((x) => x.kind === 'write'), 'AP-REQ before the version ack');
          break;
        case 'reject':
          invariant(e === out.at(-1), 'events after a reject in one feed');
          invariant(hs.state === 'rejected', 'reject without the rejected state');
          invariant(
            (e.stage === 'sendauth-version' && e.bytes.equals(Buffer.from([1]))) ||
              (e.stage === 'app-version' && e.bytes.equals(Buffer.from([2]))) ||
              ((e.stage === 'ap-req' || e.stage === 'pipelined') && e.bytes.length === 0),
            () => `reject at ${e.stage} sends ${show(e.bytes)}`,
          );
          invariant(!/[\r\n]/.test(e.reason), () => `reason with a line break: ${show(e.reason)}`);
          break;
      }
      events.push(e);
    }
    invariant(events.filter((e) => e.kind === 'reject').length <= 1, 'more than one reject');
  }
  // Allocation bound: a length is checked before anything is allocated.
  invariant(maxAlloc <= Math.max(4, KPOP_MAX_VERSION_LENGTH, eff.maxApReqLength), () => `allocated ${maxAlloc} bytes`);
  const remaining = hs.takeRemaining();
  invariant(remaining.length <= eff.maxPipelined, () => `${remaining.length} bytes kept behind the AP-REQ`);
  if (hs.state !== 'done') invariant(remaining.length === 0, () => `${remaining.length} bytes kept in state ${hs.state}`);
  invariant(hs.takeRemaining().length === 0, 'takeRemaining does not forget');
  invariant(hs.done === (hs.state === 'done'), 'done flag differs from state');
  return { events, state: hs.state, remaining, maxAlloc };
}

/** The whole input at once, the obvious way: the events and final state one feed must give. */
function reference(input: Buffer, limits: Limits | undefined): { events: KpopEvent[]; state: KpopState; remaining: Buffer; apReq?: Buffer } {
  const { maxApReqLength, maxPipelined } = effective(limits);
  const events: KpopEvent[] = [];
  const reject = (stage: Extract<KpopEvent, { kind: 'reject' }>['stage'], bytes: Buffer): KpopEvent => ({ kind: 'reject', stage, bytes, reason: '' });
  let pos = 0;
  const stages = ['sendauth-version', 'app-version', 'ap-req'] as const;
  for (const stage of stages) {
    if (input.length - pos < 4) return { events, state: stage, remaining: EMPTY };
    const len = input.readUInt32BE(pos);
    pos += 4;
    const refusal = stage === 'sendauth-version' ? Buffer.from([1]) : stage === 'app-version' ? Buffer.from([2]) : EMPTY;
    const max = stage === 'ap-req' ? maxApReqLength : KPOP_MAX_VERSION_LENGTH;
    if (len === 0 || len > max) return { events: [...events, reject(stage, refusal)], state: 'rejected', remaining: EMPTY };
    if (stage === 'ap-req' && pos < input.length && input[pos] !== 0x6e) {
      return { events: [...events, reject(stage, refusal)], state: 'rejected', remaining: EMPTY };
    }
    if (input.length - pos < len) return { events, state: stage, remaining: EMPTY };
    const body = input.subarray(pos, pos + len);
    pos += len;
    if (stage === 'sendauth-version' && !body.equals(SENDAUTH)) return { events: [reject(stage, refusal)], state: 'rejected', remaining: EMPTY };
    if (stage === 'app-version') {
      if (!body.equals(APP)) return { events: [reject(stage, refusal)], state: 'rejected', remaining: EMPTY };
      events.push({ kind: 'write', bytes: Buffer.from([0]) });
    }
    if (stage === 'ap-req') {
      const rest = input.subarray(pos);
      if (rest.length > maxPipelined) {
        return { events: [...events, reject('pipelined', EMPTY)], state: 'rejected', remaining: EMPTY, apReq: Buffer.from(body) };
      }
      return { events: [...events, { kind: 'ap-req', apReq: Buffer.from(body) }], state: 'done', remaining: Buffer.from(rest), apReq: Buffer.from(body) };
    }
  }
  throw new Error('unreachable');
}

/** Events without the log text, for comparing runs. */
function shape(events: readonly KpopEvent[]): string {
  return events
    .map((e) => (e.kind === 'reject' ? `reject:${e.stage}:${e.bytes.toString('hex')}` : e.kind === 'write' ? `write:${e.bytes.toString('hex')}` : `ap-req:${e.apReq.toString('hex')}`))
    .join(' ');
}

/**
 * Chunked and one-read runs agree, except that a pipelining overflow found in
 * a later read than the AP-REQ follows an 'ap-req' event a one-read run
 * withdraws (the host then drops the pending verification).
 */
function checkAgainst(input: Buffer, how: Chunking, limits: Limits | undefined): Outcome {
  const want = reference(input, limits);
  const whole = run([input], limits);
  invariant(shape(whole.events) === shape(want.events), () => `one read: ${shape(whole.events)}; reference: ${shape(want.events)}`);
  invariant(whole.state === want.state, () => `one read ends in ${whole.state}, reference ${want.state}`);
  invariant(whole.remaining.equals(want.remaining), 'one read: remaining bytes differ from the reference');

  const split = run(chunk(input, how), limits);
  const lateOverflow = split.events.at(-1)?.kind === 'reject' && (split.events.at(-1) as { stage: string }).stage === 'pipelined';
  const normal = lateOverflow ? split.events.filter((e) => e.kind !== 'ap-req') : split.events;
  invariant(shape(normal) === shape(want.events), () => `split: ${shape(split.events)}; reference: ${shape(want.events)}`);
  const handedOut = split.events.find((e) => e.kind === 'ap-req');
  if (handedOut?.kind === 'ap-req') invariant(want.apReq !== undefined && handedOut.apReq.equals(want.apReq), 'split handed out another AP-REQ');
  invariant(split.state === want.state, () => `split ends in ${split.state}, reference ${want.state}`);
  invariant(split.remaining.equals(want.remaining), 'split: remaining bytes differ');
  // Same log text, whatever the segmentation.
  const reasons = (o: Outcome): string => o.events.flatMap((e) => (e.kind === 'reject' ? [e.reason] : [])).join('|');
  invariant(reasons(split) === reasons(whole), () => `reasons differ: ${show(reasons(split))} vs ${show(reasons(whole))}`);
  return split;
}

/** Where a run ended: its final state, and the stage of its refusal. */
function outcomeName(o: Outcome): string {
  const last = o.events.at(-1);
  return last?.kind === 'reject' ? `reject:${last.stage}` : `state:${o.state}`;
}

const OUTCOMES = ['state:sendauth-version', 'state:app-version', 'state:ap-req', 'state:done', 'reject:sendauth-version', 'reject:app-version', 'reject:ap-req', 'reject:pipelined'];
const validReached = new Reached(['state:done', 'reject:app-version', 'reject:ap-req', 'reject:pipelined']);
const arbitraryReached = new Reached(OUTCOMES);

describe('fuzz: KPOP handshake framing', () => {
  fuzzIt(
    'kpop: valid client streams split anywhere parse like one read',
    fc.property(validStreamArb, chunkingArb, limitsArb, (v, how, limits) => {
      const input = validStream(v);
      const out = checkAgainst(input, how, limits);
      const eff = effective(limits);
      if (v.app === KPOP_APP_VERSION && v.apReq.length <= eff.maxApReqLength && v.pipelined.length <= eff.maxPipelined) {
        invariant(out.state === 'done', () => `valid stream ended in ${out.state}`);
        invariant(out.remaining.equals(v.pipelined), 'pipelined bytes not handed on intact');
        const ap = out.events.find((e) => e.kind === 'ap-req');
        invariant(ap?.kind === 'ap-req' && ap.apReq.equals(v.apReq), 'AP-REQ not handed out intact');
      } else {
        invariant(out.state === 'rejected', () => `invalid stream ended in ${out.state}`);
      }
      validReached.hit(outcomeName(out));
    }),
    () => validReached,
  );

  fuzzIt(
    'kpop: arbitrary and mutated streams never throw, stay bounded and match the reference',
    fc.property(arbitraryStreamArb, chunkingArb, limitsArb, (input, how, limits) => {
      arbitraryReached.hit(outcomeName(checkAgainst(input, how, limits)));
    }),
    () => arbitraryReached,
  );
});
