/**
 * The default TLS profile of popgate's listeners: Mozilla's "intermediate"
 * configuration (server-side TLS guidelines 6.0, ssl-config.mozilla.org),
 * for TLS 1.2 and 1.3 clients. The schema takes its defaults from here.
 */
import { createSecureContext } from 'node:tls';

export const DEFAULT_TLS_PROFILE = 'Mozilla intermediate';

/**
 * TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only
 * (no static-RSA key exchange, no CBC). TLS 1.3 suites are not named, so
 * they stay OpenSSL's own (all AEAD).
 */
export const INTERMEDIATE_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The post-quantum hybrid group Mozilla lists first; OpenSSL knows it from 3.5 on. */
const HYBRID_GROUP = 'X25519MLKEM768';

/** Whether this Node's OpenSSL can use `group` for key exchange (an unknown name makes createSecureContext throw). */
function supportsGroup(group: string): boolean {
  try {
    createSecureContext({ ecdhCurve: group });
    return true;
  } catch {
    return false;
  }
}

/**
 * Key exchange groups in preference order: Mozilla's X25519, P-256, P-384,
 * behind X25519MLKEM768 where OpenSSL has it (Node 24 negotiates it today
 * with clients that offer it; leaving it out would fall back to X25519).
 */
export const DEFAULT_ECDH_CURVE = [...(supportsGroup(HYBRID_GROUP) ? [HYBRID_GROUP] : []), 'X25519', 'P-256', 'P-384'].join(':');
