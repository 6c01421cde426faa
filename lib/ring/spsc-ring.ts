/**
 * A single-producer single-consumer byte ring of frames in shared memory: the data path of every
 * shared-memory transport (`threads`, `shm` and `ivshmem`), one ring per ordered pair.
 *
 * ## Layout
 *
 * A ring region is {@link RING_CONTROL_BYTES} of control words, {@link RING_DATA_SKEW_BYTES} unused,
 * the data area, then 32 bytes unused (so the region is a whole number of cache lines). Offsets from
 * the region start; integers are 32-bit little-endian words; every word that a different side writes
 * sits {@link CONTROL_STRIDE_BYTES} (two cache lines) from the others:
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | magic {@link RING_MAGIC} (`'VMRG'`) | creator, once |
 * | 4 | u32 | layout version {@link RING_LAYOUT_VERSION} | creator, once |
 * | 8 | u32 | data bytes `D` (a power of two, {@link MIN_RING_DATA_BYTES} … {@link MAX_RING_DATA_BYTES}) | creator, once |
 * | 128 | u32 | **head**: bytes published by the producer since creation, mod 2^32 | producer |
 * | 256 | u32 | **tail**: bytes released by the consumer since creation, mod 2^32 | consumer |
 * | 384 | u32 | producer waiting for space (1): raised by a blocked producer, lowered by the consumer when it frees space and wakes it | both |
 * | 388 | u32 | producer closed (1): nothing more will be published; (2): its channel failed, so a frame it left unfinished never completes | producer |
 * | 392 | u32 | consumer closed (1): nothing more will be read; (2): it gave the producer up while running (refused a frame, found or was told the producer is lost): whatever it still reads, nothing sent will be answered | consumer |
 * | 512 | 32 bytes | unused ({@link RING_DATA_SKEW_BYTES}: see "Where records sit") | nobody |
 * | 544 | bytes | data area, `D` bytes; byte `p` of the stream is at `544 + (p mod D)` | producer |
 * | 544 + `D` | 32 bytes | unused | nobody |
 *
 * The ring is empty when head = tail and full when head − tail = D − 64 (both mod 2^32; see the
 * stamps below for the 64 bytes kept free). Head and tail are published with `Atomics.store` after
 * the bytes they cover were written or read, and read with `Atomics.load` before the bytes they
 * cover, so data never races its index.
 *
 * A blocked producer keeps polling while it is awake; the *producer waiting* word tells the consumer
 * that freeing space matters to it: after releasing space the consumer lowers the word and asks its
 * transport to wake the producer, which costs a wake-up only if the producer's inbox says it sleeps
 * (see `inbox.ts`: the producer raises its waiter flag, then looks at the tail once more, before it
 * sleeps). The producer raises the word again whenever it finds itself blocked with the word low.
 *
 * ## Records
 *
 * The data is a stream of records, each starting at a multiple of {@link RECORD_ALIGN_BYTES} (64) from
 * the start of the data area (32 bytes into a cache line: see "Where records sit"): an 8-byte prefix
 * whose first word is the record's *stamp*, a 48-byte frame header (`lib/protocol.ts`), its payload
 * ({@link frameLength} bytes), then padding to the next multiple of 64. A record's payload may wrap
 * around the end of the data area (its prefix and header never do: the area is a multiple of 64
 * bytes).
 *
 * The consumer learns that a record is there from its stamp, not from the head word: the stamp is
 * written with the header and a small payload, so the reader waits on the lines it will read anyway,
 * not on the head word's line first and the data's after. On this machine's VM, when moving a line
 * between the cores is slow, two bare rings measured 0.65 µs per half round trip found by the head
 * word and 0.3–0.4 µs found by stamps (MPICH's fastboxes and FastForward's queue work the same way).
 * How it stays safe:
 *
 * - A stamp is `((p >>> 6) + 1) << 1 | whole` for a record at stream position `p`: never 0, and it
 *   names its position. `whole` (1) says the record was written in full before its stamp; a streamed
 *   record (0) is read as far as the head word says.
 * - Before the producer stores a record's stamp (with `Atomics.store`, after the record's bytes), it
 *   clears the word where the next record will start. So the word at a record boundary the consumer
 *   reaches is 0 (nothing yet) or the next record's stamp, never stale bytes of an earlier lap; any
 *   other value is `CORRUPT`. The producer keeps {@link RECORD_ALIGN_BYTES} free for that word: the
 *   ring holds at most `D` − 64 bytes.
 * - The head word still moves with every publish, for streamed payloads and for the counts of what
 *   is unread: after a whole record's stamp, before the stamp of a streamed record's first piece
 *   (the reader reads that record as far as the head word says as soon as it sees the stamp).
 *
 * ## Where records sit
 *
 * The data area starts {@link RING_DATA_SKEW_BYTES} (32) bytes into a cache line, so in a region
 * that starts on a line (a page-aligned `shm` file or ivshmem BAR) a record straddles two lines, and
 * the word the producer clears for the next record shares a line with the record's last bytes. (In
 * `threads`' arena, a large `SharedArrayBuffer` that this Node's allocator was seen to place 16 bytes
 * into a page, records sit 48 bytes into a line.) On this machine, in the state where moving a line
 * between the cores is slow, 8-byte messages through the whole `shm` transport took 15–20 % less time
 * with records 16, 32 or 48 bytes into a line than at its start; bare rings with no transport around
 * them were within 5 % at 0, 32 and 48 bytes and slowest at 16, so 32 suits both. The README's
 * performance section has the measurements. Why a record at the start of a line costs more is not
 * understood (this VM has no hardware counters to ask).
 *
 * Since a small record straddles two lines, a consumer waiting for one loads its last word along with
 * its stamp ({@link RingConsumer.poll}): both lines then come over together once the producer wrote
 * them, where the second presumably followed only after the stamp was seen. In the state where moving
 * a line is slow, alternating with the reader that loaded the stamp alone, 8-byte half round trips
 * through `shm` took 1–9 % less time in most pairs, through `threads` 1–20 % in 8 pairs of 10 (the
 * README has the runs).
 *
 * A payload that does not fit the free space — or the whole ring — is *streamed*: the producer writes
 * as much as fits (pieces of at least `D`/4 unless less remains), publishes, and continues when the
 * consumer has freed space; the consumer calls `sink.begin(peer, header)` once, copies each piece into
 * the target as it arrives (bytes beyond the target's length are skipped), and calls
 * `sink.commit(peer)` after the last. So a 1 GiB message crosses a 64 KiB ring with no staging copy.
 *
 * ## Validation
 *
 * Everything read from shared memory is read once and checked before use (`region.ts`): a word at a
 * record boundary that is neither 0 nor that position's stamp, a whole record bigger than the ring, a
 * streamed record whose head word claims more than the ring holds or less than its header, a length
 * beyond 2^53, a layout word that does not match the region — each throws `VmcommError('CORRUPT')`.
 * Copies are bounded by the local `D`, never by a shared value.
 *
 * @module
 */

