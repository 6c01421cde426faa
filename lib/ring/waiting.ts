/**
 * How a shared-memory transport waits for its peers without the core asking: poll for a bounded,
 * adaptive budget, then sleep on the inbox doorbell until a peer rings it.
 *
 * ## The cycle
 *
 * ```
 *   polling ──(progress)──▶ polling (next turn)
 *      │ budget spent without progress
 *      ▼
 *   raise waiter flag, poll once more ──(progress)──▶ polling
 *      │ nothing
 *      ▼
 *   sleeping ──(doorbell rung / the core found work)──▶ polling
 * ```
 *
 * - **Polling turns** run from the event loop (`defer`, Node's `setImmediate`), so timers and I/O of
 *   the application run between turns: a pending receive never holds the event loop for longer than
 *   the budget. A turn ends as soon as something was *delivered* (a frame reached the core, a send
 *   completed: the application has work now); while bytes merely *move* (a large payload streaming
 *   through a ring) it keeps polling, up to `maxSpinNs` per turn, without counting that as idle.
 * - **Spin or yield** ({@link chooseWaiting}). With a core per rank, a turn *spins*: it polls until
 *   progress or the budget is spent. When the host's ranks outnumber its cores, spinning steals the
 *   CPU from the rank that would make progress: the transport's `progress` (for shm and threads,
 *   `RingProgress.progress` in `ring-progress.ts`) then ends every empty poll with `sched_yield` (the
 *   addon's), so the turn still spins but hands the core to a rank with work between polls — and
 *   so does the core's own blocking wait, which spins on the transport's `poll()`. Where
 *   `sched_yield` is not at hand, or a peer shares this very thread (and so can only progress when
 *   this one returns), a turn instead polls *once* and yields back to the event loop
 *   ({@link WaitingOptions.yieldBetweenPolls}) until the budget is spent, and the budget never grows
 *   beyond `maxYieldNs`: there, a wake-up costs less than the time slices that polling ranks take
 *   from the rank that has work.
 * - **Adaptive budget** (ns), within [`minSpinNs`, `maxSpinNs`]. It follows what sleeping would
 *   have cost: a sleep that a peer ended after `w` ≤ `maxSpinNs` means spinning 2`w` would have caught
 *   that message without the wake-up (an `Atomics.waitAsync` wake-up costs tens of µs; two ranks that
 *   both sleep less than that would hand each other every message through a wake-up), so the budget
 *   grows to 2`w`; a longer sleep (the peer really was away) halves it. A turn that found progress
 *   after waiting `e` keeps the budget at least 2`e`. A rank in a tight exchange keeps spinning; one
 *   whose peers are slow soon sleeps at once.
 * - **Sleeping** is injected ({@link Sleeper}): `threads` waits with `Atomics.waitAsync` on the inbox
 *   doorbell, `shm` with the addon's futex waiter. At most one sleep is outstanding; a sleep that
 *   became stale (the core polled and found work meanwhile) is reused by the next one.
 *
 * Pure: no Node APIs (the clock and the scheduler are injected; `sched_yield` happens inside the
 * transport's `progress`, for shm and threads `RingProgress.progress`).
 *
 * @module
 */

/** How a rank sleeps until a peer rings its doorbell (see `inbox.ts` for the protocol). */
export interface Sleeper {
  /** Raises the waiter flag; returns the doorbell value to sleep on (poll once more before sleeping). */
  prepare(): number;
  /**
   * Sleeps until the doorbell differs from `token` or is notified, then calls `wake` — never
   * synchronously. Called only when no earlier sleep is outstanding.
   */
  sleep(token: number, wake: () => void): void;
  /** Lowers the waiter flag. */
  cancel(): void;
}

