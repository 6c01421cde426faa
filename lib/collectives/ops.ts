/**
 * Reduction operations for the collectives: which predefined {@link Op} applies to which element type
 * (the op × type table, as MPI defines it), the byte-level `Reducer` that buffer algorithms run
 * (`reducerFor`), function ops (`defineOp`), and the value path that `allreduce(value, op)` uses for
 * numbers, bigints, booleans, arrays and typed arrays (`reduceValues`, `checkValueOp`).
 *
 * Arithmetic follows the typed arrays: integer SUM and PROD wrap modulo 2^bits (a `Uint8ClampedArray`
 * saturates instead), float32 results round to float32, MIN/MAX behave as `Math.min`/`Math.max` (NaN
 * wins, −0 is below +0), logical operations give 0/1 (0n/1n for bigint arrays, true/false for booleans),
 * MINLOC/MAXLOC keep the smaller index on equal values. The details are in `op-kernels.ts`.
 *
 * @module
 */

import { Op, type PredefinedOp } from '../constants.js';
import { invalidArgument, VmcommError } from '../errors.js';
import {
  ELEMENT_BYTES,
  ELEMENT_TYPES,
  INTEGER_ELEMENT_TYPES,
  TYPED_ARRAY_CONSTRUCTORS,
  elementTypeOf,
  isBigIntElementType,
  isElementType,
  isTypedArray,
  type ElementType,
  type TypedArrayConstructorOf,
} from './element-types.js';
import type { Reducer, TypedArray } from './io.js';
import { kernelFor, locWinner, locWinnerBig, LOC_LEFT, LOC_RIGHT, type Kernel } from './op-kernels.js';

export {
  ELEMENT_BYTES,
  ELEMENT_TYPES,
  INTEGER_ELEMENT_TYPES,
  TYPED_ARRAY_CONSTRUCTORS,
  elementTypeOf,
  isBigIntElementType,
  isElementType,
  isTypedArray,
  typedArrayOf,
  type ElementType,
  type TypedArrayConstructorOf,
  type TypedArrayOfType,
} from './element-types.js';

// ------------------------------------------------------------------ the op × type table

/** The predefined operation names, in `Op`'s order. */
export const PREDEFINED_OPS: readonly PredefinedOp[] = Object.freeze(Object.values(Op));

/**
 * The element types each predefined operation applies to, as in MPI: SUM, PROD, MIN, MAX on every
 * type; the logical (LAND, LOR, LXOR) and bitwise (BAND, BOR, BXOR) operations on integer types only,
 * bigint arrays included, floats not; MINLOC and MAXLOC on every type, over interleaved
 * (value, index) pairs of that type (so the array length must be even).
 */
export const OP_TYPES: Readonly<Record<PredefinedOp, readonly ElementType[]>> = Object.freeze({
  SUM: ELEMENT_TYPES,
  PROD: ELEMENT_TYPES,
  MIN: ELEMENT_TYPES,
  MAX: ELEMENT_TYPES,
  LAND: INTEGER_ELEMENT_TYPES,
  LOR: INTEGER_ELEMENT_TYPES,
  LXOR: INTEGER_ELEMENT_TYPES,
  BAND: INTEGER_ELEMENT_TYPES,
  BOR: INTEGER_ELEMENT_TYPES,
  BXOR: INTEGER_ELEMENT_TYPES,
  MINLOC: ELEMENT_TYPES,
  MAXLOC: ELEMENT_TYPES,
});

/**
 * {@link OP_TYPES} as a markdown table (a row per operation, a column per typed-array class, ✓ where
 * the operation applies), for the README and the API docs, so they cannot drift from the code.
 */
export function opTypeTableMarkdown(): string {
  const cells = (row: readonly string[]) => `| ${row.join(' | ')} |`;
  const lines = [
    cells(['Op', ...ELEMENT_TYPES.map((t) => TYPED_ARRAY_CONSTRUCTORS[t].name)]),
    cells(['---', ...ELEMENT_TYPES.map(() => ':-:')]),
    ...PREDEFINED_OPS.map((op) => cells([op, ...ELEMENT_TYPES.map((t) => (OP_TYPES[op].includes(t) ? '✓' : '—'))])),
  ];
  return lines.join('\n') + '\n';
}

