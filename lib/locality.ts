/**
 * Choosing a transport per pair (DESIGN section 4; Huang, Koop, Gao, Panda, SC'07: detect, don't
 * configure). Round one exchanges locality cards; each rank then probes every peer with every
 * transport both cards list; round two exchanges the answers as reachability bitmaps. A pair uses the
 * highest-priority transport that both cards list and that was proven in *both* directions. Both ends
 * compute the choice from the same two rounds of data with the same function, so they always agree.
 *
 * Pure functions: the exchanges themselves happen in `world.ts`.
 *
 * @module
 */

import type { LocalityCard } from './backend.js';

/** One rank's round-two answer: per transport name, a bitmap (base64) of the peers it reaches. */
export type Reachability = { [transport: string]: string };

/** Packs `reach(peer)` for peers 0 … size−1 into a base64 bitmap (bit p = byte p>>3, bit p&7). */
export function encodeBitmap(size: number, reach: (peer: number) => boolean): string {
  const bytes = new Uint8Array(Math.ceil(size / 8));
  for (let p = 0; p < size; p++) if (reach(p)) bytes[p >> 3] |= 1 << (p & 7);
  return Buffer.from(bytes).toString('base64');
}

/** Whether bit `peer` is set in a bitmap from {@link encodeBitmap}; malformed or absent = false. */
export function bitmapHas(bitmap: string | undefined, peer: number): boolean {
  if (typeof bitmap !== 'string') return false;
  const bytes = Buffer.from(bitmap, 'base64');
  return peer >> 3 < bytes.length && (bytes[peer >> 3] & (1 << (peer & 7))) !== 0;
}

/** Why a pair got its transport (for `vmcomm info` and error messages). */
export interface PairChoice {
  /** The chosen transport, or undefined when none reaches. */
  readonly transport: string | undefined;
  /** Candidates considered, highest priority first, with why each lower one lost. */
  readonly considered: readonly { name: string; priority: number; listedByBoth: boolean; aReachesB: boolean; bReachesA: boolean }[];
}

/**
 * The transport for the pair (a, b). Symmetric: `choose(a, b) === choose(b, a)`.
 */
export function choosePairTransport(a: number, b: number, cards: readonly LocalityCard[], reach: readonly Reachability[]): PairChoice {
  const lo = cards[Math.min(a, b)];
  const ca = cards[a];
  const cb = cards[b];
  const names = new Set([...Object.keys(ca.backends), ...Object.keys(cb.backends)]);
  // Priority from the lower rank's card so both ends rank candidates identically; ties by name.
  const priorityOf = (n: string) => lo.priorities[n] ?? ca.priorities[n] ?? cb.priorities[n] ?? -Infinity;
  const ordered = [...names].sort((x, y) => priorityOf(y) - priorityOf(x) || (x < y ? -1 : x > y ? 1 : 0));
  const considered: PairChoice['considered'][number][] = [];
  for (const name of ordered) {
    const listedByBoth = name in ca.backends && name in cb.backends;
    const aReachesB = bitmapHas(reach[a]?.[name], b);
    const bReachesA = bitmapHas(reach[b]?.[name], a);
    considered.push({ name, priority: priorityOf(name), listedByBoth, aReachesB, bReachesA });
    if (listedByBoth && aReachesB && bReachesA) return { transport: name, considered };
  }
  return { transport: undefined, considered };
}

/** Describes why no transport connects a pair, for the error message. */
export function explainNoTransport(a: number, b: number, choice: PairChoice): string {
  if (choice.considered.length === 0) return `ranks ${a} and ${b} have no transport in common`;
  const why = choice.considered
    .map((c) => `${c.name}: ${!c.listedByBoth ? 'not available on both' : !c.aReachesB ? `rank ${a} cannot reach rank ${b}` : `rank ${b} cannot reach rank ${a}`}`)
    .join('; ');
  return `no transport connects ranks ${a} and ${b} (${why})`;
}

/** How far `splitByLocality` groups ranks: one process, one operating system, one physical host. */
export type LocalityLevel = 'process' | 'os' | 'host';

/** Transports whose mutual proof puts two ranks on one OS (they share memory through its kernel). */
const SAME_OS = ['threads', 'shm'];
/** … and on one host (memory shared across VMs). */
const SAME_HOST = [...SAME_OS, 'ivshmem'];

/**
 * Per world rank, the lowest world rank of its group at `level`: ranks of one process (same nonce),
 * of one OS (same process, or a `threads`/`shm` proof in both directions), or of one host (also an
 * `ivshmem` proof both ways), closed transitively. Built from the cards and bitmaps every rank holds,
 * so every rank computes the same groups. Groups are what vmcomm *proved*: with `shm` excluded by
 * `VMCOMM_BACKENDS`, two processes of one OS are two groups.
 */
export function localityGroups(level: LocalityLevel, cards: readonly LocalityCard[], reach: readonly Reachability[]): number[] {
  const n = cards.length;
  const parent = Array.from({ length: n }, (_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  const union = (a: number, b: number) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  const proofs = level === 'process' ? [] : level === 'os' ? SAME_OS : SAME_HOST;
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      if (cards[a].processNonce === cards[b].processNonce || proofs.some((t) => bitmapHas(reach[a]?.[t], b) && bitmapHas(reach[b]?.[t], a))) union(a, b);
    }
  }
  return Array.from({ length: n }, (_, i) => find(i));
}
