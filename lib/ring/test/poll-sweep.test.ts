import { describe, expect, it, vi } from 'vitest';
import { POLLS_PER_SWEEP_CHECK, PollSweep } from '../poll-sweep.js';

describe('poll sweep', () => {
  it('runs the sweep from polls once it is due, reading the clock every POLLS_PER_SWEEP_CHECK polls', () => {
    let now = 0;
    let reads = 0;
    let sweeps = 0;
    const s = new PollSweep(() => sweeps++, 500, () => (reads++, now));
    reads = 0;
    for (let i = 0; i < 10 * POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(reads).toBe(10);
    expect(sweeps).toBe(0); // not due yet
    now = 500;
    for (let i = 0; i < POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(sweeps).toBe(1);
    for (let i = 0; i < 5 * POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(sweeps).toBe(1); // the next one is 500 ms later
    now = 1000;
    for (let i = 0; i < POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(sweeps).toBe(2);
  });

  it('a run from the timer puts the next one from polls a period later', () => {
    let now = 0;
    let sweeps = 0;
    const s = new PollSweep(() => sweeps++, 500, () => now);
    now = 400;
    s.run();
    expect(sweeps).toBe(1);
    now = 800;
    for (let i = 0; i < 4 * POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(sweeps).toBe(1);
    now = 900;
    for (let i = 0; i < POLLS_PER_SWEEP_CHECK; i++) s.poll();
    expect(sweeps).toBe(2);
  });

  it('a run from polls puts the timer’s next run a period later too (no second sweep in one period)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      let now = 0;
      let sweeps = 0;
      const s = new PollSweep(() => sweeps++, 100, () => now).start();
      now = 100;
      for (let i = 0; i < POLLS_PER_SWEEP_CHECK; i++) s.poll();
      expect(sweeps).toBe(1); // from a poll, at 100: the next is due at 200
      vi.advanceTimersByTime(100); // the timer set for 100 fires: not due, it waits on
      expect(sweeps).toBe(1);
      now = 200;
      vi.advanceTimersByTime(100);
      expect(sweeps).toBe(2);
      now = 300;
      vi.advanceTimersByTime(100);
      expect(sweeps).toBe(3);
      s.stop();
      now = 1000;
      vi.advanceTimersByTime(1000);
      expect(sweeps).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('the timer goes on after a sweep that threw, and ends when the sweep stops it', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      let now = 0;
      let sweeps = 0;
      let s: PollSweep | undefined;
      s = new PollSweep(() => {
        sweeps++;
        if (sweeps === 1) throw new Error('a failing check');
        if (sweeps === 3) s!.stop();
      }, 100, () => now);
      s.start();
      now = 100;
      expect(() => vi.advanceTimersByTime(100)).toThrow('a failing check');
      expect(sweeps).toBe(1);
      for (const t of [200, 300, 400, 500]) {
        now = t;
        vi.advanceTimersByTime(100);
      }
      expect(sweeps).toBe(3); // the third stopped it
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('start() runs the sweep from its timer; stop() ends that', async () => {
    let sweeps = 0;
    const s = new PollSweep(() => sweeps++, 5).start();
    for (let k = 0; k < 400 && sweeps < 2; k++) await new Promise((r) => setTimeout(r, 5));
    expect(sweeps).toBeGreaterThanOrEqual(2);
    s.stop();
    const after = sweeps;
    await new Promise((r) => setTimeout(r, 50));
    expect(sweeps).toBe(after);
  });
});
