/**
 * Nonblocking operations return a {@link Request}: await it (it is `PromiseLike`), or `test()` it.
 *
 * @module
 */

import { VmcommError } from './errors.js';

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

type State<T> = { kind: 'pending' } | { kind: 'fulfilled'; value: T } | { kind: 'rejected'; error: Error };

/** Spin budget of a blocking wait before it yields to the event loop (ns). */
const SPIN_BUDGET_NS = 20_000;
/** Polls between clock reads while spinning: reading the clock costs more than an idle poll. */
const POLLS_PER_CLOCK_READ = 16;

/**
 * A pending communication (MPI's `MPI_Request`). Await it for its value; `test()` polls it; `cancel()`
 * withdraws a receive that has not matched yet.
 *
 * A request's rejection is never reported as unhandled on its own: a program that only `test()`s a
 * failed request is not crashed by it; awaiting it throws the error.
 */
export class Request<T> implements PromiseLike<T> {
  #state: State<T> = { kind: 'pending' };
  readonly #promise: Promise<T>;
  readonly #progress: ProgressEngine | undefined;
  #cancel: (() => boolean) | undefined;

  /** @internal Built by the engine through {@link createRequest}. */
  constructor(progress: ProgressEngine | undefined, bind: (control: RequestControl<T>) => void) {
    this.#progress = progress;
    let resolve!: (v: T) => void;
    let reject!: (e: Error) => void;
    this.#promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#promise.catch(() => undefined);
    const self = this;
    // A data property, not a getter: an object literal with a getter closure gets a hidden class of
    // its own per request, which keeps ~40% of young objects alive across scavenges (10 ms pauses).
    const control = {
      pending: true,
      resolve(value: T) {
        if (self.#state.kind !== 'pending') return;
        self.#state = { kind: 'fulfilled', value };
        self.#cancel = undefined;
        control.pending = false;
        resolve(value);
      },
      reject(error: Error) {
        if (self.#state.kind !== 'pending') return;
        self.#state = { kind: 'rejected', error };
        self.#cancel = undefined;
        control.pending = false;
        reject(error);
      },
    };
    bind(control);
  }

  /** `'pending'`, `'fulfilled'` or `'rejected'`; does not make progress (see {@link test}). */
  get state(): 'pending' | 'fulfilled' | 'rejected' {
    return this.#state.kind;
  }

  /** The value once fulfilled; `undefined` before. */
  get value(): T | undefined {
    return this.#state.kind === 'fulfilled' ? this.#state.value : undefined;
  }

  /** The error once rejected; `undefined` otherwise. */
  get error(): Error | undefined {
    return this.#state.kind === 'rejected' ? this.#state.error : undefined;
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
    if (this.#state.kind === 'pending' && this.#progress?.polling) spinPoll(this.#progress, () => this.#state.kind !== 'pending');
    return this.#promise;
  }

  /** Makes progress and reports whether the request is complete (`MPI_Test`). Never blocks. */
  test(): boolean {
    if (this.#state.kind === 'pending') this.#progress?.poll();
    return this.#state.kind !== 'pending';
  }

  /**
   * Withdraws a receive that has not matched a message yet (`MPI_Cancel`): it then rejects with
   * `ABORTED`, and no message is consumed. Returns false when it is too late (matched, complete) or the
   * request is a send.
   */
  cancel(): boolean {
    const c = this.#cancel;
    return c !== undefined && this.#state.kind === 'pending' && c();
  }

  /** @internal Sets how {@link cancel} withdraws this request. */
  setCanceller(cancel: (() => boolean) | undefined): void {
    if (this.#state.kind === 'pending') this.#cancel = cancel;
  }

  /** @internal How a timeout or abort withdraws this request's pending work (kept here, not in a WeakMap: see the engine's GC note). */
  withdrawer: ((error: Error) => boolean) | undefined = undefined;
}

/**
 * Polls `progress` until `done()` or the spin budget of a blocking wait is spent — the one spin of
 * every blocking wait (a request's, a collective step's). Clock read every few polls, as a double
 * (`performance.now()`): no BigInt per read.
 */
export function spinPoll(progress: ProgressEngine, done: () => boolean): void {
  const until = performance.now() + SPIN_BUDGET_NS / 1e6;
  let polls = 0;
  do {
    progress.poll();
    if (++polls % POLLS_PER_CLOCK_READ === 0 && performance.now() >= until) break;
  } while (!done());
}

/** Builds a request and the control that settles it. */
export function createRequest<T>(progress: ProgressEngine | undefined): [Request<T>, RequestControl<T>] {
  let control!: RequestControl<T>;
  const request = new Request<T>(progress, (c) => (control = c));
  return [request, control];
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
