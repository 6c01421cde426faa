/**
 * Allgather around a ring: in step s (0 ≤ s < p − 1) each rank passes block `rank − s` to its right
 * neighbour and receives block `rank − s − 1` from its left one, so every block travels p − 1 hops
 * and every link carries one block per step. Blocks may differ in length (allgatherv); empty blocks
 * are not sent (every rank knows the counts, so both ends skip the same steps).
 *
 * Cost: (p − 1) α + ((n − own) β) per rank, n the total bytes: bandwidth-optimal, latency linear in p.
 *
 * Wins: long totals (MPICH: total ≥ 512 KiB, or ≥ 80 KiB when p is not a power of two), and
 * uneven counts, since each link only ever carries one block at a time. Only neighbours talk, which
 * suits topologies where near ranks share a host.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { displacements, quiet } from './layout.js';

/**
 * Gathers every rank's block into `out` on every rank, by a ring. `out` holds the blocks packed in
 * rank order (block `i` is `counts[i]` bytes at the prefix sum of `counts` before `i`); this rank's
 * own block is already in place on entry. `counts` is the same on every rank.
 */
export async function allgatherRing(io: CollectiveIO, out: Uint8Array, counts: readonly number[]): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  if (size === 1) return;
  const d = displacements(counts);
  const right = (rank + 1) % size;
  const left = (rank - 1 + size) % size;
  const sends: PromiseLike<void>[] = [];
  for (let step = 0; step < size - 1; step++) {
    const outgoing = (rank - step + size) % size;
    const incoming = (rank - step - 1 + size) % size;
    // Receive posted before the send: under rendezvous the left neighbour's send waits for it.
    const recv = counts[incoming] > 0 ? io.recv(left, out.subarray(d[incoming], d[incoming + 1])) : undefined;
    // Sends are not awaited per step: the block they read is never written again, and the next
    // step only depends on what arrives from the left.
    if (counts[outgoing] > 0) sends.push(quiet(io.send(right, out.subarray(d[outgoing], d[outgoing + 1]))));
    if (recv) await io.waitAll([recv]);
  }
  await io.waitAll(sends);
}
