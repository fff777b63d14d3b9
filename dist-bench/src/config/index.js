export { configSchema, configLeafPaths, SECRET_FIELDS, LOG_LEVELS, SASL_MECHANISMS, DEFAULT_GREETING, } from './schema.js';
export { ConfigError, isConfigError, formatConfigIssues, formatConfigPath, loadConfig, parseConfigText, redactConfig, REDACTED, } from './load.js';
export { parseDuration, formatDuration, duration, MAX_DURATION_MS } from './duration.js';
//# sourceMappingURL=index.js.map