/**
 * All-to-all by Bruck's algorithm (Bruck et al. 1997; MPICH's short-message alltoall).
 *
 * 1. Rotate: position i of a scratch buffer gets the block for rank `rank + i` (mod p).
 * 2. For each bit k (dist = 2^k < p): pack every position whose index has bit k set, send the pack
 *    to `rank + dist`, receive the same positions from `rank − dist`, unpack in place. By induction,
 *    after the steps for bits 0 … k position i holds the block that rank `rank − (i mod 2^(k+1))`
 *    meant for rank `rank − (i mod 2^(k+1)) + i`; after all bits, the block from `rank − i` to this rank.
 * 3. Unrotate: block from rank `rank − i` goes to `recv` at that rank's position.
 *
 * Cost: ⌈log2 p⌉ α + ⌈log2 p⌉ · (p/2) · bβ for blocks of b bytes, plus local copies (rotation, packs)
 * of about (2 + log2 p) · pb. Each block travels up to log2 p hops, so the β term grows with log p.
 *
 * Wins: short blocks at larger p, where latency dominates (MPICH: b ≤ 256 bytes and p ≥ 8).
 * Otherwise pairwise exchange.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';

/**
 * Exchanges `blockBytes`-byte blocks between every pair of ranks by Bruck's algorithm. `send` holds
 * `size` blocks, block j for rank j; `recv` receives `size` blocks, block j from rank j (this rank's
 * own block included). `send` and `recv` must not overlap.
 */
export async function alltoallBruck(io: CollectiveIO, send: Uint8Array, recv: Uint8Array, blockBytes: number): Promise<void> {
  const size = io.size;
  const rank = io.rank;
  const b = blockBytes;
  if (size === 1 || b === 0) {
    recv.set(send.subarray(rank * b, rank * b + b), rank * b);
    return;
  }
  // Most positions any step moves: how many i < size have a given bit set, at worst ⌊size/2⌋.
  let packBlocks = 0;
  for (let dist = 1; dist < size; dist <<= 1) {
    let n = 0;
    for (let i = dist; i < size; i++) if (i & dist) n++;
    packBlocks = Math.max(packBlocks, n);
  }
  // One allocation per call: rotated blocks, outgoing pack, incoming pack.
  const scratch = new Uint8Array((size + 2 * packBlocks) * b);
  const work = scratch.subarray(0, size * b);
  const outPack = scratch.subarray(size * b, (size + packBlocks) * b);
  const inPack = scratch.subarray((size + packBlocks) * b);

  work.set(send.subarray(rank * b), 0);
  work.set(send.subarray(0, rank * b), (size - rank) * b);

  for (let dist = 1; dist < size; dist <<= 1) {
    let n = 0;
    for (let i = dist; i < size; i++) if (i & dist) outPack.set(work.subarray(i * b, i * b + b), b * n++);
    const pending = [io.recv((rank - dist + size) % size, inPack.subarray(0, n * b)), io.send((rank + dist) % size, outPack.subarray(0, n * b))];
    await io.waitAll(pending);
    n = 0;
    for (let i = dist; i < size; i++) {
      if (!(i & dist)) continue;
      work.set(inPack.subarray(n * b, n * b + b), i * b);
      n++;
    }
  }

  for (let i = 0; i < size; i++) {
    const from = (rank - i + size) % size;
    recv.set(work.subarray(i * b, i * b + b), from * b);
  }
}