import type { FrameSink, SendDone } from '../backend.js';
import { FRAME_HEADER_BYTES, frameLengthOfWords, HeaderWords, newHeaderBuffer } from '../protocol.js';
import { checkRegion, CONTROL_STRIDE_BYTES, corrupt, isPowerOfTwo, type Region } from './region.js';
import { SendQueue } from './send-queue.js';

/** `'VMRG'` as a little-endian u32. */
export const RING_MAGIC = 0x4752_4d56;
/**
 * The layout described in the module comment (2: records found by their stamps; 3: the data area
 * skewed by {@link RING_DATA_SKEW_BYTES}).
 */
export const RING_LAYOUT_VERSION = 3;
/** Bytes of control words at the start of a ring region. */
export const RING_CONTROL_BYTES = 4 * CONTROL_STRIDE_BYTES;
/**
 * Bytes between the control words and the data area, so that records, which start at multiples of
 * {@link RECORD_ALIGN_BYTES} within the data area, start 32 bytes into a cache line of a region that
 * is itself line-aligned (see "Where records sit" in the module comment).
 */
export const RING_DATA_SKEW_BYTES = 32;
/** Bytes before the data area: the control words, then {@link RING_DATA_SKEW_BYTES}. */
export const RING_HEADER_BYTES = RING_CONTROL_BYTES + RING_DATA_SKEW_BYTES;
/** Bytes after the data area, so that a ring region is a whole number of cache lines. */
const RING_TRAILER_BYTES = 64 - RING_DATA_SKEW_BYTES;
/** The smallest data area: a header and a little payload. */
export const MIN_RING_DATA_BYTES = 256;
/** The largest data area (head − tail must stay meaningful mod 2^32). */
export const MAX_RING_DATA_BYTES = 2 ** 30;
/** Records start at multiples of this within the data area (a small record takes a line's worth of bytes). */
export const RECORD_ALIGN_BYTES = 64;
/** Bytes before a record's frame header: the stamp word and a word left unused (keeps the header 8-aligned). */
export const RECORD_PREFIX_BYTES = 8;
/** A record's prefix and frame header: the part a producer never publishes in pieces. */
const RECORD_HEAD_BYTES = RECORD_PREFIX_BYTES + FRAME_HEADER_BYTES;

