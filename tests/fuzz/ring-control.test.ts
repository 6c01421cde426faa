// Property-based fuzzing of the shared-memory ring layer (lib/ring/): a producer and a consumer of an
// SPSC ring, and a rank's inbox with its poller, in this process, while "the other side" writes
// random values into the control words (head, tail, waiting and closed flags, layout words), the
// headers in flight and the announcement slots (sequence, sender, length, enqueue position). Expected
// every time: every call returns or throws VmcommError('CORRUPT') — the poller never throws and
// reports CORRUPT through its hooks — nothing outside the ring's region is ever written (guard bytes
// around it stay intact), a poll reads at most one ring's worth and hands the sink at most the frames
// it asked for, each call ends promptly; and without interference every frame arrives intact.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FrameSink } from '../../lib/backend.js';
import { isVmcommError } from '../../lib/errors.js';
import { Inbox, INBOX_DESCRIPTOR_MAX_BYTES, INBOX_HEADER_BYTES, INBOX_SLOT_BYTES, InboxSender, inboxBytes, initInbox } from '../../lib/ring/inbox.js';
import { Poller } from '../../lib/ring/poller.js';
import { corrupt, type Region } from '../../lib/ring/region.js';
import { initRing, RING_CONTROL_BYTES, RING_HEADER_BYTES, RingConsumer, RingProducer, ringDataBytes, ringRegionBytes } from '../../lib/ring/spsc-ring.js';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength, FrameKind } from '../../lib/protocol.js';
import { expectCode, guardProcess, runFuzz } from './fuzz.js';
import { startAt } from '../../lib/ring/test/helpers.js';

guardProcess('ring-control');

/** Bytes of guard on each side of a region, filled with {@link GUARD}. */
const GUARD_BYTES = 256;
const GUARD = 0xa5;
/** Any single call must end within this long (ms): nothing loops on what it read (generous: the machine is shared). */
const CALL_BUDGET_MS = 1_000;

/** A region of `bytes` inside a buffer with guard bytes around it. */
function guarded(bytes: number): Region {
  const sab = new SharedArrayBuffer(GUARD_BYTES + bytes + GUARD_BYTES);
  new Uint8Array(sab).fill(GUARD);
  return { sab, byteOffset: GUARD_BYTES, byteLength: bytes };
}

/** Throws when a byte outside `region` changed. */
function checkGuards(region: Region, where: string): void {
  const all = new Uint8Array(region.sab);
  for (let i = 0; i < GUARD_BYTES; i++) {
    if (all[i] !== GUARD) throw new Error(`${where}: byte ${i - GUARD_BYTES} before the region was written`);
    if (all[GUARD_BYTES + region.byteLength + i] !== GUARD) throw new Error(`${where}: byte ${i} after the region was written`);
  }
}

/** The unused bytes of an initialized ring region (between the control words and the data area, and after the data area), filled with the guard byte. */
function guardRingGaps(region: Region): void {
  const all = new Uint8Array(region.sab, region.byteOffset, region.byteLength);
  for (const [from, to] of ringGaps(region)) all.fill(GUARD, from, to);
}

/** The [from, to) byte ranges of a ring region that the ring layout leaves unused. */
function ringGaps(region: Region): [number, number][] {
  return [
    [RING_CONTROL_BYTES, RING_HEADER_BYTES],
    [RING_HEADER_BYTES + ringDataBytes(region.byteLength), region.byteLength],
  ];
}

/** Throws when a byte outside `region`, or in one of its ring's unused gaps, changed. */
function checkRingGuards(region: Region, where: string): void {
  checkGuards(region, where);
  const all = new Uint8Array(region.sab, region.byteOffset, region.byteLength);
  for (const [from, to] of ringGaps(region)) {
    for (let i = from; i < to; i++) if (all[i] !== GUARD) throw new Error(`${where}: unused byte ${i} of the ring region was written`);
  }
}

/** CORRUPT throws seen by {@link call} (so a property can check that its garbage was noticed). */
let corruptThrows = 0;

/** Runs `f` (one call into the ring layer): it may return or throw CORRUPT, promptly. */
function call<T>(where: string, f: () => T): { ok: true; value: T } | { ok: false } {
  const started = performance.now();
  try {
    return { ok: true, value: f() };
  } catch (e) {
    expectCode(e, where, 'CORRUPT');
    corruptThrows++;
    return { ok: false };
  } finally {
    const ms = performance.now() - started;
    if (ms > CALL_BUDGET_MS) throw new Error(`${where} took ${ms.toFixed(1)} ms`);
  }
}

const header = (payloadBytes: number, tag: number): Uint8Array =>
  encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, tag, payloadBytes, messageBytes: payloadBytes }, new Uint8Array(FRAME_HEADER_BYTES));
