/**
 * A rank's *inbox*: where its peers find it (Nemesis-style, as in MPICH's ch3:nemesis). Created by
 * the rank at start-up and named in its locality card, it holds
 *
 * - a **doorbell** word that a peer increments (then wakes the owner) when the owner is asleep;
 * - a **waiter** flag that the owner raises just before it sleeps, so peers wake it only then
 *   (a wake costs a system call or an event-loop task; a flag check costs a load); the peer that
 *   wakes it lowers the flag, so one wake-up serves every peer;
 * - a **state** word: open, closed (the owner stopped cleanly) or gone (its thread ended without
 *   stopping), which a peer waiting for space in a ring checks;
 * - an **announcement queue** (multi-producer, single-consumer, fixed size): a peer that opens a ring
 *   to the owner pushes the ring's descriptor here once; the owner polls only announced rings.
 *
 * A descriptor is an opaque byte string of at most {@link INBOX_DESCRIPTOR_MAX_BYTES} bytes: `threads`
 * puts an arena offset and length there, `shm` will put a file name (≤ 64 bytes), `ivshmem` a region
 * slot.
 *
 * ## Layout
 *
 * Offsets from the region start; u32/i32 little-endian words:
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | magic {@link INBOX_MAGIC} (`'VMIB'`) | owner, once |
 * | 4 | u32 | layout version {@link INBOX_LAYOUT_VERSION} | owner, once |
 * | 8 | u32 | slots `S` (a power of two, 2 … {@link MAX_INBOX_SLOTS}) | owner, once |
 * | 12 | u32 | descriptor bytes per slot ({@link INBOX_DESCRIPTOR_MAX_BYTES}) | owner, once |
 * | 128 | i32 | state: {@link InboxState} | owner (and its exit hook) |
 * | 256 | i32 | doorbell (incremented, wrapping) | peers |
 * | 384 | i32 | waiter flag (1 = asleep or about to be) | owner (raises, lowers); the peer that wakes it (lowers) |
 * | 512 | u32 | enqueue position (claimed by compare-and-swap) | peers |
 * | 640 + 128·i | slot i: u32 sequence, i32 from (rank), u32 descriptor length, u32 retired (1: see below), 96 descriptor bytes, 16 spare | peers, owner |
 *
 * The queue is Vyukov's bounded queue: slot i starts with sequence i; a peer that claimed position p
 * (slot p mod S) fills it and moves its sequence from p to p + 1 (compare-and-swap); the owner at
 * position p takes the slot when its sequence is p + 1 and gives it back with p + S. Any other
 * sequence is `CORRUPT`.
 *
 * ## A claim never filled
 *
 * A peer killed between its claim and its fill (a window of about 100 ns, longer for a worker thread
 * terminated at an interrupt check in the copy) would leave the owner waiting at that position for
 * ever, and every announcement behind it — rings of live peers — unread: their frames would never be
 * seen. So the owner gives such a position up ({@link Inbox.skipAbandoned}): once it has been claimed
 * and not filled for {@link ANNOUNCEMENT_STALL_MS}, the owner *retires* its slot — stores 1 in the
 * slot's retired word, then moves the sequence from p to p + S (compare-and-swap; a fill that won
 * the race is taken as usual and the word cleared again) — and goes on.
 *
 * A retired slot is never published into or read again: a peer whose claim reaches one moves the
 * enqueue position past it without touching the slot (the retired word is set before the sequence
 * says the slot is free, so no peer sees it free and not retired), and the owner steps over its
 * positions once the enqueue position has passed them. So a claimant that was only stopped (a
 * debugger, `SIGSTOP`) and resumes copies into a slot nobody reads; its compare-and-swap is refused
 * and it claims again ({@link InboxSender.announce}). Reusing the slot instead would let such a claimant overwrite the
 * announcement of the next peer to fill it. The price: the queue holds one announcement less per
 * retired slot (only a job that lost peers in that window S times over would have none left; its
 * announcements would then fail as on a full queue). The owner does not know who claimed a retired
 * position; nothing needs to (a dead announcer is reported by its liveness).
 *
 * ## Sleeping without lost wake-ups
 *
 * Owner: read doorbell (the token) → raise waiter → poll everything once more → sleep until the
 * doorbell differs from the token. Peer: publish (ring head or announcement) → if waiter is raised,
 * lower it (compare-and-swap: one peer wins), increment the doorbell and wake. All of these are
 * sequentially consistent `Atomics` operations, so either the owner's last poll sees the data or
 * the peer sees the flag (Dekker's argument). A peer that finds the flag down publishes without
 * ringing. The flag is down either because the owner is awake (it raises the flag before it sleeps
 * again, and its last poll after that sees the publication) or because another peer lowered it
 * after the owner raised it; that peer's increment comes after the owner read its token, so the
 * owner's sleep ends at once or is woken, and the owner raises the flag and polls again before it
 * sleeps.
 *
 * @module
 */

