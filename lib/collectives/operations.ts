/**
 * The collective operations of a communicator: argument checks, the typed-array and value paths,
 * the algorithm choice, and the call's argument hash. `Communicator` delegates here.
 *
 * Paths:
 * - **typed arrays** (and plain numbers with SUM/PROD/MIN/MAX, carried as one float64) reduce
 *   element-wise with the byte-level algorithms of this folder, chosen by `select.ts`;
 * - **other values** (bigints, booleans, arrays, objects, function ops on them) travel encoded
 *   (msgpack) and reduce in rank order on the value path (`value-collectives.ts`);
 * - **the cells** (`shared-memory.ts`): where every pair of the communicator's ranks talks through
 *   one shared-memory transport, small calls of every kind go through each rank's cell in one pass
 *   — a number as itself (one-number passes, float64 heads), typed arrays folded by the op's own
 *   loop, values by their encodings (a long one's bytes following by messages).
 *
 * Reduction order (determinism): every algorithm reduces each element in one fixed association
 * order (copying the result to the other ranks, or, through the cells, every rank folding alike),
 * so every rank gets bit-identical results; the order depends on the algorithm (each algorithm's
 * module says which), never on timing.
 *
 * @module
 */

import type { ValueCodec } from '../codec.js';
import { IN_PLACE, Op, type InPlace, type PredefinedOp } from '../constants.js';
import { invalidArgument, VmcommError } from '../errors.js';
import { allgatherBruck } from './allgather-bruck.js';
import { allgatherRecursiveDoubling } from './allgather-recursive-doubling.js';
import { allgatherRing } from './allgather-ring.js';
import { allreduceRabenseifner } from './allreduce-rabenseifner.js';
import { allreduceScalar, SCALAR_OPS } from './allreduce-scalar.js';
import { allreduceRecursiveDoubling } from './allreduce-recursive-doubling.js';
import { allreduceRing } from './allreduce-ring.js';
import { alltoallBruck } from './alltoall-bruck.js';
import { alltoallPairwise } from './alltoall-pairwise.js';
import { alltoallvPairwise } from './alltoallv-pairwise.js';
import { bcastBinomial } from './bcast-binomial.js';
import { bcastPipeline } from './bcast-pipeline.js';
import { bcastScatterAllgather } from './bcast-scatter-allgather.js';
import type { CommIO } from './comm-io.js';
import { gatherv as gathervBytes } from './gatherv.js';
import type { CollectiveIO, Reducer, TypedArray } from './io.js';
import type { Kernel } from './op-kernels.js';
import { checkValueOp, ELEMENT_TYPES, elementTypeOf, reducerFor, reduceValues, TYPED_ARRAY_CONSTRUCTORS, type OpFunction } from './ops.js';
import { reduceBinomial } from './reduce-binomial.js';
import { reduceRabenseifner } from './reduce-rabenseifner.js';
import { reduceScatterRecursiveHalving } from './reduce-scatter-recursive-halving.js';
import { reduceScatterRing } from './reduce-scatter-ring.js';
import type { CollectiveRunner, Ticket } from './runner.js';
import { scanRecursiveDoubling } from './scan-recursive-doubling.js';
import { SHARED_MAX_RANKS, type SharedMemoryCollectives } from './shared-memory.js';
import { scatterv as scattervBytes } from './scatterv.js';
import { ALGORITHMS, chooseAlgorithm, type AlgorithmOf, type EnvChoices, type TunableCollective } from './select.js';
import { argumentHash, countsDigest, type CollectiveName, type HashPart } from './signature.js';
import { allreduceValue, alltoallBytes, bcastBytes, gatherBytes, reduceValue, scanValue, scatterBytes, type ValueReduction } from './value-collectives.js';

/** An `Op` name or a function op. */
export type ReduceOp = PredefinedOp | OpFunction;

/** Options of a collective call. */
export interface CollectiveOptions {
  /** Give up after this many ms: this rank gets `TIMEOUT`, the communicator is revoked on the others. */
  timeout?: number;
  /** Give up when it aborts (`ABORTED` here, revoked elsewhere). */
  signal?: AbortSignal;
  /** Use this algorithm (see `select.ts`): every rank must pass the same. */
  algorithm?: string;
}

/** Values up to this size travel inside the broadcast's first message; larger ones follow it. */
const BCAST_INLINE_BYTES = 8 * 1024;

/** What the operations need of their communicator. */
export interface OperationsSetup {
  readonly runner: CollectiveRunner;
  readonly codec: ValueCodec;
  readonly rank: number;
  readonly size: number;
  /** The job's `VMCOMM_COLL_*` overrides. */
  readonly env: EnvChoices;
  /** Runs the call with the caller's timeout/signal (revoking on expiry). */
  readonly guard: <T>(opts: CollectiveOptions | undefined, run: () => Promise<T>) => Promise<T>;
  /** The communicator's shared-memory collectives, if it has them (the same answer on every rank). */
  readonly shared: () => SharedMemoryCollectives | undefined;
}

const ARITHMETIC = new Set<unknown>(['SUM', 'PROD', 'MIN', 'MAX']);

/** The collective operations of one communicator on this rank. */
export class CollectiveOperations {
  readonly #s: OperationsSetup;

  constructor(setup: OperationsSetup) {
    this.#s = setup;
  }

  // ------------------------------------------------------------ data movement

