/**
 * The membership table of an ivshmem region (layout and protocol: `region-layout.ts`). A process
 * that joins a region *claims* a slot with a compare-and-swap, fills in who it is (job id, process
 * nonce, rank) and heartbeats; peers find it by (job, nonce[, rank]); it frees the slot when it
 * finalizes; and a {@link MemberWatch} frees the slot of a member whose heartbeat stopped.
 *
 * A member is named by `(slot, generation)` ({@link MemberRef}): the generation changes whenever the
 * slot becomes free, so a member that was reclaimed while it stalled finds a different control word
 * and learns that it is no longer a member ({@link Membership.beat} says `'lost'`).
 *
 * Every loop here runs over the slot count validated when the region was opened; every word is read
 * once into a local. Garbage in a slot makes that slot look invalid (skipped, and eventually reclaimed),
 * never an out-of-bounds access.
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import { bumpMemberEpoch, readRegionStatus, type RegionHeader } from './region-header.js';
import {
  checkId,
  controlGeneration,
  controlState,
  GENERATION_MASK,
  loadId,
  nextGeneration,
  packControl,
  sameId,
  SLOT_BYTES,
  SlotField,
  SlotState,
  storeId,
  toHex,
} from './region-layout.js';

/** One occupancy of a slot. */
export interface MemberRef {
  /** The slot index. */
  readonly slot: number;
  /** The slot's generation while this member holds it. */
  readonly generation: number;
}

/** Who a member is. */
export interface MemberIdentity {
  /** The job id, 16 bytes (see `ids.ts`: `jobKey`). */
  readonly job: Uint8Array;
  /** The member's process nonce, 16 bytes. */
  readonly nonce: Uint8Array;
  /** Its rank in the job (an unsigned 32-bit integer). */
  readonly rank: number;
}

/** A member as read from (or written to) its slot. */
export interface Member extends MemberRef, MemberIdentity {
  /** The region generation when it joined. */
  readonly regionGeneration: number;
}

/** What a slot holds, for `vmcomm ivshmem show` and tests. */
export interface SlotInfo {
  readonly slot: number;
  /** `'invalid'`: the state bits are none of {@link SlotState}'s (garbage; reclaimed in time). */
  readonly state: 'free' | 'joining' | 'active' | 'leaving' | 'invalid';
  readonly generation: number;
  /** The raw control word (unsigned). */
  readonly control: number;
  readonly heartbeat: number;
  /** Only for a slot whose fields were read consistently (not free, not changing). */
  readonly member?: Member;
}

/** What {@link Membership.beat} found. */
export type BeatResult =
  /** Still a member; the heartbeat moved. */
  | 'ok'
  /** The slot is no longer this member's (reclaimed, or overwritten): stop using the region. */
  | 'lost'
  /** The region was revoked or restored since this member joined: leave it and use tcp. */
  | 'revoked';

const SLOT_WORDS = SLOT_BYTES >> 2;
const STATE_NAMES = ['free', 'joining', 'active', 'leaving'] as const;

/** True for a control word whose slot holds a member (joining, active or leaving). */
function occupied(state: number): boolean {
  return state === SlotState.JOINING || state === SlotState.ACTIVE || state === SlotState.LEAVING;
}

/** The membership table of an opened region. */
export class Membership {
  /** Slots `S` (validated at open). */
  readonly slots: number;
  private readonly m: Int32Array;
  private readonly base: number;

  constructor(readonly header: RegionHeader) {
    this.slots = header.layout.slots;
    this.m = header.meta;
    this.base = header.layout.slotTableOffset >> 2;
  }

  /** Word index of `field` (a byte offset) of `slot`. */
  private at(slot: number, field: number): number {
    return this.base + slot * SLOT_WORDS + (field >> 2);
  }

