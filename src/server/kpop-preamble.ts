import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { ERRORS } from '../errors.js';
import { KpopHandshake, kpopErrorFrame, kpopOkFrame } from '../kerberos/kpop-framing.js';
import { KerberosError, type ApReqResult } from '../kerberos/types.js';
import type { Metrics } from '../observability/metrics.js';
import { kerberosFailureCode } from './gss-bridge.js';
import { auditLogin } from './login-audit.js';

export interface KpopDeps {
  /** Verifies the AP-REQ against the keytab and service principals (off the event loop). */
  readonly verifyApReq: (apReq: Buffer) => Promise<ApReqResult>;
  readonly maxApReqLength: number;
}

export type KpopOutcome =
  | {
      readonly ok: true;
      readonly principal: string;
      readonly server: string;
      /** The OK frame (+ AP-REP), for the caller to write together with the POP3 greeting. */
      readonly okFrame: Buffer;
      readonly pipelined: Buffer;
    }
  | { readonly ok: false };

/**
 * The krb5_recvauth side of a KPOP connection, before any POP3: version
 * exchange, AP-REQ verification, then the OK frame (+ AP-REP when the client
 * asked for mutual authentication), returned for the caller to write in one
 * piece with the greeting, or a KRB-ERROR and close.
 * Bytes the client pipelined behind its AP-REQ (Heimdal `push`) are returned
 * for the POP3 framer. The socket is left paused with no listeners of ours.
 * A refusal is the login attempt's one audit line (`event: "login"`); a
 * verified ticket is not yet a login (the USER/PASS that follows is).
 */
export function runKpopPreamble(socket: Socket, deps: KpopDeps, log: Logger, metrics: Metrics): Promise<KpopOutcome> {
  return new Promise<KpopOutcome>((resolve) => {
    const handshake = new KpopHandshake({ maxApReqLength: deps.maxApReqLength });
    let settled = false;
    const finish = (outcome: KpopOutcome): void => {
      if (settled) return;
      settled = true;
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      resolve(outcome);
    };
    const onClose = (): void => finish({ ok: false });
    // The version-accept byte is held back while an AP-REQ that came in the
    // same chunk is verified: it then goes out with the answer, one write
    // (a client that pipelined its AP-REQ is not waiting for it).
    let held: Buffer | undefined;
    const withHeld = (bytes: Buffer): Buffer => (held === undefined ? bytes : Buffer.concat([held, bytes]));
    const onData = (chunk: Buffer): void => {
      const events = handshake.feed(chunk);
      const apReqFollows = events.some((e) => e.kind === 'ap-req');
      for (const event of events) {
        switch (event.kind) {
          case 'write':
            if (apReqFollows) held = withHeld(event.bytes);
            else socket.write(event.bytes);
            break;
          case 'reject': {
            // Not a KPOP client (or a broken one): a protocol error, not bad credentials.
            auditLogin(
              log,
              metrics,
              'info',
              { outcome: 'failure', mechanism: 'KPOP', code: 'BAD_SYNTAX', stage: event.stage, reason: event.reason },
              'KPOP handshake refused',
            );
            const out = withHeld(event.bytes);
            if (out.length > 0) socket.write(out);
            socket.end();
            finish({ ok: false });
            return;
          }
          case 'ap-req':
            socket.pause();
            void verify(event.apReq);
            return;
        }
      }
    };
    const verify = async (apReq: Buffer): Promise<void> => {
      const started = performance.now();
      try {
        const result = await deps.verifyApReq(apReq);
        metrics.kerberosCheck('kpop', (performance.now() - started) / 1000);
        if (settled) return;
        // Not written here: the OK frame, AP-REP and greeting go out in one
        // write (separate segments stall ~40 ms on Nagle, and cost a syscall each).
        const okFrame = withHeld(kpopOkFrame(result.mutual ? result.apRep : undefined));
        finish({ ok: true, principal: result.client, server: result.server, okFrame, pipelined: handshake.takeRemaining() });
      } catch (err) {
        const failure = err instanceof KerberosError ? err.failure : 'internal';
        metrics.kerberosCheck('kpop', (performance.now() - started) / 1000, err instanceof KerberosError ? err.failure : 'other');
        if (settled) return;
        const code = kerberosFailureCode(err);
        auditLogin(
          log,
          metrics,
          failure === 'config' || failure === 'internal' || failure === 'other' ? 'error' : ERRORS[code].level,
          {
            outcome: 'failure',
            mechanism: 'KPOP',
            code,
            krbFailure: failure,
            krbCode: err instanceof KerberosError ? err.krbCode : undefined,
            reason: err instanceof Error ? err.message : String(err),
          },
          'KPOP ticket refused',
        );
        const out = withHeld(err instanceof KerberosError && err.krbError ? kpopErrorFrame(err.krbError) : Buffer.alloc(0));
        if (out.length > 0) socket.write(out);
        socket.end();
        finish({ ok: false });
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}