const W_MAGIC = 0;
const W_VERSION = 1;
const W_DATA_BYTES = 2;
const W_HEAD = CONTROL_STRIDE_BYTES >> 2;
const W_TAIL = (2 * CONTROL_STRIDE_BYTES) >> 2;
const W_PRODUCER_WAITING = (3 * CONTROL_STRIDE_BYTES) >> 2;
const W_PRODUCER_CLOSED = W_PRODUCER_WAITING + 1;
const W_CONSUMER_CLOSED = W_PRODUCER_WAITING + 2;

/** Copies up to this many bytes with a loop; longer copies use `Uint8Array.prototype.set`. */
const LOOP_COPY_BYTES = 64;

/** Bytes of a ring region whose data area is `dataBytes`. */
export function ringRegionBytes(dataBytes: number): number {
  if (!isPowerOfTwo(dataBytes) || dataBytes < MIN_RING_DATA_BYTES || dataBytes > MAX_RING_DATA_BYTES) {
    throw new RangeError(`a ring's data area must be a power of two from ${MIN_RING_DATA_BYTES} to ${MAX_RING_DATA_BYTES} bytes, got ${dataBytes}`);
  }
  return RING_HEADER_BYTES + dataBytes + RING_TRAILER_BYTES;
}

/** The data area of a ring region of `regionBytes` (the inverse of {@link ringRegionBytes}; not checked). */
export function ringDataBytes(regionBytes: number): number {
  return regionBytes - RING_HEADER_BYTES - RING_TRAILER_BYTES;
}

/**
 * Writes a fresh, empty ring into `region` (a region of {@link ringRegionBytes}`(D)` bytes for a data
 * area of `D`, a power of two). Call before the region is announced to the consumer.
 */
export function initRing(region: Region): void {
  checkRegion(region, ringRegionBytes(MIN_RING_DATA_BYTES), 'initRing');
  const dataBytes = ringDataBytes(region.byteLength);
  ringRegionBytes(dataBytes);
  const ctl = new Int32Array(region.sab, region.byteOffset, RING_CONTROL_BYTES >> 2);
  for (let i = 0; i < ctl.length; i++) Atomics.store(ctl, i, 0);
  // The first record's stamp word: a region used before (an ivshmem slot) may hold anything there.
  Atomics.store(new Int32Array(region.sab, region.byteOffset + RING_HEADER_BYTES, 1), 0, 0);
  Atomics.store(ctl, W_DATA_BYTES, dataBytes);
  Atomics.store(ctl, W_VERSION, RING_LAYOUT_VERSION);
  Atomics.store(ctl, W_MAGIC, RING_MAGIC | 0);
}

/** Bytes of the record of a frame with an `n`-byte payload: prefix, header, payload, padding. */
function recordBytes(n: number): number {
  // Bitwise below 2^30 (every frame a ring carries whole): `%` on a length V8 holds as a double is
  // an x87 `fprem`, a fifth of a small frame's send. Larger lengths (a streamed payload's) keep `%`.
  if (n <= 0x3fff_ffff) return (RECORD_HEAD_BYTES + n + RECORD_ALIGN_BYTES - 1) & -RECORD_ALIGN_BYTES;
  const r = (RECORD_HEAD_BYTES + n) % RECORD_ALIGN_BYTES;
  return RECORD_HEAD_BYTES + n + (r === 0 ? 0 : RECORD_ALIGN_BYTES - r);
}

/** The stamp of a record at stream position `pos` (see the module comment). */
function stampOf(pos: number, whole: 0 | 1): number {
  return (((pos >>> 6) + 1) << 1) | whole;
}

/** The control words and data view of a ring, validated once. */
abstract class RingSide {
  readonly dataBytes: number;
  /** The most the ring holds: `D` − {@link RECORD_ALIGN_BYTES}, the rest kept for the next stamp word. */
  protected readonly capacity: number;
  protected readonly mask: number;
  protected readonly ctl: Int32Array;
  protected readonly data: Uint8Array;
  /** The data area as words: headers (4-byte aligned, records are 8-aligned) move a word at a time. */
  protected readonly data32: Int32Array;
  /** A streamed payload moves in pieces of at most this many bytes (`D`/4; the last may be shorter). */
  protected readonly pieceBytes: number;
  /**
   * The most bytes of a streamed payload one call moves, so that neither side holds its thread for a
   * whole large message (8 `D`): a producer's {@link RingProducer.flush} writes about this much, a
   * consumer's {@link RingConsumer.poll} copies at most this much.
   */
  protected readonly streamLimitBytes: number;

