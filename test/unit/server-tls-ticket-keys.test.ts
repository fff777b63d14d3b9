/**
 * Session-ticket keys shared through listeners[].tls.ticketKeysFile, with
 * real TLS on loopback between node:tls clients and in-process gateways:
 * a ticket one gateway issued resumes on another gateway with the same file
 * (TLS 1.3 and 1.2) and not on one with another file; after a rotation (new
 * key first, the old one second) a ticket from before still resumes, and once
 * the old key is gone it falls back to a full handshake; a malformed file is
 * named by preflight (check-config), refused at start, and at a reload keeps
 * the old keys with a warning.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type SecureVersion } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/index.js';
import { loadListenerTls } from '../../src/server/listener.js';
import { preflight } from '../../src/server/preflight.js';
import { ALL_TICKET_KEYS_DECRYPT, parseTicketKeys, ticketKeyCallback } from '../../src/server/tls-context.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let ca: Buffer;
let dir: string;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  pki = await makeTempTestPki();
  ca = await readFile(pki.caFile);
  dir = await mkdtemp(join(tmpdir(), 'popgate-tickets-'));
  await writeFile(join(dir, 'users'), 'alice:{PLAIN}alice-secret\n');
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A key line as an operator makes it: `openssl rand -base64 48`. */
function keyLine(): string {
  return randomBytes(48).toString('base64');
}

let files = 0;
async function keyFile(...lines: string[]): Promise<string> {
  const file = join(dir, `keys-${++files}`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

async function gateway(ticketKeysFile: string): Promise<TestGateway> {
  const gw = await startTestGateway({
    users: [],
    backendPort: 1, // no login happens: only handshakes and greetings
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: '{ mode: passthrough }',
    tlsExtra: `ticketKeysFile: ${ticketKeysFile}`,
  });
  gateways.push(gw);
  return gw;
}

interface Visit {
  /** The handshake resumed the offered session. */
  readonly reused: boolean;
  /** The last session ticket the gateway sent (undefined when it sent none). */
  readonly session: Buffer | undefined;
  readonly greeting: string;
}

/** Connects to a gateway's pop3s port (offering `session`), reads the greeting, and hangs up. */
function visit(port: number, session: Buffer | undefined, maxVersion: SecureVersion): Promise<Visit> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca, maxVersion, ...(session ? { session } : {}) });
    let reused = false;
    let ticket: Buffer | undefined;
    let text = '';
    socket.on('secureConnect', () => (reused = socket.isSessionReused()));
    // Tickets come right after the handshake, before the greeting.
    socket.on('session', (s: Buffer) => (ticket = s));
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (!text.includes('\r\n')) return;
      socket.destroy();
      resolve({ reused, session: ticket, greeting: text.split('\r\n')[0] ?? '' });
    });
  });
}

/** A first visit's ticket (a full handshake). */
async function ticketFrom(gw: TestGateway, maxVersion: SecureVersion = 'TLSv1.3'): Promise<Buffer> {
  const first = await visit(gw.port('pop3s'), undefined, maxVersion);
  expect(first.reused).toBe(false);
  if (!first.session) throw new Error('the gateway sent no session ticket');
  return first.session;
}

describe('parseTicketKeys', () => {
  it('takes base64 48-byte keys, one a line, first first, skipping blank and # lines', () => {
    const a = randomBytes(48);
    const b = randomBytes(48);
    const parsed = parseTicketKeys(`# current\n${a.toString('base64')}\r\n\n  ${b.toString('base64')}  \n`);
    expect(parsed).toEqual({ keys: [a, b] });
  });

  it('names the line of a key that is not 48 bytes of base64, a repeated key, or an empty file, never the key', () => {
    const good = keyLine();
    const short = randomBytes(32).toString('base64');
    expect(parseTicketKeys(`${good}\n${short}\n`)).toEqual({ problem: 'line 2: not a key (expected 64 base64 characters, 48 bytes; found 44 characters)' });
    expect(parseTicketKeys(`${good.slice(0, 63)}!\n`)).toEqual({ problem: 'line 1: not a key (expected 64 base64 characters, 48 bytes; found 64 characters)' });
    expect(parseTicketKeys(`${good}\n# again\n${good}\n`)).toEqual({ problem: 'line 3: repeats the key name of line 1' });
    expect(parseTicketKeys('# nothing yet\n\n')).toEqual({ problem: 'no key in it' });
  });

  it('ticketKeyCallback: the first key encrypts, any key decrypts by its name (2: renew under the first), an unknown name is a full handshake', () => {
    const [a, b] = [randomBytes(48), randomBytes(48)];
    const cb = ticketKeyCallback([a, b]);
    const iv = randomBytes(16);
    const enc = cb(randomBytes(16), iv, true);
    expect([enc[0], enc[1], enc[2], enc[3]]).toEqual([1, a.subarray(16, 32), a.subarray(32, 48), a.subarray(0, 16)]);
    expect(enc[4]).toHaveLength(16);
    expect(cb(a.subarray(0, 16), iv, false)).toEqual([1, a.subarray(16, 32), a.subarray(32, 48)]);
    expect(cb(b.subarray(0, 16), iv, false)).toEqual([2, b.subarray(16, 32), b.subarray(32, 48)]);
    expect(cb(randomBytes(16), iv, false)[0]).toBe(0);
  });

  it('this Node lets every key decrypt (the native ticket key callback is there)', () => {
    // A Node upgrade that drops it fails here instead of silently resuming less.
    expect(ALL_TICKET_KEYS_DECRYPT).toBe(true);
  });
});

