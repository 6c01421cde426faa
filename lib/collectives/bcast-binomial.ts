/**
 * Broadcast along a binomial tree (MPICH's short-message broadcast). With ranks renumbered so the
 * root is 0, rank `v` receives the whole message from `v − lowbit(v)` and then forwards it to
 * `v + 2^k` for every `2^k < lowbit(v)` (largest subtree first, so the deepest subtree starts first).
 *
 * Cost: ⌈log2 p⌉ (α + nβ) on the critical path; p − 1 messages in all.
 *
 * Wins: short messages (latency-bound, below ~12 KiB), and any length when p ≤ 3 or so, where the
 * other algorithms' extra steps buy nothing. For long messages the nβ term per level loses to
 * `bcastScatterAllgather` (≈ 2nβ in all) and the pipeline (≈ nβ).
 *
 * @module
 */

import type { CollectiveIO } from './io.js';
import { relativeIO } from './layout.js';

/**
 * Broadcasts `data` from `root` to every rank by a binomial tree. `data` holds the message at the
 * root on entry and at every rank on exit; every rank passes a buffer of the same length.
 */
export async function bcastBinomial(io: CollectiveIO, data: Uint8Array, root: number): Promise<void> {
  const size = io.size;
  // Every rank knows the length, so an empty broadcast needs no messages at all.
  if (size === 1 || data.byteLength === 0) return;
  const rio = relativeIO(io, root);
  const me = rio.rank;
  let mask = 1;
  for (; mask < size; mask <<= 1) {
    if (me & mask) {
      await rio.waitAll([rio.recv(me - mask, data)]);
      break;
    }
  }
  // mask is now lowbit(me) (or the first power of two ≥ size at the root): children are below it.
  const sends: PromiseLike<void>[] = [];
  for (mask >>= 1; mask > 0; mask >>= 1) if (me + mask < size) sends.push(rio.send(me + mask, data));
  await rio.waitAll(sends);
}