  constructor(region: Region, what: string) {
    checkRegion(region, ringRegionBytes(MIN_RING_DATA_BYTES), what);
    this.ctl = new Int32Array(region.sab, region.byteOffset, RING_CONTROL_BYTES >> 2);
    const magic = Atomics.load(this.ctl, W_MAGIC) >>> 0;
    const version = Atomics.load(this.ctl, W_VERSION) >>> 0;
    const dataBytes = Atomics.load(this.ctl, W_DATA_BYTES) >>> 0;
    if (magic !== RING_MAGIC) throw corrupt(`ring magic 0x${magic.toString(16)}, expected 0x${RING_MAGIC.toString(16)}`);
    if (version !== RING_LAYOUT_VERSION) throw corrupt(`ring layout version ${version}, expected ${RING_LAYOUT_VERSION}`);
    if (!isPowerOfTwo(dataBytes) || dataBytes < MIN_RING_DATA_BYTES || dataBytes > MAX_RING_DATA_BYTES || ringRegionBytes(dataBytes) !== region.byteLength) {
      throw corrupt(`a ring declaring ${dataBytes} data bytes in a ${region.byteLength}-byte region`);
    }
    this.dataBytes = dataBytes;
    this.capacity = dataBytes - RECORD_ALIGN_BYTES;
    this.mask = dataBytes - 1;
    this.data = new Uint8Array(region.sab, region.byteOffset + RING_HEADER_BYTES, dataBytes);
    this.data32 = new Int32Array(region.sab, region.byteOffset + RING_HEADER_BYTES, dataBytes >> 2);
    this.pieceBytes = dataBytes >> 2;
    this.streamLimitBytes = Math.min(8 * dataBytes, 2 ** 31);
  }

  /** Reads head and tail and checks that they describe at most a full ring. */
  protected readIndices(): [head: number, tail: number] {
    const head = Atomics.load(this.ctl, W_HEAD) >>> 0;
    const tail = Atomics.load(this.ctl, W_TAIL) >>> 0;
    if ((head - tail) >>> 0 > this.capacity) throw corrupt(`ring head ${head} and tail ${tail} are more than ${this.capacity} bytes apart`);
    return [head, tail];
  }
}

/**
 * The producer's side: frames in, in call order. Frames that do not fit wait in a send queue (header
 * copied, payload borrowed) until {@link flush} finds space; each frame's `done` is called once all of
 * its payload is in the ring.
 */
export class RingProducer extends RingSide {
  /** Stream position of the next byte to write (authoritative: only this side writes head). */
  private head: number;
  /** The consumer's tail as last read. */
  private tail: number;
  private readonly queue = new SendQueue();
  /** The word view of the header buffer the core sends from (the same one message after message). */
  private readonly headerWords = new HeaderWords();
  /** The dones of frames completed by one flush, called after the publish. */
  private readonly completedDones: (SendDone | undefined)[] = [];
  /** True while a flush calls dones (a done that sends again must not reuse {@link completedDones}). */
  private callingDones = false;
  private blocked = false;

  /**
   * @param onPublish called after head moved (before any `done`): the place to wake the consumer.
   */
  constructor(
    region: Region,
    private readonly onPublish: () => void = () => undefined,
  ) {
    super(region, 'RingProducer');
    [this.head, this.tail] = this.readIndices();
  }

  /** Frames not yet fully in the ring. */
  get queued(): number {
    return this.queue.length;
  }

  /** Frames fully written since creation. */
  completed = 0;

  /** True when frames wait for the consumer to free space. */
  get waiting(): boolean {
    return this.blocked;
  }

  /** True when the consumer said it reads no more. */
  get consumerClosed(): boolean {
    return Atomics.load(this.ctl, W_CONSUMER_CLOSED) !== 0;
  }

  /** True when the consumer gave the ring up while running (see {@link RingConsumer.close}), not at its close. */
  get consumerDropped(): boolean {
    return Atomics.load(this.ctl, W_CONSUMER_CLOSED) === 2;
  }

  /** Bytes the consumer has not released yet (reads the shared tail). */
  get unread(): number {
    const tail = Atomics.load(this.ctl, W_TAIL) >>> 0;
    return (this.head - tail) >>> 0;
  }

