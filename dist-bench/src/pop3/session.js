/**
 * The POP3 AUTHORIZATION-state protocol machine (RFC 1939, 2449, 2595, 3206,
 * 5034), sans-I/O: lines in, actions out. The host (src/server) owns the
 * socket, the framer, timers, TLS and the login; it reports outcomes back
 * through `tlsStarted`, `loginSucceeded`, `loginFailed`, `timeout`, `overflow`.
 *
 * Once the client is logged in the session is done: the host splices the
 * client to the backend (state RELAY), so TRANSACTION commands never reach
 * this machine.
 */
import { ERRORS, GatewayError, errorReply } from '../errors.js';
import { buildCapabilities, passwordAuthUsable, usableMechanisms } from './capa.js';
import { parseCommand, maskCommandForLog } from './command.js';
import { SASL_CANCEL, SASL_EMPTY_CHALLENGE, decodeBase64Strict, decodePlain, decodeUtf8Strict, hasForbiddenCredentialChars, loginPrompt, } from './sasl.js';
/** Every POP3 keyword this machine knows (RFC 1939, 2449, 2595, 5034). */
export const POP3_VERBS = [
    'CAPA', 'STLS', 'USER', 'PASS', 'AUTH', 'QUIT', 'NOOP',
    'STAT', 'LIST', 'RETR', 'DELE', 'RSET', 'TOP', 'UIDL', 'LAST',
];
const VERB_SET = new Set(POP3_VERBS);
function isVerb(s) {
    return VERB_SET.has(s);
}
const protocolError = (code) => ({ fail: code, count: 'error' });
function reply(line) {
    return { kind: 'reply', line };
}
/** A multi-line reply: status line, items, terminating dot. Items are pre-sanitised. */
function multiLine(head, items) {
    return [reply(head), ...items.map(reply), reply('.')];
}
/** True when a command that takes no argument got none (a trailing space is tolerated). */
function noArgs(cmd) {
    return cmd.args === '';
}
/** The reply to a user name or password that cannot be used, or undefined when it can. */
function credentialProblem(s) {
    if (s === '')
        return 'BAD_SYNTAX';
    if (hasForbiddenCredentialChars(s))
        return 'BAD_CHARACTERS';
    return undefined;
}
const PLAIN_FAILURE = {
    'field-count': 'BAD_SYNTAX',
    'empty-authcid': 'BAD_SYNTAX',
    'empty-password': 'BAD_SYNTAX',
    'nul-in-field': 'BAD_CHARACTERS',
    'bad-characters': 'BAD_CHARACTERS',
    'bad-utf8': 'BAD_CHARACTERS',
};
/** Verbs whose arguments are credentials: a NUL or bad UTF-8 there is a credential problem. */
const CREDENTIAL_VERBS = new Set(['USER', 'PASS', 'AUTH']);
function parseFailureCode(err) {
    if ((err.reason === 'nul' || err.reason === 'bad-utf8') && err.verb !== undefined && CREDENTIAL_VERBS.has(err.verb)) {
        return 'BAD_CHARACTERS';
    }
    return err.reason === 'bad-keyword' ? 'UNKNOWN_COMMAND' : 'BAD_SYNTAX';
}
export class Pop3Session {
    /**
     * Command handlers per state. A known verb missing from the current state's
     * table gets BAD_SEQUENCE (e.g. RETR before login); an unknown keyword gets
     * UNKNOWN_COMMAND. Only AUTHORIZATION reads commands: SASL reads
     * continuation lines, the pending states read nothing (the host does not
     * feed while `awaiting`), RELAY belongs to the splice.
     */
    static DISPATCH = {
        AUTHORIZATION: {
            CAPA: (s, c) => s.onCapa(c),
            STLS: (s, c) => s.onStls(c),
            USER: (s, c) => s.onUser(c),
            PASS: (s, c) => s.onPass(c),
            AUTH: (s, c) => s.onAuth(c),
            QUIT: (s, c) => s.onQuit(c),
            NOOP: (_s, c) => (noArgs(c) ? [reply('+OK')] : protocolError('BAD_SYNTAX')),
        },
        SASL: {},
        TLS_PENDING: {},
        LOGIN_PENDING: {},
        RELAY: {},
        CLOSED: {},
    };
    opts;
    st = 'AUTHORIZATION';
    tlsActive;
    /** Name from USER, waiting for PASS. */
    pendingUser;
    /** Last user name presented by any mechanism (for logs). */
    lastUser;
    sasl;
    errors = 0;
    authFailures = 0;
    constructor(options) {
        for (const key of ['maxAuthAttempts', 'maxErrors', 'maxCommandLine', 'maxSaslLine']) {
            const v = options[key];
            if (!Number.isInteger(v) || v < 1)
                throw new RangeError(`Pop3SessionOptions.${key} must be a positive integer, got ${v}`);
        }
        this.opts = options;
        this.tlsActive = options.tls;
    }
    get state() {
        return this.st;
    }
    /** Set while the host must act before feeding more lines. */
    get awaiting() {
        if (this.st === 'TLS_PENDING')
            return 'tls';
        if (this.st === 'LOGIN_PENDING')
            return 'login';
        return undefined;
    }
    /** The cap (octets incl. CRLF) for the next line the framer delivers. */
    get lineLimit() {
        return this.st === 'SASL' ? this.opts.maxSaslLine : this.opts.maxCommandLine;
    }
    /** Whether the channel is protected by TLS (initially, or after STLS). */
    get tls() {
        return this.tlsActive;
    }
    /** The last user name presented (USER, PLAIN authcid, LOGIN user name), for logs. */
    get username() {
        return this.lastUser;
    }
    /** Protocol errors and failed logins so far (for logs and metrics). */
    get counters() {
        return { errors: this.errors, authFailures: this.authFailures };
    }
    /** A log-safe rendering of the line about to be fed (SASL continuations are fully masked). */
    maskLine(line) {
        return maskCommandForLog(line, this.st === 'SASL' ? 'continuation' : 'command');
    }
    greet() {
        if (this.st === 'CLOSED')
            return [];
        const text = this.opts.greeting.replace(/[\r\n\0]/g, ' ').trim();
        return [reply(text === '' ? '+OK' : `+OK ${text}`)];
    }
    /**
     * One line from the framer (terminator stripped): a command, or the
     * client's response in a SASL exchange. This is the single entry point for
     * client input, and `settle` the single place where refusals are counted.
     */
    feedLine(line) {
        switch (this.st) {
            case 'CLOSED':
                return [];
            case 'SASL':
                return this.settle(this.onSaslResponse(line));
            case 'AUTHORIZATION':
                return this.settle(this.dispatch(line));
            case 'TLS_PENDING':
            case 'LOGIN_PENDING':
            case 'RELAY':
                // A host bug. For TLS_PENDING it would mean plaintext injected after
                // STLS being interpreted: refuse loudly rather than guess.
                throw new GatewayError('INTERNAL', `POP3 line fed in state ${this.st}`);
        }
    }
    /** The framer reported a line over `lineLimit`. */
    overflow() {
        if (this.st === 'CLOSED' || this.st === 'RELAY')
            return [];
        return this.closeWith('LINE_TOO_LONG');
    }
    /** The pre-authentication timer fired. */
    timeout() {
        if (this.st === 'CLOSED' || this.st === 'RELAY')
            return [];
        return this.closeWith('PREAUTH_TIMEOUT');
    }
    /**
     * The TLS handshake after STLS completed. RFC 2595 section 4: the client
     * starts over in AUTHORIZATION and anything learned before (a USER name)
     * is forgotten; it will re-issue CAPA.
     */
    tlsStarted() {
        if (this.st === 'CLOSED')
            return;
        this.expect('TLS_PENDING', 'tlsStarted');
        this.tlsActive = true;
        this.pendingUser = undefined;
        this.st = 'AUTHORIZATION';
    }
    /** The backend accepted the login: forward its `+OK` line, then relay. */
    loginSucceeded(backendReply) {
        if (this.st === 'CLOSED')
            return [];
        this.expect('LOGIN_PENDING', 'loginSucceeded');
        this.st = 'RELAY';
        // One line, and a positive one: a reply with CR/LF would inject lines.
        const line = /^\+OK(?: [^\r\n\0]*)?$/.test(backendReply) ? backendReply : '+OK Logged in';
        return [reply(line), { kind: 'relay' }];
    }
    /**
     * The login failed with a catalogue code. AUTH_FAILED spends one attempt
     * (the last one closes with TOO_MANY_AUTH_ATTEMPTS); other codes close when
     * the catalogue says so (backend trouble) and otherwise let the client retry.
     */
    loginFailed(code) {
        if (this.st === 'CLOSED')
            return [];
        this.expect('LOGIN_PENDING', 'loginFailed');
        this.st = 'AUTHORIZATION';
        return this.settle({ fail: code, count: code === 'AUTH_FAILED' ? 'auth' : 'none' });
    }
    // ---- dispatch -----------------------------------------------------------
    dispatch(line) {
        const cmd = parseCommand(line);
        if (!cmd.ok)
            return protocolError(parseFailureCode(cmd));
        if (!isVerb(cmd.verb))
            return protocolError('UNKNOWN_COMMAND');
        const handler = Pop3Session.DISPATCH[this.st][cmd.verb];
        return handler ? handler(this, cmd) : protocolError('BAD_SEQUENCE');
    }
    /**
     * Turns an outcome into actions, spending the error / attempt budgets. The
     * refusal that exhausts a budget is answered with the budget's own error
     * (TOO_MANY_ERRORS / TOO_MANY_AUTH_ATTEMPTS) and the connection closes, so
     * every command still gets exactly one reply.
     */
    settle(outcome) {
        if (Array.isArray(outcome))
            return outcome;
        const { fail, count } = outcome;
        if (count === 'error' && ++this.errors >= this.opts.maxErrors)
            return this.closeWith('TOO_MANY_ERRORS');
        if (count === 'auth' && ++this.authFailures >= this.opts.maxAuthAttempts) {
            return this.closeWith('TOO_MANY_AUTH_ATTEMPTS');
        }
        if (ERRORS[fail].close)
            return this.closeWith(fail);
        return [reply(errorReply(fail))];
    }
    closeWith(code) {
        this.enterClosed();
        return [reply(errorReply(code)), { kind: 'close', reason: code }];
    }
    enterClosed() {
        this.st = 'CLOSED';
        this.pendingUser = undefined;
        this.sasl = undefined;
    }
    expect(state, method) {
        if (this.st !== state)
            throw new GatewayError('INTERNAL', `Pop3Session.${method}() called in state ${this.st}`);
    }
    get passwordAuthOk() {
        return passwordAuthUsable({ tls: this.tlsActive, allowPlaintextAuth: this.opts.allowPlaintextAuth });
    }
    get mechanisms() {
        return usableMechanisms({ ...this.opts, tls: this.tlsActive });
    }
    /** Emits the credentials for verification and waits for the host's answer. */
    authenticate(credentials) {
        this.pendingUser = undefined;
        this.st = 'LOGIN_PENDING';
        return [{ kind: 'authenticate', credentials }];
    }
    // ---- AUTHORIZATION commands --------------------------------------------
    onCapa(cmd) {
        if (!noArgs(cmd))
            return protocolError('BAD_SYNTAX');
        return multiLine('+OK Capability list follows', buildCapabilities({ ...this.opts, tls: this.tlsActive }));
    }
    onStls(cmd) {
        if (this.tlsActive)
            return protocolError('TLS_ALREADY_ACTIVE');
        if (!this.opts.stlsAvailable)
            return protocolError('TLS_UNAVAILABLE');
        if (!noArgs(cmd))
            return protocolError('BAD_SYNTAX');
        this.pendingUser = undefined;
        this.st = 'TLS_PENDING';
        // The host must discard every byte buffered after this line before the
        // handshake (framer.discardBuffered()): a man in the middle can append
        // plaintext commands behind `STLS\r\n` that would otherwise run inside
        // the protected session (CVE-2011-0411 class).
        return [reply('+OK Begin TLS negotiation'), { kind: 'startTls' }];
    }
    onUser(cmd) {
        if (!this.passwordAuthOk)
            return protocolError('PLAINTEXT_AUTH_DISALLOWED');
        const problem = credentialProblem(cmd.args);
        if (problem)
            return protocolError(problem);
        this.pendingUser = cmd.args;
        this.lastUser = cmd.args;
        return [reply('+OK')];
    }
    onPass(cmd) {
        if (!this.passwordAuthOk)
            return protocolError('PLAINTEXT_AUTH_DISALLOWED');
        const username = this.pendingUser;
        if (username === undefined)
            return protocolError('BAD_SEQUENCE');
        // The password is the whole rest of the line, spaces included.
        const problem = credentialProblem(cmd.args);
        if (problem)
            return protocolError(problem);
        return this.authenticate({ mechanism: 'USER', username, password: cmd.args });
    }
    onQuit(cmd) {
        if (!noArgs(cmd))
            return protocolError('BAD_SYNTAX');
        // No UPDATE state before login: nothing to commit.
        this.enterClosed();
        return [reply('+OK Bye'), { kind: 'close', reason: 'QUIT' }];
    }
    /** `AUTH`, `AUTH mech` or `AUTH mech initial-response` (RFC 5034). */
    onAuth(cmd) {
        if (cmd.args === '')
            return multiLine('+OK Available mechanisms', this.mechanisms);
        const tokens = cmd.args.split(' ');
        if (tokens.length > 2 || tokens.some((t) => t === ''))
            return protocolError('BAD_SYNTAX');
        const mech = (tokens[0] ?? '').toUpperCase();
        const initial = tokens[1];
        if (!isSaslMechanism(mech) || !this.opts.saslMechanisms.includes(mech))
            return protocolError('UNSUPPORTED_MECHANISM');
        if (!this.passwordAuthOk)
            return protocolError('PLAINTEXT_AUTH_DISALLOWED');
        this.pendingUser = undefined;
        if (initial === undefined) {
            this.beginSasl(mech === 'PLAIN' ? { mech: 'PLAIN' } : { mech: 'LOGIN', step: 'username' });
            return [reply(mech === 'PLAIN' ? SASL_EMPTY_CHALLENGE : loginPrompt('username'))];
        }
        const decoded = decodeBase64Strict(initial);
        if (decoded === undefined)
            return protocolError('BAD_BASE64');
        return mech === 'PLAIN' ? this.finishPlain(decoded) : this.loginUsername(decoded);
    }
    // ---- SASL exchange -----------------------------------------------------
    beginSasl(exchange) {
        this.sasl = exchange;
        this.st = 'SASL';
    }
    /** The client's response to a `+ ` challenge. */
    onSaslResponse(line) {
        const exchange = this.sasl;
        // Whatever happens, this step ends the current wait; a next step re-enters SASL.
        this.sasl = undefined;
        this.st = 'AUTHORIZATION';
        if (exchange === undefined)
            throw new GatewayError('INTERNAL', 'SASL state without an exchange');
        // latin1 maps bytes 1:1, so any non-ASCII byte fails the base64 check.
        const text = line.toString('latin1');
        if (text === SASL_CANCEL)
            return protocolError('AUTH_CANCELLED');
        const decoded = decodeBase64Strict(text);
        if (decoded === undefined)
            return protocolError('BAD_BASE64');
        if (exchange.mech === 'PLAIN')
            return this.finishPlain(decoded);
        if (exchange.step === 'username')
            return this.loginUsername(decoded);
        return this.loginPassword(exchange.username, decoded);
    }
    finishPlain(message) {
        const plain = decodePlain(message);
        if (!plain.ok)
            return protocolError(PLAIN_FAILURE[plain.reason]);
        this.lastUser = plain.authcid;
        if (plain.authzid === '') {
            return this.authenticate({ mechanism: 'PLAIN', username: plain.authcid, password: plain.passwd });
        }
        // Acting as another user is not offered to clients: refuse without
        // verifying the password, but spend an attempt as any failed login does.
        if (plain.authzid !== plain.authcid)
            return { fail: 'AUTH_FAILED', count: 'auth' };
        return this.authenticate({ mechanism: 'PLAIN', username: plain.authcid, authzid: plain.authzid, password: plain.passwd });
    }
    loginUsername(raw) {
        const username = decodeUtf8Strict(raw);
        if (username === undefined)
            return protocolError('BAD_CHARACTERS');
        const problem = credentialProblem(username);
        if (problem)
            return protocolError(problem);
        this.lastUser = username;
        this.beginSasl({ mech: 'LOGIN', step: 'password', username });
        return [reply(loginPrompt('password'))];
    }
    loginPassword(username, raw) {
        const password = decodeUtf8Strict(raw);
        if (password === undefined)
            return protocolError('BAD_CHARACTERS');
        const problem = credentialProblem(password);
        if (problem)
            return protocolError(problem);
        return this.authenticate({ mechanism: 'LOGIN', username, password });
    }
}
function isSaslMechanism(s) {
    return s === 'PLAIN' || s === 'LOGIN';
}
//# sourceMappingURL=session.js.map