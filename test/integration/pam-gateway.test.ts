/**
 * A whole gateway checks passwords with Linux-PAM, end to end: `popgate
 * serve` (the shipped CLI) under pam_wrapper with the private stack
 * `popgate-gateway` (test/helpers/pam-wrapper.ts: pam_succeed_if on
 * PAM_RHOST, pam_exec hanging for slow1, pam_matrix, an account stack that
 * refuses "locked"), Dovecot behind it with a master user, and real clients:
 * Python poplib (USER/PASS and AUTH PLAIN over POP3S, every message
 * byte-exact) and mpop; the refusals read off the wire by a line client.
 * Nothing in /etc/pam.d is read or written.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { poplibOverTls } from '../helpers/clients.js';
import { pop3Wire, startDovecot, TWO_USER_MAIL, type DovecotInstance } from '../helpers/dovecot.js';
import { masterLogin } from '../helpers/gateway.js';
import { LineClient } from '../helpers/line-client.js';
import { lfShas, runMpop, sha256Hex } from '../helpers/mpop.js';
import { startPamGateway, type PamGateway } from '../helpers/pam-gateway.js';
import { createPamSandbox, type PamSandbox } from '../helpers/pam-wrapper.js';
import { waitFor } from '../helpers/wait.js';

const MASTER = { name: 'gatekeeper', password: 'Master-Pw-pam' };
/** The PAM users (pam_matrix); Dovecot never sees these passwords (master login). */
const PW = { alice: 'Alice pam pw "1" \\ %20', bob: 'bob-pam-pw', locked: 'locked-pam-pw' } as const;

let pki: TestPki;
let sandbox: PamSandbox;
let dovecot: DovecotInstance;
let gw: PamGateway;
let mpopDir: string;

beforeAll(async () => {
  [pki, sandbox, mpopDir] = await Promise.all([makeTempTestPki('popgate-pam-gw-'), createPamSandbox({ users: PW }), mkdtemp(join(tmpdir(), 'popgate-pam-mpop-'))]);
  dovecot = await startDovecot({
    users: [
      { name: 'alice', password: 'alice-dovecot-pw' },
      { name: 'bob', password: 'bob-dovecot-pw' },
      { name: 'locked', password: 'locked-dovecot-pw' },
    ],
    masterUser: MASTER,
    messages: TWO_USER_MAIL,
  });
  gw = await startPamGateway(sandbox, {
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    sections: `auth:
  verifiers: [pam]
  pam: { service: popgate-gateway, timeout: 1s, maxConcurrent: 2 }
  failureDelay: 0s
  throttle: { delays: [0s] }
backend:
  host: 127.0.0.1
  port: ${dovecot.port}
  login: ${masterLogin(MASTER)}`,
  });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await dovecot?.stop();
  await sandbox?.cleanup();
  if (mpopDir) await rm(mpopDir, { recursive: true, force: true });
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

const shas = (msgs: readonly Buffer[]): string[] => msgs.map((m) => sha256Hex(pop3Wire(m)));

/** A POP3S session: the greeting, then `commands` one by one; the replies. */
async function session(commands: readonly string[]): Promise<string[]> {
  const c = await LineClient.tls(gw.port, pki.caFile);
  try {
    expect(await c.line()).toMatch(/^\+OK/);
    const replies: string[] = [];
    for (const cmd of commands) replies.push(await c.cmd(cmd));
    return replies;
  } finally {
    c.end();
  }
}

function logins(user: string): Record<string, unknown>[] {
  return gw.records().filter((r) => r.event === 'login' && r.user === user);
}

describe('popgate serve with the pam verifier', () => {
  it('poplib logs in with USER/PASS and with AUTH PLAIN against the PAM stack and reads every message byte-exact', async () => {
    const a = (await poplibOverTls(gw.port, pki.caFile, { user: 'alice', password: PW.alice, retrieve: 'all' })).result;
    expect(a.error).toBeNull();
    expect(a.messages.map((m) => m.sha256)).toEqual(shas(TWO_USER_MAIL.alice));
    const b = (await poplibOverTls(gw.port, pki.caFile, { user: 'bob', password: PW.bob, authPlain: true, retrieve: 'all' })).result;
    expect(b.error).toBeNull();
    expect(b.messages.map((m) => m.sha256)).toEqual(shas(TWO_USER_MAIL.bob));
    // The stack's first line lets only PAM_RHOST 127.0.0.1 in: the gateway passed the client's address.
    await waitFor('both logins audited', () => logins('alice').length >= 1 && logins('bob').length >= 1);
    expect(logins('alice')[0]).toMatchObject({ outcome: 'success', mechanism: 'USER' });
    expect(logins('bob')[0]).toMatchObject({ outcome: 'success', mechanism: 'PLAIN' });
  });

  it('mpop (USER/PASS over TLS) downloads the mailbox', async () => {
    const r = await runMpop(mpopDir, [
      '--host=localhost', `--port=${gw.port}`, '--tls=on', '--tls-starttls=off', `--tls-trust-file=${pki.caFile}`,
      '--auth=user', '--user=bob', `--passwordeval=echo ${PW.bob}`,
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.messages.map((m) => sha256Hex(m)).sort()).toEqual(lfShas(TWO_USER_MAIL.bob));
  });

  it('a wrong password, an unknown user and a locked account get [AUTH]; wrong and unknown read the same', async () => {
    const [, wrong] = await session(['USER alice', 'PASS not-her-password']);
    const [, unknown] = await session(['USER nobody', 'PASS whatever-pw']);
    const [, locked] = await session(['USER locked', `PASS ${PW.locked}`]);
    expect(wrong).toMatch(/^-ERR \[AUTH\] /);
    expect(unknown).toBe(wrong);
    expect(locked).toMatch(/^-ERR \[AUTH\] /);
    await waitFor('the refusals audited', () => logins('locked').length >= 1 && logins('nobody').length >= 1 && logins('alice').length >= 2);
    expect(logins('alice').at(-1)).toMatchObject({ outcome: 'failure', reason: 'bad-password' });
    expect(logins('locked')[0]).toMatchObject({ outcome: 'failure', reason: 'disabled' });
  });

  it('a PAM module that hangs: [SYS/TEMP] at the deadline, logged with why, and the gateway goes on serving', async () => {
    const [, hung] = await session(['USER slow1', 'PASS anything-at-all']);
    expect(hung).toMatch(/^-ERR \[SYS\/TEMP\] /);
    const why = await waitFor('the verifier failure logged', () => gw.records().find((r) => JSON.stringify(r).includes('PAM call timed out after 1000 ms')));
    expect(why).toBeDefined();
    const [, ok] = await session(['USER alice', `PASS ${PW.alice}`]);
    expect(ok).toMatch(/^\+OK/);
  });
});
