// A single-node Slurm for tests/integration/slurm.test.ts, from Debian's packages (slurmctld,
// slurmd, slurm-client): both daemons run in the foreground as children of the test, on free ports,
// with every file in a temporary directory — nothing under /etc, no systemd, no munge
// (auth/none and cred/none; root only, which slurmd needs anyway). Tasks are tracked by process group
// and not bound (no cgroups), so it also runs in containers. Measured start: ~3 s.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './pmi-launchers.js';

export const SLURM_PACKAGES = ['slurmctld', 'slurmd', 'slurm-client'];
export const SLURM_COMMANDS = ['slurmctld', 'slurmd', 'srun', 'sinfo'];

export interface SlurmCluster {
  /** Give to srun/sinfo: `SLURM_CONF`. */
  readonly env: { SLURM_CONF: string };
  readonly dir: string;
  /** The daemons' logs so far (for failure messages). */
  logs(): string;
  /** Stops both daemons (SIGTERM, then SIGKILL) and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

/** Whether this machine can run one (root, Linux). */
export function slurmPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'slurmd must run as root';
  return undefined;
}

/** Starts slurmctld and slurmd and waits until the node is idle (≤ 30 s). */
export async function startSlurm(): Promise<SlurmCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-slurm-'));
  const node = hostname().split('.')[0]!;
  const [ctldPort, dPort] = [await freePort(), await freePort()];
  for (const sub of ['state', 'spool']) mkdirSync(path.join(dir, sub));
  const conf = path.join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=vmcomm-test',
      `SlurmctldHost=${node}(127.0.0.1)`,
      'AuthType=auth/none',
      'CredType=cred/none',
      'SlurmUser=root',
      'SlurmdUser=root',
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd.log`,
      'MailProg=/bin/true',
      'ProctrackType=proctrack/pgid',
      'TaskPlugin=task/none',
      'SwitchType=switch/none',
      'MpiDefault=none',
      'ReturnToService=2',
      'SchedulerType=sched/builtin',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      // More CPUs than a CI machine may have, so -n 4 (twice at once) fits; slurmd accepts the claim.
      'SlurmdParameters=config_overrides',
      `NodeName=${node} NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN`,
      `PartitionName=test Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE`,
      '',
    ].join('\n'),
  );
  const env = { SLURM_CONF: conf };
  const daemons: ChildProcess[] = [];
  let output = '';
  const daemon = (argv: string[]): void => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    daemons.push(child);
  };
  let stopped = false;
  // If the test process ends without stop() (killed, crashed), the daemons must not outlive it.
  const killAll = (): void => {
    for (const child of daemons) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  const cluster: SlurmCluster = {
    env,
    dir,
    logs: () => output.slice(-4000),
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const child of daemons) if (child.exitCode === null) child.kill('SIGTERM');
      for (let waited = 0; waited < 5_000 && daemons.some((c) => c.exitCode === null && c.signalCode === null); waited += 100) await sleep(100);
      killAll();
      process.off('exit', killAll);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    daemon(['slurmctld', '-D', '-i', '-f', conf]);
    await sleep(500);
    daemon(['slurmd', '-D', '-f', conf]);
    for (let waited = 0; ; waited += 500) {
      const info = await run(['sinfo', '-h', '-o', '%T'], env, 10_000).catch(() => undefined);
      if (info?.code === 0 && /^idle/m.test(info.stdout)) break;
      if (waited > 30_000 || daemons.some((c) => c.exitCode !== null)) throw new Error(`the test Slurm did not come up:\n${output}\n${info?.stdout ?? ''}${info?.stderr ?? ''}`);
      await sleep(500);
    }
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
