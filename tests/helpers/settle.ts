// Small helpers for tests that must observe a promise without hanging on it.
import { afterEach } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';

/** How a promise stands: settled one way or the other, or still pending. */
export type Settled<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; error: unknown } | { status: 'pending' };

/** How `p` stands after `ms` milliseconds (never throws). */
export function within<T>(p: PromiseLike<T>, ms: number): Promise<Settled<T>> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ status: 'pending' }), ms);
    Promise.resolve(p).then(
      (value) => (clearTimeout(t), resolve({ status: 'fulfilled', value })),
      (error) => (clearTimeout(t), resolve({ status: 'rejected', error })),
    );
  });
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Finalizes, after each test, every world passed to the returned function (bounded: a world a test
 * left broken cannot hang the suite). Call once at module level.
 */
export function finalizeAfterEach(): (comms: Communicator[]) => Communicator[] {
  let worlds: Communicator[][] = [];
  afterEach(async () => {
    const all = worlds;
    worlds = [];
    await Promise.all(all.flat().map((c) => within(c.finalize(), 5000)));
  });
  return (comms) => {
    worlds.push(comms);
    return comms;
  };
}

/** Settles every call and returns each outcome: `'ok'`, or the error's code (its text if it has none). */
export async function outcomes(calls: Promise<unknown>[]): Promise<string[]> {
  const settled = await Promise.allSettled(calls);
  return settled.map((s) => (s.status === 'fulfilled' ? 'ok' : ((s.reason as { code?: string }).code ?? String(s.reason))));
}
