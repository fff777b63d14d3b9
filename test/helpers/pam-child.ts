/**
 * Runs the pam verifier over the real addon in a process of its own, so the
 * test can start it with LD_PRELOAD=libpam_wrapper.so (PAM reads its service
 * files from PAM_WRAPPER_SERVICE_DIR instead of /etc/pam.d). Started by
 * test/helpers/pam-wrapper.ts:
 *
 *   node --import ./test/helpers/ts-resolve-hooks.mjs test/helpers/pam-child.ts '<PamChildScenario JSON>'
 *
 * Starts every login once its `after` condition holds (the gate's state or
 * another login's answer: events, not wall-clock delays) and prints one JSON line
 * (PamChildReport) when all have settled; the parent then kills it (a PAM
 * call still hung in the background would hold its exit: libuv joins its
 * pool threads).
 */
import { createPamVerifier, pamGate, type PamAuthenticator } from '../../src/auth/pam-verifier.js';
import { GatewayError } from '../../src/errors.js';
import { loadNativeAddon } from '../../src/kerberos/binding.js';
import { waitFor } from './wait.js';

/** When a login starts (all of its conditions): once `user` was answered, or once that many calls hold a slot / wait for one. */
export type PamStartCondition = { readonly answered: string } | { readonly inFlight: number } | { readonly queued: number };

export interface PamChildScenario {
  readonly service: string;
  readonly accountCheck: boolean;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly timeoutMs: number;
  readonly logins: readonly {
    readonly user: string;
    readonly password: string;
    /** The client address the verifier is given (PAM_RHOST). */
    readonly rhost?: string;
    readonly after?: readonly PamStartCondition[];
  }[];
}

export interface PamChildResult {
  readonly user: string;
  /** 1 for the first login answered, 2 for the next, ... (the order of answers, not of starts). */
  readonly answered: number;
  readonly outcome?: { readonly ok: boolean; readonly user?: string; readonly reason?: string };
  readonly error?: { readonly code: string; readonly message: string };
}

export interface PamChildReport {
  readonly results: PamChildResult[];
  /** Most PAM calls seen holding a slot at once (sampled at every start and answer). */
  readonly maxInFlight: number;
  /** Calls that reached the addon (pamAuthenticate). */
  readonly pamCalls: number;
}

const scenario = JSON.parse(process.argv[2] ?? '{}') as PamChildScenario;
const gate = pamGate({ maxConcurrent: scenario.maxConcurrent, maxQueue: scenario.maxQueue, timeoutMs: scenario.timeoutMs });
const addon = loadNativeAddon();
let pamCalls = 0;
const pam: PamAuthenticator = {
  pamAuthenticate(...args) {
    pamCalls++;
    return addon.pamAuthenticate(...args);
  },
};
const verifier = createPamVerifier({ pam, service: scenario.service, accountCheck: scenario.accountCheck, gate });
let maxInFlight = 0;
const sample = (): void => {
  maxInFlight = Math.max(maxInFlight, gate.inFlight);
};

const answered = new Set<string>();

function holds(c: PamStartCondition): boolean {
  if ('answered' in c) return answered.has(c.answered);
  if ('inFlight' in c) return gate.inFlight >= c.inFlight;
  return gate.queued >= c.queued;
}

async function one(login: PamChildScenario['logins'][number]): Promise<PamChildResult> {
  const after = login.after;
  if (after) await waitFor(`${login.user}'s start conditions ${JSON.stringify(after)}`, () => after.every(holds), { timeoutMs: 10_000, intervalMs: 2 });
  const result = await verify(login);
  answered.add(login.user);
  return result;
}

let answers = 0;

async function verify(login: PamChildScenario['logins'][number]): Promise<PamChildResult> {
  const request = { username: login.user, password: login.password, mechanism: 'USER', tls: true, ...(login.rhost ? { remoteAddress: login.rhost } : {}) };
  const p = verifier.verify(request);
  sample();
  try {
    const outcome = await p;
    sample();
    return { user: login.user, answered: ++answers, outcome };
  } catch (err) {
    sample();
    const code = err instanceof GatewayError ? err.code : 'THROWN';
    return { user: login.user, answered: ++answers, error: { code, message: String(err) } };
  }
}

const results = await Promise.all(scenario.logins.map(one));
const report: PamChildReport = { results, maxInFlight, pamCalls };
process.stdout.write(`${JSON.stringify(report)}\n`);
