/**
 * The dialing side of one tcp connection: connect, answer the listener's challenge, check its proof,
 * and report exactly one outcome — accepted, yielded to the peer's own dial, or failed.
 *
 * @module
 */

import net from 'node:net';
import { VmcommError } from '../../lib/errors.js';
import {
  MessageAssembler,
  authMessage,
  newChallenge,
  parseAnswer,
  parseHello,
  type HandshakeContext,
  type Refusal,
} from './handshake.js';
import { ReadRoute, type ReadHandler } from './socket-reads.js';

/** Where and as whom to dial. */
export interface DialOptions {
  readonly host: string;
  readonly port: number;
  /** This rank. */
  readonly rank: number;
  /** The rank expected at `host:port`. */
  readonly peer: number;
  readonly secret: Uint8Array;
  readonly jobHash: Buffer;
  /** Connect plus handshake must finish within this time. */
  readonly handshakeTimeoutMs: number;
  /** Where handshake reads land (the transport's shared read pool). */
  readonly pool: Uint8Array;
}

/** The outcome of a dial. Exactly one is called, once. */
export interface DialEvents {
  /**
   * The listener accepted: `socket` now carries frames and reads through `route`. `rest` holds bytes
   * that arrived after the verdict in the same read (the first frames); it is valid only during the
   * call, so it must be consumed synchronously.
   */
  accepted(socket: net.Socket, route: ReadRoute, rest: Uint8Array): void;
  /** The listener's own dial to us wins (simultaneous dial); this connection is already closed. */
  yielded(): void;
  /**
   * The dial failed: `AUTH` when the listener refused us, failed to prove the secret or sent anything
   * but a vmcomm handshake; else (unreachable, closed, silent, shutting down) `PEER_LOST`.
   */
  failed(error: VmcommError): void;
}

const AWAIT_HELLO = 0;
const AWAIT_ANSWER = 1;
const SETTLED = 2;

/** One outbound connection attempt; starts in the constructor. */
export class Dial implements ReadHandler {
  private readonly socket: net.Socket;
  private readonly route: ReadRoute;
  private readonly messages = new MessageAssembler();
  private readonly timer: NodeJS.Timeout;
  private stage: typeof AWAIT_HELLO | typeof AWAIT_ANSWER | typeof SETTLED = AWAIT_HELLO;
  private context: HandshakeContext | undefined;

  constructor(
    private readonly options: DialOptions,
    private readonly events: DialEvents,
  ) {
    this.route = new ReadRoute(this);
    this.socket = net.connect({ host: options.host, port: options.port, noDelay: true, onread: this.route.onread });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.fail('PEER_LOST', `cannot reach it: ${err.message}`, err));
    this.socket.on('close', () => this.fail('PEER_LOST', 'it closed the connection during the handshake'));
    this.timer = setTimeout(() => {
      this.fail('PEER_LOST', `no handshake within ${options.handshakeTimeoutMs} ms`);
    }, options.handshakeTimeoutMs);
    this.timer.unref();
  }

  /** Gives up (the transport stops); reports `failed(error)` unless already settled. */
  abort(error: VmcommError): void {
    if (this.stage === SETTLED) return;
    this.settle();
    this.socket.destroy();
    this.events.failed(error);
  }

  buffer(): Uint8Array {
    return this.options.pool;
  }

  read(bytes: number): void {
    const pool = this.options.pool;
    let at = 0;
    while (at < bytes && this.stage !== SETTLED) {
      const taken = this.messages.push(pool, at, bytes);
      // Garbage where a handshake message belongs is a failure to authenticate (AUTH), in either stage:
      // whatever answers at that address did not prove it is a rank of this job.
      if (typeof taken === 'string') return this.fail('AUTH', `it is not a vmcomm tcp listener (${taken})`);
      at += taken;
      const body = this.messages.message;
      if (body === undefined) continue;
      if (this.stage === AWAIT_HELLO) {
        const hello = parseHello(body);
        if (typeof hello === 'string') return this.fail('AUTH', `it is not a vmcomm tcp listener (${hello})`);
        this.context = {
          secret: this.options.secret,
          jobHash: this.options.jobHash,
          dialerRank: this.options.rank,
          listenerRank: this.options.peer,
          listenerChallenge: hello.listenerChallenge,
          dialerChallenge: newChallenge(),
        };
        this.socket.write(authMessage(this.context));
        this.stage = AWAIT_ANSWER;
      } else {
        this.answer(parseAnswer(body, this.context!), pool.subarray(at, bytes));
        return;
      }
    }
  }

  private answer(answer: ReturnType<typeof parseAnswer>, rest: Uint8Array): void {
    if (typeof answer === 'string') return this.fail('AUTH', answer);
    if ('refusal' in answer) {
      if (answer.refusal === 'stopping') return this.fail('PEER_LOST', 'it is shutting down');
      return this.fail('AUTH', `it refused this rank (${refusalText(answer.refusal)})`);
    }
    this.settle();
    if (answer.verdict === 'lose') {
      this.socket.destroy();
      this.events.yielded();
    } else {
      this.events.accepted(this.socket, this.route, rest);
    }
  }

  private fail(code: 'AUTH' | 'PEER_LOST', why: string, cause?: Error): void {
    if (this.stage === SETTLED) return;
    this.settle();
    this.socket.destroy();
    const { host, port, peer } = this.options;
    const advice =
      code === 'AUTH'
        ? 'check that every rank of the job got the same job secret (VMCOMM_JOB_SECRET) and job id, and that no other program took the address the rank published'
        : 'the rank exited, or its address is not reachable from here';
    this.events.failed(
      new VmcommError(code, `tcp connection to rank ${peer} at ${host}:${port} failed: ${why}; ${advice}`, {
        cause,
        peer,
      }),
    );
  }

  private settle(): void {
    this.stage = SETTLED;
    clearTimeout(this.timer);
  }
}

function refusalText(refusal: Refusal | 'unknown'): string {
  switch (refusal) {
    case 'auth':
      return 'this rank could not prove the job secret';
    case 'job':
      return 'it belongs to another job';
    case 'rank':
      return 'the ranks do not match: stale address, or a rank outside the world';
    case 'malformed':
      return 'malformed handshake';
    default:
      return 'unknown reason';
  }
}