/** Settings of a {@link WaitingPolicy}. */
export interface WaitingOptions {
  /** The starting budget, ns. */
  readonly spinBudgetNs: number;
  /** The budget never shrinks below this, ns. */
  readonly minSpinNs: number;
  /** The budget never grows above this, ns. */
  readonly maxSpinNs: number;
  /** Poll once per event-loop turn instead of spinning (ranks outnumber cores). */
  readonly yieldBetweenPolls: boolean;
  /** With `yieldBetweenPolls`, the budget never grows above this, ns (default `minSpinNs`). */
  readonly maxYieldNs?: number;
  /** Runs `fn` after the event loop's pending I/O and timers (Node: `setImmediate`). */
  readonly defer: (fn: () => void) => void;
  /** A monotonic clock in milliseconds with sub-microsecond resolution (`performance.now`). */
  readonly now: () => number;
}

/** What {@link chooseWaiting} decides from. */
export interface WaitingSituation {
  /** The transport's `waitMode` option: `'auto'` decides from the counts below. */
  readonly mode: 'auto' | 'spin' | 'yield';
  /** Ranks that compete for this host's cores: the peers the transport serves here, and this one. */
  readonly ranks: number;
  /** Cores the ranks of this host share (`hostCores()` in lib/launch/binding.ts: the `--bind-to core` CPU list, else `os.availableParallelism()`). */
  readonly cores: number;
  /** A peer may run on this very thread (another world of this thread): it progresses only when this one returns to the event loop. */
  readonly peerOnThisThread: boolean;
  /** `sched_yield` is at hand (the native addon loaded). */
  readonly canSchedYield: boolean;
}

/** How a transport's polls give way to other ranks (see {@link chooseWaiting}). */
export interface WaitingChoice {
  /**
   * An empty poll calls `sched_yield`: the core's blocking waits (which spin on `poll()`) and the
   * wait loop's turns give the core to a rank that has work.
   */
  readonly schedYield: boolean;
  /** The wait loop polls once per event-loop turn instead of spinning ({@link WaitingOptions.yieldBetweenPolls}). */
  readonly yieldBetweenPolls: boolean;
}

/**
 * Chooses how a transport waits (pure). When ranks outnumber cores (`'auto'`), or always with
 * `'yield'`, an empty poll calls `sched_yield` — the cheapest way to hand the core to a rank with
 * work; where that is not at hand, the wait loop polls once per event-loop turn instead. A peer on
 * this very thread can only progress when this one returns to the event loop: then the wait loop
 * polls once per turn whatever the mode.
 *
 * Sleeping instead (a futex wait, bounded or not) was measured and loses on an oversubscribed
 * virtual machine: a wake-up costs an inter-processor interrupt or the un-halting of an idle vCPU
 * (10–25 µs, and ~70 µs when a timed wait halts the vCPU), where a yielded core is handed over in
 * 1.5–5 µs; the wait loop still sleeps once its budget is spent.
 */
export function chooseWaiting(s: WaitingSituation): WaitingChoice {
  const crowded = s.mode === 'yield' || (s.mode === 'auto' && s.ranks > s.cores);
  return {
    schedYield: crowded && s.canSchedYield,
    yieldBetweenPolls: s.peerOnThisThread || (crowded && !s.canSchedYield),
  };
}

/** Where the policy is. */
export type WaitingState = 'stopped' | 'polling' | 'sleeping';

/**
 * What one poll achieved, as the `progress` function returns it: positive (any count) when a frame
 * was delivered or a send completed — the application has work, so the turn ends; negative when
 * bytes only moved (a streamed piece) — not idleness, keep polling; zero for nothing.
 */
export const Progress = {
  /** Nothing. */
  NONE: 0,
  /** Bytes moved, nothing delivered yet. */
  MOVED: -1,
  /** Something was delivered (any positive number says the same). */
  DELIVERED: 1,
} as const;

/** The wait loop of one transport. */
export class WaitingPolicy {
  private current: WaitingState = 'stopped';
  private budgetNs: number;
  /** `maxSpinNs`, or the yield cap. */
  private readonly maxBudgetNs: number;
  /** When polling started to find nothing (ms), −1 while progressing. */
  private idleSince = -1;
  /** When the current sleep began (ms). */
  private sleptAt = 0;
  private scheduled = false;
  private sleepOutstanding = false;
  /** Counters, for tests and diagnostics. */
  readonly counts = { turns: 0, hits: 0, sleeps: 0, wakes: 0 };

