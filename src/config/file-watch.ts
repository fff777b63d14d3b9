/**
 * One stat poller per file, shared by everyone who watches it.
 *
 * Node keeps one fs.StatWatcher per path and adds every fs.watchFile
 * listener to it, so an eleventh watcher of the same file (a certificate
 * shared by many listeners, the user file of many gateways in one test run)
 * trips MaxListenersExceededWarning. Here each path is polled once and its
 * changes are handed to every subscriber; the poller stops when the last
 * subscriber goes.
 *
 * Polling follows symlinks (a Kubernetes Secret's `..data` swap is a change
 * of the file) and never keeps the process alive (persistent: false). As
 * with fs.watchFile itself, the first subscriber's interval is the path's
 * interval until the poller stops.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { resolve } from 'node:path';

/** Called with the file's new and previous stat when the poller sees a change. */
export type FileChangeListener = (curr: Stats, prev: Stats) => void;

interface PolledFile {
  /** The one listener Node's StatWatcher holds for this path. */
  readonly fanOut: FileChangeListener;
  readonly subscribers: Set<FileChangeListener>;
}

const polled = new Map<string, PolledFile>();

/**
 * Calls `onChange` whenever the poller of `path` sees the content change
 * (contentChanged: written, replaced, resized); returns
 * the function that unsubscribes (idempotent).
 */
export function subscribeToFile(path: string, onChange: FileChangeListener, intervalMs: number): () => void {
  const key = resolve(path);
  let file = polled.get(key);
  if (!file) {
    const subscribers = new Set<FileChangeListener>();
    const fanOut: FileChangeListener = (curr, prev) => {
      // A mere read (atime) is no change: a reader reloading on it would loop.
      if (!contentChanged(curr, prev)) return;
      // A copy: a subscriber may unsubscribe (or subscribe another) while being called.
      for (const s of [...subscribers]) s(curr, prev);
    };
    watchFile(key, { interval: intervalMs, persistent: false }, fanOut);
    file = { fanOut, subscribers };
    polled.set(key, file);
  }
  const entry = file;
  // Each subscription is its own set member, so one function may subscribe twice.
  const subscriber: FileChangeListener = (curr, prev) => onChange(curr, prev);
  entry.subscribers.add(subscriber);
  return () => {
    if (!entry.subscribers.delete(subscriber) || entry.subscribers.size > 0) return;
    unwatchFile(key, entry.fanOut);
    if (polled.get(key) === entry) polled.delete(key);
  };
}

/** Whether a stat change touches the content: written, replaced (inode), resized; never a mere read. */
function contentChanged(curr: Stats, prev: Stats): boolean {
  return curr.mtimeMs !== prev.mtimeMs || curr.ctimeMs !== prev.ctimeMs || curr.ino !== prev.ino || curr.size !== prev.size;
}
