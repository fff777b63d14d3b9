/**
 * Preflight: every file a loaded configuration names, checked by the code
 * that will use it, with every problem reported at once.
 *
 * `popgate check-config` and `popgate serve` (before it listens) run this on
 * the config `inspectConfig` returned, so they agree: what passes here is
 * what the gateway loads at start-up.
 *
 *   listeners[].tls            certificate, key (each pair of certificates),
 *                              client CA: read, parsed, each key matched to
 *                              its certificate, then the very
 *                              context the listener uses (listener.ts
 *                              loadListenerTls, node:tls createSecureContext)
 *   listeners[].tls            session ticket keys: parsed by the store's own
 *     .ticketKeysFile          parser (tls-context.ts parseTicketKeys)
 *   auth.userFile              read and parsed by the user-file verifier's own
 *                              parser; a line it would skip is a problem
 *   backend.login.secretsFile  read and parsed by the internal-login parser
 *   backend.tls.caFile,        read and parsed as PEM CA certificates (when
 *   routing...tls.caFile       the link uses TLS and verifies)
 *   kerberos.rcacheDir         an existing directory popgate can write
 *   kerberos.krb5Config        a readable file
 *   kerberos.keytab            holds a key for every service principal (the
 *                              addon's own check, as serve runs it)
 *   *File secrets, headersFile read by the loader itself (config/load.ts):
 *                              their problems come from inspectConfig
 *
 * CONFIG_FILE_KEYS lists every file-valued key of the schema; a test keeps
 * it equal to the schema, so a new `*File` key cannot go unchecked.
 */
import { readFile, stat } from 'node:fs/promises';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { formatConfigPath, PAM_DEFAULTS, type ConfigIssue, type PopgateConfig } from '../config/index.js';
import type { BackendTlsConfig, KerberosConfig, ListenerConfig } from '../config/schema.js';
import { parseUserFile, type UserFileLineProblem } from '../auth/user-file.js';
import { parseSecrets } from '../backend/internal-login.js';
import { loadListenerTls } from './listener.js';
import { certificateNames } from './certificate-selection.js';
import { parseTicketKeys } from './tls-context.js';
import { keytabPrincipals, openKerberosBinding, rcacheDirProblem } from './kerberos-services.js';

/** What a file-valued key holds. */
export type ConfigFileKind =
  | 'certificate'
  | 'private-key'
  | 'client-ca'
  | 'ticket-keys'
  | 'backend-ca'
  | 'ldap-ca'
  | 'user-file'
  | 'backend-secrets'
  | 'secret'
  | 'headers'
  | 'keytab'
  | 'rcache-dir'
  | 'krb5-config';

/**
 * Every file-valued key of the schema (`*File` keys and PATH_FIELDS), in
 * configLeafPaths() notation, and what it holds.
 */
export const CONFIG_FILE_KEYS: Readonly<Record<string, ConfigFileKind>> = {
  'listeners[].tls.certFile': 'certificate',
  'listeners[].tls.keyFile': 'private-key',
  'listeners[].tls.certificates[].certFile': 'certificate',
  'listeners[].tls.certificates[].keyFile': 'private-key',
  'listeners[].tls.clientCertificates.caFile': 'client-ca',
  'listeners[].tls.ticketKeysFile': 'ticket-keys',
  'auth.userFile': 'user-file',
  'auth.http.headersFile': 'headers',
  'auth.throttle.redis.passwordFile': 'secret',
  'auth.throttle.redis.sentinel.passwordFile': 'secret',
  'auth.oauth.introspection.clientSecretFile': 'secret',
  'auth.ldap.caFile': 'ldap-ca',
  'auth.ldap.search.bindPasswordFile': 'secret',
  'kerberos.keytab': 'keytab',
  'kerberos.rcacheDir': 'rcache-dir',
  'kerberos.krb5Config': 'krb5-config',
  'backend.tls.caFile': 'backend-ca',
  'backend.login.passwordFile': 'secret',
  'backend.login.secretsFile': 'backend-secrets',
  'routing.users{}[].tls.caFile': 'backend-ca',
  'routing.domains{}[].tls.caFile': 'backend-ca',
};

