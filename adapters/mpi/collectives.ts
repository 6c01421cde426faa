/**
 * Collectives in C argument order over vmcomm's typed-array collectives.
 *
 * MPI describes a block by (buffer, count, datatype) and, for the `v` variants, by displacements
 * into one buffer; vmcomm's collectives take typed arrays and counts of contiguous blocks in rank
 * order. So: counts become element counts; displacements that lay the blocks out contiguously (the
 * common case) pass straight through as a subarray, and other layouts are packed into (or unpacked
 * from) a contiguous scratch array. `Gatherv` and `Scatterv` are the exception: MPI tells only the
 * root the counts, while vmcomm's `gatherv`/`scatterv` check them on every rank, so they go through
 * vmcomm's `gather`/`scatter` of typed arrays (one encoded array per rank — linear in data, as
 * MPICH's own `Gatherv` is).
 *
 * Every rank must name matching datatypes and counts, as in MPI; vmcomm's argument hash turns a
 * mismatch into `INVALID_ARGUMENT` on every rank instead of a hang.
 *
 * @module
 */

import { IN_PLACE, VmcommError, isVmcommError, type Communicator, type InPlace, type ReduceOp, type TypedArray } from 'vmcomm';
import { communicatorOf } from './comm.js';
import { bufferArgs, checkCount, checkDatatype, describe, region, type Datatype } from './datatypes.js';

/** Counts or displacements: an array of whole numbers (a plain array or an `Int32Array`, as from C). */
export type IntArray = readonly number[] | Int32Array;

/** `MPI_Barrier`. */
export function barrier(comm: unknown): Promise<void> {
  return collective(comm, 'Barrier', (c) => c.barrier());
}

/** `MPI_Bcast`: the root's first `count` items of `buf` into every rank's `buf` (no encoding). */
export function bcast(buf: ArrayBufferView, count: number, datatype: unknown, root: number, comm: unknown): Promise<void> {
  return collective(comm, 'Bcast', (c) => c.bcastBuffer(region(buf, count, datatype, bufferArgs('')), root));
}

/** `MPI_Reduce`: `recvbuf` matters at the root only (pass `null` elsewhere); `IN_PLACE` at the root. */
export function reduce(
  sendbuf: ArrayBufferView | InPlace,
  recvbuf: ArrayBufferView | null | undefined,
  count: number,
  datatype: unknown,
  op: ReduceOp,
  root: number,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Reduce', (c) => {
    const isRoot = c.rank === root;
    if (sendbuf === IN_PLACE && !isRoot) throw new VmcommError('INVALID_ARGUMENT', 'sendbuf may be MPI.IN_PLACE only at the root of Reduce');
    const recv = isRoot ? region(recvbuf, count, datatype, bufferArgs('recv')) : undefined;
    const send = sendbuf === IN_PLACE ? recv! : region(sendbuf, count, datatype, bufferArgs('send'));
    return c.reduce(send, op, root).then((result) => {
      if (recv && result) recv.set(result as never);
    });
  });
}

/** `MPI_Allreduce` (`IN_PLACE` allowed): into `recvbuf` without allocating a result. */
export function allreduce(sendbuf: ArrayBufferView | InPlace, recvbuf: ArrayBufferView, count: number, datatype: unknown, op: ReduceOp, comm: unknown): Promise<void> {
  return collective(comm, 'Allreduce', (c) => {
    const recv = region(recvbuf, count, datatype, bufferArgs('recv'));
    const send = sendbuf === IN_PLACE ? IN_PLACE : region(sendbuf, count, datatype, bufferArgs('send'));
    return c.allreduceBuffer(send, recv, op);
  });
}

