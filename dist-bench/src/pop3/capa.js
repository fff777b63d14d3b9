/** Capabilities popgate itself decides; a backend's version of them is never passed through. */
const OWN_CAPABILITIES = new Set(['USER', 'SASL', 'STLS', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION']);
/** Whether USER/PASS and SASL PLAIN/LOGIN may be used on this channel. */
export function passwordAuthUsable(ctx) {
    return ctx.tls || ctx.allowPlaintextAuth;
}
/** The configured mechanisms usable on this channel, deduplicated, in configured order. */
export function usableMechanisms(ctx) {
    // Both supported mechanisms carry the password in the clear.
    return passwordAuthUsable(ctx) ? [...new Set(ctx.saslMechanisms)] : [];
}
/**
 * A line that can sit inside a multi-line reply: printable ASCII, not empty,
 * not starting with '.' (that would need dot-stuffing, or end the list).
 */
function isSafeListLine(s) {
    return /^[\x21-\x2d\x2f-\x7e][\x20-\x7e]*$/.test(s);
}
/** The capability lines, without the `+OK` head and the `.` terminator. */
export function buildCapabilities(ctx) {
    const lines = [];
    const seen = new Set();
    for (const raw of ctx.backendCapabilities) {
        const cap = raw.trim();
        if (!isSafeListLine(cap))
            continue;
        const keyword = (cap.split(' ', 1)[0] ?? '').toUpperCase();
        if (OWN_CAPABILITIES.has(keyword) || seen.has(keyword))
            continue;
        seen.add(keyword);
        lines.push(cap);
    }
    lines.push('RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING');
    if (passwordAuthUsable(ctx))
        lines.push('USER');
    const mechs = usableMechanisms(ctx);
    if (mechs.length > 0)
        lines.push(`SASL ${mechs.join(' ')}`);
    if (ctx.stlsAvailable && !ctx.tls)
        lines.push('STLS');
    if (ctx.implementation !== undefined) {
        const impl = ctx.implementation.replace(/[^\x20-\x7e]/g, '').trim();
        if (impl !== '')
            lines.push(`IMPLEMENTATION ${impl}`);
    }
    return lines;
}
//# sourceMappingURL=capa.js.map