/**
 * The POP3 session core driven end to end: random client byte streams (built
 * from a grammar of real commands and SASL dialogues, then mutated and cut into
 * socket reads at random points) go through a LineFramer into a Pop3Session,
 * whose every action a fake host answers the way src/server does (at once or
 * later, well or badly), across random session options. Invariants: see
 * `FuzzHost`; the host itself keeps the host contract of Pop3Session, except
 * for deliberate probes that must be refused with GatewayError('INTERNAL')
 * without changing anything.
 */
import fc from 'fast-check';
import { describe } from 'vitest';
import { ERRORS, GatewayError, errorReply, type ErrorCode } from '../../src/errors.js';
import { LineFramer } from '../../src/pop3/framer.js';
import { Pop3Session } from '../../src/pop3/session.js';
import { SASL_MECHANISMS, type LoginCredentials, type Pop3Action, type Pop3SessionOptions, type SaslMechanism } from '../../src/pop3/types.js';
import { Choices, Reached, choicesArb, chunk, chunkingArb, fuzzIt, invariant, mutate, mutationArb, show, type Chunking, type Mutation } from './common.js';

// ---- the client's side: a grammar of lines and dialogues --------------------

const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
const FORBIDDEN = /[\r\n\0]/;

const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('alice', 'bob', 'tim', 'dave', 'carol', 'mallory', 'a b') },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('alice', ''), fc.constantFrom('\r', '\n', '\0', ' ', '\r\nDELE 1', '\t', '\u00e9', '\ud83d\ude00'), fc.constantFrom('', 'x'))
      .map(([a, b, c]) => a + b + c),
  },
);

const secretArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('secret', 'correct horse battery', ' lead', 'pw', 'krb_ticket') },
  { weight: 2, arbitrary: fc.string({ maxLength: 16 }) },
  { weight: 1, arbitrary: nameArb },
);

const hexArb = (n: number): fc.Arbitrary<string> => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a).toString('hex'));

const digestArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hexArb(16) },
  { weight: 2, arbitrary: fc.mixedCase(hexArb(16)) },
  { weight: 1, arbitrary: fc.oneof(hexArb(8), hexArb(17), fc.constant('z'.repeat(32)), fc.constant('')) },
);

/** A PLAIN message `[authzid] NUL authcid NUL passwd`, sometimes with a field too many or too few. */
const plainArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.constantFrom('none', 'same', 'other'), nameArb, secretArb, fc.constantFrom(3, 3, 3, 3, 2, 4))
  .map(([authz, authcid, passwd, fields]) => {
    const authzid = authz === 'none' ? '' : authz === 'same' ? authcid : 'root';
    const parts = [authzid, authcid, passwd, 'extra'].slice(0, fields);
    if (fields === 2) parts.shift();
    return Buffer.from(parts.join('\0'), 'utf8');
  });

/** Unwrapped-looking GSSAPI bytes and context tokens (the fake host decides what they mean). */
const gssTokenArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(Buffer.from('YIIBAgYJKoZIhvcSAQICAQBu', 'base64')),
  fc.uint8Array({ minLength: 1, maxLength: 48 }).map((a) => Buffer.from(a)),
  fc.constant(Buffer.from('\x01\0\0\0alice', 'latin1')),
);

/** OAuth 2.0 bearer tokens (RFC 6750 b64token), now and then one no client should send, now and then one of a few KiB. */
const bearerTokenArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('ya29.a0AfH6SMBx', 'eyJhbGciOiJSUzI1NiJ9.e30.sig-_~+/=', 't', 'abc==') },
  { weight: 2, arbitrary: fc.constantFrom('', 'a b', 'tok\r\nDELE 1', 't\u00e9', '=abc', 'a\0b') },
  // Around the 255-octet command cap, and around the 8192-octet SASL cap once base64-encoded.
  { weight: 1, arbitrary: fc.oneof(fc.integer({ min: 140, max: 260 }), fc.integer({ min: 5990, max: 6160 })).map((n) => `eyJ0.${'x'.repeat(n)}.sig`) },
);

const bearerSchemeArb: fc.Arbitrary<string> = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('Bearer', 'bearer') }, { weight: 1, arbitrary: fc.constantFrom('Basic', 'Bearer ', '') });

/** An RFC 5801 saslname: `=` and `,` escaped (sometimes not, or badly). */
const saslNameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: nameArb.map((n) => n.replace(/=/g, '=3D').replace(/,/g, '=2C')) },
  { weight: 1, arbitrary: fc.constantFrom('a=b', 'x=41', 'a,b', 'al=2Cice', 'b=3D') },
);

/** OAUTHBEARER (RFC 7628) client messages: gs2 header, kvsep-separated pairs, a closing empty pair. */
const oauthBearerArb: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.option(saslNameArb, { nil: undefined }), bearerTokenArb, bearerSchemeArb, fc.constantFrom('\x01host=mail.example.com\x01port=995', '', '\x01host=x'))
      .map(([z, t, scheme, extra]) => Buffer.from(`n,${z === undefined ? '' : `a=${z}`},${extra}\x01auth=${scheme} ${t}\x01\x01`, 'utf8')),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        'y,,\x01auth=Bearer t\x01\x01', 'p=tls-unique,,\x01auth=Bearer t\x01\x01', 'n,,auth=Bearer t\x01\x01', 'n,,\x01auth=Bearer t\x01',
        'n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01', 'n,,\x01host=x\x01\x01', 'n,a=al\rice,\x01auth=Bearer t\x01\x01', 'n,a=\xff,\x01auth=Bearer t\x01\x01',
        'n,b=x,\x01auth=Bearer t\x01\x01', 'n,', '\x01', '',
      )
      .map((m) => Buffer.from(m, 'latin1')),
  },
);

/** XOAUTH2 client messages: `user=` and `auth=Bearer` pairs, kvsep-separated. */
const xoauth2Arb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(nameArb, bearerTokenArb, bearerSchemeArb).map(([u, t, scheme]) => Buffer.from(`user=${u}\x01auth=${scheme} ${t}\x01\x01`, 'utf8')) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('auth=Bearer t\x01\x01', 'user=a\x01auth=Bearer t\x01', 'user=a\x01\x01', 'user=\xff\x01auth=Bearer t\x01\x01', 'user=a\x01user=b\x01auth=Bearer t\x01\x01', '')
      .map((m) => Buffer.from(m, 'latin1')),
  },
);

/** SCRAM client messages (the fake host's exchange decides what they mean): client-first, client-final, junk. */
const scramFirstArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.constantFrom('n,,', 'y,,', 'p=tls-server-end-point,,', 'p=tls-exporter,,', 'n,a=alice,', 'n,a=bob,'), nameArb, hexArb(12))
  .map(([gs2, n, r]) => Buffer.from(`${gs2}n=${n},r=${r}`, 'utf8'));
const scramFinalArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.constantFrom('biws', 'eSws', 'cD10bHMtZXhwb3J0ZXIsLA=='), hexArb(24), fc.uint8Array({ minLength: 32, maxLength: 32 }))
  .map(([cb, r, p]) => Buffer.from(`c=${cb},r=${r},p=${b64(Buffer.from(p))}`, 'latin1'));
const scramMessageArb: fc.Arbitrary<Buffer> = fc.oneof(
  scramFirstArb,
  scramFinalArb,
  fc.constantFrom(Buffer.from('v=dHJ1c3QgbWU='), Buffer.from('e=invalid-proof'), Buffer.alloc(0)),
);

/** Payloads a client base64-encodes: PLAIN messages, names, CRAM-MD5 answers, tokens, authzids, bearer and SCRAM messages. */
const payloadArb: fc.Arbitrary<Buffer> = fc.oneof(
  plainArb,
  nameArb.map((s) => Buffer.from(s, 'utf8')),
  fc.tuple(nameArb, digestArb).map(([n, d]) => Buffer.from(`${n} ${d}`, 'utf8')),
  gssTokenArb,
  fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
  oauthBearerArb,
  xoauth2Arb,
  scramMessageArb,
);

/** Base64 text as clients send it, and the ways it goes wrong. */
function base64Of(payload: fc.Arbitrary<Buffer>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 10, arbitrary: payload.map(b64) },
    { weight: 1, arbitrary: fc.constantFrom('=', '', '*', 'not base64!', '====', 'QR==', 'AGFsaWNlAHB3'.slice(0, 11), 'YQ', 'Y\u00e9==') },
    {
      // Non-canonical: stray bits in the last group, or padding lost.
      weight: 1,
      arbitrary: payload
        .filter((b) => b.length % 3 !== 0)
        .map((b) => {
          const s = b64(b);
          const i = s.indexOf('=') - 1;
          return s.slice(0, i) + (s[i] === 'B' ? 'C' : 'B') + s.slice(i + 1);
        }),
    },
    { weight: 1, arbitrary: payload.map((b) => b64(b).replace(/=+$/, '')) },
  );
}

const continuationArb: fc.Arbitrary<string> = base64Of(payloadArb);

const MECHS = [
  'PLAIN', 'LOGIN', 'GSSAPI', 'CRAM-MD5', 'EXTERNAL', 'OAUTHBEARER', 'XOAUTH2', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS',
  'DIGEST-MD5', 'SCRAM-SHA-1', 'SCRAM-SHA-256-', 'plain', 'Cram-Md5', 'oauthBearer', 'scram-sha-256-plus',
];
const mechArb: fc.Arbitrary<string> = fc.oneof({ weight: 8, arbitrary: fc.mixedCase(fc.constantFrom(...MECHS)) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) });

const verbArb = (v: string): fc.Arbitrary<string> => fc.oneof({ weight: 4, arbitrary: fc.constant(v) }, { weight: 1, arbitrary: fc.mixedCase(fc.constant(v)) });

