import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon, native } from './helpers.js';

describe.skipIf(addon === undefined)('scheduling and namespaces', () => {
  it('schedYield returns', () => {
    expect(native().schedYield()).toBeUndefined();
  });

  it('setAffinity([0]) binds the calling thread, and the old mask can be restored', () => {
    const before = native().getAffinity();
    expect(before.length).toBeGreaterThan(0);
    expect(before).toEqual([...before].sort((a, b) => a - b));
    try {
      native().setAffinity([0]);
      expect(native().getAffinity()).toEqual([0]);
    } finally {
      native().setAffinity(before);
    }
    expect(native().getAffinity()).toEqual(before);
  });

  it("setAffinity(cpus, 'process') binds every thread of the process", () => {
    const before = native().getAffinity();
    /** Cpus_allowed_list of every thread of this process. */
    const masks = () =>
      readdirSync('/proc/self/task').map((tid) => /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1]);
    try {
      native().setAffinity([before[0]], 'process');
      const bound = masks();
      expect(bound.length).toBeGreaterThan(1); // Node has threads of its own
      expect(new Set(bound)).toEqual(new Set([String(before[0])]));
    } finally {
      native().setAffinity(before, 'process');
    }
    expect(native().getAffinity()).toEqual(before);
  });

  it('refuses an empty set, and a CPU that does not exist with EINVAL', () => {
    expect(() => native().setAffinity([])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native().setAffinity([1023])).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'sched_setaffinity' }));
    expect(() => native().setAffinity([1024])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('pidNamespaceId is /proc/self/ns/pid', () => {
    expect(native().pidNamespaceId()).toBe(readlinkSync('/proc/self/ns/pid'));
    expect(native().pidNamespaceId()).toMatch(/^pid:\[\d+\]$/);
  });
});
