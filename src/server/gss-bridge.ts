import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { KerberosError, type GssAcceptor } from '../kerberos/types.js';
import type { Pop3Session } from '../pop3/session.js';
import type { Pop3Action } from '../pop3/types.js';
import { auditLogin } from './login-audit.js';

function assertNever(x: never): never {
  throw new Error(`unexpected GSS action ${JSON.stringify(x)}`);
}

export type GssAction = Extract<Pop3Action, { kind: 'gssAccept' | 'gssWrap' | 'gssUnwrap' }>;

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
 * needs nothing more from it.
 */
export class GssBridge {
  private acceptor: GssAcceptor | undefined;

  constructor(
    private readonly createAcceptor: (() => GssAcceptor) | undefined,
    private readonly log: () => Logger,
    private readonly metrics: Metrics,
  ) {}

  async handle(action: GssAction, session: Pop3Session): Promise<Pop3Action[]> {
    this.lastFailure = undefined;
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
          return session.gssAcceptResult({ done: r.done, output: r.output, ...(principal ? { principal } : {}) });
        }
        case 'gssWrap':
          return session.gssWrapped(await this.current().wrap(action.data));
        case 'gssUnwrap':
          return session.gssUnwrapped(await this.current().unwrap(action.token));
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

  /** The code of the failure the last handle() logged, if it failed (so the close is not logged twice). */
  lastFailure: ErrorCode | undefined;

  private fail(session: Pop3Session, code: ErrorCode, reason: string, krbFailure?: string): Pop3Action[] {
    this.lastFailure = code;
    // Known when the context was established and a later step failed.
    const principal = this.acceptor?.client;
    auditLogin(
      this.log(),
      this.metrics,
      ERRORS[code].level,
      { outcome: 'failure', mechanism: 'GSSAPI', code, reason, ...(principal ? { principal } : {}), ...(krbFailure !== undefined ? { krbFailure } : {}) },
      'login failed',
    );
    return session.gssFailed(code);
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