import { checkRegion, CONTROL_STRIDE_BYTES, corrupt, isPowerOfTwo, type Region } from './region.js';

/** `'VMIB'` as a little-endian u32. */
export const INBOX_MAGIC = 0x4249_4d56;
/** The layout described in the module comment (2: slots can be retired). */
export const INBOX_LAYOUT_VERSION = 2;
/** Longest descriptor an announcement carries. */
export const INBOX_DESCRIPTOR_MAX_BYTES = 96;
/** Bytes before the first slot. */
export const INBOX_HEADER_BYTES = 5 * CONTROL_STRIDE_BYTES;
/** Bytes per announcement slot. */
export const INBOX_SLOT_BYTES = 128;
/** The fewest slots an inbox may have (with one, "full" and "empty" would look the same). */
export const MIN_INBOX_SLOTS = 2;
/** The most slots an inbox may have. */
export const MAX_INBOX_SLOTS = 65_536;

/** What the state word says about the owner. */
export const InboxState = {
  /** Not initialized yet (all zero). */
  UNSET: 0,
  /** Accepting announcements and frames. */
  OPEN: 1,
  /** The owner stopped cleanly (finalized); nothing it has not read will be read. */
  CLOSED: 2,
  /** The owner's thread ended without stopping (a crash): nothing will be read. */
  GONE: 3,
} as const;
/** One of {@link InboxState}'s values. */
export type InboxState = (typeof InboxState)[keyof typeof InboxState];

const W_MAGIC = 0;
const W_VERSION = 1;
const W_SLOTS = 2;
const W_DESCRIPTOR_BYTES = 3;
/** Index of the state word ({@link InboxState}) in an `Int32Array` over the inbox region. */
export const STATE_WORD = CONTROL_STRIDE_BYTES >> 2;
const W_STATE = STATE_WORD;
/** Index of the doorbell word in an `Int32Array` over the inbox region (for `Atomics.waitAsync`). */
export const DOORBELL_WORD = (2 * CONTROL_STRIDE_BYTES) >> 2;
const W_WAITER = (3 * CONTROL_STRIDE_BYTES) >> 2;
const W_ENQUEUE = (4 * CONTROL_STRIDE_BYTES) >> 2;
const SLOT_WORDS = INBOX_SLOT_BYTES >> 2;
const S_SEQ = 0;
const S_FROM = 1;
const S_LENGTH = 2;
const S_RETIRED = 3;
const S_DESCRIPTOR_BYTE = 16;
/** Compare-and-swap attempts before `announce` gives up for now (only heavy contention or garbage). */
const MAX_CLAIM_ATTEMPTS = 1_000;
/**
 * How long a position may stay claimed and unfilled before the owner gives it up (see "A claim never
 * filled"): a fill takes well under a microsecond, so only a dead or stopped claimant takes this long.
 */
export const ANNOUNCEMENT_STALL_MS = 2_000;

/** Bytes of an inbox with `slots` announcement slots. */
export function inboxBytes(slots: number): number {
  if (!isPowerOfTwo(slots) || slots < MIN_INBOX_SLOTS || slots > MAX_INBOX_SLOTS) {
    throw new RangeError(`an inbox has a power of two from ${MIN_INBOX_SLOTS} to ${MAX_INBOX_SLOTS} slots, got ${slots}`);
  }
  return INBOX_HEADER_BYTES + slots * INBOX_SLOT_BYTES;
}

