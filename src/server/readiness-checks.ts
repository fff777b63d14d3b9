/**
 * The gateway's own part of /readyz: draining, listeners bound, config
 * loaded, certificates loaded, keytab checked. The backend probe is added by
 * the gateway (see readiness.ts).
 */
import type { ReadinessCheck } from '../observability/admin-server.js';

/** What readiness looks at, read off the running gateway. */
export interface GatewayState {
  /** stop() was called (SIGTERM). */
  readonly draining: boolean;
  /** Every configured listener got bound at start. */
  readonly started: boolean;
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly listening: boolean; readonly certificateMissing: boolean }>;
  /** Undefined without a kerberos section; else why it is not usable (undefined: it is). */
  readonly kerberos: { readonly problem: string | undefined } | undefined;
}

/** The checks /readyz reports before the backend's, in order. */
export function gatewayChecks(state: GatewayState): ReadinessCheck[] {
  const checks: ReadinessCheck[] = [];
  if (state.draining) checks.push({ name: 'draining', ok: false, detail: 'shutting down' });
  const unbound = state.listeners.filter((l) => !l.listening).map((l) => l.name);
  checks.push(
    state.started && unbound.length === 0
      ? { name: 'listeners', ok: true }
      : { name: 'listeners', ok: false, detail: unbound.length > 0 ? `not listening: ${unbound.join(', ')}` : 'starting' },
  );
  checks.push({ name: 'config', ok: true });
  const noCert = state.listeners.filter((l) => l.certificateMissing).map((l) => l.name);
  checks.push(noCert.length === 0 ? { name: 'tls', ok: true } : { name: 'tls', ok: false, detail: `no certificate loaded: ${noCert.join(', ')}` });
  if (state.kerberos) {
    const { problem } = state.kerberos;
    checks.push(problem === undefined ? { name: 'kerberos', ok: true } : { name: 'kerberos', ok: false, detail: problem });
  }
  return checks;
}
