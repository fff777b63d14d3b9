/**
 * The configuration schema: the single source of truth for keys, types,
 * bounds and defaults. Durations are parsed to integer milliseconds; every
 * object is strict so misspelt keys are refused instead of ignored.
 */
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import { oauthSchema } from './oauth.js';
import { checkHttpUrl, proxySettingSchema } from './http-url.js';
import { duration } from './duration.js';
import { checkMappingOptions, isValidPop3User, parsePrincipal } from '../identity/principal-mapper.js';
import { parseCidr } from '../net/cidr.js';
import { DEFAULT_ECDH_CURVE, INTERMEDIATE_TLS12_CIPHERS } from './tls-profile.js';

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
/** Text that ends up in a POP3 reply line: bounded in octets so the line stays within RFC 2449's 512. */
const protocolText = z
  .string()
  .regex(NO_CRLF, 'must not contain line breaks')
  .refine((s) => Buffer.byteLength(s) <= 200, 'must be at most 200 octets (UTF-8), so the reply line fits in 512');

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** An IPv4/IPv6 literal or a hostname. */
const hostOrAddress = nonEmpty.refine((v) => isIP(v) !== 0 || HOSTNAME.test(v), {
  message: 'must be an IPv4/IPv6 address (without brackets) or a hostname',
});

const port = z.number().int().min(0).max(65535);

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

// ---------------------------------------------------------------------------

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const logSchema = z
  .strictObject({
    level: z.enum(LOG_LEVELS).default('info'),
  })
  .prefault({});

export const CLIENT_CERTIFICATE_MODES = ['none', 'optional', 'required'] as const;
export const CLIENT_CERTIFICATE_IDENTITIES = ['san-email', 'cn'] as const;

/** TLS client certificates on a pop3/pop3s listener (for SASL EXTERNAL and the auth service). */
const clientCertificatesSchema = z
  .strictObject({
    /** none: not asked for; optional: asked for, a client may send none; required: the handshake fails without one. */
    mode: z.enum(CLIENT_CERTIFICATE_MODES).default('none'),
    /** CAs that issue client certificates; required unless mode is none. */
    caFile: filePath.optional(),
    /** Which certificate field names the user for SASL EXTERNAL. */
    identity: z.enum(CLIENT_CERTIFICATE_IDENTITIES).default('san-email'),
    /** alice@example.com -> alice (the part before the last "@"). */
    stripDomain: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    if (c.mode !== 'none' && c.caFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['caFile'],
        message: `required when mode is ${c.mode} (the CAs that issue client certificates)`,
        ...hint('give a PEM bundle of the client CA(s), or set mode: none'),
      });
    }
  });

/** An OpenSSL list this Node's TLS accepts (`option` of createSecureContext), e.g. a cipher or group list. */
function opensslList(option: 'ciphers' | 'ecdhCurve', hintText: string) {
  return nonEmpty.regex(NO_CRLF, 'must not contain line breaks').superRefine((value, ctx) => {
    try {
      createSecureContext({ [option]: value });
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `OpenSSL refuses it: ${(err as Error).message}`, ...hint(hintText) });
    }
  });
}

/** A certificate chain (leaf first) and its private key. */
const certificatePairSchema = z.strictObject({
  certFile: filePath,
  keyFile: filePath,
});

const ONE_CERTIFICATE_FORM = 'give certFile and keyFile for one certificate, or a certificates list of { certFile, keyFile } for several chosen by SNI (docs/sni.md)';

/** A listener's certificate(s) and TLS profile (defaults: Mozilla intermediate, see tls-profile.ts). */
const tlsSchema = z
  .strictObject({
    /** One certificate chain (leaf first); or `certificates`. */
    certFile: filePath.optional(),
    keyFile: filePath.optional(),
    /**
     * Several certificates instead of certFile/keyFile, chosen per handshake by
     * the client's SNI name (RSA and ECDSA side by side); the first is the default.
     */
    certificates: z
      .array(certificatePairSchema)
      .min(1, 'at least one { certFile, keyFile } is required')
      .max(64)
      .superRefine((pairs, ctx) => uniqueItems<string>('certFile')(pairs.map((p) => p.certFile), ctx))
      .optional(),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /** OpenSSL cipher list for TLS 1.2; TLS_* names in it replace the TLS 1.3 suites too. */
    ciphers: opensslList('ciphers', 'an OpenSSL cipher list such as ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256').default(
      INTERMEDIATE_TLS12_CIPHERS,
    ),
    /** Key exchange groups, most preferred first. */
    ecdhCurve: opensslList('ecdhCurve', 'colon-separated group names such as X25519:P-256:P-384').default(DEFAULT_ECDH_CURVE),
    clientCertificates: clientCertificatesSchema.optional(),
    /**
     * Session-ticket keys shared by every process and replica (one base64 48-byte key a line, the
     * first encrypts, all decrypt). Default: random keys per process, renewed with the certificate.
     */
    ticketKeysFile: filePath.optional(),
  })
  .superRefine((t, ctx) => {
    const single = t.certFile !== undefined || t.keyFile !== undefined;
    if (t.certificates !== undefined && single) {
      ctx.addIssue({ code: 'custom', path: ['certificates'], message: 'certificates replaces certFile and keyFile: give one form, not both', ...hint(ONE_CERTIFICATE_FORM) });
    } else if (t.certificates === undefined && !single) {
      ctx.addIssue({ code: 'custom', path: [], message: 'no certificate: certFile and keyFile, or certificates, are required', ...hint(ONE_CERTIFICATE_FORM) });
    } else if (t.certificates === undefined) {
      if (t.certFile === undefined) ctx.addIssue({ code: 'custom', path: ['certFile'], message: 'required with keyFile (expected string)' });
      if (t.keyFile === undefined) ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'required with certFile (expected string)' });
    }
  });

