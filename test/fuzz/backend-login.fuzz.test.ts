/**
 * The backend login machine against any backend: scripted answers (valid
 * dialogues, refusals, continuations, over-long lines), mutated and cut into
 * arbitrary reads, with the host's TLS handshake done or not. Invariants:
 * never a credential before an accepted greeting (nor before TLS on a STLS or
 * implicit-TLS link), never more than one login, never an over-long response
 * line accepted, one outcome at most and nothing after it, the secret gone
 * once the dialogue is over, and no throw: the machine always ends done,
 * failed or waiting. CAPA and pipelining: CAPA only for a USER/PASS login
 * whose backend is unknown, once, on the final link (after TLS and XCLIENT);
 * its answer reported once, before the login; USER and PASS in one batch
 * (one write) exactly when the backend is known or learned to pipeline, and
 * never otherwise; the password gone from the machine once PASS is out. A
 * second property: without STLS the outcome does not depend on how the bytes
 * were cut.
 */
import { inspect } from 'node:util';
import fc from 'fast-check';
import { describe } from 'vitest';
import { BackendLoginMachine, MAX_BACKEND_LINE, type LoginAction } from '../../src/backend/login-machine.js';
import type { BackendLogin, BackendTls } from '../../src/backend/types.js';
import { Choices, Reached, chunk, chunkingArb, choicesArb, fuzzIt, invariant, mutate, mutationArb, show, type Chunking } from './common.js';

const PASSWORD = 'pw-S3CRET';
const LOGINS: Record<BackendLogin['method'], BackendLogin> = {
  'user-pass': { method: 'user-pass', user: 'alice*gw', password: PASSWORD },
  'auth-plain': { method: 'auth-plain', authzid: 'alice', authcid: 'gw', password: PASSWORD },
};
const TOKEN = Buffer.from(`alice\0gw\0${PASSWORD}`).toString('base64');
const XCLIENT = 'XCLIENT ADDR=192.0.2.7 PORT=51000';
const OK = /^\+OK(\s|$)/i;
const LF = 0x0a;

interface Setup {
  readonly tls: BackendTls['mode'];
  readonly method: BackendLogin['method'];
  readonly xclient: boolean;
  readonly offered: boolean;
  /** What the host's memory says of the backend. */
  readonly pipelining: 'yes' | 'ask' | 'no';
  /** Its CAPA lists PIPELINING (valid scripts, pipelining 'ask'). */
  readonly advertises: boolean;
}

const setupArb: fc.Arbitrary<Setup> = fc.record({
  tls: fc.constantFrom('none', 'starttls', 'implicit'),
  method: fc.constantFrom('user-pass', 'auth-plain'),
  xclient: fc.boolean(),
  offered: fc.boolean(),
  pipelining: fc.constantFrom('yes', 'ask', 'no'),
  advertises: fc.boolean(),
});

/** One backend line: the usual answers, oddities, and lines around the cap. */
const lineArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      '+OK',
      '+OK Logged in.',
      '+ok x',
      '+OK [XCLIENT] ready',
      '+ ',
      '+',
      '-ERR',
      '-ERR [AUTH] no',
      '-ERR [IN-USE] locked',
      '-ERR [SYS/TEMP] later',
      '-ERR [LOGIN-DELAY] wait',
      '-ERRX',
      '+OKAY',
      '* garbage',
      '',
      '.',
      'PIPELINING',
      'USER',
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: MAX_BACKEND_LINE - 4, max: MAX_BACKEND_LINE + 2 }).map((n) => `+OK ${'a'.repeat(n - 4)}`) },
);
const endArb = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r', '');

