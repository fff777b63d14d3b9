/**
 * The AUTH exchange (RFC 5034) once the session has found the mechanism
 * usable: from `AUTH mech [initial-response]` through the client's
 * continuation lines and the waits on the host's GSS context (GSSAPI) and
 * SASL exchange (SCRAM), to credentials for the session to emit or a
 * refusal for it to settle. It holds where the exchange stands; the session
 * owns the state and the login, and lends them through `ExchangeHost`.
 * session.ts's header draws the wire exchanges.
 */
import { GatewayError, type ErrorCode } from '../errors.js';
import { isServerTrouble, protocolError, reply, type Failure, type Outcome } from './outcome.js';
import { BEARER_FAILURE, GSSAPI_LAYER_FAILURE, NAME_DIGEST_FAILURE, PLAIN_FAILURE, credentialProblem } from './refusals.js';
import {
  SASL_CANCEL,
  SASL_EMPTY_CHALLENGE,
  cramMd5Challenge,
  decodeBase64Strict,
  decodeCramMd5Response,
  decodeGssapiLayerResponse,
  decodeOAuthBearer,
  decodePlain,
  decodeXOAuth2,
  decodeUtf8Strict,
  gssapiLayerOffer,
  hasForbiddenCredentialChars,
  isValidChallengeString,
  loginPrompt,
  saslChallenge,
} from './sasl.js';
import type {
  GssAcceptResult,
  HostSaslMechanism,
  LoginCredentials,
  Pop3Action,
  Pop3SessionOptions,
  SaslMechanism,
} from './types.js';

/** The session states an exchange moves the session to (all of them `SessionState`s). */
export type ExchangeState = 'AUTHORIZATION' | 'SASL' | 'GSS_PENDING' | 'SASL_PENDING';

/** What an exchange needs of its session. */
export interface ExchangeHost {
  /** Puts the session in `state`: waiting for the client (SASL) or the host (*_PENDING), or reading commands again. */
  enter(state: ExchangeState): void;
  /** Emits the credentials for verification and waits for the host's answer. */
  authenticate(credentials: LoginCredentials): Pop3Action[];
  /** A user name the client presented: the session's `username`, for logs. */
  presented(username: string): void;
  /** The verified TLS client certificate's identity (EXTERNAL), as the channel stands now. */
  externalIdentity(): string | undefined;
}

/** Where an AUTH exchange stands while it waits for the client's next line. */
type SaslExchange =
  | { readonly mech: 'PLAIN' }
  | { readonly mech: 'LOGIN'; readonly step: 'username' }
  | { readonly mech: 'LOGIN'; readonly step: 'password'; readonly username: string }
  /** GSSAPI: the next context token (`first`: no token fed to the acceptor yet). */
  | { readonly mech: 'GSSAPI'; readonly step: 'accept'; readonly first: boolean }
  /** GSSAPI: the client's answer to the final context token (RFC 4752: no data). */
  | { readonly mech: 'GSSAPI'; readonly step: 'ack'; readonly principal: string }
  /** GSSAPI: the client's wrapped security-layer answer. */
  | { readonly mech: 'GSSAPI'; readonly step: 'layer'; readonly principal: string }
  /** CRAM-MD5: the client's `username SP digest` answer to `challenge`. */
  | { readonly mech: 'CRAM-MD5'; readonly challenge: string }
  /** EXTERNAL: the client's authorization identity (possibly empty). */
  | { readonly mech: 'EXTERNAL' }
  /** OAUTHBEARER / XOAUTH2: the client's message (no initial response was sent). */
  | { readonly mech: 'OAUTHBEARER' | 'XOAUTH2' }
  /** A refused bearer token's error challenge was sent (RFC 7628 3.2.2): any answer gets the `-ERR`. */
  | { readonly mech: 'BEARER-ERROR'; readonly failure: Failure }
  /** A host-read mechanism (SCRAM): the client's next message for the host's exchange. */
  | { readonly mech: HostSaslMechanism; readonly step: 'message'; readonly first: boolean }
  /** SCRAM: the server-final message was sent; the client's empty answer completes the login. */
  | { readonly mech: HostSaslMechanism; readonly step: 'ack'; readonly username: string; readonly requestedUser: string };