describe('listeners[].tls.ticketKeysFile across gateways', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`a ${version} ticket from one gateway resumes on another with the same file, not on one with another file`, async () => {
      const shared = await keyFile(keyLine());
      const [one, two, other] = await Promise.all([gateway(shared), gateway(shared), gateway(await keyFile(keyLine()))]);
      const ticket = await ticketFrom(one, version);
      const there = await visit(two.port('pop3s'), ticket, version);
      expect(there).toMatchObject({ reused: true, greeting: expect.stringMatching(/^\+OK/) });
      const elsewhere = await visit(other.port('pop3s'), ticket, version);
      // A full handshake, and the session goes on as usual.
      expect(elsewhere).toMatchObject({ reused: false, greeting: expect.stringMatching(/^\+OK/) });
    });
  }

  it('a rotation picked up from the file (new key first, old second) still resumes older tickets; new ones are under the new key; dropping the old key falls back to a full handshake', async () => {
    const [oldKey, newKey] = [keyLine(), keyLine()];
    const file = await keyFile(oldKey);
    const gw = await gateway(file);
    const before = await ticketFrom(gw);

    await writeFile(file, `${newKey}\n${oldKey}\n`);
    // The certificate watcher sees the change: no SIGHUP needed.
    const rec = await waitForLog(gw, (r) => r.msg === 'TLS session ticket keys reloaded' && r.listener === 't-pop3s', 10_000);
    expect(rec).toMatchObject({ reason: 'certificate files changed', keys: 2 });
    const resumed = await visit(gw.port('pop3s'), before, 'TLSv1.3');
    expect(resumed.reused).toBe(true);
    // OpenSSL renewed the ticket under the new key: a gateway holding only the new key resumes it.
    const newOnly = await gateway(await keyFile(newKey));
    if (!resumed.session) throw new Error('no renewed ticket');
    expect((await visit(newOnly.port('pop3s'), resumed.session, 'TLSv1.3')).reused).toBe(true);

    await writeFile(file, `${newKey}\n`);
    await gw.gateway.reload(); // as on SIGHUP
    await waitFor('the old key retired', () => gw.logs.filter((r) => r.msg === 'TLS session ticket keys reloaded' && r.listener === 't-pop3s').length >= 2);
    const retired = await visit(gw.port('pop3s'), before, 'TLSv1.3');
    expect(retired).toMatchObject({ reused: false, greeting: expect.stringMatching(/^\+OK/) });
  });
});

describe('a malformed ticket key file', () => {
  const config = (file: string): Promise<Awaited<ReturnType<typeof parseConfigText>>> =>
    parseConfigText(
      `listeners:\n  - { name: s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile}, ticketKeysFile: ${file} } }\nauth: { userFile: users }\nbackend: { host: 127.0.0.1, login: { mode: passthrough } }\n`,
      { baseDir: dir, source: 'test' },
    );

  it('check-config (preflight) names the file, the line and how to make a key; a good one is listed with its key count', async () => {
    const bad = await keyFile(keyLine(), 'c2VjcmV0');
    const report = await preflight(await config(bad));
    expect(report.issues).toEqual([
      {
        path: 'listeners[0].tls.ticketKeysFile',
        file: bad,
        message: `session ticket key file ${bad}: line 2: not a key (expected 64 base64 characters, 48 bytes; found 8 characters)`,
        hint: 'one key a line, each made by: openssl rand -base64 48 (the first encrypts new tickets; # starts a comment)',
      },
    ]);
    const good = await keyFile(keyLine(), keyLine());
    const ok = await preflight(await config(good));
    expect(ok.issues).toEqual([]);
    expect(ok.checked).toContainEqual({ path: 'listeners[0].tls.ticketKeysFile', file: good, detail: '2 session ticket keys (the first encrypts, all decrypt)' });
    const missing = await preflight(await config(join(dir, 'absent')));
    expect(missing.issues.map((i) => i.message)).toEqual([`cannot read session ticket key file ${join(dir, 'absent')} (ENOENT)`]);
  });

  it('is refused when the listener starts', async () => {
    const bad = await keyFile('not a key');
    const cfg = await config(bad);
    const listener = cfg.listeners[0];
    if (!listener) throw new Error('no listener');
    await expect(loadListenerTls(listener)).rejects.toThrow(`listener s: TLS session ticket keys ${bad}: line 1: not a key`);
  });

  it('at a reload keeps the old keys (tickets still resume) and logs why, at warn', async () => {
    const key = keyLine();
    const file = await keyFile(key);
    const gw = await gateway(file);
    const ticket = await ticketFrom(gw);
    await writeFile(file, `${keyLine()}\n${key.slice(0, 40)}\n`);
    await gw.gateway.reload();
    const warn = await waitForLog(gw, (r) => r.msg === 'TLS session ticket keys not reloaded; keeping the old ones' && r.listener === 't-pop3s');
    expect(warn).toMatchObject({ level: 40, reason: 'reload', file, err: `${file}: line 2: not a key (expected 64 base64 characters, 48 bytes; found 40 characters)` });
    // The log names the line, never a key.
    expect(gw.rawLog()).not.toContain(key.slice(0, 40));
    expect((await visit(gw.port('pop3s'), ticket, 'TLSv1.3')).reused).toBe(true);
  });
});
