/**
 * Reduce by a binomial tree (Thakur, Rabenseifner, Gropp 2005, §4.3). With ranks renumbered relative
 * to a tree root, at distance `m = 1, 2, 4, …` a rank whose bit `m` is set sends its partial to
 * `relative − m` and stops; the others receive from `relative + m` (if it exists) and combine.
 *
 * Cost with `n` bytes: `⌈log2 p⌉·(α + nβ + nγ)`. Latency-optimal, so the choice for short vectors;
 * long commutative vectors want Rabenseifner's reduce (reduce-scatter + gather) instead.
 *
 * Reduction order: a rank at relative `x` receives the partial of relatives `[x+m, x+2m)` and combines
 * `(own partial over [x, x+m), received)`: a tree over relatives in increasing order. For a
 * commutative reducer the tree is rooted at `root` (relative = rank − root mod size). For a
 * non-commutative one relative order must be rank order, so (as MPICH does) the tree is rooted at
 * rank 0, which then sends the result to `root` when `root ≠ 0` (one extra `α + nβ`).
 *
 * @module
 */

import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces `data` over all ranks to `root`: on entry this rank's contribution; on return, at `root`,
 * the reduction over ranks 0…size−1 in rank order (elsewhere `data` was used as scratch). Any size,
 * any reducer.
 */
export async function reduceBinomial(io: CollectiveIO, data: Uint8Array, reducer: Reducer, root: number): Promise<void> {
  const { rank, size } = io;
  if (size === 1 || data.byteLength === 0) return;
  const treeRoot = reducer.commutative ? root : 0;
  const relative = (rank - treeRoot + size) % size;
  let scratch: Uint8Array | undefined;
  for (let mask = 1; mask < size; mask <<= 1) {
    if ((relative & mask) !== 0) {
      await io.send((relative - mask + treeRoot) % size, data);
      break;
    }
    if (relative + mask < size) {
      scratch ??= takeScratch(data.byteLength);
      await io.recv((relative + mask + treeRoot) % size, scratch);
      reducer.combine(data, scratch, data);
    }
  }
  if (scratch !== undefined) giveScratch(scratch); // every receive into it has completed
  if (treeRoot !== root) {
    if (rank === treeRoot) await io.send(root, data);
    else if (rank === root) await io.recv(treeRoot, data);
  }
}
