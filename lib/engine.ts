/**
 * The point-to-point engine of one world: turns sends into frames (eager within credits, rendezvous
 * beyond), turns inbound frames into matched messages, and fails what depends on a lost peer.
 *
 * Eager: `EAGER` carries the message; it uses one of the sender's per-pair credits, which the receiver
 * returns (`CREDIT`, in batches) once the message left its unexpected queue. Rendezvous: `RTS`
 * announces the message, the receiver answers `CTS` once a receive matched, then `DATA` carries the
 * bytes straight into the receive buffer. So memory at a receiver is bounded by
 * credits × eager limit per sender, plus tiny RTS records.
 *
 * @module
 */

import { Buffer } from 'node:buffer';
import type { Channel, FrameSink, Transport } from './backend.js';
import type { ValueCodec } from './codec.js';
import { Endpoint, type RetiredChannel, type SwitchMarker } from './endpoint.js';
import { VmcommError, type Status } from './errors.js';
import { Matching, type PostedRecv, type UnexpectedMsg } from './matching.js';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, HEADER_SEQ_WORD, HeaderWords, newHeaderBuffer, FrameFlags, FrameKind, type FrameHeader } from './protocol.js';
import type { ProgressEngine, RequestControl } from './request.js';

/** Per-peer traffic counters, as `comm.stats()` reports them. */
export interface PeerStats {
  /** World rank of the peer. */
  peer: number;
  /** Transport chosen for the pair. */
  transport: string;
  messagesSent: number;
  bytesSent: number;
  messagesReceived: number;
  bytesReceived: number;
  /** Times the pair changed transport (migration, issue 10); 0 until then. */
  switches: number;
}

/** A message on its way out by rendezvous, waiting for CTS. */
interface PendingSend {
  readonly peer: number;
  readonly bytes: Uint8Array;
  readonly control: RequestControl<void>;
  readonly context: number;
  /**
   * The sender gave up (timeout, abort) and its request is rejected; the entry stays until the
   * receiver answers the RTS_CANCEL, so a CTS that crossed it gets a WITHDRAWN DATA, never the bytes.
   */
  withdrawn: boolean;
  /** Its RTS went out (counted in the peer's `rtsOut`); false while it waits in the peer's backlog. */
  announced: boolean;
}

/** A send that waits behind the peer's rendezvous window (see {@link Engine.rendezvousWindow}). */
interface QueuedSend {
  readonly sendId: number;
  readonly context: number;
  readonly source: number;
  readonly tag: number;
  readonly flags: number;
  readonly seq: number;
  readonly resolveEarly: boolean;
}

/** A receive that sent CTS and waits for DATA. */
interface PendingRecv {
  readonly posted: PostedRecv;
  readonly context: number;
  readonly peer: number;
  readonly source: number;
  readonly tag: number;
  readonly length: number;
  readonly flags: number;
  /** Object receives: vmcomm's own buffer for the encoded value. */
  readonly data: Uint8Array | undefined;
}

/** A frame kept while selection was still running. */
interface EarlyFrame {
  readonly peer: number;
  readonly header: Uint8Array;
  readonly data: Uint8Array | undefined;
  committed: boolean;
}

/** What to do when the frame in progress from a peer is complete. */
interface InboundFrame {
  readonly header: FrameHeader;
  /** The word view of the peer's header buffer (one per peer: see `decodeHeader`). */
  readonly words: HeaderWords;
  posted: PostedRecv | undefined;
  pendingRecv: PendingRecv | undefined;
  data: Uint8Array | undefined;
  /**
   * Where a small encoded value for a receive already posted lands: decoded at commit, before the
   * peer's next frame begins, so one buffer per peer serves every such message. Made at the first;
   * `scratchView` is its view of the last length used (the decoder keeps its DataView on it).
   */
  scratch: Buffer | undefined;
  scratchView: Buffer | undefined;
}

/** Encoded values up to this size, for a receive already posted, land in the peer's scratch buffer. */
const SCRATCH_VALUE_BYTES = 1024;

interface PeerState {
  readonly endpoint: Endpoint;
  readonly eagerLimit: number;
  readonly creditsMax: number;
  /** Eager messages this rank may still send to the peer. */
  credits: number;
  /** Credits to hand back to the peer (its eager messages this rank consumed). */
  creditsOwed: number;
  /** The peer's own credit window (it says so in every EAGER frame); credits return per half of it. */
  peerWindow: number;
  /** Next sequence number to that peer. */
  seqOut: number;
  /**
   * The sequence number the peer's next message must have at least (see {@link Engine.inSequence}).
   */
  seqIn: number;
  /** RTS sent to the peer and not answered yet: the records this rank holds in its unexpected queue at most. */
  rtsOut: number;
  /** Sends waiting for the rendezvous window, in order (every later send to the peer waits behind them). */
  readonly backlog: QueuedSend[];
  lost: VmcommError | undefined;
  /**
   * Set when what the peer sends can no longer be trusted or ordered (see {@link Engine.lost}):
   * nothing more from it is matched.
   */
  refused: VmcommError | undefined;
  readonly stats: PeerStats;
}

/** Lifecycle hooks the world gives the engine. */
export interface EngineHooks {
  /** A peer was lost (channel broke, or the launcher said so). */
  peerLost(peer: number, error: VmcommError): void;
  /**
   * `peer` was lost while a frame of it was in progress: the transport delivering that frame must
   * stop (`Transport.abandonFrame`) before its receive is settled. On the first report, called before
   * {@link peerLost}; also on a later one, for a frame begun since (then without `peerLost`).
   */
  abandonFrame?(peer: number, error: VmcommError): void;
}

/** Per-pair settings the world derives from the chosen transport and the options. */
export interface PeerPlan {
  readonly transport: Transport;
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
}

const MAX_ID = 0xffff_ffff;
/** Default {@link Engine.rendezvousWindow}. */
export const DEFAULT_RENDEZVOUS_WINDOW = 1024;
/** The largest eager limit any built-in transport accepts (1 GiB): the default of {@link Engine.earlyEagerLimitBytes}. */
const MAX_EAGER_LIMIT_BYTES = 2 ** 30;

