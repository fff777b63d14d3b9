/**
 * SCRAM-SHA-256(-PLUS) against implementations other than popgate's own:
 * GNU SASL's client (gsasl) logs in through the server machine
 * (src/auth/scram.ts) and checks its server signature, and the
 * `{SCRAM-SHA-256}` entries Dovecot (`doveadm pw`) and GNU SASL
 * (`gsasl --mkpasswd`) write serve popgate, while Dovecot accepts the ones
 * `hashPassword` writes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashPassword, parseHash, verifyPasswordHash, type ScramHash } from '../../src/auth/password-hash.js';
import { randomScramNonce, startScram, type ScramChannel, type ScramCredentials, type ScramServerExchange } from '../../src/auth/scram.js';
import { gsaslClient, type GsaslResult } from '../helpers/gsasl.js';

interface Login {
  readonly result: GsaslResult;
  /** What the server machine said at each step. */
  readonly outcomes: string[];
  readonly username?: string;
  readonly authzid?: string;
}

/**
 * gsasl against the server machine: `credentials` for whatever name it
 * sends; refusals are sent as the `e=` message (gsasl then gives up).
 * `tamperServerFinal` flips a bit of the server signature.
 */
async function gsaslLogin(opts: {
  mechanism: 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
  user: string;
  password: string;
  authzid?: string;
  credentials: ScramCredentials;
  clientExporter?: Buffer;
  channel?: ScramChannel;
  tamperServerFinal?: boolean;
}): Promise<Login> {
  const outcomes: string[] = [];
  let exchange: ScramServerExchange | undefined;
  let username: string | undefined;
  let authzid: string | undefined;
  let step = 0;
  const result = await gsaslClient({
    mechanism: opts.mechanism,
    user: opts.user,
    password: opts.password,
    ...(opts.authzid !== undefined ? { authzid: opts.authzid } : {}),
    ...(opts.clientExporter !== undefined ? { tlsExporter: opts.clientExporter } : {}),
    server: (message) => {
      step++;
      if (step === 1) {
        const s = startScram(message, { plus: opts.mechanism.endsWith('-PLUS'), nonce: randomScramNonce, ...(opts.channel ? { channel: opts.channel } : {}) });
        outcomes.push(s.ok ? 'start' : s.reason);
        if (!s.ok) return s.serverError;
        ({ exchange, username, authzid } = s);
        return s.exchange.serverFirst(opts.credentials);
      }
      if (step === 2 && exchange) {
        const f = exchange.clientFinal(message);
        outcomes.push(f.ok ? 'final' : f.reason);
        if (!f.ok) return f.serverError;
        const v = Buffer.from(f.serverFinal);
        if (opts.tamperServerFinal) v[5] = (v[5] as number) ^ 1;
        return v;
      }
      // The client's empty answer to the server-final message.
      outcomes.push(message.length === 0 ? 'done' : `unexpected ${message.toString()}`);
      return Buffer.alloc(0);
    },
  });
  return { result, outcomes, ...(username !== undefined ? { username } : {}), ...(authzid !== undefined ? { authzid } : {}) };
}

async function credentialsOf(password: string, iterations = 4096): Promise<ScramHash> {
  const parsed = parseHash(await hashPassword(password, { algorithm: 'scram-sha-256', scramIterations: iterations }));
  if (parsed?.algorithm !== 'scram-sha-256') throw new Error('not a SCRAM entry');
  return parsed;
}

function scramEntry(encoded: string): ScramHash {
  const parsed = parseHash(encoded);
  if (parsed?.algorithm !== 'scram-sha-256') throw new Error(`not a SCRAM entry: ${encoded}`);
  return parsed;
}

