/**
 * The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC
 * 7677), sans-I/O: messages in, messages and outcomes out. No sockets, no
 * timers; node:crypto only. The host (the POP3 AUTH wiring) moves the
 * messages as `+ ` lines and looks up the credentials.
 *
 *   C: client-first   n,,n=user,r=<c-nonce>        startScram(bytes, opts)
 *                                                 -> refusal, or { username, authzid } + exchange
 *      host: credentials for `username` (a real entry, or scramDummyCredentials for an
 *            unknown user or an entry that cannot serve SCRAM)
 *   S: server-first   r=<c-nonce><s-nonce>,s=<salt>,i=<iterations>
 *                                                 <- exchange.serverFirst(credentials)
 *   C: client-final   c=<b64(gs2 header + cb data)>,r=<nonce>,p=<proof>
 *                                                 exchange.clientFinal(bytes)
 *                                                 -> { ok: true, serverFinal } or a refusal
 *   S: server-final   v=<server signature>        (or e=<error>)
 *
 * Every refusal carries the RFC 5802 `e=` server-error message that names
 * it (`serverError`). SCRAM only defines it as a server-final message; the
 * host may send it as the last challenge before failing, or fail at once.
 *
 * Channel binding (RFC 5802 section 6): the host passes `channel` exactly
 * when it offers SCRAM-SHA-256-PLUS on this connection, with the binding
 * data it has: `tlsExporter` (RFC 9266, tlsExporterData(socket); only where
 * it is secure: TLS 1.3, or 1.2 with extended master secret, which Node does
 * not report, so in practice TLS 1.3) and/or `tlsServerEndPoint` (RFC 5929,
 * tlsServerEndPointData(our certificate's DER)). On the
 * non-PLUS mechanism it only serves to spot a downgrade: a client saying
 * `y` ("I could bind, but you don't offer it") while PLUS is offered is
 * refused (`server-does-support-channel-binding`).
 *
 * Names: `=2C`/`=3D` unescaped, then SASLprep (RFC 4013) as a query string
 * (unassigned code points allowed); a name that fails or prepares to ''
 * is refused. Passwords, where a key is derived here (scramPasswordBytes):
 * SASLprep as a stored string, or the raw UTF-8 bytes when SASLprep refuses
 * the password (PostgreSQL does the same). Unknown extensions in the client
 * messages are ignored as RFC 5802 asks; the mandatory-extension marker
 * `m=` is refused (`extensions-not-supported`).
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import saslprep from '@mongodb-js/saslprep';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';

/** SHA-256 output: the length of SaltedPassword, StoredKey, ServerKey and proofs. */
export const SCRAM_KEY_BYTES = 32;
/** What Dovecot writes and RFC 7677 asks for at least. */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_SALT_BYTES = 16;
/** Longest client message accepted, in octets (a POP3 line is shorter anyway). */
export const SCRAM_MAX_MESSAGE_BYTES = 4096;

/** The channel-binding types this server knows (RFC 9266, RFC 5929). */
export type ChannelBindingType = 'tls-exporter' | 'tls-server-end-point';

/** The channel-binding data of this connection (see the module comment). */
export interface ScramChannel {
  readonly tlsExporter?: Buffer;
  readonly tlsServerEndPoint?: Buffer;
}

