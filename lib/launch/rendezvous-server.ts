/**
 * The job's rendezvous: the one place every rank of a job connects to, for the whole life of the job.
 * `vmcomm run` embeds one; `vmcomm rendezvous` serves one for ranks started elsewhere.
 *
 * It authenticates ranks (each joins once), completes allgather rounds (the locality-card exchange of
 * `init()`), fans out `abort` and `peer-lost` to every rank, and tells the launcher what happened
 * through events. It never hangs a rank: a round that some rank can no longer contribute to (lost,
 * finalized, or the job aborted) fails at once on every rank waiting for it.
 *
 * @example
 * ```ts
 * const server = new RendezvousServer({ size: 4, jobId, secret });
 * const address = await server.listen({ host: '127.0.0.1', port: 0 });
 * server.on('lost', (rank, reason) => console.error(`rank ${rank} lost: ${reason}`));
 * server.on('all-finalized', () => void server.close());
 * ```
 *
 * @module
 */

import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { CardValue } from '../backend.js';
import { VmcommError, type VmcommErrorCode } from '../errors.js';
import { formatRendezvousAddress, type RendezvousAddress } from './address.js';
import { JsonLineSocket } from './json-line-socket.js';
import {
  CLIENT_MESSAGE_PARSERS,
  MAX_HANDSHAKE_LINE_BYTES,
  MAX_JOB_ID_LENGTH,
  MAX_LINE_BYTES,
  MEMBER_REQUEST_PARSERS,
  MIN_SECRET_BYTES,
  RENDEZVOUS_PROTOCOL_VERSION,
  type AttachRequest,
  clientProof,
  clipReason,
  OPERATOR_RANK,
  OPERATOR_REQUEST_PARSERS,
  decodeMessage,
  encodeMessage,
  newChallenge,
  proofsEqual,
  serverProof,
  type AbortRequest,
  type AllgatherRequest,
  type AuthMessage,
  type FinalizeRequest,
  type MemberRequest,
  type ServerMessage,
} from './rendezvous-protocol.js';

export { MIN_SECRET_BYTES } from './rendezvous-protocol.js';

/** Default for {@link RendezvousServerOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** What the server knows about one rank. */
export type RankState =
  /** Has not joined yet. */
  | 'waiting'
  /** Connected and authenticated. */
  | 'joined'
  /** Sent `finalize`: its end is normal. */
  | 'finalized'
  /** Ended, or its connection broke, before it finalized (or the launcher said so). Final. */
  | 'lost';

/** Options of a {@link RendezvousServer}. */
export interface RendezvousServerOptions {
  /** Ranks in the job. */
  readonly size: number;
  /** Identifies the job; clients must present the same. */
  readonly jobId: string;
  /** The job secret (at least {@link MIN_SECRET_BYTES} bytes); never sent. */
  readonly secret: Uint8Array;
  /** A connection that has not authenticated within this many ms is closed. Default 10 000. */
  readonly handshakeTimeoutMs?: number;
  /**
   * When a joined rank's connection closes without `finalize`, wait up to this long (ms) for
   * {@link RendezvousServer.markLost} before declaring it lost with a generic reason. A launcher that
   * starts the ranks itself sees the process end at about the same moment and knows how it ended
   * ("killed by SIGKILL"), which is what the survivors should be told. Default 0: at once.
   */
  readonly lostGraceMs?: number;
}

/**
 * The server's events (for the launcher). Listeners run synchronously, after the ranks concerned
 * were told (a `lost` listener runs after the `peer-lost` fan-out was queued).
 */
export interface RendezvousServerEvents {
  /** `rank` authenticated, from `remoteAddress` (`host:port`). */
  joined: [rank: number, remoteAddress: string];
  /** `rank` sent `finalize`. */
  finalized: [rank: number];
  /** `rank` was lost before it finalized; survivors were sent `peer-lost`. */
  lost: [rank: number, reason: string];
  /** The first abort of the job (later ones change nothing); every other rank was sent `abort`. */
  abort: [code: number, fromRank: number, reason: string];
  /** Every rank of the job finalized. */
  'all-finalized': [];
  /** The connection of a rank that had joined closed (after `finalized` or `lost`, or with it). */
  disconnected: [rank: number];
  /** A connection was refused during the handshake (`AUTH`, `INVALID_ARGUMENT`, …). */
  refused: [remoteAddress: string, code: VmcommErrorCode, message: string];
  /** An operator offered `resource` to the job; it went to `ranks` ranks. */
  attach: [resource: string, ranks: number, remoteAddress: string];
}

