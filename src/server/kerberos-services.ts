import { access, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Logger } from 'pino';
import type { KerberosConfig } from '../config/schema.js';
import { KdcGate, loadKerberosBinding, ticketCheckGate, type NativeKerberosBinding } from '../kerberos/binding.js';
import { PrincipalMapper } from '../kerberos/principal-mapper.js';
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
 * Start-up checks with a clear error each (rcache directory, addon, keytab
 * holding every principal) and the shared Kerberos objects.
 */
export async function setupKerberos(config: KerberosConfig, log: Logger): Promise<KerberosServices> {
  if (config.krb5Config) process.env.KRB5_CONFIG = config.krb5Config;
  try {
    const st = await stat(config.rcacheDir);
    if (!st.isDirectory()) throw new Error('not a directory');
    await access(config.rcacheDir, constants.W_OK);
  } catch (err) {
    throw new Error(`kerberos.rcacheDir ${config.rcacheDir}: ${err instanceof Error ? err.message : String(err)} (the replay cache directory must exist and be writable)`);
  }
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
  const principals = [...new Set([...config.servicePrincipals, config.passwordServicePrincipal])];
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
