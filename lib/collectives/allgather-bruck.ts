/**
 * Allgather by Bruck's algorithm (Bruck et al. 1997; MPICH's short-message allgather for sizes that
 * are not powers of two). Each rank works in a rotated buffer whose position i holds the block of
 * rank `rank + i` (mod p). In step k (dist = 2^k) it sends its first min(dist, p − dist) positions to
 * `rank − dist` and receives as many from `rank + dist` into positions `dist …`; after ⌈log2 p⌉ steps
 * it holds all p blocks and rotates them back into rank order. Blocks may differ in length
 * (allgatherv): every rank knows the counts, so each range is sized exactly.
 *
 * Cost: ⌈log2 p⌉ α + ((p − 1)/p) nβ (n the total bytes) for any p, plus one local rotation copy of n
 * (skipped on rank 0, whose rotation is the identity) and one scratch buffer of n.
 *
 * Wins: short totals (MPICH: < 80 KiB) when p is not a power of two; for powers of two recursive
 * doubling does the same without the rotation, and for long totals the ring wins.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { displacements, rotated } from './layout.js';

/**
 * Gathers every rank's block into `out` on every rank, by Bruck's algorithm. `out` holds the blocks
 * packed in rank order (block `i` is `counts[i]` bytes at the prefix sum of `counts` before `i`);
 * this rank's own block is already in place on entry. `counts` is the same on every rank.
 */
export async function allgatherBruck(io: CollectiveIO, out: Uint8Array, counts: readonly number[]): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  if (size === 1) return;
  const d = displacements(counts);
  // td: displacements in rotated order (position i = block of rank + i).
  const td = displacements(rotated(counts, rank));
  const work = rank === 0 ? out : new Uint8Array(d[size]);
  if (rank !== 0) work.set(out.subarray(d[rank], d[rank + 1]), 0);

  for (let dist = 1; dist < size; dist <<= 1) {
    const n = Math.min(dist, size - dist);
    const to = (rank - dist + size) % size;
    const from = (rank + dist) % size;
    // Sends positions [0, n), receives [dist, dist + n): disjoint, since n ≤ dist.
    const pending: PromiseLike<void>[] = [];
    if (td[dist + n] > td[dist]) pending.push(io.recv(from, work.subarray(td[dist], td[dist + n])));
    if (td[n] > 0) pending.push(io.send(to, work.subarray(0, td[n])));
    await io.waitAll(pending);
  }

  if (rank !== 0) {
    // Positions 1 … size − rank − 1 are ranks rank + 1 … size − 1; the rest are ranks 0 … rank − 1.
    const wrap = size - rank;
    out.set(work.subarray(td[1], td[wrap]), d[rank + 1]);
    out.set(work.subarray(td[wrap], td[size]), 0);
  }
}
