/**
 * Allreduce by a ring (Patarasuk, Yuan 2009; the "ring" of NCCL and Open MPI): the vector is cut into
 * `size` blocks on element boundaries; a reduce-scatter passes partials around the ring (`size − 1`
 * steps, each rank sending one block to `rank + 1` and receiving one from `rank − 1`), leaving block
 * `rank + 1` fully reduced at `rank`; an allgather passes the reduced blocks around the ring
 * (`size − 1` more steps). Any size, any count (empty blocks are skipped).
 *
 * Cost with `n` bytes and `p` ranks: `2(p−1)·α + 2·(p−1)/p·nβ + (p−1)/p·nγ`. Bandwidth-optimal at any
 * size (no fold), only neighbours talk (good on a real ring or a pipeline of copies), but the latency
 * term is linear in `p`: the choice for long vectors.
 *
 * Reduction order: block `b` starts at rank `b` and travels `b → b+1 → … → b−1` (mod size), each rank
 * combining `(partial so far, own)`. That is a rotation of rank order, so the reducer must be
 * commutative ({@link allreduceRing} throws otherwise). Each block is reduced once, by the chain
 * ending at rank `b − 1`, then only copied, so every rank ends with a bit-identical result.
 *
 * @module
 */

import { exchange, requireCommutative, splitBlocks } from './blocks.js';
import type { CollectiveIO, Reducer } from './io.js';
import { giveScratch, takeScratch } from './scratch.js';

/**
 * Reduces `data` over all ranks in place: on entry this rank's contribution, on return the reduction,
 * bit-identical on every rank. Any size and count; the reducer must be commutative (throws otherwise).
 */
export async function allreduceRing(io: CollectiveIO, data: Uint8Array, reducer: Reducer): Promise<void> {
  requireCommutative(reducer, 'ring allreduce');
  const { rank, size } = io;
  if (size === 1 || data.byteLength === 0) return;
  const offsets = splitBlocks(data.byteLength, reducer.elementBytes, size);
  const block = (b: number) => {
    const i = (b + 2 * size) % size;
    return data.subarray(offsets[i], offsets[i + 1]);
  };
  const next = (rank + 1) % size;
  const prev = (rank + size - 1) % size;
  const scratch = takeScratch(offsets[1]); // block 0 is (one of) the largest
  // Reduce-scatter: send the block combined in the previous step, receive the next one's partial.
  for (let step = 0; step < size - 1; step++) {
    const mine = block(rank - step - 1);
    const theirs = scratch.subarray(0, mine.byteLength);
    await exchange(io, next, block(rank - step), theirs, prev);
    if (mine.byteLength > 0) reducer.combine(theirs, mine, mine);
  }
  giveScratch(scratch); // every receive into it has completed
  // Allgather: this rank owns block rank + 1; pass reduced blocks on, receiving straight into place.
  for (let step = 0; step < size - 1; step++) {
    await exchange(io, next, block(rank + 1 - step), block(rank - step), prev);
  }
}
