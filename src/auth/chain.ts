import type { PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';

/**
 * Verifiers tried in order, like a passdb chain: a user one verifier does not
 * know falls through to the next; a definite "wrong password" or "disabled"
 * stops the chain (a user-file entry must not be bypassed with a realm
 * password). An unavailable verifier (rejection) stops it too, so the client
 * gets [SYS/TEMP] rather than a misleading [AUTH].
 */
export function createVerifierChain(verifiers: readonly PasswordVerifier[]): PasswordVerifier {
  if (verifiers.length === 0) throw new Error('verifier chain needs at least one verifier');
  if (verifiers.length === 1) return verifiers[0]!;
  return {
    name: verifiers.map((v) => v.name).join('>'),
    async verify(request: PasswordRequest): Promise<VerifyOutcome> {
      let last: VerifyOutcome = { ok: false, reason: 'unknown-user' };
      for (const verifier of verifiers) {
        last = await verifier.verify(request);
        if (last.ok || last.reason !== 'unknown-user') return last;
      }
      return last;
    },
    close() {
      for (const v of verifiers) v.close();
    },
  };
}