/** One command line (text, no terminator). */
const commandArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(verbArb('CAPA'), fc.constantFrom('', '', '', ' ', ' x')).map(([v, a]) => v + a),
  fc.tuple(verbArb('STLS'), fc.constantFrom('', '', ' now')).map(([v, a]) => v + a),
  fc.tuple(verbArb('USER'), fc.option(nameArb, { nil: undefined })).map(([v, n]) => (n === undefined ? v : `${v} ${n}`)),
  fc.tuple(verbArb('PASS'), fc.option(secretArb, { nil: undefined })).map(([v, p]) => (p === undefined ? v : `${v} ${p}`)),
  fc.tuple(verbArb('APOP'), nameArb, digestArb, fc.constantFrom(' ', ' ', '', '  ')).map(([v, n, d, sp]) => `${v} ${n}${sp}${d}`),
  fc.tuple(verbArb('AUTH'), fc.constantFrom('', ' ')).map(([v, a]) => v + a),
  fc.tuple(verbArb('AUTH'), mechArb).map(([v, m]) => `${v} ${m}`),
  fc.tuple(verbArb('AUTH'), mechArb, continuationArb, fc.constantFrom('', '', '', ' ', ' AAAA')).map(([v, m, i, x]) => `${v} ${m} ${i}${x}`),
  fc.constantFrom('QUIT', 'quit', 'QUIT now', 'NOOP', 'NOOP x', 'STAT', 'LIST', 'RETR 1', 'TOP 1 10', 'UIDL', 'LAST', 'DELE 1', 'RSET', 'XTND XMIT', 'HELO', ''),
  fc.string({ maxLength: 20 }),
);

/** Dialogues that reach deep states: a command and the continuations its exchange expects. */
const dialogueArb: fc.Arbitrary<string[]> = fc.oneof(
  fc.tuple(nameArb, secretArb).map(([u, p]) => [`USER ${u}`, `PASS ${p}`]),
  plainArb.map((m) => ['AUTH PLAIN', b64(m)]),
  plainArb.map((m) => [`AUTH PLAIN ${b64(m)}`]),
  fc.tuple(nameArb, secretArb).map(([u, p]) => ['AUTH LOGIN', b64(u), b64(p)]),
  fc.tuple(nameArb, secretArb).map(([u, p]) => [`AUTH LOGIN ${b64(u)}`, b64(p)]),
  fc.tuple(nameArb, digestArb).map(([u, d]) => [`APOP ${u} ${d}`]),
  fc.tuple(nameArb, digestArb).map(([u, d]) => ['AUTH CRAM-MD5', b64(`${u} ${d}`)]),
  fc.option(nameArb, { nil: undefined }).map((z) => (z === undefined ? ['AUTH EXTERNAL', ''] : [`AUTH EXTERNAL ${z === '' ? '=' : b64(z)}`])),
  // Context tokens, the (empty) answer to a final token, the wrapped security-layer choice: the fake acceptor decides which is which.
  fc.tuple(fc.array(gssTokenArb, { minLength: 2, maxLength: 5 }), fc.boolean(), fc.boolean()).map(([tokens, initial, ack]) => {
    const lines = tokens.map((t) => b64(t));
    if (ack) lines.splice(1, 0, '');
    return initial ? [`AUTH GSSAPI ${lines[0]}`, ...lines.slice(1)] : ['AUTH GSSAPI', ...lines];
  }),
  // A bearer message as initial response (however long) or after `+ `, then maybe the answer to an error challenge.
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.oneof(oauthBearerArb.map((m) => ['OAUTHBEARER', m] as const), xoauth2Arb.map((m) => ['XOAUTH2', m] as const)),
        fc.boolean(),
        fc.option(fc.constantFrom('AQ==', 'AQ==', '*', '', '=', 'x y', 'CAPA'), { nil: undefined }),
      )
      .map(([[mech, m], initial, ack]) => [...(initial ? [`AUTH ${mech} ${b64(m)}`] : [`AUTH ${mech}`, b64(m)]), ...(ack === undefined ? [] : [ack])]),
  },
  // SCRAM: client-first (initial or after `+ `), client-final (or other messages), then the (empty) answer to the server-final message.
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'),
        base64Of(scramFirstArb),
        fc.oneof({ weight: 4, arbitrary: base64Of(scramFinalArb).map((l) => [l]) }, { weight: 1, arbitrary: fc.array(base64Of(scramMessageArb), { maxLength: 3 }) }),
        fc.boolean(),
        fc.constantFrom('', '', '', '', '', '=', b64('v=x'), '*', 'QUIT'),
      )
      .map(([mech, first, rest, initial, ack]) => [...(initial ? [`AUTH ${mech} ${first}`] : [`AUTH ${mech}`, first]), ...rest, ack]),
  },
  fc.constantFrom<string[]>(['STLS', 'CAPA'], ['STLS', 'USER mallory', 'PASS x'], ['USER alice', 'STLS', 'PASS secret'], ['USER alice', 'STLS', 'CAPA', 'USER bob', 'PASS x'], ['CAPA'], ['AUTH'], ['AUTH PLAIN', '*'], ['QUIT']),
);

/** What no POP3 client sends: HTTP request lines, a TLS ClientHello (screened and refused). */
const hostileArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom('GET / HTTP/1.1', 'POST /login HTTP/1.0', 'PRI * HTTP/2.0', 'OPTIONS * HTTP/1.1', 'get / HTTP/1.1', 'GET / HTTP/3').map((l) => Buffer.from(l)),
  fc.tuple(fc.constantFrom(0x01, 0x03, 0x16), fc.uint8Array({ maxLength: 8 })).map(([v, a]) => Buffer.concat([Buffer.from([0x16, 0x03, v]), a])),
  fc.constant(Buffer.from([0x16])),
);

/** A line of raw bytes: NUL, CR, bare LF, invalid UTF-8, anything. */
const junkArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
  fc.tuple(fc.constantFrom('USER ', 'PASS ', 'AUTH PLAIN ', 'APOP a ', ''), fc.uint8Array({ maxLength: 12 })).map(([p, a]) => Buffer.concat([Buffer.from(p), a])),
);

/** Lines around and far over the caps (255 for commands, maxSaslLine in an exchange). */
const longArb: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.constantFrom('', 'USER ', 'PASS ', 'AUTH PLAIN ', 'A', 'AUTH OAUTHBEARER ', 'AUTH XOAUTH2 ', 'AUTH SCRAM-SHA-256 ', 'AUTH ', 'auth x'),
    fc.oneof(fc.integer({ min: 240, max: 270 }), fc.integer({ min: 500, max: 530 }), fc.constantFrom(8188, 8189, 8190, 8191, 8192), fc.integer({ min: 1000, max: 12000 })),
    fc.constantFrom(0x41, 0x78, 0x20, 0x00, 0xc3),
  )
  .map(([prefix, n, fill]) => Buffer.concat([Buffer.from(prefix), Buffer.alloc(Math.max(0, n - prefix.length), fill)]));

const terminatorArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.constant('\r\n') },
  { weight: 3, arbitrary: fc.constant('\n') },
  { weight: 1, arbitrary: fc.constantFrom('', '\r', '\r\r\n', '\n\r\n') },
);

/** A command or dialogue: its lines, each with its terminator. */
const lineGroupArb: fc.Arbitrary<Buffer[]> = fc
  .tuple(
    fc.oneof(
      { weight: 10, arbitrary: commandArb.map((s) => [Buffer.from(s, 'utf8')]) },
      { weight: 12, arbitrary: dialogueArb.map((ls) => ls.map((s) => Buffer.from(s, 'utf8'))) },
      { weight: 4, arbitrary: continuationArb.map((s) => [Buffer.from(s, 'utf8')]) },
      { weight: 2, arbitrary: junkArb.map((b) => [b]) },
      { weight: 1, arbitrary: longArb.map((b) => [b]) },
      { weight: 1, arbitrary: hostileArb.map((b) => [b]) },
    ),
    terminatorArb,
  )
  .map(([lines, term]) => lines.map((l) => Buffer.concat([l, Buffer.from(term, 'latin1')])));

const mutationsArb: fc.Arbitrary<Mutation[]> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Mutation[]>([]) },
  { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 4 }) },
);

interface ClientInput {
  readonly groups: Buffer[][];
  /**
   * An interactive client (one line per read, as when it waits for each
   * reply) rather than a pipelining one (reads cut anywhere). The random cuts
   * apply in both cases.
   */
  readonly interactive: boolean;
  readonly mutations: Mutation[];
  readonly chunking: Chunking;
  /** After which reads (index mod count) the host answers requests it deferred. */
  readonly ticks: number[];
  /** After which read the pre-authentication timer fires, if it does. */
  readonly timeoutAt: number | undefined;
}

const clientArb: fc.Arbitrary<ClientInput> = fc.record({
  groups: fc.array(lineGroupArb, { minLength: 1, maxLength: 14 }),
  interactive: fc.boolean(),
  mutations: mutationsArb,
  chunking: chunkingArb,
  ticks: fc.array(fc.nat(), { maxLength: 8 }),
  timeoutAt: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() }),
});

// ---- session options ----------------------------------------------------------

const APOP_TIMESTAMPS = ['<1896.697170952@dbc.mtview.ca.us>', `<${'7'.repeat(196)}@h>`];
const IDENTITIES = ['dave', 'carol x', 'j\u00fcrgen'];

interface FuzzOptions {
  readonly options: Pop3SessionOptions;
  /** `<n.s@host>` challenges, one per call, for CRAM-MD5: near the 200-octet limit when set. */
  readonly longChallenges: boolean;
  /** Socket reads that arrive before the (delayed) greeting: early talk, refused. Usually 0. */
  readonly earlyReads: number;
}

