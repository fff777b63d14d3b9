/**
 * Several certificates on one listener, chosen by SNI (tls.certificates),
 * seen through a real `openssl s_client -servername` against the real
 * gateway: an RSA and an ECDSA certificate for mail.sni.test and an ECDSA
 * one for pop.sni.test. Each name gets its certificate; without SNI the first
 * one; where RSA and ECDSA both cover a name, a client that only takes ECDSA
 * signatures (TLS 1.3 -sigalgs, TLS 1.2 -cipher) gets the ECDSA one and an
 * RSA-only client the RSA one; STLS on the pop3 listener chooses the same
 * way. A certificate file replaced on disk is picked up for new handshakes
 * (file watching), and a bad replacement at a reload (SIGHUP's path) keeps
 * the old certificates, logged.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { issueCert, makeTempTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.js';
import { SClient } from '../helpers/s-client.js';

const GREETING = /(?:^|[\n\0])\+OK POP3 gateway ready/;
/** pino's error level. */
const ERROR = 50;

let pki: TestPki;
let rsaMail: TestCert;
let ecMail: TestCert;
let ecPop: TestCert;
const gateways: TestGateway[] = [];
const clients: SClient[] = [];

beforeAll(async () => {
  pki = await makeTempTestPki();
  [rsaMail, ecMail, ecPop] = await Promise.all([
    issueCert(pki, { name: 'rsa-mail', dns: ['mail.sni.test'], keyType: 'rsa' }),
    issueCert(pki, { name: 'ec-mail', dns: ['mail.sni.test'] }),
    issueCert(pki, { name: 'ec-pop', dns: ['pop.sni.test'] }),
  ]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.kill();
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});

afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

async function gateway(): Promise<TestGateway> {
  const pairs = [rsaMail, ecMail, ecPop].map((c) => `{ certFile: ${c.certFile}, keyFile: ${c.keyFile} }`);
  const gw = await startTestGateway({
    users: [],
    backendPort: 1, // no login happens: only handshakes and greetings
    certFile: rsaMail.certFile,
    keyFile: rsaMail.keyFile,
    tlsCertificates: `[${pairs.join(', ')}]`,
    login: '{ mode: passthrough }',
  });
  gateways.push(gw);
  return gw;
}

interface Seen {
  /** The leaf's subject CN. */
  readonly cn: string | undefined;
  /** s_client's "Peer signature type": ECDSA, RSA-PSS, ... */
  readonly signature: string | undefined;
  /** The verification result s_client printed (0: ok, against the test CA and the -verify_hostname name). */
  readonly verify: string | undefined;
}

/**
 * One s_client handshake up to the POP3 greeting; what it printed about the
 * server's certificate. `servername` undefined: no SNI (-noservername).
 */
async function visit(port: number, servername: string | undefined, args: readonly string[] = [], starttls = false): Promise<Seen> {
  const sni = servername !== undefined ? ['-servername', servername, '-verify_hostname', servername] : ['-noservername'];
  const c = SClient.start(['-connect', `127.0.0.1:${port}`, '-CAfile', pki.caFile, ...sni, ...(starttls ? ['-starttls', 'pop3'] : []), '-crlf', ...args]);
  clients.push(c);
  if (starttls) await c.expect(/Verify return code: \d+/);
  else await c.expect(GREETING);
  const t = c.transcript;
  c.kill();
  return {
    cn: /subject=.*CN ?= ?([^,\n]+)/.exec(t)?.[1]?.trim(),
    signature: /Peer signature type: (\S+)/.exec(t)?.[1],
    verify: /Verify return code: (\d+)/.exec(t)?.[1],
  };
}

const TLS13_ECDSA_ONLY = ['-tls1_3', '-sigalgs', 'ECDSA+SHA256'];
const TLS13_RSA_ONLY = ['-tls1_3', '-sigalgs', 'rsa_pss_rsae_sha256'];
const TLS12_ECDSA_ONLY = ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'];
const TLS12_RSA_ONLY = ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'];

describe('tls.certificates: the certificate chosen by the client’s SNI (openssl s_client)', () => {
  it('gives each name its certificate, RSA or ECDSA by what the client takes, and the first without SNI', async () => {
    const gw = await gateway();
    const port = gw.port('pop3s');
    expect(await visit(port, 'pop.sni.test')).toEqual({ cn: 'pop.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'POP.sni.test', TLS12_ECDSA_ONLY)).toEqual({ cn: 'pop.sni.test', signature: 'ECDSA', verify: '0' });
    // Both cover mail.sni.test: the client's signature algorithms (TLS 1.3) or suites (TLS 1.2) choose;
    // a client that takes both gets ECDSA (the server's preference).
    expect(await visit(port, 'mail.sni.test')).toEqual({ cn: 'mail.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'mail.sni.test', ['-tls1_2'])).toEqual({ cn: 'mail.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'mail.sni.test', TLS13_ECDSA_ONLY)).toEqual({ cn: 'mail.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'mail.sni.test', TLS12_ECDSA_ONLY)).toEqual({ cn: 'mail.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'mail.sni.test', TLS13_RSA_ONLY)).toEqual({ cn: 'mail.sni.test', signature: 'RSA-PSS', verify: '0' });
    expect(await visit(port, 'mail.sni.test', TLS12_RSA_ONLY)).toEqual({ cn: 'mail.sni.test', signature: 'RSA-PSS', verify: '0' });
    // No SNI, or a name no certificate carries: the first certificate (RSA), with the ECDSA one of its name beside it.
    expect(await visit(port, undefined, TLS13_RSA_ONLY)).toMatchObject({ cn: 'mail.sni.test', signature: 'RSA-PSS' });
    expect(await visit(port, undefined, TLS12_ECDSA_ONLY)).toMatchObject({ cn: 'mail.sni.test', signature: 'ECDSA' });
    expect(await visit(port, 'other.sni.test', TLS13_RSA_ONLY)).toMatchObject({ cn: 'mail.sni.test', signature: 'RSA-PSS' });
    // Hostname verification fails there (62: X509_V_ERR_HOSTNAME_MISMATCH): the name is not on it.
    expect((await visit(port, 'other.sni.test')).verify).toBe('62');
  });

  it('chooses the same way after STLS on the pop3 listener', async () => {
    const gw = await gateway();
    const port = gw.port('pop3');
    expect(await visit(port, 'pop.sni.test', [], true)).toEqual({ cn: 'pop.sni.test', signature: 'ECDSA', verify: '0' });
    expect(await visit(port, 'mail.sni.test', TLS12_RSA_ONLY, true)).toEqual({ cn: 'mail.sni.test', signature: 'RSA-PSS', verify: '0' });
  });

  it('picks up a replaced certificate file for new handshakes; a bad pair at a reload keeps the old ones, logged', async () => {
    const gw = await gateway();
    const port = gw.port('pop3s');
    expect((await visit(port, 'pop2.sni.test')).cn).toBe('mail.sni.test');
    // Renewed with one more name: key first, then the certificate, as a renewal tool writes them.
    const renewed = await issueCert(pki, { name: 'ec-pop-renewed', dns: ['pop.sni.test', 'pop2.sni.test'] });
    await writeFile(ecPop.keyFile, await readFile(renewed.keyFile));
    await writeFile(ecPop.certFile, await readFile(renewed.certFile));
    await waitForLog(gw, (l) => l.msg === 'TLS certificate reloaded' && l['listener'] === 't-pop3s' && l['reason'] === 'certificate files changed', 15_000);
    expect(await visit(port, 'pop2.sni.test')).toEqual({ cn: 'pop.sni.test', signature: 'ECDSA', verify: '0' });

    // A key that does not belong to the certificate (another key type: OpenSSL alone would drop it silently).
    const saved = await readFile(ecPop.keyFile);
    await writeFile(ecPop.keyFile, await readFile(rsaMail.keyFile));
    await gw.gateway.reload();
    const failed = await waitForLog(gw, (l) => l.msg === 'TLS certificate reload failed; keeping the old one' && l['reason'] === 'reload');
    expect(failed).toMatchObject({ level: ERROR, err: `certificate ${ecPop.certFile} / key ${ecPop.keyFile}: the key does not match the certificate` });
    expect(await visit(port, 'pop2.sni.test')).toEqual({ cn: 'pop.sni.test', signature: 'ECDSA', verify: '0' });
    await writeFile(ecPop.keyFile, saved);
  });
});