/** An IPv4/IPv6 network (`10.0.0.0/8`, `fd00::/8`) or single address; output is always `address/prefix`. */
const cidr = z.string().transform((value, ctx): string => {
  const parsed = parseCidr(value);
  if (!parsed.ok) {
    ctx.issues.push({ code: 'custom', message: parsed.message, input: undefined, ...(parsed.hint ? hint(parsed.hint) : {}) });
    return z.NEVER;
  }
  return parsed.cidr.text;
});

/** HAProxy PROXY protocol (v1 text and v2 binary) in front of a listener. */
const listenerProxyProtocolSchema = z.strictObject({
  /** Peers allowed to send a PROXY header (the load balancers). */
  trustedNetworks: z.array(cidr).min(1, 'at least one trusted network is required').superRefine(uniqueItems('network')),
  /** true: a trusted peer must send a header; false: it may (health checks connect without one). */
  required: z.boolean().default(true),
  /** Time allowed for the header to arrive after connect. */
  timeout: duration({ min: 100, max: 5 * MINUTE }).prefault('5s'),
});

export const DEFAULT_GREETING = 'POP3 gateway ready.';

export const LISTENER_KINDS = ['pop3', 'pop3s', 'kpop'] as const;

/** The port of a kpop listener that names none: the customary KPOP port (`kpop 1109/tcp`). */
export const KPOP_DEFAULT_PORT = 1109;

const listenerSchema = z
  .strictObject({
    name: nonEmpty.regex(/^[A-Za-z0-9._-]+$/, 'may only contain letters, digits, ".", "_" and "-"').optional(),
    kind: z.enum(LISTENER_KINDS),
    address: hostOrAddress.default('0.0.0.0'),
    /** Required for pop3/pop3s; a kpop listener defaults to KPOP_DEFAULT_PORT (1109). */
    port: port.optional(),
    tls: tlsSchema.optional(),
    /** Accept HAProxy PROXY headers from trusted load balancers. */
    proxyProtocol: listenerProxyProtocolSchema.optional(),
    allowPlaintextAuth: z.boolean().default(false),
    greeting: protocolText.min(1, 'must not be empty').default(DEFAULT_GREETING),
  })
  .superRefine((l, ctx) => {
    if (l.kind === 'pop3s' && l.tls === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: 'a pop3s listener (implicit TLS) requires a tls section with certFile and keyFile (or certificates)',
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
      if (l.tls.clientCertificates !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['tls', 'clientCertificates'],
          message: 'a kpop listener cannot ask for TLS client certificates (its clients authenticate with Kerberos tickets)',
          ...hint('move clientCertificates to a pop3s or pop3 listener'),
        });
      }
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

export const SASL_MECHANISMS = ['PLAIN', 'LOGIN', 'GSSAPI', 'CRAM-MD5', 'EXTERNAL', 'OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'] as const;

/** Password verifiers, tried in the configured order. */
export const PASSWORD_VERIFIERS = ['userFile', 'kerberos', 'http', 'pam', 'ldap'] as const;

/** Verifiers that can check APOP and CRAM-MD5 digests (they know plaintext-equivalent secrets or ask a service). */
export const CHALLENGE_VERIFIERS: readonly PasswordVerifierName[] = ['userFile', 'http'];

/** RFC 9110 token: the characters of an HTTP header name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What Node.js accepts in a header value: no control characters except tab. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Headers popgate sends itself on an auth call (the nginx auth_http request)
 * or that frame the HTTP message; a static header must not replace them.
 */
export const RESERVED_AUTH_HEADERS: ReadonlySet<string> = new Set(
  [
    'Auth-Method', 'Auth-User', 'Auth-Pass', 'Auth-Salt', 'Auth-Protocol', 'Auth-Login-Attempt',
    'Auth-SSL', 'Auth-SSL-Protocol', 'Auth-SSL-Cipher', 'Auth-SSL-Verify', 'Auth-SSL-Subject',
    'Auth-SSL-Issuer', 'Auth-SSL-Serial', 'Auth-SSL-Fingerprint', 'Auth-SSL-Cert',
    'Client-IP', 'Client-Host',
    'Proxy-Protocol-Addr', 'Proxy-Protocol-Port', 'Proxy-Protocol-Server-Addr', 'Proxy-Protocol-Server-Port',
    'Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Keep-Alive', 'Upgrade', 'TE', 'Trailer',
  ].map((h) => h.toLowerCase()),
);

/**
 * Why `name: value` cannot be a static auth header, or undefined when it can.
 * Shared with the loader's headersFile parser. Never mentions the value.
 */
export function checkStaticHeader(name: string, value: string): { field: 'name' | 'value'; message: string; hint?: string } | undefined {
  if (!HEADER_NAME.test(name)) {
    return { field: 'name', message: 'header name must be an HTTP token (letters, digits and !#$%&\'*+-.^_`|~; no spaces or ":")' };
  }
  if (RESERVED_AUTH_HEADERS.has(name.toLowerCase())) {
    return { field: 'name', message: `${name} is sent by popgate itself and cannot be set statically`, hint: 'use another name for a shared secret, e.g. X-Auth-Key' };
  }
  if (!HEADER_VALUE.test(value)) {
    return { field: 'value', message: 'header value must not contain line breaks or other control characters' };
  }
  return undefined;
}

const headersSchema = z.record(z.string(), z.string()).superRefine((headers, ctx) => {
  const seen = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    const problem = checkStaticHeader(name, value);
    if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem.message, ...(problem.hint ? hint(problem.hint) : {}) });
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      ctx.addIssue({ code: 'custom', path: [name], message: `the same header as "${other}" (header names are case-insensitive)` });
    } else seen.set(name.toLowerCase(), name);
  }
});

/** An nginx-mail-compatible auth service (the auth_http contract). */
/**
 * The pam verifier (src/auth/pam-verifier.ts): Linux-PAM through the addon,
 * on the libuv pool behind a gate like the KDC's (docs/pam.md).
 */
