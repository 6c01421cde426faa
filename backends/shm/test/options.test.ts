import { describe, expect, it } from 'vitest';
import { autoRingBytes, DEFAULT_CMA_MIN_BYTES, DEFAULT_EAGER_LIMIT_BYTES, DEFAULT_RING_BYTES, parseShmInit, shm, type ShmInit } from '../index.js';

describe('shm options', () => {
  it('applies the defaults, and the factory carries its name', () => {
    const o = parseShmInit();
    expect(o).toMatchObject({ ringBytes: DEFAULT_RING_BYTES, eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES, cmaMinBytes: DEFAULT_CMA_MIN_BYTES, cma: true, directory: '/dev/shm', waitMode: 'auto', inboxSlots: 0 });
    expect(shm().transportName).toBe('shm');
  });

  it('keeps good values and normalizes the directory', () => {
    expect(parseShmInit({ ringBytes: 4096, inboxSlots: 8, cma: false, directory: '/dev/shm/x/../y', waitMode: 'yield', cmaMinBytes: 1 })).toMatchObject({
      ringBytes: 4096,
      inboxSlots: 8,
      cma: false,
      directory: '/dev/shm/y',
      waitMode: 'yield',
      cmaMinBytes: 1,
    });
  });

  it('rejects bad values with INVALID_ARGUMENT naming the option', () => {
    const bad: [unknown, RegExp][] = [
      [{ ringBytes: 5000 }, /ringBytes/],
      [{ ringBytes: 1024 }, /ringBytes/],
      [{ inboxSlots: 3 }, /inboxSlots/],
      [{ inboxSlots: 1 }, /inboxSlots/],
      [{ eagerCredits: 0 }, /eagerCredits/],
      [{ cmaMinBytes: 0 }, /cmaMinBytes/],
      [{ cmaMinBytes: 1.5 }, /cmaMinBytes/],
      [{ minSpinNs: 10, maxSpinNs: 5 }, /minSpinNs/],
      [{ waitMode: 'busy' }, /waitMode/],
      [{ cma: 'yes' }, /cma/],
      [{ directory: 'relative/dir' }, /directory/],
      [{ directory: 42 }, /directory/],
      [{ livenessCheckMs: 0 }, /livenessCheckMs/],
      [{ ringbytes: 4096 }, /unknown shm option "ringbytes"/],
      [null, /shm init/],
    ];
    for (const [init, message] of bad) {
      expect(() => shm(init as ShmInit), JSON.stringify(init)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) }));
    }
  });

  it('sizes rings by the job: 256 KiB up to 17 ranks, then within 4 MiB of outbound rings per rank, never below 64 KiB', () => {
    const K = 1024;
    expect([2, 8, 17, 18, 32, 33, 64, 65, 1000].map(autoRingBytes)).toEqual([256 * K, 256 * K, 256 * K, 128 * K, 128 * K, 128 * K, 64 * K, 64 * K, 64 * K]);
    expect(parseShmInit({}).ringBytes).toBe(0);
  });
});
