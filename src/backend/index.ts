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
export { openBackendSession, backendErrorPhase, type OpenBackendOptions } from './client.js';
export {
  CapabilityMemory,
  backendCapabilities,
  capabilityKey,
  CAPABILITY_MAX_ENTRIES,
  CAPABILITY_TTL_MS,
  type BackendCapabilities,
  type CapabilityMemoryOptions,
} from './capabilities.js';
export {
  BackendLoginMachine,
  assertSafeCredentials,
  classifyLoginFailure,
  MAX_BACKEND_LINE,
  MAX_CAPA_LINES,
  PRE_LOGIN_PHASES,
  type BackendPhase,
  type LoginAction,
  type LoginFacts,
  type LoginMachineOptions,
} from './login-machine.js';
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
