/**
 * PAM for tests without touching /etc/pam.d: cwrap's pam_wrapper
 * (LD_PRELOAD=libpam_wrapper.so, PAM_WRAPPER=1) makes libpam read service
 * files from PAM_WRAPPER_SERVICE_DIR, and nss_wrapper gives pam_unix a private
 * passwd/group. LD_PRELOAD only works from a process's start, so the verifier
 * runs in a child (test/helpers/pam-child.ts) over the real addon.
 *
 * Modules used (apt: libpam-wrapper, libnss-wrapper, libpam-modules):
 * - pam_matrix.so (ships with pam_wrapper): `user:password:service` lines;
 *   auth checks the password, account refuses an entry for another service
 *   (PAM_PERM_DENIED). It reports an unknown user as PAM_AUTH_ERR.
 * - pam_unix.so against nss_wrapper's passwd: an unknown user is
 *   PAM_USER_UNKNOWN. (pam_unix does not read NSS_WRAPPER_SHADOW here: a
 *   known user's password check ends in PAM_AUTHINFO_UNAVAIL.)
 * - pam_deny.so in the account stack: a locked account.
 * - pam_chatty.so (ships with pam_wrapper): info/error messages in the conversation.
 * - pam_ask_otp.so (test/fixtures/pam, compiled here): a PAM_PROMPT_ECHO_ON question.
 * - pam_exec.so /bin/sleep: a hung module (pam_succeed_if picks the users).
 * - pam_succeed_if.so rhost: only clients from 127.0.0.1 (PAM_RHOST).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PamChildReport, PamChildScenario } from './pam-child.js';

const LIBDIR = '/usr/lib/x86_64-linux-gnu';
export const PAM_MATRIX = `${LIBDIR}/pam_wrapper/pam_matrix.so`;

/** Seconds a "slow" user's login hangs in pam_exec. */
export const HANG_SECONDS = 4;

/** Users and passwords in the private PAM setup. */
export const PAM_USERS = { alice: 'secret', bob: 'hunter2' } as const;

/** The service files written, by name. */
export const PAM_SERVICES = ['popgate', 'popgate-locked', 'popgate-unix', 'popgate-hang', 'popgate-chatty', 'popgate-otp', 'popgate-rhost', 'popgate-gateway'] as const;

