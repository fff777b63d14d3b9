/**
 * Shared plumbing for the config tests: parse YAML text the way the tests
 * want it (no environment, a fixed base directory and source name), and pull
 * the ConfigError (its issues and message) out of a config that must fail.
 */
import { expect } from 'vitest';
import { ConfigError, parseConfigText, type ConfigIssue, type ParseConfigOptions, type PopgateConfig } from '../../src/config/index.js';

/** The smallest valid config: one pop3s listener, a user file, a master login. */
export const MINIMAL_CONFIG = `
listeners:
  - kind: pop3s
    port: 995
    tls: { certFile: /etc/popgate/tls/tls.crt, keyFile: /etc/popgate/tls/tls.key }
auth:
  userFile: /etc/popgate/users
backend:
  host: 127.0.0.1
  login: { mode: master, user: popgate, password: s3cret }
`;

/** A backend section with a master login (no port: the default). */
export const MASTER_BACKEND = `
backend:
  host: 127.0.0.1
  login: { mode: master, user: popgate, password: s3cret }
`;

/** parseConfigText with base directory /etc/popgate, an empty environment and source test.yaml unless `opts` says otherwise. */
export function parseConfig(text: string, opts: Partial<ParseConfigOptions> = {}): Promise<PopgateConfig> {
  return parseConfigText(text, { baseDir: '/etc/popgate', env: {}, source: 'test.yaml', ...opts });
}

/** The ConfigError `p` rejects with; the test fails if it resolves or rejects with anything else. */
export async function configError(p: Promise<unknown>): Promise<ConfigError> {
  const err: unknown = await p.then(
    () => new Error('expected a ConfigError'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

/** The issues of a config that must fail to parse (see parseConfig for `opts`). */
export async function issuesOf(text: string, opts: Partial<ParseConfigOptions> = {}): Promise<readonly ConfigIssue[]> {
  return (await configError(parseConfig(text, opts))).issues;
}
