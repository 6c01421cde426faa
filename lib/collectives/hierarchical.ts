/**
 * Locality-aware (two-level) collectives, in the manner of MVAPICH2's shared-memory collectives and
 * Open MPI's `han`: when a communicator spans several shared-memory groups (one host's processes and
 * VMs, found by `splitByLocality('host')`'s rule), barrier, bcast, reduce and allreduce run within
 * each group, then across the groups' leaders (the lowest rank of each group), then back within each
 * group. Only the leader step crosses the network, once per group instead of once per rank.
 *
 * The sub-communicators are internal and made once per communicator, at its first hierarchical
 * collective (every rank decides the same way from the locality cards, so every rank makes them at
 * the same call). Results are bit-identical on every rank: each group's leader broadcasts one result.
 * The reduction order differs from the flat algorithms' (groups first), which is why only commutative
 * ops go hierarchical.
 *
 * @module
 */

import type { Communicator } from '../communicator.js';
import type { ReduceOp } from './operations.js';

/** The two levels, as seen from one rank. */
export interface Hierarchy {
  /** The ranks of this rank's group (ordered by rank in the parent). */
  readonly local: Communicator;
  /** The groups' leaders, ordered by rank in the parent; `undefined` on ranks that are not leaders. */
  readonly leaders: Communicator | undefined;
  /** Per parent rank: its group's index among the leaders. */
  readonly groupOf: readonly number[];
  /** Per parent rank: its rank in its group's local communicator. */
  readonly localRankOf: readonly number[];
}

/** Tag for the one point-to-point step (a reduce result to a root that is not its group's leader). */
const RESULT_TAG = 1;

/** Barrier: within groups, across leaders, within groups again (release). */
export async function hierarchicalBarrier(h: Hierarchy): Promise<void> {
  await h.local.barrier();
  if (h.leaders) await h.leaders.barrier();
  await h.local.barrier();
}

/** Broadcast from `root` (a parent rank). */
export async function hierarchicalBcast<T>(h: Hierarchy, value: T | undefined, root: number, parentRank: number): Promise<T> {
  const rootGroup = h.groupOf[root];
  const mine = h.groupOf[parentRank];
  let v = value as T;
  // The root's group first (so its leader holds the value), then the leaders, then the other groups.
  if (mine === rootGroup) v = await h.local.bcast(v, h.localRankOf[root]);
  if (h.leaders) v = await h.leaders.bcast(v, rootGroup);
  if (mine !== rootGroup) v = await h.local.bcast(v, 0);
  return v;
}

/** {@link hierarchicalBcast} of raw bytes into every rank's `view` (`bcastBuffer`). */
export async function hierarchicalBcastBuffer<V extends ArrayBufferView>(h: Hierarchy, view: V, root: number, parentRank: number): Promise<V> {
  const rootGroup = h.groupOf[root];
  const mine = h.groupOf[parentRank];
  if (mine === rootGroup) await h.local.bcastBuffer(view, h.localRankOf[root]);
  if (h.leaders) await h.leaders.bcastBuffer(view, rootGroup);
  if (mine !== rootGroup) await h.local.bcastBuffer(view, 0);
  return view;
}

/** Reduce to `root` (a parent rank): groups to their leaders, leaders to the root's leader, then to the root. */
export async function hierarchicalReduce<T>(h: Hierarchy, value: T, op: ReduceOp, root: number, parentRank: number): Promise<T | undefined> {
  const partial = await h.local.reduce(value, op, 0);
  const rootGroup = h.groupOf[root];
  let result: T | undefined;
  if (h.leaders) result = await h.leaders.reduce(partial as T, op, rootGroup);
  if (h.groupOf[parentRank] !== rootGroup) return undefined;
  const rootLocal = h.localRankOf[root];
  if (rootLocal === 0) return parentRank === root ? result : undefined;
  if (h.local.rank === 0) await h.local.send(result, rootLocal, RESULT_TAG);
  return parentRank === root ? h.local.recv<T>(0, RESULT_TAG) : undefined;
}

/** Allreduce: reduce within groups, allreduce across leaders, broadcast within groups. */
export async function hierarchicalAllreduce<T>(h: Hierarchy, value: T, op: ReduceOp): Promise<T> {
  const partial = await h.local.reduce(value, op, 0);
  let result = partial as T;
  if (h.leaders) result = await h.leaders.allreduce(partial as T, op);
  return h.local.bcast(result, 0);
}

/**
 * The groups of a communicator, from each parent rank's group key (the lowest world rank of its
 * locality group): group index per rank in order of first appearance, and the number of groups.
 */
export function groupIndices(keys: readonly number[]): { groupOf: number[]; count: number; largest: number } {
  const index = new Map<number, number>();
  const sizes: number[] = [];
  const groupOf = keys.map((k) => {
    let g = index.get(k);
    if (g === undefined) index.set(k, (g = index.size));
    sizes[g] = (sizes[g] ?? 0) + 1;
    return g;
  });
  return { groupOf, count: index.size, largest: Math.max(0, ...sizes) };
}
