// The ivshmem factory's options: defaults, ranges, and the rules between fields.
import { describe, expect, it } from 'vitest';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_PEER_TIMEOUT_MS, DEFAULT_RECLAIM_TIMEOUT_MS, ivshmem, parseIvshmemInit } from '../index.js';

describe('ivshmem options', () => {
  it('defaults', () => {
    const o = parseIvshmemInit();
    expect(o).toMatchObject({ regions: undefined, heartbeatMs: DEFAULT_HEARTBEAT_MS, peerTimeoutMs: DEFAULT_PEER_TIMEOUT_MS, reclaimTimeoutMs: DEFAULT_RECLAIM_TIMEOUT_MS, waitMode: 'auto', maxSleepMs: 4 });
    expect(ivshmem().transportName).toBe('ivshmem');
  });

  it('a peer timeout above the default reclaim timeout raises it; a reclaim timeout below the peer timeout is refused', () => {
    expect(parseIvshmemInit({ peerTimeoutMs: 60_000 }).reclaimTimeoutMs).toBe(60_000);
    expect(() => parseIvshmemInit({ peerTimeoutMs: 60_000, reclaimTimeoutMs: 30_000 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/reclaimTimeoutMs/) }));
  });

  it('refuses bad values with INVALID_ARGUMENT', () => {
    for (const bad of [
      { heartbeatMs: 0 },
      { heartbeatMs: 1000, peerTimeoutMs: 2000 }, // live peers would look dead
      { minSleepMs: 5, maxSleepMs: 1 },
      { minSpinNs: 10, maxSpinNs: 1 },
      { eagerCredits: 0 },
      { waitMode: 'nap' },
      { regions: '/dev/shm/x' },
      { regions: [''] },
      { bogus: 1 },
      { yieldMs: Number.NaN },
    ]) {
      expect(() => parseIvshmemInit(bad as never), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(parseIvshmemInit({ yieldMs: 0.5, maxSleepMs: 2.5, regions: ['/a'] })).toMatchObject({ yieldMs: 0.5, maxSleepMs: 2.5, regions: ['/a'] });
  });
});
