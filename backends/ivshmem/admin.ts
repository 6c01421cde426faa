/**
 * What `npx vmcomm ivshmem create|show|revoke|restore` does, as functions: format a region file,
 * describe a region for printing, parse sizes such as `64M`.
 *
 * A region file (the host side of QEMU's `ivshmem-plain`, e.g. `/dev/shm/NAME`) must exist with its
 * full, power-of-two size before QEMU starts:
 *
 * ```sh
 * npx vmcomm ivshmem create --size 64M /dev/shm/vmcomm-region
 * qemu-system-x86_64 … -object memory-backend-file,id=hostmem,share=on,mem-path=/dev/shm/vmcomm-region,size=64M \
 *                      -device ivshmem-plain,memdev=hostmem
 * ```
 *
 * Files are mapped through the native addon (`createSharedFile` / `openSharedFile`, which also maps
 * a guest's `/sys/bus/pci/devices/…/resource2`, where `read()` fails). Without the addon a region
 * file is still created and formatted with plain file writes, and `show` reads a copy of the file
 * (not possible for `resource2`); revoke and restore need the addon.
 *
 * @module
 */

import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, statSync, truncateSync, writeSync } from 'node:fs';
import { VmcommError } from '../../lib/errors.js';
import type { Region } from '../../lib/ring/region.js';
import { RING_MAGIC } from '../../lib/ring/spsc-ring.js';
import { tryLoadNative, type NativeAddon } from '../native/native.js';
import { randomUuid, writeRegionMetadata, type FormatOptions } from './region-header.js';
import { formatSize, isRegionSize, MAX_REGION_BYTES, MIN_REGION_BYTES, planLayout, toHex, type RegionLayout, uuidText } from './region-layout.js';
import { IvshmemRegion } from './region.js';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/**
 * Parses a size: a whole number of bytes, optionally with a binary unit — `65536`, `64K`, `64M`,
 * `1G`, `64MiB`, `64mb` (K, M, G, T, P are powers of 1024, as QEMU reads them).
 *
 * @throws `INVALID_ARGUMENT` for anything else, or a size beyond 2^53.
 */
export function parseSize(text: string): number {
  const match = typeof text === 'string' ? /^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text) : null;
  if (match === null) throw new VmcommError('INVALID_ARGUMENT', `a size must be a whole number with an optional unit K, M, G, T or P (powers of 1024), e.g. 64M, got ${JSON.stringify(text)}`);
  const n = Number(match[1]) * UNITS[match[2].toLowerCase()];
  if (!Number.isSafeInteger(n)) throw new VmcommError('INVALID_ARGUMENT', `the size ${JSON.stringify(text)} is too large`);
  return n;
}

/** Options of {@link formatRegionFile}. */
export interface FormatFileOptions extends FormatOptions {
  /** Re-format an existing file of the same size (everything in it is lost). Default false. */
  readonly force?: boolean;
  /** Use this addon (default: the one `backends/native` loads; `null`: plain file writes). */
  readonly addon?: NativeAddon | null;
}

/** What {@link formatRegionFile} made. */
export interface FormattedRegionFile {
  readonly path: string;
  readonly sizeBytes: number;
  readonly uuid: string;
  readonly layout: RegionLayout;
}

function nativeOrNull(addon: NativeAddon | null | undefined): NativeAddon | null {
  if (addon !== undefined) return addon;
  return tryLoadNative().addon ?? null;
}

function fileError(what: string, path: string, error: unknown): VmcommError {
  const code = (error as { code?: string }).code;
  return new VmcommError('UNSUPPORTED', `cannot ${what} the ivshmem region file ${path}${code === undefined ? '' : ` (${code})`}: ${(error as Error).message}`, { cause: error });
}

/**
 * Creates `path` (mode 0600, all of it allocated) as an empty region of `sizeBytes` and formats it.
 * An existing file is refused unless `force` (then it must have that size already).
 *
 * @throws `INVALID_ARGUMENT` for a size that is not a power of two (QEMU's ivshmem requires one), bad
 *   options or an existing file; `UNSUPPORTED` when the file cannot be created (the cause says why).
 */
