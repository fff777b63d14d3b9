/**
 * SASL pieces for POP3 AUTH (RFC 5034): strict base64, PLAIN (RFC 4616) and
 * the LOGIN prompts (draft-murchison-sasl-login). Pure functions only.
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
export function loginPrompt(step) {
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
export function decodeBase64Strict(s) {
    if (s === '=' || s === '')
        return Buffer.alloc(0);
    if (!BASE64_SHAPE.test(s))
        return undefined;
    const out = Buffer.from(s, 'base64');
    // Rejects e.g. "QR==" (which decodes like "QQ=="): stray bits mean a broken encoder.
    if (out.toString('base64') !== s)
        return undefined;
    return out;
}
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** UTF-8 decoding that refuses malformed input instead of substituting U+FFFD. */
export function decodeUtf8Strict(buf) {
    try {
        return utf8.decode(buf);
    }
    catch {
        return undefined;
    }
}
/** CR, LF and NUL have no place in a user name or password (they would split protocol lines downstream). */
export function hasForbiddenCredentialChars(s) {
    return /[\r\n\0]/.test(s);
}
/** Splits a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 section 2). */
export function decodePlain(buf) {
    const fields = [];
    let from = 0;
    for (;;) {
        const nul = buf.indexOf(0, from);
        if (nul < 0)
            break;
        fields.push(buf.subarray(from, nul));
        from = nul + 1;
    }
    fields.push(buf.subarray(from));
    if (fields.length < 3)
        return { ok: false, reason: 'field-count' };
    if (fields.length > 3)
        return { ok: false, reason: 'nul-in-field' };
    const [authzid, authcid, passwd] = fields.map(decodeUtf8Strict);
    if (authzid === undefined || authcid === undefined || passwd === undefined)
        return { ok: false, reason: 'bad-utf8' };
    if ([authzid, authcid, passwd].some(hasForbiddenCredentialChars))
        return { ok: false, reason: 'bad-characters' };
    if (authcid === '')
        return { ok: false, reason: 'empty-authcid' };
    if (passwd === '')
        return { ok: false, reason: 'empty-password' };
    return { ok: true, authzid, authcid, passwd };
}
//# sourceMappingURL=sasl.js.map