  /** Checks a reference handed in by local code. */
  checkRef(ref: MemberRef, what = 'member'): void {
    const { slot, generation } = ref ?? ({} as MemberRef);
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new VmcommError('INVALID_ARGUMENT', `${what}: slot must be an integer from 0 to ${this.slots - 1}, got ${String(slot)}`);
    }
    if (!Number.isInteger(generation) || generation < 0 || generation > GENERATION_MASK) {
      throw new VmcommError('INVALID_ARGUMENT', `${what}: generation must be an integer from 0 to ${GENERATION_MASK}, got ${String(generation)}`);
    }
  }

  /**
   * Claims a free slot for `identity` and makes it ACTIVE. Returns the new member, or `undefined`
   * when every slot is taken or the region is revoked (the caller uses tcp). Lock-free: each slot is
   * looked at once.
   *
   * @throws `CORRUPT` for a revoked word that is neither 0 nor 1.
   */
  claim(identity: MemberIdentity): Member | undefined {
    const { job, nonce, rank } = identity;
    checkId(job, 'job');
    checkId(nonce, 'nonce');
    if (!Number.isInteger(rank) || rank < 0 || rank > 0xffff_ffff) throw new VmcommError('INVALID_ARGUMENT', `rank must be an unsigned 32-bit integer, got ${String(rank)}`);
    const status = readRegionStatus(this.header);
    if (status.revoked) return undefined;
    const m = this.m;
    // Start where this nonce hashes to, so joiners do not all fight over slot 0.
    const start = ((nonce[0] | (nonce[1] << 8)) + rank) % this.slots;
    for (let k = 0; k < this.slots; k++) {
      const slot = (start + k) % this.slots;
      const c = Atomics.load(m, this.at(slot, SlotField.CONTROL));
      if (controlState(c) !== SlotState.FREE) continue;
      const generation = controlGeneration(c);
      const joining = packControl(SlotState.JOINING, generation);
      if (Atomics.compareExchange(m, this.at(slot, SlotField.CONTROL), c, joining) !== c) continue;
      Atomics.store(m, this.at(slot, SlotField.RANK), rank | 0);
      Atomics.store(m, this.at(slot, SlotField.REGION_GENERATION), status.generation | 0);
      storeId(m, this.at(slot, SlotField.JOB), job);
      storeId(m, this.at(slot, SlotField.NONCE), nonce);
      Atomics.store(m, this.at(slot, SlotField.HEARTBEAT), 0);
      Atomics.store(m, this.at(slot, SlotField.DOORBELL), 0);
      Atomics.store(m, this.at(slot, SlotField.WAITER), 0);
      const active = packControl(SlotState.ACTIVE, generation);
      // Fails only when a watcher took this slot for dead (we stalled longer than its timeout).
      if (Atomics.compareExchange(m, this.at(slot, SlotField.CONTROL), joining, active) !== joining) continue;
      bumpMemberEpoch(this.header);
      return { slot, generation, job: job.slice(), nonce: nonce.slice(), rank, regionGeneration: status.generation };
    }
    return undefined;
  }

  /** True while `ref` still holds its slot and is ACTIVE. */
  isCurrent(ref: MemberRef): boolean {
    this.checkRef(ref);
    return Atomics.load(this.m, this.at(ref.slot, SlotField.CONTROL)) === packControl(SlotState.ACTIVE, ref.generation);
  }

  /** True while `ref` holds its slot in any state (joining, active, leaving): a ring holder is alive. */
  holds(ref: MemberRef): boolean {
    this.checkRef(ref);
    const c = Atomics.load(this.m, this.at(ref.slot, SlotField.CONTROL));
    return occupied(controlState(c)) && controlGeneration(c) === ref.generation;
  }

  /**
   * The owner's heartbeat: checks that `member` still holds its slot, then advances the heartbeat.
   * Call it more often than the reclaim timeout (the transport does, off the main thread).
   *
   * @throws `CORRUPT` for a revoked word that is neither 0 nor 1.
   */
  beat(member: Member): BeatResult {
    this.checkRef(member);
    const c = Atomics.load(this.m, this.at(member.slot, SlotField.CONTROL));
    if (c !== packControl(SlotState.ACTIVE, member.generation)) return 'lost';
    Atomics.add(this.m, this.at(member.slot, SlotField.HEARTBEAT), 1);
    const status = readRegionStatus(this.header);
    return status.revoked || status.generation !== member.regionGeneration ? 'revoked' : 'ok';
  }

  /** The heartbeat counter of `slot` (for watchers and tests). */
  heartbeat(slot: number): number {
    this.checkRef({ slot, generation: 0 });
    return Atomics.load(this.m, this.at(slot, SlotField.HEARTBEAT)) >>> 0;
  }

  /** Word index of `ref`'s signalling word (`'doorbell'` or `'waiter'`), for the signalling layer. */
  signalWord(ref: MemberRef, which: 'doorbell' | 'waiter'): number {
    this.checkRef(ref);
    return this.at(ref.slot, which === 'doorbell' ? SlotField.DOORBELL : SlotField.WAITER);
  }

  /** Reads `slot` consistently; `undefined` fields when it is free, invalid or changed meanwhile. */
  read(slot: number): SlotInfo {
    this.checkRef({ slot, generation: 0 });
    const m = this.m;
    const c = Atomics.load(m, this.at(slot, SlotField.CONTROL));
    const state = controlState(c);
    const generation = controlGeneration(c);
    const heartbeat = Atomics.load(m, this.at(slot, SlotField.HEARTBEAT)) >>> 0;
    const base = { slot, generation, control: c >>> 0, heartbeat };
    if (state > SlotState.LEAVING) return { ...base, state: 'invalid' };
    const name = STATE_NAMES[state];
    if (state === SlotState.FREE) return { ...base, state: name };
    const rank = Atomics.load(m, this.at(slot, SlotField.RANK)) >>> 0;
    const regionGeneration = Atomics.load(m, this.at(slot, SlotField.REGION_GENERATION)) >>> 0;
    const job = loadId(m, this.at(slot, SlotField.JOB));
    const nonce = loadId(m, this.at(slot, SlotField.NONCE));
    if (Atomics.load(m, this.at(slot, SlotField.CONTROL)) !== c) return { ...base, state: name };
    return { ...base, state: name, member: { slot, generation, job, nonce, rank, regionGeneration } };
  }

  /** The member holding `ref` if it is ACTIVE (read consistently), else `undefined`. */
  member(ref: MemberRef): Member | undefined {
    this.checkRef(ref);
    const info = this.read(ref.slot);
    return info.state === 'active' && info.generation === ref.generation ? info.member : undefined;
  }

  /** Every slot, in order. */
  list(): SlotInfo[] {
    const out: SlotInfo[] = [];
    for (let slot = 0; slot < this.slots; slot++) out.push(this.read(slot));
    return out;
  }

  /**
   * The ACTIVE member of job `job` with process nonce `nonce` (and rank `rank`, when given): how a
   * rank proves that a peer is in this region (DESIGN section 4). `undefined` when there is none.
   */
  find(job: Uint8Array, nonce: Uint8Array, rank?: number): Member | undefined {
    checkId(job, 'job');
    checkId(nonce, 'nonce');
    for (let slot = 0; slot < this.slots; slot++) {
      const info = this.read(slot);
      const member = info.member;
      if (info.state !== 'active' || member === undefined) continue;
      if ((rank === undefined || member.rank === rank) && sameId(member.job, job) && sameId(member.nonce, nonce)) return member;
    }
    return undefined;
  }

  /**
   * First step of leaving: ACTIVE → LEAVING. Returns false when `ref` no longer holds its slot (then
   * it owns nothing here). Release the member's rings, then call {@link finishLeave}.
   */
  beginLeave(ref: MemberRef): boolean {
    this.checkRef(ref);
    const active = packControl(SlotState.ACTIVE, ref.generation);
    return Atomics.compareExchange(this.m, this.at(ref.slot, SlotField.CONTROL), active, packControl(SlotState.LEAVING, ref.generation)) === active;
  }

  /** Last step of leaving: zeroes the fields and frees the slot (LEAVING → FREE, next generation). */
  finishLeave(ref: MemberRef): boolean {
    this.checkRef(ref);
    const m = this.m;
    const leaving = packControl(SlotState.LEAVING, ref.generation);
    if (Atomics.load(m, this.at(ref.slot, SlotField.CONTROL)) !== leaving) return false;
    for (let w = 1; w < SlotField.HEARTBEAT >> 2; w++) Atomics.store(m, this.at(ref.slot, 0) + w, 0);
    const freed = Atomics.compareExchange(m, this.at(ref.slot, SlotField.CONTROL), leaving, packControl(SlotState.FREE, nextGeneration(ref.generation))) === leaving;
    if (freed) bumpMemberEpoch(this.header);
    return freed;
  }

  /** Frees `ref`'s slot (both steps). The caller releases its rings in between, or uses the facade. */
  release(ref: MemberRef): boolean {
    return this.beginLeave(ref) && this.finishLeave(ref);
  }

  /**
   * Frees `slot` if its control word is still `control` (a watcher's verdict; see {@link MemberWatch}).
   * Returns the occupancy it ended, or `undefined` when the slot changed meanwhile.
   */
  reclaim(slot: number, control: number): MemberRef | undefined {
    this.checkRef({ slot, generation: 0 });
    const generation = controlGeneration(control);
    if (Atomics.compareExchange(this.m, this.at(slot, SlotField.CONTROL), control, packControl(SlotState.FREE, nextGeneration(generation))) !== control) return undefined;
    bumpMemberEpoch(this.header);
    return { slot, generation };
  }

  /** A short text for one slot (for messages). */
  describeSlot(info: SlotInfo): string {
    const m = info.member;
    return m === undefined
      ? `slot ${info.slot}: ${info.state} (generation ${info.generation})`
      : `slot ${info.slot}: ${info.state} rank ${m.rank} job ${toHex(m.job)} nonce ${toHex(m.nonce)} (generation ${info.generation})`;
  }
}

