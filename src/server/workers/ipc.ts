/**
 * The messages between the primary and its workers (node:cluster's IPC
 * channel, JSON), and a small request/answer layer over it. Either side can
 * ask (`request`, with a deadline) or just tell (`note`); every message
 * carries `popgate` so other users of the channel (prom-client's own cluster
 * messages, node:cluster's internals) are left alone.
 *
 *   worker → primary   request  hello                              → Hello (ticket key)
 *                      request  throttle  (one FailureStore call)  → answer
 *                      request  slot      (key, max)               → lease | null
 *                      note     release   (lease)
 *                      note     ready     (bound listeners)
 *   primary → worker   request  metrics                            → MetricsSnapshot
 *                      request  readiness                          → Readiness
 *                      note     stop      (now: cut sessions at once)
 *                      note     reload    (a fresh ticket key)
 */
import type { FailureStoreCall } from '../../auth/throttle.js';
import type { BoundListener } from '../listener.js';

export type WorkerRequest =
  | { readonly op: 'hello' }
  | { readonly op: 'throttle'; readonly call: FailureStoreCall }
  | { readonly op: 'slot'; readonly key: string; readonly max: number };
export type PrimaryRequest = { readonly op: 'metrics' } | { readonly op: 'readiness' };
export type WorkerNote = { readonly op: 'release'; readonly lease: number } | { readonly op: 'ready'; readonly listeners: readonly BoundListener[] };
export type PrimaryNote = { readonly op: 'stop'; readonly now: boolean } | { readonly op: 'reload'; readonly ticketKey: string };

/** The primary's answer to hello: what a worker needs before it starts (the TLS ticket key, base64). */
export interface Hello {
  readonly ticketKey: string;
}

type Body = WorkerRequest | PrimaryRequest | WorkerNote | PrimaryNote;

/** A message on the channel, as sent. */
export type IpcMessage =
  | { readonly popgate: 'request'; readonly id: number; readonly body: Body }
  | { readonly popgate: 'answer'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly popgate: 'answer'; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly popgate: 'note'; readonly body: Body };

function isIpcMessage(m: unknown): m is IpcMessage {
  if (typeof m !== 'object' || m === null || !('popgate' in m)) return false;
  const kind = (m as { popgate: unknown }).popgate;
  return kind === 'request' || kind === 'answer' || kind === 'note';
}

/** The request was not answered: the other side is gone, slow, or failed. */
export class IpcError extends Error {
  override readonly name = 'IpcError';
}

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
  /** For an answer that arrives after the deadline (e.g. a slot lease to give back). */
  readonly late: ((value: unknown) => void) | undefined;
}

export interface IpcPeerOptions<In extends Body, InNote extends Body> {
  /** Writes one message to the other side (false or a throw: not sent). */
  readonly send: (message: IpcMessage) => boolean;
  /** Answers a request from the other side. */
  readonly onRequest?: (body: In) => Promise<unknown>;
  readonly onNote?: (body: InNote) => void;
}

/** One end of the channel. `Out`/`OutNote`: what this side sends; `In`/`InNote`: what it receives. */
export class IpcPeer<Out extends Body, In extends Body, OutNote extends Body, InNote extends Body> {
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  /** Late-answer handlers of requests past their deadline, until the answer comes or the peer closes. */
  private readonly expired = new Map<number, (value: unknown) => void>();

  constructor(private readonly opts: IpcPeerOptions<In, InNote>) {}

  /** Feeds one message from the channel; foreign messages are ignored. */
  handle(message: unknown): void {
    if (!isIpcMessage(message)) return;
    switch (message.popgate) {
      case 'note':
        this.opts.onNote?.(message.body as InNote);
        return;
      case 'request':
        this.answer(message.id, message.body as In);
        return;
      case 'answer': {
        const p = this.pending.get(message.id);
        if (!p) {
          const late = this.expired.get(message.id);
          this.expired.delete(message.id);
          if (late && message.ok) late(message.value);
          return;
        }
        this.pending.delete(message.id);
        clearTimeout(p.timer);
        if (message.ok) p.resolve(message.value);
        else p.reject(new IpcError(message.error));
      }
    }
  }

  /** Asks the other side; rejects with IpcError after `timeoutMs` or when the message cannot be sent. */
  request(body: Out, timeoutMs: number, late?: (value: unknown) => void): Promise<unknown> {
    const id = ++this.nextId;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (late) this.expired.set(id, late);
        reject(new IpcError(`no answer to ${body.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer, late });
      if (!this.write({ popgate: 'request', id, body })) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new IpcError(`cannot send ${body.op}: channel closed`));
      }
    });
  }

  /** Tells the other side; false when the channel is closed. */
  note(body: OutNote): boolean {
    return this.write({ popgate: 'note', body });
  }

  /** The other side is gone: every pending request fails now. */
  close(reason: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new IpcError(reason));
      this.pending.delete(id);
    }
    this.expired.clear();
  }

  private answer(id: number, body: In): void {
    const handler = this.opts.onRequest;
    const run = handler ? handler(body) : Promise.reject(new Error(`unexpected request ${body.op}`));
    run.then(
      (value) => this.write({ popgate: 'answer', id, ok: true, value: value ?? null }),
      (err: unknown) => this.write({ popgate: 'answer', id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  }

  private write(message: IpcMessage): boolean {
    try {
      return this.opts.send(message);
    } catch {
      // The channel closed under us (the other process exited): the caller treats it as not sent.
      return false;
    }
  }
}

/** The primary's end of one worker's channel. */
export type PrimaryEnd = IpcPeer<PrimaryRequest, WorkerRequest, PrimaryNote, WorkerNote>;
/** A worker's end of its channel to the primary. */
export type WorkerEnd = IpcPeer<WorkerRequest, PrimaryRequest, WorkerNote, PrimaryNote>;
