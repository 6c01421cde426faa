/**
 * Inbound order across a transport switch. Each transport delivers to a sink of its own (from
 * {@link OrderedInbound.sinkFor}), so every frame is known by the transport it came through. Per peer,
 * one transport is *current*: its frames go straight to the engine (`begin` hands out the user's
 * buffer, no copy). Frames from any other transport are *held* — copied into a buffer of their own,
 * in arrival order — until the current transport's `SWITCH` marker names theirs; then they are
 * replayed, in order, before anything that comes after them. So MPI's non-overtaking rule holds
 * across a switch, whatever the two transports' timing: a receiver never takes a frame of epoch
 * n + 1 before the last of epoch n. (Markers carry the epoch they open; one that does not open the
 * next epoch is `CORRUPT`.)
 *
 * Before the world has chosen a transport per pair, every frame is held the same way, with the
 * checks the engine applies to frames that come early (they can only announce messages); the choice
 * makes one transport current and replays it.
 *
 * PATH frames never reach the engine: markers are applied here, the negotiation steps go to the
 * migration (`pair-migration.ts`) in stream order.
 *
 * @module
 */

import type { FrameSink, Transport } from '../backend.js';
import type { Engine } from '../engine.js';
import { VmcommError } from '../errors.js';
import { decodeHeader, emptyHeader, FRAME_HEADER_BYTES, FrameKind, type FrameHeader } from '../protocol.js';
import { decodePath, MAX_PATH_BODY_BYTES, PathStep, type PathFrame } from './path-frames.js';

/** What the ordered inbound layer tells the migration. */
export interface InboundHooks {
  /** `peer`'s frames now come through `to` (its marker from `from` was read; `from` undefined before the first epoch). */
  switched(peer: number, from: Transport, to: Transport, epoch: number): void;
  /** A negotiation step from `peer`, in stream order. */
  step(peer: number, frame: PathFrame): void;
  /** A transport reported `peer` lost: the migration decides whether the pair depended on it. */
  lost(transport: Transport, peer: number, error: Error): void;
  /** The transport named in a marker, if this rank runs it. */
  transportNamed(name: string): Transport | undefined;
}

/** A frame kept until its transport is current. */
interface Held {
  readonly header: Uint8Array;
  readonly data: Uint8Array | undefined;
  committed: boolean;
}

/** The frame in progress on one transport for one peer. */
type InProgress = { readonly kind: 'path'; readonly header: Uint8Array; readonly data: Uint8Array | undefined } | { readonly kind: 'held'; readonly frame: Held };

interface PeerInbound {
  /** The transport whose frames are delivered now (undefined until the world chose). */
  current: Transport | undefined;
  /** The epoch `current` carries. */
  epoch: number;
  readonly held: Map<Transport, Held[]>;
  readonly inProgress: Map<Transport, InProgress>;
  /** Losses reported before the world chose: applied then, if they concern the chosen transport. */
  readonly earlyLost: Map<Transport, Error>;
  /** The transport whose frame is in progress straight into the engine (the hot path: no map). */
  live: Transport | undefined;
  /** Frames and payload bytes held now (bounded: see Engine.heldBudget). */
  heldFrames: number;
  heldBytes: number;
}


/** The per-transport sinks of one world, in front of its engine. */
export class OrderedInbound {
  private readonly peers: PeerInbound[];
  private ready = false;
  private readonly scratch = emptyHeader();

  constructor(
    private readonly engine: Engine,
    size: number,
    private readonly hooks: InboundHooks,
  ) {
    this.peers = Array.from({ length: size }, () => ({ current: undefined, epoch: 0, held: new Map(), inProgress: new Map(), earlyLost: new Map(), live: undefined, heldFrames: 0, heldBytes: 0 }));
  }

  /** The sink `transport` delivers to. */
  sinkFor(transport: () => Transport): FrameSink {
    return {
      begin: (peer, header) => this.begin(transport(), peer, header),
      commit: (peer) => this.commit(transport(), peer),
      lost: (peer, error) => this.lost(transport(), peer, error),
    };
  }

  /** The world chose `transports[peer]` for every pair: make them current and replay what came early. */
  start(transports: readonly Transport[]): void {
    this.ready = true;
    transports.forEach((t, peer) => {
      const p = this.peers[peer];
      p.current = t;
      const early = p.earlyLost.get(t);
      p.earlyLost.clear();
      if (early !== undefined) return this.hooks.lost(t, peer, early);
      // A frame that fails only now (an eager message above the pair's limit, known only now) ends
      // that peer, not the others' start-up (as Engine.ready does for its own early frames).
      this.drainOrLose(peer, p);
    });
  }

