/**
 * Shared-memory collectives — allreduce, reduce, scan, exscan, bcast, allgather(v), gather(v),
 * scatter(v) and alltoall of up to a cell's payload per rank, and barrier — for a communicator
 * whose every pair of ranks talks through one shared-memory transport (processes of one OS over
 * `shm`, thread-ranks of one process over `threads`). Like MVAPICH2's shared-memory collectives: one
 * pass through a cell per rank instead of log2(p) rounds of messages, and no matching, header or
 * request per step. The transport provides the
 * cells ({@link CollectiveCells}); this module is the protocol, the same for any transport.
 *
 * ## Protocol
 *
 * Each call takes the communicator's next *shared number* k (1, 2, … wrapping below 2^20, never 0).
 * A rank writes its contribution into its cell's payload buffer k mod 2, then publishes its stamp
 * `k << 12 | argument hash`. It waits until every member's stamp shows k — or k + 1: that member
 * already finished k (it cannot get further before this rank publishes k + 1) and its buffer k mod 2
 * is untouched — then reads every member's buffer and reduces in **rank order**,
 * `((x0 op x1) op x2) … op x(p−1)`. Every rank performs the same operations on the same operands in
 * the same order, so all get bit-identical results, for any op (function ops need not commute). A
 * reduce folds on the root only; a scan's rank r folds the buffers of ranks 0 to r (an exscan's, 0
 * to r − 1), in the same order, so each prefix is what any rank would compute for it.
 *
 * A bcast is the same pass: only the root writes its buffer, and the others copy the root's once
 * every member arrived (an object's encoding, whose length only the root knows, goes after a 4-byte
 * length: {@link SharedMemoryCollectives.bcastPrefixed}). An allgather or gather is the same pass
 * with every member writing its own block, read by every member (by the root); values too long for a
 * cell put only their length there, and their bytes follow by messages. A scatter is the root's
 * pass, an alltoall every member's (each reads its block of every cell).
 *
 * A buffer is reused without acknowledgements: a rank overwrites buffer k mod 2 at call k + 2, which
 * it starts only after it saw every member's stamp k + 1, and a member publishes k + 1 only after it
 * read the payloads of call k. For this, a communicator's shared calls run one after another on each
 * rank: a call that starts while another is pending waits for it (collectives on one communicator
 * are ordered anyway).
 *
 * ## Failures
 *
 * - A member whose stamp shows k with another argument hash called another collective:
 *   `INVALID_ARGUMENT` (the runner revokes the communicator on every rank).
 *   A member in a collective that took another algorithm publishes nothing, but every collective
 *   call writes which call it is in to the cell's presence word ({@link SharedMemoryCollectives.present});
 *   the same call number with another hash is the same mismatch.
 * - A member lost while this rank waits fails the call with its `PEER_LOST` (then `REVOKED`
 *   everywhere), as in any collective; a revoke, a timeout, a signal or finalize interrupt the wait
 *   through the call's {@link CommIO}.
 * - A rank that took a message algorithm for the call (ranks with different `VMCOMM_COLL_*`
 *   settings) sends a message for its number: the runner finds it on arrival, since a shared call
 *   receives none (`CommIO.shared`) — a mismatch. Not caught: a rank of that kind that only
 *   receives, and has moved its presence word on by starting later calls without awaiting them.
 *   The passes that messages may follow (the prefixed ones: a bcast's head, values too long for a
 *   cell) are not marked so; there the caller puts the path in the argument hash instead.
 * - A rank whose communicator is revoked stamps its cell {@link REVOKED_STAMP}: no member counts it as arrived, so one that calls later cannot complete a call
 *   the revoker gave up; the revoke notice then fails it with the revoke's reason and code.
 *
 * Waiting: first the blocking spin every collective step has (polling the transports, with
 * `sched_yield` when ranks outnumber cores), then the transport's own wait loop watches the cells;
 * a member's publish wakes a rank asleep there.
 *
 * @module
 */

