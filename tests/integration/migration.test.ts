// Issue 10's migration test: two "VMs" of one host — ranks in namespaces with their own /dev/shm
// (tests/helpers/topology.ts) sharing only an ivshmem region file — stream 100,000 sequenced,
// checksummed messages of mixed sizes in both directions (tests/fixtures/migration/stream.mjs) while
// the host revokes and restores the region 10 times with `vmcomm ivshmem revoke|restore`. Nothing may
// be lost, duplicated, reordered or corrupted; every cycle moves the pair to tcp and back; the pair
// ends on ivshmem. Without root (no namespaces) the same job runs as two plain processes with shm
// excluded (VMCOMM_BACKENDS=ivshmem,tcp), which exercises the same switches.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { formatRegionFile, openRegionFile } from '../../backends/ivshmem/admin.js';
import { IvshmemRegion } from '../../backends/ivshmem/region.js';
import { ROOT, VMCOMM, vmcomm } from '../helpers/processes.js';
import { canSimulateTopology, createTopology, VM_REGION_PATH, type Topology } from '../helpers/topology.js';

const check = canSimulateTopology();
const MODE = check.ok ? 'namespaces' : 'processes';
if (!check.ok) console.log(`migration test: no namespaces here (${check.reason}); running the ranks as two processes with shm excluded instead`);

const REGION_BYTES = 64 * 1024 * 1024;
const PER_DIRECTION = 50_000;
const CYCLES = 10;
const JOB = 'tests/fixtures/migration/stream.mjs';
const EXCHANGE = 'tests/fixtures/migration/exchange.mjs';

/** What `exchange.mjs` reports. */
interface ExchangeResult {
  rank: number;
  initial: string;
  final: string;
  exchanged: number;
  afterLastSwitch: number;
  bad: number;
  switches: string[];
}
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
  mac: boolean;
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

/** A rank process, wherever it runs. */
interface RankProcess {
  readonly stdout: string;
  /** Its pid on the real host (to freeze it), while it runs. */
  pid(): number | undefined;
  readonly exited: Promise<{ code: number | null; stderr: string }>;
  kill(): void;
}

