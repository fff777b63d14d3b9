/**
 * Processes for every benchmark: LIFO cleanup, progress output, child
 * processes (started, watched and stopped by PID, SIGKILLed if the benchmark
 * exits abruptly), the popgate child and waiting for its greeting, the
 * benchmark programs' main wrapper and the machine description.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { makeTestPki, type TestPki } from '../../test/helpers/certs.js';
import { startDovecot, type DovecotInstance } from '../../test/helpers/dovecot.js';
import { freePort } from '../../test/helpers/ports.js';
import type { EldFigures, MemFigures } from './preload.js';
import { Pop3Conn, type Pop3Endpoint } from './wire.js';

/** The checkout root (this file runs from dist-bench/bench/lib/). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** dist-bench/bench/: where the compiled helper scripts are. */
export const BENCH_DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const GATEWAY_MAIN = path.join(REPO_ROOT, 'dist/cli/main.js');
export const HOST = '127.0.0.1';

/** LIFO cleanup actions, run once (on success, failure or a signal). */
export class Cleanup {
  private readonly actions: Array<{ name: string; fn: () => Promise<void> | void }> = [];
  private running: Promise<void> | undefined;

  add(name: string, fn: () => Promise<void> | void): void {
    this.actions.push({ name, fn });
  }

  /** Whether run() was called (a signal or the end): failures after that are expected. */
  get started(): boolean {
    return this.running !== undefined;
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (let a = this.actions.pop(); a !== undefined; a = this.actions.pop()) {
        try {
          await a.fn();
        } catch (err) {
          process.stderr.write(`bench: cleanup "${a.name}" failed: ${describe(err)}\n`);
        }
      }
    })();
    return this.running;
  }
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const log = (line: string): void => void process.stdout.write(`${line}\n`);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Sends SIGTERM to `pid`, then SIGKILL (to `killPid`, by default the same
 * PID) after `graceMs` unless `exited` settled first. Never signals anything else.
 */
