/**
 * The configuration schema: the single source of truth for keys, types,
 * bounds and defaults. Durations are parsed to integer milliseconds; every
 * object is strict so misspelt keys are refused instead of ignored.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { duration } from './duration.js';
const MINUTE = 60_000;
/** A hint carried by a custom issue (read by ConfigError formatting). */
function hint(text) {
    return { params: { hint: text } };
}
const NO_CRLF = /^[^\r\n\0]*$/;
const nonEmpty = z.string().min(1, 'must not be empty');
/** A filesystem path (relative paths are resolved against the config file's directory by the loader). */
const filePath = nonEmpty.regex(NO_CRLF, 'must not contain line breaks');
/** One line of text sent to clients: no CR/LF/NUL. */
const protocolText = z.string().max(200, 'must be at most 200 characters').regex(NO_CRLF, 'must not contain line breaks');
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
/** An IPv4/IPv6 literal or a hostname. */
const hostOrAddress = nonEmpty.refine((v) => isIP(v) !== 0 || HOSTNAME.test(v), {
    message: 'must be an IPv4/IPv6 address (without brackets) or a hostname',
});
const port = z.number().int().min(0).max(65535);
// ---------------------------------------------------------------------------
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const logSchema = z
    .strictObject({
    level: z.enum(LOG_LEVELS).default('info'),
})
    .prefault({});
const tlsSchema = z.strictObject({
    certFile: filePath,
    keyFile: filePath,
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    ciphers: nonEmpty.regex(NO_CRLF, 'must not contain line breaks').optional(),
});
export const DEFAULT_GREETING = 'POP3 gateway ready.';
const listenerSchema = z
    .strictObject({
    name: nonEmpty.regex(/^[A-Za-z0-9._-]+$/, 'may only contain letters, digits, ".", "_" and "-"').optional(),
    kind: z.enum(['pop3', 'pop3s']),
    address: hostOrAddress.default('0.0.0.0'),
    port,
    tls: tlsSchema.optional(),
    allowPlaintextAuth: z.boolean().default(false),
    greeting: protocolText.min(1, 'must not be empty').default(DEFAULT_GREETING),
})
    .superRefine((l, ctx) => {
    if (l.kind === 'pop3s' && l.tls === undefined) {
        ctx.addIssue({
            code: 'custom',
            path: ['tls'],
            message: 'a pop3s listener (implicit TLS) requires a tls section with certFile and keyFile',
            ...hint('add tls: { certFile: ..., keyFile: ... }, or use kind: pop3 for a plaintext listener'),
        });
    }
})
    .transform((l) => ({ ...l, name: l.name ?? `${l.kind}-${l.port}` }));
