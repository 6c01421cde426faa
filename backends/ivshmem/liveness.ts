/**
 * Watching the peers this rank talks to through one region, by their membership slots, with this
 * rank's own clock (no time written by anyone else is trusted). Each {@link PeerLiveness.check} reads
 * every watched peer's slot once and gives a verdict for those that are no longer there:
 *
 * - **stalled**: the slot still holds the peer (same generation), but its (control word, heartbeat)
 *   pair has not changed for `timeoutMs` since this rank first saw it. Heartbeats are written by a
 *   thread of their own (`heartbeat.ts`), so this means the peer's process — or its whole VM — is
 *   gone or frozen. The caller reclaims the slot (`Membership.reclaim` from the control word seen).
 * - **ended**: the slot no longer holds the peer, and the ring the peer produced to this rank is still
 *   LIVE: it did not finalize (a clean leave releases its rings *before* it frees its slot, so its
 *   ring would be PRODUCER_DONE), but ended — its exit hook freed the slot — or was reclaimed by
 *   another observer.
 * - **left**: the slot no longer holds the peer and its ring to this rank was released: it finalized.
 *   Not a failure; the caller stops watching it.
 *
 * An observer that stalls itself cannot mistake a live peer for a dead one: a live peer's heartbeat
 * moved meanwhile, so the pair differs and the clock starts again.
 *
 * @module
 */

import type { RingAllocator, RingRef } from './allocator.js';
import type { MemberRef, Membership } from './membership.js';

/** What {@link PeerLiveness.check} found about one peer. */
export interface PeerVerdict {
  readonly peer: number;
  readonly kind: 'stalled' | 'ended' | 'left';
  /** The slot's control word as last seen (for `stalled`: reclaim from this). */
  readonly control: number;
  /** For `stalled`: how long (ms) the heartbeat has not moved. */
  readonly stalledMs: number;
}

interface Watched {
  readonly ref: MemberRef;
  /** The ring the peer produces to this rank, once known. */
  inbound: RingRef | undefined;
  control: number;
  heartbeat: number;
  since: number;
}

/** Options of a {@link PeerLiveness}. */
export interface LivenessOptions {
  /** A heartbeat that has not moved for this long (ms, by `now`) means the peer is gone. */
  readonly timeoutMs: number;
  /** This rank's monotonic clock in ms. */
  readonly now: () => number;
}

/** The peers watched in one region. */
export class PeerLiveness {
  private readonly peers = new Map<number, Watched>();

  constructor(
    private readonly membership: Membership,
    private readonly allocator: RingAllocator,
    private readonly options: LivenessOptions,
  ) {}

  /** Starts watching `peer`, a member at `ref`. */
  watch(peer: number, ref: MemberRef): void {
    this.membership.checkRef(ref, 'peer');
    this.peers.set(peer, { ref: { slot: ref.slot, generation: ref.generation }, inbound: undefined, control: 0, heartbeat: 0, since: -1 });
  }

  /** The ring `peer` produces to this rank (how a clean leave is told from an end). */
  setInbound(peer: number, ring: RingRef): void {
    const w = this.peers.get(peer);
    if (w !== undefined) w.inbound = { index: ring.index, generation: ring.generation };
  }

  /** Stops watching `peer`. */
  forget(peer: number): void {
    this.peers.delete(peer);
  }

  /** The peers watched. */
  get watched(): number[] {
    return [...this.peers.keys()];
  }

  /** One look at every watched peer; returns a verdict for each that is gone (and stops watching it). */
  check(): PeerVerdict[] {
    const t = this.options.now();
    const verdicts: PeerVerdict[] = [];
    for (const [peer, w] of this.peers) {
      const info = this.membership.read(w.ref.slot);
      const holds = (info.state === 'joining' || info.state === 'active' || info.state === 'leaving') && info.generation === w.ref.generation;
      if (holds) {
        if (w.since < 0 || info.control !== w.control || info.heartbeat !== w.heartbeat) {
          w.control = info.control;
          w.heartbeat = info.heartbeat;
          w.since = t;
          continue;
        }
        const stalledMs = t - w.since;
        if (stalledMs < this.options.timeoutMs) continue;
        this.peers.delete(peer);
        verdicts.push({ peer, kind: 'stalled', control: info.control, stalledMs });
        continue;
      }
      const released = this.releasedItsRing(w);
      if (released === undefined) continue; // its ring entry is changing right now: look again next time
      this.peers.delete(peer);
      verdicts.push({ peer, kind: released ? 'left' : 'ended', control: info.control, stalledMs: 0 });
    }
    return verdicts;
  }

  /**
   * Whether the peer's ring to this rank is no longer LIVE (it released it: a clean leave);
   * `undefined` while the entry is changing.
   */
  private releasedItsRing(w: Watched): boolean | undefined {
    const inbound = w.inbound;
    if (inbound === undefined) return false;
    const info = this.allocator.read(inbound.index);
    if (info.state === 'changing') return undefined;
    const ring = info.ring;
    // A block that is no longer this allocation was released by both sides: not live either.
    if (ring === undefined || ring.generation !== inbound.generation) return true;
    return ring.state !== 'live';
  }
}
