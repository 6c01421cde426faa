/**
 * Runs a communicator's collective calls: numbers them, gives each its {@link CommIO}, and keeps the
 * communicator's collective health.
 *
 * **Revoke** (ULFM's `MPIX_Comm_revoke`, done for the program): when a collective fails on one rank —
 * a lost peer, a timeout, ranks that passed different arguments, an op that threw — that rank revokes
 * the communicator's collectives and tells every member through the control context; each member
 * forwards the notice once (so it spreads even if its origin dies mid-way) and fails its pending
 * collective receives. Every rank therefore gets an error instead of a hang: `INVALID_ARGUMENT` for
 * mismatched arguments, `REVOKED` otherwise (with the reason). Later collectives on a revoked
 * communicator reject at once with `REVOKED`; point-to-point on it keeps working.
 *
 * **Leftovers**: a message of a finished collective that nobody received means the ranks disagreed
 * on the pattern (for example, different roots, where no receive sees a wrong hash). It is found when
 * the call ends or when the next collective starts, and revokes the communicator as a mismatch.
 *
 * @module
 */

import { collectiveSeqOf, COLLECTIVE_SEQ_MODULUS } from '../contexts.js';
import type { Engine } from '../engine.js';
import { isVmcommError, VmcommError } from '../errors.js';
import type { PostedRecv } from '../matching.js';
import { FrameFlags } from '../protocol.js';
import { createRequest } from '../request.js';
import type { ValueCodec } from '../codec.js';
import { CommIO } from './comm-io.js';

/** A revoke notice as it travels. */
interface Notice {
  code: 'INVALID_ARGUMENT' | 'REVOKED';
  message: string;
  origin: number;
}

/** What the runner needs of its communicator. */
export interface RunnerSetup {
  readonly engine: Engine;
  readonly codec: ValueCodec;
  /** Collective context id. */
  readonly context: number;
  /** Control context id (revoke notices). */
  readonly controlContext: number;
  readonly group: readonly number[];
  readonly rank: number;
}

/** The collective side of one communicator on this rank. */
export class CollectiveRunner {
  #seq = 0;
  /** What later collectives fail with, once revoked (always `REVOKED`). */
  #revoked: VmcommError | undefined;
  /** What the collectives pending at the revoke failed with (`INVALID_ARGUMENT` for a mismatch). */
  #revokeCause: VmcommError | undefined;
  readonly #active = new Map<number, CommIO>();
  #noticeRecv: PostedRecv | undefined;
  readonly #s: RunnerSetup;

  constructor(setup: RunnerSetup) {
    this.#s = setup;
    if (setup.group.length > 1) this.#listen();
  }

  /** The error collectives fail with now, if revoked. */
  get revoked(): VmcommError | undefined {
    return this.#revoked;
  }

