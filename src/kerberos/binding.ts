/**
 * KerberosBinding over popgate's own MIT krb5 addon (native/, `npm run build:native`).
 *
 * Threading: every addon call is a Napi::AsyncWorker on the libuv thread pool,
 * with one krb5_context cached per pool thread. rd_req (~0.1 ms) and GSS
 * accept (~0.13 ms) never block; a password check does network I/O to the KDC
 * (~12 ms, but up to ~27 s against a dead KDC: MIT 1.20 has no request
 * timeout) and so always goes through a {@link KdcGate}: at most
 * `maxConcurrent` checks hold a pool thread, later ones wait in a bounded
 * queue, and every caller gets an answer by `timeoutMs`. Size the pool for it:
 * UV_THREADPOOL_SIZE = 4 + maxConcurrent (e.g. 6 with the default gate), set
 * before Node starts its pool (the CLI entry does it).
 *
 * Replay cache: KPOP and GSS share `file2:<rcacheDir>/popgate.rcache2`,
 * passed per call (auth context for rd_req, the GSS credential store's
 * "rcache" for GSS); a missing directory is a `config` error, never "no
 * replay cache". Keytabs are resolved per call (nothing cached), so a SIGHUP
 * that swaps the keytab file needs nothing; `reload()` additionally makes
 * every pool thread re-read krb5.conf.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock, type Clock } from '../clock.js';
import type { NativeAddon, NativeGssContext, NativeKrb5Error } from './native.js';
import {
  KerberosError,
  type AcceptorOptions,
  type ApReqResult,
  type GssAcceptor,
  type KerberosBinding,
  type KerberosFailure,
  type PasswordCheck,
} from './types.js';

// ---------------------------------------------------------------------------
// Error codes (MIT krb5 1.20 krb5_err.et; ERROR_TABLE_BASE_krb5 + n).

const BASE = -1765328384;
/** MIT krb5 error codes the mapping needs (values of krb5.h's macros). */
export const KRB5 = {
  ERROR_TABLE_BASE: BASE,
  KDC_ERR_NAME_EXP: BASE + 1,
  KDC_ERR_C_PRINCIPAL_UNKNOWN: BASE + 6,
  KDC_ERR_S_PRINCIPAL_UNKNOWN: BASE + 7,
  KDC_ERR_POLICY: BASE + 12,
  KDC_ERR_CLIENT_REVOKED: BASE + 18,
  KDC_ERR_CLIENT_NOTYET: BASE + 21,
  KDC_ERR_KEY_EXP: BASE + 23,
  KDC_ERR_PREAUTH_FAILED: BASE + 24,
  AP_ERR_BAD_INTEGRITY: BASE + 31,
  AP_ERR_TKT_EXPIRED: BASE + 32,
  AP_ERR_TKT_NYV: BASE + 33,
  AP_ERR_REPEAT: BASE + 34,
  AP_ERR_NOT_US: BASE + 35,
  AP_ERR_BADMATCH: BASE + 36,
  AP_ERR_SKEW: BASE + 37,
  AP_ERR_BADADDR: BASE + 38,
  AP_ERR_BADVERSION: BASE + 39,
  AP_ERR_MSG_TYPE: BASE + 40,
  AP_ERR_MODIFIED: BASE + 41,
  AP_ERR_BADORDER: BASE + 42,
  AP_ERR_ILL_CR_TKT: BASE + 43,
  AP_ERR_BADKEYVER: BASE + 44,
  AP_ERR_NOKEY: BASE + 45,
  AP_ERR_MUT_FAIL: BASE + 46,
  AP_ERR_BADDIRECTION: BASE + 47,
  AP_ERR_METHOD: BASE + 48,
  AP_ERR_BADSEQ: BASE + 49,
  AP_ERR_INAPP_CKSUM: BASE + 50,
  ERR_GENERIC: BASE + 60,
  LIBOS_CANTREADPWD: BASE + 130,
  PARSE_ILLCHAR: BASE + 133,
  PARSE_MALFORMED: BASE + 134,
  AP_WRONG_PRINC: BASE + 144,
  KDCREP_SKEW: BASE + 148,
  REALM_UNKNOWN: BASE + 154,
  KDC_UNREACH: BASE + 156,
  RC_REPLAY: BASE + 163,
  RC_FIRST: BASE + 159, // KRB5_RC_TYPE_EXISTS .. KRB5_RC_IO_SPACE
  RC_LAST: BASE + 172,
  KT_BADNAME: BASE + 179,
  KT_UNKNOWN_TYPE: BASE + 180,
  KT_NOTFOUND: BASE + 181,
  KT_END: BASE + 182,
  KT_IOERR: BASE + 184,
  PREAUTH_FAILED: BASE + 210,
  RC_REQUIRED: BASE + 215,
  REALM_CANT_RESOLVE: BASE + 220,
  KT_KVNONOTFOUND: BASE + 230,
  KT_FORMAT: BASE + 235,
} as const;

