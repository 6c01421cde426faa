/**
 * The listening side: a `net.Server` bound to this rank's published address only, and the listener
 * half of the handshake for every inbound connection.
 *
 * A stranger — no secret, another job, a rank outside the world, garbage, or silence — is answered
 * with a short refusal (or, when silent, dropped at the handshake timeout), logged through
 * `logger.warn`, and never reaches the transport: no peer is reported lost because of it.
 *
 * @module
 */

import net from 'node:net';
import type { Logger } from '../../lib/backend.js';
import {
  MessageAssembler,
  checkAuth,
  helloMessage,
  newChallenge,
  refusalMessage,
  verdictMessage,
  type Refusal,
  type Verdict,
} from './handshake.js';
import { ReadRoute, adoptAcceptedSocket, type ReadHandler } from './socket-reads.js';

/** What the listener needs to know. */
export interface ListenerOptions {
  readonly address: string;
  /** 0: the system picks one. */
  readonly port: number;
  readonly rank: number;
  readonly size: number;
  readonly secret: Uint8Array;
  readonly jobHash: Buffer;
  /** An inbound connection must authenticate within this time. */
  readonly handshakeTimeoutMs: number;
  /** Where handshake reads land (the transport's shared read pool). */
  readonly pool: Uint8Array;
  readonly logger?: Logger;
}

/** How the transport takes part in accepting. Both calls are synchronous. */
export interface ListenerEvents {
  /** `peer` proved the secret: keep this connection, or yield to this rank's own dial? */
  verdict(peer: number): Verdict;
  /**
   * The verdict was accept and has been sent: `socket` now carries frames and reads through `route`;
   * `rest` holds bytes that followed the handshake in the same read (valid only during the call).
   */
  adopt(peer: number, socket: net.Socket, route: ReadRoute, rest: Uint8Array): void;
}

/** Accepts and authenticates inbound connections. */
export class TcpListener {
  private readonly server: net.Server;
  private readonly handshakes = new Set<InboundHandshake>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly options: ListenerOptions,
    private readonly events: ListenerEvents,
  ) {
    // pauseOnConnect: nothing is read before the socket is re-wrapped with `onread` (socket-reads.ts).
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.onConnection(socket));
  }

  /** Binds to `address:port` (that address only); resolves with the port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.options.address, port: this.options.port, exclusive: true }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.options.logger?.warn(`vmcomm:tcp: listener error: ${err.message}`));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting and drops connections still in their handshake. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise((resolve) => {
      for (const h of this.handshakes) h.drop();
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private onConnection(accepted: net.Socket): void {
    if (this.closing !== undefined) {
      accepted.destroy();
      return;
    }
    const handshake = new InboundHandshake(this.options, this.events, this.handshakes);
    const route = new ReadRoute(handshake);
    handshake.start(adoptAcceptedSocket(accepted, route), route);
  }
}

const AWAIT_AUTH = 0;
const ANSWERED = 1;

/** The listener half of one connection's handshake. */
class InboundHandshake implements ReadHandler {
  private readonly messages = new MessageAssembler();
  private readonly challenge = newChallenge();
  private stage: typeof AWAIT_AUTH | typeof ANSWERED = AWAIT_AUTH;
  private socket!: net.Socket;
  private route!: ReadRoute;
  private timer: NodeJS.Timeout | undefined;
  private remote = 'an unknown address';
  /** Handed to the transport: from then on the socket's events are the endpoint's business. */
  private adopted = false;

  constructor(
    private readonly options: ListenerOptions,
    private readonly events: ListenerEvents,
    private readonly registry: Set<InboundHandshake>,
  ) {}

  start(socket: net.Socket, route: ReadRoute): void {
    this.socket = socket;
    this.route = route;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.registry.add(this);
    socket.setNoDelay(true);
    socket.on('error', (err) => {
      if (!this.adopted) this.log(`connection from ${this.remote} failed during the handshake: ${err.message}`);
    });
    socket.on('close', () => this.finish());
    // Also covers a refused or yielding connection whose dialer never closes its end.
    this.timer = setTimeout(() => {
      if (this.stage === AWAIT_AUTH) this.warn(`connection from ${this.remote} did not authenticate within ${this.options.handshakeTimeoutMs} ms`);
      socket.destroy();
    }, this.options.handshakeTimeoutMs);
    this.timer.unref();
    socket.write(helloMessage(this.challenge));
  }

  /** The listener closes: abandon this connection. */
  drop(): void {
    if (this.stage === AWAIT_AUTH) this.refuse('stopping', 'this rank is shutting down', false);
    else this.socket.destroy();
  }

  buffer(): Uint8Array {
    return this.options.pool;
  }

  read(bytes: number): void {
    if (this.stage !== AWAIT_AUTH) return; // after an answer nothing more is expected: ignore it
    const pool = this.options.pool;
    const taken = this.messages.push(pool, 0, bytes);
    if (typeof taken === 'string') return this.refuse('malformed', `it sent ${taken}`, true);
    const body = this.messages.message;
    if (body === undefined) return;
    const checked = checkAuth(body, {
      secret: this.options.secret,
      jobHash: this.options.jobHash,
      listenerRank: this.options.rank,
      size: this.options.size,
      listenerChallenge: this.challenge,
    });
    if ('refusal' in checked) return this.refuse(checked.refusal, checked.why, true);
    const peer = checked.context.dialerRank;
    const verdict = this.events.verdict(peer);
    this.stage = ANSWERED;
    this.socket.write(verdictMessage(checked.context, verdict));
    if (verdict === 'lose') {
      this.log(`rank ${peer} dialed, but this rank keeps its own connection to it: answered LOSE`);
      this.socket.end();
      return;
    }
    this.finish();
    this.adopted = true;
    this.events.adopt(peer, this.socket, this.route, pool.subarray(taken, bytes));
  }

  private refuse(refusal: Refusal, why: string, warn: boolean): void {
    this.stage = ANSWERED;
    if (warn) this.warn(`refused a connection from ${this.remote}: ${why}`);
    this.socket.end(refusalMessage(refusal));
  }

  /** The handshake is over (adopted, or the socket closed): release the timer and the registry slot. */
  private finish(): void {
    clearTimeout(this.timer);
    this.registry.delete(this);
  }

  private warn(message: string): void {
    this.options.logger?.warn(`vmcomm:tcp: ${message}`);
  }

  private log(message: string): void {
    this.options.logger?.debug(`vmcomm:tcp: ${message}`);
  }
}