/** What the server must know of a user to run SCRAM: never the password. */
export interface ScramCredentials {
  readonly iterations: number;
  readonly salt: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/**
 * A credentials lookup for SCRAM (see UserFileVerifier.scramCredentials).
 * When `found` is false the credentials are a dummy: run the exchange with
 * them all the same, so the client fails at the proof as with a wrong
 * password, and report `reason` (unknown user, or an entry that cannot serve
 * SCRAM) only in logs.
 */
export type ScramLookup =
  | { readonly found: true; readonly credentials: ScramCredentials }
  | { readonly found: false; readonly reason: 'unknown-user' | 'disabled'; readonly credentials: ScramCredentials };

export interface ScramStartOptions {
  /** The client chose SCRAM-SHA-256-PLUS. */
  readonly plus: boolean;
  /** Binding data; present exactly when SCRAM-SHA-256-PLUS is offered on this connection. */
  readonly channel?: ScramChannel;
  /** The server's nonce part: 1 or more printable ASCII characters except `,` (randomScramNonce). */
  readonly nonce: () => string;
}

export type ScramFailure =
  /** Not SCRAM syntax, not UTF-8, a NUL, too long, or bad base64 in c= or p=. */
  | 'malformed'
  /** `=` not followed by 2C or 3D in the name, SASLprep refused it, or it prepared to ''. */
  | 'invalid-username'
  /** The authzid is badly escaped or holds control characters. */
  | 'invalid-authzid'
  /** `m=`: a mandatory extension the server does not know. */
  | 'extensions-not-supported'
  /** Flag `y` on SCRAM-SHA-256 while PLUS is offered here: a downgrade. */
  | 'channel-binding-downgrade'
  /** `p=` on SCRAM-SHA-256 (non-PLUS). */
  | 'unexpected-channel-binding'
  /** SCRAM-SHA-256-PLUS without `p=`. */
  | 'channel-binding-required'
  /** SCRAM-SHA-256-PLUS where the host has no binding data at all. */
  | 'channel-binding-not-supported'
  /** `p=` names a type the host has no data for (e.g. tls-unique). */
  | 'unsupported-channel-binding-type'
  /** c= is not base64(gs2 header + the binding data). */
  | 'channel-bindings-dont-match'
  /** The client-final nonce is not the one the server sent. */
  | 'nonce-mismatch'
  /** The proof does not verify (wrong password, unknown user). */
  | 'invalid-proof';

/** The RFC 5802 server-error-value for each refusal. */
const SERVER_ERROR: Record<ScramFailure, string> = {
  malformed: 'invalid-encoding',
  'invalid-username': 'invalid-username-encoding',
  'invalid-authzid': 'invalid-encoding',
  'extensions-not-supported': 'extensions-not-supported',
  'channel-binding-downgrade': 'server-does-support-channel-binding',
  'unexpected-channel-binding': 'other-error',
  'channel-binding-required': 'other-error',
  'channel-binding-not-supported': 'channel-binding-not-supported',
  'unsupported-channel-binding-type': 'unsupported-channel-binding-type',
  'channel-bindings-dont-match': 'channel-bindings-dont-match',
  'nonce-mismatch': 'other-error',
  'invalid-proof': 'invalid-proof',
};

export interface ScramRefusal {
  readonly ok: false;
  readonly reason: ScramFailure;
  /** `e=<server-error-value>` (RFC 5802 section 7). */
  readonly serverError: Buffer;
}

export type ScramStart =
  | {
      readonly ok: true;
      /** The name after unescaping and SASLprep: what the credentials are looked up under. */
      readonly username: string;
      /** The unescaped authorization identity; '' when the client sent none. */
      readonly authzid: string;
      /** The channel-binding type in use; undefined on SCRAM-SHA-256. */
      readonly channelBinding: ChannelBindingType | undefined;
      /** Always true: the host looks up credentials (or a dummy) and calls `exchange.serverFirst`. */
      readonly needCredentials: true;
      readonly exchange: ScramServerExchange;
    }
  | ScramRefusal;

export type ScramFinal =
  | {
      readonly ok: true;
      readonly username: string;
      readonly authzid: string;
      /** `v=<base64 ServerSignature>`: the last challenge the client must see. */
      readonly serverFinal: Buffer;
    }
  | ScramRefusal;

function refuse(reason: ScramFailure): ScramRefusal {
  return { ok: false, reason, serverError: Buffer.from(`e=${SERVER_ERROR[reason]}`, 'latin1') };
}

// ---- syntax (RFC 5802 section 7) -------------------------------------------

/** printable = %x21-2B / %x2D-7E: nonces. */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const CB_NAME = /^[A-Za-z0-9.-]+$/;
/** attr-val = ALPHA "=" value, value = 1*value-char (NUL and `,` already excluded). */
const ATTR_VAL = /^[A-Za-z]=.+$/s;
/** ASCII control characters: in no name or authzid. */
// eslint-disable-next-line no-control-regex -- RFC 4013 prohibits them; checked on the authzid, which is not prepped
const CONTROL = /[\x00-\x1f\x7f]/;
const BASE64_SHAPE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Canonical padded base64 only (no stray characters, no non-zero spare bits). */
export function decodeBase64Canonical(s: string): Buffer | undefined {
  if (!BASE64_SHAPE.test(s)) return undefined;
  const out = Buffer.from(s, 'base64');
  return out.toString('base64') === s ? out : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The message as text: UTF-8, no NUL, not too long; else undefined. */
function messageText(buf: Buffer): string | undefined {
  if (buf.length === 0 || buf.length > SCRAM_MAX_MESSAGE_BYTES || buf.includes(0)) return undefined;
  try {
    return utf8.decode(buf);
  } catch {
    return undefined;
  }
}

/** saslname: 1*(value-safe-char / "=2C" / "=3D") unescaped; undefined when empty or badly escaped. */
export function decodeSaslName(s: string): string | undefined {
  if (s === '') return undefined;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charAt(i);
    if (c !== '=') {
      out += c;
      continue;
    }
    const code = s.slice(i + 1, i + 3);
    if (code === '2C') out += ',';
    else if (code === '3D') out += '=';
    else return undefined;
    i += 2;
  }
  return out;
}

/** A name written as saslname: `=` as =3D, `,` as =2C. */
export function encodeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** SASLprep (RFC 4013); undefined when it refuses or yields ''. `stored`: unassigned code points refused. */
export function saslprepName(s: string, stored = false): string | undefined {
  try {
    const out = saslprep(s, { allowUnassigned: !stored });
    return out === '' ? undefined : out;
  } catch {
    return undefined;
  }
}

/**
 * The bytes a password is hashed as (RFC 5802 Normalize): SASLprep as a
 * stored string, or the password's own UTF-8 bytes when SASLprep refuses it
 * (PostgreSQL's rule). A Buffer that is not UTF-8 is used as it is.
 */
export function scramPasswordBytes(password: string | Buffer): Buffer {
  let text: string;
  if (typeof password === 'string') text = password;
  else {
    try {
      text = utf8.decode(password);
    } catch {
      return password;
    }
  }
  const prepped = saslprepName(text, true);
  return Buffer.from(prepped ?? text, 'utf8');
}

// ---- key derivation (RFC 5802 section 3) -----------------------------------

const hmac = (key: Buffer, data: Buffer | string): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key"). */
export function scramKeys(saltedPassword: Buffer): { readonly storedKey: Buffer; readonly serverKey: Buffer } {
  return { storedKey: sha256(hmac(saltedPassword, 'Client Key')), serverKey: hmac(saltedPassword, 'Server Key') };
}

/** SaltedPassword = Hi(Normalize(password), salt, i), PBKDF2-HMAC-SHA-256, synchronously. */
export function scramSaltedPasswordSync(password: string | Buffer, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(scramPasswordBytes(password), salt, iterations, SCRAM_KEY_BYTES, 'sha256');
}

/** The same from bytes already normalised, on the libuv thread pool. */
export function pbkdf2Sha256(passwordBytes: Buffer, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(passwordBytes, salt, iterations, SCRAM_KEY_BYTES, 'sha256', (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

/** The credentials a password gives with this salt and iteration count (off the event loop). */
export async function deriveScramCredentials(password: string | Buffer, salt: Buffer, iterations: number): Promise<ScramCredentials> {
  const salted = await pbkdf2Sha256(scramPasswordBytes(password), salt, iterations);
  return { iterations, salt, ...scramKeys(salted) };
}

/**
 * Credentials for a name with no usable entry: a salt and keys derived from
 * `secret` and the name alone, so the same name gets the same salt every
 * time (a changing salt would tell an unknown user from a real one). No
 * password matches them. `secret` must be unknown to clients and the same
 * in every process serving the same users (the user file derives it from
 * the file's content); `iterations` should be what the real entries use.
 */
export function scramDummyCredentials(username: string, secret: Buffer, iterations = SCRAM_DEFAULT_ITERATIONS): ScramCredentials {
  const part = (label: string): Buffer => hmac(secret, `popgate scram dummy ${label}\0${username}`);
  return {
    iterations,
    salt: part('salt').subarray(0, SCRAM_SALT_BYTES),
    storedKey: part('stored-key'),
    serverKey: part('server-key'),
  };
}

// ---- channel-binding data ---------------------------------------------------

/** RFC 9266 section 2: the tls-exporter binding's label, with an empty context, 32 bytes. */
export const TLS_EXPORTER_LABEL = 'EXPORTER-Channel-Binding';

/** tls-exporter data from a TLS socket (TLS 1.3, or 1.2 with extended master secret: the host's check). */
export function tlsExporterData(socket: { exportKeyingMaterial(length: number, label: string, context: Buffer): Buffer }): Buffer {
  return socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0));
}

/** signatureAlgorithm OIDs (DER content, hex) to the hash RFC 5929 section 4.1 asks for: MD5 and SHA-1 become SHA-256. */
const END_POINT_HASH: ReadonlyMap<string, string> = new Map([
  ['2a864886f70d010104', 'sha256'], // md5WithRSAEncryption
  ['2a864886f70d010105', 'sha256'], // sha1WithRSAEncryption
  ['2a864886f70d01010e', 'sha224'], // sha224WithRSAEncryption
  ['2a864886f70d01010b', 'sha256'], // sha256WithRSAEncryption
  ['2a864886f70d01010c', 'sha384'], // sha384WithRSAEncryption
  ['2a864886f70d01010d', 'sha512'], // sha512WithRSAEncryption
  ['2a8648ce3d0401', 'sha256'], // ecdsa-with-SHA1
  ['2a8648ce3d040301', 'sha224'], // ecdsa-with-SHA224
  ['2a8648ce3d040302', 'sha256'], // ecdsa-with-SHA256
  ['2a8648ce3d040303', 'sha384'], // ecdsa-with-SHA384
  ['2a8648ce3d040304', 'sha512'], // ecdsa-with-SHA512
  ['2a8648ce380403', 'sha256'], // dsa-with-sha1
  ['608648016503040302', 'sha256'], // dsa-with-sha256
]);

/** One DER TLV at `at`: its tag, where its content starts and ends; undefined when it does not fit. */
function derAt(der: Buffer, at: number, end = der.length): { tag: number; start: number; end: number } | undefined {
  if (at + 2 > end) return undefined;
  const tag = der[at] as number;
  let len = der[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > end) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] as number);
    start += n;
  }
  return start + len <= end ? { tag, start, end: start + len } : undefined;
}

