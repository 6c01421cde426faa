/**
 * The byte layout of an ivshmem *region*: one block of memory that every VM on a host sees (QEMU's
 * `ivshmem-plain` device, PCI 1af4:1110, BAR 2; on the host a file such as `/dev/shm/NAME`). Several
 * jobs, and several VMs per job, share one region. This file holds the constants and the layout
 * arithmetic; `region-header.ts`, `membership.ts` and `allocator.ts` hold the operations.
 *
 * Everything below is precise enough to write a C implementation from. All integers are 32-bit
 * little-endian words at 4-byte aligned offsets (vmcomm runs on little-endian hosts only), accessed
 * with sequentially consistent atomics (C11 `atomic_load`/`atomic_store`/`atomic_compare_exchange_strong`
 * on `_Atomic uint32_t`, or `__atomic_*` with `__ATOMIC_SEQ_CST`). "CAS" is a 32-bit compare-and-swap.
 * 128-bit ids (UUID, job id, process nonce) are 16 bytes stored as four words, byte `k` of the id in
 * bits `8·(k mod 4)` of word `k / 4` — i.e. the id's bytes in order.
 *
 * ## Region
 *
 * | offset | bytes | what |
 * |---|---|---|
 * | 0 | {@link REGION_HEADER_BYTES} | header |
 * | `slotTable` = {@link REGION_HEADER_BYTES} | `S` × {@link SLOT_BYTES} | membership table, slot `s` at `slotTable + s·512` |
 * | `blockTable` = `slotTable + S·512` | `B` × {@link BLOCK_ENTRY_BYTES} | ring-block table, entry `b` at `blockTable + b·64` |
 * | `blocks` = `blockTable + B·64` rounded up to {@link BLOCKS_ALIGN_BYTES} | `B` × `blockBytes` | ring blocks, block `b` at `blocks + b·blockBytes` |
 * | … | | unused up to the region size |
 *
 * The region size is a power of two from {@link MIN_REGION_BYTES} to {@link MAX_REGION_BYTES} (QEMU
 * requires a power of two). The place of a block is always *computed* from its index and the header;
 * no offset is ever read from a table.
 *
 * ## Header (offset 0, {@link REGION_HEADER_BYTES} bytes)
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | magic {@link REGION_MAGIC} (`'VMIV'`) | formatter, last |
 * | 4 | u32 | layout version {@link REGION_LAYOUT_VERSION} | formatter |
 * | 8 | u32 | header bytes, {@link REGION_HEADER_BYTES} | formatter |
 * | 12 | u32 | reserved, 0 | formatter |
 * | 16 | u32 | region size in bytes, low 32 bits | formatter |
 * | 20 | u32 | region size in bytes, high 32 bits | formatter |
 * | 24 | u32 ×2 | reserved, 0 | formatter |
 * | 32 | 16 bytes | region UUID (random; not all zero, not all 0xff) | formatter |
 * | 48 | u32 | slots `S` (1 … {@link MAX_SLOTS}) | formatter |
 * | 52 | u32 | slot bytes, {@link SLOT_BYTES} | formatter |
 * | 56 | u32 | slot table offset, {@link REGION_HEADER_BYTES} | formatter |
 * | 60 | u32 | ring blocks `B` (1 … {@link MAX_BLOCKS}) | formatter |
 * | 64 | u32 | block entry bytes, {@link BLOCK_ENTRY_BYTES} | formatter |
 * | 68 | u32 | block table offset, `slotTable + S·512` | formatter |
 * | 72 | u32 | ring data bytes `D` (a power of two, `MIN_RING_DATA_BYTES` … `MAX_RING_DATA_BYTES` of `spsc-ring.ts`) | formatter |
 * | 76 | u32 | block bytes, `ringRegionBytes(D)` (576 + `D`) | formatter |
 * | 80 | u32 | blocks offset, `blockTable + B·64` rounded up to 4096 | formatter |
 * | 84 | u32 | checksum: FNV-1a 32 ({@link fnv1a}) of header bytes 0 … 83, magic included | formatter |
 * | 128 | u32 | region generation: bumped by `revoke` and `restore` (admin), never by members | admin |
 * | 256 | u32 | revoked: 0, or 1 = do not join, members leave and fall back to tcp; other values are `CORRUPT` | admin |
 * | 384 | u32 | membership epoch: incremented (wrapping) after every slot state change | members |
 * | 512 | u32 | ring epoch: incremented (wrapping) after every block state change (consumers rescan on change) | members |
 * | 640 … 1023 | | reserved, 0 | |
 *
 * A formatter zeroes the header and both tables, writes every field but the magic, then stores the
 * magic. An opener loads the magic first, then bytes 4 … 87 once, and checks: magic, version, header
 * bytes, the checksum, size = the mapping's size and a power of two, a UUID that is neither all zero
 * nor all 0xff, and that every derived field equals what the rules above compute from `S`, `B` and
 * `D` and that the blocks end inside the region. Any mismatch is `CORRUPT`.
 *
 * ## Membership slot (`SLOT_BYTES` = 512 bytes)
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | **control**: state in bits 0–3 ({@link SlotState}), slot generation in bits 4–31 | CAS, anyone |
 * | 4 | u32 | rank of the member in its job | owner, while JOINING |
 * | 8 | u32 | region generation when it joined | owner, while JOINING |
 * | 12 | u32 | reserved, 0 | |
 * | 16 | 16 bytes | job id (128 bits; vmcomm uses the first 16 bytes of SHA-256 of the job id string) | owner, while JOINING |
 * | 32 | 16 bytes | process nonce (the 128-bit random nonce of the member's locality card) | owner, while JOINING |
 * | 48 … 127 | | reserved, 0 | |
 * | 128 | u32 | heartbeat: incremented (wrapping) by the owner at least every heartbeat interval | owner |
 * | 256 | u32 | doorbell: incremented by a peer that published to the owner while it sleeps (signalling layer) | peers |
 * | 384 | u32 | waiter flag: 1 while the owner sleeps or is about to (signalling layer) | owner |
 *
 * States: FREE (0) → JOINING (1) → ACTIVE (2) → LEAVING (3) → FREE. The generation `g` (28 bits,
 * wrapping) changes only when the slot becomes FREE, to `g + 1`; so `(slot, g)` names one occupancy,
 * and a member whose slot was reclaimed finds a control word other than ACTIVE `g` and knows it.
 *
 * - **claim**: find FREE `g`, CAS it to JOINING `g`; write rank, region generation, job id, nonce,
 *   heartbeat 0, doorbell 0, waiter 0; CAS JOINING `g` → ACTIVE `g`; increment the membership epoch.
 * - **read**: load control (ACTIVE `g`), read the fields, load control again; equal → the fields
 *   belong to occupancy `g`, else skip the slot (it changed meanwhile).
 * - **leave** (finalize): CAS ACTIVE `g` → LEAVING `g`; release its ring blocks; zero the fields;
 *   CAS LEAVING `g` → FREE `g + 1`; increment the membership epoch.
 * - **reclaim**: an observer keeps, per slot, the control word and heartbeat it last saw and *its own*
 *   monotonic time when it first saw that pair. A non-FREE slot whose pair has not changed for the
 *   reclaim timeout (by the observer's clock; no time written by anyone is ever trusted) is CASed from
 *   that control word to FREE `g + 1`. A control word with an invalid state is garbage and is
 *   reclaimed the same way.
 *
 * ## Ring-block entry (`BLOCK_ENTRY_BYTES` = 64 bytes)
 *
 * | offset | type | field | written by |
 * |---|---|---|---|
 * | 0 | u32 | **control**: state in bits 0–3 ({@link BlockState}), block generation in bits 4–31 | CAS, anyone |
 * | 4 | u32 | producer slot | producer, while CLAIMED |
 * | 8 | u32 | producer slot generation | producer, while CLAIMED |
 * | 12 | u32 | consumer slot | producer, while CLAIMED |
 * | 16 | u32 | consumer slot generation | producer, while CLAIMED |
 * | 20 … 31 | | reserved, 0 | |
 * | 32 | 16 bytes | job id of both members | producer, while CLAIMED |
 * | 48 … 63 | | reserved, 0 | |
 *
 * Block `b` (at `blocks + b·blockBytes`, a multiple of 64) holds one SPSC ring exactly as
 * `lib/ring/spsc-ring.ts` lays it out, with data area `D`: one ring per ordered pair of members.
 *
 * States: FREE (0) → CLAIMED (1) → LIVE (2) → PRODUCER_DONE (3) or CONSUMER_DONE (4) → FREE. The
 * generation changes only when the entry becomes FREE, to `g + 1`.
 *
 * - **allocate** (by the producer, both members ACTIVE in the same job): find FREE `g` (start
 *   anywhere; look at each entry at most once), CAS it to CLAIMED `g`; write the owner fields and job
 *   id; initialize the ring (`initRing`); CAS CLAIMED `g` → LIVE `g`; increment the ring epoch; if
 *   the consumer is no longer ACTIVE `g'` (it began to leave meanwhile), release the ring again. No
 *   FREE entry: the region is full and the pair uses tcp. A failed CAS to LIVE means a watcher took
 *   the claim for abandoned: the block is not the producer's any more, it touches nothing else.
 * - **read**: load control (LIVE, PRODUCER_DONE or CONSUMER_DONE), read the fields, load control
 *   again; equal → consistent. A slot index ≥ `S` or a generation ≥ 2^28 makes the entry invalid.
 * - **holders**: the members that still use the ring — LIVE: both; PRODUCER_DONE: the consumer (it
 *   drains what is left); CONSUMER_DONE: the producer. A holder is *live* when its slot's control is
 *   JOINING, ACTIVE or LEAVING with the recorded generation.
 * - **release** (finalize, or the peer was lost): a holder CASes LIVE → its *_DONE state (the
 *   producer → PRODUCER_DONE, the consumer → CONSUMER_DONE) while the other holder is live, else to
 *   FREE `g + 1`; from the other side's *_DONE state straight to FREE `g + 1`; increment the ring
 *   epoch. A member whose slot was reclaimed may still release its side (it only states a fact).
 * - **discover**: a consumer rescans the table when the ring epoch changed and opens every LIVE or
 *   PRODUCER_DONE entry that names it (slot and generation) as consumer.
 * - **reclaim**: an entry with no live holder is CASed to FREE `g + 1` at once (its holders' deaths
 *   were already judged by the heartbeat timeout). An entry that stays CLAIMED, or invalid, with the
 *   same control word for the reclaim timeout (observer's clock) is CASed to FREE `g + 1`.
 *
 * ## What cannot be prevented
 *
 * A member that stalls for longer than the reclaim timeout (a paused VM) and then resumes may write
 * into a ring that was reclaimed and handed to another pair before it checks its generation (it checks
 * on every heartbeat and before every allocation). What it writes only lands in ring memory, which
 * the new owners validate like any other shared value: the worst outcome is `CORRUPT` on their
 * channel, never an out-of-bounds access. Choose a timeout far longer than any expected stall.
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import { MAX_RING_DATA_BYTES, MIN_RING_DATA_BYTES, ringRegionBytes } from '../../lib/ring/spsc-ring.js';

/** `'VMIV'` as a little-endian u32. */
export const REGION_MAGIC = 0x5649_4d56;
/** The layout described in the module comment (2: blocks of ring layout 3, `ringRegionBytes(D)` bytes). */
export const REGION_LAYOUT_VERSION = 2;
/** Bytes of the header; the membership table follows. */
export const REGION_HEADER_BYTES = 1024;
/** Bytes per membership slot. */
export const SLOT_BYTES = 512;
/** Bytes per ring-block table entry. */
export const BLOCK_ENTRY_BYTES = 64;
/** The ring blocks start on a page. */
export const BLOCKS_ALIGN_BYTES = 4096;
/** The smallest region. */
export const MIN_REGION_BYTES = 64 * 1024;
/** The largest region (sizes stay exact in a JavaScript number). */
export const MAX_REGION_BYTES = 2 ** 52;
/** The most membership slots a region may have. */
export const MAX_SLOTS = 4096;
/** The most ring blocks a region may have. */
export const MAX_BLOCKS = 65_536;
/** Bytes of a UUID, job id or process nonce. */
export const ID_BYTES = 16;
/** Header bytes covered by the checksum (0 … 83). */
export const CHECKSUMMED_BYTES = 84;

