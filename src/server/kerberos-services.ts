import { access, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Logger } from 'pino';
import type { KerberosConfig } from '../config/schema.js';
import { KdcGate, loadKerberosBinding, ticketCheckGate, type NativeKerberosBinding } from '../kerberos/binding.js';
import { PrincipalMapper } from '../identity/principal-mapper.js';
import type { AcceptorOptions } from '../kerberos/types.js';

/** Everything Kerberos the gateway shares between connections. */
export interface KerberosServices {
  readonly binding: NativeKerberosBinding;
  readonly mapper: PrincipalMapper;
  readonly acceptor: AcceptorOptions;
  readonly config: KerberosConfig;
  /** SIGHUP: re-read krb5.conf in every worker, re-check the keytab (keytabs are read per call). */
  reload(): Promise<void>;
}

/**
 * Why `dir` cannot hold the replay cache (it must be an existing directory
 * popgate can write to), or undefined when it can.
 */
export async function rcacheDirProblem(dir: string): Promise<string | undefined> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) return 'not a directory';
    await access(dir, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'does not exist';
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return `not writable (${code})`;
    return code ?? (err instanceof Error ? err.message : String(err));
  }
}

/** The principals the keytab must hold a key for: every service principal and the password-check one. */
export function keytabPrincipals(config: KerberosConfig): string[] {
  return [...new Set([...config.servicePrincipals, config.passwordServicePrincipal])];
}

/**
 * The addon with the gates `config` asks for, every pool thread reading
 * `config.krb5Config` (when set; else krb5's default) from its next call.
 * Throws a clear Error when the addon is not built or will not load.
 */
export function openKerberosBinding(config: KerberosConfig): NativeKerberosBinding {
  if (config.krb5Config) process.env.KRB5_CONFIG = config.krb5Config;
  const binding = loadKerberosBinding({
    kdcGate: new KdcGate({ maxConcurrent: config.kdc.maxConcurrent, maxQueue: config.kdc.maxQueue, timeoutMs: config.kdc.timeout }),
    ticketGate: ticketCheckGate({
      maxQueue: config.ticketChecks.maxQueue,
      ...(config.ticketChecks.maxConcurrent !== undefined ? { maxConcurrent: config.ticketChecks.maxConcurrent } : {}),
    }),
  });
  // Worker threads cache a krb5_context (which read krb5.conf when it was made):
  // make them pick up the configuration this gateway was started with.
  binding.reload();
  return binding;
}

/**
 * Start-up checks with a clear error each (rcache directory, addon, keytab
 * holding every principal) and the shared Kerberos objects. The same checks
 * run, reported together, in src/server/preflight.ts.
 */
export async function setupKerberos(config: KerberosConfig, log: Logger): Promise<KerberosServices> {
  const rcacheProblem = await rcacheDirProblem(config.rcacheDir);
  if (rcacheProblem !== undefined) {
    throw new Error(`kerberos.rcacheDir ${config.rcacheDir}: ${rcacheProblem} (the replay cache directory must exist and be writable)`);
  }
  const binding = openKerberosBinding(config);
  const principals = keytabPrincipals(config);
  const checkKeytab = async (): Promise<void> => {
    try {
      await binding.checkKeytab(config.keytab, principals);
    } catch (err) {
      throw new Error(`kerberos.keytab ${config.keytab}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  await checkKeytab();
  const mapper = new PrincipalMapper(config.mapping);
  log.info({ keytab: config.keytab, principals, rcacheDir: config.rcacheDir }, 'kerberos ready');
  return {
    binding,
    mapper,
    config,
    acceptor: { keytab: config.keytab, servicePrincipals: config.servicePrincipals, rcacheDir: config.rcacheDir },
    async reload() {
      binding.reload();
      await checkKeytab();
      log.info({ keytab: config.keytab }, 'kerberos keytab checked');
    },
  };
}
