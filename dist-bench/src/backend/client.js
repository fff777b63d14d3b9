import { connect } from 'node:net';
import { GatewayError } from '../errors.js';
/** RFC 2449 allows 512 octets for a first response line; real backends overshoot, so be lenient. */
export const MAX_BACKEND_LINE = 2048;
/** How much of a backend's text goes into an error detail (for the log). */
const DETAIL_TEXT_MAX = 200;
const FORBIDDEN = /[\r\n\0]/;
/** Throws BACKEND_PROTOCOL when a credential field could smuggle a second command. */
export function assertSafeCredentials(login) {
    const fields = login.method === 'auth-plain' ? [login.authzid, login.authcid, login.password] : [login.user, login.password];
    if (fields.some((f) => FORBIDDEN.test(f))) {
        throw new GatewayError('BACKEND_PROTOCOL', 'credential contains CR/LF/NUL');
    }
}
/** Printable, truncated backend text for an error detail. */
function quote(text) {
    // eslint-disable-next-line no-control-regex
    const clean = text.replace(/[\x00-\x1f\x7f]/g, '?');
    return clean.length > DETAIL_TEXT_MAX ? `${clean.slice(0, DETAIL_TEXT_MAX)}...` : clean;
}
/** Maps a backend `-ERR` answer to a login to its catalogue code. */
export function classifyLoginFailure(line) {
    const code = /^-ERR\s+\[([^\]]*)\]/i.exec(line)?.[1]?.toUpperCase();
    if (code === 'IN-USE')
        return 'BACKEND_IN_USE';
    if (code === 'SYS/TEMP' || code === 'LOGIN-DELAY')
        return 'BACKEND_LOGIN_TEMP';
    return 'BACKEND_LOGIN_REJECTED';
}
/**
 * Connects to a POP3 backend and logs in with internal credentials:
 * CONNECT → GREETING → LOGIN (AUTH PLAIN, or USER then PASS) → DONE.
 *
 * Each phase has its own deadline (BACKEND_TIMEOUT). Resolves with the socket
 * paused, every listener this function added removed, the backend's `+OK`
 * line and any bytes that followed it. On failure the socket is destroyed
 * (no QUIT: nothing can be marked for deletion yet) and the promise rejects
 * with a GatewayError, or with the signal's reason when aborted.
 */
