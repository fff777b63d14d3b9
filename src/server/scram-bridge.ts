/**
 * Runs the SCRAM-SHA-256[-PLUS] exchange (src/auth/scram.ts) the protocol
 * core hands over as `saslStep` actions: the client-first message starts an
 * exchange (after the throttle says the user may try), the user's stored
 * keys are looked up (a dummy for an unknown user, so it fails at the proof
 * like a wrong password), and the client-final proof is checked. A refused
 * step comes back with its failure, which the connection audits, counts and
 * delays like a wrong password (see GssBridge).
 */
import type { TLSSocket } from 'node:tls';
import { randomScramNonce, startScram, tlsExporterData, tlsServerEndPointData, type ScramChannel, type ScramLookup, type ScramServerExchange } from '../auth/scram.js';
import { GatewayError } from '../errors.js';
import type { Pop3Session } from '../pop3/session.js';
import type { Pop3Action } from '../pop3/types.js';

export type SaslStepAction = Extract<Pop3Action, { kind: 'saslStep' }>;

/** Where SCRAM keys come from (the user file), and the throttle's word before a proof is tried. */
export interface ScramDeps {
  /** undefined: no verifier holds SCRAM keys (config refuses SCRAM then; a bug otherwise). */
  readonly credentials: ((username: string) => Promise<ScramLookup>) | undefined;
  /** The refusal when the client's address or this user is locked out; undefined to go on. */
  readonly locked: (username: string) => Promise<GatewayError | undefined>;
}

/** A refused exchange: the failed login the connection audits, counts and delays. */
export interface ScramFailure {
  readonly error: GatewayError;
  /** The user the client-first message named ('' before one parsed): the throttle's user key. */
  readonly claimedUser: string;
}

export interface ScramStep {
  readonly actions: Pop3Action[];
  readonly failure?: ScramFailure;
}

/** The channel-binding data a TLS session offers (tls-exporter on TLS 1.3 only: on 1.2 it needs the extended master secret). */
export function scramChannel(socket: TLSSocket): ScramChannel {
  const out: { tlsExporter?: Buffer; tlsServerEndPoint?: Buffer } = {};
  if (socket.getProtocol() === 'TLSv1.3') out.tlsExporter = tlsExporterData(socket);
  const der = socket.getX509Certificate()?.raw;
  const endPoint = der ? tlsServerEndPointData(der) : undefined;
  if (endPoint) out.tlsServerEndPoint = endPoint;
  return out;
}

export class ScramBridge {
  private exchange: ScramServerExchange | undefined;
  private username = '';
  /** Why the keys were a dummy (unknown user, entry without SCRAM keys): the audit reason if the proof fails. */
  private lookupMiss: string | undefined;

  constructor(
    private readonly deps: ScramDeps,
    /** The connection's TLS socket, when there is one (SCRAM-SHA-256-PLUS binds to it). */
    private readonly tls: () => TLSSocket | undefined,
  ) {}

  async handle(action: SaslStepAction, session: Pop3Session): Promise<ScramStep> {
    try {
      return action.first ? await this.start(action, session) : this.finish(action, session);
    } catch (err) {
      if (err instanceof GatewayError) return this.fail(session, err);
      return this.fail(session, new GatewayError('INTERNAL', `SCRAM: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  private async start(action: SaslStepAction, session: Pop3Session): Promise<ScramStep> {
    this.exchange = undefined;
    this.username = '';
    const socket = this.tls();
    const started = startScram(action.data, {
      plus: action.mechanism === 'SCRAM-SHA-256-PLUS',
      // PLUS is offered exactly on TLS channels (the core's rule).
      ...(socket ? { channel: scramChannel(socket) } : {}),
      nonce: randomScramNonce,
    });
    // Malformed messages, downgrades and binding mismatches count as failed logins too.
    if (!started.ok) return this.fail(session, new GatewayError('AUTH_FAILED', `scram: ${started.reason}`));
    this.username = started.username;
    const locked = await this.deps.locked(started.username);
    if (locked) return this.fail(session, locked);
    if (!this.deps.credentials) throw new GatewayError('INTERNAL', 'SCRAM offered without a verifier that holds SCRAM keys');
    const lookup = await this.deps.credentials(started.username);
    this.exchange = started.exchange;
    // An unknown user or an entry without SCRAM keys runs on with a dummy and fails at the proof; the reason is logged then.
    if (!lookup.found) this.lookupMiss = lookup.reason;
    return { actions: session.saslContinue(started.exchange.serverFirst(lookup.credentials)) };
  }

  private finish(action: SaslStepAction, session: Pop3Session): ScramStep {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (!exchange) throw new GatewayError('INTERNAL', 'SCRAM client-final without an exchange');
    const final = exchange.clientFinal(action.data);
    const miss = this.lookupMiss;
    this.lookupMiss = undefined;
    if (!final.ok) return this.fail(session, new GatewayError('AUTH_FAILED', `scram: ${miss ?? final.reason}`));
    return { actions: session.saslProved({ username: final.username, requestedUser: final.authzid, final: final.serverFinal }) };
  }

  private fail(session: Pop3Session, error: GatewayError): ScramStep {
    this.exchange = undefined;
    this.lookupMiss = undefined;
    return { actions: session.saslFailed(error.code), failure: { error, claimedUser: this.username } };
  }
}
