/**
 * Nonblocking operations return a {@link Request}: await it (it is `PromiseLike`), or `test()` it.
 *
 * @module
 */

import { performance } from 'node:perf_hooks';
import { VmcommError, type Status } from './errors.js';

/** What a request needs from the engine: progress without the event loop. */
export interface ProgressEngine {
  /** Polls transports that make progress synchronously (shared memory); cheap when there are none. */
  poll(): void;
  /** True when some transport needs polling (then blocking waits spin before yielding). */
  readonly polling: boolean;
}

/** Settles a request; used by the engine, never by programs. */
export interface RequestControl<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  /** Whether the request is still pending. */
  readonly pending: boolean;
}

/** Spin budget of a blocking wait before it yields to the event loop (ns). */
const SPIN_BUDGET_NS = 20_000;
/** Polls between clock reads while spinning: reading the clock costs more than an idle poll. */
const POLLS_PER_CLOCK_READ = 16;

const PENDING = 0;
const FULFILLED = 1;
const REJECTED = 2;

const ignore = (): undefined => undefined;

/** The settlement a {@link Request.wait} spins on (see there). */
let spinningOn: { readonly pending: boolean } | undefined;
const spunSettled = (): boolean => spinningOn === undefined || !spinningOn.pending;

/**
 * The settling side of one request, and where its state lives. One object of one class per request,
 * with its methods on the prototype: no closures per request, and a data property `pending`, not a
 * getter (an object literal with a getter closure gets a hidden class of its own per request, which
 * kept ~40% of young objects alive across scavenges: 10 ms pauses). The promise is made only when a
 * program waits: a request completed within the blocking spin, or only `test()`ed, never makes one
 * that is still pending. @internal (the core's; a blocking receive extends it, see
 * `communicator.ts`, so that one object is the receive, its settlement and its withdrawal).
 */
export class Settlement<T> implements RequestControl<T> {
  pending = true;
  state: typeof PENDING | typeof FULFILLED | typeof REJECTED = PENDING;
  value: T | undefined = undefined;
  error: Error | undefined = undefined;
  promise: Promise<T> | undefined = undefined;
  /** The promise is a blocking call's own: its rejection is the caller's to handle (see {@link promised}). */
  reported = false;
  fulfil: ((value: T) => void) | undefined = undefined;
  fail: ((error: Error) => void) | undefined = undefined;

  resolve(value: T): void {
    if (!this.pending) return;
    this.pending = false;
    this.state = FULFILLED;
    this.value = value;
    const fulfil = this.fulfil;
    if (fulfil !== undefined) {
      this.fulfil = this.fail = undefined;
      fulfil(value);
    }
  }

  reject(error: Error): void {
    if (!this.pending) return;
    this.pending = false;
    this.state = REJECTED;
    this.error = error;
    const fail = this.fail;
    if (fail !== undefined) {
      this.fulfil = this.fail = undefined;
      // Never reported as unhandled on its own (see Request): the handler goes on before the rejection.
      if (!this.reported) this.promise!.catch(ignore);
      fail(error);
    }
  }

  /**
   * The request's promise, made on first use (settled at once when the request already is). A
   * request's own promise never reports its rejection as unhandled (a program may only `test()` it);
   * with `reported`, made for a blocking call (`send`, `recv`, …) that hands this very promise to
   * its caller, it does, as the promise of an `async` function would.
   */
  promised(reported = false): Promise<T> {
    if (this.promise !== undefined) return this.promise;
    this.reported = reported;
    let p: Promise<T>;
    if (this.state === FULFILLED) p = Promise.resolve(this.value as T);
    else if (this.state === REJECTED) {
      p = Promise.reject(this.error);
      if (!reported) p.catch(ignore);
    } else {
      p = new Promise<T>((fulfil, fail) => {
        this.fulfil = fulfil;
        this.fail = fail;
      });
    }
    return (this.promise = p);
  }
}

/**
 * A pending communication (MPI's `MPI_Request`). Await it for its value; `test()` polls it; `cancel()`
 * withdraws a receive that has not matched yet.
 *
 * A request's rejection is never reported as unhandled on its own: a program that only `test()`s a
 * failed request is not crashed by it; awaiting it throws the error.
 */
