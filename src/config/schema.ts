/**
 * The configuration schema: the single source of truth for keys, types,
 * bounds and defaults. Durations are parsed to integer milliseconds; every
 * object is strict so misspelt keys are refused instead of ignored.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { duration } from './duration.js';
import { checkMappingOptions, parsePrincipal } from '../kerberos/principal-mapper.js';
import { KPOP_DEFAULT_PORT } from '../kerberos/kpop-framing.js';

const MINUTE = 60_000;

/** A hint carried by a custom issue (read by ConfigError formatting). */
function hint(text: string): { params: { hint: string } } {
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

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

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

export const LISTENER_KINDS = ['pop3', 'pop3s', 'kpop'] as const;

const listenerSchema = z
  .strictObject({
    name: nonEmpty.regex(/^[A-Za-z0-9._-]+$/, 'may only contain letters, digits, ".", "_" and "-"').optional(),
    kind: z.enum(LISTENER_KINDS),
    address: hostOrAddress.default('0.0.0.0'),
    /** Required for pop3/pop3s; a kpop listener defaults to 1109. */
    port: port.optional(),
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
    if (l.kind === 'kpop' && l.tls !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: 'a kpop listener cannot use TLS (krb5_sendauth starts in plaintext and Kerberos protects the login)',
        ...hint('remove tls from this listener; offer TLS on a separate pop3s or pop3 listener'),
      });
    }
    if (l.kind !== 'kpop' && l.port === undefined) {
      ctx.addIssue({ code: 'custom', path: ['port'], message: `required for a ${l.kind} listener (expected number)` });
    }
  })
  .transform((l) => {
    const p = l.port ?? KPOP_DEFAULT_PORT;
    return { ...l, port: p, name: l.name ?? `${l.kind}-${p}` };
  });

const listenersSchema = z
  .array(listenerSchema)
  .min(1, 'at least one listener is required')
  .superRefine((listeners, ctx) => {
    const names = new Map<string, number>();
    const endpoints = new Map<string, number>();
    listeners.forEach((l, i) => {
      const sameName = names.get(l.name);
      if (sameName !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: `duplicate listener name "${l.name}" (also used by listeners[${sameName}])`,
          ...hint('give each listener a unique name'),
        });
      } else {
        names.set(l.name, i);
      }
      // Port 0 asks the OS for a fresh ephemeral port each time: never a clash.
      if (l.port === 0) return;
      const key = `${l.address.toLowerCase()}|${l.port}`;
      const sameEndpoint = endpoints.get(key);
      if (sameEndpoint !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'port'],
          message: `address ${l.address} port ${l.port} is already used by listeners[${sameEndpoint}]`,
          ...hint('each listener needs its own (address, port) pair'),
        });
      } else {
        endpoints.set(key, i);
      }
    });
  });

// ---------------------------------------------------------------------------

function uniqueItems<T>(what: string) {
  return (items: readonly T[], ctx: z.RefinementCtx): void => {
    const seen = new Set<T>();
    items.forEach((item, i) => {
      if (seen.has(item)) {
        ctx.addIssue({ code: 'custom', path: [i], message: `duplicate ${what} ${String(item)}` });
      }
      seen.add(item);
    });
  };
}

export const SASL_MECHANISMS = ['PLAIN', 'LOGIN', 'GSSAPI'] as const;

/** Password verifiers, tried in the configured order. */
export const PASSWORD_VERIFIERS = ['userFile', 'kerberos'] as const;

const authSchema = z
  .strictObject({
    verifiers: z
      .array(z.enum(PASSWORD_VERIFIERS))
      .min(1, 'at least one verifier is required')
      .superRefine(uniqueItems('verifier'))
      .default(['userFile']),
    /** Required when `verifiers` includes userFile (the default). */
    userFile: filePath.optional(),
    mechanisms: z
      .array(z.enum(SASL_MECHANISMS))
      .superRefine(uniqueItems('mechanism'))
      .default(['PLAIN', 'LOGIN']),
    maxAttempts: z.number().int().min(1).max(100).default(3),
    failureDelay: duration({ max: MINUTE }).prefault('2s'),
  })
  .superRefine((a, ctx) => {
    if (a.verifiers.includes('userFile') && a.userFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['userFile'],
        message: 'required when auth.verifiers includes userFile (the default)',
        ...hint('give the user file, or set auth.verifiers: [kerberos] to check passwords against the Kerberos realm'),
      });
    }
  });

// ---------------------------------------------------------------------------
// Kerberos

/** A principal written in full (`service/host@REALM`); names are case-sensitive. */
const principalName = nonEmpty.refine((v) => parsePrincipal(v) !== undefined, {
  message: 'must be a Kerberos principal with its realm, e.g. pop/mail.example.com@EXAMPLE.COM',
});

const mappingRuleSchema = z.strictObject({
  /**
   * JavaScript regex (no flags) tested against the whole principal; anchor it
   * yourself. Compiled (and refused when invalid or empty) by checkMappingOptions.
   */
  match: z.string(),
  /** Replacement with $1, $<name>, $& (String.prototype.replace). */
  replace: z.string(),
});