const optionsArb: fc.Arbitrary<FuzzOptions> = fc
  .record({
    tls: fc.boolean(),
    stlsAvailable: fc.boolean(),
    allowPlaintextAuth: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    saslMechanisms: fc.oneof(
      { weight: 3, arbitrary: fc.shuffledSubarray([...SASL_MECHANISMS]) },
      { weight: 1, arbitrary: fc.array(fc.constantFrom(...SASL_MECHANISMS), { maxLength: 7 }) },
    ),
    greeting: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('popgate ready', '<weird> greeting <x@y>', 'hi\r\n-ERR x', ' ', '\0', 'POP3 \u00e9t\u00e9') },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
    ),
    implementation: fc.option(fc.oneof(fc.constant('popgate'), fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 20 })), { nil: undefined }),
    backendCapabilities: fc.array(
      fc.oneof(
        fc.constantFrom('TOP', 'UIDL', 'STLS', 'SASL GSSAPI', 'USER', '.', '.hidden', 'BAD\r\nCAP', 'top', '', 'LOGIN-DELAY 900', 'EXPIRE 30', ' PIPELINING '),
        fc.string({ maxLength: 60 }),
      ),
      { maxLength: 6 },
    ),
    maxAuthAttempts: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 10 })),
    maxErrors: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 5, max: 30 })),
    maxCommandLine: fc.oneof({ weight: 6, arbitrary: fc.constant(255) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) }),
    maxSaslLine: fc.oneof({ weight: 4, arbitrary: fc.constant(8192) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2048 }) }),
    kerberosPrincipal: fc.oneof({ weight: 7, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('carol@EXAMPLE.COM', 'fetch mail@EXAMPLE.COM') }),
    apopTimestamp: fc.option(fc.constantFrom(...APOP_TIMESTAMPS), { freq: 2, nil: undefined }),
    externalIdentity: fc.option(fc.constantFrom(...IDENTITIES), { freq: 2, nil: undefined }),
    longChallenges: fc.boolean(),
    earlyReads: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) }),
  })
  .map(({ longChallenges, earlyReads, externalIdentity, ...o }) => {
    const options: Pop3SessionOptions = { ...o, ...(o.tls && externalIdentity !== undefined ? { externalIdentity } : {}) };
    return { options, longChallenges, earlyReads };
  });

// ---- the fake host ------------------------------------------------------------

const LIST_HEADS = new Set(['+OK Capability list follows', '+OK Available mechanisms']);
const LIST_ITEM = /^[\x21-\x2d\x2f-\x7e][\x20-\x7e]*$/;
const ALL_CODES = Object.keys(ERRORS) as ErrorCode[];
const PRINCIPALS = ['alice@EXAMPLE.COM', 'bob@EXAMPLE.COM', 'evil\r\nDELE 1@EXAMPLE.COM', 'nul\0@EXAMPLE.COM', 'x'];
/** Unwrapped security-layer answers, good and bad. */
const LAYER_ANSWERS = [
  [1, 0, 0, 0, ...Buffer.from('alice')], [1, 0, 0, 0], [1, 0xff, 0xff, 0xff, ...Buffer.from('bob')], [2, 0, 0x10, 0], [4, 0, 0x10, 0],
  [7, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0], [], [1, 0, 0, 0, ...Buffer.from('a\r\nb')], [1, 0, 0, 0, 0x61, 0], [1, 0, 0, 0, 0xff, 0xfe],
].map((b) => Buffer.from(b));
const BACKEND_REPLIES = ['+OK Logged in.', '+OK', '+OK maildrop has 2 messages (320 octets)', '-ERR odd', '+OK evil\r\nDELE 1', '+ok lower', '+OK\ttab', '+OK \u00e9t\u00e9', ''];
/**
 * Longest `+OK` text the fake backend sends. The real backend client accepts
 * lines up to MAX_BACKEND_LINE (2048) and loginSucceeded forwards a `+OK` line
 * whole, so a longer one would break the 512-octet reply limit (reported;
 * raise this to 2046 once loginSucceeded caps the line).
 */
const BACKEND_TEXT_MAX = 480;
/** Largest GSS token the fake acceptor returns: `+ ` + base64 stays within 512 octets. */
const GSS_OUTPUT_MAX = 300;
const SERVER_TROUBLE = (code: ErrorCode): boolean => {
  const resp: string | undefined = ERRORS[code].resp;
  return resp === 'SYS/TEMP' || resp === 'SYS/PERM' || resp === 'IN-USE';
};

/** User names the fake SCRAM exchange proves (the last ones break the host contract: probes only). */
const SCRAM_USERS = ['alice', 'bob', 'j\u00fcrgen', 'a b', 'x'];
const BAD_SCRAM_USERS = ['', 'a\r\nDELE 1', 'nul\0'];
/** RFC 7628 3.2.2 error challenges, as src/auth/oauth builds them, and odd ones. */
const ERROR_CHALLENGES = ['{"status":"invalid_token","scope":"mail","openid-configuration":"https://idp.example/.well-known/openid-configuration"}', '{"status":"400"}', '', '\r\n-ERR x'].map((s) => Buffer.from(s));

/**
 * The codes a bearer error challenge comes with. src/server sends one only
 * with AUTH_FAILED; the session must treat any other code (and `close`) as
 * loginFailed does without a challenge: only AUTH_FAILED spends an attempt.
 */
const BEARER_ERROR_CODES: readonly ErrorCode[] = ['AUTH_FAILED', 'AUTH_FAILED', 'VERIFIER_UNAVAILABLE', 'BACKEND_UNREACHABLE'];
const isBearer = (c: LoginCredentials): boolean => c.mechanism === 'OAUTHBEARER' || c.mechanism === 'XOAUTH2';

type Request = Extract<Pop3Action, { kind: 'startTls' | 'authenticate' | 'gssAccept' | 'gssWrap' | 'gssUnwrap' | 'saslStep' }>;
type Source =
  | 'greet' | 'firstBytes' | 'line' | 'overflow' | 'timeout' | 'loginSucceeded' | 'loginFailed'
  | 'gssAcceptResult' | 'gssWrapped' | 'gssUnwrapped' | 'gssFailed' | 'saslContinue' | 'saslProved' | 'saslFailed';

const sessionReached = new Reached([
  'auth:USER', 'auth:PLAIN', 'auth:LOGIN', 'auth:APOP', 'auth:CRAM-MD5', 'auth:GSSAPI', 'auth:KPOP', 'auth:EXTERNAL',
  'auth:OAUTHBEARER', 'auth:XOAUTH2', 'auth:SCRAM-SHA-256', 'auth:SCRAM-SHA-256-PLUS', 'bearer-error', 'long-auth-line',
  'saslStep', 'saslContinue', 'saslProved', 'saslFailed',
  'relay', 'startTls', 'tls-discard', 'gssAccept', 'gssWrap', 'gssUnwrap', 'gssFailed', 'deferred', 'probe',
  'close:QUIT', 'close:TOO_MANY_ERRORS', 'close:TOO_MANY_AUTH_ATTEMPTS', 'close:LINE_TOO_LONG', 'close:PREAUTH_TIMEOUT',
  'close:EARLY_TALKER', 'close:TLS_ON_PLAINTEXT_PORT', 'close:HTTP_ON_POP3_PORT',
  'answer-after-close', 'capa', 'mutated',
]);

/**
 * Plays the server's part around one session, as src/server/connection.ts
 * does (first read through `firstBytes`, framer capped by `lineLimit`, no
 * feeding while `awaiting`, `discardBuffered` on startTls, `takeBuffered` on
 * relay), answering each request at once or later, and checks the session's
 * every output:
 *
 * - nothing throws, except the probes of host-contract violations, which must
 *   throw GatewayError('INTERNAL') and leave the session unchanged;
 * - every reply line is free of CR/LF/NUL and at most 512 octets with CRLF;
 *   each event gets one status line (`+OK`, `-ERR `, `+ `), or a CAPA/AUTH
 *   list closed by `.`, or none when it asks the host something; `+ ` exactly
 *   when a continuation is awaited; CAPA/AUTH advertise exactly what the
 *   channel accepts;
 * - requests and `close` end their batch; the session then awaits that request;
 * - credentials never hold CR/LF/NUL; USER/PLAIN/LOGIN/APOP/CRAM-MD5 only on
 *   TLS or with allowPlaintextAuth; EXTERNAL only on TLS with a certificate;
 *   GSSAPI with the acceptor's principal; KPOP only on KPOP sessions; PASS only
 *   for a USER accepted on the current channel; OAUTHBEARER/XOAUTH2 and
 *   SCRAM-SHA-256 by the PLAIN rule, SCRAM-SHA-256-PLUS only on TLS; SCRAM
 *   only for what the host's exchange proved, after the client's empty answer;
 * - `saslStep` carries the client's decoded message, `first` exactly on the
 *   exchange's first; a bearer error challenge is followed, whatever the
 *   client answers, by the host's `-ERR`, counted as a failed login;
 * - every line fed is the next unconsumed bytes received since the last
 *   STLS (nothing pipelined behind STLS is ever dispatched), and the relay gets
 *   exactly the bytes left;
 * - protocol errors and failed logins, counted from the replies, never exceed
 *   maxErrors / maxAuthAttempts, and the one that reaches it closes;
 * - `lineLimit` is maxSaslLine in an exchange (or while the host works on a
 *   GSS or SCRAM step), the larger of maxCommandLine and maxSaslLine in
 *   AUTHORIZATION while a bearer mechanism is usable, maxCommandLine
 *   otherwise; past maxCommandLine (CRLF counted) only an AUTH command is
 *   read, anything else closes with LINE_TOO_LONG;
 * - after `close`, every entry point returns nothing.
 */
