/**
 * The SCRAM-SHA-256(-PLUS) server exchange (src/auth/scram.ts), checked
 * against RFC 7677's test vector and against a client written here on
 * node:crypto alone (no code shared with the server side).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SCRAM_DEFAULT_ITERATIONS,
  decodeBase64Canonical,
  decodeSaslName,
  deriveScramCredentials,
  encodeSaslName,
  randomScramNonce,
  saslprepName,
  scramDummyCredentials,
  scramPasswordBytes,
  scramSaltedPasswordSync,
  startScram,
  tlsExporterData,
  tlsServerEndPointData,
  type ScramChannel,
  type ScramCredentials,
  type ScramFinal,
  type ScramStart,
  type ScramStartOptions,
} from '../../src/auth/scram.js';

// ---- an independent client (RFC 5802 section 3) -------------------------------

const H = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const HMAC = (key: Buffer, s: string | Buffer): Buffer => createHmac('sha256', key).update(s).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((x, i) => x ^ (b[i] as number)));

/** Server-side keys computed the client's way, for tests that need a user entry. */
function credentialsFor(password: string, salt: Buffer, iterations = 4096): ScramCredentials {
  const salted = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  return { iterations, salt, storedKey: H(HMAC(salted, 'Client Key')), serverKey: HMAC(salted, 'Server Key') };
}

interface ClientOptions {
  /** Already escaped saslname. */
  readonly name: string;
  readonly password: string;
  readonly nonce?: string;
  /** gs2 header, default 'n,,'. */
  readonly gs2?: string;
  /** Channel-binding data appended to the gs2 header in c=. */
  readonly cbData?: Buffer;
  /** An extension at the end of the client-first message (`x=value`). */
  readonly firstExtension?: string;
}

interface Tamper {
  readonly nonce?: string;
  readonly cb?: string;
  readonly extension?: string;
}

class TestClient {
  readonly nonce: string;
  readonly gs2: string;
  readonly bare: string;
  expectedServerFinal = '';

  constructor(private readonly o: ClientOptions) {
    this.nonce = o.nonce ?? randomBytes(18).toString('base64');
    this.gs2 = o.gs2 ?? 'n,,';
    this.bare = `n=${o.name},r=${this.nonce}${o.firstExtension !== undefined ? `,${o.firstExtension}` : ''}`;
  }

  first(): Buffer {
    return Buffer.from(this.gs2 + this.bare, 'utf8');
  }

  /** The client-final message for this server-first; `tamper` changes the parts before the proof. */
  final(serverFirst: Buffer, tamper: Tamper = {}): Buffer {
    const sf = serverFirst.toString('utf8');
    const fields = Object.fromEntries(sf.split(',').map((f) => [f.slice(0, 1), f.slice(2)]));
    const nonce = fields.r!;
    expect(nonce.startsWith(this.nonce)).toBe(true);
    const salt = Buffer.from(fields.s!, 'base64');
    const iterations = Number(fields.i);
    const salted = pbkdf2Sync(Buffer.from(this.o.password, 'utf8'), salt, iterations, 32, 'sha256');
    const clientKey = HMAC(salted, 'Client Key');
    const cb = tamper.cb ?? Buffer.concat([Buffer.from(this.gs2), this.o.cbData ?? Buffer.alloc(0)]).toString('base64');
    const withoutProof = `c=${cb},r=${tamper.nonce ?? nonce}${tamper.extension !== undefined ? `,${tamper.extension}` : ''}`;
    const authMessage = `${this.bare},${sf},${withoutProof}`;
    const proof = xor(clientKey, HMAC(H(clientKey), authMessage));
    this.expectedServerFinal = `v=${HMAC(HMAC(salted, 'Server Key'), authMessage).toString('base64')}`;
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }
}

const SALT = Buffer.from('0123456789abcdef');
const ALICE = credentialsFor('correct horse', SALT);

