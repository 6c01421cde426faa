import { describe, expect, it } from 'vitest';
import { giveScratch, pooledScratchBytes, takeScratch } from '../../../lib/collectives/scratch.js';

describe('collective scratch pool', () => {
  it('reuses a large buffer once it is given back, in its power-of-two class, without zeroing it', () => {
    const before = pooledScratchBytes();
    const a = takeScratch(100_000);
    expect(a.byteLength).toBe(100_000);
    expect(a.buffer.byteLength).toBe(131_072);
    a.fill(7);
    giveScratch(a);
    expect(pooledScratchBytes()).toBe(before + 131_072);
    giveScratch(a); // twice: kept once
    expect(pooledScratchBytes()).toBe(before + 131_072);
    const b = takeScratch(70_000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteLength).toBe(70_000);
    expect(b[0]).toBe(7); // contents undefined: the algorithms receive before they read
    expect(pooledScratchBytes()).toBe(before);
    const c = takeScratch(70_000); // the class is empty now: a new buffer
    expect(c.buffer).not.toBe(a.buffer);
    giveScratch(b);
    giveScratch(c);
  });

  it('does not pool small buffers, foreign views or more than a few per class', () => {
    const before = pooledScratchBytes();
    const small = takeScratch(1000);
    expect(small.buffer.byteLength).toBe(1000);
    giveScratch(small);
    giveScratch(new Uint8Array(new ArrayBuffer(1 << 20), 8, 1000)); // not a whole buffer of ours
    giveScratch(new Uint8Array(new SharedArrayBuffer(1 << 20)));
    expect(pooledScratchBytes()).toBe(before);
    const taken = Array.from({ length: 6 }, () => takeScratch(1 << 20));
    for (const t of taken) giveScratch(t);
    expect(pooledScratchBytes() - before).toBeLessThanOrEqual(4 << 20);
    for (let i = 0; i < 6; i++) takeScratch(1 << 20); // empty the class again for other tests
  });

  it('allocates more than the pool may hold at its exact size, and does not keep it', () => {
    const before = pooledScratchBytes();
    const bytes = 64 * 1024 * 1024 + 8;
    const huge = takeScratch(bytes);
    expect([huge.byteLength, huge.buffer.byteLength]).toEqual([bytes, bytes]);
    giveScratch(huge);
    expect(pooledScratchBytes()).toBe(before);
  });
});
