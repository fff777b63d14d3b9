import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/index.js';
import type { PasswordVerifier } from '../../src/auth/types.js';
import { parseConfigText, type PopgateConfig } from '../../src/config/index.js';
import { KerberosError, type PasswordCheck } from '../../src/kerberos/types.js';
import { noopMetrics, type Metrics } from '../../src/observability/metrics.js';
import type { KerberosServices } from '../../src/server/kerberos-services.js';
import {
  buildServices,
  canVerifyChallenges,
  carriedParts,
  challengeString,
  countingErrors,
  planVerifiers,
  servicesCloser,
  timedPasswordCheck,
  usableMechanisms,
  type Services,
} from '../../src/server/services.js';

const log = pino({ level: 'silent' });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'popgate-services-'));
  await writeFile(join(dir, 'users'), `alice:${await hashPassword('secret', { scryptLogN: 10 })}\nbob:{PLAIN}pw\n`);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function config(auth = ''): Promise<PopgateConfig> {
  const yaml = `
listeners: [{ name: a, kind: pop3, address: 127.0.0.1, port: 110 }]
auth:
  userFile: users
  mechanisms: [PLAIN, CRAM-MD5]
${auth}
backend: { host: 127.0.0.1, port: 1110, login: { mode: master, user: popgate, password: x } }
`;
  return parseConfigText(yaml, { baseDir: dir, env: {}, source: 't', readSecrets: false });
}

/** Metrics recording what the services report (anything but noopMetrics turns counting on). */
function recordingMetrics(): Metrics & { events: string[] } {
  const events: string[] = [];
  return {
    ...noopMetrics,
    events,
    verifierError: (v) => void events.push(`verifierError ${v}`),
    kerberosCheck: (check, _s, failure) => void events.push(`kerberos ${check} ${failure ?? 'ok'}`),
  };
}

describe('buildServices', () => {
  it('builds the verifier chain from the user file, without a throttle when it is disabled', async () => {
    const cfg = await config('  throttle: { enabled: false }');
    const services = await buildServices(cfg, log, noopMetrics);
    try {
      expect(services.userFile).toBeDefined();
      expect(services.throttle).toBeUndefined();
      const out = await services.verifier.verify({ username: 'alice', password: 'secret', mechanism: 'PLAIN', tls: true });
      expect(out).toMatchObject({ ok: true, user: 'alice' });
      // {PLAIN} entries make challenges checkable, so CRAM-MD5 stays offered.
      expect(canVerifyChallenges(services)).toBe(true);
      expect(usableMechanisms(services)).toEqual(['PLAIN', 'CRAM-MD5']);
    } finally {
      services.verifier.close();
      services.resolver.close();
    }
  });

  it('keeps a carried throttle (and its failure counts) instead of making a new one', async () => {
    const cfg = await config('  throttle: { enabled: true }');
    const first = await buildServices(cfg, log, noopMetrics);
    const second = await buildServices(cfg, log, noopMetrics, carriedParts(first, ['throttle']));
    const third = await buildServices(cfg, log, noopMetrics, carriedParts(first, []));
    expect(first.throttle).toBeDefined();
    expect(second.throttle).toBe(first.throttle);
    expect(third.throttle).not.toBe(first.throttle);
    const close = servicesCloser(log);
    await close(first, [second, third]); // shared with a live generation: stays open
    await close(second, [third]);
    await close(third, []);
    await expect(first.throttle?.close()).resolves.toBeUndefined();
  });
});

describe('planVerifiers', () => {
  it('pairs each listed verifier with its settings, in order', async () => {
    const cfg = await config();
    expect(planVerifiers(cfg.auth, undefined)).toEqual([{ kind: 'userFile', path: join(dir, 'users') }]);
  });

  it('refuses a verifier whose settings are missing (the schema rules this out)', async () => {
    const cfg = await config();
    expect(() => planVerifiers({ ...cfg.auth, verifiers: ['http'] }, undefined)).toThrow('auth.http is not set');
    expect(() => planVerifiers({ ...cfg.auth, userFile: undefined }, undefined)).toThrow('auth.userFile is not set');
    expect(() => planVerifiers({ ...cfg.auth, verifiers: ['kerberos'] }, undefined)).toThrow('no Kerberos realm');
    const kerberos = { config: { mapping: { realms: ['EXAMPLE.COM'] } } } as unknown as KerberosServices;
    expect(planVerifiers({ ...cfg.auth, verifiers: ['kerberos'] }, kerberos)).toEqual([{ kind: 'kerberos', kerberos, defaultRealm: 'EXAMPLE.COM' }]);
  });
});

describe('countingErrors', () => {
  const failing: PasswordVerifier = {
    name: 'userFile',
    verify: () => Promise.reject(new Error('unreadable')),
    close: () => undefined,
  };

  it('counts rejections per verifier and passes them on', async () => {
    const metrics = recordingMetrics();
    const v = countingErrors(failing, metrics);
    await expect(v.verify({ username: 'a', password: 'b', mechanism: 'PLAIN', tls: true })).rejects.toThrow('unreadable');
    expect(metrics.events).toEqual(['verifierError userFile']);
    expect(v.verifyChallenge).toBeUndefined();
  });

  it('is the verifier itself without metrics', () => {
    expect(countingErrors(failing, noopMetrics)).toBe(failing);
  });
});

describe('timedPasswordCheck', () => {
  const check: PasswordCheck = { principal: 'a@R', password: 'p', keytab: '/k', servicePrincipal: 'pop/h@R' };

  it('labels a check by its outcome', async () => {
    const metrics = recordingMetrics();
    await timedPasswordCheck({ verifyPassword: async () => true }, check, metrics);
    await timedPasswordCheck({ verifyPassword: async () => false }, check, metrics);
    await expect(timedPasswordCheck({ verifyPassword: () => Promise.reject(new KerberosError('skew', 'skew')) }, check, metrics)).rejects.toThrow();
    await expect(timedPasswordCheck({ verifyPassword: () => Promise.reject(new Error('x')) }, check, metrics)).rejects.toThrow();
    expect(metrics.events).toEqual(['kerberos password ok', 'kerberos password bad-password', 'kerberos password skew', 'kerberos password other']);
  });
});

describe('mechanisms and challenges', () => {
  it('drops CRAM-MD5 when no verifier can check challenges', async () => {
    const cfg = await config();
    const services = { config: cfg, userFile: undefined } satisfies Pick<Services, 'config' | 'userFile'>;
    expect(canVerifyChallenges(services)).toBe(false);
    expect(usableMechanisms(services)).toEqual(['PLAIN']);
  });

  it('makes a fresh RFC 1939 timestamp each time', () => {
    const a = challengeString();
    expect(a).toMatch(/^<[0-9a-f]{24}\.\d+@[A-Za-z0-9.-]+>$/);
    expect(challengeString()).not.toBe(a);
  });
});
