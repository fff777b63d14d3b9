/**
 * Ticket verification without sockets: popgate's own binding
 * (src/kerberos/binding.ts over the native addon, the call a KPOP listener
 * makes per connection: keytab, service principals, replay cache) driven in
 * a child process of its own, `concurrency` calls in flight, as fast as the
 * libuv pool answers. Run by the benchmark as
 *
 *   UV_THREADPOOL_SIZE=16 KRB5_CONFIG=... node dist-bench/bench/krb-verify-micro.js '<json args>'
 *
 * args: { tokensFile, keytab, servicePrincipals, rcacheDir, concurrency, seconds, warmup, gate? }
 * (gate: the binding's cap on checks in flight, as `kerberos.ticketChecks.maxConcurrent`;
 * default popgate's own default, one per core)
 * (tokensFile: base64 GSS initial tokens, one per line; the AP-REQ inside
 * each is verified). Prints one JSON line: ops, elapsedMs, cpuMs (this
 * process, all threads), eld (event-loop delay, as in lib/preload.ts), ranOut.
 */
import { readFileSync } from 'node:fs';
import { loadKerberosBinding, ticketCheckGate } from '../src/kerberos/binding.js';
import { apReqFromGssToken } from '../test/helpers/kdc.js';
import { runLoad } from './lib/load.js';
import { eldMonitor } from './lib/preload.js';

interface Args {
  tokensFile: string;
  keytab: string;
  servicePrincipals: string[];
  rcacheDir: string;
  concurrency: number;
  seconds: number;
  warmup: number;
  gate?: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const apReqs = readFileSync(args.tokensFile, 'latin1')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => apReqFromGssToken(Buffer.from(l, 'base64')));
  const binding = loadKerberosBinding({
    ticketGate: ticketCheckGate(args.gate !== undefined ? { maxConcurrent: args.gate } : {}),
  });
  const opts = { keytab: args.keytab, servicePrincipals: args.servicePrincipals, rcacheDir: args.rcacheDir };
  const warm = Math.min(args.warmup, apReqs.length);
  // Warm-up, all at once: every pool thread creates its krb5_context on first use.
  if (warm > 0) await runLoad({ concurrency: warm, total: warm }, async (i) => void (await binding.verifyApReq(apReqs[i]!, opts)));
  const eld = eldMonitor();
  const cpu0 = process.cpuUsage();
  const r = await runLoad(
    { concurrency: args.concurrency, durationMs: args.seconds * 1000, total: apReqs.length - warm },
    async (i) => void (await binding.verifyApReq(apReqs[warm + i]!, opts)),
  );
  const cpu = process.cpuUsage(cpu0);
  eld.histogram.disable();
  const { count, p50Ms, p99Ms, maxMs } = eld.figures();
  process.stdout.write(
    `${JSON.stringify({
      ops: r.ops,
      elapsedMs: r.elapsedMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      ranOut: r.exhausted,
      eld: { count, p50Ms, p99Ms, maxMs },
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`krb-verify-micro: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
