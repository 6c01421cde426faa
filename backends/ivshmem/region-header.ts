/**
 * Formats, opens and re-checks an ivshmem region's header (layout: `region-layout.ts`). Opening reads
 * every header word once, validates it, and keeps the validated values: every later computation uses
 * those locals, never the shared words again, so a header overwritten after opening cannot move
 * anything out of bounds (and {@link checkRegionHeader} notices it).
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import { checkRegion, corrupt, type Region } from '../../lib/ring/region.js';
import { ringRegionBytes } from '../../lib/ring/spsc-ring.js';
import {
  BLOCK_ENTRY_BYTES,
  CHECKSUMMED_BYTES,
  checkId,
  fnv1a,
  HeaderField,
  ID_BYTES,
  isRegionSize,
  isRingDataSize,
  loadId,
  MAX_BLOCKS,
  MAX_SLOTS,
  MIN_REGION_BYTES,
  planLayout,
  REGION_HEADER_BYTES,
  REGION_LAYOUT_VERSION,
  REGION_MAGIC,
  type LayoutOptions,
  type RegionLayout,
  sameId,
  SLOT_BYTES,
  storeId,
  tableOffsets,
  uuidText,
} from './region-layout.js';

/** An opened region: its validated layout and identity, and a view of its header and tables. */
export interface RegionHeader {
  /** The whole region. */
  readonly region: Region;
  /** The validated layout. */
  readonly layout: RegionLayout;
  /** The region's UUID (a private copy). */
  readonly uuid: Uint8Array;
  /** The UUID as text. */
  readonly uuidText: string;
  /** The header checksum as read (identifies this formatting). */
  readonly checksum: number;
  /** Words of the header and both tables (`[0, blocksOffset)` of the region). */
  readonly meta: Int32Array;
}

/** The header's mutable words, read once. */
export interface RegionStatus {
  /** Bumped by revoke and restore. */
  readonly generation: number;
  /** True when the region was revoked: do not join; members leave. */
  readonly revoked: boolean;
  /** Changes whenever a slot changes state. */
  readonly memberEpoch: number;
  /** Changes whenever a ring block changes state. */
  readonly ringEpoch: number;
}

/** Options of {@link formatRegion}. */
export interface FormatOptions extends LayoutOptions {
  /** The region's UUID (default: random, RFC 4122 version 4). */
  readonly uuid?: Uint8Array;
}

/** Options of {@link openRegionHeader}. */
export interface OpenOptions {
  /** The UUID the region must have (e.g. the one a peer's card names); another is `CORRUPT`. */
  readonly expectUuid?: Uint8Array;
}

const W = (byteOffset: number): number => byteOffset >> 2;

/** A random version-4 UUID. */
export function randomUuid(): Uint8Array {
  const id = new Uint8Array(ID_BYTES);
  globalThis.crypto.getRandomValues(id);
  id[6] = (id[6] & 0x0f) | 0x40;
  id[8] = (id[8] & 0x3f) | 0x80;
  return id;
}

function validUuid(id: Uint8Array): boolean {
  let zeros = 0;
  let ones = 0;
  for (let i = 0; i < id.length; i++) {
    if (id[i] === 0) zeros++;
    if (id[i] === 0xff) ones++;
  }
  return zeros !== id.length && ones !== id.length;
}

/**
 * Writes the header and empty tables for `layout` into `words` (a view of at least
 * `layout.blocksOffset` bytes from the region start). Zeroes the tables first, stores the magic last.
 * Used by {@link formatRegion}, and by the admin code to format a file it cannot map.
 */
