import type { PasswordVerifier } from '../auth/types.js';
import type { BackendEndpoint, BackendSession, BackendTimeouts, InternalLoginResolver } from '../backend/types.js';
import { openBackendSession } from '../backend/client.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { PasswordCredentials } from '../pop3/types.js';

export interface LoginRequest {
  readonly credentials: PasswordCredentials;
  readonly remoteAddress: string | undefined;
  readonly tls: boolean;
  readonly signal: AbortSignal;
}

export interface LoginSuccess {
  /** Canonical user name as the verifier returned it. */
  readonly user: string;
  readonly backend: BackendSession;
}

/**
 * Turns a client's credentials into a logged-in backend session:
 * verify → resolve internal credentials → backend login. Rejects with a
 * GatewayError whose code decides the client's reply.
 */
export interface LoginService {
  login(request: LoginRequest): Promise<LoginSuccess>;
}

export interface LoginServiceDeps {
  readonly verifier: PasswordVerifier;
  readonly resolver: InternalLoginResolver;
  readonly endpoint: BackendEndpoint;
  readonly timeouts: BackendTimeouts;
}

export function createLoginService(deps: LoginServiceDeps): LoginService {
  return {
    async login({ credentials, remoteAddress, tls, signal }) {
      let outcome;
      try {
        outcome = await deps.verifier.verify({
          username: credentials.username,
          password: credentials.password,
          mechanism: credentials.mechanism,
          remoteAddress,
          tls,
        });
      } catch (err) {
        if (isGatewayError(err)) throw err;
        throw new GatewayError('VERIFIER_UNAVAILABLE', `${deps.verifier.name}: ${errorText(err)}`, { cause: err });
      }
      if (!outcome.ok) throw new GatewayError('AUTH_FAILED', outcome.reason);
      signal.throwIfAborted();

      const login = await deps.resolver.resolve(
        outcome.user,
        deps.resolver.mode === 'passthrough' ? credentials.password : undefined,
      );
      const backend = await openBackendSession({ endpoint: deps.endpoint, timeouts: deps.timeouts, login, signal });
      return { user: outcome.user, backend };
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