  bcast<T>(value: T | undefined, root: number, opts?: CollectiveOptions): Promise<T> {
    this.#checkRoot(root);
    const override = opts?.algorithm;
    // First the head: the value itself when small, else its length and the algorithm its bytes
    // follow by. Through the root's shared cell where the communicator has cells (big enough for a
    // length head) and no message algorithm is asked for (the table's first row), else by messages.
    // Only the root knows the length, so every rank decides the head's path from the communicator and
    // the options alone; the path is in the hash, so ranks whose VMCOMM_COLL_BCAST differ fail the
    // call instead of one waiting for a message.
    const shared = this.#s.shared();
    // The path and hash, kept for the last (root, name): a loop broadcasts from one root again and again.
    let last = this.#lastBcast;
    if (last.root !== root || last.override !== override) {
      const cells = shared !== undefined && shared.prefixedBytes >= LENGTH_HEAD_BYTES && this.#bcastAlgorithm(0, override) === 'shared-memory';
      last = this.#lastBcast = { root, override, cells, hash: this.#hashOf('bcast', cells ? [root, override, 'shared-memory'] : [root, override], override) };
    }
    if (last.cells) {
      return this.#run('bcast', last.hash, opts, (io) => {
        let head: Uint8Array | undefined;
        let encoded: Uint8Array | undefined;
        if (io.rank === root) {
          if (typeof value === 'number') head = numberHead(value);
          else {
            encoded = this.#s.codec.encode(value);
            head = encoded.length + 1 <= shared!.prefixedBytes ? prefixed(0, encoded) : lengthHead(encoded.length, this.#bcastDataAlgorithm(encoded.length, override));
          }
        }
        const first = shared!.bcastPrefixed(io, head, root);
        return first instanceof Promise ? first.then((f) => this.#bcastRest<T>(io, f, encoded, value, root)) : this.#bcastRest<T>(io, first, encoded, value, root);
      });
    }
    return this.#run('bcast', last.hash, opts, async (io) => {
      const encoded = io.rank === root ? this.#s.codec.encode(value) : undefined;
      let head: Uint8Array | undefined;
      if (encoded) head = encoded.length <= BCAST_INLINE_BYTES && override === undefined ? prefixed(0, encoded) : lengthHead(encoded.length, this.#bcastDataAlgorithm(encoded.length, override));
      return this.#bcastRest<T>(io, await bcastBytes(io, head, root), encoded, value, root);
    });
  }

  /** After a bcast's head `first`: the value it carried, or its bytes by the algorithm it names. */
  #bcastRest<T>(io: CommIO, first: Uint8Array, encoded: Uint8Array | undefined, value: T | undefined, root: number): T | Promise<T> {
    const isRoot = io.rank === root;
    if (first[0] === 0) return isRoot ? (value as T) : this.#s.codec.decode<T>(first.subarray(1));
    if (first[0] === NUMBER_MARKER) return isRoot ? (value as T) : (readNumberHead(first, root) as T);
    const { length, algorithm } = readLengthHead(first, root);
    const data = encoded ?? new Uint8Array(length);
    return BCAST[algorithm](io, data, root).then(() => (isRoot ? (value as T) : this.#s.codec.decode<T>(data)));
  }

  /**
   * The message algorithm for `bytes` of a bcast after its head. The root alone chooses it and names it
   * in the head, so every rank runs the same one whatever its own VMCOMM_COLL_BCAST says. Never the
   * cells: a second shared pass in one call would let a shared call queued behind it take its turn.
   */
  #bcastDataAlgorithm(bytes: number, override: string | undefined): MessageBcast {
    // A bcast named shared-memory whose value is too long for a cell (or whose communicator's cells
    // are too small for a head) sends its bytes by the table's message algorithm: refusing it would
    // have to fail every rank, which only learns the length from the head.
    const named = override === 'shared-memory' ? undefined : override;
    return chooseAlgorithm('bcast', { size: this.#s.size, bytes, commutative: true }, named, this.#s.env) as MessageBcast;
  }

  /** `view`'s bytes from `root` into every rank's `view` (same byte length everywhere, checked by the hash). */
  bcastBuffer<V extends ArrayBufferView>(view: V, root: number, opts?: CollectiveOptions): Promise<V> {
    this.#checkRoot(root);
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    const algorithm = this.#bcastAlgorithm(bytes.length, opts?.algorithm);
    // The algorithm in the hash (ranks whose VMCOMM_COLL_BCAST differ fail instead of running
    // different algorithms); the hash of the last arguments is kept (a loop broadcasts the same shape
    // again and again). An unknown name was refused by the choice above.
    const override = opts?.algorithm;
    const last = this.#lastBcastBuffer;
    let hash = last.hash;
    if (last.root !== root || last.length !== bytes.length || last.override !== override || last.algorithm !== algorithm) {
      hash = argumentHash('bcastBuffer', root, bytes.length, code(override), algorithm);
      this.#lastBcastBuffer = { root, length: bytes.length, override, algorithm, hash };
    }
    return this.#run('bcastBuffer', hash, opts, (io) => {
      if (bytes.length === 0) return view;
      const moved = algorithm === 'shared-memory' ? this.#s.shared()!.bcastBytes(io, bytes, root) : BCAST[algorithm](io, bytes, root);
      return moved === undefined ? view : moved.then(() => view);
    });
  }

  gather<T>(value: T, root: number, opts?: CollectiveOptions): Promise<T[] | undefined> {
    this.#checkRoot(root);
    // Through the cells where the communicator has them (the same answer on every rank): each rank's
    // encoding, or its length when too long, the long ones' bytes then sent to the root.
    const shared = this.#cellsFor(0);
    if (shared !== undefined) {
      const head = valueHead(value, this.#s.codec);
      return this.#call('gather', [root, 'shared-memory'], opts, (io) => {
        const got = shared.gatherPrefixed(io, head, root);
        return got instanceof Promise ? got.then((g) => this.#gatherRest(io, g, head, value, root)) : this.#gatherRest(io, got, head, value, root);
      });
    }
    const bytes = this.#s.codec.encode(value);
    return this.#call('gather', [root], opts, async (io) => {
      const all = await gatherBytes(io, bytes, root);
      return all?.map((b, r) => (r === io.rank ? value : this.#s.codec.decode<T>(b)));
    });
  }

  allgather<T>(value: T, opts?: CollectiveOptions): Promise<T[]> {
    const override = opts?.algorithm;
    // Through the cells where the communicator has them and no message algorithm is asked for (each
    // rank knows only its own length, so every rank decides from the communicator and the options
    // alone); the path is in the hash, so ranks whose VMCOMM_COLL_ALLGATHER sends one to the cells
    // and another to messages fail the call (different message algorithms are not told apart).
    if (this.#allgatherAlgorithm(0, 0, override) === 'shared-memory') {
      const shared = this.#s.shared()!;
      const head = valueHead(value, this.#s.codec);
      return this.#call('allgather', [override, 'shared-memory'], opts, (io) => {
        const got = shared.gatherPrefixed(io, head, -1);
        return got instanceof Promise ? got.then((g) => this.#gatherRest(io, g!, head, value, -1) as T[] | Promise<T[]>) : (this.#gatherRest(io, got!, head, value, -1) as T[] | Promise<T[]>);
      });
    }
    const bytes = this.#s.codec.encode(value);
    return this.#call('allgather', [override], opts, async (io) => {
      // Lengths first (fixed size), then the encodings with the table's allgatherv (messages: the
      // cells would be a second path in one call).
      const lengths = new Float64Array(io.size);
      lengths[io.rank] = bytes.byteLength;
      await ALLGATHER[this.#messageAllgather(8 * io.size, undefined)](io, bytesOf(lengths), new Array(io.size).fill(8));
      const counts = Array.from(lengths);
      const out = new Uint8Array(sum(counts));
      const displs = prefixSums(counts);
      out.set(bytes, displs[io.rank]);
      await ALLGATHER[this.#messageAllgather(out.length, override)](io, out, counts);
      return counts.map((c, r) => (r === io.rank ? value : this.#s.codec.decode<T>(out.subarray(displs[r], displs[r] + c))));
    });
  }

  /**
   * After a gather's or allgather's pass through the cells (`got`: per member its bytes, or the length
   * of those too long for a cell; `undefined` on a gather's other ranks): the long ones' bytes by
   * messages — to the root, or to everyone by the table's message allgather — then every value.
   */
  #gatherRest<T>(io: CommIO, got: (Uint8Array | number)[] | undefined, mine: Uint8Array, value: T, root: number): T[] | undefined | Promise<T[] | undefined> {
    const decode = (all: readonly (Uint8Array | number)[]): T[] => all.map((b, r) => (r === io.rank ? value : readValueHead<T>(b as Uint8Array, r, this.#s.codec)));
    if (got === undefined) {
      // A gather's other rank: its bytes follow to the root when its cell held only their length.
      return mine.length <= this.#s.shared()!.prefixedBytes ? undefined : io.send(root, mine).then(() => undefined);
    }
    if (got.every((g) => typeof g !== 'number')) return decode(got);
    if (root >= 0) {
      // The receives themselves to waitAll (it spins only on what it knows to be requests).
      const from: number[] = [];
      const arrivals: PromiseLike<Uint8Array>[] = [];
      for (let m = 0; m < io.size; m++) {
        if (m === io.rank || typeof got[m] !== 'number') continue;
        from.push(m);
        arrivals.push(io.recvBytes(m));
      }
      return io.waitAll(arrivals).then(async () => {
        for (let i = 0; i < from.length; i++) got[from[i]] = await arrivals[i];
        return decode(got);
      });
    }
    // Every rank knows every length from the cells, so all run the same message allgather on them.
    const counts = got.map((g) => (typeof g === 'number' ? g : 0));
    const displs = prefixSums(counts);
    const out = new Uint8Array(sum(counts));
    if (typeof got[io.rank] === 'number') out.set(mine, displs[io.rank]);
    return ALLGATHER[this.#messageAllgather(out.length, undefined, false)](io, out, counts).then(() => {
      for (let m = 0; m < io.size; m++) if (typeof got[m] === 'number') got[m] = out.subarray(displs[m], displs[m] + counts[m]);
      return decode(got);
    });
  }

  scatter<T>(values: readonly T[] | undefined, root: number, opts?: CollectiveOptions): Promise<T> {
    this.#checkRoot(root);
    let blobs: Uint8Array[] | undefined;
    // The root's own value as it was when called, as the others get theirs (encoded here).
    let own: T | undefined;
    if (this.#s.rank === root) {
      if (!Array.isArray(values) || values.length !== this.#s.size) throw invalidArgument('values (at the root)', `an array of ${this.#s.size} values, one per rank`, values);
      // Encoded here, so a value that cannot be encoded is refused before anything is sent.
      blobs = values.map((v) => this.#s.codec.encode(v));
      own = values[root];
    }
    // Through the root's cell where the communicator has cells (the same answer on every rank), when
    // the root finds its values fit; else its cell says so and they go by messages.
    const shared = this.#cellsFor(0);
    if (shared !== undefined) {
      const heads = blobs?.map((b, r) => {
        const v = (values as readonly T[])[r];
        return typeof v === 'number' ? numberHead(v) : prefixed(0, b);
      });
      return this.#call('scatter', [root, 'shared-memory'], opts, (io) => {
        const rest = (mine: Uint8Array | undefined): T | Promise<T> => {
          if (io.rank === root) return mine === undefined ? scatterBytes(io, heads, root).then(() => own as T) : (own as T);
          return mine === undefined ? scatterBytes(io, undefined, root).then((b) => readValueHead<T>(b, root, this.#s.codec)) : readValueHead<T>(mine, root, this.#s.codec);
        };
        const got = shared.scatterPrefixed(io, heads, root);
        return got instanceof Promise ? got.then(rest) : rest(got);
      });
    }
    return this.#call('scatter', [root], opts, async (io) => {
      const mine = await scatterBytes(io, blobs, root);
      return io.rank === root ? (own as T) : this.#s.codec.decode<T>(mine);
    });
  }

  alltoall<T>(values: readonly T[] | TypedArray, opts?: CollectiveOptions): Promise<T[] | TypedArray> {
    const size = this.#s.size;
    if (isTypedArray(values)) {
      if (values.length % size !== 0) throw invalidArgument('values', `a typed array whose length is a multiple of the size (${size})`, values);
      const block = (values.length / size) * values.BYTES_PER_ELEMENT;
      const recv = sameKind(values, values.length);
      const algorithm = chooseAlgorithm('alltoall', { size, bytes: block, cellBytes: values.byteLength, commutative: true, sharedBytes: this.#s.shared()?.payloadBytes }, opts?.algorithm, this.#s.env);
      // The cells in the hash: ranks whose VMCOMM_COLL_ALLTOALL sends one to the cells and another to
      // messages fail the call (ranks that name different message algorithms are not told apart).
      return this.#call('alltoall', [values.length, elementTypeOf(values), opts?.algorithm, algorithm === 'shared-memory' ? algorithm : undefined], opts, (io) => {
        const moved = algorithm === 'shared-memory' ? this.#s.shared()!.alltoallBlocks(io, bytesOf(values), bytesOf(recv), block) : (algorithm === 'bruck' ? alltoallBruck : alltoallPairwise)(io, bytesOf(values), bytesOf(recv), block);
        return moved === undefined ? recv : moved.then(() => recv);
      });
    }
    if (!Array.isArray(values) || values.length !== size) throw invalidArgument('values', `an array of ${size} values (one per destination rank) or a typed array`, values);
    const blobs = values.map((v) => this.#s.codec.encode(v));
    return this.#call('alltoall', ['values'], opts, async (io) => {
      const got = await alltoallBytes(io, blobs);
      return got.map((b, r) => (r === io.rank ? values[r] : this.#s.codec.decode<T>(b)));
    });
  }

  gatherv<A extends TypedArray>(send: A, counts: readonly number[], root: number, recv: A | undefined, opts?: CollectiveOptions): Promise<A | undefined> {
    this.#checkRoot(root);
    if (!isTypedArray(send)) throw invalidArgument('send', 'a typed array', send);
    const c = this.#checkCounts(counts, 'counts', send);
    const total = sum(c);
    const out = this.#s.rank === root ? this.#checkRecv(recv, send, total) : undefined;
    const e = send.BYTES_PER_ELEMENT;
    // Through the cells where every block fits one (counts are the same on every rank, so is the
    // choice; gatherv has no algorithm to name, and VMCOMM_COLL_ALLGATHER does not apply).
    const shared = this.#cellsFor(Math.max(...c) * e);
    if (shared !== undefined) {
      const blocks = c.map((n) => n * e);
      return this.#call('gatherv', [root, countsDigest(c), elementTypeOf(send), 'shared-memory'], opts, (io) => {
        const moved = shared.gatherBlocks(io, bytesOf(send).subarray(0, blocks[io.rank]), out ? bytesOf(out) : undefined, blocks, prefixSums(blocks), root);
        return moved === undefined ? out : moved.then(() => out);
      });
    }
    return this.#call('gatherv', [root, countsDigest(c), elementTypeOf(send)], opts, async (io) => {
      await gathervBytes(io, bytesOf(send).subarray(0, c[io.rank] * send.BYTES_PER_ELEMENT), out ? bytesOf(out) : undefined, c.map((n) => n * send.BYTES_PER_ELEMENT), root);
      return out;
    });
  }

  allgatherv<A extends TypedArray>(send: A, counts: readonly number[], recv: A | undefined, opts?: CollectiveOptions): Promise<A> {
    if (!isTypedArray(send)) throw invalidArgument('send', 'a typed array', send);
    const c = this.#allgathervCall(send, counts, opts?.algorithm);
    const out = this.#checkRecv(recv, send, c.total);
    const mine = c.counts[this.#s.rank];
    if (mine > send.length) throw invalidArgument(`counts[${this.#s.rank}]`, `at most this rank's array length (${send.length})`, mine);
    return this.#run('allgatherv', c.hash, opts, (io) => {
      let moved: void | Promise<void>;
      if (c.algorithm === 'shared-memory') {
        // Straight from send into the cell, and from every cell into out.
        moved = this.#s.shared()!.gatherBlocks(io, bytesOf(send).subarray(0, c.blocks[io.rank]), bytesOf(out), c.blocks, c.displs, -1);
      } else {
        out.set(send.subarray(0, mine) as never, c.displs[io.rank] / send.BYTES_PER_ELEMENT);
        moved = ALLGATHER[c.algorithm](io, bytesOf(out), c.blocks);
      }
      return moved === undefined ? out : moved.then(() => out);
    });
  }

  /**
   * An allgatherv's checked counts, blocks, algorithm and argument hash — kept for the last counts,
   * element class and name (a loop gathers the same shape again and again; comparing the counts costs
   * less than checking, digesting and choosing for them).
   */
  #allgathervCall(send: TypedArray, counts: readonly number[], override: string | undefined): AllgathervCall {
    const last = this.#lastAllgatherv;
    if (last !== undefined && last.View === send.constructor && last.override === override && Array.isArray(counts) && sameNumbers(last.counts, counts)) return last;
    const c = this.#checkCounts(counts, 'counts', send);
    const e = send.BYTES_PER_ELEMENT;
    const blocks = c.map((n) => n * e);
    const algorithm = this.#allgatherAlgorithm(sum(blocks), Math.max(...blocks), override);
    // The cells in the hash: ranks whose VMCOMM_COLL_ALLGATHER sends one to the cells and another to
    // messages fail the call (ranks that name different message algorithms are not told apart).
    const hash = this.#hashOf('allgatherv', [countsDigest(c), elementTypeOf(send), override, algorithm === 'shared-memory' ? algorithm : undefined], override);
    const call: AllgathervCall = { View: send.constructor, override, counts: c, total: sum(c), blocks, displs: prefixSums(blocks), algorithm, hash };
    this.#lastAllgatherv = call;
    return call;
  }

  #lastAllgatherv: AllgathervCall | undefined = undefined;

  scatterv<A extends TypedArray>(send: A | undefined, counts: readonly number[], recv: A, root: number, opts?: CollectiveOptions): Promise<A> {
    this.#checkRoot(root);
    if (!isTypedArray(recv)) throw invalidArgument('recv', 'a typed array (every rank passes the one it receives into)', recv);
    const c = this.#checkCounts(counts, 'counts', recv);
    if (this.#s.rank === root) {
      if (!isTypedArray(send) || send.constructor !== recv.constructor) throw invalidArgument('send (at the root)', `a ${recv.constructor.name} like recv`, send);
      if (send.length < sum(c)) throw invalidArgument('send (at the root)', `at least ${sum(c)} elements (the sum of counts)`, send);
    }
    const e = recv.BYTES_PER_ELEMENT;
    // Through the root's cell when all it scatters fits (counts are the same on every rank, so is the choice).
    const shared = this.#cellsFor(sum(c) * e);
    if (shared !== undefined) {
      const displs = prefixSums(c.map((n) => n * e));
      displs.push(sum(c) * e);
      return this.#call('scatterv', [root, countsDigest(c), elementTypeOf(recv), 'shared-memory'], opts, (io) => {
        const moved = shared.scatterBlocks(io, io.rank === root ? bytesOf(send!) : undefined, bytesOf(recv).subarray(0, c[io.rank] * e), displs, root);
        return moved === undefined ? recv : moved.then(() => recv);
      });
    }
    return this.#call('scatterv', [root, countsDigest(c), elementTypeOf(recv)], opts, async (io) => {
      await scattervBytes(io, io.rank === root ? bytesOf(send!) : undefined, bytesOf(recv).subarray(0, c[io.rank] * e), c.map((n) => n * e), root);
      return recv;
    });
  }

  alltoallv<A extends TypedArray>(send: A, sendCounts: readonly number[], recv: A, recvCounts: readonly number[], opts?: CollectiveOptions): Promise<A> {
    if (!isTypedArray(send)) throw invalidArgument('send', 'a typed array', send);
    if (!isTypedArray(recv) || recv.constructor !== send.constructor) throw invalidArgument('recv', `a ${send.constructor.name} like send`, recv);
    const sc = this.#checkCounts(sendCounts, 'sendCounts');
    const rc = this.#checkCounts(recvCounts, 'recvCounts');
    if (send.length < sum(sc)) throw invalidArgument('send', `at least ${sum(sc)} elements (the sum of sendCounts)`, send);
    if (recv.length < sum(rc)) throw invalidArgument('recv', `at least ${sum(rc)} elements (the sum of recvCounts)`, recv);
    if (send.buffer === recv.buffer && send.byteOffset < recv.byteOffset + recv.byteLength && recv.byteOffset < send.byteOffset + send.byteLength) {
      throw new VmcommError('INVALID_ARGUMENT', 'alltoallv: send and recv overlap; give recv memory of its own');
    }
    const e = send.BYTES_PER_ELEMENT;
    // Counts differ per rank by nature; only the type must agree (lengths are checked per message).
    return this.#call('alltoallv', [elementTypeOf(send)], opts, async (io) => {
      await alltoallvPairwise(io, bytesOf(send), sc.map((n) => n * e), bytesOf(recv), rc.map((n) => n * e));
      return recv;
    });
  }

  // ------------------------------------------------------------ reductions

  allreduce<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T> {
    const named = opts?.algorithm;
    const scalarAlgorithm = typeof value === 'number' && ARITHMETIC.has(op) ? (named ?? this.#scalarAllreduce()) : undefined;
    if (scalarAlgorithm === 'recursive-doubling' || scalarAlgorithm === 'shared-memory') {
      const scalar = SCALAR_OPS[op as keyof typeof SCALAR_OPS];
      const shared = scalarAlgorithm === 'shared-memory' ? this.#sharedFor(8, named) : undefined;
      const body = shared ? (io: CommIO) => shared.allreduceScalar(io, value as number, scalar) as T | Promise<T> : (io: CommIO) => allreduceScalar(io, value as number, scalar) as Promise<T>;
      if (named !== undefined) return this.#call('allreduce', ['number', 1, opName(op), named], opts, body);
      // The most frequent collective call: its argument hash is computed once per op.
      let hash = SCALAR_ALLREDUCE_HASHES.get(op);
      if (hash === undefined) SCALAR_ALLREDUCE_HASHES.set(op, (hash = argumentHash('allreduce', code('number'), 1, opName(op), undefined)));
      return this.#run('allreduce', hash, opts, body);
    }
    if (isTypedArray(value)) return this.#reduceArray('allreduce', value, op, opts, -1) as Promise<T>;
    const path = this.#path(value, op);
    if (path.kind === 'value') {
      return this.#call('allreduce', ['value', opName(op)], opts, (io) => allreduceValue(io, value, this.#valueOps(op)));
    }
    const data = path.fresh ? path.data : copyOf(path.data);
    const algorithm = this.#allreduceAlgorithm(data.byteLength, path.reducer, opts?.algorithm);
    const shared = algorithm === 'shared-memory' ? this.#s.shared()! : undefined;
    return this.#call('allreduce', [path.type, data.length, opName(op), opts?.algorithm], opts, async (io) => {
      if (shared) await shared.allreduceBytes(io, bytesOf(data), path.reducer);
      else await ALLREDUCE[algorithm as FlatAllreduce](io, bytesOf(data), path.reducer);
      return path.unwrap(data) as T;
    });
  }

  allreduceBuffer<A extends TypedArray>(send: A | InPlace, recv: A, op: ReduceOp, opts?: CollectiveOptions): Promise<A> {
    if (!isTypedArray(recv)) throw invalidArgument('recv', 'a typed array', recv);
    if (send !== IN_PLACE && send !== recv) {
      if (!isTypedArray(send) || send.constructor !== recv.constructor || send.length !== recv.length) {
        throw invalidArgument('send', `IN_PLACE or a ${recv.constructor.name} of ${recv.length} elements like recv`, send);
      }
    }
    if (recv.length === 1 && recv instanceof Float64Array && ARITHMETIC.has(op) && opts?.algorithm === undefined && this.#scalarAllreduce() === 'shared-memory') {
      // One double with the table's choice, shared memory: as allreduce of a number (hash made once).
      let hash = SCALAR_BUFFER_HASHES.get(op);
      if (hash === undefined) SCALAR_BUFFER_HASHES.set(op, (hash = argumentHash('allreduceBuffer', code('float64'), code(1), code(opName(op)), undefined, undefined)));
      return this.#run('allreduceBuffer', hash, opts, sharedDoubleInto(this.#s.shared()!, send, recv, op));
    }
    const c = this.#typedCall('allreduceBuffer', recv, op, opts?.algorithm, -1);
    const { algorithm } = c;
    if (algorithm === 'shared-memory') {
      if (recv.length === 1 && recv instanceof Float64Array && ARITHMETIC.has(op)) return this.#run('allreduceBuffer', c.hash, opts, sharedDoubleInto(this.#s.shared()!, send, recv, op));
      const data = send === IN_PLACE ? recv : (send as A);
      return this.#run('allreduceBuffer', c.hash, opts, (io) => {
        const moved = this.#reduceTyped(io, c, data, recv, -1);
        return moved === undefined ? recv : moved.then(() => recv);
      });
    }
    if (algorithm === 'recursive-doubling' && recv.length === 1 && recv instanceof Float64Array && ARITHMETIC.has(op)) {
      // One double: the same exchanges, messages and reduction order as the generic recursive
      // doubling (so a rank on either path agrees with the other), without its views and scratch.
      const scalar = SCALAR_OPS[op as keyof typeof SCALAR_OPS];
      return this.#run('allreduceBuffer', c.hash, opts, async (io) => {
        recv[0] = await allreduceScalar(io, send === IN_PLACE ? recv[0] : (send as Float64Array)[0], scalar);
        return recv;
      });
    }
    return this.#run('allreduceBuffer', c.hash, opts, async (io) => {
      if (send !== IN_PLACE && send !== recv) recv.set(send as never);
      await ALLREDUCE[algorithm as FlatAllreduce](io, bytesOf(recv), c.reducer);
      return recv;
    });
  }

  reduce<T>(value: T, op: ReduceOp, root: number, opts?: CollectiveOptions): Promise<T | undefined> {
    this.#checkRoot(root);
    if (typeof value === 'number' && ARITHMETIC.has(op)) {
      const named = opts?.algorithm;
      const algorithm = named === undefined ? (this.#scalarReduceDefault ??= this.#reduceAlgorithm(8, true, undefined)) : this.#reduceAlgorithm(8, true, named);
      if (algorithm === 'shared-memory') {
        // One number through the cells, without the typed-array path's views and copies. The same
        // hash as that path gives a number (so a rank on either path agrees with the other), kept
        // for the last (op, root, name): a loop reduces the same way again and again.
        const last = this.#lastScalarReduce;
        let hash = last.hash;
        if (last.op !== op || last.root !== root || last.named !== named) {
          hash = argumentHash('reduce', code('number'), code(1), code(opName(op)), code(root), code(named ?? algorithm));
          this.#lastScalarReduce = { op, root, named, hash };
        }
        const shared = this.#s.shared()!;
        const scalar = SCALAR_OPS[op as keyof typeof SCALAR_OPS];
        return this.#run('reduce', hash, opts, (io) => shared.reduceScalar(io, value, scalar, root) as T | undefined | Promise<T | undefined>);
      }
    }
    if (isTypedArray(value)) return this.#reduceArray('reduce', value, op, opts, root) as Promise<T | undefined>;
    const path = this.#path(value, op);
    if (path.kind === 'value') {
      return this.#call('reduce', ['value', opName(op), root], opts, (io) => reduceValue(io, value, this.#valueOps(op), root));
    }
    // A number whose algorithm is a message one (the cells took it above otherwise).
    const data = path.data;
    // Chosen (and an override checked) before the call starts: a refusal then sends nothing.
    const algorithm = this.#reduceAlgorithm(data.byteLength, path.reducer.commutative, opts?.algorithm);
    return this.#call('reduce', [path.type, data.length, opName(op), root, opts?.algorithm], opts, (io) => {
      return (algorithm === 'rabenseifner' ? reduceRabenseifner : reduceBinomial)(io, bytesOf(data), path.reducer, root).then(() => (io.rank === root ? (path.unwrap(data) as T) : undefined));
    });
  }

  /**
   * allreduce (`root` −1) or reduce of a typed array: a copy of `value` (the value it held when
   * called) reduced by the kept decisions of {@link #typedCall}; the copy is the result, on the root
   * of a reduce.
   */
  #reduceArray(name: 'allreduce' | 'reduce', value: TypedArray, op: ReduceOp, opts: CollectiveOptions | undefined, root: number): Promise<TypedArray | undefined> {
    const c = this.#typedCall(name, value, op, opts?.algorithm, root);
    const data = copyOf(value);
    return this.#run(name, c.hash, opts, (io) => {
      const moved = this.#reduceTyped(io, c, data, data, root);
      const result = root < 0 || io.rank === root ? data : undefined;
      return moved === undefined ? result : moved.then(() => result);
    });
  }

  scan<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T> {
    return this.#scan('scan', value, op, opts) as Promise<T>;
  }

  exscan<T>(value: T, op: ReduceOp, opts?: CollectiveOptions): Promise<T | undefined> {
    return this.#scan('exscan', value, op, opts);
  }

  #scan<T>(name: 'scan' | 'exscan', value: T, op: ReduceOp, opts: CollectiveOptions | undefined): Promise<T | undefined> {
    const exclusive = name === 'exscan';
    // Through the cells where the communicator has them and the data fits (the same answer on every
    // rank for the same arguments): every rank folds the cells of the ranks up to it, in rank order.
    if (typeof value === 'number' && ARITHMETIC.has(op)) {
      const shared = this.#cellsFor(8);
      if (shared !== undefined) {
        const scalar = SCALAR_OPS[op as keyof typeof SCALAR_OPS];
        return this.#call(name, ['number', 1, opName(op), 'shared-memory'], opts, (io) => shared.scanScalar(io, value, scalar, exclusive) as T | undefined | Promise<T | undefined>);
      }
    }
    const path = this.#path(value, op);
    if (path.kind === 'value') return this.#call(name, ['value', opName(op)], opts, (io) => scanValue(io, value, this.#valueOps(op), exclusive));
    const data = path.fresh ? path.data : copyOf(path.data);
    const shared = this.#cellsFor(data.byteLength);
    if (shared !== undefined) {
      const { reducer } = path;
      // data is a plain array of its element type's own class (a copy): the op's loop if it reads that class.
      const kernel = reducer.kernel !== undefined && data.constructor === reducer.kernel.View ? reducer.kernel : undefined;
      return this.#call(name, [path.type, data.length, opName(op), 'shared-memory'], opts, (io) => {
        const defined = shared.scanTyped(io, data, reducer, kernel, data, exclusive);
        const result = (d: boolean) => (d ? (path.unwrap(data) as T) : undefined);
        return defined instanceof Promise ? defined.then(result) : result(defined);
      });
    }
    return this.#call(name, [path.type, data.length, opName(op)], opts, async (io) => {
      const defined = await scanRecursiveDoubling(io, bytesOf(data), path.reducer, exclusive);
      return defined ? (path.unwrap(data) as T) : undefined;
    });
  }

  reduceScatter<A extends TypedArray>(array: A, counts: readonly number[], op: ReduceOp, opts?: CollectiveOptions): Promise<A> {
    if (!isTypedArray(array)) throw invalidArgument('array', 'a typed array', array);
    const c = this.#checkCounts(counts, 'counts');
    if (sum(c) !== array.length) throw invalidArgument('counts', `counts that add up to the array's length (${array.length})`, counts);
    const reducer = reducerFor(op, elementTypeOf(array));
    this.#checkPairs(op, array);
    const e = array.BYTES_PER_ELEMENT;
    const algorithm = chooseAlgorithm('reduceScatter', { size: this.#s.size, bytes: array.byteLength, commutative: reducer.commutative }, opts?.algorithm, this.#s.env);
    return this.#call('reduceScatter', [elementTypeOf(array), countsDigest(c), opName(op), opts?.algorithm], opts, async (io) => {
      const blocks = c.map((n) => n * e);
      const mine = await (algorithm === 'ring' ? reduceScatterRing : reduceScatterRecursiveHalving)(io, bytesOf(array), blocks, reducer);
      const out = sameKind(array, c[io.rank]) as A;
      bytesOf(out).set(mine);
      return out;
    });
  }

  /** Checks that `op` applies to `value` (op × type, MINLOC pairs), as a reduction would before it starts. */
  checkReduction(value: unknown, op: ReduceOp): void {
    this.#path(value, op);
  }

  /** `split`/`dup`: every rank's (color, key, next context id), as one array of 3·size numbers. */
  createTable(name: 'split' | 'dup', mine: Float64Array, opts: CollectiveOptions | undefined, ticket: Ticket): Promise<Float64Array> {
    const table = new Float64Array(3 * this.#s.size);
    // By messages, never the cells: a ticketed call runs after the process's earlier creations (on
    // any communicator), so its pass would take its number out of call order, differently per rank;
    // messages are matched by the ticket's number instead.
    return this.#call(name, [], opts, async (io) => {
      table.set(mine, 3 * io.rank);
      // The table's algorithm, whatever VMCOMM_COLL_ALLGATHER says: its name is not in the hash.
      await ALLGATHER[this.#messageAllgather(table.byteLength, undefined, false)](io, bytesOf(table), new Array(io.size).fill(24));
      return table;
    }, ticket);
  }

  // ------------------------------------------------------------ internals

  /**
   * A typed-array reduction's reducer, algorithm and argument hash — kept for the last arguments of
   * each collective, since a loop reduces the same shape again and again (the table walk, the op's
   * lookup and the hash cost more than the pass through the cells). Checks op × type and MINLOC
   * pairs, and refuses an algorithm the call cannot take, before anything is sent.
   */
  #typedCall(name: 'allreduce' | 'reduce' | 'allreduceBuffer', view: TypedArray, op: ReduceOp, override: string | undefined, root: number): TypedCall {
    const last = this.#lastTyped[name];
    const View = view.constructor;
    if (last !== undefined && last.View === View && last.length === view.length && last.op === op && last.override === override && last.root === root) return last;
    const type = elementTypeOf(view);
    const reducer = reducerFor(op, type);
    this.#checkPairs(op, view);
    let algorithm: string;
    let hash: number;
    if (name === 'reduce') {
      // Shared memory in the hash (as the named algorithm, which it is when named): a rank whose
      // VMCOMM_COLL_REDUCE made it the root of a binomial tree only receives, and would wait forever.
      algorithm = this.#reduceAlgorithm(view.byteLength, reducer.commutative, override);
      hash = this.#hashOf(name, [type, view.length, opName(op), root, override ?? (algorithm === 'shared-memory' ? algorithm : undefined)], override);
    } else {
      algorithm = this.#allreduceAlgorithm(view.byteLength, reducer, override);
      hash = this.#hashOf(name, [type, view.length, opName(op), override], override);
    }
    // The shared fold runs the op's loop on views of the cells: only for a predefined op whose loop
    // reads the array's own class (bitwise ops on int8, say, run on other views: those take bytes).
    const kernel = reducer.kernel !== undefined && TYPED_ARRAY_CONSTRUCTORS[type] === reducer.kernel.View ? reducer.kernel : undefined;
    const call: TypedCall = { View, length: view.length, op, override, root, reducer, algorithm, hash, kernel };
    this.#lastTyped[name] = call;
    return call;
  }

  readonly #lastTyped: Partial<Record<'allreduce' | 'reduce' | 'allreduceBuffer', TypedCall>> = {};

  /** A typed-array reduction of `data` by `c`'s algorithm, its result into `into` (on `root`; every rank when −1). */
  #reduceTyped(io: CommIO, c: TypedCall, data: TypedArray, into: TypedArray, root: number): void | Promise<void> {
    if (c.algorithm === 'shared-memory') {
      const shared = this.#s.shared()!;
      if (c.kernel !== undefined) return shared.reduceTyped(io, data, c.kernel, into, root);
      if (into !== data) into.set(data as never);
      return root < 0 ? shared.allreduceBytes(io, bytesOf(into), c.reducer) : shared.reduceBytes(io, bytesOf(into), c.reducer, root);
    }
    if (into !== data) into.set(data as never);
    if (root < 0) return ALLREDUCE[c.algorithm as FlatAllreduce](io, bytesOf(into), c.reducer);
    return (c.algorithm === 'rabenseifner' ? reduceRabenseifner : reduceBinomial)(io, bytesOf(into), c.reducer, root);
  }

  #call<T>(name: CollectiveName, parts: readonly HashPart[], opts: CollectiveOptions | undefined, body: (io: CommIO) => T | Promise<T>, ticket?: Ticket): Promise<T> {
    return this.#run(name, this.#hashOf(name, parts, opts?.algorithm), opts, body, ticket);
  }

  /** The argument hash of a call of `name` with `parts`; an algorithm the collective does not have is refused here, before anything is sent. */
  #hashOf(name: CollectiveName, parts: readonly HashPart[], algorithm: string | undefined): number {
    if (algorithm !== undefined) {
      const tunable = TUNABLE_OF[name];
      const known: readonly string[] = tunable ? ALGORITHMS[tunable] : [];
      if (!known.includes(algorithm)) throw new VmcommError('INVALID_ARGUMENT', `${name} has no algorithm "${algorithm}"${known.length ? ` (known: ${known.join(', ')})` : ' to choose'}`);
    }
    return argumentHash(name, code(parts[0]), code(parts[1]), code(parts[2]), code(parts[3]), code(parts[4]));
  }

  /** The arguments, head path and hash of the last {@link bcast}. */
  #lastBcast: { root: number; override: string | undefined; cells: boolean; hash: number } = { root: -1, override: undefined, cells: false, hash: 0 };

  /** The arguments and hash of the last {@link bcastBuffer}. */
  #lastBcastBuffer: { root: number; length: number; override: string | undefined; algorithm: string; hash: number } = { root: -1, length: -1, override: undefined, algorithm: '', hash: 0 };

  /** Runs a call whose argument hash is known, under `opts`' timeout and signal if it has them. */
  #run<T>(name: CollectiveName, hash: number, opts: CollectiveOptions | undefined, body: (io: CommIO) => T | Promise<T>, ticket?: Ticket): Promise<T> {
    if (opts === undefined || (opts.timeout === undefined && opts.signal === undefined)) return this.#s.runner.run(name, hash, body, ticket);
    return this.#s.guard(opts, () => this.#s.runner.run(name, hash, body, ticket));
  }

  #bcastAlgorithm(bytes: number, override: string | undefined): Exclude<AlgorithmOf<'bcast'>, 'hierarchical'> {
    return chooseAlgorithm('bcast', { size: this.#s.size, bytes, commutative: true, sharedBytes: this.#s.shared()?.payloadBytes }, override, this.#s.env);
  }

  #allreduceAlgorithm(bytes: number, reducer: Reducer, override: string | undefined): Exclude<AlgorithmOf<'allreduce'>, 'hierarchical'> {
    return chooseAlgorithm('allreduce', { size: this.#s.size, bytes, commutative: reducer.commutative, sharedBytes: this.#s.shared()?.payloadBytes }, override, this.#s.env);
  }

  /**
   * The communicator's cells when a call that is not tunable (gather(v), scatter(v), scan, exscan) can take them:
   * it has them (the same answer on every rank), at most {@link SHARED_MAX_RANKS} ranks, and
   * `bytes` (what one cell must carry; 0 where the root decides) fit.
   */
  #cellsFor(bytes: number): SharedMemoryCollectives | undefined {
    const shared = this.#s.shared();
    return shared !== undefined && this.#s.size <= SHARED_MAX_RANKS && bytes <= shared.payloadBytes ? shared : undefined;
  }

  #reduceAlgorithm(bytes: number, commutative: boolean, override: string | undefined): Exclude<AlgorithmOf<'reduce'>, 'hierarchical'> {
    return chooseAlgorithm('reduce', { size: this.#s.size, bytes, commutative, sharedBytes: this.#s.shared()?.payloadBytes }, override, this.#s.env);
  }

  /** The algorithm of a one-number reduce with no algorithm named (as {@link #scalarAllreduce}). */
  #scalarReduceDefault: AlgorithmOf<'reduce'> | undefined = undefined;

  /** The arguments and hash of the last one-number shared reduce. */
  #lastScalarReduce: { op: ReduceOp | undefined; root: number; named: string | undefined; hash: number } = { op: undefined, root: -1, named: undefined, hash: 0 };

  /** The algorithm of a one-number allreduce with no algorithm named: `VMCOMM_COLL_ALLREDUCE`'s where it applies, else the table's, kept (neither changes during a job). */
  #scalarAllreduce(): AlgorithmOf<'allreduce'> {
    return (this.#scalarDefault ??= this.#allreduceAlgorithm(8, SCALAR_REDUCER_SHAPE, undefined));
  }

  #scalarDefault: AlgorithmOf<'allreduce'> | undefined = undefined;

  /** The shared-memory collectives for a call of `bytes`; a named algorithm they cannot serve is `INVALID_ARGUMENT`. */
  #sharedFor(bytes: number, named: string | undefined): SharedMemoryCollectives {
    if (named !== undefined) this.#allreduceAlgorithm(bytes, SCALAR_REDUCER_SHAPE, named);
    return this.#s.shared()!;
  }

  /** The allgather algorithm for `bytes` in all, the largest rank's block `blockBytes`. */
  #allgatherAlgorithm(bytes: number, blockBytes: number, override: string | undefined): AlgorithmOf<'allgather'> {
    return chooseAlgorithm('allgather', { size: this.#s.size, bytes, cellBytes: blockBytes, commutative: true, sharedBytes: this.#s.shared()?.payloadBytes }, override, this.#s.env);
  }

  /**
   * A message allgather for `bytes` in all: `override` (a named shared-memory counts as none) or the
   * table's — with the job's VMCOMM_COLL_ALLGATHER unless `withEnv` is false: for bytes that follow
   * a pass through the cells (every rank there took the cells, so its setting named no message
   * algorithm), and for split/dup's table (whose hash does not carry the name).
   */
  #messageAllgather(bytes: number, override: string | undefined, withEnv = true): MessageAllgather {
    const named = override === 'shared-memory' ? undefined : override;
    const env = withEnv && this.#s.env.allgather !== 'shared-memory' ? this.#s.env : {};
    return chooseAlgorithm('allgather', { size: this.#s.size, bytes, commutative: true }, named, env) as MessageAllgather;
  }

  /** How `value` reduces: as a typed array (with its reducer) or on the value path. Checks op × type. */
  #path(value: unknown, op: ReduceOp): { kind: 'value' } | { kind: 'buffer'; data: TypedArray; type: string; reducer: Reducer; unwrap: (d: TypedArray) => unknown; fresh: boolean } {
    if (isTypedArray(value)) {
      const type = elementTypeOf(value);
      const reducer = reducerFor(op, type);
      this.#checkPairs(op, value);
      return { kind: 'buffer', data: value, type, reducer, unwrap: identity, fresh: false };
    }
    if (typeof value === 'number' && ARITHMETIC.has(op)) {
      return { kind: 'buffer', data: Float64Array.of(value), type: 'number', reducer: reducerFor(op, 'float64'), unwrap: firstElement, fresh: true };
    }
    const bad = checkValueOp(op, value);
    if (bad) throw bad;
    return { kind: 'value' };
  }

  #checkPairs(op: ReduceOp, view: TypedArray): void {
    if ((op === 'MINLOC' || op === 'MAXLOC') && view.length % 2 !== 0) throw invalidArgument(`${op} data`, 'a typed array of (value, index) pairs (even length)', view);
  }

  #valueOps<T>(op: ReduceOp): ValueReduction<T> {
    return { combine: (a, b) => reduceValues(op, a, b) as T, encode: (v) => this.#s.codec.encode(v), decode: (b) => this.#s.codec.decode<T>(b) };
  }

  #checkRoot(root: unknown): void {
    if (typeof root !== 'number' || !Number.isInteger(root) || root < 0 || root >= this.#s.size) throw invalidArgument('root', `a rank from 0 to ${this.#s.size - 1}`, root);
  }

  /** Checks per-rank counts (elements); with `send`, that this rank's count is its length. */
  #checkCounts(counts: readonly number[], what: string, send?: TypedArray): number[] {
    if (!Array.isArray(counts) || counts.length !== this.#s.size || !counts.every((c) => Number.isSafeInteger(c) && c >= 0)) {
      throw invalidArgument(what, `an array of ${this.#s.size} element counts (whole numbers ≥ 0), one per rank`, counts);
    }
    if (send !== undefined) {
      if (!isTypedArray(send)) throw invalidArgument('send', 'a typed array', send);
      if (counts[this.#s.rank] > send.length) throw invalidArgument(`${what}[${this.#s.rank}]`, `at most this rank's array length (${send.length})`, counts[this.#s.rank]);
    }
    return counts.slice();
  }

  #checkRecv<A extends TypedArray>(recv: A | undefined, like: A, total: number): A {
    if (recv === undefined) return sameKind(like, total) as A;
    if (!isTypedArray(recv) || recv.constructor !== like.constructor || recv.length < total) throw invalidArgument('recv', `a ${like.constructor.name} of at least ${total} elements`, recv);
    return recv;
  }
}

