import { constants as cryptoConstants, createHash, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext, type SecureContextOptions, type SecureVersion, type Server } from 'node:tls';
import { subscribeToFile } from '../config/file-watch.js';
import { certificateNames, planSelection, type CertificateFacts } from './certificate-selection.js';

/** A certificate chain (leaf first) and its private key, PEM files. */
export interface CertificatePair {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsFiles {
  /** The one pair of `listeners[].tls.certFile` / `keyFile` (give either these or `certificates`). */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /**
   * Several pairs (`listeners[].tls.certificates`), chosen per handshake by
   * the client's SNI (certificate-selection.ts); the first is the default.
   */
  readonly certificates?: readonly CertificatePair[] | undefined;
  readonly minVersion: SecureVersion;
  /** OpenSSL cipher list (listeners[].tls.ciphers; the schema's default is Mozilla intermediate). */
  readonly ciphers: string;
  /** Key exchange groups, most preferred first (listeners[].tls.ecdhCurve). */
  readonly ecdhCurve: string;
  /** CAs that sign acceptable client certificates (SASL EXTERNAL). */
  readonly clientCaFile?: string | undefined;
  /** Session-ticket keys (listeners[].tls.ticketKeysFile); none: random keys per load. */
  readonly ticketKeysFile?: string | undefined;
  /**
   * Which sessions may resume here: listeners (in any process) with the same
   * scope and the same client CAs accept each other's tickets. The listener
   * gives its name and client-certificate mode, so a session without a
   * certificate, or one verified by other CAs, never resumes on a listener
   * that requires one.
   */
  readonly sessionScope?: string | undefined;
}

/**
 * OpenSSL options of every listener context. NO_RENEGOTIATION: a TLS 1.2
 * renegotiation request is refused inside OpenSSL (never a second handshake's
 * key exchange and signature for the client); the connection is then closed
 * (TlsHandshaker, ClientConnection). PRIORITIZE_CHACHA: under server cipher
 * preference, a client that lists ChaCha20-Poly1305 first (no AES hardware)
 * still gets it.
 */
export const LISTENER_SECURE_OPTIONS = cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_PRIORITIZE_CHACHA;

/** A ticket key: 16-byte key name, 16-byte HMAC-SHA256 key, 16-byte AES-128-CBC key (the layout of Node's `ticketKeys`). */
export const TICKET_KEY_BYTES = 48;
/** One key a line: 48 bytes are 64 base64 characters, never padded (`openssl rand -base64 48`). */
const TICKET_KEY_LINE = /^[A-Za-z0-9+/]{64}$/;

/** The keys of a ticket key file, the one that encrypts first, or what is wrong with it (never its content). */
export function parseTicketKeys(text: string): { readonly keys: readonly Buffer[] } | { readonly problem: string } {
  const keys: Buffer[] = [];
  const lineOf = new Map<string, number>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!TICKET_KEY_LINE.test(line)) {
      return { problem: `line ${i + 1}: not a key (expected 64 base64 characters, 48 bytes; found ${line.length} characters)` };
    }
    const key = Buffer.from(line, 'base64');
    // The first 16 bytes name the key in every ticket: two keys of one name would shadow each other.
    const name = key.subarray(0, 16).toString('hex');
    const earlier = lineOf.get(name);
    if (earlier !== undefined) return { problem: `line ${i + 1}: repeats the key name of line ${earlier}` };
    lineOf.set(name, i + 1);
    keys.push(key);
  }
  if (keys.length === 0) return { problem: 'no key in it' };
  return { keys };
}

/**
 * Set in a worker process (src/server/workers, `workers` > 1): the ticket
 * keys a listener without a ticketKeysFile uses, made by the primary and the
 * same in every worker, so a session resumes on whichever worker accepts it.
 */
let sharedTicketKeys: readonly Buffer[] | undefined;

export function useSharedTicketKeys(keys: readonly Buffer[] | undefined): void {
  sharedTicketKeys = keys;
}

/** The certificate pairs `files` names, in config order. */
export function certificatePairs(files: Pick<TlsFiles, 'certFile' | 'keyFile' | 'certificates'>): CertificatePair[] {
  if (files.certificates !== undefined) return [...files.certificates];
  return files.certFile !== undefined && files.keyFile !== undefined ? [{ certFile: files.certFile, keyFile: files.keyFile }] : [];
}

