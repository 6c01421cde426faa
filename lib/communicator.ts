/**
 * The communicator: point-to-point messaging between the ranks of a group, in two families (as in
 * mpi4py): lowercase calls move any value (`send`, `recv`), `…Buffer` calls move raw bytes of an
 * `ArrayBufferView` (`sendBuffer`, `recvBuffer`).
 *
 * @module
 */

import type { LocalityCard } from './backend.js';
import { barrierDissemination } from './collectives/barrier.js';
import type { TypedArray } from './collectives/io.js';
import { CollectiveOperations, type CollectiveOptions, type ReduceOp } from './collectives/operations.js';
import { CollectiveRunner } from './collectives/runner.js';
import type { CommIO } from './collectives/comm-io.js';
import { SharedMemoryCollectives } from './collectives/shared-memory.js';
import { groupIndices, hierarchicalAllreduce, hierarchicalBarrier, hierarchicalBcast, hierarchicalBcastBuffer, hierarchicalReduce, type Hierarchy } from './collectives/hierarchical.js';
import { ALGORITHMS, chooseAlgorithm, readEnvChoices, type EnvChoices } from './collectives/select.js';
import { argumentHash } from './collectives/signature.js';
import { ANY_SOURCE, ANY_TAG, TAG_UB, type InPlace, type TransportName } from './constants.js';
import { COLLECTIVE_CONTEXT, CONTEXT_BLOCK, CONTROL_CONTEXT, LEADERS_SUBCOMM, LOCAL_SUBCOMM, P2P_CONTEXT, sharedCellKey, SIDE_SUBCOMM } from './contexts.js';
import { invalidArgument, isVmcommError, VmcommError, type Status } from './errors.js';
import type { Engine, PeerStats } from './engine.js';
import type { PostedRecv, RecvMode } from './matching.js';
import type { QueueNode } from './queue.js';
import { FrameFlags } from './protocol.js';
import { createRequest, Request, settledRequest, Settlement, waitSettled, waitStatus, type RequestControl, type Withdrawal } from './request.js';
import { localityGroups, type LocalityLevel } from './locality.js';
import type { World, WorldEvents } from './world.js';

/** Options of every blocking call. */
export interface CallOptions {
  /**
   * Give up after this many milliseconds with `TIMEOUT`. A receive that has not matched is withdrawn
   * (no message is lost); a send gives up only while it waits for its receiver (rendezvous): once the
   * data moves, it completes.
   */
  timeout?: number;
  /** Give up with `ABORTED` when this signal aborts (same withdrawal rules as `timeout`). */
  signal?: AbortSignal;
}

/** Options of {@link Communicator.splitByLocality}. */
export interface SplitByLocalityOptions extends CollectiveOptions {
  /** Orders the ranks of each group, as `split`'s key does (`MPI_Comm_split_type`); default this rank. */
  key?: number;
}

/** A received value with its envelope (`recvMessage`). */
export interface Message<T> {
  /** The value. */
  data: T;
  /** The sender's rank. */
  source: number;
  /** The tag it was sent with. */
  tag: number;
}

/** Events a communicator reports: see {@link Communicator.on}. */
export type CommunicatorEvents = WorldEvents;

/** Traffic with one peer, from {@link Communicator.stats}. */
export type { PeerStats } from './engine.js';

/**
 * A group of ranks that can talk to each other (`MPI_Comm`). The world communicator comes from
 * `init()`. Every rank of a communicator calls its collective methods in the same order.
 */
export class Communicator {
  /** This rank's rank in the communicator (`MPI_Comm_rank`). */
  readonly rank: number;
  /** The number of ranks (`MPI_Comm_size`). */
  readonly size: number;
  readonly #world: World;
  /** Communicator rank → world rank. */
  readonly #group: readonly number[];
  /** World rank → communicator rank (−1: not a member). */
  readonly #rankOfWorld: Map<number, number>;
  /** First context id of this communicator's block (point-to-point; see contexts.ts for the rest). */
  readonly #context: number;
  readonly #runner: CollectiveRunner;
  readonly #ops: CollectiveOperations;
  #freed: VmcommError | undefined;
  /** The two-level structure for locality-aware collectives, made at the first one that needs it. */
  #hierarchy: Hierarchy | undefined;
  #side: Communicator | undefined;
  /** Hierarchical calls run one after another (their sub-communicator calls then number alike everywhere). */
  #hierarchyChain: Promise<unknown> = Promise.resolve();
  readonly #internal: boolean;
  #groups: ReturnType<typeof groupIndices> | undefined;
  readonly #envChoices: EnvChoices;
  /** The shared-memory collectives, once looked for: `null` when the communicator has none. */
  #shared: SharedMemoryCollectives | null | undefined = undefined;
  readonly #unregister: () => void;
  readonly #peerOf = (r: number) => this.#group[r];