function start(message: Buffer | string, opts: Partial<ScramStartOptions> = {}): ScramStart {
  return startScram(typeof message === 'string' ? Buffer.from(message, 'utf8') : message, { plus: false, nonce: randomScramNonce, ...opts });
}

/** A whole exchange: the client's messages through the server, with `credentials` for the user. */
function exchange(client: TestClient, opts: Partial<ScramStartOptions> = {}, credentials = ALICE, tamper: Tamper = {}): { start: ScramStart; final?: ScramFinal } {
  const s = start(client.first(), opts);
  if (!s.ok) return { start: s };
  const sf = s.exchange.serverFirst(credentials);
  return { start: s, final: s.exchange.clientFinal(client.final(sf, tamper)) };
}

function refusal(r: ScramStart | ScramFinal | undefined): string {
  if (r === undefined || r.ok) throw new Error('expected a refusal');
  return `${r.reason} ${r.serverError.toString()}`;
}

// ---- RFC 7677 --------------------------------------------------------------------

describe('RFC 7677 section 3 test vector', () => {
  const clientFirst = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
  const serverNonce = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  const clientFinal = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
  const serverFinal = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');

  it('reproduces the server-first and server-final messages exactly', () => {
    const s = start(clientFirst, { nonce: () => serverNonce });
    if (!s.ok) throw new Error(refusal(s));
    expect(s).toMatchObject({ username: 'user', authzid: '', channelBinding: undefined, needCredentials: true });
    expect(s.exchange.serverFirst(credentialsFor('pencil', salt)).toString()).toBe(serverFirst);
    const final = s.exchange.clientFinal(Buffer.from(clientFinal));
    expect(final).toMatchObject({ ok: true, username: 'user', authzid: '' });
    if (!final.ok) throw new Error('refused');
    expect(final.serverFinal.toString()).toBe(serverFinal);
  });

  it('derives the same keys as the client (deriveScramCredentials, scramSaltedPasswordSync)', async () => {
    const derived = await deriveScramCredentials('pencil', salt, 4096);
    expect(derived).toEqual(credentialsFor('pencil', salt));
    expect(scramSaltedPasswordSync('pencil', salt, 4096)).toEqual(pbkdf2Sync('pencil', salt, 4096, 32, 'sha256'));
  });

  it('refuses the vector with another password', () => {
    const s = start(clientFirst, { nonce: () => serverNonce });
    if (!s.ok) throw new Error(refusal(s));
    s.exchange.serverFirst(credentialsFor('pencil2', salt));
    expect(refusal(s.exchange.clientFinal(Buffer.from(clientFinal)))).toBe('invalid-proof e=invalid-proof');
  });
});

// ---- exchanges against the independent client ------------------------------------------