class FuzzHost {
  readonly framer = new LineFramer();
  readonly session: Pop3Session;
  private readonly opts: Pop3SessionOptions;
  private readonly kpop: boolean;
  readonly transcript: string[] = [];
  /** Bytes pushed since the last discard; `consumed` of them went out as lines. */
  private stream = Buffer.alloc(0);
  private consumed = 0;
  private pending: Request | undefined;
  private deferred = false;
  private lastFailCode: ErrorCode = 'AUTH_FAILED';
  closed = false;
  relayed = false;
  private secure: boolean;
  private identity: string | undefined;
  private errors = 0;
  private authFailures = 0;
  /** The name of the last USER the session accepted since the channel last changed. */
  private acceptedUser: string | undefined;
  /** The principal of the last completed GSS accept (the exchange's). */
  private gssPrincipal: string | undefined;
  private gssAccepts = 0;
  /** The SCRAM exchange under way: its mechanism and how many steps went to the host. */
  private scramMech: string | undefined;
  private scramSteps = 0;
  /** What the host's exchange proved (saslProved), until the login it leads to. */
  private scramProved: { readonly mech: string; readonly username: string; readonly requestedUser: string } | undefined;
  /** A bearer login refused with an error challenge: the code and text the client's next line must get. */
  private bearerError: { readonly code: ErrorCode; readonly text: string | undefined; readonly close: boolean } | undefined;
  /** The line being fed answers a bearer error challenge. */
  private answeringBearerError: { readonly code: ErrorCode; readonly text: string | undefined; readonly close: boolean } | undefined;
  private readonly challenges: string[] = [];
  private readonly apopOn: boolean;
  private greeted = false;
  /** The first non-empty read went through `session.firstBytes`, as connection.ts does. */
  private firstScreened: boolean;

  constructor(
    fo: FuzzOptions,
    private readonly choices: Choices,
  ) {
    let n = 0;
    this.opts = {
      ...fo.options,
      challengeFactory: () => {
        const c = fo.longChallenges ? `<${String(++n).padStart(150, '9')}.1@${'h'.repeat(40)}>` : `<${++n}.697170952@postoffice.example>`;
        this.challenges.push(c);
        return c;
      },
    };
    this.session = new Pop3Session(this.opts);
    this.kpop = this.opts.kerberosPrincipal !== undefined;
    this.secure = this.opts.tls;
    this.identity = this.opts.externalIdentity;
    this.apopOn = this.opts.apopTimestamp !== undefined && !this.kpop && (this.opts.tls || this.opts.allowPlaintextAuth || this.opts.stlsAvailable);
    // KPOP: the preamble read the first bytes; the session never screens a raw chunk.
    this.firstScreened = this.kpop;
  }

  /** The (possibly delayed) greeting, then whatever was framed meanwhile. */
  greet(): void {
    invariant(!this.greeted, 'fake host bug: greeted twice');
    const greeting = this.session.greet();
    this.greeted = true;
    if (this.closed) {
      invariant(greeting.length === 0, 'greeting after close');
      return;
    }
    this.batch(greeting, 'greet');
    invariant(this.pending === undefined, 'a request in the greeting');
    const line = greeting[0]?.kind === 'reply' ? greeting[0].line : '';
    invariant(greeting.length === 1 && line.startsWith('+OK'), 'greeting is not one +OK line');
    const ts = this.opts.apopTimestamp ?? '';
    invariant(
      this.apopOn ? line.endsWith(` ${ts}`) && line.indexOf('<') === line.length - ts.length : !APOP_TIMESTAMPS.some((t) => line.includes(t)),
      () => `greeting ${show(line)} (APOP ${this.apopOn ? 'on' : 'off'})`,
    );
    this.pump();
  }

  private note(s: string): void {
    this.transcript.push(s);
  }

  // ---- input -----------------------------------------------------------------

  /** One socket read. */
  read(bytes: Buffer): void {
    // A socket never delivers an empty chunk.
    if (bytes.length === 0 || this.closed || this.relayed) return;
    if (!this.firstScreened) {
      this.firstScreened = true;
      this.note(`C: <first read ${show(bytes, 40)}>`);
      const refused = this.session.firstBytes(bytes);
      const hostile = !this.greeted ? 'EARLY_TALKER' : !this.secure && bytes[0] === 0x16 && (bytes.length < 2 || bytes[1] === 0x03) ? 'TLS_ON_PLAINTEXT_PORT' : undefined;
      invariant((refused.length > 0) === (hostile !== undefined), () => `firstBytes answered ${JSON.stringify(refused)} (expected ${hostile ?? 'nothing'})`);
      if (refused.length > 0) {
        this.batch(refused, 'firstBytes');
        invariant(this.closed && refused.at(-1)?.kind === 'close' && (refused.at(-1) as { reason: string }).reason === hostile, 'screened input not refused with a close');
        return;
      }
    }
    if (this.session.awaiting === 'tls') {
      // The TLS handshake owns the socket now: these bytes never reach the framer.
      this.note(`H: ${bytes.length} bytes to the TLS handshake`);
      return;
    }
    this.framer.push(bytes);
    this.stream = Buffer.concat([this.stream, bytes]);
    if (this.greeted) this.pump();
  }

  /** The host gets round to requests it deferred (a TLS handshake, a verifier, the GSS library finishing). */
  tick(): void {
    if (!this.greeted) return;
    if (this.pending === undefined && !this.closed && !this.relayed && this.choices.chance(0.1)) this.probeIdle();
    let guard = 0;
    while (this.pending !== undefined && guard++ < 64) this.answer();
    this.pump();
  }

  timeout(): void {
    if (this.relayed) {
      invariant(this.session.timeout().length === 0, 'timeout after relay produced actions');
      return;
    }
    this.note('H: preauth timeout');
    const wasClosed = this.closed;
    const out = this.session.timeout();
    if (wasClosed) invariant(out.length === 0, 'timeout after close produced actions');
    else this.batch(out, 'timeout');
    this.answerImmediate();
  }

  /** End of input: answer what is left, as the host eventually does. */
  finish(): void {
    // Sometimes the pre-authentication timer fires while the host is still busy with a request.
    if (this.pending !== undefined && !this.closed && this.choices.chance(0.7)) this.timeout();
    let guard = 0;
    while (this.pending !== undefined && guard++ < 64) {
      this.answer();
      this.pump();
    }
    invariant(this.pending === undefined, 'a request chain that never ends');
    if (this.closed) this.checkClosed();
    else if (this.relayed) {
      invariant(this.session.state === 'RELAY', 'relay without the RELAY state');
      invariant(this.session.timeout().length === 0 && this.session.overflow().length === 0, 'actions after relay');
      this.expectInternal('feedLine after relay', () => this.session.feedLine(Buffer.from('CAPA')));
    } else {
      invariant(this.session.awaiting === undefined, 'still awaiting at the end');
      invariant(this.session.state === 'AUTHORIZATION' || this.session.state === 'SASL', () => `ends in ${this.session.state}`);
    }
  }

  private pump(): void {
    while (!this.closed && !this.relayed && this.session.awaiting === undefined) {
      this.checkLineLimit();
      const r = this.framer.next(this.session.lineLimit);
      if (r === undefined) return;
      if (r.kind === 'overflow') {
        this.note(`C: <line over ${this.session.lineLimit}>`);
        this.batch(this.session.overflow(), 'overflow');
        invariant(this.closed, 'overflow did not close');
        return;
      }
      const line = r.line;
      // Provenance: the line is the next unconsumed bytes of this channel epoch.
      const at = this.consumed;
      invariant(this.stream.subarray(at, at + line.length).equals(line), () => `line ${show(line)} is not the next bytes of the stream`);
      const term = this.stream[at + line.length] === 0x0a ? 1 : this.stream[at + line.length] === 0x0d && this.stream[at + line.length + 1] === 0x0a ? 2 : 0;
      invariant(term > 0, () => `line ${show(line)} not followed by its terminator`);
      this.consumed = at + line.length + term;
      invariant(line.length + term <= this.session.lineLimit, 'a line over the cap was fed');
      const stateBefore = this.session.state;
      this.note(`C: ${show(line, 200)}${stateBefore === 'SASL' ? ' (continuation)' : ''}`);
      this.answeringBearerError = stateBefore === 'SASL' ? this.bearerError : undefined;
      this.bearerError = undefined;
      const out = this.session.feedLine(line, line.length + term);
      const text = line.toString('latin1');
      const http = /^(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PRI) [^ ]+ HTTP\/(?:1\.[0-9]|2\.0)$/.test(text);
      if (http) invariant(out.at(-1)?.kind === 'close', () => `HTTP request line ${show(line)} not refused`);
      const closing = out.at(-1)?.kind === 'close' ? (out.at(-1) as { reason: string }).reason : undefined;
      const overCommandCap = line.length + term > this.opts.maxCommandLine;
      if (stateBefore === 'AUTHORIZATION' && overCommandCap) {
        // Past the command cap only AUTH is read (a bearer initial response); anything else closes, unread.
        const hostile = closing === 'HTTP_ON_POP3_PORT' || closing === 'TLS_ON_PLAINTEXT_PORT';
        if (!/^AUTH(?: |$)/i.test(text)) invariant(closing === 'LINE_TOO_LONG' || hostile, () => `a ${line.length}-octet command read past the ${this.opts.maxCommandLine}-octet cap`);
        else if (closing !== 'LINE_TOO_LONG') sessionReached.hit('long-auth-line');
      }
      // A line the framer delivered within the caps is never refused as too long.
      if (closing === 'LINE_TOO_LONG') invariant(stateBefore === 'AUTHORIZATION' && overCommandCap, () => `a ${line.length}-octet line closed as too long in ${stateBefore}`);
      this.batch(out, 'line', line);
      this.answeringBearerError = undefined;
      this.answerImmediate();
    }
  }