export function writeRegionMetadata(words: Int32Array, layout: RegionLayout, uuid: Uint8Array): number {
  checkId(uuid, 'the region UUID');
  if (!validUuid(uuid)) throw new VmcommError('INVALID_ARGUMENT', 'the region UUID must not be all zero or all 0xff');
  const n = layout.blocksOffset >> 2;
  if (words.length < n) throw new VmcommError('INVALID_ARGUMENT', `formatting needs ${layout.blocksOffset} bytes of metadata, got ${words.length * 4}`);
  Atomics.store(words, W(HeaderField.MAGIC), 0);
  for (let i = 1; i < n; i++) Atomics.store(words, i, 0);
  const fields: [number, number][] = [
    [HeaderField.VERSION, REGION_LAYOUT_VERSION],
    [HeaderField.HEADER_BYTES, REGION_HEADER_BYTES],
    [HeaderField.SIZE_LOW, layout.sizeBytes % 2 ** 32],
    [HeaderField.SIZE_HIGH, Math.floor(layout.sizeBytes / 2 ** 32)],
    [HeaderField.SLOTS, layout.slots],
    [HeaderField.SLOT_BYTES, SLOT_BYTES],
    [HeaderField.SLOT_TABLE, layout.slotTableOffset],
    [HeaderField.BLOCKS, layout.blocks],
    [HeaderField.BLOCK_ENTRY_BYTES, BLOCK_ENTRY_BYTES],
    [HeaderField.BLOCK_TABLE, layout.blockTableOffset],
    [HeaderField.RING_DATA_BYTES, layout.ringDataBytes],
    [HeaderField.BLOCK_BYTES, layout.blockBytes],
    [HeaderField.BLOCKS_OFFSET, layout.blocksOffset],
  ];
  // The checksummed bytes as they will be: computed on a private copy.
  const image = new Int32Array(CHECKSUMMED_BYTES >> 2);
  image[W(HeaderField.MAGIC)] = REGION_MAGIC | 0;
  for (const [at, value] of fields) image[W(at)] = value | 0;
  for (let k = 0; k < 4; k++) {
    const b = 4 * k;
    image[W(HeaderField.UUID) + k] = uuid[b] | (uuid[b + 1] << 8) | (uuid[b + 2] << 16) | (uuid[b + 3] << 24);
  }
  const checksum = fnv1a(new Uint8Array(image.buffer));
  for (const [at, value] of fields) Atomics.store(words, W(at), value | 0);
  storeId(words, W(HeaderField.UUID), uuid);
  Atomics.store(words, W(HeaderField.CHECKSUM), checksum | 0);
  Atomics.store(words, W(HeaderField.GENERATION), 1);
  Atomics.store(words, W(HeaderField.MAGIC), REGION_MAGIC | 0);
  return checksum;
}

/**
 * Formats `region` as an empty ivshmem region (its size must be a power of two) and returns it
 * opened. Everything already in the header and tables is lost: call it only on a region no one uses.
 *
 * @throws `INVALID_ARGUMENT` for a size that is not a power of two, bad options, or a region too small.
 */
export function formatRegion(region: Region, options: FormatOptions = {}): RegionHeader {
  checkRegion(region, MIN_REGION_BYTES, 'formatRegion');
  const layout = planLayout(region.byteLength, options);
  const words = new Int32Array(region.sab, region.byteOffset, layout.blocksOffset >> 2);
  writeRegionMetadata(words, layout, options.uuid ?? randomUuid());
  return openRegionHeader(region);
}

/**
 * Opens a formatted region: reads its header once and validates it (see the module comment of
 * `region-layout.ts`).
 *
 * @throws `CORRUPT` for anything that is not a valid region of exactly this size (also an unformatted
 *   one: its magic is 0), or a UUID other than `expectUuid`; `INVALID_ARGUMENT` for a bad `region`.
 */