describe('SCRAM-SHA-256 exchange', () => {
  it('succeeds for the right password, and the server signature is the one the client expects', () => {
    const client = new TestClient({ name: 'alice', password: 'correct horse' });
    const { start: s, final } = exchange(client);
    expect(s.ok).toBe(true);
    expect(final).toMatchObject({ ok: true, username: 'alice' });
    if (!final?.ok) throw new Error('refused');
    expect(final.serverFinal.toString()).toBe(client.expectedServerFinal);
  });

  it('sends r=<client nonce><server nonce>, the salt in base64 and the iteration count', () => {
    const s = start('n,,n=alice,r=abc', { nonce: () => 'XYZ' });
    if (!s.ok) throw new Error(refusal(s));
    expect(s.exchange.serverFirst({ ...ALICE, iterations: 10000 }).toString()).toBe(`r=abcXYZ,s=${SALT.toString('base64')},i=10000`);
  });

  it('refuses a wrong password with e=invalid-proof', () => {
    const { final } = exchange(new TestClient({ name: 'alice', password: 'wrong horse' }));
    expect(refusal(final)).toBe('invalid-proof e=invalid-proof');
  });

  it('refuses a client-final whose nonce is not the one sent', () => {
    const client = new TestClient({ name: 'alice', password: 'correct horse', nonce: 'cnonce' });
    expect(refusal(exchange(client, {}, ALICE, { nonce: 'cnonceOTHER' }).final)).toBe('nonce-mismatch e=other-error');
    expect(refusal(exchange(client, {}, ALICE, { nonce: 'cnonce' }).final)).toBe('nonce-mismatch e=other-error');
  });

  it('ignores unknown extensions, in the client-first and before the proof (they are signed all the same)', () => {
    const client = new TestClient({ name: 'alice', password: 'correct horse', firstExtension: 'x=what=ever' });
    expect(exchange(client).final).toMatchObject({ ok: true });
    expect(exchange(client, {}, ALICE, { extension: 'y=ext' }).final).toMatchObject({ ok: true });
  });

  it('fails an unknown user at the proof, with dummy credentials that depend only on the name and the secret', () => {
    const secret = randomBytes(32);
    const dummy = scramDummyCredentials('mallory', secret);
    expect(dummy.iterations).toBe(SCRAM_DEFAULT_ITERATIONS);
    expect(dummy.salt.length).toBe(16);
    expect(dummy.storedKey.length).toBe(32);
    expect(dummy.serverKey.length).toBe(32);
    expect(scramDummyCredentials('mallory', secret)).toEqual(dummy);
    expect(scramDummyCredentials('mallory', Buffer.from(secret)).salt).toEqual(dummy.salt);
    expect(scramDummyCredentials('mallorz', secret).salt).not.toEqual(dummy.salt);
    expect(scramDummyCredentials('mallory', randomBytes(32)).salt).not.toEqual(dummy.salt);
    expect(scramDummyCredentials('mallory', secret, 8192).iterations).toBe(8192);
    for (const password of ['x', 'correct horse', 'mallory']) {
      expect(refusal(exchange(new TestClient({ name: 'mallory', password }), {}, dummy).final)).toBe('invalid-proof e=invalid-proof');
    }
  });

  it('refuses malformed client-final messages without throwing', () => {
    const client = new TestClient({ name: 'alice', password: 'correct horse' });
    const cases: Array<[(good: string) => string, string]> = [
      [() => '', 'malformed'],
      [(g) => g.replace(/,p=.*$/, ''), 'malformed'],
      [(g) => g.replace(/^c=[^,]*,/, ''), 'malformed'],
      [(g) => g.replace('c=biws', 'c=biw'), 'malformed'],
      [(g) => g.replace('c=biws', 'c=biws='), 'malformed'],
      [(g) => g.replace(/,p=./, ',p=!'), 'malformed'],
      [(g) => g.replace(/,p=.*$/, ',p='), 'malformed'],
      [(g) => g.replace(/,p=.*$/, ',p=AAAA'), 'invalid-proof'],
      [(g) => `${g},x=after-proof`, 'malformed'],
      [(g) => g.replace('c=biws', 'c=eSws'), 'channel-bindings-dont-match'],
      [(g) => g.replace(/,r=/, ',x=1,r='), 'malformed'],
      [(g) => `${g}\0`, 'malformed'],
    ];
    for (const [edit, reason] of cases) {
      const s = start(client.first());
      if (!s.ok) throw new Error(refusal(s));
      const good = client.final(s.exchange.serverFirst(ALICE)).toString();
      const r = s.exchange.clientFinal(Buffer.from(edit(good)));
      expect(r.ok ? 'ok' : r.reason, edit(good)).toBe(reason);
    }
    const s = start(client.first());
    if (!s.ok) throw new Error(refusal(s));
    s.exchange.serverFirst(ALICE);
    expect(refusal(s.exchange.clientFinal(Buffer.from([0x63, 0x3d, 0xff, 0xfe])))).toBe('malformed e=invalid-encoding');
  });

  it('throws on host errors: calls out of turn, bad credentials, a bad nonce generator', () => {
    const s = start('n,,n=alice,r=abc');
    if (!s.ok) throw new Error(refusal(s));
    expect(() => s.exchange.clientFinal(Buffer.from('c=biws,r=abc,p=AAAA'))).toThrow(/out of turn/);
    expect(() => s.exchange.serverFirst({ ...ALICE, storedKey: Buffer.alloc(20) })).toThrow(TypeError);
    s.exchange.serverFirst(ALICE);
    expect(() => s.exchange.serverFirst(ALICE)).toThrow(/out of turn/);
    s.exchange.clientFinal(Buffer.from('c=biws,r=abc,p=AAAA'));
    expect(() => s.exchange.clientFinal(Buffer.from('c=biws,r=abc,p=AAAA'))).toThrow(/out of turn/);
    const bad = start('n,,n=alice,r=abc', { nonce: () => 'a,b' });
    if (!bad.ok) throw new Error(refusal(bad));
    expect(() => bad.exchange.serverFirst(ALICE)).toThrow(/printable/);
  });
});