  // ---- the host's answers ----------------------------------------------------

  private answer(): void {
    const req = this.pending;
    if (req === undefined) return;
    this.pending = undefined;
    const closedBefore = this.closed;
    if (!closedBefore && this.choices.chance(0.05)) this.probePending(req);
    const c = this.choices;
    let out: Pop3Action[];
    let source: Source;
    switch (req.kind) {
      case 'startTls': {
        const identity = c.chance(0.5) ? c.pick(IDENTITIES) : undefined;
        this.note(`H: tlsStarted(${identity ?? ''})`);
        this.session.tlsStarted({ externalIdentity: identity });
        if (closedBefore) {
          invariant(this.session.state === 'CLOSED', 'tlsStarted reopened a closed session');
          sessionReached.hit('answer-after-close');
          return;
        }
        invariant(this.session.state === 'AUTHORIZATION' && this.session.tls, 'tlsStarted did not return to AUTHORIZATION on TLS');
        this.secure = true;
        this.identity = identity;
        this.acceptedUser = undefined;
        this.checkLineLimit();
        return;
      }
      case 'authenticate':
        if (c.chance(0.2)) {
          const reply = c.chance(0.7)
            ? c.pick(BACKEND_REPLIES)
            : `+OK ${c.bytes(c.below(BACKEND_TEXT_MAX)).toString('latin1').replace(/[^\x20-\x7e]/g, '.')}`;
          this.note(`H: loginSucceeded(${show(reply)})`);
          out = this.session.loginSucceeded(reply);
          source = 'loginSucceeded';
          if (!closedBefore) {
            const want = /^\+OK(?: [^\r\n\0]*)?$/.test(reply) ? reply : '+OK Logged in';
            invariant(out[0]?.kind === 'reply' && out[0].line === want, () => `login reply ${JSON.stringify(out[0])} for backend ${show(reply)}`);
          }
        } else if (isBearer(req.credentials) && c.chance(0.5)) {
          // RFC 7628 3.2.2: the token was refused; the error goes as a challenge first. As src/server sends it:
          // with AUTH_FAILED and no close (other codes and `close` lose their meaning there: see BEARER_ERROR_CODES).
          const code = c.pick(BEARER_ERROR_CODES);
          const errorChallenge = c.chance(0.8) ? c.pick(ERROR_CHALLENGES) : c.bytes(c.below(GSS_OUTPUT_MAX));
          const text = c.chance(0.3) ? c.bytes(c.below(300)).toString('latin1') : undefined;
          const close = c.chance(0.2);
          this.note(`H: loginFailed(${code}, errorChallenge ${errorChallenge.length} bytes${close ? ', close' : ''})`);
          out = this.session.loginFailed(code, { errorChallenge, ...(text !== undefined ? { text } : {}), ...(close ? { close } : {}) });
          source = 'loginFailed';
          if (!closedBefore) {
            invariant(out.length === 1 && out[0]?.kind === 'reply' && out[0].line === `+ ${errorChallenge.toString('base64')}`, 'error challenge not sent as is');
            invariant(this.session.state === 'SASL', 'no continuation awaited after the error challenge');
            this.bearerError = { code, text, close };
            sessionReached.hit('bearer-error');
          }
        } else {
          const code = c.chance(0.5) ? 'AUTH_FAILED' : c.pick(ALL_CODES);
          const opts: { text?: string; close?: boolean } = {};
          if (c.chance(0.3)) opts.text = c.chance(0.5) ? 'Auth-Status: nope\r\n-ERR x' : c.bytes(c.below(400)).toString('latin1');
          if (c.chance(0.2)) opts.close = true;
          this.note(`H: loginFailed(${code}${opts.close ? ', close' : ''})`);
          out = this.session.loginFailed(code, opts);
          source = 'loginFailed';
          if (!closedBefore && (ERRORS[code].close || opts.close)) invariant(this.session.state === 'CLOSED', () => `loginFailed(${code}) did not close`);
          this.lastFailCode = code;
        }
        break;
      case 'saslStep':
        if (c.chance(0.15)) {
          const code = c.chance(0.5) ? 'AUTH_FAILED' : c.pick(ALL_CODES);
          this.note(`H: saslFailed(${code})`);
          out = this.session.saslFailed(code);
          source = 'saslFailed';
          this.lastFailCode = code;
          sessionReached.hit('saslFailed');
        } else if (c.chance(req.data.subarray(0, 2).toString('latin1') === 'c=' ? 0.2 : 0.75)) {
          // The fake exchange mostly answers a client-first with a challenge and a client-final with its proof.
          const challenge = c.chance(0.2) ? Buffer.alloc(0) : c.bytes(1 + c.below(GSS_OUTPUT_MAX));
          this.note(`H: saslContinue(${challenge.length} bytes)`);
          out = this.session.saslContinue(challenge);
          source = 'saslContinue';
          if (!closedBefore) {
            invariant(out.length === 1 && out[0]?.kind === 'reply' && out[0].line === `+ ${challenge.toString('base64')}`, 'SCRAM challenge not sent as is');
            sessionReached.hit('saslContinue');
          }
        } else {
          const username = c.pick(SCRAM_USERS);
          const requestedUser = c.chance(0.6) ? '' : c.chance(0.5) ? username : c.pick(SCRAM_USERS);
          const final = c.bytes(c.below(GSS_OUTPUT_MAX));
          this.note(`H: saslProved(${show(username)}, ${show(requestedUser)}, ${final.length} bytes)`);
          out = this.session.saslProved({ username, requestedUser, final });
          source = 'saslProved';
          if (!closedBefore) {
            invariant(out.length === 1 && out[0]?.kind === 'reply' && out[0].line === `+ ${final.toString('base64')}`, 'server-final message not sent as is');
            invariant(this.session.username === username, 'SCRAM logs another name');
            this.scramProved = { mech: req.mechanism, username, requestedUser };
            sessionReached.hit('saslProved');
          }
        }
        break;
      case 'gssAccept':
      case 'gssWrap':
      case 'gssUnwrap':
        if (c.chance(0.1)) {
          const code = c.chance(0.5) ? 'AUTH_FAILED' : c.pick(ALL_CODES);
          this.note(`H: gssFailed(${code})`);
          out = this.session.gssFailed(code);
          source = 'gssFailed';
          this.lastFailCode = code;
          sessionReached.hit('gssFailed');
        } else if (req.kind === 'gssAccept') {
          const done = c.chance(0.55);
          const output = c.chance(0.5) ? Buffer.alloc(0) : c.bytes(1 + c.below(GSS_OUTPUT_MAX));
          const principal = c.chance(0.8) ? c.pick(PRINCIPALS.slice(0, 2)) : c.pick(PRINCIPALS);
          this.note(`H: gssAcceptResult(done=${done}, ${output.length} bytes, ${show(principal)})`);
          out = this.session.gssAcceptResult({ done, output, principal: done || c.chance(0.5) ? principal : undefined });
          if (done && !FORBIDDEN.test(principal)) this.gssPrincipal = principal;
          source = 'gssAcceptResult';
          if (!closedBefore && !done) invariant(out.length === 1 && out[0]?.kind === 'reply' && out[0].line === `+ ${output.toString('base64')}`, 'not-done accept did not send its token');
        } else if (req.kind === 'gssWrap') {
          const token = c.bytes(c.below(GSS_OUTPUT_MAX));
          this.note(`H: gssWrapped(${token.length} bytes)`);
          out = this.session.gssWrapped(token);
          source = 'gssWrapped';
          if (!closedBefore) invariant(out.length === 1 && out[0]?.kind === 'reply' && out[0].line === `+ ${token.toString('base64')}`, 'wrapped offer not sent as is');
        } else {
          const data = c.chance(0.5) ? c.pick(LAYER_ANSWERS.slice(0, 3)) : c.chance(0.8) ? c.pick(LAYER_ANSWERS) : c.bytes(c.below(16));
          this.note(`H: gssUnwrapped(${data.toString('hex')})`);
          out = this.session.gssUnwrapped(data);
          source = 'gssUnwrapped';
        }
        break;
    }
    if (closedBefore) {
      invariant(out.length === 0, () => `${source} after close produced ${JSON.stringify(out)}`);
      sessionReached.hit('answer-after-close');
      return;
    }
    this.batch(out, source);
    this.answerImmediate();
  }

  // ---- contract probes -----------------------------------------------------

  private snapshot(): string {
    const s = this.session;
    return JSON.stringify([s.state, s.awaiting, s.counters, s.lineLimit, s.tls, s.username, s.gssInProgress]);
  }

  /** A host-contract violation must throw GatewayError('INTERNAL') and change nothing. */
  private expectInternal(what: string, call: () => unknown): void {
    const before = this.snapshot();
    let thrown: unknown;
    try {
      call();
    } catch (err) {
      thrown = err;
    }
    invariant(thrown instanceof GatewayError && thrown.code === 'INTERNAL', () => `${what}: expected GatewayError(INTERNAL), got ${String(thrown)}`);
    invariant(this.snapshot() === before, () => `${what}: the refused call changed the session`);
    sessionReached.hit('probe');
  }

