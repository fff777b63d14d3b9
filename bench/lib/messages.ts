/** The test messages every benchmark serves (from Dovecot's maildir or the in-memory backend). */
import { randomBytes } from 'node:crypto';

/**
 * Exactly `size` bytes: a header, then 76-character base64 lines with CRLF (the
 * last shorter), no line starting with "." (no dot-stuffing: wire size = size).
 */
export function bigMessage(size: number, id = 'bench-big'): Buffer {
  const header = Buffer.from(
    `From: bench@example.test\r\nTo: alice@example.test\r\nSubject: popgate bench ${(size / 1e6).toFixed(0)} MB\r\n` +
      `Message-ID: <${id}@example.test>\r\n\r\n`,
    'latin1',
  );
  if (size < header.length + 4) throw new RangeError(`bigMessage: ${size} bytes is too small`);
  const out = Buffer.allocUnsafe(size);
  header.copy(out, 0);
  const alphabet = randomBytes(Math.ceil(((size - header.length) * 3) / 4) + 3).toString('base64').replace(/[+/=]/g, 'A');
  let o = header.length;
  let a = 0;
  while (o < size) {
    const left = size - o;
    if (left <= 2) {
      // Too short for a line of its own: pad the previous line.
      out.fill(0x41, o - 2, size - 2);
      out[size - 2] = 0x0d;
      out[size - 1] = 0x0a;
      break;
    }
    const n = Math.min(76, left - 2);
    o += out.write(alphabet.slice(a, a + n), o, 'latin1');
    a += n;
    out[o++] = 0x0d;
    out[o++] = 0x0a;
  }
  return out;
}

export const SMALL_MESSAGE = Buffer.from(
  'From: bench@example.test\r\nTo: alice@example.test\r\nSubject: small\r\nMessage-ID: <bench-small@example.test>\r\n\r\nhello\r\n',
  'latin1',
);
