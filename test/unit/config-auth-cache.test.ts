/** auth.cache in the schema: defaults, durations, 0 turning parts off, bounds, no stray keys. */
import { describe, expect, it } from 'vitest';
import { issuesOf, MASTER_BACKEND, parseConfig } from '../helpers/config.js';

const LISTENER = `
listeners:
  - kind: pop3s
    port: 995
    tls: { certFile: /etc/popgate/tls.crt, keyFile: /etc/popgate/tls.key }
`;

/** A config whose auth section has the user file and, when given, this cache line. */
function withCache(cache?: string): string {
  return `${LISTENER}auth:\n  userFile: /etc/popgate/users\n${cache === undefined ? '' : `  cache: ${cache}\n`}${MASTER_BACKEND}`;
}

describe('auth.cache', () => {
  it('is on by default: 5m for a success, 5s for a failure, 100000 entries', async () => {
    expect((await parseConfig(withCache())).auth.cache).toEqual({ ttl: 300_000, negativeTtl: 5_000, maxEntries: 100_000 });
    expect((await parseConfig(withCache('{}'))).auth.cache).toEqual({ ttl: 300_000, negativeTtl: 5_000, maxEntries: 100_000 });
  });

  it('takes durations, and 0 to turn the cache or its negative part off', async () => {
    expect((await parseConfig(withCache('{ ttl: 1h30m, negativeTtl: 500ms, maxEntries: 10 }'))).auth.cache).toEqual({
      ttl: 5_400_000,
      negativeTtl: 500,
      maxEntries: 10,
    });
    expect((await parseConfig(withCache('{ ttl: 0, negativeTtl: 0 }'))).auth.cache).toMatchObject({ ttl: 0, negativeTtl: 0 });
  });

  it('refuses out-of-range values and unknown keys, naming the path', async () => {
    const paths = async (cache: string): Promise<string[]> => (await issuesOf(withCache(cache))).map((i) => i.path);
    expect(await paths('{ ttl: 2d }')).toEqual(['auth.cache.ttl']);
    expect(await paths('{ negativeTtl: 2h }')).toEqual(['auth.cache.negativeTtl']);
    expect(await paths('{ ttl: -1 }')).toEqual(['auth.cache.ttl']);
    expect(await paths('{ maxEntries: 0 }')).toEqual(['auth.cache.maxEntries']);
    expect(await paths('{ maxEntries: 1.5 }')).toEqual(['auth.cache.maxEntries']);
    expect(await paths('{ ttl: 5m, size: 10 }')).toEqual(['auth.cache.size']);
  });
});
