/**
 * Finding and attaching ivshmem regions: which paths (the factory's `regions`, else `VMCOMM_IVSHMEM`,
 * else a scan of the PCI bus for QEMU's ivshmem device), then, per path, map it, open it (validating
 * the header), and join it as a member. Nothing is configured by hand in a guest: its ivshmem BAR is
 * found on the bus.
 *
 * A path that cannot be used (missing, not readable — a guest's `resource2` is root-only by default —
 * not formatted, revoked, no free slot, the same region twice) is skipped with a one-line reason; the
 * transport reports the reasons when no region is left.
 *
 * @module
 */

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isVmcommError } from '../../lib/errors.js';
import type { NativeAddon } from '../native/native.js';
import { openRegionFile } from './admin.js';
import type { MemberIdentity } from './membership.js';
import { IvshmemRegion, type RegionMember } from './region.js';

/** PCI vendor id of Red Hat / virtio devices, QEMU's ivshmem among them. */
export const IVSHMEM_VENDOR = 0x1af4;
/** PCI device id of QEMU's ivshmem (`ivshmem-plain` and `ivshmem-doorbell`). */
export const IVSHMEM_DEVICE = 0x1110;
/** Where Linux lists PCI devices. */
export const PCI_DEVICES_DIRECTORY = '/sys/bus/pci/devices';
/** The BAR that holds the shared memory. */
export const IVSHMEM_BAR_FILE = 'resource2';
/** The environment variable naming region paths. */
export const IVSHMEM_ENV = 'VMCOMM_IVSHMEM';

/** Where the region paths came from. */
export interface RegionSources {
  readonly paths: readonly string[];
  /** `'option'` (the factory's `regions`), `'env'` ({@link IVSHMEM_ENV}) or `'pci'` (the bus scan). */
  readonly from: 'option' | 'env' | 'pci';
}

/**
 * The region paths to attach: `explicit` when given, else `VMCOMM_IVSHMEM` (comma-separated; blanks
 * ignored) when it names any, else the `resource2` of every ivshmem device under `pciDirectory`.
 */
export function regionPaths(explicit: readonly string[] | undefined, env: Readonly<Record<string, string | undefined>>, pciDirectory = PCI_DEVICES_DIRECTORY): RegionSources {
  if (explicit !== undefined) return { paths: [...explicit], from: 'option' };
  const listed = (env[IVSHMEM_ENV] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (listed.length > 0) return { paths: listed, from: 'env' };
  return { paths: scanPci(pciDirectory), from: 'pci' };
}

/**
 * The `resource2` files of the PCI devices 1af4:1110 under `directory`, sorted. Never throws: a
 * directory or file that cannot be read counts as no device.
 */
export function scanPci(directory = PCI_DEVICES_DIRECTORY): string[] {
  let entries: string[];
  try {
    entries = readdirSync(directory);
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const entry of entries.sort()) {
    const device = path.join(directory, entry);
    if (readId(path.join(device, 'vendor')) === IVSHMEM_VENDOR && readId(path.join(device, 'device')) === IVSHMEM_DEVICE) found.push(path.join(device, IVSHMEM_BAR_FILE));
  }
  return found;
}

/** A sysfs id file (`0x1af4\n`) as a number, or −1. */
function readId(file: string): number {
  try {
    const text = readFileSync(file, 'latin1').trim();
    return /^0x[0-9a-fA-F]{1,4}$/.test(text) ? Number.parseInt(text.slice(2), 16) : -1;
  } catch {
    return -1;
  }
}

/** A region this rank joined. */
export interface AttachedRegion {
  /** The path it was opened from. */
  readonly path: string;
  readonly region: IvshmemRegion;
  /** This rank's membership. */
  readonly member: RegionMember;
}

/** What {@link attachRegions} did. */
export interface AttachResult {
  readonly attached: AttachedRegion[];
  /** One line per path that was skipped, saying why. */
  readonly problems: string[];
}

/**
 * Maps, opens and joins each of `paths` (in order) as `identity`. A path naming a region already
 * attached (the same UUID) is skipped.
 */
export function attachRegions(paths: readonly string[], identity: MemberIdentity, addon: NativeAddon): AttachResult {
  const attached: AttachedRegion[] = [];
  const problems: string[] = [];
  for (const p of paths) {
    let region: IvshmemRegion;
    try {
      region = IvshmemRegion.open(openRegionFile(p, { addon }).region);
    } catch (error) {
      problems.push(`${p}: ${describe(error)}`);
      continue;
    }
    const twin = attached.find((a) => a.region.uuid === region.uuid);
    if (twin !== undefined) {
      problems.push(`${p}: the same region (${region.uuid}) as ${twin.path}`);
      continue;
    }
    let member: RegionMember | undefined;
    try {
      if (region.status().revoked) {
        problems.push(`${p}: region ${region.uuid} is revoked (\`vmcomm ivshmem restore\` re-enables it)`);
        continue;
      }
      member = region.join(identity);
    } catch (error) {
      problems.push(`${p}: ${describe(error)}`);
      continue;
    }
    if (member === undefined) {
      problems.push(`${p}: region ${region.uuid} has no free slot (all ${region.layout.slots} are taken) or was revoked`);
      continue;
    }
    attached.push({ path: p, region, member });
  }
  return { attached, problems };
}

function describe(error: unknown): string {
  if (isVmcommError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}
