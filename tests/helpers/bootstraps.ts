/**
 * Bootstraps bent for tests: the real one, with one step of the start-up slowed down.
 */

import type { CardValue } from '../../lib/backend.js';
import type { Bootstrap } from '../../lib/bootstrap.js';
import { sleep } from './settle.js';

/**
 * `b`, except that its round-two exchange ('reach') answers `delayMs` late on this rank only: the
 * other ranks are ready (and may send) while this one still chooses its transports.
 */
export function lateReach(b: Bootstrap, delayMs: number): Bootstrap {
  return {
    get rank() {
      return b.rank;
    },
    get size() {
      return b.size;
    },
    get jobId() {
      return b.jobId;
    },
    get secret() {
      return b.secret;
    },
    get address() {
      return b.address;
    },
    listen: (e) => b.listen(e),
    abort: (code, reason) => b.abort(code, reason),
    finalize: () => b.finalize(),
    async allgather(round: string, value: CardValue) {
      const all = await b.allgather(round, value);
      if (round === 'reach') await sleep(delayMs);
      return all;
    },
  };
}
