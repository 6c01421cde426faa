/**
 * A bootstrap for ranks that live in one process and need no launcher: a world of one (a program
 * started without `vmcomm run`), and in-process jobs (tests; several worlds in one isolate).
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import type { CardValue } from './backend.js';
import type { Bootstrap, BootstrapEvents } from './bootstrap.js';
import { VmcommError } from './errors.js';

interface Round {
  values: CardValue[];
  count: number;
  waiters: ((values: CardValue[]) => void)[];
}

/** Shared state of one in-process job. */
class LocalJob {
  readonly rounds = new Map<string, Round>();
  readonly listeners: (BootstrapEvents | undefined)[];
  readonly finalized: boolean[];
  constructor(
    readonly size: number,
    readonly jobId: string,
    readonly secret: Uint8Array,
  ) {
    this.listeners = new Array(size).fill(undefined);
    this.finalized = new Array(size).fill(false);
  }
}

class LocalBootstrap implements Bootstrap {
  readonly address = '127.0.0.1';
  constructor(
    private readonly job: LocalJob,
    readonly rank: number,
  ) {}
  get size() {
    return this.job.size;
  }
  get jobId() {
    return this.job.jobId;
  }
  get secret() {
    return this.job.secret;
  }

  allgather(round: string, value: CardValue): Promise<CardValue[]> {
    let r = this.job.rounds.get(round);
    if (!r) this.job.rounds.set(round, (r = { values: new Array(this.size), count: 0, waiters: [] }));
    const entry = r;
    return new Promise((resolve) => {
      entry.values[this.rank] = value;
      entry.count++;
      entry.waiters.push(resolve);
      if (entry.count === this.size) {
        this.job.rounds.delete(round);
        // Resolve on a later tick: callers expect an asynchronous exchange, as with a real launcher.
        setImmediate(() => entry.waiters.forEach((w) => w(entry.values)));
      }
    });
  }

  listen(events: BootstrapEvents): void {
    this.job.listeners[this.rank] = events;
  }

  async abort(code: number, reason: string): Promise<void> {
    this.job.listeners.forEach((l, r) => r !== this.rank && l?.abort(code, this.rank, reason));
  }

  async finalize(): Promise<void> {
    this.job.finalized[this.rank] = true;
  }
}

/**
 * Bootstraps for an in-process job of `size` ranks (index = rank), sharing a fresh secret.
 */
export function createLocalJob(size: number): Bootstrap[] {
  if (!Number.isInteger(size) || size < 1) throw new VmcommError('INVALID_ARGUMENT', `a job needs a whole number of ranks ≥ 1, got ${size}`);
  const secret = randomBytes(32);
  const job = new LocalJob(size, `local-${randomBytes(8).toString('hex')}`, secret);
  return Array.from({ length: size }, (_, rank) => new LocalBootstrap(job, rank));
}

/** Tells the surviving ranks of an in-process job that `rank` is gone (tests use it to simulate a death). */
export function reportLocalPeerLost(job: readonly Bootstrap[], rank: number, reason: string): void {
  for (const b of job) {
    if (b.rank !== rank && b instanceof LocalBootstrap) (b as unknown as { job: LocalJob }).job.listeners[b.rank]?.peerLost(rank, reason);
  }
}