  /**
   * Sends one frame: `header` ({@link FRAME_HEADER_BYTES} bytes, copied before returning) and
   * `payload` (its length must be what the header announces; borrowed until `done`). Written at once
   * when nothing is queued and it fits, else queued and written as space allows. Returns the bytes
   * published by this call. Throws `CORRUPT` when the shared tail is invalid.
   */
  send(header: Uint8Array, payload: Uint8Array | undefined, done: SendDone | undefined): number {
    const written = this.trySend(header, payload);
    if (written > 0) {
      if (done !== undefined) done();
      return written;
    }
    this.queue.push(header, payload, done);
    return this.flush();
  }

  /**
   * Writes the frame at once if nothing is queued and it fits; returns the bytes published, or 0
   * (nothing done: the frame is the caller's to queue). Throws `CORRUPT` when the shared tail is
   * invalid.
   */
  trySend(header: Uint8Array, payload: Uint8Array | undefined): number {
    if (this.queue.length !== 0) return 0;
    // `.length` of a Uint8Array: V8 11 does not inline `byteLength` (see `lib/engine.ts`).
    const length = payload === undefined ? 0 : payload.length;
    const record = recordBytes(length);
    if (record > this.capacity || (record > this.capacity - ((this.head - this.tail) >>> 0) && record > this.refreshFree(this.head))) return 0;
    const at = this.head;
    this.copyHeaderIn(header, 0, at + RECORD_PREFIX_BYTES);
    if (length > 0) this.copyIn(payload!, 0, length, at + RECORD_HEAD_BYTES);
    this.head = (at + record) >>> 0;
    this.stamp(at, this.head, 1);
    Atomics.store(this.ctl, W_HEAD, this.head | 0);
    this.onPublish();
    this.completed++;
    return record;
  }

  /**
   * Writes queued frames while there is room; calls the `done` of each frame that is now fully in the
   * ring. When frames remain, raises the producer-waiting flag so the consumer wakes this side when it
   * frees space. Returns the bytes published.
   */
  flush(): number {
    const q = this.queue;
    if (q.length === 0) return 0;
    const start = this.head;
    let head = start;
    let free = this.capacity - ((head - this.tail) >>> 0);
    let completed = 0;
    let written = q.frontWritten;
    // Bounded: with a fast consumer a huge payload could otherwise stream in one call, holding the
    // event loop; the next flush continues.
    const limit = this.streamLimitBytes;
    while (completed < q.length && ((head - start) >>> 0) < limit) {
      const slot = q.slotAt(completed);
      const payload = q.payloadAtSlot(slot);
      const length = payload === undefined ? 0 : payload.length;
      const record = recordBytes(length);
      // Worth starting or continuing only with a header plus a real piece, or the rest.
      const want = written === 0 ? Math.min(record, RECORD_HEAD_BYTES + this.pieceBytes) : Math.min(record - written, this.pieceBytes);
      if (free < want) {
        free = this.refreshFree(head);
        if (free < want) break;
      }
      // Where this frame's record starts; whether this pass starts it (its stamp is still to store).
      const starts = written === 0;
      const at = (head - written) >>> 0;
      if (starts) {
        this.copyHeaderIn(q.headers, slot * FRAME_HEADER_BYTES, head + RECORD_PREFIX_BYTES);
        head = (head + RECORD_HEAD_BYTES) >>> 0;
        free -= RECORD_HEAD_BYTES;
        written = RECORD_HEAD_BYTES;
      }
      const n = Math.min(record - written, free, this.pieceBytes);
      const payloadDone = written - RECORD_HEAD_BYTES;
      const copy = Math.min(n, length - payloadDone);
      if (copy > 0) this.copyIn(payload!, payloadDone, copy, head);
      head = (head + n) >>> 0;
      free -= n;
      written += n;
      if (written < record) {
        // A streamed piece: publish it now, so the consumer copies it while we write the next. The
        // head word says how far the record goes, so it moves first: a consumer that sees the stamp
        // (not whole, with the first piece) reads the head word at once, and must find the piece there
        // (and every whole record stamped before it in this flush).
        this.head = head;
        Atomics.store(this.ctl, W_HEAD, head | 0);
        if (starts) this.storeStamp(at, 0);
        this.onPublish();
        continue;
      }
      if (starts) this.stamp(at, head, 1);
      // The last piece of a streamed record: the head store below publishes it, after the clear.
      else this.clearStampWord(head);
      completed++;
      written = 0;
    }
    if (head !== this.head) {
      this.head = head;
      Atomics.store(this.ctl, W_HEAD, head | 0);
      this.onPublish();
    }
    const moved = (head - start) >>> 0;
    const nested = this.callingDones;
    const dones = nested ? new Array<SendDone | undefined>(completed) : this.completedDones;
    for (let i = 0; i < completed; i++) dones[i] = q.shift();
    q.frontWritten = written;
    this.completed += completed;
    if (q.length > 0) {
      // Stored only when low: a producer polling a full ring does not keep writing the consumer's line.
      if (Atomics.load(this.ctl, W_PRODUCER_WAITING) === 0) Atomics.store(this.ctl, W_PRODUCER_WAITING, 1);
      this.blocked = true;
    } else if (this.blocked) {
      Atomics.store(this.ctl, W_PRODUCER_WAITING, 0);
      this.blocked = false;
    }
    // Last: a done may send again (re-entering this producer) and must see a consistent queue.
    this.callingDones = true;
    try {
      for (let i = 0; i < completed; i++) {
        const done = dones[i];
        dones[i] = undefined;
        if (done !== undefined) done();
      }
    } finally {
      this.callingDones = nested;
    }
    return moved;
  }