const pamAuthSchema = z.strictObject({
  /** PAM service name: /etc/pam.d/<service>. */
  service: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a PAM service name (letters, digits, . _ -; a file name in /etc/pam.d)')
    .default('popgate'),
  /** Also run the account stack (pam_acct_mgmt): expired or locked accounts are refused. */
  accountCheck: z.boolean().default(true),
  /** PAM calls holding a pool thread at once (a hung module keeps its thread until it returns). */
  maxConcurrent: z.number().int().min(1).max(64).default(2),
  /** Calls waiting for a slot; beyond this a login fails at once with [SYS/TEMP]. */
  maxQueue: z.number().int().min(0).max(10_000).default(32),
  /** Deadline per check, queueing included; past it the client gets [SYS/TEMP]. */
  timeout: duration({ min: 100, max: 5 * MINUTE }).prefault('10s'),
});

const httpAuthSchema = z.strictObject({
  url: nonEmpty.superRefine((v, ctx) => checkHttpUrl(v, ctx)),
  /** Deadline for one call (each Auth-Wait round is a new call). */
  timeout: duration({ min: 100, max: 5 * MINUTE }).prefault('10s'),
  /** Calls in flight at once; more wait for a slot. */
  maxConcurrent: z.number().int().min(1).max(10_000).default(32),
  /** Calls waiting for a slot; beyond this a login fails at once with [SYS/TEMP]. */
  maxQueue: z.number().int().min(0).max(100_000).default(256),
  /** Auth-Wait / `Auth-Status: WAIT` rounds followed before giving up with [SYS/TEMP]. */
  maxWaits: z.number().int().min(0).max(100).default(3),
  /** Static extra request headers (a shared secret). Merged with headersFile by the loader. */
  headers: headersSchema.default({}),
  /** File of `Name: value` lines merged into headers (read by the loader; see HEADER_MAP_FIELDS). */
  headersFile: filePath.optional(),
  /** null: HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment; "none": never a proxy; else the proxy URL. */
  proxy: proxySettingSchema,
  /** Also ask the service about GSSAPI/KPOP/EXTERNAL logins (routing and internal credentials, no password). */
  authorizeTicketLogins: z.boolean().default(true),
});

/** An ldap:// or ldaps:// URL naming a host and nothing else (no DN, attributes or credentials). */
function checkLdapUrl(value: string, ctx: z.RefinementCtx): void {
  const what = 'must be an ldap:// or ldaps:// URL';
  let url: URL | undefined;
  try {
    if (!/[\s\0]/.test(value)) url = new URL(value);
  } catch {
    // reported below
  }
  if (!url) ctx.addIssue({ code: 'custom', message: what, ...hint('e.g. ldaps://ldap.example.com or ldap://127.0.0.1:389') });
  else if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') ctx.addIssue({ code: 'custom', message: `${what}, not ${url.protocol}` });
  else if (url.hostname === '') ctx.addIssue({ code: 'custom', message: `${what} with a host` });
  else if (url.username !== '' || url.password !== '') ctx.addIssue({ code: 'custom', message: 'must not contain credentials', ...hint('set search.bindDn and search.bindPasswordFile') });
  else if (!/^\/?$/.test(url.pathname) || url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'must name only the server (scheme, host, port)', ...hint('set the base DN as search.base') });
  }
}

/** Dovecot's variables in an LDAP template: %u the user, %n its part before "@", %d the domain after it, %% a "%". */
const TEMPLATE_VARIABLES = /%(.|$)/gs;

function checkTemplateVariables(v: string, ctx: z.RefinementCtx): void {
  for (const m of v.matchAll(TEMPLATE_VARIABLES)) {
    if (!['u', 'n', 'd', '%'].includes(m[1] ?? '')) {
      ctx.addIssue({ code: 'custom', message: `unknown variable ${JSON.stringify(m[0])}: use %u (user), %n (before @), %d (domain) or %% (a %)` });
      return;
    }
  }
}

/** A template naming the user with %u or %n (escaped by the verifier for where it goes); %d and %% allowed. */
const userTemplate = (what: string) =>
  nonEmpty
    .regex(NO_CRLF, 'must not contain line breaks')
    .superRefine(checkTemplateVariables)
    .refine((v) => /%[un]/.test(v.replaceAll('%%', '')), { message: `must contain %u (the user name) or %n (its part before @) in the ${what}` });

/** A filter in parentheses, balanced (the server parses it; this catches typos). */
const ldapFilter = nonEmpty.regex(NO_CRLF, 'must not contain line breaks').superRefine((v, ctx) => {
  let depth = 0;
  for (const c of v.replace(/\\./g, '')) {
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) break;
  }
  if (!v.startsWith('(') || !v.endsWith(')') || depth !== 0) {
    ctx.addIssue({ code: 'custom', message: 'must be an LDAP filter in balanced parentheses', ...hint('e.g. (&(objectClass=person)(uid=%u))') });
  }
});

const ldapAttribute = nonEmpty.regex(/^[A-Za-z][A-Za-z0-9-]*$|^\d+(\.\d+)+$/, 'must be an attribute name (e.g. mail) or OID');

/** Search then bind: the service account finds the user's entry. */
const ldapSearchSchema = z.strictObject({
  bindDn: nonEmpty.regex(NO_CRLF, 'must not contain line breaks'),
  /** The service account's password; the loader fills it from bindPasswordFile (SECRET_FIELDS). */
  bindPassword: z.string({
    error: (iss) => (iss.input === undefined ? 'required: set bindPassword or bindPasswordFile' : undefined),
  }).min(1, 'must not be empty').regex(NO_CRLF, 'must not contain line breaks'),
  bindPasswordFile: filePath.optional(),
  base: nonEmpty.regex(NO_CRLF, 'must not contain line breaks'),
  filter: userTemplate('filter').pipe(ldapFilter),
  scope: z.enum(['base', 'one', 'sub']).default('sub'),
});

