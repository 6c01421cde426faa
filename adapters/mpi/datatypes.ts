/**
 * MPI datatypes as typed-array classes, and the one check every buffer argument goes through.
 *
 * In C a buffer is an address and the datatype says what lies there; in JavaScript the typed array
 * already knows its element type, so the datatype is checked against it instead of trusted: a
 * `Float64Array` passed as `MPI.INT` is an error that names the argument, never a silent
 * reinterpretation. `MPI.BYTE` is the exception, as in MPI: any buffer, counted in bytes.
 *
 * @module
 */

import { VmcommError, type TypedArray } from 'vmcomm';

/** The typed-array classes a datatype may describe. */
export type TypedArrayClass =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor;

/**
 * An MPI datatype (`MPI_Datatype`): the typed-array class of its buffers and how many array elements
 * make one item (2 for the pair types of `MINLOC`/`MAXLOC`). Compare by identity (`dt === MPI.INT`).
 */
export interface Datatype {
  /** The C name, for messages: `'MPI_INT'`. */
  readonly name: string;
  /** Buffers of this datatype are arrays of this class (`MPI.BYTE` takes any buffer). */
  readonly array: TypedArrayClass;
  /** Array elements per item: 1, or 2 for (value, index) pairs. */
  readonly elements: number;
  /** Bytes per item (`MPI_Type_size`). */
  readonly size: number;
}

function datatype(name: string, array: TypedArrayClass, elements = 1): Datatype {
  return Object.freeze({ name, array, elements, size: array.BYTES_PER_ELEMENT * elements });
}

/**
 * The predefined datatypes. The pair types (`MPI_2INT` and friends) hold interleaved (value, index)
 * pairs of one element type, which is what `MINLOC`/`MAXLOC` reduce; their counts are in pairs.
 * JavaScript names cannot start with a digit, hence `TWO_INT` for `MPI_2INT`.
 */
export const DATATYPES = Object.freeze({
  BYTE: datatype('MPI_BYTE', Uint8Array),
  CHAR: datatype('MPI_CHAR', Int8Array),
  SIGNED_CHAR: datatype('MPI_SIGNED_CHAR', Int8Array),
  UNSIGNED_CHAR: datatype('MPI_UNSIGNED_CHAR', Uint8Array),
  SHORT: datatype('MPI_SHORT', Int16Array),
  UNSIGNED_SHORT: datatype('MPI_UNSIGNED_SHORT', Uint16Array),
  INT: datatype('MPI_INT', Int32Array),
  UNSIGNED: datatype('MPI_UNSIGNED', Uint32Array),
  LONG: datatype('MPI_LONG', BigInt64Array),
  UNSIGNED_LONG: datatype('MPI_UNSIGNED_LONG', BigUint64Array),
  LONG_LONG: datatype('MPI_LONG_LONG', BigInt64Array),
  UNSIGNED_LONG_LONG: datatype('MPI_UNSIGNED_LONG_LONG', BigUint64Array),
  INT8_T: datatype('MPI_INT8_T', Int8Array),
  UINT8_T: datatype('MPI_UINT8_T', Uint8Array),
  INT16_T: datatype('MPI_INT16_T', Int16Array),
  UINT16_T: datatype('MPI_UINT16_T', Uint16Array),
  INT32_T: datatype('MPI_INT32_T', Int32Array),
  UINT32_T: datatype('MPI_UINT32_T', Uint32Array),
  INT64_T: datatype('MPI_INT64_T', BigInt64Array),
  UINT64_T: datatype('MPI_UINT64_T', BigUint64Array),
  FLOAT: datatype('MPI_FLOAT', Float32Array),
  DOUBLE: datatype('MPI_DOUBLE', Float64Array),
  TWO_INT: datatype('MPI_2INT', Int32Array, 2),
  TWO_FLOAT: datatype('MPI_2REAL', Float32Array, 2),
  TWO_DOUBLE: datatype('MPI_2DOUBLE_PRECISION', Float64Array, 2),
  TWO_LONG: datatype('MPI_2LONG', BigInt64Array, 2),
});

const KNOWN = new Set<unknown>(Object.values(DATATYPES));

/** Whether `dt` is one of {@link DATATYPES}. */
export function isDatatype(dt: unknown): dt is Datatype {
  return KNOWN.has(dt);
}

/** `MPI_Type_size`: bytes per item. */
export function typeSize(dt: Datatype): number {
  checkDatatype(dt, 'datatype');
  return dt.size;
}

/** The datatype whose buffers are of `array`'s class (the first listed: `Int32Array` → `MPI_INT`). */
export function datatypeOfArray(array: TypedArray): Datatype {
  for (const dt of KNOWN as Set<Datatype>) if (dt.elements === 1 && array instanceof dt.array) return dt;
  return DATATYPES.BYTE;
}

/** Throws `INVALID_ARGUMENT` naming `name` unless `dt` is a predefined datatype. */
export function checkDatatype(dt: unknown, name: string): asserts dt is Datatype {
  if (!isDatatype(dt)) {
    throw new VmcommError('INVALID_ARGUMENT', `${name} must be an MPI datatype such as MPI.INT or MPI.DOUBLE; got ${describe(dt)}`);
  }
}

/** Throws `INVALID_ARGUMENT` naming `name` unless `count` is a whole number ≥ 0. */
export function checkCount(count: unknown, name: string): asserts count is number {
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw new VmcommError('INVALID_ARGUMENT', `${name} must be a whole number of items ≥ 0; got ${describe(count)}`);
  }
}

/**
 * The first `count` items of `buf` as an array of `dt`'s class — the memory an MPI call with
 * `(buf, count, dt)` touches. Throws `INVALID_ARGUMENT` naming the argument when `dt` is not a
 * datatype, `count` is not a count, `buf` is not an array of `dt`'s class (any buffer for
 * `MPI.BYTE`), or `buf` is shorter than `count` items.
 */
export function region(buf: unknown, count: unknown, dt: unknown, names: { buf: string; count: string; datatype: string }): TypedArray {
  checkDatatype(dt, names.datatype);
  checkCount(count, names.count);
  let array: TypedArray;
  if (dt === DATATYPES.BYTE && ArrayBuffer.isView(buf)) {
    array = buf instanceof Uint8Array ? buf : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } else if (buf instanceof dt.array) {
    array = buf as TypedArray;
  } else {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `${names.buf} must be ${article(dt.array.name)} for ${names.datatype} ${dt.name}; got ${describe(buf)}` +
        (ArrayBuffer.isView(buf) ? ` (pass the datatype that matches the array, or view its bytes as ${dt.array.name})` : ''),
    );
  }
  const elements = count * dt.elements;
  if (array.length < elements) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `${names.buf} holds ${array.length / dt.elements} ${dt.name} item(s) but ${names.count} is ${count}` + (dt.elements > 1 ? ` (${dt.elements} elements per item)` : ''),
    );
  }
  return array.length === elements ? array : (array.subarray(0, elements) as TypedArray);
}

/** {@link region} with the usual argument names (`buf`, `count`, `datatype`) under a prefix. */
export function bufferArgs(prefix: string): { buf: string; count: string; datatype: string } {
  return prefix === '' ? { buf: 'buf', count: 'count', datatype: 'datatype' } : { buf: `${prefix}buf`, count: `${prefix}count`, datatype: `${prefix}type` };
}

/** Short description of a bad argument for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) return `${article(v.constructor.name)} of ${(v as TypedArray).length ?? v.byteLength} elements`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `${typeof v} ${String(v)}`;
}

function article(word: string): string {
  return /^[AEIOU]/.test(word) ? `an ${word}` : `a ${word}`;
}
