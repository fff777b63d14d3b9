/**
 * TLS towards a backend: the context options (TLSv1.2+, no renegotiation,
 * the CA bundle) and the per-connection options (the RFC 7817 name check,
 * SNI, the session offered), the CA bundle cache, how a finished handshake is
 * described for the log, and how a failed one maps to a catalogue error.
 * Contexts and sessions are kept by tls-sessions.ts.
 */
import { constants as cryptoConstants } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isIP, type Socket } from 'node:net';
import type { ConnectionOptions, SecureContextOptions, SecureContext, TLSSocket } from 'node:tls';
import { GatewayError } from '../errors.js';
import { quote } from './login-machine.js';
import { checkBackendIdentity } from './tls-identity.js';
import type { BackendLinkInfo, BackendTarget } from './types.js';

const caCache = new Map<string, { readonly mtimeMs: number; readonly size: number; readonly data: Buffer }>();

/** A CA bundle, read again only when its mtime or size changed. */
export async function loadCa(file: string): Promise<Buffer> {
  const st = await stat(file);
  const hit = caCache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.data;
  const data = await readFile(file);
  caCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, data });
  return data;
}

/** The name the certificate is checked against (and sent as SNI). */
export function tlsCheckName(target: BackendTarget): string {
  return target.tls.serverName ?? target.host;
}

/** Options for the SecureContext of backend links trusting `ca` (the system store when undefined). */
export function tlsContextOptions(ca: Buffer | undefined): SecureContextOptions {
  return {
    minVersion: 'TLSv1.2',
    // tlsSocket.disableRenegotiation() only guards server sockets; a client refuses in OpenSSL.
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    ...(ca ? { ca } : {}),
  };
}

/**
 * Options for tls.connect() over the already connected `socket`, with a
 * context from tlsContextOptions (tls.connect ignores context options when
 * given one) and the session to offer, if any.
 */
export function tlsClientOptions(
  target: BackendTarget,
  socket: Socket,
  secureContext: SecureContext,
  session: Buffer | undefined,
): ConnectionOptions {
  const verify = target.tls.verify;
  const checkName = tlsCheckName(target);
  return {
    socket,
    secureContext,
    rejectUnauthorized: verify,
    ...(session ? { session } : {}),
    // SNI only for names (RFC 6066 forbids IP literals).
    ...(isIP(checkName) ? {} : { servername: checkName }),
    // Node skips this on a resumed session: tls-sessions.ts offers a session only under the same name and checks.
    checkServerIdentity: verify ? (_host, cert) => checkBackendIdentity(checkName, cert) : () => undefined,
  };
}

/** The finished handshake, for the log; undefined means "do not continue" (verification demanded and missing). */
export function describeTls(target: BackendTarget, s: TLSSocket): BackendLinkInfo['tls'] | undefined {
  const verify = target.tls.verify;
  // rejectUnauthorized already refuses these; never continue on an unverified link.
  if (verify && !s.authorized) return undefined;
  return {
    mode: target.tls.mode === 'implicit' ? 'implicit' : 'starttls',
    protocol: s.getProtocol() ?? 'unknown',
    cipher: s.getCipher().name,
    verified: verify,
    ...(verify ? { checkedName: tlsCheckName(target) } : {}),
    resumed: s.isSessionReused(),
  };
}

/** errno-style codes from the socket layer (an outage), as opposed to TLS/OpenSSL codes. */
function isSystemError(err: NodeJS.ErrnoException): boolean {
  const code = err.code ?? '';
  if (code === 'EPROTO') return false; // OpenSSL protocol trouble reported through errno
  return /^E[A-Z0-9]+$/.test(code);
}

/**
 * Maps a TLS handshake failure. Socket-level errors (reset, refused...) are
 * an outage: BACKEND_UNREACHABLE. A certificate or protocol failure is a
 * security failure: BACKEND_PROTOCOL with a detail naming it.
 */
export function tlsFailure(where: string, err: NodeJS.ErrnoException): GatewayError {
  const code = err.code ?? '';
  const message = quote(err.message);
  if (isSystemError(err)) {
    return new GatewayError('BACKEND_UNREACHABLE', `${where}: ${code} during TLS handshake`, { cause: err });
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const reason = (err as { reason?: unknown }).reason;
    return new GatewayError(
      'BACKEND_PROTOCOL',
      `${where}: TLS certificate name mismatch: ${quote(typeof reason === 'string' ? reason : err.message)}`,
      { cause: err },
    );
  }
  if (/^[A-Z][A-Z0-9_]*$/.test(code) && !code.startsWith('ERR_')) {
    // OpenSSL X509 verification codes: UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, ...
    return new GatewayError('BACKEND_PROTOCOL', `${where}: TLS certificate verification failed: ${code} (${message})`, {
      cause: err,
    });
  }
  return new GatewayError('BACKEND_PROTOCOL', `${where}: TLS handshake failed: ${code ? `${code}: ` : ''}${message}`, {
    cause: err,
  });
}
