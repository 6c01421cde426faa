// Peer liveness (on plain memory, a fake clock), ring discovery and the back-off sleeper: the pure
// pieces of the ivshmem transport.
import { describe, expect, it } from 'vitest';
import { newAnnouncement } from '../../../lib/ring/inbox.js';
import { InboxState } from '../../../lib/ring/inbox.js';
import { BackoffSleeper } from '../backoff.js';
import { decodeDiscovery, RingDiscovery, SlotPeer } from '../ivshmem-channel.js';
import { PeerLiveness } from '../liveness.js';
import { IvshmemRegion } from '../region.js';
import { fakeClock, id, memoryRegion } from './helpers.js';

function twoMembers() {
  const region = IvshmemRegion.format(memoryRegion(1 << 20));
  const job = id(1);
  const me = region.join({ job, nonce: id(2), rank: 0 })!;
  const peer = region.join({ job, nonce: id(3), rank: 1 })!;
  return { region, me, peer };
}

describe('PeerLiveness', () => {
  it('judges a peer stalled only after its (control, heartbeat) pair stood still for the timeout', () => {
    const { region, me, peer } = twoMembers();
    const clock = fakeClock();
    const live = new PeerLiveness(region.members, region.rings, { timeoutMs: 1000, now: clock.now });
    live.watch(1, peer.ref);
    expect(live.check()).toEqual([]);
    clock.advance(900);
    peer.beat();
    expect(live.check()).toEqual([]); // moved: the clock starts again
    clock.advance(999);
    expect(live.check()).toEqual([]);
    clock.advance(1);
    const [v] = live.check();
    expect(v).toMatchObject({ peer: 1, kind: 'stalled', stalledMs: 1000 });
    expect(live.watched).toEqual([]);
    // The control word seen is what the caller reclaims from.
    expect(region.members.reclaim(peer.ref.slot, v.control | 0)).toEqual({ slot: peer.ref.slot, generation: peer.ref.generation });
    expect(me.isCurrent()).toBe(true);
  });

  it('an observer that stalled itself does not judge a live peer dead (the heartbeat moved meanwhile)', () => {
    const { region, peer } = twoMembers();
    const clock = fakeClock();
    const live = new PeerLiveness(region.members, region.rings, { timeoutMs: 1000, now: clock.now });
    live.watch(1, peer.ref);
    live.check();
    clock.advance(60_000); // we were frozen for a minute; the peer's heartbeat thread was not
    peer.beat();
    expect(live.check()).toEqual([]);
  });

  it('a freed slot: "left" when its ring to us was released first (finalize), "ended" when it is still live', () => {
    const a = twoMembers();
    const live = new PeerLiveness(a.region.members, a.region.rings, { timeoutMs: 1000, now: fakeClock().now });
    const ring = a.peer.openRingTo(a.me.ref)!;
    live.watch(1, a.peer.ref);
    live.setInbound(1, ring);
    a.peer.finalize();
    expect(live.check()).toMatchObject([{ peer: 1, kind: 'left' }]);

    const b = twoMembers();
    const live2 = new PeerLiveness(b.region.members, b.region.rings, { timeoutMs: 1000, now: fakeClock().now });
    const ring2 = b.peer.openRingTo(b.me.ref)!;
    live2.watch(1, b.peer.ref);
    live2.setInbound(1, ring2);
    // Its exit hook (or another observer) freed the slot; the ring stays live.
    const control = b.region.members.read(b.peer.ref.slot).control;
    b.region.members.reclaim(b.peer.ref.slot, control | 0);
    expect(live2.check()).toMatchObject([{ peer: 1, kind: 'ended' }]);
  });
});

