/**
 * The messages between the primary and its workers (node:cluster's IPC
 * channel, JSON), and a small request/answer layer over it. Either side can
 * ask (`request`, with a deadline) or just tell (`note`); every message
 * carries `popgate` so other users of the channel (prom-client's own cluster
 * messages, node:cluster's internals) are left alone. What one side writes
 * during one turn of its event loop goes as one channel message (`batch`):
 * each login asks the primary for a per-address slot and the throttle, and a
 * channel message costs both processes a serialisation, a syscall and a
 * wake-up, whatever it carries.
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
import type { FailureStoreCall } from '../../auth/throttle/index.js';
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

/** What goes on the channel: one message, or several written in the same turn. */
export type ChannelMessage = IpcMessage | { readonly popgate: 'batch'; readonly messages: readonly IpcMessage[] };

function isChannelMessage(m: unknown): m is ChannelMessage {
  if (typeof m !== 'object' || m === null || !('popgate' in m)) return false;
  const kind = (m as { popgate: unknown }).popgate;
  return kind === 'request' || kind === 'answer' || kind === 'note' || (kind === 'batch' && Array.isArray((m as { messages?: unknown }).messages));
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
  /** Writes one channel message to the other side (false or a throw: not sent). */
  readonly send: (message: ChannelMessage) => boolean;
  /** Runs the flush of what was written this turn; default setImmediate (after this turn's I/O callbacks). */
  readonly schedule?: (flush: () => void) => void;
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
  /** Written this turn, not yet on the channel. */
  private queue: IpcMessage[] = [];
  private closed = false;
  private readonly schedule: (flush: () => void) => void;

  constructor(private readonly opts: IpcPeerOptions<In, InNote>) {
    this.schedule = opts.schedule ?? ((flush) => setImmediate(flush));
  }

  /** Feeds one message from the channel; foreign messages are ignored. */
  handle(message: unknown): void {
    if (!isChannelMessage(message)) return;
    if (message.popgate === 'batch') {
      // From the other process: each entry is checked like a message of its own.
      for (const m of message.messages as readonly unknown[]) if (isChannelMessage(m) && m.popgate !== 'batch') this.handleOne(m);
    } else this.handleOne(message);
  }

  private handleOne(message: IpcMessage): void {
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
      if (!this.write({ popgate: 'request', id, body })) this.unsent(id, body.op);
    });
  }

  /** A request that never reached the channel fails now. */
  private unsent(id: number, op: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.reject(new IpcError(`cannot send ${op}: channel closed`));
  }

  /** Tells the other side; false when the channel is closed. */
  note(body: OutNote): boolean {
    return this.write({ popgate: 'note', body });
  }

  /** Puts what was written this turn on the channel now (before a disconnect). */
  flush(): void {
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    let sent: boolean;
    try {
      sent = this.opts.send(batch.length === 1 ? batch[0]! : { popgate: 'batch', messages: batch });
    } catch {
      // The channel closed under us (the other process exited).
      sent = false;
    }
    if (!sent) for (const m of batch) if (m.popgate === 'request') this.unsent(m.id, m.body.op);
  }

  /** The other side is gone: every pending request fails now, and nothing more is written. */
  close(reason: string): void {
    this.closed = true;
    this.queue = [];
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

  /** Queues `message` for this turn's flush; false when the channel is closed. */
  private write(message: IpcMessage): boolean {
    if (this.closed) return false;
    if (this.queue.push(message) === 1) this.schedule(() => this.flush());
    return true;
  }
}

/** The primary's end of one worker's channel. */
export type PrimaryEnd = IpcPeer<PrimaryRequest, WorkerRequest, PrimaryNote, WorkerNote>;
/** A worker's end of its channel to the primary. */
export type WorkerEnd = IpcPeer<WorkerRequest, PrimaryRequest, WorkerNote, PrimaryNote>;
