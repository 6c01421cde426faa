/**
 * The control words of single copy (`single-copy-sink.ts`, `single-copy-channel.ts`): one small
 * block per ring, beside it in shared memory (the shm transport's ring file header, a threads ring's
 * slot in its arena), through which the consumer answers the producer's descriptors and asks it to
 * copy half of a large payload.
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | i32 | token of the last descriptor the consumer finished | consumer |
 * | 4 | i32 | how it finished ({@link CopyResult}) | consumer |
 * | 8 | i32 | cooperative copy: token of the descriptor whose tail the producer is asked to write (0 once the request ended); bit 30 set while the producer writes a piece | consumer; the bit by the producer, by compare-and-swap |
 * | 12 | u64 | … the target's handle (an address, a pin: the transport's {@link PayloadReader}) | consumer |
 * | 20 | u64 | … the tail's offset, in the payload and in the target alike | consumer |
 * | 28 | u64 | … the tail's length | consumer |
 * | 36 | i32 | cooperative copy: token whose tail the producer finished | producer (cleared by the consumer before it asks) |
 * | 40 | i32 | … how ({@link HelpResult}) | producer |
 * | 44 | i32 | fate of a descriptor: its token, and in the top two bits who decided ({@link Fate}) | either, by compare-and-swap |
 *
 * Every value is published before its token (sequentially consistent `Atomics`), so a side that sees
 * the token sees the values; each value is checked when read, as everything read from shared memory.
 *
 * Tokens run from 1 to {@link MAX_TOKEN} and wrap to 1 (30 bits: the fate word holds one beside two
 * bits of fate). A descriptor's *fate* is decided once, by whichever side gets there first with a
 * compare-and-swap: the consumer, when it has all the bytes and is about to deliver them
 * ({@link Fate.DELIVERED}); the producer, when its send fails while the descriptor is open and before
 * its caller learns of it ({@link Fate.GIVEN_UP}: the caller may reuse the buffer from then on, so
 * nothing copied from it may be delivered). The side that comes second follows the first.
 *
 * @module
 */

import { corrupt, type Region } from './region.js';

/** Bytes of the control block (a cache line). */
export const SINGLE_COPY_CONTROL_BYTES = 64;

const W_TOKEN = 0;
const W_RESULT = 1;
const W_HELP_TOKEN = 2;
const W_HELP_HANDLE = 3;
const W_HELP_FROM = 5;
const W_HELP_LENGTH = 7;
const W_HELP_DONE = 9;
const W_HELP_RESULT = 10;
const W_FATE = 11;
const FATE_TOKEN_MASK = 0x3fff_ffff;
/** In the help token word: the producer is writing a piece into the target (see {@link SingleCopyControl.claimHelp}). */
const WRITING = 0x4000_0000;
/** How long a consumer that withdraws a request waits for a piece being written (the producer may have died mid-piece). */
export const WITHDRAW_WAIT_MS = 250;

/** The largest token; the one after it is 1. */
export const MAX_TOKEN = FATE_TOKEN_MASK;

/** The token after `token`. */
export function nextToken(token: number): number {
  return token >= MAX_TOKEN ? 1 : token + 1;
}

/** Whether `seen` is the token before `token` (0 before the first descriptor). */
function isPrevious(seen: number, token: number): boolean {
  return token === 1 ? seen === 0 || seen === MAX_TOKEN : seen === token - 1;
}

/** Who decided what becomes of a single-copy descriptor (see the module comment). */
export const Fate = {
  /** The consumer delivers the message: the producer's send succeeded, whatever else fails. */
  DELIVERED: 1,
  /** The producer's send failed: the consumer delivers nothing of it. */
  GIVEN_UP: 2,
} as const;
/** One of {@link Fate}'s values. */
export type Fate = (typeof Fate)[keyof typeof Fate];

