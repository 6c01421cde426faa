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