export class Request<T> implements PromiseLike<T> {
  /** Typed `unknown`, not `T`: a `Settlement<T>` takes `T` in (resolve), which would make `Request<T>` invariant in `T`. */
  readonly #s: Settlement<unknown>;
  readonly #progress: ProgressEngine | undefined;

  /** @internal Built by the engine through {@link createRequest}, with the control it made. */
  constructor(progress: ProgressEngine | undefined, control: RequestControl<T>) {
    this.#progress = progress;
    this.#s = control as Settlement<unknown>;
  }

  /** `'pending'`, `'fulfilled'` or `'rejected'`; does not make progress (see {@link test}). */
  get state(): 'pending' | 'fulfilled' | 'rejected' {
    const st = this.#s.state;
    return st === PENDING ? 'pending' : st === FULFILLED ? 'fulfilled' : 'rejected';
  }

  /** The value once fulfilled; `undefined` before. */
  get value(): T | undefined {
    return this.#s.value as T | undefined;
  }

  /** The error once rejected; `undefined` otherwise. */
  get error(): Error | undefined {
    return this.#s.error;
  }

  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: any) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.wait().then(onfulfilled, onrejected);
  }

  /**
   * Waits for completion (`MPI_Wait`). Spins briefly on shared-memory transports, then yields to the
   * event loop, so timers and I/O keep running while it waits.
   */
  wait(): Promise<T> {
    return this.#waitFor(false);
  }

  /**
   * @internal {@link wait} for a blocking call that returns this promise to its caller, who never
   * sees the request: an unhandled rejection is reported, as that of an `async` function would be.
   */
  waitReported(): Promise<T> {
    return this.#waitFor(true);
  }

  #waitFor(reported: boolean): Promise<T> {
    return waitSettled(this.#s, this.#progress, reported) as Promise<T>;
  }

  /** Makes progress and reports whether the request is complete (`MPI_Test`). Never blocks. */
  test(): boolean {
    const s = this.#s;
    if (s.pending) this.#progress?.poll();
    return !s.pending;
  }

  /**
   * Withdraws a receive that has not matched a message yet (`MPI_Cancel`): it then rejects with
   * `ABORTED`, and no message is consumed. Returns false when it is too late (matched, complete) or the
   * request is a send.
   */
  cancel(): boolean {
    const w = this.withdrawal;
    return w !== undefined && w.cancellable && this.#s.pending && w.withdraw(new VmcommError('ABORTED', 'receive cancelled'));
  }

  /**
   * @internal How a timeout, an abort or {@link cancel} withdraws this request's pending work (kept
   * here, not in a WeakMap: see the engine's GC note). An object, not closures: a receive that waits
   * would otherwise allocate two per message.
   */
  withdrawal: Withdrawal | undefined = undefined;
}

/** @internal How a pending request is withdrawn (see {@link Request.withdrawal}). */
export interface Withdrawal {
  /** Whether `cancel()` may use it (receives), not only timeouts and aborts (sends too). */
  readonly cancellable: boolean;
  /** Withdraws the pending work and rejects the request with `error`; false when too late. */
  withdraw(error: Error): boolean;
}

/**
 * Polls `progress` until `done()` or the spin budget of a blocking wait is spent — the one spin of
 * every blocking wait (a request's, a collective step's). Clock read every few polls, as a double
 * (`performance.now()`): no BigInt per read. `performance` is imported, not the global: the global is
 * an accessor that optimized code reads through a load IC on every call.
 *
 * When the host's ranks outnumber its cores, every empty poll is a `sched_yield` that may return
 * only after other ranks ran (0.1–0.3 ms with eight ranks on two cores here), so this spin then
 * lasts up to {@link POLLS_PER_CLOCK_READ} + 1 yields (the clock is first read after the 17th poll)
 * rather than its budget. That is deliberate: with the clock read after every poll, the waits fell
 * through to the wait loop, slept more, and eight ranks on two cores took 1.4–1.8× as long per
 * point-to-point or shared-memory allreduce (sixteenth session). The price: an application's timer
 * due meanwhile can be late by those yields, a few milliseconds at worst.
 */
export function spinPoll(progress: ProgressEngine, done: () => boolean): void {
  // One poll before the clock is read: in a tight exchange the first one often completes the wait.
  progress.poll();
  if (done()) return;
  const until = performance.now() + SPIN_BUDGET_NS / 1e6;
  let polls = 0;
  do {
    progress.poll();
    if (++polls % POLLS_PER_CLOCK_READ === 0 && performance.now() >= until) break;
  } while (!done());
}