  /** Fails every queued frame (its `done` gets `error`); the ring itself is left as it is. */
  failQueued(error: Error): void {
    const q = this.queue;
    while (q.length > 0) {
      const done = q.shift();
      if (done !== undefined) done(error);
    }
    this.blocked = false;
  }

  /** Says that nothing more will be published (after the queue drained). Idempotent. */
  close(): void {
    Atomics.store(this.ctl, W_PRODUCER_CLOSED, 1);
  }

  /** Says that the channel failed: nothing more will be published, and a frame left unfinished stays so. */
  closeFailed(): void {
    Atomics.store(this.ctl, W_PRODUCER_CLOSED, 2);
  }

  private refreshFree(head: number): number {
    const tail = Atomics.load(this.ctl, W_TAIL) >>> 0;
    const used = (head - tail) >>> 0;
    if (used > this.capacity) throw corrupt(`ring tail ${tail} is ${used} bytes behind head ${head} in a ${this.dataBytes}-byte ring`);
    this.tail = tail;
    return this.capacity - used;
  }

  /**
   * Publishes the record at `at`, which ends at `end`: clears the word where the next record starts
   * (free space: {@link capacity} keeps it so), then stores the stamp — after every byte of the
   * record, so a consumer that sees the stamp sees them.
   */
  private stamp(at: number, end: number, whole: 0 | 1): void {
    this.clearStampWord(end);
    this.storeStamp(at, whole);
  }

  /**
   * Clears the word at record boundary `pos`, where the next record's stamp will go: a plain store,
   * published by the atomic store that follows it.
   */
  private clearStampWord(pos: number): void {
    this.data32[(pos & this.mask) >> 2] = 0;
  }

  /** Publishes the stamp of the record at `at` (`whole`: written in full before it). */
  private storeStamp(at: number, whole: 0 | 1): void {
    Atomics.store(this.data32, (at & this.mask) >> 2, stampOf(at, whole));
  }

  /**
   * Copies a 48-byte header from `src` at `from` to stream position `pos`, by words: a header never
   * wraps (it follows a record's prefix, and records start on 64-byte boundaries of the data area).
   */
  private copyHeaderIn(src: Uint8Array, from: number, pos: number): void {
    const at = pos & this.mask;
    const d = this.data32;
    const words = from === 0 ? this.headerWords.of(src) : undefined;
    if (words !== undefined) {
      for (let i = 0, w = at >> 2; i < FRAME_HEADER_BYTES >> 2; i++, w++) d[w] = words[i];
      return;
    }
    for (let w = at >> 2, j = from; j < from + FRAME_HEADER_BYTES; w++, j += 4) d[w] = src[j] | (src[j + 1] << 8) | (src[j + 2] << 16) | (src[j + 3] << 24);
  }

  /** Copies `n` bytes of `src` from `from` to stream position `pos` (wrapping). */
  private copyIn(src: Uint8Array, from: number, n: number, pos: number): void {
    const data = this.data;
    const at = pos & this.mask;
    const first = Math.min(n, this.dataBytes - at);
    if (n <= LOOP_COPY_BYTES) {
      for (let i = 0; i < first; i++) data[at + i] = src[from + i];
      for (let i = first; i < n; i++) data[i - first] = src[from + i];
      return;
    }
    data.set(from === 0 && first === src.length ? src : src.subarray(from, from + first), at);
    if (first < n) data.set(src.subarray(from + first, from + n), 0);
  }
}

/**
 * The consumer's side: delivers frames to a {@link FrameSink} in three steps (`begin`, copy,
 * `commit`), streaming payloads that arrive in pieces.
 */
