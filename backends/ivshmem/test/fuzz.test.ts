// Garbage written over a region between API calls, the way a broken or hostile VM could: every call
// must either work or throw VmcommError('CORRUPT') — never a RangeError, a TypeError or a hang.
import { describe, expect, it } from 'vitest';
import { isVmcommError } from '../../../lib/errors.js';
import type { FrameSink } from '../../../lib/backend.js';
import { RingConsumer, RingProducer } from '../../../lib/ring/spsc-ring.js';
import { header } from '../../../lib/ring/test/helpers.js';
import { describeRegion, renderRegionDescription } from '../admin.js';
import type { RingBlock } from '../allocator.js';
import { BlockState, HeaderField, packControl, SlotState } from '../region-layout.js';
import { IvshmemRegion, type RegionMember, type RegionWatch } from '../region.js';
import { fakeClock, id, memoryRegion, rng } from './helpers.js';

const REGION_BYTES = 64 * 1024;

/** A sink that never allocates by what it read: targets are at most 512 bytes. */
const sink: FrameSink = {
  begin: (_peer, h) => new Uint8Array(Math.min(512, h[32])),
  commit: () => undefined,
  lost: () => undefined,
};

describe('ivshmem region fuzz', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: 5000 rounds of garbage and calls; only CORRUPT is thrown`, () => {
      const random = rng(seed);
      const int = (n: number): number => Math.floor(random() * n);
      const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
      const region = memoryRegion(REGION_BYTES);
      const words = new Int32Array(region.sab, region.byteOffset, REGION_BYTES >> 2);
      const clock = fakeClock();
      let r!: IvshmemRegion;
      let watch!: RegionWatch;
      let members: RegionMember[] = [];
      let rings: RingBlock[] = [];
      const jobs = [id(1), id(2)];
      const reformat = (): void => {
        r = IvshmemRegion.format(region, { slots: 6, ringDataBytes: 256, maxBlocks: 40 });
        watch = r.watch({ timeoutMs: 100, now: clock.now });
        members = [];
        rings = [];
      };
      reformat();
      const layout = r.layout;
      const areas = [
        [0, HeaderField.RING_EPOCH + 4],
        [layout.slotTableOffset, layout.blockTableOffset],
        [layout.blockTableOffset, layout.blockTableOffset + layout.blocks * 64],
        [layout.blocksOffset, layout.blocksOffset + layout.blocks * layout.blockBytes],
      ] as const;
      /** A value that is sometimes plausible (a valid control word, a small index) and sometimes not. */
      const garbage = (): number =>
        pick([
          () => (random() * 2 ** 32) | 0,
          () => int(8),
          () => packControl(int(16), int(2 ** 28)),
          () => packControl(pick([SlotState.ACTIVE, BlockState.LIVE, BlockState.PRODUCER_DONE]), int(3)),
          () => -1,
          () => 0,
        ])();
      const counts = { ok: 0, corrupt: 0, joined: 0, allocated: 0 };

      const ops: [string, () => unknown][] = [
        ['open', () => (r = IvshmemRegion.open(region))],
        ['validate', () => r.validate()],
        ['status', () => r.status()],
        ['join', () => {
          const m = r.join({ job: pick(jobs), nonce: id(int(1000)), rank: int(64) });
          if (m !== undefined) {
            members.push(m);
            counts.joined++;
          }
        }],
        ['find', () => r.members.find(pick(jobs), id(int(1000)), random() < 0.5 ? undefined : int(64))],
        ['beat', () => members.length > 0 && pick(members).beat()],
        ['openRingTo', () => {
          if (members.length < 1) return;
          const ring = pick(members).openRingTo(pick(members).ref);
          if (ring !== undefined) {
            rings.push(ring);
            counts.allocated++;
          }
        }],
        ['allocate-found', () => {
          const found = r.members.list().filter((s) => s.member !== undefined);
          if (members.length === 0 || found.length === 0) return;
          const ring = r.rings.allocate(pick(members).ref, pick(found).member!);
          if (ring !== undefined) {
            rings.push(ring);
            counts.allocated++;
          }
        }],
        ['ringsToMe', () => members.length > 0 && rings.push(...pick(members).ringsToMe())],
        ['ringsFrom', () => members.length > 0 && r.rings.ringsFrom(pick(members).ref)],
        ['releaseRing', () => members.length > 0 && rings.length > 0 && pick(members).releaseRing(pick(rings))],
        ['finalize', () => {
          if (members.length === 0) return;
          const m = members.splice(int(members.length), 1)[0];
          m.finalize();
        }],
        ['watch', () => {
          clock.advance(int(150));
          watch.observe();
        }],
        ['describe', () => renderRegionDescription(describeRegion(region))],
        ['describe-opened', () => describeRegion(r)],
        ['lists', () => [r.members.list(), r.rings.list()]],
        ['producer', () => {
          if (rings.length === 0) return;
          const p = new RingProducer(pick(rings).region);
          p.send(header(int(100)), new Uint8Array(0).subarray(0), undefined);
        }],
        ['consumer', () => {
          if (rings.length === 0) return;
          new RingConsumer(pick(rings).region).poll(sink, 0, 4);
        }],
      ];
      for (let round = 0; round < 5000; round++) {
        if (random() < 0.01) reformat();
        const writes = int(4);
        for (let k = 0; k < writes; k++) {
          // The header rarely: a broken header stops everything until the region is re-formatted.
          const [from, to] = areas[random() < 0.1 ? 0 : 1 + int(3)];
          const at = (from >> 2) + int((to - from) >> 2);
          if (random() < 0.05) for (let i = at; i < Math.min(at + 64, words.length); i++) words[i] = garbage();
          else words[at] = garbage();
        }
        for (let call = 0; call < 3; call++) {
          const [name, op] = pick(ops);
          try {
            op();
            counts.ok++;
          } catch (error) {
            if (!isVmcommError(error, 'CORRUPT')) {
              throw new Error(`seed ${seed}, round ${round}, ${name}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`, { cause: error });
            }
            counts.corrupt++;
          }
        }
        if (rings.length > 64) rings = rings.slice(-32);
      }
      // Both outcomes happened: the garbage was noticed, and the region kept working.
      expect(counts.corrupt).toBeGreaterThan(50);
      expect(counts.ok).toBeGreaterThan(1000);
      expect(counts.joined).toBeGreaterThan(100);
      expect(counts.allocated).toBeGreaterThan(100);
    });
  }
});
