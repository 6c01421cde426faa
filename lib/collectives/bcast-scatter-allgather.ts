/**
 * Broadcast by scatter then allgather (van de Geijn; MPICH's long-message broadcast). The message is
 * cut into p chunks of ⌈n / p⌉ bytes (the last ones shorter or empty); a binomial scatter gives each
 * rank (numbered relative to the root) its chunk, then a ring allgather gives every rank every chunk.
 *
 * Cost: scatter ⌈log2 p⌉ α + ((p − 1)/p) nβ, ring (p − 1) α + ((p − 1)/p) nβ: about
 * (log2 p + p − 1) α + 2nβ, against the binomial tree's log2 p · nβ.
 *
 * Wins: long messages at moderate p (MPICH: n ≥ 12 KiB and p ≥ 8, with a ring from 512 KiB); beyond
 * n ≈ p · segment the segmented pipeline's ≈ nβ beats its 2nβ.
 *
 * @module
 */

import { allgatherRing } from './allgather-ring.js';
import type { CollectiveIO } from './io.js';
import { relativeIO } from './layout.js';

/**
 * Broadcasts `data` from `root` to every rank by binomial scatter plus ring allgather. `data` holds
 * the message at the root on entry and at every rank on exit; every rank passes the same length.
 */
export async function bcastScatterAllgather(io: CollectiveIO, data: Uint8Array, root: number): Promise<void> {
  const size = io.size;
  const n = data.byteLength;
  if (size === 1 || n === 0) return;
  // Relative numbering makes the root rank 0, so relative rank v owns chunk v and the scatter is the
  // textbook binomial one; the ring is the same ring either way.
  const rio = relativeIO(io, root);
  const me = rio.rank;
  const chunk = Math.ceil(n / size);
  const start = (v: number) => Math.min(v * chunk, n);

  // Scatter: receive my subtree's chunks [me, me + lowbit(me)) from the parent, then hand each child
  // its subtree's chunks. Empty ranges (short messages leave the last ranks without a chunk) are
  // skipped on both ends.
  let mask = 1;
  for (; mask < size; mask <<= 1) {
    if (me & mask) {
      const mine = data.subarray(start(me), start(Math.min(me + mask, size)));
      if (mine.byteLength > 0) await rio.waitAll([rio.recv(me - mask, mine)]);
      break;
    }
  }
  const sends: PromiseLike<void>[] = [];
  for (mask >>= 1; mask > 0; mask >>= 1) {
    const child = me + mask;
    if (child >= size) continue;
    const theirs = data.subarray(start(child), start(Math.min(child + mask, size)));
    if (theirs.byteLength > 0) sends.push(rio.send(child, theirs));
  }
  // Finish the scatter before the ring writes into `data` again (it rewrites chunks these sends
  // read, with the same bytes, but a transport may still be reading them).
  await rio.waitAll(sends);

  const counts = Array.from({ length: size }, (_, v) => start(v + 1) - start(v));
  await allgatherRing(rio, data, counts);
}