/** Which table row a collective's `algorithm` option picks from. */
const TUNABLE_OF: Partial<Record<CollectiveName, TunableCollective>> = {
  allreduce: 'allreduce',
  allreduceBuffer: 'allreduce',
  reduce: 'reduce',
  bcast: 'bcast',
  bcastBuffer: 'bcast',
  allgather: 'allgather',
  allgatherv: 'allgather',
  alltoall: 'alltoall',
  reduceScatter: 'reduceScatter',
};

/**
 * The body of a shared-memory allreduceBuffer of one double with SUM/PROD/MIN/MAX: the one-number
 * path, its result stored into `recv` — at once when every rank arrived within the spin.
 */
function sharedDoubleInto<A extends TypedArray>(shared: SharedMemoryCollectives, send: A | InPlace, recv: A, op: ReduceOp): (io: CommIO) => A | Promise<A> {
  const scalar = SCALAR_OPS[op as keyof typeof SCALAR_OPS];
  const value = send === IN_PLACE ? (recv[0] as number) : ((send as Float64Array)[0] as number);
  return (io) => {
    const r = shared.allreduceScalar(io, value, scalar);
    if (typeof r === 'number') {
      recv[0] = r;
      return recv;
    }
    return r.then((v) => {
      recv[0] = v;
      return recv;
    });
  };
}