  /**
   * @internal Built by `init()`, `split`, `dup` and `splitByLocality`; `internal` for communicators
   * made locally that are never hierarchical themselves: the hierarchy's sub-communicators (with
   * `parent`: linked to their parent's collectives) and the side communicator (without).
   */
  constructor(world: World, group: readonly number[], context: number, internal?: { parent?: CollectiveRunner }) {
    this.#world = world;
    this.#group = group;
    this.#context = context;
    this.size = group.length;
    this.rank = group.indexOf(world.rank);
    this.#rankOfWorld = new Map(group.map((w, r) => [w, r]));
    this.#runner = new CollectiveRunner({
      engine: world.engine,
      codec: world.codec,
      context: context + COLLECTIVE_CONTEXT,
      controlContext: context + CONTROL_CONTEXT,
      // An internal communicator's point-to-point is the hierarchy's too: a revoke must fail it.
      alsoFail: internal?.parent ? [context + P2P_CONTEXT] : undefined,
      group,
      rank: this.rank,
      onCall: (seq, hash) => this.#sharedCollectives()?.present(seq, hash),
      onRevoke: () => this.#sharedCollectives()?.revoke(),
    });
    this.#internal = internal !== undefined;
    if (internal?.parent) internal.parent.link(this.#runner);
    this.#envChoices = readEnvChoices(world.env);
    this.#ops = new CollectiveOperations({
      runner: this.#runner,
      codec: world.codec,
      rank: this.rank,
      size: this.size,
      env: this.#envChoices,
      guard: (opts, run) => this.#guard(opts, run),
      shared: () => this.#sharedCollectives(),
    });
    this.#unregister = world.register({
      peerLost: (peer, error) => {
        const r = this.#rankOfWorld.get(peer);
        if (r === undefined) return;
        // The control context too: finalize's barrier runs there.
        for (const context of [this.#context, this.#context + COLLECTIVE_CONTEXT, this.#context + CONTROL_CONTEXT]) {
          world.engine.failReceivesFrom(context, r, error);
          world.engine.matching(context).failProbes(r, error);
        }
        // A shared-memory collective needs every member: it fails now, whoever it waits on.
        this.#runner.interrupt(error);
      },
      ended: (error) => this.#runner.interrupt(error),
    });
  }

  // ------------------------------------------------------------ objects

  /**
   * Sends a value to `dest` (`MPI_Send` for objects). The value is encoded at once (msgpack: typed
   * arrays, Buffers, Maps, Dates and bigints keep their types), so it may be changed as soon as this
   * returns a promise; the promise resolves when the message has been handed to the transport (small
   * messages) or taken by the receiver (large ones).
   *
   * @param dest the receiver's rank
   * @param tag 0 … `TAG_UB` (default 0)
   */
  send(value: unknown, dest: number, tag = 0, opts?: CallOptions): Promise<void> {
    // Not an async function (nor the other point-to-point calls below): an async wrapper around the
    // request's promise costs two more microtask turns and a promise per message.
    try {
      const bad = preflight(opts) ?? this.#checkSend(dest, tag);
      if (bad) return Promise.reject(bad);
      const bytes = this.#world.codec.encode(value);
      return this.#sendBlocking(bytes, dest, tag, FrameFlags.OBJECT, true, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Starts sending a value; see {@link send}. The returned request resolves as `send` does. */
  isend(value: unknown, dest: number, tag = 0): Request<void> {
    const bad = this.#checkSend(dest, tag);
    if (bad) return settledRequest<void>({ error: bad });
    let bytes: Uint8Array;
    try {
      bytes = this.#world.codec.encode(value);
    } catch (e) {
      return settledRequest<void>({ error: e as Error });
    }
    return this.#startSend(bytes, dest, tag, FrameFlags.OBJECT, true);
  }

  /**
   * Receives a value (`MPI_Recv` for objects). `T` is not checked: it is what the program says the
   * sender sent. A message sent with `sendBuffer` arrives as a `Uint8Array` of its bytes.
   *
   * @param source a rank or `ANY_SOURCE` (default)
   * @param tag a tag or `ANY_TAG` (default)
   */
  recv<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: CallOptions): Promise<T> {
    try {
      const bad = preflight(opts);
      if (bad) return Promise.reject(bad);
      return opts === undefined ? this.#receiveBlocking<T>('value', undefined, source, tag) : this.#blocking(this.irecv<T>(source, tag), opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Receives a value with its source and tag. */
  async recvMessage<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: CallOptions): Promise<Message<T>> {
    throwIf(preflight(opts));
    return this.#blocking(this.#startRecv<Message<T>>('message', undefined, source, tag), opts);
  }

  /** Posts a receive for a value; see {@link recv}. `cancel()` withdraws it while unmatched. */
  irecv<T = unknown>(source: number = ANY_SOURCE, tag: number = ANY_TAG): Request<T> {
    return this.#startRecv<T>('value', undefined, source, tag);
  }

  // ------------------------------------------------------------ buffers

  /**
   * Sends the bytes of `view` (`MPI_Send`), no serialization. The memory is borrowed: do not change it
   * until the promise resolves. Any `ArrayBufferView`, `SharedArrayBuffer`-backed included; a detached
   * or resizable buffer is `INVALID_ARGUMENT`.
   */
  sendBuffer(view: ArrayBufferView, dest: number, tag = 0, opts?: CallOptions): Promise<void> {
    try {
      const bad = preflight(opts) ?? this.#checkSend(dest, tag) ?? checkView(view, 'view');
      return bad ? Promise.reject(bad) : this.#sendBlocking(bytesOf(view), dest, tag, 0, false, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Starts sending bytes; see {@link sendBuffer}. Keep `view` unchanged until the request completes. */
  isendBuffer(view: ArrayBufferView, dest: number, tag = 0): Request<void> {
    const bad = this.#checkSend(dest, tag) ?? checkView(view, 'view');
    if (bad) return settledRequest<void>({ error: bad });
    return this.#startSend(bytesOf(view), dest, tag, 0, false);
  }

  /**
   * Receives bytes into `view` (`MPI_Recv`). Resolves with the {@link Status}. A longer message is
   * consumed and rejects with `TRUNCATE` (its status in `error.status`; the bytes that fit are in
   * `view`).
   */
  recvBuffer(view: ArrayBufferView, source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: CallOptions): Promise<Status> {
    try {
      const bad = preflight(opts) ?? checkView(view, 'view');
      if (bad) return Promise.reject(bad);
      return opts === undefined ? this.#receiveBufferBlocking(bytesOf(view), source, tag) : this.#blocking(this.#startRecv<Status>('buffer', bytesOf(view), source, tag), opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Posts a receive into `view`; see {@link recvBuffer}. Do not touch `view` until it completes. */
  irecvBuffer(view: ArrayBufferView, source: number = ANY_SOURCE, tag: number = ANY_TAG): Request<Status> {
    const bad = checkView(view, 'view');
    if (bad) return settledRequest<Status>({ error: bad });
    return this.#startRecv<Status>('buffer', bytesOf(view), source, tag);
  }

  // ------------------------------------------------------------ probe, sendrecv

  /** Waits until a matching message can be received and returns its status, without receiving it (`MPI_Probe`). */
  async probe(source: number = ANY_SOURCE, tag: number = ANY_TAG, opts?: CallOptions): Promise<Status> {
    throwIf(this.#checkReceive(source, tag) ?? checkOptions(opts));
    const found = this.iprobe(source, tag);
    if (found) return found;
    if (source !== ANY_SOURCE) throwIf(this.#world.engine.lostError(this.#group[source]));
    const [request, control] = createRequest<Status>(this.#world.engine);
    const withdraw = this.#world.engine.matching(this.#context).waitProbe(
      source,
      tag,
      (m) => control.resolve({ source: m.source, tag: m.tag, bytes: m.bytes }),
      (e) => control.reject(e),
    );
    try {
      return await this.#blocking(request, opts, (err) => {
        withdraw();
        control.reject(err);
      });
    } finally {
      withdraw();
    }
  }

  /** The status of a message that could be received now, or `undefined` (`MPI_Iprobe`). Never blocks. */
  iprobe(source: number = ANY_SOURCE, tag: number = ANY_TAG): Status | undefined {
    const bad = this.#checkReceive(source, tag);
    if (bad) throw bad;
    this.#world.engine.poll();
    return this.#world.engine.probe(this.#context, source, tag);
  }

  /**
   * Sends `value` to `dest` and receives from `source` at once (`MPI_Sendrecv`), so two ranks that
   * exchange never deadlock. With a `timeout`/`signal`, both halves are withdrawn where they still can
   * be; if the receive half had already completed, the rejection carries its value in
   * `error.received`, so the message is not lost.
   */
  async sendrecv<T = unknown>(value: unknown, dest: number, source: number = ANY_SOURCE, sendTag = 0, recvTag: number = ANY_TAG, opts?: CallOptions): Promise<T> {
    // Everything is checked (and encoded) before either half starts: a bad argument leaves nothing behind.
    throwIf(this.#checkSend(dest, sendTag) ?? this.#checkReceive(source, recvTag) ?? preflight(opts));
    const bytes = this.#world.codec.encode(value);
    const r = this.#startRecv<T>('value', undefined, source, recvTag);
    const s = this.#startSend(bytes, dest, sendTag, FrameFlags.OBJECT, true);
    // Each half's wait spins on that half (a blocking wait's spin); most exchanges complete there.
    const sent = s.wait();
    const received = r.wait();
    if (s.state === 'fulfilled' && r.state === 'fulfilled') return r.value as T;
    // `both` settles only from the halves' promise callbacks, which no synchronous spin sees run: it
    // gets no progress engine, so its wait does not spin. (It did: every call spun its whole budget,
    // 20 µs, for nothing; with more ranks than cores each poll of that spin is a sched_yield, and an
    // 8-rank exchange by sendrecv took milliseconds.)
    const [both, control] = createRequest<T>(undefined);
    void Promise.allSettled([sent, received]).then(([sr, rr]) => {
      if (rr.status === 'rejected') control.reject(rr.reason);
      else if (sr.status === 'rejected') {
        // The receive part has its message: it travels on the error instead of being dropped.
        const e = sr.reason as Error;
        control.reject(isVmcommError(e) ? new VmcommError(e.code, `${e.message} (the receive part completed: its value is in error.received)`, { cause: e.cause, peer: e.peer, received: rr.value }) : e);
      } else control.resolve(rr.value);
    });
    return this.#blocking(both, opts, (err) => {
      r.withdrawal?.withdraw(err);
      s.withdrawal?.withdraw(err);
    });
  }

  // ------------------------------------------------------------ collectives
  //
  // Every rank calls a communicator's collectives in the same order with matching arguments. Each
  // takes optional {@link CollectiveOptions} last: `timeout`/`signal` (on expiry this rank rejects
  // with TIMEOUT/ABORTED and the communicator's collectives are revoked on every rank) and
  // `algorithm` (see `lib/collectives/select.ts`). Any failure inside a collective revokes the
  // communicator's collectives on every rank (REVOKED; INVALID_ARGUMENT when ranks passed different
  // arguments), so no rank hangs; point-to-point on it keeps working.

  /**
   * Waits until every rank of the communicator has called it (`MPI_Barrier`). Dissemination algorithm:
   * ⌈log2 size⌉ rounds of one message each way.
   */
  barrier(opts?: CollectiveOptions): Promise<void> {
    // Not through #start, as allreduce.
    try {
      this.#checkCollective(opts);
      if (opts?.algorithm !== undefined && !(ALGORITHMS.barrier as readonly string[]).includes(opts.algorithm)) {
        throw new VmcommError('INVALID_ARGUMENT', `barrier has no algorithm "${opts.algorithm}" (known: ${ALGORITHMS.barrier.join(', ')})`);
      }
      if (this.#goesHierarchical('barrier', true, opts)) return this.#hierarchical('barrier', BARRIER_HASH, opts, (h) => hierarchicalBarrier(h));
      const shared = this.#sharedCollectives();
      const algorithm = chooseAlgorithm('barrier', { size: this.size, bytes: 0, commutative: true, sharedBytes: shared?.payloadBytes }, opts?.algorithm, this.#envChoices);
      // The algorithm is in the hash: ranks that chose different ones learn it instead of hanging.
      const hash = algorithm === 'dissemination' ? BARRIER_HASH : SHARED_BARRIER_HASH;
      const body = algorithm === 'shared-memory' ? (io: CommIO) => shared!.barrier(io) : (io: CommIO) => barrierDissemination(io);
      return this.#guard(opts, () => this.#runner.run('barrier', hash, body));
    } catch (e) {
      return this.#refused(e, 'barrier');
    }
  }

  /**
   * The root's value on every rank (`MPI_Bcast`, any value: typed arrays keep their type). Other ranks
   * pass `undefined` (or anything: only the root's value is sent). The root gets its own value back.
   */
  bcast<T>(value?: T, root = 0, opts?: CollectiveOptions): Promise<T> {
    // Not through #start, as allreduce.
    try {
      this.#checkCollective(opts);
      if (this.#goesHierarchical('bcast', true, opts)) {
        throwIf(this.#checkRank(root, 'root'));
        return this.#hierarchical('bcast', argumentHash('bcast', root, 'hierarchical'), opts, (h) => hierarchicalBcast(h, value, root, this.rank));
      }
      return this.#ops.bcast(value, root, flat(opts));
    } catch (e) {
      return this.#refused(e, 'bcast');
    }
  }

  /**
   * The root's bytes into every rank's `view` (`MPI_Bcast` on a buffer): no encoding, no allocation.
   * Every rank passes a view of the same byte length (any `ArrayBufferView`; a mismatch is
   * `INVALID_ARGUMENT` on every rank). Resolves with `view`.
   */
  bcastBuffer<V extends ArrayBufferView>(view: V, root = 0, opts?: CollectiveOptions): Promise<V> {
    // Not through #start, as allreduce.
    try {
      this.#checkCollective(opts);
      throwIf(checkView(view, 'view'));
      if (this.#goesHierarchical('bcast', true, opts)) {
        throwIf(this.#checkRank(root, 'root'));
        return this.#hierarchical('bcast', argumentHash('bcastBuffer', root, view.byteLength, 'hierarchical'), opts, (h) => hierarchicalBcastBuffer(h, view, root, this.rank));
      }
      return this.#ops.bcastBuffer(view, root, flat(opts));
    } catch (e) {
      return this.#refused(e, 'bcastBuffer');
    }
  }

  /**
   * Reduces every rank's value with `op` (`MPI_Reduce`): the result at `root`, `undefined` elsewhere.
   * Typed arrays reduce element-wise; numbers, bigints, booleans and arrays of them as values.
   */
  reduce<T>(value: T, op: ReduceOp, root = 0, opts?: CollectiveOptions): Promise<T | undefined> {
    // Not through #start, as allreduce.
    try {
      this.#checkCollective(opts);
      if (this.#goesHierarchical('reduce', commutes(op), opts)) {
        this.#ops.checkReduction(value, op);
        throwIf(this.#checkRank(root, 'root'));
        return this.#hierarchical('reduce', argumentHash('reduce', root, 'hierarchical'), opts, (h) => hierarchicalReduce(h, value, op, root, this.rank));
      }
      return this.#ops.reduce(value, op, root, flat(opts));
    } catch (e) {
      return this.#refused(e, 'reduce');
    }
  }

  /**
   * Reduces every rank's value with `op`, result on every rank (`MPI_Allreduce`); the same type back
   * (a `Float64Array` gives a `Float64Array`). Every rank gets a bit-identical result.
   */
  allreduce<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T> {
    // Not through #start: no async wrapper and closure per call for the most frequent collective. What
    // #start does for a refusal is done here (argument errors are thrown synchronously below; a
    // failure once the call runs revokes the communicator in the runner).
    try {
      this.#checkCollective(opts);
      if (this.#goesHierarchical('allreduce', commutes(op), opts)) {
        this.#ops.checkReduction(value, op);
        return this.#hierarchical('allreduce', argumentHash('allreduce', 'hierarchical'), opts, (h) => hierarchicalAllreduce(h, value, op));
      }
      return this.#ops.allreduce(value, op, flat(opts));
    } catch (e) {
      return this.#refused(e, 'allreduce');
    }
  }

  /**
   * Allreduce into `recv` (`MPI_Allreduce` on buffers): `send` is a typed array like `recv`, or
   * `IN_PLACE` (or `recv` itself) to reduce `recv`'s own contents. Resolves with `recv`.
   */
  allreduceBuffer<A extends TypedArray>(send: A | InPlace, recv: A, op: ReduceOp, opts?: CollectiveOptions): Promise<A> {
    // Not through #start, as allreduce.
    try {
      this.#checkCollective(opts);
      return this.#ops.allreduceBuffer(send, recv, op, opts);
    } catch (e) {
      return this.#refused(e, 'allreduceBuffer');
    }
  }

  /** Every rank's value at `root`, in rank order (`MPI_Gather`); `undefined` elsewhere. */
  gather<T>(value: T, root = 0, opts?: CollectiveOptions): Promise<T[] | undefined> {
    // Not through #start, as allreduce (gather and allgather of small values go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.gather(value, root, opts);
    } catch (e) {
      return this.#refused(e, 'gather');
    }
  }

  /** Every rank's value on every rank, in rank order (`MPI_Allgather`). */
  allgather<T>(value: T, opts?: CollectiveOptions): Promise<T[]> {
    // Not through #start, as allreduce (gather and allgather of small values go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.allgather(value, opts);
    } catch (e) {
      return this.#refused(e, 'allgather');
    }
  }

  /** The root's `values[r]` on rank r (`MPI_Scatter`); other ranks pass `undefined`. */
  scatter<T>(values: readonly T[] | undefined, root = 0, opts?: CollectiveOptions): Promise<T> {
    // Not through #start, as allreduce (small ones go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.scatter(values, root, opts);
    } catch (e) {
      return this.#refused(e, 'scatter');
    }
  }

  /**
   * Personalized exchange (`MPI_Alltoall`): `values[r]` goes to rank r; returns what each rank sent
   * here, by rank. A typed array whose length is a multiple of the size is cut into equal blocks and
   * comes back as a typed array of the same type.
   */
  alltoall<A extends TypedArray>(values: A, opts?: CollectiveOptions): Promise<A>;
  alltoall<T>(values: readonly T[], opts?: CollectiveOptions): Promise<T[]>;
  alltoall<T>(values: readonly T[] | TypedArray, opts?: CollectiveOptions): Promise<T[] | TypedArray> {
    // Not through #start, as allreduce (small ones go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.alltoall(values, opts);
    } catch (e) {
      return this.#refused(e, 'alltoall');
    }
  }

  /**
   * Gathers `counts[r]` elements from each rank r at `root` (`MPI_Gatherv`), concatenated in rank
   * order into `recv` (or a new array of `send`'s type). `counts` is the same on every rank;
   * `undefined` on other ranks.
   */
  gatherv<A extends TypedArray>(send: A, counts: readonly number[], root = 0, recv?: A, opts?: CollectiveOptions): Promise<A | undefined> {
    // Not through #start, as allreduce (gather and allgather of small values go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.gatherv(send, counts, root, recv, opts);
    } catch (e) {
      return this.#refused(e, 'gatherv');
    }
  }

  /** {@link gatherv} with the result on every rank (`MPI_Allgatherv`). */
  allgatherv<A extends TypedArray>(send: A, counts: readonly number[], recv?: A, opts?: CollectiveOptions): Promise<A> {
    // Not through #start, as allreduce (gather and allgather of small values go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.allgatherv(send, counts, recv, opts);
    } catch (e) {
      return this.#refused(e, 'allgatherv');
    }
  }

  /**
   * Scatters consecutive runs of `counts[r]` elements of the root's `send` to each rank r
   * (`MPI_Scatterv`), into `recv` (every rank passes one of the same type). Resolves with `recv`.
   */
  scatterv<A extends TypedArray>(send: A | undefined, counts: readonly number[], recv: A, root = 0, opts?: CollectiveOptions): Promise<A> {
    // Not through #start, as allreduce (small ones go through the cells).
    try {
      this.#checkCollective(opts);
      return this.#ops.scatterv(send, counts, recv, root, opts);
    } catch (e) {
      return this.#refused(e, 'scatterv');
    }
  }

  /**
   * Personalized exchange with counts (`MPI_Alltoallv`): `sendCounts[r]` elements of `send` (in rank
   * order) go to rank r; `recvCounts[r]` elements from rank r land in `recv` (in rank order).
   */
  async alltoallv<A extends TypedArray>(send: A, sendCounts: readonly number[], recv: A, recvCounts: readonly number[], opts?: CollectiveOptions): Promise<A> {
    return this.#start('alltoallv', async () => {
      this.#checkCollective(opts);
      return this.#ops.alltoallv(send, sendCounts, recv, recvCounts, opts);
    });
  }

  /** Inclusive prefix reduction in rank order (`MPI_Scan`): rank r gets ranks 0…r reduced. */
  async scan<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T> {
    return this.#start('scan', async () => {
      this.#checkCollective(opts);
      return this.#ops.scan(value, op, opts);
    });
  }

  /** Exclusive prefix reduction (`MPI_Exscan`): rank r gets ranks 0…r−1 reduced; rank 0 `undefined`. */
  async exscan<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T | undefined> {
    return this.#start('exscan', async () => {
      this.#checkCollective(opts);
      return this.#ops.exscan(value, op, opts);
    });
  }

  /**
   * Reduces `array` element-wise over all ranks and gives rank r the `counts[r]` elements of the
   * result after those of lower ranks (`MPI_Reduce_scatter`). `counts` adds up to the array's length.
   */
  async reduceScatter<A extends TypedArray>(array: A, counts: readonly number[], op: ReduceOp, opts?: CollectiveOptions): Promise<A> {
    return this.#start('reduceScatter', async () => {
      this.#checkCollective(opts);
      return this.#ops.reduceScatter(array, counts, op, opts);
    });
  }

  // ------------------------------------------------------------ communicators

  /**
   * Splits the communicator (`MPI_Comm_split`): ranks with the same `color` form a new communicator,
   * ordered by `key`, then by rank here. `color` `undefined` (`MPI_UNDEFINED`) gives `undefined`.
   * Collective over this communicator.
   */
  async split(color: number | undefined, key = 0, opts?: CollectiveOptions): Promise<Communicator | undefined> {
    return this.#start('split', async () => {
      this.#checkCollective(opts);
      if (color !== undefined && !(Number.isSafeInteger(color) && color >= 0)) throw invalidArgument('color', 'undefined or a whole number ≥ 0', color);
      if (!Number.isSafeInteger(key)) throw invalidArgument('key', 'a whole number', key);
      return this.#create('split', color, key, opts);
    });
  }

  /** A new communicator with the same ranks and its own matching contexts (`MPI_Comm_dup`). Collective. */
  async dup(opts?: CollectiveOptions): Promise<Communicator> {
    return this.#start('dup', async () => {
      this.#checkCollective(opts);
      return (await this.#create('dup', 0, this.rank, opts))!;
    });
  }

  /**
   * Splits by what vmcomm proved about where ranks run (`MPI_Comm_split_type`): `'process'` (one
   * process: threads), `'os'` (one operating system: shared memory through its kernel), `'host'`
   * (one physical host: also ranks in other VMs reached through ivshmem). Ranks keep their order, or
   * follow `opts.key` as in `split`.
   */
  async splitByLocality(level: LocalityLevel, opts?: SplitByLocalityOptions): Promise<Communicator> {
    return this.#start('splitByLocality', async () => {
      this.#checkCollective(opts);
      if (level !== 'process' && level !== 'os' && level !== 'host') throw invalidArgument('level', "'process', 'os' or 'host'", level);
      const key = opts?.key ?? this.rank;
      if (typeof key !== 'number' || !Number.isInteger(key)) throw invalidArgument('opts.key', 'an integer', key);
      const groups = localityGroups(level, this.#world.cards, this.#world.reach);
      return (await this.#create('split', groups[this.#world.rank], key, opts))!;
    });
  }

  /**
   * Releases the communicator (`MPI_Comm_free`): later calls on it reject with `INVALID_ARGUMENT`.
   * Operations already started complete. The world communicator is released by `finalize()` instead.
   */
  async free(): Promise<void> {
    if (this.#context === 0) throw new VmcommError('INVALID_ARGUMENT', 'the world communicator cannot be freed; call finalize()');
    if (this.#freed) return;
    // The revoke-notice listener stays until finalize: a member may still revoke, and its notice
    // must be received (a notice nobody takes would hold its sender's finalize).
    this.release(new VmcommError('INVALID_ARGUMENT', 'this communicator was freed'));
    if (this.#hierarchy) {
      this.#hierarchy.local.release(new VmcommError('INVALID_ARGUMENT', 'this communicator was freed'));
      this.#hierarchy.leaders?.release(new VmcommError('INVALID_ARGUMENT', 'this communicator was freed'));
    }
    this.#side?.release(new VmcommError('INVALID_ARGUMENT', 'the communicator this side communicator belongs to was freed'));
  }

  /**
   * Revokes this communicator's collectives on every rank (ULFM's `MPIX_Comm_revoke`): collectives in
   * progress or started later reject with `REVOKED` carrying `reason`, on this rank at once and on the
   * others as the notice arrives. Point-to-point keeps working; `finalize()` still works.
   *
   * For a layer over vmcomm that finds a collective's arguments wrong on one rank before calling
   * vmcomm: revoking is what keeps the other ranks from waiting for this one forever.
   */
  revoke(reason = 'revoked by the application'): void {
    const unusable = this.#checkUsable();
    if (unusable) throw unusable;
    this.#runner.revoke(new VmcommError('REVOKED', `rank ${this.rank} revoked the communicator: ${reason}`), false);
  }

  /**
   * A communicator over the same ranks (same rank numbers) whose messages never match this one's:
   * its own matching contexts, taken from this communicator's reserved block, so it is made without
   * any communication and every rank gets the same one by calling this (the same object on every
   * call). For libraries layered over a communicator, such as `vmcomm/stream`, whose traffic must
   * not meet the application's receives (`ANY_TAG` included).
   *
   * Its point-to-point is independent of this communicator's collectives: a revoke here leaves it
   * working (as this communicator's own point-to-point keeps working). `free()` here frees it. Its own
   * collectives work, are always flat (never hierarchical), and a revoke of them stays its own.
   */
  sideContext(): Communicator {
    const unusable = this.#checkUsable();
    if (unusable) throw unusable;
    if (this.#internal) throw new VmcommError('UNSUPPORTED', 'an internal or side communicator has no side communicator of its own; call sideContext() on the communicator you were given');
    return (this.#side ??= new Communicator(this.#world, this.#group, this.#context + SIDE_SUBCOMM, {}));
  }

  /**
   * Whether a barrier/bcast/reduce/allreduce goes two-level: when asked to (`algorithm:
   * 'hierarchical'`, per call or `VMCOMM_COLL_<NAME>`), or by default when the communicator spans
   * several shared-memory groups and at least one holds several ranks, and the op commutes.
   */
  #goesHierarchical(collective: 'barrier' | 'bcast' | 'reduce' | 'allreduce', commutative: boolean, opts: CollectiveOptions | undefined): boolean {
    if (this.#internal || !commutative) return false;
    const asked = opts?.algorithm ?? this.#envChoices[collective];
    if (asked !== undefined && asked !== 'hierarchical') return false;
    if (this.#groups === undefined) {
      const byWorld = localityGroups('host', this.#world.cards, this.#world.reach);
      this.#groups = groupIndices(this.#group.map((w) => byWorld[w]));
    }
    const g = this.#groups;
    return asked === 'hierarchical' ? this.size > 1 : g.count > 1 && g.largest > 1;
  }

  /**
   * The hierarchy's sub-communicators, made without communication: every rank knows the groups (from
   * the locality cards) and the context ids come from this communicator's own block.
   */
  #twoLevels(): Hierarchy {
    if (this.#hierarchy) return this.#hierarchy;
    const { groupOf } = this.#groups!;
    const localRankOf = groupOf.map((g, r) => groupOf.slice(0, r).filter((x) => x === g).length);
    const mine = groupOf[this.rank];
    const local = new Communicator(this.#world, this.#group.filter((_, r) => groupOf[r] === mine), this.#context + LOCAL_SUBCOMM, { parent: this.#runner });
    const leaderRanks = this.#group.filter((_, r) => localRankOf[r] === 0);
    const leaders = localRankOf[this.rank] === 0 ? new Communicator(this.#world, leaderRanks, this.#context + LEADERS_SUBCOMM, { parent: this.#runner }) : undefined;
    return (this.#hierarchy = { local, leaders, groupOf, localRankOf });
  }

  /**
   * Runs a hierarchical collective as one collective of this communicator: its number is taken now,
   * a revoked communicator refuses it, and a failure in either level revokes both levels and this
   * communicator on every rank. Calls run one after another, so their sub-communicator calls are
   * numbered alike on every rank.
   */
  #hierarchical<T>(name: 'barrier' | 'bcast' | 'reduce' | 'allreduce', hash: number, opts: CollectiveOptions | undefined, body: (h: Hierarchy) => Promise<T>): Promise<T> {
    const h = this.#twoLevels();
    return this.#guard(opts, () => {
      const previous = this.#hierarchyChain;
      const call = this.#runner.run(name, hash, async () => {
        await previous;
        return body(h);
      });
      this.#hierarchyChain = call.catch(() => undefined);
      return call;
    });
  }

  /**
   * Creates a communicator: every rank contributes (color, key, its next free context id); members
   * of a color are ordered by (key, rank) and take the largest contributed id, which is free on all of
   * them. Creations run one at a time on each rank, so their ids never race.
   */
  #create(name: 'split' | 'dup', color: number | undefined, key: number, opts: CollectiveOptions | undefined): Promise<Communicator | undefined> {
    const world = this.#world;
    // The call's number is taken now (its place among this communicator's collectives); its turn
    // in the world's chain of creations may come later.
    const ticket = this.#runner.reserve();
    const run = async () => {
      const mine = Float64Array.of(color ?? -1, key, world.nextContext);
      const table = await this.#ops.createTable(name, mine, opts, ticket);
      let context = 0;
      const members: { rank: number; key: number }[] = [];
      for (let r = 0; r < this.size; r++) {
        context = Math.max(context, table[3 * r + 2]);
        if (color !== undefined && table[3 * r] === color) members.push({ rank: r, key: table[3 * r + 1] });
      }
      world.nextContext = Math.max(world.nextContext, context + CONTEXT_BLOCK);
      if (color === undefined) return undefined;
      members.sort((a, b) => a.key - b.key || a.rank - b.rank);
      return new Communicator(world, members.map((m) => this.#group[m.rank]), context);
    };
    const created = world.creations.then(run, run);
    world.creations = created.catch(() => undefined);
    return created;
  }

  // ------------------------------------------------------------ introspection

  /** The transport that carries messages between this rank and `peer` (a rank of this communicator). */
  transportOf(peer: number): TransportName {
    const bad = this.#checkRank(peer, 'peer');
    if (bad) throw bad;
    return this.#world.engine.transportOf(this.#group[peer]).name;
  }

  /** This rank's locality card (what it published at `init()`). */
  locality(): LocalityCard {
    return this.#world.card;
  }

  /** Per-peer message and byte counts, transport and switches, indexed by rank in this communicator. */
  stats(): PeerStats[] {
    const all = this.#world.engine.stats();
    return this.#group.map((w) => all[w]);
  }

  /**
   * Listens to an event: `'transport'` (a pair changed transport) or `'peer:lost'`. Returns a function
   * that removes the listener. There is deliberately no generic `error` event: failures reach the calls
   * they affect.
   */
  on<K extends keyof CommunicatorEvents>(event: K, listener: (e: CommunicatorEvents[K]) => void): () => void {
    if (event !== 'transport' && event !== 'peer:lost') throw new VmcommError('INVALID_ARGUMENT', `unknown event "${String(event)}" (known: transport, peer:lost)`);
    if (typeof listener !== 'function') throw invalidArgument('listener', 'a function', listener);
    return this.#world.on(event, listener);
  }

  /**
   * Ends communication (`MPI_Finalize`). Collective over the world: waits for this rank's sends in
   * flight, synchronizes with every rank, closes every channel and removes the job's files. Calls after
   * it reject with `FINALIZED`. Idempotent. World communicator only.
   */
  async finalize(): Promise<void> {
    if (this.#context !== 0) throw new VmcommError('INVALID_ARGUMENT', 'finalize() is called on the world communicator');
    const engine = this.#world.engine;
    // Own sends first (their receivers are still listening: nobody leaves the barrier before all
    // entered it), then the barrier, then own receives whose data is still on its way. A lost rank
    // does not make finalize fail: the survivors still finish (ULFM's rule for MPI_Finalize). A pair
    // that failed CORRUPT (garbage or a forged frame in its ring) is as lost as one whose peer died.
    return this.#world.finalize(async () => {
      await engine.sendsDone();
      await this.#runner.runFinal('barrier', BARRIER_HASH, (io) => barrierDissemination(io, (e) => isVmcommError(e, 'PEER_LOST') || isVmcommError(e, 'CORRUPT')));
      await engine.receivesDone();
      this.#runner.close();
    });
  }

  /**
   * This communicator's shared-memory collectives (`lib/collectives/shared-memory.ts`), looked for at
   * its first collective: present when every pair of its ranks talks through one transport that
   * offers cells, which every member computes alike.
   */
  #sharedCollectives(): SharedMemoryCollectives | undefined {
    if (this.#shared === undefined) {
      const key = sharedCellKey(this.#context);
      const cells = key === undefined || this.size < 2 ? undefined : this.#world.collectiveCells(key, this.#group);
      this.#shared = cells === undefined ? null : new SharedMemoryCollectives(cells, this.#world.engine, this.#group, this.rank);
    }
    return this.#shared ?? undefined;
  }

  /** Ends every rank of the job with exit code `code` (`MPI_Abort`). Never returns. */
  abort(code = 1): never {
    const c = Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1;
    return this.#world.abort(c, `comm.abort(${code}) on rank ${this.rank}`);
  }

  /**
   * What this rank knows about the job, as plain data (JSON-safe; for `vmcomm info` and diagnostics),
   * indexed by rank in this communicator: each member's locality card; per peer, the transport chosen
   * at `init()` and why — every candidate, highest priority first, whether both cards list it and
   * whether each end proved it reaches the other (the first with all three wins); the transports that
   * did not start on this rank, with the reason; and the job's `VMCOMM_COLL_*` algorithm overrides.
   * A snapshot: use {@link Communicator.transportOf} for the transport a pair uses now.
   */
  describe(): {
    rank: number;
    size: number;
    /** Communicator rank → world rank. */
    worldRanks: number[];
    cards: LocalityCard[];
    /** Per peer (this rank's own entry is `self`). */
    pairs: {
      transport: string | undefined;
      considered: { name: string; priority: number; listedByBoth: boolean; reachesPeer: boolean; peerReaches: boolean }[];
    }[];
    /** Transport name → why it did not start here. */
    unavailable: { [transport: string]: string };
    /** Collective → the algorithm `VMCOMM_COLL_<NAME>` asks for. */
    collectiveOverrides: { [collective: string]: string };
  } {
    const world = this.#world;
    return {
      rank: this.rank,
      size: this.size,
      worldRanks: [...this.#group],
      cards: this.#group.map((w) => world.cards[w]),
      pairs: this.#group.map((w) => {
        const choice = world.choices[w];
        return {
          transport: choice?.transport,
          considered: (choice?.considered ?? []).map((c) => ({ name: c.name, priority: c.priority, listedByBoth: c.listedByBoth, reachesPeer: c.aReachesB, peerReaches: c.bReachesA })),
        };
      }),
      unavailable: Object.fromEntries(world.unavailable),
      collectiveOverrides: { ...this.#envChoices },
    };
  }

  // ------------------------------------------------------------ internals

  #startSend(bytes: Uint8Array, dest: number, tag: number, flags: number, isObject: boolean, context = this.#context): Request<void> {
    const engine = this.#world.engine;
    const [request, control] = createRequest<void>(engine);
    const sendId = engine.send(context, this.rank, this.#group[dest], tag, bytes, flags, control, isObject);
    if (sendId !== 0) request.withdrawal = new SendWithdrawal(engine, sendId, control);
    return request;
  }

  /**
   * A blocking send (`send`, `sendBuffer`) of checked arguments: complete at once, with no request
   * and no callback, when the engine can write the message now (a small message with room in the
   * channel: the common case), else through a request.
   */
  #sendBlocking(bytes: Uint8Array, dest: number, tag: number, flags: number, isObject: boolean, opts: CallOptions | undefined): Promise<void> {
    if (this.#world.engine.sendNow(this.#context, this.rank, this.#group[dest], tag, bytes, flags)) return SENT;
    return this.#blocking(this.#startSend(bytes, dest, tag, flags, isObject), opts);
  }

  /** A blocking receive of a value without options (`recv`): the posted receive is all there is, no request. */
  #receiveBlocking<T>(mode: RecvMode, bytes: Uint8Array | undefined, source: number, tag: number): Promise<T> {
    const r = this.#postRecv<T>(mode, bytes, source, tag, this.#context);
    return r instanceof VmcommError ? Promise.reject(r) : waitSettled(r, this.#world.engine, true);
  }

  /** {@link #receiveBlocking} into a buffer (`recvBuffer`): its value is a `Status` (see `waitStatus`). */
  #receiveBufferBlocking(bytes: Uint8Array, source: number, tag: number): Promise<Status> {
    const r = this.#postRecv<Status>('buffer', bytes, source, tag, this.#context);
    return r instanceof VmcommError ? Promise.reject(r) : waitStatus(r, this.#world.engine);
  }

  #startRecv<T>(mode: RecvMode, bytes: Uint8Array | undefined, source: number, tag: number, context = this.#context): Request<T> {
    const r = this.#postRecv<T>(mode, bytes, source, tag, context);
    if (r instanceof VmcommError) return settledRequest<T>({ error: r });
    const request = new Request<T>(this.#world.engine, r);
    if (r.pending) request.withdrawal = r;
    return request;
  }

  /** Checks a receive's source and tag and posts it; the error instead when they are wrong. */
  #postRecv<T>(mode: RecvMode, bytes: Uint8Array | undefined, source: number, tag: number, context: number): PostedReceive<T> | VmcommError {
    const bad = this.#checkReceive(source, tag);
    if (bad) return bad;
    const engine = this.#world.engine;
    const r = new PostedReceive<T>(source, tag, mode, bytes, engine, context);
    engine.receive(context, r, this.#peerOf);
    return r;
  }

  /** Awaits `request` honouring `opts`: on expiry, withdraws what can be withdrawn, else waits on. */
  #blocking<T>(request: Request<T>, opts: CallOptions | undefined, onExpire?: (error: VmcommError) => void): Promise<T> {
    // The request is this call's own: its promise goes to the caller, whose to handle a rejection is.
    if (opts === undefined) return request.waitReported();
    const { timeout, signal } = opts;
    if (timeout === undefined && signal === undefined) return request.waitReported();
    const expire = onExpire ?? ((err: VmcommError) => request.withdrawal?.withdraw(err));
    if (signal?.aborted) expire(abortedError(signal));
    if (request.state !== 'pending') return request.waitReported();
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => expire(abortedError(signal!));
    if (timeout !== undefined) {
      // setTimeout fires at once past 2^31−1 ms: re-arm against the deadline in steps.
      const deadline = Date.now() + timeout;
      const arm = (ms: number) => {
        timer = setTimeout(() => {
          const left = deadline - Date.now();
          if (left > 0) arm(left);
          else expire(new VmcommError('TIMEOUT', `no completion within ${timeout} ms`));
        }, Math.min(ms, MAX_TIMER_MS));
      };
      arm(timeout);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    return request.wait().finally(() => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
  }

  /**
   * Starts a collective. When this rank refuses its own arguments (INVALID_ARGUMENT), the others
   * would wait for it forever: it revokes the communicator's collectives as a mismatch, so every rank
   * gets INVALID_ARGUMENT (a freed or finalized communicator just refuses).
   */
  async #start<T>(name: string, start: () => Promise<T>): Promise<T> {
    try {
      return await start();
    } catch (e) {
      return this.#refused(e, name);
    }
  }

  /** A collective call failed before or while it ran: an argument error is refused on every rank. */
  #refused(e: unknown, name: string): Promise<never> {
    if (isVmcommError(e, 'INVALID_ARGUMENT') && this.#checkUsable() === undefined) this.#runner.refuse(e, name);
    return Promise.reject(e);
  }

  /**
   * Runs a collective honouring `opts`: when the timeout expires or the signal aborts, this rank's call
   * rejects with TIMEOUT/ABORTED and the communicator's collectives are revoked on every rank (the
   * others would otherwise wait for this one forever).
   */
  #guard<T>(opts: CollectiveOptions | undefined, run: () => Promise<T>): Promise<T> {
    const timeout = opts?.timeout;
    const signal = opts?.signal;
    if (timeout === undefined && signal === undefined) return run();
    let expired: VmcommError | undefined;
    const expire = (error: VmcommError) => {
      if (expired) return;
      expired = error;
      this.#runner.revoke(new VmcommError('REVOKED', `a collective ${error.code === 'TIMEOUT' ? 'timed out' : 'was aborted'} on rank ${this.rank} (${error.message}); the communicator's collectives are revoked`), false);
    };
    if (signal?.aborted) {
      expire(abortedError(signal));
      return Promise.reject(expired);
    }
    const call = run();
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => expire(abortedError(signal!));
    if (timeout !== undefined) {
      const deadline = Date.now() + timeout;
      const arm = (ms: number) => {
        timer = setTimeout(() => {
          const left = deadline - Date.now();
          if (left > 0) arm(left);
          else expire(new VmcommError('TIMEOUT', `the collective did not complete within ${timeout} ms`));
        }, Math.min(ms, MAX_TIMER_MS));
      };
      arm(timeout);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    return call.then(
      (v) => {
        done();
        if (expired) throw expired;
        return v;
      },
      (e: unknown) => {
        done();
        throw expired ?? e;
      },
    );
  }

  #checkCollective(opts: CollectiveOptions | undefined): void {
    throwIf(this.#checkUsable() ?? checkOptions(opts));
    if (opts?.algorithm !== undefined && typeof opts.algorithm !== 'string') throw invalidArgument('algorithm', 'a string naming an algorithm', opts.algorithm);
  }

  #checkUsable(): VmcommError | undefined {
    return this.#world.finalized ?? this.#freed;
  }

  #checkRank(r: unknown, what: string): VmcommError | undefined {
    if (typeof r === 'number' && Number.isInteger(r) && r >= 0 && r < this.size) return undefined;
    return invalidArgument(what, `a rank from 0 to ${this.size - 1}`, r);
  }

  /** What every send checks first: the communicator is usable, `dest` a rank, `tag` a send tag. */
  #checkSend(dest: unknown, tag: unknown): VmcommError | undefined {
    return this.#checkUsable() ?? this.#checkRank(dest, 'dest') ?? this.#checkTag(tag, false);
  }

  /** What every receive and probe checks first: the communicator is usable, `source` a rank or ANY_SOURCE, `tag` a tag or ANY_TAG. */
  #checkReceive(source: unknown, tag: unknown): VmcommError | undefined {
    return this.#checkUsable() ?? this.#checkSource(source) ?? this.#checkTag(tag, true);
  }

  #checkSource(r: unknown): VmcommError | undefined {
    return r === ANY_SOURCE ? undefined : this.#checkRank(r, 'source');
  }

  #checkTag(t: unknown, wildcard: boolean): VmcommError | undefined {
    if (typeof t === 'number' && Number.isInteger(t) && ((t >= 0 && t <= TAG_UB) || (wildcard && t === ANY_TAG))) return undefined;
    return invalidArgument('tag', wildcard ? `ANY_TAG or a whole number from 0 to ${TAG_UB}` : `a whole number from 0 to ${TAG_UB}`, t);
  }

  /** @internal Detaches this communicator from its world (used by `free()` once sub-communicators exist). */
  protected release(reason: VmcommError): void {
    this.#freed = reason;
    // Calls already started complete (MPI_Comm_free), so the world's loss and end notices must still
    // reach them — a shared-memory call waits outside messages and fails only through those: the
    // communicator leaves the world's list once none is in progress.
    this.#runner.whenIdle(this.#unregister);
  }
}