/** The answers a well-behaved backend gives for this setup: before TLS, and after it. */
function validScript(s: Setup, cont: boolean): { before: string[]; after: string[] } {
  const greeting = s.offered ? '+OK [XCLIENT] Dovecot ready.' : '+OK Dovecot ready.';
  const login = s.method === 'user-pass' ? ['+OK', '+OK Logged in.'] : cont ? ['+ ', '+OK Logged in.'] : ['+OK Logged in.'];
  // `cont` doubles as "CAPA refused" for a backend without PIPELINING.
  const capaList = s.advertises ? ['+OK', 'TOP', 'PIPELINING', '.'] : cont ? ['-ERR'] : ['+OK', 'USER', '.'];
  const capa = s.method === 'user-pass' && s.pipelining === 'ask' ? capaList : [];
  const rest = [...(s.xclient && s.offered ? ['+OK Updated'] : []), ...capa, ...login, '+OK 2 messages'];
  if (s.tls === 'starttls') return { before: [greeting, '+OK Begin TLS'], after: rest };
  return { before: [], after: [greeting, ...rest] };
}

interface Script {
  readonly before: Buffer;
  readonly after: Buffer;
}

const scriptArb = (s: Setup): fc.Arbitrary<Script> =>
  fc
    .tuple(
      fc.oneof(
        { weight: 3, arbitrary: fc.boolean().map((cont) => validScript(s, cont)) },
        { weight: 1, arbitrary: fc.record({ before: fc.array(lineArb, { maxLength: 3 }), after: fc.array(lineArb, { maxLength: 6 }) }) },
      ),
      endArb,
      fc.array(mutationArb, { maxLength: 2 }),
      fc.array(mutationArb, { maxLength: 2 }),
    )
    .map(([lines, end, m1, m2]) => {
      const join = (l: readonly string[]): Buffer => Buffer.from(l.map((x) => `${x}\r\n`).join('').replace(/\r\n$/, end), 'latin1');
      return { before: mutate(join(lines.before), m1), after: mutate(join(lines.after), m2) };
    });

/** The first complete line over the cap, or a tail that fills it (what the machine must refuse). */
function overLong(bytes: Buffer): boolean {
  let pos = 0;
  for (;;) {
    const lf = bytes.indexOf(LF, pos);
    if (lf < 0) return bytes.length - pos >= MAX_BACKEND_LINE;
    if (lf - pos + 1 > MAX_BACKEND_LINE) return true;
    pos = lf + 1;
  }
}

interface Run {
  readonly outcome: string;
  readonly sends: readonly string[];
}

const reached = new Reached([
  'done',
  'done-starttls',
  'done-xclient',
  'done-continuation',
  'done-capa',
  'done-pipelined',
  'done-capa-pipelined',
  'refused-login',
  'refused-pipelined-user',
  'refused-greeting',
  'overflow',
  'protocol',
  'waiting',
]);

/**
 * Runs one dialogue as the host would and checks every action against the
 * invariants. `tlsUp` decides, each time a handshake is asked for, whether it
 * succeeds before the next bytes (otherwise the bytes arrive during it).
 */