import type { CollectiveCells } from '../backend.js';
import { ARGUMENT_HASH_BITS } from '../contexts.js';
import type { Engine } from '../engine.js';
import { VmcommError } from '../errors.js';
import { spinPoll } from '../request.js';
import type { ScalarOp } from './allreduce-scalar.js';
import type { CommIO } from './comm-io.js';
import type { TypedArrayConstructorOf } from './element-types.js';
import type { Reducer, TypedArray } from './io.js';
import type { Kernel } from './op-kernels.js';

/** Shared numbers wrap below this (they fill the stamp's bits above the hash). */
const SHARED_SEQ_MODULUS = 1 << (32 - ARGUMENT_HASH_BITS);
const HASH_MASK = (1 << ARGUMENT_HASH_BITS) - 1;
/** The stamp of a rank that revoked the communicator (its number, all ones, is never a call's). */
const REVOKED_STAMP = -1;

/** Bytes of the length before a {@link SharedMemoryCollectives.bcastPrefixed}'s bytes. */
const PREFIX_BYTES = 4;
/** The length a root's cell announces when its scatter's values did not fit (they go by messages). */
const SCATTER_BY_MESSAGES = 0xffff_ffff;

const nothing = (): undefined => undefined;

/** The communicator sizes the shared algorithms are chosen for: each rank reads every member's cell. */
export const SHARED_MAX_RANKS = 64;

/** The shared number after `k` (never 0: a cell nobody wrote holds 0; never all ones: {@link REVOKED_STAMP}). */
function after(k: number): number {
  return k + 2 === SHARED_SEQ_MODULUS ? 1 : k + 1;
}

/** How far the current call got. */
const WAITING = 0;
const ARRIVED = 1;
const FAILED = 2;

/** The shared-memory collectives of one communicator on this rank. */
export class SharedMemoryCollectives {
  /** Bytes a rank's cell carries in one call (each buffer's payload). */
  readonly payloadBytes: number;
  readonly #cells: CollectiveCells;
  readonly #engine: Engine;
  /** Communicator rank → world rank. */
  readonly #group: readonly number[];
  readonly #rank: number;
  readonly #size: number;
  /** The last shared number taken. */
  #k = 0;
  /** Whether a shared call is in progress, and the calls waiting for it. */
  #busy = false;
  readonly #queue: (() => void)[] = [];
  // The call in progress: what it waits for.
  #stamp = 0;
  #presence = 0;
  #state = ARRIVED;
  #failure: VmcommError | undefined = undefined;
  /** Members below this one have arrived (each is checked again only until it has). */
  #from = 0;
  #name = '';
  /** {@link arrived} as a function made once (the spin's `done`, a watch's check). */
  readonly #done = (): boolean => this.#arrived();

  constructor(cells: CollectiveCells, engine: Engine, group: readonly number[], rank: number) {
    this.#cells = cells;
    this.#engine = engine;
    this.#group = group;
    this.#rank = rank;
    this.#size = group.length;
    this.payloadBytes = cells.payloadBytes;
  }

  /**
   * The communicator's collectives were revoked here: no member counts this rank as arrived from now
   * on, so none completes a call this rank gave up; the revoke notice fails them, with its reason.
   */
  revoke(): void {
    this.#cells.publish(REVOKED_STAMP);
  }

  /** Every collective call on the communicator says which call it is (see the module comment). */
  present(seq: number, hash: number): void {
    this.#cells.announce(presenceWord(seq, hash));
  }

  /**
   * The reduction of every rank's `value` (a number) with `op`, in rank order — the result itself when
   * every member arrived within the spin (no promise is made), else a promise of it.
   */
  allreduceScalar(io: CommIO, value: number, op: ScalarOp): number | Promise<number> {
    return this.#scalar(io, value, op, this.#size - 1) as number | Promise<number>;
  }

