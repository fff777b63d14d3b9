/**
 * `popgate doctor --config FILE [--user NAME] [--hostname NAME]... [--ca-file FILE] [--json]`:
 * the checklist of src/server/doctor, one line per check (✓ / ✗ / !) with
 * the fix under a failure; exit 1 when any check failed, 78 (EX_CONFIG) when
 * the configuration does not load, else 0.
 */
import { formatConfigIssues, inspectConfig } from '../config/index.js';
import { runDoctorChecks } from '../server/doctor/run.js';
import { defaultTrustAnchors, trustAnchorsFromFile, type TrustAnchors } from '../server/doctor/tls.js';
import type { DoctorResult } from '../server/doctor/types.js';

export interface DoctorCliOptions {
  readonly user?: string;
  readonly hostnames?: readonly string[];
  readonly caFile?: string;
  readonly json?: boolean;
}

const MARK: Record<DoctorResult['status'], string> = { ok: '✓', fail: '✗', warn: '!' };

/** The checklist as text: a heading per group, a line per check, the fix indented under it. */
export function formatResults(results: readonly DoctorResult[]): string {
  const out: string[] = [];
  let group: string | undefined;
  for (const r of results) {
    if (r.group !== group) {
      group = r.group;
      out.push(`${out.length > 0 ? '\n' : ''}${group}`);
    }
    out.push(`  ${MARK[r.status]} ${r.check}: ${r.detail}`);
    if (r.fix !== undefined && r.status !== 'ok') out.push(`      fix: ${r.fix}`);
  }
  const failed = results.filter((r) => r.status === 'fail').length;
  const warned = results.filter((r) => r.status === 'warn').length;
  out.push('', `${results.length} checks: ${failed} failed, ${warned} warnings`);
  return `${out.join('\n')}\n`;
}

/** 1 when any check failed, else 0. */
export function exitCode(results: readonly DoctorResult[]): number {
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}

export async function runDoctor(configFile: string, opts: DoctorCliOptions = {}, now: () => number = Date.now): Promise<number> {
  const inspected = await inspectConfig(configFile, process.env, { readSecrets: true });
  if (inspected.config === undefined || inspected.issues.length > 0) {
    process.stderr.write(`${formatConfigIssues(inspected.issues, configFile)}\n`);
    return 78; // EX_CONFIG
  }
  let trust: TrustAnchors;
  try {
    trust = opts.caFile !== undefined ? await trustAnchorsFromFile(opts.caFile) : defaultTrustAnchors();
  } catch (err) {
    process.stderr.write(`popgate doctor: --ca-file: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const results = await runDoctorChecks(inspected.config, {
    now: now(),
    trust,
    hostnames: opts.hostnames ?? [],
    ...(opts.user !== undefined ? { user: opts.user } : {}),
  });
  process.stdout.write(opts.json ? `${JSON.stringify(results, null, 2)}\n` : formatResults(results));
  return exitCode(results);
}