/** How the consumer finished a single-copy descriptor. */
export const CopyResult = {
  /** Not finished (the token word still names an older descriptor). */
  NONE: 0,
  /** The payload was read (or the receiver discarded it): the sender's buffer is free. */
  READ: 1,
  /** The consumer cannot read this sender's memory: send the payload through the ring. */
  REFUSED: 2,
} as const;
/** One of {@link CopyResult}'s values. */
export type CopyResult = (typeof CopyResult)[keyof typeof CopyResult];

/** How the producer finished the tail it was asked to write (cooperative copy). */
export const HelpResult = {
  /** Written: the consumer's target holds the tail. */
  WRITTEN: 1,
  /** Not written (refused, or the target was unreachable): the consumer copies the tail itself. */
  FAILED: 2,
} as const;
/** One of {@link HelpResult}'s values. */
export type HelpResult = (typeof HelpResult)[keyof typeof HelpResult];

/** A tail the consumer asked the producer to write into its target. */
export interface HelpRequest {
  /** The target, as the consumer's {@link PayloadReader.targetHandle} named it. */
  readonly handle: bigint;
  /** Where the tail starts, in the payload and in the target. */
  readonly from: number;
  readonly length: number;
}

/** The control block of one ring (both sides use the same view). */
export class SingleCopyControl {
  private readonly w: Int32Array;

  constructor(region: Region) {
    if (region.byteLength < SINGLE_COPY_CONTROL_BYTES || region.byteOffset % 8 !== 0) throw corrupt(`a single-copy control block of ${region.byteLength} bytes at ${region.byteOffset}`);
    this.w = new Int32Array(region.sab, region.byteOffset, SINGLE_COPY_CONTROL_BYTES >> 2);
  }

  /** Consumer: descriptor `token` is finished with `result`. */
  finish(token: number, result: CopyResult): void {
    Atomics.store(this.w, W_RESULT, result);
    Atomics.store(this.w, W_TOKEN, token);
  }

  /**
   * Producer: how descriptor `token` finished, {@link CopyResult.NONE} while it has not. Throws
   * `CORRUPT` for a token or result the consumer could not have written.
   */
  outcome(token: number): CopyResult {
    const seen = Atomics.load(this.w, W_TOKEN);
    if (seen !== token) {
      if (isPrevious(seen, token)) return CopyResult.NONE;
      throw corrupt(`single-copy token ${seen} while ${token} is outstanding`);
    }
    const result = Atomics.load(this.w, W_RESULT);
    if (result !== CopyResult.READ && result !== CopyResult.REFUSED) throw corrupt(`single-copy result ${result}`);
    return result;
  }

  /** Consumer: asks the producer to write bytes `from … from+length` of descriptor `token`'s payload into the target `handle`. */
  askHelp(token: number, handle: bigint, from: number, length: number): void {
    const w = this.w;
    // An answer left from an earlier request must not pass for this one's (tokens wrap).
    Atomics.store(w, W_HELP_DONE, 0);
    storeU64(w, W_HELP_HANDLE, handle);
    storeU64(w, W_HELP_FROM, BigInt(from));
    storeU64(w, W_HELP_LENGTH, BigInt(length));
    Atomics.store(w, W_HELP_TOKEN, token); // last: the request is complete when the token shows
  }

  /**
   * Consumer: ends the request for descriptor `token` — answered, or withdrawn (the frame was given
   * up or refused). Cleared to 0, never a token: a request left standing would pass for that of a
   * later descriptor with the same token once tokens wrap (a producer would write into a target
   * released long before). A piece the producer is writing at that moment ({@link claimHelp}) is
   * waited for — afterwards nothing more lands in the target, so a receive given up can settle and
   * its buffer be reused — for at most {@link WITHDRAW_WAIT_MS} (a producer that died mid-piece never
   * finishes it). Returns false when that wait ran out: the request is cleared all the same (the late
   * release then changes nothing, and no further piece is claimed), but the piece under way may land.
   */
  withdrawHelp(token: number): boolean {
    const w = this.w;
    let until = 0;
    for (;;) {
      const v = Atomics.compareExchange(w, W_HELP_TOKEN, token, 0);
      if (v !== (token | WRITING)) return true; // ended now, or before
      const now = performance.now();
      if (until === 0) until = now + WITHDRAW_WAIT_MS;
      else if (now > until) {
        Atomics.compareExchange(w, W_HELP_TOKEN, token | WRITING, 0);
        return false;
      }
    }
  }