/** An LDAP directory (auth.verifiers includes ldap). */
const ldapAuthSchema = z
  .strictObject({
    /** Tried in order; the next one when a server does not answer. */
    urls: z.array(nonEmpty.superRefine((v, ctx) => checkLdapUrl(v, ctx))).min(1, 'at least one URL is required').max(16).superRefine(uniqueItems('URL')),
    /** Upgrade ldap:// connections with StartTLS. */
    startTls: z.boolean().default(false),
    /** PEM CA certificates the server's certificate must chain to; default the system's. */
    caFile: filePath.optional(),
    /** The name the server's certificate must carry, when not the URL's host. */
    serverName: nonEmpty.regex(HOSTNAME, 'must be a DNS name').optional(),
    /** Bound on each LDAP operation. */
    timeout: duration({ min: 100, max: MINUTE }).prefault('5s'),
    /** Bound on connecting to one server (then the next URL). */
    connectTimeout: duration({ min: 100, max: MINUTE }).prefault('3s'),
    /** Idle user-bind connections kept for the next logins (each login rebinds); 0: a connection per login. */
    poolSize: z.number().int().min(0).max(256).default(4),
    /** A kept idle connection is closed after this long (below the directory's own idle limit). */
    poolIdleTimeout: duration({ min: 1_000 }).prefault('60s'),
    /** Bind mode: the user's DN, e.g. uid=%u,ou=people,dc=example,dc=com. */
    userDnTemplate: userTemplate('DN template').optional(),
    /** Search+bind mode. */
    search: ldapSearchSchema.optional(),
    /** Attributes of the user's entry that answer like auth_http (each optional). */
    attributes: z
      .strictObject({
        /** The local user name (backend login and routing). */
        user: ldapAttribute.optional(),
        /** Backend host and port (both or neither). */
        host: ldapAttribute.optional(),
        port: ldapAttribute.optional(),
        /** The backend account, logged into with the client's password. */
        backendUser: ldapAttribute.optional(),
      })
      .prefault({}),
    /** A group (groupOfNames / groupOfUniqueNames) the user's DN must be in. */
    requireGroup: z
      .strictObject({
        dn: nonEmpty.regex(NO_CRLF, 'must not contain line breaks'),
        memberAttribute: ldapAttribute.default('member'),
      })
      .optional(),
    /** A filter the user's entry must match, e.g. (memberOf=cn=mail,ou=groups,dc=example,dc=com). */
    requireFilter: ldapFilter.superRefine(checkTemplateVariables).optional(),
  })
  .superRefine((l, ctx) => {
    if ((l.userDnTemplate === undefined) === (l.search === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'set exactly one of userDnTemplate (bind as the user) and search (search, then bind)',
        ...hint('e.g. userDnTemplate: uid=%u,ou=people,dc=example,dc=com'),
      });
    }
    if ((l.attributes.host === undefined) !== (l.attributes.port === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['attributes'], message: 'host and port go together: set both or neither' });
    }
    l.urls.forEach((u, i) => {
      if (l.startTls && u.startsWith('ldaps:')) {
        ctx.addIssue({ code: 'custom', path: ['urls', i], message: 'startTls is for ldap:// URLs; this one is ldaps:// (TLS already)' });
      }
    });
  });

export const THROTTLE_STORES = ['memory', 'redis'] as const;

/** A redis:// or rediss:// URL naming a host (and at most a database number as its path). */
function checkRedisUrl(value: string, ctx: z.RefinementCtx): void {
  const what = 'must be a redis:// or rediss:// URL';
  let url: URL | undefined;
  try {
    if (!/[\s\0]/.test(value)) url = new URL(value);
  } catch {
    // reported below
  }
  if (!url) ctx.addIssue({ code: 'custom', message: what, ...hint('e.g. redis://127.0.0.1:6379 or rediss://user:password@redis.example.com:6380/0') });
  else if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') ctx.addIssue({ code: 'custom', message: `${what}, not ${url.protocol}` });
  else if (url.hostname === '') ctx.addIssue({ code: 'custom', message: `${what} with a host` });
  else if (!/^\/?\d*$/.test(url.pathname) || url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'the path may only be a database number', ...hint('e.g. redis://127.0.0.1:6379/0') });
  }
}

/**
 * `host:port` of a Redis node or sentinel (an IPv6 host in brackets) split
 * into its parts; undefined when it is not one.
 */
export function parseRedisNode(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) === 0 && !HOSTNAME.test(host)) return undefined;
  return { host, port };
}

const redisNode = nonEmpty.refine((v) => parseRedisNode(v) !== undefined, {
  message: 'must be host:port (an IPv6 address in brackets: [2001:db8::1]:6379)',
});

/** A list of `host:port` Redis endpoints: the client discovers the rest of the topology from them. */
const redisNodes = (what: string) => z.array(redisNode).min(1, `at least one ${what} is required`).max(64).superRefine(uniqueItems(what));

/** Optional ACL credentials: the loader fills password from passwordFile (SECRET_FIELDS). */
const redisCredentials = {
  username: nonEmpty.regex(/^[^\s]+$/, 'must not contain whitespace').optional(),
  password: z.string().min(1, 'must not be empty').regex(NO_CRLF, 'must not contain line breaks').optional(),
  passwordFile: filePath.optional(),
};

/** Redis Sentinel: the sentinels name the current master of `masterName`; popgate follows failovers. */
const throttleRedisSentinelSchema = z.strictObject({
  /** The master's name in the sentinels' configuration (`sentinel monitor <name> ...`). */
  masterName: nonEmpty.regex(/^[^\s]+$/, 'must not contain whitespace'),
  /** Some of the sentinels (host:port); the others are discovered. */
  sentinels: redisNodes('sentinel'),
  /** Credentials on the sentinels themselves (their requirepass / ACL user), when set. */
  ...redisCredentials,
});

/** Redis Cluster: the seed nodes; the client discovers the slots and every other node. */
const throttleRedisClusterSchema = z.strictObject({
  nodes: redisNodes('node'),
});