export function openRegionHeader(region: Region, options: OpenOptions = {}): RegionHeader {
  checkRegion(region, 0, 'openRegion');
  // The mapping's size comes from outside (a file, a guest's BAR): too small is not a region at all.
  if (region.byteLength < MIN_REGION_BYTES) throw corrupt(`a region of ${region.byteLength} bytes is smaller than ${MIN_REGION_BYTES}: not an ivshmem region`);
  if (options.expectUuid !== undefined) checkId(options.expectUuid, 'expectUuid');
  const head = new Int32Array(region.sab, region.byteOffset, REGION_HEADER_BYTES >> 2);
  const magic = Atomics.load(head, W(HeaderField.MAGIC)) >>> 0;
  if (magic !== REGION_MAGIC) {
    throw corrupt(
      magic === 0
        ? 'the ivshmem region is not formatted (magic 0); format it with `vmcomm ivshmem create`'
        : `ivshmem region magic 0x${magic.toString(16)}, expected 0x${REGION_MAGIC.toString(16)}`,
    );
  }
  // Every checksummed word once, into a private copy; all checks run on the copy.
  const image = new Int32Array(CHECKSUMMED_BYTES >> 2);
  image[0] = magic | 0;
  for (let i = 1; i < image.length; i++) image[i] = Atomics.load(head, i);
  const u = (byteOffset: number): number => image[W(byteOffset)] >>> 0;
  const storedChecksum = Atomics.load(head, W(HeaderField.CHECKSUM)) >>> 0;
  const version = u(HeaderField.VERSION);
  if (version !== REGION_LAYOUT_VERSION) throw corrupt(`ivshmem region layout version ${version}, expected ${REGION_LAYOUT_VERSION} (formatted by another vmcomm version: format it again, losing what it holds, with \`vmcomm ivshmem create --force --size <its size> <path>\`)`);
  const checksum = fnv1a(new Uint8Array(image.buffer));
  if (checksum !== storedChecksum) throw corrupt(`ivshmem region header checksum 0x${storedChecksum.toString(16)}, computed 0x${checksum.toString(16)}`);
  if (u(HeaderField.HEADER_BYTES) !== REGION_HEADER_BYTES) throw corrupt(`ivshmem region header of ${u(HeaderField.HEADER_BYTES)} bytes, expected ${REGION_HEADER_BYTES}`);
  const high = u(HeaderField.SIZE_HIGH);
  const sizeBytes = high * 2 ** 32 + u(HeaderField.SIZE_LOW);
  if (!isRegionSize(sizeBytes)) throw corrupt(`ivshmem region size ${sizeBytes} is not a power of two from ${MIN_REGION_BYTES} to 2^52`);
  if (sizeBytes !== region.byteLength) throw corrupt(`the ivshmem region header declares ${sizeBytes} bytes, the mapping has ${region.byteLength}`);
  const uuid = new Uint8Array(ID_BYTES);
  for (let k = 0; k < 4; k++) {
    const w = image[W(HeaderField.UUID) + k];
    for (let j = 0; j < 4; j++) uuid[4 * k + j] = (w >>> (8 * j)) & 0xff;
  }
  if (!validUuid(uuid)) throw corrupt(`ivshmem region UUID ${uuidText(uuid)} (all zero or all ones)`);
  if (options.expectUuid !== undefined && !sameId(uuid, options.expectUuid)) {
    throw corrupt(`ivshmem region UUID ${uuidText(uuid)}, expected ${uuidText(options.expectUuid)}`);
  }
  const slots = u(HeaderField.SLOTS);
  const blocks = u(HeaderField.BLOCKS);
  const ringDataBytes = u(HeaderField.RING_DATA_BYTES);
  if (slots < 1 || slots > MAX_SLOTS) throw corrupt(`ivshmem region with ${slots} slots (1 … ${MAX_SLOTS})`);
  if (blocks < 1 || blocks > MAX_BLOCKS) throw corrupt(`ivshmem region with ${blocks} ring blocks (1 … ${MAX_BLOCKS})`);
  if (!isRingDataSize(ringDataBytes)) throw corrupt(`ivshmem region with rings of ${ringDataBytes} data bytes`);
  if (u(HeaderField.SLOT_BYTES) !== SLOT_BYTES) throw corrupt(`ivshmem region slots of ${u(HeaderField.SLOT_BYTES)} bytes, expected ${SLOT_BYTES}`);
  if (u(HeaderField.BLOCK_ENTRY_BYTES) !== BLOCK_ENTRY_BYTES) throw corrupt(`ivshmem region block entries of ${u(HeaderField.BLOCK_ENTRY_BYTES)} bytes, expected ${BLOCK_ENTRY_BYTES}`);
  const blockBytes = ringRegionBytes(ringDataBytes);
  if (u(HeaderField.BLOCK_BYTES) !== blockBytes) throw corrupt(`ivshmem region blocks of ${u(HeaderField.BLOCK_BYTES)} bytes for rings of ${ringDataBytes}`);
  const offsets = tableOffsets(slots, blocks);
  if (
    u(HeaderField.SLOT_TABLE) !== offsets.slotTableOffset ||
    u(HeaderField.BLOCK_TABLE) !== offsets.blockTableOffset ||
    u(HeaderField.BLOCKS_OFFSET) !== offsets.blocksOffset
  ) {
    throw corrupt(`ivshmem region table offsets ${u(HeaderField.SLOT_TABLE)}/${u(HeaderField.BLOCK_TABLE)}/${u(HeaderField.BLOCKS_OFFSET)} do not follow from ${slots} slots and ${blocks} blocks`);
  }
  if (offsets.blocksOffset + blocks * blockBytes > sizeBytes) throw corrupt(`ivshmem region: ${blocks} blocks of ${blockBytes} bytes do not fit in ${sizeBytes} bytes`);
  const layout: RegionLayout = { sizeBytes, slots, blocks, ringDataBytes, blockBytes, ...offsets };
  const meta = new Int32Array(region.sab, region.byteOffset, offsets.blocksOffset >> 2);
  const header: RegionHeader = { region, layout, uuid, uuidText: uuidText(uuid), checksum, meta };
  readRegionStatus(header);
  return header;
}