/**
 * The promise of settlement `s` for a wait (a request's, or a blocking call's that has no request):
 * spins on `progress` first while `s` is pending and some transport makes progress synchronously.
 */
export function waitSettled<T>(s: Settlement<T>, progress: ProgressEngine | undefined, reported: boolean): Promise<T> {
  spinWhilePending(s, progress);
  return s.promised(reported);
}

/**
 * {@link waitSettled} for a buffer receive, whose value is always a {@link Status} built by the
 * engine: the same object literal, so one shape. `Promise.resolve` of an object must look up `then`
 * on it — a generic property lookup, unless V8's optimizing compiler knows the object's shape at the
 * call and can prove there is none (it then fulfils the promise directly, guarded by its checks on
 * the prototype chain). A value read from a field has no known shape; reading one of its own
 * fields first gives it one. Alternating with the plain `Promise.resolve`, 8-byte ping-pongs
 * through `shm` took 3–6 % less time (README, "On this machine", fourteenth session).
 */
export function waitStatus(s: Settlement<Status>, progress: ProgressEngine | undefined): Promise<Status> {
  spinWhilePending(s, progress);
  if (s.state !== FULFILLED || s.promise !== undefined) return s.promised(true);
  const status = s.value!;
  void status.bytes; // the shape check described above: keep it next to Promise.resolve
  const promise = Promise.resolve(status);
  s.reported = true;
  s.promise = promise;
  return promise;
}

/** The spin of {@link waitSettled}: polls while `s` is pending and some transport makes progress synchronously. */
function spinWhilePending(s: { readonly pending: boolean }, progress: ProgressEngine | undefined): void {
  if (!s.pending || !progress?.polling) return;
  // The settlement spun on goes through a module variable, not a closure per wait; saved and
  // restored, since a poll may settle work that waits in turn.
  const outer = spinningOn;
  spinningOn = s;
  try {
    spinPoll(progress, spunSettled);
  } finally {
    spinningOn = outer;
  }
}

/** Builds a request and the control that settles it. */
export function createRequest<T>(progress: ProgressEngine | undefined): [Request<T>, RequestControl<T>] {
  const control = new Settlement<T>();
  return [new Request<T>(progress, control), control];
}

/** A request that is already settled (for example, a call rejected on argument checking). */
export function settledRequest<T>(result: { value: T } | { error: Error }): Request<T> {
  const [req, ctl] = createRequest<T>(undefined);
  if ('error' in result) ctl.reject(result.error);
  else ctl.resolve(result.value);
  return req;
}

/** The element types of a tuple of requests (or promises), like `Promise.all`'s. */
export type AwaitedValues<T extends readonly unknown[]> = { -readonly [K in keyof T]: Awaited<T[K]> };

/**
 * Waits for every request (`MPI_Waitall`); rejects with the first error, like `Promise.all`. All
 * requests still complete in the background.
 */
export function waitAll<const T extends readonly (PromiseLike<unknown> | unknown)[]>(requests: T): Promise<AwaitedValues<T>> {
  if (!Array.isArray(requests)) return Promise.reject(new VmcommError('INVALID_ARGUMENT', 'waitAll takes an array of requests'));
  return Promise.all(requests.map((r) => (r instanceof Request ? r.wait() : r))) as Promise<AwaitedValues<T>>;
}

/**
 * Waits for the first request to complete (`MPI_Waitany`): resolves with its index and value, or
 * rejects with its error. An empty array rejects with `INVALID_ARGUMENT`.
 */
export function waitAny<const R extends readonly PromiseLike<unknown>[]>(requests: R): Promise<{ index: number; value: Awaited<R[number]> }> {
  type T = Awaited<R[number]>;
  if (!Array.isArray(requests) || requests.length === 0) {
    return Promise.reject(new VmcommError('INVALID_ARGUMENT', 'waitAny takes a non-empty array of requests'));
  }
  for (let i = 0; i < requests.length; i++) {
    const r = requests[i];
    if (r instanceof Request && r.test()) {
      return r.state === 'fulfilled' ? Promise.resolve({ index: i, value: r.value as T }) : Promise.reject(r.error);
    }
  }
  return Promise.race(requests.map((r, index) => Promise.resolve(r instanceof Request ? r.wait() : r).then((value) => ({ index, value: value as T }))));
}
