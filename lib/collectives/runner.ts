/**
 * Runs a communicator's collective calls: numbers them, gives each its {@link CommIO}, and keeps the
 * communicator's collective health.
 *
 * **Revoke** (ULFM's `MPIX_Comm_revoke`, done for the program): when a collective fails on one rank —
 * a lost peer, a timeout, ranks that passed different arguments, an op that threw, arguments this
 * rank refused — that rank revokes the communicator's collectives and tells every member through
 * the control context; each member forwards the notice once (so it spreads even if its origin dies
 * mid-way) and fails its pending collective receives. Every rank therefore gets an error instead of a
 * hang: `INVALID_ARGUMENT` for mismatched arguments, `REVOKED` otherwise (with the reason). Later
 * collectives on a revoked communicator reject at once with `REVOKED`; point-to-point on it keeps
 * working. A communicator's internal sub-communicators (its locality-aware collectives) are linked
 * to it: a revoke of any of them revokes all.
 *
 * **Mismatches found early**: a collective message that arrives before its receive is checked at
 * once — a different argument hash for a call in progress, or a call this rank has finished, means
 * the ranks disagree (for example, on the root, so no receive would ever see the wrong hash).
 *
 * @module
 */

import type { ValueCodec } from '../codec.js';
import { argumentHashOf, collectiveSeqOf, COLLECTIVE_SEQ_MODULUS } from '../contexts.js';
import type { Engine } from '../engine.js';
import { isVmcommError, VmcommError } from '../errors.js';
import type { PostedRecv, UnexpectedMsg } from '../matching.js';
import { FrameFlags } from '../protocol.js';
import { createRequest } from '../request.js';
import { CommIO, type CommIOEvents } from './comm-io.js';

/** A revoke notice as it travels. */
interface Notice {
  code: 'INVALID_ARGUMENT' | 'REVOKED';
  message: string;
  origin: number;
}

/** Notices carry at most this much of the reason, so they stay small (eager). */
const NOTICE_TEXT_MAX = 240;

/** What the runner needs of its communicator. */
export interface RunnerSetup {
  readonly engine: Engine;
  readonly codec: ValueCodec;
  /** Collective context id. */
  readonly context: number;
  /** Control context id (revoke notices, finalize's barrier). */
  readonly controlContext: number;
  /** Other contexts whose receives a revoke fails (an internal communicator's point-to-point). */
  readonly alsoFail?: readonly number[];
  readonly group: readonly number[];
  readonly rank: number;
  /** Told of every call as it starts, before its body (the shared-memory collectives' presence word). */
  readonly onCall?: (seq: number, hash: number) => void;
  /** Told once, when the communicator's collectives are revoked (the shared-memory cells say so). */
  readonly onRevoke?: () => void;
}

/** A collective number taken now for a call that starts later (see {@link CollectiveRunner.reserve}). */
export interface Ticket {
  readonly seq: number;
}

