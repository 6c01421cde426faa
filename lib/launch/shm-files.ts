/**
 * The names of the shared-memory files the `shm` transport creates, and the sweep that removes stale
 * ones: shared by the transport (which names its files), `vmcomm run` (which removes the files of a
 * rank that died, and of its own job when it ends) and `vmcomm clean`.
 *
 * ## Names
 *
 * ```
 * <directory>/vmcomm-<job>-<rank>-<random>-inbox      the rank's inbox (and its shm token)
 * <directory>/vmcomm-<job>-<rank>-<random>-ring-<to>  the ring this rank sends to rank <to> on
 * ```
 *
 * `<job>` is the job id when it is 1–24 letters and digits (the launchers use 16 hex digits), else
 * the first 16 hex digits of its SHA-256; `<random>` is 128 random bits (32 hex digits) drawn at
 * start-up, so a name cannot be guessed — and so taken over — before the rank creates it. Files are
 * created mode 0600 with `O_EXCL`. A ring's name is at most 91 bytes, so it fits the 96 bytes of an
 * inbox announcement.
 *
 * ## Locks, and what "stale" means
 *
 * A rank holds an exclusive `flock` on each of its files for as long as it uses them. The kernel
 * drops the lock when the process ends, however it ends. So a file whose lock can be taken belongs to
 * no live rank: it is **stale**. The sweep takes the lock (non-blocking), removes the file while
 * holding it, then lets go; a file whose lock is held is in use and kept. Pids are never used: they
 * are reused, and mean nothing across PID namespaces.
 *
 * A rank creates a file, then locks it, then checks that the name still leads to the file it locked
 * (a sweep may have removed it in between; the rank then creates it again), so a sweep can never
 * take a live rank's file. A finished rank's ring that its reader has not opened yet is unlocked but
 * still wanted; sweeps of files that might belong to a running job therefore skip files younger than
 * `minAgeMs`.
 *
 * ## The addon
 *
 * `flock` needs the native addon. This module lives in `lib/launch` (the launcher cannot import a
 * backend), so it loads `backends/native/native.js` — the addon's typings, not a transport — with a
 * dynamic `import()` inside a `try`, and only when there is a file to look at. Without the addon
 * nothing is removed and the result says why.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';

/** Every file of the shm transport starts with this. */
export const SHM_FILE_PREFIX = 'vmcomm-';
/** Where the shm transport creates its files unless told otherwise. */
export const DEFAULT_SHM_DIRECTORY = '/dev/shm';
/**
 * Launchers (`vmcomm run`, and the first rank per node under mpiexec or srun) remove stale shm files
 * of *other* jobs at start only past this age: one of their ranks may be between creating a file and
 * locking it, or a finished rank's ring may still wait for its reader.
 */
export const OTHER_JOBS_MIN_AGE_MS = 60_000;
/** Hex digits of the random part of a name (128 bits). */
export const SHM_RANDOM_HEX_DIGITS = 32;

const JOB_TOKEN = /^[0-9A-Za-z]{1,24}$/;
const NAME = /^vmcomm-([0-9A-Za-z]{1,24})-(0|[1-9]\d{0,9})-([0-9a-f]{32})-(inbox|ring-(0|[1-9]\d{0,9}))$/;

/** The `<job>` part of the names of a job's files (see the module comment). */
export function shmJobToken(jobId: string): string {
  return JOB_TOKEN.test(jobId) ? jobId : createHash('sha256').update(jobId).digest('hex').slice(0, 16);
}

/** `vmcomm-<job>-<rank>-<random>`: what every file of one rank's transport starts with. */
export function shmFileBase(jobId: string, rank: number, random: string): string {
  if (!/^[0-9a-f]{32}$/.test(random)) throw new RangeError(`the random part of a shm file name is ${SHM_RANDOM_HEX_DIGITS} hex digits, got ${JSON.stringify(random)}`);
  return `${SHM_FILE_PREFIX}${shmJobToken(jobId)}-${rank}-${random}`;
}

/** The inbox file name of the rank whose files start with `base`. */
export function shmInboxName(base: string): string {
  return `${base}-inbox`;
}

/** The name of the ring from the rank whose files start with `base` to rank `to`. */
export function shmRingName(base: string, to: number): string {
  return `${base}-ring-${to}`;
}

/** What a shm file name says. */
export interface ShmFileName {
  readonly job: string;
  readonly rank: number;
  readonly random: string;
  /** The name without its `-inbox` / `-ring-<to>` suffix. */
  readonly base: string;
  readonly kind: 'inbox' | 'ring';
  /** For a ring: the rank it carries frames to. */
  readonly to?: number;
}

