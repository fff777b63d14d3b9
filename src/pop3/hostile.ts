/**
 * Recognisers for client input no POP3 client sends, used by the session's
 * pre-dispatch checks (`Pop3Session.screen`). Pure functions over bytes.
 */

/** TLS record header: content type handshake (22), then major version 3 (SSL 3.0 / TLS 1.x). */
const TLS_HANDSHAKE = 0x16;
const TLS_MAJOR = 0x03;

/**
 * Whether `bytes` start like a TLS ClientHello (a client speaking POP3S or
 * another TLS protocol to a plaintext port). `0x16` is a control character
 * no POP3 command starts with, so a lone first byte is enough; when the
 * second byte is there it must be the record version's major 3.
 */
export function looksLikeTlsClientHello(bytes: Buffer): boolean {
  if (bytes.length === 0 || bytes[0] !== TLS_HANDSHAKE) return false;
  return bytes.length < 2 || bytes[1] === TLS_MAJOR;
}

/**
 * An HTTP/1.x request line (or the HTTP/2 connection preface `PRI * HTTP/2.0`):
 * a method (case-sensitive, RFC 9110), one target, the version. None of these
 * methods is a POP3 keyword, so there is no overlap with POP3 commands.
 */
const HTTP_REQUEST_LINE = /^(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI) [^ ]+ HTTP\/(?:1\.[0-9]|2\.0)$/;

/** Whether a framed line (terminator stripped) is an HTTP request line (browser, curl, cross-protocol form POST). */
export function looksLikeHttpRequest(line: Buffer): boolean {
  // latin1 maps bytes 1:1: non-ASCII bytes can never match the pattern.
  return line.length <= 8192 && HTTP_REQUEST_LINE.test(line.toString('latin1'));
}