/** Which host answer a GSSAPI exchange waits for (state GSS_PENDING). */
type GssWait =
  | { readonly op: 'accept' }
  | { readonly op: 'wrap'; readonly principal: string }
  | { readonly op: 'unwrap'; readonly principal: string };

/**
 * The session's AUTH exchange, one at a time. The methods named after
 * Pop3Session's host answers run once the session has checked its state
 * (GSS_PENDING, SASL_PENDING); they check what the exchange waits for.
 */
export class AuthExchange {
  private sasl: SaslExchange | undefined;
  private gss: GssWait | undefined;
  /** The host-read mechanism whose `saslStep` the host is working on (SASL_PENDING). */
  private hostStep: HostSaslMechanism | undefined;

  constructor(
    private readonly host: ExchangeHost,
    private readonly opts: Pick<Pop3SessionOptions, 'challengeFactory'>,
  ) {}

  /**
   * Whether an AUTH GSSAPI exchange is in progress (waiting for a client
   * line or for the host).
   */
  get gssInProgress(): boolean {
    return this.gss !== undefined || this.sasl?.mech === 'GSSAPI';
  }

  /** Forgets any exchange (the session closed). */
  reset(): void {
    this.sasl = undefined;
    this.gss = undefined;
    this.hostStep = undefined;
  }

  /** `AUTH mech [initial]` for a mechanism the session found usable on this channel. */
  start(mech: SaslMechanism, initial: string | undefined): Outcome {
    if (mech === 'GSSAPI') return this.startGssapi(initial);
    if (mech === 'CRAM-MD5') return this.startCramMd5(initial);
    if (mech === 'EXTERNAL') return this.startExternal(initial);
    if (mech === 'OAUTHBEARER' || mech === 'XOAUTH2' || mech === 'SCRAM-SHA-256' || mech === 'SCRAM-SHA-256-PLUS') {
      if (initial === undefined) {
        this.beginSasl(mech === 'OAUTHBEARER' || mech === 'XOAUTH2' ? { mech } : { mech, step: 'message', first: true });
        return [reply(SASL_EMPTY_CHALLENGE)];
      }
      const data = decodeBase64Strict(initial);
      if (data === undefined) return protocolError('BAD_BASE64');
      return mech === 'OAUTHBEARER' || mech === 'XOAUTH2' ? this.finishBearer(mech, data) : this.requestHostStep(mech, data, true);
    }
    if (initial === undefined) {
      this.beginSasl(mech === 'PLAIN' ? { mech: 'PLAIN' } : { mech: 'LOGIN', step: 'username' });
      return [reply(mech === 'PLAIN' ? SASL_EMPTY_CHALLENGE : loginPrompt('username'))];
    }
    const decoded = decodeBase64Strict(initial);
    if (decoded === undefined) return protocolError('BAD_BASE64');
    return mech === 'PLAIN' ? this.finishPlain(decoded) : this.loginUsername(decoded);
  }

  /**
   * A refused bearer login whose host sent an error challenge: the challenge
   * goes out and the `failure` answers the client's reply to it.
   */
  errorChallenge(failure: Failure, challenge: Buffer): Pop3Action[] {
    this.beginSasl({ mech: 'BEARER-ERROR', failure });
    return [reply(saslChallenge(challenge))];
  }

  /** `AUTH GSSAPI [token]`: an absent or empty (`=`) initial response asks for the first token. */
  private startGssapi(initial: string | undefined): Outcome {
    const token = initial === undefined ? Buffer.alloc(0) : decodeBase64Strict(initial);
    if (token === undefined) return protocolError('BAD_BASE64');
    if (token.length === 0) {
      this.beginSasl({ mech: 'GSSAPI', step: 'accept', first: true });
      return [reply(SASL_EMPTY_CHALLENGE)];
    }
    return this.requestGss({ op: 'accept' }, { kind: 'gssAccept', token, first: true });
  }

