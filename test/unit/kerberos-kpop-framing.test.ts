import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  KpopHandshake,
  kpopApReqFrame,
  kpopClientHello,
  kpopErrorFrame,
  kpopOkFrame,
  type KpopEvent,
} from '../../src/kerberos/index.js';

/** A synthetic 605-byte DER AP-REQ (the size fetchmail sent in the capture): 6e 82 02 59 + body. */
const AP_REQ = Buffer.concat([Buffer.from([0x6e, 0x82, 0x02, 0x59]), Buffer.from(Array.from({ length: 601 }, (_, i) => (i * 37 + 11) & 0xff))]);
/** What Heimdal `push` pipelines right behind the AP-REQ. */
const PIPELINED = Buffer.from('USER alice\r\nPASS x\r\nSTAT\r\n');
const HELLO = Buffer.concat([
  Buffer.from([0, 0, 0, 0x13]),
  Buffer.from('KRB5_SENDAUTH_V1.0\0', 'latin1'),
  Buffer.from([0, 0, 0, 0x09]),
  Buffer.from('KPOPV1.0\0', 'latin1'),
]);
const STREAM = Buffer.concat([HELLO, Buffer.from([0, 0, 0x02, 0x5d]), AP_REQ, PIPELINED]);

const OK_ACK: KpopEvent = { kind: 'write', bytes: Buffer.from([0]) };

/** Length-prefixed bytes, as krb5_write_message sends them. */
function frame(bytes: Buffer | string, declared?: number): Buffer {
  const body = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(declared ?? body.length, 0);
  return Buffer.concat([len, body]);
}

const SENDAUTH = frame('KRB5_SENDAUTH_V1.0\0');