interface Member {
  readonly rank: number;
  readonly conn: JsonLineSocket;
  readonly remote: string;
}

interface Round {
  readonly values: CardValue[];
  readonly contributed: boolean[];
  count: number;
}

interface RoundFailure {
  readonly code: VmcommErrorCode;
  readonly message: string;
  readonly rank?: number;
}

interface AbortInfo {
  readonly code: number;
  readonly fromRank: number;
  readonly reason: string;
}

/** How long a refused client gets to read the refusal before its socket is destroyed. */
const REFUSAL_LINGER_MS = 2_000;

/**
 * The rendezvous of one job of `size` ranks. See the module documentation.
 */
export class RendezvousServer extends EventEmitter<RendezvousServerEvents> {
  readonly size: number;
  readonly jobId: string;
  private readonly secret: Buffer;
  private readonly handshakeTimeoutMs: number;
  private readonly lostGraceMs: number;
  /** Ranks whose connection closed, waiting for `markLost` (see `lostGraceMs`). */
  private readonly lossTimers = new Map<number, NodeJS.Timeout>();

  private server: Server | undefined;
  private boundAddress: RendezvousAddress | undefined;
  private closing = false;

  private readonly states: RankState[];
  private readonly members: (Member | undefined)[];
  private readonly lostReasons = new Map<number, string>();
  private readonly handshakes = new Set<JsonLineSocket>();
  private finalizedCount = 0;
  private aborted: AbortInfo | undefined;

  private readonly rounds = new Map<string, Round>();
  private readonly completedRounds = new Set<string>();
  private readonly failedRounds = new Map<string, RoundFailure>();

  /**
   * What each authenticated request does. One entry per {@link MemberRequest} type: adding a message
   * type to the protocol without a handler here does not compile.
   */
  private readonly handlers: { readonly [T in MemberRequest['type']]: (member: Member, request: Extract<MemberRequest, { type: T }>) => void } = {
    allgather: (member, request) => this.onAllgather(member, request),
    abort: (member, request) => this.onAbort(member, request),
    finalize: (member, request) => this.onFinalize(member, request),
  };

