/**
 * `init()`: the world communicator, from whatever started this rank.
 *
 * @module
 */

import type { Communicator } from './communicator.js';
import { bootstrapFromEnvironment } from './launch/environment.js';
import { createLocalJob } from './local-bootstrap.js';
import { parseInitOptions, type InitOptions } from './options.js';
import { startWorld } from './start-world.js';

let world: Promise<Communicator> | undefined;

/**
 * Joins the job and returns the world communicator (`MPI_Init` + `MPI_COMM_WORLD`). Idempotent: later
 * calls return the same communicator (their options are ignored). Under `vmcomm run` (or a rank
 * started with `VMCOMM_RENDEZVOUS` …) it joins that job; with no launcher it makes a world of one.
 *
 * @example
 * ```ts
 * import { init } from 'vmcomm';
 * const comm = await init();
 * console.log(`rank ${comm.rank} of ${comm.size}`);
 * await comm.finalize();
 * ```
 */
export function init(options?: InitOptions): Promise<Communicator> {
  return (world ??= (async () => {
    const parsed = parseInitOptions(options);
    const bootstrap = (await bootstrapFromEnvironment(parsed.env)) ?? createLocalJob(1)[0];
    return startWorld(parsed, bootstrap);
  })().catch((e) => {
    world = undefined;
    throw e;
  }));
}