/**
 * Re-reads the immutable header words and compares them with what was opened: the magic, the
 * checksum and the UUID. Throws `CORRUPT` when they changed (the region was overwritten or
 * re-formatted under its members).
 */
export function checkRegionHeader(header: RegionHeader): void {
  const m = header.meta;
  const magic = Atomics.load(m, W(HeaderField.MAGIC)) >>> 0;
  if (magic !== REGION_MAGIC) throw corrupt(`ivshmem region magic became 0x${magic.toString(16)}`);
  const checksum = Atomics.load(m, W(HeaderField.CHECKSUM)) >>> 0;
  if (checksum !== header.checksum) throw corrupt(`ivshmem region header checksum became 0x${checksum.toString(16)} (was 0x${header.checksum.toString(16)}): re-formatted or overwritten`);
  if (!sameId(loadId(m, W(HeaderField.UUID)), header.uuid)) throw corrupt(`ivshmem region UUID changed (was ${header.uuidText})`);
}

/** Reads the header's mutable words once. Throws `CORRUPT` for a revoked word other than 0 or 1. */
export function readRegionStatus(header: RegionHeader): RegionStatus {
  const m = header.meta;
  const revoked = Atomics.load(m, W(HeaderField.REVOKED));
  if (revoked !== 0 && revoked !== 1) throw corrupt(`ivshmem region revoked word ${revoked >>> 0} (0 or 1)`);
  return {
    generation: Atomics.load(m, W(HeaderField.GENERATION)) >>> 0,
    revoked: revoked === 1,
    memberEpoch: Atomics.load(m, W(HeaderField.MEMBER_EPOCH)) >>> 0,
    ringEpoch: Atomics.load(m, W(HeaderField.RING_EPOCH)) >>> 0,
  };
}

/** Marks the region revoked (members leave and fall back to tcp; no one joins) and bumps its generation. */
export function revokeRegion(header: RegionHeader): void {
  Atomics.store(header.meta, W(HeaderField.REVOKED), 1);
  Atomics.add(header.meta, W(HeaderField.GENERATION), 1);
}

/** Clears the revoked mark and bumps the generation (members that saw the revocation stay out). */
export function restoreRegion(header: RegionHeader): void {
  Atomics.store(header.meta, W(HeaderField.REVOKED), 0);
  Atomics.add(header.meta, W(HeaderField.GENERATION), 1);
}

/** Increments the membership epoch. */
export function bumpMemberEpoch(header: RegionHeader): void {
  Atomics.add(header.meta, W(HeaderField.MEMBER_EPOCH), 1);
}

/** Increments the ring epoch. */
export function bumpRingEpoch(header: RegionHeader): void {
  Atomics.add(header.meta, W(HeaderField.RING_EPOCH), 1);
}
