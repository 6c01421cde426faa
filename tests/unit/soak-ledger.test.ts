// The soak's receiver-side bookkeeping counts exactly what it claims to: lost, duplicated, reordered
// and damaged messages (so a soak reporting zeros means something).
import { describe, expect, it } from 'vitest';
import { HEADER_BYTES, Ledger, makeMessage } from '../soak/ledger.js';

describe('soak ledger', () => {
  it('in-order, intact messages count as received and nothing else', () => {
    const l = new Ledger(2);
    for (let seq = 0; seq < 5; seq++) l.record(makeMessage(1, seq, 64 + 4 * seq), 1);
    expect([l.messages, l.duplicated, l.reordered, l.corrupt, l.lost([0, 5])]).toEqual([5, 0, 0, 0, 0]);
  });

  it('counts a lost, a duplicated and a reordered message', () => {
    const l = new Ledger(2);
    for (const seq of [0, 2, 1, 2, 4]) l.record(makeMessage(1, seq, 40), 1);
    expect(l.reordered).toBe(1); // 1 after 2
    expect(l.duplicated).toBe(1); // 2 twice
    expect(l.lost([0, 6])).toBe(2); // 3 and 5 never came
  });

  it('counts damage: a flipped payload bit, a wrong length, a wrong source, a bad header', () => {
    const l = new Ledger(3);
    const flipped = makeMessage(1, 0, 400);
    flipped[200] ^= 4;
    l.record(flipped, 1);
    l.record(makeMessage(1, 1, 400).subarray(0, 396), 1);
    l.record(makeMessage(2, 0, 40), 1);
    l.record(new Uint8Array(HEADER_BYTES - 4), 1);
    expect(l.corrupt).toBe(4);
  });
});
