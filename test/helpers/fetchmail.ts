/**
 * Real fetchmail runs for the Kerberos tests. fetchmail speaks KPOP only when
 * the service is literally named `kpop` (Debian 12 has no such entry), so a
 * KPOP run happens inside `unshare --mount` with a copy of /etc/services that
 * maps `kpop` to the gateway's port, bind-mounted over the real one. Host
 * names (a KPOP service principal's host) are mapped the same way, through a
 * copy of /etc/hosts.
 */
import { chmod, copyFile, appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProgram, type RunResult } from './clients.js';

export interface FetchmailOptions {
  /** The poll entry without its mda/keep clauses, e.g. `poll 127.0.0.1 protocol KPOP auth kerberos_v5 user "alice" there sslproto ''`. */
  readonly poll: string;
  /** Environment: KRB5_CONFIG, KRB5CCNAME, ... */
  readonly env: Record<string, string>;
  /** Map service `kpop` to this port for the run (KPOP only). */
  readonly kpopPort?: number;
  /** Extra /etc/hosts entries for the run, name -> address (e.g. the service principal's host). */
  readonly hosts?: Record<string, string>;
  readonly timeoutMs?: number;
}

export interface FetchmailResult extends RunResult {
  /** Every delivered message, as fetchmail handed it to the MDA, sorted by content. */
  readonly messages: Buffer[];
}

export async function runFetchmail(opts: FetchmailOptions): Promise<FetchmailResult> {
  const dir = await mkdtemp(join(tmpdir(), 'popgate-fetchmail-'));
  try {
    const out = join(dir, 'out');
    await runProgram('mkdir', ['-p', out]);
    // One file per message; fetchmail runs the MDA through sh.
    const rc = join(dir, 'fetchmailrc');
    // `set invisible`: no Received header, so what is delivered is what the server sent.
    await writeFile(rc, `set invisible\n${opts.poll} mda "cat > \\$(mktemp -p ${out} m.XXXXXXXX)" keep fetchall no rewrite\n`);
    await chmod(rc, 0o600);
    const fetch = ['fetchmail', '-f', rc, '-v', '--nosyslog', '--nodetach', '-i', join(dir, 'fetchids')];
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...opts.env };
    const mounts: string[] = [];
    if (opts.kpopPort !== undefined) {
      const services = join(dir, 'services');
      await copyFile('/etc/services', services);
      await appendFile(services, `kpop\t\t${opts.kpopPort}/tcp\n`);
      mounts.push(`mount --bind ${services} /etc/services`);
    }
    if (opts.hosts !== undefined) {
      const hosts = join(dir, 'hosts');
      await copyFile('/etc/hosts', hosts);
      await appendFile(hosts, '\n' + Object.entries(opts.hosts).map(([name, ip]) => `${ip}\t${name}\n`).join(''));
      mounts.push(`mount --bind ${hosts} /etc/hosts`);
    }
    let r: RunResult;
    if (mounts.length > 0) {
      r = await runProgram(
        'unshare',
        ['--mount', 'sh', '-c', `${mounts.join(' && ')} && exec "$@"`, 'sh', ...fetch],
        { env, timeoutMs: opts.timeoutMs ?? 60_000 },
      );
    } else {
      r = await runProgram(fetch[0]!, fetch.slice(1), { env, timeoutMs: opts.timeoutMs ?? 60_000 });
    }
    const names = (await readdir(out)).sort();
    const messages = await Promise.all(names.map((n) => readFile(join(out, n))));
    messages.sort(Buffer.compare);
    return { ...r, messages };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
