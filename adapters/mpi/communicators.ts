/**
 * Communicator management: `Comm_rank`, `Comm_size`, `Comm_split`, `Comm_split_type`, `Comm_dup`,
 * `Comm_free`.
 *
 * @module
 */

import { VmcommError, type LocalityLevel } from 'vmcomm';
import { Comm, COMM_NULL, communicatorOf } from './comm.js';
import { describe } from './datatypes.js';
import { COMM_SELF, COMM_WORLD } from './environment.js';
import { UNDEFINED } from './requests.js';

/** `MPI_COMM_TYPE_SHARED`: ranks that can share memory through one OS kernel (threads and shm peers). */
export const COMM_TYPE_SHARED = 1;
/**
 * vmcomm's extension: ranks on one physical host, including those in other VMs reached through an
 * ivshmem region — the VM-aware grouping MPI has no name for.
 */
export const COMM_TYPE_HOST = 0x7601;
/** vmcomm's extension: ranks that are threads of one process. */
export const COMM_TYPE_PROCESS = 0x7602;

const LEVELS = new Map<number, LocalityLevel>([
  [COMM_TYPE_SHARED, 'os'],
  [COMM_TYPE_HOST, 'host'],
  [COMM_TYPE_PROCESS, 'process'],
]);

/** `MPI_Comm_rank` (synchronous). */
export function Comm_rank(comm: unknown): number {
  return communicatorOf(comm).rank;
}

/** `MPI_Comm_size` (synchronous). */
export function Comm_size(comm: unknown): number {
  return communicatorOf(comm).size;
}

/** `MPI_Comm_split`: `color` `MPI.UNDEFINED` gives `MPI.COMM_NULL`. Collective. */
export async function Comm_split(comm: unknown, color: number, key: number): Promise<Comm> {
  const c = communicatorOf(comm);
  if (color !== UNDEFINED && (typeof color !== 'number' || !Number.isSafeInteger(color) || color < 0)) {
    throw new VmcommError('INVALID_ARGUMENT', `color must be a whole number ≥ 0 or MPI.UNDEFINED; got ${describe(color)}`);
  }
  const sub = await c.split(color === UNDEFINED ? undefined : color, key);
  return sub === undefined ? COMM_NULL : new Comm('a communicator from Comm_split', sub);
}

/**
 * `MPI_Comm_split_type`: groups by what vmcomm proved about where ranks run — `COMM_TYPE_SHARED`
 * (one OS), or vmcomm's `COMM_TYPE_HOST` / `COMM_TYPE_PROCESS`; `MPI.UNDEFINED` gives
 * `MPI.COMM_NULL`. Ordered by `key`, then rank. Collective.
 */
export async function Comm_split_type(comm: unknown, splitType: number, key: number): Promise<Comm> {
  const c = communicatorOf(comm);
  if (splitType === UNDEFINED) {
    // Still takes part in the collective (splitByLocality is a split underneath), with no color.
    await c.split(undefined, key);
    return COMM_NULL;
  }
  const level = LEVELS.get(splitType);
  if (level === undefined) {
    throw new VmcommError('INVALID_ARGUMENT', `splitType must be MPI.COMM_TYPE_SHARED, MPI.COMM_TYPE_HOST, MPI.COMM_TYPE_PROCESS or MPI.UNDEFINED; got ${describe(splitType)}`);
  }
  return new Comm(`a communicator from Comm_split_type`, await c.splitByLocality(level, { key }));
}

/** `MPI_Comm_dup`. Collective. */
export async function Comm_dup(comm: unknown): Promise<Comm> {
  return new Comm('a communicator from Comm_dup', await communicatorOf(comm).dup());
}

/** `MPI_Comm_free`: the handle stops working; operations already started complete. */
export async function Comm_free(comm: unknown): Promise<void> {
  if (comm === COMM_WORLD || comm === COMM_SELF) throw new VmcommError('INVALID_ARGUMENT', 'MPI.COMM_WORLD and MPI.COMM_SELF cannot be freed');
  const c = communicatorOf(comm);
  await c.free();
  (comm as Comm).unbind();
}