  private probePending(req: Request): void {
    const s = this.session;
    const c = this.choices;
    this.note(`H: probe while awaiting ${s.awaiting}`);
    if (c.chance(0.5)) {
      this.expectInternal('feedLine while awaiting', () => s.feedLine(Buffer.from('CAPA')));
      return;
    }
    switch (req.kind) {
      case 'startTls':
        this.expectInternal('loginSucceeded while awaiting tls', () => s.loginSucceeded('+OK'));
        break;
      case 'authenticate':
        this.expectInternal('gssFailed while awaiting login', () => s.gssFailed('AUTH_FAILED'));
        break;
      case 'gssAccept':
        this.expectInternal('gssWrapped while awaiting accept', () => s.gssWrapped(Buffer.alloc(1)));
        this.expectInternal('done without principal', () => s.gssAcceptResult({ done: true, output: Buffer.alloc(0) }));
        break;
      case 'gssWrap':
        this.expectInternal('gssUnwrapped while awaiting wrap', () => s.gssUnwrapped(Buffer.from([1, 0, 0, 0])));
        break;
      case 'gssUnwrap':
        this.expectInternal('tlsStarted while awaiting unwrap', () => s.tlsStarted());
        this.expectInternal('saslContinue while awaiting unwrap', () => s.saslContinue(Buffer.alloc(1)));
        break;
      case 'saslStep':
        this.expectInternal('gssFailed while awaiting sasl', () => s.gssFailed('AUTH_FAILED'));
        this.expectInternal('loginFailed while awaiting sasl', () => s.loginFailed('AUTH_FAILED'));
        this.expectInternal('saslProved with an unusable name', () =>
          c.chance(0.5)
            ? s.saslProved({ username: c.pick(BAD_SCRAM_USERS), requestedUser: '', final: Buffer.alloc(1) })
            : s.saslProved({ username: 'alice', requestedUser: c.pick(BAD_SCRAM_USERS.slice(1)), final: Buffer.alloc(1) }),
        );
        break;
    }
    if (req.kind !== 'saslStep') {
      this.expectInternal(`saslFailed while awaiting ${s.awaiting}`, () => s.saslFailed('AUTH_FAILED'));
      this.expectInternal(`saslProved while awaiting ${s.awaiting}`, () => s.saslProved({ username: 'alice', requestedUser: '', final: Buffer.alloc(0) }));
    }
  }

  private probeIdle(): void {
    const s = this.session;
    this.note('H: probe while idle');
    this.expectInternal('loginSucceeded without a login', () => s.loginSucceeded('+OK'));
    this.expectInternal('tlsStarted without STLS', () => s.tlsStarted());
    this.expectInternal('gssFailed without GSS', () => s.gssFailed('AUTH_FAILED'));
    this.expectInternal('saslContinue without a step', () => s.saslContinue(Buffer.alloc(1)));
    this.expectInternal('saslProved without a step', () => s.saslProved({ username: 'alice', requestedUser: '', final: Buffer.alloc(0) }));
    this.expectInternal('saslFailed without a step', () => s.saslFailed('AUTH_FAILED'));
  }

  // ---- checking one batch of actions ---------------------------------------

  /** Whether a mechanism is configured and accepted on the channel as it stands (the CAPA rules). */
  private usable(m: SaslMechanism): boolean {
    const passwordOk = this.secure || this.opts.allowPlaintextAuth;
    if (!this.opts.saslMechanisms.includes(m) || this.kpop) return false;
    switch (m) {
      case 'EXTERNAL':
        return this.secure && this.identity !== undefined;
      case 'SCRAM-SHA-256-PLUS':
        return this.secure;
      case 'GSSAPI':
        return true;
      case 'PLAIN':
      case 'LOGIN':
      case 'CRAM-MD5':
      case 'OAUTHBEARER':
      case 'XOAUTH2':
      case 'SCRAM-SHA-256':
        return passwordOk;
    }
  }

  private checkLineLimit(): void {
    const st = this.session.state;
    const bearer = this.usable('OAUTHBEARER') || this.usable('XOAUTH2');
    const want =
      st === 'SASL' || st === 'GSS_PENDING' || st === 'SASL_PENDING'
        ? this.opts.maxSaslLine
        : st === 'AUTHORIZATION' && bearer
          ? Math.max(this.opts.maxCommandLine, this.opts.maxSaslLine)
          : this.opts.maxCommandLine;
    invariant(this.session.lineLimit === want, () => `lineLimit ${this.session.lineLimit} in ${st}, want ${want}`);
  }

  private batch(actions: Pop3Action[], source: Source, line?: Buffer): void {
    const replies: string[] = [];
    actions.forEach((a, i) => {
      const last = i === actions.length - 1;
      if (a.kind === 'reply') {
        this.note(`S: ${show(a.line, 200)}`);
        invariant(!FORBIDDEN.test(a.line), () => `reply with CR/LF/NUL: ${show(a.line)}`);
        invariant(Buffer.byteLength(a.line, 'utf8') + 2 <= 512, () => `reply of ${Buffer.byteLength(a.line, 'utf8') + 2} octets: ${show(a.line)}`);
        replies.push(a.line);
      } else {
        this.note(`A: ${a.kind}${a.kind === 'close' ? ` ${a.reason}` : ''}`);
        invariant(last, () => `${a.kind} is not the last action of its batch`);
      }
    });

    // Shape: at most one status line, or a list head, items and '.'.
    const status = replies[0];
    if (status !== undefined) {
      invariant(/^(\+OK( |$)|-ERR |\+ )/.test(status), () => `bad status line ${show(status)}`);
      if (LIST_HEADS.has(status)) {
        invariant(replies.length >= 2 && replies.at(-1) === '.', 'list not terminated by "."');
        for (const item of replies.slice(1, -1)) invariant(LIST_ITEM.test(item), () => `bad list item ${show(item)}`);
        this.checkList(status, replies.slice(1, -1));
      } else {
        invariant(replies.length === 1, () => `${replies.length} reply lines for one event: ${replies.map((r) => show(r)).join(' | ')}`);
      }
    } else if (source !== 'greet') {
      const kind = actions.at(-1)?.kind;
      invariant(
        kind === 'authenticate' || kind === 'gssAccept' || kind === 'gssWrap' || kind === 'gssUnwrap' || kind === 'saslStep',
        () => `no reply and no request after ${source}: ${JSON.stringify(actions)}`,
      );
    }
    if (source === 'overflow' || source === 'timeout') {
      const code = source === 'overflow' ? 'LINE_TOO_LONG' : 'PREAUTH_TIMEOUT';
      invariant(status === errorReply(code) && actions.at(-1)?.kind === 'close', () => `${source} answered ${JSON.stringify(actions)}`);
    }

    const closing = actions.at(-1)?.kind === 'close' ? (actions.at(-1) as { reason: string }).reason : undefined;
    this.countBudgets(status, source, closing);

    const lastAction = actions.at(-1);
    for (const a of actions) {
      switch (a.kind) {
        case 'reply':
          break;
        case 'close':
          invariant(this.session.state === 'CLOSED', 'close without the CLOSED state');
          this.closed = true;
          sessionReached.hit(`close:${a.reason}`);
          break;
        case 'startTls': {
          invariant(!this.secure && this.opts.stlsAvailable && !this.kpop, 'startTls where STLS is not offered');
          invariant(status === '+OK Begin TLS negotiation', 'startTls without its +OK');
          invariant(this.session.awaiting === 'tls', 'startTls without awaiting tls');
          // The host's duty: nothing received in plaintext after STLS is ever interpreted.
          const left = this.stream.length - this.consumed;
          const discarded = this.framer.discardBuffered();
          invariant(discarded === left, () => `discarded ${discarded} of ${left} pending bytes`);
          invariant(this.framer.bufferedBytes === 0, 'bytes survive the discard');
          if (discarded > 0) sessionReached.hit('tls-discard');
          this.stream = Buffer.alloc(0);
          this.consumed = 0;
          this.request(a);
          sessionReached.hit('startTls');
          break;
        }
        case 'authenticate':
          invariant(this.session.awaiting === 'login', 'authenticate without awaiting login');
          this.checkCredentials(a.credentials);
          if (a.credentials.mechanism === 'SCRAM-SHA-256' || a.credentials.mechanism === 'SCRAM-SHA-256-PLUS') {
            // RFC 5034 4: only the client's empty answer to the server-final message completes the exchange.
            invariant(source === 'line' && line !== undefined && (line.length === 0 || line.toString('latin1') === '='), () => `SCRAM login after ${source} ${show(line ?? '')}`);
          }
          this.request(a);
          break;
        case 'saslStep': {
          invariant(this.session.awaiting === 'sasl', 'saslStep without awaiting sasl');
          invariant(this.usable(a.mechanism), () => `saslStep for ${a.mechanism}, not usable on this channel`);
          invariant(source === 'line' && line !== undefined, () => `saslStep after ${source}`);
          // The client's base64 (the AUTH initial response, or the whole continuation line), decoded.
          const sent = line.toString('latin1').split(' ').at(-1) ?? '';
          invariant(Buffer.from(sent, 'base64').equals(a.data), () => `saslStep data ${show(a.data)} for line ${show(line)}`);
          invariant(a.first === (this.scramSteps === 0), () => `saslStep first=${a.first} after ${this.scramSteps} steps`);
          if (this.scramSteps > 0) invariant(a.mechanism === this.scramMech, 'mechanism changed within an exchange');
          this.scramMech = a.mechanism;
          this.scramSteps++;
          this.request(a);
          sessionReached.hit('saslStep');
          break;
        }
        case 'gssAccept':
        case 'gssWrap':
        case 'gssUnwrap':
          invariant(this.session.awaiting === 'gss', `${a.kind} without awaiting gss`);
          invariant(this.opts.saslMechanisms.includes('GSSAPI') && !this.kpop, `${a.kind} without GSSAPI enabled`);
          if (a.kind === 'gssAccept') {
            invariant(a.token.length > 0, 'empty context token');
            invariant(a.first === (this.gssAccepts === 0), () => `gssAccept first=${a.first} after ${this.gssAccepts} accepts`);
            this.gssAccepts++;
          } else if (a.kind === 'gssWrap') {
            invariant(a.data.equals(Buffer.from([1, 0, 0, 0])), 'unexpected security-layer offer');
          } else {
            invariant(a.token.length > 0, 'empty wrapped token');
          }
          this.request(a);
          sessionReached.hit(a.kind);
          break;
        case 'relay': {
          invariant(source === 'loginSucceeded' && this.session.state === 'RELAY', 'relay outside a login success');
          // Bytes pipelined behind the login go to the backend, all and in order.
          const rest = this.framer.takeBuffered();
          invariant(rest.equals(this.stream.subarray(this.consumed)), 'relay hand-off lost or reordered bytes');
          this.relayed = true;
          sessionReached.hit('relay');
          break;
        }
      }
    }

    const st = this.session.state;
    if (!this.closed) {
      // A `+ ` line exactly when a continuation is awaited.
      if (status !== undefined) invariant(status.startsWith('+ ') === (st === 'SASL'), () => `status ${show(status)} in state ${st}`);
      if (lastAction === undefined || lastAction.kind === 'reply') invariant(this.session.awaiting === undefined, 'awaiting without a request');
      if (st === 'AUTHORIZATION') invariant(!this.session.gssInProgress, 'GSS exchange in progress in AUTHORIZATION');
      this.checkLineLimit();
    }
    if (st !== 'SASL' && st !== 'GSS_PENDING') {
      this.gssAccepts = 0;
      if (st !== 'LOGIN_PENDING') this.gssPrincipal = undefined;
    }
    if (st !== 'SASL' && st !== 'SASL_PENDING') {
      this.scramSteps = 0;
      this.scramMech = undefined;
      if (st !== 'LOGIN_PENDING') this.scramProved = undefined;
    }
    if (st !== 'SASL') this.bearerError = undefined;
    if (source === 'line' && status === '+OK' && line !== undefined && /^user /i.test(line.toString('latin1'))) {
      this.acceptedUser = line.subarray(5).toString('utf8');
    }
    if (source === 'line' && line !== undefined && /^capa$/i.test(line.toString('latin1'))) sessionReached.hit('capa');
  }

