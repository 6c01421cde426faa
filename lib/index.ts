/**
 * **vmcomm**: VM-aware communication for TypeScript. MPI-style point-to-point messaging and collectives
 * between ranks, each pair over the fastest path it can prove: the same rank
 * (`self`), threads of one process, processes of one OS (shared memory), VMs of one host (ivshmem), or
 * the network (`tcp`).
 *
 * @example
 * ```ts
 * import { init, ANY_SOURCE } from 'vmcomm';
 * const comm = await init();                    // npx vmcomm run -n 2 app.ts
 * if (comm.rank === 0) await comm.send({ hello: [1, 2n] }, 1, 7);
 * else console.log(await comm.recv(ANY_SOURCE, 7), comm.transportOf(0));
 * await comm.finalize();
 * ```
 *
 * @module vmcomm
 */

export { init } from './init.js';
export type { InitOptions, PerTransport } from './options.js';
export { Communicator, type CallOptions, type SplitByLocalityOptions, type Message, type CommunicatorEvents, type PeerStats } from './communicator.js';
export { Request, waitAll, waitAny, type AwaitedValues } from './request.js';
export { ANY_SOURCE, ANY_TAG, TAG_UB, IN_PLACE, Op, type InPlace, type PredefinedOp, type TransportName } from './constants.js';
export { VmcommError, isVmcommError, VMCOMM_ERROR_CODES, type VmcommErrorCode, type VmcommErrorOptions, type Status } from './errors.js';
export type { LocalityCard, CardFields, CardValue } from './backend.js';
export type { WorldEvents } from './world.js';
export { defineOp, OP_TYPES, opTypeTableMarkdown, type OpFunction, type DefineOpOptions } from './collectives/ops.js';
export { ELEMENT_TYPES, TYPED_ARRAY_CONSTRUCTORS, type ElementType, type TypedArrayConstructorOf, type TypedArrayOfType } from './collectives/element-types.js';
export type { TypedArray } from './collectives/io.js';
export type { CollectiveOptions, ReduceOp } from './collectives/operations.js';
export { ALGORITHMS, selectionTableMarkdown, type TunableCollective } from './collectives/select.js';
export type { LocalityLevel } from './locality.js';