/** What an allgatherv decided for its arguments (see `#allgathervCall`). */
interface AllgathervCall {
  readonly View: unknown;
  readonly override: string | undefined;
  /** Elements per rank (a copy of the caller's, checked). */
  readonly counts: readonly number[];
  readonly total: number;
  /** Bytes per rank, and where each rank's start in the result. */
  readonly blocks: readonly number[];
  readonly displs: readonly number[];
  readonly algorithm: AlgorithmOf<'allgather'>;
  readonly hash: number;
}

/** Whether two arrays of numbers hold the same numbers. */
function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What a typed-array reduction decided for its arguments (see `#typedCall`). */
interface TypedCall {
  readonly View: unknown;
  readonly length: number;
  readonly op: ReduceOp;
  readonly override: string | undefined;
  readonly root: number;
  readonly reducer: Reducer;
  readonly algorithm: string;
  readonly hash: number;
  /** The op's loop, when the shared fold can run it on the array's own class. */
  readonly kernel: Kernel | undefined;
}

/** The allreduce algorithms that run over messages (`shared-memory` needs the communicator's cells). */
type FlatAllreduce = Exclude<AlgorithmOf<'allreduce'>, 'hierarchical' | 'shared-memory'>;

/** What the algorithm choice needs of a one-number reduction's reducer (SUM/PROD/MIN/MAX commute). */
const SCALAR_REDUCER_SHAPE = { elementBytes: 8, commutative: true, combine: () => undefined } as const satisfies Reducer;

