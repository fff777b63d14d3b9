/**
 * The login service's view of OAuth (BearerValidator in src/auth/types.ts):
 * the token validator's answer, and the mechanism's error data for a
 * refusal (RFC 7628 3.2.2 for OAUTHBEARER, Google's JSON for XOAUTH2).
 */
import type { OAuthConfig } from '../../config/oauth.js';
import type { BearerOutcome, BearerValidator } from '../types.js';
import { challengeOptions, oauthbearerErrorJson, xoauth2ErrorJson } from './error-challenge.js';
import { createTokenValidator, type TokenRefusal, type TokenValidatorDeps } from './token-validator.js';

const REFUSALS: ReadonlySet<string> = new Set<TokenRefusal>([
  'malformed',
  'expired',
  'not-yet-valid',
  'audience',
  'issuer',
  'signature',
  'unknown-key',
  'algorithm',
  'scope',
  'azp',
  'inactive',
  'unmapped',
]);

export function createBearerValidator(cfg: OAuthConfig, deps: TokenValidatorDeps = {}): BearerValidator {
  const tokens = createTokenValidator(cfg, deps);
  const challenge = challengeOptions(cfg);
  return {
    async validate(token, signal): Promise<BearerOutcome> {
      const r = await tokens.validate(token, signal);
      return r.ok ? { ok: true, user: r.user, subject: r.subject || r.user } : { ok: false, reason: r.reason };
    },
    errorChallenge(mechanism, reason) {
      // A name the token may not act as (authzid), like any other refusal of the token: invalid_token.
      const refusal: TokenRefusal = REFUSALS.has(reason) ? (reason as TokenRefusal) : 'unmapped';
      const json = mechanism === 'OAUTHBEARER' ? oauthbearerErrorJson(refusal, challenge) : xoauth2ErrorJson(refusal, challenge);
      return Buffer.from(json, 'utf8');
    },
    close: () => tokens.close(),
  };
}
