/**
 * Gather of per-rank byte counts (gatherv), binomial or linear.
 *
 * Here, unlike in MPI, every rank knows every count, so the binomial tree
 * ({@link gathervBinomial}) always works: each rank can size its subtree. The tree is not always the
 * better choice, though. With equal blocks it has the same bandwidth term as linear and only
 * ⌈log2 p⌉ latencies instead of p − 1; but each intermediate rank forwards its whole subtree, so one
 * large block deep in the tree is carried up to log2 p times, where a linear gather carries it once.
 *
 * - Linear ({@link gathervLinear}): every rank sends its block straight to the root, which posts all
 *   receives at once. Cost (p − 1) α + (n − own) β at the root's link. MPICH and Open MPI use it for
 *   gatherv because their non-roots do not know the other counts.
 * - `auto` ({@link gatherv}'s default): evaluates both on a simple α–β model with the actual counts
 *   ({@link gathervTreeWins}) and takes the cheaper; every rank computes the same answer from the
 *   same counts, so no agreement step is needed.
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import { gathervBinomial } from './gather-binomial.js';
import type { CollectiveIO } from './io.js';
import { displacements, rotated } from './layout.js';

/**
 * The ratio α/β of the cost model, in bytes: a message's latency expressed as the bytes that would
 * take as long to transfer. 16 KiB sits between shared memory (α ≈ 1 µs at ≈ 10 GB/s) and TCP
 * (α ≈ 30 µs at ≈ 1–3 GB/s).
 */
export const V_TREE_LATENCY_BYTES = 16 * 1024;

/** Which algorithm {@link gatherv} and `scatterv` run: `auto` picks by {@link gathervTreeWins}. */
export type VAlgorithm = 'auto' | 'binomial' | 'linear';

/**
 * Whether the binomial tree is expected to finish no later than the linear algorithm for these
 * counts and this root, on an α–β model where each rank's link handles one message at a time and a
 * rank forwards only once its subtree is complete. Applies to gatherv and (by symmetry) scatterv.
 *
 * @param latencyBytes α/β in bytes (default {@link V_TREE_LATENCY_BYTES}).
 */
export function gathervTreeWins(counts: readonly number[], root: number, latencyBytes: number = V_TREE_LATENCY_BYTES): boolean {
  const size = counts.length;
  const rd = displacements(rotated(counts, root));
  // done[v]: when relative rank v holds its whole subtree (in units of α). Children are higher
  // ranks, so one downward sweep settles every rank after its children.
  const done = new Float64Array(size);
  for (let v = size - 1; v >= 0; v--) {
    const span = v === 0 ? size : Math.min(v & -v, size - v);
    let t = 0;
    for (let m = 1; m < span; m <<= 1) {
      const bytes = rd[Math.min(v + 2 * m, v + span)] - rd[v + m];
      if (bytes > 0) t = Math.max(t, done[v + m]) + 1 + bytes / latencyBytes;
    }
    done[v] = t;
  }
  let linear = 0;
  for (let r = 0; r < size; r++) if (r !== root) linear += 1 + counts[r] / latencyBytes; // every rank sends, empty or not
  return done[0] <= linear;
}

/**
 * Gathers blocks of per-rank lengths to `root`, each rank sending straight to the root. `counts[i]`
 * is rank i's block length in bytes (the same table on every rank); `out` (root only) receives the
 * blocks packed in rank order, the root's own included.
 */
export async function gathervLinear(io: CollectiveIO, block: Uint8Array, out: Uint8Array | undefined, counts: readonly number[], root: number): Promise<void> {
  const size = io.size;
  if (io.rank !== root) {
    // Empty blocks travel too, so a rank whose counts disagree is caught by the length and hash checks.
    await io.waitAll([io.send(root, block)]);
    return;
  }
  if (!out) throw new VmcommError('INVALID_ARGUMENT', 'gatherv: the root needs an output buffer');
  const d = displacements(counts);
  out.set(block, d[root]);
  const recvs: PromiseLike<void>[] = [];
  for (let r = 0; r < size; r++) if (r !== root) recvs.push(io.recv(r, out.subarray(d[r], d[r + 1])));
  await io.waitAll(recvs);
}

/**
 * Gathers blocks of per-rank lengths to `root`. `counts[i]` is rank i's block length in bytes (the
 * same table on every rank; `block.byteLength` is `counts[rank]`); `out` (root only) receives the
 * blocks packed in rank order, the root's own included; other ranks pass `undefined`.
 *
 * @param algorithm `binomial`, `linear`, or `auto` (default): the one {@link gathervTreeWins} picks.
 *   Every rank must pass the same.
 */
export async function gatherv(io: CollectiveIO, block: Uint8Array, out: Uint8Array | undefined, counts: readonly number[], root: number, algorithm: VAlgorithm = 'auto'): Promise<void> {
  const tree = algorithm === 'binomial' || (algorithm === 'auto' && gathervTreeWins(counts, root));
  await (tree ? gathervBinomial : gathervLinear)(io, block, out, counts, root);
}
