/**
 * The TLS part of `popgate doctor`, per listener with a certificate: the
 * chain in certFile is complete up to a trusted root (the system and Node CA
 * stores, or `--ca-file`), the certificate covers the names clients use, it
 * is not about to expire, and the key file is not readable by others.
 * Files are read here; the time is the caller's (`now`), so tests need no
 * clock games.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { checkServerIdentity, getCACertificates } from 'node:tls';
import type { ListenerConfig } from '../../config/index.js';
import { parsePemCertificates } from '../preflight.js';
import { certificatePairs } from '../tls-context.js';
import { errText, fail, ok, warn, type DoctorResult } from './types.js';

const DAY_MS = 86_400_000;
/** `!` when the certificate expires within this many days. */
export const EXPIRY_WARN_DAYS = 21;

/** The roots a chain must end at, and how to name them in a result. */
export interface TrustAnchors {
  readonly source: string;
  readonly certificates: readonly X509Certificate[];
}

/** The system store plus Node's bundled roots and NODE_EXTRA_CA_CERTS (what clients on this host trust). */
export function defaultTrustAnchors(): TrustAnchors {
  const pems = new Set([...getCACertificates('system'), ...getCACertificates('default')]);
  const certificates: X509Certificate[] = [];
  for (const pem of pems) {
    try {
      certificates.push(new X509Certificate(pem));
    } catch {
      // A store entry Node cannot parse cannot anchor a chain either.
    }
  }
  return { source: 'the system CA store (with Node\'s bundled roots)', certificates };
}

/** The CA certificates of `file` (`--ca-file`). Rejects when it cannot be read or holds none. */
export async function trustAnchorsFromFile(file: string): Promise<TrustAnchors> {
  const parsed = parsePemCertificates(await readFile(file));
  if ('problem' in parsed) throw new Error(`${file}: ${parsed.problem}`);
  return { source: `the CA file ${file}`, certificates: parsed.certificates };
}

export interface TlsCheckOptions {
  /** Milliseconds since the epoch. */
  readonly now: number;
  readonly trust: TrustAnchors;
  /** The names clients connect to; none: the name check is a warning. */
  readonly hostnames: readonly string[];
  /** Where `hostnames` came from, e.g. `--hostname`. */
  readonly hostnameSource: string;
  readonly warnDays?: number;
}

