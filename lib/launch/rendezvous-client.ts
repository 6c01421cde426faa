/**
 * A rank's side of the rendezvous: the {@link Bootstrap} that `init()` uses when the rank was started
 * by `vmcomm run`, or by hand with the `VMCOMM_*` variables (see `environment.ts`).
 *
 * ## Liveness
 *
 * The socket is referenced only while a request is outstanding (an `allgather`, an `abort` being
 * flushed, a `finalize` waiting for its acknowledgement), and unreferenced otherwise. An idle
 * rendezvous connection therefore never keeps a finished program alive, while a pending `allgather`
 * does keep the process running even before the core took its own handle. The core holds its own
 * referenced handle from `init()` to `finalize()` (DESIGN §3) for everything else.
 *
 * ## Losing the launcher
 *
 * When the connection breaks without `finalize()` (the launcher was killed, the network failed),
 * pending allgathers reject with `PEER_LOST` and the listener's `abort(1, -1, 'lost the connection to
 * the launcher …')` is called: without its launcher the job cannot fail over or be aborted any more,
 * and a rank that kept running would be an orphan.
 *
 * @module
 */

import { connect as netConnect, type Socket } from 'node:net';
import type { Bootstrap, BootstrapEvents } from '../bootstrap.js';
import type { CardValue } from '../backend.js';
import { VmcommError, isVmcommError } from '../errors.js';
import { formatRendezvousAddress } from './address.js';
import { JsonLineSocket } from './json-line-socket.js';
import {
  MAX_HANDSHAKE_LINE_BYTES,
  MAX_JOB_ID_LENGTH,
  MAX_LINE_BYTES,
  MAX_ROUND_LENGTH,
  MIN_SECRET_BYTES,
  RENDEZVOUS_PROTOCOL_VERSION,
  SERVER_MESSAGE_PARSERS,
  clientProof,
  clipReason,
  decodeMessage,
  encodeMessage,
  newChallenge,
  proofsEqual,
  serverProof,
  type AbortNotice,
  type AttachSentNotice,
  MAX_RESOURCE_LENGTH,
  OPERATOR_RANK,
  type AllgatherFailedNotice,
  type AllgatherResultNotice,
  type ClientMessage,
  type FinalizeAckNotice,
  type HelloMessage,
  type PeerLostNotice,
  type RefusedMessage,
  type ServerNotice,
  type WelcomeMessage,
} from './rendezvous-protocol.js';

/** Default for {@link RendezvousConnectOptions.timeoutMs}. */
export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 30_000;
/** How long {@link RendezvousClient.abort} waits for its message to be flushed. */
const ABORT_FLUSH_MS = 5_000;

/** Where and who: everything a rank needs to join its job. */
export interface RendezvousConnectOptions {
  /** The rendezvous host (IPv4/IPv6 literal or name). */
  readonly host: string;
  /** The rendezvous port. */
  readonly port: number;
  /** This rank, 0 … size−1. */
  readonly rank: number;
  /** Ranks in the job. */
  readonly size: number;
  /** The job id (the same on every rank). */
  readonly jobId: string;
  /** The job secret (at least 16 bytes); never sent. */
  readonly secret: Uint8Array;
  /**
   * Time (ms) for reaching the rendezvous and authenticating — a refused connection is retried
   * until then, so ranks may start before the rendezvous listens — and for `finalize()`'s
   * acknowledgement. Default 30 000.
   */
  readonly timeoutMs?: number;
}

type ClientState =
  /** Joined; requests allowed. */
  | { readonly kind: 'open' }
  /** `finalize()` was called; waiting for the acknowledgement. */
  | { readonly kind: 'finalizing' }
  /** The connection is gone; `error` is what requests now reject with. */
  | { readonly kind: 'closed'; readonly error: VmcommError };

interface PendingRound {
  resolve(values: CardValue[]): void;
  reject(error: VmcommError): void;
}

/** A notice waiting for {@link RendezvousClient.listen}. */
type QueuedEvent =
  | { readonly kind: 'peerLost'; readonly rank: number; readonly reason: string }
  | { readonly kind: 'abort'; readonly code: number; readonly fromRank: number; readonly reason: string }
  | { readonly kind: 'attach'; readonly resource: string };

