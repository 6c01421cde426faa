/**
 * Scatter of per-rank byte counts (scatterv), binomial or linear: the mirror of `gatherv`.
 *
 * Every rank knows every count, so the binomial tree ({@link scattervBinomial}) always works; it
 * saves latencies (⌈log2 p⌉ instead of p − 1) but forwards each subtree through its intermediate
 * ranks, so one large block deep in the tree is carried up to log2 p times.
 *
 * - Linear ({@link scattervLinear}): the root posts one send per non-empty block at once. Cost
 *   (p − 1) α + (n − own) β at the root's link.
 * - `auto` ({@link scatterv}'s default): the same α–β comparison as gatherv's (a scatter tree is a
 *   gather tree run backwards, with the same critical path), via {@link gathervTreeWins}.
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import { gathervTreeWins } from './gatherv.js';
import type { VAlgorithm } from './gatherv.js';
import type { CollectiveIO } from './io.js';
import { displacements } from './layout.js';
import { scattervBinomial } from './scatter-binomial.js';

/**
 * Scatters blocks of per-rank lengths from `root`, which sends each rank its block directly.
 * `counts[i]` is rank i's block length in bytes (the same table on every rank); `inp` (root only)
 * holds the blocks packed in rank order; every rank, the root included, receives into `block`.
 */
export async function scattervLinear(io: CollectiveIO, inp: Uint8Array | undefined, block: Uint8Array, counts: readonly number[], root: number): Promise<void> {
  const size = io.size;
  if (io.rank !== root) {
    // Empty blocks travel too, so a rank whose counts disagree is caught by the length and hash checks.
    await io.waitAll([io.recv(root, block)]);
    return;
  }
  if (!inp) throw new VmcommError('INVALID_ARGUMENT', 'scatterv: the root needs an input buffer');
  const d = displacements(counts);
  block.set(inp.subarray(d[root], d[root + 1]));
  const sends: PromiseLike<void>[] = [];
  for (let r = 0; r < size; r++) if (r !== root) sends.push(io.send(r, inp.subarray(d[r], d[r + 1])));
  await io.waitAll(sends);
}

/**
 * Scatters blocks of per-rank lengths from `root`. `counts[i]` is rank i's block length in bytes (the
 * same table on every rank; `block.byteLength` is `counts[rank]`); `inp` (root only) holds the
 * blocks packed in rank order; other ranks pass `undefined`.
 *
 * @param algorithm `binomial`, `linear`, or `auto` (default): the one {@link gathervTreeWins} picks.
 *   Every rank must pass the same.
 */
export async function scatterv(io: CollectiveIO, inp: Uint8Array | undefined, block: Uint8Array, counts: readonly number[], root: number, algorithm: VAlgorithm = 'auto'): Promise<void> {
  const tree = algorithm === 'binomial' || (algorithm === 'auto' && gathervTreeWins(counts, root));
  await (tree ? scattervBinomial : scattervLinear)(io, inp, block, counts, root);
}
