/**
 * What a client is told when its bearer token is refused, as the JSON the
 * SASL layer base64-encodes into its `+ ` continuation line (the client then
 * answers with a dummy `AQ==` / empty line and gets the -ERR). Pure.
 *
 * OAUTHBEARER (RFC 7628 section 3.2.2):
 *   {"status":"invalid_token","scope":"mail","openid-configuration":"https://idp/.well-known/openid-configuration"}
 *   status: "insufficient_scope" for a scope refusal, else "invalid_token"
 *   (RFC 6750 section 3.1 error codes); scope: the required scopes, when any;
 *   openid-configuration: only when popgate itself finds the keys by discovery.
 *
 * XOAUTH2 (Google's form, https://developers.google.com/gmail/imap/xoauth2-protocol):
 *   {"status":"401","schemes":"bearer","scope":"mail"}
 *   status "400" for a token that is not one at all ('malformed'), else "401".
 */
import { discoveryUrl, type OAuthConfig } from '../../config/oauth.js';
import type { TokenRefusal } from './token-validator.js';

export interface ChallengeOptions {
  /** The scopes a token needs (auth.oauth.requiredScopes). */
  readonly scopes: readonly string[];
  /** The issuer's discovery document, when the configuration relies on discovery (no jwksUrl). */
  readonly openidConfiguration?: string;
}

/** The challenge options a configuration implies. */
export function challengeOptions(cfg: Pick<OAuthConfig, 'issuer' | 'jwksUrl' | 'requiredScopes'>): ChallengeOptions {
  return {
    scopes: cfg.requiredScopes,
    ...(cfg.jwksUrl === undefined ? { openidConfiguration: discoveryUrl(cfg.issuer) } : {}),
  };
}

/** The RFC 7628 error JSON for a refusal (not yet base64). */
export function oauthbearerErrorJson(reason: TokenRefusal, opts: ChallengeOptions): string {
  return JSON.stringify({
    status: reason === 'scope' ? 'insufficient_scope' : 'invalid_token',
    ...(opts.scopes.length > 0 ? { scope: opts.scopes.join(' ') } : {}),
    ...(opts.openidConfiguration !== undefined ? { 'openid-configuration': opts.openidConfiguration } : {}),
  });
}

/** Google's XOAUTH2 error JSON for a refusal (not yet base64). */
export function xoauth2ErrorJson(reason: TokenRefusal, opts: ChallengeOptions): string {
  return JSON.stringify({
    status: reason === 'malformed' ? '400' : '401',
    schemes: 'bearer',
    ...(opts.scopes.length > 0 ? { scope: opts.scopes.join(' ') } : {}),
  });
}
