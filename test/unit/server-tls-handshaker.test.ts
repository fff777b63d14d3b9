/**
 * TlsHandshaker with a listener's TlsContextStore (certificates from the
 * openssl CLI, default profile): a secured session refuses a TLS 1.2
 * renegotiation and closes itself on it (whether or not a connection listens
 * on the socket), reporting the attempt as an error isRenegotiationAttempt
 * knows. Concurrent handshakes each resolve with the TLS socket over their
 * own accepted socket (matched through rawOf, which must keep holding on the
 * Node popgate runs on).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ECDH_CURVE, INTERMEDIATE_TLS12_CIPHERS } from '../../src/config/tls-profile.js';
import { TlsContextStore } from '../../src/server/tls-context.js';
import { isRenegotiationAttempt, rawOf, TlsHandshaker } from '../../src/server/tls-handshaker.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { closeServer, listenLoopback } from '../helpers/servers.js';

let pki: TestPki;
let handshaker: TlsHandshaker;
const servers: Server[] = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  pki = await makeTempTestPki();
  const store = new TlsContextStore({
    certFile: pki.certFile,
    keyFile: pki.keyFile,
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_TLS12_CIPHERS,
    ecdhCurve: DEFAULT_ECDH_CURVE,
  });
  await store.load();
  handshaker = new TlsHandshaker(store.currentOptions!, { requestCert: false, rejectUnauthorized: false, handshakeTimeoutMs: 5_000 });
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => closeServer(s, sockets)));
  sockets.clear();
});
afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** A TCP server whose connections go through the handshaker; resolves its port and the secured sockets. */
async function securedServer(): Promise<{ port: number; secured: Promise<TLSSocket> }> {
  let resolve!: (s: TLSSocket) => void;
  const secured = new Promise<TLSSocket>((r) => (resolve = r));
  const server = createServer((raw) => {
    sockets.add(raw);
    void handshaker.handshake(raw).then((s) => {
      if (!(s instanceof Error)) resolve(s);
    });
  });
  servers.push(server);
  return { port: await listenLoopback(server), secured };
}

describe('TlsHandshaker', () => {
  it('closes a session whose client asks to renegotiate (TLS 1.2) by itself', async () => {
    const { port, secured } = await securedServer();
    const client = tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(pki.caFile), servername: 'localhost', maxVersion: 'TLSv1.2' });
    client.on('error', () => undefined); // the server hangs up mid-handshake
    try {
      await once(client, 'secureConnect');
      const server = await secured;
      const errors: Error[] = [];
      // Only to observe; the handshaker's own listener does the closing.
      server.prependListener('error', (e) => errors.push(e));
      const renegotiated = new Promise<string>((r) => client.renegotiate({}, (err) => r(err ? `failed: ${err.message}` : 'renegotiated')));
      // (events.once would reject on the 'error' that reports the attempt.)
      const closed = new Promise<string>((r) => server.once('close', () => r('closed')));
      const outcome = await Promise.race([closed, renegotiated]);
      expect(outcome).toBe('closed');
      expect(errors.map(isRenegotiationAttempt)).toEqual([true]);
      await once(client, 'close');
    } finally {
      client.destroy();
    }
  });

  it('resolves concurrent handshakes each with the TLS socket over its own accepted socket', async () => {
    const pairs: Array<Promise<{ raw: Socket; secured: TLSSocket | Error }>> = [];
    const server = createServer((raw) => {
      sockets.add(raw);
      pairs.push(handshaker.handshake(raw).then((secured) => ({ raw, secured })));
    });
    servers.push(server);
    const port = await listenLoopback(server);
    const clients = Array.from({ length: 8 }, () => tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(pki.caFile), servername: 'localhost' }));
    try {
      // Each client learns its server-side port: the secured socket must carry that very connection.
      await Promise.all(clients.map((c) => once(c, 'secureConnect')));
      const results = await Promise.all(pairs);
      expect(results).toHaveLength(8);
      for (const { raw, secured } of results) {
        if (secured instanceof Error) throw secured;
        expect(rawOf(secured)).toBe(raw);
        expect(secured.remotePort).toBe(raw.remotePort);
      }
      expect(new Set(results.map((r) => r.raw.remotePort)).size).toBe(8);
      expect(new Set(clients.map((c) => c.localPort))).toEqual(new Set(results.map((r) => r.raw.remotePort)));
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});
