/**
 * The loops behind the predefined reduction operations: `o[i] = a[i] op b[i]` over three typed-array
 * views of one type.
 *
 * Why so many near-identical loops: V8 specialises an array access on the typed-array classes it has
 * seen at that spot in the source. One loop shared by nine classes goes megamorphic and runs about 28×
 * slower on a `Float64Array` than a loop that only ever saw `Float64Array` (measured on Node 20; closures
 * made by one factory share that feedback, so a factory does not help). So, as Open MPI's
 * `op_base_functions.c` does with C macros, there is one loop per (operation, view type), each a
 * function literal of its own. Types whose bits combine the same way share a loop, run through a view
 * chosen for it: wrapping SUM and PROD do not care about sign (`int32` and `uint32` both run on an
 * `Int32Array` view), bitwise operations do not care about the element size at all (they run on
 * 32-bit words), logical ones only about the size.
 *
 * Semantics, the same as storing the exact result into the array:
 * - integer SUM/PROD wrap modulo 2^bits (`uint8clamped` saturates at 0 and 255 instead, as its stores
 *   do); float32 results are rounded to float32 (exactly as float32 arithmetic would);
 * - MIN/MAX are `Math.min`/`Math.max` on numbers: a NaN operand gives NaN, and −0 is below +0;
 * - LAND/LOR/LXOR give 0 or 1 (0n or 1n);
 * - MINLOC/MAXLOC take (value, index) pairs; equal values keep the smaller index (the MPI rule); a NaN
 *   value wins as it does for MIN/MAX (two NaNs: the smaller index).
 *
 * Every loop reads an element of both operands before it writes that element, so the output may be
 * either input (in-place reductions); it may not overlap them in any other way.
 *
 * The float loops of SUM, PROD, MIN and MAX — what numerical codes reduce most — are unrolled eight
 * times: V8 does not vectorize, and the unrolled loop sums 65,536 doubles in 56 µs instead of 119 µs
 * here (the results are the same: each element is still one IEEE operation on its two operands).
 *
 * @module
 */

import type { PredefinedOp } from '../constants.js';
import type { ElementType, TypedArrayConstructorOf } from './element-types.js';
import type { TypedArray } from './io.js';

/** A loop over three views of `View`, with the view type it was written for. */
export interface Kernel {
  /** The typed-array class the loop reads and writes (not always the element type's own class). */
  readonly View: TypedArrayConstructorOf<TypedArray>;
  /**
   * `o[i] = a[i] op b[i]` for every element of `o`; `a` and `b` are at least as long (only `o`'s
   * length bounds the loop: the shared-memory fold passes whole-cell views).
   */
  run(a: TypedArray, b: TypedArray, o: TypedArray): void;
}

function kernel<V extends TypedArray>(View: TypedArrayConstructorOf<V>, run: (a: V, b: V, o: V) => void): Kernel {
  return Object.freeze({ View, run: run as (a: TypedArray, b: TypedArray, o: TypedArray) => void });
}

// ------------------------------------------------------------------ SUM
// Sign-agnostic: int8/uint8 share the Uint8Array loop, int16/uint16 the Uint16Array one, int32/uint32
// the Int32Array one (`| 0` keeps V8 in int32 arithmetic), bigint64/biguint64 the BigInt64Array one.
const sumU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] + b[i]; });
const sumU8C = kernel(Uint8ClampedArray, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] + b[i]; });
const sumU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] + b[i]; });
const sumI32 = kernel(Int32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = (a[i] + b[i]) | 0; });
const sumF32 = kernel(Float32Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = a[i] + b[i];
    o[i + 1] = a[i + 1] + b[i + 1];
    o[i + 2] = a[i + 2] + b[i + 2];
    o[i + 3] = a[i + 3] + b[i + 3];
    o[i + 4] = a[i + 4] + b[i + 4];
    o[i + 5] = a[i + 5] + b[i + 5];
    o[i + 6] = a[i + 6] + b[i + 6];
    o[i + 7] = a[i + 7] + b[i + 7];
  }
  for (; i < n; i++) o[i] = a[i] + b[i];
});
const sumF64 = kernel(Float64Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = a[i] + b[i];
    o[i + 1] = a[i + 1] + b[i + 1];
    o[i + 2] = a[i + 2] + b[i + 2];
    o[i + 3] = a[i + 3] + b[i + 3];
    o[i + 4] = a[i + 4] + b[i + 4];
    o[i + 5] = a[i + 5] + b[i + 5];
    o[i + 6] = a[i + 6] + b[i + 6];
    o[i + 7] = a[i + 7] + b[i + 7];
  }
  for (; i < n; i++) o[i] = a[i] + b[i];
});
const sumB64 = kernel(BigInt64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] + b[i]; });

