/**
 * Allreduce by recursive doubling (Thakur, Rabenseifner, Gropp 2005, §4.4): after folding onto a
 * power of two `pof2` (see {@link foldRanks}), virtual ranks exchange their whole partial with the
 * partner at distance 1, 2, 4, …, pof2/2 and both combine it; then the survivors of the fold send the
 * result to the ranks that sat out.
 *
 * Cost with `n` bytes: `(log2 pof2 + 2·[size ≠ pof2])·(α + nβ) + (log2 pof2 + 1)·nγ`. Latency-optimal,
 * so the choice for short vectors; bandwidth is `n·log p`, so long vectors want Rabenseifner or ring.
 *
 * Reduction order: folding combines pairs (2i, 2i+1) lower first; at distance `m` each rank holds the
 * reduction over an aligned, contiguous group of virtual ranks and combines it with the adjacent
 * group's, lower group on the left. Rank order is kept, so non-commutative reductions are correct.
 * Both partners compute `combine(lower, upper)` from the same bytes, so every rank ends with a
 * bit-identical result (and the ranks that sat out receive a copy).
 *
 * @module
 */

import { exchange, foldIn, foldOut, foldRanks } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces `data` over all ranks in place: on entry this rank's contribution, on return the reduction
 * over ranks 0…size−1 in rank order, bit-identical on every rank. Any size, any reducer.
 */
export async function allreduceRecursiveDoubling(io: CollectiveIO, data: Uint8Array, reducer: Reducer): Promise<void> {
  if (io.size === 1 || data.byteLength === 0) return;
  const fold = foldRanks(io.rank, io.size);
  const scratch = takeScratch(data.byteLength);
  await foldIn(io, fold, data, reducer, scratch);
  if (fold.newRank >= 0) {
    for (let mask = 1; mask < fold.pof2; mask <<= 1) {
      const partnerNew = fold.newRank ^ mask;
      await exchange(io, fold.real(partnerNew), data, scratch);
      // The same call on both partners: (lower group, upper group) into the local copy.
      if (partnerNew < fold.newRank) reducer.combine(scratch, data, data);
      else reducer.combine(data, scratch, data);
    }
  }
  giveScratch(scratch); // every receive into it has completed
  await foldOut(io, fold, data);
}