const payload = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);

/**
 * A sink like the core's: checks the header (`decodeHeader` throws CORRUPT), gives a target of at most
 * `maxTarget` bytes, and records frames; one frame in progress per peer (streams of two rings
 * interleave). Never allocates what a header asks for beyond that.
 */
function recordingSink(maxTarget: number): FrameSink & { frames: { tag: number; data: Uint8Array }[]; forget(peer: number): void } {
  const open = new Map<number, { tag: number; data: Uint8Array }>();
  const h = emptyHeader();
  const sink = {
    frames: [] as { tag: number; data: Uint8Array }[],
    begin(peer: number, bytes: Uint8Array): Uint8Array | undefined {
      if (open.has(peer)) throw new Error(`begin while a frame from ${peer} is open`);
      decodeHeader(bytes, h);
      const current = { tag: h.tag, data: new Uint8Array(Math.min(frameLength(bytes), maxTarget)) };
      open.set(peer, current);
      return current.data;
    },
    commit(peer: number): void {
      const current = open.get(peer);
      if (current === undefined) throw new Error(`commit without begin from ${peer}`);
      sink.frames.push(current);
      open.delete(peer);
    },
    lost(peer: number): void {
      open.delete(peer);
    },
    /** The ring of `peer` was dropped: its frame in progress will never complete. */
    forget(peer: number): void {
      open.delete(peer);
    },
  };
  return sink;
}

/** One step of a ring case. */
type RingOp =
  | { op: 'send'; bytes: number }
  | { op: 'flush' }
  | { op: 'poll'; frames: number }
  | { op: 'word'; word: number; value: number }
  | { op: 'data'; at: number; value: number }
  | { op: 'reopen' };

/** Control words worth aiming at: layout (0–2), head (32), tail (64), waiting (96), closed flags (97, 98). */
const CONTROL_WORDS = [0, 1, 2, 32, 64, 96, 97, 98] as const;
/** Values that are sometimes plausible (small offsets, near the current positions) and sometimes not. */
const wordValue = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.integer({ min: 0, max: 4096 }),
  fc.constantFrom(0, 1, -1, 48, 256, 512, 1024, 0x7fff_ffff, -(2 ** 31)),
);

