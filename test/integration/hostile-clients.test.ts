/**
 * Hostile and misdirected clients against the real gateway (in-memory demo
 * backend): the per-address connection limit, a real `openssl s_client` and
 * a real `curl` on the plaintext POP3 port, an early talker under
 * `limits.greetingDelay`, and CR/LF/NUL smuggled into user names and SASL
 * fields, checked against what the backend actually received. After each
 * attack a normal client still logs in.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoBackend, type DemoBackend } from '../../src/demo/backend.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { runProgram } from '../helpers/clients.js';
import { startTestGateway, waitForLog, type LogRecord, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

let pki: TestPki;
let backend: DemoBackend;

const GINA = { name: 'gina', password: 'Gina-front-pw' };
/** Non-ASCII name and password, sent as UTF-8. */
const JUERGEN = { name: 'jürgen', password: 'pässwörd-€' };
/** A real (odd) account whose name is the literal text of a URL-encoded CRLF injection. */
const PCT = { name: 'pct%0d%0aDELE%201', password: 'Pct-front-pw' };
const USERS = [GINA, JUERGEN, PCT];
const LOGIN = '{ mode: master, method: auth-plain, user: popgate, password: Demo-Master }';
const GREETING = /^\+OK POP3 gateway ready/;

const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');

beforeAll(async () => {
  pki = await makeTempTestPki();
  backend = await startDemoBackend({
    users: { gina: 'unused', 'jürgen': 'unused', [PCT.name]: 'unused' },
    masterUser: 'popgate',
    masterPassword: 'Demo-Master',
    messages: {
      gina: [Buffer.from('Subject: one\r\n\r\nfor gina\r\n')],
      'jürgen': [Buffer.from('Subject: a\r\n\r\na\r\n'), Buffer.from('Subject: b\r\n\r\nb\r\n'), Buffer.from('Subject: c\r\n\r\nc\r\n')],
      [PCT.name]: [Buffer.from('Subject: a\r\n\r\na\r\n'), Buffer.from('Subject: b\r\n\r\nb\r\n')],
    },
  });
});