/** The engine; one per world. */
export class Engine implements FrameSink, ProgressEngine {
  private peers: PeerState[] = [];
  private readonly contexts = new Map<number, Matching>();
  /** Contexts revoked by {@link failContext}, with the error their receives fail with. */
  private readonly revokedContexts = new Map<number, Error>();
  /** The context {@link matching} found last (−1: none) and its queues. */
  private lastContext = -1;
  private lastMatching: Matching | undefined = undefined;
  /** Per context: who to tell about unexpected messages (see {@link watchUnexpected}). */
  private readonly unexpectedWatchers = new Map<number, (msg: UnexpectedMsg) => void>();
  private readonly pendingSends = new Map<number, PendingSend>();
  private readonly pendingRecvs = new Map<number, PendingRecv>();
  private readonly inbound: (InboundFrame | undefined)[] = [];
  /** Frames that arrived before selection finished: replayed in order by {@link ready}. */
  private early: EarlyFrame[] | undefined = [];
  /** Per peer: an early frame whose payload was still arriving at {@link ready}; its commit replays it. */
  private readonly earlyInProgress = new Map<number, EarlyFrame>();
  /**
   * Peers whose channel broke before {@link ready} (a corrupt early frame, a reset): there is no peer
   * state to mark yet, so the loss waits here and {@link ready} applies it — else a receive from that
   * peer would wait forever.
   */
  private readonly earlyLost = new Map<number, Error>();
  /**
   * Before {@link ready} the pair's eager limit is not known yet: an early EAGER frame may announce at
   * most this many payload bytes (the world sets it to the largest eager limit of its transports before
   * any peer can send). Its payload is allocated on arrival, so a corrupted length must not pass.
   */
  earlyEagerLimitBytes = MAX_EAGER_LIMIT_BYTES;
  /**
   * Rendezvous announcements (RTS) one rank may have unanswered at one peer. An RTS is a record in
   * the receiver's unexpected queue until a receive matches it; beyond this many, later sends to that
   * peer wait here, in order. With the eager credits, this bounds what a sender can make a receiver
   * hold: `eagerCredits` × `eagerLimitBytes` of data plus this many small records (`init()` options).
   */
  rendezvousWindow = DEFAULT_RENDEZVOUS_WINDOW;
  private nextSendId = 1;
  private nextRecvId = 1;
  private pollers: Transport[] = [];
  /**
   * {@link pollers} split for {@link poll}'s call sites: the first one that spins (`shm`, `threads`,
   * `ivshmem`) gets a call site of its own, the rest (`self`, a second one after a migration) share
   * another. A call site that sees two functions is a generic call for V8 (its call feedback has no
   * polymorphic state), one that sees one is inlined into the blocking spin.
   */
  private mainPoller: Transport | undefined = undefined;
  private otherPollers: Transport[] = [];
  /** Some poller other than `self` (see {@link polling}). */
  private spins = false;
  private readonly scratch = emptyHeader();
  /** Where early frames' headers are checked (not {@link scratch}: a send may be filling that). */
  private readonly scratchIn = emptyHeader();
  private readonly headerBytes = newHeaderBuffer();
  /**
   * {@link sendNow}'s own header buffer, and the fields it holds: a loop sending the same kind of
   * message to one peer changes only the sequence number, so only that word is written (no
   * encoding per message). Its word view is undefined on a big-endian host: it encodes every time.
   */
  private readonly nowHeader = newHeaderBuffer();
  private readonly nowWords = new HeaderWords().of(this.nowHeader);
  private nowLength = -1;
  private nowTag = 0;
  private nowSource = 0;
  private nowContext = 0;
  private nowFlags = 0;
  private nowAux = 0;
  /** Set once the world is finalizing: channel breaks are then expected, not failures. */
  private closing = false;
  /** Frames with a payload (eager messages, rendezvous DATA) handed to channels whose `done` has not come yet. */
  private eagerInFlight = 0;
  /** Finalize waits here until its condition holds; re-checked whenever traffic completes. */
  private idleWaiters: { ready: () => boolean; resolve: () => void }[] = [];

  constructor(
    readonly rank: number,
    readonly size: number,
    private readonly codec: ValueCodec,
    private readonly hooks: EngineHooks,
  ) {}

  /**
   * True when some transport needs polling: blocking waits then spin before they yield. `self` polls
   * too (so a loop of `test()` delivers a message to oneself) but needs no spin: its microtask
   * delivers as soon as a wait yields.
   */
  get polling(): boolean {
    return this.spins;
  }

  private setPollers(pollers: Transport[]): void {
    this.pollers = pollers;
    this.spins = pollers.some((t) => t.role !== 'self');
    this.mainPoller = pollers.find((t) => t.role !== 'self');
    this.otherPollers = pollers.filter((t) => t !== this.mainPoller);
  }

  /** Installs the per-peer plan once selection is done, then replays frames that came early. */
  ready(plans: readonly PeerPlan[]): void {
    this.peers = plans.map((plan, peer) => ({
      endpoint: new Endpoint(peer, plan.transport, (p, e) => this.lost(p, e)),
      eagerLimit: plan.eagerLimitBytes,
      creditsMax: plan.eagerCredits,
      credits: plan.eagerCredits,
      creditsOwed: 0,
      peerWindow: plan.eagerCredits,
      seqOut: 0,
      seqIn: 0,
      rtsOut: 0,
      backlog: [],
      lost: undefined,
      refused: undefined,
      stats: { peer, transport: plan.transport.name, messagesSent: 0, bytesSent: 0, messagesReceived: 0, bytesReceived: 0, switches: 0 },
    }));
    this.setPollers([...new Set(plans.map((p) => p.transport))].filter((t) => typeof t.poll === 'function'));
    const early = this.early ?? [];
    this.early = undefined;
    const failed = new Set<number>();
    for (const f of early) {
      if (failed.has(f.peer)) continue;
      if (!f.committed) {
        // Its transport will commit it later — unless its channel already broke.
        if (!this.earlyLost.has(f.peer)) this.earlyInProgress.set(f.peer, f);
        continue;
      }
      try {
        this.replay(f);
      } catch (error) {
        // A frame that fails only now (an eager message above the pair's limit, known only now) ends
        // that peer, not the world's start-up: its later early frames are dropped.
        failed.add(f.peer);
        this.lost(f.peer, error as Error);
      }
    }
    for (const [peer, error] of this.earlyLost) this.lost(peer, error);
    this.earlyLost.clear();
  }

