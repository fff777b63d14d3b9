/**
 * The LDAP verifier's pool of user-bind connections (auth.ldap.poolSize):
 * logins/s and CPU per login of popgate's side (process.cpuUsage() of this
 * process, all threads) and of slapd (/proc, 10 ms ticks: coarse), against
 * the tests' private slapd (test/helpers/slapd.ts), bind mode (one bind per
 * login), over StartTLS and over LDAPS, poolSize 0 (a connection and a TLS
 * handshake per login) against 4.
 *
 *   npx tsc -p bench/tsconfig.json && node dist-bench/bench/ldap-pool.js [--logins 500] [--concurrency 8] [--runs 3]
 *
 * "connections opened": user-bind connections connected during the timed
 * logins (the verifier's onConnect).
 *
 * Runs of the four cells are interleaved (the order rotating); each cell
 * gets a new verifier and 50 untimed warm-up logins first. Medians over the
 * runs, min–max in brackets. No root needed; slapd (apt package slapd) must
 * be installed.
 */
import { readFile, rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createLdapVerifier } from '../src/auth/ldap.js';
import { makeTempTestPki } from '../test/helpers/certs.js';
import { startSlapd, TEST_LDAP_PEOPLE, TEST_LDAP_USERS as U } from '../test/helpers/slapd.js';
import { runLoad } from './lib/load.js';
import { log } from './lib/process.js';
import { readProcCpu } from './lib/procfs.js';
import { f, summarize, type Summary } from './lib/stats.js';

const WARMUP = 50;

interface Cell {
  readonly transport: 'StartTLS' | 'LDAPS';
  readonly poolSize: number;
}

interface Sample {
  readonly perSecond: number;
  readonly cpuMsPerLogin: number;
  readonly slapdCpuMsPerLogin: number;
  /** User-bind connections opened during the timed logins. */
  readonly connections: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { logins: { type: 'string', default: '500' }, concurrency: { type: 'string', default: '8' }, runs: { type: 'string', default: '3' } } });
  const logins = Number(values.logins);
  const concurrency = Number(values.concurrency);
  const runs = Number(values.runs);
  const pki = await makeTempTestPki('popgate-bench-ldap-');
  const slapd = await startSlapd(pki);
  try {
    const ca = await readFile(pki.caFile, 'utf8');
    const cells: Cell[] = [
      { transport: 'StartTLS', poolSize: 0 },
      { transport: 'StartTLS', poolSize: 4 },
      { transport: 'LDAPS', poolSize: 0 },
      { transport: 'LDAPS', poolSize: 4 },
    ];
    const samples = new Map<Cell, Sample[]>(cells.map((c) => [c, []]));
    const users = [U.alice, U.bob] as const;
    for (let run = 0; run < runs; run++) {
      for (let k = 0; k < cells.length; k++) {
        const cell = cells[(k + run) % cells.length]!;
        let connections = 0;
        const verifier = createLdapVerifier({
          urls: [cell.transport === 'LDAPS' ? slapd.ldapsUrl : slapd.url],
          startTls: cell.transport === 'StartTLS',
          ca,
          timeoutMs: 5000,
          connectTimeoutMs: 3000,
          lookup: { mode: 'bind', dnTemplate: `uid=%u,${TEST_LDAP_PEOPLE}` },
          poolSize: cell.poolSize,
          onConnect: (_client, use) => void (use === 'user' && connections++),
          logger: pino({ level: 'warn' }),
        });
        const login = async (i: number): Promise<void> => {
          const u = users[i % users.length]!;
          const outcome = await verifier.verify({ username: u.uid, password: u.password, mechanism: 'USER', tls: true });
          if (!outcome.ok) throw new Error(`login ${u.uid} refused: ${JSON.stringify(outcome)}`);
        };
        await runLoad({ concurrency, total: WARMUP }, login);
        connections = 0;
        const cpu0 = process.cpuUsage();
        const slapd0 = readProcCpu(slapd.pid).totalMs;
        const r = await runLoad({ concurrency, total: logins }, login);
        const cpu = process.cpuUsage(cpu0);
        const slapdMs = readProcCpu(slapd.pid).totalMs - slapd0;
        verifier.close();
        samples.get(cell)!.push({ perSecond: r.perSecond, cpuMsPerLogin: (cpu.user + cpu.system) / 1000 / r.ops, slapdCpuMsPerLogin: slapdMs / r.ops, connections });
      }
    }
    const cellText = (s: Summary, d = 1): string => `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
    log(`${logins} logins (bind mode) at concurrency ${concurrency}, ${runs} runs per cell, node ${process.version}`);
    log('');
    log('| transport | poolSize | logins/s | popgate CPU ms/login | slapd CPU ms/login | connections opened |');
    log('|---|---|---|---|---|---|');
    for (const cell of cells) {
      const s = samples.get(cell)!;
      log(
        `| ${cell.transport} | ${cell.poolSize} | ${cellText(summarize(s.map((x) => x.perSecond)), 0)} | ${cellText(summarize(s.map((x) => x.cpuMsPerLogin)), 3)} | ${cellText(summarize(s.map((x) => x.slapdCpuMsPerLogin)), 3)} | ${cellText(summarize(s.map((x) => x.connections)), 0)} |`,
      );
    }
  } finally {
    await slapd.stop();
    await rm(pki.dir, { recursive: true, force: true });
  }
}

await main();
