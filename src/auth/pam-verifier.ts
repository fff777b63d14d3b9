import { GatewayError } from '../errors.js';
import { KdcGate, type KdcGateOptions } from '../kerberos/binding.js';
import type { NativePamResult } from '../kerberos/native.js';
import type { PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';

/** The addon call the verifier needs (native/src/pam.cc). */
export interface PamAuthenticator {
  pamAuthenticate(service: string, user: string, password: Buffer, accountCheck: boolean, rhost?: string): Promise<NativePamResult>;
}

export interface PamVerifierOptions {
  readonly pam: PamAuthenticator;
  /** PAM service name (/etc/pam.d/<service>). */
  readonly service: string;
  /** Run pam_acct_mgmt after a good password. */
  readonly accountCheck: boolean;
  /** Caps, queues and times out the calls; build it with {@link pamGate}. */
  readonly gate: KdcGate;
}

/**
 * A gate for PAM calls: the KDC gate's cap, queue and deadline, with its own
 * wording. A PAM module can block a pool thread as long as a dead KDC can
 * (network lookups, pam_exec helpers), so the same rules hold: at most
 * `maxConcurrent` threads, a full queue and the deadline both fail the login
 * with [SYS/TEMP].
 */
export function pamGate(options: KdcGateOptions): KdcGate {
  return new KdcGate(options, { label: 'PAM call', busyFailure: 'timeout' });
}

/**
 * USER/PASS checked by Linux-PAM: pam_authenticate, then pam_acct_mgmt when
 * `accountCheck`, on the libuv pool. The user name is passed as typed (PAM
 * modules decide what it means); the client's address goes along as
 * PAM_RHOST (pam_faillock, pam_access and pam_succeed_if can use it). An empty password is refused here, before
 * PAM is asked. A PAM failure that is not about the user (a module missing,
 * a backend down, a prompt other than the password) rejects with
 * GatewayError('VERIFIER_UNAVAILABLE'), as does the gate's deadline.
 */
export function createPamVerifier(opts: PamVerifierOptions): PasswordVerifier {
  return {
    name: 'pam',
    async verify(request: PasswordRequest): Promise<VerifyOutcome> {
      const user = request.username;
      if (user === '' || user.includes('\0')) return { ok: false, reason: 'unknown-user' };
      if (request.password === '') return { ok: false, reason: 'bad-password' };
      if (request.password.includes('\0')) return { ok: false, reason: 'bad-password' };
      let answer: NativePamResult;
      const rhost = request.client?.remoteAddress ?? request.remoteAddress;
      try {
        answer = await opts.gate.run(() => {
          const password = Buffer.from(request.password, 'utf8');
          try {
            // The addon copies the password before this returns.
            return opts.pam.pamAuthenticate(opts.service, user, password, opts.accountCheck, rhost || undefined);
          } finally {
            password.fill(0);
          }
        });
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new GatewayError('VERIFIER_UNAVAILABLE', `pam: ${why}`, { cause: err });
      }
      switch (answer.result) {
        case 'ok':
          return { ok: true, user };
        case 'bad-password':
        case 'unknown-user':
        case 'disabled':
          return { ok: false, reason: answer.result };
        default:
          throw new GatewayError(
            'VERIFIER_UNAVAILABLE',
            `pam: service ${opts.service}, ${answer.stage} stage: ${answer.message} (PAM code ${answer.code})`,
          );
      }
    },
    close() {},
  };
}