/** Where the login throttle keeps its counters when they are shared (store: redis). */
const throttleRedisSchema = z
  .strictObject({
    /** One Redis server (credentials, TLS and database in the URL). */
    url: nonEmpty.superRefine((v, ctx) => checkRedisUrl(v, ctx)).optional(),
    sentinel: throttleRedisSentinelSchema.optional(),
    cluster: throttleRedisClusterSchema.optional(),
    /** Credentials on the data nodes (sentinel, cluster; a URL carries its own). */
    ...redisCredentials,
    /** TLS to every node and sentinel (sentinel, cluster; a URL says rediss://). Verified against the system CAs. */
    tls: z.boolean().default(false),
    /** Database number on the master (sentinel; a URL has it as its path; a cluster has only 0). */
    database: z.number().int().min(0).max(1_000_000).optional(),
    /** Prefix of every key popgate writes. */
    keyPrefix: z.string().max(100, 'must be at most 100 characters').regex(NO_CRLF, 'must not contain line breaks').default('popgate:'),
  })
  .superRefine((r, ctx) => {
    const modes = (['url', 'sentinel', 'cluster'] as const).filter((k) => r[k] !== undefined);
    if (modes.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: modes.length === 0 ? 'one of url, sentinel or cluster is required' : `${modes.join(' and ')} are exclusive: give exactly one`,
        ...hint('url: one server; sentinel: { masterName, sentinels: [host:port, ...] }; cluster: { nodes: [host:port, ...] }'),
      });
      return;
    }
    const refuse = (key: 'username' | 'password' | 'passwordFile' | 'database', why: string): void => {
      if (r[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `not used with ${modes[0]}: ${why}` });
    };
    if (r.url !== undefined) {
      for (const key of ['username', 'password', 'passwordFile', 'database'] as const) refuse(key, 'put it in the URL (rediss://user:password@host:port/db)');
      if (r.tls) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'not used with url: write rediss:// for TLS' });
    }
    if (r.cluster !== undefined) {
      refuse('database', 'Redis Cluster has only database 0');
      // The keys' hash tags must be popgate's own braces (see RedisFailureStore).
      if (/[{}]/.test(r.keyPrefix)) ctx.addIssue({ code: 'custom', path: ['keyPrefix'], message: 'must not contain { or } with cluster (popgate puts each key\'s address or user in a {hash tag})' });
    }
  });

/** Brute-force protection (src/auth/throttle/): failures per client address (IPv6 by /64) and per user. */
const throttleSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Delay before answering the Nth consecutive failure; the last value repeats. Replaces failureDelay. */
    delays: z.array(duration({ max: MINUTE })).min(1, 'at least one delay is required').max(100).prefault(['2s', '4s', '8s', '15s']),
    /** Failures of one address or user within `window` that lock it out. */
    maxFailures: z.number().int().min(1).max(100_000).default(10),
    /** A counter is forgotten this long after its latest failure. */
    window: duration({ min: 1_000 }).prefault('15m'),
    /** How long a locked address or user is refused ([LOGIN-DELAY]). */
    lockout: duration({ min: 1_000 }).prefault('15m'),
    /**
     * Failed passwords remembered per user (salted fingerprints, for `window`): a failure repeating one
     * is delayed but not counted (a phone retrying an old password does not lock its owner out). 0: off.
     */
    repeatedPasswords: z.number().int().min(0).max(100).default(5),
    /** Client networks the throttle ignores (auth.failureDelay still applies to them). */
    trustedNetworks: z.array(cidr).superRefine(uniqueItems('network')).default([]),
    store: z.enum(THROTTLE_STORES).default('memory'),
    /** Required when store is redis; refused otherwise. */
    redis: throttleRedisSchema.optional(),
  })
  .superRefine((t, ctx) => {
    if (t.store === 'redis' && t.redis === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['redis'],
        message: 'required when auth.throttle.store is redis',
        ...hint('add redis: { url: redis://127.0.0.1:6379 } (or sentinel: {...}, cluster: {...})'),
      });
    }
    if (t.store !== 'redis' && t.redis !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['redis'],
        message: `configured but not used: auth.throttle.store is ${t.store}`,
        ...hint('set store: redis to share the counters between replicas, or remove auth.throttle.redis'),
      });
    }
  })
  .prefault({});

/**
 * The verified-credentials cache (src/auth/credentials-cache.ts): a login
 * with the same user and password within `ttl` skips the verifier.
 */