/** Writes a fresh, open inbox with `slots` slots into `region` (exactly {@link inboxBytes} long). */
export function initInbox(region: Region, slots: number): void {
  const bytes = inboxBytes(slots);
  checkRegion(region, bytes, 'initInbox');
  if (region.byteLength !== bytes) throw new RangeError(`an inbox of ${slots} slots is ${bytes} bytes, the region is ${region.byteLength}`);
  const words = new Int32Array(region.sab, region.byteOffset, bytes >> 2);
  for (let i = 0; i < words.length; i++) Atomics.store(words, i, 0);
  for (let i = 0; i < slots; i++) Atomics.store(words, (INBOX_HEADER_BYTES >> 2) + i * SLOT_WORDS + S_SEQ, i);
  Atomics.store(words, W_SLOTS, slots);
  Atomics.store(words, W_DESCRIPTOR_BYTES, INBOX_DESCRIPTOR_MAX_BYTES);
  Atomics.store(words, W_VERSION, INBOX_LAYOUT_VERSION);
  Atomics.store(words, W_MAGIC, INBOX_MAGIC | 0);
  Atomics.store(words, W_STATE, InboxState.OPEN);
}

/** One taken announcement; {@link Inbox.take} refills the same object. */
export interface Announcement {
  /** The announcing rank, as it wrote it (the caller validates it). */
  from: number;
  /** Bytes of {@link descriptor} in use. */
  length: number;
  /** {@link INBOX_DESCRIPTOR_MAX_BYTES} bytes, a private copy. */
  readonly descriptor: Uint8Array;
}

/** An empty {@link Announcement} to pass to {@link Inbox.take}. */
export function newAnnouncement(): Announcement {
  return { from: -1, length: 0, descriptor: new Uint8Array(INBOX_DESCRIPTOR_MAX_BYTES) };
}

/** The validated views shared by both sides. */
abstract class InboxView {
  /** The whole inbox as words: `words[DOORBELL_WORD]` is the doorbell. */
  readonly words: Int32Array;
  readonly slots: number;
  protected readonly bytes: Uint8Array;

  constructor(region: Region, what: string) {
    checkRegion(region, INBOX_HEADER_BYTES + MIN_INBOX_SLOTS * INBOX_SLOT_BYTES, what);
    const head = new Int32Array(region.sab, region.byteOffset, 4);
    const magic = Atomics.load(head, W_MAGIC) >>> 0;
    const version = Atomics.load(head, W_VERSION) >>> 0;
    const slots = Atomics.load(head, W_SLOTS) >>> 0;
    const descriptorBytes = Atomics.load(head, W_DESCRIPTOR_BYTES) >>> 0;
    if (magic !== INBOX_MAGIC) throw corrupt(`inbox magic 0x${magic.toString(16)}, expected 0x${INBOX_MAGIC.toString(16)}`);
    if (version !== INBOX_LAYOUT_VERSION) throw corrupt(`inbox layout version ${version}, expected ${INBOX_LAYOUT_VERSION}`);
    if (!isPowerOfTwo(slots) || slots < MIN_INBOX_SLOTS || slots > MAX_INBOX_SLOTS || INBOX_HEADER_BYTES + slots * INBOX_SLOT_BYTES !== region.byteLength) {
      throw corrupt(`an inbox declaring ${slots} slots in a ${region.byteLength}-byte region`);
    }
    if (descriptorBytes !== INBOX_DESCRIPTOR_MAX_BYTES) throw corrupt(`inbox descriptors of ${descriptorBytes} bytes, expected ${INBOX_DESCRIPTOR_MAX_BYTES}`);
    this.slots = slots;
    this.words = new Int32Array(region.sab, region.byteOffset, region.byteLength >> 2);
    this.bytes = new Uint8Array(region.sab, region.byteOffset, region.byteLength);
  }

  /** The owner's state as stored (an unknown value reads as {@link InboxState.GONE}). */
  get state(): InboxState {
    const s = Atomics.load(this.words, W_STATE);
    return s === InboxState.OPEN || s === InboxState.CLOSED || s === InboxState.UNSET ? s : InboxState.GONE;
  }

  protected slotWord(slot: number, field: number): number {
    return (INBOX_HEADER_BYTES >> 2) + slot * SLOT_WORDS + field;
  }
}

