/**
 * {@link CollectiveIO} over the engine: the messages of one collective call, in its communicator's
 * collective context, tagged with the call's number and argument hash (`contexts.ts`).
 *
 * A received message whose hash differs from this rank's, or whose length differs from what this
 * rank expects, means the ranks called the collective with different arguments: the receive rejects
 * with `INVALID_ARGUMENT` and the communicator is told (it revokes its collectives on every rank).
 *
 * @module
 */

import { argumentHashOf, collectiveTag } from '../contexts.js';
import type { Engine } from '../engine.js';
import { isVmcommError, VmcommError, type Status } from '../errors.js';
import type { PostedRecv } from '../matching.js';
import { createRequest, Request, spinPoll, type RequestControl } from '../request.js';
import type { CollectiveIO } from './io.js';

/** What one collective call is. */
export interface CollectiveCall {
  /** The communicator's collective context id. */
  readonly context: number;
  /** The communicator's rank → world rank. */
  readonly group: readonly number[];
  readonly rank: number;
  /** The call's number on its communicator. */
  readonly seq: number;
  /** Hash of the call's arguments (operation, root, op, count, type). */
  readonly hash: number;
  /** The operation's name, for messages. */
  readonly name: string;
}

/** What the call's IO reports to its runner. */
export interface CommIOEvents {
  /** A peer called the collective with different arguments. */
  mismatch(error: VmcommError): void;
  /** A step of call `name` failed (the others of a `waitAll` may never complete unless the call is revoked now). */
  failed(error: unknown, name: string): void;
}

/** Forwards a receive's completion after checking its hash and length. */
class CheckedReceive implements RequestControl<unknown> {
  constructor(
    private readonly io: CommIO,
    private readonly inner: RequestControl<any>,
    private readonly peer: number,
    private readonly expectBytes: number,
  ) {}

  get pending(): boolean {
    return this.inner.pending;
  }

  resolve(result: unknown): void {
    const tag = this.expectBytes >= 0 ? (result as Status).tag : (result as { tag: number }).tag;
    const bytes = this.expectBytes >= 0 ? (result as Status).bytes : this.expectBytes;
    const mismatch = this.io.check(this.peer, tag, bytes, this.expectBytes);
    if (mismatch) return this.inner.reject(mismatch);
    this.inner.resolve(this.expectBytes >= 0 ? undefined : (result as { data: Uint8Array }).data);
  }

  reject(error: Error): void {
    // A longer message than expected arrives as TRUNCATE: the same mismatch, said as such.
    if (isVmcommError(error, 'TRUNCATE') && error.status) {
      const mismatch = this.io.check(this.peer, error.status.tag, error.status.bytes, this.expectBytes);
      if (mismatch) return this.inner.reject(mismatch);
    }
    this.inner.reject(error);
  }
}

/** The messages of one collective call. */
export class CommIO implements CollectiveIO {
  readonly rank: number;
  readonly size: number;
  readonly #engine: Engine;
  readonly #call: CollectiveCall;
  readonly #tag: number;
  /** This rank's argument hash as the tag carries it. */
  readonly #hash: number;
  readonly #on: CommIOEvents;

  constructor(engine: Engine, call: CollectiveCall, on: CommIOEvents) {
    this.#engine = engine;
    this.#call = call;
    this.rank = call.rank;
    this.size = call.group.length;
    this.#tag = collectiveTag(call.seq, call.hash);
    this.#hash = argumentHashOf(this.#tag);
    this.#on = on;
  }

  /** This call's argument hash as tags carry it. */
  get hash(): number {
    return this.#hash;
  }

  /** The operation's name. */
  get name(): string {
    return this.#call.name;
  }

  /** The call's number on its communicator. */
  get seq(): number {
    return this.#call.seq;
  }

  /** Why the call was interrupted ({@link interrupt}), if it was. */
  get interrupted(): VmcommError | undefined {
    return this.#interrupted;
  }

  #interrupted: VmcommError | undefined = undefined;
  /**
   * The call runs through shared memory and receives no message: any collective message for its
   * number means a rank took another path for it (ranks with different `VMCOMM_COLL_*` settings).
   */
  shared = false;
  /** How to fail the call's wait outside messages (a shared-memory collective's), while it waits. */
  #blocker: ((error: VmcommError) => void) | undefined = undefined;