/**
 * A connected, authenticated rank. Build it with {@link RendezvousClient.connect}.
 */
export class RendezvousClient implements Bootstrap {
  readonly rank: number;
  readonly size: number;
  readonly jobId: string;
  readonly secret: Uint8Array;
  /** The local address of the connection to the rendezvous: what this rank binds and publishes. */
  readonly address: string;
  /** `host:port` of the rendezvous, for messages. */
  readonly rendezvous: string;

  private readonly conn: JsonLineSocket;
  private readonly timeoutMs: number;
  private state: ClientState = { kind: 'open' };
  private readonly pending = new Map<string, PendingRound>();
  private readonly usedRounds = new Set<string>();
  private events: BootstrapEvents | undefined;
  private readonly queued: QueuedEvent[] = [];
  /** Outstanding requests that must keep the socket referenced. */
  private holds = 0;
  private aborting = false;
  private finalizing: Promise<void> | undefined;
  private finalizeAck: (() => void) | undefined;
  private failFinalize: ((error: VmcommError) => void) | undefined;

  /**
   * What each server notice does. One entry per {@link ServerNotice} type: adding a notice to the
   * protocol without a handler here does not compile.
   */
  private readonly handlers: { readonly [T in ServerNotice['type']]: (notice: Extract<ServerNotice, { type: T }>) => void } = {
    'allgather-result': (n) => this.onResult(n),
    'allgather-failed': (n) => this.onFailed(n),
    abort: (n) => this.onAbortNotice(n),
    'peer-lost': (n) => this.onPeerLost(n),
    attach: (n) => this.emitEvent({ kind: 'attach', resource: n.resource }),
    'finalize-ack': (n) => this.onFinalizeAck(n),
  };

  private constructor(options: Required<RendezvousConnectOptions>, socket: Socket, handshake: JsonLineHandshake) {
    this.rank = options.rank;
    this.size = options.size;
    this.jobId = options.jobId;
    this.secret = new Uint8Array(options.secret);
    this.timeoutMs = options.timeoutMs;
    this.rendezvous = formatRendezvousAddress(options);
    this.address = socket.localAddress ?? '127.0.0.1';
    this.conn = handshake.conn;
    handshake.handOver({
      line: (line) => this.onLine(line),
      closed: (error) => this.onClosed(error),
    });
    socket.unref();
  }