/** Slot and block generations are 28 bits (bits 4–31 of a control word). */
export const GENERATION_MASK = 0x0fff_ffff;
const STATE_MASK = 0xf;
const STATE_BITS = 4;

/** Defaults for a new region (see {@link planLayout}). */
export const DEFAULT_SLOTS = 64;
/** Default ring data area; halved (to at least {@link MIN_DEFAULT_RING_DATA_BYTES}) until `S` rings fit. */
export const DEFAULT_RING_DATA_BYTES = 64 * 1024;
/** The smallest ring data area {@link planLayout} picks by itself. */
export const MIN_DEFAULT_RING_DATA_BYTES = 4096;

/** Byte offsets of the header fields. */
export const HeaderField = {
  MAGIC: 0,
  VERSION: 4,
  HEADER_BYTES: 8,
  SIZE_LOW: 16,
  SIZE_HIGH: 20,
  UUID: 32,
  SLOTS: 48,
  SLOT_BYTES: 52,
  SLOT_TABLE: 56,
  BLOCKS: 60,
  BLOCK_ENTRY_BYTES: 64,
  BLOCK_TABLE: 68,
  RING_DATA_BYTES: 72,
  BLOCK_BYTES: 76,
  BLOCKS_OFFSET: 80,
  CHECKSUM: 84,
  GENERATION: 128,
  REVOKED: 256,
  MEMBER_EPOCH: 384,
  RING_EPOCH: 512,
} as const;

