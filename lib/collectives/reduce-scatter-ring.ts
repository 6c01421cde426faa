/**
 * Reduce-scatter with per-rank block sizes by a ring: in step `s` (`0 … size−2`) each rank sends its
 * partial of block `rank − s − 1` to `rank + 1` and receives the partial of block `rank − s − 2` from
 * `rank − 1`, adding its own contribution; after `size − 1` steps block `rank` is complete at `rank`.
 *
 * Cost with `n` bytes in total and `p` ranks: `(p−1)·α + (p−1)·max_b(block)·β + (p−1)·max_b·γ`, i.e.
 * `(p−1)/p·nβ` for even blocks (bandwidth-optimal at any size, neighbours only); very uneven blocks
 * make every step as slow as the largest block. Linear latency: the choice for long vectors.
 *
 * Reduction order: block `b` starts at rank `b + 1` and travels `b+1 → b+2 → … → b` (mod size), each
 * rank combining `(partial so far, own)`: a rotation of rank order, so the reducer must be commutative
 * ({@link reduceScatterRing} throws otherwise; use the recursive-halving one for non-commutative).
 *
 * @module
 */

import { exchange, offsetsOf, requireCommutative } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';

/**
 * Reduces the full vector `data` (this rank's contribution, left unchanged) over all ranks and returns
 * this rank's block of the result in fresh memory. `blockBytes[r]` is the length of rank `r`'s block
 * (a multiple of the element size, zeros allowed; they sum to `data.byteLength`). The reducer must be
 * commutative (throws otherwise).
 */
export async function reduceScatterRing(io: CollectiveIO, data: Uint8Array, blockBytes: readonly number[], reducer: Reducer): Promise<Uint8Array> {
  requireCommutative(reducer, 'ring reduce-scatter');
  const { rank, size } = io;
  const offsets = offsetsOf(blockBytes);
  const index = (b: number) => (b + 2 * size) % size;
  const own = (b: number) => data.subarray(offsets[index(b)], offsets[index(b) + 1]);
  if (size === 1) return data.slice(0, blockBytes[0]);
  const largest = blockBytes.reduce((a, b) => Math.max(a, b), 0);
  // Two block buffers, alternating: the partial being sent and the one being received.
  let sending = new Uint8Array(largest);
  let receiving = new Uint8Array(largest);
  let out = own(rank - 1); // step 0 sends this rank's own contribution to block rank − 1
  const next = (rank + 1) % size;
  const prev = (rank + size - 1) % size;
  for (let step = 0; step < size - 1; step++) {
    const mine = own(rank - step - 2);
    const partial = receiving.subarray(0, mine.byteLength);
    await exchange(io, next, out, partial, prev);
    if (partial.byteLength > 0) reducer.combine(partial, mine, partial);
    out = partial;
    [sending, receiving] = [receiving, sending];
  }
  return out.slice();
}
