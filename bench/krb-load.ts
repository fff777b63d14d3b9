/**
 * Kerberos load client for the benchmark: KPOP (krb5_sendauth KPOPV1.0)
 * handshakes and logins, and the accept step of AUTH GSSAPI, each with one
 * pre-generated single-use token per connection (popgate keeps a replay
 * cache: a token is accepted once).
 *
 * Kinds (one TCP connection each, plaintext, closed by us at the end):
 *  - `kpop`:        hello + AP-REQ (no mutual auth) in one write; read the
 *                   version byte `00`, the OK frame `00 00 00 00` and the
 *                   POP3 greeting; close.
 *  - `kpop-mutual`: the same with an AP-REQ asking for mutual authentication:
 *                   the OK frame is followed by `u32 len + AP-REP` (0x6f...),
 *                   read in full (not decrypted: the client context is gone).
 *  - `kpop-login`:  as `kpop`, then `USER <user>`, `PASS krb_ticket` (popgate
 *                   logs in to the backend), `QUIT`.
 *  - `gss-accept`:  greeting, `AUTH GSSAPI`, `+ `, the initial GSS token,
 *                   popgate's `+ <mutual token>` (the accept step); close.
 *
 * Every failure (an unexpected byte, a KRB-ERROR, an -ERR, a timeout, a
 * dropped connection) is a Pop3Error naming the step; the load stops at the
 * first one.
 */
import { kpopApReqFrame, kpopClientHello } from '../src/kerberos/kpop-framing.js';
import { runLoad, type LoadResult } from './lib/load.js';
import { Pop3Conn, Pop3Error, type Pop3Endpoint } from './lib/wire.js';

export type KrbKind = 'kpop' | 'kpop-mutual' | 'kpop-login' | 'gss-accept';

const HELLO = kpopClientHello();

const show = (s: string): string => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);

/**
 * The KPOP preamble: version byte `00`, then the recvauth reply: `00 00 00 00`
 * (success) followed, when mutual authentication was asked for, by
 * `u32 len + AP-REP`; a failure is `u32 len + KRB-ERROR` instead.
 */
async function kpopPreamble(c: Pop3Conn, label: string, mutual: boolean): Promise<void> {
  const version = await c.bytes(1, 'KPOP version byte');
  if (version[0] !== 0) throw new Pop3Error(label, 'KPOP version byte', `expected 00, got ${version.toString('hex')}`);
  const len = (await c.bytes(4, 'KPOP reply frame')).readUInt32BE(0);
  if (len !== 0) {
    if (len > 65_536) throw new Pop3Error(label, 'KPOP reply frame', `implausible length ${len}`);
    const body = await c.bytes(len, 'KPOP reply frame');
    throw new Pop3Error(
      label,
      'KPOP reply frame',
      body[0] === 0x7e
        ? "KRB-ERROR: the ticket was refused (a replay, a clock skew or a wrong key: see popgate's log)"
        : `unexpected ${len}-byte frame starting 0x${(body[0] ?? 0).toString(16)}`,
    );
  }
  if (!mutual) return;
  const repLen = (await c.bytes(4, 'KPOP AP-REP')).readUInt32BE(0);
  if (repLen === 0 || repLen > 65_536) throw new Pop3Error(label, 'KPOP AP-REP', `implausible AP-REP length ${repLen}`);
  const rep = await c.bytes(repLen, 'KPOP AP-REP');
  if (rep[0] !== 0x6f) throw new Pop3Error(label, 'KPOP AP-REP', `expected an AP-REP (0x6f), got 0x${(rep[0] ?? 0).toString(16)}`);
}

/**
 * One connection of `kind` with `token` (the raw AP-REQ for kpop kinds, the
 * GSS initial token for gss-accept). Resolves with its duration in ms, from
 * connect to the last byte needed.
 */
export async function krbOnce(kind: KrbKind, endpoint: Pop3Endpoint, token: Buffer, opts: { user?: string; timeoutMs?: number } = {}): Promise<void> {
  const label = endpoint.label;
  const c = Pop3Conn.open(endpoint, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  try {
    if (kind === 'gss-accept') {
      await c.expectOk('greeting');
      c.write('AUTH GSSAPI\r\n');
      const go = await c.line('AUTH GSSAPI');
      if (go !== '+ ' && go !== '+') throw new Pop3Error(label, 'AUTH GSSAPI', `expected "+ ", got ${show(go)}`);
      c.write(`${token.toString('base64')}\r\n`);
      const reply = await c.line('GSSAPI initial token');
      if (!reply.startsWith('+ ') || reply.length < 4) {
        throw new Pop3Error(label, 'GSSAPI initial token', `expected "+ <mutual token>", got ${show(reply)}`);
      }
      return;
    }
    // One write: hello and AP-REQ, as krb5_sendauth's peer sees them without waiting.
    c.write(Buffer.concat([HELLO, kpopApReqFrame(token)]));
    await kpopPreamble(c, label, kind === 'kpop-mutual');
    await c.expectOk('greeting');
    if (kind === 'kpop-login') {
      await c.command(`USER ${opts.user ?? ''}`);
      await c.command('PASS krb_ticket');
      await c.command('QUIT');
    }
  } finally {
    c.destroy();
  }
}

/**
 * KPOP with a token that was already accepted once: resolves when popgate
 * refuses it with a KRB-ERROR (the replay cache is on), rejects otherwise.
 */
export async function expectKpopReplayRefused(endpoint: Pop3Endpoint, apReq: Buffer): Promise<void> {
  try {
    await krbOnce('kpop', endpoint, apReq);
  } catch (err) {
    if (err instanceof Pop3Error && /KRB-ERROR/.test(err.detail)) return;
    throw err;
  }
  throw new Pop3Error(endpoint.label, 'replay check', 'a replayed AP-REQ was accepted: the replay cache is not in effect');
}

/**
 * `concurrency` workers each take the next unused token and run one
 * connection with it, back to back, until `durationMs` has passed or the
 * tokens are used up (`exhausted`). The first failure stops every worker and is thrown.
 */
export async function runKrbLoad(
  kind: KrbKind,
  endpoint: Pop3Endpoint,
  tokens: readonly Buffer[],
  opts: { readonly concurrency: number; readonly durationMs: number; readonly user?: string },
): Promise<LoadResult> {
  const user = opts.user === undefined ? {} : { user: opts.user };
  const r = await runLoad({ concurrency: opts.concurrency, durationMs: opts.durationMs, total: tokens.length }, (i) => krbOnce(kind, endpoint, tokens[i]!, user));
  if (r.ops === 0) throw new Pop3Error(endpoint.label, 'load', 'no connection completed');
  return r;
}