/** `MPI_Scan` (`IN_PLACE` allowed). */
export function scan(sendbuf: ArrayBufferView | InPlace, recvbuf: ArrayBufferView, count: number, datatype: unknown, op: ReduceOp, comm: unknown): Promise<void> {
  return collective(comm, 'Scan', (c) => {
    const recv = region(recvbuf, count, datatype, bufferArgs('recv'));
    const send = sendbuf === IN_PLACE ? recv : region(sendbuf, count, datatype, bufferArgs('send'));
    return c.scan(send, op).then((result) => recv.set(result as never));
  });
}

/** `MPI_Exscan` (`IN_PLACE` allowed): rank 0's `recvbuf` is left as it was (MPI: undefined). */
export function exscan(sendbuf: ArrayBufferView | InPlace, recvbuf: ArrayBufferView, count: number, datatype: unknown, op: ReduceOp, comm: unknown): Promise<void> {
  return collective(comm, 'Exscan', (c) => {
    const recv = region(recvbuf, count, datatype, bufferArgs('recv'));
    const send = sendbuf === IN_PLACE ? recv : region(sendbuf, count, datatype, bufferArgs('send'));
    return c.exscan(send, op).then((result) => {
      if (result !== undefined) recv.set(result as never);
    });
  });
}

/** `MPI_Reduce_scatter`: the reduction of `sum(recvcounts)` items, rank r keeping `recvcounts[r]` of them. */
export function reduceScatter(
  sendbuf: ArrayBufferView | InPlace,
  recvbuf: ArrayBufferView,
  recvcounts: IntArray,
  datatype: unknown,
  op: ReduceOp,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Reduce_scatter', (c) => {
    checkDatatype(datatype, 'datatype');
    const counts = checkCounts(recvcounts, 'recvcounts', c.size);
    const total = counts.reduce((a, b) => a + b, 0);
    const send = region(sendbuf === IN_PLACE ? recvbuf : sendbuf, total, datatype, sendbuf === IN_PLACE ? bufferArgs('recv') : bufferArgs('send'));
    const recv = region(recvbuf, counts[c.rank], datatype, bufferArgs('recv'));
    return c.reduceScatter(send, elementCounts(counts, datatype), op).then((mine) => recv.set(mine as never));
  });
}

/** `MPI_Reduce_scatter_block`: every rank keeps `recvcount` items. */
export function reduceScatterBlock(sendbuf: ArrayBufferView | InPlace, recvbuf: ArrayBufferView, recvcount: number, datatype: unknown, op: ReduceOp, comm: unknown): Promise<void> {
  return collective(comm, 'Reduce_scatter_block', (c) => {
    checkCount(recvcount, 'recvcount');
    return reduceScatter(sendbuf, recvbuf, new Array(c.size).fill(recvcount), datatype, op, comm);
  });
}

/** `MPI_Gather`: `recvcount` items from each rank, in rank order, at the root (`IN_PLACE` at the root). */
export function gather(
  sendbuf: ArrayBufferView | InPlace,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView | null | undefined,
  recvcount: number,
  recvtype: unknown,
  root: number,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Gather', (c) => {
    const isRoot = c.rank === root;
    if (sendbuf === IN_PLACE && !isRoot) throw new VmcommError('INVALID_ARGUMENT', 'sendbuf may be MPI.IN_PLACE only at the root of Gather');
    let recv: TypedArray | undefined;
    let send: TypedArray;
    let items: number;
    if (isRoot) {
      checkCount(recvcount, 'recvcount');
      recv = region(recvbuf, recvcount * c.size, recvtype, bufferArgs('recv'));
      const dt = recvtype as Datatype;
      items = recvcount * dt.elements;
      if (sendbuf === IN_PLACE) send = recv.subarray(root * items, (root + 1) * items) as TypedArray;
      else {
        send = region(sendbuf, sendcount, sendtype, bufferArgs('send'));
        checkSameSignature(sendcount, sendtype as Datatype, recvcount, dt);
      }
    } else {
      send = region(sendbuf, sendcount, sendtype, bufferArgs('send'));
      items = sendcount * (sendtype as Datatype).elements;
    }
    return c.gatherv(send, new Array(c.size).fill(items), root, recv);
  });
}