function feedAll(hs: KpopHandshake, chunks: readonly Buffer[]): KpopEvent[] {
  return chunks.flatMap((c) => hs.feed(c));
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('KpopHandshake: the happy path', () => {
  it('acks the versions, hands out the AP-REQ and keeps the pipelined POP3 bytes', () => {
    const hs = new KpopHandshake();
    expect(hs.state).toBe('sendauth-version');
    expect(hs.feed(STREAM)).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
    expect(hs.state).toBe('done');
    expect(hs.done).toBe(true);
    expect(hs.takeRemaining()).toEqual(PIPELINED);
    expect(hs.takeRemaining()).toEqual(Buffer.alloc(0));
  });

  it('acks as soon as the versions are complete, before any AP-REQ byte', () => {
    const hs = new KpopHandshake();
    expect(hs.feed(HELLO.subarray(0, 35))).toEqual([]);
    expect(hs.state).toBe('app-version');
    expect(hs.feed(HELLO.subarray(35))).toEqual([OK_ACK]);
    expect(hs.state).toBe('ap-req');
    expect(hs.feed(kpopApReqFrame(AP_REQ))).toEqual([{ kind: 'ap-req', apReq: AP_REQ }]);
    expect(hs.takeRemaining()).toEqual(Buffer.alloc(0));
  });

  it('gives the same events and remainder for every split point of the stream', () => {
    for (let i = 0; i <= STREAM.length; i += 1) {
      const hs = new KpopHandshake();
      const events = feedAll(hs, [STREAM.subarray(0, i), STREAM.subarray(i)]);
      expect(events, `split at ${i}`).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
      expect(hs.takeRemaining().equals(PIPELINED), `split at ${i}`).toBe(true);
    }
  });

  it('gives the same result for every pair of split points around the headers and one byte at a time', () => {
    const cuts = [0, 1, 3, 4, 5, 22, 23, 24, 26, 27, 35, 36, 37, 39, 40, 41, 300, 644, 645, 646, 660];
    for (const a of cuts) {
      for (const b of cuts.filter((x) => x > a)) {
        const hs = new KpopHandshake();
        const events = feedAll(hs, [STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]);
        expect(events, `cuts ${a},${b}`).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
        expect(hs.takeRemaining().equals(PIPELINED)).toBe(true);
      }
    }
    const hs = new KpopHandshake();
    const events = feedAll(hs, [...STREAM].map((byte) => Buffer.from([byte])));
    expect(events).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
    expect(hs.takeRemaining()).toEqual(PIPELINED);
  });

  it('keeps bytes fed after the AP-REQ, in order, until taken', () => {
    const hs = new KpopHandshake();
    hs.feed(Buffer.concat([HELLO, kpopApReqFrame(AP_REQ), Buffer.from('USER a')]));
    expect(hs.feed(Buffer.from('lice\r\n'))).toEqual([]);
    expect(hs.feed(Buffer.from('PASS x\r\n'))).toEqual([]);
    expect(hs.takeRemaining().toString()).toBe('USER alice\r\nPASS x\r\n');
    expect(hs.feed(Buffer.from('STAT\r\n'))).toEqual([]);
    expect(hs.takeRemaining().toString()).toBe('STAT\r\n');
  });

  it('hands out copies, not views of the caller’s chunks', () => {
    const hs = new KpopHandshake();
    const chunk = Buffer.from(STREAM);
    const [, apReqEvent] = hs.feed(chunk);
    chunk.fill(0);
    expect(apReqEvent).toEqual({ kind: 'ap-req', apReq: AP_REQ });
    expect(hs.takeRemaining()).toEqual(PIPELINED);
  });

  it('accepts an AP-REQ of exactly maxApReqLength', () => {
    const hs = new KpopHandshake({ maxApReqLength: AP_REQ.length });
    expect(hs.feed(Buffer.concat([HELLO, kpopApReqFrame(AP_REQ)]))).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
  });
});

describe('KpopHandshake: refusals', () => {
  function rejectOf(input: Buffer, opts?: ConstructorParameters<typeof KpopHandshake>[0]): Extract<KpopEvent, { kind: 'reject' }> {
    const hs = new KpopHandshake(opts);
    const events = hs.feed(input);
    const last = events[events.length - 1];
    expect(last?.kind).toBe('reject');
    expect(hs.state).toBe('rejected');
    // Nothing more is consumed or kept after a refusal.
    expect(hs.feed(STREAM)).toEqual([]);
    expect(hs.takeRemaining()).toEqual(Buffer.alloc(0));
    return last as Extract<KpopEvent, { kind: 'reject' }>;
  }

  it('refuses another sendauth version with 01', () => {
    const r = rejectOf(Buffer.concat([frame('KRB5_SENDAUTH_V2.0\0'), frame('KPOPV1.0\0')]));
    expect(r).toEqual({ kind: 'reject', bytes: Buffer.from([1]), stage: 'sendauth-version', reason: 'unsupported sendauth version "KRB5_SENDAUTH_V2.0\\u0000"' });
    // Without the terminating NUL, too (MIT compares the NUL-terminated string).
    expect(rejectOf(frame('KRB5_SENDAUTH_V1.0')).bytes).toEqual(Buffer.from([1]));
  });

  it('refuses version-string lengths of 0 and over 64 with 01 / 02 before reading them', () => {
    const zero = rejectOf(frame(''));
    expect(zero).toMatchObject({ bytes: Buffer.from([1]), stage: 'sendauth-version', reason: expect.stringMatching(/^sendauth version length 0 is not in 1\.\.64/) });
    const long = rejectOf(Buffer.from([0, 0, 0, 65]));
    expect(long).toMatchObject({ bytes: Buffer.from([1]), reason: expect.stringMatching(/^sendauth version length 65 /) });
    const appZero = rejectOf(Buffer.concat([SENDAUTH, frame('')]));
    expect(appZero).toMatchObject({ bytes: Buffer.from([2]), stage: 'app-version', reason: 'application version length 0 is not in 1..64' });
    const appLong = rejectOf(Buffer.concat([SENDAUTH, Buffer.from([0, 0, 0, 65])]));
    expect(appLong).toMatchObject({ bytes: Buffer.from([2]), stage: 'app-version', reason: 'application version length 65 is not in 1..64' });
    // 64 is allowed (and then refused for its content).
    const app64 = rejectOf(Buffer.concat([SENDAUTH, frame('x'.repeat(64))]));
    expect(app64.reason).toMatch(/^unsupported application version "x{64}"/);
  });

  it('refuses another application version with 02', () => {
    const r = rejectOf(Buffer.concat([SENDAUTH, frame('IMAPV1.0\0')]));
    expect(r).toEqual({ kind: 'reject', bytes: Buffer.from([2]), stage: 'app-version', reason: 'unsupported application version "IMAPV1.0\\u0000" (expected KPOPV1.0)' });
  });

  it('refuses Kerberos 4 KPOP (KPOPV0.1) with 02, naming krb4 as unsupported', () => {
    const r = rejectOf(Buffer.concat([SENDAUTH, frame('KPOPV0.1\0')]));
    expect(r).toEqual({ kind: 'reject', bytes: Buffer.from([2]), stage: 'app-version', reason: 'application version KPOPV0.1 is Kerberos 4 KPOP; krb4 is unsupported' });
    expect(kpopClientHello('KPOPV0.1').subarray(23)).toEqual(frame('KPOPV0.1\0'));
  });

  it('recognises a Kerberos 4 sendauth client (no length prefix) and plain text', () => {
    const krb4 = rejectOf(Buffer.from('AUTHV0.1KPOPV0.1\0\0\0\0', 'latin1'));
    expect(krb4).toMatchObject({ bytes: Buffer.from([1]), stage: 'sendauth-version', reason: expect.stringMatching(/Kerberos 4 sendauth .*krb4 is unsupported/) });
    const pop3 = rejectOf(Buffer.from('CAPA\r\n'));
    expect(pop3.reason).toMatch(/got text "CAPA", not a krb5_sendauth client/);
  });

  it('refuses a declared 4 GB message without buffering it', () => {
    const alloc = vi.spyOn(Buffer, 'alloc');
    const huge = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    const atStart = rejectOf(huge);
    expect(atStart.reason).toMatch(/^sendauth version length 4294967295 /);
    const hs = new KpopHandshake();
    expect(hs.feed(HELLO)).toEqual([OK_ACK]);
    const events = hs.feed(huge);
    expect(events).toEqual([{ kind: 'reject', bytes: Buffer.alloc(0), stage: 'ap-req', reason: 'AP-REQ length 4294967295 exceeds the limit of 65536' }]);
    // Refused on the four length bytes alone; nothing near the declared size was allocated.
    const sizes = alloc.mock.calls.map(([size]) => size);
    expect(Math.max(...sizes)).toBeLessThan(100);
  });

  it('allocates exactly the declared length for an acceptable AP-REQ', () => {
    const hs = new KpopHandshake();
    hs.feed(HELLO);
    const head = kpopApReqFrame(AP_REQ).subarray(0, 10);
    const alloc = vi.spyOn(Buffer, 'alloc');
    hs.feed(head);
    expect(alloc.mock.calls.map(([size]) => size)).toEqual([AP_REQ.length]);
  });

  it('refuses an empty AP-REQ and one over maxApReqLength with no bytes to send', () => {
    expect(rejectOf(Buffer.concat([HELLO, Buffer.alloc(4)]))).toEqual({ kind: 'reject', bytes: Buffer.alloc(0), stage: 'ap-req', reason: 'empty AP-REQ' });
    const big = rejectOf(Buffer.concat([HELLO, kpopApReqFrame(AP_REQ)]), { maxApReqLength: AP_REQ.length - 1 });
    expect(big).toEqual({ kind: 'reject', bytes: Buffer.alloc(0), stage: 'ap-req', reason: 'AP-REQ length 605 exceeds the limit of 604' });
  });

  it('refuses a message that is not an AP-REQ on its first byte, still sending the version ack first', () => {
    const hs = new KpopHandshake();
    const events = hs.feed(Buffer.concat([HELLO, Buffer.from([0, 0, 0x02, 0x5d, 0x30])]));
    expect(events).toEqual([OK_ACK, { kind: 'reject', bytes: Buffer.alloc(0), stage: 'ap-req', reason: 'not an AP-REQ (first byte 0x30, expected 0x6e)' }]);
    // A KRB-ERROR or AP-REP tag is no AP-REQ either.
    expect(rejectOf(Buffer.concat([HELLO, kpopApReqFrame(Buffer.from([0x7e, 0, 0]))])).reason).toMatch(/first byte 0x7e/);
  });

  it('bounds the bytes kept behind the AP-REQ and never takes back an AP-REQ it handed out', () => {
    const same = new KpopHandshake({ maxPipelined: PIPELINED.length - 1 });
    expect(same.feed(STREAM)).toEqual([
      OK_ACK,
      { kind: 'reject', bytes: Buffer.alloc(0), stage: 'pipelined', reason: `more than ${PIPELINED.length - 1} bytes pipelined behind the AP-REQ` },
    ]);
    expect(same.takeRemaining()).toEqual(Buffer.alloc(0));

    const later = new KpopHandshake({ maxPipelined: 10 });
    expect(later.feed(Buffer.concat([HELLO, kpopApReqFrame(AP_REQ), Buffer.from('USER ')]))).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
    expect(later.feed(Buffer.from('alice'))).toEqual([]);
    expect(later.feed(Buffer.from('\r'))).toEqual([{ kind: 'reject', bytes: Buffer.alloc(0), stage: 'pipelined', reason: 'more than 10 bytes pipelined behind the AP-REQ' }]);
    expect(later.state).toBe('rejected');
    expect(later.takeRemaining()).toEqual(Buffer.alloc(0));

    // Taking the bytes frees room again.
    const drained = new KpopHandshake({ maxPipelined: 10 });
    drained.feed(Buffer.concat([HELLO, kpopApReqFrame(AP_REQ), Buffer.from('0123456789')]));
    expect(drained.takeRemaining().toString()).toBe('0123456789');
    expect(drained.feed(Buffer.from('abcdefghij'))).toEqual([]);
  });

  it('checks its options', () => {
    expect(() => new KpopHandshake({ maxApReqLength: 0 })).toThrow(RangeError);
    expect(() => new KpopHandshake({ maxApReqLength: 1.5 })).toThrow(RangeError);
    expect(() => new KpopHandshake({ maxPipelined: -1 })).toThrow(RangeError);
  });
});

describe('KPOP encoders', () => {
  it('writes the client hello byte for byte as fetchmail does (36 bytes)', () => {
    expect(kpopClientHello()).toEqual(HELLO);
    expect(kpopClientHello().toString('hex')).toBe(
      '00000013' + Buffer.from('KRB5_SENDAUTH_V1.0\0').toString('hex') + '00000009' + Buffer.from('KPOPV1.0\0').toString('hex'),
    );
    expect(kpopClientHello()).toHaveLength(36);
  });

  it('frames the AP-REQ with a big-endian length', () => {
    expect(kpopApReqFrame(Buffer.from([0x6e, 1, 2])).toString('hex')).toBe('000000036e0102');
    expect(kpopApReqFrame(AP_REQ).subarray(0, 4).toString('hex')).toBe('0000025d');
  });

  it('writes the OK reply, with the AP-REP in the same buffer when mutual', () => {
    expect(kpopOkFrame().toString('hex')).toBe('00000000');
    const apRep = Buffer.from([0x6f, 0x81, 0x88, 0x30]);
    expect(kpopOkFrame(apRep).toString('hex')).toBe('00000000' + '00000004' + '6f818830');
  });

  it('writes the KRB-ERROR reply', () => {
    expect(kpopErrorFrame(Buffer.from([0x7e, 0x5a, 0x30])).toString('hex')).toBe('000000037e5a30');
    const big = Buffer.alloc(0x1_0203, 0x7e);
    expect(kpopErrorFrame(big).subarray(0, 4).toString('hex')).toBe('00010203');
    expect(kpopErrorFrame(big)).toHaveLength(0x1_0203 + 4);
  });

  it('refuses empty payloads: a zero length means success on the wire', () => {
    expect(() => kpopErrorFrame(Buffer.alloc(0))).toThrow(/KRB-ERROR must not be empty/);
    expect(() => kpopOkFrame(Buffer.alloc(0))).toThrow(/AP-REP must not be empty/);
    expect(() => kpopApReqFrame(Buffer.alloc(0))).toThrow(RangeError);
  });

  it('round-trips: what the client encoders write, the handshake reads', () => {
    const hs = new KpopHandshake();
    expect(feedAll(hs, [kpopClientHello(), kpopApReqFrame(AP_REQ)])).toEqual([OK_ACK, { kind: 'ap-req', apReq: AP_REQ }]);
  });
});
