/**
 * The ivshmem {@link Transport}: ranks in different VMs of one host talk through rings in a shared
 * region (see `index.ts` for the whole picture, `region-layout.ts` for the format).
 *
 * ## Lifecycle
 *
 * - `start()` loads the addon, finds and joins the regions (`attach.ts`), starts their heartbeats
 *   (`heartbeat.ts`) and the peer watch, and returns the card fields: per region its UUID and this
 *   rank's slot and slot generation. No usable region: `undefined` with the reason.
 * - `probe(card)` checks that a region both list holds the peer, ACTIVE, at the slot its card names,
 *   with its job id, process nonce and rank — and reserves this rank's ring to the peer there. A full
 *   region (or none in common) answers false, so the pair uses tcp on both ends.
 * - `addPeers(peers)` releases the reservations of pairs that went elsewhere, leaves regions no
 *   chosen pair uses, expects a ring from every chosen peer (`RingDiscovery`), and starts the poller
 *   and the wait loop.
 * - `connect(peer)` wraps the reserved ring in the ring layer's `RingChannel` — and that in a
 *   `MacChannel` when the pair authenticates its frames (`frame-mac.ts`; the poller's sink is then
 *   a `MacSink` that verifies those peers' records).
 * - `stop()` fails what is still queued, stops reading (consumers closed), and leaves every region:
 *   its slot and rings are freed (a ring its reader has not drained stays until the reader lets go).
 *
 * A process that ends without `stop()` frees its slots from an `exit` hook, without releasing its
 * rings: its peers see its slot free while its rings are still live, know it did not finalize, and
 * report it lost at once. One killed by a signal stops heartbeating and is found by the timeout.
 *
 * ## Progress and waiting
 *
 * `poll()` takes newly found rings, reads every ring (two atomic loads each when idle) and flushes
 * channels that wait for space. Between the core's calls a `WaitingPolicy` polls from the event loop
 * for an adaptive budget, then the back-off sleeper (`backoff.ts`) yields, then sleeps on timers of
 * growing length: no peer can wake this rank across VMs.
 *
 * @module
 */

import type { BackendComponents, CardFields, CardValue, Channel, FrameSink, LocalityCard, Transport } from '../../lib/backend.js';
import { forgetAtExit, goneAtExit } from '../../lib/exit-hook.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { Poller } from '../../lib/ring/poller.js';
import { corrupt } from '../../lib/ring/region.js';
import { PendingChannels, RingChannel } from '../../lib/ring/ring-channel.js';
import { RingConsumer, ringDataBytes } from '../../lib/ring/spsc-ring.js';
import { Progress, WaitingPolicy } from '../../lib/ring/waiting.js';
import { tryLoadNative, type NativeAddon, type NativeWaiter } from '../native/native.js';
import type { RingBlock, RingRef } from './allocator.js';
import { attachRegions, IVSHMEM_ENV, PCI_DEVICES_DIRECTORY, regionPaths } from './attach.js';
import { BackoffSleeper } from './backoff.js';
import { deriveMacKey, MAC_MAX_BODY_BYTES, MacChannel, macFromEnv, MacSink } from './frame-mac.js';
import { heartbeatTarget, startHeartbeat, type HeartbeatEvent, type HeartbeatHandle } from './heartbeat.js';
import { jobKey, nonceKey } from './ids.js';
import type { IvshmemOptions } from './index.js';
import { decodeDiscovery, RingDiscovery, SlotPeer } from './ivshmem-channel.js';
import { PeerLiveness, type PeerVerdict } from './liveness.js';
import type { MemberRef } from './membership.js';
import { GENERATION_MASK, packControl, sameId, SlotState } from './region-layout.js';
import type { IvshmemRegion, RegionMember, RegionWatch } from './region.js';
import { hostCores } from '../../lib/launch/binding.js';
import { PollSweep } from '../../lib/ring/poll-sweep.js';

/** A region this rank joined. */
interface Attached {
  readonly path: string;
  readonly region: IvshmemRegion;
  readonly member: RegionMember;
  heartbeat: HeartbeatHandle | undefined;
  readonly watch: RegionWatch;
  readonly liveness: PeerLiveness;
  /** When the region-wide watch last ran (ms). */
  lastWatch: number;
  /** False once this rank left it, or it is no longer this rank's to write (lost, corrupt). */
  joined: boolean;
  /** Why it is no longer joined (for messages). */
  why: string;
  /**
   * Revoked while pairs used it, and the core moves them elsewhere (migration): frames still flow
   * until each pair is released, then this rank leaves. Nothing new starts here.
   */
  draining: boolean;
  /** A later membership of the same region replaced this one (after a restore): never rejoined again. */
  superseded: boolean;
  /** Left a revoked region: the heartbeat thread watches its header for the restore. */
  restoreWatch: HeartbeatHandle | undefined;
  /** A restore found the region full (warned once). */
  fullWarned: boolean;
}

/** A peer proven (by this rank's probe) to share a region, with this rank's ring to it reserved. */
interface PeerLink {
  readonly rank: number;
  readonly regionIndex: number;
  readonly peer: SlotPeer;
  readonly outRing: RingBlock;
  /** The ring the peer produces to this rank, once found. */
  inRing: RingRef | undefined;
  /** Same process (another world of it): spinning cannot help it progress. */
  readonly sameProcess: boolean;
  /** The pair authenticates its frames (either card asked for the MAC). */
  readonly mac: boolean;
}

/** What `connect()` hands out: the ring channel, or the MAC channel around it. */
type OutboundChannel = RingChannel | MacChannel;

