/**
 * Transparent migration (Huang et al.'s IVC): a pair moves off a transport that can no longer carry
 * it — an ivshmem region revoked before its VMs migrate, a membership reclaimed — and back onto a
 * faster one once both ends prove it again (a region restored or newly attached), while the program
 * keeps sending and receiving.
 *
 * **Moving down** (a transport calls `paths.leave(peers)`): the pair's outbound frames go to the best
 * other transport both ends proved at start-up; a `SWITCH` marker closes the old epoch
 * ({@link Endpoint.switchTo}). The peer sees the same trigger and does the same; and a rank whose peer
 * left the transport its own frames use follows it at once — so the two ends agree, as at start-up.
 *
 * **Moving up** (a transport calls `paths.available()`): the lower rank of the pair leads (the higher
 * one nudges it): OFFER (its card fields now) → the higher rank probes them, reserves its side,
 * ACCEPT (its fields) → the lower rank probes, moves, CONFIRM → the higher rank moves. Both proved
 * the other's fields before either moved; any failure is a REJECT and both undo what they reserved.
 *
 * **Order**: each rank delivers a peer's frames epoch by epoch (`ordered-inbound.ts`), so the switch
 * changes nothing a program can see — non-overtaking holds, `ANY_SOURCE` included, and rendezvous
 * transfers in flight complete (their RTS, CTS and DATA may each travel a different path).
 *
 * **Release**: once neither direction of a pair uses a transport any more (our marker went out, the
 * peer's marker came in, nothing of it is held), the transport's `release(peer)` frees what the pair
 * held there (an ivshmem ring), so the region can be left and later joined afresh.
 *
 * The pair's protocol settings (eager limit, credits) stay those chosen at start-up.
 *
 * @module
 */

import type { CardFields, Channel, FrameSink, LocalityCard, Logger, PathEvents, Transport } from '../backend.js';
import type { Engine } from '../engine.js';
import { VmcommError } from '../errors.js';
import { bitmapHas, type Reachability } from '../locality.js';
import { OrderedInbound, type InboundHooks } from './ordered-inbound.js';
import { encodePath, PathStep, type PathFrame } from './path-frames.js';

/** One pair's migration state. */
interface Pair {
  /** Transports both ends proved (start-up bitmaps, or a negotiation), minus those that asked the pair to leave. */
  readonly usable: Set<Transport>;
  /** Every transport both ends ever proved: the only ones a peer's switch marker may name. */
  readonly proven: Set<Transport>;
  /** Transports holding something of the pair (channel, ring, reservation) not released yet. */
  readonly inUse: Set<Transport>;
  /** A negotiation under way (at most one per pair). */
  negotiation: { readonly transport: Transport; readonly role: 'offered' | 'accepted' } | undefined;
  /** Releases under way. */
  readonly releasing: Set<Transport>;
  /** Transports the pair was asked to leave, and when (for the drain watchdog), until the peer's frames left them too. */
  readonly leaving: Map<Transport, { readonly since: number; readonly reason: string }>;
  /** Per transport the pair left: the channel that carries its marker, until the transport released it. */
  readonly retired: Map<Transport, Channel>;
  /** A transport that reported leaving while a negotiation about it was under way (applied once it ends). */
  leftDuringNegotiation: string | undefined;
}

/**
 * How long the peer's frames may keep coming through a transport the pair left before the pair is
 * declared lost: its switch marker never came, so what it sent there can no longer be read (the
 * peer lost the region, or froze for good). Generous: a VM paused for migration may take a while.
 */
export const DRAIN_TIMEOUT_MS = 60_000;

/** What the world tells the migration once the pairs are chosen. */
export interface MigrationStart {
  readonly transports: readonly Transport[];
  readonly cards: readonly LocalityCard[];
  readonly reach: readonly Reachability[];
  /** Per peer: the transport chosen at start-up. */
  readonly chosen: readonly Transport[];
}

