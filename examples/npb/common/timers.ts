// NPB's timers (common/timers.f, c_timers.c): numbered stopwatches on MPI_Wtime, plus
// check_timer_flag, which turns the per-phase timer breakdown on (NPB_TIMER_FLAG set, or a file
// named timer.flag in the current directory — NPB's own switches).
import { existsSync } from 'node:fs';
import { MPI } from 'vmcomm/mpi';
import { fmtF, rjust } from './print_results.js';

const start = new Float64Array(64);
const elapsed = new Float64Array(64);

export function timer_clear(n: number): void {
  elapsed[n] = 0;
}

export function timer_start(n: number): void {
  start[n] = MPI.Wtime();
}

export function timer_stop(n: number): void {
  elapsed[n] += MPI.Wtime() - start[n];
}

export function timer_read(n: number): number {
  return elapsed[n];
}

/** NPB's rule: NPB_TIMER_FLAG empty, a digit 1–9, "on", "yes" or "true" → on; else timer.flag exists. */
export function check_timer_flag(): boolean {
  const val = process.env.NPB_TIMER_FLAG;
  if (val !== undefined) return val === '' || /^[1-9]/.test(val) || /^(on|yes|true)$/i.test(val);
  return existsSync('timer.flag');
}

/**
 * The per-phase timer table that EP and CG print when timers are on (ep.f and cg.f each carry a copy):
 * each timer's minimum, maximum and average over the ranks, printed by rank 0. Collective.
 */
export async function print_timers(t1: Float64Array, names: readonly string[], nprocs: number, me: number): Promise<void> {
  const n = t1.length;
  const tsum = new Float64Array(n);
  const tming = new Float64Array(n);
  const tmaxg = new Float64Array(n);
  await MPI.Reduce(t1, tsum, n, MPI.DOUBLE, MPI.SUM, 0, MPI.COMM_WORLD);
  await MPI.Reduce(t1, tming, n, MPI.DOUBLE, MPI.MIN, 0, MPI.COMM_WORLD);
  await MPI.Reduce(t1, tmaxg, n, MPI.DOUBLE, MPI.MAX, 0, MPI.COMM_WORLD);
  if (me !== 0) return;
  console.log(` nprocs =${rjust(nprocs, 6)}${' '.repeat(11)}minimum     maximum     average`);
  for (let i = 0; i < n; i++) {
    console.log(` timer ${rjust(i + 1, 2)}(${names[i].padEnd(8)}) :  ${fmtF(tming[i], 10, 4)}  ${fmtF(tmaxg[i], 10, 4)}  ${fmtF(tsum[i] / nprocs, 10, 4)}`);
  }
}
