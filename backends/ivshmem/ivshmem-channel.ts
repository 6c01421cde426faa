/**
 * What the ring layer needs, made of a region's tables instead of inboxes. The ring layer
 * (`lib/ring/`) is written around a rank's inbox: a sender announces its ring there and rings its
 * doorbell; the receiver's `Poller` takes announcements from it. An ivshmem region has no inbox — a
 * ring is found in the region's ring table, addressed to the receiver's slot — and across VMs there
 * is no one to wake. So:
 *
 * - {@link SlotPeer} is the peer "inbox" a `RingChannel` sends through: its state is the peer's
 *   membership (OPEN while the peer holds its slot, CLOSED once it left, GONE once judged dead);
 *   announcing is a no-op (the ring sits in the table since `probe()` reserved it); ringing the
 *   doorbell is a no-op (the peer polls).
 * - {@link RingDiscovery} is the announcement source a `Poller` takes rings from: it scans the ring
 *   table (`RingAllocator.ringsTo`) for rings to this rank's slot from the peers it expects, when the
 *   region's ring epoch changed, and hands each found ring over once as an announcement whose
 *   descriptor names the block (region, index, generation). The transport's `attach` hook re-reads
 *   the entry and opens the ring's consumer side. Once every expected ring was found it costs nothing.
 *
 * The outbound channel itself is the ring layer's `RingChannel`, unchanged.
 *
 * @module
 */

import { type Announcement, InboxState } from '../../lib/ring/inbox.js';
import type { AnnouncementSource } from '../../lib/ring/poller.js';
import type { PeerInbox } from '../../lib/ring/ring-channel.js';
import type { RingRef } from './allocator.js';
import type { MemberRef, Membership } from './membership.js';
import { HeaderField } from './region-layout.js';
import type { RegionMember } from './region.js';

/** The peer as a `RingChannel` sees it (see the module comment). */
export class SlotPeer implements PeerInbox {
  /** Set when this rank judged the peer dead. */
  gone = false;

  constructor(
    private readonly membership: Membership,
    readonly ref: MemberRef,
  ) {}

  /** OPEN while the peer holds its slot; CLOSED once it left; GONE once judged dead. */
  get state(): InboxState {
    if (this.gone) return InboxState.GONE;
    return this.membership.holds(this.ref) ? InboxState.OPEN : InboxState.CLOSED;
  }

  /** Nothing to announce: the ring is in the region's ring table. */
  announce(): boolean {
    return true;
  }

  /** No doorbell across VMs: the peer polls. */
  ring(): boolean {
    return false;
  }
}

/** Bytes of a discovery descriptor: region index, block index, block generation (u32 each). */
export const DISCOVERY_DESCRIPTOR_BYTES = 12;

/** A ring named by a discovery descriptor. */
export interface DiscoveredRing extends RingRef {
  /** Index of the region among the transport's attached regions. */
  readonly regionIndex: number;
}

/** Reads a descriptor that {@link RingDiscovery} wrote. `undefined` for anything else. */
export function decodeDiscovery(descriptor: Uint8Array): DiscoveredRing | undefined {
  if (descriptor.byteLength !== DISCOVERY_DESCRIPTOR_BYTES) return undefined;
  const v = new DataView(descriptor.buffer, descriptor.byteOffset, descriptor.byteLength);
  return { regionIndex: v.getUint32(0, true), index: v.getUint32(4, true), generation: v.getUint32(8, true) };
}

interface Expected {
  readonly peer: number;
  readonly regionIndex: number;
  readonly producer: MemberRef;
  found: boolean;
}

/** Turns rings found in the ring tables into announcements for a `Poller` (see the module comment). */
export class RingDiscovery implements AnnouncementSource {
  private readonly expected: Expected[] = [];
  private missing = 0;
  private readonly queue: { peer: number; ring: DiscoveredRing }[] = [];
  /** Per region: the ring epoch at the last scan (−1: never scanned). */
  private readonly epochs: number[];
  /** Scans done (diagnostics, tests). */
  scans = 0;

  private readonly members: RegionMember[];

  /** @param members this rank's membership in each attached region (index = region index). */
  constructor(members: readonly RegionMember[]) {
    this.members = [...members];
    this.epochs = members.map(() => -1);
  }

  /** A membership joined later (a restored or attached region): the next region index. */
  addRegion(member: RegionMember): void {
    this.members.push(member);
    this.epochs.push(-1);
  }

  /** Expects a ring from `peer`, a member at `producer` of region `regionIndex`. */
  expect(peer: number, regionIndex: number, producer: MemberRef): void {
    this.expected.push({ peer, regionIndex, producer: { slot: producer.slot, generation: producer.generation }, found: false });
    this.missing++;
  }

  /** Stops expecting `peer`'s ring (it was lost before it was found). */
  drop(peer: number): void {
    for (const e of this.expected) {
      if (e.peer !== peer || e.found) continue;
      e.found = true;
      this.missing--;
    }
  }

  /** Rings from expected peers not found yet. */
  get waitingFor(): number {
    return this.missing;
  }

  /** True when a ring is ready to take, or may be (a region's ring epoch moved while rings are missing). */
  pending(): boolean {
    if (this.queue.length > 0) return true;
    if (this.missing === 0) return false;
    for (let r = 0; r < this.members.length; r++) if (this.epoch(r) !== this.epochs[r]) return true;
    return false;
  }

  /** Takes the next found ring into `out` (scanning first when an epoch moved); false when none. */
  take(out: Announcement): boolean {
    if (this.queue.length === 0 && this.missing > 0) this.scan();
    const next = this.queue.shift();
    if (next === undefined) return false;
    const v = new DataView(out.descriptor.buffer, out.descriptor.byteOffset, DISCOVERY_DESCRIPTOR_BYTES);
    v.setUint32(0, next.ring.regionIndex, true);
    v.setUint32(4, next.ring.index, true);
    v.setUint32(8, next.ring.generation, true);
    out.from = next.peer;
    out.length = DISCOVERY_DESCRIPTOR_BYTES;
    return true;
  }

  private epoch(r: number): number {
    return Atomics.load(this.members[r].region.header.meta, HeaderField.RING_EPOCH >> 2) >>> 0;
  }

  /** Reads the ring table of every region whose epoch moved, for rings from expected peers. */
  private scan(): void {
    for (let r = 0; r < this.members.length; r++) {
      const epoch = this.epoch(r);
      if (epoch === this.epochs[r]) continue;
      // Epoch first, table second: a ring published after this read moves the epoch again.
      this.epochs[r] = epoch;
      if (!this.expected.some((e) => !e.found && e.regionIndex === r)) continue;
      this.scans++;
      for (const ring of this.members[r].ringsToMe()) {
        const e = this.expected.find((x) => !x.found && x.regionIndex === r && x.producer.slot === ring.producer.slot && x.producer.generation === ring.producer.generation);
        if (e === undefined) continue;
        e.found = true;
        this.missing--;
        this.queue.push({ peer: e.peer, ring: { regionIndex: r, index: ring.index, generation: ring.generation } });
      }
    }
  }
}