// ------------------------------------------------------------------ PROD
// 8-bit products fit a double exactly; wider integers use Math.imul, whose low 32 bits are exact
// where a double product would have lost them.
const prodU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] * b[i]; });
const prodU8C = kernel(Uint8ClampedArray, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] * b[i]; });
const prodU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.imul(a[i], b[i]); });
const prodI32 = kernel(Int32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.imul(a[i], b[i]); });
const prodF32 = kernel(Float32Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = a[i] * b[i];
    o[i + 1] = a[i + 1] * b[i + 1];
    o[i + 2] = a[i + 2] * b[i + 2];
    o[i + 3] = a[i + 3] * b[i + 3];
    o[i + 4] = a[i + 4] * b[i + 4];
    o[i + 5] = a[i + 5] * b[i + 5];
    o[i + 6] = a[i + 6] * b[i + 6];
    o[i + 7] = a[i + 7] * b[i + 7];
  }
  for (; i < n; i++) o[i] = a[i] * b[i];
});
const prodF64 = kernel(Float64Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = a[i] * b[i];
    o[i + 1] = a[i + 1] * b[i + 1];
    o[i + 2] = a[i + 2] * b[i + 2];
    o[i + 3] = a[i + 3] * b[i + 3];
    o[i + 4] = a[i + 4] * b[i + 4];
    o[i + 5] = a[i + 5] * b[i + 5];
    o[i + 6] = a[i + 6] * b[i + 6];
    o[i + 7] = a[i + 7] * b[i + 7];
  }
  for (; i < n; i++) o[i] = a[i] * b[i];
});
const prodB64 = kernel(BigInt64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] * b[i]; });

// ------------------------------------------------------------------ MIN, MAX
// Order depends on sign, so every signed/unsigned type has its own loop (uint8clamped reads as uint8).
const minI8 = kernel(Int8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minI16 = kernel(Int16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minI32 = kernel(Int32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minU32 = kernel(Uint32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.min(a[i], b[i]); });
const minF32 = kernel(Float32Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = Math.min(a[i], b[i]);
    o[i + 1] = Math.min(a[i + 1], b[i + 1]);
    o[i + 2] = Math.min(a[i + 2], b[i + 2]);
    o[i + 3] = Math.min(a[i + 3], b[i + 3]);
    o[i + 4] = Math.min(a[i + 4], b[i + 4]);
    o[i + 5] = Math.min(a[i + 5], b[i + 5]);
    o[i + 6] = Math.min(a[i + 6], b[i + 6]);
    o[i + 7] = Math.min(a[i + 7], b[i + 7]);
  }
  for (; i < n; i++) o[i] = Math.min(a[i], b[i]);
});
const minF64 = kernel(Float64Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = Math.min(a[i], b[i]);
    o[i + 1] = Math.min(a[i + 1], b[i + 1]);
    o[i + 2] = Math.min(a[i + 2], b[i + 2]);
    o[i + 3] = Math.min(a[i + 3], b[i + 3]);
    o[i + 4] = Math.min(a[i + 4], b[i + 4]);
    o[i + 5] = Math.min(a[i + 5], b[i + 5]);
    o[i + 6] = Math.min(a[i + 6], b[i + 6]);
    o[i + 7] = Math.min(a[i + 7], b[i + 7]);
  }
  for (; i < n; i++) o[i] = Math.min(a[i], b[i]);
});
const minI64 = kernel(BigInt64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) { const x = a[i], y = b[i]; o[i] = x < y ? x : y; } });
const minU64 = kernel(BigUint64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) { const x = a[i], y = b[i]; o[i] = x < y ? x : y; } });

