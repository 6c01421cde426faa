/**
 * A transport's periodic check (peers gone, rings failed, heartbeats) run from its `poll()` as well
 * as from its timer. A program that polls `test()` in a loop that never yields runs no timer (DESIGN
 * section 3 says shared memory progresses inside `test()`): without this, such a loop waiting on a
 * peer that died would spin forever instead of failing with `PEER_LOST`.
 *
 * @module
 */

import { performance } from 'node:perf_hooks';

/**
 * Polls between two looks at the clock (a power of two): a counter on every poll, a clock read (about
 * 40 ns here) every this many. Few, because a program may compute between its `test()` calls: with
 * 20 ms of work per call, a check is at most 64 calls (1.3 s) late.
 */
export const POLLS_PER_SWEEP_CHECK = 64;

/**
 * Runs `sweep` every `everyMs`, from a timer or from polls, whichever comes first; a run from either
 * puts the next one a period later, so a program that both polls and yields does not sweep twice.
 */
export class PollSweep {
  private polls = 0;
  private due: number;
  private timer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(
    private readonly sweep: () => void,
    private readonly everyMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.due = now() + everyMs;
  }

  /** Starts the timer (unreferenced: it keeps no process alive). Returns this. */
  start(): this {
    if (!this.started) {
      this.started = true;
      this.arm(this.due - this.now());
    }
    return this;
  }

  /** Stops the timer; {@link poll} still runs the sweep (a transport's sweep checks that it stopped). */
  stop(): void {
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Arms the timer for `ms` rounded up to whole milliseconds (what Node's timers count), at most a
   * period. A timer can still fire a little before `due` (Node measures from its loop's cached time):
   * it then finds nothing due and waits the rest.
   */
  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, Math.min(this.everyMs, Math.max(0, Math.ceil(ms)))).unref();
  }

  /** The timer: runs the sweep if a poll did not run it meanwhile, then waits for the next due time. */
  private readonly fire = (): void => {
    this.timer = undefined;
    if (!this.started) return;
    try {
      const now = this.now();
      if (now >= this.due) this.run();
      // A clock that went back (an injected one) must not put the next sweep beyond a period.
      else if (this.due - now > this.everyMs) this.due = now + this.everyMs;
    } finally {
      // Armed again even if the sweep threw (as an interval would keep going), unless it stopped us.
      if (this.started && this.timer === undefined) this.arm(this.due - this.now());
    }
  };

  /** Runs the sweep now; the next one (from the timer or {@link poll}) is due `everyMs` later. */
  run(): void {
    this.due = this.now() + this.everyMs;
    this.sweep();
  }

  /** Called on every poll: runs the sweep when it is due, looking at the clock every {@link POLLS_PER_SWEEP_CHECK} calls. */
  poll(): void {
    // Masked, not counted up: a count past 2^31 would be a double, and `%` on one an x87 `fprem`.
    this.polls = (this.polls + 1) & (POLLS_PER_SWEEP_CHECK - 1);
    if (this.polls !== 0) return;
    if (this.now() >= this.due) this.run();
  }
}
