import type { BackendEndpoint } from '../backend/types.js';

/**
 * Who is asking, as nginx's auth_http describes a client: the real client
 * address (after a trusted PROXY header), the listener's address, and the
 * TLS facts. Verifiers that talk to an auth service send these along.
 */
export interface ClientContext {
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Our address the client connected to (nginx Proxy-Protocol-Server-Addr/Port when proxied). */
  readonly localAddress: string;
  readonly localPort: number;
  /** Set when the address came from a PROXY protocol header: the load balancer's own address. */
  readonly proxiedBy?: { readonly address: string; readonly port: number };
  readonly tls?: {
    readonly protocol: string;
    readonly cipher: string;
    /** nginx Auth-SSL-Verify: SUCCESS | FAILED:<reason> | NONE. */
    readonly verify: string;
    readonly subject?: string;
    readonly issuer?: string;
    readonly serial?: string;
    readonly fingerprint?: string;
  };
  /** 1 for the first login attempt on this connection, 2 for the next, ... */
  readonly loginAttempt: number;
  /** Listener name, for logs and routing. */
  readonly listener: string;
}

/** A request to check a password, with the context verifiers may use. */
export interface PasswordRequest {
  readonly username: string;
  readonly password: string;
  /** USER, PLAIN or LOGIN. */
  readonly mechanism: string;
  readonly remoteAddress?: string;
  readonly tls: boolean;
  readonly client?: ClientContext;
}

/**
 * A challenge-response login (RFC 1939 APOP, RFC 2195 CRAM-MD5): the client
 * proved knowledge of a secret by digesting `challenge` with it.
 */
export interface ChallengeRequest {
  readonly username: string;
  readonly mechanism: 'APOP' | 'CRAM-MD5';
  /** APOP: the greeting timestamp `<...>`; CRAM-MD5: the challenge string sent (decoded). */
  readonly challenge: string;
  /** Lowercase hex digest the client sent. */
  readonly response: string;
  readonly client?: ClientContext;
}

/**
 * A login already authenticated by something else (a Kerberos ticket, a TLS
 * client certificate, a bearer token, a SCRAM proof): no secret to check; a verifier may still route it and
 * supply internal credentials (nginx auth_http with no Auth-Pass).
 */
export interface AuthorizedRequest {
  readonly user: string;
  readonly mechanism: 'GSSAPI' | 'KPOP' | 'EXTERNAL' | 'OAUTHBEARER' | 'XOAUTH2' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
  /** Kerberos principal, certificate identity, token subject or SCRAM user name, for the auth service and logs. */
  readonly identity: string;
  /** OAUTHBEARER / XOAUTH2: the (validated) bearer token, for an auth service that wants to see it. */
  readonly token?: string;
  readonly client?: ClientContext;
}

/** Where and how to log in at the backend, when a verifier decided it (auth_http OK answer). */
export interface VerifiedRoute {
  /** Auth-Server/Auth-Port. */
  readonly endpoint?: BackendEndpoint;
  /** Auth-User/Auth-Pass: the internal credentials for the backend (USER/PASS there). */
  readonly login?: { readonly user: string; readonly password: string };
}

export type VerifyOutcome =
  /** `user` is the canonical user name used for the backend login. */
  | { readonly ok: true; readonly user: string; readonly route?: VerifiedRoute }
  | {
      readonly ok: false;
      readonly reason: 'unknown-user' | 'bad-password' | 'disabled';
      /** Text for the client's -ERR line when the verifier supplies one (nginx Auth-Status). */
      readonly clientText?: string;
      /** Keep the connection open for another attempt (nginx: Auth-Wait present). */
      readonly retryable?: boolean;
    };

/**
 * Checks passwords. Resolves with an outcome for a definite answer; rejects
 * with GatewayError('VERIFIER_UNAVAILABLE') when it cannot answer (file
 * unreadable, service down) so the client gets [SYS/TEMP], not [AUTH].
 */
export interface PasswordVerifier {
  readonly name: string;
  verify(request: PasswordRequest): Promise<VerifyOutcome>;
  /** Present when this verifier can check APOP/CRAM-MD5 (it knows plaintext-equivalent secrets). */
  verifyChallenge?(request: ChallengeRequest): Promise<VerifyOutcome>;
  /** Present when this verifier routes/authorizes logins authenticated elsewhere (auth_http). */
  authorize?(request: AuthorizedRequest): Promise<VerifyOutcome>;
  /** Stop watchers/timers. */
  close(): void;
}

/** What a bearer token (OAUTHBEARER, XOAUTH2) turned out to be. */
export type BearerOutcome =
  | {
      readonly ok: true;
      /** The local user its claims map to. */
      readonly user: string;
      /** The token's subject (`sub`), for the audit line and an auth service. */
      readonly subject: string;
    }
  | {
      readonly ok: false;
      /** Why, for the audit line (`expired`, `audience`, `signature`, ...); never the token. */
      readonly reason: string;
    };

/** Validates OAuth 2.0 bearer tokens and maps them to users (src/auth/oauth). */
export interface BearerValidator {
  /** Rejects with GatewayError('VERIFIER_UNAVAILABLE') when the issuer or introspection endpoint cannot answer. */
  validate(token: string, signal?: AbortSignal): Promise<BearerOutcome>;
  /** The mechanism's error data for a refusal, sent as a challenge before the `-ERR` (RFC 7628 3.2.2). */
  errorChallenge(mechanism: 'OAUTHBEARER' | 'XOAUTH2', reason: string): Buffer;
  close(): void;
}
