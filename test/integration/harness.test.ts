/**
 * Proves the test harness against Dovecot DIRECTLY (no gateway): the private
 * Dovecot starts, users and the master user log in, real clients fetch
 * messages byte-exact, and DELE only takes effect on QUIT. Later gateway
 * tests rely on exactly these behaviours.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, makeWrongNameCert, type TestPki } from '../helpers/certs.js';
import { curlPop3, opensslStarttls, poplibFetch, runProgram } from '../helpers/clients.js';
import { pop3ListSize, pop3Wire, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { LineClient } from '../helpers/line-client.js';
import { waitFor } from '../helpers/wait.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const ALICE = { name: 'alice', password: 'alice pw:with colon' };
const BOB = { name: 'bob', password: 'bob-secret' };
const MASTER = { name: 'popgate', password: 'master-secret' };

/** ~5 MB, LF line ends as a maildir normally holds them, 76-char base64 lines. */
function bigMessage(): Buffer {
  const head = 'From: sender@example.test\nTo: alice@example.test\nSubject: big\n' +
    'MIME-Version: 1.0\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n';
  const b64 = randomBytes(3_800_000).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return Buffer.from(head + lines.join('\n') + '\n', 'latin1');
}

/** Lines starting with "." and "..", a lone "." and "..": stored with CRLF. */
const DOTS = Buffer.from(
  'From: dots@example.test\r\nSubject: dots\r\n\r\n' +
    '.leading dot\r\n..two dots\r\n.\r\n..\r\n...\r\nmiddle . line\r\n. space\r\nlast\r\n',
  'latin1',
);
const SMALL = Buffer.from('From: small@example.test\nSubject: small\n\nhello alice\n', 'latin1');