  /** A request to the host: answered right after its batch, or deferred to a later tick. */
  private request(a: Request): void {
    this.pending = a;
    this.deferred = !this.choices.chance(0.65);
    if (this.deferred) {
      this.note(`H: defers ${a.kind}`);
      sessionReached.hit('deferred');
    }
  }

  /** Answers the requests the host handles at once (a GSS answer may bring the next request). */
  private answerImmediate(): void {
    let guard = 0;
    while (this.pending !== undefined && !this.deferred && guard++ < 64) this.answer();
  }

  /** Protocol errors and failed logins, counted from the replies, never over budget. */
  private countBudgets(status: string | undefined, source: Source, closing: string | undefined): void {
    if (status === undefined || !status.startsWith('-ERR ')) return;
    const is = (code: ErrorCode): boolean => status === errorReply(code);
    let spent: 'error' | 'auth' | 'none';
    switch (source) {
      case 'line': {
        // Hostile input (HTTP, a ClientHello) is refused with a close of its own, outside the budgets.
        const hostile = closing === 'HTTP_ON_POP3_PORT' || closing === 'TLS_ON_PLAINTEXT_PORT';
        const bearerError = this.answeringBearerError;
        if (bearerError !== undefined && !hostile) {
          // Whatever answers a bearer error challenge gets the host's -ERR, counted as loginFailed counts it.
          invariant(status === errorReply(bearerError.code, bearerError.text) || is('TOO_MANY_AUTH_ATTEMPTS'), () => `error challenge answered with ${show(status)}`);
          spent = bearerError.code === 'AUTH_FAILED' ? 'auth' : 'none';
          if (bearerError.close) invariant(closing !== undefined, 'an error challenge asked to close did not close');
        } else if (closing !== undefined && closing !== 'TOO_MANY_ERRORS' && closing !== 'TOO_MANY_AUTH_ATTEMPTS') spent = 'none';
        else spent = is('AUTH_FAILED') || is('TOO_MANY_AUTH_ATTEMPTS') ? 'auth' : 'error';
        break;
      }
      case 'gssUnwrapped':
        spent = is('UNSUPPORTED_SECURITY_LAYER') || is('TOO_MANY_AUTH_ATTEMPTS') ? 'auth' : 'error';
        break;
      case 'gssAcceptResult':
        invariant(is('AUTH_FAILED') || is('TOO_MANY_AUTH_ATTEMPTS'), () => `gssAcceptResult answered ${show(status)}`);
        spent = 'auth';
        break;
      case 'gssFailed':
      case 'saslFailed':
        spent = SERVER_TROUBLE(this.lastFailCode) ? 'none' : 'auth';
        break;
      case 'loginFailed':
        spent = this.lastFailCode === 'AUTH_FAILED' ? 'auth' : 'none';
        break;
      default:
        spent = 'none';
    }
    if (spent === 'error') {
      this.errors++;
      invariant(this.errors <= this.opts.maxErrors, () => `${this.errors} protocol errors, limit ${this.opts.maxErrors}`);
      if (this.errors === this.opts.maxErrors) invariant(is('TOO_MANY_ERRORS') && this.session.state === 'CLOSED', 'error budget spent without closing');
    } else if (spent === 'auth') {
      this.authFailures++;
      invariant(this.authFailures <= this.opts.maxAuthAttempts, () => `${this.authFailures} failed logins, limit ${this.opts.maxAuthAttempts}`);
      if (this.authFailures === this.opts.maxAuthAttempts) invariant(is('TOO_MANY_AUTH_ATTEMPTS') && this.session.state === 'CLOSED', 'login budget spent without closing');
    }
    const counters = this.session.counters;
    invariant(counters.errors === this.errors && counters.authFailures === this.authFailures, () => `counters ${JSON.stringify(counters)} vs replies ${this.errors}/${this.authFailures}`);
  }

  /** CAPA and AUTH lists advertise exactly what this channel accepts. */
  private checkList(head: string, items: string[]): void {
    const passwordOk = this.secure || this.opts.allowPlaintextAuth;
    const usable = (m: SaslMechanism): boolean => this.usable(m);
    const mechs = head === '+OK Available mechanisms' ? items : (items.find((i) => i.startsWith('SASL '))?.slice(5).split(' ') ?? []);
    invariant(new Set(mechs).size === mechs.length, 'a mechanism listed twice');
    for (const m of SASL_MECHANISMS) invariant(mechs.includes(m) === usable(m), () => `${m} ${mechs.includes(m) ? 'listed' : 'not listed'} (${head})`);
    if (head === '+OK Capability list follows') {
      invariant(items.includes('USER') === (passwordOk || this.kpop), 'USER capability wrong for the channel');
      invariant(items.includes('STLS') === (!this.secure && this.opts.stlsAvailable && !this.kpop), 'STLS capability wrong for the channel');
    }
  }

  private checkCredentials(c: LoginCredentials): void {
    const fields = Object.values(c).filter((v): v is string => typeof v === 'string');
    invariant(!fields.some((f) => FORBIDDEN.test(f)), () => `credentials with CR/LF/NUL: ${JSON.stringify(c)}`);
    const passwordOk = this.secure || this.opts.allowPlaintextAuth;
    const configured = (m: SaslMechanism): boolean => this.opts.saslMechanisms.includes(m);
    sessionReached.hit(`auth:${c.mechanism}`);
    switch (c.mechanism) {
      case 'USER':
      case 'PLAIN':
      case 'LOGIN':
        invariant(!this.kpop && passwordOk, () => `${c.mechanism} login on a plaintext channel`);
        invariant(c.username !== '' && c.password !== '', 'empty user name or password');
        if (c.mechanism === 'USER') invariant(c.username === this.acceptedUser, () => `PASS for ${show(c.username)}, accepted USER ${show(this.acceptedUser ?? '(none)')}`);
        else invariant(configured(c.mechanism), `${c.mechanism} not enabled`);
        if (c.authzid !== undefined) invariant(c.mechanism === 'PLAIN' && c.authzid === c.username, 'authzid other than the user');
        break;
      case 'APOP':
      case 'CRAM-MD5':
        invariant(!this.kpop && passwordOk, () => `${c.mechanism} login on a plaintext channel`);
        invariant(c.username !== '' && /^[0-9a-f]{32}$/.test(c.response), 'bad name or digest');
        if (c.mechanism === 'APOP') invariant(this.apopOn && c.challenge === this.opts.apopTimestamp, 'APOP against the wrong timestamp');
        else invariant(configured('CRAM-MD5') && c.challenge === this.challenges.at(-1), 'CRAM-MD5 against the wrong challenge');
        break;
      case 'GSSAPI':
        invariant(!this.kpop && configured('GSSAPI'), 'GSSAPI not enabled');
        invariant(c.principal === this.gssPrincipal, () => `GSSAPI principal ${show(c.principal)}, acceptor said ${show(this.gssPrincipal ?? '(none)')}`);
        break;
      case 'KPOP':
        invariant(this.kpop && c.principal === this.opts.kerberosPrincipal, 'KPOP credentials outside KPOP');
        invariant(c.requestedUser !== '' && c.requestedUser === this.acceptedUser, 'KPOP for a user never accepted');
        break;
      case 'EXTERNAL':
        invariant(!this.kpop && configured('EXTERNAL') && this.secure && this.identity !== undefined, 'EXTERNAL without TLS and a certificate');
        invariant(this.session.username === this.identity, 'EXTERNAL logs another name');
        break;
      case 'OAUTHBEARER':
      case 'XOAUTH2':
        invariant(this.usable(c.mechanism), () => `${c.mechanism} login where it is not usable`);
        invariant(/^[A-Za-z0-9\-._~+/]+=*$/.test(c.token), () => `bearer token ${show(c.token)} is no RFC 6750 b64token`);
        if (c.requestedUser !== '') invariant(this.session.username === c.requestedUser, 'bearer login logs another name');
        break;
      case 'SCRAM-SHA-256':
      case 'SCRAM-SHA-256-PLUS': {
        invariant(this.usable(c.mechanism), () => `${c.mechanism} login where it is not usable`);
        const p = this.scramProved;
        invariant(
          p !== undefined && p.mech === c.mechanism && p.username === c.username && p.requestedUser === c.requestedUser,
          () => `SCRAM credentials ${JSON.stringify(c)}, the exchange proved ${JSON.stringify(p ?? null)}`,
        );
        invariant(this.session.username === c.username, 'SCRAM logs another name');
        break;
      }
    }
  }