/** Byte offsets of a membership slot's fields, from the slot's start. */
export const SlotField = {
  CONTROL: 0,
  RANK: 4,
  REGION_GENERATION: 8,
  JOB: 16,
  NONCE: 32,
  HEARTBEAT: 128,
  DOORBELL: 256,
  WAITER: 384,
} as const;

/** Byte offsets of a ring-block entry's fields, from the entry's start. */
export const BlockField = {
  CONTROL: 0,
  PRODUCER_SLOT: 4,
  PRODUCER_GENERATION: 8,
  CONSUMER_SLOT: 12,
  CONSUMER_GENERATION: 16,
  JOB: 32,
} as const;

/** A membership slot's state (bits 0–3 of its control word). */
export const SlotState = { FREE: 0, JOINING: 1, ACTIVE: 2, LEAVING: 3 } as const;
/** One of {@link SlotState}'s values. */
export type SlotState = (typeof SlotState)[keyof typeof SlotState];

/** A ring block's state (bits 0–3 of its entry's control word). */
export const BlockState = { FREE: 0, CLAIMED: 1, LIVE: 2, PRODUCER_DONE: 3, CONSUMER_DONE: 4 } as const;
/** One of {@link BlockState}'s values. */
export type BlockState = (typeof BlockState)[keyof typeof BlockState];

