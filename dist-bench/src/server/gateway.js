import { createServer as createNetServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { once } from 'node:events';
import { createUserFileVerifier } from '../auth/index.js';
import { createInternalLoginResolver } from '../backend/index.js';
import { errorReply } from '../errors.js';
import { ClientConnection } from './connection.js';
import { createLoginService } from './login-service.js';
import { TlsContextStore } from './tls-context.js';
/**
 * The running gateway: listeners, live connections, and the shared services
 * (verifier, internal-login resolver) they use. Owns start, reload and drain.
 */
export class Gateway {
    config;
    log;
    verifier;
    resolver;
    login;
    listeners = [];
    connections = new Set();
    shutdown = new AbortController();
    nextId = 0;
    openSockets = 0;
    stopping;
    constructor(config, log, verifier, resolver, login) {
        this.config = config;
        this.log = log;
        this.verifier = verifier;
        this.resolver = resolver;
        this.login = login;
    }
    static async start(config, log) {
        const verifier = await createUserFileVerifier({ path: config.auth.userFile, logger: log });
        let resolver;
        try {
            resolver = await createInternalLoginResolver(config.backend.login, log);
        }
        catch (err) {
            verifier.close();
            throw err;
        }
        const login = createLoginService({
            verifier,
            resolver,
            endpoint: { host: config.backend.host, port: config.backend.port },
            timeouts: {
                connectMs: config.backend.timeouts.connect,
                greetingMs: config.backend.timeouts.greeting,
                loginMs: config.backend.timeouts.login,
            },
        });
        const gateway = new Gateway(config, log, verifier, resolver, login);
        try {
            for (const listener of config.listeners)
                await gateway.listen(listener);
        }
        catch (err) {
            await gateway.stop(0);
            throw err;
        }
        return gateway;
    }
    get bound() {
        return this.listeners.map((l) => {
            const addr = l.server.address();
            const port = addr && typeof addr === 'object' ? addr.port : l.config.port;
            return { name: l.name, kind: l.config.kind, address: l.config.address, port };
        });
    }
    get activeConnections() {
        return this.connections.size;
    }
    async listen(config) {
        const name = config.name;
        let tls;
        if (config.tls) {
            tls = new TlsContextStore({
                certFile: config.tls.certFile,
                keyFile: config.tls.keyFile,
                minVersion: config.tls.minVersion,
                ciphers: config.tls.ciphers,
            });
            await tls.load();
        }
        const log = this.log.child({ listener: name });
        let server;
        if (config.kind === 'pop3s') {
            const store = tls;
            const tlsServer = createTlsServer({
                ...store.currentOptions,
                // A client may send QUIT and FIN at once; it must still read the backend's +OK.
                allowHalfOpen: true,
                handshakeTimeout: this.config.limits.preAuthTimeout
            });
            tlsServer.on('secureConnection', (socket) => this.accept(socket, runtime));
            // Admission happens on the raw TCP socket so the limit holds during handshakes.
            tlsServer.on('connection', (socket) => this.admit(socket, runtime));
            tlsServer.on('tlsClientError', (err, socket) => log.info({ remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));
            server = tlsServer;
        }
        else {
            server = createNetServer({ allowHalfOpen: true }, (socket) => {
                if (this.admit(socket, runtime))
                    this.accept(socket, runtime);
            });
        }
        server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
        const runtime = { config, name, server, tls };
        server.listen({ host: config.address, port: config.port });
        await Promise.race([
            once(server, 'listening'),
            once(server, 'error').then(([err]) => {
                throw new Error(`listener ${name}: cannot listen on ${config.address}:${config.port}: ${err.message}`);
            }),
        ]);
        this.listeners.push(runtime);
        const bound = server.address();
        log.info({ kind: config.kind, address: config.address, port: bound && typeof bound === 'object' ? bound.port : config.port }, 'listening');
    }
    /**
     * Count every TCP connection from accept to close, TLS handshakes included,
     * and refuse those over `limits.maxConnections`: with a POP3 reply where the
     * channel is plaintext, by closing where a TLS handshake would come first.
     */
    admit(socket, listener) {
        if (this.stopping) {
            socket.destroy();
            return false;
        }
        if (this.openSockets >= this.config.limits.maxConnections) {
            this.log.warn({ remote: socket.remoteAddress, listener: listener.name, open: this.openSockets }, 'connection limit reached, refusing');
            if (listener.config.kind === 'pop3') {
                socket.end(errorReply('TOO_MANY_CONNECTIONS') + '\r\n');
                setTimeout(() => socket.destroy(), 1_000).unref();
            }
            else {
                socket.destroy();
            }
            return false;
        }
        this.openSockets++;
        socket.once('close', () => this.openSockets--);
        return true;
    }
    accept(socket, listener) {
        if (this.stopping) {
            socket.destroy();
            return;
        }
        const { config } = this;
        const ctx = {
            listenerName: listener.name,
            session: {
                stlsAvailable: listener.config.kind === 'pop3' && listener.tls !== undefined,
                allowPlaintextAuth: listener.config.allowPlaintextAuth,
                saslMechanisms: config.auth.mechanisms,
                greeting: listener.config.greeting,
                implementation: config.implementation || undefined,
                backendCapabilities: config.backend.capabilities,
                maxAuthAttempts: config.auth.maxAttempts,
                maxErrors: config.limits.maxErrors,
                maxCommandLine: config.limits.maxCommandLine,
                maxSaslLine: config.limits.maxSaslLine,
            },
            secureContext: () => listener.tls?.current,
            login: this.login,
            preAuthTimeoutMs: config.limits.preAuthTimeout,
            idleTimeoutMs: config.limits.idleTimeout,
            failureDelayMs: config.auth.failureDelay,
            shutdownSignal: this.shutdown.signal,
        };
        const id = (++this.nextId).toString(36).padStart(6, '0');
        const connection = new ClientConnection(socket, ctx, this.log, id);
        this.connections.add(connection);
        void connection.finished.then(() => this.connections.delete(connection));
        connection.start();
    }
    /**
     * Re-read certificates, the user file and mapped secrets. Each part keeps
     * its previous state if its new files are bad; live sessions are untouched.
     */
    async reload() {
        for (const l of this.listeners) {
            if (!l.tls)
                continue;
            try {
                await l.tls.load();
                if (l.config.kind === 'pop3s' && l.tls.currentOptions)
                    l.server.setSecureContext(l.tls.currentOptions);
                this.log.info({ listener: l.name }, 'TLS certificate reloaded');
            }
            catch (err) {
                this.log.error({ listener: l.name, err: err.message }, 'TLS certificate reload failed; keeping the old one');
            }
        }
        await this.verifier.reload();
        try {
            await this.resolver.reload();
        }
        catch (err) {
            this.log.error({ err: err.message }, 'backend secrets reload failed; keeping the old entries');
        }
    }
    /**
     * Stop accepting, tell unauthenticated clients we are going, let relayed
     * sessions finish for up to `drainMs`, then cut them (without QUIT to the
     * backend, so nothing is deleted).
     */
    stop(drainMs = this.config.shutdown.drainTimeout) {
        this.stopping ??= this.doStop(drainMs);
        return this.stopping;
    }
    async doStop(drainMs) {
        this.log.info({ connections: this.connections.size, drainMs }, 'stopping');
        const closing = this.listeners.map((l) => new Promise((r) => l.server.close(() => r())));
        for (const c of this.connections)
            c.shutdown();
        const drained = Promise.all([...this.connections].map((c) => c.finished));
        let timer;
        const deadline = new Promise((r) => {
            timer = setTimeout(() => r('timeout'), drainMs);
        });
        const outcome = await Promise.race([drained.then(() => 'drained'), deadline]);
        clearTimeout(timer);
        if (outcome === 'timeout') {
            this.log.warn({ connections: this.connections.size }, 'drain deadline reached, closing remaining sessions');
            this.shutdown.abort();
            await Promise.race([drained, new Promise((r) => setTimeout(r, 2_000).unref())]);
        }
        await Promise.all(closing);
        this.verifier.close();
        this.resolver.close();
        this.log.info('stopped');
    }
}
//# sourceMappingURL=gateway.js.map