/**
 * `--bind-to core`: which CPUs the launcher hands out, and how a rank learns its own. The pinning
 * itself is `backends/native/bind-to-core.ts`, preloaded into each rank (named here by path, not
 * imported: the launcher loads no backend code).
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** The preload that pins a rank to its CPU. */
export const BIND_PRELOAD = new URL('../../backends/native/bind-to-core.js', import.meta.url).href;
/** The CPUs `--bind-to core` hands out, in order: rank r gets the (r mod n)-th. */
export const BIND_CPUS = 'VMCOMM_BIND_CPUS';

/**
 * The CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status: the cgroup cpuset and
 * any affinity the launcher itself was started with), else 0…n−1.
 */
export function allowedCpus(): number[] {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Cpus_allowed_list:'));
    if (line) {
      const cpus: number[] = [];
      for (const part of line.slice(line.indexOf(':') + 1).trim().split(',')) {
        const [a, b] = part.split('-').map(Number);
        for (let c = a; c <= (b ?? a); c++) cpus.push(c);
      }
      if (cpus.length > 0 && cpus.every(Number.isInteger)) return cpus;
    }
  } catch {
    // Not Linux, or no /proc: assume every CPU.
  }
  return Array.from({ length: availableParallelism() }, (_, i) => i);
}

/**
 * The cores this host's ranks share, for a transport's spin-or-yield choice (`chooseWaiting` in lib/ring/waiting.ts):
 * under `--bind-to core` the launcher's CPU list (every rank has one of them to itself, so `ranks ≤
 * cores` holds by construction), else the CPUs this process may use. Not `availableParallelism()`
 * alone: once the preload pinned this rank to its CPU, that says 1, and two bound ranks on two cores
 * would take themselves for oversubscribed and `sched_yield` after every empty poll.
 *
 * @param env where `VMCOMM_BIND_CPUS` is read (default `process.env`)
 */
export function hostCores(env: NodeJS.ProcessEnv = process.env): number {
  const bound = env[BIND_CPUS];
  if (bound !== undefined && /^\d+(,\d+)*$/.test(bound)) return bound.split(',').length;
  return availableParallelism();
}

