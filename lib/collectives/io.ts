/**
 * What a collective algorithm sees of its communicator: ranks, and byte messages to and from peers.
 * Every algorithm in this folder is written against {@link CollectiveIO} only, so the same code runs
 * over any transport (and over the in-memory harness in tests).
 *
 * Ordering: between two ranks, messages of one collective call match in the order they are sent and
 * received (MPI's non-overtaking rule). An algorithm must post its receives from a peer in the order
 * that peer sends; it needs no tags of its own.
 *
 * @module
 */

import type { Kernel } from './op-kernels.js';

/** A typed array of any element type (what buffer collectives take). */
export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** Point-to-point inside one collective call. */
export interface CollectiveIO {
  /** This rank in the communicator. */
  readonly rank: number;
  /** Ranks in the communicator. */
  readonly size: number;
  /** Sends `bytes` to `peer`. `bytes` is borrowed: leave it unchanged until the returned promise settles. */
  send(peer: number, bytes: Uint8Array): PromiseLike<void>;
  /**
   * Receives exactly `into.byteLength` bytes from `peer` into `into`. A message of another length means
   * the ranks called the collective with different arguments: it rejects with `INVALID_ARGUMENT`.
   */
  recv(peer: number, into: Uint8Array): PromiseLike<void>;
  /** Receives a message of any length from `peer` into fresh memory. */
  recvBytes(peer: number): PromiseLike<Uint8Array>;
  /**
   * Waits for every one of `pending` (spinning on shared-memory transports before it yields, which a
   * plain `Promise.all` would not). Rejects with the first error once all settled.
   */
  waitAll(pending: readonly PromiseLike<unknown>[]): Promise<void>;
}

/**
 * A reduction over raw bytes, built from an `Op` and an element type by `ops.ts`. Algorithms cut
 * buffers into blocks on `elementBytes` boundaries only.
 */
export interface Reducer {
  /** Bytes of one element (of one (value, index) pair for MINLOC/MAXLOC). */
  readonly elementBytes: number;
  /** Whether operands may be combined in any order (else algorithms keep rank order). */
  readonly commutative: boolean;
  /**
   * `into := left op right`, element by element; all three are byte ranges of the same length, a
   * multiple of `elementBytes`, aligned to the element size. `into` may be `left` or `right`.
   * `left` holds the contribution of the lower ranks.
   */
  combine(left: Uint8Array, right: Uint8Array, into: Uint8Array): void;
  /**
   * A predefined op's loop, for paths that hold typed views already (the shared-memory fold): the
   * same operation as {@link combine}, on views of `kernel.View`. Absent for function ops.
   */
  readonly kernel?: Kernel;
}
