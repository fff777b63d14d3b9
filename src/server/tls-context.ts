import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext, type SecureContextOptions, type SecureVersion } from 'node:tls';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly minVersion: SecureVersion;
  readonly ciphers?: string | undefined;
  /** CAs that sign acceptable client certificates (SASL EXTERNAL). */
  readonly clientCaFile?: string | undefined;
}

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
      ...(this.files.ciphers ? { ciphers: this.files.ciphers } : {}),
    };
    // Throws on a mismatched key or garbage PEM before anything is swapped.
    this.context = createSecureContext(options);
    this.options = options;
  }
}
