/**
 * The in-memory POP3 backend of the benchmarks (popgate's demo backend,
 * src/demo/backend.ts) in a child process of its own, so that its CPU is
 * measured by PID and it never competes with the orchestrator's event loop:
 *
 *   node dist-bench/bench/lib/backend-child.js '<json BackendChildOptions>'
 *
 * Prints `READY <port> <big bytes> <small bytes>` once it listens on
 * 127.0.0.1. Every user's mailbox holds the same two messages (one shared
 * buffer each): 1 = `bigBytes`, 2 = a small one. Dovecot forks per session and
 * tops out near 100 logins/s; this one costs a few tens of microseconds per
 * login, so proxies in front of it are measured, not the backend.
 */
import { startDemoBackend } from '../../src/demo/backend.js';
import { exitWithParent } from './child-exit.js';
import { bigMessage, SMALL_MESSAGE } from './messages.js';

export interface BackendChildOptions {
  /** user → password. */
  readonly users: Readonly<Record<string, string>>;
  readonly masterUser: string;
  readonly masterPassword: string;
  readonly bigBytes: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as BackendChildOptions;
const big = bigMessage(opts.bigBytes, 'bench-backend-big');
const messages = Object.fromEntries(Object.keys(opts.users).map((u) => [u, [big, SMALL_MESSAGE]]));
const backend = await startDemoBackend({
  users: opts.users,
  masterUser: opts.masterUser,
  masterPassword: opts.masterPassword,
  messages,
  // Millions of logins: no per-command log.
  logCommands: false,
});
process.stdout.write(`READY ${backend.port} ${big.length} ${SMALL_MESSAGE.length}\n`);
exitWithParent();