/** ASN.1 decoder errors (MIT asn1_err.et). */
const ASN1_BASE = 1859794432;
const ASN1_LAST = ASN1_BASE + 255;
/** Profile (krb5.conf) errors (MIT prof_err.et). */
const PROF_BASE = -1429577728;
const PROF_LAST = PROF_BASE + 255;

/** GSS routine errors (major >> 16 & 0xff) the mapping needs. */
const GSS_S = {
  BAD_MECH: 1,
  NO_CRED: 7,
  BAD_SIG: 6,
  DEFECTIVE_TOKEN: 9,
  DEFECTIVE_CREDENTIAL: 10,
  CREDENTIALS_EXPIRED: 11,
  CONTEXT_EXPIRED: 12,
  NO_CONTEXT: 8,
  DUPLICATE_TOKEN_SUPP: 2, // supplementary bit 1 << 1
} as const;

const FAILURES: ReadonlySet<string> = new Set<KerberosFailure>([
  'replay',
  'skew',
  'wrong-principal',
  'bad-token',
  'bad-password',
  'kdc-unreachable',
  'timeout',
  'config',
  'other',
]);

const WRONG_PRINCIPAL = new Set<number>([
  KRB5.AP_ERR_NOT_US,
  KRB5.AP_WRONG_PRINC,
  KRB5.KT_NOTFOUND,
  KRB5.KT_KVNONOTFOUND,
  KRB5.AP_ERR_BADKEYVER,
  KRB5.AP_ERR_NOKEY,
]);

const BAD_TOKEN = new Set<number>([
  KRB5.AP_ERR_BAD_INTEGRITY,
  KRB5.AP_ERR_BADMATCH,
  KRB5.AP_ERR_BADADDR,
  KRB5.AP_ERR_BADVERSION,
  KRB5.AP_ERR_MSG_TYPE,
  KRB5.AP_ERR_MODIFIED,
  KRB5.AP_ERR_BADORDER,
  KRB5.AP_ERR_ILL_CR_TKT,
  KRB5.AP_ERR_MUT_FAIL,
  KRB5.AP_ERR_BADDIRECTION,
  KRB5.AP_ERR_METHOD,
  KRB5.AP_ERR_BADSEQ,
  KRB5.AP_ERR_INAPP_CKSUM,
]);

const CONFIG = new Set<number>([
  KRB5.KT_BADNAME,
  KRB5.KT_UNKNOWN_TYPE,
  KRB5.KT_END,
  KRB5.KT_IOERR,
  KRB5.KT_FORMAT,
  KRB5.RC_REQUIRED,
  KRB5.REALM_UNKNOWN,
]);

/** Failure kind for a krb5 code from rd_req / gss_accept_sec_context / keytab calls. */
export function failureForCode(code: number): KerberosFailure {
  if (code === KRB5.AP_ERR_REPEAT || code === KRB5.RC_REPLAY) return 'replay';
  if (code === KRB5.AP_ERR_SKEW || code === KRB5.KDCREP_SKEW) return 'skew';
  if (WRONG_PRINCIPAL.has(code)) return 'wrong-principal';
  if (BAD_TOKEN.has(code) || (code >= ASN1_BASE && code <= ASN1_LAST)) return 'bad-token';
  if (code === KRB5.KDC_UNREACH || code === KRB5.REALM_CANT_RESOLVE) return 'kdc-unreachable';
  if (CONFIG.has(code)) return 'config';
  if (code >= KRB5.RC_FIRST && code <= KRB5.RC_LAST) return 'config'; // replay cache I/O
  if (code >= PROF_BASE && code <= PROF_LAST) return 'config'; // krb5.conf
  if (code > 0 && code < 4096) return 'config'; // errno: a file of ours (keytab, rcache)
  return 'other';
}