/** `MPI_Gatherv`: `recvcounts[r]` items from rank r at `displs[r]` of the root's `recvbuf`. */
export function gatherv(
  sendbuf: ArrayBufferView | InPlace,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView | null | undefined,
  recvcounts: IntArray | null | undefined,
  displs: IntArray | null | undefined,
  recvtype: unknown,
  root: number,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Gatherv', (c) => {
    const isRoot = c.rank === root;
    if (sendbuf === IN_PLACE && !isRoot) throw new VmcommError('INVALID_ARGUMENT', 'sendbuf may be MPI.IN_PLACE only at the root of Gatherv');
    const send = sendbuf === IN_PLACE ? undefined : region(sendbuf, sendcount, sendtype, bufferArgs('send'));
    if (!isRoot) return c.gather(send, root);
    const dt = checkDatatypeAt(recvtype, 'recvtype');
    const counts = checkCounts(recvcounts, 'recvcounts', c.size);
    const at = checkCounts(displs, 'displs', c.size);
    const recv = region(recvbuf, extent(counts, at), dt, bufferArgs('recv'));
    if (send) checkSameSignature(sendcount, sendtype as Datatype, counts[root], dt);
    return c.gather(send, root).then((blocks) => {
      for (let r = 0; r < c.size; r++) {
        if (r === root && send === undefined) continue;
        const block = blocks![r] as TypedArray;
        if (!(block instanceof dt.array) || block.length > counts[r] * dt.elements) {
          throw new VmcommError(
            block instanceof dt.array ? 'TRUNCATE' : 'INVALID_ARGUMENT',
            `Gatherv: rank ${r} sent ${describe(block)} but recvcounts[${r}] is ${counts[r]} ${dt.name} item(s)`,
          );
        }
        recv.set(block as never, at[r] * dt.elements);
      }
    });
  });
}

/** `MPI_Allgather`: `recvcount` items from each rank on every rank (`IN_PLACE`: each rank's block is already in place). */
export function allgather(
  sendbuf: ArrayBufferView | InPlace,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView,
  recvcount: number,
  recvtype: unknown,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Allgather', (c) => {
    checkCount(recvcount, 'recvcount');
    const recv = region(recvbuf, recvcount * c.size, recvtype, bufferArgs('recv'));
    const dt = recvtype as Datatype;
    const items = recvcount * dt.elements;
    let send: TypedArray;
    if (sendbuf === IN_PLACE) send = recv.subarray(c.rank * items, (c.rank + 1) * items) as TypedArray;
    else {
      send = region(sendbuf, sendcount, sendtype, bufferArgs('send'));
      checkSameSignature(sendcount, sendtype as Datatype, recvcount, dt);
    }
    return c.allgatherv(send, new Array(c.size).fill(items), recv);
  });
}

/** `MPI_Allgatherv`: `recvcounts[r]` items from rank r at `displs[r]` on every rank. */
export function allgatherv(
  sendbuf: ArrayBufferView | InPlace,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView,
  recvcounts: IntArray,
  displs: IntArray,
  recvtype: unknown,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Allgatherv', (c) => {
    const dt = checkDatatypeAt(recvtype, 'recvtype');
    const counts = checkCounts(recvcounts, 'recvcounts', c.size);
    const at = checkCounts(displs, 'displs', c.size);
    const recv = region(recvbuf, extent(counts, at), dt, bufferArgs('recv'));
    const e = dt.elements;
    let send: TypedArray;
    if (sendbuf === IN_PLACE) send = recv.subarray(at[c.rank] * e, (at[c.rank] + counts[c.rank]) * e) as TypedArray;
    else {
      send = region(sendbuf, sendcount, sendtype, bufferArgs('send'));
      checkSameSignature(sendcount, sendtype as Datatype, counts[c.rank], dt);
    }
    const contiguous = contiguousFrom(counts, at);
    if (contiguous !== undefined) return c.allgatherv(send, elementCounts(counts, dt), recv.subarray(contiguous * e) as TypedArray);
    return c.allgatherv(send, elementCounts(counts, dt)).then((packed) => unpack(packed, recv, counts, at, e));
  });
}