/** A certificate and key that cannot be used together; its message names both files. */
export class CertificatePairError extends Error {}

/** The context for a client's SNI name; undefined: the default one (currentOptions). */
export type ContextSelector = (servername: string) => SecureContext | undefined;

/** A ticket key file that cannot be used (unreadable or malformed). */
export class TicketKeysError extends Error {}

/** What a load did with the ticket key file (certificates either load or throw). */
export interface TlsLoadReport {
  /** The file's keys differ from the ones in use before. */
  readonly ticketKeysChanged: boolean;
  /** Why the file was not used at this reload; the previous keys stay. */
  readonly ticketKeysProblem?: string;
}

/**
 * Holds a listener's current certificates and session-ticket keys. With
 * several certificates it also holds one context per group a client's SNI
 * can select (certificate-selection.ts), all with the same settings, client
 * CAs and ticket keys; OpenSSL keeps encrypting and decrypting tickets with
 * the server's own (default) context whichever one a handshake switches to.
 * `load()`
 * reads the files again and swaps the context atomically; a failed load keeps
 * the previous one, so a half-written certificate never takes the listener
 * down. A bad ticket key file at a reload keeps the previous keys (and the
 * new certificate); at the first load it throws TicketKeysError.
 */
export class TlsContextStore {
  private context: SecureContext | undefined;
  private options: SecureContextOptions | undefined;
  private keys: readonly Buffer[] | undefined;
  private selector: ContextSelector | undefined;
  private loaded: readonly { readonly certFile: string; readonly notAfterMs: number }[] = [];

  constructor(readonly files: TlsFiles) {}

  /** The certificates of the current context and their notAfter (ms since the epoch), in config order; none before the first load. */
  get expiries(): readonly { readonly certFile: string; readonly notAfterMs: number }[] {
    return this.loaded;
  }

  /** The certificate pairs, in config order. */
  get pairs(): CertificatePair[] {
    return certificatePairs(this.files);
  }

  /** Whether handshakes choose among several certificates by SNI (a `certificates` list of two or more). */
  get selectsByName(): boolean {
    return this.pairs.length > 1;
  }

  /** The current context for a client's SNI name (see selectsByName); undefined with one certificate. */
  get select(): ContextSelector | undefined {
    return this.selector;
  }

  get current(): SecureContext | undefined {
    return this.context;
  }

  /** The options of the current context (for tls.Server.setSecureContext). */
  get currentOptions(): SecureContextOptions | undefined {
    return this.options;
  }

  /** The session-ticket keys of the current context: the first encrypts, every one decrypts (see useTicketKeys). */
  get ticketKeys(): readonly Buffer[] | undefined {
    return this.keys;
  }

