import type { AuthorizedRequest, ChallengeRequest, PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';

/**
 * Verifiers tried in order, like a passdb chain: a user one verifier does not
 * know falls through to the next; a definite "wrong password" or "disabled"
 * stops the chain (a user-file entry must not be bypassed with a realm
 * password). An unavailable verifier (rejection) stops it too, so the client
 * gets [SYS/TEMP] rather than a misleading [AUTH]. Challenge checks and
 * authorizations go to the verifiers that offer them, in the same order.
 */
export function createVerifierChain(verifiers: readonly PasswordVerifier[]): PasswordVerifier {
  if (verifiers.length === 0) throw new Error('verifier chain needs at least one verifier');
  if (verifiers.length === 1) return verifiers[0]!;

  async function firstDefinite(steps: Array<() => Promise<VerifyOutcome>>): Promise<VerifyOutcome> {
    let last: VerifyOutcome = { ok: false, reason: 'unknown-user' };
    for (const step of steps) {
      last = await step();
      if (last.ok || last.reason !== 'unknown-user') return last;
    }
    return last;
  }

  const challengers = verifiers.filter((v) => v.verifyChallenge);
  const authorizers = verifiers.filter((v) => v.authorize);
  const chain: PasswordVerifier = {
    name: verifiers.map((v) => v.name).join('>'),
    verify: (request: PasswordRequest) => firstDefinite(verifiers.map((v) => () => v.verify(request))),
    close() {
      for (const v of verifiers) v.close();
    },
  };
  return Object.assign(
    chain,
    challengers.length > 0
      ? { verifyChallenge: (r: ChallengeRequest) => firstDefinite(challengers.map((v) => () => v.verifyChallenge!(r))) }
      : {},
    authorizers.length > 0
      ? { authorize: (r: AuthorizedRequest) => firstDefinite(authorizers.map((v) => () => v.authorize!(r))) }
      : {},
  );
}