function isNativeError(err: unknown): err is NativeKrb5Error {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'number';
}

/**
 * Maps an addon rejection (rd_req, GSS, keytab) to a KerberosError: the
 * addon's hint when it knows the kind, else the krb5 code, else the GSS major.
 */
export function toKerberosError(err: unknown): KerberosError {
  if (err instanceof KerberosError) return err;
  if (!isNativeError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new KerberosError('other', message, { cause: err });
  }
  let failure: KerberosFailure;
  if (err.hint !== undefined && FAILURES.has(err.hint)) {
    failure = err.hint as KerberosFailure;
  } else if (err.stage === 'init' || err.stage === 'config' || err.stage === 'rcache' || err.stage === 'keytab' || err.stage === 'acquire') {
    failure = 'config';
  } else {
    failure = failureForCode(err.code);
    if (failure === 'other' && err.gssMajor !== undefined) failure = failureForGssMajor(err.gssMajor);
  }
  const opts: { krbCode?: number; krbError?: Buffer; cause?: unknown } = { krbCode: err.code, cause: err };
  if (err.krbError !== undefined) opts.krbError = err.krbError;
  return new KerberosError(failure, err.message, opts);
}

function failureForGssMajor(major: number): KerberosFailure {
  const routine = (major >>> 16) & 0xff;
  const supplementary = major & 0xffff;
  if (supplementary & GSS_S.DUPLICATE_TOKEN_SUPP) return 'replay';
  if (routine === GSS_S.DEFECTIVE_TOKEN || routine === GSS_S.BAD_MECH || routine === GSS_S.BAD_SIG) return 'bad-token';
  if (routine === GSS_S.NO_CRED || routine === GSS_S.DEFECTIVE_CREDENTIAL) return 'config';
  return 'other';
}

/** Codes of the AS exchange that mean "this user/password does not authenticate". */
const PASSWORD_REFUSED = new Set<number>([
  KRB5.KDC_ERR_NAME_EXP,
  KRB5.KDC_ERR_C_PRINCIPAL_UNKNOWN,
  KRB5.KDC_ERR_POLICY,
  KRB5.KDC_ERR_CLIENT_REVOKED,
  KRB5.KDC_ERR_CLIENT_NOTYET,
  KRB5.KDC_ERR_KEY_EXP,
  KRB5.KDC_ERR_PREAUTH_FAILED,
  KRB5.AP_ERR_BAD_INTEGRITY, // wrong password without preauth: the reply does not decrypt
  KRB5.PREAUTH_FAILED,
  KRB5.LIBOS_CANTREADPWD,
  KRB5.PARSE_ILLCHAR,
  KRB5.PARSE_MALFORMED,
]);

/**
 * Classifies a verifyPassword rejection: `false` for a definite "no", else
 * the KerberosError to reject with. Never turns anything into success.
 *  - keytab/service/krb5.conf trouble on our side -> 'config' (checked before the KDC is asked);
 *  - AS stage: wrong password, unknown/locked/expired principal -> false;
 *    no KDC -> 'kdc-unreachable'; clock -> 'skew';
 *  - verify stage (the KDC's answer is checked with OUR service key): a ticket
 *    that does not decrypt (rogue KDC, or a stale keytab) -> false; the KDC
 *    not knowing our service -> 'config'; no KDC -> 'kdc-unreachable'.
 */
export function classifyPasswordError(err: unknown): false | KerberosError {
  if (err instanceof KerberosError) return err;
  if (!isNativeError(err)) return toKerberosError(err);
  const code = err.code;
  const fail = (failure: KerberosFailure): KerberosError =>
    new KerberosError(failure, err.message, { krbCode: code, cause: err });
  if (err.hint === 'bad-password') return false;
  if (err.stage === 'init' || err.stage === 'keytab' || err.hint === 'config') return fail('config');
  if (code === KRB5.KDC_UNREACH || code === KRB5.REALM_CANT_RESOLVE) return fail('kdc-unreachable');
  if (code === KRB5.AP_ERR_SKEW || code === KRB5.KDCREP_SKEW) return fail('skew');
  if (err.stage === 'as') {
    if (PASSWORD_REFUSED.has(code)) return false;
    if (code === KRB5.REALM_UNKNOWN) return fail('config');
    return fail(failureForCode(code) === 'config' ? 'config' : 'other');
  }
  if (err.stage === 'verify') {
    if (code === KRB5.AP_ERR_BAD_INTEGRITY || code === KRB5.AP_ERR_MODIFIED) return false;
    if (code === KRB5.KDC_ERR_S_PRINCIPAL_UNKNOWN || WRONG_PRINCIPAL.has(code)) return fail('config');
    return fail(failureForCode(code) === 'config' ? 'config' : 'other');
  }
  return fail('other');
}