  /** `AUTH CRAM-MD5`: send a fresh challenge. The server speaks first, so an initial response is an error. */
  private startCramMd5(initial: string | undefined): Outcome {
    if (initial !== undefined) return protocolError('BAD_SYNTAX');
    const factory = this.opts.challengeFactory;
    if (factory === undefined) throw new GatewayError('INTERNAL', 'CRAM-MD5 enabled without a challengeFactory');
    const challenge = factory();
    if (!isValidChallengeString(challenge)) {
      throw new GatewayError('INTERNAL', 'Pop3SessionOptions.challengeFactory() returned a value not of the form <left@right>');
    }
    this.beginSasl({ mech: 'CRAM-MD5', challenge });
    return [reply(cramMd5Challenge(challenge))];
  }

  /** `AUTH EXTERNAL [authzid]`: without an initial response, ask for the authzid with an empty challenge. */
  private startExternal(initial: string | undefined): Outcome {
    if (initial === undefined) {
      this.beginSasl({ mech: 'EXTERNAL' });
      return [reply(SASL_EMPTY_CHALLENGE)];
    }
    const decoded = decodeBase64Strict(initial);
    if (decoded === undefined) return protocolError('BAD_BASE64');
    return this.finishExternal(decoded);
  }

  // ---- SASL exchange -----------------------------------------------------

  private beginSasl(exchange: SaslExchange): void {
    this.sasl = exchange;
    this.host.enter('SASL');
  }

  /** The client's response to a `+ ` challenge. */
  onSaslResponse(line: Buffer): Outcome {
    const exchange = this.sasl;
    // Whatever happens, this step ends the current wait; a next step re-enters SASL.
    this.sasl = undefined;
    this.host.enter('AUTHORIZATION');
    if (exchange === undefined) throw new GatewayError('INTERNAL', 'SASL state without an exchange');
    // Whatever the client answers an error challenge with (AQ==, `*`, anything), the login failed.
    if (exchange.mech === 'BEARER-ERROR') return exchange.failure;

    // latin1 maps bytes 1:1, so any non-ASCII byte fails the base64 check.
    const text = line.toString('latin1');
    if (text === SASL_CANCEL) return protocolError('AUTH_CANCELLED');
    const decoded = decodeBase64Strict(text);
    if (decoded === undefined) return protocolError('BAD_BASE64');

    switch (exchange.mech) {
      case 'PLAIN':
        return this.finishPlain(decoded);
      case 'GSSAPI':
        return this.gssapiResponse(exchange, decoded);
      case 'CRAM-MD5':
        return this.finishCramMd5(exchange.challenge, decoded);
      case 'EXTERNAL':
        return this.finishExternal(decoded);
      case 'OAUTHBEARER':
      case 'XOAUTH2':
        return this.finishBearer(exchange.mech, decoded);
      case 'SCRAM-SHA-256':
      case 'SCRAM-SHA-256-PLUS':
        if (exchange.step === 'message') return this.requestHostStep(exchange.mech, decoded, exchange.first);
        // RFC 5034 4: the client answers the server's final data with an empty response.
        if (decoded.length > 0) return protocolError('BAD_SYNTAX');
        return this.host.authenticate({ mechanism: exchange.mech, username: exchange.username, requestedUser: exchange.requestedUser });
      case 'LOGIN':
        if (exchange.step === 'username') return this.loginUsername(decoded);
        return this.loginPassword(exchange.username, decoded);
    }
  }

  /** A decoded client line in a GSSAPI exchange: hand it to the host's GSS context. */
  private gssapiResponse(exchange: Extract<SaslExchange, { mech: 'GSSAPI' }>, data: Buffer): Outcome {
    switch (exchange.step) {
      case 'accept':
        // A context token is never empty; do not bother the acceptor with one.
        if (data.length === 0) return protocolError('BAD_SYNTAX');
        return this.requestGss({ op: 'accept' }, { kind: 'gssAccept', token: data, first: exchange.first });
      case 'ack':
        // RFC 4752 expects no data here; whatever the client sent is unused.
        return this.requestGss(
          { op: 'wrap', principal: exchange.principal },
          { kind: 'gssWrap', data: gssapiLayerOffer() },
        );
      case 'layer':
        if (data.length === 0) return protocolError('BAD_SYNTAX');
        return this.requestGss({ op: 'unwrap', principal: exchange.principal }, { kind: 'gssUnwrap', token: data });
    }
  }

