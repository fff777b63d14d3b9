export type {
  BackendEndpoint,
  BackendLinkInfo,
  BackendLinkSession,
  BackendLogin,
  BackendObserver,
  BackendSession,
  BackendTarget,
  BackendTimeouts,
  BackendTls,
  ForwardedClient,
  InternalLoginResolver,
  SpliceResult,
} from './types.js';
export {
  openBackendSession,
  assertSafeCredentials,
  backendErrorPhase,
  classifyLoginFailure,
  MAX_BACKEND_LINE,
  PRE_LOGIN_PHASES,
  type OpenBackendOptions,
  type BackendPhase,
} from './client.js';
export { openBackendWithFailover, isFailoverError, type OpenBackendWithFailoverOptions } from './failover.js';
export { checkBackendIdentity } from './tls-identity.js';
export {
  createInternalLoginResolver,
  parseSecrets,
  DEFAULT_MASTER_SEPARATOR,
  DEFAULT_WATCH_INTERVAL_MS,
  type InternalLoginConfig,
  type ReloadableLoginResolver,
  type ResolverLogger,
  type ParsedSecrets,
} from './internal-login.js';
export { spliceSessions, type SpliceOptions } from './splice.js';