const listenersSchema = z
    .array(listenerSchema)
    .min(1, 'at least one listener is required')
    .superRefine((listeners, ctx) => {
    const names = new Map();
    const endpoints = new Map();
    listeners.forEach((l, i) => {
        const sameName = names.get(l.name);
        if (sameName !== undefined) {
            ctx.addIssue({
                code: 'custom',
                path: [i, 'name'],
                message: `duplicate listener name "${l.name}" (also used by listeners[${sameName}])`,
                ...hint('give each listener a unique name'),
            });
        }
        else {
            names.set(l.name, i);
        }
        // Port 0 asks the OS for a fresh ephemeral port each time: never a clash.
        if (l.port === 0)
            return;
        const key = `${l.address.toLowerCase()}|${l.port}`;
        const sameEndpoint = endpoints.get(key);
        if (sameEndpoint !== undefined) {
            ctx.addIssue({
                code: 'custom',
                path: [i, 'port'],
                message: `address ${l.address} port ${l.port} is already used by listeners[${sameEndpoint}]`,
                ...hint('each listener needs its own (address, port) pair'),
            });
        }
        else {
            endpoints.set(key, i);
        }
    });
});
// ---------------------------------------------------------------------------
function uniqueItems(what) {
    return (items, ctx) => {
        const seen = new Set();
        items.forEach((item, i) => {
            if (seen.has(item)) {
                ctx.addIssue({ code: 'custom', path: [i], message: `duplicate ${what} ${String(item)}` });
            }
            seen.add(item);
        });
    };
}
export const SASL_MECHANISMS = ['PLAIN', 'LOGIN'];
const authSchema = z.strictObject({
    userFile: filePath,
    mechanisms: z
        .array(z.enum(SASL_MECHANISMS))
        .superRefine(uniqueItems('mechanism'))
        .default(['PLAIN', 'LOGIN']),
    maxAttempts: z.number().int().min(1).max(100).default(3),
    failureDelay: duration({ max: MINUTE }).prefault('2s'),
});
// ---------------------------------------------------------------------------
/** Capabilities popgate itself decides; refused in backend.capabilities. */
const GATEWAY_CAPABILITIES = new Set(['STLS', 'SASL', 'USER', 'IMPLEMENTATION', 'CAPA']);
const capability = z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9-]*(?: [\x21-\x7e]+)*$/, 'must be a capability tag optionally followed by arguments, e.g. "TOP" or "EXPIRE 30"')
    .transform((c) => {
    const [tag = '', ...args] = c.split(' ');
    return [tag.toUpperCase(), ...args].join(' ');
})
    .superRefine((c, ctx) => {
    const tag = c.split(' ')[0] ?? '';
    if (GATEWAY_CAPABILITIES.has(tag)) {
        ctx.addIssue({
            code: 'custom',
            message: `${tag} is advertised by popgate itself`,
            ...hint('list only capabilities of the backend mailbox (e.g. TOP, UIDL, RESP-CODES, PIPELINING)'),
        });
    }
});
const timeoutsSchema = z
    .strictObject({
    connect: duration({ min: 1 }).prefault('10s'),
    greeting: duration({ min: 1 }).prefault('10s'),
    login: duration({ min: 1 }).prefault('30s'),
})
    .prefault({});
const BACKEND_LOGIN_METHODS = ['user-pass', 'auth-plain'];
const masterLoginSchema = z.strictObject({
    mode: z.literal('master'),
    method: z.enum(['auth-plain', 'user-separator']).default('auth-plain'),
    user: nonEmpty.regex(/^[^\s]+$/, 'must not contain whitespace'),
    /**
     * The master password. The loader fills it from `passwordFile` when that is
     * given instead (see SECRET_FIELDS); exactly one of the two is allowed.
     */
    password: z.string({
        error: (iss) => (iss.input === undefined ? 'required: set password or passwordFile' : undefined),
    }).min(1, 'must not be empty').regex(NO_CRLF, 'must not contain line breaks'),
    passwordFile: filePath.optional(),
    separator: nonEmpty.regex(/^[^\s]+$/, 'must not contain whitespace').default('*'),
});
const mappedLoginSchema = z.strictObject({
    mode: z.literal('mapped'),
    secretsFile: filePath,
    method: z.enum(BACKEND_LOGIN_METHODS).default('user-pass'),
});
const passthroughLoginSchema = z.strictObject({
    mode: z.literal('passthrough'),
    method: z.enum(BACKEND_LOGIN_METHODS).default('user-pass'),
});
const backendLoginSchema = z.discriminatedUnion('mode', [masterLoginSchema, mappedLoginSchema, passthroughLoginSchema]);
const backendSchema = z.strictObject({
    host: hostOrAddress,
    port: port.min(1).default(110),
    capabilities: z
        .array(capability)
        .superRefine(uniqueItems('capability'))
        .default(['TOP', 'UIDL']),
    timeouts: timeoutsSchema,
    login: backendLoginSchema,
});
// ---------------------------------------------------------------------------
const limitsSchema = z
    .strictObject({
    maxCommandLine: z.number().int().min(255).max(8192).default(255),
    maxSaslLine: z.number().int().min(1024).max(1_048_576).default(16_384),
    maxErrors: z.number().int().min(1).default(10),
    preAuthTimeout: duration({ min: 1_000 }).prefault('60s'),
    idleTimeout: duration({
        min: 10 * MINUTE,
        minHint: 'RFC 1939 section 3 requires an inactivity autologout timer of at least 10 minutes; use 10m or more',
    }).prefault('10m'),
    maxConnections: z.number().int().min(1).default(5000),
})
    .prefault({});
const shutdownSchema = z
    .strictObject({
    drainTimeout: duration().prefault('30s'),
})
    .prefault({});
