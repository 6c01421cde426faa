// Worlds for the shm transport's own tests: in this process (one world per rank, sharing /dev/shm and
// the addon), with a hold on each rank's ShmTransport; and what multi-process tests need. Timeouts
// are "must finish" safety nets, never speed assertions.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { BackendComponents } from '../../../lib/backend.js';
import type { Communicator } from '../../../lib/communicator.js';
import { parseShmFileName } from '../../../lib/launch/shm-files.js';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import type { InitOptions } from '../../../lib/options.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { tryLoadNative } from '../../native/native.js';
import { shm, type ShmInit, type ShmTransport } from '../index.js';
export { pattern, same } from '../../../tests/helpers/bytes.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The addon, or undefined (then the suites skip; the addon's own load test says why, and fails under CI=true). */
export const addon = tryLoadNative().addon;

/** An in-process job: the world communicators and each rank's shm transport (index = rank). */
export interface ShmJob {
  readonly comms: Communicator[];
  readonly transports: ShmTransport[];
}

/**
 * Starts `size` worlds in this process with shm (and whatever `extra.only` adds). `init` may differ
 * per rank (e.g. another `directory`).
 */
export async function startJob(size: number, init: ShmInit | ((rank: number) => ShmInit) = {}, extra: InitOptions = {}): Promise<ShmJob> {
  const transports: ShmTransport[] = new Array(size);
  const comms = await Promise.all(
    createLocalJob(size).map((bootstrap, rank) => {
      const base = shm(typeof init === 'function' ? init(rank) : init);
      const factory = Object.assign((c: BackendComponents) => (transports[c.rank] = base(c) as ShmTransport), { transportName: 'shm' as const });
      return initWithBootstrap(bootstrap, { backends: [factory], only: ['shm'], ...extra });
    }),
  );
  return { comms, transports };
}

/** Finalizes every world of a job. */
export async function finalizeAll(job: ShmJob): Promise<void> {
  await Promise.all(job.comms.map((c) => c.finalize()));
}

/** The shm transport's files now in `directory` (names vmcomm's shm makes, nothing else). */
export function shmFiles(directory = '/dev/shm'): string[] {
  return readdirSync(directory)
    .filter((n) => parseShmFileName(n) !== undefined)
    .map((n) => path.join(directory, n))
    .sort();
}

/** Builds dist/ when a source of the shm transport (or what it uses) is newer: fixtures run from dist/. */
export function ensureDist(): void {
  const sources = ['backends/shm', 'backends/native/native.ts', 'lib/launch', 'lib/ring', 'lib'];
  const newest = Math.max(
    ...sources.flatMap((s) => {
      const full = path.join(ROOT, s);
      if (!existsSync(full)) return [];
      if (statSync(full).isFile()) return [statSync(full).mtimeMs];
      return readdirSync(full).filter((f) => f.endsWith('.ts')).map((f) => statSync(path.join(full, f)).mtimeMs);
    }),
  );
  const built = path.join(ROOT, 'dist/backends/shm/shm-transport.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newest) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  expect(existsSync(built), 'dist/ must be built: run `npm run build`').toBe(true);
}