const ALLREDUCE: Record<FlatAllreduce, (io: CollectiveIO, data: Uint8Array, reducer: Reducer) => Promise<void>> = {
  'recursive-doubling': allreduceRecursiveDoubling,
  rabenseifner: allreduceRabenseifner,
  ring: allreduceRing,
};

/** A bcast algorithm that runs over messages (`shared-memory` needs the communicator's cells). */
type MessageBcast = Exclude<AlgorithmOf<'bcast'>, 'hierarchical' | 'shared-memory'>;

const BCAST: Record<MessageBcast, (io: CollectiveIO, data: Uint8Array, root: number) => Promise<void>> = {
  binomial: bcastBinomial,
  'scatter-allgather': bcastScatterAllgather,
  pipeline: (io, data, root) => bcastPipeline(io, data, root),
};

/** An allgather algorithm that runs over messages. */
type MessageAllgather = Exclude<AlgorithmOf<'allgather'>, 'shared-memory'>;

const ALLGATHER: Record<MessageAllgather, (io: CollectiveIO, out: Uint8Array, counts: readonly number[]) => Promise<void>> = {
  'recursive-doubling': allgatherRecursiveDoubling,
  bruck: allgatherBruck,
  ring: allgatherRing,
};

/** Whether `v` is a typed array (not a DataView). */
export function isTypedArray(v: unknown): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

