/** The sans-I/O POP3 protocol core: framing, parsing, SASL, CAPA and the session machine. */
export { LineFramer, type FramedLine } from './framer.js';
export {
  MAX_KEYWORD_LENGTH,
  maskCommandForLog,
  parseCommand,
  type CommandParseError,
  type CommandParseFailure,
  type ParsedCommand,
  type Pop3Command,
} from './command.js';
export {
  GSSAPI_LAYER_NONE,
  LOGIN_PASSWORD_CHALLENGE,
  MAX_CHALLENGE_LENGTH,
  LOGIN_USERNAME_CHALLENGE,
  SASL_CANCEL,
  SASL_EMPTY_CHALLENGE,
  cramMd5Challenge,
  decodeBase64Strict,
  decodeCramMd5Response,
  decodeGssapiLayerResponse,
  decodeNameDigest,
  decodePlain,
  decodeUtf8Strict,
  gssapiLayerOffer,
  hasForbiddenCredentialChars,
  isValidChallengeString,
  loginPrompt,
  normaliseHexDigest,
  saslChallenge,
  type GssapiLayerFailure,
  type GssapiLayerResult,
  type NameDigestFailure,
  type NameDigestResult,
  type PlainFailure,
  type PlainMessage,
  type PlainResult,
} from './sasl.js';
export {
  buildCapabilities,
  carriesPassword,
  externalUsable,
  mechanismUsable,
  passwordAuthUsable,
  usableMechanisms,
  type CapabilityContext,
} from './capa.js';
export { POP3_VERBS, Pop3Session, type Pop3Verb, type SessionState } from './session.js';
export {
  SASL_MECHANISMS,
  isChallengeCredentials,
  isExternalCredentials,
  isKerberosCredentials,
  isPasswordCredentials,
} from './types.js';
export type {
  ChallengeCredentials,
  ErrorCode,
  ExternalCredentials,
  GssAcceptResult,
  KerberosCredentials,
  LoginCredentials,
  PasswordCredentials,
  Pop3Action,
  Pop3SessionOptions,
  SaslMechanism,
} from './types.js';