function abortedError(signal: AbortSignal): VmcommError {
  return new VmcommError('ABORTED', `the call was aborted${signal.reason instanceof Error ? `: ${signal.reason.message}` : ''}`, { cause: signal.reason });
}

const BARRIER_HASH = argumentHash('barrier');
/** A shared-memory barrier's: another than the dissemination barrier's, so ranks on different paths find out. */
const SHARED_BARRIER_HASH = argumentHash('barrier', 'shared-memory');

/** Whether an op may be applied in any order (predefined ops do; function ops when declared). */
function commutes(op: ReduceOp): boolean {
  return typeof op !== 'function' || op.commute === true;
}

/** The options for the flat path: 'hierarchical' was considered and not taken. */
function flat(opts: CollectiveOptions | undefined): CollectiveOptions | undefined {
  return opts?.algorithm === 'hierarchical' ? { ...opts, algorithm: undefined } : opts;
}

/** The longest delay setTimeout honours. */
const MAX_TIMER_MS = 0x7fff_ffff;

function throwIf(error: VmcommError | undefined): void {
  if (error) throw error;
}

/**
 * Checks a blocking call's options before it starts anything: an already-aborted signal rejects with
 * `ABORTED` and the call sends or consumes nothing (as `fetch` does).
 */
function preflight(opts: CallOptions | undefined): VmcommError | undefined {
  return checkOptions(opts) ?? (opts?.signal?.aborted ? abortedError(opts.signal) : undefined);
}