/** `MPI_Scatter`: `sendcount` items of the root's `sendbuf` to each rank (`IN_PLACE` as `recvbuf` at the root). */
export function scatter(
  sendbuf: ArrayBufferView | null | undefined,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView | InPlace,
  recvcount: number,
  recvtype: unknown,
  root: number,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Scatter', (c) => {
    const isRoot = c.rank === root;
    if (recvbuf === IN_PLACE && !isRoot) throw new VmcommError('INVALID_ARGUMENT', 'recvbuf may be MPI.IN_PLACE only at the root of Scatter');
    let send: TypedArray | undefined;
    let recv: TypedArray;
    let items: number;
    if (isRoot) {
      checkCount(sendcount, 'sendcount');
      send = region(sendbuf, sendcount * c.size, sendtype, bufferArgs('send'));
      items = sendcount * (sendtype as Datatype).elements;
      if (recvbuf === IN_PLACE) recv = send.subarray(root * items, (root + 1) * items) as TypedArray;
      else {
        recv = region(recvbuf, recvcount, recvtype, bufferArgs('recv'));
        checkSameSignature(recvcount, recvtype as Datatype, sendcount, sendtype as Datatype);
      }
    } else {
      recv = region(recvbuf, recvcount, recvtype, bufferArgs('recv'));
      items = recvcount * (recvtype as Datatype).elements;
    }
    return c.scatterv(send, new Array(c.size).fill(items), recv, root);
  });
}

/** `MPI_Scatterv`: `sendcounts[r]` items at `displs[r]` of the root's `sendbuf` to rank r. */
export function scatterv(
  sendbuf: ArrayBufferView | null | undefined,
  sendcounts: IntArray | null | undefined,
  displs: IntArray | null | undefined,
  sendtype: unknown,
  recvbuf: ArrayBufferView | InPlace,
  recvcount: number,
  recvtype: unknown,
  root: number,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Scatterv', (c) => {
    const isRoot = c.rank === root;
    if (recvbuf === IN_PLACE && !isRoot) throw new VmcommError('INVALID_ARGUMENT', 'recvbuf may be MPI.IN_PLACE only at the root of Scatterv');
    const recv = recvbuf === IN_PLACE ? undefined : region(recvbuf, recvcount, recvtype, bufferArgs('recv'));
    let blocks: TypedArray[] | undefined;
    if (isRoot) {
      const dt = checkDatatypeAt(sendtype, 'sendtype');
      const counts = checkCounts(sendcounts, 'sendcounts', c.size);
      const at = checkCounts(displs, 'displs', c.size);
      const send = region(sendbuf, extent(counts, at), dt, bufferArgs('send'));
      if (recv) checkSameSignature(recvcount, recvtype as Datatype, counts[root], dt);
      const e = dt.elements;
      // The root's own block is not sent to itself when IN_PLACE (it is already where it belongs).
      blocks = counts.map((n, r) => (r === root && !recv ? send.subarray(0, 0) : send.subarray(at[r] * e, (at[r] + n) * e)) as TypedArray);
    }
    return c.scatter(blocks, root).then((mine) => {
      if (!recv) return;
      const dt = recvtype as Datatype;
      if (!(mine instanceof dt.array) || mine.length > recv.length) {
        throw new VmcommError(
          mine instanceof dt.array ? 'TRUNCATE' : 'INVALID_ARGUMENT',
          `Scatterv: the root sent ${describe(mine)} but recvcount is ${recvcount} ${dt.name} item(s)`,
        );
      }
      recv.set(mine as never);
    });
  });
}

