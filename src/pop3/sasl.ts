/**
 * SASL pieces for POP3 AUTH (RFC 5034): strict base64, PLAIN (RFC 4616), the
 * LOGIN prompts (draft-murchison-sasl-login), the GSSAPI security-layer
 * messages (RFC 4752 section 3.1), and the challenge-response forms of APOP
 * (RFC 1939 section 7) and CRAM-MD5 (RFC 2195). Pure functions only.
 */

/** Server challenge line for an empty challenge (PLAIN without initial response): plus, space. */
export const SASL_EMPTY_CHALLENGE = '+ ';
/** base64("Username:"), the first AUTH LOGIN prompt. */
export const LOGIN_USERNAME_CHALLENGE = 'VXNlcm5hbWU6';
/** base64("Password:"), the second AUTH LOGIN prompt. */
export const LOGIN_PASSWORD_CHALLENGE = 'UGFzc3dvcmQ6';

/** The continuation line `*` cancels an exchange (RFC 5034 section 4). */
export const SASL_CANCEL = '*';

/** The `+ ` line for an AUTH LOGIN step. */
export function loginPrompt(step: 'username' | 'password'): string {
  return `+ ${step === 'username' ? LOGIN_USERNAME_CHALLENGE : LOGIN_PASSWORD_CHALLENGE}`;
}

const BASE64_SHAPE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes base64 strictly: only the RFC 4648 alphabet, length a multiple of
 * four, padding only at the end, and no non-zero bits in the unused part of
 * the last group (canonical form). Node's own decoder silently skips bad
 * characters, which would let garbage through as credentials.
 *
 * `=` alone is the RFC 5034 empty initial response; '' (an empty continuation
 * line) is the canonical encoding of nothing. Both decode to an empty buffer.
 */
