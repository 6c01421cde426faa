/**
 * `vmcomm clean`: removes the shared-memory files that no live rank holds (see `shm-files.ts`: a file
 * whose `flock` can be taken is stale). Pids are never looked at.
 *
 * @module
 */

import type { LauncherOutput } from './launcher.js';
import { DEFAULT_SHM_DIRECTORY, shmJobPrefix, sweepStaleShmFiles } from './shm-files.js';

/** What `vmcomm clean` was asked to do. */
export interface CleanOptions {
  /** The directory to sweep. Default {@link DEFAULT_SHM_DIRECTORY}. */
  readonly directory?: string;
  /** Keep stale-looking files younger than this (ms): a rank may be creating one right now. */
  readonly minAgeMs: number;
  /** Only list what would be removed. */
  readonly dryRun: boolean;
  /** Only files of this job (its id, as in `VMCOMM_JOB_ID`). */
  readonly jobId?: string;
}

/** Default `--min-age`, in seconds: a just-created file is locked within microseconds; a finished rank's ring waits for its reader briefly. */
export const DEFAULT_CLEAN_MIN_AGE_SECONDS = 10;

/**
 * Sweeps; prints each file removed (stdout) and a summary (stderr). Returns 0, or 1 when files could
 * not be checked or removed.
 */
export async function cleanShm(options: CleanOptions, out: LauncherOutput): Promise<number> {
  const say = (sink: 'stdout' | 'stderr', text: string): void => out[sink].write(Buffer.from(`${text}\n`, 'utf8'));
  const directory = options.directory ?? DEFAULT_SHM_DIRECTORY;
  const result = await sweepStaleShmFiles({
    directory,
    minAgeMs: options.minAgeMs,
    dryRun: options.dryRun,
    ...(options.jobId === undefined ? {} : { prefix: shmJobPrefix(options.jobId) }),
  });
  if (result.unavailable !== undefined) {
    say('stderr', `vmcomm clean: ${result.unavailable}`);
    return 1;
  }
  const verb = options.dryRun ? 'would remove' : 'removed';
  for (const file of result.removed) say('stdout', `${verb} ${file}`);
  for (const { path, reason } of result.failed) say('stderr', `vmcomm clean: could not check or remove ${path}: ${reason}`);
  const parts = [`${verb} ${result.removed.length} stale file${result.removed.length === 1 ? '' : 's'} in ${directory}`, `${result.inUse.length} in use`];
  if (result.young.length > 0) parts.push(`${result.young.length} unlocked but younger than ${options.minAgeMs / 1000} s (kept; see --min-age)`);
  say('stderr', `vmcomm clean: ${parts.join(', ')}`);
  return result.failed.length > 0 ? 1 : 0;
}
