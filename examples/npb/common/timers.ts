// NPB's timers (common/timers.f, c_timers.c): numbered stopwatches on MPI_Wtime, plus
// check_timer_flag, which turns the per-phase timer breakdown on (NPB_TIMER_FLAG set, or a file
// named timer.flag in the current directory — NPB's own switches).
import { existsSync } from 'node:fs';
import { MPI } from 'vmcomm/mpi';

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