function checkOptions(opts: CallOptions | undefined): VmcommError | undefined {
  if (opts === undefined) return undefined;
  if (opts === null || typeof opts !== 'object') return invalidArgument('options', 'an object { timeout?, signal? }', opts);
  const { timeout, signal } = opts;
  if (timeout !== undefined && !(typeof timeout === 'number' && timeout >= 0 && Number.isFinite(timeout))) {
    return invalidArgument('timeout', 'a finite number of milliseconds ≥ 0', timeout);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) return invalidArgument('signal', 'an AbortSignal', signal);
  return undefined;
}

/** Withdraws a rendezvous send whose CTS has not come (a timeout or an abort; sends cannot be `cancel()`ed). */
class SendWithdrawal implements Withdrawal {
  readonly cancellable = false;
  constructor(
    private readonly engine: Engine,
    private readonly sendId: number,
    private readonly control: RequestControl<void>,
  ) {}

  withdraw(error: Error): boolean {
    return this.control.pending && this.engine.withdrawSend(this.sendId, error);
  }
}

/**
 * A receive of a communicator as the engine matches it, its settlement and its withdrawal (`cancel()`,
 * a timeout, an abort: while it has not matched), in one object: a small message's blocking receive
 * allocates this, its status and its promise, nothing more.
 */
