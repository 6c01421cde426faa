/**
 * Shared pieces of the reduction algorithms: cutting a vector into blocks on element boundaries,
 * folding any communicator size onto a power of two, and the three butterfly kernels over block
 * ranges (recursive-halving reduce-scatter, recursive-doubling allgather, binomial gather) that
 * Rabenseifner's allreduce and reduce and the recursive-halving reduce-scatter are built from.
 *
 * **Folding** (as MPICH does it): with `pof2` the largest power of two ≤ `size` and
 * `rem = size − pof2`, the first `2·rem` ranks pair up as (2i, 2i+1). One rank of each pair sends its
 * whole contribution to the other and sits out; the other combines the two (rank 2i's on the left)
 * and plays virtual rank `i`. Ranks from `2·rem` on play virtual rank `rank − rem`. Virtual rank `v`
 * thus stands for a contiguous, increasing run of real ranks, so an algorithm that keeps virtual-rank
 * order keeps real-rank order too (non-commutative reductions stay correct).
 *
 * **Butterfly kernels** work on `pof2` blocks of a buffer, described by `pof2 + 1` byte offsets.
 * {@link halvingReduceScatter} pairs virtual ranks at distance 1, 2, 4, … (mask ascending): at each
 * step both partners hold partials over two adjacent, aligned groups of virtual ranks, each keeps half
 * of its current block range and reduces it with the partner's partial, lower group on the left. So
 * every partial is a reduction over a contiguous run of ranks in rank order, and each (block, run)
 * partial is computed by exactly one rank: the result is order-preserving and deterministic. The
 * price of ascending distances is that virtual rank `v` ends owning block `bitReverse(v)`; callers
 * that need block `v` at `v` lay the buffer out in bit-reversed block order first
 * ({@link bitReverse}). {@link doublingAllgather} and {@link binomialGather} undo the halving steps
 * in reverse order (mask descending), so the ranges they exchange are always adjacent.
 *
 * @module
 */

import type { CollectiveIO, Reducer } from './io.js';

/**
 * Byte offsets of `parts` blocks covering `bytes` bytes, cut on `elementBytes` boundaries: block `i`
 * spans `[offsets[i], offsets[i + 1])`. With `count` elements the first `count mod parts` blocks get
 * one element more than the others; when `count < parts` the trailing blocks are empty.
 */
export function splitBlocks(bytes: number, elementBytes: number, parts: number): number[] {
  const count = Math.floor(bytes / elementBytes);
  const base = Math.floor(count / parts);
  const extra = count % parts;
  const offsets = new Array<number>(parts + 1);
  offsets[0] = 0;
  for (let i = 0; i < parts; i++) offsets[i + 1] = offsets[i] + (base + (i < extra ? 1 : 0)) * elementBytes;
  return offsets;
}

/** Prefix sums of `lengths` (`lengths.length + 1` entries, starting at 0). */
export function offsetsOf(lengths: readonly number[]): number[] {
  const offsets = new Array<number>(lengths.length + 1);
  offsets[0] = 0;
  for (let i = 0; i < lengths.length; i++) offsets[i + 1] = offsets[i] + lengths[i];
  return offsets;
}

/** `v` with its lowest `bits` bits in reverse order. */
export function bitReverse(v: number, bits: number): number {
  let r = 0;
  for (let b = 0; b < bits; b++) r |= ((v >> b) & 1) << (bits - 1 - b);
  return r;
}

/** log2 of a power of two. */
export function log2(pof2: number): number {
  return 31 - Math.clz32(pof2);
}

/** How this rank takes part in an algorithm folded onto a power of two (see the module comment). */
export interface Fold {
  /** Largest power of two ≤ size. */
  readonly pof2: number;
  /** `size − pof2`: how many pairs fold. */
  readonly rem: number;
  /** This rank's virtual rank in `[0, pof2)`, or −1 when it sits out. */
  readonly newRank: number;
  /** The other rank of this rank's pair, or −1 when it is not paired (rank ≥ 2·rem). */
  readonly partner: number;
  /** The real rank that plays virtual rank `v`. */
  real(v: number): number;
}

/**
 * Folds `size` ranks onto a power of two. In pair (2i, 2i+1) rank 2i+1 plays virtual rank i, unless
 * `keep` is 2i: then 2i does (so a root never sits out).
 */
export function foldRanks(rank: number, size: number, keep = -1): Fold {
  const pof2 = size > 0 ? 1 << log2(size) : 1;
  const rem = size - pof2;
  const survivor = (i: number) => (keep === 2 * i ? 2 * i : 2 * i + 1);
  const real = (v: number) => (v < rem ? survivor(v) : v + rem);
  if (rank >= 2 * rem) return { pof2, rem, newRank: rank - rem, partner: -1, real };
  const pair = rank >> 1;
  return { pof2, rem, newRank: survivor(pair) === rank ? pair : -1, partner: rank ^ 1, real };
}

/**
 * The folding step. A rank that sits out sends `data` to its partner; the partner receives it into
 * `scratch` and stores `lower op upper` (rank 2i's contribution on the left) in `into`. Other ranks do
 * nothing. `scratch` needs `data.byteLength` bytes on survivors; `into` may be `data` or `scratch`.
 */
export async function foldIn(io: CollectiveIO, fold: Fold, data: Uint8Array, reducer: Reducer, scratch: Uint8Array, into: Uint8Array = data): Promise<void> {
  if (fold.partner < 0 || data.byteLength === 0) return;
  if (fold.newRank < 0) {
    await io.send(fold.partner, data);
    return;
  }
  const theirs = scratch.subarray(0, data.byteLength);
  await io.recv(fold.partner, theirs);
  if (fold.partner < io.rank) reducer.combine(theirs, data, into);
  else reducer.combine(data, theirs, into);
}