/** `MPI_Alltoall` (`IN_PLACE` as `sendbuf`: the blocks are exchanged within `recvbuf`). */
export function alltoall(
  sendbuf: ArrayBufferView | InPlace,
  sendcount: number,
  sendtype: unknown,
  recvbuf: ArrayBufferView,
  recvcount: number,
  recvtype: unknown,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Alltoall', (c) => {
    checkCount(recvcount, 'recvcount');
    const recv = region(recvbuf, recvcount * c.size, recvtype, bufferArgs('recv'));
    const dt = recvtype as Datatype;
    let send: TypedArray;
    if (sendbuf === IN_PLACE) send = recv.slice() as TypedArray;
    else {
      checkCount(sendcount, 'sendcount');
      send = region(sendbuf, sendcount * c.size, sendtype, bufferArgs('send'));
      checkSameSignature(sendcount, sendtype as Datatype, recvcount, dt);
    }
    const items = new Array(c.size).fill(recvcount * dt.elements);
    return c.alltoallv(send, items, recv, items);
  });
}

/** `MPI_Alltoallv`: `sendcounts[r]` items at `sdispls[r]` go to rank r; `recvcounts[r]` from rank r land at `rdispls[r]`. */
export function alltoallv(
  sendbuf: ArrayBufferView | InPlace,
  sendcounts: IntArray | null | undefined,
  sdispls: IntArray | null | undefined,
  sendtype: unknown,
  recvbuf: ArrayBufferView,
  recvcounts: IntArray,
  rdispls: IntArray,
  recvtype: unknown,
  comm: unknown,
): Promise<void> {
  return collective(comm, 'Alltoallv', (c) => {
    const rdt = checkDatatypeAt(recvtype, 'recvtype');
    const rc = checkCounts(recvcounts, 'recvcounts', c.size);
    const rd = checkCounts(rdispls, 'rdispls', c.size);
    const recv = region(recvbuf, extent(rc, rd), rdt, bufferArgs('recv'));
    let sendAll: TypedArray;
    let sc: number[];
    let sd: number[];
    let sdt: Datatype;
    if (sendbuf === IN_PLACE) {
      // MPI: the send blocks are recvbuf's, with recvcounts and rdispls; copy them out first.
      sendAll = recv.slice() as TypedArray;
      [sc, sd, sdt] = [rc, rd, rdt];
    } else {
      sdt = checkDatatypeAt(sendtype, 'sendtype');
      sc = checkCounts(sendcounts, 'sendcounts', c.size);
      sd = checkCounts(sdispls, 'sdispls', c.size);
      sendAll = region(sendbuf, extent(sc, sd), sdt, bufferArgs('send'));
      if (sdt.array !== rdt.array) {
        throw new VmcommError('INVALID_ARGUMENT', `sendtype ${sdt.name} and recvtype ${rdt.name} must describe the same element type (${sdt.array.name} vs ${rdt.array.name})`);
      }
    }
    const e = rdt.elements;
    const sFrom = contiguousFrom(sc, sd);
    const send = sFrom !== undefined ? (sendAll.subarray(sFrom * e) as TypedArray) : pack(sendAll, sc, sd, sdt.elements);
    const rFrom = contiguousFrom(rc, rd);
    const into = rFrom !== undefined ? (recv.subarray(rFrom * e) as TypedArray) : new (rdt.array as new (n: number) => TypedArray)(rc.reduce((a, b) => a + b, 0) * e);
    return c.alltoallv(send, elementCounts(sc, sdt), into, elementCounts(rc, rdt)).then(() => {
      if (rFrom === undefined) unpack(into, recv, rc, rd, e);
    });
  });
}

// ------------------------------------------------------------------ helpers

/**
 * Runs one collective on `comm`. `start` checks the arguments and starts vmcomm's collective;
 * when the check fails on this rank, the communicator is revoked before the error is thrown, so the
 * other ranks (whose arguments looked fine to them) fail with `REVOKED` instead of waiting for this
 * one forever — the promise vmcomm's own collectives keep.
 */