/** One file a configuration names. */
export interface ConfigFileRef {
  /** Config path, e.g. `listeners[0].tls.certFile`. */
  readonly path: string;
  /** Its key in CONFIG_FILE_KEYS, e.g. `listeners[].tls.certFile`. */
  readonly pattern: string;
  readonly kind: ConfigFileKind;
  /** Absolute path (the loader resolved relative ones). */
  readonly file: string;
  /** Why serve does not read it with these settings; undefined when it does. */
  readonly unusedBecause?: string;
}

/** A file that was checked, or one that was not (see PreflightReport). */
export interface CheckedFile {
  readonly path: string;
  readonly file: string;
  /** What was found (checked) or why it was not read (unused). */
  readonly detail: string;
}

export interface PreflightReport {
  /** Every problem, in config order; empty when serve can load every file. */
  readonly issues: readonly ConfigIssue[];
  /** The files found usable, in config order, with what was found. */
  readonly checked: readonly CheckedFile[];
  /** Files the config names that serve does not read with these settings. */
  readonly unused: readonly CheckedFile[];
  /** Things serve starts with but that are probably wrong (a missing PAM service file). */
  readonly warnings: readonly ConfigIssue[];
}

type Segment = string | number;

function backendCaUnused(tls: BackendTlsConfig): string | undefined {
  if (tls.mode === 'none') return 'tls.mode is none';
  if (!tls.verify) return 'tls.verify is false';
  return undefined;
}

