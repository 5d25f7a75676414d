/** Assertions shared by the memory tests. */
import { PageFaultError } from '../../../lib/errors';

/** Awaits `p`, which must reject with a PageFaultError; returns it for further checks. */
export async function expectFault(p: Promise<unknown>): Promise<PageFaultError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PageFaultError) return err;
    throw new Error(`expected PageFaultError, got ${(err as Error)?.stack ?? String(err)}`);
  }
  throw new Error('expected PageFaultError, but the call succeeded');
}

/** Awaits `p`, which must reject; returns the error. */
export async function expectError(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, but the call succeeded');
}
