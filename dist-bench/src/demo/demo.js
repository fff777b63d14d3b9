import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generate } from 'selfsigned';
import { hashPassword } from '../auth/index.js';
import { parseConfigText } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { Gateway } from '../server/gateway.js';
import { startDemoBackend } from './backend.js';
import { sampleMailboxes, DEMO_USERS } from './sample-mail.js';
/**
 * `popgate demo`: everything on loopback, nothing else needed. An in-memory
 * POP3 backend that accepts a Dovecot-style master login, a self-signed
 * certificate, a user file, and the real gateway configured through the same
 * YAML path an operator uses.
 */
export async function runDemo(opts) {
    const out = opts.out ?? process.stdout;
    const dir = await mkdtemp(join(tmpdir(), 'popgate-demo-'));
    const masterPassword = randomBytes(18).toString('base64url');
    let backend;
    let gateway;
    const log = createLogger({ level: 'info', destination: undefined });
    try {
        const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
            keyType: 'ec',
            curve: 'P-256',
            algorithm: 'sha256',
            notAfterDate: new Date(Date.now() + 30 * 24 * 3600 * 1000),
            extensions: [
                { name: 'basicConstraints', cA: true },
                { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
                { name: 'extKeyUsage', serverAuth: true },
                { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
            ],
        });
        const certFile = join(dir, 'demo-cert.pem');
        await writeFile(certFile, pems.cert);
        await writeFile(join(dir, 'demo-key.pem'), pems.private, { mode: 0o600 });
        const userLines = await Promise.all(DEMO_USERS.map(async (u) => `${u.name}:${await hashPassword(u.password)}`));
        await writeFile(join(dir, 'users'), `# demo users (popgate hash-password)\n${userLines.join('\n')}\n`, { mode: 0o600 });
        await writeFile(join(dir, 'master-password'), `${masterPassword}\n`, { mode: 0o600 });
        backend = await startDemoBackend({
            host: '127.0.0.1',
            port: 0,
            // Known to the backend, but only the master login can open them.
            users: Object.fromEntries(DEMO_USERS.map((u) => [u.name, randomBytes(18).toString('base64url')])),
            masterUser: 'popgate',
            masterPassword,
            messages: sampleMailboxes(),
        });
        const yaml = `
log: { level: info }
listeners:
  - { name: demo-pop3s, kind: pop3s, address: 127.0.0.1, port: ${opts.pop3sPort},
      tls: { certFile: demo-cert.pem, keyFile: demo-key.pem } }
  - { name: demo-pop3, kind: pop3, address: 127.0.0.1, port: ${opts.pop3Port},
      tls: { certFile: demo-cert.pem, keyFile: demo-key.pem } }
auth: { userFile: users, failureDelay: 1s }
backend:
  host: 127.0.0.1
  port: ${backend.port}
  login: { mode: master, method: auth-plain, user: popgate, passwordFile: master-password }
`;
        const config = await parseConfigText(yaml, { baseDir: dir, source: 'demo' });
        gateway = await Gateway.start(config, log);
        const pop3s = gateway.bound.find((l) => l.kind === 'pop3s').port;
        const pop3 = gateway.bound.find((l) => l.kind === 'pop3').port;
        log.flush();
        out.write(instructions({ certFile, pop3s, pop3, backendPort: backend.port }));
    }
    catch (err) {
        await gateway?.stop(0);
        await backend?.close();
        await rm(dir, { recursive: true, force: true });
        throw err;
    }
    const running = gateway;
    const runningBackend = backend;
    return new Promise((resolve) => {
        const stop = (signal) => {
            process.removeListener('SIGINT', stop);
            process.removeListener('SIGTERM', stop);
            log.info({ signal }, 'demo stopping');
            void running
                .stop(2_000)
                .then(() => runningBackend.close())
                .then(() => rm(dir, { recursive: true, force: true }))
                .then(() => {
                log.flush();
                resolve(0);
            });
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
    });
}
function instructions(p) {
    const [alice] = DEMO_USERS;
    const u = alice;
    const py = [
        'import poplib, ssl',
        `ctx = ssl.create_default_context(cafile="${p.certFile}")`,
        `c = poplib.POP3_SSL("127.0.0.1", ${p.pop3s}, context=ctx)`,
        `c.user("${u.name}"); c.pass_("${u.password}")`,
        'print(c.stat())',
        'print(b"\\n".join(c.retr(1)[1]).decode())',
        'c.quit()',
    ].join('; ');
    return `
popgate demo is running (Ctrl-C stops it).
  POP3S (implicit TLS)  127.0.0.1:${p.pop3s}
  POP3 + STLS           127.0.0.1:${p.pop3}
  demo backend          127.0.0.1:${p.backendPort} (in memory; popgate logs in there as master user "popgate")
  users                 ${DEMO_USERS.map((x) => `${x.name} / ${x.password}`).join(', ')}
  certificate           ${p.certFile} (self-signed; used as the CA below)

Read message 1 as ${u.name} through the gateway:

  curl --cacert ${p.certFile} -u ${u.name}:${u.password} pop3s://127.0.0.1:${p.pop3s}/1

  curl --ssl-reqd --cacert ${p.certFile} -u ${u.name}:${u.password} pop3://127.0.0.1:${p.pop3}/1

  printf 'USER ${u.name}\\r\\nPASS ${u.password}\\r\\nSTAT\\r\\nRETR 1\\r\\nQUIT\\r\\n' | openssl s_client -quiet -connect 127.0.0.1:${p.pop3s} -CAfile ${p.certFile}

  printf 'CAPA\\r\\nUSER ${u.name}\\r\\nPASS ${u.password}\\r\\nLIST\\r\\nQUIT\\r\\n' | openssl s_client -quiet -starttls pop3 -connect 127.0.0.1:${p.pop3} -CAfile ${p.certFile}

  python3 -c '${py}'

`;
}
//# sourceMappingURL=demo.js.map