const maxI8 = kernel(Int8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxI16 = kernel(Int16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxI32 = kernel(Int32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxU32 = kernel(Uint32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = Math.max(a[i], b[i]); });
const maxF32 = kernel(Float32Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = Math.max(a[i], b[i]);
    o[i + 1] = Math.max(a[i + 1], b[i + 1]);
    o[i + 2] = Math.max(a[i + 2], b[i + 2]);
    o[i + 3] = Math.max(a[i + 3], b[i + 3]);
    o[i + 4] = Math.max(a[i + 4], b[i + 4]);
    o[i + 5] = Math.max(a[i + 5], b[i + 5]);
    o[i + 6] = Math.max(a[i + 6], b[i + 6]);
    o[i + 7] = Math.max(a[i + 7], b[i + 7]);
  }
  for (; i < n; i++) o[i] = Math.max(a[i], b[i]);
});
const maxF64 = kernel(Float64Array, (a, b, o) => {
  const n = o.length;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    o[i] = Math.max(a[i], b[i]);
    o[i + 1] = Math.max(a[i + 1], b[i + 1]);
    o[i + 2] = Math.max(a[i + 2], b[i + 2]);
    o[i + 3] = Math.max(a[i + 3], b[i + 3]);
    o[i + 4] = Math.max(a[i + 4], b[i + 4]);
    o[i + 5] = Math.max(a[i + 5], b[i + 5]);
    o[i + 6] = Math.max(a[i + 6], b[i + 6]);
    o[i + 7] = Math.max(a[i + 7], b[i + 7]);
  }
  for (; i < n; i++) o[i] = Math.max(a[i], b[i]);
});
const maxI64 = kernel(BigInt64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) { const x = a[i], y = b[i]; o[i] = x > y ? x : y; } });
const maxU64 = kernel(BigUint64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) { const x = a[i], y = b[i]; o[i] = x > y ? x : y; } });

// ------------------------------------------------------------------ LAND, LOR, LXOR
// Only "is it zero" matters, and that does not depend on sign: one loop per element size.
const landU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 && b[i] !== 0 ? 1 : 0; });
const landU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 && b[i] !== 0 ? 1 : 0; });
const landU32 = kernel(Uint32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 && b[i] !== 0 ? 1 : 0; });
const landU64 = kernel(BigUint64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0n && b[i] !== 0n ? 1n : 0n; });
const lorU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 || b[i] !== 0 ? 1 : 0; });
const lorU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 || b[i] !== 0 ? 1 : 0; });
const lorU32 = kernel(Uint32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0 || b[i] !== 0 ? 1 : 0; });
const lorU64 = kernel(BigUint64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = a[i] !== 0n || b[i] !== 0n ? 1n : 0n; });
const lxorU8 = kernel(Uint8Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = (a[i] !== 0) !== (b[i] !== 0) ? 1 : 0; });
const lxorU16 = kernel(Uint16Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = (a[i] !== 0) !== (b[i] !== 0) ? 1 : 0; });
const lxorU32 = kernel(Uint32Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = (a[i] !== 0) !== (b[i] !== 0) ? 1 : 0; });
const lxorU64 = kernel(BigUint64Array, (a, b, o) => { for (let i = 0, n = o.length; i < n; i++) o[i] = (a[i] !== 0n) !== (b[i] !== 0n) ? 1n : 0n; });

// ------------------------------------------------------------------ BAND, BOR, BXOR
// Bits are bits whatever the element type: combine 32-bit words where all three ranges are 4-aligned
// (no bigint arithmetic for 64-bit types, 4× fewer steps for bytes), then the bytes that are left.

/** Whole 32-bit words the three ranges can be read as (0 unless all three start 4-aligned). */
function wordCount(a: Uint8Array, b: Uint8Array, o: Uint8Array): number {
  return ((a.byteOffset | b.byteOffset | o.byteOffset) & 3) === 0 ? o.length >>> 2 : 0;
}

// Only called with count > 0: an Int32Array cannot start at an unaligned offset even when empty.
function words(x: Uint8Array, count: number): Int32Array {
  return new Int32Array(x.buffer, x.byteOffset, count);
}

