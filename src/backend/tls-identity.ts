/**
 * The backend certificate name check (RFC 7817 section 3 / RFC 6125).
 *
 * Node's tls.checkServerIdentity does almost all of it: IP literals against
 * IP SANs only; DNS names against DNS SANs, and against the subject CN only
 * when the certificate has no DNS SAN; a wildcard only in the left-most label,
 * matching exactly one label, never `*.tld`. It also accepts a PARTIAL
 * left-most label wildcard (`f*.example.com` matches `foo.example.com`),
 * which RFC 7817 does not allow for mail servers: this check refuses those
 * matches on top of Node's.
 */
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';

function canonical(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** The DNS names of a subjectaltname string ("DNS:a, IP Address:1.2.3.4, ..."). */
function dnsNames(altNames: string | undefined): string[] {
  if (!altNames) return [];
  return altNames
    .split(', ')
    .filter((e) => e.startsWith('DNS:'))
    .map((e) => e.slice(4));
}

/** Exact match, or `*.rest` where `*` stands for exactly the host's whole first label. */
function strictMatch(host: string, pattern: string): boolean {
  const h = canonical(host);
  const p = canonical(pattern);
  if (h === p) return true;
  if (!p.startsWith('*.')) return false;
  const rest = p.slice(2);
  if (rest.split('.').length < 2) return false; // no *.tld
  const dot = h.indexOf('.');
  if (dot <= 0) return false;
  const first = h.slice(0, dot);
  if (first.startsWith('xn--')) return false; // no wildcard over an A-label
  return h.slice(dot + 1) === rest;
}

/**
 * Checks `cert` against `name` (a DNS name or an IP literal). Returns an
 * Error with code ERR_TLS_CERT_ALTNAME_INVALID on mismatch, like
 * tls.checkServerIdentity, or undefined when the name matches.
 */
export function checkBackendIdentity(name: string, cert: PeerCertificate): Error | undefined {
  const err = checkServerIdentity(name, cert);
  if (err) return err;
  if (isIP(name)) return undefined;
  const sans = dnsNames(cert.subjectaltname);
  const cn = cert.subject?.CN;
  const candidates = sans.length > 0 ? sans : typeof cn === 'string' ? [cn] : Array.isArray(cn) ? cn : [];
  if (candidates.some((p) => strictMatch(name, p))) return undefined;
  const refused = new Error(
    `Hostname/IP does not match certificate's altnames: Host: ${name}. only matches a partial-label wildcard ` +
      `(${candidates.join(', ')}), which RFC 7817 does not allow`,
  ) as Error & { code: string; reason: string; host: string };
  refused.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  refused.reason = `Host: ${name}. only matches a partial-label wildcard`;
  refused.host = name;
  return refused;
}