/** The collective side of one communicator on this rank. */
export class CollectiveRunner {
  #seq = 0;
  /** What later collectives fail with, once revoked (always `REVOKED`). */
  #revoked: VmcommError | undefined;
  /** What the collectives pending at the revoke failed with (`INVALID_ARGUMENT` for a mismatch). */
  #revokeCause: VmcommError | undefined;
  /** Calls in progress, by number. */
  readonly #active = new Map<number, CommIO>();
  /** Called once no call is in progress (see {@link whenIdle}). */
  #idleWaiters: (() => void)[] = [];
  /** Numbers taken by calls that have not started yet. */
  readonly #reserved = new Set<number>();
  #noticeRecv: PostedRecv | undefined;
  #closed = false;
  readonly #linked: CollectiveRunner[] = [];
  readonly #unwatch: () => void;
  readonly #s: RunnerSetup;
  /** What every call's IO reports here: made once, not per call. */
  readonly #events: CommIOEvents = {
    mismatch: (e) => this.revoke(e, true),
    // A step failed while others wait: revoke now, so sends no receiver will take are withdrawn.
    failed: (e, name) => void this.#fail(e, name),
  };

  constructor(setup: RunnerSetup) {
    this.#s = setup;
    this.#unwatch = setup.engine.watchUnexpected(setup.context, (msg) => this.#early(msg));
    if (setup.group.length > 1) this.#listen();
  }

  /** The error collectives fail with now, if revoked. */
  get revoked(): VmcommError | undefined {
    return this.#revoked;
  }

  /** Links two runners both ways: a revoke of either revokes the other (a communicator and its internal ones). */
  link(other: CollectiveRunner): void {
    this.#linked.push(other);
    other.#linked.push(this);
    if (this.#revoked) other.revoke(this.#revokeCause ?? this.#revoked, this.#revokeCause?.code === 'INVALID_ARGUMENT');
  }

  /**
   * Takes the next collective number now for a call that starts later (a communicator creation
   * waiting its turn), so it keeps its place in the order of this communicator's collectives.
   */
  reserve(): Ticket {
    const seq = this.#take();
    this.#reserved.add(seq);
    return { seq };
  }

  /**
   * Runs one collective call. The call's number is taken now (or was reserved), synchronously, so
   * collectives started together keep their order. `body` gets the call's IO and returns the result,
   * or a promise of it; any failure (a throw or a rejection) revokes the communicator.
   */
  run<T>(name: string, hash: number, body: (io: CommIO) => T | Promise<T>, ticket?: Ticket): Promise<T> {
    if (ticket) this.#reserved.delete(ticket.seq);
    if (this.#revoked) return Promise.reject(this.#revoked);
    const seq = ticket ? ticket.seq : this.#take();
    // The common case, nothing unreceived, costs one length check and no closure.
    const leftover = this.#unexpectedCount() === 0 ? undefined : this.#leftover((s) => s !== seq && !this.#active.has(s) && !this.#reserved.has(s) && behind(s, seq));
    if (leftover) return Promise.reject(this.revoke(leftover, true));
    const io = new CommIO(this.#s.engine, { context: this.#s.context, group: this.#s.group, rank: this.#s.rank, seq, hash, name }, this.#events);
    this.#active.set(seq, io);
    this.#s.onCall?.(seq, hash);
    let out: T | Promise<T>;
    try {
      out = body(io);
    } catch (error) {
      out = Promise.reject(error);
    }
    if (!(out instanceof Promise)) {
      // Done within the call (a shared-memory collective whose members all arrived while it spun):
      // no promise of the body's to wait for.
      this.#finished(seq);
      const late = this.#unexpectedCount() === 0 ? undefined : this.#leftover((s) => s === seq);
      return late ? Promise.reject(this.revoke(late, true)) : Promise.resolve(out);
    }
    return out.then(
      (value) => {
        this.#finished(seq);
        const late = this.#unexpectedCount() === 0 ? undefined : this.#leftover((s) => s === seq);
        if (late) throw this.revoke(late, true);
        return value;
      },
      (error: unknown) => {
        const reported = this.#fail(error, name);
        this.#finished(seq);
        // Sends of this call that no receiver took yet are withdrawn (else they would wait forever).
        io.abandon(reported instanceof VmcommError ? reported : new VmcommError('REVOKED', `${name} failed`, { cause: reported }));
        throw reported;
      },
    );
  }

  /**
   * This rank refused its own arguments for a collective (`error`, INVALID_ARGUMENT) before taking
   * part: the others would wait for it forever, so it takes the call's number and revokes as a
   * mismatch — every rank gets INVALID_ARGUMENT.
   */
  refuse(error: VmcommError, name: string): void {
    if (this.#revoked) return;
    this.#take();
    this.revoke(new VmcommError('INVALID_ARGUMENT', `${name} on rank ${this.#s.rank}: ${error.message}`, { cause: error }), true);
  }

  /**
   * Runs `finalize`'s barrier: in the control context (a revoked collective context drops what
   * arrives there), on a revoked communicator too, and it never revokes (a lost peer is the caller's
   * to tolerate).
   */
  runFinal<T>(name: string, hash: number, body: (io: CommIO) => Promise<T>): Promise<T> {
    const io = new CommIO(this.#s.engine, { context: this.#s.controlContext, group: this.#s.group, rank: this.#s.rank, seq: FINAL_SEQ, hash, name }, { mismatch: () => undefined, failed: () => undefined });
    return body(io);
  }

  #take(): number {
    const seq = this.#seq;
    this.#seq = (this.#seq + 1) % COLLECTIVE_SEQ_MODULUS;
    return seq;
  }

  /** Turns a failure inside a collective into the revoke, and returns what this rank reports. */
  #fail(error: unknown, name: string): unknown {
    if (this.#revoked && (error === this.#revoked || error === this.#revokeCause)) return error;
    if (isVmcommError(error, 'INVALID_ARGUMENT')) {
      this.revoke(error, true);
      return error;
    }
    const reason = error instanceof Error ? error.message : String(error);
    const revoked = new VmcommError('REVOKED', `${name} failed on rank ${this.#s.rank} (${reason}); the communicator's collectives are revoked on every rank — point-to-point still works`, { cause: error });
    this.revoke(revoked, false);
    // A lost peer is REVOKED everywhere; otherwise the rank where it happened reports the cause itself
    // (a timeout is TIMEOUT here and REVOKED elsewhere; an op's own exception stays the program's).
    return isVmcommError(error, 'PEER_LOST') ? revoked : error;
  }

  /**
   * Revokes this communicator's collectives (once): fails pending collective receives and sends,
   * tells every other member, and revokes the linked runners. Returns `error`, what this call reports.
   */
  revoke(error: VmcommError, mismatch: boolean, from?: number): VmcommError {
    if (this.#revoked) return this.#revokeCause ?? this.#revoked;
    this.#revokeCause = error;
    this.#revoked = error.code === 'REVOKED' ? error : new VmcommError('REVOKED', `the communicator's collectives were revoked: ${error.message}`, { cause: error });
    const engine = this.#s.engine;
    this.#s.onRevoke?.();
    engine.failContext(this.#s.context, error);
    for (const c of this.#s.alsoFail ?? []) engine.failContext(c, error);
    for (const io of this.#active.values()) io.abandon(error);
    const text = error.message.length > NOTICE_TEXT_MAX ? `${error.message.slice(0, NOTICE_TEXT_MAX)}…` : error.message;
    const notice: Notice = { code: mismatch ? 'INVALID_ARGUMENT' : 'REVOKED', message: text, origin: from ?? this.#s.rank };
    const bytes = this.#s.codec.encode(notice);
    for (let r = 0; r < this.#s.group.length; r++) {
      if (r === this.#s.rank || r === from || engine.lostError(this.#s.group[r])) continue;
      const [, control] = createRequest<void>(undefined);
      engine.send(this.#s.controlContext, this.#s.rank, this.#s.group[r], 0, bytes, FrameFlags.OBJECT, control, true);
    }
    for (const other of this.#linked) other.revoke(error, mismatch);
    return error;
  }

  /** Calls `fn` once no collective call of this communicator is in progress: now, if none is. */
  whenIdle(fn: () => void): void {
    if (this.#active.size === 0) fn();
    else this.#idleWaiters.push(fn);
  }

  #finished(seq: number): void {
    this.#active.delete(seq);
    if (this.#active.size > 0 || this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const fn of waiters) fn();
  }

  /**
   * A member was lost (or the world ended): calls in progress that wait outside messages (shared-memory
   * collectives, which need every member) fail with `error`; waits on messages fail on their own.
   */
  interrupt(error: VmcommError): void {
    for (const io of this.#active.values()) io.interrupt(error);
  }

  /** Stops listening for notices and watching arrivals (the world ends). */
  close(): void {
    this.#closed = true;
    this.#unwatch();
    if (this.#noticeRecv) this.#s.engine.cancelReceive(this.#s.controlContext, this.#noticeRecv);
    this.#noticeRecv = undefined;
  }

  /**
   * Listens for revoke notices until {@link close} — after a revoke too (other members' notices
   * still come, and their senders wait until they are received), and after a notice that failed to
   * decode.
   */
  #listen(): void {
    if (this.#closed) return;
    const onNotice = {
      pending: true,
      resolve: (m: { data: Notice; source: number }) => {
        onNotice.pending = false;
        this.#noticeRecv = undefined;
        const n = m.data;
        const code = n && n.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'REVOKED';
        const text = typeof n?.message === 'string' ? n.message : 'a peer revoked the communicator';
        this.revoke(new VmcommError(code, `${text} (revoke notice from rank ${m.source})`), code === 'INVALID_ARGUMENT', m.source);
        this.#listen();
      },
      reject: (e: Error) => {
        onNotice.pending = false;
        this.#noticeRecv = undefined;
        // Finalize (or the world's end) fails it: stop. A garbled notice: listen on.
        if (!isVmcommError(e, 'FINALIZED') && !isVmcommError(e, 'ABORTED')) this.#listen();
      },
    };
    const posted: PostedRecv = { source: -1, tag: 0, mode: 'message', bytes: undefined, control: onNotice };
    this.#noticeRecv = posted;
    this.#s.engine.receive(this.#s.controlContext, posted, (r) => this.#s.group[r]);
  }

  /** A collective message arrived before its receive: a mismatch if its call is in progress with another hash, or over. */
  #early(msg: UnexpectedMsg): void {
    if (this.#revoked) return;
    const seq = collectiveSeqOf(msg.tag);
    const io = this.#active.get(seq);
    if (io !== undefined) {
      if (io.shared || argumentHashOf(msg.tag) !== io.hash) {
        this.revoke(new VmcommError('INVALID_ARGUMENT', `${io.name}: rank ${msg.source} called this collective (number ${seq}) with different arguments than rank ${this.#s.rank} (operation, root, op, count or element type differ); every rank must pass matching arguments`, { peer: msg.source }), true);
      }
      return;
    }
    // Not started here yet (ahead of us) is normal; a number this rank has finished is not.
    const last = (this.#seq - 1 + COLLECTIVE_SEQ_MODULUS) % COLLECTIVE_SEQ_MODULUS;
    if (!this.#reserved.has(seq) && (seq === last || behind(seq, last))) {
      const leftover = this.#leftover((s) => s === seq);
      if (leftover) this.revoke(leftover, true);
    }
  }

  #unexpectedCount(): number {
    return this.#s.engine.matching(this.#s.context).unexpectedCount;
  }

  /** A mismatch error if a collective message whose number satisfies `test` sits unreceived. */
  #leftover(test: (seq: number) => boolean): VmcommError | undefined {
    const m = this.#s.engine.matching(this.#s.context).findUnexpected((msg) => test(collectiveSeqOf(msg.tag)));
    if (!m) return undefined;
    return new VmcommError(
      'INVALID_ARGUMENT',
      `rank ${m.source} sent a message for collective number ${collectiveSeqOf(m.tag)} that rank ${this.#s.rank} never receives: the ranks called collectives in a different order or with different roots`,
      { peer: m.source },
    );
  }
}

/** The number finalize's barrier uses in the control context (notices use tag 0, which is not a collective tag). */
const FINAL_SEQ = 1;

/** Whether collective number `s` comes before `current` (numbers wrap). */
function behind(s: number, current: number): boolean {
  const d = (current - s + COLLECTIVE_SEQ_MODULUS) % COLLECTIVE_SEQ_MODULUS;
  return d > 0 && d < COLLECTIVE_SEQ_MODULUS / 2;
}
