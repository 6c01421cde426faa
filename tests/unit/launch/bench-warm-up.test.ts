// When the bench's warm-up may end: at least --warmup, then until the time per iteration settles.
import { describe, expect, it } from 'vitest';
import { ranksPerCore, warmUpCapMs, warmUpSettled } from '../../../lib/launch/bench-protocol.js';

/** µs per iteration of successive warm-up batches, measured here (2 thread-ranks, 8-byte ping-pong). */
const TRACE = [121.8, 69.1, 235.6, 28.7, 245.0, 21.7, 28.7, 42.9, 16.45, 11.5, 7.11, 1.17, 1.13, 0.92, 1.15, 1.17, 0.78];

/** The batch after which the warm-up ends, given that batch k ended at `stepMs`·(k+1) ms. */
function endsAfter(trace: readonly number[], warmupMs: number, stepMs: number): number {
  for (let k = 0; k < trace.length; k++) if (warmUpSettled(trace.slice(0, k + 1).map((us) => us / 1000), stepMs * (k + 1), warmupMs)) return k;
  return -1;
}

describe('warmUpSettled', () => {
  it('never ends before the minimum, always at the cap', () => {
    const flat = [1, 1, 1, 1];
    expect(warmUpSettled(flat, 99, 100)).toBe(false);
    expect(warmUpSettled(flat, 100, 100)).toBe(true);
    expect(warmUpSettled([50, 10, 2], warmUpCapMs(100), 100)).toBe(true);
    expect(warmUpSettled([], warmUpCapMs(100) - 1, 100)).toBe(false);
  });

  it('waits out the JIT: a plateau of interpreted code does not count as settled', () => {
    // With a 0.1 s minimum reached at the 21.7/28.7/42.9 plateau (within 2× of each other but not
    // within 1.25×), the warm-up goes on until the optimized batches agree.
    const k = endsAfter(TRACE, 100, 10);
    // Batch 11 is the first optimized one; three must agree, so batch 13 at the earliest.
    expect(k).toBeGreaterThanOrEqual(13);
    expect(TRACE[k]).toBeLessThan(1.2);
  });

  it('does not take a slow plateau as settled once a faster batch was seen', () => {
    // Three agreeing batches, but well above the best batch so far: a preempted stretch.
    expect(warmUpSettled([1, 1, 1, 3, 3, 3], 200, 100)).toBe(false);
    expect(warmUpSettled([1, 1, 1, 3, 3, 3, 1.1, 1, 1.2], 300, 100)).toBe(true);
  });

  it('the cap is five times the minimum, at least 1 s; --warmup 0 waits for nothing', () => {
    expect(warmUpCapMs(500)).toBe(2500);
    expect(warmUpCapMs(100)).toBe(1000);
    expect(warmUpCapMs(0)).toBe(0);
    expect(warmUpSettled([5], 0.1, 0)).toBe(true);
  });

  it('with more ranks than cores, the minimum and the cap are a rank\'s share of the wall clock', () => {
    const flat = [1, 1, 1, 1];
    // Eight ranks on two cores: 0.1 s of a rank's time takes 0.4 s of wall clock.
    const crowding = ranksPerCore(8, 2);
    expect(crowding).toBe(4);
    expect(warmUpSettled(flat, 399, 100, crowding)).toBe(false);
    expect(warmUpSettled(flat, 400, 100, crowding)).toBe(true);
    expect(warmUpSettled([50, 10, 2], 4 * warmUpCapMs(100) - 1, 100, crowding)).toBe(false);
    expect(warmUpSettled([50, 10, 2], 4 * warmUpCapMs(100), 100, crowding)).toBe(true);
  });

  it('ranks per core is at least 1 and copes with a core count of 0', () => {
    expect(ranksPerCore(2, 2)).toBe(1);
    expect(ranksPerCore(1, 8)).toBe(1);
    expect(ranksPerCore(3, 2)).toBe(1.5);
    expect(ranksPerCore(4, 0)).toBe(4);
  });
});