describe('harness against a private Dovecot', () => {
  let dc: DovecotInstance;
  let big: Buffer;
  const alice = (): Buffer[] => [big, DOTS, SMALL];

  beforeAll(async () => {
    big = bigMessage();
    dc = await startDovecot({
      users: [ALICE, BOB],
      masterUser: MASTER,
      messages: { alice: alice(), bob: [SMALL] },
    });
  });
  afterAll(async () => {
    await dc?.stop();
  });

  it('writes the messages into the maildir as given', async () => {
    const files = await dc.listMessages('alice');
    expect(files.map(sha256)).toEqual(alice().map(sha256));
  });

  it('(a) poplib USER/PASS fetches every message byte-exact', async () => {
    const r = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain',
      user: ALICE.name, password: ALICE.password, retrieve: 'all',
    });
    expect(r.result.error).toBeNull();
    expect(r.code).toBe(0);
    expect(r.result.stat?.[0]).toBe(3);
    expect(r.result.list).toEqual(alice().map((m, i) => [i + 1, pop3ListSize(m)]));
    expect(r.result.messages.map((m) => m.sha256)).toEqual(alice().map((m) => sha256(pop3Wire(m))));
    expect(r.result.messages[0]!.size).toBeGreaterThan(5_000_000);
    expect(r.result.uidl).toHaveLength(3);
  });

  it('(a) pop3Wire matches Dovecot: LF becomes CRLF, CRLF stays, missing final line end added', async () => {
    const noEol = Buffer.from('Subject: x\n\nno newline at end', 'latin1');
    const crlf = Buffer.from('Subject: y\r\n\r\ncrlf\r\n', 'latin1');
    await dc.deliver('bob', noEol);
    await dc.deliver('bob', crlf);
    const r = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain', user: BOB.name, password: BOB.password,
      retrieve: 'all', includeBodies: true,
    });
    expect(r.result.error).toBeNull();
    const bodies = r.result.messages.map((m) => Buffer.from(m.body ?? '', 'base64'));
    expect(bodies.slice(-2)).toEqual([
      Buffer.from('Subject: x\r\n\r\nno newline at end\r\n', 'latin1'),
      crlf,
    ]);
    expect(r.result.list?.slice(-2).map(([, size]) => size)).toEqual([pop3ListSize(noEol), pop3ListSize(crlf)]);
    expect(pop3ListSize(noEol)).toBe(pop3Wire(noEol).length - 2);
  });

  it('(a) the raw RETR keeps dot-stuffing on the wire', async () => {
    const s = await LineClient.plain(dc.port, dc.host);
    try {
      expect(await s.line()).toMatch(/^\+OK/);
      s.send(`USER ${ALICE.name}\r\nPASS ${ALICE.password}\r\n`);
      expect(await s.line()).toMatch(/^\+OK/);
      expect(await s.line()).toMatch(/^\+OK/);
      s.send('RETR 2\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
      const body = (await s.multilineBody()).toString('latin1');
      expect(body).toContain('\r\n..leading dot\r\n...two dots\r\n..\r\n...\r\n....\r\n');
      expect(body.endsWith('last\r\n.\r\n')).toBe(true);
      s.send('QUIT\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
      await s.closed();
    } finally {
      s.destroy();
    }
  });

  it('(b) master login alice*popgate with USER/PASS', async () => {
    const r = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain',
      user: dc.masterLogin('alice'), password: MASTER.password, retrieve: [3],
    });
    expect(r.result.error).toBeNull();
    expect(r.result.stat?.[0]).toBe(3);
    expect(r.result.messages[0]?.sha256).toBe(sha256(pop3Wire(SMALL)));
  });

  it('(b) master login with AUTH PLAIN authzid=alice authcid=popgate (raw)', async () => {
    const s = await LineClient.plain(dc.port, dc.host);
    try {
      expect(await s.line()).toMatch(/^\+OK/);
      const tok = Buffer.from(`alice\0${MASTER.name}\0${MASTER.password}`, 'utf8').toString('base64');
      s.send(`AUTH PLAIN ${tok}\r\n`);
      expect(await s.line()).toMatch(/^\+OK/);
      s.send('STAT\r\n');
      const stat = await s.line();
      expect(stat).toMatch(/^\+OK 3 \d+$/);
      s.send('QUIT\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
    } finally {
      s.destroy();
    }
  });

  it('(b) AUTH PLAIN through the poplib wrapper, master and plain user', async () => {
    const m = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain', authPlain: true, authzid: 'alice',
      user: MASTER.name, password: MASTER.password,
    });
    expect(m.result.error).toBeNull();
    expect(m.result.stat?.[0]).toBe(3);
    const u = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain', authPlain: true,
      user: ALICE.name, password: ALICE.password,
    });
    expect(u.result.error).toBeNull();
    expect(u.result.stat?.[0]).toBe(3);
  });

  it('(b) master login for an unknown user, wrong master or user password fail with [AUTH]', async () => {
    for (const [user, password] of [
      [dc.masterLogin('nosuch'), MASTER.password],
      [dc.masterLogin('alice'), 'wrong'],
      [ALICE.name, 'wrong'],
    ] as const) {
      const r = await poplibFetch({ host: dc.host, port: dc.port, mode: 'plain', user, password });
      expect(r.code).toBe(1);
      expect(r.result.stage).toBe('auth');
      expect(r.result.error).toMatch(/^-ERR \[AUTH\]/);
    }
  });

  it('(d) DELE then dropping the connection without QUIT leaves the file', async () => {
    const msg = Buffer.from(`Subject: keep ${randomBytes(4).toString('hex')}\n\nkeep me\n`, 'latin1');
    await dc.deliver('bob', msg);
    const before = (await dc.listMessages('bob')).length;
    const closedSessions = async (): Promise<number> =>
      (await dc.readLog()).split('\n').filter((l) => /pop3\(bob\).*Disconnected: Connection closed/.test(l)).length;
    const closedBefore = await closedSessions();
    const r = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain', user: BOB.name, password: BOB.password,
      dele: [before], quit: false,
    });
    expect(r.result.error).toBeNull();
    expect(r.result.dele[0]).toMatch(/^\+OK/);
    expect(r.result.quit).toBeNull();
    // Wait until Dovecot has noticed the drop and ended that session (it
    // logs del=0/N: a DELE is only carried out in the UPDATE state, on QUIT).
    await waitFor('Dovecot to end the dropped session', async () => (await closedSessions()) === closedBefore + 1, { timeoutMs: 10_000 });
    const after = await dc.listMessages('bob');
    expect(after).toHaveLength(before);
    expect(after.map(sha256)).toContain(sha256(msg));
    const again = await poplibFetch({ host: dc.host, port: dc.port, mode: 'plain', user: BOB.name, password: BOB.password });
    expect(again.result.stat?.[0]).toBe(before);
  });

  it('(c) DELE+QUIT removes the file from the maildir', async () => {
    const msg = Buffer.from(`Subject: delete ${randomBytes(4).toString('hex')}\n\ndelete me\n`, 'latin1');
    await dc.deliver('bob', msg);
    const before = await dc.listMessages('bob');
    expect(before.map(sha256)).toContain(sha256(msg));
    const r = await poplibFetch({
      host: dc.host, port: dc.port, mode: 'plain', user: BOB.name, password: BOB.password,
      retrieve: [before.length], dele: [before.length],
    });
    expect(r.result.error).toBeNull();
    expect(r.result.messages[0]?.sha256).toBe(sha256(pop3Wire(msg)));
    expect(r.result.quit).toMatch(/^\+OK/);
    const after = await dc.listMessages('bob');
    expect(after).toHaveLength(before.length - 1);
    expect(after.map(sha256)).not.toContain(sha256(msg));
  });

  it('(e) curl pop3:// RETR is byte-exact (big and dot-stuffed messages)', async () => {
    for (const [n, msg] of [[1, big], [2, DOTS], [3, SMALL]] as const) {
      const r = await curlPop3({
        url: `pop3://${dc.host}:${dc.port}/${n}`, user: ALICE.name, password: ALICE.password,
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(sha256(r.body)).toBe(sha256(pop3Wire(msg)));
    }
  });

  it('logs to its own file and never its password', async () => {
    const log = await dc.readLog();
    expect(log).toContain('starting up for pop3');
    expect(log).toMatch(/Login: user=<alice>/);
    expect(log).not.toContain(MASTER.password);
  });
});