// ---- the client-first message ----------------------------------------------------

describe('client-first parsing', () => {
  it('refuses what is not SCRAM syntax', () => {
    for (const m of [
      '',
      'n',
      'n,',
      'n,,',
      'x,,n=a,r=b',
      'n,,r=b,n=a',
      'n,,n=a',
      'n,,n=a,r=',
      'n,,n=a,r=b c', // ' ' is %x20, not printable
      'n,,n=a,r=b,1=x',
      'n,,n=a,r=b,x=',
      'n,b=a,n=a,r=b',
      'p=,,n=a,r=b',
      'p=tls exporter,,n=a,r=b',
      'n,,n=a,r=\u00e9',
      'n,,n=a,r=b\u007f',
    ]) {
      const r = start(m);
      expect(r.ok ? 'ok' : r.reason, m).toBe('malformed');
    }
    expect(refusal(start(Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xc3, 0x28, 0x2c, 0x72, 0x3d, 0x61])))).toBe('malformed e=invalid-encoding');
    expect(refusal(start('n,,n=a\0b,r=x'))).toBe('malformed e=invalid-encoding');
    expect(refusal(start(`n,,n=${'a'.repeat(5000)},r=x`))).toBe('malformed e=invalid-encoding');
  });

  it('refuses the mandatory-extension marker m=', () => {
    expect(refusal(start('n,,m=ext,n=a,r=b'))).toBe('extensions-not-supported e=extensions-not-supported');
  });

  it('reads an authzid, unescaped', () => {
    expect(start('n,a=ad=2Cmin=3D,n=alice,r=b')).toMatchObject({ ok: true, username: 'alice', authzid: 'ad,min=' });
    expect(refusal(start('n,a=,n=alice,r=b'))).toBe('invalid-authzid e=invalid-encoding');
    expect(refusal(start('n,a=x=41,n=alice,r=b'))).toBe('invalid-authzid e=invalid-encoding');
    expect(refusal(start('n,a=x\u0001,n=alice,r=b'))).toBe('invalid-authzid e=invalid-encoding');
  });

  it('unescapes =2C and =3D in the name, and refuses any other =', () => {
    expect(start('n,,n=a=2Cb=3Dc,r=x')).toMatchObject({ ok: true, username: 'a,b=c' });
    expect(start('n,,n==3D=2C,r=x')).toMatchObject({ ok: true, username: '=,' });
    for (const name of ['a=2cb', 'a=', 'a=2', 'a=41', '=']) {
      expect(refusal(start(`n,,n=${name},r=x`)), name).toBe('invalid-username e=invalid-username-encoding');
    }
    expect(encodeSaslName('a,b=c')).toBe('a=2Cb=3Dc');
    expect(decodeSaslName(encodeSaslName('=,=,x'))).toBe('=,=,x');
    expect(decodeSaslName('')).toBeUndefined();
  });

  it('SASLpreps the name (RFC 4013): mapped characters, NFKC, prohibited characters', () => {
    // RFC 4013 section 3 examples: SOFT HYPHEN maps to nothing; U+2168 (ROMAN NUMERAL NINE) is NFKC "IX".
    expect(start('n,,n=I\u00adX,r=x')).toMatchObject({ ok: true, username: 'IX' });
    expect(start('n,,n=\u2168,r=x')).toMatchObject({ ok: true, username: 'IX' });
    expect(start('n,,n=j\u00fcrgen\u00a0m,r=x')).toMatchObject({ ok: true, username: 'j\u00fcrgen m' });
    expect(start('n,,n=u\u0308ber,r=x')).toMatchObject({ ok: true, username: '\u00fcber' });
    // Prohibited: a control character (U+0007), a non-ASCII control (U+0085), a private-use code point.
    for (const name of ['a\u0007b', 'a\u0085b', 'a\ue000b', 'a\u200eb']) {
      expect(refusal(start(`n,,n=${name},r=x`)), JSON.stringify(name)).toBe('invalid-username e=invalid-username-encoding');
    }
    // Mapped to nothing at all.
    expect(refusal(start('n,,n=\u00ad,r=x'))).toBe('invalid-username e=invalid-username-encoding');
    // Bidi: RandALCat and LCat mixed.
    expect(refusal(start('n,,n=\u0627a\u0627,r=x'))).toBe('invalid-username e=invalid-username-encoding');
    // Query strings allow unassigned code points (U+0378 is unassigned); stored ones do not.
    expect(start('n,,n=a\u0378,r=x')).toMatchObject({ ok: true, username: 'a\u0378' });
    expect(saslprepName('a\u0378', true)).toBeUndefined();
  });

  it('exchanges with a SASLprep\'d non-ASCII name', () => {
    const client = new TestClient({ name: 'I\u00adX', password: 'correct horse' });
    expect(exchange(client).final).toMatchObject({ ok: true, username: 'IX' });
  });
});

