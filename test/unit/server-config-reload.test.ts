import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListenerConfig } from '../../src/config/index.js';
import { Generations, listenerRestartChanges } from '../../src/server/config-reload.js';
import { watchFiles } from '../../src/server/tls-context.js';

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
    await new Promise((r) => setTimeout(r, 0));
    expect(closed).toEqual(['v1|v2']);
    g.swap('v3');
    await new Promise((r) => setTimeout(r, 0));
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

  it('calls back once per burst of changes, also for a rename over the file, and stops when told', async () => {
    const a = join(dir, 'a.pem');
    const b = join(dir, 'b.key');
    await writeFile(a, 'one');
    await writeFile(b, 'one');
    let calls = 0;
    const stop = watchFiles([a, b], () => calls++, { intervalMs: 50, debounceMs: 200 });
    await new Promise((r) => setTimeout(r, 150));
    await writeFile(a, 'two!');
    await writeFile(b, 'two!');
    await new Promise((r) => setTimeout(r, 600));
    expect(calls).toBe(1);
    await writeFile(join(dir, 'a.new'), 'three');
    await rename(join(dir, 'a.new'), a);
    await new Promise((r) => setTimeout(r, 600));
    expect(calls).toBe(2);
    stop();
    await writeFile(a, 'four');
    await new Promise((r) => setTimeout(r, 600));
    expect(calls).toBe(2);
  });
});
