// Time-based warm-up shared by the two-process benchmarks.
import type { Communicator } from 'vmcomm';

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
