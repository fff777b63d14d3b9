import { TLSSocket } from 'node:tls';
import { spliceSessions } from '../backend/splice.js';
import { errorReply, GatewayError, isGatewayError } from '../errors.js';
import { LineFramer } from '../pop3/framer.js';
import { Pop3Session } from '../pop3/session.js';
const CRLF = '\r\n';
/**
 * Glue between one client socket and the sans-I/O protocol core: feeds lines
 * one at a time, performs the actions the core returns (write, STLS, login,
 * relay, close). All protocol decisions live in Pop3Session.
 */
export class ClientConnection {
    ctx;
    id;
    socket;
    framer = new LineFramer();
    session;
    log;
    baseLog;
    bindings;
    preAuthTimer;
    pendingLogin = new AbortController();
    closed = false;
    relaying = false;
    loggedFailure;
    endAfterLogin = false;
    resolveFinished;
    /** Settles when the connection, and its relayed session if any, is over. */
    finished = new Promise((resolve) => {
        this.resolveFinished = resolve;
    });
    onData = (chunk) => {
        this.framer.push(chunk);
        // Bound memory while a login or TLS handshake is pending: stop reading.
        if (this.session.awaiting && this.framer.bufferedBytes > this.session.lineLimit)
            this.socket.pause();
        this.pump();
    };
    constructor(socket, ctx, logger, id) {
        this.ctx = ctx;
        this.id = id;
        this.socket = socket;
        const tls = socket instanceof TLSSocket;
        this.baseLog = logger;
        this.bindings = {
            cid: id,
            remote: socket.remoteAddress,
            rport: socket.remotePort,
            listener: ctx.listenerName,
            tls: tls ? socket.getProtocol() : false,
        };
        this.log = logger.child(this.bindings);
        this.session = new Pop3Session({ ...ctx.session, tls });
    }
    get remoteAddress() {
        return this.socket.remoteAddress;
    }
    start() {
        this.socket.setNoDelay(true);
        this.socket.on('data', this.onData);
        this.socket.on('error', (err) => this.log.debug({ err: err.message }, 'client socket error'));
        this.socket.on('close', () => this.onSocketClose());
        this.socket.on('end', () => this.onClientEnd());
        this.preAuthTimer = setTimeout(() => this.run(this.session.timeout()), this.ctx.preAuthTimeoutMs);
        this.preAuthTimer.unref();
        this.log.debug('connection accepted');
        this.run(this.session.greet());
    }
    /** Stop a connection that has not reached the relay (gateway shutdown). */
    shutdown() {
        if (this.relaying || this.closed)
            return;
        this.write(errorReply('SHUTTING_DOWN') + CRLF);
        this.close('shutdown');
    }
    pump() {
        while (!this.closed && !this.relaying && !this.session.awaiting) {
            const framed = this.framer.next(this.session.lineLimit);
            if (!framed)
                return;
            if (framed.kind === 'overflow') {
                this.run(this.session.overflow());
            }
            else {
                // maskLine hides PASS arguments and SASL responses; only ever log its output.
                if (this.log.isLevelEnabled('trace'))
                    this.log.trace({ cmd: this.session.maskLine(framed.line) }, 'client command');
                this.run(this.session.feedLine(framed.line));
            }
        }
    }
    run(actions) {
        let out = '';
        for (const action of actions) {
            switch (action.kind) {
                case 'reply':
                    out += action.line + CRLF;
                    break;
                case 'startTls':
                    this.write(out);
                    out = '';
                    this.startTls();
                    break;
                case 'authenticate':
                    this.write(out);
                    out = '';
                    void this.authenticate(action.credentials);
                    break;
                case 'relay':
                    this.write(out);
                    out = '';
                    break;
                case 'close':
                    this.write(out);
                    out = '';
                    // Say why, once: a failed login was already logged with its cause.
                    if (action.reason !== 'QUIT' && action.reason !== this.loggedFailure) {
                        this.log.info({ reason: action.reason, user: this.session.username }, 'closing connection');
                    }
                    this.close(action.reason);
                    break;
            }
        }
        this.write(out);
    }
    /** pino children repeat keys instead of replacing them: rebuild from the base. */
    rebind(changes) {
        Object.assign(this.bindings, changes);
        this.log = this.baseLog.child(this.bindings);
    }
    write(data) {
        if (data && !this.closed)
            this.socket.write(data);
    }
    startTls() {
        const context = this.ctx.secureContext();
        // RFC 2595 / CVE-2011-0411: anything pipelined after STLS was sent in
        // plaintext and must never be executed inside the TLS session.
        const discarded = this.framer.discardBuffered();
        if (discarded > 0)
            this.log.warn({ bytes: discarded }, 'discarded plaintext pipelined after STLS');
        if (!context) {
            this.close('STLS without TLS context');
            return;
        }
        const plain = this.socket;
        plain.pause();
        plain.removeListener('data', this.onData);
        const secure = new TLSSocket(plain, { isServer: true, secureContext: context });
        this.socket = secure;
        secure.once('secure', () => {
            this.rebind({ tls: secure.getProtocol() });
            this.log.debug({ cipher: secure.getCipher().name }, 'STLS handshake complete');
            this.session.tlsStarted();
            secure.on('data', this.onData);
            this.pump();
        });
        secure.on('error', (err) => {
            if (this.relaying)
                return; // the splice reports relay errors
            this.log.info({ err: err.message }, 'TLS handshake failed after STLS');
            this.close('tls error');
        });
        secure.on('close', () => this.onSocketClose());
        secure.on('end', () => this.onClientEnd());
    }
    async authenticate(credentials) {
        this.socket.pause();
        const mechanism = credentials.mechanism;
        const started = process.hrtime.bigint();
        let backend;
        let user = credentials.username;
        let failure;
        try {
            const result = await this.ctx.login.login({
                credentials,
                remoteAddress: this.socket.remoteAddress,
                tls: this.socket instanceof TLSSocket,
                signal: this.pendingLogin.signal,
            });
            backend = result.backend;
            user = result.user;
        }
        catch (err) {
            const gw = isGatewayError(err) ? err : new GatewayError('INTERNAL', String(err), { cause: err });
            failure = gw.code;
            this.loggedFailure = gw.code;
            const ms = Number(process.hrtime.bigint() - started) / 1e6;
            this.log[gw.entry.level === 'debug' ? 'info' : gw.entry.level]({ event: 'login', outcome: 'failure', mechanism, user, code: gw.code, reason: gw.detail, ms }, 'login failed');
            if (gw.code === 'AUTH_FAILED' && this.ctx.failureDelayMs > 0) {
                await new Promise((r) => setTimeout(r, this.ctx.failureDelayMs).unref());
            }
        }
        if (this.closed) {
            // The client left while we were logging in: the backend gets no QUIT.
            backend?.socket.destroy();
            return;
        }
        if (failure !== undefined || !backend) {
            this.run(this.session.loginFailed(failure ?? 'INTERNAL'));
            if (this.endAfterLogin)
                this.close('client closed');
            if (!this.closed) {
                this.socket.resume();
                this.pump();
            }
            return;
        }
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        this.rebind({ user });
        this.log.info({ event: 'login', outcome: 'success', mechanism, backend: `${backend.endpoint.host}:${backend.endpoint.port}`, ms }, 'login succeeded');
        this.startRelay(backend);
    }
    startRelay(backend) {
        this.relaying = true;
        if (this.preAuthTimer)
            clearTimeout(this.preAuthTimer);
        this.socket.removeListener('data', this.onData);
        this.run(this.session.loginSucceeded(backend.loginReply));
        const pending = this.framer.takeBuffered();
        void spliceSessions({
            client: this.socket,
            backend,
            pendingClientBytes: pending,
            idleTimeoutMs: this.ctx.idleTimeoutMs,
            signal: this.ctx.shutdownSignal,
        }).then((result) => {
            this.log.info({
                event: 'session-end',
                endedBy: result.endedBy,
                bytesToBackend: result.bytesToBackend,
                bytesToClient: result.bytesToClient,
                err: result.error?.message,
            }, 'session ended');
            this.resolveFinished();
        });
    }
    close(reason) {
        if (this.closed)
            return;
        this.closed = true;
        this.log.debug({ reason }, 'closing');
        if (this.preAuthTimer)
            clearTimeout(this.preAuthTimer);
        this.pendingLogin.abort();
        this.socket.end();
        // A client that never reads its last reply must not hold the socket.
        setTimeout(() => this.socket.destroy(), 5_000).unref();
    }
    /**
     * The client half-closed before logging in: nothing more can be asked, so
     * close our side (listeners are half-open only for the relay's sake).
     */
    onClientEnd() {
        if (this.relaying || this.session.awaiting === 'login') {
            // A login in flight finishes first; its reply is written, then closed.
            if (!this.relaying)
                this.endAfterLogin = true;
            return;
        }
        this.close('client closed');
    }
    /** The client socket is gone (before the relay; the splice owns it after). */
    onSocketClose() {
        if (this.relaying)
            return;
        this.closed = true;
        if (this.preAuthTimer)
            clearTimeout(this.preAuthTimer);
        this.pendingLogin.abort();
        this.resolveFinished();
    }
}
//# sourceMappingURL=connection.js.map