/**
 * tls-server-end-point data (RFC 5929 section 4.1) for our certificate in
 * DER (`tlsSocket.getCertificate().raw`): its hash under the hash of its
 * signature algorithm, SHA-256 for MD5 and SHA-1. Undefined when that is not
 * defined (RSASSA-PSS, Ed25519, Ed448, unknown algorithms) or the DER does
 * not parse: offer tls-exporter only then.
 */
export function tlsServerEndPointData(certDer: Buffer): Buffer | undefined {
  const cert = derAt(certDer, 0);
  if (cert?.tag !== 0x30) return undefined;
  const tbs = derAt(certDer, cert.start, cert.end);
  const sigAlg = tbs && derAt(certDer, tbs.end, cert.end);
  if (sigAlg?.tag !== 0x30) return undefined;
  const oid = derAt(certDer, sigAlg.start, sigAlg.end);
  if (oid?.tag !== 0x06) return undefined;
  const hash = END_POINT_HASH.get(certDer.subarray(oid.start, oid.end).toString('hex'));
  return hash === undefined ? undefined : createHash(hash).update(certDer).digest();
}

/** A fresh server nonce: 24 random bytes as base64 (printable, no `,`). */
export function randomScramNonce(): string {
  return randomBytes(24).toString('base64');
}

