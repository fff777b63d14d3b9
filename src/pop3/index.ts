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
  LOGIN_USERNAME_CHALLENGE,
  SASL_CANCEL,
  SASL_EMPTY_CHALLENGE,
  decodeBase64Strict,
  decodeGssapiLayerResponse,
  decodePlain,
  decodeUtf8Strict,
  gssapiLayerOffer,
  hasForbiddenCredentialChars,
  loginPrompt,
  saslChallenge,
  type GssapiLayerFailure,
  type GssapiLayerResult,
  type PlainFailure,
  type PlainMessage,
  type PlainResult,
} from './sasl.js';
export {
  buildCapabilities,
  carriesPassword,
  passwordAuthUsable,
  usableMechanisms,
  type CapabilityContext,
} from './capa.js';
export { POP3_VERBS, Pop3Session, type Pop3Verb, type SessionState } from './session.js';
export { isKerberosCredentials } from './types.js';
export type {
  ErrorCode,
  GssAcceptResult,
  KerberosCredentials,
  LoginCredentials,
  PasswordCredentials,
  Pop3Action,
  Pop3SessionOptions,
  SaslMechanism,
} from './types.js';
