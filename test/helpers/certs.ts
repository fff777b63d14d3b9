/**
 * A throwaway PKI for TLS tests, made with the real `openssl` CLI so the
 * certificates look like what operators deploy: a test CA, a server
 * certificate for `localhost` + 127.0.0.1 signed by it, and extra leaf
 * certificates on demand (a wrong-name one for hostname-verification tests,
 * or any SAN set). Keys are P-256 (fast to generate) unless an RSA leaf is
 * asked for (cipher-suite tests: ECDHE-RSA suites). Fails loudly when
 * openssl is missing: tests must never silently skip TLS.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface CertNames {
  /** DNS subjectAltNames. */
  dns: string[];
  /** IP subjectAltNames. */
  ips: string[];
  /** Subject CN. */
  cn: string;
}

export interface TestCert {
  certFile: string;
  keyFile: string;
  names: CertNames;
}

export interface TestPki extends TestCert {
  dir: string;
  /** The CA certificate (PEM): give this to clients as their trust anchor. */
  caFile: string;
  /** The CA private key, to issue more leaves with issueCert(). */
  caKeyFile: string;
}

export interface IssueOptions {
  /** Base file name in the PKI dir: `<name>.pem` / `<name>.key`. */
  name: string;
  dns?: string[];
  ips?: string[];
  /** rfc822Name (email) subjectAltNames, e.g. for TLS client certificates (SASL EXTERNAL). */
  emails?: string[];
  /** Subject CN; defaults to the first DNS name, else the first IP, else `name`. */
  cn?: string;
  days?: number;
  /** Extended key usage; default serverAuth. */
  eku?: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth';
  /** The leaf's key: ECDSA P-256 (default) or RSA-2048. */
  keyType?: 'ec' | 'rsa';
}

function openssl(args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
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

async function genKey(file: string, cwd: string, type: 'ec' | 'rsa' = 'ec'): Promise<void> {
  const params = type === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  await openssl(['genpkey', ...params, '-out', file], cwd);
}

/**
 * makeTestPki() in a fresh temporary directory (removed again if making the
 * PKI fails). The caller removes `pki.dir` when done, e.g. in afterAll.
 */
export async function makeTempTestPki(prefix = 'popgate-pki-'): Promise<TestPki> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  try {
    return await makeTestPki(dir);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Creates `<dir>/ca.pem`, `<dir>/ca.key`, `<dir>/server.pem`, `<dir>/server.key`. */
export async function makeTestPki(dir: string): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  const caKeyFile = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.pem');
  await genKey(caKeyFile, dir);
  await openssl(
    [
      'req', '-x509', '-new', '-key', caKeyFile, '-sha256', '-days', '3650',
      '-subj', '/O=popgate tests/CN=popgate test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-out', caFile,
    ],
    dir,
  );
  const pki = { dir, caFile, caKeyFile };
  const server = await issueCert(pki, { name: 'server', dns: ['localhost'], ips: ['127.0.0.1'] });
  return { ...pki, ...server };
}

/** Issues a leaf certificate signed by the PKI's CA. */
export async function issueCert(
  pki: { dir: string; caFile: string; caKeyFile: string },
  opts: IssueOptions,
): Promise<TestCert> {
  const dns = opts.dns ?? [];
  const ips = opts.ips ?? [];
  const cn = opts.cn ?? dns[0] ?? ips[0] ?? opts.name;
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name)) throw new Error(`issueCert: bad name ${opts.name}`);
  const keyFile = path.join(pki.dir, `${opts.name}.key`);
  const certFile = path.join(pki.dir, `${opts.name}.pem`);
  const csrFile = path.join(pki.dir, `${opts.name}.csr`);
  const extFile = path.join(pki.dir, `${opts.name}.ext`);
  await genKey(keyFile, pki.dir, opts.keyType);
  await openssl(['req', '-new', '-key', keyFile, '-subj', `/O=popgate tests/CN=${cn}`, '-out', csrFile], pki.dir);
  const emails = opts.emails ?? [];
  if (emails.some((e) => !/^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$/.test(e))) throw new Error(`issueCert: bad email ${emails.join(',')}`);
  const san = [...dns.map((d) => `DNS:${d}`), ...ips.map((ip) => `IP:${ip}`), ...emails.map((e) => `email:${e}`)];
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${opts.eku ?? 'serverAuth'}`,
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid,issuer',
    ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
  ];
  await writeFile(extFile, ext.join('\n') + '\n');
  await openssl(
    [
      'x509', '-req', '-in', csrFile, '-CA', pki.caFile, '-CAkey', pki.caKeyFile,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      '-days', String(opts.days ?? 825), '-sha256', '-extfile', extFile, '-out', certFile,
    ],
    pki.dir,
  );
  return { certFile, keyFile, names: { dns, ips, cn } };
}

/**
 * A certificate from the same (trusted) CA whose names do NOT cover
 * localhost/127.0.0.1: a client that checks names must reject it.
 */
export function makeWrongNameCert(
  pki: { dir: string; caFile: string; caKeyFile: string },
  dns: string[] = ['wrong-name.popgate.test'],
): Promise<TestCert> {
  return issueCert(pki, { name: 'wrong-name', dns });
}

/**
 * An intermediate CA signed by the PKI's CA (`<name>.pem` / `<name>.key`):
 * pass it to issueCert as the issuing PKI for leaves whose chain needs it
 * (a certFile with only the leaf is then an incomplete chain).
 */
export async function issueIntermediateCa(
  pki: { dir: string; caFile: string; caKeyFile: string },
  name = 'intermediate',
): Promise<{ dir: string; caFile: string; caKeyFile: string }> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`issueIntermediateCa: bad name ${name}`);
  const caKeyFile = path.join(pki.dir, `${name}.key`);
  const caFile = path.join(pki.dir, `${name}.pem`);
  const csrFile = path.join(pki.dir, `${name}.csr`);
  const extFile = path.join(pki.dir, `${name}.ext`);
  await genKey(caKeyFile, pki.dir);
  await openssl(['req', '-new', '-key', caKeyFile, '-subj', `/O=popgate tests/CN=popgate test ${name} CA`, '-out', csrFile], pki.dir);
  await writeFile(
    extFile,
    ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid,issuer'].join('\n') + '\n',
  );
  await openssl(
    [
      'x509', '-req', '-in', csrFile, '-CA', pki.caFile, '-CAkey', pki.caKeyFile,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      '-days', '1825', '-sha256', '-extfile', extFile, '-out', caFile,
    ],
    pki.dir,
  );
  return { dir: pki.dir, caFile, caKeyFile };
}