/** True when `op` is one of the predefined operation names (`'SUM'` …). */
export function isPredefinedOp(op: unknown): op is PredefinedOp {
  return typeof op === 'string' && Object.hasOwn(OP_TYPES, op);
}

// ------------------------------------------------------------------ function ops

/**
 * A user-defined reduction `(a, b) => c` (`MPI_Op_create`). `a` is the contribution of the lower
 * ranks. It is applied in rank order and not assumed commutative unless `commute` is `true` (then
 * algorithms may combine in any order). Make one with {@link defineOp}, or pass a plain function.
 *
 * On typed arrays it is called like an `MPI_User_function`: on blocks of elements (two arrays of the
 * buffer's type and of equal length, possibly a part of the whole buffer, as algorithms split
 * buffers), and must return an array-like of that length. On other values it gets the whole values.
 *
 * `T` defaults to `any` so that a function typed for its own operands fits wherever an op is taken.
 */
export type OpFunction<T = any> = ((a: T, b: T) => T) & { readonly commute?: boolean };

/** Options of {@link defineOp}. */
export interface DefineOpOptions {
  /** `true` if `fn(a, b)` equals `fn(b, a)`, letting algorithms combine in any order (`MPI_Op_create`'s `commute`). Default `false`. */
  commute?: boolean;
}

/**
 * Makes `fn` a reduction operation (`MPI_Op_create`), declaring whether it commutes. Returns a new
 * function that calls `fn` (which is left untouched, so it can be declared twice, differently).
 *
 * @example
 * ```ts
 * const absMax = defineOp((a: number, b: number) => (Math.abs(a) >= Math.abs(b) ? a : b), { commute: true });
 * await comm.allreduce(x, absMax);
 * ```
 */
export function defineOp<T>(fn: (a: T, b: T) => T, options?: DefineOpOptions): OpFunction<T> {
  if (typeof fn !== 'function') throw invalidArgument('defineOp(fn)', 'a function (a, b) => c', fn);
  const op = (a: T, b: T): T => fn(a, b);
  Object.defineProperties(op, {
    name: { value: fn.name },
    commute: { value: options?.commute === true, enumerable: true },
  });
  return op as OpFunction<T>;
}

function opName(op: PredefinedOp | OpFunction): string {
  return typeof op === 'function' ? `op ${op.name || '(anonymous function)'}` : `Op.${op}`;
}

/** `undefined` when `op` is a predefined name or a function, else the error to throw. */
function opError(op: unknown): VmcommError | undefined {
  if (typeof op === 'function' || isPredefinedOp(op)) return undefined;
  return invalidArgument('op', `one of ${PREDEFINED_OPS.join(', ')} (see Op) or a function (a, b) => c`, op);
}

// ------------------------------------------------------------------ reducers over bytes

/**
 * The `Reducer` that buffer algorithms use for `op` on arrays of `type`.
 *
 * For a predefined op: `elementBytes` is the element size (twice that for MINLOC/MAXLOC pairs),
 * `commutative` is true, and `combine` runs a tight loop over views of the three byte ranges (no
 * allocation per element). For a function op: `commutative` is its `commute` flag, and `combine` calls
 * it on two arrays of `type` holding copies of `left` and `right` (so the function may modify them,
 * MPI in-out style, without touching the caller's buffers), then stores what it returns into `into`
 * as typed-array stores convert. A result that is not an array-like of that length, or holds bigints
 * for a number array (or the reverse), is `INVALID_ARGUMENT`; whatever the function throws propagates
 * unchanged.
 *
 * Throws `INVALID_ARGUMENT` for an unknown op or type, or a predefined op the {@link OP_TYPES} table
 * does not allow on `type` (the message lists what is allowed). Predefined reducers are cached.
 */
export function reducerFor(op: PredefinedOp | OpFunction, type: ElementType): Reducer {
  if (!isElementType(type)) throw invalidArgument('element type', `one of ${ELEMENT_TYPES.join(', ')}`, type);
  const bad = opError(op);
  if (bad !== undefined) throw bad;
  if (typeof op === 'function') return functionReducer(op, type);
  const key = `${op}:${type}`;
  let reducer = reducers.get(key);
  if (reducer === undefined) {
    const kernel = kernelFor(op, type);
    if (kernel === undefined) throw typeMismatch(op, type);
    reducer = kernelReducer(kernel, isLocOp(op) ? 2 * ELEMENT_BYTES[type] : ELEMENT_BYTES[type]);
    reducers.set(key, reducer);
  }
  return reducer;
}

