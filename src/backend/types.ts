import type { BackendReader } from './shared-reads.js';
import type { Socket } from 'node:net';
import type { BackendEndpoint } from '../config/backend-target.js';
import type { ProxyClient } from '../net/index.js';

// Made by the config layer (config/routing.ts) from backend/routing; defined
// there so config does not import backend back (no folder cycle).
export type { BackendEndpoint, BackendTarget, BackendTls } from '../config/backend-target.js';

/** The real client, forwarded to the backend by PROXY header or XCLIENT (the PROXY writer's input). */
export type ForwardedClient = ProxyClient;

/**
 * Told how each backend attempt goes (metrics): every call is cheap and
 * synchronous. Aborts (the client left) are not failures and are not reported.
 */
export interface BackendObserver {
  /** The TCP connection was up `seconds` after connect() was called. */
  connected(seconds: number): void;
  /** The backend accepted the login `seconds` after it was sent. */
  loggedIn(seconds: number): void;
  /** The attempt failed with a GatewayError of `code`, in `phase` (see BackendPhase). */
  failed(code: string, phase: string): void;
  /** A TLS handshake to the backend passed its checks; `resumed`: it resumed a kept session. */
  tlsHandshake?(resumed: boolean): void;
}

export interface BackendTimeouts {
  readonly connectMs: number;
  readonly greetingMs: number;
  readonly loginMs: number;
}

/** How popgate proves itself to the backend, decided per user by an InternalLoginResolver. */
export type BackendLogin =
  /** `AUTH PLAIN base64(authzid \0 authcid \0 password)`; authzid may be empty. */
  | { readonly method: 'auth-plain'; readonly authzid: string; readonly authcid: string; readonly password: string }
  /** `USER user` + `PASS password`. */
  | { readonly method: 'user-pass'; readonly user: string; readonly password: string };

/** Turns a verified client login into the credentials used at the backend. */
export interface InternalLoginResolver {
  readonly mode: 'master' | 'mapped' | 'passthrough';
  /**
   * `verifiedPassword` is only given to passthrough. Rejects with
   * GatewayError('NO_BACKEND_CREDENTIALS') when a mapped user has no entry.
   */
  resolve(user: string, verifiedPassword: string | undefined): Promise<BackendLogin>;
  close(): void;
}

/** A backend connection that is logged in; its socket is paused and unread. */
export interface BackendSession {
  readonly socket: Socket;
  /** The backend's `+OK` line answering the login (without CRLF). */
  readonly loginReply: string;
  /** Bytes the backend sent after its login reply (normally empty). */
  readonly leftover: Buffer;
  readonly endpoint: BackendEndpoint;
  /** How popgate logged in (for the log): AUTH PLAIN, USER then PASS, or USER and PASS in one write. */
  readonly loginMethod?: 'auth-plain' | 'user-pass' | 'user-pass-pipelined';
  /**
   * Present when the socket reads into the shared buffer (plaintext links):
   * a relay can then take chunks without an allocation per read.
   */
  readonly reader?: BackendReader;
}

export interface SpliceResult {
  readonly bytesToBackend: number;
  readonly bytesToClient: number;
  /** Who ended the session. */
  readonly endedBy: 'client' | 'backend' | 'client-error' | 'backend-error' | 'idle-timeout' | 'shutdown';
  readonly error?: Error;
}

/** How a backend link was set up, for the log (see BackendLinkSession). */
export interface BackendLinkInfo {
  /** The backend's greeting line (without CRLF). */
  readonly greeting: string;
  /** The TLS layer, when the link is encrypted. */
  readonly tls?: {
    readonly mode: 'starttls' | 'implicit';
    /** Negotiated protocol, e.g. 'TLSv1.3'. */
    readonly protocol: string;
    readonly cipher: string;
    /** false when the target had `verify: false` (no certificate or name check). */
    readonly verified: boolean;
    /** The name the certificate was checked against (when verified). */
    readonly checkedName?: string;
    /** The handshake resumed a session from an earlier verified link to this backend (no full handshake). */
    readonly resumed: boolean;
  };
  /** The PROXY header sent first ('none' if none). */
  readonly proxyProtocol: 'none' | 'v1' | 'v2';
  /** The greeting offered `[XCLIENT]`. */
  readonly xclientOffered: boolean;
  /** `XCLIENT ADDR= PORT=` was sent and answered `+OK`. */
  readonly xclientSent: boolean;
  /** `CAPA` was asked before the login (the backend was not yet known; USER/PASS logins only). */
  readonly capaAsked: boolean;
  /** USER and PASS went out in one write (the backend lists PIPELINING). */
  readonly pipelined: boolean;
}

/** A logged-in backend session plus how its link was set up. */
export interface BackendLinkSession extends BackendSession {
  readonly link: BackendLinkInfo;
}
