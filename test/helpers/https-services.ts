/**
 * For tests of egress through a forward proxy: an OAuth issuer
 * (oauth2-mock-server) and an nginx-style auth service, both over https on
 * loopback with the test PKI's certificate (names localhost and 127.0.0.1),
 * and the test CA trusted by this process the way NODE_EXTRA_CA_CERTS would
 * make it (tls.setDefaultCACertificates; stop() puts the defaults back).
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { OAuth2Server } from 'oauth2-mock-server';
import type { TestPki } from './certs.js';
import { startAuthService, type AuthService } from './nginx-auth.js';
import { freePort } from './ports.js';

export interface HttpsServices {
  /** The issuer; its `issuer.url` is `issuerUrl`. */
  readonly server: OAuth2Server;
  /** `https://localhost:<issuerPort>` */
  readonly issuerUrl: string;
  readonly issuerPort: number;
  /** The https auth service: user alice, password "wonderland". */
  readonly auth: AuthService;
  readonly authPort: number;
  /** The process's default CAs before the test CA was added (for a test that wants them alone for a while). */
  readonly defaultCas: readonly string[];
  /** Stops both and restores the process's default CAs. */
  stop(): Promise<void>;
}

export async function startHttpsServices(pki: TestPki, dir: string): Promise<HttpsServices> {
  const defaultCas = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...defaultCas, readFileSync(pki.caFile, 'utf8')]);
  const server = new OAuth2Server(pki.keyFile, pki.certFile);
  let auth: AuthService | undefined;
  try {
    await server.issuer.keys.generate('RS256');
    const issuerPort = await freePort();
    const issuerUrl = `https://localhost:${issuerPort}`;
    server.issuer.url = issuerUrl;
    await server.start(issuerPort, '127.0.0.1');
    auth = await startAuthService(dir, 'tls-auth', ['--user', 'alice=wonderland', '--fail-wait', '0', '--tls-cert', pki.certFile, '--tls-key', pki.keyFile]);
    const started = auth;
    return {
      server,
      issuerUrl,
      issuerPort,
      auth: started,
      authPort: Number(new URL(started.url).port),
      defaultCas,
      async stop() {
        await server.stop().catch(() => undefined);
        await started.stop();
        tls.setDefaultCACertificates(defaultCas);
      },
    };
  } catch (err) {
    await server.stop().catch(() => undefined);
    await auth?.stop();
    tls.setDefaultCACertificates(defaultCas);
    throw err;
  }
}
