/** The limits added for hostile clients: per-address connections and the greeting delay. */
import { describe, expect, it } from 'vitest';
import type { PopgateConfig } from '../../src/config/index.js';
import { configError, MINIMAL_CONFIG, parseConfig } from '../helpers/config.js';

const parse = (limits: string): Promise<PopgateConfig> => parseConfig(`${MINIMAL_CONFIG}limits: ${limits}\n`);

async function issues(limits: string): Promise<{ path: string; message: string; hint?: string | undefined }[]> {
  return (await configError(parse(limits))).issues.map((i) => ({ path: i.path, message: i.message, hint: i.hint }));
}

describe('limits.maxConnectionsPerIp and limits.greetingDelay', () => {
  it('default to 50 and 0 (greet at once)', async () => {
    const cfg = await parse('{}');
    expect(cfg.limits.maxConnectionsPerIp).toBe(50);
    expect(cfg.limits.greetingDelay).toBe(0);
  });

  it('take a count and a duration', async () => {
    const cfg = await parse('{ maxConnectionsPerIp: 3, greetingDelay: 500ms }');
    expect(cfg.limits.maxConnectionsPerIp).toBe(3);
    expect(cfg.limits.greetingDelay).toBe(500);
  });

  it('refuse a zero or fractional per-address limit and a delay over 10s', async () => {
    expect((await issues('{ maxConnectionsPerIp: 0 }'))[0]?.path).toBe('limits.maxConnectionsPerIp');
    expect((await issues('{ maxConnectionsPerIp: 1.5 }'))[0]?.path).toBe('limits.maxConnectionsPerIp');
    expect(await issues('{ greetingDelay: 11s }')).toEqual([{ path: 'limits.greetingDelay', message: 'must be at most 10s', hint: undefined }]);
  });

  it('refuse a greeting delay that the pre-authentication timer would cut off', async () => {
    const found = await issues('{ greetingDelay: 2s, preAuthTimeout: 2s }');
    expect(found).toEqual([
      { path: 'limits.greetingDelay', message: 'must be shorter than limits.preAuthTimeout', hint: expect.stringMatching(/postscreen/) },
    ]);
    await expect(parse('{ greetingDelay: 2s, preAuthTimeout: 3s }')).resolves.toBeDefined();
  });
});