const reducers = new Map<string, Reducer>();

function typeMismatch(op: PredefinedOp, type: ElementType, where = ''): VmcommError {
  const allowed = OP_TYPES[op];
  const opsForType = PREDEFINED_OPS.filter((o) => OP_TYPES[o].includes(type));
  const which = allowed === INTEGER_ELEMENT_TYPES ? 'integer element types only' : 'the element types';
  return new VmcommError(
    'INVALID_ARGUMENT',
    `Op.${op} does not apply to ${type} elements (${TYPED_ARRAY_CONSTRUCTORS[type].name}${where}): ${op} takes ${which} ` +
      `${allowed.join(', ')}; ${type} takes ${opsForType.join(', ')}`,
  );
}

function isLocOp(op: PredefinedOp): boolean {
  return op === 'MINLOC' || op === 'MAXLOC';
}

function checkRanges(elementBytes: number, left: Uint8Array, right: Uint8Array, into: Uint8Array): void {
  const n = into.byteLength;
  if (left.byteLength !== n || right.byteLength !== n || n % elementBytes !== 0) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `a reduction combines byte ranges of one length, a multiple of ${elementBytes} bytes; got ${left.byteLength}, ${right.byteLength} and ${n} bytes`,
    );
  }
}

function sameRange(x: Uint8Array, y: Uint8Array): boolean {
  return x.buffer === y.buffer && x.byteOffset === y.byteOffset;
}

function copyBytes(x: Uint8Array): Uint8Array {
  const copy = new Uint8Array(x.byteLength);
  copy.set(x);
  return copy;
}

function runKernel(kernel: Kernel, a: Uint8Array, b: Uint8Array, o: Uint8Array): void {
  const View = kernel.View;
  const n = o.byteLength / View.BYTES_PER_ELEMENT;
  kernel.run(new View(a.buffer, a.byteOffset, n), new View(b.buffer, b.byteOffset, n), new View(o.buffer, o.byteOffset, n));
}

function kernelReducer(kernel: Kernel, elementBytes: number): Reducer {
  const align = kernel.View.BYTES_PER_ELEMENT;
  return Object.freeze({
    elementBytes,
    commutative: true,
    kernel,
    combine(left: Uint8Array, right: Uint8Array, into: Uint8Array): void {
      checkRanges(elementBytes, left, right, into);
      if ((left.byteOffset | right.byteOffset | into.byteOffset) % align === 0) {
        runKernel(kernel, left, right, into);
        return;
      }
      // The contract promises aligned ranges; bytes from elsewhere might not be, and a typed array
      // cannot start unaligned, so such ranges take aligned copies rather than a RangeError.
      const out = new Uint8Array(into.byteLength);
      runKernel(kernel, copyBytes(left), copyBytes(right), out);
      into.set(out);
    },
  });
}

function functionReducer(fn: OpFunction, type: ElementType): Reducer {
  const View: TypedArrayConstructorOf<TypedArray> = TYPED_ARRAY_CONSTRUCTORS[type];
  const elementBytes = ELEMENT_BYTES[type];
  const viewOf = (x: Uint8Array) => new View(x.buffer, x.byteOffset, x.byteLength / elementBytes);
  const copyOf = (x: Uint8Array) => {
    const copy = new View(x.byteLength / elementBytes);
    new Uint8Array(copy.buffer).set(x);
    return copy;
  };
  return Object.freeze({
    elementBytes,
    commutative: fn.commute === true,
    combine(left: Uint8Array, right: Uint8Array, into: Uint8Array): void {
      checkRanges(elementBytes, left, right, into);
      // The operand that `into` is may be handed over as it is (it is overwritten anyway); the others
      // are copies, since `left` or `right` may be the caller's send buffer.
      const aligned = into.byteOffset % elementBytes === 0;
      const leftIsInto = aligned && sameRange(left, into);
      const a = leftIsInto ? viewOf(into) : copyOf(left);
      const b = aligned && !leftIsInto && sameRange(right, into) ? viewOf(into) : copyOf(right);
      const result: unknown = fn(a, b);
      const out = aligned ? viewOf(into) : new View(a.length);
      storeResult(result, out, fn, type);
      if (!aligned) into.set(new Uint8Array(out.buffer));
    },
  });
}

