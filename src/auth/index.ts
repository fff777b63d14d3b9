export type { PasswordRequest, PasswordVerifier, VerifyOutcome } from './types.js';
export {
  BCRYPT_DEFAULT_COST,
  BCRYPT_MAX_PASSWORD_BYTES,
  DUMMY_BCRYPT_HASH,
  DUMMY_SCRAM_HASH,
  DUMMY_SCRYPT_HASH,
  HASH_BOUNDS,
  SCRAM_DEFAULT_ITERATIONS,
  SCRYPT_DEFAULT_LOG_N,
  SCRYPT_DEFAULT_P,
  SCRYPT_DEFAULT_R,
  SCRYPT_KEY_BYTES,
  SCRYPT_SALT_BYTES,
  defaultDummyHash,
  dummyHashLike,
  formatScramHash,
  hashPassword,
  parseHash,
  verifyParsedHash,
  verifyPasswordHash,
} from './password-hash.js';
export type { BcryptHash, HashAlgorithm, HashPasswordOptions, ParsedHash, ScramHash, ScryptHash } from './password-hash.js';
export {
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  ScramServerExchange,
  deriveScramCredentials,
  randomScramNonce,
  scramDummyCredentials,
  startScram,
  tlsExporterData,
  tlsServerEndPointData,
  type ChannelBindingType,
  type ScramChannel,
  type ScramCredentials,
  type ScramFailure,
  type ScramFinal,
  type ScramLookup,
  type ScramRefusal,
  type ScramStart,
  type ScramStartOptions,
} from './scram.js';
export { createUserFileVerifier, parseUserFile } from './user-file.js';
export type {
  ParsedUserFile,
  UserFileLineProblem,
  UserFileProblem,
  UserFileVerifier,
  UserFileVerifierOptions,
} from './user-file.js';
export { createVerifierChain } from './chain.js';
export {
  createCredentialsCache,
  credentialsCacheKey,
  type CredentialsCache,
  type CredentialsCacheEvent,
  type CredentialsCacheOptions,
} from './credentials-cache.js';
export { createHttpAuthVerifier, type HttpAuthOptions, type HttpAuthVerifier } from './http-auth.js';
