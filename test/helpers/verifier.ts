/** Assertions shared by the password-verifier tests. */
import { expect } from 'vitest';
import { GatewayError } from '../../src/errors.js';

/** Awaits `p`, which must reject with GatewayError('VERIFIER_UNAVAILABLE') (the client's [SYS/TEMP]); returns the error. */
export async function unavailable(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('VERIFIER_UNAVAILABLE');
  return err as GatewayError;
}
