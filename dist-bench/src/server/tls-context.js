import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
/**
 * Holds a listener's current certificate. `load()` reads the files again and
 * swaps the context atomically; a failed load keeps the previous one, so a
 * half-written certificate never takes the listener down.
 */
export class TlsContextStore {
    files;
    context;
    options;
    constructor(files) {
        this.files = files;
    }
    get current() {
        return this.context;
    }
    /** The options of the current context (for tls.Server.setSecureContext). */
    get currentOptions() {
        return this.options;
    }
    async load() {
        const [cert, key] = await Promise.all([readFile(this.files.certFile), readFile(this.files.keyFile)]);
        const options = {
            cert,
            key,
            minVersion: this.files.minVersion,
            ...(this.files.ciphers ? { ciphers: this.files.ciphers } : {}),
        };
        // Throws on a mismatched key or garbage PEM before anything is swapped.
        this.context = createSecureContext(options);
        this.options = options;
    }
}
//# sourceMappingURL=tls-context.js.map