// ---- the exchange ------------------------------------------------------------

type Phase = 'credentials' | 'client-final' | 'done';

/** One SCRAM exchange after a client-first message that passed (see startScram). */
export class ScramServerExchange {
  private phase: Phase = 'credentials';
  private serverFirstText = '';
  private nonce = '';
  private credentials: ScramCredentials | undefined;

  /** @internal Made by startScram. */
  constructor(
    readonly username: string,
    readonly authzid: string,
    /** gs2 header + channel-binding data: what c= must carry. */
    private readonly cbInput: Buffer,
    private readonly clientFirstBare: string,
    private readonly clientNonce: string,
    private readonly makeNonce: () => string,
  ) {}

  /**
   * The server-first message for these credentials (a user's, or a dummy).
   * Throws on a host error: called twice, or credentials that are not
   * SCRAM-SHA-256 keys, or a nonce generator giving non-printable text.
   */
  serverFirst(credentials: ScramCredentials): Buffer {
    if (this.phase !== 'credentials') throw new Error('SCRAM: serverFirst called out of turn');
    const { iterations, salt, storedKey, serverKey } = credentials;
    if (!Number.isSafeInteger(iterations) || iterations < 1 || salt.length === 0) throw new TypeError('SCRAM: bad iterations or salt');
    if (storedKey.length !== SCRAM_KEY_BYTES || serverKey.length !== SCRAM_KEY_BYTES) throw new TypeError('SCRAM: keys must be 32 bytes');
    const serverNonce = this.makeNonce();
    if (!PRINTABLE.test(serverNonce)) throw new TypeError('SCRAM: the server nonce must be printable ASCII without ","');
    this.nonce = this.clientNonce + serverNonce;
    this.serverFirstText = `r=${this.nonce},s=${salt.toString('base64')},i=${iterations}`;
    this.credentials = credentials;
    this.phase = 'client-final';
    return Buffer.from(this.serverFirstText, 'latin1');
  }

