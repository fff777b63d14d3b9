/**
 * The SCRAM-SHA-256(-PLUS) server exchange on hostile input: random and
 * mutated client-first and client-final messages never throw, every refusal
 * carries an `e=` server error, and a client-final passes only when it is
 * byte for byte the one an honest client computed.
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import fc from 'fast-check';
import { describe } from 'vitest';
import { startScram, type ScramChannel, type ScramCredentials, type ScramRefusal } from '../../src/auth/scram.js';
import { Reached, fuzzIt, invariant, mutate, mutationArb, show, specialByteArb } from './common.js';

const H = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const HMAC = (key: Buffer, s: string): Buffer => createHmac('sha256', key).update(s).digest();

const PASSWORD = 'pencil';
const SALT = Buffer.from('fuzz-salt-16byte');
const SALTED = pbkdf2Sync(PASSWORD, SALT, 4096, 32, 'sha256');
const CREDENTIALS: ScramCredentials = {
  iterations: 4096,
  salt: SALT,
  storedKey: H(HMAC(SALTED, 'Client Key')),
  serverKey: HMAC(SALTED, 'Server Key'),
};
const EXPORTER = Buffer.alloc(32, 7);
const CHANNEL: ScramChannel = { tlsExporter: EXPORTER, tlsServerEndPoint: Buffer.alloc(32, 9) };
const SERVER_NONCE = 'server-nonce';

function checkRefusal(r: ScramRefusal, input: Buffer): void {
  invariant(/^e=[a-z-]+$/.test(r.serverError.toString('latin1')), () => `bad server error for ${show(input)}`);
}

/** Client-first messages near the grammar: valid ones, and pieces of it shuffled. */
const clientFirstArb: fc.Arbitrary<Buffer> = fc
  .record({
    flag: fc.constantFrom('n', 'y', 'p=tls-exporter', 'p=tls-server-end-point', 'p=tls-unique', 'p=', 'x'),
    authzid: fc.constantFrom('', 'a=bob', 'a=', 'a=b=2Cc', 'a=b=4'),
    mext: fc.constantFrom('', 'm=x,'),
    name: fc.constantFrom('user', 'u=2Cv', 'u=2cv', '\u00e9', 'I\u00adX', '\u00ad', 'a\u0007', '', 'a b'),
    nonce: fc.constantFrom('abc', 'r,s', '', '\u00e9', 'x'.repeat(100)),
    ext: fc.constantFrom('', ',x=1', ',1=1', ',x='),
  })
  .map((p) => Buffer.from(`${p.flag},${p.authzid},${p.mext}n=${p.name},r=${p.nonce}${p.ext}`, 'utf8'));

const anyBytesArb: fc.Arbitrary<Buffer> = fc.array(specialByteArb, { maxLength: 200 }).map((a) => Buffer.from(a));

/** An honest client's final message for this exchange. */
function honestFinal(gs2: string, cbData: Buffer, bare: string, serverFirst: string): Buffer {
  const clientKey = HMAC(SALTED, 'Client Key');
  const withoutProof = `c=${Buffer.concat([Buffer.from(gs2), cbData]).toString('base64')},r=${serverFirst.slice(2, serverFirst.indexOf(','))}`;
  const sig = HMAC(H(clientKey), `${bare},${serverFirst},${withoutProof}`);
  const proof = Buffer.from(clientKey.map((x, i) => x ^ (sig[i] as number)));
  return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
}

describe('SCRAM server exchange (fuzz)', () => {
  const reachedFirst = new Reached(['ok', 'refused', 'malformed', 'invalid-username', 'channel']);
  fuzzIt(
    'client-first: random, grammar-shaped and mutated messages never throw; refusals carry e=',
    fc.property(
      fc.oneof(anyBytesArb, clientFirstArb, clientFirstArb.chain((b) => fc.array(mutationArb, { maxLength: 4 }).map((m) => mutate(b, m)))),
      fc.boolean(),
      fc.boolean(),
      (input, plus, offered) => {
        const r = startScram(input, { plus, nonce: () => SERVER_NONCE, ...(offered ? { channel: CHANNEL } : {}) });
        if (r.ok) {
          reachedFirst.hit('ok');
          invariant(r.username !== '', 'empty user name accepted');
          const sf = r.exchange.serverFirst(CREDENTIALS).toString('latin1');
          invariant(sf.startsWith('r=') && sf.includes(`${SERVER_NONCE},s=`), () => `bad server-first ${sf}`);
          return;
        }
        reachedFirst.hit('refused');
        if (r.reason === 'malformed' || r.reason === 'invalid-username') reachedFirst.hit(r.reason);
        if (r.reason.includes('channel')) reachedFirst.hit('channel');
        checkRefusal(r, input);
      },
    ),
    () => reachedFirst,
  );

  const reachedFinal = new Reached(['ok', 'refused', 'invalid-proof', 'malformed']);
  fuzzIt(
    'client-final: random and mutated messages never throw, and only the honest message passes',
    fc.property(
      fc.constantFrom('n', 'y', 'p=tls-exporter'),
      fc.oneof(
        { weight: 1, arbitrary: anyBytesArb.map((b) => ({ random: b, mutations: [] as never[] })) },
        { weight: 3, arbitrary: fc.array(mutationArb, { maxLength: 3 }).map((mutations) => ({ random: undefined, mutations })) },
      ),
      (flag, how) => {
        const plus = flag.startsWith('p=');
        const gs2 = `${flag},,`;
        const bare = 'n=user,r=client-nonce';
        // The channel only where PLUS is chosen: 'y' with PLUS offered is a downgrade, refused at the start.
        const r = startScram(Buffer.from(gs2 + bare), { plus, nonce: () => SERVER_NONCE, ...(plus ? { channel: CHANNEL } : {}) });
        invariant(r.ok, () => `valid client-first refused: ${flag}`);
        const sf = r.exchange.serverFirst(CREDENTIALS).toString('latin1');
        const honest = honestFinal(gs2, plus ? EXPORTER : Buffer.alloc(0), bare, sf);
        const input = how.random ?? mutate(honest, how.mutations);
        const final = r.exchange.clientFinal(input);
        if (final.ok) {
          reachedFinal.hit('ok');
          invariant(input.equals(honest), () => `a changed client-final passed: ${show(input)}`);
          return;
        }
        reachedFinal.hit('refused');
        if (final.reason === 'invalid-proof' || final.reason === 'malformed') reachedFinal.hit(final.reason);
        invariant(!input.equals(honest), () => `the honest client-final was refused: ${final.reason}`);
        checkRefusal(final, input);
      },
    ),
    () => reachedFinal,
  );
});