export function formatRegionFile(path: string, sizeBytes: number, options: FormatFileOptions = {}): FormattedRegionFile {
  if (typeof path !== 'string' || path === '') throw new VmcommError('INVALID_ARGUMENT', `the region file path must be a non-empty string, got ${JSON.stringify(path)}`);
  if (!isRegionSize(sizeBytes)) {
    const lower = Number.isFinite(sizeBytes) && sizeBytes > 0 ? 2 ** Math.floor(Math.log2(sizeBytes)) : 0;
    const hint = lower >= MIN_REGION_BYTES ? ` (e.g. ${formatSize(lower)} or ${formatSize(lower * 2)})` : ` (at least ${formatSize(MIN_REGION_BYTES)})`;
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `an ivshmem region's size must be a power of two from ${formatSize(MIN_REGION_BYTES)} to ${formatSize(MAX_REGION_BYTES)} bytes — QEMU's ivshmem-plain refuses any other — got ${String(sizeBytes)}${hint}`,
    );
  }
  const layout = planLayout(sizeBytes, options);
  const uuid = options.uuid ?? randomUuid();
  const exists = existsSync(path);
  if (exists && options.force !== true) throw new VmcommError('INVALID_ARGUMENT', `${path} exists already; remove it, or pass force to re-format it (everything in it is lost)`);
  if (exists) {
    const size = statSync(path).size;
    if (size !== sizeBytes && size !== 0) throw new VmcommError('INVALID_ARGUMENT', `${path} has ${size} bytes, not ${sizeBytes}: remove it first to change the size`);
    if (size === 0) {
      try {
        truncateSync(path, sizeBytes);
      } catch (error) {
        throw fileError('resize', path, error);
      }
    }
  }
  const addon = nativeOrNull(options.addon);
  if (addon !== null) {
    let sab: SharedArrayBuffer;
    try {
      sab = exists ? addon.openSharedFile(path, sizeBytes) : addon.createSharedFile(path, sizeBytes);
    } catch (error) {
      throw fileError(exists ? 'map' : 'create', path, error);
    }
    const region = IvshmemRegion.format({ sab, byteOffset: 0, byteLength: sizeBytes }, { ...options, uuid });
    return { path, sizeBytes, uuid: region.uuid, layout: region.layout };
  }
  // No addon: write the metadata with plain writes; the rest of the file is zero (sparse until used).
  const meta = new Int32Array(new SharedArrayBuffer(layout.blocksOffset));
  writeRegionMetadata(meta, layout, uuid);
  let fd: number;
  try {
    fd = openSync(path, exists ? 'r+' : 'wx', 0o600);
  } catch (error) {
    throw fileError(exists ? 'open' : 'create', path, error);
  }
  try {
    ftruncateSync(fd, sizeBytes);
    const bytes = new Uint8Array(meta.buffer);
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, done);
  } catch (error) {
    throw fileError('write', path, error);
  } finally {
    closeSync(fd);
  }
  return { path, sizeBytes, uuid: uuidText(uuid), layout };
}

/** Options of {@link openRegionFile}. */
export interface OpenFileOptions {
  /** Bytes to map (required for a device whose size reads as 0; default the file size). */
  readonly sizeBytes?: number;
  /** Use this addon (default: the one `backends/native` loads; `null`: read a copy of the file). */
  readonly addon?: NativeAddon | null;
}

/**
 * Maps a region file (a host file or a guest's `resource2`) as a {@link Region}. Without the addon,
 * reads a private copy (at most 1 GiB), good for `show` only: `mapped` is then false.
 *
 * @throws `UNSUPPORTED` when the file cannot be opened or mapped (the cause says why).
 */
export function openRegionFile(path: string, options: OpenFileOptions = {}): { region: Region; mapped: boolean } {
  const addon = nativeOrNull(options.addon);
  if (addon !== null) {
    let sab: SharedArrayBuffer;
    try {
      sab = options.sizeBytes === undefined ? addon.openSharedFile(path) : addon.openSharedFile(path, options.sizeBytes);
    } catch (error) {
      throw fileError('map', path, error);
    }
    // The addon may return a longer mapping of the same file; the region is the file's size.
    const size = options.sizeBytes ?? fileSize(path, sab.byteLength);
    return { region: { sab, byteOffset: 0, byteLength: Math.min(size, sab.byteLength) }, mapped: true };
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw fileError('open', path, error);
  }
  try {
    const size = options.sizeBytes ?? fstatSync(fd).size;
    if (size > 2 ** 30) throw new VmcommError('UNSUPPORTED', `${path} is ${size} bytes; reading it without the native addon is limited to 1 GiB (build the addon to map it)`);
    const sab = new SharedArrayBuffer(size);
    const bytes = new Uint8Array(sab);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, bytes, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return { region: { sab, byteOffset: 0, byteLength: size }, mapped: false };
  } catch (error) {
    if (error instanceof VmcommError) throw error;
    throw fileError('read', path, error);
  } finally {
    closeSync(fd);
  }
}