/** The bytes of a typed array (a view, no copy). */
export function bytesOf(v: TypedArray): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** A new array of `like`'s element type (a plain typed array: a Node Buffer gives a Uint8Array). */
function sameKind(like: TypedArray, length: number): TypedArray {
  return new TYPED_ARRAY_CONSTRUCTORS[elementTypeOf(like)](length);
}

/** A copy of `v` in memory of its own (`Buffer#slice` would return a view, not a copy). */
function copyOf(v: TypedArray): TypedArray {
  const c = sameKind(v, v.length);
  c.set(v as never);
  return c;
}

const identity = (d: TypedArray): unknown => d;
const firstElement = (d: TypedArray): unknown => d[0];

/** The message algorithms of bcast, by the code a length head names them with (the index): every key of {@link BCAST}. */
const DATA_ALGORITHMS = Object.keys(BCAST) as MessageBcast[];
/** Bytes of a length head: marker 1, the length (float64), the data's algorithm (u8). */
const LENGTH_HEAD_BYTES = 10;

/** The marker of a head that is a number (float64 in this host's byte order: only calls through the cells make one, within one host) after it: no encoding to make or decode. */
const NUMBER_MARKER = 2;
const NUMBER_HEAD_BYTES = 9;
/** Where a number head's float64 is read (the head's bytes may sit at any offset). */
const numberBytes = new Uint8Array(8);
const numberValue = new Float64Array(numberBytes.buffer);