  private finishPlain(message: Buffer): Outcome {
    const plain = decodePlain(message);
    if (!plain.ok) return protocolError(PLAIN_FAILURE[plain.reason]);
    this.host.presented(plain.authcid);
    if (plain.authzid === '') {
      return this.host.authenticate({ mechanism: 'PLAIN', username: plain.authcid, password: plain.passwd });
    }
    // Acting as another user is not offered to clients: refuse without
    // verifying the password, but spend an attempt as any failed login does.
    if (plain.authzid !== plain.authcid) return { fail: 'AUTH_FAILED', count: 'auth' };
    return this.host.authenticate({ mechanism: 'PLAIN', username: plain.authcid, authzid: plain.authzid, password: plain.passwd });
  }

  private finishCramMd5(challenge: string, message: Buffer): Outcome {
    const answer = decodeCramMd5Response(message);
    if (!answer.ok) return protocolError(NAME_DIGEST_FAILURE[answer.reason]);
    this.host.presented(answer.username);
    return this.host.authenticate({ mechanism: 'CRAM-MD5', username: answer.username, challenge, response: answer.digest });
  }

  /** An OAUTHBEARER / XOAUTH2 message: the token goes to the host, which validates it and maps its user. */
  private finishBearer(mech: 'OAUTHBEARER' | 'XOAUTH2', message: Buffer): Outcome {
    const parsed = mech === 'OAUTHBEARER' ? decodeOAuthBearer(message) : decodeXOAuth2(message);
    if (!parsed.ok) return protocolError(BEARER_FAILURE[parsed.reason]);
    if (parsed.requestedUser !== '') this.host.presented(parsed.requestedUser);
    return this.host.authenticate({ mechanism: mech, token: parsed.token, requestedUser: parsed.requestedUser });
  }

  /** The EXTERNAL authorization identity ('' when empty): the host checks it against the certificate's identity. */
  private finishExternal(raw: Buffer): Outcome {
    const identity = this.host.externalIdentity();
    if (identity === undefined) throw new GatewayError('INTERNAL', 'AUTH EXTERNAL without an externalIdentity');
    const requestedUser = decodeUtf8Strict(raw);
    if (requestedUser === undefined || hasForbiddenCredentialChars(requestedUser)) return protocolError('BAD_CHARACTERS');
    this.host.presented(identity);
    return this.host.authenticate({ mechanism: 'EXTERNAL', requestedUser });
  }

  private loginUsername(raw: Buffer): Outcome {
    const username = decodeUtf8Strict(raw);
    if (username === undefined) return protocolError('BAD_CHARACTERS');
    const problem = credentialProblem(username);
    if (problem) return protocolError(problem);
    this.host.presented(username);
    this.beginSasl({ mech: 'LOGIN', step: 'password', username });
    return [reply(loginPrompt('password'))];
  }

  private loginPassword(username: string, raw: Buffer): Outcome {
    const password = decodeUtf8Strict(raw);
    if (password === undefined) return protocolError('BAD_CHARACTERS');
    const problem = credentialProblem(password);
    if (problem) return protocolError(problem);
    return this.host.authenticate({ mechanism: 'LOGIN', username, password });
  }

  // ---- host-read SASL mechanisms (SCRAM) -------------------------------------

  /** See Pop3Session.saslContinue. */
  saslContinue(challenge: Buffer): Pop3Action[] {
    const mech = this.expectHostStep('saslContinue');
    this.beginSasl({ mech, step: 'message', first: false });
    return [reply(saslChallenge(challenge))];
  }

  /** See Pop3Session.saslProved (the session has checked the user names). */
  saslProved(result: { readonly username: string; readonly requestedUser: string; readonly final: Buffer }): Pop3Action[] {
    const mech = this.expectHostStep('saslProved');
    this.host.presented(result.username);
    this.beginSasl({ mech, step: 'ack', username: result.username, requestedUser: result.requestedUser });
    return [reply(saslChallenge(result.final))];
  }