function fileSize(path: string, fallback: number): number {
  try {
    const size = statSync(path).size;
    return size > 0 ? size : fallback;
  } catch {
    return fallback;
  }
}

/** A region described for printing (`vmcomm ivshmem show`); plain JSON-friendly values. */
export interface RegionDescription {
  readonly header: {
    readonly magic: string;
    readonly version: number;
    readonly sizeBytes: number;
    readonly uuid: string;
    readonly generation: number;
    readonly revoked: boolean;
    readonly memberEpoch: number;
    readonly ringEpoch: number;
    readonly slots: number;
    readonly blocks: number;
    readonly ringDataBytes: number;
    readonly blockBytes: number;
    readonly slotTableOffset: number;
    readonly blockTableOffset: number;
    readonly blocksOffset: number;
  };
  /** Slots that are not free. */
  readonly members: readonly {
    readonly slot: number;
    readonly state: string;
    readonly generation: number;
    readonly heartbeat: number;
    readonly rank?: number;
    readonly job?: string;
    readonly nonce?: string;
    readonly regionGeneration?: number;
  }[];
  /** Blocks that are not free. */
  readonly rings: readonly {
    readonly index: number;
    readonly state: string;
    readonly generation: number;
    readonly offset: number;
    readonly producer?: { readonly slot: number; readonly generation: number };
    readonly consumer?: { readonly slot: number; readonly generation: number };
    readonly job?: string;
    /** Bytes published and not yet read, from the ring's own head and tail. */
    readonly unreadBytes?: number;
    readonly problem?: string;
  }[];
  readonly free: { readonly slots: number; readonly blocks: number };
}

/**
 * Describes a region: its header, the slots in use and the rings in use. Reads each shared word once;
 * garbage in a slot or entry shows as `invalid` with the problem, never as an exception.
 *
 * @throws `CORRUPT` when the header itself is not valid (then nothing else can be trusted).
 */
export function describeRegion(region: Region | IvshmemRegion): RegionDescription {
  const r = region instanceof IvshmemRegion ? region : IvshmemRegion.open(region);
  const layout = r.layout;
  const status = r.status();
  const members: RegionDescription['members'][number][] = [];
  let freeSlots = 0;
  for (const info of r.members.list()) {
    if (info.state === 'free') {
      freeSlots++;
      continue;
    }
    const m = info.member;
    members.push({
      slot: info.slot,
      state: info.state,
      generation: info.generation,
      heartbeat: info.heartbeat,
      ...(m === undefined ? {} : { rank: m.rank, job: toHex(m.job), nonce: toHex(m.nonce), regionGeneration: m.regionGeneration }),
    });
  }
  const rings: RegionDescription['rings'][number][] = [];
  let freeBlocks = 0;
  for (const info of r.rings.list()) {
    if (info.state === 'free') {
      freeBlocks++;
      continue;
    }
    const offset = layout.blocksOffset + info.index * layout.blockBytes;
    const ring = info.ring;
    if (ring === undefined) {
      rings.push({ index: info.index, state: info.state, generation: info.generation, offset, ...(info.problem === undefined ? {} : { problem: info.problem }) });
      continue;
    }
    const fill = ringFill(ring.region, layout.ringDataBytes);
    rings.push({
      index: info.index,
      state: info.state,
      generation: info.generation,
      offset,
      producer: ring.producer,
      consumer: ring.consumer,
      job: toHex(ring.job),
      ...(typeof fill === 'number' ? { unreadBytes: fill } : { problem: fill }),
    });
  }
  return {
    header: {
      magic: 'VMIV',
      version: 1,
      sizeBytes: layout.sizeBytes,
      uuid: r.uuid,
      generation: status.generation,
      revoked: status.revoked,
      memberEpoch: status.memberEpoch,
      ringEpoch: status.ringEpoch,
      slots: layout.slots,
      blocks: layout.blocks,
      ringDataBytes: layout.ringDataBytes,
      blockBytes: layout.blockBytes,
      slotTableOffset: layout.slotTableOffset,
      blockTableOffset: layout.blockTableOffset,
      blocksOffset: layout.blocksOffset,
    },
    members,
    rings,
    free: { slots: freeSlots, blocks: freeBlocks },
  };
}