  /**
   * Connects to the rendezvous and authenticates (mutually: the rendezvous must prove it knows the
   * secret too). Rejects with `INVALID_ARGUMENT` for bad options, `AUTH` when either side cannot
   * prove the secret (or the job id differs), `TIMEOUT` when the rendezvous cannot be reached in
   * time, and with the refusal's own code otherwise (`INVALID_ARGUMENT` for a rank out of range or
   * taken, `PEER_LOST` for a rank already declared lost).
   */
  static async connect(options: RendezvousConnectOptions): Promise<RendezvousClient> {
    const resolved = validateOptions(options);
    const deadline = Date.now() + resolved.timeoutMs;
    const where = formatRendezvousAddress(resolved);
    let lastError: Error | undefined;
    for (let attempt = 0; ; attempt += 1) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new VmcommError(
          'TIMEOUT',
          `rank ${resolved.rank} could not join the rendezvous at ${where} within ${resolved.timeoutMs / 1000} s` +
            `${lastError === undefined ? '' : ` (last error: ${lastError.message})`}; is the launcher running and VMCOMM_RENDEZVOUS right?`,
          lastError === undefined ? undefined : { cause: lastError },
        );
      }
      try {
        const { socket, handshake } = await handshakeOnce(resolved, remaining);
        return new RendezvousClient(resolved, socket, handshake);
      } catch (error) {
        if (isVmcommError(error)) throw error;
        if (!isRetryable(error)) {
          const code = (error as { code?: unknown }).code === 'ENOTFOUND' ? 'INVALID_ARGUMENT' : 'PEER_LOST';
          throw new VmcommError(code, `rank ${resolved.rank} could not reach the rendezvous at ${where}: ${(error as Error).message}`, { cause: error });
        }
        lastError = error as Error;
      }
      // Refused or reset: the rendezvous may not listen yet. Back off (50 ms, doubling, ≤ 1 s).
      await sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt, 5), Math.max(0, deadline - Date.now())));
    }
  }

  /** See {@link Bootstrap.listen}. Throws `INVALID_ARGUMENT` when called twice. */
  listen(events: BootstrapEvents): void {
    if (this.events !== undefined) throw new VmcommError('INVALID_ARGUMENT', 'RendezvousClient.listen() may be called once');
    this.events = events;
    if (this.queued.length > 0) {
      // Notices that arrived before listen() (a peer already lost when this rank joined) are delivered
      // on the next tick, never from inside listen().
      const queued = this.queued.splice(0);
      process.nextTick(() => {
        for (const event of queued) this.deliver(event);
      });
    }
  }

  /** See {@link Bootstrap.allgather}. */
  allgather(round: string, value: CardValue): Promise<CardValue[]> {
    if (typeof round !== 'string' || round.length === 0 || round.length > MAX_ROUND_LENGTH) {
      return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round must be a string of 1…${MAX_ROUND_LENGTH} characters`));
    }
    if (this.state.kind === 'closed') return Promise.reject(this.state.error);
    if (this.state.kind === 'finalizing') {
      return Promise.reject(new VmcommError('FINALIZED', `rank ${this.rank} is finalizing; allgather round '${round}' was not started`));
    }
    if (value === undefined) {
      return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round '${round}': the value must be JSON data (a CardValue), got undefined`));
    }
    if (this.usedRounds.has(round)) {
      return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round '${round}' was already used; each round name is used once`));
    }
    let line: string;
    try {
      line = encodeMessage({ type: 'allgather', round, value } satisfies ClientMessage);
    } catch (error) {
      return Promise.reject(error);
    }
    this.usedRounds.add(round);
    return new Promise<CardValue[]>((resolve, reject) => {
      this.hold();
      this.pending.set(round, {
        resolve: (values) => {
          this.release();
          resolve(values);
        },
        reject: (error) => {
          this.release();
          reject(error);
        },
      });
      this.conn.write(line);
    });
  }

  /**
   * See {@link Bootstrap.abort}. Resolves once the message was handed to the kernel, or the
   * connection is gone, or after 5 s — it never hangs and never rejects. After it, losing the
   * connection is no longer reported (the process is ending anyway).
   */
  async abort(code: number, reason: string): Promise<void> {
    this.aborting = true;
    if (this.conn.isClosed) return;
    // A code the protocol cannot carry must not get the abort refused: it becomes 1.
    const wireCode = Number.isInteger(code) && Math.abs(code) <= 0x7fffffff ? code : 1;
    const line = encodeMessage({ type: 'abort', code: wireCode, reason: clipReason(String(reason)) } satisfies ClientMessage);
    this.hold();
    try {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.conn.writeFlushed(line),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, ABORT_FLUSH_MS);
        }),
      ]);
      clearTimeout(timer);
    } finally {
      this.release();
    }
  }

  /**
   * See {@link Bootstrap.finalize}. Sends `finalize`, waits for the acknowledgement (so the launcher
   * has recorded it before this process can exit), then closes the connection. Idempotent (later calls
   * return the first call's promise). Rejects with `PEER_LOST` when the connection is already gone
   * or breaks first, `TIMEOUT` when no acknowledgement comes within `timeoutMs`.
   */
  finalize(): Promise<void> {
    this.finalizing ??= this.runFinalize();
    return this.finalizing;
  }

  private async runFinalize(): Promise<void> {
    if (this.state.kind === 'closed') throw this.state.error;
    this.state = { kind: 'finalizing' };
    this.hold();
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.finalizeAck = resolve;
        this.failFinalize = reject;
        timer = setTimeout(
          () => reject(new VmcommError('TIMEOUT', `rank ${this.rank}: the rendezvous at ${this.rendezvous} did not acknowledge finalize within ${this.timeoutMs / 1000} s`)),
          this.timeoutMs,
        );
        this.conn.write(encodeMessage({ type: 'finalize' } satisfies ClientMessage));
      });
    } finally {
      clearTimeout(timer);
      this.finalizeAck = undefined;
      this.failFinalize = undefined;
      this.release();
      this.close(new VmcommError('FINALIZED', `rank ${this.rank} finalized; the rendezvous connection is closed`));
    }
  }

  // -------------------------------------------------------------------------------------------------

  private onLine(line: string): void {
    const message = decodeMessage<ServerNotice>(line, NOTICE_PARSERS);
    const handler = this.handlers[message.type] as (notice: ServerNotice) => void;
    handler(message);
  }

  private onResult(notice: AllgatherResultNotice): void {
    const pending = this.pending.get(notice.round);
    if (pending === undefined) return;
    this.pending.delete(notice.round);
    if (notice.values.length !== this.size) {
      pending.reject(new VmcommError('CORRUPT', `allgather round '${notice.round}' returned ${notice.values.length} values for ${this.size} ranks`));
      return;
    }
    pending.resolve(notice.values);
  }

  private onFailed(notice: AllgatherFailedNotice): void {
    const pending = this.pending.get(notice.round);
    if (pending === undefined) return;
    this.pending.delete(notice.round);
    pending.reject(new VmcommError(notice.code, notice.message, notice.rank === undefined ? undefined : { peer: notice.rank }));
  }

  private onAbortNotice(notice: AbortNotice): void {
    this.emitEvent({ kind: 'abort', code: notice.code, fromRank: notice.fromRank, reason: notice.reason });
  }

  private onPeerLost(notice: PeerLostNotice): void {
    this.emitEvent({ kind: 'peerLost', rank: notice.rank, reason: notice.reason });
  }

  private onFinalizeAck(_notice: FinalizeAckNotice): void {
    this.finalizeAck?.();
  }

  private onClosed(error: Error | undefined): void {
    if (this.state.kind === 'closed') return;
    const why = error === undefined ? 'it closed' : error.message;
    const lost = new VmcommError(
      'PEER_LOST',
      `rank ${this.rank} lost the connection to the launcher (rendezvous ${this.rendezvous}: ${why})`,
      error === undefined ? undefined : { cause: error },
    );
    const wasOpen = this.state.kind === 'open';
    this.close(lost);
    this.failFinalize?.(lost);
    // While finalizing or aborting the process is ending by its own choice: nothing to report.
    if (wasOpen && !this.aborting) {
      this.emitEvent({ kind: 'abort', code: 1, fromRank: -1, reason: `lost the connection to the launcher (rendezvous ${this.rendezvous}: ${why})` });
    }
  }

  /** Enters the closed state: rejects pending rounds with `error`, closes the socket. */
  private close(error: VmcommError): void {
    if (this.state.kind === 'closed') return;
    this.state = { kind: 'closed', error };
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const round of pending) round.reject(error);
    this.conn.end();
    // end() lets the kernel finish sending; destroy shortly after in case the far end never closes.
    setTimeout(() => this.conn.destroy(), 1_000).unref();
  }

  private emitEvent(event: QueuedEvent): void {
    if (this.events === undefined) this.queued.push(event);
    else this.deliver(event);
  }

  private deliver(event: QueuedEvent): void {
    const events = this.events;
    if (events === undefined) return;
    if (event.kind === 'peerLost') events.peerLost(event.rank, event.reason);
    else if (event.kind === 'attach') events.attach?.(event.resource);
    else events.abort(event.code, event.fromRank, event.reason);
  }

  private hold(): void {
    if (this.holds++ === 0) this.conn.socket.ref();
  }

  private release(): void {
    if (--this.holds === 0) this.conn.socket.unref();
  }
}

// ---------------------------------------------------------------------------------------------------
// Connecting

/** The notices a member may receive (the handshake messages are not among them). */
const NOTICE_PARSERS = {
  'allgather-result': SERVER_MESSAGE_PARSERS['allgather-result'],
  'allgather-failed': SERVER_MESSAGE_PARSERS['allgather-failed'],
  abort: SERVER_MESSAGE_PARSERS.abort,
  'peer-lost': SERVER_MESSAGE_PARSERS['peer-lost'],
  attach: SERVER_MESSAGE_PARSERS.attach,
  'finalize-ack': SERVER_MESSAGE_PARSERS['finalize-ack'],
} as const;

/**
 * A socket that completed the handshake. Lines that arrived right behind `welcome` (in the same chunk)
 * are kept until the client takes over the handlers, then replayed in order by `handOver`.
 */
interface JsonLineHandshake {
  readonly conn: JsonLineSocket;
  handOver(handlers: { line(line: string): void; closed(error: Error | undefined): void }): void;
}

/** One connection attempt and handshake; rejects with a retryable socket error or a final VmcommError. */
function handshakeOnce(options: Required<RendezvousConnectOptions>, timeoutMs: number): Promise<{ socket: Socket; handshake: JsonLineHandshake }> {
  const where = formatRendezvousAddress(options);
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: options.host, port: options.port });
    const challenge = newChallenge();
    let phase: 'hello' | 'welcome' | 'done' = 'hello';
    const backlog: string[] = [];
    let after: { line(line: string): void; closed(error: Error | undefined): void } | undefined;
    /** Set when the socket closed after the welcome but before the client took over. */
    let closedEarly: { error: Error | undefined } | undefined;
    const timer = setTimeout(() => {
      fail(new VmcommError('TIMEOUT', `rank ${options.rank}: the rendezvous at ${where} did not complete the handshake within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const fail = (error: Error): void => {
      if (phase === 'done') return;
      phase = 'done';
      clearTimeout(timer);
      conn.destroy();
      reject(error);
    };
    const conn = new JsonLineSocket(socket, MAX_HANDSHAKE_LINE_BYTES, {
      line: (line) => {
        if (after !== undefined) {
          after.line(line);
          return;
        }
        if (phase === 'done') {
          backlog.push(line);
          return;
        }
        let message: HelloMessage | WelcomeMessage | RefusedMessage;
        try {
          message = decodeMessage<HelloMessage | WelcomeMessage | RefusedMessage>(line, {
            hello: SERVER_MESSAGE_PARSERS.hello,
            welcome: SERVER_MESSAGE_PARSERS.welcome,
            refused: SERVER_MESSAGE_PARSERS.refused,
          });
        } catch (error) {
          fail(new VmcommError('CORRUPT', `rank ${options.rank}: ${where} does not speak the vmcomm rendezvous protocol (${(error as Error).message})`));
          return;
        }
        if (message.type === 'refused') {
          fail(new VmcommError(message.code, `the rendezvous at ${where} refused rank ${options.rank}: ${message.message}`));
        } else if (phase === 'hello' && message.type === 'hello') {
          if (message.protocol !== RENDEZVOUS_PROTOCOL_VERSION) {
            fail(
              new VmcommError(
                'UNSUPPORTED',
                `the rendezvous at ${where} speaks protocol ${message.protocol}, this rank speaks ${RENDEZVOUS_PROTOCOL_VERSION}; ` +
                  `run the ranks and the launcher from the same vmcomm version`,
              ),
            );
            return;
          }
          phase = 'welcome';
          conn.write(
            encodeMessage({
              type: 'auth',
              protocol: RENDEZVOUS_PROTOCOL_VERSION,
              rank: options.rank,
              size: options.size,
              jobId: options.jobId,
              proof: clientProof(options.secret, message.challenge, options.rank, options.jobId),
              challenge,
            } satisfies ClientMessage),
          );
        } else if (phase === 'welcome' && message.type === 'welcome') {
          if (!proofsEqual(serverProof(options.secret, challenge, options.rank, options.jobId), message.proof)) {
            fail(
              new VmcommError(
                'AUTH',
                `the rendezvous at ${where} could not prove it holds the job secret; it serves another job (check VMCOMM_RENDEZVOUS and VMCOMM_JOB_SECRET)`,
              ),
            );
            return;
          }
          phase = 'done';
          clearTimeout(timer);
          conn.setMaxLineBytes(MAX_LINE_BYTES);
          socket.setKeepAlive(true, 10_000);
          resolve({
            socket,
            handshake: {
              conn,
              handOver: (handlers) => {
                after = handlers;
                for (const early of backlog.splice(0)) {
                  try {
                    handlers.line(early);
                  } catch (error) {
                    conn.destroy(error as Error);
                    break;
                  }
                }
                if (closedEarly !== undefined) handlers.closed(closedEarly.error);
              },
            },
          });
        } else {
          fail(new VmcommError('CORRUPT', `rank ${options.rank}: unexpected '${message.type}' from the rendezvous at ${where} during the handshake`));
        }
      },
      closed: (error) => {
        if (after !== undefined) {
          after.closed(error);
          return;
        }
        if (phase === 'done') {
          closedEarly = { error };
          return;
        }
        // Refused/reset/unreachable before a verdict: the caller decides whether to retry.
        fail(error ?? new RetryableError(`the rendezvous at ${where} closed the connection during the handshake`));
      },
    });
  });
}

