/**
 * The comparison's own processes: nginx and stunnel (started from generated
 * configs, stopped through their pid files with the process group as the
 * last resort), the load worker, and
 * RLIMIT_NOFILE for all of them. Generic child handling is in lib/process.ts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HOST, describe, sleep, spawnChild, startNodeChild, waitForGreeting, type Child } from '../lib/process.js';
import { childrenOf } from '../lib/procfs.js';
import type { Job } from './load-worker.js';
/** Wanted RLIMIT_NOFILE for every process of the comparison (proxies, backend, load worker). */
export const WANT_NOFILE = 65_536;

/** This process's RLIMIT_NOFILE (soft, hard) from /proc/self/limits. */
export function nofileLimits(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
  const n = (s: string | undefined): number => (s === undefined || s === 'unlimited' ? 1 << 30 : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/**
 * Raises this process's RLIMIT_NOFILE (soft and hard) to `want` with prlimit,
 * so every child inherits it; where the hard limit cannot be raised (no
 * CAP_SYS_RESOURCE, e.g. in a container) the soft limit goes up to the hard
 * one. Returns the limit now in force and a note for the report.
 */
export function raiseNofile(want = WANT_NOFILE): { limit: number; note: string } {
  const before = nofileLimits();
  if (before.soft >= want) return { limit: before.soft, note: `RLIMIT_NOFILE ${before.soft} already` };
  let error = '';
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { timeout: 5_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    error = (err as { stderr?: Buffer }).stderr?.toString().trim() || describe(err);
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.hard}:${before.hard}`], { timeout: 5_000, stdio: 'ignore' });
    } catch {
      /* keep what we have */
    }
  }
  const now = nofileLimits();
  return {
    limit: now.soft,
    note:
      now.soft >= want
        ? `RLIMIT_NOFILE ${now.soft} (prlimit on the benchmark process, inherited by every child)`
        : `RLIMIT_NOFILE ${now.soft}: the hard limit could not be raised to ${want} here (${error || 'refused'}), so every process of the comparison runs with ${now.soft}`,
  };
}

// ------------------------------------------------------------------ nginx

export const NGINX_BIN = '/usr/sbin/nginx';

/** The mail module's .so: Debian's libnginx-mod-mail path, else a search of the modules dir. */
export function nginxMailModule(): string {
  for (const p of ['/usr/lib/nginx/modules/ngx_mail_module.so', '/usr/share/nginx/modules/ngx_mail_module.so']) {
    if (existsSync(p)) return p;
  }
  throw new Error('ngx_mail_module.so not found: install libnginx-mod-mail (scripts/bench.sh does)');
}

export interface NginxInstance extends Child {
  readonly port: number;
  readonly workers: string;
  readonly errorLog: string;
  /** Master + workers, as they are now. */
  pids(): number[];
}

export async function startNginx(o: {
  dir: string;
  nofile: number;
  name: string;
  port: number;
  workers: '1' | 'auto';
  /** ssl_session_tickets (nginx's default and popgate's: on). */
  tickets: boolean;
  authPort: number;
  certFile: string;
  keyFile: string;
  ca: Buffer;
}): Promise<NginxInstance> {
  const conf = path.join(o.dir, `${o.name}.conf`);
  const pidFile = path.join(o.dir, `${o.name}.pid`);
  const errorLog = path.join(o.dir, `${o.name}.error.log`);
  const text = `# nginx mail proxy for popgate's comparison (generated)
load_module ${nginxMailModule()};
daemon off;
master_process on;
user root;
worker_processes ${o.workers};
worker_rlimit_nofile ${o.nofile};
pid ${pidFile};
error_log ${errorLog} warn;
events {
    worker_connections ${Math.min(32_768, o.nofile)};
}
mail {
    server_name localhost;
    auth_http 127.0.0.1:${o.authPort}/auth;
    proxy_pass_error_message on;
    ssl_certificate ${o.certFile};
    ssl_certificate_key ${o.keyFile};
    # nginx 1.22 defaults to TLSv1 TLSv1.1 TLSv1.2 (TLSv1.3 joined the default in 1.23.4): popgate/Node accept TLSv1.2 and TLSv1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    # session cache: nginx's default, like popgate/Node (no server-side cache); tickets: nginx's default (on) is popgate's too
    ssl_session_cache none;
    ssl_session_tickets ${o.tickets ? 'on' : 'off'};${o.tickets ? '' : '\n    # OpenSSL still sends TLS 1.3 tickets (stateful ones) with tickets off: none at all\n    ssl_conf_command NumTickets 0;'}
    server {
        listen 127.0.0.1:${o.port} ssl;
        protocol pop3;
        proxy on;
        pop3_auth plain;
    }
}
`;
  await writeFile(conf, text);
  // -e: the start-up error log too (Debian's build defaults to stderr, fine, but be explicit); -p: prefix for relative paths.
  const c = spawnChild(o.name, NGINX_BIN, { args: ['-p', `${o.dir}/`, '-c', conf, '-e', errorLog], detached: true, pidFile });
  await waitForGreeting({ label: o.name, host: HOST, port: o.port, tls: { ca: o.ca, servername: 'localhost' } }, {
    running: c.running,
    output: () => `${c.output()}\n${existsSync(errorLog) ? readFileSync(errorLog, 'utf8').slice(-4000) : ''}`,
  }, 15_000);
  const want = o.workers === '1' ? 1 : undefined;
  // Workers fork right after the master starts; wait until they are all there.
  let workers = childrenOf(c.pid);
  for (let i = 0; i < 50 && (workers.length === 0 || (want !== undefined && workers.length < want)); i++) {
    await sleep(100);
    workers = childrenOf(c.pid);
  }
  return {
    ...c,
    port: o.port,
    workers: o.workers,
    errorLog,
    pids: () => [c.pid, ...childrenOf(c.pid)],
  };
}

// ------------------------------------------------------------------ stunnel

export const STUNNEL_BIN = '/usr/bin/stunnel4';

export async function startStunnel(o: { dir: string; port: number; backendPort: number; certFile: string; keyFile: string; ca: Buffer }): Promise<Child> {
  const conf = path.join(o.dir, 'stunnel.conf');
  const pidFile = path.join(o.dir, 'stunnel.pid');
  const text = `; stunnel: the raw TLS splice baseline of popgate's comparison (generated)
foreground = yes
pid = ${pidFile}
output = ${path.join(o.dir, 'stunnel.log')}
debug = 2
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1

[pop3s]
accept = 127.0.0.1:${o.port}
connect = 127.0.0.1:${o.backendPort}
cert = ${o.certFile}
key = ${o.keyFile}
TIMEOUTclose = 0
`;
  await writeFile(conf, text);
  const c = spawnChild('stunnel', STUNNEL_BIN, { args: [conf], detached: true, pidFile });
  await waitForGreeting({ label: 'stunnel', host: HOST, port: o.port, tls: { ca: o.ca, servername: 'localhost' } }, c, 15_000);
  return c;
}

// ------------------------------------------------------------------ the load worker

export class LoadWorker {
  private next = 1;
  private readonly waiters = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(readonly proc: Child) {
    proc.child.on('message', (m: unknown) => {
      const msg = m as { id: number; ok: boolean; result?: unknown; error?: string };
      const w = this.waiters.get(msg.id);
      if (!w) return;
      this.waiters.delete(msg.id);
      if (msg.ok) w.resolve(msg.result);
      else w.reject(new Error(msg.error ?? 'load worker: unknown error'));
    });
    proc.child.once('exit', () => {
      for (const w of this.waiters.values()) w.reject(new Error(`load worker exited:\n${proc.output()}`));
      this.waiters.clear();
    });
  }

  static start(): LoadWorker {
    return new LoadWorker(startNodeChild('load worker', 'compare/load-worker.js', [], { ipc: true }));
  }

  get pid(): number {
    return this.proc.pid;
  }

  run<T>(job: Job): Promise<T> {
    if (!this.proc.running()) return Promise.reject(new Error(`load worker is gone:\n${this.proc.output()}`));
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.child.send({ id, job });
    });
  }
}
