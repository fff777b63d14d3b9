import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEMO_GREETING, dotStuff, startDemoBackend, topOf, type DemoBackend } from '../../src/demo/backend.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

const MSG1 = 'From: a@example.org\r\nTo: alice@example.org\r\nSubject: one\r\n\r\nHello Alice.\r\n';
const MSG2 =
  'From: b@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\nmiddle\r\n.\r\n..two dots\r\nlast line\r\n';

let backend: DemoBackend;

beforeEach(async () => {
  backend = await startDemoBackend({
    users: { alice: 'alicepw', bob: 'bobpw' },
    masterUser: 'gateway',
    masterPassword: 'masterpw',
    messages: { alice: [MSG1, MSG2], bob: [Buffer.from('Subject: b\r\n\r\nbody')] },
  });
});

afterEach(async () => {
  await backend.close();
});

async function loginAlice(): Promise<LineClient> {
  const c = await LineClient.plain(backend.port);
  expect(await c.line()).toBe(DEMO_GREETING);
  expect(await c.cmd('USER alice')).toMatch(/^\+OK/);
  expect(await c.cmd('PASS alicepw')).toBe('+OK Logged in.');
  return c;
}

function unstuff(body: Buffer): string {
  return body
    .toString('utf8')
    .split('\r\n')
    .map((l) => (l.startsWith('.') ? l.slice(1) : l))
    .join('\r\n');
}

describe('demo backend: protocol', () => {
  it('greets and lists capabilities per state', async () => {
    const c = await LineClient.plain(backend.port);
    expect(await c.line()).toBe('+OK Demo POP3 backend ready.');
    const capa = await c.cmdMultiline('CAPA');
    expect(capa.status).toMatch(/^\+OK/);
    const caps = capa.body.toString().trim().split('\r\n');
    expect(caps).toEqual(expect.arrayContaining(['TOP', 'UIDL', 'USER', 'SASL PLAIN', 'RESP-CODES', 'PIPELINING']));
    expect(await c.cmd('STAT')).toMatch(/^-ERR/);
    expect(await c.cmd('USER alice')).toMatch(/^\+OK/);
    expect(await c.cmd('PASS wrong')).toBe('-ERR [AUTH] Authentication failed.');
    expect(await c.cmd('USER alice')).toMatch(/^\+OK/);
    expect(await c.cmd('PASS alicepw')).toBe('+OK Logged in.');
    const capa2 = (await c.cmdMultiline('CAPA')).body.toString().split('\r\n');
    expect(capa2).not.toContain('USER');
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    await c.closed();
  });

  it('answers STAT, LIST, UIDL, NOOP and unknown commands', async () => {
    const c = await loginAlice();
    const s1 = Buffer.byteLength(MSG1);
    const s2 = Buffer.byteLength(MSG2);
    expect(await c.cmd('STAT')).toBe(`+OK 2 ${s1 + s2}`);
    const list = await c.cmdMultiline('LIST');
    expect(list.body.toString()).toBe(`1 ${s1}\r\n2 ${s2}\r\n`);
    expect(await c.cmd('LIST 2')).toBe(`+OK 2 ${s2}`);
    expect(await c.cmd('LIST 3')).toMatch(/^-ERR/);
    const uidl = (await c.cmdMultiline('UIDL')).body.toString().trim().split('\r\n');
    expect(uidl).toHaveLength(2);
    const uid1 = (await c.cmd('UIDL 1')).split(' ')[2];
    expect(uidl[0]).toBe(`1 ${uid1}`);
    expect(uidl[0]).not.toBe(uidl[1]?.replace(/^2/, '1'));
    expect(await c.cmd('NOOP')).toBe('+OK');
    expect(await c.cmd('FROB')).toMatch(/^-ERR/);
    c.destroy();
  });

  it('dot-stuffs RETR and TOP and terminates with a lone dot', async () => {
    const c = await loginAlice();
    const retr = await c.cmdMultiline('RETR 2');
    expect(retr.status).toBe(`+OK ${Buffer.byteLength(MSG2)} octets`);
    const raw = retr.body.toString();
    expect(raw).toContain('\r\n..starts with a dot\r\n');
    expect(raw).toContain('\r\n..\r\n');
    expect(raw).toContain('\r\n...two dots\r\n');
    expect(unstuff(retr.body)).toBe(MSG2);

    const top = await c.cmdMultiline('TOP 2 1');
    expect(top.status).toMatch(/^\+OK/);
    expect(unstuff(top.body)).toBe('From: b@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\n');
    const top0 = await c.cmdMultiline('TOP 1 0');
    expect(unstuff(top0.body)).toBe('From: a@example.org\r\nTo: alice@example.org\r\nSubject: one\r\n\r\n');
    expect(await c.cmd('RETR 9')).toMatch(/^-ERR/);
    c.destroy();
  });

  it('adds the missing final CRLF before the terminator', async () => {
    const c = await LineClient.plain(backend.port);
    await c.line();
    await c.cmd('USER bob');
    await c.cmd('PASS bobpw');
    const retr = await c.cmdMultiline('RETR 1');
    expect(retr.body.toString()).toBe('Subject: b\r\n\r\nbody\r\n');
    c.destroy();
  });

  it('handles pipelined commands in order', async () => {
    const c = await LineClient.plain(backend.port);
    await c.line();
    c.send('USER alice\r\nPASS alicepw\r\nSTAT\r\nLIST 1\r\nNOOP\r\n');
    expect(await c.line()).toMatch(/^\+OK/);
    expect(await c.line()).toBe('+OK Logged in.');
    expect(await c.line()).toMatch(/^\+OK 2 /);
    expect(await c.line()).toMatch(/^\+OK 1 /);
    expect(await c.line()).toBe('+OK');
    c.destroy();
  });

  it('dotStuff and topOf work on buffers directly', () => {
    expect(Buffer.concat(dotStuff(Buffer.from('.a\r\nb\r\n.\r\n'))).toString()).toBe('..a\r\nb\r\n..\r\n.\r\n');
    expect(Buffer.concat(dotStuff(Buffer.alloc(0))).toString()).toBe('.\r\n');
    expect(topOf(Buffer.from('H: 1\r\n\r\nl1\r\nl2\r\n'), 1).toString()).toBe('H: 1\r\n\r\nl1\r\n');
    expect(topOf(Buffer.from('H: 1\r\n\r\nl1\r\nl2\r\n'), 9).toString()).toBe('H: 1\r\n\r\nl1\r\nl2\r\n');
  });
});

