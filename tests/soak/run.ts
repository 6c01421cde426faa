// `npm run soak -- --minutes 10 -n 8 [--seed S]` (issue 9): random traffic and collectives over every
// backend, every message checked (tests/soak/rank.ts); prints messages, bytes, lost, duplicated,
// reordered and corrupt per job and in total, and exits non-zero unless all of those are 0.
//
// As root with 8 ranks, one job runs in issue 4's simulated topology (tests/helpers/topology.ts): 2
// hosts × 2 VMs; in each host, VM 0 runs one process with 2 thread-ranks and VM 1 two processes, so
// the job uses self, threads, shm, ivshmem (between the VMs of a host) and tcp (between hosts).
// Elsewhere (or with another -n) it runs local jobs one after another, sharing the time: processes
// with 2 thread-ranks each (threads, shm), then processes over an ivshmem region file, then tcp.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatRegionFile } from '../../backends/ivshmem/admin.js';
import { canSimulateTopology, createTopology, VM_REGION_PATH, type TopologyProcess } from '../helpers/topology.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VMCOMM = path.join(ROOT, 'bin', 'vmcomm.js');
const RANK = 'tests/soak/rank.ts';
const TS_REGISTER = path.join(ROOT, 'dist', 'lib', 'launch', 'ts-register.js');

const argv = process.argv.slice(2);
const option = (names: string[], fallback: string | undefined) => {
  const i = argv.findIndex((a) => names.includes(a));
  return i >= 0 ? argv[i + 1] : fallback;
};
const minutes = Number(option(['--minutes'], undefined) ?? Number(option(['--seconds'], '600')) / 60);
const size = Number(option(['-n'], '8'));
const seed = Number(option(['--seed'], String(Date.now() % 100_000)));
if (!(minutes > 0) || !Number.isInteger(size) || size < 2) {
  console.error('usage: npm run soak -- [--minutes M | --seconds S] [-n N ≥ 2] [--seed S]');
  process.exit(2);
}
const totalSeconds = minutes * 60;

interface RankReport {
  rank: number;
  transports: Record<string, number>;
  messages: number;
  bytes: number;
  lost: number;
  duplicated: number;
  reordered: number;
  corrupt: number;
  collectives: number;
  collectiveErrors: number;
  rounds: number;
  sent: number;
}
interface JobResult {
  name: string;
  ranks: RankReport[];
  code: number | null;
  stderr: string;
}

function reportsOf(stdout: string): RankReport[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('SOAK '))
    .map((l) => JSON.parse(l.slice(5)) as RankReport);
}

function localJob(name: string, seconds: number, args: string[], env: NodeJS.ProcessEnv): Promise<JobResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VMCOMM, 'run', '-n', String(size), ...args, RANK, '--seconds', String(seconds), '--seed', String(seed)], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ name, ranks: reportsOf(stdout), code, stderr }));
  });
}

async function topologyJob(seconds: number): Promise<JobResult> {
  const topology = await createTopology({ hosts: 2, vmsPerHost: 2, regionBytes: 0, shmSize: '512m' });
  try {
    for (const host of topology.hosts) formatRegionFile(host.regionFile, 256 * 1024 * 1024, { force: true });
    const h0 = topology.hosts[0];
    const rendezvous = topology.exec(h0, [process.execPath, VMCOMM, 'rendezvous', '-n', '8', '--bind', `${h0.address}:0`], { cwd: ROOT });
    const env: Record<string, string> = {};
    for (const key of ['VMCOMM_RENDEZVOUS', 'VMCOMM_JOB_SECRET', 'VMCOMM_JOB_ID', 'VMCOMM_SIZE']) env[key] = (await rendezvous.waitFor(new RegExp(`^${key}=(.+)$`, 'm'), 20_000))[1];
    const args = ['--seconds', String(seconds), '--seed', String(seed)];
    const common = { ...env, VMCOMM_IVSHMEM: VM_REGION_PATH, VMCOMM_CMA: '0' };
    const ranks: TopologyProcess[] = [];
    topology.vms.forEach((vm, v) => {
      const pair = [2 * v, 2 * v + 1];
      if (vm.index === 0) {
        ranks.push(topology.spawnNode(vm, path.join(ROOT, 'dist/lib/launch/thread-host.js'), ['--', RANK, ...args], { cwd: ROOT, env: { ...common, VMCOMM_RANKS: pair.join(',') } }));
      } else {
        for (const r of pair) ranks.push(topology.spawnNode(vm, RANK, args, { cwd: ROOT, env: { ...common, VMCOMM_RANK: String(r) }, execArgv: ['--import', TS_REGISTER] }));
      }
    });
    const outcomes = await Promise.all(ranks.map((p) => p.exited));
    await Promise.race([rendezvous.exited, new Promise((r) => setTimeout(r, 10_000))]);
    const failed = outcomes.find((o) => o.code !== 0);
    return {
      name: '8 ranks, 2 hosts × 2 VMs (threads, shm, ivshmem, tcp)',
      ranks: reportsOf(outcomes.map((o) => o.stdout).join('\n')),
      code: failed ? failed.code : 0,
      stderr: outcomes.map((o) => o.stderr).join(''),
    };
  } finally {
    await topology.destroy();
  }
}

