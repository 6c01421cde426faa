/**
 * Reduce by Rabenseifner's algorithm (Rabenseifner 2004; Thakur, Rabenseifner, Gropp 2005, §4.3):
 * fold onto a power of two `pof2` with the root never sitting out (see {@link foldRanks}),
 * reduce-scatter by recursive halving (each virtual rank ends with one fully reduced `1/pof2` block),
 * then a binomial gather of the blocks to the root. Any size, any count: blocks are cut on element
 * boundaries and may be empty (empty messages are skipped).
 *
 * Cost with `n` bytes, `p = pof2`: `2·log2 p·α + 2·(p−1)/p·nβ + (p−1)/p·nγ`, plus `α + nβ + nγ` when
 * `size` is not a power of two. Versus the binomial tree's `log2 p·(α + nβ + nγ)` it wins for long
 * vectors (roughly once `n` is beyond a few KiB and `p > 2`).
 *
 * Reduction order: the fold combines pairs (2i, 2i+1) lower first; recursive halving at distances
 * 1, 2, 4, … combines partials over adjacent contiguous runs of ranks, lower run on the left (a
 * balanced tree in rank order). Rank order is kept whatever the root, so unlike MPICH's variant this
 * is correct for non-commutative reductions too, with no extra hop for `root ≠ 0`.
 *
 * @module
 */

import { binomialGather, foldIn, foldRanks, halvingReduceScatter, splitBlocks } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces `data` over all ranks to `root`: on entry this rank's contribution; on return, at `root`,
 * the reduction over ranks 0…size−1 in rank order (elsewhere `data` was used as scratch). Any size and
 * count, any reducer.
 */
export async function reduceRabenseifner(io: CollectiveIO, data: Uint8Array, reducer: Reducer, root: number): Promise<void> {
  if (io.size === 1 || data.byteLength === 0) return;
  const fold = foldRanks(io.rank, io.size, root);
  const offsets = splitBlocks(data.byteLength, reducer.elementBytes, fold.pof2);
  // One scratch for the fold (whole vector) and the halving (at most the first step's kept half,
  // which is the lower half: leading blocks are the larger ones).
  const scratch = takeScratch(fold.newRank < 0 ? 0 : fold.partner >= 0 ? data.byteLength : offsets[fold.pof2 >> 1]);
  await foldIn(io, fold, data, reducer, scratch);
  if (fold.newRank < 0) return;
  await halvingReduceScatter(io, fold, data, offsets, reducer, scratch);
  giveScratch(scratch); // every receive into it has completed
  // The root always survives the fold, so it has a virtual rank.
  const newRoot = foldRanks(root, io.size, root).newRank;
  await binomialGather(io, fold, data, offsets, newRoot);
}