  async load(): Promise<TlsLoadReport> {
    const pairs = this.pairs;
    if (pairs.length === 0) throw new Error('no certificate and key configured');
    const [pems, ca, fileKeys] = await Promise.all([
      Promise.all(pairs.map(async (p) => ({ ...p, cert: await readFile(p.certFile), key: await readFile(p.keyFile) }))),
      this.files.clientCaFile ? readFile(this.files.clientCaFile) : undefined,
      this.readTicketKeys(),
    ]);
    let keys: readonly Buffer[];
    let report: TlsLoadReport;
    if (fileKeys === undefined) {
      // Without a file: fresh random keys per context, as Node makes them, but
      // explicit so that tls.Server.setSecureContext never carries older ones over;
      // in a worker, the primary's keys of the moment (the same in every worker).
      keys = sharedTicketKeys ?? [randomBytes(TICKET_KEY_BYTES)];
      report = { ticketKeysChanged: false };
    } else if (fileKeys instanceof TicketKeysError) {
      if (!this.options || !this.keys || !this.files.ticketKeysFile) throw fileKeys;
      keys = this.keys;
      report = { ticketKeysChanged: false, ticketKeysProblem: fileKeys.message };
    } else {
      keys = fileKeys;
      report = { ticketKeysChanged: this.keys !== undefined && !sameKeys(this.keys, fileKeys) };
    }
    const [firstKey] = keys;
    const base: SecureContextOptions = {
      ...(ca ? { ca } : {}),
      minVersion: this.files.minVersion,
      ciphers: this.files.ciphers,
      ecdhCurve: this.files.ecdhCurve,
      honorCipherOrder: true,
      secureOptions: LISTENER_SECURE_OPTIONS,
      // Encrypts new tickets; useTicketKeys adds the older keys for decryption.
      ...(firstKey ? { ticketKeys: firstKey } : {}),
      sessionIdContext: sessionIdContext(this.files.sessionScope ?? '', ca),
    };
    let options: SecureContextOptions;
    let context: SecureContext;
    let selector: ContextSelector | undefined;
    // Each pair checked alone: OpenSSL takes a key of another type than its certificate without a word
    // (and, with several pairs in one context, drops one it cannot pair).
    const facts = pems.map(checkPair);
    const [single] = pems;
    if (pems.length === 1 && single) {
      options = { ...base, cert: single.cert, key: single.key };
      context = createSecureContext(options);
    } else {
      const plan = planSelection(facts);
      // One context per group: its pairs side by side (one per key type), the same settings otherwise.
      const groupOptions = plan.groups.map((g): SecureContextOptions => {
        const members = pems.filter((_, i) => g.includes(i));
        return { ...base, cert: members.map((p) => p.cert), key: members.map((p) => p.key) };
      });
      const contexts = groupOptions.map((o) => createSecureContext(o));
      const [defaultOptions] = groupOptions;
      const [defaultContext] = contexts;
      if (!defaultOptions || !defaultContext) throw new Error('no default certificate group');
      options = defaultOptions;
      context = defaultContext;
      selector = (servername) => {
        const g = plan.select(servername);
        // The default group: the server's own context (where the ticket key callback sits) stays.
        return g === 0 ? undefined : contexts[g];
      };
    }
    this.context = context;
    this.options = options;
    this.selector = selector;
    this.keys = keys;
    this.loaded = pems.map((p, i) => ({ certFile: p.certFile, notAfterMs: facts[i]?.notAfterMs ?? Number.NaN }));
    return report;
  }

  /** The file's keys, its problem, or undefined without a file. */
  private async readTicketKeys(): Promise<readonly Buffer[] | TicketKeysError | undefined> {
    const file = this.files.ticketKeysFile;
    if (file === undefined) return undefined;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return new TicketKeysError(`${file}: cannot read it (${code ?? (err as Error).message})`);
    }
    const parsed = parseTicketKeys(text);
    return 'problem' in parsed ? new TicketKeysError(`${file}: ${parsed.problem}`) : parsed.keys;
  }

  /**
   * Calls `onChange` (debounced) when a certificate, key, client CA or
   * ticket key file changes on disk; returns the function that stops
   * watching. See watchFiles.
   */
  watch(onChange: () => void, opts?: WatchOptions): () => void {
    const { clientCaFile, ticketKeysFile } = this.files;
    const files = [...this.pairs.flatMap((p) => [p.certFile, p.keyFile]), ...(clientCaFile ? [clientCaFile] : []), ...(ticketKeysFile ? [ticketKeysFile] : [])];
    return watchFiles(files, onChange, opts);
  }
}

/**
 * A pair's own context, then its key matched to its leaf certificate: what
 * selection needs of it, or CertificatePairError naming both files. Nothing
 * is swapped before every pair passes.
 */
function checkPair(p: CertificatePair & { readonly cert: Buffer; readonly key: Buffer }): CertificateFacts & { readonly notAfterMs: number } {
  try {
    createSecureContext({ cert: p.cert, key: p.key });
    const leaf = new X509Certificate(p.cert);
    const key = createPrivateKey(p.key);
    if (!leaf.checkPrivateKey(key)) throw new Error('the key does not match the certificate');
    return { names: certificateNames(leaf), keyType: key.asymmetricKeyType ?? 'unknown', notAfterMs: Date.parse(leaf.validTo) };
  } catch (err) {
    throw new CertificatePairError(`certificate ${p.certFile} / key ${p.keyFile}: ${(err as Error).message.split('\n')[0] ?? ''}`);
  }
}

function sameKeys(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((k, i) => b[i]?.equals(k) === true);
}

/**
 * OpenSSL's session ID context (at most 32 bytes): a session resumes only
 * where it matches. Made from the scope and the client CAs rather than from
 * the command line (Node's default), so replicas started differently still
 * share sessions.
 */
function sessionIdContext(scope: string, ca: Buffer | undefined): string {
  const hash = createHash('sha256').update('popgate listener sessions\0').update(scope).update('\0');
  if (ca) hash.update(ca);
  return hash.digest('hex').slice(0, 32);
}

