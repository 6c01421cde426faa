/**
 * **vmcomm/mpi**: MPI's C API over vmcomm, for porting MPI programs line by line.
 *
 * Names, argument order and semantics are MPI's; what JavaScript changes is small and regular:
 * - buffers are typed arrays whose class matches the datatype (`MPI.DOUBLE` ↔ `Float64Array`;
 *   `MPI.BYTE` takes any buffer), counts are in items, and `&buf[i]` becomes `buf.subarray(i)`;
 * - blocking calls return promises (`await MPI.Recv(…)`), and so do `Test`, `Testall`, `Testany` and
 *   `Iprobe`, which yield to the event loop so that socket transports progress while a program polls;
 * - `Isend`/`Irecv` return their request synchronously; a completed request becomes inactive (C's
 *   `MPI_REQUEST_NULL`);
 * - out-arguments are return values: `Recv` returns its `Status`, `Test` returns `{ flag, status }`;
 * - errors are thrown as `VmcommError` (MPI's `MPI_ERRORS_RETURN` spirit, with a message that names
 *   the argument) instead of returned codes.
 *
 * It uses only vmcomm's public API: each pair of ranks still talks over the fastest transport
 * vmcomm proved (threads, shared memory, ivshmem across VMs, tcp), and the collectives are vmcomm's.
 *
 * @example
 * ```ts
 * import { MPI } from 'vmcomm/mpi';
 * await MPI.Init();
 * const rank = MPI.Comm_rank(MPI.COMM_WORLD);
 * const x = Float64Array.of(rank);
 * await MPI.Allreduce(MPI.IN_PLACE, x, 1, MPI.DOUBLE, MPI.SUM, MPI.COMM_WORLD);
 * await MPI.Finalize();
 * ```
 *
 * @module vmcomm/mpi
 */

import { ANY_SOURCE, ANY_TAG, IN_PLACE, Op, TAG_UB } from 'vmcomm';
import * as coll from './collectives.js';
import { COMM_NULL } from './comm.js';
import { COMM_TYPE_HOST, COMM_TYPE_PROCESS, COMM_TYPE_SHARED, Comm_dup, Comm_free, Comm_rank, Comm_size, Comm_split, Comm_split_type } from './communicators.js';
import { DATATYPES, typeSize } from './datatypes.js';
import { Abort, COMM_SELF, COMM_WORLD, Finalize, Finalized, Init, Initialized, Wtick, Wtime } from './environment.js';
import { Op_create } from './ops.js';
import * as p2p from './point-to-point.js';
import * as req from './requests.js';
import { hostname } from 'node:os';

export { Comm } from './comm.js';
export type { Datatype, TypedArrayClass } from './datatypes.js';
export type { IntArray } from './collectives.js';
export { MPIRequest, Status } from './requests.js';
export type { UserFunction } from './ops.js';

const api = {
  // --- environment
  Init,
  Initialized,
  Finalize,
  Finalized,
  Abort,
  Wtime,
  Wtick,
  /** `MPI_Get_processor_name`: this host's name. */
  Get_processor_name: (): string => hostname(),

  // --- communicators
  COMM_WORLD,
  COMM_SELF,
  COMM_NULL,
  Comm_rank,
  Comm_size,
  Comm_split,
  Comm_split_type,
  Comm_dup,
  Comm_free,
  COMM_TYPE_SHARED,
  COMM_TYPE_HOST,
  COMM_TYPE_PROCESS,

  // --- point to point
  Send: p2p.send,
  Recv: p2p.recv,
  Isend: p2p.isend,
  Irecv: p2p.irecv,
  Probe: p2p.probe,
  Iprobe: p2p.iprobe,
  Sendrecv: p2p.sendrecv,
  Sendrecv_replace: p2p.sendrecvReplace,
  Get_count: req.getCount,
  Test_cancelled: req.testCancelled,

  // --- requests
  Wait: req.wait,
  Waitall: req.waitall,
  Waitany: req.waitany,
  Waitsome: req.waitsome,
  Test: req.test,
  Testall: req.testall,
  Testany: req.testany,
  Cancel: req.cancel,
  REQUEST_NULL: req.REQUEST_NULL,

  // --- collectives
  Barrier: coll.barrier,
  Bcast: coll.bcast,
  Reduce: coll.reduce,
  Allreduce: coll.allreduce,
  Gather: coll.gather,
  Gatherv: coll.gatherv,
  Allgather: coll.allgather,
  Allgatherv: coll.allgatherv,
  Scatter: coll.scatter,
  Scatterv: coll.scatterv,
  Alltoall: coll.alltoall,
  Alltoallv: coll.alltoallv,
  Scan: coll.scan,
  Exscan: coll.exscan,
  Reduce_scatter: coll.reduceScatter,
  Reduce_scatter_block: coll.reduceScatterBlock,

  // --- constants
  ANY_SOURCE,
  ANY_TAG,
  PROC_NULL: req.PROC_NULL,
  UNDEFINED: req.UNDEFINED,
  IN_PLACE,
  TAG_UB,
  SUCCESS: 0,

  // --- datatypes
  ...DATATYPES,
  Type_size: typeSize,

  // --- reduction operations
  ...Op,
  Op_create,
} as const;

/**
 * The type of {@link MPI}. Declared (not only inferred) so that TypeScript knows `MPI.Abort(…)` never
 * returns: control-flow analysis honours a `never` call only through explicitly typed references.
 */
export interface MPINamespace extends Omit<typeof api, 'Abort'> {
  /** `MPI_Abort`: ends every rank of the job with `errorcode` (the process exit status). Never returns. */
  readonly Abort: typeof Abort;
}

/**
 * The MPI namespace: `MPI.Send`, `MPI.COMM_WORLD`, `MPI.DOUBLE`, `MPI.SUM`… (C's `MPI_Send` and so
 * on, without the underscore after `MPI`).
 */
export const MPI: MPINamespace = Object.freeze(api);
