/**
 * The lock-free allocator of an ivshmem region's ring blocks (layout and protocol:
 * `region-layout.ts`). Each block holds one SPSC ring (`lib/ring/spsc-ring.ts`) for one ordered pair
 * of members of one job; its table entry records the producer and the consumer as `(slot,
 * generation)` and the job id. The producer allocates (compare-and-swap on the entry's control word),
 * both sides release their part when they finalize or lose the peer, and a {@link BlockWatch} frees
 * blocks whose holders are all gone.
 *
 * A full region is not an error: {@link RingAllocator.allocate} returns `undefined` and that pair
 * uses tcp on both ends.
 *
 * Every scan runs over the block count validated at open; each entry is read once into locals and
 * checked (slot index below `S`, generations within 28 bits) before it is used; a block's place is
 * computed from its index, never read.
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import type { Region } from '../../lib/ring/region.js';
import { initRing } from '../../lib/ring/spsc-ring.js';
import type { Member, MemberRef, Membership } from './membership.js';
import { bumpRingEpoch, readRegionStatus, type RegionHeader } from './region-header.js';
import {
  BLOCK_ENTRY_BYTES,
  BlockField,
  BlockState,
  controlGeneration,
  controlState,
  GENERATION_MASK,
  loadId,
  nextGeneration,
  packControl,
  sameId,
  storeId,
} from './region-layout.js';

/** One allocation of a block. */
export interface RingRef {
  /** The block index. */
  readonly index: number;
  /** The block's generation while this allocation lasts. */
  readonly generation: number;
}

/** A ring block in use, read consistently. */
export interface RingBlock extends RingRef {
  readonly state: 'live' | 'producer-done' | 'consumer-done';
  readonly producer: MemberRef;
  readonly consumer: MemberRef;
  readonly job: Uint8Array;
  /** Where the ring lives: hand it to `RingProducer` / `RingConsumer`. */
  readonly region: Region;
}

/** What a block-table entry holds, for `vmcomm ivshmem show` and tests. */
export interface BlockInfo {
  readonly index: number;
  /** `'changing'`: the entry changed while it was read; `'invalid'`: garbage (reclaimed in time). */
  readonly state: 'free' | 'claimed' | 'live' | 'producer-done' | 'consumer-done' | 'changing' | 'invalid';
  readonly generation: number;
  /** The raw control word (unsigned). */
  readonly control: number;
  /** For live, producer-done and consumer-done entries. */
  readonly ring?: RingBlock;
  /** For invalid entries: what is wrong. */
  readonly problem?: string;
}

/** Why {@link RingAllocator.tryAllocate} gave no ring. */
export type AllocateRefusal =
  /** No free block: the pair uses tcp. */
  | 'full'
  /** The region is revoked. */
  | 'revoked'
  /** The producer no longer holds its slot (it was reclaimed). */
  | 'producer-not-current'
  /** The consumer is not an ACTIVE member with that generation. */
  | 'consumer-not-current'
  /** The two members are in different jobs. */
  | 'job-mismatch';

/** What {@link RingAllocator.tryAllocate} returns. */
export type AllocateResult = { readonly ring: RingBlock; readonly refused?: undefined } | { readonly ring?: undefined; readonly refused: AllocateRefusal };

const ENTRY_WORDS = BLOCK_ENTRY_BYTES >> 2;
const STATE_NAMES = ['free', 'claimed', 'live', 'producer-done', 'consumer-done'] as const;
/** Compare-and-swap attempts of one release (the other holder and a watcher may move the entry twice). */
const RELEASE_ATTEMPTS = 8;

/** The ring-block allocator of an opened region. */
export class RingAllocator {
  /** Blocks `B` (validated at open). */
  readonly blocks: number;
  private readonly m: Int32Array;
  private readonly base: number;

  constructor(
    readonly header: RegionHeader,
    readonly membership: Membership,
  ) {
    this.blocks = header.layout.blocks;
    this.m = header.meta;
    this.base = header.layout.blockTableOffset >> 2;
  }

