/**
 * Reduce-scatter with per-rank block sizes by recursive halving, order-preserving (so for any
 * reducer, commutative or not). After folding onto a power of two `pof2` (see {@link foldRanks}),
 * virtual rank `v` stands for the real ranks of its pair (or the one rank), and its "virtual block" is
 * their blocks side by side. Recursive halving at distances 1, 2, 4, … keeps rank order but leaves
 * virtual rank `v` owning virtual block `bitReverse(v)` ({@link halvingReduceScatter}), so the
 * contribution is first copied into a work buffer with the virtual blocks in bit-reversed order
 * (MPICH's non-commutative reduce-scatter does the same permutation): then `v` ends with its own
 * block. Finally each survivor of the fold sends its partner's block to it.
 *
 * Cost with `n` bytes, `p = pof2`, even blocks: `log2 p·α + (p−1)/p·nβ + (p−1)/p·nγ` plus one local
 * copy of `n`; when `size` is not a power of two add `(α + nβ) + nγ` for the fold and `α` for the
 * partner's block. Uneven blocks make the early steps move more than half of what is left.
 *
 * Reduction order: the fold combines pairs (2i, 2i+1) lower first; each halving step combines the
 * partials of two adjacent, aligned groups of virtual ranks, lower group on the left: a balanced tree
 * over ranks in rank order.
 *
 * @module
 */

import { bitReverse, foldIn, foldRanks, halvingReduceScatter, log2, offsetsOf } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces the full vector `data` (this rank's contribution, left unchanged) over all ranks in rank
 * order and returns this rank's block of the result in fresh memory. `blockBytes[r]` is the length of
 * rank `r`'s block (a multiple of the element size, zeros allowed; they sum to `data.byteLength`).
 * Any size, any reducer.
 */
export async function reduceScatterRecursiveHalving(io: CollectiveIO, data: Uint8Array, blockBytes: readonly number[], reducer: Reducer): Promise<Uint8Array> {
  const { rank, size } = io;
  const realOffsets = offsetsOf(blockBytes);
  const mine = () => data.subarray(realOffsets[rank], realOffsets[rank + 1]);
  if (size === 1 || data.byteLength === 0) return mine().slice();
  const fold = foldRanks(rank, size);
  if (fold.newRank < 0) {
    // Sat out: hand the contribution to the partner, get this rank's block back.
    const result = new Uint8Array(blockBytes[rank]);
    const pending = [io.send(fold.partner, data)];
    if (result.byteLength > 0) pending.push(io.recv(fold.partner, result));
    await io.waitAll(pending);
    return result;
  }
  // Real ranks played by virtual rank v, in rank order.
  const ranksOf = (v: number) => (v < fold.rem ? [2 * v, 2 * v + 1] : [v + fold.rem]);
  const bits = log2(fold.pof2);
  // Work layout: position k holds the blocks of virtual rank bitReverse(k).
  const virtualBytes = Array.from({ length: fold.pof2 }, (_, k) => ranksOf(bitReverse(k, bits)).reduce((sum, r) => sum + blockBytes[r], 0));
  const offsets = offsetsOf(virtualBytes);
  // The fold receives a whole vector; the halving at most the larger half kept at its first step.
  const half = offsets[fold.pof2 >> 1];
  const scratch = takeScratch(fold.partner >= 0 ? data.byteLength : Math.max(half, data.byteLength - half));
  let contribution = data;
  if (fold.partner >= 0) {
    await foldIn(io, fold, data, reducer, scratch, scratch);
    contribution = scratch;
  }
  const work = takeScratch(data.byteLength); // every byte is written below before it is read
  for (let k = 0; k < fold.pof2; k++) {
    let at = offsets[k];
    for (const r of ranksOf(bitReverse(k, bits))) {
      work.set(contribution.subarray(realOffsets[r], realOffsets[r + 1]), at);
      at += blockBytes[r];
    }
  }
  // The fold's scratch is free again: reuse it for the halving's receives.
  const owned = await halvingReduceScatter(io, fold, work, offsets, reducer, scratch);
  giveScratch(scratch); // every receive into it has completed
  let at = offsets[owned];
  let result = new Uint8Array(0);
  for (const r of ranksOf(fold.newRank)) {
    const block = work.subarray(at, at + blockBytes[r]);
    at += blockBytes[r];
    if (r === rank) result = block.slice(); // not a view: the caller should not keep `work` alive
    else if (block.byteLength > 0) await io.send(r, block);
  }
  giveScratch(work); // the sends from it completed; the result is a copy
  return result;
}