/**
 * OpenSSL's ticket key callback as Node calls it: `(name, iv, encrypt)` in,
 * `[result, hmacKey, aesKey, name?, iv?]` out. Result 1: use these keys; 2:
 * the ticket is good but was made under an older key, so OpenSSL sends a
 * new one; 0: unknown key, a full handshake.
 */
type TicketKeyCallback = (name: Buffer, iv: Buffer, encrypt: boolean) => [number, Buffer, Buffer, Buffer?, Buffer?];

/** The part of Node's native SecureContext that takes a ticket key callback (undocumented; present since Node 3). */
interface NativeTicketContext {
  enableTicketKeyCallback?: unknown;
  onticketkeycallback?: TicketKeyCallback;
}

function nativeContext(context: SecureContext | undefined): NativeTicketContext | undefined {
  const native: unknown = (context as { context?: unknown } | undefined)?.context;
  return typeof native === 'object' && native !== null ? (native as NativeTicketContext) : undefined;
}

/**
 * Whether this Node lets every key of a ticket key file decrypt. Node's
 * documented API takes one key (`ticketKeys`, setTicketKeys); the native
 * context also has the ticket key callback Node's own tests use. Without it
 * only the first key works: tickets under an older one get a full handshake.
 */
export const ALL_TICKET_KEYS_DECRYPT = typeof nativeContext(createSecureContext({}))?.enableTicketKeyCallback === 'function';

/** The callback: the first key encrypts (random IV), any key decrypts by its name. */
export function ticketKeyCallback(keys: readonly Buffer[]): TicketKeyCallback {
  const parts = keys.map((k) => ({ name: k.subarray(0, 16), hmac: k.subarray(16, 32), aes: k.subarray(32, 48) }));
  const [current] = parts;
  if (!current) throw new Error('ticketKeyCallback: no key');
  return (name, _iv, encrypt) => {
    if (encrypt) return [1, current.hmac, current.aes, current.name, randomBytes(16)];
    const i = parts.findIndex((p) => p.name.equals(name));
    const p = parts[i];
    // Node still wants 16-byte keys with a 0; OpenSSL then ignores them.
    if (!p) return [0, current.hmac, current.aes];
    return [i === 0 ? 1 : 2, p.hmac, p.aes];
  };
}

/**
 * Makes a tls.Server whose context was just set (createServer,
 * setSecureContext) decrypt tickets under every key of `keys`, not only the
 * first, which the context's `ticketKeys` option already encrypts with.
 * Returns false when this Node cannot (ALL_TICKET_KEYS_DECRYPT).
 */
export function useTicketKeys(server: Server, keys: readonly Buffer[]): boolean {
  // One key: the ticketKeys option does it all, through Node's documented path.
  if (keys.length < 2) return true;
  // tls.Server's own setTicketKeys reaches its context the same way.
  const native = nativeContext((server as unknown as { _sharedCreds?: SecureContext })._sharedCreds);
  if (!native || typeof native.enableTicketKeyCallback !== 'function') return false;
  native.onticketkeycallback = ticketKeyCallback(keys);
  (native.enableTicketKeyCallback as () => void).call(native);
  return true;
}

export interface WatchOptions {
  /** How often each file is stat()ed; default 2 s. */
  readonly intervalMs?: number;
  /** Quiet time after the last change before `onChange` runs; default 500 ms. */
  readonly debounceMs?: number;
}

/**
 * Polls `files` (see subscribeToFile: through symlinks, so a Kubernetes
 * Secret's `..data` symlink swap counts as a change) and calls `onChange`
 * once things have been quiet for `debounceMs`: a certificate and its key
 * written one after the other give one call. Only content-related changes
 * count (mtime, ctime, inode, size), never a mere read. The pollers never
 * keep the process alive.
 */
export function watchFiles(files: readonly string[], onChange: () => void, opts: WatchOptions = {}): () => void {
  const interval = opts.intervalMs ?? 2_000;
  const debounce = opts.debounceMs ?? 500;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const listener = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!stopped) onChange();
    }, debounce);
    timer.unref();
  };
  const unsubscribes = [...new Set(files)].map((f) => subscribeToFile(f, listener, interval));
  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const unsubscribe of unsubscribes) unsubscribe();
  };
}