  private at(index: number, field: number): number {
    return this.base + index * ENTRY_WORDS + (field >> 2);
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.blocks) {
      throw new VmcommError('INVALID_ARGUMENT', `a ring block index must be an integer from 0 to ${this.blocks - 1}, got ${String(index)}`);
    }
  }

  /** The ring region of block `index` (computed from the validated layout). */
  ringRegion(index: number): Region {
    this.checkIndex(index);
    const { region, layout } = this.header;
    return { sab: region.sab, byteOffset: region.byteOffset + layout.blocksOffset + index * layout.blockBytes, byteLength: layout.blockBytes };
  }

  /**
   * Allocates a ring from `producer` (this member) to `consumer` (an ACTIVE member of the same job)
   * and initializes it. Looks at each entry at most once. Returns the ring, or why there is none.
   *
   * @throws `CORRUPT` for a revoked word that is neither 0 nor 1; `INVALID_ARGUMENT` for bad references.
   */
  tryAllocate(producer: Member, consumer: MemberRef): AllocateResult {
    const ms = this.membership;
    ms.checkRef(producer, 'producer');
    ms.checkRef(consumer, 'consumer');
    if (readRegionStatus(this.header).revoked) return { refused: 'revoked' };
    if (!ms.isCurrent(producer)) return { refused: 'producer-not-current' };
    const peer = ms.member(consumer);
    if (peer === undefined) return { refused: 'consumer-not-current' };
    if (!sameId(peer.job, producer.job)) return { refused: 'job-mismatch' };
    const m = this.m;
    // Spread pairs over the table so concurrent allocators rarely meet.
    const start = (Math.imul(producer.slot * 4099 + consumer.slot + 1, 0x9e37_79b1) >>> 0) % this.blocks;
    for (let k = 0; k < this.blocks; k++) {
      const index = (start + k) % this.blocks;
      const c = Atomics.load(m, this.at(index, BlockField.CONTROL));
      if (controlState(c) !== BlockState.FREE) continue;
      const generation = controlGeneration(c);
      const claimed = packControl(BlockState.CLAIMED, generation);
      if (Atomics.compareExchange(m, this.at(index, BlockField.CONTROL), c, claimed) !== c) continue;
      Atomics.store(m, this.at(index, BlockField.PRODUCER_SLOT), producer.slot);
      Atomics.store(m, this.at(index, BlockField.PRODUCER_GENERATION), producer.generation);
      Atomics.store(m, this.at(index, BlockField.CONSUMER_SLOT), consumer.slot);
      Atomics.store(m, this.at(index, BlockField.CONSUMER_GENERATION), consumer.generation);
      storeId(m, this.at(index, BlockField.JOB), producer.job);
      const region = this.ringRegion(index);
      initRing(region);
      const live = packControl(BlockState.LIVE, generation);
      // Fails only when a watcher took the claim for abandoned (we stalled longer than its timeout):
      // the block is no longer ours, so touch nothing more.
      if (Atomics.compareExchange(m, this.at(index, BlockField.CONTROL), claimed, live) !== claimed) continue;
      bumpRingEpoch(this.header);
      const ring: RingBlock = {
        index,
        generation,
        state: 'live',
        producer: { slot: producer.slot, generation: producer.generation },
        consumer: { slot: consumer.slot, generation: consumer.generation },
        job: producer.job.slice(),
        region,
      };
      // The consumer may have started to leave after it was checked, and its release of its rings
      // may have passed this entry before it was live: let go of it again (leave wins).
      if (!ms.isCurrent(consumer)) {
        this.release(ring, producer);
        return { refused: 'consumer-not-current' };
      }
      return { ring };
    }
    return { refused: 'full' };
  }

  /** {@link tryAllocate}, giving `undefined` instead of a refusal (the pair then uses tcp). */
  allocate(producer: Member, consumer: MemberRef): RingBlock | undefined {
    return this.tryAllocate(producer, consumer).ring;
  }

  /** Reads entry `index` consistently and validates it. */
  read(index: number): BlockInfo {
    this.checkIndex(index);
    const m = this.m;
    const c = Atomics.load(m, this.at(index, BlockField.CONTROL));
    const state = controlState(c);
    const generation = controlGeneration(c);
    const base = { index, generation, control: c >>> 0 };
    if (state > BlockState.CONSUMER_DONE) return { ...base, state: 'invalid', problem: `state ${state}` };
    if (state === BlockState.FREE || state === BlockState.CLAIMED) return { ...base, state: STATE_NAMES[state] };
    const ps = Atomics.load(m, this.at(index, BlockField.PRODUCER_SLOT)) >>> 0;
    const pg = Atomics.load(m, this.at(index, BlockField.PRODUCER_GENERATION)) >>> 0;
    const cs = Atomics.load(m, this.at(index, BlockField.CONSUMER_SLOT)) >>> 0;
    const cg = Atomics.load(m, this.at(index, BlockField.CONSUMER_GENERATION)) >>> 0;
    const job = loadId(m, this.at(index, BlockField.JOB));
    if (Atomics.load(m, this.at(index, BlockField.CONTROL)) !== c) return { ...base, state: 'changing' };
    const slots = this.membership.slots;
    if (ps >= slots || cs >= slots) return { ...base, state: 'invalid', problem: `slots ${ps} → ${cs} of ${slots}` };
    if (pg > GENERATION_MASK || cg > GENERATION_MASK) return { ...base, state: 'invalid', problem: `slot generations ${pg} → ${cg}` };
    const name = STATE_NAMES[state] as RingBlock['state'];
    return {
      ...base,
      state: name,
      ring: { index, generation, state: name, producer: { slot: ps, generation: pg }, consumer: { slot: cs, generation: cg }, job, region: this.ringRegion(index) },
    };
  }

  /** Every entry, in order. */
  list(): BlockInfo[] {
    const out: BlockInfo[] = [];
    for (let index = 0; index < this.blocks; index++) out.push(this.read(index));
    return out;
  }

  /**
   * The rings `consumer` reads: live, or producer-done (left to drain). A consumer calls this when
   * the ring epoch changed. Invalid entries are skipped (a watcher frees them).
   */
  ringsTo(consumer: MemberRef): RingBlock[] {
    this.membership.checkRef(consumer, 'consumer');
    const out: RingBlock[] = [];
    for (let index = 0; index < this.blocks; index++) {
      const ring = this.read(index).ring;
      if (ring !== undefined && ring.state !== 'consumer-done' && sameRef(ring.consumer, consumer)) out.push(ring);
    }
    return out;
  }

  /** The rings `producer` writes (live, or consumer-done: the consumer left). */
  ringsFrom(producer: MemberRef): RingBlock[] {
    this.membership.checkRef(producer, 'producer');
    const out: RingBlock[] = [];
    for (let index = 0; index < this.blocks; index++) {
      const ring = this.read(index).ring;
      if (ring !== undefined && ring.state !== 'producer-done' && sameRef(ring.producer, producer)) out.push(ring);
    }
    return out;
  }

  /** The live ring from `producer` to `consumer`, if there is one. */
  find(producer: MemberRef, consumer: MemberRef): RingBlock | undefined {
    this.membership.checkRef(producer, 'producer');
    this.membership.checkRef(consumer, 'consumer');
    for (let index = 0; index < this.blocks; index++) {
      const ring = this.read(index).ring;
      if (ring !== undefined && ring.state === 'live' && sameRef(ring.producer, producer) && sameRef(ring.consumer, consumer)) return ring;
    }
    return undefined;
  }

  /**
   * `member` stops using `ring`: LIVE becomes PRODUCER_DONE or CONSUMER_DONE while the other holder
   * is alive, else the block is freed. Returns true when this call moved the entry; false when the
   * block is no longer this allocation, `member` does not hold it, or it already released it.
   */
  release(ring: RingRef, member: MemberRef): boolean {
    this.checkIndex(ring.index);
    this.membership.checkRef(member);
    for (let attempt = 0; attempt < RELEASE_ATTEMPTS; attempt++) {
      const info = this.read(ring.index);
      if (info.state === 'changing') continue;
      const r = info.ring;
      if (r === undefined || r.generation !== ring.generation) return false;
      const isProducer = sameRef(r.producer, member);
      const isConsumer = sameRef(r.consumer, member);
      let next: number | undefined;
      const free = packControl(BlockState.FREE, nextGeneration(r.generation));
      if (r.state === 'live') {
        if (isProducer && isConsumer) next = free;
        else if (isProducer) next = this.membership.holds(r.consumer) ? packControl(BlockState.PRODUCER_DONE, r.generation) : free;
        else if (isConsumer) next = this.membership.holds(r.producer) ? packControl(BlockState.CONSUMER_DONE, r.generation) : free;
      } else if (r.state === 'producer-done' && isConsumer) next = free;
      else if (r.state === 'consumer-done' && isProducer) next = free;
      if (next === undefined) return false;
      const c = info.control | 0;
      if (Atomics.compareExchange(this.m, this.at(ring.index, BlockField.CONTROL), c, next) === c) {
        bumpRingEpoch(this.header);
        return true;
      }
    }
    return false;
  }

  /** Releases every ring `member` holds (finalize). Returns how many it released. */
  releaseAll(member: MemberRef): number {
    this.membership.checkRef(member);
    let n = 0;
    for (let index = 0; index < this.blocks; index++) {
      const ring = this.read(index).ring;
      if (ring === undefined || !(sameRef(ring.producer, member) || sameRef(ring.consumer, member))) continue;
      if (this.release(ring, member)) n++;
    }
    return n;
  }

  /** Frees entry `index` if its control word is still `control` (a watcher's verdict). */
  reclaim(index: number, control: number): RingRef | undefined {
    this.checkIndex(index);
    const generation = controlGeneration(control);
    if (Atomics.compareExchange(this.m, this.at(index, BlockField.CONTROL), control, packControl(BlockState.FREE, nextGeneration(generation))) !== control) return undefined;
    bumpRingEpoch(this.header);
    return { index, generation };
  }
}