// ---- channel binding ---------------------------------------------------------------

describe('channel binding', () => {
  const exporter = randomBytes(32);
  const endPoint = randomBytes(32);
  const channel: ScramChannel = { tlsExporter: exporter, tlsServerEndPoint: endPoint };
  const pw = 'correct horse';

  it('SCRAM-SHA-256-PLUS with tls-exporter: c= must carry the gs2 header and this connection\'s data', () => {
    const client = new TestClient({ name: 'alice', password: pw, gs2: 'p=tls-exporter,,', cbData: exporter });
    const { start: s, final } = exchange(client, { plus: true, channel });
    expect(s).toMatchObject({ ok: true, channelBinding: 'tls-exporter' });
    expect(final).toMatchObject({ ok: true });

    // Another connection's data: a man in the middle relaying the exchange.
    const relayed = new TestClient({ name: 'alice', password: pw, gs2: 'p=tls-exporter,,', cbData: randomBytes(32) });
    expect(refusal(exchange(relayed, { plus: true, channel }).final)).toBe('channel-bindings-dont-match e=channel-bindings-dont-match');
    // The header alone, without the data.
    const noData = new TestClient({ name: 'alice', password: pw, gs2: 'p=tls-exporter,,' });
    expect(refusal(exchange(noData, { plus: true, channel }).final)).toBe('channel-bindings-dont-match e=channel-bindings-dont-match');
  });

  it('SCRAM-SHA-256-PLUS with tls-server-end-point, and an authzid in the header', () => {
    const client = new TestClient({ name: 'alice', password: pw, gs2: 'p=tls-server-end-point,a=bob,', cbData: endPoint });
    const { start: s, final } = exchange(client, { plus: true, channel: { tlsServerEndPoint: endPoint } });
    expect(s).toMatchObject({ ok: true, channelBinding: 'tls-server-end-point', authzid: 'bob' });
    expect(final).toMatchObject({ ok: true, authzid: 'bob' });
  });

  it('refuses a binding type the connection has no data for, and PLUS without any data', () => {
    expect(refusal(start('p=tls-unique,,n=a,r=b', { plus: true, channel }))).toBe('unsupported-channel-binding-type e=unsupported-channel-binding-type');
    expect(refusal(start('p=tls-server-end-point,,n=a,r=b', { plus: true, channel: { tlsExporter: exporter } }))).toBe(
      'unsupported-channel-binding-type e=unsupported-channel-binding-type',
    );
    expect(refusal(start('p=tls-exporter,,n=a,r=b', { plus: true }))).toBe('channel-binding-not-supported e=channel-binding-not-supported');
    expect(refusal(start('p=tls-exporter,,n=a,r=b', { plus: true, channel: {} }))).toBe('channel-binding-not-supported e=channel-binding-not-supported');
  });

  it('refuses SCRAM-SHA-256-PLUS without p=', () => {
    expect(refusal(start('n,,n=a,r=b', { plus: true, channel }))).toBe('channel-binding-required e=other-error');
    expect(refusal(start('y,,n=a,r=b', { plus: true, channel }))).toBe('channel-binding-required e=other-error');
  });

  it("refuses flag 'y' on SCRAM-SHA-256 where PLUS is offered (a downgrade), accepts it where not", () => {
    expect(refusal(start('y,,n=a,r=b', { channel }))).toBe('channel-binding-downgrade e=server-does-support-channel-binding');
    expect(refusal(start('y,,n=a,r=b', { channel: { tlsServerEndPoint: endPoint } }))).toBe(
      'channel-binding-downgrade e=server-does-support-channel-binding',
    );
    const client = new TestClient({ name: 'alice', password: pw, gs2: 'y,,' });
    expect(exchange(client).final).toMatchObject({ ok: true });
    // c= must then be base64("y,,"), not "n,,".
    expect(refusal(exchange(client, {}, ALICE, { cb: 'biws' }).final)).toBe('channel-bindings-dont-match e=channel-bindings-dont-match');
  });

  it("accepts 'n' on SCRAM-SHA-256 where PLUS is offered (the client cannot bind)", () => {
    expect(exchange(new TestClient({ name: 'alice', password: pw }), { channel }).final).toMatchObject({ ok: true });
  });

  it("refuses p= on SCRAM-SHA-256 (non-PLUS)", () => {
    expect(refusal(start('p=tls-exporter,,n=a,r=b', { channel }))).toBe('unexpected-channel-binding e=other-error');
    expect(refusal(start('p=tls-exporter,,n=a,r=b'))).toBe('unexpected-channel-binding e=other-error');
  });
});

