/**
 * Scatter along a binomial tree (MPICH's scatter), the mirror of the binomial gather. With ranks
 * numbered relative to the root, rank `v` receives its subtree's blocks (ranks `[v, v + lowbit(v))`,
 * one contiguous range) from `v − lowbit(v)`, keeps its own, and sends each child `v + 2^k`
 * (`2^k < lowbit(v)`, largest first so the deepest subtree starts earliest) that child's subtree.
 *
 * Per-rank counts work the same way ({@link scattervBinomial}): every rank knows every count.
 *
 * Cost: ⌈log2 p⌉ α + ((p − 1)/p) nβ for equal blocks (n the scattered total); intermediate ranks
 * stage their subtree in one scratch buffer. With very uneven counts a large block is forwarded up
 * to log2 p times; see `scatterv` for when linear is then better.
 *
 * Wins: scatter of any size (MPICH uses it throughout).
 *
 * At the root, input is in physical rank order (the relative order rotated by `root`): the one child
 * subtree that straddles the end of the buffer is packed into scratch; the others are sent in place.
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import type { CollectiveIO } from './io.js';
import { displacements, relativeIO, rotated, uniformCounts } from './layout.js';

/**
 * Scatters equal blocks from `root` by a binomial tree. `inp` (root only) holds `size` blocks of
 * `block.byteLength` bytes in rank order; every rank, the root included, receives its own into
 * `block`. Other ranks pass `undefined` for `inp`.
 */
export async function scatterBinomial(io: CollectiveIO, inp: Uint8Array | undefined, block: Uint8Array, root: number): Promise<void> {
  await scattervBinomial(io, inp, block, uniformCounts(io.size, block.byteLength), root);
}

/**
 * Scatters blocks of per-rank lengths from `root` by a binomial tree. `counts[i]` is rank i's block
 * length in bytes (the same table on every rank; `block.byteLength` is `counts[rank]`); `inp` (root
 * only) holds the blocks packed in rank order.
 */
export async function scattervBinomial(io: CollectiveIO, inp: Uint8Array | undefined, block: Uint8Array, counts: readonly number[], root: number): Promise<void> {
  const size = io.size;
  const rio = relativeIO(io, root);
  const me = rio.rank;
  const rd = displacements(rotated(counts, root));
  const span = me === 0 ? size : Math.min(me & -me, size - me);
  const sends: PromiseLike<void>[] = [];

  if (me === 0) {
    if (!inp) throw new VmcommError('INVALID_ARGUMENT', 'scatter: the root needs an input buffer');
    const ad = displacements(counts);
    block.set(inp.subarray(ad[root], ad[root + 1]));
    let top = 1;
    while (top * 2 < span) top *= 2;
    for (let m = top; m >= 1 && m < span; m >>= 1) {
      const end = Math.min(2 * m, size);
      const bytes = rd[end] - rd[m];
      if (bytes === 0) continue;
      const first = m + root;
      const last = end + root;
      if (last <= size) sends.push(rio.send(m, inp.subarray(ad[first], ad[last])));
      else if (first >= size) sends.push(rio.send(m, inp.subarray(ad[first - size], ad[last - size])));
      else {
        // The straddling subtree: its blocks sit at the end and the start of `inp`.
        const packed = new Uint8Array(bytes);
        packed.set(inp.subarray(ad[first], ad[size]), 0);
        packed.set(inp.subarray(0, ad[last - size]), ad[size] - ad[first]);
        sends.push(rio.send(m, packed));
      }
    }
    await rio.waitAll(sends);
    return;
  }

  const parent = me - (me & -me);
  const total = rd[me + span] - rd[me];
  if (span === 1) {
    if (total > 0) await rio.waitAll([rio.recv(parent, block)]);
    return;
  }
  const subtree = new Uint8Array(total);
  if (total > 0) await rio.waitAll([rio.recv(parent, subtree)]);
  let top = 1;
  while (top * 2 < span) top *= 2;
  for (let m = top; m >= 1; m >>= 1) {
    const child = me + m;
    const end = Math.min(me + 2 * m, me + span);
    if (rd[end] > rd[child]) sends.push(rio.send(child, subtree.subarray(rd[child] - rd[me], rd[end] - rd[me])));
  }
  block.set(subtree.subarray(0, rd[me + 1] - rd[me]));
  await rio.waitAll(sends);
}