/** Writes a function op's result into `out`, or throws `INVALID_ARGUMENT` if it does not fit. */
function storeResult(result: unknown, out: TypedArray, fn: OpFunction, type: ElementType): void {
  const n = out.length;
  const big = isBigIntElementType(type);
  const want = big ? 'bigint' : 'number';
  if (isTypedArray(result)) {
    if (result.length === n && isBigIntElementType(elementTypeOf(result)) === big) {
      // `set` copies correctly even when `result` shares memory with `out`.
      (out as Uint8Array).set(result as unknown as ArrayLike<number>);
      return;
    }
  } else if (typeof result === 'object' && result !== null && (result as ArrayLike<unknown>).length === n) {
    const values = result as ArrayLike<unknown>;
    const o = out as unknown as { [index: number]: number | bigint };
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (typeof v !== want) {
        throw new VmcommError('INVALID_ARGUMENT', `${opName(fn)} on ${type} elements returned ${describe(v)} at index ${i}; it must return ${want}s`);
      }
      o[i] = v as number | bigint;
    }
    return;
  }
  throw new VmcommError(
    'INVALID_ARGUMENT',
    `${opName(fn)} on ${type} elements must return an array-like of ${n} ${want}s (one per element of its operands), got ${describe(result)}`,
  );
}

/** A value as messages show it: arrays with their length, bigints with their `n`. */
function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return `a function`;
  if (v === null || typeof v !== 'object') return String(v);
  if (isTypedArray(v)) {
    const name = TYPED_ARRAY_CONSTRUCTORS[elementTypeOf(v)].name;
    return `${name.startsWith('Int') ? 'an' : 'a'} ${name} of length ${v.length}`;
  }
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return Object.prototype.toString.call(v);
}

// ------------------------------------------------------------------ the value path

const LOGICAL_OPS: readonly PredefinedOp[] = ['LAND', 'LOR', 'LXOR'];
const BITWISE_OPS: readonly PredefinedOp[] = ['BAND', 'BOR', 'BXOR'];

/**
 * `a op b` for the object form of the reductions (`allreduce(value, op)`, mpi4py's lowercase style);
 * `a` is the lower ranks' value. A function op gets the whole values. A predefined op takes:
 * - numbers: every op but MINLOC/MAXLOC; LAND/LOR/LXOR need integers and give 0 or 1; BAND/BOR/BXOR
 *   need safe integers and are exact (two's complement of any width, as on bigints, not 32-bit as
 *   JavaScript's `&` would be), since a safe integer's bits are all there;
 * - bigints of any size: every op but MINLOC/MAXLOC, exact (LAND/LOR/LXOR give 0n or 1n);
 * - booleans: LAND, LOR, LXOR only (SUM of booleans is an error, as `MPI_C_BOOL` takes only these);
 * - arrays of these, element-wise (equal lengths, nested arrays too); for MINLOC/MAXLOC the leaves are
 *   `[value, index]` pairs (a number or bigint value, an integer or bigint index);
 * - typed arrays of one type and length, through the same loops as the buffer path; a new array back.
 *
 * Operands of different kinds (number with bigint, array with non-array, different typed arrays or
 * lengths) throw `INVALID_ARGUMENT`: every rank must contribute a value of the same shape.
 */
export function reduceValues(op: PredefinedOp | OpFunction, a: unknown, b: unknown): unknown {
  const bad = opError(op);
  if (bad !== undefined) throw bad;
  if (typeof op === 'function') return op(a, b);
  return reduceValue(op, a, b, '');
}

/**
 * Checks that `value` can be reduced by `op` (before any communication, so a bad call fails on the
 * rank that made it, before it sends anything): the error `reduceValues` would throw for `value`
 * against a value of the same shape, or `undefined`. A function op accepts any value.
 */
export function checkValueOp(op: PredefinedOp | OpFunction, value: unknown): VmcommError | undefined {
  const bad = opError(op);
  if (bad !== undefined) return bad;
  if (typeof op === 'function') return undefined;
  return checkValue(op, value, '');
}