  /**
   * At `root`, the reduction of every rank's `value` (a number) with `op`, in rank order; `undefined`
   * elsewhere. Synchronous when every member arrived within the spin, as {@link allreduceScalar}.
   */
  reduceScalar(io: CommIO, value: number, op: ScalarOp, root: number): number | undefined | Promise<number | undefined> {
    return this.#scalar(io, value, op, this.#rank === root ? this.#size - 1 : -1);
  }

  /**
   * The scan of every rank's `value` (a number) with `op`: x0 op … op x(rank) in rank order; an
   * exscan's stops before this rank (`undefined` on rank 0). Synchronous as {@link allreduceScalar}.
   */
  scanScalar(io: CommIO, value: number, op: ScalarOp, exclusive: boolean): number | undefined | Promise<number | undefined> {
    return this.#scalar(io, value, op, exclusive ? this.#rank - 1 : this.#rank);
  }

  /** A one-number pass, folding members 0 to `upTo` (none when −1). */
  #scalar(io: CommIO, value: number, op: ScalarOp, upTo: number): number | undefined | Promise<number | undefined> {
    io.shared = true;
    if (this.#busy) return this.#turn().then(() => this.#scalarNow(io, value, op, upTo));
    return this.#scalarNow(io, value, op, upTo);
  }