const band = kernel(Uint8Array, (a, b, o) => {
  const w = wordCount(a, b, o);
  if (w > 0) {
    const x = words(a, w), y = words(b, w), z = words(o, w);
    for (let i = 0; i < w; i++) z[i] = x[i] & y[i];
  }
  for (let i = w << 2, n = o.length; i < n; i++) o[i] = a[i] & b[i];
});
const bor = kernel(Uint8Array, (a, b, o) => {
  const w = wordCount(a, b, o);
  if (w > 0) {
    const x = words(a, w), y = words(b, w), z = words(o, w);
    for (let i = 0; i < w; i++) z[i] = x[i] | y[i];
  }
  for (let i = w << 2, n = o.length; i < n; i++) o[i] = a[i] | b[i];
});
const bxor = kernel(Uint8Array, (a, b, o) => {
  const w = wordCount(a, b, o);
  if (w > 0) {
    const x = words(a, w), y = words(b, w), z = words(o, w);
    for (let i = 0; i < w; i++) z[i] = x[i] ^ y[i];
  }
  for (let i = w << 2, n = o.length; i < n; i++) o[i] = a[i] ^ b[i];
});

// ------------------------------------------------------------------ MINLOC, MAXLOC

/** {@link locWinner}: the left pair wins. */
export const LOC_LEFT = 0;
/** {@link locWinner}: the right pair wins. */
export const LOC_RIGHT = 1;
/** {@link locWinner}: equal values; the result takes the smaller index. */
export const LOC_TIE = 2;

/**
 * Which of two MINLOC (`max` false) or MAXLOC (`max` true) values wins: {@link LOC_LEFT},
 * {@link LOC_RIGHT} or {@link LOC_TIE}. NaN wins against a number, as it does in `Math.min`, so MINLOC's
 * value is always MIN's; two NaNs tie. Shared by the loops and by the value path (`reduceValues`).
 */
export function locWinner(av: number, bv: number, max: boolean): number {
  if (av === bv) return LOC_TIE;
  if (max ? av > bv : av < bv) return LOC_LEFT;
  if (max ? bv > av : bv < av) return LOC_RIGHT;
  // Unordered: at least one NaN.
  if (av !== av) return bv !== bv ? LOC_TIE : LOC_LEFT;
  return LOC_RIGHT;
}

/** {@link locWinner} for bigints (which have no NaN). */
export function locWinnerBig(av: bigint, bv: bigint, max: boolean): number {
  if (av === bv) return LOC_TIE;
  return (max ? av > bv : av < bv) ? LOC_LEFT : LOC_RIGHT;
}