  private replay(f: EarlyFrame): void {
    const target = this.begin(f.peer, f.header);
    if (target && f.data) target.set(f.data.subarray(0, target.length));
    this.commit(f.peer);
  }

  /** The matching queues of a context, created on first use (a message may precede its communicator). */
  matching(context: number): Matching {
    // Most traffic stays on one context (a program's point-to-point on its communicator): the last
    // one found is kept, so a message costs no Map lookup.
    if (context === this.lastContext) return this.lastMatching!;
    let m = this.contexts.get(context);
    if (!m) this.contexts.set(context, (m = new Matching(context)));
    this.lastContext = context;
    this.lastMatching = m;
    return m;
  }

  /** Polls transports that progress synchronously. */
  poll(): void {
    this.mainPoller?.poll!();
    const others = this.otherPollers;
    for (let i = 0; i < others.length; i++) others[i].poll!();
  }

  /** The traffic counters of every peer. */
  stats(): PeerStats[] {
    return this.peers.map((p) => ({ ...p.stats }));
  }

  /** The transport chosen for `peer`. */
  transportOf(peer: number): Transport {
    return this.peers[peer].endpoint.transport;
  }

  /**
   * Moves `peer`'s outbound frames to `transport` (migration, `lib/migration/`); the pair's protocol
   * settings (eager limit, credits) stay those chosen at start-up, so nothing in flight changes
   * meaning. Returns the channel left behind (see {@link Endpoint.switchTo}).
   */
  switchPeer(peer: number, transport: Transport, marker: SwitchMarker): RetiredChannel | undefined {
    const p = this.peers[peer];
    const from = p.endpoint.transport;
    const retired = p.endpoint.switchTo(transport, marker);
    p.stats.transport = transport.name;
    if (from !== transport) p.stats.switches++;
    if (typeof transport.poll === 'function' && !this.pollers.includes(transport)) this.setPollers([...this.pollers, transport]);
    return retired;
  }

  /** A channel `peer`'s pair left was closed by its transport (migration): finalize need not wait for it. */
  forgetRetired(peer: number, channel: Channel): void {
    this.peers[peer]?.endpoint.forgetRetired(channel);
  }

  /** Sends a frame the migration built (a PATH step) on `peer`'s current path. */
  sendRaw(peer: number, header: Uint8Array, payload: Uint8Array | undefined): void {
    const p = this.peers[peer];
    if (p === undefined || p.lost) return;
    p.endpoint.send(header, payload, undefined);
  }

  /**
   * The most payload bytes a frame from `peer` with header `h` may carry, for frames that are held
   * (copied) before the engine sees them: an eager message up to the pair's limit, DATA exactly the
   * matched receive's length, control frames nothing.
   */
  payloadLimit(peer: number, h: FrameHeader): number {
    if (h.kind === FrameKind.EAGER) return this.peers[peer].eagerLimit;
    if (h.kind === FrameKind.DATA) {
      const pr = this.pendingRecvs.get(h.recvId);
      return pr !== undefined && pr.peer === peer ? pr.length : 0;
    }
    return 0;
  }

  /**
   * What an honest `peer` can have in flight to this rank at most — so what the ordered inbound
   * layer may hold for it while a switch marker is on its way: its eager messages (credits × eager
   * limit), its rendezvous announcements (the window), data for this rank's matched receives, and a
   * few control and PATH frames.
   */
  heldBudget(peer: number): { frames: number; bytes: number } {
    const p = this.peers[peer];
    let recvs = 0;
    let recvBytes = 0;
    for (const r of this.pendingRecvs.values()) {
      if (r.peer !== peer) continue;
      recvs++;
      recvBytes += r.length;
    }
    const slack = 64;
    return {
      frames: p.creditsMax + this.rendezvousWindow + 2 * recvs + p.rtsOut + p.creditsMax + slack,
      bytes: p.creditsMax * p.eagerLimit + recvBytes + slack * 64 * 1024,
    };
  }

  /** The error a send to / receive from `peer` fails with, if the peer is lost. */
  lostError(peer: number): VmcommError | undefined {
    return this.peers[peer]?.lost;
  }

