// Worlds of one in-process job (one per rank, in this thread), remembering the job they belong to,
// so a test can later tell them a rank died as the launcher would (reportLocalPeerLost).
import type { Bootstrap } from '../../lib/bootstrap.js';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob, reportLocalPeerLost } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';

const jobs = new WeakMap<Communicator, readonly Bootstrap[]>();

/** Starts `size` ranks of one in-process job with `options`; returns their world communicators (index = rank). */
export async function localWorlds(size: number, options?: Parameters<typeof initWithBootstrap>[1]): Promise<Communicator[]> {
  const job = createLocalJob(size);
  const comms = await Promise.all(job.map((b) => initWithBootstrap(b, options)));
  for (const c of comms) jobs.set(c, job);
  return comms;
}

/** Tells every other rank of `comm`'s job that `rank` died (the launcher's report). `comm` must come from {@link localWorlds}. */
export function reportLost(comm: Communicator, rank: number, reason: string): void {
  const job = jobs.get(comm);
  if (job === undefined) throw new Error('reportLost: this world was not started by localWorlds()');
  reportLocalPeerLost(job, rank, reason);
}