const ringOp = (dataBytes: number): fc.Arbitrary<RingOp> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('send' as const), bytes: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 3 * dataBytes })) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('flush' as const) }) },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('poll' as const), frames: fc.integer({ min: 1, max: 8 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('word' as const), word: fc.constantFrom(...CONTROL_WORDS), value: wordValue }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('data' as const), at: fc.nat({ max: dataBytes - 1 }), value: fc.nat({ max: 255 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
  );

/**
 * A ring case: its data size, where its stream starts (so positions wrap 2^32 too; records start at
 * multiples of 64, so a genuine start is one), and its steps.
 */
const ringCase = fc
  .record({ dataBytes: fc.constantFrom(256, 512, 1024), start: fc.oneof(fc.constant(0), fc.constant(2 ** 32 - 128), fc.nat({ max: 2 ** 26 - 1 }).map((n) => n * 64)) })
  .chain(({ dataBytes, start }) => fc.record({ dataBytes: fc.constant(dataBytes), start: fc.constant(start), ops: fc.array(ringOp(dataBytes), { minLength: 1, maxLength: 40 }) }));

describe('fuzz: ring control words', () => {
  it('SPSC ring: garbage in control words and headers gives CORRUPT or nothing; never out of bounds, never a hang', async () => {
    const seen = { corrupt: 0, exact: 0 };
    await runFuzz(
      'ring: spsc control words',
      fc.property(ringCase, ({ dataBytes, start, ops }) => {
        const region = guarded(ringRegionBytes(dataBytes));
        initRing(region);
        guardRingGaps(region);
        startAt(region, start);
        const ctl = new Int32Array(region.sab, region.byteOffset, RING_CONTROL_BYTES >> 2);
        const data = new Uint8Array(region.sab, region.byteOffset + RING_HEADER_BYTES, dataBytes);
        const sink = recordingSink(4 * dataBytes);
        let producer: RingProducer | undefined = new RingProducer(region);
        let consumer: RingConsumer | undefined = new RingConsumer(region);
        let interfered = false;
        const sent: { tag: number; data: Uint8Array }[] = [];
        let tag = 0;
        for (const step of ops) {
          switch (step.op) {
            case 'send': {
              if (producer === undefined) break;
              const p = payload(step.bytes, tag);
              const t = tag++;
              const r = call('producer.send', () => producer!.send(header(step.bytes, t), p, () => sent.push({ tag: t, data: p })));
              if (!r.ok) producer = undefined;
              break;
            }
            case 'flush':
              if (producer !== undefined && !call('producer.flush', () => producer!.flush()).ok) producer = undefined;
              break;
            case 'poll': {
              if (consumer === undefined) break;
              const before = consumer.position;
              const framesBefore = sink.frames.length;
              const r = call('consumer.poll', () => consumer!.poll(sink, 1, step.frames));
              if (!r.ok) {
                consumer = undefined;
                sink.forget(1);
                break;
              }
              if (r.value > step.frames) throw new Error(`poll(${step.frames}) delivered ${r.value} frames`);
              if (sink.frames.length - framesBefore !== r.value) throw new Error(`poll returned ${r.value} but the sink got ${sink.frames.length - framesBefore}`);
              const moved = (consumer.position - before) >>> 0;
              if (moved > dataBytes) throw new Error(`one poll read ${moved} bytes of a ${dataBytes}-byte ring`);
              break;
            }
            case 'word':
              interfered = true;
              Atomics.store(ctl, step.word, step.value);
              break;
            case 'data':
              interfered = true;
              data[step.at] = step.value;
              break;
            case 'reopen':
              // A new side validates the layout words and indices afresh.
              producer?.failQueued(new Error('reopened'));
              consumer = call('new RingConsumer', () => new RingConsumer(region)).ok ? new RingConsumer(region) : undefined;
              producer = call('new RingProducer', () => new RingProducer(region)).ok ? new RingProducer(region) : undefined;
              sink.forget(1);
              interfered = true;
              break;
          }
          checkRingGuards(region, step.op);
        }
        // Without interference the ring is exact: what was completed arrived, in order, intact.
        if (!interfered) {
          for (let i = 0; i < 64 && consumer !== undefined && producer !== undefined && (producer.queued > 0 || consumer.available() > 0); i++) {
            producer.flush();
            consumer.poll(sink, 1, 64);
          }
          if (sink.frames.length !== sent.length) throw new Error(`sent ${sent.length} frames, received ${sink.frames.length}`);
          sink.frames.forEach((f, i) => {
            if (f.tag !== sent[i].tag || Buffer.compare(f.data, sent[i].data) !== 0) throw new Error(`frame ${i} arrived changed`);
          });
          seen.exact++;
        }
      }),
      { numRuns: 25_000, timeLimitMs: 5_000 },
    );
    seen.corrupt = corruptThrows;
    expect(seen.corrupt).toBeGreaterThan(10);
    expect(seen.exact).toBeGreaterThan(10);
  });

  it('inbox and poller: garbage in announcement slots and inbox words is reported as CORRUPT through the hooks; poll never throws', async () => {
    const SLOTS = 4;
    const DATA = 256;
    type InboxOp =
      | { op: 'announce'; from: number; descriptor: number[] }
      | { op: 'send'; ring: number; bytes: number }
      | { op: 'poll' }
      | { op: 'word'; at: number; value: number }
      | { op: 'reopen' };
    const slotWords = (INBOX_HEADER_BYTES + SLOTS * INBOX_SLOT_BYTES) >> 2;
    // Aim at the header words (layout, state, doorbell, waiter, enqueue) and every slot's first four words.
    const targetWord = fc.oneof(
      fc.constantFrom(0, 1, 2, 3, 32, 64, 96, 128),
      fc.tuple(fc.nat({ max: SLOTS - 1 }), fc.nat({ max: 3 })).map(([s, f]) => (INBOX_HEADER_BYTES >> 2) + s * (INBOX_SLOT_BYTES >> 2) + f),
      fc.nat({ max: slotWords - 1 }),
    );
    const op: fc.Arbitrary<InboxOp> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ op: fc.constant('announce' as const), from: fc.oneof(fc.constantFrom(1, 2), fc.integer({ min: -5, max: 5 })), descriptor: fc.array(fc.nat({ max: 3 }), { maxLength: 3 }) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('send' as const), ring: fc.constantFrom(0, 1), bytes: fc.nat({ max: 600 }) }) },
      { weight: 4, arbitrary: fc.record({ op: fc.constant('poll' as const) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('word' as const), at: targetWord, value: wordValue }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
    );
    const seenInbox = { reported: 0, attached: 0 };
    await runFuzz(
      'ring: inbox announcements',
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const inboxRegion = guarded(inboxBytes(SLOTS));
        initInbox(inboxRegion, SLOTS);
        const rings = [guarded(ringRegionBytes(DATA)), guarded(ringRegionBytes(DATA))];
        for (const r of rings) {
          initRing(r);
          guardRingGaps(r);
        }
        const producers = rings.map((r) => new RingProducer(r));
        const words = new Int32Array(inboxRegion.sab, inboxRegion.byteOffset, inboxRegion.byteLength >> 2);
        const sink = recordingSink(4 * DATA);
        const reported: { peer: number; error: Error }[] = [];
        let broken: Error | undefined;
        const attached = new Set<number>();
        const hooks = {
          // As a transport does: the descriptor names a ring (one byte, 0 or 1) that must belong to `from`.
          attach(from: number, descriptor: Uint8Array): RingConsumer {
            if (descriptor.byteLength > INBOX_DESCRIPTOR_MAX_BYTES) throw new Error(`a descriptor of ${descriptor.byteLength} bytes reached attach`);
            const ring = descriptor.byteLength === 1 ? descriptor[0] : -1;
            if (ring !== 0 && ring !== 1 || from !== ring + 1) throw corrupt(`rank ${from} announced ring ${ring}`);
            attached.add(from);
            return new RingConsumer(rings[ring]);
          },
          wakeProducer: () => undefined,
          lost: (peer: number, error: Error) => {
            reported.push({ peer, error });
            sink.forget(peer);
          },
          inboxBroken: (error: Error) => (broken = error),
        };
        let poller: Poller | undefined = new Poller(new Inbox(inboxRegion), sink, hooks, { framesPerPoll: 8, framesPerRing: 4, announcementsPerPoll: 4 });
        let sender: InboxSender | undefined = new InboxSender(inboxRegion);
        for (const step of ops) {
          const started = performance.now();
          switch (step.op) {
            case 'announce':
              if (sender !== undefined) sender.announce(step.from, Uint8Array.from(step.descriptor));
              break;
            case 'send': {
              const r = call('producer.send', () => producers[step.ring].send(header(step.bytes, 1), payload(step.bytes, 1), undefined));
              if (!r.ok) producers[step.ring] = new RingProducer(rings[step.ring]);
              break;
            }
            case 'poll':
              // Never throws: failures go to the hooks.
              poller?.poll();
              break;
            case 'word':
              Atomics.store(words, step.at, step.value);
              break;
            case 'reopen': {
              // A rank attaching afresh validates the inbox's layout words.
              const inbox = call('new Inbox', () => new Inbox(inboxRegion));
              // The old poller's rings are abandoned with it.
              sink.forget(1);
              sink.forget(2);
              poller = inbox.ok ? new Poller(inbox.value, sink, hooks, { framesPerPoll: 8, framesPerRing: 4, announcementsPerPoll: 4 }) : undefined;
              const s = call('new InboxSender', () => new InboxSender(inboxRegion));
              sender = s.ok ? s.value : undefined;
              break;
            }
          }
          const ms = performance.now() - started;
          if (ms > CALL_BUDGET_MS) throw new Error(`${step.op} took ${ms.toFixed(1)} ms`);
          checkGuards(inboxRegion, `inbox after ${step.op}`);
          for (const r of rings) checkRingGuards(r, `ring after ${step.op}`);
        }
        seenInbox.reported += reported.length;
        seenInbox.attached += attached.size;
        for (const { peer, error } of reported) {
          if (!isVmcommError(error, 'CORRUPT')) throw new Error(`the poller reported rank ${peer} with ${error.name}: ${error.message} (a corrupt announcement or ring must be CORRUPT)`, { cause: error });
        }
        if (broken !== undefined) expectCode(broken, 'inboxBroken', 'CORRUPT');
      }),
      { numRuns: 15_000, timeLimitMs: 3_000 },
    );
    expect(seenInbox.reported).toBeGreaterThan(10);
    expect(seenInbox.attached).toBeGreaterThan(10);
  });

  it('regression: a second announcement from a rank is CORRUPT (it was a plain Error, which reached programs as PEER_LOST), and its first ring is no longer read', () => {
    const region = guarded(inboxBytes(4));
    initInbox(region, 4);
    const ring = guarded(ringRegionBytes(256));
    initRing(ring);
    const lost: Error[] = [];
    const sink = recordingSink(64);
    const poller = new Poller(new Inbox(region), sink, {
      attach: () => new RingConsumer(ring),
      wakeProducer: () => undefined,
      lost: (_peer, error) => lost.push(error),
      inboxBroken: (error) => lost.push(error),
    });
    const sender = new InboxSender(region);
    const producer = new RingProducer(ring);
    sender.announce(1, Uint8Array.of(0));
    poller.poll();
    producer.send(header(4, 1), payload(4, 1), undefined);
    expect(poller.poll()).toBe(1);
    // Found by "ring: inbox announcements" (seed 11, scale 3): a second announcement was refused with a
    // plain Error while the first ring went on delivering to a peer already reported lost.
    sender.announce(1, Uint8Array.of(0));
    producer.send(header(4, 2), payload(4, 2), undefined);
    expect(poller.poll()).toBe(0);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
    expect(poller.peers).toEqual([]);
    expect(sink.frames).toHaveLength(1);
  });
});