  /** {@link #passNow} without its two closures: the most frequent collective call, 0.4–0.5 µs in all. */
  #scalarNow(io: CommIO, value: number, op: ScalarOp, upTo: number): number | undefined | Promise<number | undefined> {
    const folds = upTo >= 0;
    const parity = this.#open(io);
    let arrived: boolean;
    try {
      this.#cells.doubles(this.#rank, parity)[0] = value;
      arrived = this.#publishAndSpin(io);
    } catch (error) {
      this.#close();
      throw error;
    }
    if (arrived) {
      const result = folds ? this.#foldScalar(parity, op, upTo) : undefined;
      this.#close();
      return result;
    }
    return this.#sleep(io).then(
      () => {
        const result = folds ? this.#foldScalar(parity, op, upTo) : undefined;
        this.#close();
        return result;
      },
      (error: unknown) => {
        this.#close();
        throw error;
      },
    );
  }

  /** x0 op x1 op … op x(upTo), left to right. Read before {@link close}: the next call may take the buffer. */
  #foldScalar(parity: number, op: ScalarOp, upTo: number): number {
    const cells = this.#cells;
    let acc = cells.doubles(0, parity)[0];
    for (let m = 1; m <= upTo; m++) acc = op(acc, cells.doubles(m, parity)[0]);
    return acc;
  }

  /** `data := x0 op x1 op … op x(p−1)` element-wise, in rank order; `data` is this rank's contribution. */
  allreduceBytes(io: CommIO, data: Uint8Array, reducer: Reducer): void | Promise<void> {
    return this.#reducePass(io, data, reducer, 'allreduce', this.#size - 1);
  }

  /**
   * At `root`, `data := x0 op x1 op … op x(p−1)` element-wise, in rank order (`data` is each rank's
   * contribution; other ranks' stays as it was). Every member waits for all, as in every shared call.
   */
  reduceBytes(io: CommIO, data: Uint8Array, reducer: Reducer, root: number): void | Promise<void> {
    return this.#reducePass(io, data, reducer, 'reduce', this.#rank === root ? this.#size - 1 : -1);
  }

  /**
   * Scan (exscan when `exclusive`) of typed arrays: each rank's `data` through its cell; `into` (may
   * be `data`) becomes x0 op … op x(rank) element-wise in rank order — an exscan's stops before this
   * rank. Returns whether `into` holds a result (not on an exscan's rank 0). With `kernel` (the op's
   * loop on `data`'s own class), over views of the cells; else by `reducer` over their bytes.
   */
  scanTyped(io: CommIO, data: TypedArray, reducer: Reducer, kernel: Kernel | undefined, into: TypedArray, exclusive: boolean): boolean | Promise<boolean> {
    const upTo = exclusive ? this.#rank - 1 : this.#rank;
    const done = () => upTo >= 0;
    const moved =
      kernel !== undefined
        ? this.#typedPass(io, data, kernel, into, upTo, 'scan')
        : this.#reducePass(io, new Uint8Array(into.buffer, into.byteOffset, into.byteLength), reducer, 'scan', upTo, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return moved === undefined ? done() : moved.then(done);
  }

  /**
   * A reduction of typed arrays whose class is `kernel.View` (a predefined op's loop): this rank's
   * `data` goes into its cell, and `into` (at the root, every rank when `root` is −1; may be `data`)
   * becomes `x0 op x1 op … op x(p−1)` in rank order — the same loop and order as {@link reduceBytes},
   * over views of the cells made once instead of byte views per call.
   */
  reduceTyped(io: CommIO, data: TypedArray, kernel: Kernel, into: TypedArray | undefined, root: number): void | Promise<void> {
    const upTo = into !== undefined && (root < 0 || this.#rank === root) ? this.#size - 1 : -1;
    return this.#typedPass(io, data, kernel, into, upTo, root < 0 ? 'allreduce' : 'reduce');
  }

  /** `data` into this rank's cell; `into` := x0 op … op x(upTo) in rank order with `kernel` (nothing when −1). */
  #typedPass(io: CommIO, data: TypedArray, kernel: Kernel, into: TypedArray | undefined, upTo: number, what: string): void | Promise<void> {
    this.#checkFits(data.byteLength, what);
    const views = this.#viewsOf(kernel.View);
    return this.#pass(
      io,
      (parity) => views[this.#rank][parity].set(data as never),
      (parity) => {
        if (upTo < 0 || into === undefined) return;
        if (upTo === 0) into.set(views[0][parity].subarray(0, into.length) as never);
        else kernel.run(views[0][parity], views[1][parity], into);
        for (let m = 2; m <= upTo; m++) kernel.run(into, views[m][parity], into);
      },
    );
  }

  /** Every member's two payload buffers as `View`s (member → parity → view), made on first use. */
  #viewsOf(View: TypedArrayConstructorOf<TypedArray>): TypedArray[][] {
    let views = this.#views.get(View);
    if (views === undefined) {
      views = [];
      for (let m = 0; m < this.#size; m++) {
        views.push([0, 1].map((parity) => {
          const p = this.#cells.payload(m, parity);
          return new View(p.buffer, p.byteOffset, p.byteLength / View.BYTES_PER_ELEMENT);
        }));
      }
      this.#views.set(View, views);
    }
    return views;
  }

  readonly #views = new Map<TypedArrayConstructorOf<TypedArray>, TypedArray[][]>();

  /** Every member writes `mine` (by default `data`); `data` := x0 op … op x(upTo) (nothing when −1). */
  #reducePass(io: CommIO, data: Uint8Array, reducer: Reducer, what: string, upTo: number, mine = data): void | Promise<void> {
    this.#checkFits(data.length, what);
    const cells = this.#cells;
    return this.#pass(
      io,
      (parity) => cells.payload(this.#rank, parity).set(mine),
      (parity) => {
        if (upTo >= 0) this.#fold(data, parity, reducer, upTo);
      },
    );
  }

  /** A call's data must fit a buffer (the selection table sees to it; a caller that did not is a bug). */
  #checkFits(bytes: number, what: string): void {
    if (bytes > this.payloadBytes) throw new RangeError(`a shared ${what} carries at most ${this.payloadBytes} bytes, got ${bytes}`);
  }

  /** `data := x0 op x1 op … op x(upTo)` from the members' buffers `parity`, in rank order. */
  #fold(data: Uint8Array, parity: number, reducer: Reducer, upTo: number): void {
    const cells = this.#cells;
    const n = data.length;
    data.set(cells.payload(0, parity).subarray(0, n));
    for (let m = 1; m <= upTo; m++) reducer.combine(data, cells.payload(m, parity).subarray(0, n), data);
  }

  /** Returns when every member has called it. */
  barrier(io: CommIO): void | Promise<void> {
    return this.#pass(io, nothing, nothing);
  }

  /**
   * `root`'s `data` into every other rank's `data` (the same length everywhere, at most
   * {@link payloadBytes}): the root fills its buffer, and once every member arrived the others copy
   * it. Every member waits for all, as in every shared call: that is what lets the root reuse the
   * buffer two calls later without acknowledgements.
   */
  bcastBytes(io: CommIO, data: Uint8Array, root: number): void | Promise<void> {
    const n = data.length;
    this.#checkFits(n, 'bcast');
    const cells = this.#cells;
    const isRoot = this.#rank === root;
    return this.#pass(
      io,
      (parity) => {
        if (isRoot) cells.payload(root, parity).set(data);
      },
      (parity) => {
        if (!isRoot) copyBytes(cells.payload(root, parity), 0, data, 0, n);
      },
    );
  }

  /**
   * Every member's block into `out` (on `root`; every rank when −1): member m's is `counts[m]` bytes
   * at `displs[m]` (each at most {@link payloadBytes}), and this rank's is `mine`. The allgather and
   * gather of typed arrays: one pass, each rank writing its own cell.
   */
  gatherBlocks(io: CommIO, mine: Uint8Array, out: Uint8Array | undefined, counts: readonly number[], displs: readonly number[], root: number): void | Promise<void> {
    this.#checkFits(mine.length, 'gather');
    const cells = this.#cells;
    const reads = out !== undefined && (root < 0 || this.#rank === root);
    return this.#pass(
      io,
      (parity) => cells.payload(this.#rank, parity).set(mine),
      (parity) => {
        if (!reads) return;
        // This rank's own block too from its cell: `mine` may overlap `out` (an allgatherv whose
        // send is part of recv), and the other blocks may have overwritten it by now.
        for (let m = 0; m < this.#size; m++) copyBytes(cells.payload(m, parity), 0, out, displs[m], counts[m]);
      },
    );
  }

  /**
   * Every member's `bytes`, whose lengths only their rank knows (an allgather or gather of values):
   * each goes into its rank's cell after its length (u32) when it fits ({@link prefixedBytes}), else
   * the length alone goes. Returns on `root` (every rank when −1), per member, its bytes (a copy;
   * this rank's own as they are) or the length of those that did not fit; `undefined` elsewhere. The
   * caller moves the long ones by messages: the pass is not marked as receiving none.
   */
  gatherPrefixed(io: CommIO, bytes: Uint8Array, root: number): (Uint8Array | number)[] | undefined | Promise<(Uint8Array | number)[] | undefined> {
    const cells = this.#cells;
    const reads = root < 0 || this.#rank === root;
    return this.#pass(
      io,
      (parity) => {
        const buffer = cells.payload(this.#rank, parity);
        writeLength(buffer, bytes.length);
        if (bytes.length <= this.prefixedBytes) buffer.set(bytes, PREFIX_BYTES);
      },
      (parity) => {
        if (!reads) return undefined;
        const got = new Array<Uint8Array | number>(this.#size);
        for (let m = 0; m < this.#size; m++) {
          if (m === this.#rank) {
            got[m] = bytes.length <= this.prefixedBytes ? bytes : bytes.length;
            continue;
          }
          const buffer = cells.payload(m, parity);
          const n = readLength(buffer);
          got[m] = n <= this.prefixedBytes ? buffer.slice(PREFIX_BYTES, PREFIX_BYTES + n) : n;
        }
        return got;
      },
      false,
    );
  }

  /**
   * Alltoall of `block`-byte blocks: this rank's whole `send` (size × block, at most
   * {@link payloadBytes}) goes into its cell, and block m of `recv` comes from block `rank` of member
   * m's cell.
   */
  alltoallBlocks(io: CommIO, send: Uint8Array, recv: Uint8Array, block: number): void | Promise<void> {
    this.#checkFits(send.length, 'alltoall');
    const cells = this.#cells;
    const at = this.#rank * block;
    return this.#pass(
      io,
      (parity) => cells.payload(this.#rank, parity).set(send),
      (parity) => {
        for (let m = 0; m < this.#size; m++) copyBytes(cells.payload(m, parity), at, recv, m * block, block);
      },
    );
  }

  /**
   * Scatterv: the root's `send` (its first `displs[size]` bytes, at most {@link payloadBytes}) goes
   * into its cell, and every rank copies its block (`displs[rank]` to `displs[rank + 1]`) into `block`.
   */
  scatterBlocks(io: CommIO, send: Uint8Array | undefined, block: Uint8Array, displs: readonly number[], root: number): void | Promise<void> {
    const cells = this.#cells;
    const total = displs[this.#size];
    this.#checkFits(total, 'scatter');
    const from = displs[this.#rank];
    return this.#pass(
      io,
      (parity) => {
        if (this.#rank === root) cells.payload(root, parity).set(send!.subarray(0, total));
      },
      (parity) => copyBytes(cells.payload(root, parity), from, block, 0, block.length),
    );
  }

  /**
   * Scatter of values, whose lengths only the root knows: when all of `blobs` fit the root's cell,
   * each after its length (u32), every rank gets its own (a copy; the root its own as it is);
   * otherwise the root's cell says so and every rank gets `undefined`, for the caller to scatter by
   * messages (the pass is not marked as receiving none).
   */
  scatterPrefixed(io: CommIO, blobs: readonly Uint8Array[] | undefined, root: number): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const cells = this.#cells;
    const size = this.#size;
    if (this.#rank === root) {
      let need = 0;
      for (const b of blobs!) need += PREFIX_BYTES + b.length;
      const fits = need <= this.prefixedBytes;
      return this.#pass(
        io,
        (parity) => {
          const buffer = cells.payload(root, parity);
          writeLength(buffer, fits ? need : SCATTER_BY_MESSAGES);
          if (!fits) return;
          let at = PREFIX_BYTES;
          for (const b of blobs!) {
            writeLength(buffer, b.length, at);
            buffer.set(b, at + PREFIX_BYTES);
            at += PREFIX_BYTES + b.length;
          }
        },
        () => (fits ? blobs![root] : undefined),
        false,
      );
    }
    return this.#readRoot(io, root, (buffer, need) => {
      if (need === SCATTER_BY_MESSAGES) return undefined;
      const corrupt = () => new VmcommError('CORRUPT', `rank ${root}'s collective cell holds no scatter of ${size} values (${need} bytes announced)`, { peer: this.#group[root] });
      if (need > this.prefixedBytes) throw corrupt();
      const end = PREFIX_BYTES + need;
      let at = PREFIX_BYTES;
      for (let m = 0; m < this.#rank; m++) {
        if (at + PREFIX_BYTES > end) throw corrupt();
        at += PREFIX_BYTES + readLength(buffer, at);
      }
      const n = at + PREFIX_BYTES <= end ? readLength(buffer, at) : -1;
      if (n < 0 || at + PREFIX_BYTES + n > end) throw corrupt();
      return buffer.slice(at + PREFIX_BYTES, at + PREFIX_BYTES + n);
    });
  }

  /**
   * A prefixed pass on a rank other than `root`: it writes nothing, then `parse`s the root's buffer
   * and the length at its start. Messages of the same call may follow (not marked as receiving none).
   */
  #readRoot<R>(io: CommIO, root: number, parse: (buffer: Uint8Array, length: number) => R): R | Promise<R> {
    const cells = this.#cells;
    return this.#pass(
      io,
      nothing,
      (parity) => {
        const buffer = cells.payload(root, parity);
        return parse(buffer, readLength(buffer));
      },
      false,
    );
  }

  /** Bytes the prefixed passes carry ({@link bcastPrefixed}, {@link gatherPrefixed}, {@link scatterPrefixed}): a buffer less its 4-byte length. */
  get prefixedBytes(): number {
    return this.payloadBytes - PREFIX_BYTES;
  }

  /**
   * `root`'s `bytes` (at most {@link prefixedBytes}) on every rank, where only the root knows their
   * length: it goes before them in the buffer (u32, little-endian). Every rank gets bytes of its own
   * (the buffer is reused two calls later). A length beyond the buffer is `CORRUPT`: the root's
   * memory is not what this module wrote.
   *
   * The call may go on with messages (a bcast's head announcing a value too long for a cell): the
   * root sends them once every member arrived, possibly while a member still spins in this pass, so
   * the call is not marked as receiving none. A rank that took messages for the head instead is
   * still found: its argument hash differs (the caller puts the path in it), in its messages and in
   * its presence word.
   */
  bcastPrefixed(io: CommIO, bytes: Uint8Array | undefined, root: number): Uint8Array | Promise<Uint8Array> {
    const cells = this.#cells;
    if (this.#rank === root) {
      if (bytes === undefined || bytes.length > this.prefixedBytes) throw new RangeError(`a shared bcast carries at most ${this.prefixedBytes} bytes, got ${bytes?.length}`);
      const own = bytes;
      return this.#pass(
        io,
        (parity) => {
          const buffer = cells.payload(root, parity);
          writeLength(buffer, own.length);
          buffer.set(own, PREFIX_BYTES);
        },
        () => own,
        false,
      );
    }
    return this.#readRoot(io, root, (buffer, n) => {
      if (n > this.prefixedBytes) {
        throw new VmcommError('CORRUPT', `rank ${root}'s collective cell announces ${n} bytes, more than its ${this.prefixedBytes}`, { peer: this.#group[root] });
      }
      return buffer.slice(PREFIX_BYTES, PREFIX_BYTES + n);
    });
  }

  /**
   * One shared call: after the calls queued before it, takes its number, `write`s this rank's buffer,
   * publishes and waits until every member arrived, then returns what `read` makes of the buffers —
   * synchronously when every member arrived within the spin (no promise is made). `receivesNone`:
   * the collective call receives no message at all (see `CommIO.shared`); false for a pass that
   * messages of the same call may follow.
   */
  #pass<R>(io: CommIO, write: (parity: number) => void, read: (parity: number) => R, receivesNone = true): R | Promise<R> {
    if (receivesNone) io.shared = true;
    if (this.#busy) return this.#turn().then(() => this.#passNow(io, write, read));
    return this.#passNow(io, write, read);
  }

  #passNow<R>(io: CommIO, write: (parity: number) => void, read: (parity: number) => R): R | Promise<R> {
    const parity = this.#open(io);
    let arrived: boolean;
    try {
      write(parity);
      arrived = this.#publishAndSpin(io);
    } catch (error) {
      this.#close();
      throw error;
    }
    if (arrived) return this.#read(parity, read);
    return this.#sleep(io).then(
      () => this.#read(parity, read),
      (error: unknown) => {
        this.#close();
        throw error;
      },
    );
  }

  /** `read`s the buffers, then closes the call (before: the next call may take the buffer). */
  #read<R>(parity: number, read: (parity: number) => R): R {
    try {
      return read(parity);
    } finally {
      this.#close();
    }
  }

  /** Waits until the call in progress (and those queued before) finished. */
  #turn(): Promise<void> {
    return new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  /** Starts a call: takes its number; returns its buffer parity. Throws if the call was interrupted already. */
  #open(io: CommIO): number {
    const interrupted = io.interrupted;
    if (interrupted !== undefined) {
      this.#close();
      throw interrupted;
    }
    this.#busy = true;
    this.#k = after(this.#k);
    return this.#k & 1;
  }

  #close(): void {
    const next = this.#queue.shift();
    // The next call runs on from its own await; it finds #busy set and keeps it.
    if (next !== undefined) next();
    else this.#busy = false;
  }

  /** Publishes this rank's stamp and spins; true when every member arrived. Throws the call's failure. */
  #publishAndSpin(io: CommIO): boolean {
    const hash = io.hash & HASH_MASK;
    this.#stamp = (this.#k << ARGUMENT_HASH_BITS) | hash;
    this.#presence = presenceWord(io.seq, hash);
    this.#name = io.name;
    this.#state = WAITING;
    this.#failure = undefined;
    this.#from = 0;
    this.#cells.publish(this.#stamp);
    if (!this.#arrived() && this.#engine.polling) spinPoll(this.#engine, this.#done);
    if (this.#state === FAILED) throw this.#failure!;
    return this.#state === ARRIVED;
  }

  /** Waits in the transport's wait loop until every member arrived, the call fails, or it is interrupted. */
  #sleep(io: CommIO): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): boolean => {
        if (!this.#arrived()) return false;
        io.block(undefined);
        if (this.#state === FAILED) reject(this.#failure);
        else resolve();
        return true;
      };
      this.#cells.watch(check);
      io.block((error) => {
        this.#cells.unwatch(check);
        reject(error);
      });
    });
  }

  /**
   * Whether the wait is over: every member arrived, or the call failed (a mismatch, a lost member).
   * Members that arrived are not checked again.
   */
  #arrived(): boolean {
    if (this.#state !== WAITING) return true;
    const cells = this.#cells;
    const k = this.#k;
    for (let m = this.#from; m < this.#size; m++) {
      if (m === this.#rank) continue;
      const s = cells.stamp(m);
      if (s === this.#stamp) continue;
      const theirs = s >>> ARGUMENT_HASH_BITS;
      if (theirs === after(k)) continue;
      // A REVOKED stamp never counts as arrived: the revoke notice ends the wait, with its reason and code.
      if (theirs === k) return this.#fail(this.#mismatch(m));
      const p = cells.presence(m);
      if (p !== this.#presence && p >>> ARGUMENT_HASH_BITS === this.#presence >>> ARGUMENT_HASH_BITS) return this.#fail(this.#mismatch(m));
      const lost = this.#engine.lostError(this.#group[m]);
      if (lost !== undefined) return this.#fail(lost);
      this.#from = m;
      return false;
    }
    this.#state = ARRIVED;
    return true;
  }

  #fail(error: VmcommError): boolean {
    this.#state = FAILED;
    this.#failure = error;
    return true;
  }

  #mismatch(member: number): VmcommError {
    return new VmcommError(
      'INVALID_ARGUMENT',
      `${this.#name}: rank ${member} called this collective with different arguments than rank ${this.#rank} (operation, root, op, count, element type or algorithm differ); every rank must pass matching arguments`,
      { peer: member },
    );
  }
}