  /** Why `peer`'s frames are refused, if its stream was given up (see {@link lost}). */
  refusedError(peer: number): VmcommError | undefined {
    return this.peers[peer]?.refused;
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends a message. `bytes` is borrowed until `control` resolves (objects: encoded bytes, owned by the
   * caller's request). The sequence number is taken now, synchronously, so calls keep their order.
   * Returns the send id when the message went rendezvous (it can then be withdrawn), else 0.
   */
  send(context: number, source: number, dest: number, tag: number, bytes: Uint8Array, flags: number, control: RequestControl<void>, resolveEarly: boolean): number {
    const p = this.peers[dest];
    if (p.lost) {
      control.reject(p.lost);
      return 0;
    }
    const seq = p.seqOut;
    p.seqOut = (p.seqOut + 1) >>> 0;
    p.stats.messagesSent++;
    p.stats.bytesSent += bytes.length;
    const eager = bytes.length <= p.eagerLimit && p.credits > 0;
    if (p.backlog.length > 0 || (!eager && p.rtsOut >= this.rendezvousWindow)) {
      // Behind the window: queued in order, withdrawable like any rendezvous send.
      const sendId = this.allocId('send');
      this.pendingSends.set(sendId, { peer: dest, bytes, control, context, withdrawn: false, announced: false });
      p.backlog.push({ sendId, context, source, tag, flags, seq, resolveEarly });
      return sendId;
    }
    return this.emit(p, dest, context, source, tag, flags, seq, bytes, control, resolveEarly, 0);
  }

  /**
   * Sends a message at once if it can go eagerly and in full now: the peer is not lost, nothing waits
   * before it, it is within the eager limit and a credit, and the channel's fast path
   * ({@link Channel.trySend}) has room. Returns true with the message sent and complete — no request,
   * no callback; false with nothing done (the caller then uses {@link send}).
   */
  sendNow(context: number, source: number, dest: number, tag: number, bytes: Uint8Array, flags: number): boolean {
    const p = this.peers[dest];
    // `.length`, not `.byteLength`, on every Uint8Array of the message path (the same number): V8 11
    // (Node 20) does not inline `byteLength`, a builtin call of about 15 ns against 2 for `length`.
    const n = bytes.length;
    if (p.lost !== undefined || p.backlog.length > 0 || n > p.eagerLimit || p.credits <= 0) return false;
    const w = this.nowWords;
    if (w !== undefined && n === this.nowLength && tag === this.nowTag && source === this.nowSource && context === this.nowContext && flags === this.nowFlags && p.creditsMax === this.nowAux) {
      // The header of the last message sent here but for its sequence number (a message loop's case).
      w[HEADER_SEQ_WORD] = p.seqOut;
    } else {
      this.encodeEager(this.nowHeader, context, source, tag, flags, p.seqOut, p.creditsMax, n);
      this.nowLength = n;
      this.nowTag = tag;
      this.nowSource = source;
      this.nowContext = context;
      this.nowFlags = flags;
      this.nowAux = p.creditsMax;
    }
    if (!p.endpoint.trySend(this.nowHeader, bytes)) return false;
    p.seqOut = (p.seqOut + 1) >>> 0;
    p.credits--;
    p.stats.messagesSent++;
    p.stats.bytesSent += n;
    return true;
  }

  /** Encodes into `out` the header of an EAGER frame carrying all `n` bytes of a message. */
  private encodeEager(out: Uint8Array, context: number, source: number, tag: number, flags: number, seq: number, aux: number, n: number): void {
    const h = this.scratch;
    h.kind = FrameKind.EAGER;
    h.flags = flags;
    h.context = context;
    h.source = source;
    h.tag = tag;
    h.seq = seq;
    h.sendId = 0;
    h.recvId = 0;
    h.aux = aux;
    h.payloadBytes = n;
    h.messageBytes = n;
    encodeHeader(h, out);
  }

  /** Puts a send on the wire: eager within credits, else an RTS (`sendId` 0: a new one). */
  private emit(p: PeerState, dest: number, context: number, source: number, tag: number, flags: number, seq: number, bytes: Uint8Array, control: RequestControl<void>, resolveEarly: boolean, sendId: number): number {
    if (bytes.length <= p.eagerLimit && p.credits > 0) {
      p.credits--;
      this.encodeEager(this.headerBytes, context, source, tag, flags, seq, p.creditsMax, bytes.length);
      // Written in full at once (the common case for a small message): complete without a callback.
      if (p.endpoint.trySend(this.headerBytes, bytes)) {
        control.resolve();
        // As the callback would: a backlogged send that completes here may be what finalize waits for.
        this.checkIdle();
        return 0;
      }
      this.eagerInFlight++;
      p.endpoint.send(this.headerBytes, bytes, (err) => {
        this.eagerInFlight--;
        if (err) control.reject(this.asLost(dest, err));
        else control.resolve();
        this.checkIdle();
      });
      // Objects: the encoded bytes are vmcomm's, so the value may change now.
      if (resolveEarly) control.resolve();
      return 0;
    }
    if (sendId === 0) {
      sendId = this.allocId('send');
      this.pendingSends.set(sendId, { peer: dest, bytes, control, context, withdrawn: false, announced: true });
    } else this.pendingSends.get(sendId)!.announced = true;
    p.rtsOut++;
    const h = this.scratch;
    h.kind = FrameKind.RTS;
    h.flags = flags;
    h.context = context;
    h.source = source;
    h.tag = tag;
    h.seq = seq;
    h.sendId = sendId;
    h.recvId = 0;
    h.aux = p.creditsMax;
    h.payloadBytes = 0;
    h.messageBytes = bytes.length;
    encodeHeader(h, this.headerBytes);
    p.endpoint.send(this.headerBytes, undefined, (err) => err && this.failSend(sendId, this.asLost(dest, err)));
    return sendId;
  }

  /** Sends what the peer's backlog may send now (credits came back, or an RTS was answered). */
  private drain(dest: number): void {
    const p = this.peers[dest];
    while (p.backlog.length > 0 && !p.lost) {
      const q = p.backlog[0];
      const s = this.pendingSends.get(q.sendId);
      if (s === undefined || s.withdrawn) {
        // Withdrawn or failed while it waited.
        p.backlog.shift();
        continue;
      }
      const eager = s.bytes.length <= p.eagerLimit && p.credits > 0;
      if (!eager && p.rtsOut >= this.rendezvousWindow) return;
      p.backlog.shift();
      if (eager) this.pendingSends.delete(q.sendId);
      this.emit(p, dest, q.context, q.source, q.tag, q.flags, q.seq, s.bytes, s.control, q.resolveEarly, eager ? 0 : q.sendId);
    }
  }

  /** A pending send's entry is gone: an answered RTS frees a place in the window. */
  private settled(s: PendingSend): void {
    if (!s.announced) return;
    s.announced = false;
    const p = this.peers[s.peer];
    p.rtsOut--;
    if (p.backlog.length > 0) this.drain(s.peer);
  }

  /**
   * Gives up a rendezvous send whose CTS has not arrived (a timed-out or aborted send): its request
   * rejects with `error` now, without waiting for the receiver, and the receiver is told to forget the
   * RTS. If the receiver had already matched it, the CTS that crosses the cancel is answered with a
   * WITHDRAWN DATA frame and the receiver's receive goes back to waiting. Returns false when the send
   * is past that point (its data is moving: it completes normally).
   */
  withdrawSend(sendId: number, error: Error): boolean {
    const s = this.pendingSends.get(sendId);
    if (!s || s.withdrawn) return false;
    s.withdrawn = true;
    const st = this.peers[s.peer].stats;
    st.messagesSent--;
    st.bytesSent -= s.bytes.length;
    s.control.reject(error);
    if (!s.announced) {
      // Still in the backlog: nothing went out; drain() skips it.
      this.pendingSends.delete(sendId);
      this.checkIdle();
      return true;
    }
    this.control(s.peer, FrameKind.RTS_CANCEL, sendId, 0, 0, s.context);
    return true;
  }

  private control(peer: number, kind: FrameKind, sendId: number, recvId: number, aux: number, context: number): void {
    const p = this.peers[peer];
    if (p.lost) return;
    const h = this.scratch;
    h.kind = kind;
    h.flags = 0;
    h.context = context;
    h.source = this.rank;
    h.tag = 0;
    h.seq = 0;
    h.sendId = sendId;
    h.recvId = recvId;
    h.aux = aux;
    h.payloadBytes = 0;
    h.messageBytes = 0;
    p.endpoint.send(encodeHeader(h, this.headerBytes), undefined, undefined);
  }

  private failSend(sendId: number, error: Error): void {
    const s = this.pendingSends.get(sendId);
    if (!s) return;
    this.pendingSends.delete(sendId);
    s.control.reject(error);
    this.settled(s);
    this.checkIdle();
  }

  private allocId(kind: 'send' | 'recv'): number {
    // Ids wrap at 2^32; one still in use after 4 billion others is skipped.
    const map = kind === 'send' ? this.pendingSends : this.pendingRecvs;
    let id = kind === 'send' ? this.nextSendId : this.nextRecvId;
    while (map.has(id)) id = id === MAX_ID ? 1 : id + 1;
    const next = id === MAX_ID ? 1 : id + 1;
    if (kind === 'send') this.nextSendId = next;
    else this.nextRecvId = next;
    return id;
  }

  // ---------------------------------------------------------------- receiving

  /**
   * Posts a receive: takes the oldest matching unexpected message, or queues the receive. `peerOf`
   * maps a communicator rank to a world rank (for loss checks).
   */
  receive(context: number, recv: PostedRecv, peerOf: (commRank: number) => number): void {
    const revoked = this.revokedContexts.size === 0 ? undefined : this.revokedContexts.get(context);
    if (revoked) return recv.control.reject(revoked);
    const m = this.matching(context);
    const msg = m.takeUnexpected(recv.source, recv.tag);
    if (msg) return this.deliverUnexpected(context, msg, recv);
    if (recv.source >= 0) {
      const lost = this.lostError(peerOf(recv.source));
      if (lost) return recv.control.reject(lost);
    }
    m.post(recv);
  }

  /** Withdraws a posted receive that has not matched; false when too late. */
  cancelReceive(context: number, recv: PostedRecv): boolean {
    return this.matching(context).unpost(recv);
  }

  private deliverUnexpected(context: number, msg: UnexpectedMsg, recv: PostedRecv): void {
    if (msg.data === undefined) return this.clearToSend(recv, context, msg.peer, msg.source, msg.tag, msg.bytes, msg.flags, msg.sendId);
    this.deliverEager(recv, msg.peer, msg.source, msg.tag, msg.bytes, msg.flags, msg.data);
  }

  /** Completes `recv` with an eager message held in vmcomm's own buffer `data`. */
  private deliverEager(recv: PostedRecv, peer: number, source: number, tag: number, length: number, flags: number, data: Uint8Array): void {
    if (recv.mode === 'buffer' && recv.bytes) recv.bytes.set(data.length <= recv.bytes.length ? data : data.subarray(0, recv.bytes.length));
    this.returnCredit(peer);
    this.complete(recv, source, tag, length, flags, data);
  }

  private clearToSend(recv: PostedRecv, context: number, peer: number, source: number, tag: number, length: number, flags: number, sendId: number): void {
    let data: Uint8Array | undefined;
    if (recv.mode !== 'buffer') {
      // The length came from the wire: one this process cannot allocate fails the receive with a typed
      // error (a RangeError would escape from recv(), or break the channel as PEER_LOST).
      try {
        data = new Uint8Array(length);
      } catch {
        return recv.control.reject(new VmcommError('CORRUPT', `rank ${peer} announced a message of ${length} bytes, more than this process can allocate; the message was dropped`, { peer }));
      }
    }
    const recvId = this.allocId('recv');
    this.pendingRecvs.set(recvId, { posted: recv, context, peer, source, tag, length, flags, data });
    this.control(peer, FrameKind.CTS, sendId, recvId, 0, 0);
  }

  /** Settles a matched receive with its message. */
  private complete(recv: PostedRecv, source: number, tag: number, length: number, flags: number, data: Uint8Array | undefined): void {
    const status: Status = { source, tag, bytes: length };
    if (recv.mode === 'buffer') {
      const cap = recv.bytes?.length ?? 0;
      if (length > cap) {
        recv.control.reject(new VmcommError('TRUNCATE', `message of ${length} bytes from rank ${source} (tag ${tag}) does not fit the ${cap}-byte receive buffer; it was consumed, its first ${cap} bytes are in the buffer`, { status }));
      } else recv.control.resolve(status);
      return;
    }
    let value: unknown;
    try {
      value = flags & FrameFlags.OBJECT ? this.codec.decode(data ?? new Uint8Array(0)) : (data ?? new Uint8Array(0));
    } catch (e) {
      return recv.control.reject(e as Error);
    }
    recv.control.resolve(recv.mode === 'message' ? { data: value, source, tag } : value);
  }

  private returnCredit(peer: number): void {
    const p = this.peers[peer];
    if (!p || p.lost) return;
    // Batched: one CREDIT frame per half window keeps control traffic low without starving the sender.
    // The sender's window, not ours, sets the batch: a sender with a smaller window must get its
    // credits back before it runs dry.
    if (++p.creditsOwed >= Math.max(1, Math.min(p.creditsMax, p.peerWindow) >> 1)) {
      const n = p.creditsOwed;
      p.creditsOwed = 0;
      this.control(peer, FrameKind.CREDIT, 0, 0, n, 0);
    }
  }

  /** Status of the oldest unexpected message that fits, without taking it (`iprobe`). */
  probe(context: number, source: number, tag: number): Status | undefined {
    const msg = this.matching(context).peekUnexpected(source, tag);
    return msg && { source: msg.source, tag: msg.tag, bytes: msg.bytes };
  }

  // ---------------------------------------------------------------- FrameSink

  begin(peer: number, bytes: Uint8Array): Uint8Array | undefined {
    if (this.early) {
      // Selection not done yet here, though the peer is done: keep the frame for ready(). Checked now,
      // so that a corrupt frame closes its channel (CORRUPT) instead of allocating what it announces.
      const h = decodeHeader(bytes, this.scratchIn);
      // Before this rank is ready the peer can only announce messages (or withdraw one): every other
      // kind answers something this rank sent, and it has sent nothing yet.
      if (h.kind !== FrameKind.EAGER && h.kind !== FrameKind.RTS && h.kind !== FrameKind.RTS_CANCEL) {
        throw new VmcommError('CORRUPT', `rank ${peer} sent a frame of kind ${h.kind} before this rank had sent anything it could answer`, { peer });
      }
      if (h.kind !== FrameKind.EAGER && h.payloadBytes !== 0) throw new VmcommError('CORRUPT', `a control frame (kind ${h.kind}) from rank ${peer} carries ${h.payloadBytes} bytes`, { peer });
      if (h.payloadBytes > this.earlyEagerLimitBytes) throw eagerTooLong(peer, h.payloadBytes, this.earlyEagerLimitBytes);
      const header = bytes.slice(0, FRAME_HEADER_BYTES);
      const data = h.payloadBytes > 0 ? new Uint8Array(h.payloadBytes) : undefined;
      this.early.push({ peer, header, data, committed: false });
      return data;
    }
    const p = this.peers[peer];
    // Nothing more is taken from a peer whose stream was given up (CORRUPT, or a switch whose frames
    // never came): the verdict may have come from elsewhere — the ordered inbound layer replaying a
    // frame, the drain watchdog — while this transport's channel stayed open. Thrown back, it closes
    // that channel as any frame refused does, so an ANY_SOURCE receive never takes such a frame.
    if (p.refused !== undefined) throw p.refused;
    const f = (this.inbound[peer] ??= { header: emptyHeader(), words: new HeaderWords(), posted: undefined, pendingRecv: undefined, data: undefined, scratch: undefined, scratchView: undefined });
    const h = decodeHeader(bytes, f.header, f.words);
    f.posted = undefined;
    f.pendingRecv = undefined;
    f.data = undefined;
    switch (h.kind) {
      case FrameKind.EAGER: {
        // An eager payload is allocated before it arrives: a length above what the sender may send
        // eagerly (both ends of a pair use the same limit) is corrupt, not an allocation to make.
        const limit = p.eagerLimit;
        if (h.payloadBytes > limit) throw eagerTooLong(peer, h.payloadBytes, limit);
        this.inSequence(p, peer, h.seq);
        const posted = this.matching(h.context).takePosted(h.source, h.tag);
        f.posted = posted;
        if (posted?.mode === 'buffer') {
          const dst = posted.bytes ?? new Uint8Array(0);
          return h.payloadBytes < dst.length ? dst.subarray(0, h.payloadBytes) : dst;
        }
        const n = h.payloadBytes;
        if (n === 0) return undefined;
        if ((h.flags & FrameFlags.OBJECT) === 0) return (f.data = new Uint8Array(n)); // the program's bytes: its own
        // An encoded value is only decoded. For a posted receive, a small one goes into the peer's
        // scratch buffer (decoded at commit); else into a Buffer of its own memory. Not a small
        // Uint8Array: that lives in V8's heap, and the decoder's view of its buffer had V8 allocate
        // and copy one (malloc and free per message: a quarter of the time a value sent and received
        // took). Not a slice of Node's Buffer pool either: a value that waits for its receive would
        // keep a whole 8 KiB block of the pool alive.
        if (posted !== undefined && n <= SCRATCH_VALUE_BYTES) {
          let view = f.scratchView;
          if (view === undefined || view.length !== n) view = f.scratchView = (f.scratch ??= Buffer.allocUnsafeSlow(SCRATCH_VALUE_BYTES)).subarray(0, n);
          return (f.data = view);
        }
        return (f.data = Buffer.allocUnsafeSlow(n));
      }
      case FrameKind.DATA: {
        const pr = this.pendingRecvs.get(h.recvId);
        if (!pr || pr.peer !== peer) throw new VmcommError('CORRUPT', `rank ${peer} sent data for unknown receive ${h.recvId}`);
        if (h.flags & FrameFlags.WITHDRAWN) {
          if (h.payloadBytes !== 0) throw new VmcommError('CORRUPT', `rank ${peer} sent a withdrawn message with a payload`);
          this.pendingRecvs.delete(h.recvId);
          f.pendingRecv = pr;
          return undefined;
        }
        if (h.payloadBytes !== pr.length) throw new VmcommError('CORRUPT', `rank ${peer} sent ${h.payloadBytes} bytes for a ${pr.length}-byte message`);
        this.pendingRecvs.delete(h.recvId);
        f.pendingRecv = pr;
        if (pr.data) return pr.data;
        const dst = pr.posted.bytes ?? new Uint8Array(0);
        return pr.length <= dst.length ? dst.subarray(0, pr.length) : dst;
      }
      case FrameKind.PATH:
        // The world's ordered inbound layer consumes PATH frames (lib/migration/): one here came
        // through a path that bypasses it, which no honest peer uses.
        throw new VmcommError('CORRUPT', `rank ${peer} sent a PATH frame where only messages are expected`, { peer });
      default:
        if (h.payloadBytes !== 0) throw new VmcommError('CORRUPT', `a control frame (kind ${h.kind}) from rank ${peer} carries ${h.payloadBytes} bytes`);
        if (h.kind === FrameKind.RTS) this.inSequence(p, peer, h.seq);
        return undefined;
    }
  }

  /**
   * Checks that a message (EAGER or RTS) from `peer` comes after the last one: every message takes
   * the next sequence number of its pair when it is sent, and channels and the ordered inbound layer
   * keep frames in order, so an older number is a frame delivered twice or out of order —
   * `CORRUPT`, thrown to the transport that delivered it, which closes its channel and reports the
   * peer lost. (A frame replayed after a switch of transports, or one that came before selection,
   * is replayed by the ordered inbound layer, which reports the loss as for any frame it finds
   * corrupt; {@link begin} then refuses what the current channel still brings.) A gap is not
   * checked: a send withdrawn (timeout, abort) while it waited for the rendezvous window never
   * reaches the wire, and its number is not reused.
   */
  private inSequence(p: PeerState, peer: number, seq: number): void {
    const ahead = (seq - p.seqIn) >>> 0;
    if (ahead >= 0x80000000) {
      throw new VmcommError('CORRUPT', `rank ${peer} sent message number ${seq} after number ${(p.seqIn - 1) >>> 0}: a frame delivered twice or out of order`, { peer });
    }
    p.seqIn = (seq + 1) >>> 0;
  }

  commit(peer: number): void {
    if (this.early) {
      for (let i = this.early.length - 1; i >= 0; i--) {
        if (this.early[i].peer === peer) {
          this.early[i].committed = true;
          break;
        }
      }
      return;
    }
    const late = this.earlyInProgress.size === 0 ? undefined : this.earlyInProgress.get(peer);
    if (late) {
      this.earlyInProgress.delete(peer);
      return this.replay(late);
    }
    const f = this.inbound[peer];
    if (!f) return;
    const h = f.header;
    const p = this.peers[peer];
    switch (h.kind) {
      case FrameKind.EAGER: {
        p.stats.messagesReceived++;
        p.stats.bytesReceived += h.messageBytes;
        if (h.aux > 0) p.peerWindow = h.aux;
        if (f.posted) {
          this.returnCredit(peer);
          this.complete(f.posted, h.source, h.tag, h.messageBytes, h.flags, f.data);
          break;
        }
        const data = f.data ?? new Uint8Array(0);
        // A receive may have been posted while the payload was arriving (between begin and commit).
        const late = this.matching(h.context).takePosted(h.source, h.tag);
        if (late) this.deliverEager(late, peer, h.source, h.tag, h.messageBytes, h.flags, data);
        else if (this.revokedContexts.has(h.context)) this.returnCredit(peer);
        else this.unexpected(h.context, { source: h.source, tag: h.tag, peer, bytes: h.messageBytes, flags: h.flags, data, sendId: 0 });
        break;
      }
      case FrameKind.RTS: {
        p.stats.messagesReceived++;
        p.stats.bytesReceived += h.messageBytes;
        const posted = this.matching(h.context).takePosted(h.source, h.tag);
        if (posted) this.clearToSend(posted, h.context, peer, h.source, h.tag, h.messageBytes, h.flags, h.sendId);
        else this.unexpected(h.context, { source: h.source, tag: h.tag, peer, bytes: h.messageBytes, flags: h.flags, data: undefined, sendId: h.sendId });
        break;
      }
      case FrameKind.DATA: {
        const pr = f.pendingRecv!;
        if (h.flags & FrameFlags.WITHDRAWN) {
          // The sender gave up after we matched: the message never happened; the receive waits on.
          p.stats.messagesReceived--;
          p.stats.bytesReceived -= pr.length;
          this.requeue(pr.context, pr.posted);
        } else this.complete(pr.posted, pr.source, pr.tag, pr.length, pr.flags, pr.data);
        this.checkIdle();
        break;
      }
      case FrameKind.CTS: {
        const s = this.pendingSends.get(h.sendId);
        if (!s || s.peer !== peer || !s.announced) throw new VmcommError('CORRUPT', `rank ${peer} cleared unknown send ${h.sendId}`);
        this.pendingSends.delete(h.sendId);
        this.settled(s);
        const out = this.scratch;
        out.kind = FrameKind.DATA;
        out.flags = s.withdrawn ? FrameFlags.WITHDRAWN : 0;
        out.context = s.context;
        out.source = this.rank;
        out.tag = 0;
        out.seq = 0;
        out.sendId = h.sendId;
        out.recvId = h.recvId;
        out.aux = 0;
        out.payloadBytes = s.withdrawn ? 0 : s.bytes.length;
        out.messageBytes = s.bytes.length;
        if (s.withdrawn) {
          p.endpoint.send(encodeHeader(out, this.headerBytes), undefined, undefined);
          this.checkIdle();
          break;
        }
        this.eagerInFlight++;
        p.endpoint.send(encodeHeader(out, this.headerBytes), s.bytes, (err) => {
          this.eagerInFlight--;
          if (err) s.control.reject(this.asLost(peer, err));
          else s.control.resolve();
          this.checkIdle();
        });
        break;
      }
      case FrameKind.CREDIT:
        p.credits = Math.min(p.creditsMax, p.credits + h.aux);
        if (p.backlog.length > 0) this.drain(peer);
        break;
      case FrameKind.RTS_CANCEL: {
        const withdrawn = this.matching(h.context).takeUnexpectedRts(peer, h.sendId);
        if (withdrawn) {
          p.stats.messagesReceived--;
          p.stats.bytesReceived -= withdrawn.bytes;
        }
        this.control(peer, FrameKind.CANCEL_REPLY, h.sendId, 0, withdrawn ? 1 : 0, h.context);
        break;
      }
      case FrameKind.CANCEL_REPLY: {
        // Unknown: a CTS crossed the cancel and was answered already. Not an error.
        const s = this.pendingSends.get(h.sendId);
        if (s?.withdrawn) {
          this.pendingSends.delete(h.sendId);
          this.settled(s);
          this.checkIdle();
        }
        break;
      }
    }
    f.posted = undefined;
    f.pendingRecv = undefined;
    f.data = undefined;
  }

  /**
   * `peer` is lost: what depends on it fails. With `streamBroken` — implied by `CORRUPT` and `AUTH` —
   * its stream is given up too: its later frames are refused ({@link begin}). Otherwise (it died, its
   * channel broke) the frames it finished writing are still delivered: a message it sent before it
   * died can still be received — except one still arriving when a report comes (this one or a later
   * one, whoever makes it): that frame is dropped, its transport told to stop, and with it what
   * follows on that channel.
   */
  lost(peer: number, error: Error, streamBroken = false): void {
    if (this.closing) return;
    if (this.early) {
      // Not ready: no peer state yet. Kept for ready(), so the loss is not forgotten.
      if (Number.isInteger(peer) && peer >= 0 && peer < this.size && !this.earlyLost.has(peer)) this.earlyLost.set(peer, error);
      return;
    }
    const p = this.peers[peer];
    if (!p) return;
    const err = this.asLost(peer, error);
    if (streamBroken || err.code === 'CORRUPT' || err.code === 'AUTH') p.refused ??= err;
    const first = p.lost === undefined;
    if (first) {
      p.lost = err;
      p.endpoint.fail(err);
    }
    // Also on a later report: a frame begun since the first (its channel still delivered) that its
    // transport now gives up would otherwise never settle its receive.
    this.dropInboundFrame(peer, p.lost!);
    if (!first) return;
    this.earlyInProgress.delete(peer);
    // Rendezvous announcements of the lost peer can never deliver their data.
    for (const m of this.contexts.values()) m.dropRtsFrom(peer);
    for (const [id, s] of this.pendingSends) if (s.peer === peer) this.failSend(id, err);
    for (const [id, r] of this.pendingRecvs) {
      if (r.peer !== peer) continue;
      this.pendingRecvs.delete(id);
      r.posted.control.reject(err);
    }
    this.checkIdle();
    this.hooks.peerLost(peer, err);
  }

  /**
   * The frame of `peer` in progress, if any, is dropped: the receive it had taken fails, or (an
   * ANY_SOURCE one) goes back to waiting for the others.
   */
  private dropInboundFrame(peer: number, err: VmcommError): void {
    const f = this.inbound[peer];
    if (!f) return;
    // First: the transport told to stop below reports the loss, and that report comes back here.
    this.inbound[peer] = undefined;
    if (f.posted !== undefined || f.pendingRecv !== undefined || f.data !== undefined) {
      // Its transport would go on writing the payload into the target begin handed out — the buffer
      // of the receive settled below, which the program may reuse at once. Stopped first; it then
      // delivers nothing more from this peer, so no later message is matched where this one was dropped.
      try {
        this.hooks.abandonFrame?.(peer, err);
      } catch {
        // A transport that fails to stop: the receive must settle all the same.
      }
    }
    if (f.posted && f.posted.source < 0) this.requeue(f.header.context, f.posted);
    else f.posted?.control.reject(err);
    f.pendingRecv?.posted.control.reject(err);
  }

  /** Rejects the posted receives of `context` that wait on `source` specifically. */
  failReceivesFrom(context: number, source: number, error: Error): void {
    const m = this.contexts.get(context);
    if (!m) return;
    for (const r of m.postedReceives()) {
      if (r.source === source && m.unpost(r)) r.control.reject(error);
    }
  }

  private asLost(peer: number, error: Error): VmcommError {
    // CORRUPT and AUTH say more than "lost": keep them as they are.
    if (error instanceof VmcommError) return error;
    return new VmcommError('PEER_LOST', `rank ${peer} was lost: ${error.message}`, { cause: error, peer });
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Resolves once every send of this rank has completed (eager frames handed over, rendezvous data
   * written). A send no receive will ever match keeps it waiting, as `MPI_Finalize` would.
   */
  sendsDone(): Promise<void> {
    return this.whenIdle(() => this.eagerInFlight === 0 && this.pendingSends.size === 0);
  }

  /** Resolves once every matched rendezvous receive of this rank has its data. */
  receivesDone(): Promise<void> {
    return this.whenIdle(() => this.pendingRecvs.size === 0);
  }

  private whenIdle(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push({ ready, resolve }));
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0) return;
    this.idleWaiters = this.idleWaiters.filter((w) => (w.ready() ? (w.resolve(), false) : true));
  }

  /** From now on channel breaks are part of shutting down. */
  beginClosing(): void {
    this.closing = true;
  }

  /** Closes every channel (after what is queued has left). */
  async closeAll(): Promise<void> {
    this.closing = true;
    await Promise.all(this.peers.map((p) => p.endpoint.close().catch(() => undefined)));
  }

  /**
   * A matched receive whose message will not come after all: first, another message already waiting
   * that fits; else back to the head of the posted queue (it was the oldest receive that fitted).
   */
  private requeue(context: number, recv: PostedRecv): void {
    const revoked = this.revokedContexts.get(context);
    if (revoked) return recv.control.reject(revoked);
    const m = this.matching(context);
    const msg = m.takeUnexpected(recv.source, recv.tag);
    if (msg) this.deliverUnexpected(context, msg, recv);
    else m.repost(recv);
  }

  /**
   * Revokes `context` (a revoked communicator's collectives, ULFM style): rejects its posted receives
   * and probes, drops its eager messages that nobody will receive (returning their credits, which
   * the pair's other traffic needs), and from now on drops eager arrivals there and fails a receive
   * whose rendezvous data was withdrawn instead of re-posting it. Rendezvous announcements stay
   * queued: their senders withdraw them.
   */
  failContext(context: number, error: Error): void {
    this.revokedContexts.set(context, error);
    const m = this.matching(context);
    m.failProbes(undefined, error);
    for (const r of m.postedReceives()) if (m.unpost(r)) r.control.reject(error);
    for (let msg = m.takeUnexpectedEager(); msg; msg = m.takeUnexpectedEager()) this.returnCredit(msg.peer);
  }

  /** Queues a message no receive wanted, and tells the context's watcher (collective argument checks). */
  private unexpected(context: number, msg: UnexpectedMsg): void {
    this.matching(context).addUnexpected(msg);
    this.unexpectedWatchers.get(context)?.(msg);
  }

  /**
   * Calls `watch` for each message that arrives in `context` before its receive (a communicator's
   * collective context checks the argument hash at once: a rank that will never post the matching
   * receive must not leave its peer waiting). Returns the function that stops watching.
   */
  watchUnexpected(context: number, watch: (msg: UnexpectedMsg) => void): () => void {
    this.unexpectedWatchers.set(context, watch);
    return () => {
      if (this.unexpectedWatchers.get(context) === watch) this.unexpectedWatchers.delete(context);
    };
  }

  /** The error of a context revoked by {@link failContext}, if it was. */
  revokedError(context: number): Error | undefined {
    return this.revokedContexts.get(context);
  }

  /** Rejects every receive and probe still waiting in any context, and every pending send (finalize, abort). */
  failEverything(error: Error): void {
    for (const m of this.contexts.values()) {
      m.failProbes(undefined, error);
      for (const r of m.postedReceives()) if (m.unpost(r)) r.control.reject(error);
    }
    for (const id of [...this.pendingSends.keys()]) this.failSend(id, error);
    for (const [id, r] of this.pendingRecvs) {
      this.pendingRecvs.delete(id);
      r.posted.control.reject(error);
    }
  }
}

function eagerTooLong(peer: number, bytes: number, limit: number): VmcommError {
  return new VmcommError(
    'CORRUPT',
    `rank ${peer} sent an eager message of ${bytes} bytes, above the pair's eager limit of ${limit} (every rank of a job must use the same eagerLimitBytes)`,
    { peer },
  );
}
