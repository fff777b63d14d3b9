import { GatewayError, isGatewayError } from '../errors.js';
import { hostPort } from '../net/index.js';
import { backendErrorPhase, copyBackendErrorPhase, openBackendSession, type OpenBackendOptions } from './client.js';
import { PRE_LOGIN_PHASES } from './login-machine.js';
import type { BackendLinkSession, BackendTarget } from './types.js';

export interface OpenBackendWithFailoverOptions extends Omit<OpenBackendOptions, 'target'> {
  /** Tried in this order; at least one. */
  readonly targets: readonly BackendTarget[];
}

/**
 * Whether a failure means "this backend is down, try the next one": the
 * connection could not be set up (BACKEND_UNREACHABLE) or a deadline passed
 * (BACKEND_TIMEOUT) before any credential was written (connect, TLS
 * handshake, greeting, STLS, XCLIENT). Everything else stops: a login
 * rejection (the next backend would say the same and a retry doubles the
 * failed logins), a TLS certificate or name failure (a security failure, not
 * an outage), a protocol error, an abort.
 */
export function isFailoverError(err: unknown): boolean {
  if (!isGatewayError(err)) return false;
  if (err.code !== 'BACKEND_UNREACHABLE' && err.code !== 'BACKEND_TIMEOUT') return false;
  const phase = backendErrorPhase(err);
  return phase !== undefined && PRE_LOGIN_PHASES.has(phase);
}

/**
 * openBackendSession on each target in turn until one logs in. Moves on only
 * when isFailoverError(); stateless (every call starts with the first
 * target). Rejects with a GatewayError of the deciding error's code (the last
 * one tried) whose detail lists every target tried and why it failed, its
 * `cause` being the original error; an abort rejects with the signal's
 * reason. No targets: GatewayError('INTERNAL').
 */
export async function openBackendWithFailover(opts: OpenBackendWithFailoverOptions): Promise<BackendLinkSession> {
  const { targets, ...common } = opts;
  if (targets.length === 0) throw new GatewayError('INTERNAL', 'no backend targets configured');
  const tried: string[] = [];
  for (let i = 0; i < targets.length; i++) {
    const target = targets[i]!;
    try {
      return await openBackendSession({ ...common, target });
    } catch (err) {
      if (!isGatewayError(err)) throw err; // abort reason, or a bug: not ours to wrap
      tried.push(`${hostPort(target.host, target.port)} (${err.code}: ${err.detail ?? ''})`);
      const more = i + 1 < targets.length;
      if (isFailoverError(err) && more && !opts.signal?.aborted) continue;
      if (targets.length === 1) throw err;
      const why = isFailoverError(err)
        ? `all ${targets.length} backends failed`
        : `stopped at backend ${i + 1} of ${targets.length}`;
      const wrapped = new GatewayError(err.code, `${why}; tried ${tried.join('; ')}`, { cause: err });
      copyBackendErrorPhase(err, wrapped);
      throw wrapped;
    }
  }
  /* c8 ignore next */
  throw new GatewayError('INTERNAL', 'unreachable');
}
