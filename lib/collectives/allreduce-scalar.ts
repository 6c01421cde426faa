/**
 * Allreduce of one JavaScript number with SUM, PROD, MIN or MAX — the most common collective call of
 * all (a residual, a time step, a count) — by recursive doubling with the same fold and reduction
 * order as `allreduce-recursive-doubling.ts`, but combining plain numbers: no typed-array views are
 * made per call (each costs ~0.1–0.3 µs in V8, more than the arithmetic), and the 8-byte message
 * buffers come from a pool of off-heap buffers.
 *
 * Both partners of every exchange combine the same two numbers in the same order (lower group
 * first), so every rank gets a bit-identical result.
 *
 * @module
 */

import { foldRanks, type Fold } from './blocks.js';
import type { CollectiveIO } from './io.js';

/** An 8-byte message buffer with a float64 view of it. */
interface Cell {
  readonly bytes: Uint8Array;
  readonly value: Float64Array;
}

const pool: Cell[] = [];

function take(): Cell {
  const c = pool.pop();
  if (c) return c;
  // An explicit ArrayBuffer lives off the V8 heap: views over it never need materializing.
  const b = new ArrayBuffer(8);
  return { bytes: new Uint8Array(b), value: new Float64Array(b) };
}

function give(c: Cell): void {
  if (pool.length < 64) pool.push(c);
}

/** Folds by (rank, size), made once: `foldRanks` allocates closures, and this runs on every call. */
const folds = new Map<number, Fold>();
function foldOf(rank: number, size: number): Fold {
  const key = size * 0x1_0000_0 + rank;
  let f = folds.get(key);
  if (f === undefined) folds.set(key, (f = foldRanks(rank, size)));
  return f;
}

/** `a op b` for a predefined arithmetic op, `a` from the lower ranks. */
export type ScalarOp = (a: number, b: number) => number;

/** The arithmetic ops on numbers, as MPI defines them on doubles (MIN/MAX as Math.min/Math.max: NaN wins). */
export const SCALAR_OPS: Readonly<Record<'SUM' | 'PROD' | 'MIN' | 'MAX', ScalarOp>> = {
  SUM: (a, b) => a + b,
  PROD: (a, b) => a * b,
  MIN: Math.min,
  MAX: Math.max,
};

/** The reduction of every rank's `value` with `op`, on every rank. */
export async function allreduceScalar(io: CollectiveIO, value: number, op: ScalarOp): Promise<number> {
  if (io.size === 1) return value;
  const fold = foldOf(io.rank, io.size);
  const mine = take();
  const theirs = take();
  try {
    let acc = value;
    if (fold.partner >= 0) {
      if (fold.newRank < 0) {
        mine.value[0] = acc;
        await io.send(fold.partner, mine.bytes);
      } else {
        await io.recv(fold.partner, theirs.bytes);
        acc = fold.partner < io.rank ? op(theirs.value[0], acc) : op(acc, theirs.value[0]);
      }
    }
    if (fold.newRank >= 0) {
      for (let mask = 1; mask < fold.pof2; mask <<= 1) {
        const partnerNew = fold.newRank ^ mask;
        const peer = fold.real(partnerNew);
        mine.value[0] = acc;
        const r = io.recv(peer, theirs.bytes);
        await io.waitAll([io.send(peer, mine.bytes), r]);
        acc = partnerNew < fold.newRank ? op(theirs.value[0], acc) : op(acc, theirs.value[0]);
      }
    }
    if (fold.partner >= 0) {
      if (fold.newRank < 0) {
        await io.recv(fold.partner, theirs.bytes);
        acc = theirs.value[0];
      } else {
        mine.value[0] = acc;
        await io.send(fold.partner, mine.bytes);
      }
    }
    return acc;
  } finally {
    give(mine);
    give(theirs);
  }
}
