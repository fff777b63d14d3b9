/**
 * Several certificates per listener (tls.certificates), chosen by SNI:
 * planSelection alone (names and key types in, the group a name selects
 * out), certificateNames on real certificates, then a TlsContextStore with
 * an RSA and an ECDSA pair behind a TlsHandshaker, with node:tls clients:
 * each name gets its certificate, a client that only takes ECDSA signatures
 * gets the ECDSA one, a session resumes under a name-selected certificate
 * (ticket keys from the file), and a pair whose key does not match is named
 * (certFile/keyFile alike).
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type SecureVersion } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ECDH_CURVE, INTERMEDIATE_TLS12_CIPHERS } from '../../src/config/tls-profile.js';
import { certificateNames, planSelection, type CertificateFacts } from '../../src/server/certificate-selection.js';
import { CertificatePairError, TlsContextStore, type CertificatePair } from '../../src/server/tls-context.js';
import { TlsHandshaker } from '../../src/server/tls-handshaker.js';
import { issueCert, makeTempTestPki, type TestCert, type TestPki } from '../helpers/certs.js';
import { closeServer, listenLoopback } from '../helpers/servers.js';

describe('planSelection: the certificates a name gets (indexes into tls.certificates)', () => {
  /** The certificate indexes `name` selects. */
  const chosen = (certs: CertificateFacts[], name: string | undefined): readonly number[] => {
    const plan = planSelection(certs);
    return plan.groups[plan.select(name)] ?? [];
  };
  const rsa = (...names: string[]): CertificateFacts => ({ names, keyType: 'rsa' });
  const ec = (...names: string[]): CertificateFacts => ({ names, keyType: 'ec' });

  it('gives each name the certificate carrying it; no SNI and unknown names the first', () => {
    const certs = [ec('mail.example.com'), ec('pop.example.net', 'pop.example.org')];
    expect(chosen(certs, 'mail.example.com')).toEqual([0]);
    expect(chosen(certs, 'pop.example.org')).toEqual([1]);
    expect(chosen(certs, undefined)).toEqual([0]);
    expect(chosen(certs, '')).toEqual([0]);
    expect(chosen(certs, 'other.example.com')).toEqual([0]);
    // Group 0 is always the default.
    expect(planSelection(certs).groups[0]).toEqual([0]);
  });

  it('matches names as TLS name checks do: case-insensitive, trailing dot ignored', () => {
    const certs = [ec('mail.example.com'), ec('pop.example.net')];
    expect(chosen(certs, 'POP.Example.NET')).toEqual([1]);
    expect(chosen(certs, 'pop.example.net.')).toEqual([1]);
  });

  it('a wildcard stands for exactly one whole left-most label, never over an A-label, never *.tld', () => {
    const certs = [ec('default.example'), ec('*.example.com'), ec('*.com')];
    expect(chosen(certs, 'mail.example.com')).toEqual([1]);
    expect(chosen(certs, 'a.b.example.com')).toEqual([0]);
    expect(chosen(certs, 'example.com')).toEqual([0]);
    expect(chosen(certs, 'xn--bcher-kva.example.com')).toEqual([0]);
    expect(chosen(certs, 'example.com.')).toEqual([0]);
    expect(chosen(certs, 'anything.com')).toEqual([0]);
  });

  it('an exact name beats a wildcard of the same key type, whatever the order', () => {
    const certs = [ec('default.example'), ec('*.example.com'), ec('mail.example.com')];
    expect(chosen(certs, 'mail.example.com')).toEqual([2]);
    expect(chosen(certs, 'pop.example.com')).toEqual([1]);
  });

  it('puts an RSA and an ECDSA certificate of the same name side by side; one per key type, the first in order', () => {
    const certs = [rsa('mail.example.com'), ec('mail.example.com', 'pop.example.com'), ec('mail.example.com'), rsa('*.example.com')];
    expect(chosen(certs, 'mail.example.com')).toEqual([0, 1]);
    // RSA through the wildcard, ECDSA by its exact name.
    expect(chosen(certs, 'pop.example.com')).toEqual([1, 3]);
    expect(chosen(certs, 'imap.example.com')).toEqual([3]);
  });

  it('the default is the first certificate and, beside it, the other key types carrying its first name', () => {
    expect(chosen([rsa('mail.example.com'), ec('other.example'), ec('mail.example.com')], undefined)).toEqual([0, 2]);
    expect(chosen([ec('mail.example.com', 'pop.example.com'), rsa('pop.example.com')], 'unknown.example')).toEqual([0]);
  });

  it('needs a certificate', () => {
    expect(() => planSelection([])).toThrow(/no certificate/);
  });
});

