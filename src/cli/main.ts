#!/usr/bin/env node
import { unsupportedNode } from './runtime.js';

// Refuse an unsupported Node with one clear line, before loading anything
// that might need a newer one.
const unsupported = unsupportedNode(process.versions.node);
if (unsupported) {
  process.stderr.write(`popgate: ${unsupported}\n`);
  process.exit(1);
}
// The libuv pool runs scrypt, file reads and every Kerberos call. Its size is
// fixed at first use, so set it before anything else is loaded. Kerberos KDC
// calls are capped separately (kerberos.kdc.maxConcurrent) so a dead KDC can
// hold at most that many of these threads.
process.env.UV_THREADPOOL_SIZE ??= '16';
await import('./commands.js');
