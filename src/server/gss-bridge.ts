import { performance } from 'node:perf_hooks';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { KerberosError, type GssAcceptor } from '../kerberos/types.js';
import type { Pop3Session } from '../pop3/session.js';
import type { Pop3Action } from '../pop3/types.js';

function assertNever(x: never): never {
  throw new Error(`unexpected GSS action ${JSON.stringify(x)}`);
}

export type GssAction = Extract<Pop3Action, { kind: 'gssAccept' | 'gssWrap' | 'gssUnwrap' }>;

/** A refused exchange: a failed login the connection audits, counts and delays like any other. */
export interface GssFailure {
  /** Its detail is the audit line's `reason`. */
  readonly error: GatewayError;
  /** Known when the context was established and a later step failed. */
  readonly principal?: string;
  /** The KerberosError's failure kind (`internal` for anything else); absent when no step ran. */
  readonly krbFailure?: string;
}

/** What one step hands back: the core's answer, and the failure when the step refused the exchange. */
export interface GssStep {
  readonly actions: Pop3Action[];
  readonly failure?: GssFailure;
}

/** Client-caused Kerberos failures are bad credentials; the rest is our trouble. */
export function kerberosFailureCode(err: unknown): ErrorCode {
  if (err instanceof KerberosError) {
    switch (err.failure) {
      case 'replay':
      case 'skew':
      case 'wrong-principal':
      case 'bad-token':
      case 'bad-password':
        return 'AUTH_FAILED';
      default:
        return 'VERIFIER_UNAVAILABLE';
    }
  }
  return 'INTERNAL';
}

/**
 * Runs the GSSAPI steps the protocol core asks for against one acceptor
 * context per exchange, and hands the results back to the core. Owns the
 * context's lifetime: a new one per exchange, released as soon as the core
 * needs nothing more from it. A refused step comes back with its failure
 * (GssStep): auditing, counting and delaying it is the connection's
 * failed-login path, shared with password logins.
 */
export class GssBridge {
  private acceptor: GssAcceptor | undefined;

  constructor(
    private readonly createAcceptor: (() => GssAcceptor) | undefined,
    private readonly metrics: Metrics,
  ) {}

  async handle(action: GssAction, session: Pop3Session): Promise<GssStep> {
    try {
      switch (action.kind) {
        case 'gssAccept': {
          if (action.first) {
            this.dispose();
            if (!this.createAcceptor) return this.fail(session, 'INTERNAL', 'GSSAPI offered without a Kerberos acceptor');
            this.acceptor = this.createAcceptor();
          }
          const acceptor = this.current();
          const started = performance.now();
          let r: Awaited<ReturnType<GssAcceptor['step']>>;
          try {
            r = await acceptor.step(action.token);
          } catch (err) {
            this.metrics.kerberosCheck('gssapi', (performance.now() - started) / 1000, err instanceof KerberosError ? err.failure : 'other');
            throw err;
          }
          this.metrics.kerberosCheck('gssapi', (performance.now() - started) / 1000);
          const principal = acceptor.client;
          return { actions: session.gssAcceptResult({ done: r.done, output: r.output, ...(principal ? { principal } : {}) }) };
        }
        case 'gssWrap':
          return { actions: session.gssWrapped(await this.current().wrap(action.data)) };
        case 'gssUnwrap':
          return { actions: session.gssUnwrapped(await this.current().unwrap(action.token)) };
        default:
          return assertNever(action);
      }
    } catch (err) {
      const code = kerberosFailureCode(err);
      const failure = err instanceof KerberosError ? err.failure : 'internal';
      return this.fail(session, code, `${action.kind}: ${failure}: ${err instanceof Error ? err.message : String(err)}`, failure);
    } finally {
      if (!session.gssInProgress) this.dispose();
    }
  }

  private fail(session: Pop3Session, code: ErrorCode, reason: string, krbFailure?: string): GssStep {
    const principal = this.acceptor?.client;
    return {
      actions: session.gssFailed(code),
      failure: { error: new GatewayError(code, reason), ...(principal ? { principal } : {}), ...(krbFailure !== undefined ? { krbFailure } : {}) },
    };
  }

  private current(): GssAcceptor {
    if (!this.acceptor) throw new Error('GSSAPI step without a context');
    return this.acceptor;
  }

  dispose(): void {
    this.acceptor?.dispose();
    this.acceptor = undefined;
  }
}
