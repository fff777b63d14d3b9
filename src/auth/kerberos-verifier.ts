import { GatewayError } from '../errors.js';
import { parsePrincipal, type PrincipalMapResult } from '../identity/principal-mapper.js';
import { KerberosError, type KerberosBinding } from '../kerberos/types.js';
import type { PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';

export interface KerberosPasswordVerifierOptions {
  readonly binding: Pick<KerberosBinding, 'verifyPassword'>;
  readonly keytab: string;
  /** Whose key verifies the KDC's answer: without it a rogue KDC could vouch for any password. */
  readonly servicePrincipal: string;
  /** Realm for bare user names (`alice` → `alice@REALM`). */
  readonly defaultRealm: string;
  readonly mapper: { map(principal: string): PrincipalMapResult };
}

/**
 * USER/PASS checked against the Kerberos realm (krb5_get_init_creds_password
 * + krb5_verify_init_creds, fail closed). The resulting principal goes
 * through the same mapping as ticket logins, so a realm password and a
 * ticket for the same principal land on the same local user.
 */
export function createKerberosPasswordVerifier(opts: KerberosPasswordVerifierOptions): PasswordVerifier {
  return {
    name: 'kerberos',
    async verify(request: PasswordRequest): Promise<VerifyOutcome> {
      const principal = request.username.includes('@') ? request.username : `${request.username}@${opts.defaultRealm}`;
      if (!parsePrincipal(principal)) return { ok: false, reason: 'unknown-user' };
      const mapped = opts.mapper.map(principal);
      // Checked before the KDC call: an unmappable name costs the KDC nothing.
      if (!mapped.ok) return { ok: false, reason: 'unknown-user' };
      let ok: boolean;
      try {
        ok = await opts.binding.verifyPassword({
          principal,
          password: request.password,
          keytab: opts.keytab,
          servicePrincipal: opts.servicePrincipal,
        });
      } catch (err) {
        const why = err instanceof KerberosError ? `${err.failure}: ${err.message}` : String(err);
        throw new GatewayError('VERIFIER_UNAVAILABLE', `kerberos: ${why}`, { cause: err });
      }
      return ok ? { ok: true, user: mapped.user } : { ok: false, reason: 'bad-password' };
    },
    close() {},
  };
}
