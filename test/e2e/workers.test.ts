/**
 * `workers: 2` with the shipped CLI (dist/cli/main.js serve): both workers
 * serve logins (poplib), the login throttle and the per-address connection
 * limit hold across them, the primary's /metrics is the sum over workers and
 * its /readyz asks every worker (curl), a TLS session resumes on the other
 * worker (one ticket key from the primary), SIGHUP reaches every worker, a killed
 * worker is replaced and counted, and SIGTERM drains every worker before the
 * primary exits 0; and a KPOP AP-REQ replayed to the other worker is refused
 * (MIT's file replay cache in kerberos.rcacheDir, shared on disk). Which
 * worker holds a connection is read from its debug `connection accepted`
 * line (client port → `worker`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { kpopApReqFrame, kpopClientHello } from '../../src/kerberos/kpop-framing.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { poplibFetch, runProgram } from '../helpers/clients.js';
import { CLI, startCli, type LogRecord, type RunningCli } from '../helpers/cli-process.js';
import { apReqFromGssToken, gssInitialToken, startKdc, type KdcInstance } from '../helpers/kdc.js';
import { LineClient } from '../helpers/line-client.js';
import { parsePrometheus, valueOf } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function curl(url: string): Promise<{ status: number; body: string }> {
  const r = await runProgram('curl', ['-sS', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', url]);
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

describe('popgate serve with workers: 2', () => {
  let backend: DemoBackend;
  let dir: string;
  let configFile: string;
  let gw: RunningCli;
  let port: number;
  let tlsPort: number;
  let adminPort: number;
  let pids: Map<number, number>;
  let pki: TestPki;

  const config = (greeting: string): string => `log: { level: debug }
workers: 2
listeners:
  - { name: p, kind: pop3, address: 127.0.0.1, port: 0, allowPlaintextAuth: true, greeting: ${greeting} }
  - { name: s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} } }
auth:
  userFile: users
  failureDelay: 0s
  throttle: { maxFailures: 3, delays: [0s], window: 10m, lockout: 10m }
limits: { maxConnectionsPerIp: 4 }
backend:
  host: 127.0.0.1
  port: ${backend.port}
  login: { mode: master, method: auth-plain, user: popgate, passwordFile: master }
admin: { address: 127.0.0.1, port: 0 }
shutdown: { drainTimeout: 30s }
`;

  /** The worker that accepted `c` (its `connection accepted` line, by client port). */
  function workerOf(c: LineClient): Promise<number> {
    const rport = c.socket.localPort;
    return waitFor(`the worker of client port ${rport}`, () => {
      const rec = gw.records().find((r) => r.msg === 'connection accepted' && r.rport === rport);
      return typeof rec?.worker === 'number' ? rec.worker : undefined;
    });
  }

  /** `n` greeted connections from `from`, spread over both workers (reconnecting until they are). */
  async function spread(from: string, n: number): Promise<Array<{ c: LineClient; worker: number }>> {
    return waitFor(`${n} connections from ${from} on both workers`, async () => {
      const conns = await Promise.all(Array.from({ length: n }, () => LineClient.connect({ port, localAddress: from })));
      const out = await Promise.all(
        conns.map(async (c) => {
          // A slot of the previous try may not be freed yet: that try is just not counted.
          const greeted = (await c.line()).startsWith('+OK');
          return { c, worker: greeted ? await workerOf(c) : 0 };
        }),
      );
      const workers = new Set(out.map((o) => o.worker));
      if (workers.size === 2 && !workers.has(0)) return out;
      for (const o of out) {
        o.c.end();
        await o.c.closed();
      }
      return undefined;
    });
  }

  const logins = (filter: (r: LogRecord) => boolean): LogRecord[] => gw.records().filter((r) => r.event === 'login' && filter(r));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-workers-'));
    pki = await makeTestPki(join(dir, 'pki'));
    backend = await startDemoBackend({
      users: { frank: 'backend-only', gina: 'backend-only-2' },
      masterUser: 'popgate',
      masterPassword: 'Master-S3cret',
      messages: { frank: [Buffer.from('Subject: one\r\n\r\nfirst\r\n')], gina: [] },
      logCommands: false,
    });
    let users = '';
    for (const [user, pw] of [
      ['frank', 'Frank-front-pw'],
      ['gina', 'Gina-front-pw'],
    ] as const) {
      const r = await runProgram(process.execPath, [CLI, 'hash-password', '--user', user], { input: `${pw}\n` });
      users += r.stdout;
    }
    await writeFile(join(dir, 'users'), users);
    await writeFile(join(dir, 'master'), 'Master-S3cret\n');
    configFile = join(dir, 'popgate.yaml');
    await writeFile(configFile, config('First'));
    gw = startCli(['serve', '--config', configFile]);
    const ready = await waitFor('popgate ready', () => gw.records().find((r) => r.msg === 'popgate ready'), { timeoutMs: 30_000 });
    const bound = ready.listeners as Array<{ name: string; port: number }>;
    port = bound.find((l) => l.name === 'p')!.port;
    tlsPort = bound.find((l) => l.name === 's')!.port;
    adminPort = (ready.admin as { port: number }).port;
    pids = new Map((ready.workers as Array<{ worker: number; pid: number }>).map((w) => [w.worker, w.pid]));
    expect([...pids.keys()]).toEqual([1, 2]);
    expect(ready.pid).toBe(gw.child.pid);
  }, 60_000);

  afterAll(async () => {
    gw?.child.kill('SIGKILL');
    // Orphaned workers drain on their own; do not leave them behind.
    for (const rec of gw?.records() ?? []) if (rec.msg === 'worker ready' && typeof rec.pid === 'number' && alive(rec.pid)) process.kill(rec.pid, 'SIGKILL');
    await backend?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (scripts/test.sh does)`);
  });

  it('serves logins on both workers; /metrics sums them and /readyz asks each worker', async () => {
    await waitFor('successful logins on both workers', async () => {
      const runs = await Promise.all(
        Array.from({ length: 4 }, () => poplibFetch({ host: '127.0.0.1', port, mode: 'plain', user: 'frank', password: 'Frank-front-pw', retrieve: 'all' })),
      );
      for (const r of runs) expect(r.result.ok, JSON.stringify(r.result)).toBe(true);
      return new Set(logins((r) => r.outcome === 'success').map((r) => r.worker)).size === 2;
    });
    // Every login line (one per login, on whichever worker) is in the summed counter.
    await waitFor('/metrics to count every login', async () => {
      const exp = parsePrometheus((await curl(`http://127.0.0.1:${adminPort}/metrics`)).body);
      return valueOf(exp, 'popgate_auth_attempts_total', { mechanism: 'USER', outcome: 'success', code: 'none' }) === logins((r) => r.outcome === 'success').length;
    });
    const exp = parsePrometheus((await curl(`http://127.0.0.1:${adminPort}/metrics`)).body);
    // Summed, except what every worker says alike.
    expect(valueOf(exp, 'popgate_build_info', { node: process.version })).toBe(1);
    expect(valueOf(exp, 'popgate_worker_restarts_total', {})).toBe(0);
    const ready = await curl(`http://127.0.0.1:${adminPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: true, checks: [{ name: 'worker 1', ok: true }, { name: 'worker 2', ok: true }] });
  }, 60_000);

  it('locks a user out after maxFailures failures spread over both workers (a repeated password counted once)', async () => {
    const conns = await spread('127.0.0.2', 4);
    const w1 = conns.find((o) => o.worker === 1)!;
    const w2 = conns.find((o) => o.worker === 2)!;
    const rest = conns.filter((o) => o !== w1 && o !== w2);
    const fail = async (o: { c: LineClient }, password: string): Promise<string> => {
      expect(await o.c.cmd('USER gina')).toMatch(/^\+OK/);
      return o.c.cmd(`PASS ${password}`);
    };
    // One failure on each worker: counted per worker, neither would reach 3.
    expect(await fail(w1, 'wrong-1')).toMatch(/^-ERR \[AUTH\]/);
    // The same wrong password on the other worker: its fingerprint is the primary's too, so it is not counted.
    expect(await fail(w2, 'wrong-1')).toMatch(/^-ERR \[AUTH\]/);
    await waitFor('the repeat logged', () => logins((r) => r.throttle === 'repeated-password' && r.worker === w2.worker).length === 1);
    expect(await fail(w2, 'wrong-2')).toMatch(/^-ERR \[AUTH\]/);
    // The third, on either worker, locks the user (and the address) for every worker.
    expect(await fail(rest[0]!, 'wrong-3')).toMatch(/^-ERR \[AUTH\]/);
    await waitFor('the lockout line', () => gw.records().some((r) => r.event === 'login-throttle' && r.msg === 'login throttle: locked out after repeated failures'));
    // The right password on the other worker is refused without being checked.
    const other = rest[0]!.worker === 1 ? w2 : w1;
    const last = rest[1]!;
    for (const o of [other, last]) {
      expect(await o.c.cmd('USER gina')).toMatch(/^\+OK/);
      expect(await o.c.cmd('PASS Gina-front-pw')).toMatch(/^-ERR \[LOGIN-DELAY\]/);
    }
    const throttled = logins((r) => r.code === 'LOGIN_THROTTLED' && r.user === 'gina');
    expect(new Set(throttled.map((r) => r.worker))).toContain(other.worker);
    for (const o of conns) o.c.destroy();
  }, 60_000);

  it('holds limits.maxConnectionsPerIp across workers', async () => {
    const held = await spread('127.0.0.3', 4);
    // Neither worker holds 4, so only the count in the primary can refuse the fifth.
    const fifth = await LineClient.connect({ port, localAddress: '127.0.0.3' });
    expect(await fifth.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
    await fifth.closed();
    // A slot freed on one worker can be taken through the other.
    held[0]!.c.end();
    await held[0]!.c.closed();
    await waitFor('a freed slot', async () => {
      const c = await LineClient.connect({ port, localAddress: '127.0.0.3' });
      const line = await c.line();
      c.destroy();
      return line.startsWith('+OK');
    });
    for (const o of held) o.c.destroy();
  }, 60_000);

  it('resumes a TLS session on the other worker: one ticket key from the primary', async () => {
    const tls = { ca: readFileSync(pki.caFile), servername: 'localhost' };
    const first = await LineClient.connect({ port: tlsPort, tls, localAddress: '127.0.0.7' });
    expect(await first.line()).toMatch(/^\+OK/);
    const issuer = await workerOf(first);
    const session = (first.socket as TLSSocket).getSession();
    expect(session).toBeDefined();
    first.destroy();
    const other = await waitFor('a connection with the session on the other worker', async () => {
      const c = await LineClient.connect({ port: tlsPort, tls: { ...tls, session: session! }, localAddress: '127.0.0.7' });
      try {
        if (!(await c.line()).startsWith('+OK')) return undefined; // a slot not yet freed
        const worker = await workerOf(c);
        return worker !== issuer ? { worker, reused: (c.socket as TLSSocket).isSessionReused() } : undefined;
      } finally {
        c.destroy();
      }
    });
    expect(other.reused).toBe(true);
  }, 60_000);

  it('SIGHUP reaches every worker', async () => {
    await writeFile(configFile, config('Second'));
    gw.child.kill('SIGHUP');
    await waitFor('both workers reloaded', () => {
      const reloaded = gw.records().filter((r) => r.msg === 'configuration reloaded').map((r) => r.worker);
      return reloaded.includes(1) && reloaded.includes(2);
    });
    const conns = await spread('127.0.0.4', 2);
    for (const o of conns) {
      expect(await o.c.cmd('CAPA')).toMatch(/^\+OK/);
      o.c.destroy();
    }
    const greetings = await Promise.all(
      [0, 1].map(async () => {
        const c = await LineClient.connect({ port, localAddress: '127.0.0.4' });
        const g = await c.line();
        c.destroy();
        return g;
      }),
    );
    for (const g of greetings) expect(g).toMatch(/^\+OK Second/);
  }, 60_000);

  it('replaces a killed worker, counts it, and is ready again', async () => {
    const old = pids.get(1)!;
    process.kill(old, 'SIGKILL');
    const replaced = await waitFor('worker 1 replaced', () =>
      gw.records().find((r) => r.msg === 'worker ready' && r.worker === 1 && r.pid !== old && typeof r.pid === 'number'),
    );
    expect(gw.records().find((r) => r.msg === 'worker exited unexpectedly; starting a new one')).toMatchObject({ level: 'error', worker: 1, pid: old, signal: 'SIGKILL' });
    pids.set(1, replaced.pid as number);
    await waitFor('/readyz 200 with the new worker', async () => (await curl(`http://127.0.0.1:${adminPort}/readyz`)).status === 200);
    const exp = parsePrometheus((await curl(`http://127.0.0.1:${adminPort}/metrics`)).body);
    expect(valueOf(exp, 'popgate_worker_restarts_total', {})).toBe(1);
    // The new worker serves.
    await spread('127.0.0.5', 2).then((conns) => conns.forEach((o) => o.c.destroy()));
  }, 60_000);

  it('SIGTERM drains every worker; the primary exits 0 once they have', async () => {
    // A relayed session on each worker, still working after the drain began.
    const sessions = await spread('127.0.0.6', 2);
    for (const o of sessions) {
      o.c.send('USER frank\r\nPASS Frank-front-pw\r\n');
      expect(await o.c.line()).toMatch(/^\+OK/);
      expect(await o.c.line()).toMatch(/^\+OK/);
    }
    gw.child.kill('SIGTERM');
    await waitFor('both workers draining', () => {
      const stopping = gw.records().filter((r) => r.msg === 'stopping').map((r) => r.worker);
      return stopping.includes(1) && stopping.includes(2);
    });
    for (const o of sessions) {
      expect(await o.c.cmd('STAT')).toMatch(/^\+OK/);
      expect(await o.c.cmd('QUIT')).toMatch(/^\+OK/);
    }
    expect(await gw.exited).toBe(0);
    const stopped = gw.records().filter((r) => r.msg === 'worker stopped');
    expect(stopped.map((r) => [r.worker, r.code]).sort()).toEqual([
      [1, 0],
      [2, 0],
    ]);
    for (const pid of pids.values()) expect(alive(pid)).toBe(false);
  }, 60_000);
});