let pki: TestPki;
let rsaMail: TestCert;
let ecMail: TestCert;
let ecPop: TestCert;
let cnOnly: TestCert;
let ca: Buffer;
const servers: Server[] = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  pki = await makeTempTestPki();
  ca = await readFile(pki.caFile);
  [rsaMail, ecMail, ecPop, cnOnly] = await Promise.all([
    issueCert(pki, { name: 'rsa-mail', dns: ['mail.sni.test', '*.mail.sni.test'], keyType: 'rsa' }),
    issueCert(pki, { name: 'ec-mail', dns: ['mail.sni.test'] }),
    issueCert(pki, { name: 'ec-pop', dns: ['pop.sni.test', 'POP2.sni.test'] }),
    issueCert(pki, { name: 'cn-only', cn: 'legacy.sni.test' }),
  ]);
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => closeServer(s, sockets)));
  sockets.clear();
});
afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

describe('certificateNames', () => {
  it('is the DNS subjectAltNames in lower case (wildcards kept), else the subject CN', async () => {
    const names = async (c: TestCert): Promise<string[]> => certificateNames(new X509Certificate(await readFile(c.certFile)));
    expect(await names(rsaMail)).toEqual(['mail.sni.test', '*.mail.sni.test']);
    expect(await names(ecPop)).toEqual(['pop.sni.test', 'pop2.sni.test']);
    expect(await names(cnOnly)).toEqual(['legacy.sni.test']);
    // IP SANs are not names a client asks for by SNI.
    expect(await names(pki)).toEqual(['localhost']);
  });
});

const pair = (c: TestCert): CertificatePair => ({ certFile: c.certFile, keyFile: c.keyFile });

async function loadedStore(certificates: CertificatePair[], ticketKeysFile?: string, clientCaFile?: string): Promise<TlsContextStore> {
  const store = new TlsContextStore({
    certificates,
    ...(clientCaFile ? { clientCaFile } : {}),
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_TLS12_CIPHERS,
    ecdhCurve: DEFAULT_ECDH_CURVE,
    ...(ticketKeysFile ? { ticketKeysFile } : {}),
    sessionScope: 'sni-test',
  });
  await store.load();
  return store;
}

/** A TCP server whose connections go through a handshaker on `store`'s contexts. */
async function serve(store: TlsContextStore, requireClientCert = false): Promise<{ port: number; handshaker: TlsHandshaker }> {
  const handshaker = new TlsHandshaker(
    store.currentOptions!,
    { requestCert: requireClientCert, rejectUnauthorized: requireClientCert, handshakeTimeoutMs: 5_000 },
    store.ticketKeys,
    store.select,
  );
  const server = createServer((raw) => {
    sockets.add(raw);
    void handshaker.handshake(raw).then((s) => {
      if (!(s instanceof Error)) s.end();
    });
  });
  servers.push(server);
  return { port: await listenLoopback(server), handshaker };
}

interface Seen {
  /** The leaf's DNS names. */
  readonly names: string;
  /** rsa or ec, by the leaf's key. */
  readonly keyType: string | undefined;
  readonly reused: boolean;
  readonly session: Buffer | undefined;
}

/** One handshake; the certificate the server sent, verified against the test CA for `servername` when given. */
function handshake(
  port: number,
  opts: { servername?: string; sigalgs?: string; maxVersion?: SecureVersion; session?: Buffer; client?: { cert: Buffer; key: Buffer } } = {},
): Promise<Seen> {
  return new Promise((resolve, reject) => {
    let session: Buffer | undefined;
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      ...(opts.servername !== undefined ? { servername: opts.servername } : { rejectUnauthorized: false }),
      ...(opts.sigalgs ? { sigalgs: opts.sigalgs } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.client ?? {}),
    });
    socket.on('session', (s: Buffer) => (session = s));
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      const reused = socket.isSessionReused();
      const done = (): void =>
        resolve({
          names: cert ? certificateNames(cert).join(',') : '',
          keyType: cert?.publicKey.asymmetricKeyType,
          reused,
          session,
        });
      socket.resume();
      socket.once('end', done);
      socket.once('close', done);
    });
  });
}