function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${String(code)}: ${err}`))));
  });
}

export interface PamSandboxOptions {
  /** Users and passwords of the pam_matrix services; default PAM_USERS. No ":" or newline in either. */
  readonly users?: Readonly<Record<string, string>>;
}

export interface PamSandbox {
  readonly dir: string;
  /**
   * The environment a process needs to use this PAM setup (LD_PRELOAD of
   * pam_wrapper and nss_wrapper, the service directory): give it to any
   * child that calls PAM, such as `popgate serve`.
   */
  readonly env: NodeJS.ProcessEnv;
  run(scenario: PamChildScenario): Promise<PamChildReport>;
  cleanup(): Promise<void>;
}

export async function createPamSandbox(options: PamSandboxOptions = {}): Promise<PamSandbox> {
  const users = options.users ?? PAM_USERS;
  for (const [u, p] of Object.entries(users)) if (/[:\n]/.test(u + p)) throw new Error(`pam_matrix cannot hold ${JSON.stringify(u)}: no ":" or newline`);
  const dir = await mkdtemp(path.join(tmpdir(), 'popgate-pam-'));
  const services = path.join(dir, 'pam.d');
  await mkdir(services);
  const otpModule = path.join(dir, 'pam_ask_otp.so');
  await run('cc', ['-shared', '-fPIC', '-o', otpModule, path.resolve('test/fixtures/pam/pam_ask_otp.c'), '-lpam']);
  // pam_matrix's account check looks at the user's first line only: one file per service.
  const matrix = async (service: string): Promise<string> => {
    const passdb = path.join(dir, `passdb.${service}`);
    await writeFile(passdb, Object.entries(users).map(([u, p]) => `${u}:${p}:${service}\n`).join(''));
    return `${PAM_MATRIX} passdb=${passdb}`;
  };
  const files: Record<(typeof PAM_SERVICES)[number], string[]> = {
    popgate: [`auth required ${await matrix('popgate')}`, `account required ${await matrix('popgate')}`],
    'popgate-locked': [`auth required ${await matrix('popgate-locked')}`, 'account requisite pam_deny.so'],
    // Info and error messages before the password prompt: not questions, so not refused.
    'popgate-chatty': [
      `auth required ${LIBDIR}/pam_wrapper/pam_chatty.so num_lines=3 info error`,
      `auth required ${await matrix('popgate-chatty')}`,
      `account required ${await matrix('popgate-chatty')}`,
    ],
    // A module asking a visible question (test/fixtures/pam/pam_ask_otp.c), before the password.
    'popgate-otp': [`auth required ${otpModule}`, `auth required ${await matrix('popgate-otp')}`],
    // PAM_RHOST decides, as pam_access or pam_faillock would use it.
    'popgate-rhost': [
      'auth requisite pam_succeed_if.so quiet rhost = 127.0.0.1',
      `auth required ${await matrix('popgate-rhost')}`,
      `account required ${await matrix('popgate-rhost')}`,
    ],
    // For a whole gateway (test/helpers/pam-gateway.ts): PAM_RHOST must be loopback, slow1 hangs,
    // and "locked" passes auth but is refused by the account stack.
    'popgate-gateway': [
      'auth requisite pam_succeed_if.so quiet rhost = 127.0.0.1',
      'auth [success=1 default=ignore] pam_succeed_if.so quiet user notin slow1',
      `auth required pam_exec.so quiet /bin/sleep ${HANG_SECONDS}`,
      `auth required ${await matrix('popgate-gateway')}`,
      'account requisite pam_succeed_if.so quiet user notin locked',
      `account required ${await matrix('popgate-gateway')}`,
    ],
    // nodelay: no pam_fail_delay pause after a failure.
    'popgate-unix': ['auth required pam_unix.so nodelay', 'account required pam_unix.so'],
    'popgate-hang': [
      'auth [success=1 default=ignore] pam_succeed_if.so quiet user notin slow1:slow2:slow3:slow4',
      `auth required pam_exec.so quiet /bin/sleep ${HANG_SECONDS}`,
      `auth required ${await matrix('popgate-hang')}`,
      `account required ${await matrix('popgate-hang')}`,
    ],
  };
  for (const [name, lines] of Object.entries(files)) await writeFile(path.join(services, name), `${lines.join('\n')}\n`);
  await writeFile(path.join(dir, 'passwd'), 'carol:x:4242:4242:Carol:/nonexistent:/bin/false\n');
  await writeFile(path.join(dir, 'group'), 'carol:x:4242:\n');

  const env = {
    ...process.env,
    LD_PRELOAD: `${LIBDIR}/libpam_wrapper.so ${LIBDIR}/libnss_wrapper.so`,
    PAM_WRAPPER: '1',
    PAM_WRAPPER_SERVICE_DIR: services,
    NSS_WRAPPER_PASSWD: path.join(dir, 'passwd'),
    NSS_WRAPPER_GROUP: path.join(dir, 'group'),
  };
  const child = path.resolve('test/helpers/pam-child.ts');
  const hooks = path.resolve('test/helpers/ts-resolve-hooks.mjs');

  return {
    dir,
    env,
    run(scenario) {
      return new Promise((resolve, reject) => {
        const p = spawn(process.execPath, ['--no-warnings', '--import', hooks, child, JSON.stringify(scenario)], { env, stdio: 'pipe' });
        let out = '';
        let err = '';
        let settled = false;
        // The report line is all we need: a child whose PAM calls still hang would
        // otherwise wait for them at exit (libuv joins its pool threads).
        p.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (settled || !out.includes('\n')) return;
          settled = true;
          try {
            resolve(JSON.parse(out) as PamChildReport);
          } catch {
            reject(new Error(`pam child printed no report: ${out} ${err}`));
          }
          p.kill('SIGKILL');
        });
        p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
        p.on('error', reject);
        p.on('close', (code) => {
          if (!settled) reject(new Error(`pam child exited ${String(code)} without a report: ${out} ${err}`));
        });
      });
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