  /** See Pop3Session.saslFailed. */
  saslFailed(code: ErrorCode): Failure {
    this.expectHostStep('saslFailed');
    return { fail: code, count: isServerTrouble(code) ? 'none' : 'auth' };
  }

  private expectHostStep(method: string): HostSaslMechanism {
    const mech = this.hostStep;
    if (mech === undefined) throw new GatewayError('INTERNAL', `Pop3Session.${method}() without a pending step`);
    this.hostStep = undefined;
    this.host.enter('AUTHORIZATION');
    return mech;
  }

  /** Hands a client message to the host's exchange and waits (awaiting 'sasl'). */
  private requestHostStep(mechanism: HostSaslMechanism, data: Buffer, first: boolean): Pop3Action[] {
    this.hostStep = mechanism;
    this.host.enter('SASL_PENDING');
    return [{ kind: 'saslStep', mechanism, data, first }];
  }

  // ---- GSSAPI host answers -------------------------------------------------

  /** See Pop3Session.gssAcceptResult. */
  gssAcceptResult(result: GssAcceptResult): Outcome {
    this.expectGss('accept', 'gssAcceptResult');
    if (result.done && (result.principal === undefined || result.principal === '')) {
      throw new GatewayError('INTERNAL', 'Pop3Session.gssAcceptResult(): done without a principal');
    }
    this.gss = undefined;
    this.host.enter('AUTHORIZATION');
    if (!result.done) {
      this.beginSasl({ mech: 'GSSAPI', step: 'accept', first: false });
      return [reply(saslChallenge(result.output))];
    }
    const principal = result.principal ?? '';
    // Kerberos escapes such characters in unparsed names; fail closed anyway.
    if (hasForbiddenCredentialChars(principal)) return { fail: 'AUTH_FAILED', count: 'auth' };
    this.host.presented(principal);
    if (result.output.length > 0) {
      this.beginSasl({ mech: 'GSSAPI', step: 'ack', principal });
      return [reply(saslChallenge(result.output))];
    }
    return this.requestGss({ op: 'wrap', principal }, { kind: 'gssWrap', data: gssapiLayerOffer() });
  }

  /** See Pop3Session.gssWrapped. */
  gssWrapped(token: Buffer): Pop3Action[] {
    const wait = this.expectGss('wrap', 'gssWrapped');
    this.gss = undefined;
    this.beginSasl({ mech: 'GSSAPI', step: 'layer', principal: wait.principal });
    return [reply(saslChallenge(token))];
  }

  /** See Pop3Session.gssUnwrapped. */
  gssUnwrapped(data: Buffer): Outcome {
    const wait = this.expectGss('unwrap', 'gssUnwrapped');
    this.gss = undefined;
    this.host.enter('AUTHORIZATION');
    const answer = decodeGssapiLayerResponse(data);
    if (!answer.ok) return GSSAPI_LAYER_FAILURE[answer.reason];
    return this.host.authenticate({ mechanism: 'GSSAPI', principal: wait.principal, requestedUser: answer.authzid });
  }

  /** See Pop3Session.gssFailed. */
  gssFailed(code: ErrorCode): Failure {
    this.gss = undefined;
    this.host.enter('AUTHORIZATION');
    return { fail: code, count: isServerTrouble(code) ? 'none' : 'auth' };
  }

  /** The pending GSS step, which must be `op` (anything else is a host bug). */
  private expectGss<Op extends GssWait['op']>(op: Op, method: string): Extract<GssWait, { op: Op }> {
    const wait = this.gss;
    if (wait?.op !== op) {
      throw new GatewayError('INTERNAL', `Pop3Session.${method}() called while waiting for ${wait?.op ?? 'nothing'}`);
    }
    return wait as Extract<GssWait, { op: Op }>;
  }

  /** Asks the host for a GSS operation and waits (awaiting 'gss'). */
  private requestGss(wait: GssWait, action: Pop3Action): Pop3Action[] {
    this.gss = wait;
    this.host.enter('GSS_PENDING');
    return [action];
  }
}
