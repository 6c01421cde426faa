/**
 * The short hash of a collective call's arguments that travels in every message of the call
 * (`contexts.ts`): operation, root, op, element count and element type. Ranks that disagree see a
 * different hash on the first message they exchange.
 *
 * @module
 */

/** Collective operations, numbered for the hash (append only: the numbers are on the wire). */
export const COLLECTIVE_CODES = {
  barrier: 1,
  bcast: 2,
  reduce: 3,
  allreduce: 4,
  allreduceBuffer: 5,
  gather: 6,
  allgather: 7,
  scatter: 8,
  alltoall: 9,
  gatherv: 10,
  allgatherv: 11,
  scatterv: 12,
  alltoallv: 13,
  scan: 14,
  exscan: 15,
  reduceScatter: 16,
  split: 17,
  dup: 18,
  bcastBuffer: 19,
} as const;

/** A collective's name. */
export type CollectiveName = keyof typeof COLLECTIVE_CODES;

/** One argument of the hash: numbers are cheap; strings (an algorithm's name) are hashed by their units. */
export type HashPart = number | string | undefined;

/**
 * Hashes the arguments that must match on every rank (FNV-1a over 32-bit words). Fixed parameters,
 * not a rest array: this runs on every collective call.
 */
export function argumentHash(name: CollectiveName, a?: HashPart, b?: HashPart, c?: HashPart, d?: HashPart, e?: HashPart): number {
  let h = mix(0x811c9dc5, COLLECTIVE_CODES[name]);
  h = part(h, a);
  h = part(h, b);
  h = part(h, c);
  h = part(h, d);
  h = part(h, e);
  // Fold to the bits the tag carries, mixing the high half in.
  return (h ^ (h >>> 12) ^ (h >>> 24)) >>> 0;
}

function mix(h: number, w: number): number {
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ ((w >>> (8 * i)) & 0xff), 0x01000193);
  return h;
}

function part(h: number, p: HashPart): number {
  if (p === undefined) return mix(h, 0x7fff_fff1);
  if (typeof p === 'number') return mix(mix(h, p | 0), Math.floor(p / 0x1_0000_0000) | 0);
  h = mix(h, p.length);
  for (let i = 0; i < p.length; i++) h = mix(h, p.charCodeAt(i));
  return h;
}

/** Folds a list of counts into one number for {@link argumentHash}. */
export function countsDigest(counts: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const c of counts) {
    h ^= c | 0;
    h = Math.imul(h, 0x01000193);
    h ^= Math.floor(c / 0x1_0000_0000) | 0;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
