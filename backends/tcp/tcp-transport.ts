/**
 * The tcp {@link Transport}: one listener per rank, one authenticated connection per peer pair, opened
 * by whichever side needs it first.
 *
 * ## Who keeps which connection
 *
 * Both ranks of a pair may dial each other at the same moment. The rule: **the connection dialed by
 * the lower rank wins.** A listener applies it when an authenticated dial arrives from `peer`:
 *
 * | this rank has…                        | dial from a higher rank | dial from a lower rank |
 * |---------------------------------------|-------------------------|------------------------|
 * | nothing                               | accept                  | accept                 |
 * | its own dial to `peer` under way      | LOSE                    | accept                 |
 * | a channel to `peer`                   | LOSE                    | LOSE                   |
 *
 * A lower rank dials only while it has no channel, so its dial always meets "accept": a LOSE only
 * ever answers the higher rank's dial. That rank closes the losing connection, and its `connect()`
 * waits for the lower rank's dial (up to `handshakeTimeoutMs`). A higher rank that accepted while its
 * own dial was under way lets that dial finish: it gets LOSE (the lower rank is dialing, or already
 * has the channel) and is closed quietly. So both ends keep the same single connection, and every
 * `connect()` promise resolves with it, in every interleaving (tests force each one with a relay that
 * holds a dial mid-way).
 *
 * @module
 */

import type net from 'node:net';
import type {
  BackendComponents,
  CardFields,
  Channel,
  LocalityCard,
  Transport,
} from '../../lib/backend.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { Dial } from './dialer.js';
import type { Verdict } from './handshake.js';
import { jobHash } from './handshake.js';
import type { TcpOptions } from './index.js';
import { TcpListener } from './listener.js';
import type { ReadRoute } from './socket-reads.js';
import { TcpEndpoint } from './tcp-endpoint.js';

/** Where a peer listens, from its card. */
interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/** Everything this transport knows about one peer's connection. */
interface PeerSlot {
  /** The established channel (kept after it breaks: later sends fail, `connect()` returns it). */
  channel: TcpEndpoint | undefined;
  /** Our dial to the peer, while it is under way. */
  dial: Dial | undefined;
  /** What `connect()` returns; cleared when a dial fails so that a later call tries again. */
  connecting: Promise<Channel> | undefined;
  resolve: ((channel: Channel) => void) | undefined;
  reject: ((error: Error) => void) | undefined;
  /** After a LOSE: how long we wait for the peer's dial. */
  yieldTimer: NodeJS.Timeout | undefined;
}

/** The tcp transport of one world. Build it with `tcp(init)(components)`. */
export class TcpTransport implements Transport {
  readonly name = 'tcp';
  readonly priority = 0;
  readonly role = 'network';
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  unavailableReason: string | undefined = undefined;
  readonly [Symbol.toStringTag] = '@vmcomm/tcp';

