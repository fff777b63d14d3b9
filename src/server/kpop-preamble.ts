import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { KpopHandshake, kpopErrorFrame, kpopOkFrame } from '../kerberos/kpop-framing.js';
import { KerberosError, type ApReqResult } from '../kerberos/types.js';

export interface KpopDeps {
  /** Verifies the AP-REQ against the keytab and service principals (off the event loop). */
  readonly verifyApReq: (apReq: Buffer) => Promise<ApReqResult>;
  readonly maxApReqLength: number;
}

export type KpopOutcome =
  | { readonly ok: true; readonly principal: string; readonly server: string; readonly pipelined: Buffer }
  | { readonly ok: false };

/**
 * The krb5_recvauth side of a KPOP connection, before any POP3: version
 * exchange, AP-REQ verification, then the OK frame (+ AP-REP when the client
 * asked for mutual authentication) in one write, or a KRB-ERROR and close.
 * Bytes the client pipelined behind its AP-REQ (Heimdal `push`) are returned
 * for the POP3 framer. The socket is left paused with no listeners of ours.
 */
export function runKpopPreamble(socket: Socket, deps: KpopDeps, log: Logger): Promise<KpopOutcome> {
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
    const onData = (chunk: Buffer): void => {
      for (const event of handshake.feed(chunk)) {
        switch (event.kind) {
          case 'write':
            socket.write(event.bytes);
            break;
          case 'reject':
            log.info({ event: 'login', outcome: 'failure', mechanism: 'KPOP', stage: event.stage, reason: event.reason }, 'KPOP handshake refused');
            if (event.bytes.length > 0) socket.write(event.bytes);
            socket.end();
            finish({ ok: false });
            return;
          case 'ap-req':
            socket.pause();
            void verify(event.apReq);
            return;
        }
      }
    };
    const verify = async (apReq: Buffer): Promise<void> => {
      try {
        const result = await deps.verifyApReq(apReq);
        if (settled) return;
        // One write: the OK frame and AP-REP as separate segments stall ~40 ms (Nagle).
        socket.write(kpopOkFrame(result.mutual ? result.apRep : undefined));
        finish({ ok: true, principal: result.client, server: result.server, pipelined: handshake.takeRemaining() });
      } catch (err) {
        if (settled) return;
        const failure = err instanceof KerberosError ? err.failure : 'internal';
        log[failure === 'config' || failure === 'internal' || failure === 'other' ? 'error' : 'info'](
          {
            event: 'login',
            outcome: 'failure',
            mechanism: 'KPOP',
            code: failure,
            krbCode: err instanceof KerberosError ? err.krbCode : undefined,
            reason: err instanceof Error ? err.message : String(err),
          },
          'KPOP ticket refused',
        );
        if (err instanceof KerberosError && err.krbError) socket.write(kpopErrorFrame(err.krbError));
        socket.end();
        finish({ ok: false });
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.resume();
  });
}
