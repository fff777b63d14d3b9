import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Stats } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ListenerConfig } from '../../src/config/index.js';
import { Generations, listenerRestartChanges } from '../../src/server/config-reload.js';
import { subscribeToFile } from '../../src/config/file-watch.js';
import { watchFiles } from '../../src/server/tls-context.js';
import { waitFor } from '../helpers/wait.js';

const listener = (name: string, port: number, extra: Partial<ListenerConfig> = {}): ListenerConfig =>
  ({ name, kind: 'pop3', address: '0.0.0.0', port, allowPlaintextAuth: false, greeting: 'hi', ...extra }) as ListenerConfig;

describe('listenerRestartChanges', () => {
  it('is empty when only live-applicable settings change', () => {
    expect(listenerRestartChanges([listener('a', 110)], [listener('a', 110, { greeting: 'other' })])).toEqual([]);
  });

  it('names added, removed and moved listeners', () => {
    const changes = listenerRestartChanges(
      [listener('a', 110), listener('b', 995)],
      [listener('a', 111, { address: '127.0.0.1' }), listener('c', 1110)],
    );
    expect(changes).toEqual([
      'listener a: address 0.0.0.0 -> 127.0.0.1',
      'listener a: port 110 -> 111',
      'listener b removed',
      'listener c added',
    ]);
  });
});

describe('Generations', () => {
  it('closes a swapped-out value at once when idle, after its last in-flight use otherwise', async () => {
    const closed: string[] = [];
    const g = new Generations<string>('v1', (old, alive) => void closed.push(`${old}|${alive.join(',')}`));
    let release!: () => void;
    const inFlight = g.use((v) => new Promise<string>((r) => (release = () => r(v))));
    g.swap('v2');
    await Promise.resolve();
    expect(closed).toEqual([]);
    expect(g.current).toBe('v2');
    expect(g.retiringCount).toBe(1);
    // New users get the new value while the old one is still busy.
    expect(await g.use(async (v) => v)).toBe('v2');
    release();
    expect(await inFlight).toBe('v1');
    await waitFor('v1 closed', () => closed.length === 1, { timeoutMs: 2_000 });
    expect(closed).toEqual(['v1|v2']);
    g.swap('v3');
    await waitFor('v2 closed', () => closed.length === 2, { timeoutMs: 2_000 });
    expect(closed).toEqual(['v1|v2', 'v2|v3']);
    await g.closeAll();
    expect(closed).toEqual(['v1|v2', 'v2|v3', 'v3|']);
    await g.closeAll();
    expect(closed).toHaveLength(3);
  });

  it('does not let a failing close escape', async () => {
    const g = new Generations<number>(1, () => {
      throw new Error('boom');
    });
    g.swap(2);
    await expect(g.closeAll()).resolves.toBeUndefined();
  });
});

describe('watchFiles', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-watch-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('calls back once per burst of changes, also for a rename over the file, and stops when told', async () => {
    const a = join(dir, 'a.pem');
    const b = join(dir, 'b.key');
    await writeFile(a, 'one');
    await writeFile(b, 'one');
    // The debounce runs on fake timers (the test fires it); the stat polling stays real.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // Probes on the same shared pollers show what the pollers have reported so far.
    const last: Record<string, Stats> = {};
    const probes = [a, b].map((f) => subscribeToFile(f, (curr) => (last[f] = curr), 50));
    let calls = 0;
    // No wait before writing: each poller's first stat (its baseline) is queued before our writes.
    const stop = watchFiles([a, b], () => calls++, { intervalMs: 50, debounceMs: 200 });
    await writeFile(a, 'two!');
    await writeFile(b, 'two!');
    await waitFor('the pollers to report both writes', () => last[a]?.size === 4 && last[b]?.size === 4);
    expect(vi.getTimerCount()).toBe(1); // one debounce for the burst
    vi.advanceTimersByTime(199);
    expect(calls).toBe(0);
    vi.advanceTimersByTime(1);
    expect(calls).toBe(1);

    await writeFile(join(dir, 'a.new'), 'three');
    await rename(join(dir, 'a.new'), a);
    await waitFor('the poller to report the rename', () => last[a]?.size === 5);
    vi.advanceTimersByTime(200);
    expect(calls).toBe(2);

    stop();
    await writeFile(a, 'four');
    await waitFor('the poller to report the write after stop()', () => last[a]?.size === 4);
    expect(vi.getTimerCount()).toBe(0); // stopped: no debounce started
    vi.advanceTimersByTime(1_000);
    expect(calls).toBe(2);
    for (const unsubscribe of probes) unsubscribe();
  });
});