export function decodeBase64Strict(s: string): Buffer | undefined {
  if (s === '=' || s === '') return Buffer.alloc(0);
  if (!BASE64_SHAPE.test(s)) return undefined;
  const out = Buffer.from(s, 'base64');
  // Rejects e.g. "QR==" (which decodes like "QQ=="): stray bits mean a broken encoder.
  if (out.toString('base64') !== s) return undefined;
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** UTF-8 decoding that refuses malformed input instead of substituting U+FFFD. */
export function decodeUtf8Strict(buf: Buffer): string | undefined {
  try {
    return utf8.decode(buf);
  } catch {
    return undefined;
  }
}

/** CR, LF and NUL have no place in a user name or password (they would split protocol lines downstream). */
export function hasForbiddenCredentialChars(s: string): boolean {
  return /[\r\n\0]/.test(s);
}

export interface PlainMessage {
  readonly ok: true;
  /** Authorization identity; '' when the client sent none. */
  readonly authzid: string;
  /** Authentication identity (the user whose password is checked). */
  readonly authcid: string;
  readonly passwd: string;
}

export type PlainFailure =
  /** Fewer than three fields. */
  | 'field-count'
  /** More than three fields: with exactly three fields framed by NUL, a NUL sits inside a field. */
  | 'nul-in-field'
  | 'bad-utf8'
  /** CR or LF inside a field. */
  | 'bad-characters'
  | 'empty-authcid'
  | 'empty-password';

export type PlainResult = PlainMessage | { readonly ok: false; readonly reason: PlainFailure };

/** Splits a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 section 2). */
export function decodePlain(buf: Buffer): PlainResult {
  const fields: Buffer[] = [];
  let from = 0;
  for (;;) {
    const nul = buf.indexOf(0, from);
    if (nul < 0) break;
    fields.push(buf.subarray(from, nul));
    from = nul + 1;
  }
  fields.push(buf.subarray(from));
  if (fields.length < 3) return { ok: false, reason: 'field-count' };
  if (fields.length > 3) return { ok: false, reason: 'nul-in-field' };

  const [authzid, authcid, passwd] = fields.map(decodeUtf8Strict);
  if (authzid === undefined || authcid === undefined || passwd === undefined) return { ok: false, reason: 'bad-utf8' };
  if ([authzid, authcid, passwd].some(hasForbiddenCredentialChars)) return { ok: false, reason: 'bad-characters' };
  if (authcid === '') return { ok: false, reason: 'empty-authcid' };
  if (passwd === '') return { ok: false, reason: 'empty-password' };
  return { ok: true, authzid, authcid, passwd };
}

/** `+ ` followed by the base64 of `data` (just `+ ` when empty): a server challenge line. */
export function saslChallenge(data: Buffer): string {
  return `${SASL_EMPTY_CHALLENGE}${data.toString('base64')}`;
}

/** RFC 4752 security-layer bit: no security layer. The only one popgate offers. */
export const GSSAPI_LAYER_NONE = 0x01;

/**
 * The server's RFC 4752 security-layer offer, before wrapping: octet 0 the
 * bit mask of offered layers (no security layer only), octets 1-3 the maximum
 * message size the server can receive (0: no layer, no messages). A fresh
 * buffer on every call (buffers are mutable).
 */
export function gssapiLayerOffer(): Buffer {
  return Buffer.from([GSSAPI_LAYER_NONE, 0x00, 0x00, 0x00]);
}

export type GssapiLayerFailure =
  /** Fewer than the 4 octets of layer and size. */
  | 'short'
  /** The client chose something other than exactly "no security layer". */
  | 'layer'
  | 'bad-utf8'
  /** CR, LF or NUL inside the authzid. */
  | 'bad-characters';

export type GssapiLayerResult =
  | { readonly ok: true; readonly authzid: string }
  | { readonly ok: false; readonly reason: GssapiLayerFailure };

/**
 * Reads the client's unwrapped RFC 4752 answer: octet 0 the chosen layer (a
 * single bit, and it must be one we offered: only 0x01), octets 1-3 its
 * maximum message size (meaningless without a layer, ignored), then the
 * authorization identity as UTF-8 ('' when the client sent none).
 */
export function decodeGssapiLayerResponse(buf: Buffer): GssapiLayerResult {
  if (buf.length < 4) return { ok: false, reason: 'short' };
  if (buf[0] !== GSSAPI_LAYER_NONE) return { ok: false, reason: 'layer' };
  const authzid = decodeUtf8Strict(buf.subarray(4));
  if (authzid === undefined) return { ok: false, reason: 'bad-utf8' };
  if (hasForbiddenCredentialChars(authzid)) return { ok: false, reason: 'bad-characters' };
  return { ok: true, authzid };
}

// ---- APOP (RFC 1939) and CRAM-MD5 (RFC 2195) -------------------------------

/** Longest APOP timestamp or CRAM-MD5 challenge accepted, in octets (keeps the greeting well under 512). */
export const MAX_CHALLENGE_LENGTH = 200;

/** msg-id form `<left@right>`: printable ASCII without space, `<`, `>` or `@` in either part. */
const MSG_ID = /^<[\x21-\x3b\x3d\x3f\x41-\x7e]+@[\x21-\x3b\x3d\x3f\x41-\x7e]+>$/;

/**
 * Whether `s` can serve as an APOP greeting timestamp or a CRAM-MD5
 * challenge: the RFC 822 msg-id form both RFCs ask for (`<1896.697170952@host>`),
 * at most MAX_CHALLENGE_LENGTH octets. Uniqueness is the generator's duty.
 */
export function isValidChallengeString(s: string): boolean {
  return s.length <= MAX_CHALLENGE_LENGTH && MSG_ID.test(s);
}

/** The `+ ` line carrying a CRAM-MD5 challenge (base64 of its ASCII text). */
export function cramMd5Challenge(challenge: string): string {
  return saslChallenge(Buffer.from(challenge, 'latin1'));
}

const HEX_DIGEST = /^[0-9a-fA-F]{32}$/;

/** A 16-octet digest as 32 hex digits (either case) -> lowercase, else undefined. */
export function normaliseHexDigest(s: string): string | undefined {
  return HEX_DIGEST.test(s) ? s.toLowerCase() : undefined;
}

export type NameDigestFailure =
  /** No space, an empty name, or a digest that is not 32 hex digits. */
  | 'syntax'
  /** CR, LF or NUL in the name. */
  | 'bad-characters'
  /** CRAM-MD5 only: the decoded response is not UTF-8. */
  | 'bad-utf8';

export type NameDigestResult =
  | { readonly ok: true; readonly username: string; /** Lowercase hex. */ readonly digest: string }
  | { readonly ok: false; readonly reason: NameDigestFailure };

/**
 * Splits `name SP digest` (APOP arguments; a decoded CRAM-MD5 response) at
 * the last space: the digest never contains one, so a name may.
 */
export function decodeNameDigest(text: string): NameDigestResult {
  const sp = text.lastIndexOf(' ');
  if (sp <= 0) return { ok: false, reason: 'syntax' };
  const username = text.slice(0, sp);
  const digest = normaliseHexDigest(text.slice(sp + 1));
  if (digest === undefined) return { ok: false, reason: 'syntax' };
  if (hasForbiddenCredentialChars(username)) return { ok: false, reason: 'bad-characters' };
  return { ok: true, username, digest };
}

/** The client's decoded CRAM-MD5 response, `username SP hexdigest` in UTF-8 (RFC 2195 section 2). */
export function decodeCramMd5Response(buf: Buffer): NameDigestResult {
  const text = decodeUtf8Strict(buf);
  if (text === undefined) return { ok: false, reason: 'bad-utf8' };
  return decodeNameDigest(text);
}

// ---- OAUTHBEARER (RFC 7628) and XOAUTH2 -------------------------------------

/** The kvsep of RFC 7628 and XOAUTH2 messages (Ctrl-A). */
const KVSEP = 0x01;

/** The client's dummy answer to an error challenge (RFC 7628 section 3.2.3): a lone kvsep. */
export const OAUTH_ERROR_ACK = Buffer.from([KVSEP]);

export type BearerFailure =
  /** Not the mechanism's message shape (gs2 header, key=value pairs, closing kvsep pair). */
  | 'syntax'
  | 'bad-utf8'
  /** CR, LF or NUL in the user name. */
  | 'bad-characters'
  /** No `auth=Bearer <token>` pair, or an empty token. */
  | 'no-token';

export type BearerResult =
  | {
      readonly ok: true;
      /** OAUTHBEARER: the gs2 authzid (`a=`); XOAUTH2: `user=`. '' when absent. */
      readonly requestedUser: string;
      readonly token: string;
    }
  | { readonly ok: false; readonly reason: BearerFailure };

/** RFC 6750 b64token: the characters a bearer token may hold. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** `key=value` pairs between kvseps, ending with an empty pair (two kvseps), as both mechanisms frame them. */
function kvPairs(buf: Buffer): Map<string, string> | undefined {
  if (buf.length < 2 || buf[buf.length - 1] !== KVSEP || buf[buf.length - 2] !== KVSEP) return undefined;
  const pairs = new Map<string, string>();
  for (const part of buf.subarray(0, buf.length - 2).toString('latin1').split('\x01')) {
    const eq = part.indexOf('=');
    // RFC 7628 key: 1*(ALPHA); repeated keys are a malformed message.
    if (eq <= 0 || !/^[A-Za-z]+$/.test(part.slice(0, eq)) || pairs.has(part.slice(0, eq))) return undefined;
    pairs.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return pairs;
}

/** `Bearer <token>` (scheme case-insensitive, RFC 6750) -> the token. */
function bearerToken(auth: string | undefined): string | undefined {
  const m = /^bearer ([^ ]+)$/i.exec(auth ?? '');
  return m?.[1] !== undefined && B64TOKEN.test(m[1]) ? m[1] : undefined;
}

/** A user name as a message carries it: UTF-8, no CR/LF/NUL. */
function messageUser(raw: string): { ok: true; user: string } | { ok: false; reason: BearerFailure } {
  const user = decodeUtf8Strict(Buffer.from(raw, 'latin1'));
  if (user === undefined) return { ok: false, reason: 'bad-utf8' };
  if (hasForbiddenCredentialChars(user)) return { ok: false, reason: 'bad-characters' };
  return { ok: true, user };
}

/**
 * The OAUTHBEARER initial client response (RFC 7628 section 3.1):
 * `gs2-header kvsep *(key=value kvsep) kvsep` where the gs2 header is
 * `n,[a=authzid],` (no channel binding: `y` or `p=` are refused; the
 * authzid's `=2C`/`=3D` escapes of RFC 5801 are undone). `host` and `port`
 * pairs are informational and ignored.
 */
export function decodeOAuthBearer(buf: Buffer): BearerResult {
  // gs2-cb-flag 'n' only: popgate offers no OAUTHBEARER channel binding.
  if (buf.length < 3 || buf[0] !== 0x6e || buf[1] !== 0x2c) return { ok: false, reason: 'syntax' };
  const comma = buf.indexOf(0x2c, 2);
  if (comma < 0 || buf[comma + 1] !== KVSEP) return { ok: false, reason: 'syntax' };
  const authzField = buf.subarray(2, comma).toString('latin1');
  let requestedUser = '';
  if (authzField !== '') {
    if (!authzField.startsWith('a=')) return { ok: false, reason: 'syntax' };
    const escaped = authzField.slice(2);
    // RFC 5801 saslname: '=' only as =2C or =3D.
    if (/=(?!2C|3D)/.test(escaped)) return { ok: false, reason: 'syntax' };
    const user = messageUser(escaped.replace(/=2C/g, ',').replace(/=3D/g, '='));
    if (!user.ok) return user;
    requestedUser = user.user;
  }
  const pairs = kvPairs(buf.subarray(comma + 2));
  if (!pairs) return { ok: false, reason: 'syntax' };
  const token = bearerToken(pairs.get('auth'));
  if (token === undefined) return { ok: false, reason: 'no-token' };
  return { ok: true, requestedUser, token };
}

/**
 * The XOAUTH2 client message (Google's mechanism, no RFC):
 * `user=<user> ^A auth=Bearer <token> ^A ^A`.
 */
export function decodeXOAuth2(buf: Buffer): BearerResult {
  const pairs = kvPairs(buf);
  if (!pairs || !pairs.has('user')) return { ok: false, reason: 'syntax' };
  const user = messageUser(pairs.get('user') ?? '');
  if (!user.ok) return user;
  const token = bearerToken(pairs.get('auth'));
  if (token === undefined) return { ok: false, reason: 'no-token' };
  return { ok: true, requestedUser: user.user, token };
}