  /**
   * Runs one collective call. The call's number is taken now, synchronously, so collectives started
   * together keep their order. `body` gets the call's IO; any failure revokes the communicator.
   */
  run<T>(name: string, hash: number, body: (io: CommIO) => Promise<T>): Promise<T> {
    if (this.#revoked) return Promise.reject(this.#revoked);
    const seq = this.#seq;
    this.#seq = (this.#seq + 1) % COLLECTIVE_SEQ_MODULUS;
    const leftover = this.#leftover((s) => s !== seq && !this.#active.has(s) && behind(s, seq));
    if (leftover) return Promise.reject(this.revoke(leftover, true));
    return this.#start(seq, name, hash, body);
  }

  /**
   * Runs `finalize`'s barrier: numbered like any collective (every rank calls it last), but it runs on
   * a revoked communicator too and never revokes (a lost peer is the caller's to tolerate).
   */
  runFinal<T>(name: string, hash: number, body: (io: CommIO) => Promise<T>): Promise<T> {
    const seq = this.#seq;
    this.#seq = (this.#seq + 1) % COLLECTIVE_SEQ_MODULUS;
    // In the control context: a revoked collective context drops what arrives there.
    const io = new CommIO(this.#s.engine, { context: this.#s.controlContext, group: this.#s.group, rank: this.#s.rank, seq: FINAL_SEQ, hash, name }, { mismatch: () => undefined, failed: () => undefined });
    return body(io);
  }

  #start<T>(seq: number, name: string, hash: number, body: (io: CommIO) => Promise<T>): Promise<T> {
    const io = new CommIO(this.#s.engine, { context: this.#s.context, group: this.#s.group, rank: this.#s.rank, seq, hash, name }, {
      mismatch: (e) => this.revoke(e, true),
      // A step failed while others wait: revoke now, so sends no receiver will take are withdrawn.
      failed: (e) => void this.#fail(e, name),
    });
    this.#active.set(seq, io);
    return body(io).then(
      (value) => {
        this.#active.delete(seq);
        const late = this.#leftover((s) => s === seq);
        if (late) throw this.revoke(late, true);
        return value;
      },
      (error: unknown) => {
        const reported = this.#fail(error, name);
        this.#active.delete(seq);
        // Sends of this call that no receiver took yet are withdrawn (else they would wait forever).
        io.abandon(reported instanceof VmcommError ? reported : new VmcommError('REVOKED', `${name} failed`, { cause: reported }));
        throw reported;
      },
    );
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
   * and tells every other member. Returns `error`, what this call reports.
   */
  revoke(error: VmcommError, mismatch: boolean, from?: number): VmcommError {
    if (this.#revoked) return this.#revokeCause ?? this.#revoked;
    this.#revokeCause = error;
    this.#revoked = error.code === 'REVOKED' ? error : new VmcommError('REVOKED', `the communicator's collectives were revoked: ${error.message}`, { cause: error });
    this.#s.engine.failContext(this.#s.context, error);
    for (const io of this.#active.values()) io.abandon(error);
    const notice: Notice = { code: mismatch ? 'INVALID_ARGUMENT' : 'REVOKED', message: error.message, origin: from ?? this.#s.rank };
    const bytes = this.#s.codec.encode(notice);
    for (let r = 0; r < this.#s.group.length; r++) {
      if (r === this.#s.rank || r === from || this.#s.engine.lostError(this.#s.group[r])) continue;
      const [, control] = createRequest<void>(undefined);
      this.#s.engine.send(this.#s.controlContext, this.#s.rank, this.#s.group[r], 0, bytes, FrameFlags.OBJECT, control, true);
    }
    return error;
  }

  /** Stops listening for notices (the communicator is freed or the world ends). */
  close(): void {
    if (this.#noticeRecv) this.#s.engine.cancelReceive(this.#s.controlContext, this.#noticeRecv);
    this.#noticeRecv = undefined;
  }

  #listen(): void {
    const [, control] = createRequest<{ data: Notice; source: number }>(undefined);
    const onNotice = {
      pending: true,
      resolve: (m: { data: Notice; source: number }) => {
        onNotice.pending = false;
        this.#noticeRecv = undefined;
        const n = m.data;
        const code = n && n.code === 'INVALID_ARGUMENT' ? 'INVALID_ARGUMENT' : 'REVOKED';
        const text = typeof n?.message === 'string' ? n.message : 'a peer revoked the communicator';
        this.revoke(new VmcommError(code, `${text} (revoke notice from rank ${m.source})`), code === 'INVALID_ARGUMENT', m.source);
        // Listen on after a revoke too: other members' notices still come, and their senders wait
        // until they are received (a long notice travels rendezvous).
        this.#listen();
      },
      reject: (e: Error) => {
        onNotice.pending = false;
        control.reject(e);
      },
    };
    const posted: PostedRecv = { source: -1, tag: 0, mode: 'message', bytes: undefined, control: onNotice };
    this.#noticeRecv = posted;
    this.#s.engine.receive(this.#s.controlContext, posted, (r) => this.#s.group[r]);
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
