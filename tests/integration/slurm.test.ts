// Ranks started by Slurm (`srun --mpi=pmi2`, PMI-2 over PMI_FD) join a vmcomm job with no change to
// the app, on a single-node Slurm started for this file (tests/helpers/slurm-cluster.ts). Also PMI-1
// against Slurm's server (VMCOMM_PMI=1), an abort, and a rank that never starts (Slurm keeps the
// others waiting: the PMI fence's deadline, VMCOMM_PMI_TIMEOUT, ends them).
//
// Needs root and Debian's slurmctld, slurmd and slurm-client (test-only): installed in beforeAll when
// missing if running with CI=true, else the file prints why and skips.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tryLoadNative } from '../../backends/native/native.js';
import { ensureBuilt, expectGoneSoon, installDebianPackages, launcherAvailability, sweepJobFiles, PMI_APP, PMI_FIXTURES, rows, run, shown } from '../helpers/pmi-launchers.js';
import { SLURM_COMMANDS, SLURM_PACKAGES, slurmPrerequisite, startSlurm, type SlurmCluster } from '../helpers/slurm-cluster.js';

const prerequisite = slurmPrerequisite();
const availability = prerequisite === undefined ? launcherAvailability(SLURM_COMMANDS, SLURM_PACKAGES) : { kind: 'skip' as const, reason: prerequisite };
if (availability.kind === 'skip') console.log(`slurm test skipped: ${availability.reason}`);

const LOCAL = tryLoadNative().addon === undefined ? 'tcp' : 'shm';
let slurm: SlurmCluster | undefined;

beforeAll(async () => {
  if (availability.kind === 'skip') return;
  if (availability.kind === 'install') await installDebianPackages(SLURM_PACKAGES);
  ensureBuilt();
  slurm = await startSlurm();
}, 600_000);

afterAll(async () => {
  await slurm?.stop();
}, 30_000);

function srun(args: string[], env: NodeJS.ProcessEnv = {}) {
  return run(['srun', '--mpi=pmi2', ...args], { ...slurm!.env, ...env }, 60_000);
}

describe.skipIf(availability.kind === 'skip')('ranks started by srun --mpi=pmi2 (single-node Slurm)', () => {
  it('-n 4 node app.mjs: PMI-2, one node: 127.0.0.1, shm between the ranks, collectives, exit 0 — and PMI-1 against Slurm', async () => {
    const [pmi2, pmi1] = await Promise.all([srun(['-n', '4', process.execPath, PMI_APP]), srun(['-n', '2', process.execPath, PMI_APP], { VMCOMM_PMI: '1' })]);
    for (const [out, size] of [[pmi2, 4], [pmi1, 2]] as const) {
      expect(out.code, `${shown(out)}\n${slurm!.logs()}`).toBe(0);
      const got = rows(out.stdout);
      expect(got.filter(Boolean), shown(out)).toHaveLength(size);
      for (const row of got) {
        expect(row.size).toBe(size);
        expect(row.address).toBe('127.0.0.1');
        expect(row.row).toEqual(Array.from({ length: size }, (_, p) => (p === row.rank ? 'self' : LOCAL)));
        expect(out.stdout).toMatch(new RegExp(`^OK ${row.rank}$`, 'm'));
      }
      await expectGoneSoon(got.map((r) => r.pid));
    }
  });

  it('values of 20 000 characters travel whole in chunks', async () => {
    const out = await srun(['-n', '3', process.execPath, path.join(PMI_FIXTURES, 'kvs.mjs')]);
    expect(out.code, shown(out)).toBe(0);
    expect(out.stdout.split('\n').filter((l) => l.startsWith('KVS ')).sort()).toEqual(['KVS 0 3', 'KVS 1 3', 'KVS 2 3']);
  });

  it('srun without --mpi=pmi2: init() fails with UNSUPPORTED saying so, rather than run worlds of one', async () => {
    const out = await run(['srun', '--mpi=none', '-n', '2', process.execPath, PMI_APP], slurm!.env, 60_000);
    expect(out.code, shown(out)).not.toBe(0);
    const failed = out.stdout.split('\n').filter((l) => l.startsWith('INIT-FAILED'));
    expect(failed, shown(out)).toHaveLength(2);
    for (const line of failed) expect(line).toMatch(/^INIT-FAILED UNSUPPORTED: .*srun --mpi=pmi2/);
  });

  it('comm.abort(7) on one rank: Slurm cancels the step at once', async () => {
    const out = await srun(['-n', '3', process.execPath, PMI_APP, 'abort', '1', '7']);
    expect(out.code, shown(out)).not.toBe(0);
    expect(out.stdout).not.toMatch(/UNEXPECTED/);
    expect(out.ms).toBeLessThan(20_000);
    const got = rows(out.stdout);
    await expectGoneSoon(got.filter(Boolean).map((r) => r.pid));
    expect(await sweepJobFiles(got)).toEqual([]);
  });

  it('a rank that never calls init(): the others fail with TIMEOUT after VMCOMM_PMI_TIMEOUT, nothing hangs', async () => {
    const out = await srun(['-n', '3', process.execPath, PMI_APP, 'noinit', '2'], { VMCOMM_PMI_TIMEOUT: '3' });
    expect(out.code, shown(out)).not.toBe(0);
    const failed = out.stdout.split('\n').filter((l) => l.startsWith('INIT-FAILED'));
    expect(failed, shown(out)).toHaveLength(2);
    for (const line of failed) expect(line).toMatch(/^INIT-FAILED TIMEOUT: .*did not answer kvs-fence \(the PMI fence\) within 3 s/);
    expect(out.ms).toBeGreaterThanOrEqual(3_000);
    expect(out.ms).toBeLessThan(30_000);
  });
});