/** Where and who, for an operator tool: a rank's options without the rank. */
export type OperatorConnectOptions = Omit<RendezvousConnectOptions, 'rank' | 'size'>;

/**
 * Offers `resource` (an ivshmem region path) to every rank of a running job through its rendezvous
 * (`vmcomm ivshmem attach`): authenticates as the operator ({@link OPERATOR_RANK}) with the job
 * secret, sends `attach`, and resolves to how many ranks it went to. Rejects like
 * {@link RendezvousClient.connect}, and with `TIMEOUT` when no answer comes in time.
 */
export async function sendAttach(options: OperatorConnectOptions, resource: string): Promise<number> {
  if (typeof resource !== 'string' || resource.length === 0 || resource.length > MAX_RESOURCE_LENGTH) {
    throw new VmcommError('INVALID_ARGUMENT', `the resource to attach must be a path of 1…${MAX_RESOURCE_LENGTH} characters`);
  }
  const resolved = validateOptions({ ...options, rank: OPERATOR_RANK, size: 1 }, true);
  const where = formatRendezvousAddress(resolved);
  let handshake: JsonLineHandshake;
  try {
    ({ handshake } = await handshakeOnce(resolved, resolved.timeoutMs));
  } catch (error) {
    if (isVmcommError(error)) throw error;
    throw new VmcommError('PEER_LOST', `could not reach the rendezvous at ${where}: ${(error as Error).message}`, { cause: error });
  }
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      handshake.conn.destroy();
      reject(new VmcommError('TIMEOUT', `the rendezvous at ${where} did not confirm the attach within ${resolved.timeoutMs / 1000} s`));
    }, resolved.timeoutMs);
    handshake.handOver({
      line: (line) => {
        clearTimeout(timer);
        try {
          resolve(decodeMessage<AttachSentNotice>(line, { 'attach-sent': SERVER_MESSAGE_PARSERS['attach-sent'] }).ranks);
        } catch (error) {
          reject(error as Error);
        }
        handshake.conn.end();
      },
      closed: (error) => {
        clearTimeout(timer);
        reject(new VmcommError('PEER_LOST', `the rendezvous at ${where} closed the connection before confirming the attach${error === undefined ? '' : ` (${error.message})`}`));
      },
    });
    handshake.conn.write(encodeMessage({ type: 'attach', resource } satisfies ClientMessage));
  });
}

