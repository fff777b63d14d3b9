/**
 * Channel-binding data for SCRAM-SHA-256-PLUS from a real TLS session: the
 * server's tls-exporter equals what the client's side of the same session
 * exports (RFC 9266, TLS 1.3 only), and tls-server-end-point is the SHA-256
 * of the server certificate (RFC 5929; the test PKI signs with SHA-256).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scramChannel } from '../../src/server/scram-bridge.js';
import { makeTempTestPki, type TestPki } from '../helpers/certs.js';
import { listenLoopback } from '../helpers/servers.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTempTestPki();
});
afterAll(async () => {
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

async function session(maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<{ server: TLSSocket; client: TLSSocket; close: () => void }> {
  const server = createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile), maxVersion });
  const secured = once(server, 'secureConnection') as Promise<[TLSSocket]>;
  const port = await listenLoopback(server);
  const client = connect({ port, host: '127.0.0.1', ca: readFileSync(pki.caFile), servername: 'localhost' });
  await once(client, 'secureConnect');
  const [socket] = await secured;
  return {
    server: socket,
    client,
    close: () => {
      client.destroy();
      socket.destroy();
      server.close();
    },
  };
}

describe('scramChannel', () => {
  it('TLS 1.3: the exporter both ends compute, and the certificate hash', async () => {
    const s = await session('TLSv1.3');
    try {
      const cb = scramChannel(s.server);
      expect(cb.tlsExporter).toEqual(s.client.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)));
      expect(cb.tlsExporter).toHaveLength(32);
      const der = new X509Certificate(readFileSync(pki.certFile)).raw;
      expect(cb.tlsServerEndPoint).toEqual(createHash('sha256').update(der).digest());
    } finally {
      s.close();
    }
  });

  it('TLS 1.2: no exporter (unsafe without the extended master secret), the certificate hash still', async () => {
    const s = await session('TLSv1.2');
    try {
      const cb = scramChannel(s.server);
      expect(cb.tlsExporter).toBeUndefined();
      expect(cb.tlsServerEndPoint).toHaveLength(32);
    } finally {
      s.close();
    }
  });
});