afterAll(async () => {
  await backend?.close();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** A gateway in front of the demo backend with `extra` top-level YAML; `opts` adds or replaces gateway options. */
function gatewayWith(extra = '', opts: Partial<TestGatewayOptions> = {}): Promise<TestGateway> {
  return startTestGateway({
    users: USERS,
    backendPort: backend.port,
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    login: LOGIN,
    extra,
    ...opts,
  });
}

/** A plain USER/PASS login over POP3S that reads the mailbox size and quits. */
async function normalLogin(gw: TestGateway, user = GINA): Promise<string> {
  const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
  try {
    expect(await c.line()).toMatch(GREETING);
    expect(await c.cmd(`USER ${user.name}`)).toBe('+OK');
    expect(await c.cmd(`PASS ${user.password}`)).toMatch(/^\+OK/);
    const stat = await c.cmd('STAT');
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    await c.closed();
    return stat;
  } finally {
    c.destroy();
  }
}

/** Close-reason log lines (`closing connection`) with this reason. */
const closings = (gw: TestGateway, reason: string): LogRecord[] => gw.logs.filter((l) => l.msg === 'closing connection' && l.reason === reason);

/** How this file polls: every 20 ms, for up to 5 s. */
const POLL = { timeoutMs: 5_000, intervalMs: 20 } as const;

describe('per-address connection limit', () => {
  it('refuses the (n+1)th connection from one address, not from another, and frees the slot on close', async () => {
    const gw = await gatewayWith('limits: { maxConnectionsPerIp: 2 }');
    const open: LineClient[] = [];
    try {
      const from5 = (): Promise<LineClient> => LineClient.connect({ port: gw.port('pop3'), localAddress: '127.0.0.5' });
      const a = await from5();
      const b = await LineClient.connect({ port: gw.port('pop3s'), tls: pki.caFile, localAddress: '127.0.0.5' });
      open.push(a, b);
      expect(await a.line()).toMatch(GREETING);
      expect(await b.line()).toMatch(GREETING);

      // Plaintext listener: a POP3 reply, then close.
      const c = await from5();
      expect(await c.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
      await c.closed();
      // TLS listener: closed before any handshake.
      await expect(LineClient.connect({ port: gw.port('pop3s'), tls: pki.caFile, localAddress: '127.0.0.5' })).rejects.toThrow(
        /LineClient: connect/,
      );
      // A flood from that address: more refusals, the log line is rate-limited.
      for (let i = 0; i < 3; i++) {
        const d = await from5();
        expect(await d.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
        await d.closed();
      }

      // Another address is unaffected, on both listeners.
      const e = await LineClient.connect({ port: gw.port('pop3'), localAddress: '127.0.0.6' });
      const f = await LineClient.connect({ port: gw.port('pop3s'), tls: pki.caFile, localAddress: '127.0.0.6' });
      open.push(e, f);
      expect(await e.line()).toMatch(GREETING);
      expect(await f.line()).toMatch(GREETING);

      const refusals = gw.logs.filter((l) => l.msg === 'per-address connection limit reached, refusing');
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(refusals[0]).toMatchObject({ remote: '127.0.0.5', code: 'TOO_MANY_FROM_ADDRESS', limit: 2, level: 40 });
      // Five refusals, far fewer lines (one per address per 10 s).
      expect(refusals.length).toBeLessThan(5);
      expect(refusals.every((l) => l.remote === '127.0.0.5')).toBe(true);

      // One of 127.0.0.5's connections ends: its slot is free again.
      expect(await a.cmd('QUIT')).toMatch(/^\+OK/);
      await a.closed();
      // The gateway frees the slot when its side of `a` closes: b, e and f remain.
      await waitFor("the gateway to close a's connection", () => gw.gateway.openTcpConnections === 3, POLL);
      const g = await from5();
      open.push(g);
      expect(await g.line()).toMatch(GREETING);
      // And that connection works normally.
      expect(await g.cmd('CAPA')).toMatch(/^\+OK/);
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
    } finally {
      open.forEach((c) => c.destroy());
      await gw.stop();
    }
  });

  it('behind a trusted PROXY peer, counts the client named in the header, not the balancer', async () => {
    const gw = await gatewayWith('limits: { maxConnectionsPerIp: 1 }', {
      listenerExtra: 'proxyProtocol: { trustedNetworks: [127.0.0.7/32] }',
      extraListeners: [
        `{ name: lb-pop3s, kind: pop3s, address: 127.0.0.1, port: 0, proxyProtocol: { trustedNetworks: [127.0.0.7/32] }, tls: { certFile: ${pki.certFile}, keyFile: ${pki.keyFile} } }`,
      ],
    });
    const open: LineClient[] = [];
    try {
      const viaBalancer = async (client: string): Promise<LineClient> => {
        const c = await LineClient.connect({ port: gw.port('pop3'), localAddress: '127.0.0.7' });
        open.push(c);
        c.send(`PROXY TCP4 ${client} 127.0.0.1 40000 110\r\n`);
        return c;
      };
      // Two clients through one balancer address: each has its own slot.
      const x = await viaBalancer('192.0.2.10');
      const y = await viaBalancer('192.0.2.11');
      expect(await x.line()).toMatch(GREETING);
      expect(await y.line()).toMatch(GREETING);
      // The same client again: over its limit.
      const z = await viaBalancer('192.0.2.10');
      expect(await z.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
      await z.closed();
      const rec = await waitForLog(gw, (l) => l.msg === 'per-address connection limit reached, refusing');
      expect(rec).toMatchObject({ remote: '192.0.2.10', via: '127.0.0.7', code: 'TOO_MANY_FROM_ADDRESS' });

      // pop3s behind the balancer: counted after the handshake, so the refusal is a reply over TLS.
      const lbPort = gw.gateway.bound.find((l) => l.name === 'lb-pop3s')?.port ?? 0;
      const viaTls = async (client: string): Promise<LineClient> => {
        const c = await LineClient.connect({ port: lbPort, localAddress: '127.0.0.7' });
        open.push(c);
        c.send(`PROXY TCP4 ${client} 127.0.0.1 40000 995\r\n`);
        await c.startTls(pki.caFile);
        return c;
      };
      const t1 = await viaTls('192.0.2.20');
      expect(await t1.line()).toMatch(GREETING);
      const t2 = await viaTls('192.0.2.20');
      expect(await t2.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
      await t2.closed();
      // 192.0.2.10 still holds its one slot (on the other listener: the count is per gateway).
      const t3 = await viaTls('192.0.2.10');
      expect(await t3.line()).toBe('-ERR [SYS/TEMP] Too many connections from your address');
      const t4 = await viaTls('192.0.2.21');
      expect(await t4.line()).toMatch(GREETING);
    } finally {
      open.forEach((c) => c.destroy());
      await gw.stop();
    }
  });
});

describe('TLS on the plaintext port', () => {
  it('a real openssl s_client fails its handshake; the gateway logs TLS_ON_PLAINTEXT_PORT and keeps serving', async () => {
    const gw = await gatewayWith();
    try {
      const r = await runProgram('openssl', ['s_client', '-connect', `127.0.0.1:${gw.port('pop3')}`, '-servername', 'localhost'], {
        timeoutMs: 20_000,
      });
      expect(r.timedOut).toBe(false);
      expect(r.code).not.toBe(0);
      // Our "+OK ..." greeting is no TLS record.
      expect(r.stdout + r.stderr).toMatch(/wrong version number|packet length too long|record layer failure|unexpected eof/i);
      const rec = await waitForLog(gw, (l) => l.msg === 'closing connection' && l.reason === 'TLS_ON_PLAINTEXT_PORT');
      expect(rec.level).toBe(30);
      expect(closings(gw, 'TLS_ON_PLAINTEXT_PORT')).toHaveLength(1);
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
    } finally {
      await gw.stop();
    }
  });

  it('a ClientHello gets the catalogue reply naming POP3S and STLS, then the close', async () => {
    const gw = await gatewayWith();
    try {
      const c = await LineClient.plain(gw.port('pop3'));
      expect(await c.line()).toMatch(GREETING);
      c.send(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf8, 0x01, 0x00, 0x00, 0xf4, 0x03, 0x03]));
      expect(await c.line()).toBe('-ERR This port speaks POP3; use port 995 for POP3S or STLS');
      await c.closed();
    } finally {
      await gw.stop();
    }
  });
});

describe('HTTP on the POP3 port', () => {
  it('a real curl gets the -ERR as an invalid HTTP response; the gateway logs HTTP_ON_POP3_PORT', async () => {
    const gw = await gatewayWith();
    try {
      const url = `http://127.0.0.1:${gw.port('pop3')}/`;
      // Plain curl: a response that does not start with "HTTP/" is refused as HTTP/0.9.
      const strict = await runProgram('curl', ['-sS', '--max-time', '15', url], { timeoutMs: 20_000 });
      expect(strict.timedOut).toBe(false);
      expect(strict.code).not.toBe(0);
      expect(strict.stderr).toMatch(/HTTP\/0\.9/);
      // Told to accept HTTP/0.9, curl shows what it got: the greeting and the -ERR, then the close.
      const lax = await runProgram('curl', ['-sS', '--http0.9', '--max-time', '15', url], { timeoutMs: 20_000 });
      expect(lax.timedOut).toBe(false);
      expect(lax.stdout).toMatch(/^\+OK POP3 gateway ready.*\r\n-ERR This port speaks POP3, not HTTP\r\n$/);

      await waitFor('two HTTP_ON_POP3_PORT logs', () => closings(gw, 'HTTP_ON_POP3_PORT').length === 2, POLL);
      // One line per connection; the request headers after the request line were never processed.
      expect(closings(gw, 'UNKNOWN_COMMAND')).toHaveLength(0);
      expect(gw.logs.filter((l) => l.msg === 'closing connection' && l.reason === 'TOO_MANY_ERRORS')).toHaveLength(0);
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
    } finally {
      await gw.stop();
    }
  });
});

describe('early talkers (limits.greetingDelay)', () => {
  it('a client that talks before the delayed greeting is closed; one that waits logs in', async () => {
    const gw = await gatewayWith('limits: { greetingDelay: 1s }');
    try {
      const bot = await LineClient.plain(gw.port('pop3'));
      bot.send('CAPA\r\nUSER gina\r\n');
      // No greeting: the first and only line is the refusal.
      expect(await bot.line()).toBe('-ERR Protocol error: data sent before the greeting');
      await bot.closed();
      expect(bot.pending().length).toBe(0);
      const rec = await waitForLog(gw, (l) => l.msg === 'closing connection' && l.reason === 'EARLY_TALKER');
      expect(rec).toMatchObject({ remote: '127.0.0.1', listener: 't-pop3' });
      expect(closings(gw, 'EARLY_TALKER')).toHaveLength(1);

      // Inside TLS too.
      const tlsBot = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      tlsBot.send('CAPA\r\n');
      expect(await tlsBot.line()).toBe('-ERR Protocol error: data sent before the greeting');
      await tlsBot.closed();

      // Clients wait for the greeting: unaffected, just greeted later.
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
      const plain = await LineClient.plain(gw.port('pop3'));
      expect(await plain.line()).toMatch(GREETING);
      expect(await plain.cmd('CAPA')).toMatch(/^\+OK/);
      plain.destroy();
    } finally {
      await gw.stop();
    }
  });
});

describe('CR, LF and NUL in credentials never reach the backend as commands', () => {
  it('the backend sees exactly one login per accepted login and no injected command', async () => {
    const gw = await gatewayWith('limits: { maxErrors: 50 }');
    try {
      // The login sequence popgate sends for one login (master AUTH PLAIN), learnt from a clean one.
      const start = backend.commandLog().length;
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
      const clean = backend.commandLog().slice(start);
      expect(clean.at(-2)).toBe('STAT');
      expect(clean.at(-1)).toBe('QUIT');
      const loginSeq = clean.slice(0, -2);
      // Master login with AUTH PLAIN and an initial response: one command (its argument is base64).
      expect(loginSeq).toEqual(['AUTH']);
      const expected: string[] = [];
      const mark = backend.commandLog().length;

      // 1. Refused at the gateway: nothing reaches the backend.
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(GREETING);
      const refused: [string, string][] = [
        // A bare CR (the framer splits on LF only) and NUL inside USER.
        ['USER gina\rDELE 1', '-ERR [AUTH] Invalid characters in credentials'],
        ['USER gina\0DELE 1', '-ERR [AUTH] Invalid characters in credentials'],
        ['PASS x', '-ERR Bad command sequence'],
        // AUTH PLAIN: CRLF in the authcid, in the password, NUL as an extra field.
        [`AUTH PLAIN ${b64('\0gina\r\nDELE 1\0Gina-front-pw')}`, '-ERR [AUTH] Invalid characters in credentials'],
        [`AUTH PLAIN ${b64('\0gina\0Gina-front-pw\r\nDELE 1')}`, '-ERR [AUTH] Invalid characters in credentials'],
        [`AUTH PLAIN ${b64('gina\0gina\0Gina-front-pw\0DELE 1')}`, '-ERR [AUTH] Invalid characters in credentials'],
        // AUTH LOGIN: CRLF in the user name; invalid UTF-8.
        [`AUTH LOGIN ${b64('gina\r\nDELE 1')}`, '-ERR [AUTH] Invalid characters in credentials'],
        [`AUTH LOGIN ${b64(Buffer.from([0x67, 0xff, 0x0d, 0x0a]))}`, '-ERR [AUTH] Invalid characters in credentials'],
      ];
      for (const [line, reply] of refused) expect(await c.cmd(line), JSON.stringify(line)).toBe(reply);
      // AUTH LOGIN, password step: NUL then CRLF inside the password.
      expect(await c.cmd(`AUTH LOGIN ${b64('gina')}`)).toMatch(/^\+ /);
      expect(await c.cmd(b64('Gina-front-pw\0DELE 1'))).toBe('-ERR [AUTH] Invalid characters in credentials');
      expect(await c.cmd(`AUTH LOGIN ${b64('gina')}`)).toMatch(/^\+ /);
      expect(await c.cmd(b64('Gina-front-pw\r\nDELE 1'))).toBe('-ERR [AUTH] Invalid characters in credentials');
      expect(await c.cmd('QUIT')).toBe('+OK Bye');
      await c.closed();
      expect(backend.commandLog().slice(mark)).toEqual([]);

      // 2. A CRLF on the wire just ends the line: "DELE 1" is a separate
      //    command the gateway answers itself (no login yet), never forwarded.
      const d = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await d.line()).toMatch(GREETING);
      d.send('USER gina\r\nDELE 1\r\nPASS Gina-front-pw\r\n');
      expect(await d.line()).toBe('+OK');
      expect(await d.line()).toBe('-ERR Bad command sequence');
      expect(await d.line()).toMatch(/^\+OK/);
      expect(await d.cmd('STAT')).toMatch(/^\+OK 1 /);
      expect(await d.cmd('QUIT')).toMatch(/^\+OK/);
      await d.closed();
      expected.push(...loginSeq, 'STAT', 'QUIT');

      // 3. Literal "%0d%0a" text is just characters: that (odd) account logs in as named.
      expect(await normalLogin(gw, PCT)).toMatch(/^\+OK 2 /);
      expected.push(...loginSeq, 'STAT', 'QUIT');

      // 4. UTF-8 names and passwords: USER/PASS, AUTH PLAIN, AUTH LOGIN.
      expect(await normalLogin(gw, JUERGEN)).toMatch(/^\+OK 3 /);
      expected.push(...loginSeq, 'STAT', 'QUIT');
      for (const mech of ['PLAIN', 'LOGIN'] as const) {
        const u = await LineClient.tls(gw.port('pop3s'), pki.caFile);
        expect(await u.line()).toMatch(GREETING);
        if (mech === 'PLAIN') {
          expect(await u.cmd(`AUTH PLAIN ${b64(`\0${JUERGEN.name}\0${JUERGEN.password}`)}`)).toMatch(/^\+OK/);
        } else {
          expect(await u.cmd(`AUTH LOGIN ${b64(JUERGEN.name)}`)).toMatch(/^\+ /);
          expect(await u.cmd(b64(JUERGEN.password))).toMatch(/^\+OK/);
        }
        expect(await u.cmd('STAT')).toMatch(/^\+OK 3 /);
        expect(await u.cmd('QUIT')).toMatch(/^\+OK/);
        await u.closed();
        expected.push(...loginSeq, 'STAT', 'QUIT');
      }

      // Exactly the logins and the client's own relayed commands; no DELE anywhere.
      await waitFor('backend commands', () => backend.commandLog().length >= mark + expected.length, POLL);
      expect(backend.commandLog().slice(mark)).toEqual(expected);
      expect(backend.mailbox('gina')).toHaveLength(1);
      expect(backend.mailbox(PCT.name)).toHaveLength(2);
      // Nothing was logged at error level; the refusals were protocol errors, not failed logins.
      expect(gw.logs.some((l) => l.level >= 50)).toBe(false);
      expect(gw.logs.some((l) => l.event === 'login' && l.outcome === 'failure')).toBe(false);
    } finally {
      await gw.stop();
    }
  });

  it('also when the user name is written into the backend USER line (user-separator master login)', async () => {
    const gw = await gatewayWith('', { login: '{ mode: master, method: user-separator, user: popgate, password: Demo-Master }' });
    try {
      const mark = backend.commandLog().length;
      const c = await LineClient.tls(gw.port('pop3s'), pki.caFile);
      expect(await c.line()).toMatch(GREETING);
      expect(await c.cmd('USER gina\0PASS x')).toBe('-ERR [AUTH] Invalid characters in credentials');
      expect(await c.cmd(`AUTH PLAIN ${b64('\0gina\rRETR 1\0Gina-front-pw')}`)).toBe('-ERR [AUTH] Invalid characters in credentials');
      expect(await c.cmd(`AUTH LOGIN ${b64('gina\nDELE 1')}`)).toBe('-ERR [AUTH] Invalid characters in credentials');
      expect(await c.cmd('QUIT')).toBe('+OK Bye');
      await c.closed();
      expect(backend.commandLog().slice(mark)).toEqual([]);

      expect(await normalLogin(gw, PCT)).toMatch(/^\+OK 2 /);
      expect(await normalLogin(gw, JUERGEN)).toMatch(/^\+OK 3 /);
      expect(await normalLogin(gw)).toMatch(/^\+OK 1 /);
      // CAPA: the first USER/PASS login asks whether the backend pipelines (backend.pipelining: auto), once.
      const logins = (): string[] => backend.commandLog().slice(mark).filter((v) => v !== 'CAPA');
      await waitFor('backend commands', () => logins().length >= 12, POLL);
      expect(logins()).toEqual(Array<string[]>(3).fill(['USER', 'PASS', 'STAT', 'QUIT']).flat());
      expect(backend.commandLog().slice(mark).filter((v) => v === 'CAPA').length).toBeLessThanOrEqual(1);
      expect(backend.mailbox('gina')).toHaveLength(1);
    } finally {
      await gw.stop();
    }
  });
});
