/**
 * Every check of `popgate doctor` for one loaded configuration, group by
 * group: config (every file it names, as check-config loads them), tls,
 * backend, services, kerberos. Groups run one after the other so the output reads in
 * order; the checks of a group run together.
 */
import type { ProxyEnv } from '../../auth/proxy-env.js';
import type { PopgateConfig } from '../../config/index.js';
import { preflight, type PreflightOptions } from '../preflight.js';
import { checkUserLogin, distinctTargets, probeTarget } from './backend.js';
import { checkKerberos, type RunCommand } from './kerberos.js';
import { checkAuthHttp, checkLdap, checkOauth, checkRedis } from './services.js';
import { checkListenerTls, type TrustAnchors } from './tls.js';
import { fail, ok, warn, type DoctorResult } from './types.js';

export interface DoctorOptions {
  /** Milliseconds since the epoch (certificate expiry). */
  readonly now: number;
  readonly trust: TrustAnchors;
  /** `--hostname` values; none: kerberos.servicePrincipals hosts, else the name check warns. */
  readonly hostnames: readonly string[];
  /** `--user`: also try the internal login for this user. */
  readonly user?: string;
  /** Deadline of the Redis probe (backends use backend.timeouts; HTTP, the service's own timeout). */
  readonly timeoutMs?: number;
  readonly preflight?: PreflightOptions;
  /** Clock for the Kerberos skew check; default Date.now. */
  readonly clock?: () => number;
  /** Replaces klist/kinit (tests). */
  readonly runCommand?: RunCommand;
  /** HTTP_PROXY/HTTPS_PROXY/NO_PROXY for a null auth.http.proxy / auth.oauth.proxy; default process.env. */
  readonly env?: ProxyEnv;
}

/** The names clients use: `--hostname`, else the hosts of kerberos.servicePrincipals. */
export function clientHostnames(config: PopgateConfig, given: readonly string[]): { names: string[]; source: string } {
  if (given.length > 0) return { names: [...given], source: '--hostname' };
  const hosts = (config.kerberos?.servicePrincipals ?? [])
    .map((p) => /^[^/@]+\/([^/@]+)@/.exec(p)?.[1])
    .filter((h): h is string => h !== undefined);
  return { names: [...new Set(hosts)], source: 'kerberos.servicePrincipals' };
}

export async function runDoctorChecks(config: PopgateConfig, opts: DoctorOptions): Promise<DoctorResult[]> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const results: DoctorResult[] = [];

  const report = await preflight(config, opts.preflight);
  for (const issue of report.issues) {
    results.push(fail('config', issue.path, issue.message, issue.hint ?? 'see popgate check-config'));
  }
  for (const w of report.warnings) results.push(warn('config', w.path, w.message, w.hint ?? 'see popgate check-config'));
  if (report.issues.length === 0) {
    results.push(ok('config', 'files', `every file the configuration names loads as serve loads it (${report.checked.length} checked, as check-config)`));
  }

  const { names, source } = clientHostnames(config, opts.hostnames);
  const tlsJobs = config.listeners.map((l, i) => checkListenerTls(l, i, { now: opts.now, trust: opts.trust, hostnames: names, hostnameSource: source }));
  results.push(...(await Promise.all(tlsJobs)).flat());

  const backendTimeouts = { connectMs: config.backend.timeouts.connect, greetingMs: config.backend.timeouts.greeting };
  const probes = distinctTargets(config).map(({ target, where }) => probeTarget(target, where, backendTimeouts));
  results.push(...(await Promise.all(probes)).flat());
  if (opts.user !== undefined) results.push(...(await checkUserLogin(config, opts.user)));

  const services = await Promise.all([checkAuthHttp(config, opts.env), checkRedis(config, timeoutMs), checkOauth(config, opts.env), checkLdap(config)]);
  results.push(...services.flat());

  if (config.kerberos !== undefined) {
    results.push(...(await checkKerberos(config.kerberos, { now: opts.clock ?? Date.now, ...(opts.runCommand ? { run: opts.runCommand } : {}) })));
  }
  return results;
}