describe('demo backend: UPDATE state', () => {
  it('DELE + QUIT deletes the marked messages', async () => {
    const c = await loginAlice();
    expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
    expect(await c.cmd('DELE 1')).toMatch(/^-ERR/);
    expect(await c.cmd('RETR 1')).toMatch(/^-ERR/);
    expect(await c.cmd('STAT')).toBe(`+OK 1 ${Buffer.byteLength(MSG2)}`);
    expect(backend.mailbox('alice')).toHaveLength(2); // not before QUIT
    expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
    await c.closed();
    const box = backend.mailbox('alice');
    expect(box).toHaveLength(1);
    expect(box[0]?.toString()).toBe(MSG2);

    // A new session numbers the remaining message 1.
    const d = await loginAlice();
    expect(await d.cmd('STAT')).toBe(`+OK 1 ${Buffer.byteLength(MSG2)}`);
    d.destroy();
  });

  it('DELE + dropped connection deletes nothing', async () => {
    const c = await loginAlice();
    expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
    expect(await c.cmd('DELE 2')).toMatch(/^\+OK/);
    c.destroy();
    await c.closed();
    // The backend's side has closed too: the session is over, without QUIT.
    await waitFor('the backend to close the session', () => backend.openConnections() === 0, { intervalMs: 5 });
    expect(backend.mailbox('alice')).toHaveLength(2);
    expect(backend.commandLog()).not.toContain('QUIT');
  });

  it('DELE + half-close without QUIT deletes nothing', async () => {
    const c = await loginAlice();
    expect(await c.cmd('DELE 1')).toMatch(/^\+OK/);
    c.end();
    await c.closed();
    expect(backend.mailbox('alice')).toHaveLength(2);
  });

  it('RSET unmarks', async () => {
    const c = await loginAlice();
    await c.cmd('DELE 1');
    expect(await c.cmd('RSET')).toMatch(/^\+OK/);
    await c.cmd('QUIT');
    await c.closed();
    expect(backend.mailbox('alice')).toHaveLength(2);
  });
});