  /** Checks the client-final message; throws only when called out of turn. */
  clientFinal(message: Buffer): ScramFinal {
    if (this.phase !== 'client-final' || this.credentials === undefined) throw new Error('SCRAM: clientFinal called out of turn');
    this.phase = 'done';
    const { storedKey, serverKey } = this.credentials;
    this.credentials = undefined;

    const text = messageText(message);
    if (text === undefined) return refuse('malformed');
    const proofAt = text.lastIndexOf(',p=');
    if (proofAt < 0) return refuse('malformed');
    const withoutProof = text.slice(0, proofAt);
    const proofText = text.slice(proofAt + 3);
    const attrs = withoutProof.split(',');
    const [cb, nonce, ...extensions] = attrs;
    if (cb === undefined || nonce === undefined || !cb.startsWith('c=') || !nonce.startsWith('r=')) return refuse('malformed');
    if (!PRINTABLE.test(nonce.slice(2)) || !extensions.every((e) => ATTR_VAL.test(e))) return refuse('malformed');
    const cbData = decodeBase64Canonical(cb.slice(2));
    const proof = decodeBase64Canonical(proofText);
    if (cbData === undefined || proof === undefined || proof.length === 0) return refuse('malformed');

    if (!constantTimeBytesEqual(cbData, this.cbInput)) return refuse('channel-bindings-dont-match');
    if (nonce.slice(2) !== this.nonce) return refuse('nonce-mismatch');
    if (proof.length !== SCRAM_KEY_BYTES) return refuse('invalid-proof');

    const authMessage = `${this.clientFirstBare},${this.serverFirstText},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const clientKey = Buffer.alloc(SCRAM_KEY_BYTES);
    for (let i = 0; i < SCRAM_KEY_BYTES; i++) clientKey[i] = (proof[i] as number) ^ (clientSignature[i] as number);
    if (!timingSafeEqual(sha256(clientKey), storedKey)) return refuse('invalid-proof');
    const serverSignature = hmac(serverKey, authMessage);
    return {
      ok: true,
      username: this.username,
      authzid: this.authzid,
      serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`, 'latin1'),
    };
  }
}