function drive(s: Setup, script: Script, how: Chunking, choices: Choices | undefined): Run {
  const m = new BackendLoginMachine({ where: 'b:110', tls: s.tls, login: LOGINS[s.method], ...(s.xclient ? { xclient: XCLIENT } : {}), pipelining: s.pipelining });
  const sends: string[] = [];
  let fed = Buffer.alloc(0);
  let tlsAsked = false;
  let tlsDone = false;
  let logins = 0;
  let outcome: LoginAction | undefined;
  let fedAtOutcome = 0;
  /** The capabilities the machine reported (undefined: none). */
  let learned: boolean | undefined;

  const apply = (actions: readonly LoginAction[]): void => {
    // Sends returned together go out in one write. More than one: USER + PASS pipelined, or answers
    // the backend queued ahead (read in one chunk) letting the dialogue run on.
    const batch = actions.flatMap((a) => (a.kind === 'send' ? [a.line] : []));
    const user = batch.findIndex((l) => l.startsWith('USER '));
    if (user >= 0) {
      const pipelines =
        s.pipelining === 'yes' || learned === true || actions.some((a) => a.kind === 'capabilities' && a.pipelining);
      invariant(m.facts.pipelined === pipelines, () => `pipelined ${m.facts.pipelined}, expected ${pipelines}`);
      if (pipelines) invariant(batch[user + 1]?.startsWith('PASS ') === true, () => `USER and PASS not in one write: ${show(batch.join('|'))}`);
    }
    for (const a of actions) {
      invariant(outcome === undefined, () => `action after the outcome: ${JSON.stringify(a)}`);
      if (a.kind === 'capabilities') {
        invariant(s.pipelining === 'ask' && s.method === 'user-pass' && sends.includes('CAPA'), 'capabilities without CAPA');
        invariant(learned === undefined, 'capabilities reported twice');
        invariant(!sends.some((l) => /^(USER|PASS) /.test(l)), 'capabilities after the login began');
        learned = a.pipelining;
        continue;
      }
      if (a.kind === 'send') {
        const credential = /^(USER|PASS|AUTH) /.test(a.line) || a.line === TOKEN;
        if (credential) {
          invariant(OK.test(m.facts.greeting), () => `credential ${show(a.line)} before an accepted greeting`);
          invariant(s.tls === 'none' || tlsDone, () => `credential ${show(a.line)} before TLS`);
          invariant(!(s.xclient && m.facts.xclientOffered) || m.facts.xclientSent, 'credential before the XCLIENT answer');
        }
        if (/^(USER|AUTH) /.test(a.line)) logins++;
        invariant(logins <= 1, () => `second login: ${show(sends.join('|'))}`);
        if (a.line.startsWith('PASS ')) invariant(sends.at(-1)?.startsWith('USER ') === true, 'PASS not right after USER');
        if (a.line === TOKEN) invariant(sends.at(-1)?.startsWith('AUTH PLAIN ') === true, 'continuation not right after AUTH');
        if (a.line === 'STLS') invariant(s.tls === 'starttls' && sends.length === 0, 'STLS out of place');
        if (a.line === XCLIENT) invariant(s.xclient && m.facts.xclientOffered, 'XCLIENT not offered');
        if (a.line === 'CAPA') {
          invariant(s.pipelining === 'ask' && s.method === 'user-pass' && !sends.includes('CAPA'), 'CAPA not asked for, or twice');
          invariant(OK.test(m.facts.greeting) && (s.tls === 'none' || tlsDone), 'CAPA before the greeting or TLS');
          invariant(!(s.xclient && m.facts.xclientOffered) || m.facts.xclientSent, 'CAPA before the XCLIENT answer');
        }
        if (/^(USER|AUTH) /.test(a.line) && s.pipelining === 'ask' && s.method === 'user-pass') invariant(learned !== undefined, 'login before the CAPA answer');
        sends.push(a.line);
      } else if (a.kind === 'startTls') {
        invariant(s.tls !== 'none' && !tlsAsked, 'handshake asked twice or without TLS');
        tlsAsked = true;
      } else {
        outcome = a;
        fedAtOutcome = fed.length;
      }
    }
  };
  const handshake = (): void => {
    if (!tlsAsked || tlsDone || outcome !== undefined) return;
    if (choices && !choices.chance(0.9)) return;
    tlsDone = true;
    apply(m.tlsReady());
  };
  const feed = (bytes: Buffer): void => {
    for (const piece of chunk(bytes, how)) {
      fed = Buffer.concat([fed, piece]);
      apply(m.receive(piece));
      if (sends.some((l) => l.startsWith('PASS '))) invariant(!inspect(m, { depth: 10 }).includes(PASSWORD), 'password kept after PASS');
      handshake();
    }
  };

  apply(m.connected());
  handshake();
  feed(script.before);
  handshake();
  feed(script.after);

  const status = m.status;
  invariant(status === 'waiting' || status === 'done' || status === 'failed', `status ${status}`);
  invariant((outcome === undefined) === (status === 'waiting'), 'outcome and status disagree');
  if (status !== 'waiting') invariant(!inspect(m, { depth: 10 }).includes(PASSWORD) && !inspect(m, { depth: 10 }).includes(TOKEN), 'secret kept');

  if (outcome?.kind === 'done') {
    invariant(logins === 1 && OK.test(outcome.loginReply), 'done without a login accepted');
    const consumed = fed.subarray(0, fedAtOutcome - outcome.leftover.length);
    invariant(consumed.at(-1) === LF && !overLong(consumed), () => `accepted an over-long line: ${show(consumed)}`);
    invariant(fed.subarray(consumed.length, fedAtOutcome).equals(outcome.leftover), 'leftover is not what followed the reply');
    reached.hit('done');
    if (tlsDone && s.tls === 'starttls') reached.hit('done-starttls');
    if (m.facts.xclientSent) reached.hit('done-xclient');
    if (sends.includes(TOKEN)) reached.hit('done-continuation');
    if (m.facts.capaAsked) reached.hit('done-capa');
    if (m.facts.pipelined) reached.hit(m.facts.capaAsked ? 'done-capa-pipelined' : 'done-pipelined');
    // What follows the reply in the same read is leftover: the cut moves it, not where the login ended.
    return { outcome: `done ${outcome.loginReply} at ${consumed.length}`, sends };
  }
  if (outcome?.kind === 'fail') {
    const detail = outcome.error.detail ?? '';
    if (detail.includes('longer than')) {
      invariant(overLong(fed.subarray(0, fedAtOutcome)), () => `overflow without an over-long line: ${show(fed)}`);
      reached.hit('overflow');
    } else if (outcome.error.code.startsWith('BACKEND_LOGIN') || outcome.error.code === 'BACKEND_IN_USE') {
      invariant(logins === 1, 'login refused without a login');
      reached.hit('refused-login');
      if (m.facts.pipelined && detail.includes('USER refused')) reached.hit('refused-pipelined-user');
    } else if (detail.includes('bad greeting')) {
      reached.hit('refused-greeting');
    } else {
      invariant(outcome.error.code === 'BACKEND_PROTOCOL', () => `unexpected code ${outcome?.kind === 'fail' ? outcome.error.code : ''}`);
      reached.hit('protocol');
    }
    return { outcome: `fail ${outcome.error.code} ${detail}`, sends };
  }
  // Still waiting: every complete line was read, and none was over the cap.
  if (m.phase !== 'tls') invariant(!overLong(fed), () => `waiting on an over-long line: ${show(fed)}`);
  reached.hit('waiting');
  return { outcome: `waiting ${m.phase}`, sends };
}

describe('fuzz: backend login machine', () => {
  fuzzIt(
    'backend login: no credential before the greeting or TLS, one login, no over-long line, always done/failed/waiting',
    fc.property(
      setupArb.chain((s) => fc.tuple(fc.constant(s), scriptArb(s), chunkingArb, choicesArb)),
      ([s, script, how, picks]) => {
        drive(s, script, how, new Choices(picks));
      },
    ),
    () => reached,
  );

  fuzzIt(
    'backend login: without STLS the outcome and what is sent do not depend on how reads are cut',
    fc.property(
      setupArb
        .filter((s) => s.tls !== 'starttls')
        .chain((s) => fc.tuple(fc.constant(s), scriptArb(s), chunkingArb)),
      ([s, script, how]) => {
        const whole = drive(s, script, { cuts: [], bytewise: false }, undefined);
        const cut = drive(s, script, how, undefined);
        invariant(whole.outcome === cut.outcome, () => `${show(whole.outcome)} vs ${show(cut.outcome)}`);
        invariant(whole.sends.join('\n') === cut.sends.join('\n'), 'different commands sent');
      },
    ),
  );
});
