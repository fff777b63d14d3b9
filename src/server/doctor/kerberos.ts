/**
 * The Kerberos part of `popgate doctor`, with MIT's own tools: popgate's
 * addon only answers "has the keytab a key for each principal"
 * (checkKeytab), not which kvno and enctypes, and has no AS exchange from a
 * keytab, so:
 *  - `klist -k -t -e KEYTAB`: each kerberos.servicePrincipals entry, its
 *    newest kvno and its enctypes;
 *  - `kinit -k -t KEYTAB -c <private ccache> passwordServicePrincipal`: the
 *    KDC answers an AS exchange, and the ticket's start time (the KDC's
 *    clock) against ours gives the clock skew (MIT refuses beyond 300 s);
 *  - the replay cache directory is writable.
 * The ccache lives in a private temp dir removed afterwards; KRB5_CONFIG is
 * kerberos.krb5Config when set. Commands are injectable for tests.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KerberosConfig } from '../../config/schema.js';
import { errText, fail, ok, warn, type DoctorResult } from './types.js';

/** MIT's default clockskew, in seconds. */
export const MAX_SKEW_SECONDS = 300;
/** Skew above this warns (well before the KDC refuses). */
export const WARN_SKEW_SECONDS = 60;

export type RunCommand = (cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number) => Promise<{ code: number; stdout: string; stderr: string }>;

export const runCommand: RunCommand = (cmd, args, env, timeoutMs) =>
  new Promise((resolve, reject) => {
    execFile(cmd, [...args], { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err);
      else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });

export interface KeytabEntry {
  readonly kvno: number;
  readonly principal: string;
  readonly enctype: string;
}

/** The entries of `klist -k -t -e` output. */
export function parseKlistKeytab(text: string): KeytabEntry[] {
  const out: KeytabEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+\S+\s+\S+\s+(\S+)\s+\(([^)]+)\)\s*$/.exec(line);
    if (m) out.push({ kvno: Number(m[1]), principal: m[2]!, enctype: m[3]! });
  }
  return out;
}

/** The start time (seconds since the epoch, UTC) of the first ticket in `klist` output run with LC_ALL=C TZ=UTC. */
export function parseTicketStart(text: string): number | undefined {
  const m = /^(\d\d)\/(\d\d)\/(\d\d(?:\d\d)?)\s+(\d\d):(\d\d):(\d\d)\s/m.exec(text);
  if (!m) return undefined;
  const year = m[3]!.length === 2 ? 2000 + Number(m[3]) : Number(m[3]);
  return Date.UTC(year, Number(m[1]) - 1, Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6])) / 1000;
}

const WEAK = /des|rc4|arcfour/i;

export interface KerberosDoctorOptions {
  /** Milliseconds since the epoch, read when the KDC answered. */
  readonly now: () => number;
  readonly run?: RunCommand;
  readonly env?: NodeJS.ProcessEnv;
}