const authCacheSchema = z
  .strictObject({
    /** How long a successful password check is remembered; 0 turns the cache off. */
    ttl: duration({ max: 24 * 60 * MINUTE }).prefault('5m'),
    /** How long a definite failure is remembered; 0: failures are always checked. */
    negativeTtl: duration({ max: 60 * MINUTE }).prefault('5s'),
    /** Most entries held; the least recently used one goes first. */
    maxEntries: z.number().int().min(1).max(10_000_000).default(100_000),
  })
  .prefault({});

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
    /** Offer APOP (RFC 1939): a timestamp in the greeting. Needs a challenge-capable verifier. */
    apop: z.boolean().default(false),
    /** Required when `verifiers` includes http; refused otherwise. */
    http: httpAuthSchema.optional(),
    /** Settings of the pam verifier; defaults apply when `verifiers` includes pam and this is absent. */
    pam: pamAuthSchema.optional(),
    /** Required when `verifiers` includes ldap; refused otherwise. */
    ldap: ldapAuthSchema.optional(),
    maxAttempts: z.number().int().min(1).max(100).default(3),
    /** Delay before answering a failed login; the throttle's delays replace it while the throttle is enabled. */
    failureDelay: duration({ max: MINUTE }).prefault('2s'),
    throttle: throttleSchema,
    cache: authCacheSchema,
    /** OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2); required when `mechanisms` lists either. */
    oauth: oauthSchema.optional(),
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
    const usesHttp = a.verifiers.includes('http');
    if (usesHttp && a.http === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['http'],
        message: 'required when auth.verifiers includes http',
        ...hint('add http: { url: http://127.0.0.1:9000/auth } (the nginx auth_http service)'),
      });
    }
    if (!usesHttp && a.http !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['http'],
        message: 'configured but not used: auth.verifiers does not include http',
        ...hint(`add http to auth.verifiers (e.g. verifiers: [${[...a.verifiers, 'http'].join(', ')}]), or remove auth.http`),
      });
    }
    const usesLdap = a.verifiers.includes('ldap');
    if (usesLdap && a.ldap === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ldap'],
        message: 'required when auth.verifiers includes ldap',
        ...hint('add ldap: { urls: [ldaps://ldap.example.com], userDnTemplate: "uid=%u,ou=people,dc=example,dc=com" }'),
      });
    }
    if (!usesLdap && a.ldap !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ldap'],
        message: 'configured but not used: auth.verifiers does not include ldap',
        ...hint(`add ldap to auth.verifiers (e.g. verifiers: [${[...a.verifiers, 'ldap'].join(', ')}]), or remove auth.ldap`),
      });
    }
    const canChallenge = a.verifiers.some((v) => CHALLENGE_VERIFIERS.includes(v));
    const challengeHint = hint('add userFile or http to auth.verifiers: a Kerberos KDC cannot check APOP/CRAM-MD5 digests');
    if (a.apop && !canChallenge) {
      ctx.addIssue({
        code: 'custom',
        path: ['apop'],
        message: `APOP needs a verifier that can check challenges (userFile or http); auth.verifiers is [${a.verifiers.join(', ')}]`,
        ...challengeHint,
      });
    }
    a.mechanisms.forEach((m, i) => {
      if ((m === 'OAUTHBEARER' || m === 'XOAUTH2') && a.oauth === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['mechanisms', i],
          message: `${m} needs auth.oauth (the token issuer and audience popgate checks tokens against)`,
          ...hint('add oauth: { issuer: https://login.example.com/realms/mail, audience: popgate }, or remove the mechanism'),
        });
      }
      if ((m === 'SCRAM-SHA-256' || m === 'SCRAM-SHA-256-PLUS') && !a.verifiers.includes('userFile')) {
        ctx.addIssue({
          code: 'custom',
          path: ['mechanisms', i],
          message: `${m} needs the userFile verifier: only the user file holds SCRAM keys; auth.verifiers is [${a.verifiers.join(', ')}]`,
          ...hint('add userFile to auth.verifiers with {SCRAM-SHA-256} entries (popgate hash-password --algorithm scram-sha-256), or remove the mechanism'),
        });
      }
      if (m === 'CRAM-MD5' && !canChallenge) {
        ctx.addIssue({
          code: 'custom',
          path: ['mechanisms', i],
          message: `CRAM-MD5 needs a verifier that can check challenges (userFile or http); auth.verifiers is [${a.verifiers.join(', ')}]`,
          ...challengeHint,
        });
      }
    });
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

const ticketChecksSchema = z
  .strictObject({
    /**
     * Ticket checks (KPOP AP-REQ, GSSAPI accept steps) in flight at once; the
     * rest wait their turn. Default: one per CPU core (at most 8): they are
     * pure CPU, and more only crowds the event loop off the cores.
     */
    maxConcurrent: z.number().int().min(1).max(64).optional(),
    /** Checks waiting for a slot; beyond this a login fails at once with [SYS/TEMP]. */
    maxQueue: z.number().int().min(0).max(100_000).default(10_000),
  })
  .prefault({});