  /**
   * @param progress polls everything once; returns a {@link Progress} value (positive: delivered,
   *   negative: only moved, 0: nothing).
   */
  constructor(
    private readonly progress: () => number,
    private readonly sleeper: Sleeper,
    private readonly options: WaitingOptions,
  ) {
    this.maxBudgetNs = options.yieldBetweenPolls ? Math.max(options.minSpinNs, Math.min(options.maxSpinNs, options.maxYieldNs ?? options.minSpinNs)) : options.maxSpinNs;
    this.budgetNs = clamp(options.spinBudgetNs, options.minSpinNs, this.maxBudgetNs);
  }

  get state(): WaitingState {
    return this.current;
  }

  /** The current budget, ns. */
  get spinBudgetNs(): number {
    return this.budgetNs;
  }

  /** Starts polling (from the next event-loop turn). Idempotent. */
  start(): void {
    if (this.current !== 'stopped') return;
    this.current = 'polling';
    this.idleSince = -1;
    this.schedule();
  }

  /** Stops; an outstanding sleep is left to end (its wake-up is ignored). */
  stop(): void {
    if (this.current === 'sleeping') this.sleeper.cancel();
    this.current = 'stopped';
  }

  /** Progress happened elsewhere (the core polled and found frames): leave sleep, poll again. */
  wakeUp(): void {
    if (this.current !== 'sleeping') return;
    this.sleeper.cancel();
    this.current = 'polling';
    this.idleSince = -1;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.options.defer(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    if (this.current !== 'polling') return;
    this.counts.turns++;
    const { now, yieldBetweenPolls } = this.options;
    const start = now();
    if (this.idleSince < 0) this.idleSince = start;
    const budgetMs = this.budgetNs / 1e6;
    const turnMs = this.options.maxSpinNs / 1e6;
    for (let polls = 1; ; polls++) {
      const p = this.progress();
      if (p > 0) return this.hit(now() - this.idleSince);
      if (p < 0) {
        // Streaming: not idle. Keep at it, but hand the event loop back now and then.
        const t = now();
        this.idleSince = t;
        if (yieldBetweenPolls || t - start >= turnMs) return this.schedule();
        continue;
      }
      if (yieldBetweenPolls) {
        if (now() - this.idleSince >= budgetMs) break;
        return this.schedule();
      }
      // Reading the clock costs as much as a poll: look at it every 4th poll only.
      if ((polls & 3) === 0 && now() - this.idleSince >= budgetMs) break;
    }
    this.miss();
  };

  /** Progress after `waitedMs` of polling. */
  private hit(waitedMs: number): void {
    this.counts.hits++;
    this.budgetNs = Math.min(this.maxBudgetNs, Math.max(this.budgetNs, 2e6 * waitedMs));
    this.idleSince = -1;
    this.schedule();
  }

  private miss(): void {
    const token = this.sleeper.prepare();
    // The last look after raising the flag: a peer that published before seeing it is caught here.
    if (this.progress() !== Progress.NONE) {
      this.sleeper.cancel();
      this.idleSince = -1;
      this.schedule();
      return;
    }
    this.current = 'sleeping';
    this.counts.sleeps++;
    this.sleptAt = this.options.now();
    if (this.sleepOutstanding) return;
    this.sleepOutstanding = true;
    this.sleeper.sleep(token, this.woken);
  }

  private readonly woken = (): void => {
    this.sleepOutstanding = false;
    if (this.current !== 'sleeping') return;
    this.counts.wakes++;
    this.sleeper.cancel();
    const { minSpinNs } = this.options;
    const max = this.maxBudgetNs;
    const sleptNs = (this.options.now() - this.sleptAt) * 1e6;
    this.budgetNs = sleptNs <= max ? Math.min(max, Math.max(this.budgetNs, 2 * sleptNs)) : Math.max(minSpinNs, this.budgetNs / 2);
    this.current = 'polling';
    this.idleSince = -1;
    this.turn();
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
