/**
 * Which of a listener's certificates (`tls.certificates`) a handshake gets,
 * from the name the client asked for (SNI). Pure: names and key types in,
 * groups of certificate indexes out; tls-context.ts makes one SecureContext
 * per group.
 *
 * A certificate covers a name as a TLS client's name check would accept it
 * (RFC 6125, as Node's checkServerIdentity, without partial wildcards): its
 * DNS subjectAltNames, or its subject CN when it has no DNS SAN; a `*` only
 * as the whole left-most label, standing for exactly one label, never
 * `*.tld`; case-insensitive, a trailing dot ignored.
 *
 * For a name, each key type (RSA, ECDSA, ...) contributes at most one
 * certificate: the first in config order that carries the name exactly, else
 * the first whose wildcard covers it. The certificates chosen go into one
 * context together, so OpenSSL picks by the client's signature algorithms
 * (an ECDSA-only client gets the ECDSA one). No SNI, or a name no certificate
 * covers: the default group, the first certificate and, beside it, the first
 * certificate of each other key type that carries the first one's first name.
 */
import type { X509Certificate } from 'node:crypto';

/** What selection needs to know of one certificate. */
export interface CertificateFacts {
  /** Its DNS names (certificateNames), lower case, wildcards as `*.rest`. */
  readonly names: readonly string[];
  /** Its key's type (KeyObject.asymmetricKeyType: `rsa`, `ec`, `ed25519`, ...): one per type fits in a context. */
  readonly keyType: string;
}

export interface CertificateSelection {
  /** Distinct sets of certificate indexes (ascending), each one context; group 0 is the default. */
  readonly groups: readonly (readonly number[])[];
  /** The group for a client's SNI name (undefined: none sent). */
  select(servername: string | undefined): number;
}

/** Lower case, without a trailing dot. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/**
 * The DNS names a certificate carries for TLS name checks: its DNS
 * subjectAltNames, else its subject CN; canonical (canonicalName). Entries
 * Node prints quoted (with characters no host name has) are left out.
 */
export function certificateNames(cert: X509Certificate): string[] {
  const sans = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((e) => e.startsWith('DNS:') && !e.startsWith('DNS:"'))
    .map((e) => canonicalName(e.slice(4)));
  if (sans.length > 0) return [...new Set(sans)];
  const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  return cn !== undefined && !cn.startsWith('"') ? [canonicalName(cn)] : [];
}

/** The suffix a usable wildcard pattern stands for (`*.example.com` -> `example.com`), else undefined. */
function wildcardSuffix(pattern: string): string | undefined {
  if (!pattern.startsWith('*.')) return undefined;
  const rest = pattern.slice(2);
  // Never *.tld, and one wildcard at most.
  return rest.split('.').length >= 2 && !rest.includes('*') ? rest : undefined;
}

/** The suffix `name` would match a wildcard under (`a.example.com` -> `example.com`), else undefined. */
function parentOf(name: string): string | undefined {
  const dot = name.indexOf('.');
  if (dot <= 0) return undefined;
  // No wildcard stands for an A-label (RFC 6125 6.4.3).
  if (name.startsWith('xn--')) return undefined;
  return name.slice(dot + 1);
}

/**
 * The selection for `certs` (config order; at least one). Every group a
 * name can select is made here, so a handshake only looks a name up.
 */
export function planSelection(certs: readonly CertificateFacts[]): CertificateSelection {
  if (certs.length === 0) throw new Error('planSelection: no certificate');
  /** For a name or a wildcard suffix: per key type, the first certificate carrying it. */
  const exact = new Map<string, Map<string, number>>();
  const wildcard = new Map<string, Map<string, number>>();
  const note = (table: Map<string, Map<string, number>>, key: string, keyType: string, index: number): void => {
    let byType = table.get(key);
    if (!byType) table.set(key, (byType = new Map()));
    if (!byType.has(keyType)) byType.set(keyType, index);
  };
  certs.forEach((c, i) => {
    for (const n of c.names) {
      const suffix = wildcardSuffix(n);
      if (suffix !== undefined) note(wildcard, suffix, c.keyType, i);
      else if (!n.includes('*')) note(exact, n, c.keyType, i);
    }
  });
  /** Exact beats wildcard within a key type; the types together. */
  const pick = (name: string): number[] => {
    const byType = new Map(exact.get(name) ?? []);
    const parent = parentOf(name);
    for (const [type, i] of (parent !== undefined ? wildcard.get(parent) : undefined) ?? []) if (!byType.has(type)) byType.set(type, i);
    return [...byType.values()].sort((a, b) => a - b);
  };

  const groups: number[][] = [];
  const groupIndex = new Map<string, number>();
  const groupOf = (members: number[]): number => {
    const key = members.join(',');
    let g = groupIndex.get(key);
    if (g === undefined) {
      g = groups.length;
      groups.push(members);
      groupIndex.set(key, g);
    }
    return g;
  };

  // The default: the first certificate, and other key types carrying its first name.
  const [first] = certs;
  const firstName = first?.names[0];
  const defaultMembers = new Map<string, number>([[first?.keyType ?? '', 0]]);
  if (firstName !== undefined) {
    certs.forEach((c, i) => {
      if (!defaultMembers.has(c.keyType) && c.names.includes(firstName)) defaultMembers.set(c.keyType, i);
    });
  }
  groupOf([...defaultMembers.values()].sort((a, b) => a - b));

  // Every name a client can ask for falls under an exact name or, failing that, a wildcard suffix alone.
  const byName = new Map<string, number>();
  for (const name of exact.keys()) byName.set(name, groupOf(pick(name)));
  const bySuffix = new Map<string, number>();
  for (const [suffix, byType] of wildcard) bySuffix.set(suffix, groupOf([...byType.values()].sort((a, b) => a - b)));

  return {
    groups,
    select(servername) {
      if (servername === undefined || servername === '') return 0;
      const name = canonicalName(servername);
      const direct = byName.get(name);
      if (direct !== undefined) return direct;
      const parent = parentOf(name);
      return (parent !== undefined ? bySuffix.get(parent) : undefined) ?? 0;
    },
  };
}
