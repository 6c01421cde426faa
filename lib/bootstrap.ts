/**
 * How ranks of a job find each other before any transport exists: the launcher's rendezvous, PMI, or
 * nothing at all (a world of one). The core needs exactly this much from a launcher.
 *
 * @module
 */

import type { CardValue } from './backend.js';

/** Events a bootstrap reports to the core. */
export interface BootstrapEvents {
  /** The launcher saw `rank` die (or its connection to the rendezvous break) before it finalized. */
  peerLost(rank: number, reason: string): void;
  /** Some rank called `abort(code)`; the process should end with `code`. */
  abort(code: number, fromRank: number, reason: string): void;
  /**
   * Optional: an operator offers `resource` (an ivshmem region path) to the running job
   * (`vmcomm ivshmem attach`; only vmcomm's own rendezvous carries it).
   */
  attach?(resource: string): void;
}

/**
 * A job-wide key/value exchange with failure notification. One per world.
 */
export interface Bootstrap {
  /** This rank. */
  readonly rank: number;
  /** The world size. */
  readonly size: number;
  /** Identifies the job; the same on every rank. */
  readonly jobId: string;
  /** The job secret; the same on every rank; never sent in clear. */
  readonly secret: Uint8Array;
  /** The local address through which this rank reached the launcher (127.0.0.1 for a local job). */
  readonly address: string;
  /**
   * Every rank contributes `value` under `round` (each round name used once); resolves with all
   * values indexed by rank once every rank has contributed.
   */
  allgather(round: string, value: CardValue): Promise<CardValue[]>;
  /** Registers the event handlers (called once, before the first `allgather`). */
  listen(events: BootstrapEvents): void;
  /** Asks the launcher to end every rank of the job with `code`. Returns once sent (best effort). */
  abort(code: number, reason: string): Promise<void>;
  /** This rank finished cleanly: its end is no longer a failure. Then releases the connection. */
  finalize(): Promise<void>;
}