export async function checkKerberos(k: KerberosConfig, opts: KerberosDoctorOptions): Promise<DoctorResult[]> {
  const run = opts.run ?? runCommand;
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), LC_ALL: 'C', TZ: 'UTC', ...(k.krb5Config !== undefined ? { KRB5_CONFIG: k.krb5Config } : {}) };
  const results: DoctorResult[] = [];

  // Keytab entries.
  let entries: KeytabEntry[] | undefined;
  try {
    const r = await run('klist', ['-k', '-t', '-e', k.keytab], env, k.kdc.timeout);
    if (r.code !== 0) results.push(fail('kerberos', `keytab ${k.keytab}`, `klist cannot read it: ${r.stderr.trim() || `exit ${r.code}`}`, 'make the keytab exist and be readable by the user popgate runs as'));
    else entries = parseKlistKeytab(r.stdout);
  } catch (err) {
    results.push(fail('kerberos', `keytab ${k.keytab}`, `cannot run klist: ${errText(err)}`, 'install MIT Kerberos tools (Debian: krb5-user)'));
  }
  if (entries !== undefined) {
    for (const principal of k.servicePrincipals) {
      const check = `keytab key for ${principal}`;
      const mine = entries.filter((e) => e.principal === principal);
      if (mine.length === 0) {
        results.push(fail('kerberos', check, `not in ${k.keytab}`, `export its key into the keytab: kadmin -q "ktadd -k ${k.keytab} ${principal}"`));
        continue;
      }
      const kvno = Math.max(...mine.map((e) => e.kvno));
      const enctypes = [...new Set(mine.filter((e) => e.kvno === kvno).map((e) => e.enctype))];
      const detail = `kvno ${kvno}: ${enctypes.join(', ')}`;
      if (enctypes.every((e) => WEAK.test(e))) {
        results.push(warn('kerberos', check, `${detail} (only weak enctypes)`, `add AES keys: kadmin -q "cpw -randkey -e aes256-cts:normal,aes128-cts:normal ${principal}", then ktadd again`));
      } else results.push(ok('kerberos', check, detail));
    }
  }

  // AS exchange and clock skew.
  const principal = k.passwordServicePrincipal;
  const dir = await mkdtemp(join(tmpdir(), 'popgate-doctor-krb5-'));
  const ccache = `FILE:${join(dir, 'ccache')}`;
  const kdcCheck = `KDC answers for ${principal}`;
  try {
    const r = await run('kinit', ['-k', '-t', k.keytab, '-c', ccache, principal], env, k.kdc.timeout);
    const answeredAt = opts.now();
    if (r.code !== 0) {
      const why = r.stderr.trim() || `exit ${r.code}`;
      const skew = /skew/i.test(why);
      results.push(
        fail(
          'kerberos',
          skew ? 'clock skew' : kdcCheck,
          `kinit -k: ${why}`,
          skew ? 'synchronise this host\'s clock with the KDC (NTP)' : 'make the KDC reachable from this host (krb5.conf [realms] kdc) and the keytab key current (kvno as in the KDC)',
        ),
      );
    } else {
      results.push(ok('kerberos', kdcCheck, 'AS exchange with the keytab key succeeded'));
      const list = await run('klist', ['-c', ccache], env, k.kdc.timeout);
      const start = parseTicketStart(list.stdout);
      if (start === undefined) {
        results.push(warn('kerberos', 'clock skew', 'not measured: klist printed no ticket time', 'compare this host\'s clock with the KDC\'s by hand'));
      } else {
        const skew = Math.round(start - answeredAt / 1000);
        const detail = `this host is ${Math.abs(skew)} s ${skew > 0 ? 'behind' : 'ahead of'} the KDC`;
        if (Math.abs(skew) > MAX_SKEW_SECONDS) results.push(fail('kerberos', 'clock skew', `${detail} (limit ${MAX_SKEW_SECONDS} s)`, 'synchronise this host\'s clock with the KDC (NTP)'));
        else if (Math.abs(skew) > WARN_SKEW_SECONDS) results.push(warn('kerberos', 'clock skew', `${detail} (limit ${MAX_SKEW_SECONDS} s)`, 'synchronise this host\'s clock with the KDC (NTP) before it reaches the limit'));
        else results.push(ok('kerberos', 'clock skew', `${detail} (limit ${MAX_SKEW_SECONDS} s)`));
      }
    }
  } catch (err) {
    results.push(fail('kerberos', kdcCheck, `cannot run kinit: ${errText(err)}`, 'install MIT Kerberos tools (Debian: krb5-user)'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  // Replay cache.
  try {
    await access(k.rcacheDir, constants.W_OK | constants.X_OK);
    results.push(ok('kerberos', 'replay cache directory', `${k.rcacheDir} is writable`));
  } catch (err) {
    results.push(fail('kerberos', 'replay cache directory', `${k.rcacheDir}: ${(err as NodeJS.ErrnoException).code ?? errText(err)}`, `create ${k.rcacheDir} writable by the user popgate runs as (every ticket check fails without it)`));
  }
  return results;
}
