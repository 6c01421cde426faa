/**
 * Starting a world from a bootstrap (no environment reading): shared by `init()` and by in-process
 * jobs (tests, the compliance suite).
 *
 * @module
 */

import type { Bootstrap } from './bootstrap.js';
import { Communicator } from './communicator.js';
import { composeWorld } from './container.js';
import { parseInitOptions, type InitOptions, type ParsedOptions } from './options.js';

/** Starts a world with an explicit bootstrap. Not idempotent: every call is a new world. */
export async function initWithBootstrap(bootstrap: Bootstrap, options?: InitOptions): Promise<Communicator> {
  return startWorld(parseInitOptions(options), bootstrap);
}

/** Starts a world from parsed options; returns its world communicator. */
export async function startWorld(parsed: ParsedOptions, bootstrap: Bootstrap): Promise<Communicator> {
  const w = await composeWorld(parsed, bootstrap);
  await w.start();
  return new Communicator(w, Array.from({ length: w.size }, (_, r) => r), 0);
}