describe('TlsContextStore with several certificates, behind a TlsHandshaker', () => {
  it('gives each SNI name its certificate, RSA or ECDSA by the client, the first without SNI or for an unknown name', async () => {
    const store = await loadedStore([pair(rsaMail), pair(ecMail), pair(ecPop)]);
    expect(store.selectsByName).toBe(true);
    const { port } = await serve(store);
    const rsaOnly = 'RSA-PSS+SHA256:RSA+SHA256';
    const ecOnly = 'ECDSA+SHA256';
    expect(await handshake(port, { servername: 'pop2.sni.test' })).toMatchObject({ names: 'pop.sni.test,pop2.sni.test', keyType: 'ec' });
    expect(await handshake(port, { servername: 'mail.sni.test', sigalgs: ecOnly })).toMatchObject({ names: 'mail.sni.test', keyType: 'ec' });
    expect(await handshake(port, { servername: 'mail.sni.test', sigalgs: rsaOnly })).toMatchObject({ names: 'mail.sni.test,*.mail.sni.test', keyType: 'rsa' });
    expect(await handshake(port, { servername: 'mail.sni.test', sigalgs: ecOnly, maxVersion: 'TLSv1.2' })).toMatchObject({ keyType: 'ec' });
    expect(await handshake(port, { servername: 'x.mail.sni.test' })).toMatchObject({ names: 'mail.sni.test,*.mail.sni.test', keyType: 'rsa' });
    // Without SNI or with an unknown name: the first certificate, with the ECDSA one of its first name beside it.
    expect(await handshake(port, { sigalgs: rsaOnly })).toMatchObject({ keyType: 'rsa', names: 'mail.sni.test,*.mail.sni.test' });
    expect(await handshake(port, { sigalgs: ecOnly })).toMatchObject({ keyType: 'ec', names: 'mail.sni.test' });
    await expect(handshake(port, { servername: 'unknown.sni.test', sigalgs: rsaOnly })).rejects.toThrow(/does not match|altnames/);
  });

  it('resumes a session under a name-selected certificate with the ticket key file (TLS 1.3 and 1.2)', async () => {
    const keys = join(pki.dir, 'ticket-keys');
    // Two keys: the ticket key callback (on the default context) does the work.
    await writeFile(keys, `${randomBytes(48).toString('base64')}\n${randomBytes(48).toString('base64')}\n`);
    const first = await serve(await loadedStore([pair(rsaMail), pair(ecPop)], keys));
    // Another process with the same files.
    const second = await serve(await loadedStore([pair(rsaMail), pair(ecPop)], keys));
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      const full = await handshake(first.port, { servername: 'pop.sni.test', maxVersion });
      expect(full).toMatchObject({ reused: false, keyType: 'ec' });
      expect(full.session).toBeDefined();
      const again = await handshake(second.port, { servername: 'pop.sni.test', maxVersion, session: full.session! });
      expect(again.reused).toBe(true);
    }
  });

  it('a reload with a replaced certificate file reaches new handshakes; a pair whose key does not match keeps the old contexts', async () => {
    const mailCopy = await issueCert(pki, { name: 'mail-copy', dns: ['mail.sni.test'] });
    const store = await loadedStore([pair(rsaMail), pair(mailCopy)]);
    const { port, handshaker } = await serve(store);
    expect(await handshake(port, { servername: 'mail.sni.test', sigalgs: 'ECDSA+SHA256' })).toMatchObject({ names: 'mail.sni.test' });
    // Renewed: the same key file, a certificate with one more name.
    const renewed = await issueCert(pki, { name: 'renewed', dns: ['mail.sni.test', 'new.sni.test'] });
    await writeFile(mailCopy.keyFile, await readFile(renewed.keyFile));
    await writeFile(mailCopy.certFile, await readFile(renewed.certFile));
    await store.load();
    handshaker.setContext(store.currentOptions!, store.ticketKeys, store.select);
    expect(await handshake(port, { servername: 'new.sni.test' })).toMatchObject({ names: 'mail.sni.test,new.sni.test', keyType: 'ec' });

    // A key that does not match its certificate (of another key type, which OpenSSL alone would drop silently).
    await writeFile(mailCopy.keyFile, await readFile(rsaMail.keyFile));
    const err = await store.load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertificatePairError);
    expect((err as Error).message).toBe(`certificate ${mailCopy.certFile} / key ${mailCopy.keyFile}: the key does not match the certificate`);
    expect(await handshake(port, { servername: 'new.sni.test' })).toMatchObject({ names: 'mail.sni.test,new.sni.test' });
  });

  it('asks for and verifies client certificates with the same CAs whichever certificate SNI selects', async () => {
    const store = await loadedStore([pair(rsaMail), pair(ecPop)], undefined, pki.caFile);
    const { port } = await serve(store, true);
    const alice = await issueCert(pki, { name: 'alice-client', emails: ['alice@sni.test'], eku: 'clientAuth' });
    const client = { cert: await readFile(alice.certFile), key: await readFile(alice.keyFile) };
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      expect(await handshake(port, { servername: 'pop.sni.test', maxVersion, client })).toMatchObject({ names: 'pop.sni.test,pop2.sni.test', keyType: 'ec' });
      // Without one: refused (TLS 1.3 reports it once the client reads; the greeting never comes).
      await expect(handshake(port, { servername: 'pop.sni.test', maxVersion })).rejects.toThrow(/certificate required|handshake failure|ECONNRESET|socket hang up/i);
    }
  });

  it('refuses, with certFile/keyFile too, a key of another type than its certificate (which OpenSSL alone takes)', async () => {
    const store = new TlsContextStore({ certFile: rsaMail.certFile, keyFile: ecMail.keyFile, minVersion: 'TLSv1.2', ciphers: INTERMEDIATE_TLS12_CIPHERS, ecdhCurve: DEFAULT_ECDH_CURVE });
    const err = await store.load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertificatePairError);
    expect((err as Error).message).toBe(`certificate ${rsaMail.certFile} / key ${ecMail.keyFile}: the key does not match the certificate`);
    expect(store.currentOptions).toBeUndefined();
  });

  it('one certificate in the list selects nothing by name', async () => {
    const store = await loadedStore([pair(ecPop)]);
    expect(store.selectsByName).toBe(false);
    expect(store.select).toBeUndefined();
  });
});