/** Options of a {@link MemberWatch}. */
export interface WatchOptions {
  /** A member whose heartbeat has not moved for this long (by `now`) is reclaimed. */
  readonly timeoutMs: number;
  /** The observer's own monotonic clock in ms (default `performance.now`). Never the other side's. */
  readonly now?: () => number;
  /** The observer's own membership: never judged by itself. */
  readonly self?: MemberRef;
}

/** The default reclaim timeout: far beyond a GC pause or a busy host, short enough to free slots. */
export const DEFAULT_RECLAIM_TIMEOUT_MS = 30_000;

interface Seen {
  control: number;
  heartbeat: number;
  since: number;
}

/**
 * Finds dead members and frees their slots. Each {@link observe} looks at every slot once: a slot
 * whose (control word, heartbeat) pair has not changed since the observer first saw it, at least
 * `timeoutMs` ago by the observer's own clock, is reclaimed (compare-and-swap from that control word
 * to FREE with the next generation). A time written by anyone else is never used.
 */
export class MemberWatch {
  private readonly seen = new Map<number, Seen>();
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(
    private readonly membership: Membership,
    private readonly options: WatchOptions,
  ) {
    if (!(options.timeoutMs > 0)) throw new VmcommError('INVALID_ARGUMENT', `the reclaim timeout must be positive, got ${String(options.timeoutMs)} ms`);
    this.timeoutMs = options.timeoutMs;
    this.now = options.now ?? (() => performance.now());
    if (options.self !== undefined) membership.checkRef(options.self, 'self');
  }

  /** One pass over the slots. Returns the members reclaimed by this pass. */
  observe(): MemberRef[] {
    const t = this.now();
    const self = this.options.self;
    const reclaimed: MemberRef[] = [];
    const ms = this.membership;
    for (let slot = 0; slot < ms.slots; slot++) {
      const info = ms.read(slot);
      if (info.state === 'free' || (self !== undefined && slot === self.slot && info.generation === self.generation)) {
        this.seen.delete(slot);
        continue;
      }
      const prev = this.seen.get(slot);
      if (prev === undefined || prev.control !== info.control || prev.heartbeat !== info.heartbeat) {
        this.seen.set(slot, { control: info.control, heartbeat: info.heartbeat, since: t });
        continue;
      }
      if (t - prev.since < this.timeoutMs) continue;
      this.seen.delete(slot);
      const ended = ms.reclaim(slot, info.control | 0);
      if (ended !== undefined) reclaimed.push(ended);
    }
    return reclaimed;
  }
}
