/**
 * Buffer and rank layout shared by the data-movement collectives: displacements from per-rank byte
 * counts, rotations of per-rank tables, and a view of a {@link CollectiveIO} renumbered relative to a
 * root (so tree algorithms are written once, for root 0).
 *
 * @module
 */

import type { CollectiveIO } from './io.js';

/**
 * Prefix sums of `counts`: entry `i` is the byte offset where block `i` starts when the blocks are
 * packed in order, and entry `counts.length` is the total. One entry longer than `counts`, so block
 * `i` is always `[d[i], d[i + 1])` and a run of blocks `lo..hi-1` is `[d[lo], d[hi])`.
 */
export function displacements(counts: readonly number[]): number[] {
  const d = new Array<number>(counts.length + 1);
  d[0] = 0;
  for (let i = 0; i < counts.length; i++) d[i + 1] = d[i] + counts[i];
  return d;
}

/** `values` rotated left by `shift`: entry `i` is `values[(i + shift) % length]`. */
export function rotated<T>(values: readonly T[], shift: number): T[] {
  const n = values.length;
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) out[i] = values[(i + shift) % n];
  return out;
}

/** `size` copies of `bytes`: the counts of a collective whose blocks are all the same length. */
export function uniformCounts(size: number, bytes: number): number[] {
  return new Array<number>(size).fill(bytes);
}

/**
 * `io` with ranks renumbered so that `root` is rank 0 (rank `r` becomes `(r − root) mod size`).
 * Tree algorithms (binomial, chain) are written for root 0 and run on this view; messages still go
 * to the same physical peers. Returns `io` itself when `root` is 0.
 */
export function relativeIO(io: CollectiveIO, root: number): CollectiveIO {
  if (root === 0) return io;
  const size = io.size;
  const physical = (peer: number) => (peer + root) % size;
  return {
    rank: (io.rank - root + size) % size,
    size,
    send: (peer, bytes) => io.send(physical(peer), bytes),
    recv: (peer, into) => io.recv(physical(peer), into),
    recvBytes: (peer) => io.recvBytes(physical(peer)),
    waitAll: (pending) => io.waitAll(pending),
  };
}

/**
 * Marks `pending` as handled and returns it unchanged. For operations an algorithm starts now but
 * waits for later (deferred sends, pre-posted receives): if the algorithm fails in between, their
 * rejections would otherwise surface as unhandled rejections. A later `waitAll` still sees the error.
 */
export function quiet<T>(pending: PromiseLike<T>): PromiseLike<T> {
  pending.then(undefined, () => undefined);
  return pending;
}

/** Whether `n` is a power of two (1 included). */
export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}
