// Issue 10's migration test: two "VMs" of one host — ranks in namespaces with their own /dev/shm
// (tests/helpers/topology.ts) sharing only an ivshmem region file — stream 100,000 sequenced,
// checksummed messages of mixed sizes in both directions (tests/fixtures/migration/stream.mjs) while
// the host revokes and restores the region 10 times with `vmcomm ivshmem revoke|restore`. Nothing may
// be lost, duplicated, reordered or corrupted; every cycle moves the pair to tcp and back; the pair
// ends on ivshmem. Without root (no namespaces) the same job runs as two plain processes with shm
// excluded (VMCOMM_BACKENDS=ivshmem,tcp), which exercises the same switches.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { formatRegionFile } from '../../backends/ivshmem/admin.js';
import { ROOT, VMCOMM, vmcomm } from '../helpers/processes.js';
import { canSimulateTopology, createTopology, VM_REGION_PATH, type Topology } from '../helpers/topology.js';

const check = canSimulateTopology();
const MODE = check.ok ? 'namespaces' : 'processes';
if (!check.ok) console.log(`migration test: no namespaces here (${check.reason}); running the ranks as two processes with shm excluded instead`);

const REGION_BYTES = 64 * 1024 * 1024;
const PER_DIRECTION = 50_000;
const CYCLES = 10;
const JOB = 'tests/fixtures/migration/stream.mjs';
const STEP_TIMEOUT_MS = 60_000;

let topology: Topology | undefined;
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  await topology?.destroy();
  topology = undefined;
});

interface RankResult {
  rank: number;
  initial: string;
  final: string;
  received: number;
  expected: number;
  duplicates: number;
  reordered: number;
  corrupt: number;
  bytes: number;
  onTcp: number;
  switches: string[];
  statsSwitches: number;
  seconds: number;
  medianGapMs: number;
  pausesMs: number[];
  pingRounds?: number;
  medianRoundTripUs?: { ivshmem: number; tcp: number };
  pause?: { switch: string; longestRoundTripUs: number }[];
}

/** The job's output so far, and how it ended. */
interface Job {
  output(): string;
  exited: Promise<{ code: number | null; stderr: string }>;
  kill(): void;
}

