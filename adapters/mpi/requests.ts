/**
 * `MPI_Status`, `MPI_Request` and the completion calls (`Wait*`, `Test*`, `Cancel`).
 *
 * A request is handed back synchronously by `Isend`/`Irecv`, as in C. Once a `Wait` or a successful
 * `Test` has completed it, it is *inactive* — what C expresses by setting the handle to
 * `MPI_REQUEST_NULL`, which JavaScript cannot do to the caller's variable — and completing it again
 * gives an empty status at once, as MPI specifies for null requests.
 *
 * The `Test` family returns promises: a JavaScript program that spins on a synchronous test never
 * lets the event loop run, and sockets (the `tcp` transport) only progress there. Each `Test` polls
 * shared-memory channels and then yields one event-loop turn.
 *
 * @module
 */

import { ANY_SOURCE, ANY_TAG, VmcommError, isVmcommError, type Request as CoreRequest, type Status as CoreStatus } from 'vmcomm';
import { describe, type Datatype, checkDatatype } from './datatypes.js';

/** `MPI_PROC_NULL`: a send to it or a receive from it completes at once and moves nothing. */
export const PROC_NULL = -2;
/** `MPI_UNDEFINED`: `Comm_split`'s "no color", `Get_count`'s "not a whole number of items", `Waitany`'s "no active request". */
export const UNDEFINED = -32766;

/** `MPI_Status`: who sent the message, its tag, and (through `MPI.Get_count`) its length. */
export class Status {
  /** @internal */
  constructor(
    /** The sender's rank (`MPI_SOURCE`); `MPI.PROC_NULL` for a receive from it, `ANY_SOURCE` when empty. */
    readonly MPI_SOURCE: number,
    /** The message tag (`MPI_TAG`). */
    readonly MPI_TAG: number,
    /** Bytes received (read it with `MPI.Get_count`). */
    readonly bytes: number,
    /** `MPI_ERROR`: 0 (`MPI_SUCCESS`); failures are thrown as `VmcommError` instead. */
    readonly MPI_ERROR = 0,
    /** Whether the request was cancelled (`MPI_Test_cancelled`). */
    readonly cancelled = false,
  ) {}

  /** @internal */
  static from(st: CoreStatus): Status {
    return new Status(st.source, st.tag, st.bytes);
  }
}

/** The status of an empty or inactive request (MPI: source `ANY_SOURCE`, tag `ANY_TAG`, count 0). */
export const EMPTY_STATUS: Status = Object.freeze(new Status(ANY_SOURCE, ANY_TAG, 0)) as Status;
const PROC_NULL_STATUS: Status = Object.freeze(new Status(PROC_NULL, ANY_TAG, 0)) as Status;
const CANCELLED_STATUS: Status = Object.freeze(new Status(ANY_SOURCE, ANY_TAG, 0, 0, true)) as Status;

/**
 * `MPI_Get_count`: whole items of `datatype` in the received message, or `MPI.UNDEFINED` when its
 * length is not a multiple of the item size.
 */
export function getCount(status: Status, datatype: Datatype): number {
  if (!(status instanceof Status)) throw new VmcommError('INVALID_ARGUMENT', `status must be a Status from Recv, Wait or Probe; got ${describe(status)}`);
  checkDatatype(datatype, 'datatype');
  return status.bytes % datatype.size === 0 ? status.bytes / datatype.size : UNDEFINED;
}

/** `MPI_Test_cancelled`. */
export function testCancelled(status: Status): boolean {
  return status.cancelled;
}

type Completion = CoreRequest<void> | CoreRequest<CoreStatus>;

/** `MPI_Request`: a nonblocking send or receive in flight. */
export class MPIRequest {
  #core: Completion | undefined;
  #active: boolean;
  #cancelled = false;
  readonly #kind: 'send' | 'recv';

  /** @internal A request on a core request, or (`core` undefined) one with a `PROC_NULL` peer that completes at once. */
  constructor(kind: 'send' | 'recv', core: Completion | undefined, active = true) {
    this.#kind = kind;
    this.#core = core;
    this.#active = active;
  }

  /** False once completed by `Wait`/`Test` (MPI's `MPI_REQUEST_NULL`). */
  get active(): boolean {
    return this.#active;
  }

  /** @internal Polls without yielding; true when complete (or inactive). */
  poll(): boolean {
    return !this.#active || this.#core === undefined || this.#core.test();
  }

  /** @internal Settles when the operation is complete (or failed), leaving the request active. */
  settled(): Promise<unknown> {
    return this.#core === undefined ? Promise.resolve() : this.#core.wait().catch(() => undefined);
  }