/** A control word (as the signed value an `Int32Array` holds) from a state and a generation. */
export function packControl(state: number, generation: number): number {
  return ((generation & GENERATION_MASK) << STATE_BITS) | (state & STATE_MASK);
}

/** The state bits of a control word. */
export function controlState(control: number): number {
  return control & STATE_MASK;
}

/** The generation bits of a control word. */
export function controlGeneration(control: number): number {
  return control >>> STATE_BITS;
}

/** The generation after `generation` (wrapping at 2^28). */
export function nextGeneration(generation: number): number {
  return (generation + 1) & GENERATION_MASK;
}

/** Where everything is in a region; derived from the size, `S`, `B` and `D` (see the module comment). */
export interface RegionLayout {
  /** The region size in bytes (a power of two). */
  readonly sizeBytes: number;
  /** Membership slots `S`. */
  readonly slots: number;
  /** Byte offset of the membership table. */
  readonly slotTableOffset: number;
  /** Ring blocks `B`. */
  readonly blocks: number;
  /** Byte offset of the ring-block table. */
  readonly blockTableOffset: number;
  /** Data area of each ring, `D`. */
  readonly ringDataBytes: number;
  /** Bytes per block: a whole ring region, `ringRegionBytes(D)`. */
  readonly blockBytes: number;
  /** Byte offset of block 0; also the bytes of header and tables together, padded. */
  readonly blocksOffset: number;
}

