export type {
  BackendEndpoint,
  BackendLogin,
  BackendSession,
  BackendTimeouts,
  InternalLoginResolver,
  SpliceResult,
} from './types.js';
export {
  openBackendSession,
  assertSafeCredentials,
  classifyLoginFailure,
  MAX_BACKEND_LINE,
  type OpenBackendOptions,
  type BackendPhase,
} from './client.js';
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