// Pairs are (value, index) elements at [i], [i + 1]. Each loop reads all four before writing, since
// `o` may be `a` or `b`. One loop per view type; MINLOC and MAXLOC share it through `max`.
function locI8(a: Int8Array, b: Int8Array, o: Int8Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locU8(a: Uint8Array, b: Uint8Array, o: Uint8Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locI16(a: Int16Array, b: Int16Array, o: Int16Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locU16(a: Uint16Array, b: Uint16Array, o: Uint16Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locI32(a: Int32Array, b: Int32Array, o: Int32Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locU32(a: Uint32Array, b: Uint32Array, o: Uint32Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locF32(a: Float32Array, b: Float32Array, o: Float32Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locF64(a: Float64Array, b: Float64Array, o: Float64Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinner(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locI64(a: BigInt64Array, b: BigInt64Array, o: BigInt64Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinnerBig(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}
function locU64(a: BigUint64Array, b: BigUint64Array, o: BigUint64Array, max: boolean): void {
  for (let i = 0, n = o.length; i < n; i += 2) {
    const av = a[i], ai = a[i + 1], bv = b[i], bi = b[i + 1], w = locWinnerBig(av, bv, max);
    o[i] = w === LOC_RIGHT ? bv : av;
    o[i + 1] = w === LOC_LEFT ? ai : w === LOC_RIGHT ? bi : ai < bi ? ai : bi;
  }
}

// ------------------------------------------------------------------ the table

type KernelRow = Readonly<Partial<Record<ElementType, Kernel>>>;

/** The same loop for every integer type of each size (what logical and bitwise rows look like). */
function bySize(k8: Kernel, k16: Kernel, k32: Kernel, k64: Kernel): KernelRow {
  return { int8: k8, uint8: k8, uint8clamped: k8, int16: k16, uint16: k16, int32: k32, uint32: k32, bigint64: k64, biguint64: k64 };
}

/** The loop of each (operation, element type) the op × type table allows; absent = not allowed. */
const KERNELS: Readonly<Record<PredefinedOp, KernelRow>> = {
  SUM: { int8: sumU8, uint8: sumU8, uint8clamped: sumU8C, int16: sumU16, uint16: sumU16, int32: sumI32, uint32: sumI32, float32: sumF32, float64: sumF64, bigint64: sumB64, biguint64: sumB64 },
  PROD: { int8: prodU8, uint8: prodU8, uint8clamped: prodU8C, int16: prodU16, uint16: prodU16, int32: prodI32, uint32: prodI32, float32: prodF32, float64: prodF64, bigint64: prodB64, biguint64: prodB64 },
  MIN: { int8: minI8, uint8: minU8, uint8clamped: minU8, int16: minI16, uint16: minU16, int32: minI32, uint32: minU32, float32: minF32, float64: minF64, bigint64: minI64, biguint64: minU64 },
  MAX: { int8: maxI8, uint8: maxU8, uint8clamped: maxU8, int16: maxI16, uint16: maxU16, int32: maxI32, uint32: maxU32, float32: maxF32, float64: maxF64, bigint64: maxI64, biguint64: maxU64 },
  LAND: bySize(landU8, landU16, landU32, landU64),
  LOR: bySize(lorU8, lorU16, lorU32, lorU64),
  LXOR: bySize(lxorU8, lxorU16, lxorU32, lxorU64),
  BAND: bySize(band, band, band, band),
  BOR: bySize(bor, bor, bor, bor),
  BXOR: bySize(bxor, bxor, bxor, bxor),
  // One arrow per cell: each only calls its loop, so the loops themselves stay monomorphic.
  MINLOC: {
    int8: kernel(Int8Array, (a, b, o) => locI8(a, b, o, false)),
    uint8: kernel(Uint8Array, (a, b, o) => locU8(a, b, o, false)),
    uint8clamped: kernel(Uint8Array, (a, b, o) => locU8(a, b, o, false)),
    int16: kernel(Int16Array, (a, b, o) => locI16(a, b, o, false)),
    uint16: kernel(Uint16Array, (a, b, o) => locU16(a, b, o, false)),
    int32: kernel(Int32Array, (a, b, o) => locI32(a, b, o, false)),
    uint32: kernel(Uint32Array, (a, b, o) => locU32(a, b, o, false)),
    float32: kernel(Float32Array, (a, b, o) => locF32(a, b, o, false)),
    float64: kernel(Float64Array, (a, b, o) => locF64(a, b, o, false)),
    bigint64: kernel(BigInt64Array, (a, b, o) => locI64(a, b, o, false)),
    biguint64: kernel(BigUint64Array, (a, b, o) => locU64(a, b, o, false)),
  },
  MAXLOC: {
    int8: kernel(Int8Array, (a, b, o) => locI8(a, b, o, true)),
    uint8: kernel(Uint8Array, (a, b, o) => locU8(a, b, o, true)),
    uint8clamped: kernel(Uint8Array, (a, b, o) => locU8(a, b, o, true)),
    int16: kernel(Int16Array, (a, b, o) => locI16(a, b, o, true)),
    uint16: kernel(Uint16Array, (a, b, o) => locU16(a, b, o, true)),
    int32: kernel(Int32Array, (a, b, o) => locI32(a, b, o, true)),
    uint32: kernel(Uint32Array, (a, b, o) => locU32(a, b, o, true)),
    float32: kernel(Float32Array, (a, b, o) => locF32(a, b, o, true)),
    float64: kernel(Float64Array, (a, b, o) => locF64(a, b, o, true)),
    bigint64: kernel(BigInt64Array, (a, b, o) => locI64(a, b, o, true)),
    biguint64: kernel(BigUint64Array, (a, b, o) => locU64(a, b, o, true)),
  },
};

/** The loop for `op` on `type`, or `undefined` when the op × type table does not allow the pair. */
export function kernelFor(op: PredefinedOp, type: ElementType): Kernel | undefined {
  const row: KernelRow | undefined = Object.hasOwn(KERNELS, op) ? KERNELS[op] : undefined;
  return row !== undefined && Object.hasOwn(row, type) ? row[type] : undefined;
}