const results: JobResult[] = [];
const topologyCheck = canSimulateTopology();
console.log(`soak: ${minutes} min, ${size} ranks, seed ${seed}`);
if (size === 8 && topologyCheck.ok) {
  results.push(await topologyJob(totalSeconds));
} else {
  console.log(`soak: local jobs (${size !== 8 ? 'the topology job takes 8 ranks' : topologyCheck.ok ? '' : topologyCheck.reason})`);
  const region = `/dev/shm/vmcomm-soak-region-${process.pid}`;
  formatRegionFile(region, 256 * 1024 * 1024, { force: true });
  try {
    const third = totalSeconds / 3;
    results.push(await localJob(`${size} ranks, 2 thread-ranks per process (threads, shm)`, third, ['--threads-per-process', '2'], {}));
    results.push(await localJob(`${size} processes over an ivshmem region file`, third, [], { VMCOMM_IVSHMEM: region, VMCOMM_BACKENDS: 'self,ivshmem' }));
    results.push(await localJob(`${size} processes over tcp`, third, [], { VMCOMM_BACKENDS: 'tcp' }));
  } finally {
    rmSync(region, { force: true });
  }
}

const keys = ['messages', 'bytes', 'lost', 'duplicated', 'reordered', 'corrupt', 'collectives', 'collectiveErrors'] as const;
let bad = false;
console.log('| job | pairs by transport | messages | MiB | lost | duplicated | reordered | corrupt | collectives | collective errors |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
const total: Record<string, number> = Object.fromEntries(keys.map((k) => [k, 0]));
for (const job of results) {
  const sum: Record<string, number> = Object.fromEntries(keys.map((k) => [k, 0]));
  const pairs: Record<string, number> = {};
  for (const r of job.ranks) {
    for (const k of keys) sum[k] += k === 'collectives' || k === 'collectiveErrors' ? (r.rank === 0 ? r[k] : k === 'collectiveErrors' ? r[k] : 0) : r[k];
    for (const [t, n] of Object.entries(r.transports)) pairs[t] = (pairs[t] ?? 0) + n;
  }
  for (const k of keys) total[k] += sum[k];
  const complete = job.code === 0 && job.ranks.length === size;
  if (!complete || sum.lost || sum.duplicated || sum.reordered || sum.corrupt || sum.collectiveErrors) bad = true;
  const pairText = Object.entries(pairs)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  console.log(
    `| ${job.name}${complete ? '' : ` (FAILED: exit ${job.code}, ${job.ranks.length}/${size} reports)`} | ${pairText} | ${sum.messages} | ${(sum.bytes / 2 ** 20).toFixed(0)} | ${sum.lost} | ${sum.duplicated} | ${sum.reordered} | ${sum.corrupt} | ${sum.collectives} | ${sum.collectiveErrors} |`,
  );
  if (!complete) console.error(job.stderr.slice(-4000));
}
console.log(
  `soak total: ${total.messages} messages, ${(total.bytes / 2 ** 30).toFixed(2)} GiB, lost ${total.lost}, duplicated ${total.duplicated}, reordered ${total.reordered}, corrupt ${total.corrupt}, ` +
    `${total.collectives} collectives with ${total.collectiveErrors} wrong results — ${bad ? 'FAILED' : 'OK'}`,
);
process.exit(bad ? 1 : 0);
