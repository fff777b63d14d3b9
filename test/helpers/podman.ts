/**
 * podman for the container tests (test/deploy): every call with popgate's
 * private containers.conf (runc, cgroupfs, explicit ulimits), written by
 * scripts/container-images.sh, which the tests run first.
 */
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { runProgram, type RunResult } from './clients.js';

export const CONTAINERS_CONF = join(resolve('.'), '.toolchain/containers/containers.conf');

/** Runs podman; the result whatever the exit code. */
export function podman(args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return runProgram('podman', args, { timeoutMs, env: { ...process.env, CONTAINERS_CONF } });
}

/** Runs podman and returns its stdout; throws with podman's stderr on a non-zero exit. */
export async function podmanOk(args: string[], timeoutMs?: number): Promise<string> {
  const r = await podman(args, timeoutMs);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** A TCP port free on 127.0.0.1 right now (for a container that cannot listen on port 0 and report it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (!address || typeof address !== 'object') throw new Error('no port');
  return address.port;
}
