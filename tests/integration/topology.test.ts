// Issue 5's topology test: 2 hosts × 2 VMs × 2 ranks = 8 ranks in one job, in network/UTS/IPC/mount/
// PID namespaces (tests/helpers/topology.ts). Each host's VMs share one ivshmem region file and
// nothing else; hosts share only a bridge. The whole 8×8 transport matrix must come out as
// self / shm within a VM / ivshmem between the VMs of a host / tcp between hosts, data must cross
// every pair intact both ways, an allreduce must agree, and the hierarchical allreduce must beat the
// flat one (issue 6). A variant runs 2 thread-ranks per VM process (VMCOMM_RANKS).
// Needs root (namespaces); elsewhere it prints why and skips. Everything is torn down in afterEach.
import { afterEach, describe, expect, it } from 'vitest';
import { formatRegionFile } from '../../backends/ivshmem/admin.js';
import { canSimulateTopology, createTopology, VM_REGION_PATH, type Topology, type TopologyProcess } from '../helpers/topology.js';
import { ROOT, VMCOMM } from '../helpers/processes.js';

const check = canSimulateTopology();
if (!check.ok) console.log(`topology test skipped: ${check.reason}`);

const REGION_BYTES = 64 * 1024 * 1024;
const JOB = 'tests/fixtures/topology/job.mjs';
let topology: Topology | undefined;

afterEach(async () => {
  await topology?.destroy();
  topology = undefined;
});

interface Placement {
  host: number;
  vm: number;
  process: number;
}

/** What the pair (a, b) must use, from where the ranks run. */
function expected(a: Placement, b: Placement, aRank: number, bRank: number): string {
  if (aRank === bRank) return 'self';
  if (a.host !== b.host) return 'tcp';
  if (a.vm !== b.vm) return 'ivshmem';
  return a.process === b.process ? 'threads' : 'shm';
}

async function runJob(threadRanks: boolean): Promise<void> {
  topology = await createTopology({ hosts: 2, vmsPerHost: 2, regionBytes: 0, shmSize: '256m' });
  for (const host of topology.hosts) formatRegionFile(host.regionFile, REGION_BYTES, { force: true });
  const size = 8;
  const h0 = topology.hosts[0];
  const rendezvous = topology.exec(h0, [process.execPath, VMCOMM, 'rendezvous', '-n', String(size), '--bind', `${h0.address}:0`], { cwd: ROOT });
  const env: Record<string, string> = {};
  for (const key of ['VMCOMM_RENDEZVOUS', 'VMCOMM_JOB_SECRET', 'VMCOMM_JOB_ID', 'VMCOMM_SIZE']) {
    env[key] = (await rendezvous.waitFor(new RegExp(`^${key}=(.+)$`, 'm'), 20_000))[1];
  }
  // Ranks 0,1 in h0/vm0, 2,3 in h0/vm1, 4,5 in h1/vm0, 6,7 in h1/vm1.
  const placement: Placement[] = [];
  const ranks: TopologyProcess[] = [];
  topology.vms.forEach((vm, v) => {
    const pair = [2 * v, 2 * v + 1];
    pair.forEach((r, i) => (placement[r] = { host: vm.host, vm: vm.index, process: threadRanks ? 0 : i }));
    const common = { ...env, VMCOMM_IVSHMEM: VM_REGION_PATH, VMCOMM_CMA: '0' };
    if (threadRanks) {
      ranks.push(topology!.spawnNode(vm, `${ROOT}/dist/lib/launch/thread-host.js`, ['--', JOB, '--quick'], { cwd: ROOT, env: { ...common, VMCOMM_RANKS: pair.join(',') } }));
    } else {
      for (const r of pair) ranks.push(topology!.spawnNode(vm, JOB, ['--quick'], { cwd: ROOT, env: { ...common, VMCOMM_RANK: String(r) } }));
    }
  });
  const outcomes = await Promise.all(ranks.map((p) => p.exited));
  // The rendezvous ends by itself once every rank finalized; if ranks failed (or never joined), end it.
  const ended = await Promise.race([rendezvous.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  if (!ended) rendezvous.kill('SIGKILL');
  const stdout = outcomes.map((o) => o.stdout).join('\n');
  const failed = outcomes.filter((o) => o.code !== 0);
  if (failed.length) throw new Error(`ranks failed:\n${failed.map((o) => o.stderr.slice(-2000)).join('\n---\n')}`);
  for (let r = 0; r < size; r++) expect(stdout).toMatch(new RegExp(`^OK ${r}$`, 'm'));

  const matrixLine = stdout.split('\n').find((l) => l.startsWith('MATRIX '))!;
  const rows = (JSON.parse(matrixLine.slice(7)) as { rank: number; hostname: string; row: string[] }[]).map((x) => x.row);
  const want = Array.from({ length: size }, (_, a) => Array.from({ length: size }, (_, b) => expected(placement[a], placement[b], a, b)));
  expect(rows).toEqual(want);

  const bench = JSON.parse(stdout.split('\n').find((l) => l.startsWith('BENCH '))!.slice(6)) as { hierarchical: number; flat: number };
  console.log(`topology (${threadRanks ? 'thread-ranks' : 'processes'}): allreduce of one number, hierarchical ${bench.hierarchical.toFixed(1)} µs vs flat ${bench.flat.toFixed(1)} µs per call (${(bench.flat / bench.hierarchical).toFixed(2)}×)`);
}

describe.skipIf(!check.ok)('2 hosts × 2 VMs × 2 ranks in one job', () => {
  it('rank processes: the transport matrix, every pair both ways, an allreduce', () => runJob(false), 180_000);
  it('thread-ranks (2 per VM process, VMCOMM_RANKS): the same', () => runJob(true), 180_000);
});
