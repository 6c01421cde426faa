/**
 * Gather along a binomial tree (MPICH's gather). With ranks numbered relative to the root, rank `v`
 * owns the subtree of ranks `[v, v + lowbit(v))`; it collects its children's subtrees (child
 * `v + 2^k` for `2^k < lowbit(v)`) next to its own block, then sends the lot to `v − lowbit(v)` in one
 * message. Subtrees are runs of consecutive relative ranks, so each fits one contiguous range.
 *
 * Per-rank counts work the same way ({@link gathervBinomial}): every rank knows every count, so each
 * can size its subtree exactly.
 *
 * Cost: ⌈log2 p⌉ α + ((p − 1)/p) nβ for equal blocks (n the gathered total): the root's link carries
 * each byte once, as in a linear gather, with log2 p instead of p − 1 latencies. Intermediate ranks
 * copy their subtree once (a scratch buffer of the subtree's size). With very uneven counts a large
 * block is forwarded up to log2 p times; see `gatherv` for when linear is then better.
 *
 * Wins: gather of any size (MPICH uses it throughout); linear only when p is tiny.
 *
 * At the root, output is in physical rank order, which is the relative order rotated by `root`: at
 * most one child's subtree straddles the end of the buffer; only that one lands in scratch first.
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import type { CollectiveIO } from './io.js';
import { displacements, relativeIO, rotated, uniformCounts } from './layout.js';

/**
 * Gathers equal blocks to `root` by a binomial tree. `out` (root only) receives `size` blocks of
 * `block.byteLength` bytes in rank order, the root's own block included; other ranks pass
 * `undefined`. Every rank passes a block of the same length.
 */
export async function gatherBinomial(io: CollectiveIO, block: Uint8Array, out: Uint8Array | undefined, root: number): Promise<void> {
  await gathervBinomial(io, block, out, uniformCounts(io.size, block.byteLength), root);
}

/**
 * Gathers blocks of per-rank lengths to `root` by a binomial tree. `counts[i]` is rank i's block
 * length in bytes (the same table on every rank; `block.byteLength` is `counts[rank]`); `out` (root
 * only) receives the blocks packed in rank order, the root's own block included.
 */
export async function gathervBinomial(io: CollectiveIO, block: Uint8Array, out: Uint8Array | undefined, counts: readonly number[], root: number): Promise<void> {
  const size = io.size;
  const rio = relativeIO(io, root);
  const me = rio.rank;
  // rd: displacements in relative order, where every subtree is a contiguous range.
  const rd = displacements(rotated(counts, root));
  const span = me === 0 ? size : Math.min(me & -me, size - me); // ranks in my subtree
  const recvs: PromiseLike<void>[] = [];

  if (me === 0) {
    if (!out) throw new VmcommError('INVALID_ARGUMENT', 'gather: the root needs an output buffer');
    const ad = displacements(counts);
    out.set(block, ad[root]);
    let straddling: { scratch: Uint8Array; first: number } | undefined;
    for (let m = 1; m < span; m <<= 1) {
      const end = Math.min(2 * m, size);
      const bytes = rd[end] - rd[m];
      if (bytes === 0) continue;
      // Physical ranks of child m's subtree: [m + root, end + root), modulo size.
      const first = m + root;
      const last = end + root;
      if (last <= size) recvs.push(rio.recv(m, out.subarray(ad[first], ad[last])));
      else if (first >= size) recvs.push(rio.recv(m, out.subarray(ad[first - size], ad[last - size])));
      else {
        straddling = { scratch: new Uint8Array(bytes), first };
        recvs.push(rio.recv(m, straddling.scratch));
      }
    }
    await rio.waitAll(recvs);
    if (straddling) {
      const head = ad[size] - ad[straddling.first];
      out.set(straddling.scratch.subarray(0, head), ad[straddling.first]);
      out.set(straddling.scratch.subarray(head), 0);
    }
    return;
  }

  const parent = me - (me & -me);
  const total = rd[me + span] - rd[me];
  if (span === 1) {
    // A leaf sends its block as is.
    if (total > 0) await rio.waitAll([rio.send(parent, block)]);
    return;
  }
  const subtree = new Uint8Array(total);
  subtree.set(block, 0);
  for (let m = 1; m < span; m <<= 1) {
    const child = me + m;
    const end = Math.min(me + 2 * m, me + span);
    if (rd[end] > rd[child]) recvs.push(rio.recv(child, subtree.subarray(rd[child] - rd[me], rd[end] - rd[me])));
  }
  await rio.waitAll(recvs);
  if (total > 0) await rio.waitAll([rio.send(parent, subtree)]);
}