  private readonly addresses = new Map<number, PeerAddress>();
  private readonly slots = new Map<number, PeerSlot>();
  private served = new Set<number>();
  private readonly jobHash: Buffer;
  /** Where every connection's reads land while it parses headers (see `frame-reader.ts`). */
  private readonly pool: Buffer;
  private listener: TcpListener | undefined;
  private starting: Promise<CardFields | undefined> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly components: BackendComponents,
    private readonly options: TcpOptions,
  ) {
    this.eagerLimitBytes = options.eagerLimitBytes;
    this.eagerCredits = options.eagerCredits;
    this.jobHash = jobHash(components.jobId);
    this.pool = Buffer.allocUnsafeSlow(options.readBufferBytes);
  }

  /** Listens on `components.address` (that address only) and publishes `{ host, port }`. */
  start(): Promise<CardFields | undefined> {
    this.starting ??= this.listen();
    return this.starting;
  }

  private async listen(): Promise<CardFields | undefined> {
    const { address, rank, size, jobSecret, logger } = this.components;
    const listener = new TcpListener(
      {
        address,
        port: this.options.port,
        rank,
        size,
        secret: jobSecret,
        jobHash: this.jobHash,
        handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        pool: this.pool,
        logger,
      },
      {
        verdict: (peer) => this.verdict(peer),
        adopt: (peer, socket, route, rest) => this.establish(peer, socket, route, rest),
      },
    );
    try {
      const port = await listener.listen();
      this.listener = listener;
      return { host: address, port };
    } catch (err) {
      this.unavailableReason = `tcp cannot listen on ${address}:${this.options.port} (${(err as Error).message})`;
      logger?.warn(`vmcomm:tcp: ${this.unavailableReason}`);
      return undefined;
    }
  }

  /** True when `peer`'s card lists tcp with a usable host and port; remembers where it listens. */
  probe(peer: LocalityCard): boolean {
    const fields = peer.backends?.[this.name];
    if (this.listener === undefined || fields === undefined || peer.rank === this.components.rank) return false;
    const { host, port } = fields;
    if (typeof host !== 'string' || host === '' || !Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
      return false;
    }
    this.addresses.set(peer.rank, { host, port: port as number });
    return true;
  }

  /** Remembers the peers tcp serves. Dials from other authenticated ranks are still accepted. */
  addPeers(peers: readonly number[]): void {
    this.served = new Set(peers);
  }

  /**
   * Migration: tcp serves `peer` too from now on (a pair moved here from a transport it had to leave).
   * Its address is known from the start-up probe.
   */
  admit(peer: number): void {
    if (this.addresses.has(peer)) this.served.add(peer);
  }

  /**
   * The channel to `peer`: dials on the first call unless the peer has connected to us already;
   * later calls return the same promise. Rejects with `AUTH` when the peer fails authentication,
   * `PEER_LOST` when it cannot be reached, `INVALID_ARGUMENT` for a rank tcp does not serve.
   */
  connect(peer: number): Promise<Channel> {
    const slot = this.slots.get(peer);
    if (slot?.connecting !== undefined) return slot.connecting;
    if (slot?.channel !== undefined) return (slot.connecting = Promise.resolve(slot.channel));
    if (this.stopping !== undefined) {
      return Promise.reject(new VmcommError('FINALIZED', 'the tcp transport has stopped; no new channels can be opened'));
    }
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.components.size || peer === this.components.rank) {
      return Promise.reject(invalidArgument('the tcp peer', `a rank in 0…${this.components.size - 1} other than ${this.components.rank}`, peer));
    }
    const address = this.addresses.get(peer);
    if (!this.served.has(peer) || address === undefined) {
      return Promise.reject(
        new VmcommError('INVALID_ARGUMENT', `rank ${peer} is not served by tcp here (probe() must accept its card and addPeers() list it)`),
      );
    }
    const s = slot ?? this.newSlot(peer);
    s.connecting = new Promise<Channel>((resolve, reject) => {
      s.resolve = resolve;
      s.reject = reject;
    });
    this.dial(peer, s, address);
    return s.connecting;
  }

  /**
   * The core gave up `peer`'s frame in progress (see `Transport.abandonFrame`): the connection is
   * dropped, so no read lands in the frame's target any more.
   */
  abandonFrame(peer: number, error: Error): void {
    this.slots.get(peer)?.channel?.abandon(error);
  }

  /** Closes every channel gracefully and the listener. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const closing: Promise<void>[] = [];
    if (this.listener !== undefined) closing.push(this.listener.close());
    const stopped = new VmcommError('FINALIZED', 'the tcp transport stopped before the channel opened');
    for (const slot of this.slots.values()) {
      slot.dial?.abort(stopped);
      if (slot.channel === undefined) this.failConnect(slot, stopped);
      if (slot.channel !== undefined) closing.push(slot.channel.close());
    }
    await Promise.all(closing);
  }

  // -------------------------------------------------------------------------------------------------
  // Dialing and accepting

  private dial(peer: number, slot: PeerSlot, address: PeerAddress): void {
    const { rank, jobSecret } = this.components;
    slot.dial = new Dial(
      {
        host: address.host,
        port: address.port,
        rank,
        peer,
        secret: jobSecret,
        jobHash: this.jobHash,
        handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        pool: this.pool,
      },
      {
        accepted: (socket, route, rest) => {
          slot.dial = undefined;
          if (slot.channel !== undefined || this.stopping !== undefined) {
            // The peer's own dial got here first (only after a failure on its side; see the module
            // comment), or we are stopping: keep what we have.
            socket.destroy();
            return;
          }
          this.establish(peer, socket, route, rest);
        },
        yielded: () => {
          slot.dial = undefined;
          if (slot.channel !== undefined) return;
          const waitMs = this.options.handshakeTimeoutMs;
          slot.yieldTimer = setTimeout(() => {
            if (slot.channel !== undefined) return;
            this.failConnect(
              slot,
              new VmcommError('PEER_LOST', `rank ${peer} kept its own tcp dial to this rank, but it did not arrive within ${waitMs} ms`, {
                peer,
              }),
            );
          }, waitMs);
          slot.yieldTimer.unref();
        },
        failed: (error) => {
          slot.dial = undefined;
          if (slot.channel !== undefined) return;
          this.failConnect(slot, error);
        },
      },
    );
  }

  /** The listener's answer to an authenticated dial from `peer` (see the module comment). */
  private verdict(peer: number): Verdict {
    const slot = this.slots.get(peer);
    if (slot?.channel !== undefined) return 'lose';
    if (slot?.dial !== undefined && this.components.rank < peer) return 'lose';
    return 'accept';
  }

  /** An accepted connection (either direction) becomes `peer`'s channel. */
  private establish(peer: number, socket: net.Socket, route: ReadRoute, rest: Uint8Array): void {
    const slot = this.slots.get(peer) ?? this.newSlot(peer);
    if (!this.served.has(peer)) {
      this.components.logger?.debug(`vmcomm:tcp: rank ${peer} connected before it was assigned to tcp here`);
    }
    const endpoint = new TcpEndpoint({
      peer,
      socket,
      route,
      pool: this.pool,
      sink: this.components.sink,
      coalesceLimitBytes: this.options.coalesceLimitBytes,
      closeTimeoutMs: this.options.closeTimeoutMs,
      onLost: (_endpoint, error) => this.lost(peer, error),
      logger: this.components.logger,
    });
    slot.channel = endpoint;
    clearTimeout(slot.yieldTimer);
    const resolve = slot.resolve;
    slot.resolve = undefined;
    slot.reject = undefined;
    resolve?.(endpoint);
    if (this.stopping !== undefined) void endpoint.close();
    endpoint.feed(rest);
  }

  private lost(peer: number, error: Error): void {
    this.components.logger?.debug(`vmcomm:tcp: lost rank ${peer}: ${error.message}`);
    try {
      this.components.sink.lost(peer, error);
    } catch (err) {
      this.components.logger?.warn(`vmcomm:tcp: sink.lost(${peer}) threw: ${(err as Error).message}`);
    }
  }

  private failConnect(slot: PeerSlot, error: Error): void {
    clearTimeout(slot.yieldTimer);
    const reject = slot.reject;
    slot.connecting = undefined;
    slot.resolve = undefined;
    slot.reject = undefined;
    reject?.(error);
  }

  private newSlot(peer: number): PeerSlot {
    const slot: PeerSlot = {
      channel: undefined,
      dial: undefined,
      connecting: undefined,
      resolve: undefined,
      reject: undefined,
      yieldTimer: undefined,
    };
    this.slots.set(peer, slot);
    return slot;
  }
}
