/**
 * The parts of `workers` > 1 that need no processes: the config key, the
 * request/answer layer over the IPC channel (deadlines, late answers, a
 * closed channel), the throttle store and per-address counts the primary
 * holds for its workers, and the worker-side fallbacks when it is slow.
 */
import { describe, expect, it } from 'vitest';
import { LoginThrottle, MemoryFailureStore, RemoteFailureStore, serveFailureStoreCall, type FailureStoreAnswer } from '../../src/auth/throttle/index.js';
import { RemoteAddressCounter, SharedAddressCounts } from '../../src/server/address-limit.js';
import { IpcPeer, type ChannelMessage, type PrimaryEnd, type WorkerEnd } from '../../src/server/workers/ipc.js';
import { workerCount } from '../../src/server/workers/primary.js';
import { issuesOf, MINIMAL_CONFIG, parseConfig } from '../helpers/config.js';
import { waitFor } from '../helpers/wait.js';

/** A primary and a worker end wired back to back; `drop` loses messages in one direction. */
function pair(primaryAnswers: (body: Parameters<NonNullable<ConstructorParameters<typeof IpcPeer>[0]['onRequest']>>[0]) => Promise<unknown>): {
  worker: WorkerEnd;
  primary: PrimaryEnd;
  dropToPrimary: { on: boolean };
} {
  const dropToPrimary = { on: false };
  let primary: PrimaryEnd | undefined;
  let worker: WorkerEnd | undefined;
  // Asynchronous delivery, as over a real channel.
  const deliver = (to: () => { handle(m: unknown): void } | undefined, m: ChannelMessage): boolean => {
    setImmediate(() => to()?.handle(JSON.parse(JSON.stringify(m)) as unknown));
    return true;
  };
  worker = new IpcPeer({ send: (m) => (dropToPrimary.on ? true : deliver(() => primary, m)) });
  primary = new IpcPeer({ send: (m) => deliver(() => worker, m), onRequest: (body) => primaryAnswers(body) });
  return { worker, primary, dropToPrimary };
}

describe('workers (config)', () => {
  it('defaults to 1 and takes 1..256 or auto', async () => {
    expect((await parseConfig(MINIMAL_CONFIG)).workers).toBe(1);
    expect((await parseConfig(`${MINIMAL_CONFIG}workers: 4\n`)).workers).toBe(4);
    expect((await parseConfig(`${MINIMAL_CONFIG}workers: auto\n`)).workers).toBe('auto');
    expect(workerCount('auto')).toBeGreaterThanOrEqual(1);
    expect(workerCount(3)).toBe(3);
  });

  it('refuses anything else at workers', async () => {
    for (const bad of ['0', '-1', '1.5', '257', 'many', '"2"', 'null']) {
      expect((await issuesOf(`${MINIMAL_CONFIG}workers: ${bad}\n`)).map((i) => i.path), bad).toEqual(['workers']);
    }
  });
});

