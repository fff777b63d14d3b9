import { describe, expect, it } from 'vitest';
import { PAM_DEFAULTS } from '../../src/config/index.js';
import { planVerifiers } from '../../src/server/services.js';
import { issuesOf, MASTER_BACKEND, parseConfig } from '../helpers/config.js';

const LISTENER = `
listeners:
  - kind: pop3s
    port: 995
    tls: { certFile: /etc/popgate/tls.crt, keyFile: /etc/popgate/tls.key }
`;

function withAuth(auth: string): string {
  return `${LISTENER}auth:\n${auth.replace(/^/gm, '  ')}\n${MASTER_BACKEND}`;
}

describe('auth.pam', () => {
  it('is optional: the pam verifier alone takes the defaults', async () => {
    const cfg = await parseConfig(withAuth('verifiers: [pam]'));
    expect(cfg.auth.verifiers).toEqual(['pam']);
    expect(cfg.auth.pam).toBeUndefined();
    expect(PAM_DEFAULTS).toEqual({ service: 'popgate', accountCheck: true, maxConcurrent: 2, maxQueue: 32, timeout: 10_000 });
    expect(planVerifiers(cfg.auth, undefined)).toEqual([{ kind: 'pam', pam: PAM_DEFAULTS }]);
  });

  it('takes every key and keeps the chain order', async () => {
    const cfg = await parseConfig(
      withAuth('verifiers: [userFile, pam]\nuserFile: /etc/popgate/users\npam:\n  service: pop-mail\n  accountCheck: false\n  maxConcurrent: 4\n  maxQueue: 0\n  timeout: 3s'),
    );
    const pam = { service: 'pop-mail', accountCheck: false, maxConcurrent: 4, maxQueue: 0, timeout: 3_000 };
    expect(cfg.auth.pam).toEqual(pam);
    expect(planVerifiers(cfg.auth, undefined)).toEqual([
      { kind: 'userFile', path: '/etc/popgate/users' },
      { kind: 'pam', pam },
    ]);
  });

  it('refuses a service name that is not a file name in /etc/pam.d, and out-of-range limits', async () => {
    for (const [text, path] of [
      ['service: ../etc/passwd', 'auth.pam.service'],
      ["service: ''", 'auth.pam.service'],
      ['maxConcurrent: 0', 'auth.pam.maxConcurrent'],
      ['timeout: 10ms', 'auth.pam.timeout'],
      ['unknownKey: 1', 'auth.pam.unknownKey'],
    ] as const) {
      const issues = await issuesOf(withAuth(`verifiers: [pam]\npam:\n  ${text}`));
      expect(issues.map((i) => i.path), text).toContain(path);
    }
  });

  it('refuses pam listed twice', async () => {
    const issues = await issuesOf(withAuth('verifiers: [pam, pam]'));
    expect(issues.some((i) => i.path.startsWith('auth.verifiers'))).toBe(true);
  });
});