export function openBackendSession(opts) {
    const { endpoint, timeouts, signal } = opts;
    const where = `${endpoint.host}:${endpoint.port}`;
    // Refuse before connecting: nothing is written, no command can be injected.
    try {
        assertSafeCredentials(opts.login);
    }
    catch (err) {
        return Promise.reject(err);
    }
    if (signal?.aborted)
        return Promise.reject(abortReason(signal));
    // The secret lives in these two slots only until it is written.
    let login = opts.login;
    let authToken;
    return new Promise((resolve, reject) => {
        let step = { phase: 'connect' };
        let buffer = Buffer.alloc(0);
        let timer;
        let settled = false;
        const socket = connect({ host: endpoint.host, port: endpoint.port });
        socket.setNoDelay(true);
        const cleanup = () => {
            if (timer)
                clearTimeout(timer);
            timer = undefined;
            socket.removeListener('connect', onConnect);
            socket.removeListener('data', onData);
            socket.removeListener('error', onError);
            socket.removeListener('end', onEnd);
            socket.removeListener('close', onClose);
            signal?.removeEventListener('abort', onAbort);
            login = undefined;
            authToken = undefined;
        };
        const fail = (err) => {
            if (settled)
                return;
            settled = true;
            cleanup();
            socket.destroy();
            reject(err);
        };
        const succeed = (loginReply, leftover) => {
            if (settled)
                return;
            settled = true;
            step = { phase: 'done' };
            socket.pause();
            cleanup();
            resolve({ socket, loginReply, leftover, endpoint });
        };
        const arm = (ms, phase) => {
            if (timer)
                clearTimeout(timer);
            timer = setTimeout(() => {
                fail(new GatewayError('BACKEND_TIMEOUT', `${where}: no answer within ${ms} ms (${phase})`));
            }, ms);
        };
        const send = (line) => {
            socket.write(`${line}\r\n`);
        };
        const onConnect = () => {
            step = { phase: 'greeting' };
            arm(timeouts.greetingMs, 'greeting');
        };
        const onError = (err) => {
            const errno = err.code ?? err.message;
            const during = step.phase === 'connect' ? 'connect' : `${step.phase} (connection error)`;
            fail(new GatewayError('BACKEND_UNREACHABLE', `${where}: ${errno} during ${during}`, { cause: err }));
        };
        const onEnd = () => {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: connection closed by the backend during ${step.phase}`));
        };
        const onClose = () => {
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: connection closed during ${step.phase}`));
        };
        const onAbort = () => {
            if (signal)
                fail(abortReason(signal));
        };
        /** Handles one complete response line; returns false once the machine has stopped. */
        const onLine = (line) => {
            switch (step.phase) {
                case 'greeting': {
                    if (!/^\+OK(\s|$)/i.test(line)) {
                        fail(new GatewayError('BACKEND_PROTOCOL', `${where}: bad greeting: ${quote(line)}`));
                        return false;
                    }
                    const l = login;
                    if (!l)
                        return false;
                    step =
                        l.method === 'auth-plain' ? { phase: 'login', awaiting: 'auth' } : { phase: 'login', awaiting: 'user' };
                    arm(timeouts.loginMs, 'login');
                    if (l.method === 'auth-plain') {
                        authToken = Buffer.from(`${l.authzid}\0${l.authcid}\0${l.password}`, 'utf8').toString('base64');
                        login = undefined;
                        send(`AUTH PLAIN ${authToken}`);
                    }
                    else {
                        send(`USER ${l.user}`);
                    }
                    return true;
                }
                case 'login':
                    return onLoginLine(line, step.awaiting);
                default:
                    return false;
            }
        };
        const onLoginLine = (line, awaiting) => {
            if (/^\+OK(\s|$)/i.test(line)) {
                if (awaiting === 'user') {
                    const l = login;
                    if (!l || l.method !== 'user-pass')
                        return false;
                    login = undefined;
                    step = { phase: 'login', awaiting: 'pass' };
                    send(`PASS ${l.password}`);
                    return true;
                }
                authToken = undefined;
                const leftover = Buffer.from(buffer);
                buffer = Buffer.alloc(0);
                succeed(line, leftover);
                return false;
            }
            if (/^-ERR(\s|$)/i.test(line)) {
                const what = awaiting === 'user' ? 'USER' : awaiting === 'pass' ? 'PASS' : 'AUTH PLAIN';
                fail(new GatewayError(classifyLoginFailure(line), `${where}: ${what} refused: ${quote(line)}`));
                return false;
            }
            if (awaiting === 'auth' && /^\+(\s|$)/.test(line) && authToken !== undefined) {
                // The backend ignored the initial response and asks for it now.
                step = { phase: 'login', awaiting: 'auth-cont' };
                const token = authToken;
                authToken = undefined;
                send(token);
                return true;
            }
            fail(new GatewayError('BACKEND_PROTOCOL', `${where}: unexpected answer to login: ${quote(line)}`));
            return false;
        };
        const onData = (chunk) => {
            buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
            for (;;) {
                const lf = buffer.indexOf(0x0a);
                if (lf < 0) {
                    if (buffer.length > MAX_BACKEND_LINE) {
                        fail(new GatewayError('BACKEND_PROTOCOL', `${where}: response line longer than ${MAX_BACKEND_LINE} octets`));
                    }
                    return;
                }
                if (lf + 1 > MAX_BACKEND_LINE) {
                    fail(new GatewayError('BACKEND_PROTOCOL', `${where}: response line longer than ${MAX_BACKEND_LINE} octets`));
                    return;
                }
                const end = lf > 0 && buffer[lf - 1] === 0x0d ? lf - 1 : lf;
                const line = buffer.toString('utf8', 0, end);
                buffer = buffer.subarray(lf + 1);
                if (!onLine(line))
                    return;
            }
        };
        socket.once('connect', onConnect);
        socket.on('data', onData);
        socket.on('error', onError);
        socket.on('end', onEnd);
        socket.on('close', onClose);
        signal?.addEventListener('abort', onAbort, { once: true });
        arm(timeouts.connectMs, 'connect');
    });
}
function abortReason(signal) {
    const reason = signal.reason;
    if (reason instanceof Error)
        return reason;
    const err = new Error('backend login aborted');
    err.name = 'AbortError';
    return err;
}
//# sourceMappingURL=client.js.map