const kerberosSchema = z
  .strictObject({
    keytab: filePath,
    servicePrincipals: z.array(principalName).min(1, 'at least one service principal is required').superRefine(uniqueItems('principal')),
    rcacheDir: filePath,
    krb5Config: filePath.optional(),
    kdc: kdcSchema,
    ticketChecks: ticketChecksSchema,
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
  .max(200, 'must be at most 200 characters (a CAPA line is limited to 512 octets)')
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

export const BACKEND_TLS_MODES = ['none', 'starttls', 'implicit'] as const;
export const BACKEND_PROXY_PROTOCOLS = ['none', 'v1', 'v2'] as const;

/** The backend port used when none is given: 995 for implicit TLS (RFC 8314), else 110. */
export function defaultBackendPort(tlsMode: (typeof BACKEND_TLS_MODES)[number]): number {
  return tlsMode === 'implicit' ? 995 : 110;
}

/** How popgate protects its link to a backend (output matches BackendTls in src/backend/types.ts). */
const backendTlsSchema = z.strictObject({
  /** none: plaintext; starttls: STLS after the greeting (RFC 2595); implicit: TLS first (RFC 8314). */
  mode: z.enum(BACKEND_TLS_MODES).default('none'),
  /** Trusted CAs (PEM); the system store when absent. */
  caFile: filePath.optional(),
  /** Name checked in the certificate and sent as SNI; default: the backend host. */
  serverName: hostOrAddress.optional(),
  /** false: no certificate or name check (an explicit opt-out the runtime logs loudly). */
  verify: z.boolean().default(true),
});

const backendSchema = z
  .strictObject({
    host: hostOrAddress,
    /** Default: 110, or 995 when tls.mode is implicit. */
    port: port.min(1).optional(),
    tls: backendTlsSchema.prefault({}),
    proxyProtocol: z.enum(BACKEND_PROXY_PROTOCOLS).default('none'),
    xclient: z.boolean().default(true),
    /** USER/PASS logins: auto sends USER and PASS in one write to a backend whose CAPA lists PIPELINING; off never asks CAPA. */
    pipelining: z.enum(['auto', 'off']).default('auto'),
    capabilities: z
      .array(capability)
      .superRefine(uniqueItems('capability'))
      .default(['TOP', 'UIDL']),
    timeouts: timeoutsSchema,
    login: backendLoginSchema,
  })
  .transform((b) => ({ ...b, port: b.port ?? defaultBackendPort(b.tls.mode) }));

// ---------------------------------------------------------------------------
// Routing

/**
 * One backend of a route. tls, proxyProtocol and xclient are inherited from
 * `backend` when absent (left undefined here; see backendTargets); port is
 * not inherited: 110, or 995 with implicit TLS.
 */
const routeEntrySchema = z.strictObject({
  host: hostOrAddress,
  port: port.min(1).optional(),
  /** Replaces backend.tls as a whole (its own defaults apply to keys not given). */
  tls: backendTlsSchema.optional(),
  proxyProtocol: z.enum(BACKEND_PROXY_PROTOCOLS).optional(),
  xclient: z.boolean().optional(),
});

/** Backends tried in order until one is reachable. */
const routeListSchema = z.array(routeEntrySchema).min(1, 'at least one backend is required');

const routeUsersSchema = z.record(z.string(), routeListSchema).superRefine((users, ctx) => {
  for (const user of Object.keys(users)) {
    if (!isValidPop3User(user)) {
      ctx.addIssue({ code: 'custom', path: [user], message: 'key must be a POP3 user name (not empty; no spaces, control characters or ":")' });
    }
  }
});

/** A mail domain as a routing key: compared lowercase and without a trailing dot. */
function normalizeDomain(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '');
}

const routeDomainsSchema = z
  .record(z.string(), routeListSchema)
  .superRefine((domains, ctx) => {
    const seen = new Map<string, string>();
    for (const domain of Object.keys(domains)) {
      if (domain.includes('@') || isIP(domain) !== 0 || !HOSTNAME.test(domain)) {
        ctx.addIssue({
          code: 'custom',
          path: [domain],
          message: 'key must be a mail domain (e.g. example.com)',
          ...hint('route single users under routing.users'),
        });
        continue;
      }
      const key = normalizeDomain(domain);
      const other = seen.get(key);
      if (other !== undefined) {
        ctx.addIssue({ code: 'custom', path: [domain], message: `the same domain as "${other}" (domains are case-insensitive)` });
      } else seen.set(key, domain);
    }
  })
  .transform((domains) => Object.fromEntries(Object.entries(domains).map(([d, list]) => [normalizeDomain(d), list])));

/**
 * Per-user and per-domain backends. A user's route: routing.users[user]
 * (exact name), else routing.domains[domain after the last "@"], else
 * [backend].
 */
const routingSchema = z
  .strictObject({
    users: routeUsersSchema.default({}),
    domains: routeDomainsSchema.default({}),
  })
  .prefault({});

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
    /** Concurrent connections per client address (IPv6: per /64); behind a trusted PROXY peer, per real client. */
    maxConnectionsPerIp: z.number().int().min(1).default(50),
    /** Wait this long before the greeting; a client that talks meanwhile is closed (EARLY_TALKER). 0: greet at once. */
    greetingDelay: duration({ max: 10_000 }).prefault('0s'),
  })
  .superRefine((limits, ctx) => {
    const { greetingDelay, preAuthTimeout } = limits as { greetingDelay: unknown; preAuthTimeout: unknown };
    if (typeof greetingDelay !== 'number' || typeof preAuthTimeout !== 'number' || greetingDelay < preAuthTimeout) return;
    ctx.addIssue({
      code: 'custom',
      path: ['greetingDelay'],
      message: 'must be shorter than limits.preAuthTimeout',
      ...hint('the pre-authentication timer runs during the delay; a delay of 1s or less is plenty (Postfix postscreen waits up to 6s)'),
    });
  })
  .prefault({});

const shutdownSchema = z
  .strictObject({
    drainTimeout: duration().prefault('30s'),
  })
  .prefault({});

export const DEFAULT_ADMIN_PORT = 9110;

/**
 * The admin HTTP listener (GET /metrics, /healthz, /readyz), separate from
 * the mail ports. Absent: no admin listener. Changing it needs a restart.
 */
const adminSchema = z.strictObject({
  /** Address to bind: loopback by default (the endpoints have no authentication). */
  address: hostOrAddress.default('127.0.0.1'),
  /** TCP port; 0 = an ephemeral port (tests). */
  port: port.default(DEFAULT_ADMIN_PORT),
});

/** The most worker processes `workers` accepts: far above any core count a gateway runs on. */
export const MAX_WORKERS = 256;

/**
 * `workers`: how many processes serve the listeners; `auto` is one per
 * available core (os.availableParallelism()). 1 is a single process with no
 * primary. Changing it needs a restart.
 */
const workersSchema = z.union([z.number().int().min(1).max(MAX_WORKERS), z.literal('auto')]).default(1);

// ---------------------------------------------------------------------------

/**
 * Cross-field checks run also when other sections have problems (so everything
 * is reported at once), but not when a section they read is itself invalid.
 */
function whenValid(sections: readonly string[]): { when: (payload: z.core.ParsePayload) => boolean } {
  const read = new Set<PropertyKey>(sections);
  return {
    when: (payload) => !payload.issues.some((issue) => issue.path === undefined || issue.path.length === 0 || read.has(issue.path[0] ?? '')),
  };
}

/** Whether `host:port` pairs repeat within one route list (compared after inheritance). */
function checkRouteDuplicates(
  list: readonly z.output<typeof routeEntrySchema>[],
  path: readonly (string | number)[],
  inheritedMode: (typeof BACKEND_TLS_MODES)[number],
  ctx: z.RefinementCtx,
): void {
  const seen = new Map<string, number>();
  list.forEach((entry, i) => {
    const p = entry.port ?? defaultBackendPort(entry.tls?.mode ?? inheritedMode);
    const key = `${entry.host.toLowerCase()}|${p}`;
    const first = seen.get(key);
    if (first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [...path, i],
        message: `duplicate backend ${entry.host} port ${p} (also entry ${first} of this list)`,
        ...hint('each backend of a route is tried once; remove the repeated entry'),
      });
    } else seen.set(key, i);
  });
}

