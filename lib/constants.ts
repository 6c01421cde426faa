/**
 * Wildcards, the in-place marker and the reduction operations (MPI's predefined constants).
 *
 * @module
 */

/** Receive from any sender (`MPI_ANY_SOURCE`). */
export const ANY_SOURCE = -1;
/** Receive any tag (`MPI_ANY_TAG`). */
export const ANY_TAG = -1;
/** The largest tag a program may use (`MPI_TAG_UB`); tags are 0 … TAG_UB. */
export const TAG_UB = 0x3fffffff;

/** Marks a reduction whose input is its output buffer (`MPI_IN_PLACE`). */
export const IN_PLACE: unique symbol = Symbol.for('vmcomm.IN_PLACE');
/** The type of {@link IN_PLACE}. */
export type InPlace = typeof IN_PLACE;

/**
 * The predefined reduction operations (`MPI_SUM` …). A const object, not an enum, so values stay literal
 * types. Any function `(a, b) => c` may be used where an `Op` is expected; it is applied in rank order.
 */
export const Op = {
  SUM: 'SUM',
  PROD: 'PROD',
  MIN: 'MIN',
  MAX: 'MAX',
  LAND: 'LAND',
  LOR: 'LOR',
  LXOR: 'LXOR',
  BAND: 'BAND',
  BOR: 'BOR',
  BXOR: 'BXOR',
  MINLOC: 'MINLOC',
  MAXLOC: 'MAXLOC',
} as const;
/** One of the predefined operation names. */
export type PredefinedOp = (typeof Op)[keyof typeof Op];

/**
 * The name of a transport. The five built-in names keep their literal types; a plug-in may use any
 * other string.
 */
export type TransportName = 'self' | 'threads' | 'shm' | 'ivshmem' | 'tcp' | (string & {});