describe('popgate serve with workers: 2 and KPOP', () => {
  const REALM = 'POPGATE.TEST';
  let kdc: KdcInstance;
  let backend: DemoBackend;
  let dir: string;
  let gw: RunningCli;
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-workers-krb-'));
    await mkdir(join(dir, 'rcache'));
    kdc = await startKdc({ realm: REALM, principals: [{ name: 'alice', password: 'alice-realm-pw' }], services: ['pop/localhost'] });
    await kdc.keytab(join(dir, 'pop.keytab'), [`pop/localhost@${REALM}`]);
    backend = await startDemoBackend({ users: { alice: 'backend-only' }, masterUser: 'popgate', masterPassword: 'Master-S3cret', messages: { alice: [] }, logCommands: false });
    const hashed = await runProgram(process.execPath, [CLI, 'hash-password', '--user', 'carol'], { input: 'carol-pw\n' });
    await writeFile(join(dir, 'users'), hashed.stdout);
    await writeFile(join(dir, 'master'), 'Master-S3cret\n');
    await writeFile(
      join(dir, 'popgate.yaml'),
      `log: { level: debug }
workers: 2
listeners:
  - { name: k, kind: kpop, address: 127.0.0.1, port: 0 }
auth: { userFile: users, failureDelay: 0s, throttle: { enabled: false } }
kerberos:
  keytab: pop.keytab
  servicePrincipals: [pop/localhost@${REALM}]
  rcacheDir: rcache
  krb5Config: ${kdc.krb5Config}
  mapping: { realms: [${REALM}] }
backend:
  host: 127.0.0.1
  port: ${backend.port}
  login: { mode: master, method: auth-plain, user: popgate, passwordFile: master }
shutdown: { drainTimeout: 1s }
`,
    );
    gw = startCli(['serve', '--config', join(dir, 'popgate.yaml')]);
    const ready = await waitFor('popgate ready', () => gw.records().find((r) => r.msg === 'popgate ready'), { timeoutMs: 30_000 });
    port = (ready.listeners as Array<{ port: number }>)[0]!.port;
  }, 120_000);

  afterAll(async () => {
    gw?.child.kill('SIGTERM');
    await gw?.exited;
    await backend?.close();
    await kdc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses an AP-REQ replayed to the other worker', async () => {
    // One silent connection on each worker (the KPOP client speaks first, so nothing is sent yet).
    const byWorker = await waitFor('a KPOP connection on each worker', async () => {
      const conns = await Promise.all([0, 1, 2, 3].map(() => LineClient.plain(port)));
      const found = new Map<number, LineClient>();
      for (const c of conns) {
        const rport = c.socket.localPort;
        const rec = await waitFor(`connection ${rport}`, () => gw.records().find((r) => r.msg === 'connection accepted' && r.rport === rport));
        const w = rec.worker as number;
        if (found.has(w)) c.destroy();
        else found.set(w, c);
      }
      if (found.size === 2) return found;
      for (const c of found.values()) c.destroy();
      return undefined;
    });
    const apReq = apReqFromGssToken(await gssInitialToken({ ...kdc.env, KRB5CCNAME: await kdc.kinit('alice', 'alice-realm-pw', join(dir, 'cc-alice')) }, `pop/localhost@${REALM}`));
    const first = byWorker.get(1)!;
    first.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(apReq)]));
    // Version byte, then a zero-length (success) reply frame.
    expect((await first.readUntil(Buffer.from([0, 0, 0, 0, 0]))).length).toBe(5);
    await waitFor('the ticket verified on worker 1', () => gw.records().find((r) => r.msg === 'KPOP ticket verified' && r.worker === 1));
    const replay = byWorker.get(2)!;
    replay.send(Buffer.concat([kpopClientHello(), kpopApReqFrame(apReq)]));
    await replay.closed();
    const bytes = replay.pending();
    expect(bytes[0]).toBe(0); // version accepted
    expect(bytes[5]).toBe(0x7e); // then a KRB-ERROR
    const refused = await waitFor('the replay refused', () => gw.records().find((r) => r.event === 'login' && r.mechanism === 'KPOP' && r.outcome === 'failure'));
    expect(refused).toMatchObject({ worker: 2, code: 'AUTH_FAILED', krbFailure: 'replay' });
    first.destroy();
  }, 60_000);
});