// ---------------------------------------------------------------------------
export const configSchema = z.strictObject({
    log: logSchema,
    listeners: listenersSchema,
    auth: authSchema,
    backend: backendSchema,
    limits: limitsSchema,
    shutdown: shutdownSchema,
    /** IMPLEMENTATION capability text; "" or null hides it (output: null). */
    implementation: protocolText
        .nullable()
        .default('popgate')
        .transform((v) => (v === null || v.trim() === '' ? null : v)),
});
// ---------------------------------------------------------------------------
// Secrets
/**
 * Secret fields, as config paths with `[]` for any array index. For each, a
 * sibling `<key>File` may name a file holding the value (k8s Secret mounts);
 * the loader reads it into `<key>`. redactConfig replaces these with "***".
 */
export const SECRET_FIELDS = ['backend.login.password'];
/** Strips default/optional/nullable/pipe wrappers down to the structural schema. */
function unwrap(schema) {
    let s = schema;
    for (;;) {
        const def = s._zod.def;
        if (def.innerType)
            s = def.innerType;
        // A transform pipe: the input side describes the accepted structure.
        else if (def.type === 'pipe' && def.in)
            s = def.in;
        else
            return s;
    }
}
function describe(schema, input) {
    const s = unwrap(schema);
    const def = s._zod.def;
    if (def.type === 'union' && def.options) {
        const disc = def.discriminator;
        if (disc !== undefined && input !== null && typeof input === 'object' && !Array.isArray(input)) {
            const value = input[disc];
            const match = def.options.filter((o) => {
                const shape = unwrap(o)._zod.def.shape;
                const lit = shape?.[disc] ? unwrap(shape[disc])._zod.values : undefined;
                return lit?.has(value) ?? false;
            });
            if (match.length > 0)
                return match.flatMap((o) => describe(o, input));
        }
        return def.options.flatMap((o) => describe(o, input));
    }
    return [s];
}
/**
 * The schemas found at `path` in the config schema, using `root` (the raw
 * input) to pick discriminated-union branches. Empty when the path is unknown.
 */
function schemasAt(path, root) {
    let current = describe(configSchema, root);
    let value = root;
    for (const seg of path) {
        const next = [];
        const child = value !== null && typeof value === 'object' ? value[seg] : undefined;
        for (const s of current) {
            const def = s._zod.def;
            if (typeof seg === 'number' && def.type === 'array' && def.element)
                next.push(...describe(def.element, child));
            if (typeof seg === 'string' && def.type === 'object' && def.shape?.[seg])
                next.push(...describe(def.shape[seg], child));
        }
        current = next;
        value = child;
    }
    return current;
}
/** Keys allowed in the object at `path` (used for "did you mean" hints). */
export function allowedKeysAt(path, root) {
    const keys = new Set();
    for (const s of schemasAt(path, root)) {
        const shape = s._zod.def.shape;
        if (s._zod.def.type === 'object' && shape)
            for (const k of Object.keys(shape))
                keys.add(k);
    }
    return [...keys];
}
/** Allowed literal/enum values at `path`, if the field is an enum. */
export function allowedValuesAt(path, root) {
    const values = new Set();
    for (const s of schemasAt(path, root)) {
        const v = s._zod.values;
        if ((s._zod.def.type === 'enum' || s._zod.def.type === 'literal') && v)
            for (const x of v)
                values.add(String(x));
    }
    return [...values];
}
/**
 * Every leaf key of the schema as a dotted path (`listeners[].tls.certFile`,
 * `backend.login.secretsFile`), over all union branches.
 */
export function configLeafPaths() {
    const out = new Set();
    const walk = (schema, prefix) => {
        for (const s of describe(schema, undefined)) {
            const def = s._zod.def;
            if (def.type === 'object' && def.shape) {
                for (const [k, v] of Object.entries(def.shape))
                    walk(v, prefix ? `${prefix}.${k}` : k);
            }
            else if (def.type === 'array' && def.element && unwrap(def.element)._zod.def.type === 'object') {
                walk(def.element, `${prefix}[]`);
            }
            else {
                out.add(prefix);
            }
        }
    };
    walk(configSchema, '');
    return [...out];
}
//# sourceMappingURL=schema.js.map