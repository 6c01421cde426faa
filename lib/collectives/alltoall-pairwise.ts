/**
 * All-to-all by pairwise exchange (MPICH's long-message alltoall). In step i (1 ≤ i < p) each rank
 * sends its block for `rank + i` and receives the block from `rank − i` (mod p); when p is a power of
 * two the partner is `rank XOR i` instead, so each step is a true pairwise swap (both directions of
 * one link, the pattern switched networks handle best).
 *
 * Cost: (p − 1)(α + bβ) per rank for blocks of b bytes: each byte sent once, directly, no scratch.
 *
 * Wins: medium and long blocks (MPICH: > 256 bytes, or any length when p < 8); for short blocks at
 * larger p, Bruck's ⌈log2 p⌉ steps beat these p − 1.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { isPowerOfTwo } from './layout.js';

/**
 * Exchanges `blockBytes`-byte blocks between every pair of ranks by pairwise exchange. `send` holds
 * `size` blocks, block j for rank j; `recv` receives `size` blocks, block j from rank j (this rank's
 * own block is copied across). `send` and `recv` must not overlap.
 */
export async function alltoallPairwise(io: CollectiveIO, send: Uint8Array, recv: Uint8Array, blockBytes: number): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  const b = blockBytes;
  recv.set(send.subarray(rank * b, rank * b + b), rank * b);
  if (b === 0) return;
  const xor = isPowerOfTwo(size);
  for (let i = 1; i < size; i++) {
    const to = xor ? rank ^ i : (rank + i) % size;
    const from = xor ? rank ^ i : (rank - i + size) % size;
    // Receive posted first: both sides send in this step, and under rendezvous a send completes only
    // when matched.
    await io.waitAll([io.recv(from, recv.subarray(from * b, from * b + b)), io.send(to, send.subarray(to * b, to * b + b))]);
  }
}
