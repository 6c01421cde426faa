// Warm-ups shared by the benchmarks: time-based for two pinned processes, until settled for all ranks.
import type { Communicator } from 'vmcomm';
import { ranksPerCore } from '../dist/lib/launch/bench-protocol.js';
import { hostCores } from '../dist/lib/launch/binding.js';
import { warmUp as warmUpUntilSettled } from './osu/measure.js';

/**
 * Runs `fn` until `ms` milliseconds have passed on rank 0 (so the JIT and adaptive waiting settle).
 * Both ranks must run `fn` the same number of times, so rank 0 decides and tells its peer each round.
 */
export async function warmUp(comm: Communicator, peer: number, ms: number, fn: () => Promise<unknown>): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    await fn();
    const more = comm.rank === 0 ? Date.now() - t0 < ms : true;
    const go = await comm.sendrecv(more, peer, peer, 9, 9);
    if (!(comm.rank === 0 ? more : go)) break;
  }
}

/**
 * Runs `fn` on every rank until it has run for at least `ms` of a rank's time on a core and the time
 * per call has settled: `vmcomm bench`'s warm-up (`warmUp` in bench/osu/measure.ts) with `fn` as its
 * one step. A rank's time on a core is estimated as the wall clock divided by the ranks per core of
 * rank 0's host: with more ranks than cores each runs only part of the wall clock, and eight ranks on
 * two cores warmed up for 0.6 s of it still ran the message path's first TurboFan code (README,
 * "Against C MPI").
 */
export async function warmUpRanks(comm: Communicator, ms: number, fn: () => Promise<unknown>): Promise<void> {
  // Ranks on this host, not in the job: a job across hosts crowds each host with its own share.
  const host = await comm.splitByLocality('host');
  const crowding = ranksPerCore(host.size, hostCores());
  await host.free();
  await warmUpUntilSettled(comm, [{ step: fn }], ms, crowding);
}