export const configSchema = z
  .strictObject({
    log: logSchema,
    listeners: listenersSchema,
    auth: authSchema,
    /** Required when a kpop listener, GSSAPI or the kerberos verifier is used. */
    kerberos: kerberosSchema.optional(),
    backend: backendSchema,
    /** Per-user and per-domain backends; by default everyone goes to `backend`. */
    routing: routingSchema,
    limits: limitsSchema,
    shutdown: shutdownSchema,
    /** Admin HTTP listener (metrics, health, readiness); absent = none. */
    admin: adminSchema.optional(),
    /** Worker processes serving the listeners (a number, or `auto`: one per core). */
    workers: workersSchema,
    /** IMPLEMENTATION capability text; "" or null hides it (output: null). */
    implementation: protocolText
      .nullable()
      .default('popgate')
      .transform((v) => (v === null || v.trim() === '' ? null : v)),
  })
  .superRefine((cfg, ctx) => {
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
  }, whenValid(['listeners', 'auth', 'kerberos']))
  .superRefine((cfg, ctx) => {
    const i = cfg.auth.mechanisms.indexOf('EXTERNAL');
    if (i < 0) return;
    const certListener = cfg.listeners.some((l) => (l.tls?.clientCertificates?.mode ?? 'none') !== 'none');
    if (!certListener) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth', 'mechanisms', i],
        message: 'EXTERNAL needs a listener that asks for TLS client certificates (tls.clientCertificates.mode optional or required)',
        ...hint('add clientCertificates: { mode: optional, caFile: ... } to the tls section of a pop3s or pop3 listener, or remove EXTERNAL'),
      });
    }
  }, whenValid(['listeners', 'auth']))
  .superRefine((cfg, ctx) => {
    const mode = cfg.backend.tls.mode;
    for (const [user, list] of Object.entries(cfg.routing.users)) checkRouteDuplicates(list, ['routing', 'users', user], mode, ctx);
    for (const [domain, list] of Object.entries(cfg.routing.domains)) checkRouteDuplicates(list, ['routing', 'domains', domain], mode, ctx);
  }, whenValid(['backend', 'routing']))
  .superRefine((cfg, ctx) => {
    const admin = cfg.admin;
    if (admin === undefined || admin.port === 0) return;
    const i = cfg.listeners.findIndex((l) => l.port === admin.port && l.address.toLowerCase() === admin.address.toLowerCase());
    if (i < 0) return;
    ctx.addIssue({
      code: 'custom',
      path: ['admin', 'port'],
      message: `address ${admin.address} port ${admin.port} is already used by listeners[${i}]`,
      ...hint('the admin listener needs its own (address, port) pair'),
    });
  }, whenValid(['listeners', 'admin']));

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
export type AdminConfig = NonNullable<PopgateConfig['admin']>;
export type BackendTlsConfig = BackendConfig['tls'];
export type BackendProxyProtocol = BackendConfig['proxyProtocol'];
export type RoutingConfig = PopgateConfig['routing'];
export type RouteEntryConfig = RoutingConfig['users'][string][number];
export type ListenerProxyProtocolConfig = NonNullable<ListenerConfig['proxyProtocol']>;
export type ClientCertificatesConfig = NonNullable<TlsConfig['clientCertificates']>;
export type HttpAuthConfig = NonNullable<AuthConfig['http']>;
export type PamAuthConfig = NonNullable<AuthConfig['pam']>;
/** auth.pam when the pam verifier is listed without the section. */
export const PAM_DEFAULTS: PamAuthConfig = pamAuthSchema.parse({});
export type LdapAuthConfig = NonNullable<AuthConfig['ldap']>;
export type SaslMechanismName = (typeof SASL_MECHANISMS)[number];
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
export const SECRET_FIELDS: readonly string[] = [
  'backend.login.password',
  'auth.throttle.redis.password',
  'auth.throttle.redis.sentinel.password',
  'auth.oauth.introspection.clientSecret',
  'auth.ldap.search.bindPassword',
];

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
export const FREE_FORM_FIELDS: readonly string[] = ['kerberos.mapping.map', 'auth.http.headers', 'auth.oauth.map'];

/**
 * Maps whose every value is secret (a shared key in a static header):
 * redactConfig replaces each value with "***".
 */
export const SECRET_MAPS: readonly string[] = ['auth.http.headers'];

/**
 * Maps of HTTP headers for which a sibling `<key>File` names a file of
 * `Name: value` lines (a mounted Kubernetes Secret). The loader reads it and
 * merges its headers into `<key>`; a name given in both places is refused.
 */
export const HEADER_MAP_FIELDS: readonly string[] = ['auth.http.headers'];

// ---------------------------------------------------------------------------
// Introspection (error hints, docs drift test)

interface ZodDefLike {
  readonly type: string;
  readonly innerType?: ZodLike;
  readonly in?: ZodLike;
  readonly out?: ZodLike;
  readonly shape?: Record<string, ZodLike>;
  readonly element?: ZodLike;
  /** record */
  readonly valueType?: ZodLike;
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
      if (typeof seg === 'string' && def.type === 'record' && def.valueType) next.push(...describe(def.valueType, child));
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

/** Whether a schema holds config keys (an object, or a list of objects). */
function hasKeys(schema: ZodLike): boolean {
  const def = unwrap(schema)._zod.def;
  if (def.type === 'object') return true;
  return def.type === 'array' && def.element !== undefined && unwrap(def.element)._zod.def.type === 'object';
}

/**
 * Every leaf key of the schema as a dotted path (`listeners[].tls.certFile`,
 * `backend.login.secretsFile`), over all union branches. `[]` stands for any
 * list item, `{}` for any key of a map whose values hold config keys
 * (`routing.users{}[].host`); maps of plain values (`kerberos.mapping.map`)
 * are leaves.
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
      } else if (def.type === 'record' && def.valueType && hasKeys(def.valueType)) {
        walk(def.valueType, `${prefix}{}`);
      } else {
        out.add(prefix);
      }
    }
  };
  walk(configSchema as unknown as ZodLike, '');
  return [...out];
}