// ---------------------------------------------------------------------------
// KdcGate: concurrency cap + bounded queue + per-call deadline for KDC calls.

export interface KdcGateOptions {
  /** KDC calls allowed to hold a pool thread at once (timed-out ones included until they return). */
  readonly maxConcurrent: number;
  /** Callers allowed to wait for a slot; one more is refused at once. */
  readonly maxQueue: number;
  /** Deadline per call, queueing included, in ms. */
  readonly timeoutMs: number;
}

/** What a gate calls its calls in error messages, and the failure a full queue reports. */
export interface GateIdentity {
  readonly label: string;
  readonly busyFailure: KerberosFailure;
}

export const DEFAULT_KDC_GATE: KdcGateOptions = { maxConcurrent: 2, maxQueue: 32, timeoutMs: 10_000 };

const KDC_CALLS: GateIdentity = { label: 'KDC call', busyFailure: 'kdc-unreachable' };
const TICKET_CHECKS: GateIdentity = { label: 'ticket check', busyFailure: 'timeout' };

/**
 * Default cap on ticket checks (rd_req, GSS accept steps) in flight: one per
 * core. They are pure CPU (~0.1 ms each); more in flight than cores only makes
 * pool threads compete with the event loop for the same cores (measured:
 * 32 in flight -> event-loop delay p99 2.1 ms on 2 cores, no more throughput).
 */
export const DEFAULT_TICKET_GATE: KdcGateOptions = {
  maxConcurrent: Math.max(1, Math.min(8, os.availableParallelism())),
  maxQueue: 10_000,
  timeoutMs: 10_000,
};

interface Waiter {
  readonly start: () => void;
  settled: boolean;
}

/**
 * Caps concurrent KDC calls and bounds how long a caller waits. The same gate
 * (with its own label) caps ticket checks, which are CPU-bound: there the cap
 * keeps pool threads from crowding the event loop off the cores.
 *
 * - At most `maxConcurrent` calls run; a call counts until ITS PROMISE SETTLES,
 *   even after its caller timed out, because the native thread behind it is
 *   still blocked (MIT 1.20 has no request timeout; a dead KDC holds a thread
 *   ~27 s). So a hung KDC can never occupy more than `maxConcurrent` pool threads.
 * - Up to `maxQueue` callers wait for a slot; beyond that a caller is refused
 *   at once with KerberosError('kdc-unreachable') (the KDC is not keeping up).
 * - Each caller gets KerberosError('timeout') at `timeoutMs` after run() was
 *   called, whether still queued (then it never starts) or running (its
 *   result is discarded when it arrives).
 */
export class KdcGate {
  readonly options: KdcGateOptions;
  readonly #identity: GateIdentity;
  readonly #clock: Clock;
  #running = 0;
  #abandoned = 0;
  readonly #queue: Waiter[] = [];

  /** `clock` times the per-call deadline; tests inject a fake one. */
  constructor(options: Partial<KdcGateOptions> = {}, identity: GateIdentity = KDC_CALLS, clock: Clock = systemClock) {
    const o = { ...DEFAULT_KDC_GATE, ...options };
    this.#identity = identity;
    this.#clock = clock;
    if (!Number.isInteger(o.maxConcurrent) || o.maxConcurrent < 1) throw new RangeError('KdcGate: maxConcurrent must be an integer >= 1');
    if (!Number.isInteger(o.maxQueue) || o.maxQueue < 0) throw new RangeError('KdcGate: maxQueue must be an integer >= 0');
    if (!(o.timeoutMs > 0)) throw new RangeError('KdcGate: timeoutMs must be > 0');
    this.options = o;
  }

