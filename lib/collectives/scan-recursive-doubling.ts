/**
 * Inclusive and exclusive scan by recursive doubling (MPICH's `MPI_Scan`/`MPI_Exscan` algorithm):
 * each rank keeps `partial`, the reduction over the aligned group of `2m` ranks around it, and
 * `prefix`, its result so far. At distance `m = 1, 2, 4, …` it exchanges `partial` with `rank ^ m`
 * (when that rank exists); the received partial covers the adjacent group, which is lower or higher.
 * A lower group's partial is folded into both `prefix` and `partial` on the left; a higher group's
 * only into `partial` on the right. Any size (a missing partner simply skips the step).
 *
 * Cost with `n` bytes: `⌈log2 p⌉·(α + nβ)` and up to `2⌈log2 p⌉·nγ` (MPI_Scan's usual choice; for
 * long vectors a pipelined chain would cut the bandwidth term, not done here).
 *
 * Reduction order: every combine joins two adjacent runs of ranks, lower run on the left, so the
 * result at rank `r` is the reduction over ranks `0…r` (exclusive: `0…r−1`) in rank order, correct
 * for non-commutative reductions.
 *
 * @module
 */

import { exchange } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';

/**
 * Prefix reduction in rank order, in place. Inclusive: `data` becomes the reduction over ranks
 * `0…rank`. Exclusive: over ranks `0…rank−1`; rank 0 has no such value, so there `data` is left as it
 * was and the call returns `false` (`true` everywhere else, and always for inclusive). Any size, any
 * reducer.
 */
export async function scanRecursiveDoubling(io: CollectiveIO, data: Uint8Array, reducer: Reducer, exclusive: boolean): Promise<boolean> {
  const { rank, size } = io;
  const defined = !exclusive || rank > 0;
  if (size === 1 || data.byteLength === 0) return defined;
  const partial = data.slice(); // reduction over this rank's current group
  const received = new Uint8Array(data.byteLength);
  // Inclusive: the prefix starts as this rank's own value (in `data`). Exclusive: it starts empty.
  let prefixEmpty = exclusive;
  for (let mask = 1; mask < size; mask <<= 1) {
    const peer = rank ^ mask;
    if (peer >= size) continue;
    await exchange(io, peer, partial, received);
    if (peer < rank) {
      if (prefixEmpty) data.set(received);
      else reducer.combine(received, data, data);
      prefixEmpty = false;
      reducer.combine(received, partial, partial);
    } else {
      reducer.combine(partial, received, partial);
    }
  }
  return defined;
}