/** The owner's side: takes announcements, sleeps on the doorbell. */
export class Inbox extends InboxView {
  /** Next position to take (local: only the owner reads the queue). */
  private next = 0;
  /**
   * The position last seen claimed and unfilled by {@link skipAbandoned} (−1: none), since when, and
   * the enqueue position then: every position before it was claimed by that time too.
   */
  private stalledAt = -1;
  private stalledSince = 0;
  private stalledBefore = 0;
  /**
   * Slots this owner retired (1), kept here as well as in shared memory: whether to step over one is
   * never a peer's to say. Undefined until one is (the common case costs no check).
   */
  private retired: Uint8Array | undefined;

  constructor(region: Region) {
    super(region, 'Inbox');
  }

  /** True when an announcement is ready (one atomic load; one more while this owner has retired slots). */
  pending(): boolean {
    if (this.retired !== undefined) this.passRetired();
    return Atomics.load(this.words, this.slotWord(this.next & (this.slots - 1), S_SEQ)) === ((this.next + 1) | 0);
  }

  /**
   * Takes the next announcement into `out`; false when none is ready. Throws `CORRUPT` for a slot
   * whose sequence or length is impossible.
   */
  take(out: Announcement): boolean {
    if (this.retired !== undefined) this.passRetired();
    const pos = this.next;
    const slot = pos & (this.slots - 1);
    const seq = Atomics.load(this.words, this.slotWord(slot, S_SEQ));
    if (seq === (pos | 0)) return false;
    if (seq !== ((pos + 1) | 0)) throw corrupt(`inbox slot ${slot} has sequence ${seq >>> 0} at position ${pos >>> 0}`);
    const from = Atomics.load(this.words, this.slotWord(slot, S_FROM));
    const length = Atomics.load(this.words, this.slotWord(slot, S_LENGTH)) >>> 0;
    if (length > INBOX_DESCRIPTOR_MAX_BYTES) throw corrupt(`an announcement of ${length} descriptor bytes (at most ${INBOX_DESCRIPTOR_MAX_BYTES})`);
    const base = INBOX_HEADER_BYTES + slot * INBOX_SLOT_BYTES + S_DESCRIPTOR_BYTE;
    const d = out.descriptor;
    for (let i = 0; i < length; i++) d[i] = this.bytes[base + i];
    out.from = from;
    out.length = length;
    Atomics.store(this.words, this.slotWord(slot, S_SEQ), (pos + this.slots) | 0);
    this.next = (pos + 1) >>> 0;
    return true;
  }

  /**
   * Gives up the next position if a peer claimed it and has not filled it for `stallMs` (see "A claim
   * never filled" in the module comment): for a periodic sweep, with `now` in milliseconds. The first
   * call that finds the position so only notes the time. Positions directly behind it that were
   * claimed by then and are still unfilled have stalled as long: they are given up in the same call
   * (one behind a filled position gets a clock of its own once the owner reaches it). Returns true
   * when it skipped one (what was announced behind it can then be taken: wake the owner).
   */
  skipAbandoned(now: number, stallMs = ANNOUNCEMENT_STALL_MS): boolean {
    if (this.retired !== undefined) this.passRetired();
    const pos = this.next;
    // Claimed (the enqueue position moved past it) and still carrying the sequence of a free slot.
    if (!this.unfilled(pos) || !this.passed(pos)) {
      this.stalledAt = -1;
      return false;
    }
    if (this.stalledAt !== pos) {
      this.stalledAt = pos;
      this.stalledSince = now;
      this.stalledBefore = Atomics.load(this.words, W_ENQUEUE);
      return false;
    }
    if (now - this.stalledSince < stallMs) return false;
    this.stalledAt = -1;
    let skipped = false;
    // This position, then those claimed by the time its clock started that are still unfilled; at
    // most a lap (garbage in the enqueue word could otherwise keep this going lap after lap).
    for (let k = 0; k < this.slots && this.retireNext(); k++) {
      skipped = true;
      if (((this.stalledBefore - this.next) | 0) <= 0 || !this.unfilled(this.next)) break;
    }
    return skipped;
  }