  /** After close: nothing, whatever the host calls. */
  private checkClosed(): void {
    const s = this.session;
    invariant(s.state === 'CLOSED' && s.awaiting === undefined, 'closed session still waiting');
    const none = (what: string, out: Pop3Action[]): void => invariant(out.length === 0, () => `${what} after close: ${JSON.stringify(out)}`);
    none('feedLine', s.feedLine(Buffer.from('CAPA')));
    none('feedLine', s.feedLine(Buffer.from('USER alice')));
    none('overflow', s.overflow());
    none('timeout', s.timeout());
    none('greet', s.greet());
    none('loginSucceeded', s.loginSucceeded('+OK'));
    none('loginFailed', s.loginFailed('AUTH_FAILED'));
    none('gssAcceptResult', s.gssAcceptResult({ done: false, output: Buffer.alloc(0) }));
    none('gssWrapped', s.gssWrapped(Buffer.alloc(0)));
    none('gssUnwrapped', s.gssUnwrapped(Buffer.alloc(0)));
    none('gssFailed', s.gssFailed('AUTH_FAILED'));
    none('saslContinue', s.saslContinue(Buffer.alloc(1)));
    none('saslProved', s.saslProved({ username: 'alice', requestedUser: '', final: Buffer.alloc(0) }));
    none('saslFailed', s.saslFailed('AUTH_FAILED'));
    s.tlsStarted();
    invariant(s.state === 'CLOSED', 'reopened after close');
  }
}

/** Runs one client against one session; any failure carries the transcript. */
function runSession(fo: FuzzOptions, client: ClientInput, choiceValues: readonly number[]): void {
  let host: FuzzHost | undefined;
  try {
    host = new FuzzHost(fo, new Choices(choiceValues));
    const lines = client.groups.flat();
    const bytes = mutate(Buffer.concat(lines), client.mutations);
    if (client.mutations.length > 0) sessionReached.hit('mutated');
    let cuts = client.chunking.cuts;
    if (client.interactive) {
      let at = 0;
      cuts = [...cuts, ...lines.map((l) => (at += l.length))];
    }
    const reads = chunk(bytes, { ...client.chunking, cuts });
    const ticks = new Set(client.ticks.map((t) => t % (reads.length + 1)));
    const timeoutAt = client.timeoutAt === undefined ? -1 : client.timeoutAt % (reads.length + 1);
    if (fo.earlyReads === 0) host.greet();
    reads.forEach((r, i) => {
      host?.read(r);
      if (i + 1 === fo.earlyReads) host?.greet();
      if (ticks.has(i)) host?.tick();
      if (i === timeoutAt) host?.timeout();
    });
    if (fo.earlyReads > reads.length) host.greet();
    host.tick();
    host.finish();
  } catch (err) {
    const transcript = host?.transcript.slice(-60).join('\n  ') ?? '(no session)';
    const what = err instanceof Error ? (err.name === 'InvariantError' ? err.message : (err.stack ?? err.message)) : String(err);
    throw new Error(`${what}\n  --- transcript (last 60) ---\n  ${transcript}`);
  }
}

describe('fuzz: Pop3Session behind a LineFramer', () => {
  fuzzIt(
    'session: random and mutated command streams keep every protocol invariant',
    fc.property(optionsArb, clientArb, choicesArb, (fo, client, choices) => runSession(fo, client, choices)),
    () => sessionReached,
  );
});

// ---- values outside the host contract -------------------------------------------

const sessionOptionsBase: Pop3SessionOptions = {
  tls: false,
  stlsAvailable: true,
  allowPlaintextAuth: false,
  saslMechanisms: [],
  greeting: 'popgate ready',
  backendCapabilities: [],
  maxAuthAttempts: 3,
  maxErrors: 5,
  maxCommandLine: 255,
  maxSaslLine: 8192,
};
const MSG_ID = /^<[\x21-\x3b\x3d\x3f\x41-\x7e]+@[\x21-\x3b\x3d\x3f\x41-\x7e]+>$/;
const validChallenge = (s: string): boolean => s.length <= 200 && MSG_ID.test(s);

const badNumberArb = fc.oneof(
  { weight: 30, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53) },
);
const challengeTextArb = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...APOP_TIMESTAMPS, '<n.1@host>') },
  fc.constantFrom(...APOP_TIMESTAMPS, '<a@b>', '<a@b@c>', '<a b@c>', '<@b>', '<a@>', 'a@b', '<a<@b>', `<${'7'.repeat(197)}@h>`, '<\u00e9@b>', ''),
  fc.string({ maxLength: 12 }).map((s) => `<${s}>`),
);
/** Mostly absent, sometimes valid, sometimes not. */
const rarely = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const contractReached = new Reached(['constructed', 'RangeError', 'cram-refused', 'cram-ok', 'identity-refused']);

describe('fuzz: Pop3Session host contract', () => {
  fuzzIt(
    'session: options and host values outside the contract are refused as documented, and only those',
    fc.property(
      fc.record({
        tls: fc.boolean(),
        maxAuthAttempts: badNumberArb,
        maxErrors: badNumberArb,
        maxCommandLine: badNumberArb,
        maxSaslLine: badNumberArb,
        kerberosPrincipal: rarely(fc.constantFrom('carol@EXAMPLE.COM', 'carol@EXAMPLE.COM', '', 'a\r\nb', 'nul\0')),
        apopTimestamp: rarely(challengeTextArb),
        externalIdentity: rarely(fc.constantFrom('dave', 'dave', '', 'a\nb', '\0')),
        saslMechanisms: fc.shuffledSubarray([...SASL_MECHANISMS]),
        factory: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: challengeTextArb }),
        tlsIdentity: fc.constantFrom('dave', '', 'a\r', undefined),
      }),
      (o) => {
        const { factory, tlsIdentity, ...rest } = o;
        const options: Pop3SessionOptions = {
          ...sessionOptionsBase,
          ...rest,
          stlsAvailable: true,
          ...(factory !== undefined ? { challengeFactory: () => factory } : {}),
        };
        const clean = (s: string): boolean => s !== '' && !FORBIDDEN.test(s);
        const valid =
          [o.maxAuthAttempts, o.maxErrors, o.maxCommandLine, o.maxSaslLine].every((n) => Number.isInteger(n) && n >= 1) &&
          (o.kerberosPrincipal === undefined || clean(o.kerberosPrincipal)) &&
          (o.apopTimestamp === undefined || validChallenge(o.apopTimestamp)) &&
          (!o.saslMechanisms.includes('CRAM-MD5') || factory !== undefined) &&
          (o.externalIdentity === undefined || (clean(o.externalIdentity) && o.tls));
        let s: Pop3Session;
        try {
          s = new Pop3Session(options);
        } catch (err) {
          invariant(err instanceof RangeError, () => `constructor threw ${String(err)}`);
          invariant(!valid, () => `valid options refused: ${String(err)}`);
          contractReached.hit('RangeError');
          return;
        }
        invariant(valid, 'invalid options accepted');
        contractReached.hit('constructed');
        invariant(s.greet().length === 1, 'no greeting');
        if (o.kerberosPrincipal !== undefined) return;
        // A challengeFactory value not of the msg-id form is a host bug: GatewayError('INTERNAL'), nothing sent.
        if (o.saslMechanisms.includes('CRAM-MD5') && (o.tls || o.maxErrors > 1)) {
          let out: Pop3Action[] | undefined;
          try {
            out = s.feedLine(Buffer.from('AUTH CRAM-MD5'));
          } catch (err) {
            invariant(err instanceof GatewayError && err.code === 'INTERNAL', () => `AUTH CRAM-MD5 threw ${String(err)}`);
          }
          if (o.tls) {
            invariant((out === undefined) === !validChallenge(factory ?? ''), () => `challenge ${show(factory ?? '')}: ${JSON.stringify(out)}`);
            contractReached.hit(out === undefined ? 'cram-refused' : 'cram-ok');
          }
          if (out === undefined || s.state !== 'AUTHORIZATION') return;
        }
        // tlsStarted with an unusable identity: RangeError.
        if (!o.tls && s.state === 'AUTHORIZATION') {
          const r = s.feedLine(Buffer.from('STLS'));
          if (s.awaiting !== 'tls') return;
          invariant(r.at(-1)?.kind === 'startTls', 'STLS did not start TLS');
          try {
            s.tlsStarted({ externalIdentity: tlsIdentity });
            invariant(tlsIdentity === undefined || clean(tlsIdentity), 'unusable identity accepted');
          } catch (err) {
            invariant(err instanceof RangeError && tlsIdentity !== undefined && !clean(tlsIdentity), () => `tlsStarted threw ${String(err)}`);
            contractReached.hit('identity-refused');
          }
        }
      },
    ),
    () => contractReached,
  );
});
