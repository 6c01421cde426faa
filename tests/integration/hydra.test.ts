// Ranks started by MPICH's Hydra (`mpiexec.mpich`, PMI-1 over PMI_FD) join a vmcomm job with no
// change to the app: they find each other, pick their transports, run collectives and exit 0. Also
// PMI-2 and PMI_PORT against the same Hydra, a TypeScript app, an abort, ranks that die, and ranks
// on two simulated hosts (namespaces, tests/helpers/topology.ts) started through
// `-launcher ssh -launcher-exec`.
//
// Needs Debian's `mpich` (a test-only dependency): installed in beforeAll when missing if running as
// root with CI=true, else the file prints why and skips. `mpiexec.mpich` is called by that name,
// since Open MPI's `mpiexec` may be installed too.
import { chmodSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tryLoadNative } from '../../backends/native/native.js';
import { ROOT } from '../helpers/processes.js';
import { ensureBuilt, expectGoneSoon, installDebianPackages, launcherAvailability, sweepJobFiles, PMI_APP, PMI_FIXTURES, rows, run, shown } from '../helpers/pmi-launchers.js';
import { canSimulateTopology, createTopology, type Topology } from '../helpers/topology.js';

const MPIEXEC = 'mpiexec.mpich';
const availability = launcherAvailability([MPIEXEC], ['mpich']);
if (availability.kind === 'skip') console.log(`hydra test skipped: ${availability.reason}`);
const topologyCheck = canSimulateTopology();
if (availability.kind !== 'skip' && !topologyCheck.ok) console.log(`hydra test across simulated hosts skipped: ${topologyCheck.reason}`);

/** Shared memory needs the addon; without it local pairs use tcp. */
const LOCAL = tryLoadNative().addon === undefined ? 'tcp' : 'shm';

beforeAll(async () => {
  if (availability.kind === 'install') await installDebianPackages(['mpich']);
  ensureBuilt();
}, 600_000);

/** Every rank printed its row and `OK`, with the expected transports; returns the rows. */
function expectJob(out: Awaited<ReturnType<typeof run>>, size: number, transport: (a: number, b: number) => string) {
  expect(out.code, shown(out)).toBe(0);
  const got = rows(out.stdout);
  expect(got.filter(Boolean), shown(out)).toHaveLength(size);
  for (const row of got) {
    expect(row.size).toBe(size);
    expect(row.row).toEqual(Array.from({ length: size }, (_, p) => (p === row.rank ? 'self' : transport(row.rank, p))));
    expect(out.stdout).toMatch(new RegExp(`^OK ${row.rank}$`, 'm'));
  }
  return got;
}

