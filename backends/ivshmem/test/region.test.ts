import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES } from '../../../lib/protocol.js';
import { REGION_ALIGN_BYTES } from '../../../lib/ring/region.js';
import { RingConsumer, RingProducer, ringRegionBytes } from '../../../lib/ring/spsc-ring.js';
import { bytes, header, recordingSink } from '../../../lib/ring/test/helpers.js';
import { formatRegion, openRegionHeader, randomUuid } from '../region-header.js';
import {
  BLOCKS_ALIGN_BYTES,
  HeaderField,
  MIN_REGION_BYTES,
  planLayout,
  REGION_MAGIC,
  SLOT_BYTES,
  SlotField,
  uuidText,
} from '../region-layout.js';
import { IvshmemRegion } from '../region.js';
import { expectCode, fakeClock, id, memoryRegion } from './helpers.js';

const MiB = 2 ** 20;

describe('ivshmem region header', () => {
  it('round-trips format and open, at offset 0 and inside a larger buffer', () => {
    for (const at of [0, 64, 4096]) {
      const region = memoryRegion(MiB, at);
      const uuid = randomUuid();
      const formatted = formatRegion(region, { uuid, slots: 8, ringDataBytes: 4096 });
      const opened = openRegionHeader(region, { expectUuid: uuid });
      expect(opened.layout).toEqual(formatted.layout);
      expect(opened.uuidText).toBe(uuidText(uuid));
      expect(opened.layout).toMatchObject({ sizeBytes: MiB, slots: 8, ringDataBytes: 4096, blockBytes: ringRegionBytes(4096) });
      expect(opened.layout.blocksOffset % BLOCKS_ALIGN_BYTES).toBe(0);
      expect(opened.layout.blocksOffset + opened.layout.blocks * opened.layout.blockBytes).toBeLessThanOrEqual(MiB);
      const r = IvshmemRegion.open(region);
      expect(r.status()).toMatchObject({ generation: 1, revoked: false });
      r.validate();
    }
  });

  it('picks defaults that fit: 64 slots and 64 KiB rings in 64 MiB, smaller rings in small regions', () => {
    expect(planLayout(64 * MiB)).toMatchObject({ slots: 64, ringDataBytes: 65536 });
    expect(planLayout(64 * MiB).blocks).toBeGreaterThan(900);
    const small = planLayout(MIN_REGION_BYTES);
    expect(small.blocks).toBeGreaterThanOrEqual(1);
    expect(small.blocksOffset + small.blocks * small.blockBytes).toBeLessThanOrEqual(MIN_REGION_BYTES);
    const oneMiB = planLayout(MiB);
    expect(oneMiB.blocks).toBeGreaterThanOrEqual(oneMiB.slots);
  });

  it('refuses a size that is not a power of two, or too small, with INVALID_ARGUMENT', () => {
    expectCode(() => formatRegion(memoryRegion(3 * MiB)), 'INVALID_ARGUMENT', /power of two.*nearest valid sizes are 2M and 4M/);
    expectCode(() => planLayout(100_000_000), 'INVALID_ARGUMENT', /power of two/);
    expectCode(() => planLayout(32 * 1024), 'INVALID_ARGUMENT', /power of two/);
    expectCode(() => planLayout(MIN_REGION_BYTES, { slots: 100, ringDataBytes: 65536 }), 'INVALID_ARGUMENT', /no room/);
    expectCode(() => planLayout(MiB, { ringDataBytes: 3000 }), 'INVALID_ARGUMENT', /power of two/);
    expectCode(() => planLayout(MiB, { slots: 0 }), 'INVALID_ARGUMENT', /slots/);
  });

  it('says CORRUPT for an unformatted region, a bad magic, version, checksum, size or UUID', () => {
    const fresh = (): ReturnType<typeof memoryRegion> => {
      const region = memoryRegion(MiB);
      formatRegion(region, { slots: 4, ringDataBytes: 4096 });
      return region;
    };
    const words = (region: ReturnType<typeof memoryRegion>) => new Int32Array(region.sab, region.byteOffset, 256);
    expectCode(() => openRegionHeader(memoryRegion(MiB)), 'CORRUPT', /not formatted/);

    let region = fresh();
    words(region)[HeaderField.MAGIC >> 2] = 0x1234;
    expectCode(() => openRegionHeader(region), 'CORRUPT', /magic/);

    region = fresh();
    words(region)[HeaderField.VERSION >> 2] = 1; // before ring layout 3
    expectCode(() => openRegionHeader(region), 'CORRUPT', /version 1/);

    for (const field of [HeaderField.SLOTS, HeaderField.BLOCKS, HeaderField.RING_DATA_BYTES, HeaderField.SIZE_LOW, HeaderField.UUID + 4]) {
      region = fresh();
      words(region)[field >> 2] ^= 0x40;
      expectCode(() => openRegionHeader(region), 'CORRUPT', /checksum/);
    }

    // A header that is consistent in itself but does not match the mapping.
    const big = memoryRegion(2 * MiB);
    formatRegion(big, { slots: 4, ringDataBytes: 4096 });
    expectCode(() => openRegionHeader({ ...big, byteLength: MiB }), 'CORRUPT', /declares 2097152 bytes, the mapping has 1048576/);

    // UUID: all zero cannot be formatted; a region with another UUID than expected is refused.
    expectCode(() => formatRegion(memoryRegion(MiB), { uuid: new Uint8Array(16) }), 'INVALID_ARGUMENT', /UUID/);
    region = fresh();
    expectCode(() => openRegionHeader(region, { expectUuid: randomUuid() }), 'CORRUPT', /UUID .* expected/);

    // A zero UUID written with a matching checksum (a foreign formatter) is still refused.
    region = fresh();
    const w = words(region);
    for (let k = 0; k < 4; k++) w[(HeaderField.UUID >> 2) + k] = 0;
    const image = new Uint8Array(84);
    image.set(new Uint8Array(region.sab, region.byteOffset, 84));
    let h = 0x811c9dc5;
    for (const b of image) h = Math.imul(h ^ b, 0x01000193);
    w[HeaderField.CHECKSUM >> 2] = h;
    expectCode(() => openRegionHeader(region), 'CORRUPT', /UUID 00000000-0000-0000-0000-000000000000/);

    // The revoked word must be 0 or 1.
    region = fresh();
    words(region)[HeaderField.REVOKED >> 2] = 7;
    expectCode(() => openRegionHeader(region), 'CORRUPT', /revoked/);
  });

  it('notices a header overwritten or re-formatted after open', () => {
    const region = memoryRegion(MiB);
    const r = IvshmemRegion.format(region, { slots: 4, ringDataBytes: 4096 });
    r.validate();
    const member = r.join({ job: id(1), nonce: id(2), rank: 0 })!;
    formatRegion(region, { slots: 4, ringDataBytes: 4096 });
    expectCode(() => r.validate(), 'CORRUPT', /checksum|UUID/);
    expectCode(() => r.join({ job: id(1), nonce: id(3), rank: 1 }), 'CORRUPT', /checksum|UUID/);
    expectCode(() => member.beat(), 'CORRUPT', /checksum|UUID/);
    new Int32Array(region.sab)[0] = 0;
    expectCode(() => r.validate(), 'CORRUPT', /magic/);
    expect(REGION_MAGIC).toBe(0x56494d56);
  });
});