function sameRef(a: MemberRef, b: MemberRef): boolean {
  return a.slot === b.slot && a.generation === b.generation;
}

/** Options of a {@link BlockWatch}. */
export interface BlockWatchOptions {
  /** A block left CLAIMED, or invalid, with the same control word for this long is freed. */
  readonly timeoutMs: number;
  /** The observer's own monotonic clock in ms (default `performance.now`). */
  readonly now?: () => number;
}

/**
 * Frees ring blocks that nobody can release any more. Each {@link observe} looks at every entry once:
 * an entry none of whose holders still holds its slot is freed at once; an entry that stays CLAIMED
 * (its producer died while allocating) or invalid (garbage) with an unchanged control word for
 * `timeoutMs` of the observer's clock is freed then.
 */
export class BlockWatch {
  private readonly seen = new Map<number, { control: number; since: number }>();
  private readonly now: () => number;

  constructor(
    private readonly allocator: RingAllocator,
    private readonly options: BlockWatchOptions,
  ) {
    if (!(options.timeoutMs > 0)) throw new VmcommError('INVALID_ARGUMENT', `the reclaim timeout must be positive, got ${String(options.timeoutMs)} ms`);
    this.now = options.now ?? (() => performance.now());
  }

  /** One pass over the table. Returns the blocks freed by this pass. */
  observe(): RingRef[] {
    const t = this.now();
    const a = this.allocator;
    const ms = a.membership;
    const freed: RingRef[] = [];
    for (let index = 0; index < a.blocks; index++) {
      const info = a.read(index);
      if (info.state === 'free' || info.state === 'changing') {
        this.seen.delete(index);
        continue;
      }
      const r = info.ring;
      if (r !== undefined) {
        this.seen.delete(index);
        const producerHolds = r.state !== 'producer-done' && ms.holds(r.producer);
        const consumerHolds = r.state !== 'consumer-done' && ms.holds(r.consumer);
        if (producerHolds || consumerHolds) continue;
        const done = a.reclaim(index, info.control | 0);
        if (done !== undefined) freed.push(done);
        continue;
      }
      // CLAIMED or invalid: only time tells.
      const prev = this.seen.get(index);
      if (prev === undefined || prev.control !== info.control) {
        this.seen.set(index, { control: info.control, since: t });
        continue;
      }
      if (t - prev.since < this.options.timeoutMs) continue;
      this.seen.delete(index);
      const done = a.reclaim(index, info.control | 0);
      if (done !== undefined) freed.push(done);
    }
    return freed;
  }
}