/** Options for a new region's layout. */
export interface LayoutOptions {
  /** Membership slots (default {@link DEFAULT_SLOTS}, or 16 below 1 MiB). */
  readonly slots?: number;
  /** Each ring's data area, a power of two (default: see {@link DEFAULT_RING_DATA_BYTES}). */
  readonly ringDataBytes?: number;
  /** At most this many ring blocks (default as many as fit, up to {@link MAX_BLOCKS}). */
  readonly maxBlocks?: number;
}

/** True when `n` is a power of two that a region may have. */
export function isRegionSize(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < MIN_REGION_BYTES || n > MAX_REGION_BYTES) return false;
  return 2 ** Math.round(Math.log2(n)) === n;
}

/** True when `n` is a power of two a ring data area may have. */
export function isRingDataSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= MIN_RING_DATA_BYTES && n <= MAX_RING_DATA_BYTES && (n & (n - 1)) === 0;
}

/** `n` rounded up to a multiple of `to` (a power of two). */
export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Offsets that follow from `S` and `B` (the rules of the module comment). */
export function tableOffsets(slots: number, blocks: number): { slotTableOffset: number; blockTableOffset: number; blocksOffset: number } {
  const slotTableOffset = REGION_HEADER_BYTES;
  const blockTableOffset = slotTableOffset + slots * SLOT_BYTES;
  const blocksOffset = alignUp(blockTableOffset + blocks * BLOCK_ENTRY_BYTES, BLOCKS_ALIGN_BYTES);
  return { slotTableOffset, blockTableOffset, blocksOffset };
}

/** The most blocks of `blockBytes` that fit after `slots` slots in `sizeBytes`. */
function blocksThatFit(sizeBytes: number, slots: number, blockBytes: number, cap: number): number {
  const { blockTableOffset } = tableOffsets(slots, 0);
  // Each block costs its bytes plus its table entry; the page padding costs at most one page.
  let b = Math.min(cap, Math.floor((sizeBytes - blockTableOffset - BLOCKS_ALIGN_BYTES) / (blockBytes + BLOCK_ENTRY_BYTES)));
  if (b < 0) return 0;
  while (b > 0 && tableOffsets(slots, b).blocksOffset + b * blockBytes > sizeBytes) b--;
  return b;
}

/**
 * Plans a new region's layout. Throws `INVALID_ARGUMENT` for a size that is not a power of two in
 * range, bad options, or a region too small to hold one ring.
 */
export function planLayout(sizeBytes: number, options: LayoutOptions = {}): RegionLayout {
  if (!isRegionSize(sizeBytes)) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `an ivshmem region's size must be a power of two from ${MIN_REGION_BYTES} (64K) to 2^52 bytes (QEMU's ivshmem-plain requires a power of two), got ${String(sizeBytes)}${suggestSizes(sizeBytes)}`,
    );
  }
  const slots = options.slots ?? (sizeBytes >= 2 ** 20 ? DEFAULT_SLOTS : 16);
  if (!Number.isSafeInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
    throw new VmcommError('INVALID_ARGUMENT', `an ivshmem region's slots must be an integer from 1 to ${MAX_SLOTS}, got ${String(slots)}`);
  }
  const cap = options.maxBlocks ?? MAX_BLOCKS;
  if (!Number.isSafeInteger(cap) || cap < 1 || cap > MAX_BLOCKS) {
    throw new VmcommError('INVALID_ARGUMENT', `an ivshmem region's maxBlocks must be an integer from 1 to ${MAX_BLOCKS}, got ${String(cap)}`);
  }
  let ringDataBytes: number;
  if (options.ringDataBytes !== undefined) {
    ringDataBytes = options.ringDataBytes;
    if (!isRingDataSize(ringDataBytes)) {
      throw new VmcommError(
        'INVALID_ARGUMENT',
        `an ivshmem ring's data bytes must be a power of two from ${MIN_RING_DATA_BYTES} to ${MAX_RING_DATA_BYTES}, got ${String(ringDataBytes)}`,
      );
    }
  } else {
    ringDataBytes = DEFAULT_RING_DATA_BYTES;
    while (ringDataBytes > MIN_DEFAULT_RING_DATA_BYTES && blocksThatFit(sizeBytes, slots, ringRegionBytes(ringDataBytes), cap) < Math.min(slots, cap)) {
      ringDataBytes /= 2;
    }
  }
  const blockBytes = ringRegionBytes(ringDataBytes);
  const blocks = blocksThatFit(sizeBytes, slots, blockBytes, cap);
  if (blocks < 1) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `an ivshmem region of ${sizeBytes} bytes with ${slots} slots has no room for one ring of ${ringDataBytes} data bytes: choose a larger size, fewer slots or smaller rings`,
    );
  }
  return { sizeBytes, slots, blocks, ringDataBytes, blockBytes, ...tableOffsets(slots, blocks) };
}