export class RingConsumer extends RingSide {
  /** Stream position of the next byte to read (authoritative: only this side writes tail). */
  private tail: number;
  /** Within a record: payload bytes still to come, and payload + padding bytes still to come. */
  private inFrame = false;
  /** The current record was written in full before its stamp (else it streams: see the head word). */
  private whole = false;
  private payloadLeft = 0;
  private recordLeft = 0;
  private target: Uint8Array | undefined;
  private targetAt = 0;
  /** A private copy of the current header: the sink never sees shared memory change under it. */
  /** Handed to the sink's `begin`: a header buffer the core decodes by words. */
  private readonly header = newHeaderBuffer();
  private readonly header32 = new Int32Array(this.header.buffer);
  /**
   * Set by {@link poll} when it freed space for a producer that was waiting for it (the word was
   * lowered): the caller wakes the producer if it sleeps, and clears this.
   */
  producerWantsWake = false;

  constructor(region: Region) {
    super(region, 'RingConsumer');
    this.tail = this.readIndices()[1];
  }

  /** Stream position of the next byte to read (changes when the ring is read). */
  get position(): number {
    return this.tail;
  }

  /** True when a frame has begun and not been committed. */
  get midFrame(): boolean {
    return this.inFrame;
  }

  /** True when the producer said it publishes no more. */
  get producerClosed(): boolean {
    return Atomics.load(this.ctl, W_PRODUCER_CLOSED) !== 0;
  }

  /** True when the producer said its channel failed (see {@link RingProducer.closeFailed}). */
  get producerFailed(): boolean {
    return Atomics.load(this.ctl, W_PRODUCER_CLOSED) === 2;
  }

  /** Bytes published and not yet read (one atomic load). */
  available(): number {
    // Whole records are read by their stamps, so the reader can be past a head word that a producer
    // failed to move (its flush threw on a corrupt tail after stamping them): that is nothing unread.
    const n = (Atomics.load(this.ctl, W_HEAD) - this.tail) >>> 0;
    return n > this.capacity ? 0 : n;
  }

  /**
   * Delivers up to `maxFrames` frames (a streamed frame counts when committed) to `sink` as coming
   * from `peer`. Returns the frames committed. Throws `CORRUPT` for invalid shared state, and passes
   * on what the sink throws; either way the ring is unusable afterwards.
   */
  poll(sink: FrameSink, peer: number, maxFrames: number): number {
    // Inside a streamed record, the head word says how far it goes.
    if (this.inFrame) return (Atomics.load(this.ctl, W_HEAD) >>> 0) === this.tail ? 0 : this.consume(sink, peer, maxFrames);
    // At a record boundary, the stamp word says whether a record is there. The record's last word is
    // loaded too, result unused: a small record straddles two cache lines (see "Where records sit"),
    // and a load of the second issued with the stamp's brings both lines over together once the
    // producer wrote them. Without it the second line is presumably fetched only after the stamp was
    // seen, one more crossing between the cores per message: the measurements (module comment) fit.
    const at = this.tail & this.mask;
    const stamp = Atomics.load(this.data32, at >> 2);
    // Masked, so it stays in bounds from a tail off the record grid (shared memory gone wrong),
    // which `consume` refuses once the word there is not 0.
    Atomics.load(this.data32, ((at + RECORD_ALIGN_BYTES - 4) & this.mask) >> 2);
    return stamp === 0 ? 0 : this.consume(sink, peer, maxFrames, stamp);
  }

  /**
   * Says that nothing more will be read. `dropped`: the reader gave the producer up while it runs on
   * (it refused a frame, or found or was told that the producer is lost), so the producer cannot take
   * it for a close at finalize and fails what waits for an answer. Idempotent; a drop is never turned
   * back into a close.
   */
  close(dropped = false): void {
    if (dropped) Atomics.store(this.ctl, W_CONSUMER_CLOSED, 2);
    else Atomics.compareExchange(this.ctl, W_CONSUMER_CLOSED, 0, 1);
  }