/** One region entry of a card, as parsed. */
interface CardRegion {
  readonly uuid: string;
  readonly slot: number;
  readonly generation: number;
}

/** The most regions a card may list (more is garbage). */
const MAX_CARD_REGIONS = 64;
const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Members of other jobs are judged at most this often (a pass reads every slot and block entry). */
const REGION_WATCH_MS = 1_000;
const NO_DESCRIPTOR = new Uint8Array(0);

/** The ivshmem transport of one world. Build it with `ivshmem(init)(components)`. */
export class IvshmemTransport implements Transport {
  readonly name = 'ivshmem';
  readonly priority = 40;
  readonly role = 'local';
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  unavailableReason: string | undefined = undefined;
  readonly [Symbol.toStringTag] = '@vmcomm/ivshmem';

  private addon: NativeAddon | undefined;
  private readonly attached: Attached[] = [];
  private readonly links = new Map<number, PeerLink>();
  private served = new Set<number>();
  private readonly outbound = new Map<number, OutboundChannel>();
  /** The ring channel under each outbound channel (the MAC channel wraps it): what the sweep checks. */
  private readonly rings = new Map<number, RingChannel>();
  /** The consumer side of each peer's ring to this rank, once found. */
  private readonly inbound = new Map<number, RingConsumer>();
  private readonly lostPeers = new Set<number>();
  private readonly pendingChannels = new PendingChannels<OutboundChannel>();
  /** Whether this rank asks for the per-frame MAC (its option or `VMCOMM_IVSHMEM_MAC`), as its card says. */
  private macWanted = false;
  /** What the poller delivers to: the core's sink, or a `MacSink` around it when some pair authenticates. */
  private sink: FrameSink;
  private discovery: RingDiscovery | undefined;
  private poller: Poller | undefined;
  private policy: WaitingPolicy | undefined;
  private sleeper: BackoffSleeper | undefined;
  /** The addon's waiter thread, for sleeps shorter than a timer's millisecond (a futex wait with a timeout on a private word). */
  private waiter: NativeWaiter | undefined;
  private readonly sleepWord = new SharedArrayBuffer(4);
  private yieldOnEmpty = false;
  /** The peer watch, from its timer or from `poll()` (a `test()` loop that never yields runs no timer). */
  private watches: PollSweep | undefined;
  private starting: Promise<CardFields | undefined> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly components: BackendComponents,
    private readonly options: IvshmemOptions,
  ) {
    this.eagerLimitBytes = options.eagerLimitBytes;
    this.eagerCredits = options.eagerCredits;
    this.sink = components.sink;
  }

  /** The peers whose frames are authenticated both ways (diagnostics, tests). */
  get authenticated(): Set<number> {
    return new Set([...this.links].filter(([, l]) => l.mac).map(([rank]) => rank));
  }

  /** The regions this rank is a member of (diagnostics, tests). */
  get regions(): { path: string; uuid: string; slot: number; generation: number; joined: boolean }[] {
    return this.attached.map((a) => ({ path: a.path, uuid: a.region.uuid, slot: a.member.ref.slot, generation: a.member.ref.generation, joined: a.joined }));
  }

  /** The peers this rank reserved a ring to, and the region index of each (diagnostics, tests). */
  get reserved(): Map<number, number> {
    return new Map([...this.links].map(([rank, l]) => [rank, l.regionIndex]));
  }

  /** The wait loop's state and counters (diagnostics, tests). */
  get waiting(): { state: string; spinBudgetNs: number; yieldOnEmpty: boolean; counts: WaitingPolicy['counts']; backoff: BackoffSleeper['counts'] } | undefined {
    const p = this.policy;
    const s = this.sleeper;
    return p && s && { state: p.state, spinBudgetNs: p.spinBudgetNs, yieldOnEmpty: this.yieldOnEmpty, counts: p.counts, backoff: s.counts };
  }

  /** Finds and joins the regions, starts their heartbeats (see the module comment). */
  start(): Promise<CardFields | undefined> {
    this.starting ??= this.open();
    return this.starting;
  }

  private async open(): Promise<CardFields | undefined> {
    const { size, rank, jobId, processNonce, logger } = this.components;
    if (size < 2) return this.unavailable('a world of one has no peer to reach');
    const addon = this.loadAddon();
    if (typeof addon === 'string') return this.unavailable(addon);
    const sources = regionPaths(this.options.regions, process.env);
    if (sources.paths.length === 0) {
      return this.unavailable(`no ivshmem region: ${IVSHMEM_ENV} names none and there is no PCI device 1af4:1110 under ${PCI_DEVICES_DIRECTORY}`);
    }
    const { attached, problems } = attachRegions(sources.paths, { job: jobKey(jobId), nonce: nonceKey(processNonce), rank }, addon);
    for (const p of problems) logger?.debug(`vmcomm:ivshmem: skipped ${p}`);
    if (attached.length === 0) return this.unavailable(`no usable ivshmem region (${problems.join('; ')})`);
    this.activate(addon);
    for (const a of attached) this.adopt(a.path, a.region, a.member);
    return this.cardFields();
  }

  /** The addon, or why it cannot be used. */
  private loadAddon(): NativeAddon | string {
    const loaded = tryLoadNative();
    if (loaded.addon === undefined) return loaded.reason ?? 'the native addon did not load';
    if (!loaded.addon.capability.mmap) return 'the native addon cannot map files here';
    return loaded.addon;
  }

  /** The transport runs from here on (at start-up, or at the first attached region of a rank that had none). */
  private activate(addon: NativeAddon): void {
    this.addon = addon;
    this.unavailableReason = undefined;
    goneAtExit(this);
    const checkMs = Math.min(1_000, Math.max(this.options.heartbeatMs, this.options.peerTimeoutMs / 20));
    this.watches = new PollSweep(() => this.watchPeers(), checkMs).start();
    this.macWanted = this.options.mac || macFromEnv(process.env);
  }

  /** Starts using a membership: heartbeat, peer watch, and (once reading) ring discovery. */
  private adopt(path: string, region: IvshmemRegion, member: RegionMember): Attached {
    const now = () => performance.now();
    const entry: Attached = {
      path,
      region,
      member,
      heartbeat: undefined,
      watch: region.watch({ timeoutMs: this.options.reclaimTimeoutMs, self: member.ref }),
      liveness: new PeerLiveness(region.members, region.rings, { timeoutMs: this.options.peerTimeoutMs, now }),
      lastWatch: now(),
      joined: true,
      why: '',
      draining: false,
      superseded: false,
      restoreWatch: undefined,
      fullWarned: false,
    };
    entry.heartbeat = startHeartbeat(heartbeatTarget(member), this.options.heartbeatMs, (event) => {
      entry.heartbeat = undefined;
      this.regionBroken(entry, event);
    });
    this.attached.push(entry);
    this.discovery?.addRegion(member);
    member.beat(); // moving from the start (the heartbeat thread may take a while)
    return entry;
  }

  /** The card fields of the memberships that can take new pairs (see {@link open}). */
  private cardFields(): CardFields | undefined {
    const usable = this.attached.filter((a) => a.joined && !a.draining);
    if (usable.length === 0) return undefined;
    return {
      regions: usable.map((a): CardValue => ({ uuid: a.region.uuid, slot: a.member.ref.slot, generation: a.member.ref.generation })),
      // Only when asked: the cards of ranks without the MAC stay as they were.
      ...(this.macWanted ? { mac: true } : {}),
    };
  }

  /** Migration: the card fields this rank would publish now; `undefined` while no region can take pairs. */
  card(): CardFields | undefined {
    if (this.stopping !== undefined || this.addon === undefined) return undefined;
    return this.cardFields();
  }

  private unavailable(reason: string): undefined {
    this.unavailableReason = reason;
    return undefined;
  }

  /**
   * True when the pair's region — the first, in UUID order, that both cards list — holds `peer`:
   * ACTIVE, at the slot its card names, with its job id, process nonce and rank; and this rank could
   * reserve its ring to the peer there (DESIGN section 4; see the module comment of `index.ts`).
   */
  probe(peer: LocalityCard): boolean {
    const { rank, jobId, logger } = this.components;
    if (this.attached.length === 0 || this.stopping !== undefined || peer.rank === rank) return false;
    if (this.links.has(peer.rank)) return true;
    const fields = peer.backends?.[this.name];
    const listed = parseCardRegions(fields);
    if (listed === undefined || typeof peer.processNonce !== 'string') return false;
    // The pair's region: the first, in UUID order, that both cards list — the same at both ends, so
    // both rings of a pair are in one region. (Full there: tcp, even if another common region has room.)
    // (Memberships this rank left or is draining take no new pair: a restored region was joined afresh.)
    let r = -1;
    for (let i = 0; i < this.attached.length; i++) {
      const c = this.attached[i];
      if (!c.joined || c.draining) continue;
      const uuid = c.region.uuid;
      if (listed.some((e) => e.uuid === uuid) && (r < 0 || uuid < this.attached[r].region.uuid)) r = i;
    }
    if (r < 0) return false;
    const a = this.attached[r];
    const entry = listed.find((e) => e.uuid === a.region.uuid)!;
    if (!a.joined || entry.slot >= a.region.layout.slots) return false;
    const ref: MemberRef = { slot: entry.slot, generation: entry.generation };
    try {
      a.region.validate();
      const m = a.region.members.member(ref);
      if (m === undefined || m.rank !== peer.rank || !sameId(m.job, jobKey(jobId)) || !sameId(m.nonce, nonceKey(peer.processNonce))) return false;
      const mac = this.macWanted || (fields as { mac?: unknown }).mac === true;
      // After start-up (migration) a pair that needs the MAC is only taken when frames are already
      // verified here: the reader's sink is chosen once, when reading starts.
      if (this.poller !== undefined && mac && !(this.sink instanceof MacSink)) return false;
      const got = a.region.rings.tryAllocate(a.member.ref, ref);
      if (got.ring === undefined) {
        logger?.debug(`vmcomm:ivshmem: no ring to rank ${peer.rank} in region ${a.region.uuid} (${got.refused}): the pair uses another transport`);
        return false;
      }
      this.links.set(peer.rank, {
        rank: peer.rank,
        regionIndex: r,
        peer: new SlotPeer(a.region.members, ref),
        outRing: got.ring,
        inRing: undefined,
        sameProcess: peer.processNonce === this.components.processNonce,
        // Either card asking is enough: each end reads both cards, so both ends always agree.
        mac,
      });
      return true;
    } catch (error) {
      logger?.debug(`vmcomm:ivshmem: probing rank ${peer.rank} in region ${a.region.uuid} failed: ${(error as Error).message}`);
      return false;
    }
  }

  /**
   * Keeps the reservations of the pairs that use ivshmem, releases the others (its own, and its side
   * of those peers made to it), leaves regions no pair uses — all of them when `peers` is empty — and
   * starts reading.
   */
  addPeers(peers: readonly number[]): void {
    this.served = new Set(peers);
    for (const [peer, link] of this.links) {
      if (this.served.has(peer)) continue;
      this.links.delete(peer);
      const a = this.attached[link.regionIndex];
      if (a.joined) a.member.releaseRing(link.outRing);
    }
    // Peers whose pair went elsewhere reserved rings to this rank too: every reservation was made
    // before the reachability exchange, so they are all in the tables now. Let go of our side.
    // Served peers' rings to this rank are known from here on: the peer watch tells a peer that
    // finalized (it released that ring) from one that ended (it did not) even before they are read.
    const inRings = new Map<number, RingRef>();
    for (let r = 0; r < this.attached.length; r++) {
      const a = this.attached[r];
      if (!a.joined) continue;
      for (const ring of a.member.ringsToMe()) {
        const link = [...this.links.values()].find((l) => l.regionIndex === r && sameRef(l.peer.ref, ring.producer));
        if (link === undefined) a.member.releaseRing(ring);
        else if (!inRings.has(link.rank)) inRings.set(link.rank, { index: ring.index, generation: ring.generation });
      }
    }
    if (this.stopping !== undefined) return;
    const used = new Set([...this.links.values()].map((l) => l.regionIndex));
    for (let r = 0; r < this.attached.length; r++) if (!used.has(r)) this.leave(this.attached[r]);
    if (this.links.size === 0) return;
    this.startReading();
    for (const [peer, link] of this.links) {
      this.expectRing(peer, link);
      const inRing = inRings.get(peer);
      if (inRing !== undefined) this.attached[link.regionIndex].liveness.setInbound(peer, inRing);
    }
    // A region this rank had to let go of between probe() and now (revoked, reclaimed, overwritten):
    // its pairs were chosen but cannot work. Reported once the core has its plan (after addPeers).
    for (const [peer, link] of this.links) {
      const a = this.attached[link.regionIndex];
      if (a.joined) continue;
      const error = new VmcommError('PEER_LOST', `rank ${peer} is unreachable: this rank lost its membership of ivshmem region ${a.region.uuid} before the pair started (${a.why})`, { peer });
      setImmediate(() => this.peerGone(peer, error, false));
    }
  }

  /** Reading starts: `peer`'s ring is expected, and its slot watched. */
  private expectRing(peer: number, link: PeerLink): void {
    this.discovery!.expect(peer, link.regionIndex, link.peer.ref);
    this.attached[link.regionIndex].liveness.watch(peer, link.peer.ref);
    if (link.mac && this.sink instanceof MacSink) {
      const { jobSecret, jobId, rank } = this.components;
      this.sink.authenticate(peer, deriveMacKey(jobSecret, jobId, peer, rank, this.attached[link.regionIndex].region.uuid));
    }
  }

  /**
   * Starts the ring discovery, the poller and the wait loop (once: at `addPeers` when some pair
   * chose ivshmem, else when migration admits the first peer).
   */
  private startReading(): void {
    if (this.poller !== undefined) return;
    const addon = this.addon!;
    this.discovery = new RingDiscovery(this.attached.map((a) => a.member));
    const { jobSecret } = this.components;
    if ([...this.links.values()].some((l) => l.mac)) {
      if (jobSecret.byteLength < 16) {
        this.components.logger?.warn(`vmcomm:ivshmem: the per-frame MAC is only as strong as the job secret, and this job's is ${jobSecret.byteLength} bytes`);
      }
      this.sink = new MacSink(this.components.sink);
    }
    this.poller = new Poller(
      this.discovery,
      this.sink,
      {
        attach: (from, descriptor) => this.attach(from, descriptor),
        wakeProducer: () => undefined, // the producer polls
        lost: (peer, error) => this.lost(peer, error),
        inboxBroken: (error) => this.components.logger?.warn(`vmcomm:ivshmem: ring discovery failed: ${error.message}`),
      },
      { framesPerPoll: this.options.pollFramesPerCall },
    );
    if (addon.capability.futex) {
      this.waiter = addon.createWaiter();
      // The world holds the process open until finalize; a sleeping rank must not hold it longer.
      this.waiter.ref(false);
    }
    const mode = this.options.waitMode;
    this.yieldOnEmpty = mode === 'yield' || (mode === 'auto' && this.links.size + 1 > hostCores());
    const sameProcess = [...this.links.values()].some((l) => l.sameProcess);
    const now = () => performance.now();
    this.sleeper = new BackoffSleeper({
      yieldMs: this.options.yieldMs,
      minSleepMs: this.options.minSleepMs,
      maxSleepMs: this.options.maxSleepMs,
      idleSleepMs: this.options.idleSleepMs,
      now,
      defer: setImmediate,
      after: (fn, ms) => this.sleepFor(fn, ms),
      ...(this.yieldOnEmpty ? { yieldCpu: () => addon.schedYield() } : {}),
    });
    this.policy = new WaitingPolicy(() => this.progress(), this.sleeper, {
      spinBudgetNs: this.options.spinBudgetNs,
      minSpinNs: this.options.minSpinNs,
      maxSpinNs: this.options.maxSpinNs,
      // A peer in this very process (another world of it) may share this thread: it progresses only when we return.
      yieldBetweenPolls: sameProcess,
      defer: setImmediate,
      now,
    });
    this.policy.start();
  }

  /** Migration: serve `peer`, which a probe after start-up proved (its ring to us is expected from now). */
  admit(peer: number): void {
    const link = this.links.get(peer);
    if (link === undefined || this.stopping !== undefined || this.served.has(peer)) return;
    this.served.add(peer);
    this.lostPeers.delete(peer);
    this.startReading();
    this.expectRing(peer, link);
  }

  /**
   * Migration: the pair left ivshmem both ways (or a negotiation that reserved a ring failed). Our
   * channel closes after what it holds (its last frame is the switch marker, which the peer has read),
   * the peer's ring is no longer read, both rings are released; a draining membership with no pair
   * left is given up.
   */
  async release(peer: number, lost?: Error): Promise<void> {
    const link = this.links.get(peer);
    if (link === undefined) return;
    const out = this.outbound.get(peer);
    if (out !== undefined && lost !== undefined) out.fail(lost);
    else if (out !== undefined) await out.close();
    if (this.links.get(peer) !== link) return; // lost or stopped meanwhile
    this.outbound.delete(peer);
    this.rings.delete(peer);
    this.links.delete(peer);
    this.served.delete(peer);
    this.poller?.detach(peer, true);
    this.inbound.delete(peer);
    this.discovery?.drop(peer);
    if (this.sink instanceof MacSink) this.sink.forget(peer);
    const a = this.attached[link.regionIndex];
    a.liveness.forget(peer);
    if (a.joined) {
      a.member.releaseRing(link.outRing);
      if (link.inRing !== undefined) a.member.releaseRing(link.inRing);
    }
    this.components.logger?.debug(`vmcomm:ivshmem: released the pair with rank ${peer} in region ${a.region.uuid}`);
    if (a.draining && ![...this.links.values()].some((l) => l.regionIndex === link.regionIndex)) this.leave(a);
  }

  /**
   * The channel to `peer`: on the first call, the ring layer's `RingChannel` over the ring reserved
   * in `probe()`. Rejects with `INVALID_ARGUMENT` for a rank ivshmem does not serve, `PEER_LOST` for
   * a lost one, `FINALIZED` after `stop()`, `CORRUPT` when the ring fails validation.
   */
  async connect(peer: number): Promise<Channel> {
    return this.openNow(peer);
  }

  /** {@link connect} at once: opening needs no round trip with the peer (see `Transport.openNow`). */
  openNow(peer: number): Channel {
    const existing = this.outbound.get(peer);
    if (existing !== undefined) return existing;
    if (this.stopping !== undefined) throw new VmcommError('FINALIZED', 'the ivshmem transport has stopped; no new channels can be opened');
    const { rank, size } = this.components;
    if (!Number.isInteger(peer) || peer < 0 || peer >= size || peer === rank) throw invalidArgument('the ivshmem peer', `a rank in 0…${size - 1} other than ${rank}`, peer);
    const link = this.links.get(peer);
    if (!this.served.has(peer) || link === undefined) {
      throw new VmcommError('INVALID_ARGUMENT', `rank ${peer} is not served by ivshmem here (probe() must accept its card and addPeers() list it)`);
    }
    if (this.lostPeers.has(peer)) throw new VmcommError('PEER_LOST', `rank ${peer} was lost; no ivshmem channel to it can be opened`, { peer });
    let ring: RingChannel;
    // The MAC channel around the ring channel, when the pair authenticates: it is what needs flushing
    // (it tags more records as the ring drains), and it fails with the ring.
    let mac: MacChannel | undefined;
    try {
      ring = new RingChannel({
        peer,
        self: rank,
        ring: link.outRing.region,
        descriptor: NO_DESCRIPTOR,
        peerInbox: link.peer,
        wake: () => undefined, // nothing can wake a peer in another VM: it polls
        needsFlush: (c) => this.pendingChannels.add(mac ?? c),
        lost: (p, error) => {
          mac?.fail(error);
          this.lost(p, error);
        },
      });
    } catch (error) {
      this.lost(peer, error as Error);
      throw error;
    }
    if (link.mac) {
      const a = this.attached[link.regionIndex];
      // Pieces of a quarter ring: the ring holds a few while the next is tagged.
      const dataBytes = ringDataBytes(link.outRing.region.byteLength);
      mac = new MacChannel(ring, {
        peer,
        key: deriveMacKey(this.components.jobSecret, this.components.jobId, rank, peer, a.region.uuid),
        bodyBytes: Math.min(MAC_MAX_BODY_BYTES, Math.max(1024, dataBytes >> 2)),
        needsFlush: (c) => this.pendingChannels.add(c),
      });
    }
    const channel: OutboundChannel = mac ?? ring;
    this.outbound.set(peer, channel);
    this.rings.set(peer, ring);
    return channel;
  }

  /**
   * Calls `fn` after `ms` (fractions allowed). The addon's waiter thread sleeps with microsecond
   * precision (a futex wait, with a timeout, on a word of this process that nobody changes: no other
   * VM could wake it anyway); without it, a timer (whole milliseconds).
   */
  private sleepFor(fn: () => void, ms: number): void {
    const waiter = this.waiter;
    if (waiter !== undefined) {
      try {
        // 'failed' cannot be on this private word, but if it were, its timer still runs: a timer then.
        waiter.wait(this.sleepWord, 0, 0, ms, (result) => (result === 'failed' ? setTimeout(fn, ms).unref() : fn()));
        return;
      } catch {
        // Closed (stopping) or busy: a timer instead.
      }
    }
    setTimeout(fn, ms).unref();
  }

  /** Makes progress without the event loop; returns the frames delivered. */
  poll(): number {
    const poller = this.poller;
    if (poller === undefined) return 0;
    const frames = poller.poll();
    let moved = poller.moved;
    if (this.pendingChannels.size > 0 && this.pendingChannels.flushAll() > 0) moved = true;
    if (frames > 0 || moved) {
      this.sleeper!.reset();
      if (this.policy!.state === 'sleeping') this.policy!.wakeUp();
    }
    this.watches?.poll();
    return frames;
  }

  /** One look at everything, for the wait loop ({@link Progress}). */
  private progress(): number {
    const poller = this.poller;
    if (poller === undefined) return Progress.NONE;
    let delivered = poller.poll();
    let moved = poller.moved;
    if (this.pendingChannels.size > 0) {
      if (this.pendingChannels.flushAll() > 0) moved = true;
      delivered += this.pendingChannels.completed;
    }
    if (delivered > 0 || moved) {
      this.sleeper!.reset();
      return delivered > 0 ? delivered : Progress.MOVED;
    }
    if (this.yieldOnEmpty) this.addon!.schedYield();
    return Progress.NONE;
  }

  /**
   * The core gave up `peer`'s frame in progress (see `Transport.abandonFrame`): its ring is read no
   * more. (After a first report nothing of the peer is polled: {@link lost} detached its ring and
   * stopped finding new ones.)
   */
  abandonFrame(peer: number, error: Error): void {
    this.lost(peer, error);
  }

  /** Stops reading and writing, and leaves every region (slot and rings freed). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await this.starting?.catch(() => undefined);
    forgetAtExit(this);
    this.watches?.stop();
    this.watches = undefined;
    this.policy?.stop();
    this.waiter?.close();
    const stopped = new VmcommError('FINALIZED', 'the ivshmem transport stopped before this frame was sent');
    for (const c of this.outbound.values()) if (c.pending) c.fail(stopped);
    this.pendingChannels.clear();
    // Tells the producers that nothing more is read (a ring in a region that is no longer ours was
    // detached already, without a write).
    this.poller?.detachAll();
    for (const a of this.attached) {
      a.restoreWatch?.stop();
      this.leave(a);
    }
  }

  /** This process ends without stop(): free the slots (not the rings: peers then know it did not finalize). */
  gone(): void {
    for (const a of this.attached) {
      a.heartbeat?.stop();
      a.heartbeat = undefined;
      if (!a.joined) continue;
      a.joined = false;
      a.why = 'the process is exiting';
      const { slot, generation } = a.member.ref;
      try {
        a.region.members.reclaim(slot, packControl(SlotState.ACTIVE, generation));
      } catch {
        // Exiting anyway.
      }
    }
  }

  /** Stops the heartbeat and leaves the region (slot and rings freed), unless already out of it. */
  private leave(a: Attached): void {
    a.heartbeat?.stop();
    a.heartbeat = undefined;
    if (!a.joined) return;
    a.joined = false;
    a.why ||= 'it left the region';
    try {
      a.member.finalize();
    } catch (error) {
      this.components.logger?.warn(`vmcomm:ivshmem: leaving region ${a.region.uuid} failed: ${(error as Error).message}`);
    }
  }

  /** The consumer side of the ring `from` produces to this rank, found by the discovery. */
  private attach(from: number, descriptor: Uint8Array): RingConsumer {
    const link = this.links.get(from);
    const found = decodeDiscovery(descriptor);
    if (link === undefined || !this.served.has(from) || found === undefined || found.regionIndex !== link.regionIndex) {
      throw new VmcommError('CORRUPT', `a ring from rank ${from} was found, but it is not a proven ivshmem peer`);
    }
    const a = this.attached[found.regionIndex];
    const info = a.region.rings.read(found.index);
    const ring = info.ring;
    if (
      ring === undefined ||
      ring.generation !== found.generation ||
      ring.state === 'consumer-done' ||
      !sameRef(ring.producer, link.peer.ref) ||
      !sameRef(ring.consumer, a.member.ref)
    ) {
      throw new VmcommError('PEER_LOST', `rank ${from}'s ring to this rank (block ${found.index}) is gone from region ${a.region.uuid}`, { peer: from });
    }
    // Validates the ring's own header against the block (CORRUPT otherwise).
    const consumer = new RingConsumer(ring.region);
    this.inbound.set(from, consumer);
    link.inRing = { index: ring.index, generation: ring.generation };
    a.liveness.setInbound(from, link.inRing);
    return consumer;
  }

  /** Looks at the watched peers' slots; judges other jobs' members now and then; rejoins restored regions. */
  private watchPeers(): void {
    if (this.stopping !== undefined) return;
    const t = performance.now();
    this.rejoinRestored();
    for (const ring of this.rings.values()) ring.sweepReader();
    for (const a of this.attached) {
      if (!a.joined) continue;
      let beat: ReturnType<RegionMember['beat']>;
      try {
        // Beats from here too (see heartbeat.ts), checking the header and this rank's slot.
        beat = a.member.beat();
      } catch {
        // Re-formatted or overwritten: judge nothing by tables that are no longer ours.
        this.regionBroken(a, 'corrupt');
        continue;
      }
      // A draining membership keeps beating (its peers still read the rings) though the region is revoked.
      if (beat !== 'ok' && !(beat === 'revoked' && a.draining)) {
        this.regionBroken(a, beat);
        continue;
      }
      try {
        for (const v of a.liveness.check()) this.verdict(a, v);
        if (t - a.lastWatch >= REGION_WATCH_MS) {
          a.lastWatch = t;
          a.watch.observe();
        }
      } catch (error) {
        this.components.logger?.warn(`vmcomm:ivshmem: watching region ${a.region.uuid} failed: ${(error as Error).message}`);
      }
    }
  }

  /**
   * A region this rank left or is draining because it was revoked, and that is no longer revoked
   * (`vmcomm ivshmem restore`): join it again, as a new member, and tell the core, which moves pairs
   * back once both ends prove the new memberships.
   */
  private rejoinRestored(): void {
    if (this.components.paths === undefined) return;
    for (const a of [...this.attached]) {
      const reclaimed = a.why === 'its slot was reclaimed';
      if (a.superseded || (a.why !== 'the region was revoked' && !reclaimed)) continue;
      let status;
      try {
        a.region.validate();
        status = a.region.status();
      } catch {
        a.superseded = true; // re-formatted: not the region this rank knew
        continue;
      }
      if (status.revoked || (!reclaimed && status.generation === a.member.ref.regionGeneration)) continue;
      // One live membership per region: another one for the same region (joined since) wins.
      if (this.attached.some((b) => b !== a && !b.superseded && b.joined && !b.draining && b.region.uuid === a.region.uuid)) {
        a.superseded = true; // attached again meanwhile (`vmcomm ivshmem attach`)
        continue;
      }
      const { rank, jobId, processNonce } = this.components;
      let member: RegionMember | undefined;
      try {
        member = a.region.join({ job: jobKey(jobId), nonce: nonceKey(processNonce), rank });
      } catch (error) {
        a.superseded = true;
        this.components.logger?.warn(`vmcomm:ivshmem: rejoining restored region ${a.region.uuid} failed: ${(error as Error).message}`);
        continue;
      }
      if (member === undefined) {
        // Full: tried again on the next peer watch (said once).
        if (!a.fullWarned) this.components.logger?.warn(`vmcomm:ivshmem: region ${a.region.uuid} was restored but has no free slot; pairs stay where they are until one frees`);
        a.fullWarned = true;
        continue;
      }
      a.superseded = true;
      a.restoreWatch?.stop();
      a.restoreWatch = undefined;
      this.adopt(a.path, a.region, member);
      this.components.paths.available(`ivshmem region ${a.region.uuid} was ${reclaimed ? 'joined again after this rank lost its slot' : 'restored'}`);
    }
  }

  /**
   * `vmcomm ivshmem attach PATH` (through the job's rendezvous): joins the region in `resource` if it
   * is new to this rank, and tells the core. Resolves to why not, when it was not taken.
   */
  async attachResource(resource: string): Promise<string | undefined> {
    if (this.stopping !== undefined) return 'the ivshmem transport has stopped';
    await this.starting?.catch(() => undefined);
    const { rank, size, jobId, processNonce } = this.components;
    if (size < 2) return 'a world of one has no peer to reach';
    // A rank that started without any region (the transport was unavailable) starts with this one.
    const addon = this.addon ?? this.loadAddon();
    if (typeof addon === 'string') return addon;
    if (this.stopping !== undefined) return 'the ivshmem transport has stopped';
    const { attached, problems } = attachRegions([resource], { job: jobKey(jobId), nonce: nonceKey(processNonce), rank }, addon);
    const fresh = attached.filter((x) => {
      if (!this.attached.some((b) => b.joined && b.region.uuid === x.region.uuid)) return true;
      x.member.finalize(); // already a member of that region
      problems.push(`${resource}: region ${x.region.uuid} is attached already`);
      return false;
    });
    if (fresh.length === 0) return problems.join('; ') || `${resource}: nothing to attach`;
    if (this.addon === undefined) this.activate(addon);
    for (const x of fresh) this.adopt(x.path, x.region, x.member);
    this.components.paths?.available(`ivshmem region ${fresh.map((x) => x.region.uuid).join(', ')} was attached`);
    return undefined;
  }

  private verdict(a: Attached, v: PeerVerdict): void {
    if (v.kind === 'left') return;
    const link = this.links.get(v.peer);
    const paths = this.components.paths;
    if (paths !== undefined && link !== undefined && this.served.has(v.peer) && !this.lostPeers.has(v.peer)) {
      // The peer may still answer over the network (a VM paused for a migration, a slot reclaimed by
      // a too-eager observer): the core moves the pair there; the rings keep working for the drain
      // should the peer come back to read them. A dead peer fails on the network too (PEER_LOST), and
      // its slot is reclaimed by the region watch in time.
      a.liveness.forget(v.peer);
      paths.leave(
        [v.peer],
        v.kind === 'stalled'
          ? `the heartbeat of rank ${v.peer} in ivshmem region ${a.region.uuid} has not moved for ${Math.round(v.stalledMs)} ms`
          : `the slot of rank ${v.peer} in ivshmem region ${a.region.uuid} was freed while its ring to this rank was live`,
      );
      return;
    }
    if (v.kind === 'stalled' && link !== undefined) a.region.members.reclaim(link.peer.ref.slot, v.control | 0);
    const why =
      v.kind === 'stalled'
        ? `its heartbeat in ivshmem region ${a.region.uuid} has not moved for ${Math.round(v.stalledMs)} ms (its process or VM is gone or frozen); its slot was reclaimed`
        : `it ended without finalizing (its slot in ivshmem region ${a.region.uuid} was freed while its ring to this rank was live)`;
    this.peerGone(v.peer, new VmcommError('PEER_LOST', `rank ${v.peer} was lost: ${why}`, { peer: v.peer }), true);
  }

  /**
   * `peer` is gone: fail its channel, stop reading it, report it, and (when the region is still
   * this rank's to write) release this rank's rings with it.
   */
  private peerGone(peer: number, error: Error, release: boolean): void {
    const link = this.links.get(peer);
    if (link !== undefined) link.peer.gone = true;
    // Reported first, so that the channel's own report (through `lost`) finds it done.
    this.lost(peer, error, release);
    this.outbound.get(peer)?.fail(error);
    if (link === undefined || !release) return;
    const a = this.attached[link.regionIndex];
    if (!a.joined) return;
    a.member.releaseRing(link.outRing);
    if (link.inRing !== undefined) a.member.releaseRing(link.inRing);
  }

  /** Reports `peer` lost once; `touchRing` false: detach its ring without writing to it. */
  private lost(peer: number, error: Error, touchRing = true): void {
    if (this.lostPeers.has(peer)) return;
    this.lostPeers.add(peer);
    this.components.logger?.debug(`vmcomm:ivshmem: lost rank ${peer}: ${error.message}`);
    this.poller?.detach(peer, touchRing);
    // Also when the poller dropped the ring itself (it failed validation): a producer blocked on it
    // learns that nothing more is read, instead of waiting for its own verdict on this rank.
    if (touchRing) this.inbound.get(peer)?.close(this.stopping === undefined); // given up while running: see shm's lost()
    this.discovery?.drop(peer);
    for (const a of this.attached) a.liveness.forget(peer);
    try {
      this.components.sink.lost(peer, error);
    } catch (err) {
      this.components.logger?.warn(`vmcomm:ivshmem: sink.lost(${peer}) threw: ${(err as Error).message}`);
    }
  }

  /** The heartbeat thread (or the peer watch) found this rank's membership of `a` broken. */
  private regionBroken(a: Attached, event: HeartbeatEvent): void {
    a.heartbeat?.stop();
    a.heartbeat = undefined;
    if (this.stopping !== undefined || !a.joined) return;
    if (event === 'lost') {
      try {
        a.region.validate();
      } catch {
        event = 'corrupt'; // being re-formatted (its tables zeroed), not a reclaim
      }
    }
    const uuid = a.region.uuid;
    const index = this.attached.indexOf(a);
    const peers = [...this.links.values()].filter((l) => l.regionIndex === index && this.served.has(l.rank)).map((l) => l.rank);
    // Reserved in a negotiation (probed, not admitted yet): the core finishes or gives it up, then leaves too.
    const reserved = [...this.links.values()].filter((l) => l.regionIndex === index && !this.served.has(l.rank)).map((l) => l.rank);
    if (event === 'revoked' && a.draining) return;
    if (event === 'revoked' && this.components.paths !== undefined) {
      // An administrator revoked (or restored) the region, as before a migration: the core moves its
      // pairs elsewhere while the rings still work, and releases each once both directions left it;
      // the last release leaves the region. A restored region is joined afresh (see watchPeers).
      a.draining = true;
      a.why = 'the region was revoked';
      // The restore is noticed off the main thread too (the peer watch looks as well, as a fallback).
      a.restoreWatch = startHeartbeat(heartbeatTarget(a.member), this.options.heartbeatMs, (e) => {
        a.restoreWatch = undefined;
        if (e === 'restored') this.rejoinRestored();
      }, { watchOnly: true });
      if (peers.length + reserved.length === 0) this.leave(a);
      else this.components.paths.leave([...peers, ...reserved], `ivshmem region ${uuid} was revoked or restored by its administrator`);
      return;
    }
    if (event === 'revoked') {
      // No core to move the pairs (a transport used on its own): leave the region cleanly; its pairs are lost.
      const error = (peer: number) =>
        new VmcommError('PEER_LOST', `rank ${peer} is unreachable: ivshmem region ${uuid} was revoked or restored by its administrator and this rank left it; moving a running pair to tcp needs migration`, { peer });
      for (const p of peers) this.peerGone(p, error(p), true);
      a.why = 'the region was revoked';
      this.leave(a);
      return;
    }
    if (event === 'lost' && this.components.paths !== undefined) {
      // Another member took this rank for dead and reclaimed its slot, yet it lives: the rings it
      // shares stay allocated while its peers hold them, so its pairs drain and move, as for a
      // revocation, and the region is joined again with a new slot (rejoinRestored).
      a.joined = false;
      a.draining = true;
      a.why = 'its slot was reclaimed';
      this.components.paths.leave([...peers, ...reserved], `this rank's membership of ivshmem region ${uuid} was reclaimed by another member`);
      return;
    }
    // Our slot was reclaimed, or the region was re-formatted under us: nothing there is ours to write.
    a.joined = false;
    a.why = event === 'lost' ? 'its slot was reclaimed' : 'the region was re-formatted or overwritten';
    for (const p of peers) {
      const error =
        event === 'lost'
          ? new VmcommError('PEER_LOST', `rank ${p} is unreachable: this rank's membership of ivshmem region ${uuid} was reclaimed (it looked dead to another member: stalled longer than its timeout)`, { peer: p })
          : corrupt(`ivshmem region ${uuid} was re-formatted or overwritten while in use`);
      this.peerGone(p, error, false);
    }
  }
}

/** Parses the ivshmem fields of a peer's card; `undefined` for anything malformed. */
function parseCardRegions(fields: unknown): CardRegion[] | undefined {
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) return undefined;
  const regions = (fields as { regions?: unknown }).regions;
  if (!Array.isArray(regions) || regions.length > MAX_CARD_REGIONS) return undefined;
  const out: CardRegion[] = [];
  for (const r of regions) {
    if (r === null || typeof r !== 'object') return undefined;
    const { uuid, slot, generation } = r as Record<string, unknown>;
    if (typeof uuid !== 'string' || !UUID_TEXT.test(uuid)) return undefined;
    if (!Number.isSafeInteger(slot) || (slot as number) < 0 || !Number.isSafeInteger(generation) || (generation as number) < 0 || (generation as number) > GENERATION_MASK) return undefined;
    out.push({ uuid, slot: slot as number, generation: generation as number });
  }
  return out;
}

function sameRef(a: MemberRef, b: MemberRef): boolean {
  return a.slot === b.slot && a.generation === b.generation;
}
