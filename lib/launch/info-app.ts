/**
 * The rank program of `vmcomm info` (`info-command.ts` runs it as a job, like `vmcomm run` runs an
 * app): every rank describes itself — its card, its transport choices and why (`comm.describe()`),
 * whether the native addon loaded in it, its versions and `VMCOMM_*` settings — and rank 0 prints
 * them all (`info-report.ts`), as text or, with `--json`, as JSON.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { threadId } from 'node:worker_threads';
import { init } from '../index.js';
import { renderInfo, vmcommEnvironment, type AddonStatus, type RankInfo } from './info-report.js';

/** Loads the addon the way the shm and ivshmem transports do, and says what happened. */
async function addonStatus(): Promise<AddonStatus> {
  try {
    // Loaded here only, lazily (as shm-files.ts does): the core imports no backend.
    const { tryLoadNative } = await import('../../backends/native/native.js');
    const loaded = tryLoadNative();
    if (loaded.addon === undefined) return { loaded: false, reason: loaded.reason ?? 'no reason given' };
    let affinity: number[] | undefined;
    try {
      affinity = loaded.addon.getAffinity();
    } catch {
      affinity = undefined;
    }
    return { loaded: true, capability: { ...loaded.addon.capability }, ...(affinity === undefined ? {} : { affinity }) };
  } catch (error) {
    return { loaded: false, reason: `the addon's loader could not be imported: ${(error as Error).message}` };
  }
}

function vmcommVersion(): string {
  try {
    return String((JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version);
  } catch {
    return 'unknown';
  }
}

const json = process.argv.includes('--json');
const comm = await init();
const mine: RankInfo = {
  rank: comm.rank,
  pid: process.pid,
  threadId,
  description: comm.describe(),
  addon: await addonStatus(),
  versions: { vmcomm: vmcommVersion(), node: process.version, v8: process.versions.v8, platform: process.platform, arch: process.arch, kernel: release() },
  environment: vmcommEnvironment(process.env),
};
const all = await comm.gather(mine, 0);
if (all !== undefined) process.stdout.write(`${json ? JSON.stringify(all, null, 2) : renderInfo(all)}\n`);
await comm.finalize();