const mappingSchema = z
  .strictObject({
    /** Non-empty; checked (with the realm syntax) by checkMappingOptions. */
    realms: z.array(nonEmpty),
    stripRealm: z.boolean().default(true),
    lowercase: z.boolean().default(false),
    map: z.record(z.string(), z.string()).default({}),
    rules: z.array(mappingRuleSchema).default([]),
  })
  // The mapper's own validation (regexes compile, map keys parse, users are
  // POP3 names), reported at config paths: one source of truth with the runtime.
  .superRefine((m, ctx) => {
    for (const problem of checkMappingOptions(m)) {
      ctx.addIssue({ code: 'custom', path: [...problem.path], message: problem.message });
    }
  });

const kdcSchema = z
  .strictObject({
    /** KDC calls in flight at once (each holds a libuv pool thread). */
    maxConcurrent: z.number().int().min(1).max(64).default(4),
    /** popgate's own deadline per KDC call (MIT krb5 has none). */
    timeout: duration({ min: 100, max: 5 * MINUTE }).prefault('10s'),
    /** Calls waiting for a slot; beyond this a check fails at once with [SYS/TEMP]. */
    maxQueue: z.number().int().min(0).max(100_000).default(100),
  })
  .prefault({});

const kerberosSchema = z
  .strictObject({
    keytab: filePath,
    servicePrincipals: z.array(principalName).min(1, 'at least one service principal is required').superRefine(uniqueItems('principal')),
    rcacheDir: filePath,
    krb5Config: filePath.optional(),
    kdc: kdcSchema,
    /** Whose key verifies the KDC's answer to a password check. Default: servicePrincipals[0]. */
    passwordServicePrincipal: principalName.optional(),
    mapping: mappingSchema,
  })
  .transform((k) => ({ ...k, passwordServicePrincipal: k.passwordServicePrincipal ?? k.servicePrincipals[0] ?? '' }));

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

const BACKEND_LOGIN_METHODS = ['user-pass', 'auth-plain'] as const;

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

/** Top-level sections the cross-field checks read. */
const CROSS_CHECKED = new Set<PropertyKey>(['listeners', 'auth', 'kerberos']);

