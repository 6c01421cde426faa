import { describe, expect, it } from 'vitest';
import { CellWatchers } from '../collective-cells.js';
import { PollSweep } from '../poll-sweep.js';
import type { Poller } from '../poller.js';
import { PendingChannels, type FlushableChannel } from '../ring-channel.js';
import { RingProgress } from '../ring-progress.js';
import type { SingleCopySink } from '../single-copy-sink.js';
import { Progress, type Sleeper } from '../waiting.js';

/** Fakes of the parts: each look's results are set by the test. */
function parts(opts: { copies?: boolean; yieldCpu?: boolean } = {}) {
  const state = { frames: 0, moved: false, yields: 0, sweeps: 0, pumped: [] as number[], sleeps: 0 };
  const poller = {
    moved: false,
    poll() {
      this.moved = state.moved;
      return state.frames;
    },
  };
  // A single-copy read in progress: each pump finishes one read.
  const copies = {
    active: 0,
    counts: { reads: 0 },
    pump(maxBytes: number) {
      state.pumped.push(maxBytes);
      this.counts.reads++;
      this.active--;
      return 1;
    },
  };
  const pending = new PendingChannels<FlushableChannel>();
  const watchers = new CellWatchers();
  let clock = 0;
  const sweeps = new PollSweep(() => state.sweeps++, 10, () => clock);
  const looks = new RingProgress({
    poller: poller as unknown as Poller,
    copies: opts.copies ? (copies as unknown as SingleCopySink) : undefined,
    copyBytesPerLook: 4096,
    pending,
    watchers,
    yieldCpu: opts.yieldCpu ? () => state.yields++ : undefined,
    sweeps,
  });
  const sleeper: Sleeper = {
    prepare: () => 0,
    sleep: () => state.sleeps++,
    cancel: () => undefined,
  };
  return {
    state,
    copies,
    sweeps,
    pending,
    watchers,
    looks,
    sleeper,
    advance(ms: number) {
      clock += ms;
    },
  };
}

/** A channel whose flushes complete frames without writing a byte (a single-copy answer that arrived). */
function completingChannel(frames: number): FlushableChannel {
  let completed = 0;
  let left = frames;
  return {
    flush() {
      completed += left;
      left = 0;
      return 0;
    },
    get pending() {
      return left > 0;
    },
    get completed() {
      return completed;
    },
  };
}

describe('RingProgress', () => {
  it('poll() counts frames, finished single-copy reads and satisfied cell checks', () => {
    const p = parts({ copies: true });
    p.state.frames = 2;
    p.copies.active = 1;
    let checked = false;
    p.watchers.add(() => (checked = true));
    expect(p.looks.poll()).toBe(4);
    expect(checked).toBe(true);
    expect(p.state.pumped).toEqual([4096]);
    expect(p.copies.active).toBe(0);
    // Nothing active: no pump, and an idle look counts nothing.
    p.state.frames = 0;
    expect(p.looks.poll()).toBe(0);
    expect(p.state.pumped).toEqual([4096]);
  });

  it('yields the core on an empty look only when told to, from poll() and progress()', () => {
    const quiet = parts();
    expect(quiet.looks.poll()).toBe(0);
    expect(quiet.looks.progress()).toBe(Progress.NONE);
    expect(quiet.state.yields).toBe(0);
    const crowded = parts({ yieldCpu: true });
    expect(crowded.looks.poll()).toBe(0);
    expect(crowded.looks.progress()).toBe(Progress.NONE);
    expect(crowded.state.yields).toBe(2);
    crowded.state.frames = 1;
    expect(crowded.looks.poll()).toBe(1);
    expect(crowded.looks.progress()).toBe(1);
    expect(crowded.state.yields).toBe(2);
    // Bytes moved without a whole frame: MOVED, no yield.
    crowded.state.frames = 0;
    crowded.state.moved = true;
    expect(crowded.looks.progress()).toBe(Progress.MOVED);
    expect(crowded.state.yields).toBe(2);
  });

  it('progress() counts sends a flush completed even when it wrote nothing', () => {
    const p = parts();
    p.pending.add(completingChannel(3));
    expect(p.looks.progress()).toBe(3);
    expect(p.pending.size).toBe(0);
    expect(p.looks.progress()).toBe(Progress.NONE);
  });

  it('a poll that delivers wakes a sleeping wait loop; an empty one leaves it asleep', () => {
    const p = parts();
    const turns: (() => void)[] = [];
    let clock = 0;
    const policy = p.looks.startWaiting(p.sleeper, {
      spinBudgetNs: 1_000,
      minSpinNs: 1_000,
      maxSpinNs: 1_000,
      yieldBetweenPolls: false,
      defer: (fn) => turns.push(fn),
      now: () => (clock += 0.001),
    });
    try {
      // The wait loop spins its budget on empty looks, then sleeps.
      for (let i = 0; i < 100 && turns.length > 0; i++) turns.shift()!();
      expect(policy.state).toBe('sleeping');
      expect(p.state.sleeps).toBe(1);
      expect(p.looks.poll()).toBe(0);
      expect(policy.state).toBe('sleeping');
      p.state.frames = 1;
      expect(p.looks.poll()).toBe(1);
      expect(policy.state).toBe('polling');
    } finally {
      policy.stop();
      p.sweeps.stop();
    }
  });

  it('runs the peer sweep from polls when it is due', () => {
    const p = parts();
    for (let i = 0; i < 200; i++) p.looks.poll();
    expect(p.state.sweeps).toBe(0);
    p.advance(20);
    for (let i = 0; i < 200; i++) p.looks.poll();
    expect(p.state.sweeps).toBe(1);
  });
});
