/**
 * The element types of typed arrays, as reductions see them: a name per typed-array class, its size,
 * and the way back from a name and some bytes to a typed array. Reductions work on raw bytes (what
 * travels between ranks), so the element type is what gives those bytes a meaning again.
 *
 * @module
 */

import { invalidArgument } from '../errors.js';
import type { TypedArray } from './io.js';

/** The element type of a typed array, one per typed-array class (`'float64'` ↔ `Float64Array`). */
export type ElementType =
  | 'int8'
  | 'uint8'
  | 'uint8clamped'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'float32'
  | 'float64'
  | 'bigint64'
  | 'biguint64';

/** The typed-array class of each element type, so `typedArrayOf('int32', …)` is typed `Int32Array`. */
export interface TypedArrayOfType {
  /** `Int8Array` */
  int8: Int8Array;
  /** `Uint8Array` (a Node `Buffer` is one too) */
  uint8: Uint8Array;
  /** `Uint8ClampedArray` */
  uint8clamped: Uint8ClampedArray;
  /** `Int16Array` */
  int16: Int16Array;
  /** `Uint16Array` */
  uint16: Uint16Array;
  /** `Int32Array` */
  int32: Int32Array;
  /** `Uint32Array` */
  uint32: Uint32Array;
  /** `Float32Array` */
  float32: Float32Array;
  /** `Float64Array` */
  float64: Float64Array;
  /** `BigInt64Array` */
  bigint64: BigInt64Array;
  /** `BigUint64Array` */
  biguint64: BigUint64Array;
}

/** A typed-array class (`Float64Array` …) as the reductions use it: over existing memory, or fresh. */
export interface TypedArrayConstructorOf<T extends TypedArray> {
  /** A view of `length` elements of `buffer` from `byteOffset` (a multiple of the element size). */
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  /** A fresh, zeroed array of `length` elements. */
  new (length: number): T;
  /** Bytes of one element. */
  readonly BYTES_PER_ELEMENT: number;
  /** The class name (`'Float64Array'`), used in messages. */
  readonly name: string;
}

/** Every element type, in the order of the op × type table: integers by size, floats, then 64-bit integers. */
export const ELEMENT_TYPES: readonly ElementType[] = Object.freeze([
  'int8',
  'uint8',
  'uint8clamped',
  'int16',
  'uint16',
  'int32',
  'uint32',
  'float32',
  'float64',
  'bigint64',
  'biguint64',
] as const);

/** The integer element types (those MPI's logical and bitwise operations apply to), bigint ones included. */
export const INTEGER_ELEMENT_TYPES: readonly ElementType[] = Object.freeze(
  ELEMENT_TYPES.filter((t) => t !== 'float32' && t !== 'float64'),
);

/** The typed-array class of each element type. */
export const TYPED_ARRAY_CONSTRUCTORS: { readonly [K in ElementType]: TypedArrayConstructorOf<TypedArrayOfType[K]> } = Object.freeze({
  int8: Int8Array,
  uint8: Uint8Array,
  uint8clamped: Uint8ClampedArray,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
  bigint64: BigInt64Array,
  biguint64: BigUint64Array,
});

/** Bytes of one element of each type (`BYTES_PER_ELEMENT`). */
export const ELEMENT_BYTES: Readonly<Record<ElementType, number>> = Object.freeze({
  int8: 1,
  uint8: 1,
  uint8clamped: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  float32: 4,
  float64: 8,
  bigint64: 8,
  biguint64: 8,
});

// The [[TypedArrayName]] of a view, read through %TypedArray%.prototype's own getter: unlike
// `instanceof` it works for arrays from another realm (vm contexts) and cannot be faked by an object
// that merely claims a Symbol.toStringTag; it is undefined for anything but a typed array.
const typedArrayName = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag)!.get as (
  this: unknown,
) => string | undefined;

const TYPE_OF_NAME: Readonly<Record<string, ElementType>> = Object.freeze(
  Object.fromEntries(ELEMENT_TYPES.map((t) => [TYPED_ARRAY_CONSTRUCTORS[t].name, t])),
);

/** True when `value` is a typed array of any element type (a `DataView` is not). */
export function isTypedArray(value: unknown): value is TypedArray {
  return typedArrayName.call(value) !== undefined;
}

/** True when `name` is one of the {@link ElementType} names. */
export function isElementType(name: unknown): name is ElementType {
  return typeof name === 'string' && Object.hasOwn(ELEMENT_BYTES, name);
}

/** True for the element types whose values are bigints (`bigint64`, `biguint64`). */
export function isBigIntElementType(type: ElementType): boolean {
  return type === 'bigint64' || type === 'biguint64';
}

/**
 * The element type of `view` (`'uint8'` for a Node `Buffer`). Throws `INVALID_ARGUMENT` for anything
 * that is not a typed array, such as a `DataView`, whose bytes have no element type to reduce by.
 */
export function elementTypeOf(view: TypedArray): ElementType {
  const name = typedArrayName.call(view);
  const type = name === undefined ? undefined : TYPE_OF_NAME[name];
  if (type === undefined) throw invalidArgument('a reduction buffer', 'a typed array (Int8Array … BigUint64Array)', view);
  return type;
}

/**
 * A typed array of `type` over `length` elements of `buffer` from `byteOffset` (default: to the end).
 * Throws `INVALID_ARGUMENT` for an unknown type, an offset that is not a multiple of the element size
 * (typed arrays cannot be unaligned) or a range outside the buffer.
 */
export function typedArrayOf<T extends ElementType>(type: T, buffer: ArrayBufferLike, byteOffset = 0, length?: number): TypedArrayOfType[T] {
  if (!isElementType(type)) throw invalidArgument('element type', `one of ${ELEMENT_TYPES.join(', ')}`, type);
  const bytes = ELEMENT_BYTES[type];
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset % bytes !== 0 || byteOffset > buffer.byteLength) {
    throw invalidArgument(`byteOffset of a ${type} view`, `a multiple of ${bytes} within the buffer's ${buffer.byteLength} bytes`, byteOffset);
  }
  const count = length ?? Math.floor((buffer.byteLength - byteOffset) / bytes);
  if (!Number.isSafeInteger(count) || count < 0 || byteOffset + count * bytes > buffer.byteLength) {
    throw invalidArgument(`length of a ${type} view at byte ${byteOffset}`, `at most ${Math.floor((buffer.byteLength - byteOffset) / bytes)} elements`, length);
  }
  return new TYPED_ARRAY_CONSTRUCTORS[type](buffer, byteOffset, count) as TypedArrayOfType[T];
}