/** The migration of one world. */
export class PairMigration implements InboundHooks {
  readonly inbound: OrderedInbound;
  private pairs: Pair[] = [];
  private transports: readonly Transport[] = [];
  private cards: readonly LocalityCard[] = [];
  private started = false;
  private closing = false;
  /** Events that came before {@link start}: replayed then. */
  private early: (() => void)[] = [];
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly rank: number,
    private readonly size: number,
    private readonly onSwitch: (peer: number, from: string, to: string) => void,
    private readonly logger?: Logger,
  ) {
    this.inbound = new OrderedInbound(engine, size, this);
  }

  /** The sink a transport delivers to (`transport` is read on each call: the sink exists before it). */
  sinkFor(transport: () => Transport): FrameSink {
    return this.inbound.sinkFor(transport);
  }

  /** The path events a transport reports to. */
  eventsFor(transport: () => Transport): PathEvents {
    return {
      leave: (peers, reason) => this.whenStarted(() => this.leave(transport(), peers, reason)),
      // Later, not now: a transport may report it from inside the call that makes it usable (an
      // attach), before the world counts it among its running transports.
      available: (reason) => void setImmediate(() => this.whenStarted(() => this.available(transport(), reason))),
    };
  }

  /** The pairs are chosen: start tracking them. */
  start(s: MigrationStart): void {
    this.transports = s.transports;
    this.cards = s.cards;
    this.pairs = s.chosen.map((chosen, peer) => {
      const usable = new Set<Transport>();
      for (const t of s.transports) {
        if (peer === this.rank) continue;
        if (bitmapHas(s.reach[this.rank]?.[t.name], peer) && bitmapHas(s.reach[peer]?.[t.name], this.rank)) usable.add(t);
      }
      return { usable, proven: new Set(usable), inUse: new Set([chosen]), negotiation: undefined, releasing: new Set(), leaving: new Map(), retired: new Map(), leftDuringNegotiation: undefined };
    });
    this.inbound.start(s.chosen);
    this.started = true;
    const early = this.early;
    this.early = [];
    for (const fn of early) fn();
  }

  /** Finalize began: no more switches. */
  stop(): void {
    this.closing = true;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Fails pairs whose peer's frames stayed on a transport they left for longer than {@link DRAIN_TIMEOUT_MS}. */
  private watchDrains(): void {
    const now = performance.now();
    let waiting = false;
    this.pairs.forEach((pair, peer) => {
      for (const [t, left] of pair.leaving) {
        if (this.inbound.currentOf(peer).transport !== t || this.engine.lostError(peer)) {
          pair.leaving.delete(t);
          continue;
        }
        if (now - left.since < DRAIN_TIMEOUT_MS) {
          waiting = true;
          continue;
        }
        pair.leaving.delete(t);
        const error = new VmcommError(
          'PEER_LOST',
          `rank ${peer} was lost: the pair left ${t.name} (${left.reason}) but the peer's switch marker never came through it within ${Math.round(DRAIN_TIMEOUT_MS / 1000)} s, so what it sent there cannot be delivered`,
          { peer },
        );
        this.inbound.forget(peer, error);
        this.engine.lost(peer, error, true); // true: what comes after the missing frames would overtake them
      }
    });
    if (!waiting && this.watchdog !== undefined) {
      clearInterval(this.watchdog);
      this.watchdog = undefined;
    }
  }

  private watchDrain(pair: Pair, t: Transport, reason: string): void {
    if (!pair.leaving.has(t)) pair.leaving.set(t, { since: performance.now(), reason });
    this.watchdog ??= setInterval(() => this.watchDrains(), Math.min(1_000, DRAIN_TIMEOUT_MS / 4)).unref();
  }

  private whenStarted(fn: () => void): void {
    if (this.closing) return;
    if (this.started) fn();
    else this.early.push(fn);
  }

  // ------------------------------------------------------------------------------- moving down

  private leave(t: Transport, peers: readonly number[], reason: string): void {
    for (const peer of peers) {
      const pair = this.pairs[peer];
      if (pair === undefined || peer === this.rank || this.engine.lostError(peer)) continue;
      pair.usable.delete(t);
      if (pair.negotiation?.transport === t) {
        // The lower rank gives its offer up (the peer releases what it reserved on the REJECT). The
        // higher rank has accepted: the lower one may have moved already, so the negotiation ends
        // as agreed — the CONFIRM moves the pair there — and the pair leaves right after.
        if (pair.negotiation.role === 'offered') this.abandon(peer, pair, `${t.name} is leaving: ${reason}`);
        else pair.leftDuringNegotiation = reason;
        continue;
      }
      this.watchDrain(pair, t, reason);
      if (this.engine.transportOf(peer) === t) {
        const next = this.best(pair);
        if (next === undefined) {
          this.engine.lost(peer, new VmcommError('PEER_LOST', `rank ${peer} is unreachable: ${reason}, and no other transport was proven for the pair`, { peer }));
          continue;
        }
        this.logger?.debug(`vmcomm: rank ${peer}: leaving ${t.name} for ${next.name} (${reason})`);
        this.move(peer, pair, next);
      }
      this.maybeRelease(peer, pair);
    }
  }

  /** The usable transport of highest priority. */
  private best(pair: Pair): Transport | undefined {
    let best: Transport | undefined;
    for (const t of pair.usable) if (best === undefined || t.priority > best.priority) best = t;
    return best;
  }

  /** Moves the pair's outbound frames to `to` (which serves the peer from now: `admit`). */
  private move(peer: number, pair: Pair, to: Transport): void {
    const from = this.engine.transportOf(peer);
    if (from === to) return;
    pair.inUse.add(to);
    to.admit?.(peer);
    const retired = this.engine.switchPeer(peer, to, (epoch, empty) => encodePath(PathStep.SWITCH, epoch, { to: to.name }, empty));
    if (retired !== undefined) pair.retired.set(retired.transport, retired.channel);
    pair.retired.delete(to); // back on a path it had left (tcp keeps its channel): in use again
    this.onSwitch(peer, from.name, to.name);
  }

  // ------------------------------------------------------------------------------- InboundHooks

  switched(peer: number, from: Transport, to: Transport): void {
    const pair = this.pairs[peer];
    if (pair === undefined) return;
    // Only to a transport both ends proved (at start-up, or in a negotiation this rank took part in).
    if (!pair.proven.has(to) && to !== from) throw new VmcommError('CORRUPT', `rank ${peer} switched to ${to.name}, which the pair never proved`, { peer });
    pair.inUse.add(to);
    // The peer left the transport our frames use: follow it, so both ends agree again.
    if (from !== to && this.engine.transportOf(peer) === from && !this.closing) {
      pair.usable.delete(from);
      this.move(peer, pair, to);
    }
    this.maybeRelease(peer, pair);
  }

  step(peer: number, frame: PathFrame): void {
    const pair = this.pairs[peer];
    if (pair === undefined) return;
    const t = this.transportNamed(frame.body.to);
    const fail = (error: Error) => this.engine.lost(peer, error);
    switch (frame.step) {
      case PathStep.NUDGE:
        if (t !== undefined && this.rank < peer) this.tryUpgrade(peer, pair, t);
        return;
      case PathStep.OFFER:
        if (this.rank < peer) throw new VmcommError('CORRUPT', `rank ${peer} offered a move, but the lower rank of a pair leads`, { peer });
        this.answerOffer(peer, pair, t, frame).catch(fail);
        return;
      case PathStep.ACCEPT:
        if (t === undefined || pair.negotiation?.transport !== t || pair.negotiation.role !== 'offered') {
          // Crossed our REJECT (we gave the offer up): the peer releases what it reserved on it.
          this.logger?.debug(`vmcomm: rank ${peer} accepted a move to ${frame.body.to} this rank no longer offers`);
          return;
        }
        this.accepted(peer, pair, t, frame).catch(fail);
        return;
      case PathStep.CONFIRM: {
        // Processed even while finalizing: the peer moved already, and its frames must be read.
        if (t === undefined || pair.negotiation?.transport !== t || pair.negotiation.role !== 'accepted') {
          throw new VmcommError('CORRUPT', `rank ${peer} confirmed a move to ${frame.body.to} this rank had not accepted`, { peer });
        }
        pair.negotiation = undefined;
        pair.usable.add(t);
        pair.proven.add(t);
        this.move(peer, pair, t);
        this.maybeRelease(peer, pair);
        this.leaveIfLeft(peer, pair, t);
        return;
      }
      case PathStep.REJECT:
        if (t !== undefined && pair.negotiation?.transport === t) {
          const reserved = pair.negotiation.role === 'accepted';
          pair.negotiation = undefined;
          pair.leftDuringNegotiation = undefined;
          this.logger?.debug(`vmcomm: rank ${peer} rejected moving to ${t.name}: ${frame.body.why ?? 'no reason given'}`);
          if (reserved) this.maybeRelease(peer, pair, t);
        }
        return;
    }
  }

  /** The transport the pair just moved to reported leaving during the negotiation: leave it now. */
  private leaveIfLeft(peer: number, pair: Pair, t: Transport): void {
    const reason = pair.leftDuringNegotiation;
    pair.leftDuringNegotiation = undefined;
    if (reason !== undefined) this.leave(t, [peer], reason);
  }

  lost(t: Transport, peer: number, error: Error): void {
    const pair = this.pairs[peer];
    const relevant =
      pair === undefined || this.engine.transportOf(peer) === t || this.inbound.currentOf(peer).transport === t || this.inbound.holding(peer, t) || (pair.inUse.has(t) && !pair.releasing.has(t) && pair.negotiation?.transport !== t);
    if (!relevant) {
      // Not a move target any more: its channel to the peer is broken (a later move must not reuse it).
      pair.usable.delete(t);
      this.logger?.debug(`vmcomm: rank ${peer}: ${t.name}, which the pair no longer uses, reported it lost (${error.message})`);
      return;
    }
    if (pair?.negotiation?.transport === t) pair.negotiation = undefined;
    this.engine.lost(peer, error);
  }

  /**
   * The engine lost `peer` (whoever reported it): forget what is held, and free what the pair still
   * holds on the transports it had left or was moving to (a draining region can then be left). The
   * transport it used handles its own loss, as without migration.
   */
  peerLost(peer: number, error: Error): void {
    const pair = this.pairs[peer];
    const current = [this.engine.transportOf(peer), this.inbound.currentOf(peer).transport];
    this.inbound.forget(peer, error);
    if (pair === undefined) return;
    pair.negotiation = undefined;
    pair.leaving.clear();
    for (const t of [...pair.inUse]) {
      if (current.includes(t)) continue;
      pair.inUse.delete(t);
      t.release?.(peer, error).catch(() => undefined);
    }
    pair.retired.clear();
  }

  transportNamed(name: string): Transport | undefined {
    return this.transports.find((t) => t.name === name);
  }

  // ------------------------------------------------------------------------------- moving up

  private available(t: Transport, reason: string): void {
    this.logger?.debug(`vmcomm: ${t.name} may reach more peers now (${reason})`);
    for (let peer = 0; peer < this.size; peer++) {
      const pair = this.pairs[peer];
      if (peer === this.rank || pair === undefined) continue;
      this.proposeUpgrade(peer, pair, t);
    }
  }

  /** Whether moving the pair to `t` would gain and can start now. */
  private worthMoving(peer: number, pair: Pair, t: Transport): boolean {
    if (this.closing || this.engine.lostError(peer) || pair.negotiation !== undefined) return false;
    if (t.priority <= this.engine.transportOf(peer).priority || pair.inUse.has(t) || pair.releasing.has(t)) return false; // released first
    return typeof t.card === 'function' && t.card() !== undefined && typeof t.admit === 'function';
  }

  /** Starts moving the pair up to `t` if it gains: the lower rank offers, the higher one nudges it to. */
  private proposeUpgrade(peer: number, pair: Pair, t: Transport): void {
    if (this.rank < peer) this.tryUpgrade(peer, pair, t);
    else if (this.worthMoving(peer, pair, t)) this.send(peer, PathStep.NUDGE, { to: t.name });
  }

  private tryUpgrade(peer: number, pair: Pair, t: Transport): void {
    if (!this.worthMoving(peer, pair, t)) return;
    const card = t.card!()!;
    pair.negotiation = { transport: t, role: 'offered' };
    this.send(peer, PathStep.OFFER, { to: t.name, card });
  }

  private async answerOffer(peer: number, pair: Pair, t: Transport | undefined, frame: PathFrame): Promise<void> {
    const reject = (why: string) => this.send(peer, PathStep.REJECT, { to: frame.body.to, why });
    if (t === undefined) return reject(`rank ${this.rank} does not run ${frame.body.to}`);
    if (!this.worthMoving(peer, pair, t)) return reject(`rank ${this.rank} cannot take ${t.name} now`);
    pair.negotiation = { transport: t, role: 'accepted' };
    const ok = await this.probe(peer, t, frame.body.card);
    if (pair.negotiation?.transport !== t) return; // abandoned meanwhile
    const mine = ok ? t.card?.() : undefined;
    if (!ok || mine === undefined) {
      pair.negotiation = undefined;
      this.maybeRelease(peer, pair, t);
      return reject(`rank ${this.rank} could not prove rank ${peer} through ${t.name}`);
    }
    pair.inUse.add(t);
    this.send(peer, PathStep.ACCEPT, { to: t.name, card: mine });
  }

  private async accepted(peer: number, pair: Pair, t: Transport, frame: PathFrame): Promise<void> {
    const ok = await this.probe(peer, t, frame.body.card);
    if (pair.negotiation?.transport !== t) return;
    pair.negotiation = undefined;
    if (!ok || this.closing || this.engine.lostError(peer)) {
      this.send(peer, PathStep.REJECT, { to: t.name, why: `rank ${this.rank} could not prove rank ${peer} through ${t.name}` });
      this.maybeRelease(peer, pair, t);
      return;
    }
    pair.usable.add(t);
    pair.proven.add(t);
    // CONFIRM first, on the old path: the peer moves on reading it, and our marker follows it there.
    this.send(peer, PathStep.CONFIRM, { to: t.name });
    this.move(peer, pair, t);
    this.maybeRelease(peer, pair);
  }

  /** `t.probe` with the peer's start-up card and the fields it sent now. */
  private async probe(peer: number, t: Transport, fields: CardFields | undefined): Promise<boolean> {
    const card = this.cards[peer];
    if (fields === undefined || card === undefined) return false;
    try {
      return Boolean(await t.probe({ ...card, backends: { ...card.backends, [t.name]: fields }, priorities: { ...card.priorities, [t.name]: t.priority } }));
    } catch (error) {
      this.logger?.debug(`vmcomm: probing rank ${peer} through ${t.name} failed: ${(error as Error).message}`);
      return false;
    }
  }

  /** Gives up a negotiation (the transport is leaving): the peer is told, reservations go. */
  private abandon(peer: number, pair: Pair, why: string): void {
    const t = pair.negotiation!.transport;
    pair.negotiation = undefined;
    this.send(peer, PathStep.REJECT, { to: t.name, why });
  }

  private send(peer: number, step: PathStep, body: { to: string; card?: CardFields; why?: string }): void {
    const { header, payload } = encodePath(step, 0, body);
    this.engine.sendRaw(peer, header, payload);
  }

  // ------------------------------------------------------------------------------- release

  /**
   * Releases every transport (or just `only`, after a failed negotiation) that neither direction of
   * the pair uses any more. Once a pair drained off a transport, it is offered again if it became
   * usable meanwhile (a region restored during the drain); a failed negotiation is not retried until
   * the transport reports `available` again.
   */
  private maybeRelease(peer: number, pair: Pair, only?: Transport): void {
    const out = this.engine.transportOf(peer);
    const { transport: inbound } = this.inbound.currentOf(peer);
    for (const t of [...pair.inUse, ...(only !== undefined ? [only] : [])]) {
      if (only !== undefined && t !== only) continue;
      if (t === out || t === inbound || this.inbound.holding(peer, t) || pair.negotiation?.transport === t || pair.releasing.has(t)) continue;
      pair.inUse.delete(t);
      if (typeof t.release !== 'function') continue; // nothing per pair to free (tcp keeps its socket for a later move)
      pair.releasing.add(t);
      t.release(peer).then(
        () => {
          pair.releasing.delete(t);
          const retired = pair.retired.get(t);
          pair.retired.delete(t);
          if (retired !== undefined) this.engine.forgetRetired(peer, retired);
          if (only !== undefined) return;
          this.proposeUpgrade(peer, pair, t);
        },
        (error: Error) => {
          pair.releasing.delete(t);
          this.logger?.warn(`vmcomm: releasing ${t.name} for rank ${peer} failed: ${error.message}`);
        },
      );
    }
  }
}
