/**
 * The sends written to a socket and not yet completed, oldest first.
 *
 * Node calls a socket's write callbacks in write order, so one shared callback per connection can take
 * the oldest entry instead of each send allocating a closure. An entry holds the send's `done` and the
 * end of its {@link StagingRing} slice (or -1), both released when its last write completes.
 *
 * @module
 */

import type { SendDone } from '../../lib/backend.js';

const INITIAL_CAPACITY = 64;

/** A growable circular FIFO of (done, staging end) pairs. */
export class CompletionQueue {
  private dones: (SendDone | undefined)[] = new Array(INITIAL_CAPACITY).fill(undefined);
  private ends: number[] = new Array(INITIAL_CAPACITY).fill(-1);
  private first = 0;
  private count = 0;
  /** The staging end of the entry {@link shift} returned last. */
  shiftedEnd = -1;

  get length(): number {
    return this.count;
  }

  push(done: SendDone | undefined, stagingEnd: number): void {
    if (this.count === this.dones.length) this.grow();
    const at = (this.first + this.count) & (this.dones.length - 1);
    this.dones[at] = done;
    this.ends[at] = stagingEnd;
    this.count++;
  }

  /** Removes the oldest entry; returns its `done` and leaves its staging end in {@link shiftedEnd}. */
  shift(): SendDone | undefined {
    const at = this.first;
    const done = this.dones[at];
    this.shiftedEnd = this.ends[at];
    this.dones[at] = undefined;
    this.first = (at + 1) & (this.dones.length - 1);
    this.count--;
    return done;
  }

  private grow(): void {
    const size = this.dones.length;
    const dones: (SendDone | undefined)[] = new Array(size * 2).fill(undefined);
    const ends: number[] = new Array(size * 2).fill(-1);
    for (let i = 0; i < this.count; i++) {
      const at = (this.first + i) & (size - 1);
      dones[i] = this.dones[at];
      ends[i] = this.ends[at];
    }
    this.dones = dones;
    this.ends = ends;
    this.first = 0;
  }
}