function cn(cert: X509Certificate, field: 'subject' | 'issuer' = 'subject'): string {
  const text = cert[field];
  const m = /^CN=(.*)$/m.exec(text);
  return m?.[1] !== undefined ? `"${m[1]}"` : `"${text.replace(/\n/g, ', ')}"`;
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** The chain in certFile (leaf first) followed up to a trust anchor. */
export function checkChain(label: string, certificates: readonly X509Certificate[], trust: TrustAnchors): DoctorResult {
  const check = `${label} certificate chain`;
  const leaf = certificates[0];
  if (leaf === undefined) return fail('tls', check, 'no certificate', 'put the PEM certificate, then its intermediates, in certFile');
  const used = new Set<number>([0]);
  let current = leaf;
  const path: string[] = [cn(leaf)];
  for (let step = 0; step <= certificates.length; step++) {
    const anchor = trust.certificates.find((a) => issuedBy(current, a));
    if (anchor !== undefined) {
      const via = path.length > 1 ? ` via ${path.slice(1).join(' -> ')}` : '';
      return ok('tls', check, `${path[0]}${via} verifies against ${trust.source} (root ${cn(anchor)})`);
    }
    if (issuedBy(current, current)) {
      return fail(
        'tls',
        check,
        `the chain ends at the self-signed ${cn(current)}, which is not in ${trust.source}`,
        'use a certificate from a CA your clients trust, or pass --ca-file with the private CA your clients are given',
      );
    }
    const next = certificates.findIndex((c, i) => !used.has(i) && issuedBy(current, c));
    if (next < 0) {
      return fail(
        'tls',
        check,
        `incomplete: the issuer ${cn(current, 'issuer')} of ${cn(current)} is neither in certFile nor in ${trust.source}`,
        'append the intermediate CA certificate(s) to certFile after the leaf (the "full chain" file your CA provides)',
      );
    }
    used.add(next);
    current = certificates[next]!;
    path.push(cn(current));
  }
  return fail('tls', check, 'the chain loops', 'put the leaf first in certFile, then each issuer once');
}

/** The earliest end of validity in certFile: `!` within warnDays, `✗` when past (or not yet valid). */
export function checkExpiry(label: string, certificates: readonly X509Certificate[], now: number, warnDays = EXPIRY_WARN_DAYS): DoctorResult {
  const check = `${label} certificate validity`;
  const leaf = certificates[0];
  if (leaf === undefined) return fail('tls', check, 'no certificate', 'put the PEM certificate in certFile');
  const notBefore = leaf.validFromDate.getTime();
  if (notBefore > now) {
    return fail('tls', check, `${cn(leaf)} is not valid before ${leaf.validFromDate.toISOString()}`, 'check this host\'s clock, or install a certificate valid now');
  }
  let first = leaf;
  for (const c of certificates) if (c.validToDate.getTime() < first.validToDate.getTime()) first = c;
  const end = first.validToDate;
  const which = first === leaf ? cn(leaf) : `${cn(first)} (a chain certificate)`;
  const days = Math.floor((end.getTime() - now) / DAY_MS);
  if (end.getTime() <= now) {
    return fail('tls', check, `${which} expired on ${day(end)}`, 'renew the certificate and replace certFile (serve picks up the new files by itself)');
  }
  if (days < warnDays) {
    return warn('tls', check, `${which} expires on ${day(end)}, in ${days} day${days === 1 ? '' : 's'}`, `renew the certificate before ${day(end)} (warned within ${warnDays} days)`);
  }
  return ok('tls', check, `valid until ${day(end)} (${days} days)`);
}

/** The names the certificate is for (DNS and IP subjectAltNames, else the CN). */
function certNames(leaf: X509Certificate): string[] {
  const san = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:') || s.startsWith('IP Address:'));
  if (san.length > 0) return san.map((s) => s.replace(/^DNS:|^IP Address:/, ''));
  const m = /^CN=(.*)$/m.exec(leaf.subject);
  return m?.[1] !== undefined ? [m[1]] : [];
}

/** Every name in `hostnames` is covered by the certificate (RFC 6125, as clients check it). */
export function checkNames(label: string, leafOrLeaves: X509Certificate | readonly X509Certificate[], hostnames: readonly string[], source: string): DoctorResult {
  const check = `${label} certificate names`;
  // Several certificates (chosen by SNI): a name is covered when one of them covers it.
  const leaves = Array.isArray(leafOrLeaves) ? (leafOrLeaves as readonly X509Certificate[]) : [leafOrLeaves as X509Certificate];
  const names = [...new Set(leaves.flatMap(certNames))];
  if (hostnames.length === 0) {
    return warn(
      'tls',
      check,
      `not checked: no name to check against (the certificate is for ${names.join(', ') || 'no name'})`,
      'run doctor with --hostname NAME, the name your clients connect to',
    );
  }
  const legacies = leaves.map((l) => l.toLegacyObject());
  const missing = hostnames.filter((h) => legacies.every((legacy) => checkServerIdentity(h, legacy) !== undefined));
  if (missing.length > 0) {
    return fail(
      'tls',
      check,
      `does not cover ${missing.join(', ')} (from ${source}); it is for ${names.join(', ') || 'no name'}`,
      `issue a certificate whose subjectAltName includes ${missing.join(', ')}`,
    );
  }
  return ok('tls', check, `covers ${hostnames.join(', ')} (from ${source})`);
}

/** The key file's mode: world-readable fails, group-readable warns. */
export async function checkKeyMode(label: string, keyFile: string): Promise<DoctorResult> {
  const check = `${label} key file permissions`;
  let mode: number;
  try {
    mode = (await stat(keyFile)).mode & 0o777;
  } catch (err) {
    return fail('tls', check, `cannot stat ${keyFile}: ${errText(err)}`, 'make keyFile exist and be readable by the user popgate runs as');
  }
  const octal = `0${mode.toString(8).padStart(3, '0')}`;
  if (mode & 0o007) {
    return fail('tls', check, `${keyFile} is readable by every user (mode ${octal})`, `chmod 600 ${keyFile} (or 640 with a group only popgate is in)`);
  }
  if (mode & 0o070) {
    return warn('tls', check, `${keyFile} is group-readable (mode ${octal})`, `make sure only popgate is in the file's group, or chmod 600 ${keyFile}`);
  }
  return ok('tls', check, `${keyFile} mode ${octal}`);
}

/** Every TLS check of one listener (each of its certificates); none for a listener without a certificate. */
export async function checkListenerTls(listener: ListenerConfig, index: number, opts: TlsCheckOptions): Promise<DoctorResult[]> {
  const tls = listener.tls;
  if (tls === undefined) return [];
  const base = `listeners[${index}] (${listener.name})`;
  const pairs = certificatePairs(tls);
  const out: DoctorResult[] = [];
  const leaves: X509Certificate[] = [];
  for (const [j, pair] of pairs.entries()) {
    const label = pairs.length > 1 ? `${base} certificates[${j}]` : base;
    let certificates: X509Certificate[];
    try {
      const parsed = parsePemCertificates(await readFile(pair.certFile));
      if ('problem' in parsed) {
        out.push(fail('tls', `${label} certificate`, `${pair.certFile}: ${parsed.problem}`, 'put the PEM certificate, then its intermediates, in certFile'), await checkKeyMode(label, pair.keyFile));
        continue;
      }
      certificates = parsed.certificates;
    } catch (err) {
      out.push(fail('tls', `${label} certificate`, `cannot read ${pair.certFile}: ${errText(err)}`, 'make certFile exist and be readable by the user popgate runs as'), await checkKeyMode(label, pair.keyFile));
      continue;
    }
    leaves.push(certificates[0]!);
    out.push(checkChain(label, certificates, opts.trust), checkExpiry(label, certificates, opts.now, opts.warnDays), await checkKeyMode(label, pair.keyFile));
  }
  if (leaves.length === 0) return out;
  const names = checkNames(base, leaves, opts.hostnames, opts.hostnameSource);
  // One certificate: its names right after its chain, as it always read; several: after them all.
  if (pairs.length === 1 && out.length === 3) return [out[0]!, names, out[1]!, out[2]!];
  return [...out, names];
}
