/**
 * Allgather by recursive doubling. In step k (mask = 2^k) each rank holds the blocks of its aligned
 * group of `mask` ranks, a contiguous range of `out`, and swaps it with partner `rank XOR mask`,
 * doubling what it holds. Blocks may differ in length (allgatherv): ranges are computed from the
 * counts every rank knows.
 *
 * Non-powers of two follow MPICH's original algorithm (Thakur, Rabenseifner & Gropp 2005), not a
 * fallback: when a partner does not exist, the partner group is cut short, and only the first
 * `size − partnerGroupStart` ranks of this group received its blocks. Those ranks then pass the
 * blocks on to the rest of the group along a binomial tree inside the group (logarithmic extra steps),
 * so every rank again holds its whole (doubled) group before the next step.
 *
 * Cost, p a power of two: log2 p · α + ((p − 1)/p) nβ (n the total bytes), the fewest steps of any
 * bandwidth-optimal allgather. Otherwise up to about 2⌊log2 p⌋ α and some blocks sent more than once.
 *
 * Wins: short-to-medium totals when p is a power of two (MPICH: total < 512 KiB); for other p, Bruck
 * has fewer steps, and for long totals the ring is gentler on the network.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { displacements } from './layout.js';

/**
 * Gathers every rank's block into `out` on every rank, by recursive doubling. `out` holds the blocks
 * packed in rank order (block `i` is `counts[i]` bytes at the prefix sum of `counts` before `i`);
 * this rank's own block is already in place on entry. `counts` is the same on every rank.
 */
export async function allgatherRecursiveDoubling(io: CollectiveIO, out: Uint8Array, counts: readonly number[]): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  const d = displacements(counts);
  // Blocks [lo, hi) clipped to the communicator, as one view of `out`.
  const blocks = (lo: number, hi: number) => out.subarray(d[Math.min(lo, size)], d[Math.min(hi, size)]);

  for (let mask = 1, level = 0; mask < size; mask <<= 1, level++) {
    const partner = rank ^ mask;
    const myGroup = (rank >> level) << level;
    const partnerGroup = (partner >> level) << level;
    if (partner < size) {
      // Invariant: each of us holds its whole group (clipped at size). Receive before sending.
      const mine = blocks(myGroup, myGroup + mask);
      const theirs = blocks(partnerGroup, partnerGroup + mask);
      const pending: PromiseLike<void>[] = [];
      if (theirs.byteLength > 0) pending.push(io.recv(partner, theirs));
      if (mine.byteLength > 0) pending.push(io.send(partner, mine));
      await io.waitAll(pending);
    }
    // The partner group is cut short by size: only ranks myGroup .. myGroup + have − 1 had a partner,
    // so they pass its blocks to the others in this group. (When the cut group lies above ours,
    // partnerGroup = myGroup + mask.)
    if (partnerGroup > myGroup && partnerGroup < size && partnerGroup + mask > size) {
      const have = size - partnerGroup;
      const missing = blocks(partnerGroup, size);
      if (missing.byteLength === 0) continue;
      // Binomial spread inside the group: within each aligned subgroup of 2t ranks, the first `have`
      // ranks (by position in the subgroup) hold the blocks; a lower-half holder sends to its
      // partner in the upper half if that one lacks them. By induction this covers the whole group.
      for (let t = mask >> 1, sub = level; t > 0; t >>= 1, sub--) {
        const peer = rank ^ t;
        const subgroup = (rank >> sub) << sub;
        if (peer > rank && rank < subgroup + have && peer >= subgroup + have) {
          await io.waitAll([io.send(peer, missing)]);
        } else if (peer < rank && peer < subgroup + have && rank >= subgroup + have) {
          await io.waitAll([io.recv(peer, missing)]);
        }
      }
    }
  }
}