/** Parses a file name made by this module; `undefined` for any other name. */
export function parseShmFileName(name: string): ShmFileName | undefined {
  const m = NAME.exec(name);
  if (m === null) return undefined;
  const [, job, rank, random, suffix, to] = m;
  const base = `${SHM_FILE_PREFIX}${job}-${rank}-${random}`;
  return suffix === 'inbox' ? { job, rank: Number(rank), random, base, kind: 'inbox' } : { job, rank: Number(rank), random, base, kind: 'ring', to: Number(to) };
}

/** The prefix of every file of one job. */
export function shmJobPrefix(jobId: string): string {
  return `${SHM_FILE_PREFIX}${shmJobToken(jobId)}-`;
}

/** The prefix of every file of one rank of a job. */
export function shmRankPrefix(jobId: string, rank: number): string {
  return `${shmJobPrefix(jobId)}${rank}-`;
}

/** What {@link sweepStaleShmFiles} looks at. */
export interface ShmSweepOptions {
  /** The directory to sweep. Default {@link DEFAULT_SHM_DIRECTORY}. */
  readonly directory?: string;
  /** Only names starting with this (e.g. {@link shmRankPrefix}). Default {@link SHM_FILE_PREFIX}. */
  readonly prefix?: string;
  /** Keep files modified less than this many ms ago, whatever their lock says. Default 0. */
  readonly minAgeMs?: number;
  /** Report what would be removed, remove nothing. Default false. */
  readonly dryRun?: boolean;
}

/** What a sweep did. Paths are absolute. */
export interface ShmSweepResult {
  /** Stale files removed (or, for a dry run, that would be). */
  readonly removed: string[];
  /** Files whose lock is held: in use by a live rank. */
  readonly inUse: string[];
  /** Stale-looking files kept because they are younger than `minAgeMs`. */
  readonly young: string[];
  /** Files that could not be checked or removed, with the reason (e.g. another user's file). */
  readonly failed: { readonly path: string; readonly reason: string }[];
  /** Set when nothing could be checked at all (no such directory, no addon). */
  readonly unavailable?: string;
}

/** The part of the native addon a sweep uses. */
interface Locker {
  lockFile(path: string, options: { exclusive: boolean; wait: boolean; create: boolean }): number;
  unlockFile(fd: number): void;
}

let locker: Promise<{ locker?: Locker; reason?: string }> | undefined;

async function loadLocker(): Promise<{ locker?: Locker; reason?: string }> {
  locker ??= (async () => {
    try {
      // The addon's typings module, not a transport: the one exception to "lib imports no backend".
      const { tryLoadNative } = await import('../../backends/native/native.js');
      const result = tryLoadNative();
      return result.addon !== undefined ? { locker: result.addon } : { reason: result.reason ?? 'the native addon did not load' };
    } catch (error) {
      return { reason: `the native addon's module could not be loaded: ${(error as Error).message}` };
    }
  })();
  return locker;
}

/**
 * Removes the stale shm files (see the module comment) in `directory` whose names start with
 * `prefix`. Never throws: what could not be done is in the result.
 */
export async function sweepStaleShmFiles(options: ShmSweepOptions = {}): Promise<ShmSweepResult> {
  const directory = path.resolve(options.directory ?? DEFAULT_SHM_DIRECTORY);
  const prefix = options.prefix ?? SHM_FILE_PREFIX;
  const minAgeMs = options.minAgeMs ?? 0;
  const result = { removed: [] as string[], inUse: [] as string[], young: [] as string[], failed: [] as { path: string; reason: string }[] };
  let names: string[];
  try {
    names = readdirSync(directory).filter((n) => n.startsWith(prefix) && parseShmFileName(n) !== undefined);
  } catch (error) {
    return { ...result, unavailable: `cannot list ${directory}: ${(error as Error).message}` };
  }
  if (names.length === 0) return result;
  const { locker: addon, reason } = await loadLocker();
  if (addon === undefined) return { ...result, unavailable: `cannot tell stale files from live ones without flock: ${reason}` };
  const now = Date.now();
  for (const name of names.sort()) {
    const file = path.join(directory, name);
    let fd: number;
    try {
      const st = lstatSync(file);
      if (!st.isFile()) continue; // never follow a link someone else put there
      if (now - st.mtimeMs < minAgeMs) {
        // Checked anyway, so that "young" lists only files nobody holds.
        fd = addon.lockFile(file, { exclusive: true, wait: false, create: false });
        if (fd < 0) result.inUse.push(file);
        else {
          addon.unlockFile(fd);
          result.young.push(file);
        }
        continue;
      }
      fd = addon.lockFile(file, { exclusive: true, wait: false, create: false });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') result.failed.push({ path: file, reason: (error as Error).message });
      continue;
    }
    if (fd < 0) {
      result.inUse.push(file);
      continue;
    }
    try {
      // Removed while the lock is held: nobody can start using it in between.
      if (!options.dryRun) unlinkSync(file);
      result.removed.push(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') result.failed.push({ path: file, reason: (error as Error).message });
    } finally {
      addon.unlockFile(fd);
    }
  }
  return result;
}