// ---- helpers -------------------------------------------------------------------------

describe('helpers', () => {
  it('scramPasswordBytes: SASLprep as a stored string, else the raw UTF-8 bytes', () => {
    expect(scramPasswordBytes('pencil').toString()).toBe('pencil');
    expect(scramPasswordBytes('I\u00adX').toString()).toBe('IX');
    expect(scramPasswordBytes('caf\u00e9\u00a0au lait').toString()).toBe('caf\u00e9 au lait');
    expect(scramPasswordBytes('bell\u0007')).toEqual(Buffer.from('bell\u0007'));
    expect(scramPasswordBytes(Buffer.from('\u2168'))).toEqual(Buffer.from('IX'));
    expect(scramPasswordBytes(Buffer.from([0xff, 0x00]))).toEqual(Buffer.from([0xff, 0x00]));
  });

  it('decodeBase64Canonical refuses non-canonical base64', () => {
    expect(decodeBase64Canonical('biws')).toEqual(Buffer.from('n,,'));
    expect(decodeBase64Canonical('')).toEqual(Buffer.alloc(0));
    for (const s of ['biw', 'biws=', 'QR==', 'bi ws', 'bi-w']) expect(decodeBase64Canonical(s), s).toBeUndefined();
  });

  it('randomScramNonce is printable without a comma, and fresh', () => {
    const a = randomScramNonce();
    expect(a).toMatch(/^[\x21-\x2b\x2d-\x7e]{32}$/);
    expect(randomScramNonce()).not.toBe(a);
  });
});

