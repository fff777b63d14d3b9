import type { PasswordVerifier } from '../auth/types.js';
import type { BackendEndpoint, BackendSession, BackendTimeouts, InternalLoginResolver } from '../backend/types.js';
import { openBackendSession } from '../backend/client.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { PrincipalMapResult } from '../kerberos/principal-mapper.js';
import { isKerberosCredentials, type KerberosCredentials, type LoginCredentials, type PasswordCredentials } from '../pop3/types.js';

export interface LoginRequest {
  readonly credentials: LoginCredentials;
  readonly remoteAddress: string | undefined;
  readonly tls: boolean;
  readonly signal: AbortSignal;
}

export interface LoginSuccess {
  /** Local user name: from the verifier, or mapped from the Kerberos principal. */
  readonly user: string;
  readonly backend: BackendSession;
  /** Which mapping rule turned the principal into the user (Kerberos logins). */
  readonly mappedBy?: string;
}

/**
 * Turns a client's credentials into a logged-in backend session: verify the
 * password (or authorize the Kerberos principal) → resolve internal
 * credentials → backend login. Rejects with a GatewayError whose code decides
 * the client's reply.
 */
export interface LoginService {
  login(request: LoginRequest): Promise<LoginSuccess>;
}

export interface LoginServiceDeps {
  readonly verifier: PasswordVerifier;
  readonly resolver: InternalLoginResolver;
  readonly endpoint: BackendEndpoint;
  readonly timeouts: BackendTimeouts;
  /** Principal → local user; undefined when Kerberos is not configured. */
  readonly principalMapper?: { map(principal: string): PrincipalMapResult };
}

export function createLoginService(deps: LoginServiceDeps): LoginService {
  async function verifyPassword(credentials: PasswordCredentials, remoteAddress: string | undefined, tls: boolean): Promise<string> {
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
    return outcome.user;
  }

  /**
   * Authorize against the principal Kerberos authenticated, never against
   * what the client typed: the requested name (KPOP USER, GSSAPI authzid)
   * must be the mapped user (or the principal itself); empty means "mine".
   */
  function authorizePrincipal(credentials: KerberosCredentials): { user: string; rule: string } {
    if (!deps.principalMapper) throw new GatewayError('AUTH_FAILED', 'Kerberos login without a principal mapping');
    const mapped = deps.principalMapper.map(credentials.principal);
    if (!mapped.ok) throw new GatewayError('AUTH_FAILED', `principal ${credentials.principal} refused: ${mapped.reason}`);
    const requested = credentials.requestedUser;
    if (requested !== '' && requested !== mapped.user && requested !== credentials.principal) {
      throw new GatewayError(
        'AUTH_FAILED',
        `authorization refused: ${credentials.principal} maps to ${mapped.user}, not ${JSON.stringify(requested)}`,
      );
    }
    return { user: mapped.user, rule: mapped.rule };
  }

  return {
    async login({ credentials, remoteAddress, tls, signal }) {
      let user: string;
      let mappedBy: string | undefined;
      let password: string | undefined;
      if (isKerberosCredentials(credentials)) {
        ({ user, rule: mappedBy } = authorizePrincipal(credentials));
      } else {
        user = await verifyPassword(credentials, remoteAddress, tls);
        password = credentials.password;
      }
      signal.throwIfAborted();
      const login = await deps.resolver.resolve(user, deps.resolver.mode === 'passthrough' ? password : undefined);
      const backend = await openBackendSession({ endpoint: deps.endpoint, timeouts: deps.timeouts, login, signal });
      return { user, backend, ...(mappedBy !== undefined ? { mappedBy } : {}) };
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
