/**
 * Allreduce by Rabenseifner's algorithm (Rabenseifner 2004; Thakur, Rabenseifner, Gropp 2005, §4.4):
 * fold onto a power of two `pof2` (see {@link foldRanks}), reduce-scatter by recursive halving (each
 * virtual rank ends with one fully reduced `1/pof2` block), allgather by recursive doubling, then hand
 * the result to the ranks that sat out of the fold. Any size, any count: blocks are cut on element
 * boundaries and may be empty when there are fewer elements than `pof2` (empty messages are skipped).
 *
 * Cost with `n` bytes, `p = pof2`: `2·log2 p·α + 2·(p−1)/p·nβ + (p−1)/p·nγ`, plus `2·(α + nβ) + nγ`
 * when `size` is not a power of two. Bandwidth-optimal up to the fold: the choice for long vectors
 * when `log2 p` latencies matter more than the ring's `2(p−1)`.
 *
 * Reduction order: the fold combines pairs (2i, 2i+1) lower first; recursive halving pairs distances
 * 1, 2, 4, … so every partial is over a contiguous run of ranks and is combined with the adjacent
 * run's, lower run on the left (a balanced tree in rank order). Unlike MPICH's variant this keeps rank
 * order, so non-commutative reductions are correct too. Each block's final value is computed by one
 * rank and only copied afterwards, so every rank ends with a bit-identical result.
 *
 * @module
 */

import { doublingAllgather, foldIn, foldOut, foldRanks, halvingReduceScatter, splitBlocks } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces `data` over all ranks in place: on entry this rank's contribution, on return the reduction
 * over ranks 0…size−1 in rank order, bit-identical on every rank. Any size and count, any reducer.
 */
export async function allreduceRabenseifner(io: CollectiveIO, data: Uint8Array, reducer: Reducer): Promise<void> {
  if (io.size === 1 || data.byteLength === 0) return;
  const fold = foldRanks(io.rank, io.size);
  const offsets = splitBlocks(data.byteLength, reducer.elementBytes, fold.pof2);
  // One scratch for the fold (whole vector) and the halving (at most the first step's kept half,
  // which is the lower half: leading blocks are the larger ones).
  const scratch = takeScratch(fold.newRank < 0 ? 0 : fold.partner >= 0 ? data.byteLength : offsets[fold.pof2 >> 1]);
  await foldIn(io, fold, data, reducer, scratch);
  if (fold.newRank >= 0) {
    await halvingReduceScatter(io, fold, data, offsets, reducer, scratch);
    await doublingAllgather(io, fold, data, offsets);
  }
  giveScratch(scratch); // every receive into it has completed
  await foldOut(io, fold, data);
}