  /** @internal Waits for completion, makes the request inactive, gives its status. */
  async complete(): Promise<Status> {
    if (!this.#active) return EMPTY_STATUS;
    const core = this.#core;
    if (core === undefined) return this.#finish(PROC_NULL_STATUS);
    try {
      const value = await core.wait();
      return this.#finish(this.#kind === 'recv' ? Status.from(value as CoreStatus) : EMPTY_STATUS);
    } catch (e) {
      // A withdrawn receive completes as cancelled (MPI: Wait returns, Test_cancelled says so).
      if (this.#cancelled && isVmcommError(e) && e.code === 'ABORTED') return this.#finish(CANCELLED_STATUS);
      this.#active = false;
      throw e;
    }
  }

  /** @internal `MPI_Cancel`: withdraws a receive that has not matched yet (sends cannot be cancelled here). */
  cancel(): void {
    if (this.#active && this.#core?.cancel()) this.#cancelled = true;
  }

  #finish(status: Status): Status {
    this.#active = false;
    this.#core = undefined;
    return status;
  }
}

/** A request that is already complete and inactive (`MPI_REQUEST_NULL`). */
export const REQUEST_NULL: MPIRequest = new MPIRequest('send', undefined, false);

function checkRequest(r: unknown, name: string): MPIRequest {
  if (!(r instanceof MPIRequest)) throw new VmcommError('INVALID_ARGUMENT', `${name} must be a request from Isend or Irecv; got ${describe(r)}`);
  return r;
}

function checkRequests(rs: unknown, name: string): MPIRequest[] {
  if (!Array.isArray(rs)) throw new VmcommError('INVALID_ARGUMENT', `${name} must be an array of requests; got ${describe(rs)}`);
  return rs.map((r, i) => checkRequest(r, `${name}[${i}]`));
}

/** One event-loop turn: lets sockets and timers progress between tests. */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** `MPI_Wait`. */
export function wait(request: MPIRequest): Promise<Status> {
  return checkRequest(request, 'request').complete();
}

/** `MPI_Waitall`: every status, in order. If one fails, the others still complete before it throws. */
export async function waitall(requests: readonly MPIRequest[]): Promise<Status[]> {
  const rs = checkRequests(requests, 'requests');
  const settled = await Promise.allSettled(rs.map((r) => r.complete()));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<Status>).value);
}

/** `MPI_Waitany`: the first active request to complete; `{ index: MPI.UNDEFINED }` when none is active. */
export async function waitany(requests: readonly MPIRequest[]): Promise<{ index: number; status: Status }> {
  const rs = checkRequests(requests, 'requests');
  const active = rs.map((r, i) => ({ r, i })).filter(({ r }) => r.active);
  if (active.length === 0) return { index: UNDEFINED, status: EMPTY_STATUS };
  for (const { r, i } of active) if (r.poll()) return { index: i, status: await r.complete() };
  // Race the underlying completions without completing the losers (they stay active).
  const index = await new Promise<number>((resolve, reject) => {
    for (const { r, i } of active) r.settled().then(() => resolve(i), reject);
  });
  return { index, status: await rs[index].complete() };
}

/** `MPI_Waitsome`: waits for at least one, then completes every active request that is done. */
export async function waitsome(requests: readonly MPIRequest[]): Promise<{ indices: number[]; statuses: Status[] }> {
  const first = await waitany(requests);
  if (first.index === UNDEFINED) return { indices: [], statuses: [] };
  const indices = [first.index];
  const statuses = [first.status];
  for (let i = 0; i < requests.length; i++) {
    if (requests[i].active && requests[i].poll()) {
      indices.push(i);
      statuses.push(await requests[i].complete());
    }
  }
  return { indices, statuses };
}

/** `MPI_Test`: `{ flag: true, status }` once complete (the request becomes inactive), else `{ flag: false }`. */
export async function test(request: MPIRequest): Promise<{ flag: boolean; status?: Status }> {
  const r = checkRequest(request, 'request');
  if (!r.poll()) {
    await yieldTurn();
    if (!r.poll()) return { flag: false };
  }
  return { flag: true, status: await r.complete() };
}

/** `MPI_Testall`: completes all of them only when all are complete. */
export async function testall(requests: readonly MPIRequest[]): Promise<{ flag: boolean; statuses?: Status[] }> {
  const rs = checkRequests(requests, 'requests');
  if (!rs.every((r) => r.poll())) {
    await yieldTurn();
    if (!rs.every((r) => r.poll())) return { flag: false };
  }
  return { flag: true, statuses: await waitall(rs) };
}

/** `MPI_Testany`: `{ flag, index }`; `index` is `MPI.UNDEFINED` when nothing completed (or none is active). */
export async function testany(requests: readonly MPIRequest[]): Promise<{ flag: boolean; index: number; status?: Status }> {
  const rs = checkRequests(requests, 'requests');
  if (!rs.some((r) => r.active)) return { flag: true, index: UNDEFINED, status: EMPTY_STATUS };
  let i = rs.findIndex((r) => r.active && r.poll());
  if (i < 0) {
    await yieldTurn();
    i = rs.findIndex((r) => r.active && r.poll());
    if (i < 0) return { flag: false, index: UNDEFINED };
  }
  return { flag: true, index: i, status: await rs[i].complete() };
}

/** `MPI_Cancel`: withdraws a pending receive; complete the request afterwards (`Test_cancelled` tells). */
export function cancel(request: MPIRequest): void {
  checkRequest(request, 'request').cancel();
}