/** Equal bytes, compared in time independent of where they differ. */
function constantTimeBytesEqual(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(sha256(a), sha256(b)) && a.length === b.length;
}

function hasChannel(channel: ScramChannel | undefined): boolean {
  return channel?.tlsExporter !== undefined || channel?.tlsServerEndPoint !== undefined;
}

/** The binding data for a `p=` name, when this connection has it. */
function channelData(channel: ScramChannel | undefined, name: string): { type: ChannelBindingType; data: Buffer } | undefined {
  if (name === 'tls-exporter' && channel?.tlsExporter !== undefined) return { type: name, data: channel.tlsExporter };
  if (name === 'tls-server-end-point' && channel?.tlsServerEndPoint !== undefined) return { type: name, data: channel.tlsServerEndPoint };
  return undefined;
}

/**
 * Reads the client-first message. Never throws on client input: a refusal
 * names what was wrong; otherwise the host looks up `username` and calls
 * `exchange.serverFirst`.
 */
export function startScram(clientFirst: Buffer, opts: ScramStartOptions): ScramStart {
  const text = messageText(clientFirst);
  if (text === undefined) return refuse('malformed');

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  const first = text.indexOf(',');
  const second = first < 0 ? -1 : text.indexOf(',', first + 1);
  if (second < 0) return refuse('malformed');
  const flag = text.slice(0, first);
  const authzidField = text.slice(first + 1, second);
  const gs2Header = text.slice(0, second + 1);
  const bare = text.slice(second + 1);

  let cbName: string | undefined;
  if (flag.startsWith('p=')) {
    cbName = flag.slice(2);
    if (!CB_NAME.test(cbName)) return refuse('malformed');
  } else if (flag !== 'n' && flag !== 'y') return refuse('malformed');

  let authzid = '';
  if (authzidField !== '') {
    if (!authzidField.startsWith('a=')) return refuse('malformed');
    const decoded = decodeSaslName(authzidField.slice(2));
    if (decoded === undefined || CONTROL.test(decoded)) return refuse('invalid-authzid');
    authzid = decoded;
  }

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  const attrs = bare.split(',');
  if (attrs[0]?.startsWith('m=')) return refuse('extensions-not-supported');
  const [userAttr, nonceAttr, ...extensions] = attrs;
  if (userAttr === undefined || nonceAttr === undefined || !userAttr.startsWith('n=') || !nonceAttr.startsWith('r=')) {
    return refuse('malformed');
  }
  const clientNonce = nonceAttr.slice(2);
  if (!PRINTABLE.test(clientNonce) || !extensions.every((e) => ATTR_VAL.test(e))) return refuse('malformed');

  // Channel binding (RFC 5802 section 6).
  let cbData: Buffer = Buffer.alloc(0);
  let channelBinding: ChannelBindingType | undefined;
  if (!opts.plus) {
    if (cbName !== undefined) return refuse('unexpected-channel-binding');
    if (flag === 'y' && hasChannel(opts.channel)) return refuse('channel-binding-downgrade');
  } else {
    if (cbName === undefined) return refuse('channel-binding-required');
    if (!hasChannel(opts.channel)) return refuse('channel-binding-not-supported');
    const found = channelData(opts.channel, cbName);
    if (found === undefined) return refuse('unsupported-channel-binding-type');
    cbData = found.data;
    channelBinding = found.type;
  }

  const escaped = decodeSaslName(userAttr.slice(2));
  const username = escaped === undefined ? undefined : saslprepName(escaped);
  if (username === undefined) return refuse('invalid-username');

  const cbInput = Buffer.concat([Buffer.from(gs2Header, 'utf8'), cbData]);
  const exchange = new ScramServerExchange(username, authzid, cbInput, bare, clientNonce, opts.nonce);
  return { ok: true, username, authzid, channelBinding, needCredentials: true, exchange };
}
