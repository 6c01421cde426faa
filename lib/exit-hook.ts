/**
 * Calls `gone()` on the transports of this thread that have not stopped when it exits (an uncaught
 * exception, `process.exit`, the end of a worker): shared-memory transports mark their inbox or
 * slot so that peers stop waiting for them, and remove their files. One `exit` listener per thread,
 * however many worlds it runs.
 *
 * @module
 */

import { writeSync } from 'node:fs';

/** What the hook calls: synchronous; what it throws is written to stderr, and the others still run. */
export interface GoneAtExit {
  gone(): void;
}

const live = new Set<GoneAtExit>();
let hooked = false;

/** From now on, `t.gone()` runs if this thread exits before {@link forgetAtExit}`(t)`. */
export function goneAtExit(t: GoneAtExit): void {
  live.add(t);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const x of live) {
      try {
        x.gone();
      } catch (error) {
        // One transport's failure must not keep the others from marking themselves gone. Said
        // synchronously: nothing asynchronous runs any more.
        try {
          writeSync(2, `vmcomm: marking a transport gone at exit failed: ${(error as Error)?.stack ?? String(error)}\n`);
        } catch {
          // stderr is closed: nothing more can be said.
        }
      }
    }
  });
}

/** `t` stopped (or is stopping): the hook no longer calls it. */
export function forgetAtExit(t: GoneAtExit): void {
  live.delete(t);
}
