import type { TLSSocket } from 'node:tls';
import { isValidPop3User } from '../identity/principal-mapper.js';

export interface ClientCertIdentity {
  /** nginx Auth-SSL-Verify: SUCCESS | FAILED:<reason> | NONE. */
  readonly verify: string;
  /** The user the certificate names (verified certificates only). */
  readonly user?: string;
  readonly subject?: string;
  readonly issuer?: string;
  readonly serial?: string;
  readonly fingerprint?: string;
}

export interface IdentityRule {
  readonly identity: 'san-email' | 'cn';
  readonly stripDomain: boolean;
}

function dn(fields: object | undefined): string | undefined {
  if (!fields) return undefined;
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(',');
}

/**
 * What a TLS client certificate says, for SASL EXTERNAL and the auth
 * service's Auth-SSL-* headers. Only a certificate the listener's CA verified
 * names a user.
 */
export function clientCertIdentity(socket: TLSSocket, rule: IdentityRule): ClientCertIdentity {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { verify: 'NONE' };
  const facts = {
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    serial: cert.serialNumber,
    fingerprint: cert.fingerprint256,
  };
  if (!socket.authorized) return { verify: `FAILED:${String(socket.authorizationError ?? 'unverified')}`, ...facts };
  let name: string | undefined;
  if (rule.identity === 'san-email') {
    name = (cert.subjectaltname ?? '')
      .split(', ')
      .find((s) => s.startsWith('email:'))
      ?.slice('email:'.length);
  } else {
    const cn = cert.subject?.CN;
    name = Array.isArray(cn) ? cn[0] : cn;
  }
  if (name && rule.stripDomain) name = name.replace(/@[^@]*$/, '');
  // Must be usable as a POP3 user name.
  const user = name && isValidPop3User(name) ? name : undefined;
  return { verify: 'SUCCESS', ...facts, ...(user ? { user } : {}) };
}
