/**
 * The receiving half of a shared-memory transport's progress: takes new rings from this rank's inbox
 * and polls the rings it knows, with a fixed budget per call, round-robin so that no sender starves
 * (the progress loop of Open MPI's sm BTL, `mca_btl_sm_component_progress`, has the same shape).
 *
 * A call costs one atomic load for the inbox and two per ring while nothing arrives (the next
 * record's stamp and its last word: see `RingConsumer.poll`; one, the head word, in the middle of a
 * streamed record). A ring that fails validation, or whose frame the sink rejects, is dropped and its
 * peer reported lost; the other rings go on.
 *
 * @module
 */

import type { FrameSink } from '../backend.js';
import { VmcommError } from '../errors.js';
import { newAnnouncement, type Inbox } from './inbox.js';
import { corrupt } from './region.js';
import type { RingConsumer } from './spsc-ring.js';

/** What a {@link Poller} asks of its transport. */
export interface PollerHooks {
  /**
   * Turns an announcement into the consumer side of the announced ring. `descriptor` is a private
   * copy, valid during the call; `from` is as the peer wrote it. Throws (`CORRUPT`) to refuse it.
   */
  attach(from: number, descriptor: Uint8Array): RingConsumer;
  /** A producer waited for space that this rank just freed: wake it. */
  wakeProducer(peer: number): void;
  /** The ring from `peer` broke (validation failed, or the sink threw). */
  lost(peer: number, error: Error): void;
  /** The inbox itself failed validation: no more rings can be announced to this rank. */
  inboxBroken(error: Error): void;
}

/** Budgets of one {@link Poller.poll} call. */
export interface PollerBudget {
  /** Frames delivered per call, over all rings. */
  readonly framesPerPoll: number;
  /** Frames one ring may deliver before the next ring's turn. */
  readonly framesPerRing: number;
  /** Announcements taken per call. */
  readonly announcementsPerPoll: number;
}

/** Default {@link PollerBudget}. */
export const DEFAULT_POLLER_BUDGET: PollerBudget = { framesPerPoll: 64, framesPerRing: 16, announcementsPerPoll: 16 };

/**
 * Where a {@link Poller} takes ring announcements from: this rank's {@link Inbox}, or a transport's
 * stand-in (`ivshmem` turns rings it finds in a region's ring table into announcements).
 */
export type AnnouncementSource = Pick<Inbox, 'pending' | 'take'>;

interface Entry {
  readonly peer: number;
  readonly consumer: RingConsumer;
}

/** Polls the rings announced to one inbox. */
export class Poller {
  private entries: Entry[] = [];
  private next = 0;
  private inboxOk = true;
  private readonly announcement = newAnnouncement();
  private readonly budget: PollerBudget;
  /** True when the last {@link poll} read bytes, even if no frame completed (a streamed piece). */
  moved = false;

  constructor(
    private readonly inbox: AnnouncementSource,
    private readonly sink: FrameSink,
    private readonly hooks: PollerHooks,
    budget: Partial<PollerBudget> = {},
  ) {
    this.budget = { ...DEFAULT_POLLER_BUDGET, ...budget };
  }

  /** The peers whose rings are polled. */
  get peers(): number[] {
    return this.entries.map((e) => e.peer);
  }

  /** The consumer of `peer`'s ring, if it was announced. */
  consumerOf(peer: number): RingConsumer | undefined {
    return this.entries.find((e) => e.peer === peer)?.consumer;
  }