describe('SlotPeer and RingDiscovery', () => {
  it('SlotPeer: OPEN while the peer holds its slot, CLOSED after, GONE once judged dead; no announcing, no doorbell', () => {
    const { region, peer } = twoMembers();
    const p = new SlotPeer(region.members, peer.ref);
    expect(p.state).toBe(InboxState.OPEN);
    expect(p.announce()).toBe(true);
    expect(p.ring()).toBe(false);
    peer.finalize();
    expect(p.state).toBe(InboxState.CLOSED);
    p.gone = true;
    expect(p.state).toBe(InboxState.GONE);
  });

  it('finds rings from expected peers once, by the ring epoch; nothing else; costs nothing once all are found', () => {
    const region = IvshmemRegion.format(memoryRegion(1 << 20));
    const job = id(1);
    const me = region.join({ job, nonce: id(2), rank: 0 })!;
    const p1 = region.join({ job, nonce: id(3), rank: 1 })!;
    const p2 = region.join({ job, nonce: id(4), rank: 2 })!;
    const stranger = region.join({ job, nonce: id(5), rank: 3 })!;
    const d = new RingDiscovery([me]);
    d.expect(1, 0, p1.ref);
    d.expect(2, 0, p2.ref);
    const out = newAnnouncement();
    expect(d.pending()).toBe(true); // never scanned
    expect(d.take(out)).toBe(false);
    expect(d.pending()).toBe(false); // nothing moved since
    stranger.openRingTo(me.ref); // not expected: ignored
    const r1 = p1.openRingTo(me.ref)!;
    expect(d.pending()).toBe(true);
    expect(d.take(out)).toBe(true);
    expect(out.from).toBe(1);
    expect(decodeDiscovery(out.descriptor.subarray(0, out.length))).toEqual({ regionIndex: 0, index: r1.index, generation: r1.generation });
    expect(d.take(out)).toBe(false);
    const r2 = p2.openRingTo(me.ref)!;
    expect(d.take(out)).toBe(true);
    expect(out.from).toBe(2);
    expect(decodeDiscovery(out.descriptor.subarray(0, out.length))?.index).toBe(r2.index);
    expect(d.waitingFor).toBe(0);
    const scans = d.scans;
    region.rings.allocate(p1.ref, p2.ref);
    expect(d.pending()).toBe(false);
    expect(d.take(out)).toBe(false);
    expect(d.scans).toBe(scans);
    expect(decodeDiscovery(new Uint8Array(5))).toBeUndefined();
  });
});

describe('BackoffSleeper', () => {
  it('yields for yieldMs of an idle spell, then sleeps on timers doubling up to maxSleepMs; reset starts over', () => {
    const clock = fakeClock(0);
    const calls: string[] = [];
    const s = new BackoffSleeper({
      yieldMs: 1,
      minSleepMs: 1,
      maxSleepMs: 4,
      now: clock.now,
      defer: () => calls.push('yield'),
      after: (_fn, ms) => calls.push(`sleep ${ms}`),
      yieldCpu: () => calls.push('sched_yield'),
    });
    expect(s.prepare()).toBe(0);
    const wake = () => undefined;
    s.sleep(0, wake);
    clock.advance(0.5);
    s.sleep(0, wake);
    clock.advance(0.5);
    for (let i = 0; i < 5; i++) s.sleep(0, wake);
    expect(calls).toEqual(['sched_yield', 'yield', 'sched_yield', 'yield', 'sleep 1', 'sleep 2', 'sleep 4', 'sleep 4', 'sleep 4']);
    expect(s.counts).toEqual({ yields: 2, sleeps: 5 });
    s.reset();
    calls.length = 0;
    s.sleep(0, wake);
    clock.advance(2);
    s.sleep(0, wake);
    expect(calls).toEqual(['sched_yield', 'yield', 'sleep 1']);
  });
  it('a long idle spell sleeps longer, at most 1 % of the idle time, up to idleSleepMs', () => {
    const clock = fakeClock(0);
    const sleeps: number[] = [];
    const s = new BackoffSleeper({ yieldMs: 0, minSleepMs: 1, maxSleepMs: 4, idleSleepMs: 50, now: clock.now, defer: () => undefined, after: (_fn, ms) => sleeps.push(ms) });
    const at = (t: number) => {
      clock.advance(t - clock.now());
      s.sleep(0, () => undefined);
    };
    at(0);
    at(1);
    at(3);
    at(7);
    at(1000); // 1 s idle: 10 ms
    at(3000); // 3 s: 30 ms
    at(60_000); // capped
    expect(sleeps).toEqual([1, 2, 4, 4, 10, 30, 50]);
    s.reset();
    at(60_001);
    expect(sleeps.at(-1)).toBe(1);
  });
});
