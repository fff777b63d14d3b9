export { openBackendSession, assertSafeCredentials, classifyLoginFailure, MAX_BACKEND_LINE, } from './client.js';
export { createInternalLoginResolver, parseSecrets, DEFAULT_MASTER_SEPARATOR, DEFAULT_WATCH_INTERVAL_MS, } from './internal-login.js';
export { spliceSessions } from './splice.js';
//# sourceMappingURL=index.js.map