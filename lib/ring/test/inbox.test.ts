import { describe, expect, it } from 'vitest';
import { ANNOUNCEMENT_STALL_MS, CONTENDED, DOORBELL_WORD, FULL, Inbox, INBOX_DESCRIPTOR_MAX_BYTES, InboxSender, InboxState, inboxBytes, initInbox, newAnnouncement } from '../inbox.js';
import type { Region } from '../region.js';
import { runTsWorker } from './helpers.js';

function inboxRegion(slots: number): Region {
  const byteLength = inboxBytes(slots);
  const region = { sab: new SharedArrayBuffer(128 + byteLength), byteOffset: 128, byteLength };
  initInbox(region, slots);
  return region;
}

const descriptor = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i + seed) & 0xff);

describe('inbox', () => {
  it('passes announcements in order, with their sender and descriptor (0 to 96 bytes)', () => {
    const region = inboxRegion(8);
    const owner = new Inbox(region);
    const peer = new InboxSender(region);
    const a = newAnnouncement();
    expect(owner.pending()).toBe(false);
    expect(owner.take(a)).toBe(false);
    for (const n of [0, 1, 8, 64, INBOX_DESCRIPTOR_MAX_BYTES]) expect(peer.announce(n, descriptor(n, n))).toBe(true);
    for (const n of [0, 1, 8, 64, INBOX_DESCRIPTOR_MAX_BYTES]) {
      expect(owner.pending()).toBe(true);
      expect(owner.take(a)).toBe(true);
      expect(a.from).toBe(n);
      expect([...a.descriptor.subarray(0, a.length)]).toEqual([...descriptor(n, n)]);
    }
    expect(owner.take(a)).toBe(false);
    expect(() => peer.announce(1, new Uint8Array(INBOX_DESCRIPTOR_MAX_BYTES + 1))).toThrow(RangeError);
  });

  it('refuses announcements while full and takes them again once drained, lap after lap', () => {
    const region = inboxRegion(4);
    const owner = new Inbox(region);
    const peers = [new InboxSender(region), new InboxSender(region)];
    const a = newAnnouncement();
    let sent = 0;
    let got = 0;
    for (let lap = 0; lap < 10; lap++) {
      while (peers[sent % 2].announce(sent, descriptor(4, sent))) sent++;
      expect(sent - got).toBe(4);
      while (owner.take(a)) {
        expect(a.from).toBe(got);
        got++;
      }
    }
    expect(got).toBe(40);
  });

  it('wakes only a sleeper: ring() increments the doorbell only while the waiter flag is up', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const peer = new InboxSender(region);
    expect(peer.ring()).toBe(false);
    expect(Atomics.load(owner.words, DOORBELL_WORD)).toBe(0);
    const token = owner.prepareToSleep();
    expect(peer.ring()).toBe(true);
    expect(Atomics.load(owner.words, DOORBELL_WORD)).toBe(token + 1);
    owner.clearWaiter();
    expect(peer.ring()).toBe(false);
    peer.ringAlways();
    expect(Atomics.load(owner.words, DOORBELL_WORD)).toBe(token + 2);
  });

  it('reads the sleep token before it raises the waiter flag (a peer that rings in between must change the token)', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const order: string[] = [];
    const load = Atomics.load;
    const store = Atomics.store;
    const doorbell = Atomics.load(owner.words, DOORBELL_WORD);
    try {
      Atomics.load = ((ta: Int32Array, i: number) => {
        if (ta === owner.words && i === DOORBELL_WORD) order.push('read doorbell');
        return load(ta, i);
      }) as typeof Atomics.load;
      Atomics.store = ((ta: Int32Array, i: number, v: number) => {
        if (ta === owner.words && v === 1) order.push(`store 1 at ${i}`);
        return store(ta, i, v);
      }) as typeof Atomics.store;
      expect(owner.prepareToSleep()).toBe(doorbell);
    } finally {
      Atomics.load = load;
      Atomics.store = store;
    }
    expect(order[0]).toBe('read doorbell');
    expect(order).toHaveLength(2);
    // The second step raised the flag: a peer's ring now lowers it and changes the doorbell.
    expect(new InboxSender(region).ring()).toBe(true);
    expect(Atomics.load(owner.words, DOORBELL_WORD)).not.toBe(doorbell);
  });

  it('rings once per sleep: the peer that rings lowers the flag, and later frames (from it or others) do not ring until the owner sleeps again', () => {
    const region = inboxRegion(4);
    const owner = new Inbox(region);
    const a = new InboxSender(region);
    const b = new InboxSender(region);
    const token = owner.prepareToSleep();
    expect(a.ring()).toBe(true);
    expect(a.ring()).toBe(false);
    expect(b.ring()).toBe(false);
    expect(Atomics.load(owner.words, DOORBELL_WORD)).toBe(token + 1);
    // Woken, the owner polls, finds nothing more, and goes back to sleep: the next frame rings again.
    owner.clearWaiter();
    const next = owner.prepareToSleep();
    expect(next).toBe(token + 1);
    expect(b.ring()).toBe(true);
    expect(a.ring()).toBe(false);
    expect(Atomics.load(owner.words, DOORBELL_WORD)).toBe(token + 2);
  });

  it('publishes the owner state; an unknown state reads as gone', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const peer = new InboxSender(region);
    expect(peer.state).toBe(InboxState.OPEN);
    expect(owner.changeState(InboxState.OPEN, InboxState.CLOSED)).toBe(true);
    expect(owner.changeState(InboxState.OPEN, InboxState.GONE)).toBe(false);
    expect(peer.state).toBe(InboxState.CLOSED);
    Atomics.store(owner.words, 32, 77);
    expect(peer.state).toBe(InboxState.GONE);
  });

  it('refuses corrupt layouts and slots with CORRUPT', () => {
    const CORRUPT = expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT' });
    for (const [word, value] of [
      [0, 1],
      [1, 1], // the layout before slots could be retired
      [1, 3],
      [2, 3],
      [2, 16],
      [3, 95],
    ] as const) {
      const region = inboxRegion(8);
      Atomics.store(new Int32Array(region.sab, region.byteOffset, 4), word, value);
      expect(() => new Inbox(region)).toThrow(CORRUPT);
      expect(() => new InboxSender(region)).toThrow(CORRUPT);
    }
    // A slot sequence that is neither empty nor ready, and a descriptor length over 96.
    const region = inboxRegion(8);
    const owner = new Inbox(region);
    const slot0 = new Int32Array(region.sab, region.byteOffset + 640, 32);
    Atomics.store(slot0, 0, 5);
    expect(() => owner.take(newAnnouncement())).toThrow(CORRUPT);
    Atomics.store(slot0, 0, 1);
    Atomics.store(slot0, 2, 97);
    expect(() => owner.take(newAnnouncement())).toThrow(CORRUPT);
  });

  it('a full or garbage queue makes announce() give up, never spin forever', () => {
    const region = inboxRegion(2);
    const peer = new InboxSender(region);
    const words = new Int32Array(region.sab, region.byteOffset, region.byteLength / 4);
    Atomics.store(words, 128, 12345); // enqueue position far ahead of every slot sequence
    expect(peer.announce(0, descriptor(8, 0))).toBe(false);
    Atomics.store(words, 128, -7);
    Atomics.store(words, 160, 0x7fffffff); // slot sequence far ahead: looks claimed forever
    expect(peer.announce(0, descriptor(8, 0))).toBe(false);
  });

  it('a claim never filled (its peer killed in between) is given up after ANNOUNCEMENT_STALL_MS, and the announcements behind it are taken', () => {
    const region = inboxRegion(4);
    const owner = new Inbox(region);
    const dead = new InboxSender(region);
    const live = new InboxSender(region);
    const a = newAnnouncement();
    // Nothing claimed: an idle position is never given up, however long it stays so.
    expect(owner.skipAbandoned(0)).toBe(false);
    expect(owner.skipAbandoned(10 * ANNOUNCEMENT_STALL_MS)).toBe(false);
    expect(dead.claim()).toBe(0);
    expect(live.announce(7, descriptor(8, 7))).toBe(true);
    expect(owner.take(a)).toBe(false); // stuck behind the claim
    expect(owner.skipAbandoned(1_000)).toBe(false); // first seen: the clock starts
    expect(owner.skipAbandoned(1_000 + ANNOUNCEMENT_STALL_MS - 1)).toBe(false);
    expect(owner.skipAbandoned(1_000 + ANNOUNCEMENT_STALL_MS)).toBe(true);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(7);
    expect([...a.descriptor.subarray(0, a.length)]).toEqual([...descriptor(8, 7)]);
    // The claimant was only stopped: its fill is refused (nothing of it is taken) and it claims anew.
    expect(dead.fill(0, 3, descriptor(8, 3))).toBe(false);
    expect(owner.take(a)).toBe(false);
    expect(dead.announce(3, descriptor(8, 3))).toBe(true);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(3);
    // The retired slot is stepped over, lap after lap, and what a resumed claimant still writes into
    // it is never read: three slots of four carry on, full at three.
    for (let lap = 0; lap < 6; lap++) {
      let sent = 0;
      while (live.announce(10 + sent, descriptor(4, lap + sent))) {
        expect(dead.fill(0, 99, descriptor(96, 99))).toBe(false); // the stale copy, again and again
        sent++;
      }
      expect(sent).toBe(3);
      for (let i = 0; i < sent; i++) {
        expect(owner.pending()).toBe(true); // also when the owner stands at the retired slot
        expect(owner.take(a)).toBe(true);
        expect([a.from, [...a.descriptor.subarray(0, a.length)]]).toEqual([10 + i, [...descriptor(4, lap + i)]]);
      }
      expect(owner.pending()).toBe(false);
    }
  });

  it('a fill that lands between the owner\'s decision to give a position up and its compare-and-swap is taken, and the slot stays in service', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const slow = new InboxSender(region);
    const a = newAnnouncement();
    const retiredWord = 160 + 3; // slot 0's retired word
    const pos = slow.claim();
    owner.skipAbandoned(0);
    const store = Atomics.store;
    let filled = false;
    try {
      // The claimant fills right after the owner marked the slot retired, before its compare-and-swap.
      Atomics.store = ((ta: Int32Array, i: number, v: number) => {
        const r = store(ta, i, v);
        if (ta === owner.words && i === retiredWord && v === 1 && !filled) filled = slow.fill(pos, 6, descriptor(8, 6));
        return r;
      }) as typeof Atomics.store;
      expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(false);
    } finally {
      Atomics.store = store;
    }
    expect(filled).toBe(true);
    expect(Atomics.load(owner.words, retiredWord)).toBe(0);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(6);
    // Slot 0 serves its later laps: both slots carry announcements.
    for (let lap = 0; lap < 3; lap++) {
      expect(slow.announce(10, descriptor(4, lap))).toBe(true);
      expect(slow.announce(11, descriptor(4, lap))).toBe(true);
      expect(slow.announce(12, descriptor(4, lap))).toBe(false);
      for (const from of [10, 11]) {
        expect(owner.take(a)).toBe(true);
        expect(a.from).toBe(from);
      }
    }
  });

  it('claims left unfilled one behind the other are given up together; one made after the stall was first seen waits its own time', () => {
    const region = inboxRegion(8);
    const owner = new Inbox(region);
    const dead = [new InboxSender(region), new InboxSender(region)];
    const live = new InboxSender(region);
    const late = new InboxSender(region);
    const a = newAnnouncement();
    expect(dead[0].claim()).toBe(0);
    expect(dead[1].claim()).toBe(1);
    expect(owner.skipAbandoned(0)).toBe(false);
    expect(live.announce(5, descriptor(4, 5))).toBe(true); // position 2
    expect(late.claim()).toBe(3); // claimed after the clock started, then killed too
    expect(live.announce(6, descriptor(4, 6))).toBe(true); // position 4
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(true);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(5);
    expect(owner.take(a)).toBe(false); // stuck at position 3 until its own stall has lasted
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS + 1)).toBe(false);
    expect(owner.skipAbandoned(3 * ANNOUNCEMENT_STALL_MS)).toBe(true);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(6);
  });

  it('a claim made right behind the stalled ones after the stall was first seen is not given up with them', () => {
    const region = inboxRegion(8);
    const owner = new Inbox(region);
    const peer = new InboxSender(region);
    const a = newAnnouncement();
    expect(peer.claim()).toBe(0);
    expect(peer.claim()).toBe(1);
    expect(owner.skipAbandoned(0)).toBe(false); // the clock starts: positions 0 and 1 are claimed
    expect(peer.claim()).toBe(2); // claimed later, also never filled
    expect(peer.announce(7, descriptor(4, 7))).toBe(true); // position 3
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(true);
    expect(owner.take(a)).toBe(false); // position 2 has not stalled long enough yet
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS + 1)).toBe(false);
    expect(owner.skipAbandoned(2 * ANNOUNCEMENT_STALL_MS)).toBe(false);
    expect(owner.skipAbandoned(2 * ANNOUNCEMENT_STALL_MS + 1)).toBe(true);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(7);
  });

  it('announce claims again when the owner gave its position up between its claim and its fill', () => {
    const region = inboxRegion(4);
    const owner = new Inbox(region);
    const slow = new InboxSender(region);
    const a = newAnnouncement();
    const stale = slow.claim();
    owner.skipAbandoned(0);
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(true);
    // Its next claim hands back the stale position, as if it had stopped right after claiming.
    const claim = slow.claim.bind(slow);
    let first = true;
    slow.claim = () => (first ? ((first = false), stale) : claim());
    expect(slow.announce(4, descriptor(8, 4))).toBe(true);
    expect(first).toBe(false);
    expect(owner.take(a)).toBe(true);
    expect([a.from, [...a.descriptor.subarray(0, a.length)]]).toEqual([4, [...descriptor(8, 4)]]);
    expect(owner.take(a)).toBe(false);
  });

  it('steps over retired slots where the 32-bit positions wrap', () => {
    const region = inboxRegion(4);
    const words = new Int32Array(region.sab, region.byteOffset, region.byteLength / 4);
    // Positions 2^32 − 3 … : slot i's sequence is the position of that slot's current lap.
    const start = 2 ** 32 - 3;
    Atomics.store(words, 128, start | 0);
    for (let i = 0; i < 4; i++) Atomics.store(words, 160 + 32 * i, (start + ((i - (start % 4) + 4) % 4)) | 0);
    const owner = new Inbox(region);
    (owner as unknown as { next: number }).next = start;
    const peer = new InboxSender(region);
    const a = newAnnouncement();
    // Three claims killed before their fill, the last at 2^32 − 1; the next position is 0 again.
    for (let k = 0; k < 3; k++) expect(peer.claim()).toBe(start + k);
    expect(peer.announce(1, descriptor(4, 1))).toBe(true);
    owner.skipAbandoned(0);
    expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(true); // all three at once, across the wrap
    for (let i = 0; i < 10; i++) {
      if (i > 0) expect(peer.announce(1 + i, descriptor(4, 1 + i))).toBe(true);
      expect(owner.take(a)).toBe(true);
      expect([a.from, [...a.descriptor.subarray(0, a.length)]]).toEqual([1 + i, [...descriptor(4, 1 + i)]]);
    }
  });

  it('an inbox whose every slot was retired refuses announcements (as when full), never spins forever', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const peer = new InboxSender(region);
    for (let k = 0; k < 2; k++) {
      expect(peer.claim()).toBeGreaterThanOrEqual(0);
      owner.skipAbandoned(0);
      expect(owner.skipAbandoned(ANNOUNCEMENT_STALL_MS)).toBe(true);
    }
    expect(peer.announce(0, descriptor(4, 0))).toBe(false);
    expect(owner.pending()).toBe(false);
    expect(owner.take(newAnnouncement())).toBe(false);
  });

  it('a claim filled late is taken, not given up: the stall clock restarts at every new stall', () => {
    const region = inboxRegion(2);
    const owner = new Inbox(region);
    const slow = new InboxSender(region);
    const a = newAnnouncement();
    const pos = slow.claim();
    expect(pos).toBe(0);
    expect(owner.skipAbandoned(0)).toBe(false);
    expect(slow.fill(pos, 5, descriptor(8, 5))).toBe(true);
    expect(owner.skipAbandoned(10 * ANNOUNCEMENT_STALL_MS)).toBe(false);
    expect(owner.take(a)).toBe(true);
    expect(a.from).toBe(5);
    // A second stall at the next position starts its own clock.
    expect(slow.claim()).toBe(1);
    expect(owner.skipAbandoned(20 * ANNOUNCEMENT_STALL_MS)).toBe(false);
    expect(owner.skipAbandoned(21 * ANNOUNCEMENT_STALL_MS - 1)).toBe(false);
    expect(owner.skipAbandoned(21 * ANNOUNCEMENT_STALL_MS)).toBe(true);
    // Full and contended claims are told apart from positions.
    const other = new InboxSender(region);
    expect(other.claim()).toBe(2);
    expect(other.claim()).toBe(CONTENDED); // position 3: slot 1 is retired, its position passed
    expect(other.claim()).toBe(FULL); // position 4: slot 0 still holds position 2's announcement
    const words = new Int32Array(region.sab, region.byteOffset, region.byteLength / 4);
    Atomics.store(words, 160, 9); // slot 0's sequence ahead of the enqueue position: someone else's
    expect(other.claim()).toBe(CONTENDED);
  });

  it('collects announcements from several producer threads at once: each exactly once, per-producer order kept', async () => {
    const region = inboxRegion(16);
    const owner = new Inbox(region);
    const producers = 4;
    const per = 2000;
    const workers = Array.from({ length: producers }, (_, p) => runTsWorker<string>('lib/ring/test/worker-announcer.ts', { region, from: p, count: per }));
    try {
      const next = new Array(producers).fill(0);
      const a = newAnnouncement();
      const deadline = Date.now() + 60_000;
      let total = 0;
      while (total < producers * per && Date.now() < deadline) {
        if (!owner.take(a)) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const seq = new DataView(a.descriptor.buffer).getUint32(0, true);
        expect(a.length).toBe(8);
        expect(seq).toBe(next[a.from]);
        next[a.from]++;
        total++;
      }
      expect(next).toEqual(new Array(producers).fill(per));
      for (const w of workers) expect(await w.result).toBe('done');
    } finally {
      await Promise.all(workers.map((w) => w.worker.terminate()));
    }
  }, 120_000);
});