describe('harness TLS clients against a TLS-enabled private Dovecot', () => {
  let pki: TestPki;
  let dc: DovecotInstance;
  const MSG = Buffer.from('Subject: tls\n\nover tls\n.\n', 'latin1');

  beforeAll(async () => {
    pki = await makeTempTestPki();
    dc = await startDovecot({
      users: [ALICE], tls: { certFile: pki.certFile, keyFile: pki.keyFile },
      messages: { alice: [MSG] },
    });
  });
  afterAll(async () => {
    await dc?.stop();
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  it('makes a CA-signed localhost/127.0.0.1 cert and a wrong-name one', async () => {
    const ok = await runProgram('openssl', ['verify', '-CAfile', pki.caFile, '-verify_hostname', 'localhost', pki.certFile]);
    expect(ok.code, ok.stderr).toBe(0);
    const ip = await runProgram('openssl', ['verify', '-CAfile', pki.caFile, '-verify_ip', '127.0.0.1', pki.certFile]);
    expect(ip.code, ip.stderr).toBe(0);
    const wrong = await makeWrongNameCert(pki);
    const chain = await runProgram('openssl', ['verify', '-CAfile', pki.caFile, wrong.certFile]);
    expect(chain.code, chain.stderr).toBe(0);
    const name = await runProgram('openssl', ['verify', '-CAfile', pki.caFile, '-verify_hostname', 'localhost', wrong.certFile]);
    expect(name.code).not.toBe(0);
    expect(name.stdout + name.stderr).toMatch(/hostname mismatch/i);
  });

  it('poplib over implicit TLS and STLS, checking the name', async () => {
    for (const [mode, port] of [['ssl', dc.tlsPort!], ['stls', dc.port]] as const) {
      for (const host of ['localhost', '127.0.0.1']) {
        const r = await poplibFetch({
          host, port, mode, caFile: pki.caFile, user: ALICE.name, password: ALICE.password, retrieve: 'all', capa: true,
        });
        expect(r.result.error, `${mode} ${host}`).toBeNull();
        expect(r.result.messages[0]?.sha256).toBe(sha256(pop3Wire(MSG)));
        expect(r.result.capa).not.toBeNull();
      }
    }
  });

  it('poplib rejects an untrusted certificate', async () => {
    const r = await poplibFetch({
      host: 'localhost', port: dc.tlsPort!, mode: 'ssl', user: ALICE.name, password: ALICE.password,
    });
    expect(r.code).toBe(2);
    expect(r.result.errorType).toBe('tls');
    expect(r.result.error).toMatch(/CERTIFICATE_VERIFY_FAILED/);
  });

  it('curl over pop3s:// and pop3:// --ssl-reqd', async () => {
    const a = await curlPop3({
      url: `pop3s://localhost:${dc.tlsPort}/1`, user: ALICE.name, password: ALICE.password, caFile: pki.caFile,
    });
    expect(a.stderr).toBe('');
    expect(sha256(a.body)).toBe(sha256(pop3Wire(MSG)));
    const b = await curlPop3({
      url: `pop3://localhost:${dc.port}/1`, user: ALICE.name, password: ALICE.password, caFile: pki.caFile, sslReqd: true,
    });
    expect(b.stderr).toBe('');
    expect(sha256(b.body)).toBe(sha256(pop3Wire(MSG)));
  });

  it('openssl s_client -starttls pop3 transcript', async () => {
    const r = await opensslStarttls({
      host: dc.host, port: dc.port, caFile: pki.caFile, verifyHostname: 'localhost',
      input: `USER ${ALICE.name}\r\nPASS ${ALICE.password}\r\nSTAT\r\nQUIT\r\n`,
    });
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\+OK Logged in\.\r\n\+OK 1 \d+\r\n\+OK Logging out/);
  });

  it('LineClient STLS upgrade in place', async () => {
    const s = await LineClient.plain(dc.port, dc.host);
    try {
      expect(await s.line()).toMatch(/^\+OK/);
      s.send('STLS\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
      const leftover = await s.startTls(pki.caFile);
      expect(leftover).toHaveLength(0);
      expect(s.isTls).toBe(true);
      expect(s.pending()).toHaveLength(0);
      s.send('CAPA\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
      const capa = (await s.multilineBody()).toString('latin1');
      expect(capa).not.toContain('STLS');
      s.send('QUIT\r\n');
      expect(await s.line()).toMatch(/^\+OK/);
    } finally {
      s.destroy();
    }
  });
});
