/**
 * An in-memory plug-in transport that can be revoked and restored, for migration tests in one process
 * (like tests/helpers/memory-transport.ts, plus the migration half of `vmcomm/backend`: card, admit,
 * release, and the `paths` events). The test drives it as an administrator would drive an ivshmem
 * region: `revoke()` then `leave(peers)`, later `restore()` then `available()`.
 *
 * It also checks the core keeps its side of the contract: a frame from a peer this transport does not
 * (or no longer) accept is recorded in `lateFrames` — a pair released too early — and `connect` to a
 * peer it does not serve rejects.
 */
import type { BackendComponents, BackendFactory, CardFields, Channel, FrameSink, LocalityCard, SendDone, Transport } from '../../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../../lib/backend.js';

const buses = new Map<string, Map<number, SwitchableTransport>>();

export interface SwitchableInit {
  readonly name: string;
  readonly priority: number;
  /** Which peers this rank proves (default: every rank on the bus). */
  readonly reaches?: (self: number, peer: number) => boolean;
  /** Milliseconds before each batch of frames is delivered (default: the next turn of the event loop). */
  readonly delayMs?: number;
  /** Payloads land one turn after their header (a frame over several reads). */
  readonly splitPayloads?: boolean;
  readonly eagerLimitBytes?: number;
  readonly eagerCredits?: number;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

class Pipe implements Channel {
  private queue: { header: Uint8Array; payload: Uint8Array | undefined; done: SendDone | undefined }[] = [];
  private pumping: Promise<void> | undefined;
  private broken: Error | undefined;
  constructor(
    private readonly from: number,
    private readonly to: SwitchableTransport,
    private readonly init: SwitchableInit,
  ) {}

  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.broken) return done?.(this.broken);
    this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, done });
    this.pumping ??= this.pump();
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.broken) {
      if (this.init.delayMs !== undefined) await new Promise((r) => setTimeout(r, this.init.delayMs));
      else await tick();
      const batch = this.queue;
      this.queue = [];
      for (const f of batch) {
        if (this.broken) {
          f.done?.(this.broken);
          continue;
        }
        const sink = this.to.inbound(this.from);
        try {
          const target = sink.begin(this.from, f.header);
          if (this.init.splitPayloads && f.payload !== undefined && f.payload.byteLength > 0) await tick();
          if (target !== undefined && f.payload !== undefined) target.set(f.payload.subarray(0, target.byteLength));
          sink.commit(this.from);
          f.done?.();
        } catch (error) {
          // A frame the receiver refused closes the channel, as a real transport does.
          this.broken = error as Error;
          sink.lost(this.from, error as Error);
          f.done?.(this.broken);
        }
      }
    }
    this.pumping = undefined;
  }

  async close(): Promise<void> {
    while (this.pumping) await this.pumping;
  }
}

export class SwitchableTransport implements Transport {
  readonly name: string;
  readonly priority: number;
  readonly role = 'local' as const;
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  /** `card()` answers undefined and `probe` fails while revoked (a revoked region). */
  revoked = false;
  /** `probe` fails while set, even when not revoked (a peer's fields this rank cannot prove). */
  failProbe = false;
  /** Peers admitted after start-up, in order. */
  readonly admitted: number[] = [];
  /** Peers released, in order. */
  readonly released: number[] = [];
  /** Probes after start-up (the migration's negotiation), per peer rank. */
  readonly negotiationProbes: number[] = [];
  /** Frames that came from a peer this transport did not accept then (released too early). */
  readonly lateFrames: string[] = [];
  private readonly channels = new Map<number, Pipe>();
  private readonly served = new Set<number>();
  /** Peers whose frames are accepted; undefined until addPeers (before it, peers may send early). */
  private accepting: Set<number> | undefined;
  private generation = 0;

  constructor(
    private readonly c: BackendComponents,
    private readonly init: SwitchableInit,
  ) {
    this.name = init.name;
    this.priority = init.priority;
    this.eagerLimitBytes = init.eagerLimitBytes ?? 4096;
    this.eagerCredits = init.eagerCredits ?? 8;
  }

