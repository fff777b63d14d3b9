/**
 * subscribeToFile: one fs.watchFile poller per path however many subscribe
 * (Node warns past ten listeners on one StatWatcher), a change reaches every
 * subscriber, and the poller stops with the last one. Node hands out the
 * path's existing StatWatcher to any fs.watchFile call, so a probe watcher
 * shows how many listeners that StatWatcher has.
 */
import { unwatchFile, watchFile, type StatWatcher } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { subscribeToFile } from '../../src/config/file-watch.js';
import { watchFiles } from '../../src/server/tls-context.js';
import { waitFor } from '../helpers/wait.js';

const POLL_MS = 20;
const SUBSCRIBERS = 12;

let dir: string;
let n = 0;
let warnings: Error[] = [];
const onWarning = (w: Error): void => void warnings.push(w);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-file-watch-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** A fresh file (a fresh StatWatcher: Node warns once per watcher). */
async function freshFile(): Promise<string> {
  const file = join(dir, `f${++n}.pem`);
  await writeFile(file, 'one');
  return file;
}

/** Listeners on the path's StatWatcher besides a probe of our own (0: nobody polls the path). */
function pollers(file: string): number {
  const probe = (): void => undefined;
  const watcher: StatWatcher = watchFile(file, { interval: POLL_MS, persistent: false }, probe);
  const others = watcher.listenerCount('change') - 1;
  unwatchFile(file, probe);
  return others;
}

/** Warnings are emitted on the next tick: let them arrive, then return those about too many listeners. */
async function listenerWarnings(): Promise<Error[]> {
  await new Promise((r) => setImmediate(r));
  return warnings.filter((w) => w.name === 'MaxListenersExceededWarning');
}

describe('subscribeToFile', () => {
  it(`polls a file once for ${SUBSCRIBERS} subscribers, tells each of a change, and stops with the last`, async () => {
    const file = await freshFile();
    const calls = Array.from({ length: SUBSCRIBERS }, () => 0);
    const unsubscribes = calls.map((_, i) => subscribeToFile(file, () => calls[i]!++, POLL_MS));
    expect(await listenerWarnings()).toEqual([]);
    expect(pollers(file)).toBe(1);

    await writeFile(file, 'two, longer');
    await waitFor('every subscriber to hear of the change', () => (calls.every((c) => c >= 1) ? true : undefined));

    // Leaving subscribers (twice is harmless) do not stop the others.
    for (const unsubscribe of unsubscribes.slice(1)) {
      unsubscribe();
      unsubscribe();
    }
    expect(pollers(file)).toBe(1);
    const first = calls[0]!;
    await writeFile(file, 'three, longer still');
    await waitFor('the remaining subscriber to hear of the change', () => (calls[0]! > first ? true : undefined));

    unsubscribes[0]!();
    expect(pollers(file)).toBe(0);
  });

  it('gives a function that subscribes twice two subscriptions', async () => {
    const file = await freshFile();
    let calls = 0;
    const onChange = (): void => void calls++;
    const a = subscribeToFile(file, onChange, POLL_MS);
    const b = subscribeToFile(file, onChange, POLL_MS);
    a();
    expect(pollers(file)).toBe(1);
    await writeFile(file, 'changed');
    await waitFor('the second subscription to hear of the change', () => (calls >= 1 ? true : undefined));
    b();
    expect(pollers(file)).toBe(0);
  });
});

describe(`watchFiles (certificate stores) on one file ${SUBSCRIBERS} times`, () => {
  it('adds one listener to its StatWatcher: no MaxListenersExceededWarning', async () => {
    const file = await freshFile();
    const stops = Array.from({ length: SUBSCRIBERS }, () => watchFiles([file], () => undefined, { intervalMs: POLL_MS }));
    try {
      expect(await listenerWarnings()).toEqual([]);
      expect(pollers(file)).toBe(1);
    } finally {
      for (const stop of stops) stop();
    }
    expect(pollers(file)).toBe(0);
  });
});