export const configSchema = z
  .strictObject({
    log: logSchema,
    listeners: listenersSchema,
    auth: authSchema,
    /** Required when a kpop listener, GSSAPI or the kerberos verifier is used. */
    kerberos: kerberosSchema.optional(),
    backend: backendSchema,
    limits: limitsSchema,
    shutdown: shutdownSchema,
    /** IMPLEMENTATION capability text; "" or null hides it (output: null). */
    implementation: protocolText
      .nullable()
      .default('popgate')
      .transform((v) => (v === null || v.trim() === '' ? null : v)),
  })
  .superRefine(
    (cfg, ctx) => {
      if (cfg.kerberos !== undefined) return;
      const need = (path: (string | number)[], what: string): void => {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${what} requires the kerberos section`,
          ...hint('add kerberos: { keytab: ..., servicePrincipals: [...], rcacheDir: ..., mapping: { realms: [...] } }'),
        });
      };
      cfg.listeners.forEach((l, i) => {
        if (l.kind === 'kpop') need(['listeners', i, 'kind'], 'a kpop listener');
      });
      cfg.auth.mechanisms.forEach((m, i) => {
        if (m === 'GSSAPI') need(['auth', 'mechanisms', i], 'the GSSAPI mechanism');
      });
      cfg.auth.verifiers.forEach((v, i) => {
        if (v === 'kerberos') need(['auth', 'verifiers', i], 'the kerberos verifier');
      });
    },
    // Also when other sections have problems, so everything is reported at once.
    {
      when: (payload) =>
        !payload.issues.some((issue) => issue.path === undefined || issue.path.length === 0 || CROSS_CHECKED.has(issue.path[0] ?? '')),
    },
  );

/** The parsed configuration (durations in milliseconds, defaults applied). */
export type PopgateConfig = z.output<typeof configSchema>;
/** What a YAML file may contain before defaults and duration parsing. */
export type PopgateConfigInput = z.input<typeof configSchema>;
export type LogConfig = PopgateConfig['log'];
export type ListenerConfig = PopgateConfig['listeners'][number];
export type TlsConfig = NonNullable<ListenerConfig['tls']>;
export type AuthConfig = PopgateConfig['auth'];
export type BackendConfig = PopgateConfig['backend'];
export type BackendLoginConfig = BackendConfig['login'];
export type LimitsConfig = PopgateConfig['limits'];
export type ShutdownConfig = PopgateConfig['shutdown'];
export type KerberosConfig = NonNullable<PopgateConfig['kerberos']>;
export type KerberosMappingConfig = KerberosConfig['mapping'];
export type KdcConfig = KerberosConfig['kdc'];
export type ListenerKind = (typeof LISTENER_KINDS)[number];
export type PasswordVerifierName = (typeof PASSWORD_VERIFIERS)[number];

// ---------------------------------------------------------------------------
// Secrets

/**
 * Secret fields, as config paths with `[]` for any array index. For each, a
 * sibling `<key>File` may name a file holding the value (k8s Secret mounts);
 * the loader reads it into `<key>`. redactConfig replaces these with "***".
 */
export const SECRET_FIELDS: readonly string[] = ['backend.login.password'];

/**
 * Filesystem paths whose keys do not end in `File` (those are paths by
 * convention). The loader resolves relative ones against the config file's
 * directory, like every `*File` key.
 */
export const PATH_FIELDS: readonly string[] = ['kerberos.keytab', 'kerberos.rcacheDir', 'kerberos.krb5Config'];

/**
 * Objects whose keys are data, not config keys (principal names): the
 * loader's key conventions (`*File` paths and secrets) do not apply inside.
 */
export const FREE_FORM_FIELDS: readonly string[] = ['kerberos.mapping.map'];

// ---------------------------------------------------------------------------
// Introspection (error hints, docs drift test)

interface ZodDefLike {
  readonly type: string;
  readonly innerType?: ZodLike;
  readonly in?: ZodLike;
  readonly out?: ZodLike;
  readonly shape?: Record<string, ZodLike>;
  readonly element?: ZodLike;
  readonly options?: readonly ZodLike[];
  readonly discriminator?: string;
}
interface ZodLike {
  readonly _zod: { readonly def: ZodDefLike; readonly values?: ReadonlySet<unknown> };
}

/** Strips default/optional/nullable/pipe wrappers down to the structural schema. */
function unwrap(schema: ZodLike): ZodLike {
  let s = schema;
  for (;;) {
    const def = s._zod.def;
    if (def.innerType) s = def.innerType;
    // A transform pipe: the input side describes the accepted structure.
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
}

function describe(schema: ZodLike, input: unknown): ZodLike[] {
  const s = unwrap(schema);
  const def = s._zod.def;
  if (def.type === 'union' && def.options) {
    const disc = def.discriminator;
    if (disc !== undefined && input !== null && typeof input === 'object' && !Array.isArray(input)) {
      const value = (input as Record<string, unknown>)[disc];
      const match = def.options.filter((o) => {
        const shape = unwrap(o)._zod.def.shape;
        const lit = shape?.[disc] ? unwrap(shape[disc])._zod.values : undefined;
        return lit?.has(value) ?? false;
      });
      if (match.length > 0) return match.flatMap((o) => describe(o, input));
    }
    return def.options.flatMap((o) => describe(o, input));
  }
  return [s];
}

/**
 * The schemas found at `path` in the config schema, using `root` (the raw
 * input) to pick discriminated-union branches. Empty when the path is unknown.
 */
function schemasAt(path: readonly (string | number)[], root: unknown): ZodLike[] {
  let current: ZodLike[] = describe(configSchema as unknown as ZodLike, root);
  let value: unknown = root;
  for (const seg of path) {
    const next: ZodLike[] = [];
    const child: unknown = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[seg] : undefined;
    for (const s of current) {
      const def = s._zod.def;
      if (typeof seg === 'number' && def.type === 'array' && def.element) next.push(...describe(def.element, child));
      if (typeof seg === 'string' && def.type === 'object' && def.shape?.[seg]) next.push(...describe(def.shape[seg], child));
    }
    current = next;
    value = child;
  }
  return current;
}

/** Keys allowed in the object at `path` (used for "did you mean" hints). */
export function allowedKeysAt(path: readonly (string | number)[], root: unknown): string[] {
  const keys = new Set<string>();
  for (const s of schemasAt(path, root)) {
    const shape = s._zod.def.shape;
    if (s._zod.def.type === 'object' && shape) for (const k of Object.keys(shape)) keys.add(k);
  }
  return [...keys];
}

/** Allowed literal/enum values at `path`, if the field is an enum. */
export function allowedValuesAt(path: readonly (string | number)[], root: unknown): string[] {
  const values = new Set<string>();
  for (const s of schemasAt(path, root)) {
    const v = s._zod.values;
    if ((s._zod.def.type === 'enum' || s._zod.def.type === 'literal') && v) for (const x of v) values.add(String(x));
  }
  return [...values];
}

/**
 * Every leaf key of the schema as a dotted path (`listeners[].tls.certFile`,
 * `backend.login.secretsFile`), over all union branches.
 */
export function configLeafPaths(): string[] {
  const out = new Set<string>();
  const walk = (schema: ZodLike, prefix: string): void => {
    for (const s of describe(schema, undefined)) {
      const def = s._zod.def;
      if (def.type === 'object' && def.shape) {
        for (const [k, v] of Object.entries(def.shape)) walk(v, prefix ? `${prefix}.${k}` : k);
      } else if (def.type === 'array' && def.element && unwrap(def.element)._zod.def.type === 'object') {
        walk(def.element, `${prefix}[]`);
      } else {
        out.add(prefix);
      }
    }
  };
  walk(configSchema as unknown as ZodLike, '');
  return [...out];
}
