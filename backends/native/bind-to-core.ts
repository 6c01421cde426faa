/**
 * `vmcomm run --bind-to core`: preloaded (`node --import …/bind-to-core.js`) into every rank process,
 * and into every thread-rank's worker, before the app's first line. It pins the rank to one CPU of
 * `VMCOMM_BIND_CPUS` (the launcher's allowed CPUs, in order): CPU number `cpus[rank % cpus.length]`.
 * A process rank pins all its threads (Node's own included, so its GC and compiler threads do not
 * wander onto other ranks' cores); a thread-rank pins only its own thread.
 *
 * The launcher sets the variable only when every rank can have a core of its own. Binding is a
 * performance hint, never a reason to fail: when the addon is missing or the kernel refuses, the
 * rank says why on stderr and runs unbound.
 *
 * @module
 */

import { isMainThread } from 'node:worker_threads';
import { tryLoadNative } from './native.js';

const cpusText = process.env.VMCOMM_BIND_CPUS;
const rankText = process.env.VMCOMM_RANK;
if (cpusText !== undefined && cpusText !== '' && rankText !== undefined && /^\d+$/.test(rankText)) {
  const cpus = cpusText.split(',').map(Number);
  const rank = Number(rankText);
  const cpu = cpus[rank % cpus.length];
  const loaded = tryLoadNative();
  try {
    if (loaded.addon === undefined) throw new Error(`the native addon did not load (${loaded.reason ?? 'no reason given'})`);
    if (!Number.isInteger(cpu)) throw new Error(`VMCOMM_BIND_CPUS=${cpusText} is not a list of CPU numbers`);
    // A thread host's main thread is no rank; its workers bind themselves (thread scope).
    loaded.addon.setAffinity([cpu], isMainThread ? 'process' : 'thread');
  } catch (e) {
    process.stderr.write(`vmcomm: --bind-to core: rank ${rank} runs unbound: ${(e as Error).message}\n`);
  }
}