  /** `seen`: the stamp {@link poll} just loaded at `tail` (0: none), so the first record needs no second load. */
  private consume(sink: FrameSink, peer: number, maxFrames: number, seen = 0): number {
    let tail = this.tail;
    // Bytes of the current record known to be published beyond `tail`: all of a whole record's, as
    // far as the head word says for a streamed one.
    let avail = this.inFrame ? (this.whole ? this.recordLeft : this.published(tail)) : 0;
    let frames = 0;
    let streamed = 0;
    for (;;) {
      if (!this.inFrame) {
        if (frames >= maxFrames) break;
        const at = tail & this.mask;
        // A stamp seen stays until its record is released: the producer never writes unread bytes.
        const stamp = seen !== 0 ? seen : Atomics.load(this.data32, at >> 2);
        seen = 0;
        if (stamp === 0) break;
        if (stamp >>> 1 !== (tail >>> 6) + 1 || (at & (RECORD_ALIGN_BYTES - 1)) !== 0) throw corrupt(`the word at ring position ${tail} is ${stamp >>> 0}, neither 0 nor the stamp of a record there`);
        // The header is never split by the ring's end (records start on 64-byte boundaries of an area
        // that is a multiple of 64).
        const d = this.data32;
        const h = this.header32;
        for (let i = 0, w = (at + RECORD_PREFIX_BYTES) >> 2; i < FRAME_HEADER_BYTES >> 2; i++, w++) h[i] = d[w];
        const length = frameLengthOfWords(this.header, h);
        const record = recordBytes(length);
        const whole = (stamp & 1) === 1;
        if (whole) {
          if (record > this.capacity) throw corrupt(`a whole record of ${record} bytes in a ring that holds ${this.capacity}`);
          avail = record;
        } else {
          avail = this.published(tail);
          if (avail < RECORD_HEAD_BYTES) throw corrupt(`a streamed record with ${avail} bytes published, less than its header`);
        }
        tail = (tail + RECORD_HEAD_BYTES) >>> 0;
        avail -= RECORD_HEAD_BYTES;
        this.inFrame = true;
        this.whole = whole;
        this.payloadLeft = length;
        this.recordLeft = record - RECORD_HEAD_BYTES;
        this.targetAt = 0;
        this.target = sink.begin(peer, this.header);
      }
      if (this.recordLeft > 0) {
        if (avail === 0) {
          // Only a streamed record runs out of published bytes.
          if (!this.whole) avail = this.published(tail);
          if (avail === 0) break;
        }
        const n = Math.min(this.recordLeft, avail, this.pieceBytes);
        const k = Math.min(n, this.payloadLeft);
        if (k > 0) {
          const target = this.target;
          if (target !== undefined) {
            const c = Math.min(k, target.length - this.targetAt);
            if (c > 0) this.copyOut(tail, c, target, this.targetAt);
          }
          this.targetAt += k;
          this.payloadLeft -= k;
        }
        tail = (tail + n) >>> 0;
        avail -= n;
        this.recordLeft -= n;
        if (this.recordLeft > 0) {
          // Streaming: free the piece at once so the producer can refill while we copy the next.
          this.release(tail);
          // Bounded per call: with a producer that keeps up, a large message would otherwise stream
          // through one poll, holding the event loop (timers, I/O) and every other ring until its end.
          // The next poll goes on where this one stopped (the record stays in progress).
          if (!this.whole && (streamed += n) >= this.streamLimitBytes) break;
          continue;
        }
      }
      this.inFrame = false;
      this.target = undefined;
      frames++;
      // Release before the sink acts on the frame: a streaming producer can refill meanwhile.
      this.release(tail);
      sink.commit(peer);
    }
    this.release(tail);
    return frames;
  }

  /** Bytes the head word says are published beyond `tail`, checked against the ring's size. */
  private published(tail: number): number {
    const head = Atomics.load(this.ctl, W_HEAD) >>> 0;
    const avail = (head - tail) >>> 0;
    if (avail > this.capacity) throw corrupt(`the producer published ${avail} bytes into a ring that holds ${this.capacity}`);
    return avail;
  }

  private release(tail: number): void {
    if (tail === this.tail) return;
    this.tail = tail;
    Atomics.store(this.ctl, W_TAIL, tail | 0);
    if (Atomics.load(this.ctl, W_PRODUCER_WAITING) !== 0) {
      Atomics.store(this.ctl, W_PRODUCER_WAITING, 0);
      this.producerWantsWake = true;
    }
  }

  /** Copies `n` bytes from stream position `pos` (wrapping) into `dst` at `to`. */
  private copyOut(pos: number, n: number, dst: Uint8Array, to: number): void {
    const data = this.data;
    const at = pos & this.mask;
    const first = Math.min(n, this.dataBytes - at);
    if (n <= LOOP_COPY_BYTES) {
      for (let i = 0; i < first; i++) dst[to + i] = data[at + i];
      for (let i = first; i < n; i++) dst[to + i] = data[i - first];
      return;
    }
    dst.set(data.subarray(at, at + first), to);
    if (first < n) dst.set(data.subarray(0, n - first), to + first);
  }
}
