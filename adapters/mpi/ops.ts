/**
 * Reduction operations: the predefined ones are vmcomm's `Op`; `Op_create` wraps an
 * `MPI_User_function`.
 *
 * @module
 */

import { defineOp, VmcommError, type OpFunction, type TypedArray } from 'vmcomm';
import { datatypeOfArray, describe, type Datatype } from './datatypes.js';

/**
 * An `MPI_User_function`: combines `invec` into `inoutvec` element-wise (`inoutvec[i] = invec[i] ∘
 * inoutvec[i]`), `len` items of `datatype`. `invec` holds the lower ranks' contribution, as in MPI.
 */
export type UserFunction = (invec: TypedArray, inoutvec: TypedArray, len: number, datatype: Datatype) => void;

/**
 * `MPI_Op_create`: an op for `Reduce`, `Allreduce`, `Scan`… from a C-style user function. Unless
 * `commute` is true, it is applied in rank order. There is no `Op_free`: the op is garbage-collected.
 */
export function Op_create(fn: UserFunction, commute: boolean): OpFunction<TypedArray> {
  if (typeof fn !== 'function') throw new VmcommError('INVALID_ARGUMENT', `fn must be a function (invec, inoutvec, len, datatype) => void; got ${describe(fn)}`);
  const mpiStyle = (a: TypedArray, b: TypedArray): TypedArray => {
    // vmcomm's op returns a fresh block; MPI's writes into inoutvec. Give it a copy to write into.
    const inout = b.slice() as TypedArray;
    fn(a, inout, a.length, datatypeOfArray(a));
    return inout;
  };
  Object.defineProperty(mpiStyle, 'name', { value: fn.name });
  return defineOp(mpiStyle, { commute: commute === true });
}