/** Unread bytes of the ring in `region` (documented words of `spsc-ring.ts`), or what is wrong. */
function ringFill(region: Region, dataBytes: number): number | string {
  const ctl = new Int32Array(region.sab, region.byteOffset, 128);
  const magic = Atomics.load(ctl, 0) >>> 0;
  const declared = Atomics.load(ctl, 2) >>> 0;
  const head = Atomics.load(ctl, 128 >> 2) >>> 0;
  const tail = Atomics.load(ctl, 256 >> 2) >>> 0;
  if (magic !== RING_MAGIC) return `ring magic 0x${magic.toString(16)}`;
  if (declared !== dataBytes) return `ring declares ${declared} data bytes, the region ${dataBytes}`;
  const unread = (head - tail) >>> 0;
  return unread > dataBytes ? `ring head ${head} and tail ${tail} are ${unread} bytes apart` : unread;
}

/** {@link describeRegion} as text, for the terminal. */
export function renderRegionDescription(d: RegionDescription): string {
  const h = d.header;
  const lines = [
    `ivshmem region ${h.uuid}: ${formatSize(h.sizeBytes)} (${h.sizeBytes} bytes), layout ${h.magic} v${h.version}, generation ${h.generation}${h.revoked ? ', REVOKED' : ''}`,
    `  slots ${h.slots} (${d.free.slots} free) at ${h.slotTableOffset}; rings ${h.blocks} × ${formatSize(h.ringDataBytes)} (${d.free.blocks} free), table at ${h.blockTableOffset}, blocks at ${h.blocksOffset}, ${h.blockBytes} bytes each`,
    `  epochs: members ${h.memberEpoch}, rings ${h.ringEpoch}`,
  ];
  lines.push(d.members.length === 0 ? '  members: none' : '  members:');
  for (const m of d.members) {
    lines.push(
      m.rank === undefined
        ? `    slot ${m.slot}: ${m.state} (generation ${m.generation}, heartbeat ${m.heartbeat})`
        : `    slot ${m.slot}: ${m.state} rank ${m.rank} job ${m.job} nonce ${m.nonce} (generation ${m.generation}, heartbeat ${m.heartbeat}, joined at region generation ${m.regionGeneration})`,
    );
  }
  lines.push(d.rings.length === 0 ? '  rings: none' : '  rings:');
  for (const r of d.rings) {
    const who = r.producer === undefined ? '' : ` slot ${r.producer.slot}/${r.producer.generation} → slot ${r.consumer!.slot}/${r.consumer!.generation} job ${r.job}`;
    const fill = r.unreadBytes === undefined ? '' : `, ${r.unreadBytes} bytes unread`;
    lines.push(`    ring ${r.index} @${r.offset}: ${r.state}${who} (generation ${r.generation}${fill})${r.problem === undefined ? '' : ` — ${r.problem}`}`);
  }
  return lines.join('\n');
}

/** Opens `path` and describes it (`vmcomm ivshmem show PATH`). */
export function describeRegionFile(path: string, options: OpenFileOptions = {}): RegionDescription {
  return describeRegion(openRegionFile(path, options).region);
}

/** Sets or clears the revoked mark of the region in `path` (`vmcomm ivshmem revoke|restore`); needs the addon. */
export function setRegionFileRevoked(path: string, revoked: boolean, options: OpenFileOptions = {}): void {
  const { region, mapped } = openRegionFile(path, options);
  if (!mapped) throw new VmcommError('UNSUPPORTED', `revoking or restoring ${path} needs the native addon to map it; build it with \`node scripts/build-addon.mjs\``);
  const r = IvshmemRegion.open(region);
  if (revoked) r.revoke();
  else r.restore();
}
