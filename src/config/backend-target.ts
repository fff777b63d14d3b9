/**
 * A backend as the configuration describes it once routing is resolved
 * (./routing.ts makes these from `backend` and `routing`): where it is, how
 * the link is protected, and what popgate tells it about the client. The
 * backend client (src/backend) connects to them; src/backend/types.ts
 * re-exports these types under the same names.
 */

export interface BackendEndpoint {
  readonly host: string;
  readonly port: number;
}

/** How the link to a backend is protected (RFC 8314 / RFC 2595, names checked per RFC 7817). */
export interface BackendTls {
  readonly mode: 'none' | 'starttls' | 'implicit';
  /** PEM bundle of trusted CAs; the system store when undefined. */
  readonly caFile?: string;
  /** Name to check the certificate against (and send as SNI); default: the endpoint host. */
  readonly serverName?: string;
  /** false = no certificate or name check: an explicit, loudly logged opt-out. */
  readonly verify: boolean;
}

/** One backend to try, with everything needed to reach it. */
export interface BackendTarget extends BackendEndpoint {
  readonly tls: BackendTls;
  /** Send a HAProxy PROXY header (v1 text / v2 binary) before anything else. */
  readonly proxyProtocol: 'none' | 'v1' | 'v2';
  /** Send Dovecot's `XCLIENT ADDR= PORT=` when the greeting offers [XCLIENT]. */
  readonly xclient: boolean;
}