  /**
   * Producer: the tail the consumer asked for descriptor `token`, if it asked — claimed for one piece:
   * the consumer cannot withdraw the request until {@link releaseHelp}, so the piece written meanwhile
   * never lands in a target the consumer has given back. Every claim is released.
   */
  claimHelp(token: number): HelpRequest | undefined {
    const w = this.w;
    // A load first: a producer polls this while its descriptor is open, and a compare-and-swap that
    // fails still takes the cache line from the reader, which polls the same block for the answer.
    if (Atomics.load(w, W_HELP_TOKEN) !== token || Atomics.compareExchange(w, W_HELP_TOKEN, token, token | WRITING) !== token) return undefined;
    const from = loadU64(w, W_HELP_FROM);
    const length = loadU64(w, W_HELP_LENGTH);
    if (from > BigInt(Number.MAX_SAFE_INTEGER) || length > BigInt(Number.MAX_SAFE_INTEGER)) {
      this.releaseHelp(token);
      throw corrupt('a cooperative-copy request beyond 2^53');
    }
    return { handle: loadU64(w, W_HELP_HANDLE), from: Number(from), length: Number(length) };
  }

  /** Producer: the piece claimed by {@link claimHelp} is written (or failed): the consumer may withdraw. */
  releaseHelp(token: number): void {
    Atomics.compareExchange(this.w, W_HELP_TOKEN, token | WRITING, token);
  }

  /** Producer: the tail of descriptor `token` is done, as `result` says. */
  helped(token: number, result: HelpResult): void {
    Atomics.store(this.w, W_HELP_RESULT, result);
    Atomics.store(this.w, W_HELP_DONE, token);
  }

  /**
   * Decides descriptor `token`'s fate as `fate`, unless the other side decided it first: returns the
   * fate that holds. A compare-and-swap, so the two sides can never both win, and each one's earlier
   * accesses (the consumer's copy) come before it. Throws `CORRUPT` for a fate word neither side
   * could have written.
   */
  decide(token: number, fate: Fate): Fate {
    const w = this.w;
    for (;;) {
      const v = Atomics.load(w, W_FATE);
      if ((v & FATE_TOKEN_MASK) === token) return fateIn(v);
      if (Atomics.compareExchange(w, W_FATE, v, token | (fate << 30)) === v) return fate;
    }
  }

  /** Descriptor `token`'s fate, 0 while neither side decided it. */
  fateOf(token: number): Fate | 0 {
    const v = Atomics.load(this.w, W_FATE);
    return (v & FATE_TOKEN_MASK) === token ? fateIn(v) : 0;
  }

  /** Consumer: how the producer finished the tail of descriptor `token`; 0 while it has not. */
  helpOutcome(token: number): HelpResult | 0 {
    if (Atomics.load(this.w, W_HELP_DONE) !== token) return 0;
    const result = Atomics.load(this.w, W_HELP_RESULT);
    if (result !== HelpResult.WRITTEN && result !== HelpResult.FAILED) throw corrupt(`cooperative-copy result ${result}`);
    return result;
  }
}

function fateIn(word: number): Fate {
  const fate = word >>> 30;
  if (fate !== Fate.DELIVERED && fate !== Fate.GIVEN_UP) throw corrupt(`single-copy fate ${fate}`);
  return fate;
}

function storeU64(w: Int32Array, index: number, value: bigint): void {
  Atomics.store(w, index, Number(value & 0xffff_ffffn) | 0);
  Atomics.store(w, index + 1, Number((value >> 32n) & 0xffff_ffffn) | 0);
}

function loadU64(w: Int32Array, index: number): bigint {
  return (BigInt(Atomics.load(w, index + 1) >>> 0) << 32n) | BigInt(Atomics.load(w, index) >>> 0);
}
