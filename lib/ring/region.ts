/**
 * A *region*: the span of a `SharedArrayBuffer` that one shared-memory structure (a ring, an inbox)
 * lives in, given as `(sab, byteOffset, byteLength)`. The same structures serve `threads` (regions
 * carved from a worker-shared arena), `shm` (a mapped file) and `ivshmem` (a PCI BAR), so this folder
 * uses nothing but the language: no Node APIs.
 *
 * ## Trust
 *
 * A region may be shared with a process in another VM, which may write anything at any time. So every
 * index or length read from shared memory is read once into a local, checked, and only then used; a
 * check that fails throws `VmcommError('CORRUPT')` (see {@link corrupt}). Nothing here indexes out of
 * bounds or loops without a bound because of what it read.
 *
 * @module
 */

import { VmcommError } from '../errors.js';

/** A span of shared memory. `byteOffset` is a multiple of {@link REGION_ALIGN_BYTES}. */
export interface Region {
  readonly sab: SharedArrayBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** One cache line. Words that different sides write live on different lines. */
export const CACHE_LINE_BYTES = 64;
/**
 * Control words are this far apart: two lines, because x86's adjacent-line prefetcher moves lines in
 * pairs, and a pair shared by two writers ping-pongs like one line.
 */
export const CONTROL_STRIDE_BYTES = 2 * CACHE_LINE_BYTES;
/** Regions start on a cache line. */
export const REGION_ALIGN_BYTES = CACHE_LINE_BYTES;

/** Checks a region handed in by local code (a programming error is `INVALID_ARGUMENT`, not `CORRUPT`). */
export function checkRegion(region: Region, minBytes: number, what: string): void {
  const { sab, byteOffset, byteLength } = region ?? ({} as Region);
  if (!(sab instanceof SharedArrayBuffer)) throw new VmcommError('INVALID_ARGUMENT', `${what}: the region must be in a SharedArrayBuffer`);
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset % REGION_ALIGN_BYTES !== 0) {
    throw new VmcommError('INVALID_ARGUMENT', `${what}: the region offset must be a multiple of ${REGION_ALIGN_BYTES}, got ${String(byteOffset)}`);
  }
  if (!Number.isSafeInteger(byteLength) || byteLength < minBytes || byteOffset + byteLength > sab.byteLength) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `${what}: the region must be at least ${minBytes} bytes and inside its buffer (offset ${byteOffset}, length ${String(byteLength)}, buffer ${sab.byteLength})`,
    );
  }
}

/** The error for shared memory that failed validation. */
export function corrupt(what: string): VmcommError {
  return new VmcommError('CORRUPT', `shared memory failed validation: ${what}; the channel is closed`);
}

/** True when `n` is a power of two (and a positive safe integer). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30;
}

/** The smallest power of two ≥ `n` (n ≥ 1, ≤ 2^30). */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