describe('IpcPeer', () => {
  it('answers requests, and reports a failed answer as an error', async () => {
    const { worker } = pair((body) => (body.op === 'slot' ? Promise.resolve(7) : Promise.reject(new Error('no store'))));
    await expect(worker.request({ op: 'slot', key: 'k', max: 1 }, 5_000)).resolves.toBe(7);
    await expect(worker.request({ op: 'throttle', call: { op: 'failures', keys: [] } }, 5_000)).rejects.toThrow('no store');
  });

  it('gives up at the deadline, and hands a late answer to its late handler', async () => {
    let release: (v: number) => void = () => undefined;
    const { worker } = pair(() => new Promise((r) => (release = r)));
    const late: unknown[] = [];
    await expect(worker.request({ op: 'slot', key: 'k', max: 1 }, 20, (v) => late.push(v))).rejects.toThrow(/no answer to slot within 20 ms/);
    release(42);
    await waitFor('the late answer', () => late.length > 0);
    expect(late).toEqual([42]);
  });

  it('fails pending requests when the other side is gone, and ignores foreign messages', async () => {
    const { worker, dropToPrimary } = pair(() => Promise.resolve(1));
    dropToPrimary.on = true;
    const pending = worker.request({ op: 'slot', key: 'k', max: 1 }, 60_000);
    worker.handle({ cmd: 'NODE_CLUSTER' });
    worker.handle('prom-client:getMetricsReq');
    worker.close('worker exited');
    await expect(pending).rejects.toThrow('worker exited');
    const closed = new IpcPeer({
      send: () => {
        throw new Error('channel closed');
      },
    });
    await expect(closed.request({ op: 'metrics' }, 1_000)).rejects.toThrow(/channel closed/);
  });

  it('puts what one turn writes on the channel as one message, and answers each request in it', async () => {
    const sent: ChannelMessage[] = [];
    let flushes: Array<() => void> = [];
    const worker: WorkerEnd = new IpcPeer({ send: (m) => (sent.push(m), true), schedule: (f) => flushes.push(f) });
    const primary: PrimaryEnd = new IpcPeer({
      send: (m) => (setImmediate(() => worker.handle(JSON.parse(JSON.stringify(m)) as unknown)), true),
      onRequest: (body) => Promise.resolve(body.op === 'slot' ? body.key : null),
      onNote: (body) => notes.push(body.op),
    });
    const notes: string[] = [];
    const answers = [worker.request({ op: 'slot', key: 'a', max: 1 }, 5_000), worker.request({ op: 'slot', key: 'b', max: 1 }, 5_000)];
    worker.note({ op: 'release', lease: 1 });
    expect(sent).toEqual([]);
    expect(flushes).toHaveLength(1); // one flush per turn, however many writes
    flushes[0]!();
    flushes = [];
    expect(sent).toHaveLength(1);
    expect(sent[0]!.popgate).toBe('batch');
    primary.handle(JSON.parse(JSON.stringify(sent[0])) as unknown);
    await expect(Promise.all(answers)).resolves.toEqual(['a', 'b']);
    expect(notes).toEqual(['release']);
    // A lone message goes as itself.
    void worker.note({ op: 'release', lease: 2 });
    flushes[0]!();
    expect(sent[1]).toEqual({ popgate: 'note', body: { op: 'release', lease: 2 } });
  });

  it('fails the requests of a batch the channel refused, and writes nothing once closed', async () => {
    let open = false;
    const flushes: Array<() => void> = [];
    const worker: WorkerEnd = new IpcPeer({ send: () => open, schedule: (f) => flushes.push(f) });
    const a = worker.request({ op: 'slot', key: 'a', max: 1 }, 60_000);
    const b = worker.request({ op: 'hello' }, 60_000);
    flushes[0]!();
    await expect(a).rejects.toThrow('cannot send slot: channel closed');
    await expect(b).rejects.toThrow('cannot send hello: channel closed');
    open = true;
    worker.close('worker stopping');
    expect(worker.note({ op: 'release', lease: 1 })).toBe(false);
    await expect(worker.request({ op: 'hello' }, 60_000)).rejects.toThrow('cannot send hello: channel closed');
    expect(flushes).toHaveLength(1);
  });
});