/** Every file `config` names, in config order (see CONFIG_FILE_KEYS). */
export function configFiles(config: PopgateConfig): ConfigFileRef[] {
  const out: ConfigFileRef[] = [];
  const add = (path: readonly Segment[], pattern: string, file: string | undefined, unusedBecause?: string): void => {
    const kind = CONFIG_FILE_KEYS[pattern];
    if (kind === undefined) throw new Error(`preflight: ${pattern} is not in CONFIG_FILE_KEYS`);
    if (file === undefined) return;
    out.push({ path: formatConfigPath(path), pattern, kind, file, ...(unusedBecause !== undefined ? { unusedBecause } : {}) });
  };
  config.listeners.forEach((l, i) => {
    const tls = l.tls;
    if (!tls) return;
    add(['listeners', i, 'tls', 'certFile'], 'listeners[].tls.certFile', tls.certFile);
    add(['listeners', i, 'tls', 'keyFile'], 'listeners[].tls.keyFile', tls.keyFile);
    tls.certificates?.forEach((pair, j) => {
      add(['listeners', i, 'tls', 'certificates', j, 'certFile'], 'listeners[].tls.certificates[].certFile', pair.certFile);
      add(['listeners', i, 'tls', 'certificates', j, 'keyFile'], 'listeners[].tls.certificates[].keyFile', pair.keyFile);
    });
    const cc = tls.clientCertificates;
    add(
      ['listeners', i, 'tls', 'clientCertificates', 'caFile'],
      'listeners[].tls.clientCertificates.caFile',
      cc?.caFile,
      cc?.mode === 'none' ? 'clientCertificates.mode is none' : undefined,
    );
    add(['listeners', i, 'tls', 'ticketKeysFile'], 'listeners[].tls.ticketKeysFile', tls.ticketKeysFile);
  });
  add(['auth', 'userFile'], 'auth.userFile', config.auth.userFile, config.auth.verifiers.includes('userFile') ? undefined : 'auth.verifiers does not include userFile');
  add(['auth', 'http', 'headersFile'], 'auth.http.headersFile', config.auth.http?.headersFile);
  // Secrets: the loader reads them whether or not the throttle is enabled.
  const redis = config.auth.throttle.redis;
  add(['auth', 'throttle', 'redis', 'passwordFile'], 'auth.throttle.redis.passwordFile', redis?.passwordFile);
  add(['auth', 'throttle', 'redis', 'sentinel', 'passwordFile'], 'auth.throttle.redis.sentinel.passwordFile', redis?.sentinel?.passwordFile);
  add(['auth', 'oauth', 'introspection', 'clientSecretFile'], 'auth.oauth.introspection.clientSecretFile', config.auth.oauth?.introspection?.clientSecretFile);
  add(['auth', 'ldap', 'caFile'], 'auth.ldap.caFile', config.auth.ldap?.caFile);
  add(['auth', 'ldap', 'search', 'bindPasswordFile'], 'auth.ldap.search.bindPasswordFile', config.auth.ldap?.search?.bindPasswordFile);
  const login = config.backend.login;
  if (login.mode === 'master') add(['backend', 'login', 'passwordFile'], 'backend.login.passwordFile', login.passwordFile);
  if (login.mode === 'mapped') add(['backend', 'login', 'secretsFile'], 'backend.login.secretsFile', login.secretsFile);
  add(['backend', 'tls', 'caFile'], 'backend.tls.caFile', config.backend.tls.caFile, backendCaUnused(config.backend.tls));
  for (const section of ['users', 'domains'] as const) {
    for (const [key, list] of Object.entries(config.routing[section])) {
      list.forEach((entry, i) => {
        // An entry without its own tls uses backend.tls (and its caFile, listed above).
        if (entry.tls) add(['routing', section, key, i, 'tls', 'caFile'], `routing.${section}{}[].tls.caFile`, entry.tls.caFile, backendCaUnused(entry.tls));
      });
    }
  }
  const k = config.kerberos;
  if (k) {
    add(['kerberos', 'keytab'], 'kerberos.keytab', k.keytab);
    add(['kerberos', 'rcacheDir'], 'kerberos.rcacheDir', k.rcacheDir);
    add(['kerberos', 'krb5Config'], 'kerberos.krb5Config', k.krb5Config);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Results

/** What checking one thing found: problems, or what is fine about it. */
interface Finding {
  readonly issues: ConfigIssue[];
  readonly checked: CheckedFile[];
}

function finding(): Finding {
  return { issues: [], checked: [] };
}

function errCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

/** The first line of an error message (OpenSSL's are one line; never file contents). */
function errText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** Reads `ref.file`; on failure records the issue and returns undefined. */
async function readOrReport(ref: ConfigFileRef, what: string, f: Finding): Promise<Buffer | undefined> {
  try {
    return await readFile(ref.file);
  } catch (err) {
    const code = errCode(err);
    f.issues.push({
      path: ref.path,
      file: ref.file,
      message: `cannot read ${what} ${ref.file} (${code})`,
      ...(code === 'EACCES' || code === 'EPERM' ? { hint: 'make it readable by the user popgate runs as' } : {}),
    });
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// PEM

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** The certificates of a PEM file (a chain or a CA bundle), or why there are none usable. */
export function parsePemCertificates(pem: Buffer): { certificates: X509Certificate[] } | { problem: string } {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) return { problem: 'no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)' };
  const certificates: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certificates.push(new X509Certificate(block));
    } catch (err) {
      return { problem: `certificate ${i + 1} does not parse: ${errText(err)}` };
    }
  }
  return { certificates };
}

function validUntil(cert: X509Certificate): string {
  const t = new Date(cert.validTo);
  return Number.isNaN(t.getTime()) ? cert.validTo : t.toISOString().slice(0, 10);
}

function commonName(cert: X509Certificate): string {
  const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  return cn !== undefined ? `CN=${cn}` : cert.subject.replace(/\n/g, ', ');
}

// ---------------------------------------------------------------------------
// Checks, one per kind of file

/** A certificate file and its key file, each read and parsed, the key matched to the leaf. */
interface CheckedPair {
  readonly certRef: ConfigFileRef;
  readonly keyRef: ConfigFileRef;
  readonly leaf: X509Certificate | undefined;
  readonly chainLength: number;
  readonly key: KeyObject | undefined;
}

async function checkPair(certRef: ConfigFileRef, keyRef: ConfigFileRef, f: Finding): Promise<CheckedPair> {
  const [certPem, keyPem] = await Promise.all([readOrReport(certRef, 'certificate file', f), readOrReport(keyRef, 'private key file', f)]);
  let leaf: X509Certificate | undefined;
  let chainLength = 0;
  if (certPem) {
    const parsed = parsePemCertificates(certPem);
    if ('problem' in parsed) f.issues.push({ path: certRef.path, file: certRef.file, message: `certificate file ${certRef.file}: ${parsed.problem}` });
    else {
      leaf = parsed.certificates[0];
      chainLength = parsed.certificates.length;
    }
  }
  let key: KeyObject | undefined;
  if (keyPem) {
    const keyIssue = (problem: string): ConfigIssue => ({ path: keyRef.path, file: keyRef.file, message: `private key file ${keyRef.file}: ${problem}` });
    if (!PEM_PRIVATE_KEY.test(keyPem.toString('latin1'))) f.issues.push(keyIssue('no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)'));
    else {
      try {
        key = createPrivateKey(keyPem);
      } catch (err) {
        f.issues.push({ ...keyIssue(`not a usable private key (${errText(err)})`), hint: 'an unencrypted PEM key: popgate takes no passphrase' });
      }
    }
  }
  if (leaf && key && !leaf.checkPrivateKey(key)) {
    f.issues.push({
      path: keyRef.path,
      file: keyRef.file,
      message: `private key ${keyRef.file} does not match the certificate in ${certRef.file}`,
      hint: 'give the key the certificate was issued for (the leaf certificate comes first in certFile)',
    });
  }
  return { certRef, keyRef, leaf, chainLength, key };
}

/**
 * A listener's certificate(s) and key(s), client CA and ticket keys, then the
 * TLS context(s) the listener builds from them.
 */
async function checkListenerTls(listener: ListenerConfig, index: number, refs: readonly ConfigFileRef[]): Promise<Finding> {
  const f = finding();
  const certRefs = refs.filter((r) => r.kind === 'certificate');
  const keyRefs = refs.filter((r) => r.kind === 'private-key');
  const caRef = refs.find((r) => r.kind === 'client-ca' && r.unusedBecause === undefined);
  const ticketRef = refs.find((r) => r.kind === 'ticket-keys');
  if (certRefs.length === 0 || certRefs.length !== keyRefs.length) return f;
  const [pairs, caPem, ticketText] = await Promise.all([
    Promise.all(certRefs.map((c, i) => checkPair(c, keyRefs[i] ?? c, f))),
    caRef ? readOrReport(caRef, 'client CA file', f) : undefined,
    ticketRef ? readOrReport(ticketRef, 'session ticket key file', f) : undefined,
  ]);
  let caCount = 0;
  if (caRef && caPem) {
    const parsed = parsePemCertificates(caPem);
    if ('problem' in parsed) f.issues.push({ path: caRef.path, file: caRef.file, message: `client CA file ${caRef.file}: ${parsed.problem}` });
    else caCount = parsed.certificates.length;
  }
  let ticketKeys = 0;
  if (ticketRef && ticketText) {
    const parsed = parseTicketKeys(ticketText.toString('utf8'));
    if ('problem' in parsed) {
      f.issues.push({
        path: ticketRef.path,
        file: ticketRef.file,
        message: `session ticket key file ${ticketRef.file}: ${parsed.problem}`,
        hint: 'one key a line, each made by: openssl rand -base64 48 (the first encrypts new tickets; # starts a comment)',
      });
    } else ticketKeys = parsed.keys.length;
  }
  const [first] = pairs;
  if (f.issues.length > 0 || !first || pairs.some((p) => !p.leaf)) return f;
  // The listener's own loading code: what serve and a reload run.
  try {
    await loadListenerTls(listener);
  } catch (err) {
    f.issues.push({ path: formatConfigPath(['listeners', index, 'tls']), file: first.certRef.file, message: errText(err) });
    return f;
  }
  for (const { certRef, keyRef, leaf, chainLength, key } of pairs) {
    if (!leaf) continue;
    const chain = chainLength > 1 ? ` + ${chainLength - 1} chain certificate${chainLength > 2 ? 's' : ''}` : '';
    const names = pairs.length > 1 ? ` for ${certificateNames(leaf).join(', ') || 'no DNS name'}` : '';
    f.checked.push({ path: certRef.path, file: certRef.file, detail: `certificate ${commonName(leaf)}${chain}${names}, valid until ${validUntil(leaf)}` });
    f.checked.push({ path: keyRef.path, file: keyRef.file, detail: `private key (${key?.asymmetricKeyType ?? 'unknown type'}) matching the certificate; TLS context built` });
  }
  if (caRef) f.checked.push({ path: caRef.path, file: caRef.file, detail: `${caCount} client CA certificate${caCount === 1 ? '' : 's'}` });
  if (ticketRef) {
    f.checked.push({
      path: ticketRef.path,
      file: ticketRef.file,
      detail: `${ticketKeys} session ticket key${ticketKeys === 1 ? '' : 's'}${ticketKeys > 1 ? ' (the first encrypts, all decrypt)' : ''}`,
    });
  }
  return f;
}

const USER_FILE_PROBLEMS: Record<UserFileLineProblem['problem'], string> = {
  'missing-colon': 'no ":" (expected user:hash)',
  'empty-user': 'empty user name',
  'user-whitespace': 'user name with leading or trailing spaces',
  'invalid-hash': 'unsupported or malformed hash',
  'duplicate-user': 'repeats a user of an earlier line',
};

/** A `name:...` per line file: what its parser made of it (count) and the lines it would skip. */
interface LineFileParse {
  readonly count: number;
  readonly problems: ReadonlyArray<{ readonly line: number; readonly text: string }>;
}

/** Reads a line file, parses it with its consumer's own parser, and reports every line it would skip. */
async function checkLineFile(ref: ConfigFileRef, what: string, found: string, hint: string, parse: (text: string) => LineFileParse): Promise<Finding> {
  const f = finding();
  const data = await readOrReport(ref, what, f);
  if (!data) return f;
  const { count, problems } = parse(data.toString('utf8'));
  for (const [i, p] of problems.entries()) {
    f.issues.push({ path: ref.path, file: ref.file, message: `${what} ${ref.file} line ${p.line}: ${p.text}`, ...(i === 0 ? { hint } : {}) });
  }
  if (problems.length === 0) f.checked.push({ path: ref.path, file: ref.file, detail: `${found}, ${count} user${count === 1 ? '' : 's'}` });
  return f;
}

/** The user file, through the user-file verifier's own parser: a line it would skip is a problem. */
function checkUserFile(ref: ConfigFileRef): Promise<Finding> {
  return checkLineFile(ref, 'user file', 'user file', 'one user:hash per line (popgate hash-password; bcrypt $2y$/$2a$/$2b$, {SCRAM-SHA-256}, {PLAIN}); # starts a comment', (text) => {
    const { users, problems } = parseUserFile(text);
    return {
      count: users.size,
      problems: problems.map((p) => ({ line: p.line, text: `${USER_FILE_PROBLEMS[p.problem]}${p.user !== undefined ? ` (user ${p.user})` : ''}` })),
    };
  });
}

/** The mapped-secrets file, through the internal-login resolver's own parser. */
function checkSecretsFile(ref: ConfigFileRef): Promise<Finding> {
  return checkLineFile(ref, 'backend secrets file', 'backend secrets', 'one user:backendUser:password per line; # starts a comment', (text) => {
    const { entries, problems } = parseSecrets(text);
    return { count: entries.size, problems: problems.map((p) => ({ line: p.line, text: p.reason })) };
  });
}

/** A backend link's CA bundle (read per connection by the backend client, as PEM CAs for node:tls). */
async function checkBackendCa(ref: ConfigFileRef): Promise<Finding> {
  const f = finding();
  const data = await readOrReport(ref, 'CA file', f);
  if (!data) return f;
  const parsed = parsePemCertificates(data);
  if ('problem' in parsed) f.issues.push({ path: ref.path, file: ref.file, message: `CA file ${ref.file}: ${parsed.problem}` });
  else f.checked.push({ path: ref.path, file: ref.file, detail: `${parsed.certificates.length} CA certificate${parsed.certificates.length === 1 ? '' : 's'}` });
  return f;
}

/** The replay cache directory, krb5.conf and the keytab, as setupKerberos checks them. */
async function checkKerberos(config: KerberosConfig, refs: readonly ConfigFileRef[], loadBinding: KerberosChecker): Promise<Finding> {
  const f = finding();
  const ref = (kind: ConfigFileKind): ConfigFileRef | undefined => refs.find((r) => r.kind === kind);
  const rcache = ref('rcache-dir');
  if (rcache) {
    const problem = await rcacheDirProblem(rcache.file);
    if (problem === undefined) f.checked.push({ path: rcache.path, file: rcache.file, detail: 'replay cache directory, writable' });
    else {
      f.issues.push({
        path: rcache.path,
        file: rcache.file,
        message: `replay cache directory ${rcache.file}: ${problem}`,
        hint: 'create it, writable by the popgate user (a Kubernetes emptyDir, systemd StateDirectory=)',
      });
    }
  }
  const krb5 = ref('krb5-config');
  if (krb5) {
    // MIT krb5 silently falls back to its defaults when this file is missing.
    const data = await readOrReport(krb5, 'krb5.conf', f);
    if (data) f.checked.push({ path: krb5.path, file: krb5.file, detail: 'krb5.conf, readable' });
  }
  const keytab = ref('keytab');
  if (keytab) {
    const principals = keytabPrincipals(config);
    let checker: { checkKeytab(keytab: string, principals: readonly string[]): Promise<void> };
    try {
      checker = loadBinding(config);
    } catch (err) {
      f.issues.push({ path: 'kerberos', file: keytab.file, message: `cannot check the keytab: ${errText(err)}` });
      return f;
    }
    try {
      await checker.checkKeytab(keytab.file, principals);
      f.checked.push({ path: keytab.path, file: keytab.file, detail: `keytab with keys for ${principals.join(', ')}` });
    } catch (err) {
      const message = errText(err);
      f.issues.push({
        path: keytab.path,
        file: keytab.file,
        message,
        ...(/has no key for/.test(message) ? { hint: 'add a key for every kerberos.servicePrincipals entry (kadmin: ktadd -k FILE PRINCIPAL)' } : {}),
      });
    }
  }
  return f;
}

/** Gives what checks a keytab; the real one loads popgate's Kerberos addon. */
export type KerberosChecker = (config: KerberosConfig) => { checkKeytab(keytab: string, principals: readonly string[]): Promise<void> };

export interface PreflightOptions {
  /** Default: the addon (openKerberosBinding), pointed at the config's krb5.conf. */
  readonly kerberos?: KerberosChecker;
  /** Where PAM service files are looked for; default /etc/pam.d, then /usr/lib/pam.d (vendor files). */
  readonly pamDirs?: readonly string[];
}

const PAM_DIRS = ['/etc/pam.d', '/usr/lib/pam.d'];

/**
 * The pam verifier's service file. Only a warning when missing: Linux-PAM
 * then uses the `other` service, which may be what the admin wants but
 * usually is not (Debian's `other` is the full common-* stack).
 */
async function checkPamService(config: PopgateConfig, dirs: readonly string[]): Promise<{ warnings: ConfigIssue[]; checked: CheckedFile[] }> {
  if (!config.auth.verifiers.includes('pam')) {
    // The section alone does nothing (its defaults serve `verifiers: [pam]` without it).
    const unused: ConfigIssue[] = config.auth.pam
      ? [{ path: 'auth.pam', message: 'configured but not used: auth.verifiers does not include pam', hint: `add pam to auth.verifiers (e.g. verifiers: [${[...config.auth.verifiers, 'pam'].join(', ')}]), or remove auth.pam` }]
      : [];
    return { warnings: unused, checked: [] };
  }
  const service = config.auth.pam?.service ?? PAM_DEFAULTS.service;
  const path = config.auth.pam ? 'auth.pam.service' : 'auth.verifiers';
  for (const dir of dirs) {
    const file = `${dir}/${service}`;
    try {
      if ((await stat(file)).isFile()) return { warnings: [], checked: [{ path, file, detail: `PAM service ${service}` }] };
    } catch {
      // not in this directory
    }
  }
  return {
    warnings: [
      {
        path,
        message: `PAM service file for "${service}" not found in ${dirs.join(' or ')}: Linux-PAM will use the "other" service`,
        hint: `create ${dirs[0] ?? '/etc/pam.d'}/${service} with the auth (and account) lines popgate should use; see docs/pam.md`,
      },
    ],
    checked: [],
  };
}

/**
 * Checks every file `config` names as serve will load it (see the module
 * comment) and reports every problem, each with its config path and file.
 * Never throws for a bad file. Sets KRB5_CONFIG when the config names a
 * krb5.conf, as the gateway does.
 */
export async function preflight(config: PopgateConfig, opts: PreflightOptions = {}): Promise<PreflightReport> {
  const refs = configFiles(config);
  const used = refs.filter((r) => r.unusedBecause === undefined);
  const unused: CheckedFile[] = refs.filter((r) => r.unusedBecause !== undefined).map((r) => ({ path: r.path, file: r.file, detail: `not read: ${r.unusedBecause}` }));
  const jobs: Array<Promise<Finding>> = [];
  config.listeners.forEach((l, i) => {
    const mine = used.filter((r) => r.path.startsWith(`listeners[${i}].`));
    if (mine.length > 0) jobs.push(checkListenerTls(l, i, mine));
  });
  for (const ref of used) {
    if (ref.kind === 'user-file') jobs.push(checkUserFile(ref));
    else if (ref.kind === 'backend-secrets') jobs.push(checkSecretsFile(ref));
    else if (ref.kind === 'backend-ca' || ref.kind === 'ldap-ca') jobs.push(checkBackendCa(ref));
    else if (ref.kind === 'secret' || ref.kind === 'headers') {
      // Read (and headers parsed) by the loader: its problems are in inspectConfig's issues.
      jobs.push(Promise.resolve({ issues: [], checked: [{ path: ref.path, file: ref.file, detail: ref.kind === 'secret' ? 'secret, read with the configuration' : 'headers, read and merged with the configuration' }] }));
    }
  }
  if (config.kerberos) {
    const kerberosRefs = used.filter((r) => r.path.startsWith('kerberos.'));
    jobs.push(checkKerberos(config.kerberos, kerberosRefs, opts.kerberos ?? openKerberosBinding));
  }
  const [findings, pam] = await Promise.all([Promise.all(jobs), checkPamService(config, opts.pamDirs ?? PAM_DIRS)]);
  return {
    issues: sortByConfigOrder(refs, findings.flatMap((x) => x.issues)),
    checked: [...sortByConfigOrder(refs, findings.flatMap((x) => x.checked)), ...pam.checked],
    unused,
    warnings: [...pam.warnings, ...unusedOAuth(config)],
  };
}

/** `auth.oauth` does nothing unless a bearer mechanism is offered (the section is allowed alone, as the example's optional block). */
function unusedOAuth(config: PopgateConfig): ConfigIssue[] {
  if (!config.auth.oauth || config.auth.mechanisms.some((m) => m === 'OAUTHBEARER' || m === 'XOAUTH2')) return [];
  return [
    {
      path: 'auth.oauth',
      message: 'configured but not used: auth.mechanisms lists neither OAUTHBEARER nor XOAUTH2',
      hint: `add them to auth.mechanisms (e.g. mechanisms: [${[...config.auth.mechanisms, 'OAUTHBEARER', 'XOAUTH2'].join(', ')}]), or remove auth.oauth`,
    },
  ];
}

/**
 * `items` in the order of `refs` (configFiles order) by their config path; a
 * path above a file key (`listeners[0].tls`, `kerberos`) sorts with its
 * first file, anything else last. Stable.
 */
export function sortByConfigOrder<T extends { readonly path: string }>(refs: readonly ConfigFileRef[], items: readonly T[]): T[] {
  const rank = (path: string): number => {
    const i = refs.findIndex((r) => r.path === path || r.path.startsWith(`${path}.`));
    return i < 0 ? refs.length : i;
  };
  return items
    .map((item, i) => ({ item, i, rank: rank(item.path) }))
    .sort((a, b) => a.rank - b.rank || a.i - b.i)
    .map(({ item }) => item);
}