class PostedReceive<T> extends Settlement<T> implements PostedRecv, Withdrawal {
  readonly cancellable = true;
  readonly control: RequestControl<T> = this;
  node: QueueNode<PostedRecv> | undefined = undefined;

  constructor(
    readonly source: number,
    readonly tag: number,
    readonly mode: RecvMode,
    readonly bytes: Uint8Array | undefined,
    private readonly engine: Engine,
    private readonly context: number,
  ) {
    super();
  }

  withdraw(error: Error): boolean {
    if (!this.engine.cancelReceive(this.context, this)) return false;
    this.reject(error);
    return true;
  }
}

/** What a blocking send that completed at once returns: one settled promise for all of them. */
const SENT: Promise<void> = Promise.resolve();

/**
 * The bytes of a view {@link checkView} accepted: those it remembered with the view, else
 * {@link bytesOfView}. (The remembered case is a compare, not `view.constructor`: V8 11 compiled that
 * read in `sendBuffer` as a generic property load, a call on every message.)
 */
function bytesOf(view: ArrayBufferView): Uint8Array {
  if (view === fixedLengthView) return fixedLengthBytes!;
  if (view === fixedLengthViewBefore) return fixedLengthBytesBefore!;
  return bytesOfView(view);
}

/** A plain `Uint8Array` as it is (no new view per message), else a `Uint8Array` over the same memory. */
function bytesOfView(view: ArrayBufferView): Uint8Array {
  return view.constructor === Uint8Array ? (view as Uint8Array) : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * The last view {@link checkView} found on a fixed-length buffer: programs send from and receive into
 * the same views message after message (often two: one to send from, one to receive into), and a
 * view's buffer, and whether it can resize, never change. Reading `view.buffer` calls into the runtime
 * and the two getters are not inlined either (together a tenth of a small message's cost), so they
 * run once per view while it stays one of the last two checked; a remembered non-empty typed array
 * skips the whole check (a DataView, which has no `length`, is still checked for being empty, that
 * is, maybe detached). Only views on buffers of at most {@link REMEMBERED_BUFFER_BYTES} are
 * remembered: a remembered view keeps its buffer alive until two others are checked, and a program
 * that sent from a gigabyte buffer once and dropped it must get that memory back (a large message
 * costs far more than the getters anyway).
 */
const REMEMBERED_BUFFER_BYTES = 1 << 20;
let fixedLengthView: ArrayBufferView | undefined;
/** {@link bytesOfView} of {@link fixedLengthView}. */
let fixedLengthBytes: Uint8Array | undefined;
/** The one checked before {@link fixedLengthView}, and its bytes. */
let fixedLengthViewBefore: ArrayBufferView | undefined;
let fixedLengthBytesBefore: Uint8Array | undefined;

function checkView(view: unknown, what: string): VmcommError | undefined {
  // A remembered typed array that is not empty was checked already; an empty one may have been
  // detached since, and a DataView has no `length` (`undefined > 0` is false): both are checked.
  // (`undefined` is compared first: a slot not yet filled holds it.)
  if (view !== undefined && (view === fixedLengthView || view === fixedLengthViewBefore) && (view as Uint8Array).length > 0) return undefined;
  if (!ArrayBuffer.isView(view)) return invalidArgument(what, 'an ArrayBufferView (a typed array, Buffer or DataView)', view);
  let remember = false;
  if (view !== fixedLengthView && view !== fixedLengthViewBefore) {
    const buf = view.buffer as ArrayBuffer & { resizable?: boolean; growable?: boolean };
    if (buf.resizable === true || buf.growable === true) {
      return new VmcommError('INVALID_ARGUMENT', `${what} is backed by a resizable buffer, which may shrink while in flight; copy it into a fixed-length one`);
    }
    remember = buf.byteLength <= REMEMBERED_BUFFER_BYTES;
  }
  // `length` of a typed array (V8 11 does not inline `byteLength`, see `lib/engine.ts`). A DataView
  // (of any realm) has none, only byteLength, which throws once its buffer is detached: its
  // buffer's (0 then) comes first.
  const n = (view as Uint8Array).length as number | undefined;
  const empty = n === undefined ? view.buffer.byteLength === 0 || view.byteLength === 0 : n === 0;
  if (empty && !(view.buffer instanceof SharedArrayBuffer)) {
    try {
      new Uint8Array(view.buffer);
    } catch {
      return new VmcommError('INVALID_ARGUMENT', `${what} is backed by a detached ArrayBuffer (it was transferred)`);
    }
  }
  // Remembered once it passed (its bytes can only be taken from a buffer that is not detached).
  if (remember) {
    fixedLengthViewBefore = fixedLengthView;
    fixedLengthBytesBefore = fixedLengthBytes;
    fixedLengthView = view;
    fixedLengthBytes = bytesOfView(view);
  }
  return undefined;
}