  constructor(options: RendezvousServerOptions) {
    super();
    const { size, jobId, secret } = options;
    if (!Number.isSafeInteger(size) || size < 1 || size > 0x7fffffff) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer: size must be a positive integer, got ${String(size)}`);
    }
    if (typeof jobId !== 'string' || jobId.length === 0 || jobId.length > MAX_JOB_ID_LENGTH) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer: jobId must be a string of 1…${MAX_JOB_ID_LENGTH} characters`);
    }
    if (!(secret instanceof Uint8Array) || secret.byteLength < MIN_SECRET_BYTES) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer: secret must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    const timeout = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer: handshakeTimeoutMs must be a positive number of ms`);
    }
    this.size = size;
    this.jobId = jobId;
    this.secret = Buffer.from(secret);
    this.handshakeTimeoutMs = timeout;
    const lostGrace = options.lostGraceMs ?? 0;
    if (!Number.isFinite(lostGrace) || lostGrace < 0) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer: lostGraceMs must be a non-negative number of ms`);
    }
    this.lostGraceMs = lostGrace;
    this.states = new Array<RankState>(size).fill('waiting');
    this.members = new Array<Member | undefined>(size).fill(undefined);
  }

  /**
   * Starts listening. Default `127.0.0.1`, a random port. Resolves with the bound address (the real
   * port). Rejects with `INVALID_ARGUMENT` when the address cannot be bound (in use, not local).
   * Call once.
   */
  async listen(options: { host?: string; port?: number } = {}): Promise<RendezvousAddress> {
    if (this.server !== undefined) throw new VmcommError('INVALID_ARGUMENT', 'RendezvousServer.listen() was already called');
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer.listen: port must be an integer in 0…65535, got ${String(port)}`);
    }
    const server = createServer((socket) => this.onConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(
          new VmcommError('INVALID_ARGUMENT', `the rendezvous cannot listen on ${formatRendezvousAddress({ host, port })}: ${error.message}`, {
            cause: error,
          }),
        );
      };
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    // After listening, errors are failed accepts (EMFILE and the like): the client sees its connect
    // fail or time out and retries; the server itself is fine.
    server.on('error', () => undefined);
    const bound = server.address() as AddressInfo;
    this.boundAddress = { host: bound.address, port: bound.port };
    return this.boundAddress;
  }

  /** The bound address once {@link listen} resolved. */
  get address(): RendezvousAddress | undefined {
    return this.boundAddress;
  }

  /** What the server knows about `rank`. */
  stateOf(rank: number): RankState {
    this.checkRank(rank, 'stateOf');
    return this.states[rank];
  }

  /** The first abort of the job, if any. */
  get abortInfo(): { readonly code: number; readonly fromRank: number; readonly reason: string } | undefined {
    return this.aborted;
  }

  /** Ranks whose connection is open (joined or finalized and not yet disconnected). */
  get connectedCount(): number {
    let n = 0;
    for (const m of this.members) if (m !== undefined) n += 1;
    return n;
  }

  /**
   * The launcher knows `rank` is gone (its process ended before it finalized): mark it lost, close its
   * connection if still open, send `peer-lost` to every other rank and fail the rounds it had not
   * contributed to. Returns `false` (and does nothing) when the rank already finalized or was lost.
   * Works for a rank that never joined, too (a later join attempt is refused).
   */
  markLost(rank: number, reason: string): boolean {
    this.checkRank(rank, 'markLost');
    return this.loseRank(rank, clipReason(reason));
  }

  /**
   * Aborts the job from outside the ranks (the launcher's own shutdown): every rank is sent
   * `abort { code, fromRank: -1, reason }`. Like a rank's abort, only the first abort counts.
   */
  abort(code: number, reason: string): void {
    if (!Number.isInteger(code)) throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer.abort: code must be an integer`);
    this.startAbort(code, -1, clipReason(reason), undefined);
  }

  /** Stops listening and closes every connection (without further events). Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const timer of this.lossTimers.values()) clearTimeout(timer);
    this.lossTimers.clear();
    for (const conn of this.handshakes) conn.destroy();
    this.handshakes.clear();
    for (const member of this.members) member?.conn.destroy();
    const server = this.server;
    if (server === undefined || !server.listening) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // -------------------------------------------------------------------------------------------------
  // Connections and the handshake

  private onConnection(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const remote = formatRendezvousAddress({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 });
    const challenge = newChallenge();
    let member: Member | undefined;
    let operator: ((line: string) => void) | undefined;
    let refused = false;
    const conn: JsonLineSocket = new JsonLineSocket(socket, MAX_HANDSHAKE_LINE_BYTES, {
      line: (line) => {
        if (member !== undefined) this.onMemberLine(member, line);
        else if (operator !== undefined) operator(line);
        else if (!refused) {
          const outcome = this.authenticate(challenge, line);
          if (typeof outcome === 'object' && 'refuse' in outcome) {
            refused = true;
            this.refuse(conn, remote, outcome.refuse, outcome.message);
          } else if (outcome.rank === OPERATOR_RANK) {
            operator = this.operate(conn, remote, outcome);
          } else {
            member = this.admit(conn, remote, outcome);
          }
        }
      },
      closed: (error) => {
        this.handshakes.delete(conn);
        if (member !== undefined) this.onMemberClosed(member, error);
      },
    });
    this.handshakes.add(conn);
    socket.setTimeout(this.handshakeTimeoutMs, () => {
      if (member !== undefined || refused) return;
      refused = true;
      this.refuse(conn, remote, 'AUTH', `no authentication within ${this.handshakeTimeoutMs / 1000} s`);
    });
    conn.write(encodeMessage({ type: 'hello', protocol: RENDEZVOUS_PROTOCOL_VERSION, challenge } satisfies ServerMessage));
  }

  /** Checks an `auth` line; returns the accepted request or why it is refused. */
  private authenticate(challenge: string, line: string): AuthMessage | { refuse: VmcommErrorCode; message: string } {
    let auth: AuthMessage;
    try {
      auth = decodeMessage<AuthMessage>(line, { auth: CLIENT_MESSAGE_PARSERS.auth });
    } catch (error) {
      return { refuse: 'CORRUPT', message: (error as Error).message };
    }
    if (auth.protocol !== RENDEZVOUS_PROTOCOL_VERSION) {
      return {
        refuse: 'UNSUPPORTED',
        message:
          `the client speaks rendezvous protocol ${auth.protocol}, this launcher speaks ${RENDEZVOUS_PROTOCOL_VERSION}; ` +
          `run the ranks and the launcher from the same vmcomm version`,
      };
    }
    // The proof first: a client without the secret learns nothing about the job (size, ranks taken).
    if (!proofsEqual(clientProof(this.secret, challenge, auth.rank, auth.jobId), auth.proof)) {
      return {
        refuse: 'AUTH',
        message: `the client could not prove it holds the job secret (VMCOMM_JOB_SECRET differs from the launcher's)`,
      };
    }
    if (auth.jobId !== this.jobId) {
      return { refuse: 'AUTH', message: `the client belongs to job ${JSON.stringify(auth.jobId)}, this rendezvous serves job ${JSON.stringify(this.jobId)} (check VMCOMM_JOB_ID)` };
    }
    // An operator tool (`vmcomm ivshmem attach`) is no rank: it may send one attach, nothing else.
    if (auth.rank === OPERATOR_RANK) return this.closing ? { refuse: 'ABORTED', message: 'the rendezvous is shutting down' } : auth;
    if (auth.size !== this.size) {
      return { refuse: 'INVALID_ARGUMENT', message: `the job has ${this.size} ranks but the client says VMCOMM_SIZE=${auth.size}` };
    }
    if (auth.rank >= this.size) {
      return { refuse: 'INVALID_ARGUMENT', message: `rank ${auth.rank} is out of range: VMCOMM_RANK must be 0…${this.size - 1}` };
    }
    if (this.closing) return { refuse: 'ABORTED', message: 'the rendezvous is shutting down' };
    const state = this.states[auth.rank];
    if (state === 'joined' || state === 'finalized') {
      const from = this.members[auth.rank]?.remote;
      return {
        refuse: 'INVALID_ARGUMENT',
        message: `rank ${auth.rank} has already joined${from === undefined ? '' : ` (from ${from})`}; each rank joins once — did two processes get the same VMCOMM_RANK?`,
      };
    }
    if (state === 'lost') {
      return { refuse: 'PEER_LOST', message: `rank ${auth.rank} was already declared lost: ${this.lostReasons.get(auth.rank) ?? ''}` };
    }
    return auth;
  }

  private refuse(conn: JsonLineSocket, remote: string, code: VmcommErrorCode, message: string): void {
    // It stays in `handshakes` until it closes, so close() does not wait for the linger below.
    conn.end(encodeMessage({ type: 'refused', code, message } satisfies ServerMessage));
    // A client that does not close its end would keep the socket half-open.
    setTimeout(() => conn.destroy(), REFUSAL_LINGER_MS).unref();
    this.emit('refused', remote, code, message);
  }

  private admit(conn: JsonLineSocket, remote: string, auth: AuthMessage): Member {
    this.handshakes.delete(conn);
    const socket = conn.socket;
    socket.setTimeout(0);
    // Keepalive finds a rank whose host vanished (no FIN ever comes) in a multi-host job.
    socket.setKeepAlive(true, 10_000);
    conn.setMaxLineBytes(MAX_LINE_BYTES);
    const member: Member = { rank: auth.rank, conn, remote };
    this.states[auth.rank] = 'joined';
    this.members[auth.rank] = member;
    conn.write(encodeMessage({ type: 'welcome', proof: serverProof(this.secret, auth.challenge, auth.rank, this.jobId) } satisfies ServerMessage));
    // A late joiner learns what the others already know.
    for (const [rank, reason] of this.lostReasons) conn.write(encodeMessage({ type: 'peer-lost', rank, reason } satisfies ServerMessage));
    if (this.aborted !== undefined) conn.write(encodeMessage({ type: 'abort', ...this.aborted } satisfies ServerMessage));
    this.emit('joined', auth.rank, remote);
    return member;
  }

  /**
   * An authenticated operator: its one `attach` goes to every rank that joined and has not finalized
   * (each rank's world offers it to its transports), then it is told how many, and closed.
   */
  private operate(conn: JsonLineSocket, remote: string, auth: AuthMessage): (line: string) => void {
    conn.setMaxLineBytes(MAX_LINE_BYTES); // a path may be longer than a handshake line
    conn.write(encodeMessage({ type: 'welcome', proof: serverProof(this.secret, auth.challenge, auth.rank, this.jobId) } satisfies ServerMessage));
    let done = false;
    return (line) => {
      if (done) return;
      done = true;
      // A malformed request throws CORRUPT: the socket wrapper closes the connection with it.
      const request = decodeMessage<AttachRequest>(line, OPERATOR_REQUEST_PARSERS);
      let ranks = 0;
      for (const m of this.members) {
        if (m === undefined || this.states[m.rank] !== 'joined') continue;
        m.conn.write(encodeMessage({ type: 'attach', resource: request.resource } satisfies ServerMessage));
        ranks++;
      }
      this.emit('attach', request.resource, ranks, remote);
      conn.end(encodeMessage({ type: 'attach-sent', ranks } satisfies ServerMessage));
    };
  }

  // -------------------------------------------------------------------------------------------------
  // Members

  private onMemberLine(member: Member, line: string): void {
    // A malformed request throws CORRUPT; the socket wrapper then closes the connection with it, and
    // the rank is lost with that reason (a rank speaking garbage cannot be trusted to take part).
    const request = decodeMessage<MemberRequest>(line, MEMBER_REQUEST_PARSERS);
    const handler = this.handlers[request.type] as (member: Member, request: MemberRequest) => void;
    handler(member, request);
  }

  private onMemberClosed(member: Member, error: Error | undefined): void {
    if (this.members[member.rank] === member) this.members[member.rank] = undefined;
    if (this.closing) return;
    if (this.states[member.rank] === 'joined') {
      const { rank } = member;
      const reason =
        error === undefined
          ? `rank ${rank} closed its connection to the rendezvous before finalize (its process probably ended)`
          : `rank ${rank}'s connection to the rendezvous broke before finalize: ${error.message}`;
      // A protocol violation (a VmcommError) is the best reason there is; a plain close or reset is
      // usually a process that ended, which the launcher can describe better.
      if (this.lostGraceMs > 0 && !(error instanceof VmcommError)) {
        this.lossTimers.set(
          rank,
          setTimeout(() => this.loseRank(rank, reason), this.lostGraceMs),
        );
      } else {
        this.loseRank(rank, reason);
      }
    }
    this.emit('disconnected', member.rank);
  }

  private onAllgather(member: Member, request: AllgatherRequest): void {
    const { rank } = member;
    const { round } = request;
    if (this.states[rank] === 'finalized') {
      this.sendFailure(member, round, { code: 'FINALIZED', message: `rank ${rank} already finalized; it cannot take part in round '${round}'` });
      return;
    }
    const pending = this.rounds.get(round);
    if (this.completedRounds.has(round) || pending?.contributed[rank] === true) {
      this.sendFailure(member, round, {
        code: 'INVALID_ARGUMENT',
        message: `rank ${rank} contributed to allgather round '${round}' twice; each round name is used once`,
      });
      return;
    }
    const failed = this.failedRounds.get(round);
    if (failed !== undefined) {
      this.sendFailure(member, round, failed);
      return;
    }
    const entry: Round = pending ?? { values: new Array<CardValue>(this.size).fill(null), contributed: new Array<boolean>(this.size).fill(false), count: 0 };
    if (pending === undefined) this.rounds.set(round, entry);
    entry.values[rank] = request.value;
    entry.contributed[rank] = true;
    entry.count += 1;
    this.settle(round, entry);
  }

  private onAbort(member: Member, request: AbortRequest): void {
    this.startAbort(request.code, member.rank, request.reason, member.rank);
  }

  private onFinalize(member: Member, _request: FinalizeRequest): void {
    const { rank } = member;
    const first = this.states[rank] === 'joined';
    if (first) {
      this.states[rank] = 'finalized';
      this.finalizedCount += 1;
    }
    member.conn.write(encodeMessage({ type: 'finalize-ack' } satisfies ServerMessage));
    if (!first) return;
    this.emit('finalized', rank);
    this.settleAll();
    if (this.finalizedCount === this.size) this.emit('all-finalized');
  }

  // -------------------------------------------------------------------------------------------------
  // Failure

  private loseRank(rank: number, reason: string): boolean {
    const timer = this.lossTimers.get(rank);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.lossTimers.delete(rank);
    }
    const state = this.states[rank];
    if (state === 'finalized' || state === 'lost') return false;
    this.states[rank] = 'lost';
    this.lostReasons.set(rank, reason);
    // Its socket, if still open, is dead weight now; its 'close' only reports `disconnected`.
    this.members[rank]?.conn.destroy();
    this.broadcast(encodeMessage({ type: 'peer-lost', rank, reason } satisfies ServerMessage), rank);
    this.settleAll();
    this.emit('lost', rank, reason);
    return true;
  }

  private startAbort(code: number, fromRank: number, reason: string, except: number | undefined): void {
    if (this.aborted !== undefined) return;
    this.aborted = { code, fromRank, reason };
    this.broadcast(encodeMessage({ type: 'abort', code, fromRank, reason } satisfies ServerMessage), except);
    this.settleAll();
    this.emit('abort', code, fromRank, reason);
  }

  private broadcast(line: string, except: number | undefined): void {
    for (const member of this.members) {
      if (member !== undefined && member.rank !== except && this.states[member.rank] !== 'lost') member.conn.write(line);
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Rounds

  private settleAll(): void {
    for (const [round, entry] of [...this.rounds]) this.settle(round, entry);
  }

  /** Completes `round` when everyone contributed, fails it when someone never will. */
  private settle(round: string, entry: Round): void {
    if (this.aborted !== undefined) {
      const { code, fromRank, reason } = this.aborted;
      const by = fromRank === -1 ? 'the launcher' : `rank ${fromRank}`;
      this.failRound(round, entry, { code: 'ABORTED', message: `the job was aborted by ${by} with code ${code}: ${reason}` });
      return;
    }
    if (this.lostReasons.size + this.finalizedCount > 0) {
      for (let rank = 0; rank < this.size; rank += 1) {
        if (entry.contributed[rank]) continue;
        const state = this.states[rank];
        if (state === 'lost') {
          this.failRound(round, entry, {
            code: 'PEER_LOST',
            message: `rank ${rank} was lost before it contributed to round '${round}': ${this.lostReasons.get(rank) ?? ''}`,
            rank,
          });
          return;
        }
        if (state === 'finalized') {
          this.failRound(round, entry, {
            code: 'PEER_LOST',
            message: `rank ${rank} finalized without contributing to round '${round}'`,
            rank,
          });
          return;
        }
      }
    }
    if (entry.count < this.size) return;
    let line: string;
    try {
      line = encodeMessage({ type: 'allgather-result', round, values: entry.values } satisfies ServerMessage);
    } catch (error) {
      this.failRound(round, entry, { code: 'INVALID_ARGUMENT', message: `allgather round '${round}': ${(error as Error).message}` });
      return;
    }
    this.rounds.delete(round);
    this.completedRounds.add(round);
    // One encoding, written to every rank.
    for (const member of this.members) if (member !== undefined) member.conn.write(line);
  }

  private failRound(round: string, entry: Round, failure: RoundFailure): void {
    this.rounds.delete(round);
    const clipped = { ...failure, message: clipReason(failure.message) };
    this.failedRounds.set(round, clipped);
    for (let rank = 0; rank < this.size; rank += 1) {
      const member = this.members[rank];
      if (entry.contributed[rank] && member !== undefined) this.sendFailure(member, round, clipped);
    }
  }

  private sendFailure(member: Member, round: string, failure: RoundFailure): void {
    const message = { type: 'allgather-failed', round, code: failure.code, message: failure.message } as const;
    member.conn.write(encodeMessage(failure.rank === undefined ? message : { ...message, rank: failure.rank }));
  }

  private checkRank(rank: number, method: string): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.size) {
      throw new VmcommError('INVALID_ARGUMENT', `RendezvousServer.${method}: rank must be an integer in 0…${this.size - 1}, got ${String(rank)}`);
    }
  }
}