/** Where the job's two ranks run: two namespaced "VMs" of one host, or two plain processes. */
interface Placement {
  /** The region file on the real host (what `vmcomm ivshmem revoke|restore` is given). */
  readonly regionFile: string;
  /** The same region as the ranks see it (what they are given, and what an attach names). */
  readonly rankRegionPath: string;
  /** Starts `argv` (`vmcomm rendezvous …`) where the rendezvous runs; its stdout so far and its end. */
  rendezvous(argv: string[]): RankProcess & { waitFor(pattern: RegExp): Promise<RegExpMatchArray> };
  /** Where ranks reach the rendezvous (`--bind` address). */
  readonly bind: string;
  /** Runs `vmcomm …` where an operator reaches the rendezvous (the host). */
  vmcomm(argv: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Starts rank `rank` running `script` with `env`. */
  rank(rank: number, script: string, args: string[], env: Record<string, string>): RankProcess;
}

async function inVms(): Promise<Placement> {
  topology = await createTopology({ hosts: 1, vmsPerHost: 2, regionBytes: 0, shmSize: '128m' });
  const t = topology;
  const host = t.hosts[0];
  formatRegionFile(host.regionFile, REGION_BYTES, { force: true });
  const wrap = (p: ReturnType<Topology['exec']>) => ({
    get stdout() {
      return p.stdout;
    },
    exited: p.exited.then((o) => ({ code: o.code, stderr: o.stderr })),
    pid: () => p.hostPid(),
    kill: () => p.kill('SIGKILL'),
    waitFor: (pattern: RegExp) => p.waitFor(pattern, 20_000),
  });
  return {
    regionFile: host.regionFile,
    rankRegionPath: VM_REGION_PATH,
    bind: `${host.address}:0`,
    rendezvous: (argv) => wrap(t.exec(host, [process.execPath, VMCOMM, ...argv], { cwd: ROOT })),
    rank: (r, script, args, env) => wrap(t.spawnNode(t.vms[r], script, args, { cwd: ROOT, env })),
    vmcomm: (argv, env) => t.run(host, [process.execPath, VMCOMM, ...argv], { cwd: ROOT, env, timeoutMs: 30_000 }),
  };
}

function localProcess(argv: string[], env: NodeJS.ProcessEnv): RankProcess & { waitFor(pattern: RegExp): Promise<RegExpMatchArray> } {
  const child: ChildProcess = spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  cleanups.push(() => child.kill('SIGKILL'));
  return {
    get stdout() {
      return stdout;
    },
    exited,
    pid: () => child.pid,
    kill: () => child.kill('SIGKILL'),
    waitFor: async (pattern) => {
      const job: Job = { output: () => stdout, exited, kill: () => undefined };
      await waitFor(job, pattern, String(pattern));
      return stdout.match(pattern)!;
    },
  };
}

async function asProcesses(): Promise<Placement> {
  const regionFile = `/dev/shm/vmcomm-migration-test-${process.pid}`;
  cleanups.push(() => rmSync(regionFile, { force: true }));
  formatRegionFile(regionFile, REGION_BYTES, { force: true });
  return {
    regionFile,
    rankRegionPath: regionFile,
    bind: '127.0.0.1:0',
    rendezvous: (argv) => localProcess([VMCOMM, ...argv], process.env),
    // shm excluded: the pair chooses ivshmem, as two VMs would.
    rank: (r, script, args, env) => localProcess([script, ...args], { ...process.env, ...env, VMCOMM_BACKENDS: 'ivshmem,tcp' }),
    vmcomm: (argv, env) => vmcomm(argv, { ...process.env, ...env }),
  };
}

/** A 2-rank job served by `vmcomm rendezvous`; `withRegion` false: the ranks start without any region. */
async function startJob(script: string, args: string[], withRegion: boolean, extraEnv: Record<string, string> = {}): Promise<{ job: Job; placement: Placement; access: Record<string, string>; ranks: RankProcess[] }> {
  const placement = MODE === 'namespaces' ? await inVms() : await asProcesses();
  const rendezvous = placement.rendezvous(['rendezvous', '-n', '2', '--bind', placement.bind]);
  const access: Record<string, string> = {};
  for (const key of ['VMCOMM_RENDEZVOUS', 'VMCOMM_JOB_SECRET', 'VMCOMM_JOB_ID', 'VMCOMM_SIZE']) access[key] = (await rendezvous.waitFor(new RegExp(`^${key}=(.+)$`, 'm')))[1];
  const env = { ...access, ...extraEnv, ...(withRegion ? { VMCOMM_IVSHMEM: placement.rankRegionPath } : {}) };
  const ranks = [0, 1].map((r) => placement.rank(r, script, args, { ...env, VMCOMM_RANK: String(r) }));
  const exited = Promise.all(ranks.map((p) => p.exited)).then(async (outcomes) => {
    const ended = await Promise.race([rendezvous.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!ended) rendezvous.kill();
    const bad = outcomes.find((o) => o.code !== 0);
    return { code: bad?.code ?? 0, stderr: outcomes.map((o) => o.stderr).join('\n---\n') };
  });
  const job: Job = {
    output: () => ranks.map((p) => p.stdout).join('\n'),
    exited,
    kill: () => {
      ranks.forEach((p) => p.kill());
      rendezvous.kill();
    },
  };
  return { job, placement, access, ranks };
}

/** The `RESULT <json>` lines of both ranks, by rank. */
function resultsOf<T extends { rank: number }>(job: Job): T[] {
  return job
    .output()
    .split('\n')
    .filter((l) => l.startsWith('RESULT '))
    .map((l) => JSON.parse(l.slice(7)) as T)
    .sort((a, b) => a.rank - b.rank);
}

async function ended(job: Job): Promise<void> {
  const end = await Promise.race([job.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5 * STEP_TIMEOUT_MS))]);
  if (end === undefined) throw new Error(`the job did not end:\n${job.output().slice(-3000)}`);
  expect(end.code, end.stderr.slice(-4000)).toBe(0);
}