/** A handshake that ended without a verdict (connection closed early); worth retrying. */
class RetryableError extends Error {
  readonly code = 'ECONNRESET';
}

function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN';
}

function validateOptions(options: RendezvousConnectOptions, operator = false): Required<RendezvousConnectOptions> {
  const { host, port, rank, size, jobId, secret } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
  const bad = (what: string, expected: string, got: unknown): VmcommError =>
    new VmcommError('INVALID_ARGUMENT', `RendezvousClient.connect: ${what} must be ${expected}, got ${typeof got === 'string' ? JSON.stringify(got) : String(got)}`);
  if (typeof host !== 'string' || host.length === 0) throw bad('host', 'a host name or address', host);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('port', 'an integer in 1…65535', port);
  if (!Number.isSafeInteger(size) || size < 1 || size > 0x7fffffff) throw bad('size', 'a positive integer', size);
  if (!(operator && rank === OPERATOR_RANK) && (!Number.isInteger(rank) || rank < 0 || rank >= size)) throw bad('rank', `an integer in 0…${size - 1}`, rank);
  if (typeof jobId !== 'string' || jobId.length === 0 || jobId.length > MAX_JOB_ID_LENGTH) throw bad('jobId', `a string of 1…${MAX_JOB_ID_LENGTH} characters`, jobId);
  if (!(secret instanceof Uint8Array) || secret.byteLength < MIN_SECRET_BYTES) throw bad('secret', `at least ${MIN_SECRET_BYTES} bytes`, secret?.byteLength);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw bad('timeoutMs', 'a positive number of ms', timeoutMs);
  return { host, port, rank, size, jobId, secret, timeoutMs };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