describe('ivshmem membership', () => {
  const job = id(1);

  it('claims, finds by (job, nonce[, rank]) and releases slots; a full table gives undefined', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 3, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const c = r.join({ job: id(2), nonce: id(10), rank: 0 })!;
    expect(new Set([a.ref.slot, b.ref.slot, c.ref.slot]).size).toBe(3);
    expect(r.join({ job, nonce: id(12), rank: 2 })).toBeUndefined();
    expect(r.members.find(job, id(11))).toMatchObject({ slot: b.ref.slot, rank: 1 });
    expect(r.members.find(job, id(10), 0)).toMatchObject({ slot: a.ref.slot });
    expect(r.members.find(id(2), id(10))).toMatchObject({ slot: c.ref.slot });
    expect(r.members.find(job, id(10), 1)).toBeUndefined();
    expect(r.members.find(id(3), id(10))).toBeUndefined();
    expect(b.finalize()).toEqual({ rings: 0, slot: true });
    expect(b.finalize()).toEqual({ rings: 0, slot: false });
    expect(r.members.find(job, id(11))).toBeUndefined();
    const d = r.join({ job, nonce: id(12), rank: 2 })!;
    expect(d.ref.slot).toBe(b.ref.slot);
    expect(d.ref.generation).toBe((b.ref.generation + 1) & 0x0fffffff);
    expect(r.status().memberEpoch).toBe(5);
  });

  it('refuses to join a revoked region; members see the revocation in their heartbeat', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 4, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    expect(a.beat()).toBe('ok');
    r.revoke();
    expect(a.beat()).toBe('revoked');
    expect(r.join({ job, nonce: id(11), rank: 1 })).toBeUndefined();
    r.restore();
    expect(a.beat()).toBe('revoked'); // the generation moved on: rejoin
    expect(r.join({ job, nonce: id(11), rank: 1 })!.beat()).toBe('ok');
  });

  it('reclaims a member whose heartbeat stopped, by the observer clock; the stale member is refused (ABA)', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 2, ringDataBytes: 4096 });
    const clock = fakeClock();
    const alive = r.join({ job, nonce: id(10), rank: 0 })!;
    const dead = r.join({ job, nonce: id(11), rank: 1 })!;
    const ring = alive.openRingTo(dead.ref)!;
    expect(ring).toBeDefined();
    const watch = r.watch({ timeoutMs: 1000, now: clock.now, self: alive.ref });
    expect(watch.observe()).toEqual({ members: [], rings: [] });
    // The dead one stops beating; the live one keeps on. Just under the timeout: nothing.
    clock.advance(999);
    alive.beat();
    expect(watch.observe().members).toEqual([]);
    // A heartbeat that moves resets the observer's clock for that slot.
    dead.beat();
    clock.advance(999);
    expect(watch.observe().members).toEqual([]);
    clock.advance(1000);
    const reclaimed = watch.observe();
    expect(reclaimed.members).toEqual([{ slot: dead.ref.slot, generation: dead.ref.generation }]);
    // The ring's consumer is gone but its producer still holds it: not freed yet.
    expect(reclaimed.rings).toEqual([]);
    expect(r.rings.read(ring.index).state).toBe('live');

    // A newcomer takes the slot with the next generation.
    const newcomer = r.join({ job, nonce: id(12), rank: 2 })!;
    expect(newcomer.ref.slot).toBe(dead.ref.slot);
    expect(newcomer.ref.generation).not.toBe(dead.ref.generation);
    // The stale member comes back: everything it tries is refused.
    expect(dead.beat()).toBe('lost');
    expect(dead.isCurrent()).toBe(false);
    expect(r.rings.tryAllocate(dead.ref, alive.ref).refused).toBe('producer-not-current');
    expect(r.rings.tryAllocate(alive.ref, dead.ref).refused).toBe('consumer-not-current');
    expect(dead.ringsToMe()).toEqual([]);
    expect(dead.finalize()).toEqual({ rings: 0, slot: false });
    // Letting go of its side is all it may still do (harmless: it is true).
    expect(dead.releaseRing(ring)).toBe(true);
    expect(r.rings.read(ring.index).state).toBe('consumer-done');
    expect(r.members.isCurrent(newcomer.ref)).toBe(true);
    // The producer learns that its peer is gone and releases: the block is freed at once.
    expect(alive.releaseRing(ring)).toBe(true);
    expect(r.rings.read(ring.index).state).toBe('free');
  });

  it('reclaims a slot stuck in JOINING or holding garbage after the timeout', () => {
    const region = memoryRegion(MiB);
    const r = IvshmemRegion.format(region, { slots: 3, ringDataBytes: 4096 });
    const clock = fakeClock();
    const base = r.layout.slotTableOffset >> 2;
    const words = new Int32Array(region.sab);
    words[base + (SlotField.CONTROL >> 2)] = (5 << 4) | 1; // JOINING, generation 5, never finished
    words[base + (SLOT_BYTES >> 2)] = 0x7fff_fff7; // garbage state 7
    const watch = r.watch({ timeoutMs: 50, now: clock.now });
    expect(watch.observe().members).toEqual([]);
    clock.advance(50);
    expect(watch.observe().members).toEqual([
      { slot: 0, generation: 5 },
      { slot: 1, generation: 0x7fff_fff7 >>> 4 },
    ]);
    expect(r.members.list().map((s) => s.state)).toEqual(['free', 'free', 'free']);
  });
});