/** One revoke/restore cycle, as a rank's `'transport'` events report it. */
const CYCLE = ['ivshmem->tcp', 'tcp->ivshmem'];

/** Both ranks of an exchange.mjs job started on ivshmem, went to tcp and back once, and got every message intact. */
function expectDownAndBack(job: Job): ExchangeResult[] {
  const results = resultsOf<ExchangeResult>(job);
  expect(results.map((r) => [r.initial, r.final, r.bad, r.switches])).toEqual([0, 1].map(() => ['ivshmem', 'ivshmem', 0, CYCLE]));
  return results;
}

/**
 * Streams `perDirection` messages each way (stream.mjs) while the region is revoked and restored
 * `cycles` times mid-stream, then once more during a ping-pong; checks that nothing was lost,
 * duplicated, reordered or corrupted, and that the pair ends on ivshmem. Returns rank 0's report.
 */
async function streamThroughCycles(perDirection: number, cycles: number, env: Record<string, string> = {}): Promise<RankResult[]> {
  const { job, placement } = await startJob(JOB, [String(perDirection), String(cycles + 1)], true, env);
  const { regionFile } = placement;
  try {
    for (let k = 0; k < cycles; k++) {
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
    for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} ivshmem tcp ${2 * cycles + 1}$`, 'm'), `rank ${r} moving to tcp (ping-pong)`);
    await new Promise((r) => setTimeout(r, 300));
    expect((await vmcomm(['ivshmem', 'restore', regionFile])).code).toBe(0);
    await ended(job);
  } finally {
    job.kill();
  }
  const results = resultsOf<RankResult>(job);
  expect(results.map((r) => r.rank)).toEqual([0, 1]);
  for (const r of results) {
    expect(r.initial).toBe('ivshmem');
    expect(r.received).toBe(perDirection);
    expect(r.duplicates).toBe(0);
    expect(r.reordered).toBe(0);
    expect(r.corrupt).toBe(0);
    expect(r.switches).toEqual(Array.from({ length: cycles + 1 }, () => CYCLE).flat());
    expect(r.statsSwitches).toBe(2 * (cycles + 1));
    // Messages really crossed while the pair was on tcp, and it ends on ivshmem.
    expect(r.onTcp).toBeGreaterThan(0);
    expect(r.final).toBe('ivshmem');
  }
  expect(results[0].pause?.map((p) => p.switch)).toEqual(CYCLE);
  return results;
}

describe(`migration between ivshmem and tcp (${MODE})`, () => {
  it(
    `${2 * PER_DIRECTION} messages both ways while the region is revoked and restored ${CYCLES} times: nothing lost, duplicated or reordered`,
    async () => {
      const results = await streamThroughCycles(PER_DIRECTION, CYCLES);
      const ping = results[0];
      console.log(
        `migration (${MODE}): ${2 * PER_DIRECTION} messages, ${(results[0].bytes / 2 ** 20).toFixed(0)} MiB each way in ${results[0].seconds.toFixed(1)} s, ` +
          `${CYCLES} revoke/restore cycles mid-stream; ${results.map((r) => r.onTcp).join(' and ')} messages received over tcp. ` +
          `Ping-pong (8 B, ${ping.pingRounds} rounds): median round trip ${ping.medianRoundTripUs!.ivshmem.toFixed(1)} µs on ivshmem, ${ping.medianRoundTripUs!.tcp.toFixed(1)} µs on tcp; ` +
          `longest round trip across a switch: ${ping.pause!.map((p) => `${p.switch} ${(p.longestRoundTripUs / 1000).toFixed(2)} ms`).join(', ')}`,
      );
    },
    15 * 60_000,
  );

  it(
    'with the per-frame MAC (VMCOMM_IVSHMEM_MAC=1): authenticated pairs move and come back just the same',
    async () => {
      const results = await streamThroughCycles(5_000, 3, { VMCOMM_IVSHMEM_MAC: '1' });
      expect(results.map((r) => r.mac)).toEqual([true, true]);
    },
    10 * 60_000,
  );

  it(
    'a region attached to a running job (`vmcomm ivshmem attach`): a pair that started on tcp moves to ivshmem without loss',
    async () => {
      const { job, placement, access } = await startJob(EXCHANGE, ['1'], false);
      try {
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^READY ${r} tcp$`, 'm'), `rank ${r} on tcp`);
        // An operator without the job's secret is refused, and nothing changes.
        const refused = await placement.vmcomm(['ivshmem', 'attach', placement.rankRegionPath], { ...access, VMCOMM_JOB_SECRET: 'ab'.repeat(16) });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/AUTH/);
        // The path as the ranks see it; the operator holds the job's secret.
        const offered = await placement.vmcomm(['ivshmem', 'attach', placement.rankRegionPath], access);
        expect(offered.code, offered.stderr).toBe(0);
        expect(offered.stdout).toMatch(/2 rank\(s\) told/);
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} tcp ivshmem$`, 'm'), `rank ${r} moving to ivshmem`);
        await ended(job);
      } finally {
        job.kill();
      }
      const results = resultsOf<ExchangeResult>(job);
      expect(results.map((r) => [r.initial, r.final, r.bad, r.switches])).toEqual([
        ['tcp', 'ivshmem', 0, ['tcp->ivshmem']],
        ['tcp', 'ivshmem', 0, ['tcp->ivshmem']],
      ]);
      for (const r of results) expect(r.afterLastSwitch).toBeGreaterThanOrEqual(1_000);
    },
    5 * 60_000,
  );

  it(
    "a peer frozen past its heartbeat timeout (SIGSTOP, as a paused VM): the pair moves to tcp instead of losing it, and back once it answers",
    async () => {
      const { job, ranks } = await startJob(EXCHANGE, ['2', '--short-heartbeat'], true);
      try {
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^READY ${r} ivshmem$`, 'm'), `rank ${r} on ivshmem`);
        await new Promise((r) => setTimeout(r, 300));
        const pid = ranks[1].pid();
        expect(pid).toBeDefined();
        process.kill(pid!, 'SIGSTOP');
        try {
          // Rank 0 judges rank 1's heartbeat stopped (1.5 s) and moves the pair to tcp, whose dial
          // waits for rank 1 to run again.
          await waitFor(job, /^SWITCH 0 ivshmem tcp$/m, 'rank 0 moving to tcp while rank 1 is frozen');
        } finally {
          process.kill(pid!, 'SIGCONT');
          // In a "VM", nsenter is the rank's parent and stops itself when its child stops (job control):
          // it must go on too, or it would never reap the rank.
          const parent = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
          if (parent !== process.pid) process.kill(parent, 'SIGCONT');
        }
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} tcp ivshmem$`, 'm'), `rank ${r} back on ivshmem`);
        await ended(job);
      } finally {
        job.kill();
      }
      const results = expectDownAndBack(job);
      expect(results[0].exchanged).toBe(results[1].exchanged);
    },
    5 * 60_000,
  );

  it(
    "a live rank's membership slot reclaimed by another member: its pairs move to tcp instead of being lost, and back once it rejoined",
    async () => {
      const { job, placement } = await startJob(EXCHANGE, ['2'], true);
      try {
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^READY ${r} ivshmem$`, 'm'), `rank ${r} on ivshmem`);
        await new Promise((r) => setTimeout(r, 300));
        // What an over-eager observer (another job's watch) would do: free rank 1's slot while it lives.
        const region = IvshmemRegion.open(openRegionFile(placement.regionFile).region);
        const slot = Array.from({ length: region.layout.slots }, (_, i) => region.members.read(i)).find((m) => m.state === 'active' && m.member?.rank === 1);
        expect(slot).toBeDefined();
        expect(region.members.reclaim(slot!.slot, slot!.control | 0)).toBeDefined();
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} ivshmem tcp$`, 'm'), `rank ${r} moving to tcp`);
        for (const r of [0, 1]) await waitFor(job, new RegExp(`^SWITCH ${r} tcp ivshmem$`, 'm'), `rank ${r} back on ivshmem (rank 1 rejoined)`);
        await ended(job);
      } finally {
        job.kill();
      }
      expectDownAndBack(job);
    },
    5 * 60_000,
  );
});