  /** Calls holding a slot (including abandoned ones still running). */
  get inFlight(): number {
    return this.#running;
  }

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Calls whose caller timed out but which have not returned yet. */
  get abandoned(): number {
    return this.#abandoned;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let started = false;
      let timedOut = false;
      const waiter: Waiter = { start: () => start(), settled: false };

      const cancelTimer = this.#clock.setTimer(() => {
        if (waiter.settled) return;
        waiter.settled = true;
        timedOut = true;
        if (started) {
          this.#abandoned++;
        } else {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) this.#queue.splice(i, 1);
        }
        reject(
          new KerberosError(
            'timeout',
            started
              ? `${this.#identity.label} timed out after ${this.options.timeoutMs} ms (it keeps running in the background)`
              : `${this.#identity.label} timed out after ${this.options.timeoutMs} ms waiting for a free slot`,
          ),
        );
      }, this.options.timeoutMs);

      const finish = (): void => {
        this.#running--;
        if (timedOut) this.#abandoned--;
        this.#pump();
      };

      const start = (): void => {
        started = true;
        this.#running++;
        let p: Promise<T>;
        try {
          p = Promise.resolve(fn());
        } catch (err) {
          p = Promise.reject(err);
        }
        p.then(
          (value) => {
            finish();
            if (waiter.settled) return;
            waiter.settled = true;
            cancelTimer();
            resolve(value);
          },
          (err: unknown) => {
            finish();
            if (waiter.settled) return;
            waiter.settled = true;
            cancelTimer();
            reject(err);
          },
        );
      };

      if (this.#running < this.options.maxConcurrent) {
        start();
      } else if (this.#queue.length < this.options.maxQueue) {
        this.#queue.push(waiter);
      } else {
        waiter.settled = true;
        cancelTimer();
        reject(
          new KerberosError(
            this.#identity.busyFailure,
            `${this.#identity.label}s busy: ${this.#running} in flight and ${this.#queue.length} waiting (limit ${this.options.maxQueue})`,
          ),
        );
      }
    });
  }

  #pump(): void {
    while (this.#running < this.options.maxConcurrent && this.#queue.length > 0) {
      const next = this.#queue.shift();
      if (next !== undefined && !next.settled) next.start();
    }
  }
}

// ---------------------------------------------------------------------------
// Loading the addon.

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'popgate_krb5.node');

/** The package root: the nearest ancestor of this file with popgate's package.json. */
function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let dir = here;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const name = (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name;
        if (name === 'popgate') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // src/kerberos/binding.ts and dist/kerberos/binding.js are both two levels below the root.
  return path.resolve(here, '..', '..');
}

/** Absolute path of the addon file. */
export function nativeAddonPath(): string {
  return path.join(packageRoot(), ADDON_RELATIVE);
}

let cachedAddon: NativeAddon | undefined;