async function waitFor(job: Job, pattern: RegExp, what: string): Promise<void> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let ended = false;
  void job.exited.then(() => (ended = true));
  while (!pattern.test(job.output())) {
    if (ended) throw new Error(`the job ended while waiting for ${what}:\n${job.output().slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms:\n${job.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The two ranks in two namespaced "VMs" of one host, joined through `vmcomm rendezvous`. */
async function startInVms(): Promise<{ job: Job; regionFile: string }> {
  topology = await createTopology({ hosts: 1, vmsPerHost: 2, regionBytes: 0, shmSize: '128m' });
  const host = topology.hosts[0];
  formatRegionFile(host.regionFile, REGION_BYTES, { force: true });
  const rendezvous = topology.exec(host, [process.execPath, VMCOMM, 'rendezvous', '-n', '2', '--bind', `${host.address}:0`], { cwd: ROOT });
  const env: Record<string, string> = { VMCOMM_IVSHMEM: VM_REGION_PATH };
  for (const key of ['VMCOMM_RENDEZVOUS', 'VMCOMM_JOB_SECRET', 'VMCOMM_JOB_ID', 'VMCOMM_SIZE']) {
    env[key] = (await rendezvous.waitFor(new RegExp(`^${key}=(.+)$`, 'm'), 20_000))[1];
  }
  const ranks = topology.vms.map((vm, r) => topology!.spawnNode(vm, JOB, [String(PER_DIRECTION), String(CYCLES + 1)], { cwd: ROOT, env: { ...env, VMCOMM_RANK: String(r) } }));
  const exited = Promise.all(ranks.map((p) => p.exited)).then(async (outcomes) => {
    const ended = await Promise.race([rendezvous.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!ended) rendezvous.kill('SIGKILL');
    const bad = outcomes.find((o) => o.code !== 0);
    return { code: bad?.code ?? 0, stderr: outcomes.map((o) => o.stderr).join('\n---\n') };
  });
  return { job: { output: () => ranks.map((p) => p.stdout).join('\n'), exited, kill: () => ranks.forEach((p) => p.kill('SIGKILL')) }, regionFile: host.regionFile };
}

/** The two ranks as plain processes of this OS, shm excluded so that the pair chooses ivshmem. */
async function startAsProcesses(): Promise<{ job: Job; regionFile: string }> {
  const regionFile = `/dev/shm/vmcomm-migration-test-${process.pid}`;
  cleanups.push(() => rmSync(regionFile, { force: true }));
  formatRegionFile(regionFile, REGION_BYTES, { force: true });
  const child: ChildProcess = spawn(process.execPath, [VMCOMM, 'run', '-n', '2', JOB, String(PER_DIRECTION), String(CYCLES + 1)], {
    cwd: ROOT,
    env: { ...process.env, VMCOMM_BACKENDS: 'ivshmem,tcp', VMCOMM_IVSHMEM: regionFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  cleanups.push(() => child.kill('SIGKILL'));
  return { job: { output: () => stdout, exited, kill: () => child.kill('SIGKILL') }, regionFile };
}

describe(`migration between ivshmem and tcp (${MODE})`, () => {
  it(
    `${2 * PER_DIRECTION} messages both ways while the region is revoked and restored ${CYCLES} times: nothing lost, duplicated or reordered`,
    async () => {
      const { job, regionFile } = MODE === 'namespaces' ? await startInVms() : await startAsProcesses();
      try {
        for (let k = 0; k < CYCLES; k++) {
          // Mid-segment: both ranks are streaming.
          for (const r of [0, 1]) await waitFor(job, new RegExp(`^AT ${r} ${k} `, 'm'), `rank ${r} in segment ${k}`);
          const revoked = await vmcomm(['ivshmem', 'revoke', regionFile]);
          expect(revoked.code, revoked.stderr).toBe(0);
          for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} ivshmem tcp ${2 * k + 1}$`, 'm'), `rank ${r} moving to tcp (cycle ${k})`);
          // Let the stream run over tcp for a moment, then give the region back.
          await new Promise((r) => setTimeout(r, 200));
          const restored = await vmcomm(['ivshmem', 'restore', regionFile]);
          expect(restored.code, restored.stderr).toBe(0);
          for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} tcp ivshmem ${2 * k + 2}$`, 'm'), `rank ${r} moving back to ivshmem (cycle ${k})`);
        }
        // One more cycle during a ping-pong, which times the pause a switch causes.
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^PING ${r} start$`, 'm'), `rank ${r} starting the ping-pong`);
        await new Promise((r) => setTimeout(r, 300));
        expect((await vmcomm(['ivshmem', 'revoke', regionFile])).code).toBe(0);
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} ivshmem tcp ${2 * CYCLES + 1}$`, 'm'), `rank ${r} moving to tcp (ping-pong)`);
        await new Promise((r) => setTimeout(r, 300));
        expect((await vmcomm(['ivshmem', 'restore', regionFile])).code).toBe(0);
        const end = await Promise.race([job.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5 * STEP_TIMEOUT_MS))]);
        if (end === undefined) throw new Error(`the job did not end:\n${job.output().slice(-3000)}`);
        expect(end.code, end.stderr.slice(-4000)).toBe(0);
      } finally {
        job.kill();
      }
      const results = job
        .output()
        .split('\n')
        .filter((l) => l.startsWith('RESULT '))
        .map((l) => JSON.parse(l.slice(7)) as RankResult)
        .sort((a, b) => a.rank - b.rank);
      expect(results.map((r) => r.rank)).toEqual([0, 1]);
      const cycle = ['ivshmem->tcp', 'tcp->ivshmem'];
      for (const r of results) {
        expect(r.initial).toBe('ivshmem');
        expect(r.received).toBe(PER_DIRECTION);
        expect(r.duplicates).toBe(0);
        expect(r.reordered).toBe(0);
        expect(r.corrupt).toBe(0);
        expect(r.switches).toEqual(Array.from({ length: CYCLES + 1 }, () => cycle).flat());
        expect(r.statsSwitches).toBe(2 * (CYCLES + 1));
        // Messages really crossed while the pair was on tcp, and it ends on ivshmem.
        expect(r.onTcp).toBeGreaterThan(0);
        expect(r.final).toBe('ivshmem');
      }
      const ping = results[0];
      expect(ping.pause?.map((p) => p.switch)).toEqual(cycle);
      console.log(
        `migration (${MODE}): ${2 * PER_DIRECTION} messages, ${(results[0].bytes / 2 ** 20).toFixed(0)} MiB each way in ${results[0].seconds.toFixed(1)} s, ` +
          `${CYCLES} revoke/restore cycles mid-stream; ${results.map((r) => r.onTcp).join(' and ')} messages received over tcp. ` +
          `Ping-pong (8 B, ${ping.pingRounds} rounds): median round trip ${ping.medianRoundTripUs!.ivshmem.toFixed(1)} µs on ivshmem, ${ping.medianRoundTripUs!.tcp.toFixed(1)} µs on tcp; ` +
          `longest round trip across a switch: ${ping.pause!.map((p) => `${p.switch} ${(p.longestRoundTripUs / 1000).toFixed(2)} ms`).join(', ')}`,
      );
    },
    15 * 60_000,
  );
});
