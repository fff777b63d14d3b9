import { formatConfigIssues, loadConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { Gateway } from '../server/gateway.js';
import { checkConfigFile } from './startup-config.js';

/**
 * `popgate serve`: run until SIGTERM/SIGINT. Before anything listens, the
 * config and every file it names are checked exactly as check-config does
 * (startup-config.ts): any problem is printed, all at once, and serve exits
 * 78 (EX_CONFIG). SIGHUP re-reads the config file (an invalid one is refused
 * with an error line and the running config kept), then certificates, the
 * user file, mapped secrets and the keytab; live sessions are never dropped.
 */
export async function runServe(configFile: string): Promise<number> {
  const checked = await checkConfigFile(configFile);
  const config = checked.config;
  if (config === undefined || checked.issues.length > 0) {
    process.stderr.write(`popgate: not starting: ${formatConfigIssues(checked.issues, configFile)}\n`);
    return 78; // EX_CONFIG
  }
  const log = createLogger({ level: config.log.level });
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(config, log);
  } catch (err) {
    log.fatal({ err: describe(err) }, 'start-up failed');
    log.flush();
    process.stderr.write(`popgate: start-up failed: ${describe(err)}\n`);
    return 1;
  }
  log.info({ listeners: gateway.bound, ...(gateway.admin ? { admin: gateway.admin } : {}) }, 'popgate ready');
  // A stray rejection is a bug in one code path: log it loudly, keep serving.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason instanceof Error ? reason.stack : String(reason) }, 'unhandled promise rejection');
  });

  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'signal received, draining');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      // A second signal during the drain means "now".
      const now = (): void => void gateway.stop(0);
      process.once('SIGTERM', now);
      process.once('SIGINT', now);
      void gateway.stop().then(() => {
        process.removeListener('SIGHUP', hup);
        log.flush();
        resolve(0);
      });
    };
    // Reloads run one at a time, in signal order.
    let reloading: Promise<void> = Promise.resolve();
    const reloadAll = async (): Promise<void> => {
      let next;
      try {
        next = await loadConfig(configFile);
      } catch (err) {
        log.error({ file: configFile, err: describe(err).replace(/\n\s*/g, ' ') }, `config reload refused: ${configFile} is invalid; keeping the running configuration`);
      }
      if (next && (await gateway.applyConfig(next))) log.level = next.log.level;
      await gateway.reload();
    };
    const hup = (): void => {
      log.info({ file: configFile }, 'SIGHUP: reloading configuration, certificates and user files');
      reloading = reloading
        .then(reloadAll)
        .catch((err: unknown) => log.error({ err: describe(err) }, 'reload failed'));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', hup);
  });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