  get rank(): number {
    return this.c.rank;
  }

  private get key(): string {
    return `${this.c.jobId}/${this.name}`;
  }

  private get bus(): Map<number, SwitchableTransport> {
    let b = buses.get(this.key);
    if (!b) buses.set(this.key, (b = new Map()));
    return b;
  }

  /** The sink frames from `peer` go to (checked against what this transport accepts). */
  inbound(peer: number): FrameSink {
    if (this.accepting !== undefined && !this.accepting.has(peer)) this.lateFrames.push(`rank ${this.c.rank} got a frame from rank ${peer} through ${this.name} after releasing it`);
    return this.c.sink;
  }

  // --------------------------------------------------------------- what the test drives

  /** The pairs with `peers` should leave this transport. */
  leave(peers: readonly number[], reason = `${this.name} revoked`): void {
    this.c.paths!.leave(peers, reason);
  }
  /** This transport may reach peers again. */
  available(reason = `${this.name} restored`): void {
    this.c.paths!.available(reason);
  }
  /** Reports `peer` lost through this transport's sink (a channel that broke). */
  breakPeer(peer: number, error: Error): void {
    this.c.sink.lost(peer, error);
  }

  // --------------------------------------------------------------- Transport

  async start(): Promise<CardFields> {
    this.bus.set(this.c.rank, this);
    return { bus: this.key, generation: this.generation };
  }

  card(): CardFields | undefined {
    return this.revoked ? undefined : { bus: this.key, generation: ++this.generation };
  }

  probe(peer: LocalityCard): boolean {
    const fields = peer.backends[this.name];
    const ok = !this.revoked && !this.failProbe && fields?.bus === this.key && (this.init.reaches?.(this.c.rank, peer.rank) ?? true);
    if (this.accepting !== undefined) {
      this.negotiationProbes.push(peer.rank);
      // A proof after start-up reserves this side: the peer may send as soon as it moves.
      if (ok) this.accepting.add(peer.rank);
    }
    return ok;
  }

  addPeers(peers: readonly number[]): void {
    for (const p of peers) this.served.add(p);
    this.accepting = new Set(peers);
  }

  admit(peer: number): void {
    this.admitted.push(peer);
    this.served.add(peer);
    this.accepting?.add(peer);
  }

  async release(peer: number): Promise<void> {
    this.released.push(peer);
    this.served.delete(peer);
    this.accepting?.delete(peer);
    const ch = this.channels.get(peer);
    this.channels.delete(peer);
    await ch?.close();
  }

  async connect(peer: number): Promise<Channel> {
    if (!this.served.has(peer)) throw new Error(`${this.name} on rank ${this.c.rank} does not serve rank ${peer}`);
    let ch = this.channels.get(peer);
    if (!ch) {
      const to = this.bus.get(peer);
      if (!to) throw new Error(`rank ${peer} is not on ${this.name}`);
      this.channels.set(peer, (ch = new Pipe(this.c.rank, to, this.init)));
    }
    return ch;
  }

  async stop(): Promise<void> {
    for (const ch of this.channels.values()) await ch.close();
    this.channels.clear();
    this.bus.delete(this.c.rank);
    if (this.bus.size === 0) buses.delete(this.key);
  }
}

/** A factory; `byRank` holds what it built, per world rank (for the test to drive and inspect). */
export function switchable(init: SwitchableInit): BackendFactory & { byRank: Map<number, SwitchableTransport>; at(rank: number): SwitchableTransport } {
  const byRank = new Map<number, SwitchableTransport>();
  return Object.assign(
    (c: BackendComponents) => {
      const t = new SwitchableTransport(c, init);
      byRank.set(c.rank, t);
      return t;
    },
    {
      transportName: init.name,
      byRank,
      at(rank: number): SwitchableTransport {
        const t = byRank.get(rank);
        if (!t) throw new Error(`no ${init.name} transport was built for rank ${rank}`);
        return t;
      },
    },
  );
}