export async function stopPid(pid: number, exited: Promise<unknown>, graceMs = 5_000, killPid = pid): Promise<void> {
  signal(pid, 'SIGTERM');
  const timer = setTimeout(() => signal(killPid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Kills `pid` with SIGKILL if this process exits abruptly while it still runs. Returns the remover. */
export function killOnExit(pid: number, alive: () => boolean): () => void {
  const onExit = (): void => {
    if (alive()) signal(pid, 'SIGKILL');
  };
  process.on('exit', onExit);
  return () => void process.removeListener('exit', onExit);
}

// ------------------------------------------------------------------ child processes

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** The Node child object (IPC, when spawned with `ipc: true`). */
  readonly child: ChildProcess;
  running(): boolean;
  /** The last ~64 KiB of its stdout+stderr. */
  output(): string;
  /** SIGTERM by PID, SIGKILL after 5 s (with `detached`: the whole process group). */
  stop(): Promise<void>;
}

export interface SpawnOptions {
  readonly args?: readonly string[];
  /** Open an IPC channel (fd 3) to the child. */
  readonly ipc?: boolean;
  /** Own process group: stop() signals the leader, then SIGKILLs the group (nginx workers, stunnel). */
  readonly detached?: boolean;
  /** The leader's PID as the process writes it (nginx's pid file), when it differs from ours. */
  readonly pidFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Spawns `file args` with piped stdout/stderr and watches its output and exit. */
export function spawnChild(name: string, file: string, opts: SpawnOptions = {}): Child {
  const stdio: StdioOptions = opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'];
  const child: ChildProcess = spawn(file, [...(opts.args ?? [])], {
    stdio,
    detached: opts.detached ?? false,
    env: opts.env ?? process.env,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${name} (${file})`);
  let out = '';
  const keep = (d: Buffer): void => {
    out += d.toString('utf8');
    if (out.length > 65_536) out = out.slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = `exit code ${code ?? 'null'}, signal ${signal ?? 'none'}`;
      resolve();
    });
    child.once('error', (err) => {
      exitInfo = `spawn error: ${err.message}`;
      resolve();
    });
  });
  const running = (): boolean => exitInfo === undefined;
  const group = opts.detached ? -pid : pid;
  // Never leave a child behind, even on an abrupt exit of this process.
  const removeHook = killOnExit(group, running);
  return {
    name,
    pid,
    child,
    running,
    output: () => (exitInfo === undefined ? out : `${out}\n[${name} ${exitInfo}]`),
    stop: async () => {
      if (running()) {
        let leader = pid;
        if (opts.pidFile && existsSync(opts.pidFile)) {
          const n = Number(readFileSync(opts.pidFile, 'utf8').trim());
          if (Number.isSafeInteger(n) && n > 1) leader = n;
        }
        await stopPid(leader, exited, 5_000, group);
      }
      // nginx workers or stunnel threads left behind by a killed leader: the whole group.
      if (opts.detached) signal(group, 'SIGKILL');
      removeHook();
    },
  };
}

/** A compiled helper script of dist-bench/bench/ (e.g. 'lib/backend-child.js') in a Node child. */
export function startNodeChild(name: string, script: string, args: readonly string[], opts: { execArgv?: readonly string[]; ipc?: boolean; env?: NodeJS.ProcessEnv } = {}): Child {
  return spawnChild(name, process.execPath, {
    args: [...(opts.execArgv ?? []), path.join(BENCH_DIST, script), ...args],
    ...(opts.ipc ? { ipc: true } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  });
}

/** Waits for `READY <words>` on the child's stdout; returns the words. */
export async function waitReady(c: Child, timeoutMs = 30_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = /READY ([^\n]+)\n/.exec(c.output());
    if (m) return m[1]!.trim().split(' ');
    if (!c.running()) throw new Error(`${c.name} exited during start-up:\n${c.output()}`);
    await sleep(50);
  }
  throw new Error(`${c.name} did not get ready within ${timeoutMs} ms:\n${c.output()}`);
}

// ------------------------------------------------------------------ popgate child

export type GatewayChild = Child;

export function spawnGateway(configFile: string, opts: { readonly execArgv?: readonly string[]; readonly ipc?: boolean } = {}): GatewayChild {
  return spawnChild('popgate', process.execPath, {
    args: [...(opts.execArgv ?? []), GATEWAY_MAIN, 'serve', '--config', configFile],
    cwd: REPO_ROOT,
    ...(opts.ipc ? { ipc: true } : {}),
  });
}

/** Waits until `endpoint` greets with +OK; fails at once (with its output) if the child is gone. */
export async function waitForGreeting(
  endpoint: Pop3Endpoint,
  gw: Pick<GatewayChild, 'running' | 'output'>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!gw.running()) throw new Error(`${endpoint.label} exited during start-up:\n${gw.output()}`);
    try {
      const c = await Pop3Conn.connect(endpoint, { timeoutMs: 1_000 });
      c.destroy();
      return;
    } catch (err) {
      last = describe(err);
      await sleep(100);
    }
  }
  throw new Error(`${endpoint.label} did not greet within ${timeoutMs} ms (${last}):\n${gw.output()}`);
}

export interface DovecotRig {
  readonly pki: TestPki;
  readonly ca: Buffer;
  readonly dovecot: DovecotInstance;
  /** Dovecot's master user (popgate logs in as it). */
  readonly master: { readonly name: string; readonly password: string };
  /** One per mailbox, in the order given; Dovecot's own passwords, not the ones clients give popgate. */
  readonly users: ReadonlyArray<{ readonly name: string; readonly password: string }>;
}

/** The test PKI and a private Dovecot with a master user and these mailboxes; both go on cleanup. */
export async function startPkiAndDovecot(cleanup: Cleanup, name: string, mailboxes: Record<string, Buffer[]>): Promise<DovecotRig> {
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} missing: run npm run build (scripts/${name === 'bench' ? 'bench' : 'loadtest'}.sh does)`);
  const pkiDir = await mkdtemp(path.join(os.tmpdir(), `popgate-${name}-pki-`));
  cleanup.add('remove PKI dir', () => rm(pkiDir, { recursive: true, force: true }));
  const pki = await makeTestPki(pkiDir);
  const ca = await readFile(pki.caFile);
  const master = { name: 'popgate', password: `master-${randomBytes(12).toString('hex')}` };
  const users = Object.keys(mailboxes).map((u) => ({ name: u, password: `dovecot-${u}-${randomBytes(8).toString('hex')}` }));
  const dovecot = await startDovecot({
    users,
    masterUser: master,
    messages: mailboxes,
    // Dovecot's default of 10 sessions per user+IP is hit at concurrency 8 and more
    // while finished sessions are still being torn down.
    extraConfig: 'protocol pop3 {\n  mail_max_userip_connections = 1000\n}\n',
  });
  cleanup.add('stop Dovecot', () => dovecot.stop());
  log(`${name}: Dovecot pid ${dovecot.pid} on ${HOST}:${dovecot.port}`);
  return { pki, ca, dovecot, master, users };
}

export interface DovecotGatewayOptions {
  /** Listener-name prefix and the config's comment, e.g. 'bench'. */
  readonly name: string;
  /** Lines of popgate's user file (`name:hash`); it and popgate.yaml go to a temp dir removed on cleanup. */
  readonly userLines: readonly string[];
  readonly pki: { readonly certFile: string; readonly keyFile: string };
  readonly ca: Buffer;
  readonly dovecotPort: number;
  readonly master: { readonly name: string; readonly password: string };
  /** Entries after `userFile` in the `auth:` flow map, e.g. `failureDelay: 0s`. */
  readonly auth: string;
  /** Further top-level YAML lines (e.g. a `limits:` line). */
  readonly extraYaml?: string;
}

export interface DovecotGateway {
  readonly gateway: GatewayChild;
  readonly tlsPort: number;
  readonly plainPort: number;
  readonly tlsOpts: { readonly ca: Buffer; readonly servername: string };
}

/**
 * The popgate child the Dovecot-backed benchmarks measure: a pop3s and a
 * plaintext-auth pop3 listener on free loopback ports, its user file, AUTH
 * PLAIN as Dovecot's master user; returns once both listeners greet.
 */
export async function startDovecotGateway(cleanup: Cleanup, o: DovecotGatewayOptions): Promise<DovecotGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `popgate-${o.name}-gw-`));
  cleanup.add('remove gateway dir', () => rm(dir, { recursive: true, force: true }));
  const userFile = path.join(dir, 'users');
  await writeFile(userFile, `${o.userLines.join('\n')}\n`, { mode: 0o600 });
  const tlsPort = await freePort(HOST);
  let plainPort = await freePort(HOST);
  while (plainPort === tlsPort) plainPort = await freePort(HOST);
  const q = (s: string): string => JSON.stringify(s);
  const yaml = `# popgate ${o.name} config (generated)
log: { level: warn }
listeners:
  - { name: ${o.name}-pop3s, kind: pop3s, address: ${HOST}, port: ${tlsPort},
      tls: { certFile: ${q(o.pki.certFile)}, keyFile: ${q(o.pki.keyFile)} } }
  - { name: ${o.name}-pop3, kind: pop3, address: ${HOST}, port: ${plainPort}, allowPlaintextAuth: true }
auth: { userFile: ${q(userFile)}, ${o.auth} }
${o.extraYaml ? `${o.extraYaml}\n` : ''}backend:
  host: ${HOST}
  port: ${o.dovecotPort}
  login: { mode: master, method: auth-plain, user: ${q(o.master.name)}, password: ${q(o.master.password)} }
shutdown: { drainTimeout: 1s }
`;
  const configFile = path.join(dir, 'popgate.yaml');
  await writeFile(configFile, yaml, { mode: 0o600 });
  const gateway = spawnGateway(configFile);
  cleanup.add('stop popgate', () => gateway.stop());
  const tlsOpts = { ca: o.ca, servername: 'localhost' };
  await waitForGreeting({ label: 'popgate pop3', host: HOST, port: plainPort }, gateway, 15_000);
  await waitForGreeting({ label: 'popgate pop3s', host: HOST, port: tlsPort, tls: tlsOpts }, gateway, 15_000);
  return { gateway, tlsPort, plainPort, tlsOpts };
}

/**
 * Runs a benchmark program's `main` with one Cleanup: SIGINT/SIGTERM stop
 * everything started so far (exit 130/143), a failure is reported once
 * (`Error`s that already name their step, like Pop3Error, without a stack).
 */
export async function runBenchMain(
  name: string,
  main: (cleanup: Cleanup) => Promise<void>,
  conciseErrors: ReadonlyArray<new (...args: never[]) => Error> = [],
): Promise<void> {
  const cleanup = new Cleanup();
  let signalled = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (signalled) return;
      signalled = true;
      process.stderr.write(`\n${name}: ${signal}, stopping everything started here\n`);
      void cleanup.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  try {
    await main(cleanup);
  } catch (err) {
    if (!signalled) {
      const concise = conciseErrors.some((E) => err instanceof E);
      const text = err instanceof Error ? (concise ? err.message : (err.stack ?? err.message)) : String(err);
      process.stderr.write(`${name}: FAILED: ${text}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cleanup.run();
  }
}

/** What every benchmark report says about the machine it ran on. */
export interface BaseMachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly popgate: string;
}

export function baseMachineInfo(): BaseMachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) cpuModel = m[1].trim();
  } catch {
    /* keep os.cpus() */
  }
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version?: string };
  return {
    cpuModel,
    cores: os.availableParallelism(),
    memoryGiB: os.totalmem() / 2 ** 30,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    popgate: pkg.version ?? 'unknown',
  };
}

/** A version from a command's stdout + stderr (nginx and stunnel print theirs on stderr). */
export function versionOf(cmd: string, args: string[], re: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return re.exec(text)?.[1] ?? 'unknown';
}

/**
 * Writes reports (name -> text) atomically into bench/results/, or, for a
 * BENCH_QUICK trial run, into a temp dir (its figures must not replace the
 * published ones). Returns the paths written, for the log.
 */
export async function writeResults(quick: boolean, files: ReadonlyArray<readonly [name: string, text: string]>): Promise<string[]> {
  const dir = quick ? path.join(os.tmpdir(), 'popgate-bench-quick') : path.join(REPO_ROOT, 'bench/results');
  await mkdir(dir, { recursive: true });
  const out: string[] = [];
  for (const [name, text] of files) {
    const file = path.join(dir, name);
    await writeFile(`${file}.${process.pid}.tmp`, text);
    await rename(`${file}.${process.pid}.tmp`, file);
    out.push(quick ? file : path.relative(REPO_ROOT, file));
  }
  return out;
}

/** Asks lib/preload.ts inside a Node child (spawned with `--import` it and `ipc: true`). */
export class Instruments {
  private readonly waiters = new Map<string, Array<(m: Record<string, number>) => void>>();

  constructor(private readonly c: Pick<Child, 'child' | 'output'>) {
    c.child.on('message', (m: unknown) => {
      const reply = typeof m === 'object' && m !== null ? (m as { reply?: unknown }).reply : undefined;
      if (typeof reply === 'string') this.waiters.get(reply)?.shift()?.(m as Record<string, number>);
    });
  }

  private ask(cmd: 'eld-reset' | 'eld-read' | 'mem'): Promise<Record<string, number>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${cmd} over IPC (is lib/preload.js loaded?)\n${this.c.output()}`)), 10_000);
      const list = this.waiters.get(cmd) ?? [];
      this.waiters.set(cmd, list);
      list.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.c.child.send({ cmd });
    });
  }

  async eldReset(): Promise<void> {
    await this.ask('eld-reset');
  }

  async eldRead(): Promise<EldFigures> {
    const { count = 0, p50Ms = 0, p90Ms = 0, p99Ms = 0, maxMs = 0, meanMs = 0 } = await this.ask('eld-read');
    return { count, p50Ms, p90Ms, p99Ms, maxMs, meanMs };
  }

  async mem(): Promise<MemFigures> {
    const { rss = 0, heapTotal = 0, heapUsed = 0, external = 0, arrayBuffers = 0 } = await this.ask('mem');
    return { rss, heapTotal, heapUsed, external, arrayBuffers };
  }
}