  /** The transport `peer`'s frames come through now, and its epoch. */
  currentOf(peer: number): { transport: Transport | undefined; epoch: number } {
    const p = this.peers[peer];
    return { transport: p.current, epoch: p.epoch };
  }

  /** Whether frames from `peer` through `transport` are held (waiting for a marker). */
  holding(peer: number, transport: Transport): boolean {
    return (this.peers[peer]?.held.get(transport)?.length ?? 0) > 0;
  }

  /**
   * Forgets what is held for `peer` (the peer was lost, `error` says why: nothing of it will be
   * delivered), and has the transport of a frame in progress straight into the engine stop it
   * ({@link abandonLive}) — its receive is about to settle.
   */
  forget(peer: number, error: Error): void {
    const p = this.peers[peer];
    if (p === undefined) return;
    this.abandonLive(peer, error);
    p.held.clear();
    p.inProgress.clear();
    p.live = undefined;
    p.heldFrames = 0;
    p.heldBytes = 0;
  }

  /**
   * The engine gave up `peer`'s frame in progress straight into it (the peer was lost from
   * elsewhere): the transport writing it stops (`Transport.abandonFrame`). Held frames land in
   * buffers of this layer's own, which {@link forget} drops.
   */
  abandonLive(peer: number, error: Error): void {
    const p = this.peers[peer];
    const t = p?.live;
    if (t === undefined) return;
    p.live = undefined;
    t.abandonFrame?.(peer, error);
  }

  private peer(peer: number): PeerInbound {
    const p = this.peers[peer];
    if (p === undefined) throw new VmcommError('CORRUPT', `a transport delivered a frame from rank ${peer}, which is not in this world`);
    return p;
  }

  private begin(t: Transport, peer: number, bytes: Uint8Array): Uint8Array | undefined {
    const p = this.peer(peer);
    // The common case, decided without decoding: a frame of the current transport (set only once
    // the world chose) that is not PATH, with nothing of that transport held before it.
    if (p.current === t && bytes[1] !== FrameKind.PATH && (p.heldFrames === 0 || !this.holding(peer, t))) {
      p.live = t;
      return this.engine.begin(peer, bytes);
    }
    // Frames of a peer whose stream was given up are refused here too (held or PATH ones): see Engine.begin.
    const refused = this.engine.refusedError(peer);
    if (refused !== undefined) throw refused;
    const h = decodeHeader(bytes, this.scratch);
    const limit = this.limitFor(peer, t, h);
    if (h.payloadBytes > limit) {
      throw new VmcommError('CORRUPT', `rank ${peer} sent a frame of kind ${h.kind} with ${h.payloadBytes} payload bytes, more than the ${limit} it may carry here`, { peer });
    }
    const header = bytes.slice(0, FRAME_HEADER_BYTES);
    const data = h.payloadBytes > 0 ? new Uint8Array(h.payloadBytes) : undefined;
    if (this.ready && p.current === t && !this.holding(peer, t)) {
      p.inProgress.set(t, { kind: 'path', header, data });
      return data;
    }
    if (this.ready) {
      // An honest peer holds at most what its credits, its rendezvous window and our receives allow
      // between its marker and its next frames; more is a peer filling our memory.
      const budget = this.engine.heldBudget(peer);
      if (p.heldFrames + 1 > budget.frames || p.heldBytes + h.payloadBytes > budget.bytes) {
        throw new VmcommError('CORRUPT', `rank ${peer} sent more through ${t.name} ahead of its switch marker than it may have in flight (${p.heldFrames} frames, ${p.heldBytes} bytes held)`, { peer });
      }
    }
    p.heldFrames++;
    p.heldBytes += h.payloadBytes;
    const frame: Held = { header, data, committed: false };
    let list = p.held.get(t);
    if (list === undefined) p.held.set(t, (list = []));
    list.push(frame);
    p.inProgress.set(t, { kind: 'held', frame });
    return data;
  }

  /** The most payload a frame may carry when it is not delivered straight to the engine. */
  private limitFor(peer: number, t: Transport, h: FrameHeader): number {
    if (h.kind === FrameKind.PATH) return MAX_PATH_BODY_BYTES;
    if (!this.ready) {
      // Before the choice the peer can only announce messages (see Engine.begin's early frames).
      if (h.kind !== FrameKind.EAGER && h.kind !== FrameKind.RTS && h.kind !== FrameKind.RTS_CANCEL) {
        throw new VmcommError('CORRUPT', `rank ${peer} sent a frame of kind ${h.kind} through ${t.name} before this rank had sent anything it could answer`, { peer });
      }
      return h.kind === FrameKind.EAGER ? this.engine.earlyEagerLimitBytes : 0;
    }
    return this.engine.payloadLimit(peer, h);
  }