describe('GNU SASL client (gsasl) against the SCRAM server machine', () => {
  it('SCRAM-SHA-256: logs in with a popgate-written entry, and gsasl trusts the server signature', async () => {
    const login = await gsaslLogin({ mechanism: 'SCRAM-SHA-256', user: 'alice', password: 'correct horse', credentials: await credentialsOf('correct horse', 5000) });
    expect(login.outcomes).toEqual(['start', 'final', 'done']);
    expect(login.username).toBe('alice');
    expect(login.result.clientMessages[0]?.toString()).toMatch(/^n,,n=alice,r=/);
    expect(login.result.trusted).toBe(true);
    expect(login.result.code).toBe(0);
  });

  it('a wrong password fails at the proof; a forged server signature makes gsasl give up', async () => {
    const credentials = await credentialsOf('correct horse');
    const wrong = await gsaslLogin({ mechanism: 'SCRAM-SHA-256', user: 'alice', password: 'wrong horse', credentials });
    expect(wrong.outcomes).toEqual(['start', 'invalid-proof']);
    expect(wrong.result.trusted).toBe(false);
    expect(wrong.result.code).not.toBe(0);
    const forged = await gsaslLogin({ mechanism: 'SCRAM-SHA-256', user: 'alice', password: 'correct horse', credentials, tamperServerFinal: true });
    expect(forged.outcomes).toEqual(['start', 'final']);
    expect(forged.result.trusted).toBe(false);
    expect(forged.result.code).not.toBe(0);
  });

  it('escapes "," and "=" in the name (=2C, =3D) and sends the authzid; the machine unescapes both', async () => {
    const login = await gsaslLogin({
      mechanism: 'SCRAM-SHA-256',
      user: 'a,b=c',
      authzid: 'x=y,z',
      password: 'pw',
      credentials: await credentialsOf('pw'),
    });
    expect(login.result.clientMessages[0]?.toString()).toMatch(/^n,a=x=3Dy=2Cz,n=a=2Cb=3Dc,r=/);
    expect(login).toMatchObject({ outcomes: ['start', 'final', 'done'], username: 'a,b=c', authzid: 'x=y,z' });
  });

  it('SCRAM-SHA-256-PLUS binds to tls-exporter data, and a relayed exchange (other data) is refused', async () => {
    const credentials = await credentialsOf('pw');
    const exporter = randomBytes(32);
    const bound = await gsaslLogin({ mechanism: 'SCRAM-SHA-256-PLUS', user: 'alice', password: 'pw', credentials, clientExporter: exporter, channel: { tlsExporter: exporter } });
    expect(bound.result.clientMessages[0]?.toString()).toMatch(/^p=tls-exporter,,n=alice,r=/);
    expect(bound.outcomes).toEqual(['start', 'final', 'done']);
    expect(bound.result.trusted).toBe(true);
    const relayed = await gsaslLogin({
      mechanism: 'SCRAM-SHA-256-PLUS',
      user: 'alice',
      password: 'pw',
      credentials,
      clientExporter: exporter,
      channel: { tlsExporter: randomBytes(32) },
    });
    expect(relayed.outcomes).toEqual(['start', 'channel-bindings-dont-match']);
    expect(relayed.result.code).not.toBe(0);
  });

  it('SCRAM-SHA-256-PLUS is refused where the host has no binding data', async () => {
    const login = await gsaslLogin({ mechanism: 'SCRAM-SHA-256-PLUS', user: 'alice', password: 'pw', credentials: await credentialsOf('pw'), clientExporter: randomBytes(32) });
    expect(login.outcomes).toEqual(['channel-binding-not-supported']);
    expect(login.result.code).not.toBe(0);
  });
});

describe('{SCRAM-SHA-256} entries across implementations', () => {
  it('entries doveadm and gsasl --mkpasswd write verify passwords and serve a gsasl login', async () => {
    const dovecot = execFileSync('doveadm', ['pw', '-s', 'SCRAM-SHA-256', '-p', 'pencil']).toString().trim();
    const gnu = execFileSync('gsasl', ['--mkpasswd', '--mechanism', 'SCRAM-SHA-256', '--password', 'pencil', '--iteration-count', '4096']).toString().trim();
    for (const entry of [dovecot, gnu]) {
      expect(entry).toMatch(/^\{SCRAM-SHA-256\}4096,/);
      expect(await verifyPasswordHash('pencil', entry), entry).toBe(true);
      expect(await verifyPasswordHash('pencil2', entry), entry).toBe(false);
      const login = await gsaslLogin({ mechanism: 'SCRAM-SHA-256', user: 'user', password: 'pencil', credentials: scramEntry(entry) });
      expect(login.outcomes, entry).toEqual(['start', 'final', 'done']);
    }
  });

  it('Dovecot accepts the entries hashPassword writes (doveadm pw -t)', async () => {
    for (const [password, iterations] of [['pencil', 4096], ['correct horse battery staple', 20000]] as const) {
      const entry = await hashPassword(password, { algorithm: 'scram-sha-256', scramIterations: iterations });
      expect(execFileSync('doveadm', ['pw', '-t', entry, '-p', password]).toString()).toContain('(verified)');
      expect(() => execFileSync('doveadm', ['pw', '-t', entry, '-p', `${password}!`], { stdio: 'pipe' })).toThrow();
    }
  });
});