function checkValue(op: PredefinedOp, v: unknown, at: string): VmcommError | undefined {
  if (isTypedArray(v)) return checkTypedArray(op, v, at);
  if (Array.isArray(v)) {
    if (isLocOp(op) && isPair(v)) return checkPair(op, v, at);
    for (let i = 0; i < v.length; i++) {
      const e = checkValue(op, v[i], `${at}[${i}]`);
      if (e !== undefined) return e;
    }
    return undefined;
  }
  return checkScalar(op, v, at);
}

function checkTypedArray(op: PredefinedOp, v: TypedArray, at: string): VmcommError | undefined {
  const type = elementTypeOf(v);
  if (!OP_TYPES[op].includes(type)) return typeMismatch(op, type, at === '' ? '' : `, value${at}`);
  if (isLocOp(op) && v.length % 2 !== 0) {
    return new VmcommError(
      'INVALID_ARGUMENT',
      `Op.${op} on a ${TYPED_ARRAY_CONSTRUCTORS[type].name} takes interleaved (value, index) pairs, so its length must be even; value${at} has ${v.length} elements`,
    );
  }
  return undefined;
}

function checkScalar(op: PredefinedOp, v: unknown, at: string): VmcommError | undefined {
  const where = `value${at}`;
  if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'boolean') {
    return invalidArgument(`${where} for Op.${op}`, 'a number, bigint, boolean, typed array or array of these', v);
  }
  if (isLocOp(op)) {
    return new VmcommError(
      'INVALID_ARGUMENT',
      `Op.${op} takes [value, index] pairs, arrays of them, or a typed array of interleaved pairs; ${where} is ${describe(v)}`,
    );
  }
  if (typeof v === 'boolean') {
    if (LOGICAL_OPS.includes(op)) return undefined;
    return new VmcommError('INVALID_ARGUMENT', `Op.${op} does not apply to booleans (${where} is ${v}); booleans take ${LOGICAL_OPS.join(', ')}`);
  }
  if (typeof v === 'number') {
    if (LOGICAL_OPS.includes(op) && !Number.isInteger(v)) {
      return new VmcommError('INVALID_ARGUMENT', `Op.${op} takes integers (or booleans, bigints); ${where} is ${v}`);
    }
    if (BITWISE_OPS.includes(op) && !Number.isSafeInteger(v)) {
      return new VmcommError(
        'INVALID_ARGUMENT',
        `Op.${op} on numbers takes safe integers (|x| ≤ 2^53 − 1), whose bits are exact; ${where} is ${v}: use bigints for wider values`,
      );
    }
  }
  return undefined;
}

/** A MINLOC/MAXLOC leaf: `[value, index]` with number or bigint members (checked further by checkPair). */
function isPair(v: unknown[]): boolean {
  return v.length === 2 && isNumeric(v[0]) && isNumeric(v[1]);
}

function isNumeric(v: unknown): v is number | bigint {
  return typeof v === 'number' || typeof v === 'bigint';
}

function checkPair(op: PredefinedOp, v: unknown, at: string): VmcommError | undefined {
  if (Array.isArray(v) && isPair(v) && (typeof v[1] === 'bigint' || Number.isInteger(v[1]))) return undefined;
  return new VmcommError(
    'INVALID_ARGUMENT',
    `Op.${op} takes [value, index] pairs (a number or bigint value, an integer or bigint index); value${at} is ${describe(v)}${
      Array.isArray(v) ? ` [${v.map(describe).join(', ')}]` : ''
    }`,
  );
}

function shapeMismatch(op: PredefinedOp, a: unknown, b: unknown, at: string): VmcommError {
  return new VmcommError(
    'INVALID_ARGUMENT',
    `Op.${op} cannot combine ${describe(a)} with ${describe(b)}${at === '' ? '' : ` at value${at}`}: every rank must contribute a value of the same type and shape`,
  );
}

