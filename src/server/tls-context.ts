import { constants as cryptoConstants } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext, type SecureContextOptions, type SecureVersion } from 'node:tls';
import { subscribeToFile } from '../config/file-watch.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly minVersion: SecureVersion;
  /** OpenSSL cipher list (listeners[].tls.ciphers; the schema's default is Mozilla intermediate). */
  readonly ciphers: string;
  /** Key exchange groups, most preferred first (listeners[].tls.ecdhCurve). */
  readonly ecdhCurve: string;
  /** CAs that sign acceptable client certificates (SASL EXTERNAL). */
  readonly clientCaFile?: string | undefined;
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

/**
 * Holds a listener's current certificate. `load()` reads the files again and
 * swaps the context atomically; a failed load keeps the previous one, so a
 * half-written certificate never takes the listener down.
 */
export class TlsContextStore {
  private context: SecureContext | undefined;
  private options: SecureContextOptions | undefined;

  constructor(readonly files: TlsFiles) {}

  get current(): SecureContext | undefined {
    return this.context;
  }

  /** The options of the current context (for tls.Server.setSecureContext). */
  get currentOptions(): SecureContextOptions | undefined {
    return this.options;
  }

  async load(): Promise<void> {
    const [cert, key, ca] = await Promise.all([
      readFile(this.files.certFile),
      readFile(this.files.keyFile),
      this.files.clientCaFile ? readFile(this.files.clientCaFile) : undefined,
    ]);
    const options: SecureContextOptions = {
      cert,
      key,
      ...(ca ? { ca } : {}),
      minVersion: this.files.minVersion,
      ciphers: this.files.ciphers,
      ecdhCurve: this.files.ecdhCurve,
      honorCipherOrder: true,
      secureOptions: LISTENER_SECURE_OPTIONS,
    };
    // Throws on a mismatched key or garbage PEM before anything is swapped.
    this.context = createSecureContext(options);
    this.options = options;
  }

  /**
   * Calls `onChange` (debounced) when the certificate, key or client CA file
   * changes on disk; returns the function that stops watching. See watchFiles.
   */
  watch(onChange: () => void, opts?: WatchOptions): () => void {
    const files = [this.files.certFile, this.files.keyFile, ...(this.files.clientCaFile ? [this.files.clientCaFile] : [])];
    return watchFiles(files, onChange, opts);
  }
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