  private commit(t: Transport, peer: number): void {
    const p = this.peer(peer);
    if (p.live === t) {
      p.live = undefined;
      return this.engine.commit(peer);
    }
    const ip = p.inProgress.get(t);
    if (ip === undefined) return;
    p.inProgress.delete(t);
    switch (ip.kind) {
      case 'path':
        this.path(peer, p, ip.header, ip.data);
        this.drainOrLose(peer, p);
        return;
      case 'held':
        ip.frame.committed = true;
        this.drainOrLose(peer, p);
        return;
    }
  }

  /**
   * {@link drain}, and a frame that fails while replayed ends the pair on the transport it came
   * through — not on the one whose commit happened to trigger the replay.
   */
  private drainOrLose(peer: number, p: PeerInbound): void {
    try {
      this.drain(peer, p);
    } catch (error) {
      const t = p.current!;
      this.forget(peer, error as Error);
      this.hooks.lost(t, peer, error as Error);
    }
  }

  /**
   * Replays what may go now: the current transport's held frames, in order, up to one still
   * arriving; and, on any other transport, an empty marker that opens the next epoch (its sender
   * never used the current one), which makes that transport current.
   */
  private drain(peer: number, p: PeerInbound): void {
    if (!this.ready) return;
    for (;;) {
      const t = p.current!;
      const list = p.held.get(t);
      if (list !== undefined && list.length > 0) {
        const f = list[0];
        if (!f.committed) return;
        list.shift();
        p.heldFrames--;
        p.heldBytes -= f.data?.byteLength ?? 0;
        this.replay(peer, p, f);
        continue;
      }
      if (!this.applyEmptyMarker(peer, p)) return;
    }
  }

  /** Looks for an empty marker opening epoch `p.epoch + 1` at the head of another transport's held frames. */
  private applyEmptyMarker(peer: number, p: PeerInbound): boolean {
    for (const [t, list] of p.held) {
      if (t === p.current || list.length === 0 || !list[0].committed) continue;
      const h = decodeHeader(list[0].header, this.scratch);
      if (h.kind !== FrameKind.PATH || h.aux !== PathStep.SWITCH) continue;
      const m = decodePath(peer, h, list[0].data);
      if (m.empty && m.epoch <= p.epoch) throw new VmcommError('CORRUPT', `rank ${peer} sent an empty switch marker for epoch ${m.epoch} through ${t.name} while epoch ${p.epoch} was current`, { peer });
      if (!m.empty || m.epoch !== p.epoch + 1) continue;
      if (this.hooks.transportNamed(m.body.to) !== t) throw new VmcommError('CORRUPT', `rank ${peer} sent an empty switch marker to ${m.body.to} through ${t.name}`, { peer });
      const marker = list.shift()!;
      p.heldFrames--;
      p.heldBytes -= marker.data?.byteLength ?? 0;
      this.switchTo(peer, p, t, m.epoch);
      return true;
    }
    return false;
  }

  private replay(peer: number, p: PeerInbound, f: Held): void {
    if (f.header[1] === FrameKind.PATH) return this.path(peer, p, f.header, f.data);
    const target = this.engine.begin(peer, f.header);
    if (target !== undefined && f.data !== undefined) target.set(f.data.subarray(0, target.length));
    this.engine.commit(peer);
  }

  /** A PATH frame of the current transport, in stream order. */
  private path(peer: number, p: PeerInbound, header: Uint8Array, data: Uint8Array | undefined): void {
    const frame = decodePath(peer, decodeHeader(header, emptyHeader()), data);
    if (frame.step !== PathStep.SWITCH) return this.hooks.step(peer, frame);
    if (frame.epoch !== p.epoch + 1) throw new VmcommError('CORRUPT', `rank ${peer} sent a switch marker for epoch ${frame.epoch} while epoch ${p.epoch} was current`, { peer });
    const next = this.hooks.transportNamed(frame.body.to);
    if (next === undefined) throw new VmcommError('CORRUPT', `rank ${peer} switched to ${frame.body.to}, which this rank does not run`, { peer });
    // An empty marker read on the current transport (it named this very transport) just opens the epoch.
    this.switchTo(peer, p, next, frame.epoch);
  }

  private switchTo(peer: number, p: PeerInbound, next: Transport, epoch: number): void {
    const from = p.current!;
    p.current = next;
    p.epoch = epoch;
    this.hooks.switched(peer, from, next, epoch);
    // drain() (our caller's loop, or the next commit) replays what `next` held.
  }

  private lost(t: Transport, peer: number, error: Error): void {
    const p = this.peers[peer];
    if (p === undefined) return;
    p.inProgress.delete(t);
    if (p.live === t) p.live = undefined;
    if (!this.ready) {
      if (!p.earlyLost.has(t)) p.earlyLost.set(t, error);
      return;
    }
    this.hooks.lost(t, peer, error);
  }
}
