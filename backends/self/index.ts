/**
 * The `self` transport: a rank's messages to itself, copied in memory, delivered on a microtask (or
 * by the next `test()`, whichever comes first).
 *
 * @packageDocumentation
 * @example
 * ```ts
 * const comm = await init();               // a world of one, no launcher
 * const r = comm.irecv(0, 7);
 * await comm.send('hi', 0, 7);
 * console.log(await r, comm.transportOf(0)); // hi self
 * ```
 */

import type { BackendComponents, BackendFactory, CardFields, Channel, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../lib/backend.js';

/** Options of the `self` transport. */
export interface SelfInit {
  /** Largest eager message in bytes (default {@link DEFAULT_SELF_EAGER_LIMIT_BYTES}). */
  eagerLimitBytes?: number;
  /** Eager messages outstanding to oneself (default {@link DEFAULT_SELF_EAGER_CREDITS}). */
  eagerCredits?: number;
}

/** Default eager limit of `self`: larger messages go rendezvous, so a self-send waits for its receive. */
export const DEFAULT_SELF_EAGER_LIMIT_BYTES = 256 * 1024;
/** Default eager credits of `self`. */
export const DEFAULT_SELF_EAGER_CREDITS = 64;

interface Pending {
  header: Uint8Array;
  payload: Uint8Array | undefined;
  done: SendDone | undefined;
}

/** Loops frames back into this rank's own sink. */
class SelfChannel implements Channel {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Inside {@link flush}: a poll from there (none is known) must not deliver later frames first. */
  private flushing = false;
  private closed = false;

  constructor(private readonly c: BackendComponents) {}

  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.closed) return done?.(new Error('self channel closed'));
    // A microtask, not a direct call: the core is in the middle of sending and must not be re-entered.
    this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, done });
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Delivers what waits now (see {@link SelfTransport.poll}); the frames delivered. */
  deliver(): number {
    const n = this.queue.length;
    if (n === 0 || this.flushing) return 0;
    this.flush();
    return n;
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    const { sink, rank } = this.c;
    this.flushing = true;
    try {
      this.deliverAll(batch, sink, rank);
    } finally {
      this.flushing = false;
    }
  }

  private deliverAll(batch: Pending[], sink: BackendComponents['sink'], rank: number): void {
    for (const f of batch) {
      try {
        const target = sink.begin(rank, f.header);
        if (target && f.payload) target.set(target.byteLength < f.payload.byteLength ? f.payload.subarray(0, target.byteLength) : f.payload);
        sink.commit(rank);
        f.done?.();
      } catch (e) {
        f.done?.(e as Error);
        sink.lost(rank, e as Error);
      }
    }
  }

  async close(): Promise<void> {
    if (this.queue.length > 0 && !this.flushing) this.flush();
    this.closed = true;
  }
}

/** The `self` transport. */
export class SelfTransport implements Transport {
  readonly name = 'self';
  readonly priority = 100;
  readonly role = 'self' as const;
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  private channel: SelfChannel | undefined;

  constructor(
    private readonly c: BackendComponents,
    init: SelfInit = {},
  ) {
    this.eagerLimitBytes = init.eagerLimitBytes ?? DEFAULT_SELF_EAGER_LIMIT_BYTES;
    this.eagerCredits = init.eagerCredits ?? DEFAULT_SELF_EAGER_CREDITS;
  }

  async start(): Promise<CardFields> {
    return {};
  }

  probe(peer: LocalityCard): boolean {
    return peer.rank === this.c.rank && peer.processNonce === this.c.processNonce;
  }

  addPeers(): void {}

  async connect(peer: number): Promise<Channel> {
    return this.openNow(peer);
  }

  /** {@link connect} at once: opening needs no round trip with the peer (see `Transport.openNow`). */
  openNow(peer: number): Channel {
    if (peer !== this.c.rank) throw new Error(`self transport cannot reach rank ${peer}`);
    return (this.channel ??= new SelfChannel(this.c));
  }

  /**
   * Delivers frames still waiting for their microtask: `test()` polls, and a program that loops on
   * `test()` without yielding (MPI_Test style) would otherwise never see its message to itself. Never
   * called from inside a send (the core polls only from `test()`, `iprobe()` and blocking waits), so
   * the core is not re-entered. The core does not spin for this transport: the microtask delivers
   * as soon as a wait yields.
   */
  poll(): number {
    return this.channel?.deliver() ?? 0;
  }

  async stop(): Promise<void> {
    await this.channel?.close();
  }
}

/** The `self` transport's factory. */
export function self(init?: SelfInit): BackendFactory {
  return Object.assign((c: BackendComponents) => new SelfTransport(c, init), { transportName: 'self' as const });
}