describe('the throttle store in the primary', () => {
  it('locks a user after failures recorded through two workers', async () => {
    const store = new MemoryFailureStore({ sweepIntervalMs: 0 });
    const throttles = [0, 1].map(() => {
      const { worker } = pair((body) => (body.op === 'throttle' ? serveFailureStoreCall(store, body.call) : Promise.resolve(null)));
      const remote = new RemoteFailureStore((call) => worker.request({ op: 'throttle', call }, 5_000) as Promise<FailureStoreAnswer>);
      return new LoginThrottle({ store: remote, delays: [0], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 });
    });
    const [a, b] = throttles as [LoginThrottle, LoginThrottle];
    expect((await a.failed('192.0.2.1', 'gina')).failures).toBe(1);
    expect((await b.failed('192.0.2.2', 'gina')).failures).toBe(2);
    expect((await a.failed('192.0.2.3', 'gina')).locked).toBe(true);
    expect((await b.check('192.0.2.9', 'gina')).locked).toBe(true);
    await b.succeeded('192.0.2.1', 'other');
    expect(await store.failures(['user:gina', 'ip:192.0.2.1'])).toEqual([3, 0]);
    await store.close();
  });

  it("shares the primary's fingerprints: a password repeated on another worker is not counted again", async () => {
    const store = new MemoryFailureStore({ sweepIntervalMs: 0 });
    const calls: string[] = [];
    const throttles = [0, 1].map(() => {
      const { worker } = pair((body) => {
        if (body.op !== 'throttle') return Promise.resolve(null);
        calls.push(JSON.stringify(body.call));
        return serveFailureStoreCall(store, body.call);
      });
      const remote = new RemoteFailureStore((call) => worker.request({ op: 'throttle', call }, 5_000) as Promise<FailureStoreAnswer>);
      return new LoginThrottle({ store: remote, delays: [0], maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000, repeatedPasswords: 5 });
    });
    const [a, b] = throttles as [LoginThrottle, LoginThrottle];
    expect(await a.failed('192.0.2.1', 'gina', 'stale-pw')).toMatchObject({ failures: 1 });
    for (let i = 0; i < 5; i++) expect(await b.failed('192.0.2.2', 'gina', 'stale-pw')).toMatchObject({ failures: 1, repeated: true, locked: false });
    expect(await a.failed('192.0.2.1', 'gina', 'stale-pw')).toMatchObject({ failures: 1, repeated: true });
    // Guesses still count, whichever worker sees them.
    expect(await b.failed('192.0.2.2', 'gina', 'guess-1')).toMatchObject({ failures: 2 });
    expect(await a.failed('192.0.2.1', 'gina', 'guess-2')).toMatchObject({ failures: 3, locked: true });
    // Over the channel went fingerprints and the secret's request, never a password.
    expect(calls.some((c) => c.includes('"op":"rememberPassword"'))).toBe(true);
    expect(calls.filter((c) => c.includes('"op":"fingerprintSecret"'))).toHaveLength(2); // once per worker's throttle
    expect(calls.join('\n')).not.toMatch(/stale-pw|guess-/);
    expect(await serveFailureStoreCall(store, { op: 'fingerprintSecret' })).toBe(await store.fingerprintSecret());
    await store.close();
  });

  it('fails open when the primary does not answer', async () => {
    const { worker, dropToPrimary } = pair(() => Promise.resolve(null));
    dropToPrimary.on = true;
    const errors: unknown[] = [];
    const throttle = new LoginThrottle({
      store: new RemoteFailureStore((call) => worker.request({ op: 'throttle', call }, 10) as Promise<FailureStoreAnswer>),
      delays: [5, 10],
      maxFailures: 1,
      windowMs: 60_000,
      lockoutMs: 60_000,
      log: { info: () => undefined, warn: () => undefined, error: (o: unknown) => void errors.push(o) },
    });
    expect(await throttle.check('192.0.2.1', 'u')).toEqual({ locked: false, exempt: false });
    expect(await throttle.failed('192.0.2.1', 'u')).toEqual({ delayMs: 5, locked: false, failures: 0, exempt: false });
    expect(errors).toHaveLength(1);
    expect(throttle.store.name).toBe('memory-primary');
  });
});

describe('per-address slots in the primary', () => {
  it('counts leases per key against the max each request brings, and frees a dead worker’s', () => {
    const counts = new SharedAddressCounts();
    const a = counts.acquire('192.0.2.1', 2, 1);
    const b = counts.acquire('192.0.2.1', 2, 2);
    expect(a).toBeTypeOf('number');
    expect(b).toBeTypeOf('number');
    expect(counts.acquire('192.0.2.1', 2, 1)).toBeUndefined();
    expect(counts.acquire('192.0.2.1', 3, 1)).toBeTypeOf('number'); // a reload raised the limit
    counts.release(a!);
    counts.release(a!); // idempotent
    expect(counts.count('192.0.2.1')).toBe(2);
    expect(counts.releaseOwner(1)).toBe(1);
    expect(counts.releaseOwner(2)).toBe(1);
    expect(counts.count('192.0.2.1')).toBe(0);
  });

  it('takes slots through the primary, and counts locally (once reported) when it does not answer', async () => {
    const counts = new SharedAddressCounts();
    const released: number[] = [];
    let answering = true;
    const fallbacks: unknown[] = [];
    const counter = new RemoteAddressCounter(
      1,
      {
        acquire: (key, max) => (answering ? Promise.resolve(counts.acquire(key, max, 1)) : Promise.reject(new Error('timeout'))),
        release: (lease) => {
          released.push(lease);
          counts.release(lease);
        },
      },
      (err) => fallbacks.push(err),
    );
    const first = await counter.acquire('192.0.2.1');
    expect(first).toBeTypeOf('function');
    expect(await counter.acquire('192.0.2.1')).toBeUndefined();
    first!();
    first!();
    expect(released).toHaveLength(1);
    answering = false;
    const local = await counter.acquire('192.0.2.7');
    expect(local).toBeTypeOf('function');
    expect(await counter.acquire('192.0.2.7')).toBeUndefined(); // the local count has its own max
    expect(fallbacks).toHaveLength(2);
  });
});
