/**
 * One look at everything a rank reads from rings in memory it maps, for the transports whose rings
 * a peer's frames arrive in directly (`shm`, `threads`): announced rings, single-copy reads in
 * progress, collectives waiting on cells, channels that wait to write, and the periodic peer sweep.
 * The core calls {@link RingProgress.poll} (from `test()`, `iprobe()` and the spin of blocking
 * waits); the wait loop ({@link WaitingPolicy}) calls {@link RingProgress.progress} between the
 * core's calls.
 *
 * (`ivshmem` polls the same rings differently: no single copy or cells, and its sleeper backs off
 * rather than waiting on a doorbell.)
 *
 * @module
 */

import type { PollSweep } from './poll-sweep.js';
import type { Poller } from './poller.js';
import type { FlushableChannel, PendingChannels } from './ring-channel.js';
import type { CellWatchers } from './collective-cells.js';
import type { SingleCopySink } from './single-copy-sink.js';
import { Progress, WaitingPolicy, type Sleeper, type WaitingOptions } from './waiting.js';

/** What a {@link RingProgress} looks at. */
export interface RingProgressParts {
  /** Reads the announced rings. */
  readonly poller: Poller;
  /** Turns single-copy descriptors into frames; absent when this rank cannot read them (threads without the addon). */
  readonly copies: SingleCopySink | undefined;
  /** Bytes of single copy one look moves at most. */
  readonly copyBytesPerLook: number;
  /** Channels waiting to write (a full ring, an open descriptor, a close). */
  readonly pending: PendingChannels<FlushableChannel>;
  /** Collectives waiting on cells. */
  readonly watchers: CellWatchers;
  /**
   * Ends a look that found nothing, when the host's ranks outnumber its cores (`sched_yield`, so a
   * rank that has work gets the core); `undefined` otherwise.
   */
  readonly yieldCpu: (() => void) | undefined;
  /** The transport's peer sweep, run from polls too (see `poll-sweep.ts`). */
  readonly sweeps: PollSweep;
}

/** See the module comment. Build one at `addPeers`, then {@link startWaiting}. */
export class RingProgress {
  private readonly poller: Poller;
  private readonly copies: SingleCopySink | undefined;
  private readonly copyBytesPerLook: number;
  private readonly pending: PendingChannels<FlushableChannel>;
  private readonly watchers: CellWatchers;
  private readonly yieldCpu: (() => void) | undefined;
  private readonly sweeps: PollSweep;
  private policy: WaitingPolicy | undefined;

  constructor(parts: RingProgressParts) {
    // Own fields, not `parts.x`: poll() runs on every spin of a blocking wait.
    this.poller = parts.poller;
    this.copies = parts.copies;
    this.copyBytesPerLook = parts.copyBytesPerLook;
    this.pending = parts.pending;
    this.watchers = parts.watchers;
    this.yieldCpu = parts.yieldCpu;
    this.sweeps = parts.sweeps;
  }

  /** Builds and starts the wait loop, which calls {@link progress}, and the sweep's timer; returns the loop. */
  startWaiting(sleeper: Sleeper, options: WaitingOptions): WaitingPolicy {
    const policy = new WaitingPolicy(() => this.progress(), sleeper, options);
    this.policy = policy;
    policy.start();
    this.sweeps.start();
    return policy;
  }

  /**
   * The core's look: returns the frames delivered (single-copy reads that completed included). A
   * look that delivers wakes a sleeping wait loop (it would otherwise sleep on a doorbell this
   * rank's own poll already answered); one that finds nothing yields the core when
   * {@link RingProgressParts.yieldCpu} says to: a blocking wait spins on this.
   */
  poll(): number {
    const copies = this.copies;
    const readsBefore = copies !== undefined ? copies.counts.reads : 0;
    let frames = this.poller.poll();
    if (this.watchers.size > 0) frames += this.watchers.run();
    if (copies !== undefined) {
      if (copies.active > 0) copies.pump(this.copyBytesPerLook);
      frames += copies.counts.reads - readsBefore;
    }
    if (this.pending.size > 0) this.pending.flushAll();
    if (frames > 0) {
      const policy = this.policy;
      if (policy !== undefined && policy.state === 'sleeping') policy.wakeUp();
    } else if (this.yieldCpu !== undefined) this.yieldCpu();
    this.sweeps.poll();
    return frames;
  }

  /**
   * The wait loop's look ({@link Progress}): frames delivered and sends completed; else
   * {@link Progress.MOVED} when only bytes moved (a streamed piece, part of a single-copy read, a
   * blocked channel writing on); else {@link Progress.NONE}, after yielding the core as
   * {@link poll} does.
   */
  progress(): number {
    const copies = this.copies;
    const readsBefore = copies !== undefined ? copies.counts.reads : 0;
    const poller = this.poller;
    let delivered = poller.poll();
    if (this.watchers.size > 0) delivered += this.watchers.run();
    let moved = poller.moved;
    if (copies !== undefined) {
      if (copies.active > 0 && copies.pump(this.copyBytesPerLook) > 0) moved = true;
      delivered += copies.counts.reads - readsBefore;
    }
    if (this.pending.size > 0) {
      if (this.pending.flushAll() > 0) moved = true;
      delivered += this.pending.completed;
    }
    if (delivered > 0) return delivered;
    if (moved) return Progress.MOVED;
    if (this.yieldCpu !== undefined) this.yieldCpu();
    return Progress.NONE;
  }
}
