// Helpers for the ivshmem region tests: plain-memory regions, ids, a fake clock, error matching.
import { expect } from 'vitest';
import { isVmcommError, type VmcommErrorCode } from '../../../lib/errors.js';
import type { Region } from '../../../lib/ring/region.js';

/** A region of `bytes` at offset `at` (a multiple of 64) of a buffer with slack on both sides. */
export function memoryRegion(bytes: number, at = 0): Region {
  return { sab: new SharedArrayBuffer(at + bytes + 128), byteOffset: at, byteLength: bytes };
}

/** A 16-byte id filled from `seed`. */
export function id(seed: number): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = (seed * 131 + i * 17 + 1) & 0xff;
  return b;
}

/** A clock the test moves. */
export function fakeClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Asserts that `f` throws a VmcommError with `code` (and a message matching `message`, if given). */
export function expectCode(f: () => unknown, code: VmcommErrorCode, message?: RegExp): void {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a throw').toBeDefined();
  expect(isVmcommError(thrown, code), `expected VmcommError ${code}, got ${String(thrown)}`).toBe(true);
  if (message !== undefined) expect((thrown as Error).message).toMatch(message);
}

/** A small seeded generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