  /**
   * Takes new announcements, then polls rings round-robin until the frame budget is spent or every
   * ring had its turn. Returns the frames delivered. Never throws.
   */
  poll(): number {
    this.moved = false;
    if (this.inboxOk && this.inbox.pending()) this.takeAnnouncements();
    const entries = this.entries;
    const n = entries.length;
    if (n === 0) return 0;
    const { sink } = this;
    let budget = this.budget.framesPerPoll;
    const perRing = this.budget.framesPerRing;
    let delivered = 0;
    const start = this.next < n ? this.next : 0;
    let i = start;
    let visited = 0;
    while (visited < n && budget > 0) {
      const e = entries[i];
      i = i + 1 === n ? 0 : i + 1;
      visited++;
      const before = e.consumer.position;
      let got: number;
      try {
        got = e.consumer.poll(sink, e.peer, budget < perRing ? budget : perRing);
      } catch (error) {
        this.drop(e, error as Error);
        return delivered;
      }
      if (e.consumer.position !== before) this.moved = true;
      delivered += got;
      budget -= got;
      if (e.consumer.producerWantsWake) {
        e.consumer.producerWantsWake = false;
        this.hooks.wakeProducer(e.peer);
      }
      // A frame delivered can detach another ring (its peer given up from elsewhere: see
      // Transport.abandonFrame): this round's list is stale, the next call starts afresh.
      if (this.entries !== entries) {
        this.next = 0;
        return delivered;
      }
    }
    // Spent: the next call starts after the last ring served; else rotate by one.
    this.next = budget === 0 ? i : start + 1 === n ? 0 : start + 1;
    return delivered;
  }

  /** Bytes published to this rank and not yet read, over all rings. */
  unread(): number {
    let total = 0;
    for (const e of this.entries) total += e.consumer.available();
    return total;
  }

  /**
   * Stops polling `peer`'s ring and (unless `close` is false) tells its producer that nothing more
   * will be read. `close: false` is for a ring whose memory may no longer be this rank's to write.
   */
  detach(peer: number, close = true): void {
    const e = this.entries.find((x) => x.peer === peer);
    if (e === undefined) return;
    if (close) e.consumer.close();
    this.entries = this.entries.filter((x) => x !== e);
  }

  /**
   * Reports the peers whose producer marked its ring failed (`RingProducer.closeFailed`) once all it
   * published was read: the frames it finished are delivered first, and one it left unfinished would
   * never complete — a receive waiting on that peer fails with `PEER_LOST` instead of waiting on. For
   * a transport's periodic sweep (one load per ring).
   */
  sweepFailed(): void {
    for (const e of this.entries) {
      if (!e.consumer.producerFailed || e.consumer.available() !== 0) continue;
      this.drop(e, new VmcommError('PEER_LOST', `rank ${e.peer}'s channel to this rank failed on its side; nothing more comes from it`, { peer: e.peer }));
      return this.sweepFailed(); // `entries` changed
    }
  }

  /** Detaches every ring. */
  detachAll(): void {
    for (const e of this.entries) e.consumer.close();
    this.entries = [];
  }

  private takeAnnouncements(): void {
    const a = this.announcement;
    for (let k = 0; k < this.budget.announcementsPerPoll; k++) {
      let taken: boolean;
      try {
        taken = this.inbox.take(a);
      } catch (error) {
        this.inboxOk = false;
        this.hooks.inboxBroken(error as Error);
        return;
      }
      if (!taken) return;
      const from = a.from;
      const existing = this.entries.find((e) => e.peer === from);
      if (existing !== undefined) {
        // A second ring from a rank that has one: what it writes cannot be trusted any more. CORRUPT (a
        // plain Error reached programs as PEER_LOST), and its first ring is dropped too, so nothing
        // more of it reaches the sink after it was reported lost.
        this.drop(existing, corrupt(`rank ${from} announced a second ring`));
        continue;
      }
      let consumer: RingConsumer;
      try {
        consumer = this.hooks.attach(from, a.descriptor.subarray(0, a.length));
      } catch (error) {
        this.hooks.lost(from, error as Error);
        continue;
      }
      this.entries.push({ peer: from, consumer });
    }
  }

  private drop(e: Entry, error: Error): void {
    this.entries = this.entries.filter((x) => x !== e);
    this.next = 0;
    this.hooks.lost(e.peer, error);
  }
}
