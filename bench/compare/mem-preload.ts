/**
 * Loaded into the popgate child by the comparison only
 * (`node --expose-gc --import dist-bench/bench/compare/mem-preload.js
 * dist/cli/main.js serve ...`); popgate's own code is unchanged. Answers
 * over the IPC channel:
 *
 *   { cmd: 'mem', gc: true } -> { mem: 'read', rss, heapTotal, heapUsed, external, arrayBuffers }
 *
 * With `gc: true` (and --expose-gc) two full collections run first, so
 * heapUsed counts live objects only. The channel is unref'd: it never keeps
 * popgate alive.
 */

const send = process.send?.bind(process);
if (send) {
  process.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || (m as { cmd?: unknown }).cmd !== 'mem') return;
    const gc = (globalThis as { gc?: () => void }).gc;
    if ((m as { gc?: unknown }).gc === true && gc) {
      gc();
      gc();
    }
    send({ mem: 'read', ...process.memoryUsage() });
  });
  process.channel?.unref();
}
