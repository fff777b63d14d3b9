import { describe, expect, it, vi } from 'vitest';
import { LineFramer, type FramedLine } from '../../src/pop3/framer.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/**
 * Runs `fn` and counts the framer's work in bytes: `scanned`, the bytes
 * handed to indexOf; `moved`, the bytes copied (push, growth, compaction).
 * A quadratic framer multiplies these, whatever the machine's speed.
 */
function countWork(fn: () => void): { scanned: number; moved: number } {
  const indexOf = vi.spyOn(Buffer.prototype, 'indexOf');
  const copy = vi.spyOn(Buffer.prototype, 'copy');
  const copyWithin = vi.spyOn(Buffer.prototype, 'copyWithin');
  try {
    fn();
    const scanned = indexOf.mock.contexts.reduce((n, buf) => n + buf.length, 0);
    // copy(target, targetStart, sourceStart = 0, sourceEnd = this.length); copyWithin(target, start, end).
    const copied = copy.mock.calls.reduce((n, call, i) => {
      const [, , from = 0, to = copy.mock.contexts[i]!.length] = call as [unknown, number?, number?, number?];
      return n + to - from;
    }, 0);
    const compacted = copyWithin.mock.calls.reduce((n, call) => {
      const [, from, to] = call as [number, number, number];
      return n + to - from;
    }, 0);
    return { scanned, moved: copied + compacted };
  } finally {
    indexOf.mockRestore();
    copy.mockRestore();
    copyWithin.mockRestore();
  }
}

/** Pulls every available result until the framer needs more bytes (or overflows). */
function drain(f: LineFramer, max = 255): (string | 'OVERFLOW')[] {
  const out: (string | 'OVERFLOW')[] = [];
  for (;;) {
    const r: FramedLine | undefined = f.next(max);
    if (r === undefined) return out;
    if (r.kind === 'overflow') {
      out.push('OVERFLOW');
      return out;
    }
    out.push(r.line.toString('latin1'));
  }
}