function reduceValue(op: PredefinedOp, a: unknown, b: unknown, at: string): unknown {
  if (isTypedArray(a) || isTypedArray(b)) return reduceTypedArrays(op, a, b, at);
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b)) throw shapeMismatch(op, a, b, at);
    if (isLocOp(op) && (isPair(a) || isPair(b))) return reducePairs(op, a, b, at);
    if (a.length !== b.length) throw shapeMismatch(op, a, b, at);
    const out: unknown[] = new Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = reduceValue(op, a[i], b[i], `${at}[${i}]`);
    return out;
  }
  const bad = checkScalar(op, a, at) ?? checkScalar(op, b, at);
  if (bad !== undefined) throw bad;
  if (typeof a !== typeof b) throw shapeMismatch(op, a, b, at);
  if (typeof a === 'number') return reduceNumbers(op, a, b as number);
  if (typeof a === 'bigint') return reduceBigInts(op, a, b as bigint);
  return reduceBooleans(op, a as boolean, b as boolean);
}

function reduceTypedArrays(op: PredefinedOp, a: unknown, b: unknown, at: string): TypedArray {
  if (!isTypedArray(a) || !isTypedArray(b)) throw shapeMismatch(op, a, b, at);
  const type = elementTypeOf(a);
  if (elementTypeOf(b) !== type || a.length !== b.length) throw shapeMismatch(op, a, b, at);
  const bad = checkTypedArray(op, a, at);
  if (bad !== undefined) throw bad;
  const out = new TYPED_ARRAY_CONSTRUCTORS[type](a.length);
  reducerFor(op, type).combine(bytesOf(a), bytesOf(b), bytesOf(out));
  return out;
}

function bytesOf(v: TypedArray): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function reducePairs(op: PredefinedOp, a: unknown[], b: unknown[], at: string): [number | bigint, number | bigint] {
  const bad = checkPair(op, a, at) ?? checkPair(op, b, at);
  if (bad !== undefined) throw bad;
  const [av, ai] = a as [number | bigint, number | bigint];
  const [bv, bi] = b as [number | bigint, number | bigint];
  if (typeof av !== typeof bv || typeof ai !== typeof bi) throw shapeMismatch(op, a, b, at);
  const max = op === 'MAXLOC';
  const w = typeof av === 'bigint' ? locWinnerBig(av, bv as bigint, max) : locWinner(av, bv as number, max);
  if (w === LOC_LEFT) return [av, ai];
  if (w === LOC_RIGHT) return [bv, bi];
  return [av, ai < bi ? ai : bi];
}

function reduceNumbers(op: PredefinedOp, a: number, b: number): number {
  switch (op) {
    case 'SUM': return a + b;
    case 'PROD': return a * b;
    case 'MIN': return Math.min(a, b);
    case 'MAX': return Math.max(a, b);
    case 'LAND': return a !== 0 && b !== 0 ? 1 : 0;
    case 'LOR': return a !== 0 || b !== 0 ? 1 : 0;
    case 'LXOR': return (a !== 0) !== (b !== 0) ? 1 : 0;
    // int32 operands can use JavaScript's 32-bit operators; wider safe integers go through BigInt,
    // whose result (within ±2^53) converts back exactly.
    case 'BAND': return (a | 0) === a && (b | 0) === b ? a & b : Number(BigInt(a) & BigInt(b));
    case 'BOR': return (a | 0) === a && (b | 0) === b ? a | b : Number(BigInt(a) | BigInt(b));
    case 'BXOR': return (a | 0) === a && (b | 0) === b ? a ^ b : Number(BigInt(a) ^ BigInt(b));
    default: throw new Error(`unreachable: Op.${op} on numbers`);
  }
}

function reduceBigInts(op: PredefinedOp, a: bigint, b: bigint): bigint {
  switch (op) {
    case 'SUM': return a + b;
    case 'PROD': return a * b;
    case 'MIN': return a < b ? a : b;
    case 'MAX': return a > b ? a : b;
    case 'LAND': return a !== 0n && b !== 0n ? 1n : 0n;
    case 'LOR': return a !== 0n || b !== 0n ? 1n : 0n;
    case 'LXOR': return (a !== 0n) !== (b !== 0n) ? 1n : 0n;
    case 'BAND': return a & b;
    case 'BOR': return a | b;
    case 'BXOR': return a ^ b;
    default: throw new Error(`unreachable: Op.${op} on bigints`);
  }
}

function reduceBooleans(op: PredefinedOp, a: boolean, b: boolean): boolean {
  switch (op) {
    case 'LAND': return a && b;
    case 'LOR': return a || b;
    case 'LXOR': return a !== b;
    default: throw new Error(`unreachable: Op.${op} on booleans`);
  }
}