describe.skipIf(availability.kind === 'skip')('ranks started by mpiexec.mpich (Hydra)', () => {
  it('-n 4 node app.mjs: PMI-1 over PMI_FD, one host: 127.0.0.1, shm between the ranks, collectives, exit 0', async () => {
    const out = await run([MPIEXEC, '-n', '4', process.execPath, PMI_APP]);
    const got = expectJob(out, 4, () => LOCAL);
    for (const row of got) expect(row.address).toBe('127.0.0.1');
    await expectGoneSoon(got.map((r) => r.pid));
  });

  it('PMI-2 (VMCOMM_PMI=2) and PMI_PORT (mpiexec -pmi-port) against the same Hydra', async () => {
    const [pmi2, port] = await Promise.all([
      run([MPIEXEC, '-n', '3', process.execPath, PMI_APP], { VMCOMM_PMI: '2' }),
      run([MPIEXEC, '-pmi-port', '-n', '2', process.execPath, PMI_APP]),
    ]);
    expectJob(pmi2, 3, () => LOCAL);
    expectJob(port, 2, () => LOCAL);
  });

  it('values of 20 000 characters travel whole, in chunks of at most 1023 (PMI-1 and PMI-2)', async () => {
    const kvs = path.join(PMI_FIXTURES, 'kvs.mjs');
    const outs = await Promise.all([run([MPIEXEC, '-n', '3', process.execPath, kvs]), run([MPIEXEC, '-n', '2', process.execPath, kvs], { VMCOMM_PMI: '2' })]);
    for (const [out, size] of [[outs[0], 3], [outs[1], 2]] as const) {
      expect(out.code, shown(out)).toBe(0);
      expect(out.stdout.split('\n').filter((l) => l.startsWith('KVS ')).sort()).toEqual(Array.from({ length: size }, (_, r) => `KVS ${r} ${size}`));
    }
  });

  it('a TypeScript app through ts-register (node --import …/ts-register.js app.ts)', async () => {
    const register = path.join(ROOT, 'dist', 'lib', 'launch', 'ts-register.js');
    const out = await run([MPIEXEC, '-n', '2', process.execPath, '--import', register, path.join(PMI_FIXTURES, 'typed-app.ts')]);
    expect(out.code, shown(out)).toBe(0);
    expect(out.stdout.split('\n').filter((l) => l.startsWith('TYPED ')).sort()).toEqual(['TYPED 0 3', 'TYPED 1 3']);
  });

  it('comm.abort(7) on one rank ends the job at once with exit code 7', async () => {
    const out = await run([MPIEXEC, '-n', '3', process.execPath, PMI_APP, 'abort', '1', '7']);
    expect(out.code, shown(out)).toBe(7);
    expect(out.stdout).not.toMatch(/UNEXPECTED/);
    expect(out.ms).toBeLessThan(20_000);
    const got = rows(out.stdout);
    await expectGoneSoon(got.filter(Boolean).map((r) => r.pid));
    expect(await sweepJobFiles(got)).toEqual([]);
  });

  it('nothing hangs when a rank dies: after init (Hydra kills the job) or before it (the PMI fence times out)', async () => {
    const [after, before] = await Promise.all([
      run([MPIEXEC, '-n', '3', process.execPath, PMI_APP, 'exit', '2']),
      run([MPIEXEC, '-n', '3', process.execPath, PMI_APP, 'noinit', '2'], { VMCOMM_PMI_TIMEOUT: '3' }),
    ]);
    // Ended, not hung (run() fails a job that outlives its deadline). mpiexec's own status then depends
    // on which exit Hydra sees first — the rank that left (0), a waiting rank that learned it first
    // (PEER_LOST → REVOKED, 1) or one Hydra killed (9): all three were measured, so it is not checked.
    expect(after.ms, shown(after)).toBeLessThan(30_000);
    expect(after.stdout).not.toMatch(/UNEXPECTED/);
    await expectGoneSoon(rows(after.stdout).filter(Boolean).map((r) => r.pid));
    expect(await sweepJobFiles(rows(after.stdout))).toEqual([]);
    expect(before.code, shown(before)).not.toBe(0);
    // The waiting ranks' init() failed with TIMEOUT after 3 s and the first to exit made Hydra end the
    // job. (Hydra may drop the output of ranks it kills, so the INIT-FAILED line is not always there.)
    expect(before.ms).toBeGreaterThanOrEqual(3_000);
    for (const line of before.stdout.split('\n').filter((l) => l.startsWith('INIT-FAILED'))) expect(line).toMatch(/^INIT-FAILED TIMEOUT: .*did not answer barrier_in/);
    expect(Math.max(after.ms, before.ms)).toBeLessThan(30_000);
  });
});

describe.skipIf(availability.kind === 'skip' || !topologyCheck.ok)('mpiexec across 2 simulated hosts (-launcher ssh -launcher-exec into namespaces)', () => {
  let topology: Topology | undefined;
  afterEach(async () => {
    await topology?.destroy();
    topology = undefined;
  });

  it('2 hosts × 2 ranks: each publishes its host address; shm within a host, tcp between hosts', async () => {
    topology = await createTopology({ hosts: 2, vmsPerHost: 1, shmSize: '256m' });
    const launcher = path.join(PMI_FIXTURES, 'ns-launcher.sh');
    chmodSync(launcher, 0o755);
    const [h0, h1] = topology.hosts;
    // mpiexec runs in host 0's network namespace, where the proxies can reach its control port;
    // every proxy (host 0's too: no autofork) goes through the wrapper into its host's VM.
    const mpiexec = topology.exec(
      h0!,
      [MPIEXEC, '-launcher', 'ssh', '-launcher-exec', launcher, '-localhost', h0!.address, '-hosts', `${h0!.address}:2,${h1!.address}:2`, '-n', '4', process.execPath, PMI_APP],
      { cwd: ROOT, env: { HYDRA_LAUNCHER_AUTOFORK: '0', VMCOMM_TEST_HOSTS: `${h0!.address}=${h0!.vms[0]!.pid},${h1!.address}=${h1!.vms[0]!.pid}` } },
    );
    const out = await Promise.race([
      mpiexec.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`mpiexec did not finish:\n${mpiexec.stdout}\n${mpiexec.stderr}`)), 90_000)),
    ]);
    const hostOf = (rank: number): number => (rank < 2 ? 0 : 1);
    const got = expectJob({ ...out, ms: 0 }, 4, (a, b) => (hostOf(a) === hostOf(b) ? LOCAL : 'tcp'));
    for (const row of got) {
      expect(row.address).toBe(topology.hosts[hostOf(row.rank)]!.address);
      expect(row.host).toBe(topology.hosts[hostOf(row.rank)]!.vms[0]!.hostname);
    }
  }, 150_000);
});