  /**
   * @internal Registers how to fail the call's wait outside messages (`undefined`: it ended). Called
   * after an interrupt, it fails at once.
   */
  block(fail: ((error: VmcommError) => void) | undefined): void {
    if (fail !== undefined && this.#interrupted !== undefined) return fail(this.#interrupted);
    this.#blocker = fail;
  }

  /** Fails the call's wait outside messages, now or when it begins (a lost member, finalize, a revoke). */
  interrupt(error: VmcommError): void {
    this.#interrupted ??= error;
    const fail = this.#blocker;
    this.#blocker = undefined;
    fail?.(error);
  }

  /** A rank of the communicator → its world rank (made at the call's first receive, not per receive; a shared-memory call has none). */
  #worldRankOf: ((r: number) => number) | undefined = undefined;

  /** Rendezvous sends still waiting for their receiver: withdrawn if the communicator is revoked (made at the first). */
  #rendezvous: number[] | undefined = undefined;

  send(peer: number, bytes: Uint8Array): Request<void> {
    const [request, control] = createRequest<void>(this.#engine);
    const revoked = this.#engine.revokedError(this.#call.context);
    if (revoked) {
      control.reject(revoked);
      return request;
    }
    const sendId = this.#engine.send(this.#call.context, this.rank, this.#call.group[peer], this.#tag, bytes, 0, control, false);
    if (sendId !== 0) (this.#rendezvous ??= []).push(sendId);
    return request;
  }

  /** Gives up the call's sends that no receiver took yet and its wait outside messages (the communicator was revoked). */
  abandon(error: VmcommError): void {
    for (const id of this.#rendezvous ?? []) this.#engine.withdrawSend(id, error);
    this.#rendezvous = undefined;
    this.interrupt(error);
  }

  recv(peer: number, into: Uint8Array): Request<void> {
    return this.#post<void>(peer, into);
  }

  recvBytes(peer: number): Request<Uint8Array> {
    return this.#post<Uint8Array>(peer, undefined);
  }

  #post<T>(peer: number, into: Uint8Array | undefined): Request<T> {
    const [request, control] = createRequest<T>(this.#engine);
    const lost = this.#engine.lostError(this.#call.group[peer]);
    if (lost) {
      control.reject(lost);
      return request;
    }
    const checked = new CheckedReceive(this, control, peer, into ? into.byteLength : -1);
    const posted: PostedRecv = { source: peer, tag: this.#tag, mode: into ? 'buffer' : 'message', bytes: into, control: checked };
    const group = this.#call.group;
    this.#engine.receive(this.#call.context, posted, (this.#worldRankOf ??= (r: number): number => group[r]));
    return request;
  }

  /** @internal The mismatch error for a message with `tag` and `bytes` from `peer`, if any. */
  check(peer: number, tag: number, bytes: number, expectBytes: number): VmcommError | undefined {
    const theirs = argumentHashOf(tag);
    let error: VmcommError | undefined;
    if (theirs !== this.#hash) {
      error = new VmcommError('INVALID_ARGUMENT', `${this.#call.name}: rank ${peer} called this collective (number ${this.#call.seq}) with different arguments than rank ${this.rank} (operation, root, op, count or element type differ); every rank must pass matching arguments`, { peer });
    } else if (expectBytes >= 0 && bytes !== expectBytes) {
      error = new VmcommError('INVALID_ARGUMENT', `${this.#call.name}: rank ${peer} sent ${bytes} bytes where rank ${this.rank} expected ${expectBytes}: the ranks passed different counts or element types`, { peer });
    }
    if (error) this.#on.mismatch(error);
    return error;
  }

  async waitAll(pending: readonly PromiseLike<unknown>[]): Promise<void> {
    if (this.#engine.polling && !allSettled(pending)) spinPoll(this.#engine, () => allSettled(pending));
    // The common end of a small step: everything completed within the spin, nothing to wait on.
    if (allFulfilled(pending)) return;
    // Every step gets its handler at once: a failed receive must be seen even while a send before
    // it in the list still waits (revoking then withdraws that send).
    let first: unknown;
    let failed = false;
    const onError = (e: unknown) => {
      if (failed) return;
      failed = true;
      first = e;
      this.#on.failed(e, this.#call.name);
    };
    await Promise.all(pending.map((p) => (p instanceof Request && p.state === 'fulfilled' ? undefined : Promise.resolve(p).then(undefined, onError))));
    if (failed) throw first;
  }
}

function allFulfilled(pending: readonly PromiseLike<unknown>[]): boolean {
  for (const p of pending) if (!(p instanceof Request) || p.state !== 'fulfilled') return false;
  return true;
}

function allSettled(pending: readonly PromiseLike<unknown>[]): boolean {
  for (const p of pending) if (!(p instanceof Request) || p.state === 'pending') return false;
  return true;
}
