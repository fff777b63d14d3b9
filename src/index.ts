/**
 * popgate's programmatic API (the package's one entry, `import ... from
 * 'popgate'`): for running the gateway inside another Node process or for
 * tooling around it. Load and validate a configuration, start a gateway and
 * drain it, hash user-file passwords. This is what is supported; everything
 * else under dist/ is internal and changes without notice.
 *
 *   const config = await loadConfig('/etc/popgate/popgate.yaml');
 *   const gateway = await Gateway.start(config, createLogger({ level: 'info' }));
 *   ...
 *   await gateway.applyConfig(await loadConfig(file)); await gateway.reload();  // SIGHUP
 *   await gateway.stop();                                                      // SIGTERM
 */
export {
  ConfigError,
  isConfigError,
  loadConfig,
  parseConfigText,
  redactConfig,
  type ConfigIssue,
  type ParseConfigOptions,
  type PopgateConfig,
  type PopgateConfigInput,
} from './config/index.js';
export { Gateway, type BoundAdmin, type BoundListener, type GatewayOptions } from './server/gateway.js';
export { createLogger, type Logger, type LoggerOptions } from './observability/logger.js';
export { hashPassword, verifyPasswordHash, type HashAlgorithm, type HashPasswordOptions } from './auth/index.js';
export { MINIMUM_NODE, runtimeDescription } from './cli/runtime.js';