describe('LineFramer', () => {
  it('returns nothing until a terminator arrives', () => {
    const f = new LineFramer();
    expect(f.next(255)).toBeUndefined();
    f.push(b('USER al'));
    expect(f.next(255)).toBeUndefined();
    expect(f.bufferedBytes).toBe(7);
  });

  it('reassembles a line split across chunks, including a CR/LF split', () => {
    const f = new LineFramer();
    f.push(b('US'));
    f.push(b('ER ali'));
    expect(drain(f)).toEqual([]);
    f.push(b('ce\r'));
    expect(drain(f)).toEqual([]);
    f.push(b('\nPA'));
    expect(drain(f)).toEqual(['USER alice']);
    expect(f.bufferedBytes).toBe(2);
  });

  it('accepts CRLF and bare LF and strips exactly one trailing CR', () => {
    const f = new LineFramer();
    f.push(b('CAPA\r\nNOOP\nQUIT\r\r\nA\rB\r\n\r\n\n'));
    expect(drain(f)).toEqual(['CAPA', 'NOOP', 'QUIT\r', 'A\rB', '', '']);
    expect(f.bufferedBytes).toBe(0);
  });

  it('splits many pipelined lines from one chunk, in order', () => {
    const f = new LineFramer();
    const lines = Array.from({ length: 500 }, (_, i) => `NOOP ${i}`);
    f.push(b(lines.map((l) => `${l}\r\n`).join('')));
    expect(drain(f)).toEqual(lines);
  });

  it('works byte by byte and keeps returned lines stable after later pushes', () => {
    const f = new LineFramer(16);
    const text = 'first line here\r\nsecond, a bit longer than the initial buffer\r\nthird\n';
    const got: Buffer[] = [];
    for (const byte of b(text)) {
      f.push(Buffer.from([byte]));
      for (;;) {
        const r = f.next(255);
        if (!r) break;
        if (r.kind === 'line') got.push(r.line);
      }
    }
    expect(got.map((x) => x.toString())).toEqual(['first line here', 'second, a bit longer than the initial buffer', 'third']);
  });

  describe('limit (octets including the terminator)', () => {
    it('accepts a CRLF line of exactly maxLine octets', () => {
      const f = new LineFramer();
      const text = 'X'.repeat(253);
      f.push(b(`${text}\r\n`));
      expect(drain(f, 255)).toEqual([text]);
    });

    it('rejects a CRLF line one octet over', () => {
      const f = new LineFramer();
      f.push(b(`${'X'.repeat(254)}\r\n`));
      expect(drain(f, 255)).toEqual(['OVERFLOW']);
    });

    it('counts a bare LF as one octet', () => {
      const f = new LineFramer();
      f.push(b(`${'X'.repeat(254)}\n`));
      expect(drain(f, 255)).toEqual(['X'.repeat(254)]);
      f.push(b(`${'X'.repeat(255)}\n`));
      expect(drain(f, 255)).toEqual(['OVERFLOW']);
    });

    it('waits on a partial line that can still end within the cap', () => {
      const f = new LineFramer();
      f.push(b('X'.repeat(253)));
      expect(f.next(255)).toBeUndefined();
      f.push(b('\r'));
      expect(f.next(255)).toBeUndefined(); // 254 octets: CRLF would make exactly 255
      f.push(b('\n'));
      expect(drain(f, 255)).toEqual(['X'.repeat(253)]);
    });

    it('reports overflow of a partial line without waiting for its terminator', () => {
      const f = new LineFramer();
      f.push(b('X'.repeat(254)));
      expect(f.next(255)).toBeUndefined();
      f.push(b('X')); // 255 octets and still no LF: cannot fit any more
      expect(f.next(255)).toEqual({ kind: 'overflow' });
    });

    it('is poisoned after overflow, even if valid lines follow', () => {
      const f = new LineFramer();
      f.push(b(`${'X'.repeat(300)}\r\nNOOP\r\n`));
      expect(f.next(255)).toEqual({ kind: 'overflow' });
      expect(f.overflowed).toBe(true);
      f.push(b('NOOP\r\n'));
      expect(f.next(255)).toEqual({ kind: 'overflow' });
      expect(f.next(100_000)).toEqual({ kind: 'overflow' });
      expect(f.bufferedBytes).toBe(0); // a hostile peer cannot make it grow
    });

    it('applies the cap given for each line (larger SASL cap for one line only)', () => {
      const f = new LineFramer();
      const token = 'A'.repeat(4000);
      f.push(b(`${token}\r\n${token}\r\n`));
      expect(f.next(8192)).toEqual({ kind: 'line', line: b(token), octets: 4002 });
      expect(f.next(255)).toEqual({ kind: 'overflow' });
    });
  });

  it('reports each line\'s octets as received: CRLF and a bare LF', () => {
    const f = new LineFramer();
    f.push(b('CAPA\r\nNOOP\n\r\n'));
    expect([f.next(255), f.next(255), f.next(255)]).toEqual([
      { kind: 'line', line: b('CAPA'), octets: 6 },
      { kind: 'line', line: b('NOOP'), octets: 5 },
      { kind: 'line', line: b(''), octets: 2 },
    ]);
  });

  it('discardBuffered drops the rest after STLS and reports the count', () => {
    const f = new LineFramer();
    f.push(b('STLS\r\nCAPA\r\n'));
    expect(f.next(255)).toEqual({ kind: 'line', line: b('STLS'), octets: 6 });
    expect(f.discardBuffered()).toBe(6);
    expect(f.bufferedBytes).toBe(0);
    expect(f.next(255)).toBeUndefined();
    f.push(b('NOOP\r\n'));
    expect(drain(f)).toEqual(['NOOP']);
  });

  it('discardBuffered also drops a partial line', () => {
    const f = new LineFramer();
    f.push(b('STLS\r\nUSER evil'));
    expect(drain(f)).toEqual(['STLS']);
    expect(f.discardBuffered()).toBe(9);
    f.push(b('\r\n'));
    expect(drain(f)).toEqual(['']);
  });

  it('takeBuffered hands over unparsed bytes exactly once', () => {
    const f = new LineFramer();
    f.push(b('PASS secret\r\nSTAT\r\nRETR 1'));
    expect(f.next(255)).toEqual({ kind: 'line', line: b('PASS secret'), octets: 13 });
    const rest = f.takeBuffered();
    expect(rest.toString('latin1')).toBe('STAT\r\nRETR 1');
    expect(f.bufferedBytes).toBe(0);
    expect(f.takeBuffered().length).toBe(0);
  });

  it('takeBuffered returns a copy unaffected by later pushes', () => {
    const f = new LineFramer(16);
    f.push(b('abc'));
    const taken = f.takeBuffered();
    f.push(b('zzzzzzzzzzzz'));
    expect(taken.toString()).toBe('abc');
  });

  it('stays linear on a long stream in tiny chunks', () => {
    const f = new LineFramer();
    const line = `${'Y'.repeat(200)}\r\n`;
    const payload = b(line.repeat(2000)); // ~400 KB
    let count = 0;
    const kinds = new Set<string>();
    const work = countWork(() => {
      for (let i = 0; i < payload.length; i += 7) {
        f.push(payload.subarray(i, i + 7));
        for (;;) {
          const r = f.next(255);
          if (!r) break;
          kinds.add(r.kind);
          count++;
        }
      }
    });
    expect([...kinds]).toEqual(['line']);
    expect(count).toBe(2000);
    // Linear: each byte searched and moved a bounded number of times (not once per push).
    expect(work.scanned).toBeLessThan(2 * payload.length);
    expect(work.moved).toBeLessThan(2 * payload.length);
  });

  it('stays linear on one long partial line pushed in tiny chunks', () => {
    // The worst case for rescanning and compaction: no LF until the very end.
    const f = new LineFramer();
    const payload = b(`${'Z'.repeat(100_000)}\r\n`);
    const lines: number[] = [];
    const work = countWork(() => {
      for (let i = 0; i < payload.length; i += 7) {
        f.push(payload.subarray(i, i + 7));
        const r = f.next(1 << 20);
        if (r?.kind === 'line') lines.push(r.line.length);
      }
    });
    expect(lines).toEqual([100_000]);
    // Quadratic rescanning would search ~n²/14 (7e8) bytes, quadratic moving as many.
    expect(work.scanned).toBeLessThan(2 * payload.length);
    expect(work.moved).toBeLessThan(4 * payload.length);
  });
});