describe('popgate serve with workers: refusals', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'popgate-workers-bad-'));
    await writeFile(join(dir, 'users'), '');
    await writeFile(join(dir, 'master'), 'x\n');
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const yaml = (workers: string, port = 0): string => `workers: ${workers}
listeners:
  - { name: p, kind: pop3, address: 127.0.0.1, port: ${port} }
auth: { userFile: users }
backend: { host: 127.0.0.1, port: 1, login: { mode: master, method: auth-plain, user: popgate, passwordFile: master } }
`;

  it('check-config and serve refuse a workers value that is not 1..256 or auto (exit 78)', async () => {
    for (const bad of ['0', '300', '2.5', 'all']) {
      const file = join(dir, `bad-${bad}.yaml`);
      await writeFile(file, yaml(bad));
      const check = await runProgram(process.execPath, [CLI, 'check-config', file]);
      expect(check.code, bad).toBe(78);
      expect(check.stdout + check.stderr).toMatch(/^.*workers.*$/m);
      const serve = await runProgram(process.execPath, [CLI, 'serve', '--config', file]);
      expect(serve.code, bad).toBe(78);
      expect(serve.stderr).toMatch(/workers/);
    }
  });

  it('exits 1 when the workers cannot bind, leaving no worker behind', async () => {
    const taken = await new Promise<Server>((r) => {
      const srv = createServer();
      srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => r(srv));
    });
    try {
      const file = join(dir, 'taken.yaml');
      await writeFile(file, yaml('2', (taken.address() as AddressInfo).port));
      const gw = startCli(['serve', '--config', file]);
      expect(await gw.exited).toBe(1);
      expect(gw.records().find((r) => r.msg === 'start-up failed' && r.worker === undefined)).toBeDefined();
      const forked = gw.records().filter((r) => r.msg === 'start-up failed' && typeof r.worker === 'number');
      expect(forked.length).toBeGreaterThan(0);
      // The primary returns only once every worker has exited: each exit is logged with its pid.
      const exits = gw.records().filter((r) => r.msg === 'worker exited during start-up' || r.msg === 'worker stopped');
      expect(exits.map((r) => r.worker).sort()).toEqual([1, 2]);
      for (const r of exits) expect(alive(r.pid as number)).toBe(false);
    } finally {
      taken.close();
    }
  }, 60_000);
});
