/**
 * How an ivshmem rank sleeps when there is no kernel to wake it: the ring layer's `WaitingPolicy`
 * spins for its adaptive budget and then asks a `Sleeper` to sleep until a peer rings. Across VMs no
 * peer can ring (no futex spans two kernels; ivshmem-doorbell interrupts are not used yet), so this
 * sleeper sleeps for a while instead, and the policy polls again when it returns:
 *
 * 1. **yield**: for the first `yieldMs` of an idle spell, "sleep" until the next event-loop turn
 *    (`setImmediate`; with `yieldCpu`, after a `sched_yield`), so a message that comes a little
 *    after the spin is still caught within microseconds;
 * 2. **sleep**: then for `minSleepMs` first, doubling up to `maxSleepMs` (the transport sleeps on the
 *    addon's waiter thread, precise to microseconds, else on timers) — a message after a pause of
 *    `t` waits at most about `t` more;
 * 3. **idle**: a rank idle for longer sleeps up to `idleSleepMs`, 1 % of its idle time so far: after a
 *    silence of 5 s a message waits at most 50 ms more (1 %), and a rank idle for minutes wakes 20
 *    times a second instead of 250.
 *
 * Anything that moves (a frame delivered, bytes streamed, a send completed) ends the idle spell:
 * the transport calls {@link BackoffSleeper.reset}, and the next sleep starts from the yield again.
 *
 * Pure: the clock and the schedulers are injected.
 *
 * @module
 */

import type { Sleeper } from '../../lib/ring/waiting.js';

/** Settings of a {@link BackoffSleeper}. */
export interface BackoffOptions {
  /** Yield (poll once per event-loop turn) for this long after the spin, ms. */
  readonly yieldMs: number;
  /** The first timer sleep, ms. */
  readonly minSleepMs: number;
  /** The longest sleep while the idle spell is short, ms. */
  readonly maxSleepMs: number;
  /**
   * Optional: a rank idle for long sleeps up to this (ms), growing in proportion to how long it has
   * been idle ({@link LONG_IDLE_FRACTION} of it), so a long silence costs almost no CPU while the
   * extra delay of the message that ends it stays a small fraction of the silence. Default: `maxSleepMs`.
   */
  readonly idleSleepMs?: number;
  /** A monotonic clock in ms. */
  readonly now: () => number;
  /** Runs `fn` on the next event-loop turn (Node: `setImmediate`). */
  readonly defer: (fn: () => void) => void;
  /** Runs `fn` after `ms` (Node: an unreferenced `setTimeout`). */
  readonly after: (fn: () => void, ms: number) => void;
  /** Optional: gives the CPU away before a yield (the addon's `sched_yield`), when ranks outnumber cores. */
  readonly yieldCpu?: () => void;
}

/** Beyond `maxSleepMs`, a sleep is at most this fraction of the idle spell so far (up to `idleSleepMs`). */
export const LONG_IDLE_FRACTION = 0.01;

/** A {@link Sleeper} that backs off from yielding to timer sleeps of growing length. */
export class BackoffSleeper implements Sleeper {
  private idleSince = -1;
  private nextSleepMs: number;
  /** Counters, for tests and diagnostics. */
  readonly counts = { yields: 0, sleeps: 0 };

  constructor(private readonly options: BackoffOptions) {
    this.nextSleepMs = options.minSleepMs;
  }

  /** No doorbell to read: the token is unused. */
  prepare(): number {
    return 0;
  }

  cancel(): void {}

  /** Sleeps per the schedule above; calls `wake` later, never synchronously. */
  sleep(_token: number, wake: () => void): void {
    const o = this.options;
    const t = o.now();
    if (this.idleSince < 0) {
      this.idleSince = t;
      this.nextSleepMs = o.minSleepMs;
    }
    if (t - this.idleSince < o.yieldMs) {
      this.counts.yields++;
      o.yieldCpu?.();
      o.defer(wake);
      return;
    }
    this.counts.sleeps++;
    let ms = this.nextSleepMs;
    if (ms >= o.maxSleepMs && o.idleSleepMs !== undefined && o.idleSleepMs > o.maxSleepMs) {
      ms = Math.min(o.idleSleepMs, Math.max(o.maxSleepMs, (t - this.idleSince) * LONG_IDLE_FRACTION));
    }
    this.nextSleepMs = Math.min(o.maxSleepMs, Math.max(ms * 2, o.minSleepMs, 0.01));
    o.after(wake, ms);
  }

  /** Something moved: the next idle spell starts with the yield again. */
  reset(): void {
    this.idleSince = -1;
  }

  /** The length of the next timer sleep, ms (diagnostics, tests). */
  get sleepMs(): number {
    return this.nextSleepMs;
  }
}
