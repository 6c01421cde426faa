/**
 * An ivshmem region as the transport uses it: open (or format) a mapped region, join it as a member,
 * open rings to peers, find the rings peers opened, heartbeat, reclaim what dead members left, and
 * leave at finalize — freeing this member's slot and rings, never the region.
 *
 * The format is in `region-layout.ts`; the pieces are `region-header.ts`, `membership.ts` and
 * `allocator.ts`. Nothing here uses Node APIs: the region is any `SharedArrayBuffer` span (a file
 * mapped by the addon, a PCI BAR, or plain memory in tests).
 *
 * @example
 * ```ts
 * const region = IvshmemRegion.format({ sab: new SharedArrayBuffer(1 << 20), byteOffset: 0, byteLength: 1 << 20 });
 * const job = new Uint8Array(16).fill(7);
 * const a = region.join({ job, nonce: new Uint8Array(16).fill(1), rank: 0 })!;
 * const b = region.join({ job, nonce: new Uint8Array(16).fill(2), rank: 1 })!;
 * const ring = a.openRingTo(b.ref);               // undefined when the region is full: use tcp
 * const producer = new RingProducer(ring!.region); // lib/ring/spsc-ring.ts
 * const consumer = new RingConsumer(b.ringsToMe()[0].region);
 * a.finalize(); b.finalize();                      // slots and rings free again
 * ```
 *
 * @module
 */

import type { Region } from '../../lib/ring/region.js';
import { BlockWatch, type RingBlock, RingAllocator, type RingRef } from './allocator.js';
import { type BeatResult, DEFAULT_RECLAIM_TIMEOUT_MS, type Member, type MemberIdentity, type MemberRef, MemberWatch, Membership } from './membership.js';
import {
  checkRegionHeader,
  formatRegion,
  type FormatOptions,
  openRegionHeader,
  type OpenOptions,
  readRegionStatus,
  type RegionHeader,
  type RegionStatus,
  restoreRegion,
  revokeRegion,
} from './region-header.js';
import type { RegionLayout } from './region-layout.js';

/** An opened ivshmem region. */
export class IvshmemRegion {
  readonly members: Membership;
  readonly rings: RingAllocator;

  private constructor(readonly header: RegionHeader) {
    this.members = new Membership(header);
    this.rings = new RingAllocator(header, this.members);
  }

  /** Formats `region` (size a power of two) and opens it. See `formatRegion`. */
  static format(region: Region, options?: FormatOptions): IvshmemRegion {
    return new IvshmemRegion(formatRegion(region, options));
  }

  /** Opens a formatted region. Throws `CORRUPT` for one that fails validation. See `openRegionHeader`. */
  static open(region: Region, options?: OpenOptions): IvshmemRegion {
    return new IvshmemRegion(openRegionHeader(region, options));
  }

  /** The region's UUID as text (what locality cards carry). */
  get uuid(): string {
    return this.header.uuidText;
  }

  /** The validated layout. */
  get layout(): RegionLayout {
    return this.header.layout;
  }

  /** The header's mutable words (generation, revoked, epochs), read once. */
  status(): RegionStatus {
    return readRegionStatus(this.header);
  }

  /** Throws `CORRUPT` when the header changed since it was opened (overwritten or re-formatted). */
  validate(): void {
    checkRegionHeader(this.header);
  }

  /** Marks the region revoked (admin). */
  revoke(): void {
    revokeRegion(this.header);
  }

  /** Clears the revoked mark (admin). */
  restore(): void {
    restoreRegion(this.header);
  }

  /**
   * Joins as a member. `undefined` when every slot is taken or the region is revoked (use tcp).
   * Throws `CORRUPT` when the header changed since the region was opened.
   */
  join(identity: MemberIdentity): RegionMember | undefined {
    // A region re-formatted since it was opened has another layout: never join by a stale one.
    this.validate();
    const member = this.members.claim(identity);
    return member === undefined ? undefined : new RegionMember(this, member);
  }

  /**
   * A reclaimer of dead members and their rings, judged by `now` (the observer's clock), skipping
   * `self`. Call its `observe()` periodically (more often than `timeoutMs`).
   */
  watch(options: { timeoutMs?: number; now?: () => number; self?: MemberRef } = {}): RegionWatch {
    const timeoutMs = options.timeoutMs ?? DEFAULT_RECLAIM_TIMEOUT_MS;
    const common = options.now === undefined ? { timeoutMs } : { timeoutMs, now: options.now };
    return new RegionWatch(
      new MemberWatch(this.members, options.self === undefined ? common : { ...common, self: options.self }),
      new BlockWatch(this.rings, common),
    );
  }
}

/** What one pass of a {@link RegionWatch} freed. */
export interface Reclaimed {
  readonly members: MemberRef[];
  readonly rings: RingRef[];
}

/** Reclaims dead members' slots, then the rings nobody holds any more. */
export class RegionWatch {
  constructor(
    private readonly memberWatch: MemberWatch,
    private readonly blockWatch: BlockWatch,
  ) {}

  /** One pass over slots, then blocks. */
  observe(): Reclaimed {
    const members = this.memberWatch.observe();
    const rings = this.blockWatch.observe();
    return { members, rings };
  }
}

/** This process's membership in a region. */
export class RegionMember {
  private finalized = false;

  constructor(
    readonly region: IvshmemRegion,
    /** Who this member is: slot, generation, job, nonce, rank, region generation at join. */
    readonly ref: Member,
  ) {}

  /** True while this member still holds its slot (ACTIVE with its generation). */
  isCurrent(): boolean {
    return !this.finalized && this.region.members.isCurrent(this.ref);
  }

  /**
   * Advances the heartbeat; `'lost'` when the slot was reclaimed, `'revoked'` when the region was.
   * Throws `CORRUPT` when the header changed (the region was overwritten or re-formatted).
   */
  beat(): BeatResult {
    if (this.finalized) return 'lost';
    this.region.validate();
    return this.region.members.beat(this.ref);
  }

  /**
   * The ring from this member to `peer`: the live one if there is one, else a new one. `undefined`
   * when the region is full, revoked, or one of the two is no longer a member: that pair uses tcp.
   */
  openRingTo(peer: MemberRef): RingBlock | undefined {
    if (this.finalized) return undefined;
    this.region.validate();
    return this.region.rings.find(this.ref, peer) ?? this.region.rings.allocate(this.ref, peer);
  }

  /** The rings peers opened to this member (rescan when the ring epoch changes). */
  ringsToMe(): RingBlock[] {
    return this.isCurrent() ? this.region.rings.ringsTo(this.ref) : [];
  }

  /** Stops using `ring` (its peer was lost, or the channel closed). See `RingAllocator.release`. */
  releaseRing(ring: RingRef): boolean {
    return this.region.rings.release(ring, this.ref);
  }

  /**
   * Leaves the region: frees this member's rings (a ring whose peer still reads stays until the peer
   * releases it) and its slot. Never touches the region itself. Idempotent.
   */
  finalize(): { rings: number; slot: boolean } {
    if (this.finalized) return { rings: 0, slot: false };
    this.finalized = true;
    const { members, rings } = this.region;
    if (!members.beginLeave(this.ref)) return { rings: 0, slot: false };
    const released = rings.releaseAll(this.ref);
    return { rings: released, slot: members.finishLeave(this.ref) };
  }
}
