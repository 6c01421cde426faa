// Timing, OSU-style but robust to a noisy VM: every iteration is timed; a round's "typical" value is
// the median of its block medians (blocks of consecutive iterations, so one preemption spoils one
// block, not the round), its mean is over all of its iterations. Rank 0 makes every decision that
// changes how many iterations run (warm-up length, iterations per round) and tells the others, so
// every rank runs the same number.
import type { Communicator } from 'vmcomm';
import { warmUpSettled } from '../../dist/lib/launch/bench-protocol.js';

/** One iteration of a pattern; returns undefined when it completed synchronously. */
export type Step = () => Promise<unknown> | undefined;

/**
 * What a pattern runs per iteration: `step` is timed; `sync`, when present, runs after it untimed
 * (osu_allreduce and osu_bcast separate calls by a barrier that they do not count).
 */
export interface Iteration {
  readonly step: Step;
  readonly sync?: Step;
}

/** A round's numbers, in µs per iteration. */
export interface Round {
  readonly typicalUs: number;
  readonly meanUs: number;
  readonly iterations: number;
}

/** Blocks per round for the typical value. */
const BLOCKS = 10;
/** Iterations a calibration run needs before its time decides, unless it took a whole round. */
const MIN_CALIBRATION_ITERATIONS = 16;
/** Upper bound on iterations per round (tiny latencies). */
const MAX_ITERATIONS = 100_000;

export const median = (xs: ArrayLike<number>): number => {
  const s = Array.from(xs).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};

let samples = new Float64Array(1024);

/** Runs `it` `iterations` times, timing each step. */
export async function timeRound(it: Iteration, iterations: number): Promise<Round> {
  if (samples.length < iterations) samples = new Float64Array(iterations);
  const { step, sync } = it;
  let sum = 0;
  if (sync === undefined) {
    // Back to back: each sample runs from the end of the previous iteration.
    const t0 = performance.now();
    let last = t0;
    for (let i = 0; i < iterations; i++) {
      const p = step();
      if (p !== undefined) await p;
      const now = performance.now();
      samples[i] = now - last;
      last = now;
    }
    sum = last - t0;
  } else {
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      const p = step();
      if (p !== undefined) await p;
      const dt = performance.now() - t0;
      samples[i] = dt;
      sum += dt;
      const q = sync();
      if (q !== undefined) await q;
    }
  }
  const meanUs = (sum * 1000) / iterations;
  const per = Math.max(1, Math.floor(iterations / BLOCKS));
  const blockMedians: number[] = [];
  for (let b = 0; b + per <= iterations; b += per) blockMedians.push(median(samples.subarray(b, b + per)));
  return { typicalUs: median(blockMedians) * 1000, meanUs, iterations };
}

/** Runs `it` `n` times; returns the elapsed ms. */
async function run(it: Iteration, n: number): Promise<number> {
  const { step, sync } = it;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = step();
    if (p !== undefined) await p;
    if (sync !== undefined) {
      const q = sync();
      if (q !== undefined) await q;
    }
  }
  return performance.now() - t0;
}

/**
 * Warm-up: `steps` in turn (a small and a large size, say) for at least `ms` on rank 0, then until
 * the time per iteration has settled (`warmUpSettled`: the JIT has optimized the loop), so the JIT
 * and vmcomm's adaptive waiting settle before anything is measured. `crowding` (ranks per core,
 * `ranksPerCore`) stretches both bounds: a rank that shares its core runs only part of the time.
 */
export async function warmUp(comm: Communicator, steps: readonly Iteration[], ms: number, crowding = 1): Promise<void> {
  const t0 = performance.now();
  // Each step's time per iteration, batch by batch: a large size's would hide a small one's JIT.
  const perIteration = steps.map((): number[] => []);
  // Batches of n iterations of each step, n grown by rank 0 so a batch lasts ~1/20 of the warm-up
  // (of 0.1 s at least: single iterations would time noise, not the loop).
  const batchMs = (crowding * Math.max(ms, 100)) / 20;
  let n = 1;
  for (let batch = 0; ; batch++) {
    const tb = performance.now();
    for (let k = 0; k < steps.length; k++) {
      const ts = performance.now();
      await run(steps[k], n);
      // The first batch (one iteration) times channel opening, not the loop.
      if (batch > 0) perIteration[k].push((performance.now() - ts) / n);
    }
    let next: number | undefined;
    if (comm.rank === 0) {
      const now = performance.now();
      const settled = perIteration.every((times) => warmUpSettled(times, now - t0, ms, crowding));
      next = settled ? 0 : Math.max(1, Math.min(n * 4, Math.round((n * batchMs) / Math.max(now - tb, 1e-3))));
    }
    n = await comm.bcast(next, 0);
    if (n === 0) return;
  }
}

/**
 * Iterations per round so that one round takes about `roundMs` on rank 0: runs 1, then 4×, 16×, …
 * iterations (each count twice, the faster counting) until a run of at least 16 iterations takes an
 * eighth of that, or any run a whole round (this also warms the size up, as OSU's skipped iterations
 * do), then scales.
 */
export async function calibrate(comm: Communicator, step: Iteration, roundMs: number): Promise<number> {
  // One untimed iteration first, as OSU skips some: the first after a switch from another
  // implementation may wait for a sleeping rank's wake-up (milliseconds on this VM when its vCPU
  // had halted), and deciding from it left rounds of 1–5 iterations.
  await run(step, 1);
  let n = 1;
  for (;;) {
    // Each size twice, the faster counts: one stall (a major GC, a preemption: milliseconds here)
    // in a run of a few hundred iterations would otherwise shrink the rounds tenfold.
    const ms = Math.min(await run(step, n), await run(step, n));
    let decision: number | undefined;
    if (comm.rank === 0) {
      // A run of a few iterations decides only if it took a whole round: one preemption (a few
      // ms here) is enough to make a short run look long.
      const enough = ms >= roundMs || (ms >= roundMs / 8 && n >= MIN_CALIBRATION_ITERATIONS);
      if (enough || n * 4 > MAX_ITERATIONS) decision = Math.max(1, Math.min(MAX_ITERATIONS, Math.round((n * roundMs) / Math.max(ms, 1e-3))));
      else decision = -n * 4;
    }
    const d = await comm.bcast(decision, 0);
    if (d > 0) return d;
    n = -d;
  }
}

/** Rounds summarized in µs per iteration: median of round typicals, their range, overall mean. */
export function summarize(rounds: readonly Round[]): { typicalUs: number; minUs: number; maxUs: number; meanUs: number; iterations: number } {
  const typicals = rounds.map((r) => r.typicalUs);
  const total = rounds.reduce((s, r) => s + r.iterations, 0);
  return {
    typicalUs: median(typicals),
    minUs: Math.min(...typicals),
    maxUs: Math.max(...typicals),
    meanUs: rounds.reduce((s, r) => s + r.meanUs * r.iterations, 0) / total,
    iterations: rounds[0]?.iterations ?? 0,
  };
}
