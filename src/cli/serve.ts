import type { Logger } from 'pino';
import { formatConfigIssues, loadConfig, type PopgateConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { createMetrics } from '../observability/metrics.js';
import { Gateway } from '../server/gateway.js';
import { Primary, workerCount } from '../server/workers/primary.js';
import { WorkerLink } from '../server/workers/worker.js';
import { checkConfigFile } from './startup-config.js';

/**
 * `popgate serve`: run until SIGTERM/SIGINT. Before anything listens, the
 * config and every file it names are checked exactly as check-config does
 * (startup-config.ts): any problem is printed, all at once, and serve exits
 * 78 (EX_CONFIG). SIGHUP re-reads the config file (an invalid one is refused
 * with an error line and the running config kept), then certificates, the
 * user file, mapped secrets and the keytab; live sessions are never dropped.
 *
 * With `workers` > 1 this process becomes the primary (src/server/workers):
 * it forks the workers, which run this same command and serve the listeners
 * as one process would, with `worker: <n>` on their log lines; SIGTERM and
 * SIGHUP go to the primary, which passes them on to every worker.
 */
export async function runServe(configFile: string): Promise<number> {
  const link = WorkerLink.fromEnvironment();
  const checked = await checkConfigFile(configFile);
  const config = checked.config;
  if (config === undefined || checked.issues.length > 0) {
    process.stderr.write(`popgate: not starting: ${formatConfigIssues(checked.issues, configFile)}\n`);
    link?.detach(); // the open channel would keep this worker alive
    return 78; // EX_CONFIG
  }
  if (!link && workerCount(config.workers) > 1) return runPrimary(configFile, config);
  const root = createLogger({ level: config.log.level });
  const log = link ? root.child({ worker: link.number }) : root;
  await link?.hello(log);
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(config, log, link ? link.gatewayOptions(log, config.admin ? createMetrics() : undefined) : {});
  } catch (err) {
    log.fatal({ err: describe(err) }, 'start-up failed');
    log.flush();
    process.stderr.write(`popgate: start-up failed: ${describe(err)}\n`);
    link?.detach();
    return 1;
  }
  if (link) log.info({ listeners: gateway.bound, pid: process.pid }, 'worker serving');
  else log.info({ listeners: gateway.bound, ...(gateway.admin ? { admin: gateway.admin } : {}) }, 'popgate ready');
  // A stray rejection is a bug in one code path: log it loudly, keep serving.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason instanceof Error ? reason.stack : String(reason) }, 'unhandled promise rejection');
  });

  return new Promise<number>((resolve) => {
    // A worker hears a Ctrl-C twice (its own SIGINT, then the primary's word): one drain.
    let draining = false;
    const stop = (signal: NodeJS.Signals | 'primary'): void => {
      if (draining) return;
      draining = true;
      log.info({ signal }, signal === 'primary' ? 'primary asked to stop, draining' : 'signal received, draining');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      // A second signal during the drain means "now".
      const now = (): void => void gateway.stop(0);
      process.once('SIGTERM', now);
      process.once('SIGINT', now);
      void gateway.stop().then(() => {
        process.removeListener('SIGHUP', hup);
        link?.detach();
        log.flush();
        resolve(0);
      });
    };
    let running = config;
    // Reloads run one at a time, in signal order.
    let reloading: Promise<void> = Promise.resolve();
    const reloadAll = async (): Promise<void> => {
      let next;
      try {
        next = await loadConfig(configFile);
      } catch (err) {
        log.error({ file: configFile, err: describe(err).replace(/\n\s*/g, ' ') }, `config reload refused: ${configFile} is invalid; keeping the running configuration`);
      }
      if (!link && next && next.workers !== running.workers) {
        log.warn({ current: running.workers, next: next.workers }, 'config reload: workers changes need a restart (restart needed); keeping the running workers');
      }
      if (next && (await gateway.applyConfig(next))) {
        log.level = next.log.level;
        running = next;
      }
      await gateway.reload();
    };
    const reload = (): void => {
      log.info({ file: configFile }, 'SIGHUP: reloading configuration, certificates and user files');
      reloading = reloading
        .then(reloadAll)
        .catch((err: unknown) => log.error({ err: describe(err) }, 'reload failed'));
    };
    // A worker reloads when the primary says so: a SIGHUP to the whole process group reaches the primary too.
    const hup = link ? (): void => log.info('SIGHUP to a worker ignored; the primary passes reloads on') : reload;
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', hup);
    link?.attach(gateway, {
      stop: (now) => (now ? void gateway.stop(0) : stop('primary')),
      reload,
    });
  });
}

/**
 * `workers` > 1: this process forks and watches the workers, and serves the
 * admin listener. SIGTERM drains every worker (exit 0 once all stopped
 * cleanly); SIGHUP reloads every worker.
 */
async function runPrimary(configFile: string, config: PopgateConfig): Promise<number> {
  const log = createLogger({ level: config.log.level });
  const count = workerCount(config.workers);
  let primary: Primary;
  try {
    primary = await Primary.start({ config, count, log });
  } catch (err) {
    log.fatal({ err: describe(err) }, 'start-up failed');
    log.flush();
    process.stderr.write(`popgate: start-up failed: ${describe(err)}\n`);
    return 1;
  }
  log.info({ pid: process.pid, listeners: primary.bound, workers: primary.workers, ...(primary.admin ? { admin: primary.admin } : {}) }, 'popgate ready');
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason instanceof Error ? reason.stack : String(reason) }, 'unhandled promise rejection');
  });
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal, workers: count }, 'signal received, draining every worker');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      const now = (): void => void primary.stop(true);
      process.once('SIGTERM', now);
      process.once('SIGINT', now);
      void primary.stop().then((code) => {
        process.removeListener('SIGHUP', hup);
        log.info({ code }, code === 0 ? 'every worker stopped' : 'a worker did not stop cleanly');
        log.flush();
        resolve(code);
      });
    };
    const hup = (): void => {
      log.info({ file: configFile, workers: count }, 'SIGHUP: reloading every worker');
      void checkRestartNeeded(configFile, config, log);
      primary.reload();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', hup);
  });
}

/** What the primary itself cannot change at a reload: the worker count (the workers report their own). */
async function checkRestartNeeded(configFile: string, running: PopgateConfig, log: Logger): Promise<void> {
  let next;
  try {
    next = await loadConfig(configFile);
  } catch {
    return; // each worker logs the refused file
  }
  log.level = next.log.level;
  if (next.workers !== running.workers) {
    log.warn({ current: running.workers, next: next.workers }, 'config reload: workers changes need a restart (restart needed); keeping the running workers');
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