describe('demo backend: logins', () => {
  const plain = (authzid: string, authcid: string, pw: string): string =>
    Buffer.from(`${authzid}\0${authcid}\0${pw}`).toString('base64');

  it('accepts a master login with USER user*master', async () => {
    const c = await LineClient.plain(backend.port);
    await c.line();
    await c.cmd('USER alice*gateway');
    expect(await c.cmd('PASS masterpw')).toBe('+OK Logged in.');
    expect(await c.cmd('STAT')).toMatch(/^\+OK 2 /);
    c.destroy();

    const d = await LineClient.plain(backend.port);
    await d.line();
    await d.cmd('USER alice*gateway');
    expect(await d.cmd('PASS alicepw')).toMatch(/^-ERR \[AUTH\]/);
    await d.cmd('USER nobody*gateway');
    expect(await d.cmd('PASS masterpw')).toMatch(/^-ERR \[AUTH\]/);
    d.destroy();
  });

  it('accepts AUTH PLAIN with an initial response, with and without authzid', async () => {
    const c = await LineClient.plain(backend.port);
    await c.line();
    expect(await c.cmd(`AUTH PLAIN ${plain('', 'alice', 'alicepw')}`)).toBe('+OK Logged in.');
    c.destroy();

    const d = await LineClient.plain(backend.port);
    await d.line();
    expect(await d.cmd(`AUTH PLAIN ${plain('bob', 'gateway', 'masterpw')}`)).toBe('+OK Logged in.');
    expect(await d.cmd('STAT')).toMatch(/^\+OK 1 /);
    d.destroy();
  });

  it('accepts AUTH PLAIN without initial response and refuses bad ones', async () => {
    const c = await LineClient.plain(backend.port);
    await c.line();
    expect(await c.cmd('AUTH PLAIN')).toBe('+ ');
    expect(await c.cmd(plain('alice', 'gateway', 'masterpw'))).toBe('+OK Logged in.');
    c.destroy();

    const d = await LineClient.plain(backend.port);
    await d.line();
    // authzid without the master's password: another user's mailbox must not open.
    expect(await d.cmd(`AUTH PLAIN ${plain('alice', 'bob', 'bobpw')}`)).toMatch(/^-ERR \[AUTH\]/);
    expect(await d.cmd('AUTH PLAIN')).toBe('+ ');
    expect(await d.cmd('*')).toMatch(/^-ERR/);
    expect(await d.cmd('AUTH PLAIN !!!')).toMatch(/^-ERR/);
    expect(await d.cmd('AUTH CRAM-MD5')).toMatch(/^-ERR/);
    d.destroy();
  });
});

describe('demo backend: benchmark use', () => {
  it('serves a large message repeatedly and in order with pipelined commands, logging no commands when asked', async () => {
    const line = `${'x'.repeat(70)}\r\n`;
    const big = Buffer.from(`Subject: big\r\n\r\n${line.repeat(40_000)}.dot line\r\n${line}`);
    const b = await startDemoBackend({ users: { u: 'pw' }, messages: { u: [big] }, logCommands: false });
    try {
      const c = await LineClient.plain(b.port);
      await c.line();
      // Three multi-megabyte replies and a STAT, asked for at once: answered in order, each whole.
      c.send('USER u\r\nPASS pw\r\nRETR 1\r\nRETR 1\r\nSTAT\r\nRETR 1\r\n');
      expect(await c.line()).toBe('+OK');
      expect(await c.line()).toBe('+OK Logged in.');
      for (let i = 0; i < 2; i++) {
        const r = await c.multiline();
        expect(r.status).toBe(`+OK ${big.length} octets`);
        expect(unstuff(r.body)).toBe(big.toString());
      }
      expect(await c.line()).toBe(`+OK 1 ${big.length}`);
      expect(unstuff((await c.multiline()).body)).toBe(big.toString());
      expect(await c.cmd('QUIT')).toMatch(/^\+OK/);
      await c.closed();
      expect(b.commandLog()).toEqual([]);
      // The caller's buffer is served as given (not copied).
      expect(b.mailbox('u')[0]).toBe(big);
    } finally {
      await b.close();
    }
  });
});
