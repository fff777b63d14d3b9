export {
  createTokenValidator,
  MAX_TOKEN_LENGTH,
  tokenLogId,
  type TokenRefusal,
  type TokenResult,
  type TokenValidator,
  type TokenValidatorDeps,
} from './token-validator.js';
export { challengeOptions, oauthbearerErrorJson, xoauth2ErrorJson, type ChallengeOptions } from './error-challenge.js';
export { ClaimMapper, type ClaimMapperOptions, type ClaimMapResult } from './claim-mapper.js';
export type { IssuerAgents } from './issuer-http.js';
export { createBearerValidator } from './bearer-validator.js';