/**
 * `n` bytes of `from` at `fromAt` into `to` at `toAt`: byte by byte when few (a subarray view per
 * block would cost more than the copy), else one `set`.
 */
function copyBytes(from: Uint8Array, fromAt: number, to: Uint8Array, toAt: number, n: number): void {
  if (n <= 64) for (let i = 0; i < n; i++) to[toAt + i] = from[fromAt + i];
  else to.set(from.subarray(fromAt, fromAt + n), toAt);
}

/** Writes a length (u32, little-endian) at `at` in `buffer` (a prefixed payload's is at its start). */
function writeLength(buffer: Uint8Array, n: number, at = 0): void {
  buffer[at] = n;
  buffer[at + 1] = n >>> 8;
  buffer[at + 2] = n >>> 16;
  buffer[at + 3] = n >>> 24;
}

/** The length {@link writeLength} wrote at `at`. */
function readLength(buffer: Uint8Array, at = 0): number {
  return (buffer[at] | (buffer[at + 1] << 8) | (buffer[at + 2] << 16) | (buffer[at + 3] << 24)) >>> 0;
}

/** The presence word of collective number `seq` with argument hash `hash` (never 0). */
function presenceWord(seq: number, hash: number): number {
  return (((seq + 1) % SHARED_SEQ_MODULUS) << ARGUMENT_HASH_BITS) | (hash & HASH_MASK);
}
