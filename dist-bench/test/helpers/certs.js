/**
 * A throwaway PKI for TLS tests, made with the real `openssl` CLI so the
 * certificates look like what operators deploy: a test CA, a server
 * certificate for `localhost` + 127.0.0.1 signed by it, and extra leaf
 * certificates on demand (a wrong-name one for hostname-verification tests,
 * or any SAN set). Keys are P-256 (fast to generate). Fails loudly when
 * openssl is missing: tests must never silently skip TLS.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
function openssl(args, cwd) {
    return new Promise((resolve, reject) => {
        execFile('openssl', args, { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
            if (err) {
                const code = err.code;
                if (code === 'ENOENT') {
                    reject(new Error('openssl CLI not found: run scripts/setup.sh (apt package "openssl")'));
                    return;
                }
                reject(new Error(`openssl ${args.join(' ')} failed: ${err.message}\n${stderr}`));
                return;
            }
            resolve(stdout);
        });
    });
}
async function genKey(file, cwd) {
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], cwd);
}
/** Creates `<dir>/ca.pem`, `<dir>/ca.key`, `<dir>/server.pem`, `<dir>/server.key`. */
export async function makeTestPki(dir) {
    await mkdir(dir, { recursive: true });
    const caKeyFile = path.join(dir, 'ca.key');
    const caFile = path.join(dir, 'ca.pem');
    await genKey(caKeyFile, dir);
    await openssl([
        'req', '-x509', '-new', '-key', caKeyFile, '-sha256', '-days', '3650',
        '-subj', '/O=popgate tests/CN=popgate test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-out', caFile,
    ], dir);
    const pki = { dir, caFile, caKeyFile };
    const server = await issueCert(pki, { name: 'server', dns: ['localhost'], ips: ['127.0.0.1'] });
    return { ...pki, ...server };
}
/** Issues a leaf certificate signed by the PKI's CA. */
export async function issueCert(pki, opts) {
    const dns = opts.dns ?? [];
    const ips = opts.ips ?? [];
    const cn = opts.cn ?? dns[0] ?? ips[0] ?? opts.name;
    if (!/^[A-Za-z0-9._-]+$/.test(opts.name))
        throw new Error(`issueCert: bad name ${opts.name}`);
    const keyFile = path.join(pki.dir, `${opts.name}.key`);
    const certFile = path.join(pki.dir, `${opts.name}.pem`);
    const csrFile = path.join(pki.dir, `${opts.name}.csr`);
    const extFile = path.join(pki.dir, `${opts.name}.ext`);
    await genKey(keyFile, pki.dir);
    await openssl(['req', '-new', '-key', keyFile, '-subj', `/O=popgate tests/CN=${cn}`, '-out', csrFile], pki.dir);
    const san = [...dns.map((d) => `DNS:${d}`), ...ips.map((ip) => `IP:${ip}`)];
    const ext = [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${opts.eku ?? 'serverAuth'}`,
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid,issuer',
        ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
    ];
    await writeFile(extFile, ext.join('\n') + '\n');
    await openssl([
        'x509', '-req', '-in', csrFile, '-CA', pki.caFile, '-CAkey', pki.caKeyFile,
        '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', String(opts.days ?? 825), '-sha256', '-extfile', extFile, '-out', certFile,
    ], pki.dir);
    return { certFile, keyFile, names: { dns, ips, cn } };
}
/**
 * A certificate from the same (trusted) CA whose names do NOT cover
 * localhost/127.0.0.1: a client that checks names must reject it.
 */
export function makeWrongNameCert(pki, dns = ['wrong-name.popgate.test']) {
    return issueCert(pki, { name: 'wrong-name', dns });
}
//# sourceMappingURL=certs.js.map