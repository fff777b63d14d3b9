/**
 * The CAPA list (RFC 2449) for the AUTHORIZATION state on a given channel.
 * Only what truly applies is advertised: password mechanisms (PLAIN, LOGIN,
 * CRAM-MD5) and USER only when they would be accepted (TLS, or plaintext
 * explicitly allowed; RFC 2595 section 2.2), GSSAPI on any channel (it never
 * exposes a password), EXTERNAL only on TLS with a verified client
 * certificate, STLS only while the channel is still plaintext. A KPOP
 * session (Kerberos authenticated the connection before the greeting) offers
 * USER and nothing else: no SASL, no STLS. APOP is no CAPA tag: the greeting
 * timestamp signals it (RFC 1939).
 */
import type { SaslMechanism } from './types.js';

export interface CapabilityContext {
  /** The channel is protected by TLS now. */
  readonly tls: boolean;
  readonly stlsAvailable: boolean;
  readonly allowPlaintextAuth: boolean;
  readonly saslMechanisms: readonly SaslMechanism[];
  readonly implementation?: string | undefined;
  /** Transaction-state capabilities of the backend (TOP, UIDL, ...). */
  readonly backendCapabilities: readonly string[];
  /** Set on a KPOP session: the principal krb5_sendauth authenticated. */
  readonly kerberosPrincipal?: string | undefined;
  /** The identity of the verified TLS client certificate, when there is one (enables EXTERNAL). */
  readonly externalIdentity?: string | undefined;
}

/** Capabilities popgate itself decides; a backend's version of them is never passed through. */
const OWN_CAPABILITIES = new Set(['USER', 'SASL', 'STLS', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION']);

/** Whether USER/PASS and SASL PLAIN/LOGIN may be used on this channel. */
export function passwordAuthUsable(ctx: Pick<CapabilityContext, 'tls' | 'allowPlaintextAuth'>): boolean {
  return ctx.tls || ctx.allowPlaintextAuth;
}

/**
 * Whether a mechanism sends a password, a bearer token, or a digest as weak
 * as one, that the channel must protect (PLAIN, LOGIN, CRAM-MD5,
 * OAUTHBEARER, XOAUTH2, SCRAM-SHA-256): usable only where
 * `passwordAuthUsable`. GSSAPI and EXTERNAL do not; SCRAM-SHA-256-PLUS
 * needs TLS itself.
 */
export function carriesPassword(mech: SaslMechanism): boolean {
  return mech === 'PLAIN' || mech === 'LOGIN' || mech === 'CRAM-MD5' || mech === 'OAUTHBEARER' || mech === 'XOAUTH2' || mech === 'SCRAM-SHA-256';
}

/** Whether EXTERNAL can be used: TLS with a verified client certificate. */
export function externalUsable(ctx: Pick<CapabilityContext, 'tls' | 'externalIdentity'>): boolean {
  return ctx.tls && ctx.externalIdentity !== undefined;
}

/** Whether one mechanism can be used on this channel (whether it is configured is the caller's business). */
export function mechanismUsable(
  mech: SaslMechanism,
  ctx: Pick<CapabilityContext, 'tls' | 'allowPlaintextAuth' | 'externalIdentity'>,
): boolean {
  if (mech === 'EXTERNAL') return externalUsable(ctx);
  if (mech === 'SCRAM-SHA-256-PLUS') return ctx.tls;
  return !carriesPassword(mech) || passwordAuthUsable(ctx);
}

/** The configured mechanisms usable on this channel, deduplicated, in configured order (none on KPOP). */
export function usableMechanisms(
  ctx: Pick<CapabilityContext, 'tls' | 'allowPlaintextAuth' | 'saslMechanisms' | 'kerberosPrincipal' | 'externalIdentity'>,
): SaslMechanism[] {
  if (ctx.kerberosPrincipal !== undefined) return [];
  return [...new Set(ctx.saslMechanisms)].filter((m) => mechanismUsable(m, ctx));
}

/**
 * A line that can sit inside a multi-line reply: printable ASCII, not empty,
 * not starting with '.' (that would need dot-stuffing, or end the list).
 */
function isSafeListLine(s: string): boolean {
  return /^[\x21-\x2d\x2f-\x7e][\x20-\x7e]*$/.test(s);
}

/** The capability lines, without the `+OK` head and the `.` terminator. */
export function buildCapabilities(ctx: CapabilityContext): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const raw of ctx.backendCapabilities) {
    const cap = raw.trim();
    if (!isSafeListLine(cap)) continue;
    const keyword = (cap.split(' ', 1)[0] ?? '').toUpperCase();
    if (OWN_CAPABILITIES.has(keyword) || seen.has(keyword)) continue;
    seen.add(keyword);
    lines.push(cap);
  }
  lines.push('RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING');
  const kpop = ctx.kerberosPrincipal !== undefined;
  if (kpop || passwordAuthUsable(ctx)) lines.push('USER');
  const mechs = usableMechanisms(ctx);
  if (mechs.length > 0) lines.push(`SASL ${mechs.join(' ')}`);
  if (ctx.stlsAvailable && !ctx.tls && !kpop) lines.push('STLS');
  if (ctx.implementation !== undefined) {
    const impl = ctx.implementation.replace(/[^\x20-\x7e]/g, '').trim();
    if (impl !== '') lines.push(`IMPLEMENTATION ${impl}`);
  }
  return lines;
}