/** Loads the addon once (lazily); throws a clear Error when it is missing or will not load. */
export function loadNativeAddon(): NativeAddon {
  if (cachedAddon !== undefined) return cachedAddon;
  const file = nativeAddonPath();
  if (!existsSync(file)) {
    throw new Error(
      `popgate's Kerberos addon is not built (${file} is missing): run \`npm run build:native\` ` +
        '(needs libkrb5-dev, libpam0g-dev, python3, make and g++)',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    cachedAddon = require(file) as NativeAddon;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(
      `cannot load popgate's Kerberos addon ${file}: ${message} ` +
        '(rebuild it with `npm run build:native`; it needs libkrb5-3, libgssapi-krb5-2 and libpam0g at run time)',
      { cause: err },
    );
  }
  return cachedAddon;
}

// ---------------------------------------------------------------------------
// The binding.

/** An empty directory stays empty (the addon refuses it) instead of becoming the cwd. */
function absoluteDir(dir: string): string {
  return dir === '' ? '' : path.resolve(dir);
}

class NativeGssAcceptor implements GssAcceptor {
  readonly #ctx: NativeGssContext;
  readonly #gate: KdcGate;
  #client: string | undefined;

  constructor(ctx: NativeGssContext, gate: KdcGate) {
    this.#ctx = ctx;
    this.#gate = gate;
  }

  get client(): string | undefined {
    return this.#client;
  }

  async step(token: Buffer): Promise<{ readonly done: boolean; readonly output: Buffer }> {
    try {
      const r = await this.#gate.run(() => this.#ctx.step(token));
      if (r.done) this.#client = r.client;
      return { done: r.done, output: r.output };
    } catch (err) {
      throw toKerberosError(err);
    }
  }

  async wrap(data: Buffer): Promise<Buffer> {
    try {
      return await this.#ctx.wrap(data);
    } catch (err) {
      throw toKerberosError(err);
    }
  }

  async unwrap(token: Buffer): Promise<Buffer> {
    try {
      return await this.#ctx.unwrap(token);
    } catch (err) {
      throw toKerberosError(err);
    }
  }

  dispose(): void {
    this.#ctx.dispose();
  }
}

export interface KerberosBindingOptions {
  /** Gate for password checks (KDC calls); default `new KdcGate(DEFAULT_KDC_GATE)`. */
  readonly kdcGate?: KdcGate;
  /** Cap on ticket checks in flight (AP-REQ, GSS accept steps); default {@link DEFAULT_TICKET_GATE}. */
  readonly ticketGate?: KdcGate;
}

/** A gate for ticket checks (messages say "ticket check"; a full queue is a 'timeout'). */
export function ticketCheckGate(options: Partial<KdcGateOptions> = {}, clock: Clock = systemClock): KdcGate {
  return new KdcGate({ ...DEFAULT_TICKET_GATE, ...options }, TICKET_CHECKS, clock);
}

export class NativeKerberosBinding implements KerberosBinding {
  readonly kdcGate: KdcGate;
  readonly ticketGate: KdcGate;
  readonly #addon: NativeAddon;

  constructor(addon: NativeAddon, options: KerberosBindingOptions = {}) {
    this.#addon = addon;
    this.kdcGate = options.kdcGate ?? new KdcGate();
    this.ticketGate = options.ticketGate ?? ticketCheckGate();
  }

  async verifyApReq(apReq: Buffer, opts: AcceptorOptions): Promise<ApReqResult> {
    try {
      const r = await this.ticketGate.run(() =>
        this.#addon.verifyApReq(apReq, opts.keytab, [...opts.servicePrincipals], absoluteDir(opts.rcacheDir)),
      );
      return { client: r.client, server: r.server, mutual: r.mutual, apRep: r.mutual ? r.apRep : undefined };
    } catch (err) {
      throw toKerberosError(err);
    }
  }

  /** No I/O here: the acceptor credential is acquired (off the event loop) in the first step(). */
  createGssAcceptor(opts: AcceptorOptions): GssAcceptor {
    let ctx: NativeGssContext;
    try {
      ctx = new this.#addon.GssContext(opts.keytab, [...opts.servicePrincipals], absoluteDir(opts.rcacheDir));
    } catch (err) {
      throw new KerberosError('config', err instanceof Error ? err.message : String(err), { cause: err });
    }
    return new NativeGssAcceptor(ctx, this.ticketGate);
  }

  async verifyPassword(check: PasswordCheck): Promise<boolean> {
    // Nothing a KDC could accept: answer without spending a KDC slot.
    if (check.password.length === 0 || check.password.includes('\0')) return false;
    if (check.principal.length === 0 || check.principal.includes('\0')) return false;
    try {
      return await this.kdcGate.run(() => {
        // The addon copies the password synchronously; wipe our UTF-8 copy at once.
        const pw = Buffer.from(check.password, 'utf8');
        try {
          return this.#addon.verifyPassword(check.principal, pw, check.keytab, check.servicePrincipal);
        } finally {
          pw.fill(0);
        }
      });
    } catch (err) {
      const r = classifyPasswordError(err);
      if (r === false) return false;
      throw r;
    }
  }

  async checkKeytab(keytab: string, principals: readonly string[]): Promise<void> {
    try {
      await this.#addon.checkKeytab(keytab, [...principals]);
    } catch (err) {
      const e = toKerberosError(err);
      throw e.failure === 'config' ? e : new KerberosError('config', e.message, { krbCode: e.krbCode, cause: err });
    }
  }

  /** SIGHUP: every pool thread re-creates its krb5_context (re-reads krb5.conf) at its next call. */
  reload(): void {
    this.#addon.reload();
  }
}

/** Loads the addon (clear Error if it is not built) and returns the binding. */
export function loadKerberosBinding(options: KerberosBindingOptions = {}): NativeKerberosBinding {
  return new NativeKerberosBinding(loadNativeAddon(), options);
}