/** A bcast head that is `value` itself. */
function numberHead(value: number): Uint8Array {
  const head = new Uint8Array(NUMBER_HEAD_BYTES);
  head[0] = NUMBER_MARKER;
  numberValue[0] = value;
  head.set(numberBytes, 1);
  return head;
}

/** The number a number head from `rank` carries; `CORRUPT` when the head is not one. */
function readNumberHead(head: Uint8Array, rank: number): number {
  if (head.length !== NUMBER_HEAD_BYTES) throw new VmcommError('CORRUPT', `the number from rank ${rank} of the communicator is not one (${head.length} bytes, marker ${head[0]})`);
  for (let i = 0; i < 8; i++) numberBytes[i] = head[i + 1];
  return numberValue[0];
}

/** A rank's value in a gather or allgather through the cells: a number head, or its encoding after marker 0. */
function valueHead(value: unknown, codec: ValueCodec): Uint8Array {
  return typeof value === 'number' ? numberHead(value) : prefixed(0, codec.encode(value));
}

/** The value a {@link valueHead} from `rank` carries. */
function readValueHead<T>(head: Uint8Array, rank: number, codec: ValueCodec): T {
  if (head[0] === NUMBER_MARKER) return readNumberHead(head, rank) as T;
  if (head[0] !== 0) throw new VmcommError('CORRUPT', `the value of rank ${rank} of the communicator came with marker ${head[0]}, not a value's`);
  return codec.decode<T>(head.subarray(1));
}

