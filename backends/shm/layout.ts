/**
 * What the shm transport's two kinds of file hold. Both start with a small header of the transport's
 * own, then a structure of the shared ring layer (`lib/ring/`) at {@link FILE_HEADER_BYTES}.
 *
 * ## Inbox file (`…-inbox`, one per rank; it is also the rank's *shm token*)
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | magic {@link INBOX_FILE_MAGIC} (`'VMSI'`) | owner, once |
 * | 4 | u32 | layout version {@link SHM_LAYOUT_VERSION} | owner, once |
 * | 8 | u32 | the owner's rank | owner, once |
 * | 12 | u32 | inbox slots | owner, once |
 * | 16 | 16 bytes | the owner's shm nonce (the same 128 bits its card carries, as hex) | owner, once |
 * | 256 | | the inbox (`lib/ring/inbox.ts`): doorbell, waiter flag, state, announcements | |
 * | 256 + inbox bytes | `COLLECTIVE_CELLS` × `CELL_BYTES` | collective cells (`lib/ring/collective-cells.ts`) | owner |
 *
 * A peer proves it shares this OS (and this `/dev/shm`) by opening the file its card names, in its own
 * shm directory, and finding the nonce the card carries: DESIGN section 4's shm token.
 *
 * ## Ring file (`…-ring-<to>`, one per ordered pair that talked; created by the sender)
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | magic {@link RING_FILE_MAGIC} (`'VMSR'`) | producer, once |
 * | 4 | u32 | layout version {@link SHM_LAYOUT_VERSION} | producer, once |
 * | 8 | u32 | producer rank | producer, once |
 * | 12 | u32 | consumer rank | producer, once |
 * | 16 | u32 | ring data bytes | producer, once |
 * | 64 | i32 | producer stopped (1): it finalized; the file is the reader's to remove | producer |
 * | 68 | i32 | consumer attached (1) | consumer |
 * | 128 | 64 bytes | single copy's control block (`lib/ring/single-copy-control.ts`) | both |
 * | 256 | | the ring (`lib/ring/spsc-ring.ts`) | |
 *
 * Who removes a ring file: both sides set their flag, then read the other's (sequentially consistent
 * `Atomics`), and the side that sees both set unlinks it — so a ring whose writer finished before its
 * reader opened it stays until the reader has it, and is removed once either way.
 *
 * @module
 */

import { CELL_BYTES, CELLS_BYTES } from '../../lib/ring/collective-cells.js';
import { inboxBytes } from '../../lib/ring/inbox.js';
import { corrupt } from '../../lib/ring/region.js';
import { SingleCopyControl } from '../../lib/ring/single-copy-control.js';

/** `'VMSI'` as a little-endian u32. */
export const INBOX_FILE_MAGIC = 0x4953_4d56;
/** `'VMSR'` as a little-endian u32. */
export const RING_FILE_MAGIC = 0x5253_4d56;
/**
 * The layouts described in the module comment (2: collective cells after the inbox; 3: single copy's
 * control block of `lib/ring`; 4: that block's fate word; 5: rings of layout 3, 64 bytes longer).
 */
export const SHM_LAYOUT_VERSION = 5;
/** Bytes of the transport's own header before the ring layer's structure. */
export const FILE_HEADER_BYTES = 256;
/** Bytes of the nonce in an inbox file. */
export const NONCE_BYTES = 16;

/** Bytes of a rank's inbox file with `slots` announcement slots. */
export function inboxFileBytes(slots: number): number {
  return FILE_HEADER_BYTES + inboxBytes(slots) + CELLS_BYTES;
}

/** Byte offset of cell `key` in an inbox file with `slots` slots. */
export function cellOffset(slots: number, key: number): number {
  return FILE_HEADER_BYTES + inboxBytes(slots) + key * CELL_BYTES;
}

const I_MAGIC = 0;
const I_VERSION = 1;
const I_RANK = 2;
const I_SLOTS = 3;
const I_NONCE_BYTE = 16;

const R_MAGIC = 0;
const R_VERSION = 1;
const R_FROM = 2;
const R_TO = 3;
const R_DATA_BYTES = 4;
const R_PRODUCER_STOPPED = 64 >> 2;
const R_CONSUMER_ATTACHED = 68 >> 2;
/** Byte offset of single copy's control block in a ring file. */
const SINGLE_COPY_CONTROL_BYTE = 128;

