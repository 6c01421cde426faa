import { describe, expect, it } from 'vitest';
import { chooseWaiting, Progress, WaitingPolicy, type Sleeper, type WaitingOptions, type WaitingSituation } from '../waiting.js';

const D = Progress.DELIVERED;

/** A manual world: `now` advances by `tickMs` per poll; `defer`ed turns run when `run()` is called. */
function harness(options: Partial<WaitingOptions> = {}) {
  let clock = 0;
  const deferred: (() => void)[] = [];
  let work: number[] = []; // what successive polls return (a Progress value; then NONE)
  let polls = 0;
  const sleeps: number[] = [];
  let wakeFn: (() => void) | undefined;
  let flag = false;
  let doorbell = 0;
  const sleeper: Sleeper = {
    prepare: () => ((flag = true), doorbell),
    sleep: (token, wake) => {
      sleeps.push(token);
      wakeFn = wake;
    },
    cancel: () => {
      flag = false;
    },
  };
  const policy = new WaitingPolicy(
    () => {
      polls++;
      clock += 0.001; // 1 µs per poll
      return work.shift() ?? 0;
    },
    sleeper,
    { spinBudgetNs: 10_000, minSpinNs: 1_000, maxSpinNs: 100_000, yieldBetweenPolls: false, defer: (fn) => deferred.push(fn), now: () => clock, ...options },
  );
  return {
    policy,
    run(max = 1000) {
      for (let i = 0; i < max && deferred.length > 0; i++) deferred.shift()!();
    },
    setWork(w: number[]) {
      work = w;
    },
    advance(ms: number) {
      clock += ms;
    },
    get polls() {
      return polls;
    },
    get deferred() {
      return deferred.length;
    },
    get flag() {
      return flag;
    },
    sleeps,
    ring() {
      doorbell++;
      const w = wakeFn;
      wakeFn = undefined;
      w?.();
    },
  };
}

describe('waiting policy', () => {
  it('spins for the budget, raises the flag, polls once more, then sleeps; a ring wakes it', () => {
    const h = harness();
    h.policy.start();
    expect(h.polls).toBe(0); // nothing before the first event-loop turn
    h.run(1);
    // ~10 µs of 1 µs polls (the clock is read every 4th), then the last look after raising the flag.
    expect(h.polls).toBeGreaterThanOrEqual(10);
    expect(h.polls).toBeLessThanOrEqual(16);
    expect(h.policy.state).toBe('sleeping');
    expect(h.flag).toBe(true);
    expect(h.sleeps).toHaveLength(1);
    const before = h.polls;
    h.setWork([D]);
    h.ring();
    expect(h.flag).toBe(false);
    expect(h.polls).toBe(before + 1);
    expect(h.policy.state).toBe('polling');
    expect(h.deferred).toBe(1);
  });

  it('finds work in the last look after raising the flag and does not sleep', () => {
    const h = harness({ spinBudgetNs: 1_000, minSpinNs: 1_000 });
    h.policy.start();
    // Polls 1–4 spend the 1 µs budget (the clock is read at the 4th); the last look (poll 5) finds work.
    h.setWork([0, 0, 0, 0, D]);
    h.run(1);
    expect(h.sleeps).toHaveLength(0);
    expect(h.flag).toBe(false);
    expect(h.policy.state).toBe('polling');
  });

  it('adapts: a short sleep grows the budget to twice its length, a long one halves it, within bounds', () => {
    const h = harness();
    h.policy.start();
    h.run(1);
    expect(h.policy.state).toBe('sleeping');
    expect(h.policy.spinBudgetNs).toBe(10_000);
    // Woken 30 µs later: spinning 60 µs would have caught it.
    h.advance(0.03);
    h.ring();
    expect(h.policy.spinBudgetNs).toBeCloseTo(60_000, -2);
    // Woken 60 µs later again: 120 µs, capped at 100 µs.
    h.advance(0.06);
    h.ring();
    expect(h.policy.spinBudgetNs).toBe(100_000);
    // Long sleeps (1 ms, beyond the cap: the peer was away) halve it down to the floor.
    for (let i = 0; i < 10; i++) {
      h.advance(1);
      h.ring();
    }
    expect(h.policy.spinBudgetNs).toBe(1_000);
  });

  it('a hit after waiting e keeps the budget at least 2e', () => {
    const h = harness({ spinBudgetNs: 50_000 });
    h.policy.start();
    h.setWork([...new Array(39).fill(0), D]); // progress on the 40th poll: 40 µs
    h.run(1);
    expect(h.policy.state).toBe('polling');
    expect(h.policy.spinBudgetNs).toBeCloseTo(80_000, -3);
  });

  it('keeps polling while bytes move (not idle), handing the event loop back after maxSpinNs', () => {
    const h = harness({ spinBudgetNs: 2_000, minSpinNs: 1_000, maxSpinNs: 50_000 });
    h.policy.start();
    h.setWork(new Array(500).fill(Progress.MOVED));
    h.run(1);
    // Far beyond the 2 µs budget without sleeping, one turn of about 50 µs.
    expect(h.sleeps).toHaveLength(0);
    expect(h.polls).toBeGreaterThanOrEqual(50);
    expect(h.polls).toBeLessThanOrEqual(52);
    expect(h.deferred).toBe(1);
  });

  it('yields between polls when asked: one poll per turn until the budget is spent, the budget capped at maxYieldNs', () => {
    const h = harness({ yieldBetweenPolls: true, maxYieldNs: 5_000 });
    expect(h.policy.spinBudgetNs).toBe(5_000);
    h.policy.start();
    h.run(1);
    expect(h.polls).toBe(1);
    expect(h.deferred).toBe(1);
    h.run(1);
    expect(h.polls).toBe(2);
    h.run(100);
    expect(h.policy.state).toBe('sleeping');
    // A 4 µs sleep would grow a spinning budget to 8 µs; a yielding one stops at the 5 µs cap.
    h.advance(0.004);
    h.ring();
    expect(h.policy.spinBudgetNs).toBe(5_000);
  });

  it('wakeUp leaves sleep; the outstanding sleep is reused, never doubled', () => {
    const h = harness();
    h.policy.start();
    h.run(1);
    expect(h.sleeps).toHaveLength(1);
    h.policy.wakeUp();
    expect(h.policy.state).toBe('polling');
    expect(h.flag).toBe(false);
    h.run(1);
    expect(h.policy.state).toBe('sleeping');
    expect(h.flag).toBe(true);
    expect(h.sleeps).toHaveLength(1); // the first sleep is still outstanding and serves again
    h.setWork([D]);
    h.ring();
    expect(h.policy.state).toBe('polling');
  });

  it('stop ends the cycle; a late wake is ignored', () => {
    const h = harness();
    h.policy.start();
    h.run(1);
    h.policy.stop();
    expect(h.flag).toBe(false);
    const polls = h.polls;
    h.ring();
    h.run();
    expect(h.polls).toBe(polls);
    expect(h.policy.state).toBe('stopped');
  });
});

