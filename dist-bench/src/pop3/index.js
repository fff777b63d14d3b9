/** The sans-I/O POP3 protocol core: framing, parsing, SASL, CAPA and the session machine. */
export { LineFramer } from './framer.js';
export { MAX_KEYWORD_LENGTH, maskCommandForLog, parseCommand, } from './command.js';
export { LOGIN_PASSWORD_CHALLENGE, LOGIN_USERNAME_CHALLENGE, SASL_CANCEL, SASL_EMPTY_CHALLENGE, decodeBase64Strict, decodePlain, decodeUtf8Strict, hasForbiddenCredentialChars, loginPrompt, } from './sasl.js';
export { buildCapabilities, passwordAuthUsable, usableMechanisms } from './capa.js';
export { POP3_VERBS, Pop3Session } from './session.js';
//# sourceMappingURL=index.js.map