/** Writes an inbox file's header (the inbox itself is written by `initInbox`). */
export function writeInboxHeader(sab: SharedArrayBuffer, rank: number, slots: number, nonce: Uint8Array): void {
  const w = new Int32Array(sab, 0, FILE_HEADER_BYTES >> 2);
  new Uint8Array(sab, I_NONCE_BYTE, NONCE_BYTES).set(nonce.subarray(0, NONCE_BYTES));
  Atomics.store(w, I_RANK, rank);
  Atomics.store(w, I_SLOTS, slots);
  Atomics.store(w, I_VERSION, SHM_LAYOUT_VERSION);
  Atomics.store(w, I_MAGIC, INBOX_FILE_MAGIC | 0);
}

/**
 * Checks a peer's inbox file header: the magic, the version, the rank and slots its card names, and
 * the nonce. Returns false for a nonce that differs (not the file the card meant: another OS's
 * `/dev/shm`, or a stale file); throws `CORRUPT` for a header that is not a vmcomm inbox at all.
 */
export function checkInboxHeader(sab: SharedArrayBuffer, rank: number, slots: number, nonce: Uint8Array): boolean {
  if (sab.byteLength < FILE_HEADER_BYTES) throw corrupt(`an inbox file of ${sab.byteLength} bytes`);
  const w = new Int32Array(sab, 0, FILE_HEADER_BYTES >> 2);
  const magic = Atomics.load(w, I_MAGIC) >>> 0;
  const version = Atomics.load(w, I_VERSION) >>> 0;
  if (magic !== INBOX_FILE_MAGIC) throw corrupt(`inbox file magic 0x${magic.toString(16)}, expected 0x${INBOX_FILE_MAGIC.toString(16)}`);
  if (version !== SHM_LAYOUT_VERSION) throw corrupt(`inbox file layout version ${version}, expected ${SHM_LAYOUT_VERSION}`);
  if (Atomics.load(w, I_RANK) !== rank || Atomics.load(w, I_SLOTS) !== slots) return false;
  const bytes = new Uint8Array(sab, I_NONCE_BYTE, NONCE_BYTES);
  for (let i = 0; i < NONCE_BYTES; i++) if (bytes[i] !== nonce[i]) return false;
  return true;
}

/** The control words of a ring file (both sides use the same view). */
export class RingFileControl {
  private readonly w: Int32Array;
  /** Single copy's answers and requests (`lib/ring/single-copy-control.ts`). */
  readonly singleCopy: SingleCopyControl;

  constructor(sab: SharedArrayBuffer) {
    this.w = new Int32Array(sab, 0, FILE_HEADER_BYTES >> 2);
    this.singleCopy = new SingleCopyControl({ sab, byteOffset: SINGLE_COPY_CONTROL_BYTE, byteLength: FILE_HEADER_BYTES - SINGLE_COPY_CONTROL_BYTE });
  }

  /** Producer: writes the header of a fresh file. */
  init(from: number, to: number, dataBytes: number): void {
    const w = this.w;
    Atomics.store(w, R_FROM, from);
    Atomics.store(w, R_TO, to);
    Atomics.store(w, R_DATA_BYTES, dataBytes);
    Atomics.store(w, R_VERSION, SHM_LAYOUT_VERSION);
    Atomics.store(w, R_MAGIC, RING_FILE_MAGIC | 0);
  }

  /** Consumer: checks the header against what the announcement and the producer's card say. */
  check(from: number, to: number, dataBytes: number): void {
    const w = this.w;
    const magic = Atomics.load(w, R_MAGIC) >>> 0;
    const version = Atomics.load(w, R_VERSION) >>> 0;
    if (magic !== RING_FILE_MAGIC) throw corrupt(`ring file magic 0x${magic.toString(16)}, expected 0x${RING_FILE_MAGIC.toString(16)}`);
    if (version !== SHM_LAYOUT_VERSION) throw corrupt(`ring file layout version ${version}, expected ${SHM_LAYOUT_VERSION}`);
    const f = Atomics.load(w, R_FROM);
    const t = Atomics.load(w, R_TO);
    const d = Atomics.load(w, R_DATA_BYTES) >>> 0;
    if (f !== from || t !== to || d !== dataBytes) throw corrupt(`a ring file for ${f} → ${t} of ${d} bytes where ${from} → ${to} of ${dataBytes} was announced`);
  }

  /** Producer: it stopped. Returns true when the consumer had attached (the producer then removes the file). */
  producerStopped(): boolean {
    Atomics.store(this.w, R_PRODUCER_STOPPED, 1);
    return Atomics.load(this.w, R_CONSUMER_ATTACHED) !== 0;
  }

  /** Consumer: it attached. Returns true when the producer had stopped (the consumer then removes the file). */
  consumerAttached(): boolean {
    Atomics.store(this.w, R_CONSUMER_ATTACHED, 1);
    return Atomics.load(this.w, R_PRODUCER_STOPPED) !== 0;
  }
}