  /** Retires the slot of the next position (claimed, unfilled) and steps past it; false when it was filled meanwhile. */
  private retireNext(): boolean {
    const pos = this.next;
    const slot = pos & (this.slots - 1);
    // Retired before the sequence frees it for the next lap: a peer there must see both at once.
    Atomics.store(this.words, this.slotWord(slot, S_RETIRED), 1);
    if (!this.stepPast(pos)) {
      // Filled meanwhile: taken as usual by the next poll (no peer can reach its next lap before).
      Atomics.store(this.words, this.slotWord(slot, S_RETIRED), 0);
      return false;
    }
    (this.retired ??= new Uint8Array(this.slots))[slot] = 1;
    return true;
  }

  /**
   * Steps over the positions of retired slots that peers have passed (the enqueue position is beyond
   * them), giving each slot's sequence on to its next lap as a take would, so that peers keep
   * stepping over it.
   */
  private passRetired(): void {
    const retired = this.retired!;
    for (let k = 0; k < this.slots; k++) {
      const pos = this.next;
      const slot = pos & (this.slots - 1);
      if (retired[slot] === 0 || !this.passed(pos)) return;
      // Only a peer that found the retired word cleared (garbage) fills a retired slot: its
      // announcement is then taken as any other (`take`), not dropped here.
      if (!this.stepPast(pos)) return;
    }
  }

  /**
   * Gives unfilled position `pos` (= `next`) back for the slot's next lap, as a take does for a filled
   * one, and moves past it; false when a peer filled it meanwhile (compare-and-swap).
   */
  private stepPast(pos: number): boolean {
    if (Atomics.compareExchange(this.words, this.slotWord(pos & (this.slots - 1), S_SEQ), pos | 0, (pos + this.slots) | 0) !== (pos | 0)) return false;
    this.next = (pos + 1) >>> 0;
    return true;
  }

  /** Whether position `pos`'s slot still carries the sequence of a free slot (not filled for it). */
  private unfilled(pos: number): boolean {
    return Atomics.load(this.words, this.slotWord(pos & (this.slots - 1), S_SEQ)) === (pos | 0);
  }

  /** Whether peers' claims have gone past position `pos` (the enqueue position is ahead of it). */
  private passed(pos: number): boolean {
    // Signed: an enqueue word set behind `next` (garbage) is not taken for claims.
    return ((Atomics.load(this.words, W_ENQUEUE) - pos) | 0) > 0;
  }

  /**
   * Returns the doorbell's value and raises the waiter flag: poll once more, then sleep on it.
   *
   * The value is read before the flag goes up. A peer rings only while the flag is up, so any ring
   * that lowers this flag comes after the read and the sleep on the value returns at once. Read
   * after, a peer could lower the flag and ring in between: the value would include that ring, the
   * last poll need not show anything (the ring may be for an announcement of an empty ring, or for
   * a frame this rank already read), and this rank would sleep with its flag down, so that no later
   * frame rang either, until the sleep's timeout.
   */
  prepareToSleep(): number {
    const token = Atomics.load(this.words, DOORBELL_WORD);
    Atomics.store(this.words, W_WAITER, 1);
    return token;
  }

  /** Lowers the waiter flag (awake: peers need not wake this side). */
  clearWaiter(): void {
    Atomics.store(this.words, W_WAITER, 0);
  }

  /** Sets the state word (see {@link InboxState}). */
  setState(state: InboxState): void {
    Atomics.store(this.words, W_STATE, state);
  }

  /** Moves the state from `from` to `to` only if it still is `from`; returns whether it did. */
  changeState(from: InboxState, to: InboxState): boolean {
    return Atomics.compareExchange(this.words, W_STATE, from, to) === from;
  }
}

/** What {@link InboxSender.claim} returns when the queue is full for now. */
export const FULL = -1;
/** What {@link InboxSender.claim} returns when another peer claimed the position first, or it was a retired slot's. */
export const CONTENDED = -2;

/** A peer's side of someone's inbox: announce rings, ring the doorbell. */
export class InboxSender extends InboxView {
  constructor(region: Region) {
    super(region, 'InboxSender');
  }