describe('chooseWaiting', () => {
  const on = (s: Partial<WaitingSituation>) => chooseWaiting({ mode: 'auto', ranks: 2, cores: 2, peerOnThisThread: false, canSchedYield: true, ...s });

  it('spins while every rank has a core', () => {
    expect(on({ ranks: 1 })).toEqual({ schedYield: false, yieldBetweenPolls: false });
    expect(on({ ranks: 2, cores: 2 })).toEqual({ schedYield: false, yieldBetweenPolls: false });
    expect(on({ ranks: 8, cores: 16 })).toEqual({ schedYield: false, yieldBetweenPolls: false });
  });

  it('calls sched_yield on empty polls once ranks outnumber cores, and keeps the wait loop spinning', () => {
    expect(on({ ranks: 3, cores: 2 })).toEqual({ schedYield: true, yieldBetweenPolls: false });
    expect(on({ ranks: 8, cores: 2 })).toEqual({ schedYield: true, yieldBetweenPolls: false });
  });

  it('without sched_yield, a crowded host polls once per event-loop turn instead', () => {
    expect(on({ ranks: 8, cores: 2, canSchedYield: false })).toEqual({ schedYield: false, yieldBetweenPolls: true });
    expect(on({ ranks: 2, cores: 2, canSchedYield: false })).toEqual({ schedYield: false, yieldBetweenPolls: false });
  });

  it('a peer on this very thread makes the wait loop poll once per turn, whatever the mode', () => {
    expect(on({ peerOnThisThread: true })).toEqual({ schedYield: false, yieldBetweenPolls: true });
    expect(on({ peerOnThisThread: true, mode: 'spin' })).toEqual({ schedYield: false, yieldBetweenPolls: true });
    expect(on({ peerOnThisThread: true, ranks: 8 })).toEqual({ schedYield: true, yieldBetweenPolls: true });
  });

  it("'spin' and 'yield' override the counts", () => {
    expect(on({ mode: 'spin', ranks: 8, cores: 2 })).toEqual({ schedYield: false, yieldBetweenPolls: false });
    expect(on({ mode: 'yield', ranks: 2, cores: 16 })).toEqual({ schedYield: true, yieldBetweenPolls: false });
    expect(on({ mode: 'yield', canSchedYield: false })).toEqual({ schedYield: false, yieldBetweenPolls: true });
  });
});