/** The unfolding step: a survivor sends `data` (the result) to its partner, which receives it into `data`. */
export async function foldOut(io: CollectiveIO, fold: Fold, data: Uint8Array): Promise<void> {
  if (fold.partner < 0 || data.byteLength === 0) return;
  if (fold.newRank < 0) await io.recv(fold.partner, data);
  else await io.send(fold.partner, data);
}

/**
 * Sends `out` to `peer` and receives `into` from `from` (default: the same peer) at once, each skipped
 * when empty (the algorithms here make both sides agree on every length). Both are posted before
 * either is awaited, so rendezvous sends cannot deadlock.
 */
export async function exchange(io: CollectiveIO, peer: number, out: Uint8Array, into: Uint8Array, from = peer): Promise<void> {
  const pending: PromiseLike<void>[] = [];
  if (into.byteLength > 0) pending.push(io.recv(from, into));
  if (out.byteLength > 0) pending.push(io.send(peer, out));
  if (pending.length) await io.waitAll(pending);
}

/**
 * Reduce-scatter by recursive halving over the `pof2` virtual ranks of `fold` (only call it on ranks
 * with `newRank ≥ 0`). `buf` holds this rank's contribution, cut into `pof2` blocks by `offsets`; on
 * return block `bitReverse(newRank)` of `buf` holds the reduction of that block over all ranks (the
 * rest of `buf` is garbage). `scratch` needs as many bytes as the larger half of `buf`'s blocks.
 * Returns the index of the block this rank owns.
 *
 * Reduction order: at distance `m` the partials of two adjacent aligned groups of `m` virtual ranks
 * meet, the lower group's on the left: a balanced binary tree over ranks in rank order.
 */
export async function halvingReduceScatter(io: CollectiveIO, fold: Fold, buf: Uint8Array, offsets: readonly number[], reducer: Reducer, scratch: Uint8Array): Promise<number> {
  const { pof2, newRank } = fold;
  let lo = 0;
  let hi = pof2;
  for (let mask = 1; mask < pof2; mask <<= 1) {
    const mid = (lo + hi) >> 1;
    const lower = (newRank & mask) === 0;
    const [keepLo, keepHi, giveLo, giveHi] = lower ? [lo, mid, mid, hi] : [mid, hi, lo, mid];
    const keep = buf.subarray(offsets[keepLo], offsets[keepHi]);
    const theirs = scratch.subarray(0, keep.byteLength);
    await exchange(io, fold.real(newRank ^ mask), buf.subarray(offsets[giveLo], offsets[giveHi]), theirs);
    if (keep.byteLength > 0) {
      if (lower) reducer.combine(keep, theirs, keep);
      else reducer.combine(theirs, keep, keep);
    }
    lo = keepLo;
    hi = keepHi;
  }
  return lo;
}

/**
 * Allgather by recursive doubling after {@link halvingReduceScatter}: with block
 * `bitReverse(newRank)` of `buf` valid on every virtual rank, leaves all of `buf` valid everywhere.
 * Distances go `pof2/2, …, 2, 1`, so each step joins two adjacent ranges.
 */
export async function doublingAllgather(io: CollectiveIO, fold: Fold, buf: Uint8Array, offsets: readonly number[]): Promise<void> {
  const { pof2, newRank } = fold;
  let lo = bitReverse(newRank, log2(pof2));
  let hi = lo + 1;
  for (let mask = pof2 >> 1; mask >= 1; mask >>= 1) {
    const width = hi - lo;
    const [theirLo, theirHi] = (newRank & mask) === 0 ? [hi, hi + width] : [lo - width, lo];
    await exchange(io, fold.real(newRank ^ mask), buf.subarray(offsets[lo], offsets[hi]), buf.subarray(offsets[theirLo], offsets[theirHi]));
    lo = Math.min(lo, theirLo);
    hi = Math.max(hi, theirHi);
  }
}

/**
 * Binomial gather to virtual rank `newRoot` after {@link halvingReduceScatter}: on return all of
 * `buf` is valid at `newRoot` (other ranks' `buf` is partial). At distance `m` (`pof2/2` down to 1) a
 * rank still active whose bit `m` differs from the root's sends its range to its partner and stops.
 */
export async function binomialGather(io: CollectiveIO, fold: Fold, buf: Uint8Array, offsets: readonly number[], newRoot: number): Promise<void> {
  const { pof2, newRank } = fold;
  let lo = bitReverse(newRank, log2(pof2));
  let hi = lo + 1;
  for (let mask = pof2 >> 1; mask >= 1; mask >>= 1) {
    const peer = fold.real(newRank ^ mask);
    if (((newRank ^ newRoot) & mask) !== 0) {
      const mine = buf.subarray(offsets[lo], offsets[hi]);
      if (mine.byteLength > 0) await io.send(peer, mine);
      return;
    }
    const width = hi - lo;
    const [theirLo, theirHi] = (newRank & mask) === 0 ? [hi, hi + width] : [lo - width, lo];
    const theirs = buf.subarray(offsets[theirLo], offsets[theirHi]);
    if (theirs.byteLength > 0) await io.recv(peer, theirs);
    lo = Math.min(lo, theirLo);
    hi = Math.max(hi, theirHi);
  }
}

/** Throws unless `reducer` is commutative (for algorithms whose reduction order is not rank order). */
export function requireCommutative(reducer: Reducer, algorithm: string): void {
  if (!reducer.commutative) throw new Error(`${algorithm} reorders operands: it needs a commutative reduction (choose an order-preserving algorithm)`);
}