  /**
   * Pushes an announcement. Returns false when the queue is full for now (retry later). Throws
   * `RangeError` for a descriptor over {@link INBOX_DESCRIPTOR_MAX_BYTES} bytes.
   */
  announce(from: number, descriptor: Uint8Array): boolean {
    if (descriptor.byteLength > INBOX_DESCRIPTOR_MAX_BYTES) throw new RangeError(`a descriptor is at most ${INBOX_DESCRIPTOR_MAX_BYTES} bytes, got ${descriptor.byteLength}`);
    for (let attempt = 0; attempt < MAX_CLAIM_ATTEMPTS; attempt++) {
      const pos = this.claim();
      if (pos === FULL) return false;
      // A refused fill: the owner took this side for dead (it stalled for seconds); claim again.
      if (pos !== CONTENDED && this.fill(pos, from, descriptor)) return true;
    }
    return false;
  }

  /**
   * The first step of {@link announce}: claims the next position. Returns it, {@link FULL}, or
   * {@link CONTENDED} (another peer claimed it first, or its slot is retired and it was passed: try
   * again). Separate for the tests, which stop between the two steps as a killed peer would.
   */
  claim(): number {
    const pos = Atomics.load(this.words, W_ENQUEUE);
    const slot = pos & (this.slots - 1);
    const seq = Atomics.load(this.words, this.slotWord(slot, S_SEQ));
    const diff = (seq - pos) | 0;
    if (diff < 0) return FULL;
    if (diff > 0) return CONTENDED; // another peer claimed it; reload the position
    const claimed = Atomics.compareExchange(this.words, W_ENQUEUE, pos, (pos + 1) | 0) === pos;
    // A retired slot (see "A claim never filled"): its position is passed, never written.
    if (Atomics.load(this.words, this.slotWord(slot, S_RETIRED)) !== 0) return CONTENDED;
    // Unsigned: a position is never one of the negative answers.
    return claimed ? pos >>> 0 : CONTENDED;
  }

  /**
   * The second step of {@link announce}: fills the slot of claimed position `pos` and publishes it.
   * False when the owner gave the position up meanwhile ({@link Inbox.skipAbandoned}).
   */
  fill(pos: number, from: number, descriptor: Uint8Array): boolean {
    const slot = pos & (this.slots - 1);
    const base = INBOX_HEADER_BYTES + slot * INBOX_SLOT_BYTES + S_DESCRIPTOR_BYTE;
    for (let i = 0; i < descriptor.byteLength; i++) this.bytes[base + i] = descriptor[i];
    Atomics.store(this.words, this.slotWord(slot, S_FROM), from);
    Atomics.store(this.words, this.slotWord(slot, S_LENGTH), descriptor.byteLength);
    return Atomics.compareExchange(this.words, this.slotWord(slot, S_SEQ), pos | 0, (pos + 1) | 0) === (pos | 0);
  }

  /**
   * Call after publishing something the owner must see. When the owner is (about to be) asleep,
   * lowers its waiter flag, increments the doorbell and returns true: the caller then wakes it
   * (`Atomics.notify`, a futex). Otherwise returns false at the cost of one load.
   *
   * Only the peer whose compare-and-swap lowers the flag rings: the owner is woken once, however
   * many peers publish, or how many frames one peer publishes, before it is up again. Without
   * that, every frame sent while the owner took its time to wake (tens to hundreds of µs here)
   * cost the sender a wake-up system call: 18–31 for a burst of 32 frames. The others need not
   * ring: the woken owner polls every ring before it sleeps again (module comment). The price: a
   * peer killed between its compare-and-swap and its wake leaves the owner asleep until the sleep
   * times out (every sleep has a timeout, `backends/shm/sleeper.ts`), where another peer's frame
   * would have woken it before.
   */
  ring(): boolean {
    if (Atomics.load(this.words, W_WAITER) === 0) return false;
    if (Atomics.compareExchange(this.words, W_WAITER, 1, 0) !== 1) return false;
    Atomics.add(this.words, DOORBELL_WORD, 1);
    return true;
  }

  /** Increments the doorbell whatever the waiter flag says (shutdown, peer gone). */
  ringAlways(): void {
    Atomics.add(this.words, DOORBELL_WORD, 1);
  }
}