// ---- channel-binding data from real certificates and a real TLS connection ---------------

describe('channel-binding data', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'popgate-scram-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A self-signed certificate made by openssl with this key type and signature digest. */
  function selfSigned(name: string, newkey: string[], digest?: string): { pem: string; key: string; der: Buffer } {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', ...newkey, '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', `${name}.key`, '-out', `${name}.pem`, ...(digest ? [`-${digest}`] : [])],
      { cwd: dir, stdio: 'pipe' },
    );
    const pem = readFileSync(join(dir, `${name}.pem`), 'utf8');
    return { pem, key: readFileSync(join(dir, `${name}.key`), 'utf8'), der: new X509Certificate(pem).raw };
  }

  /** openssl's own fingerprint (the hash of the DER), lowercase hex. */
  function fingerprint(name: string, digest: string): string {
    const out = execFileSync('openssl', ['x509', '-in', `${name}.pem`, '-noout', '-fingerprint', `-${digest}`], { cwd: dir }).toString();
    return out.trim().split('=')[1]!.replace(/:/g, '').toLowerCase();
  }

  const EC = ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

  it('tls-server-end-point hashes the certificate with its signature hash, SHA-256 for SHA-1 (RFC 5929 4.1)', () => {
    const ec256 = selfSigned('ec256', EC, 'sha256');
    expect(tlsServerEndPointData(ec256.der)?.toString('hex')).toBe(fingerprint('ec256', 'sha256'));
    const ec384 = selfSigned('ec384', EC, 'sha384');
    expect(tlsServerEndPointData(ec384.der)?.toString('hex')).toBe(fingerprint('ec384', 'sha384'));
    const rsa1 = selfSigned('rsa1', ['rsa:2048'], 'sha1');
    expect(tlsServerEndPointData(rsa1.der)?.toString('hex')).toBe(fingerprint('rsa1', 'sha256'));
    const ed = selfSigned('ed', ['ed25519']);
    expect(tlsServerEndPointData(ed.der)).toBeUndefined();
    expect(tlsServerEndPointData(Buffer.alloc(0))).toBeUndefined();
    expect(tlsServerEndPointData(ec256.der.subarray(0, 100))).toBeUndefined();
    expect(tlsServerEndPointData(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]))).toBeUndefined();
  });

  it('both ends of a TLS connection compute the same tls-exporter and tls-server-end-point data, and a PLUS login binds to it', async () => {
    const { pem, key } = selfSigned('server', EC, 'sha256');
    const server = tls.createServer({ key, cert: pem, minVersion: 'TLSv1.3' });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
      const client = tls.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
      await once(client, 'secureConnect');
      const [serverSide] = await accepted;
      const own = serverSide.getCertificate() as tls.PeerCertificate | null;
      if (own === null) throw new Error('no server certificate');
      const channel: ScramChannel = { tlsExporter: tlsExporterData(serverSide), tlsServerEndPoint: tlsServerEndPointData(own.raw) };
      expect(channel.tlsExporter).toHaveLength(32);
      expect(tlsExporterData(client)).toEqual(channel.tlsExporter);
      expect(tlsServerEndPointData(client.getPeerCertificate().raw)).toEqual(channel.tlsServerEndPoint);
      const c = new TestClient({ name: 'alice', password: 'correct horse', gs2: 'p=tls-exporter,,', cbData: tlsExporterData(client) });
      expect(exchange(c, { plus: true, channel }).final).toMatchObject({ ok: true });
      client.destroy();
      serverSide.destroy();
    } finally {
      server.close();
    }
  });
});
