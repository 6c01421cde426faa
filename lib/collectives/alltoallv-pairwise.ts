/**
 * All-to-all with per-pair byte counts (alltoallv) by pairwise exchange: in step i (1 ≤ i < p) each
 * rank sends to `rank + i` and receives from `rank − i` (mod p), or swaps with `rank XOR i` when p is a
 * power of two. Empty transfers are skipped: a rank's `sendCounts[j]` equals rank j's
 * `recvCounts[rank]`, so both ends agree on which messages exist.
 *
 * Cost: Σ over non-empty peers of (α + cβ), at most (p − 1) α + (sent bytes) β per rank, each byte
 * sent once, no scratch. One exchange in flight per rank keeps memory and network load bounded,
 * unlike posting all p − 1 pairs at once.
 *
 * Wins: alltoallv of any size; for sparse patterns (most counts zero) its cost falls to the
 * non-empty pairs. Short uniform exchanges at larger p are better served by Bruck on the padded
 * maximum count.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { displacements, isPowerOfTwo } from './layout.js';

/**
 * Exchanges blocks of per-pair lengths between every pair of ranks by pairwise exchange. `send`
 * holds the blocks for ranks 0 … size − 1 packed in order, `sendCounts[j]` bytes for rank j; `recv`
 * receives the blocks from ranks 0 … size − 1 packed in order, `recvCounts[j]` bytes from rank j.
 * This rank's own block is copied across (`sendCounts[rank]` must equal `recvCounts[rank]`). `send`
 * and `recv` must not overlap.
 */
export async function alltoallvPairwise(io: CollectiveIO, send: Uint8Array, sendCounts: readonly number[], recv: Uint8Array, recvCounts: readonly number[]): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  const sd = displacements(sendCounts);
  const rd = displacements(recvCounts);
  recv.set(send.subarray(sd[rank], sd[rank + 1]), rd[rank]);
  const xor = isPowerOfTwo(size);
  for (let i = 1; i < size; i++) {
    const to = xor ? rank ^ i : (rank + i) % size;
    const from = xor ? rank ^ i : (rank - i + size) % size;
    // Empty blocks travel too: each side's length check then catches a pair whose counts disagree
    // (one side 0, the other not), which would otherwise wait forever.
    await io.waitAll([io.recv(from, recv.subarray(rd[from], rd[from + 1])), io.send(to, send.subarray(sd[to], sd[to + 1]))]);
  }
}