/** ", e.g. 64M or 128M" for a size between two powers of two. */
function suggestSizes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '';
  const lower = 2 ** Math.floor(Math.log2(n));
  const upper = lower * 2;
  const fit = [lower, upper].filter((s) => s >= MIN_REGION_BYTES && s <= MAX_REGION_BYTES).map(formatSize);
  return fit.length === 0 ? '' : `; the nearest valid size${fit.length > 1 ? 's are' : ' is'} ${fit.join(' and ')}`;
}

/** `67108864` → `'64M'` (binary units; exact multiples only, else bytes). */
export function formatSize(bytes: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P'];
  let n = bytes;
  let u = 0;
  while (u < units.length - 1 && n >= 1024 && n % 1024 === 0) {
    n /= 1024;
    u++;
  }
  return `${n}${units[u]}`;
}

/** FNV-1a, 32 bits (offset basis 0x811c9dc5, prime 0x01000193), over `bytes`. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x0100_0193);
  }
  return h >>> 0;
}

/** Reads a 128-bit id (four words from word index `at`) with atomic loads. */
export function loadId(words: Int32Array, at: number): Uint8Array {
  const id = new Uint8Array(ID_BYTES);
  for (let k = 0; k < 4; k++) {
    const w = Atomics.load(words, at + k);
    id[4 * k] = w & 0xff;
    id[4 * k + 1] = (w >>> 8) & 0xff;
    id[4 * k + 2] = (w >>> 16) & 0xff;
    id[4 * k + 3] = (w >>> 24) & 0xff;
  }
  return id;
}

/** Writes a 128-bit id as four words at word index `at`. */
export function storeId(words: Int32Array, at: number, id: Uint8Array): void {
  for (let k = 0; k < 4; k++) {
    Atomics.store(words, at + k, id[4 * k] | (id[4 * k + 1] << 8) | (id[4 * k + 2] << 16) | (id[4 * k + 3] << 24));
  }
}

/** True when two ids are equal. */
export function sameId(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, '0');
  return s;
}

/** A UUID's canonical text, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
export function uuidText(uuid: Uint8Array): string {
  const h = toHex(uuid);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * Parses 32 hex digits (dashes allowed, as in a UUID) into 16 bytes; `INVALID_ARGUMENT` otherwise.
 */
export function idFromHex(text: string, what = 'an id'): Uint8Array {
  const hex = typeof text === 'string' ? text.replace(/-/g, '') : '';
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new VmcommError('INVALID_ARGUMENT', `${what} must be 32 hex digits (128 bits), got ${JSON.stringify(text)}`);
  const id = new Uint8Array(ID_BYTES);
  for (let i = 0; i < ID_BYTES; i++) id[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return id;
}

/** Checks an id handed in by local code: 16 bytes. */
export function checkId(id: Uint8Array, what: string): void {
  if (!(id instanceof Uint8Array) || id.length !== ID_BYTES) {
    throw new VmcommError('INVALID_ARGUMENT', `${what} must be a Uint8Array of ${ID_BYTES} bytes, got ${id instanceof Uint8Array ? `${id.length} bytes` : typeof id}`);
  }
}
