/**
 * The one error class of vmcomm. Every failure a program can act on is a {@link VmcommError} whose
 * {@link VmcommError.code | code} says which kind it is; the message says what to do about it.
 *
 * @module
 */

/**
 * What went wrong, one value per MPI error class that vmcomm mirrors.
 *
 * - `INVALID_ARGUMENT` ↔ `MPI_ERR_ARG` / `MPI_ERR_RANK` / `MPI_ERR_TAG` / `MPI_ERR_BUFFER`: a bad rank,
 *   tag, root, buffer or option. Thrown (rejected) at once; nothing was sent.
 * - `TRUNCATE` ↔ `MPI_ERR_TRUNCATE`: a message longer than the receive buffer. The message is consumed;
 *   the error carries its {@link Status} in `status`.
 * - `PEER_LOST` ↔ `MPIX_ERR_PROC_FAILED`: the peer died or its channel broke.
 * - `REVOKED` ↔ `MPIX_ERR_REVOKED`: the communicator was revoked (a failed or timed-out collective).
 * - `TIMEOUT`: a `timeout` given in {@link CallOptions} expired.
 * - `ABORTED`: the call was cancelled (its `signal` aborted, or `Request.cancel()`), or the job aborted.
 * - `FINALIZED`: the world was finalized; no further calls are possible.
 * - `AUTH`: a peer or client could not prove it holds the job secret.
 * - `CORRUPT`: a frame or shared-memory structure failed validation; its channel was closed.
 * - `UNSUPPORTED`: the feature is not available here (the message says why).
 */
export type VmcommErrorCode =
  | 'INVALID_ARGUMENT'
  | 'TRUNCATE'
  | 'PEER_LOST'
  | 'REVOKED'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'FINALIZED'
  | 'AUTH'
  | 'CORRUPT'
  | 'UNSUPPORTED';

/** All codes, in declaration order: handy for exhaustive tests and for printing. */
export const VMCOMM_ERROR_CODES: readonly VmcommErrorCode[] = [
  'INVALID_ARGUMENT',
  'TRUNCATE',
  'PEER_LOST',
  'REVOKED',
  'TIMEOUT',
  'ABORTED',
  'FINALIZED',
  'AUTH',
  'CORRUPT',
  'UNSUPPORTED',
];

/**
 * Where a message came from and how long it was (MPI's `MPI_Status`).
 */
export interface Status {
  /** The sender's rank in the communicator (`MPI_SOURCE`). */
  readonly source: number;
  /** The message tag (`MPI_TAG`). */
  readonly tag: number;
  /** The message length in bytes as sent (for objects: the encoded length). */
  readonly bytes: number;
}

/** Extra fields a {@link VmcommError} may carry. */
export interface VmcommErrorOptions extends ErrorOptions {
  /** For `TRUNCATE`: the status of the consumed message. */
  status?: Status;
  /** For `PEER_LOST`: the world rank of the lost peer. */
  peer?: number;
  /** For a `sendrecv` whose send part failed after its receive part completed: the value received. */
  received?: unknown;
}

/**
 * Thrown (or the rejection of a promise) for every failure vmcomm reports.
 *
 * @example
 * ```ts
 * try { await comm.recvBuffer(small, 1); }
 * catch (e) { if (e instanceof VmcommError && e.code === 'TRUNCATE') console.log(e.status); }
 * ```
 */
export class VmcommError extends Error {
  /** Always `'VmcommError'`, so errors can be recognised across module copies. */
  static readonly errorName = 'VmcommError';
  /** What went wrong. */
  readonly code: VmcommErrorCode;
  /** For `TRUNCATE`: the status of the message that did not fit (it was consumed). */
  readonly status?: Status;
  /** For `PEER_LOST`: the world rank of the peer that was lost. */
  readonly peer?: number;
  /**
   * For a `sendrecv` whose send part failed (timed out, aborted, peer lost) after its receive part had
   * completed: the value it received, so that no message is lost. `undefined` otherwise.
   */
  readonly received?: unknown;

  constructor(code: VmcommErrorCode, message: string, options?: VmcommErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VmcommError';
    this.code = code;
    if (options?.status !== undefined) this.status = options.status;
    if (options?.peer !== undefined) this.peer = options.peer;
    if (options && 'received' in options) this.received = options.received;
  }
}

/** True when `e` is a {@link VmcommError}, optionally with the given code. */
export function isVmcommError(e: unknown, code?: VmcommErrorCode): e is VmcommError {
  return e instanceof Error && e.name === 'VmcommError' && (code === undefined || (e as VmcommError).code === code);
}

/** Shorthand for the most common error: a bad argument, named, with what was expected. */
export function invalidArgument(what: string, expected: string, got: unknown): VmcommError {
  return new VmcommError('INVALID_ARGUMENT', `${what} must be ${expected}, got ${describe(got)}`);
}

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return Object.prototype.toString.call(v);
}