describe('ivshmem ring allocator', () => {
  const job = id(1);

  it('places rings that spsc-ring runs on: frames cross from producer to consumer', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB, 64), { slots: 4, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const ab = a.openRingTo(b.ref)!;
    const ba = b.openRingTo(a.ref)!;
    expect(ab.index).not.toBe(ba.index);
    expect(a.openRingTo(b.ref)).toMatchObject({ index: ab.index, generation: ab.generation });
    for (const ring of [ab, ba]) {
      expect(ring.region.byteOffset % REGION_ALIGN_BYTES).toBe(0);
      expect(ring.region.byteLength).toBe(ringRegionBytes(4096));
    }
    expect(b.ringsToMe().map((x) => x.index)).toEqual([ab.index]);
    expect(a.ringsToMe().map((x) => x.index)).toEqual([ba.index]);
    const producer = new RingProducer(ab.region);
    const consumer = new RingConsumer(b.ringsToMe()[0].region);
    const sink = recordingSink();
    for (let i = 0; i < 50; i++) {
      producer.send(header(300 + i, i), bytes(300 + i, i), undefined);
      consumer.poll(sink, a.ref.rank, 100);
    }
    while (producer.queued > 0) {
      producer.flush();
      consumer.poll(sink, a.ref.rank, 100);
    }
    consumer.poll(sink, a.ref.rank, 100);
    expect(sink.frames.map((f) => f.id)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Buffer.compare(sink.frames[49].data, bytes(349, 49))).toBe(0);
    expect(FRAME_HEADER_BYTES).toBe(48);
  });

  it('returns undefined when the region is full, and allocates again after a release', () => {
    const r = IvshmemRegion.format(memoryRegion(MIN_REGION_BYTES), { slots: 2, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const got = [];
    for (let i = 0; i < r.layout.blocks; i++) got.push(r.rings.allocate(a.ref, b.ref)!);
    expect(new Set(got.map((x) => x.index)).size).toBe(r.layout.blocks);
    expect(r.rings.allocate(a.ref, b.ref)).toBeUndefined();
    expect(r.rings.tryAllocate(b.ref, a.ref).refused).toBe('full');
    expect(a.releaseRing(got[3])).toBe(true); // b still holds it: producer-done
    expect(r.rings.allocate(a.ref, b.ref)).toBeUndefined();
    expect(b.releaseRing(got[3])).toBe(true); // now free
    expect(r.rings.allocate(b.ref, a.ref)).toMatchObject({ index: got[3].index, generation: got[3].generation + 1 });
  });

  it('keeps jobs apart: no ring between members of different jobs', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 4, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const x = r.join({ job: id(2), nonce: id(20), rank: 0 })!;
    expect(r.rings.tryAllocate(a.ref, x.ref).refused).toBe('job-mismatch');
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const y = r.join({ job: id(2), nonce: id(21), rank: 1 })!;
    expect(a.openRingTo(b.ref)!.job).toEqual(job);
    expect(x.openRingTo(y.ref)!.job).toEqual(id(2));
    expect(y.ringsToMe()).toHaveLength(1);
    expect(b.ringsToMe()).toHaveLength(1);
  });

  it('finalize frees the slot and rings (a ring the peer still reads stays until it lets go), never the region', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 4, ringDataBytes: 4096 });
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const c = r.join({ job, nonce: id(12), rank: 2 })!;
    const ab = a.openRingTo(b.ref)!;
    const ba = b.openRingTo(a.ref)!;
    const bc = b.openRingTo(c.ref)!;
    expect(a.finalize()).toEqual({ rings: 2, slot: true });
    // a → b: b may still drain it; b → a: b still holds it until it learns that a left.
    expect(r.rings.read(ab.index).state).toBe('producer-done');
    expect(r.rings.read(ba.index).state).toBe('consumer-done');
    expect(b.ringsToMe().map((x) => x.index)).toEqual([ab.index]);
    expect(r.rings.ringsFrom(b.ref).map((x) => x.state).sort()).toEqual(['consumer-done', 'live']);
    expect(b.finalize()).toEqual({ rings: 3, slot: true });
    expect(r.rings.read(ab.index).state).toBe('free');
    expect(r.rings.read(ba.index).state).toBe('free');
    expect(r.rings.read(bc.index).state).toBe('producer-done');
    expect(c.finalize()).toEqual({ rings: 1, slot: true });
    expect(r.rings.list().every((x) => x.state === 'free')).toBe(true);
    expect(r.members.list().every((x) => x.state === 'free')).toBe(true);
    r.validate();
    expect(IvshmemRegion.open(r.header.region).uuid).toBe(r.uuid);
  });

  it('frees the rings of a reclaimed member once no live holder is left', () => {
    const r = IvshmemRegion.format(memoryRegion(MiB), { slots: 4, ringDataBytes: 4096 });
    const clock = fakeClock();
    const a = r.join({ job, nonce: id(10), rank: 0 })!;
    const b = r.join({ job, nonce: id(11), rank: 1 })!;
    const ab = a.openRingTo(b.ref)!;
    const ba = b.openRingTo(a.ref)!;
    const watch = r.watch({ timeoutMs: 100, now: clock.now, self: a.ref });
    watch.observe();
    clock.advance(100);
    a.beat();
    expect(watch.observe().members).toEqual([b.ref].map(({ slot, generation }) => ({ slot, generation })));
    // a still holds both rings; it learns b is gone and lets go of them.
    expect(a.releaseRing(ab)).toBe(true);
    expect(a.releaseRing(ba)).toBe(true);
    expect(r.rings.list().every((x) => x.state === 'free')).toBe(true);
    // A ring between two dead members is freed by the watch itself.
    const c = r.join({ job, nonce: id(12), rank: 2 })!;
    const d = r.join({ job, nonce: id(13), rank: 3 })!;
    const cd = c.openRingTo(d.ref)!;
    watch.observe();
    clock.advance(100);
    a.beat();
    const out = watch.observe();
    expect(out.members).toHaveLength(2);
    expect(out.rings).toEqual([{ index: cd.index, generation: cd.generation }]);
  });

  it('frees a block left CLAIMED (producer died mid-allocation) after the timeout', () => {
    const region = memoryRegion(MiB);
    const r = IvshmemRegion.format(region, { slots: 2, ringDataBytes: 4096 });
    const words = new Int32Array(region.sab);
    words[r.layout.blockTableOffset >> 2] = (9 << 4) | 1; // CLAIMED, generation 9
    const clock = fakeClock();
    const watch = r.watch({ timeoutMs: 10, now: clock.now });
    expect(watch.observe().rings).toEqual([]);
    clock.advance(10);
    expect(watch.observe().rings).toEqual([{ index: 0, generation: 9 }]);
    expect(r.rings.read(0)).toMatchObject({ state: 'free', generation: 10 });
  });
});