/** A bcast head announcing `length` bytes to follow by `algorithm`. */
function lengthHead(length: number, algorithm: MessageBcast): Uint8Array {
  const code = DATA_ALGORITHMS.indexOf(algorithm);
  if (code < 0) throw new Error(`bcast algorithm ${algorithm} has no code in a length head`);
  const head = new Uint8Array(LENGTH_HEAD_BYTES);
  head[0] = 1;
  new DataView(head.buffer).setFloat64(1, length, true);
  head[9] = code;
  return head;
}

/** What a length head from `root` (a rank of the communicator) says; `CORRUPT` when it is not one. */
function readLengthHead(head: Uint8Array, root: number): { length: number; algorithm: MessageBcast } {
  const length = head.length === LENGTH_HEAD_BYTES && head[0] === 1 ? new DataView(head.buffer, head.byteOffset, LENGTH_HEAD_BYTES).getFloat64(1, true) : -1;
  const algorithm = DATA_ALGORITHMS[head[9]];
  if (!Number.isSafeInteger(length) || length < 0 || algorithm === undefined) {
    throw new VmcommError('CORRUPT', `the bcast head from rank ${root} of the communicator is not one (${head.length} bytes, marker ${head[0]})`);
  }
  return { length, algorithm };
}

function prefixed(marker: number, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength + 1);
  out[0] = marker;
  out.set(bytes, 1);
  return out;
}

function prefixSums(counts: readonly number[]): number[] {
  const out = new Array<number>(counts.length);
  let at = 0;
  counts.forEach((c, i) => {
    out[i] = at;
    at += c;
  });
  return out;
}

function sum(counts: readonly number[]): number {
  let s = 0;
  for (const c of counts) s += c;
  return s;
}

/** Element types, value kinds and the cells' path as numbers for the argument hash (hashing a string costs more). */
const KIND_CODES = new Map<string, number>([...ELEMENT_TYPES.map((t, i): [string, number] => [t, i + 1]), ['number', 0x40], ['value', 0x41], ['values', 0x42], ['shared-memory', 0x43]]);
function code(p: HashPart): HashPart {
  return typeof p === 'string' ? (KIND_CODES.get(p) ?? p) : p;
}

/** An op as a number for the argument hash: predefined ops by position, any function op alike. */
function opName(op: ReduceOp): number {
  return typeof op === 'function' ? 0x100 : (OP_CODES.get(op) ?? 0x1ff);
}
/** The argument hash of a one-number allreduce per op, with no algorithm named (see `allreduce`). */
const SCALAR_ALLREDUCE_HASHES = new Map<ReduceOp, number>();
/** … of a one-double allreduceBuffer, as `#call` computes it for these parts. */
const SCALAR_BUFFER_HASHES = new Map<ReduceOp, number>();
const OP_CODES = new Map<unknown, number>(Object.values(Op).map((o, i) => [o, i + 1]));