async function collective(comm: unknown, name: string, start: (c: Communicator) => Promise<unknown>): Promise<void> {
  const c = communicatorOf(comm);
  let running: Promise<unknown>;
  try {
    running = start(c);
  } catch (e) {
    if (isVmcommError(e, 'INVALID_ARGUMENT')) {
      try {
        c.revoke(`${name}: ${e.message}`);
      } catch {
        // Freed or finalized meanwhile: nobody can be waiting on it.
      }
    }
    throw e;
  }
  await running;
}

function checkDatatypeAt(dt: unknown, name: string): Datatype {
  checkDatatype(dt, name);
  return dt;
}

/** Checks a counts/displacements array of `size` whole numbers ≥ 0 and returns it as numbers. */
function checkCounts(values: unknown, name: string, size: number): number[] {
  if (!(Array.isArray(values) || values instanceof Int32Array)) {
    throw new VmcommError('INVALID_ARGUMENT', `${name} must be an array (or Int32Array) of ${size} whole numbers; got ${describe(values)}`);
  }
  if (values.length < size) throw new VmcommError('INVALID_ARGUMENT', `${name} must have one entry per rank (${size}); it has ${values.length}`);
  const out: number[] = new Array(size);
  for (let r = 0; r < size; r++) {
    const v = values[r];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new VmcommError('INVALID_ARGUMENT', `${name}[${r}] must be a whole number ≥ 0; got ${describe(v)}`);
    out[r] = v;
  }
  return out;
}

/** Items a (counts, displs) layout spans from the start of its buffer. */
function extent(counts: readonly number[], displs: readonly number[]): number {
  let end = 0;
  for (let r = 0; r < counts.length; r++) if (counts[r] > 0) end = Math.max(end, displs[r] + counts[r]);
  return end;
}

/** `displs[0]` when the blocks lie one after another in rank order from there, else undefined. */
function contiguousFrom(counts: readonly number[], displs: readonly number[]): number | undefined {
  // Empty blocks do not count, wherever their displacement points (programs often leave stale ones).
  let start: number | undefined;
  let next = 0;
  for (let r = 0; r < counts.length; r++) {
    if (counts[r] === 0) continue;
    if (start === undefined) start = next = displs[r];
    else if (displs[r] !== next) return undefined;
    next = displs[r] + counts[r];
  }
  return start ?? 0;
}

function elementCounts(counts: readonly number[], dt: Datatype): number[] {
  return dt.elements === 1 ? [...counts] : counts.map((n) => n * dt.elements);
}

function pack(from: TypedArray, counts: readonly number[], displs: readonly number[], e: number): TypedArray {
  const out = new (from.constructor as new (n: number) => TypedArray)(counts.reduce((a, b) => a + b, 0) * e);
  let o = 0;
  for (let r = 0; r < counts.length; r++) {
    out.set(from.subarray(displs[r] * e, (displs[r] + counts[r]) * e) as never, o);
    o += counts[r] * e;
  }
  return out;
}

function unpack(packed: TypedArray, into: TypedArray, counts: readonly number[], displs: readonly number[], e: number): void {
  let o = 0;
  for (let r = 0; r < counts.length; r++) {
    into.set(packed.subarray(o, o + counts[r] * e) as never, displs[r] * e);
    o += counts[r] * e;
  }
}

/** MPI requires matching type signatures; with typed arrays that means one element type and equal lengths. */
function checkSameSignature(sendcount: number, sendtype: Datatype, recvcount: number, recvtype: Datatype): void {
  if (sendtype.array !== recvtype.array || sendcount * sendtype.elements !== recvcount * recvtype.elements) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `the send block (${sendcount} × ${sendtype.name}) does not match the receive block (${recvcount} × ${recvtype.name}); MPI needs the same type signature`,
    );
  }
}
