/**
 * The PMI launch environments: ranks started by MPICH's Hydra (`mpiexec`, PMI-1) or by Slurm
 * (`srun --mpi=pmi2`, PMI-2) join with no change to the program. `environment.ts` lists them in
 * `LAUNCH_ENVIRONMENTS` after vmcomm's own.
 *
 * | variable | set by | meaning |
 * |---|---|---|
 * | `PMI_FD` | Hydra, Slurm | the inherited socket to the local PMI server |
 * | `PMI_PORT`, `PMI_ID` | Hydra with `-pmi-port` | `host:port` of the local PMI server, and this process's id |
 * | `PMI_RANK`, `PMI_SIZE` | Hydra, Slurm | this rank and the job size (with `PMI_FD`) |
 * | `PMI_JOBID` | Slurm | the step (`<job>.<step>`); its presence means Slurm, hence PMI-2 |
 * | `VMCOMM_PMI` | the user | `1` or `2`: the PMI version to speak, whichever launcher (Hydra serves both) |
 * | `VMCOMM_PMI_TIMEOUT` | the user | seconds to wait for any PMI reply, fence included (default 300; `0` waits forever) |
 * | `VMCOMM_ADDRESS` | the user | this host's address for tcp between hosts (see `pmi-address.ts`) |
 *
 * A malformed variable is `INVALID_ARGUMENT` naming it. A task of a Slurm step of several tasks with
 * none of these (`srun` without `--mpi=pmi2`) fails with `UNSUPPORTED` rather than run alone.
 *
 * @module
 */

import type { Bootstrap } from '../../bootstrap.js';
import { VmcommError } from '../../errors.js';
import { parseRendezvousAddress } from '../address.js';
import type { LaunchEnvironment } from '../environment.js';
import type { PmiClient } from './pmi-client.js';
import type { PmiEndpoint } from './pmi-connection.js';
import { PmiBootstrap } from './pmi-bootstrap.js';
import { Pmi1Client } from './pmi1-client.js';
import { Pmi2Client } from './pmi2-client.js';

/** The variable names, in one place. */
export const PMI_ENV = {
  fd: 'PMI_FD',
  port: 'PMI_PORT',
  id: 'PMI_ID',
  rank: 'PMI_RANK',
  size: 'PMI_SIZE',
  jobId: 'PMI_JOBID',
  version: 'VMCOMM_PMI',
  timeout: 'VMCOMM_PMI_TIMEOUT',
} as const;

/** Default of `VMCOMM_PMI_TIMEOUT`, in seconds. */
export const DEFAULT_PMI_TIMEOUT_S = 300;

/** Everything a PMI client needs, read and checked from the environment. */
export interface PmiEnvironment {
  readonly endpoint: PmiEndpoint;
  readonly version: 1 | 2;
  /** `PMI_RANK` (with `PMI_FD`). */
  readonly rank: number | undefined;
  /** `PMI_SIZE` (with `PMI_FD`). */
  readonly size: number | undefined;
  /** `PMI_ID` (with `PMI_PORT`). */
  readonly pmiId: number | undefined;
  /** `PMI_JOBID`, when set. */
  readonly jobId: string | undefined;
  /** Deadline of every PMI reply in ms; `undefined` waits forever. */
  readonly timeoutMs: number | undefined;
}

/** Slurm's `srun --mpi=pmi2`: `PMI_FD` together with `PMI_JOBID` (Hydra never sets that). */
export const slurmPmi2Environment: LaunchEnvironment = {
  name: 'Slurm PMI-2',
  detect: (env) => present(env, PMI_ENV.fd) && present(env, PMI_ENV.jobId),
  connect: (env) => connectPmi(env, 2, 'Slurm'),
};

/** MPICH's Hydra (`mpiexec`), or any PMI-1 process manager: `PMI_FD`, or `PMI_PORT`. */
export const pmi1Environment: LaunchEnvironment = {
  name: 'PMI-1',
  detect: (env) => present(env, PMI_ENV.fd) || present(env, PMI_ENV.port),
  connect: (env) => connectPmi(env, 1, 'mpiexec'),
};

/**
 * A task of a Slurm step of several tasks that was given no PMI (`srun` without `--mpi=pmi2`, or with
 * `--mpi=pmix`): it must not quietly become a world of one, so joining fails with `UNSUPPORTED`
 * saying what to run instead.
 */
export const slurmWithoutPmiEnvironment: LaunchEnvironment = {
  name: 'Slurm without PMI',
  // srun sets SLURM_STEP_NUM_TASKS for a step's tasks; a batch script (one process) has only SLURM_NTASKS.
  detect: (env) => present(env, 'SLURM_STEP_ID') && Number(env.SLURM_STEP_NUM_TASKS) > 1 && !present(env, PMI_ENV.fd) && !present(env, PMI_ENV.port),
  connect: async (env) => {
    const pmix = present(env, 'PMIX_RANK') ? ' with PMIx (--mpi=pmix), which vmcomm does not speak,' : ' without a PMI';
    throw new VmcommError(
      'UNSUPPORTED',
      `srun started this process as task ${env.SLURM_PROCID ?? '?'} of ${env.SLURM_STEP_NUM_TASKS}${pmix}; ` +
        `run the step with \`srun --mpi=pmi2\` (or MpiDefault=pmi2 in slurm.conf) so the tasks can find each other`,
    );
  },
};

/**
 * Joins the PMI job the environment describes: speaks `VMCOMM_PMI`, else `defaultVersion`; `launcher`
 * names the process manager in messages.
 */
export async function connectPmi(env: NodeJS.ProcessEnv, defaultVersion: 1 | 2, launcher: string): Promise<Bootstrap> {
  const read = readPmiEnvironment(env, defaultVersion);
  const client: PmiClient =
    read.version === 1
      ? await Pmi1Client.connect({ endpoint: read.endpoint, rank: read.rank, size: read.size, pmiId: read.pmiId, timeoutMs: read.timeoutMs })
      : await Pmi2Client.connect({ endpoint: read.endpoint, rank: (read.rank ?? read.pmiId)!, size: read.size, jobId: read.jobId, timeoutMs: read.timeoutMs });
  return PmiBootstrap.connect(client, env, `${launcher} (PMI-${read.version}, ${client.connection.where})`);
}

/** Reads and checks the PMI variables; throws `INVALID_ARGUMENT` naming the one that is wrong. */
export function readPmiEnvironment(env: NodeJS.ProcessEnv, defaultVersion: 1 | 2): PmiEnvironment {
  const versionText = env[PMI_ENV.version];
  let version = defaultVersion;
  if (versionText !== undefined && versionText !== '') {
    if (versionText.trim() !== '1' && versionText.trim() !== '2') throw invalid(PMI_ENV.version, '1 or 2 (the PMI version to speak), or unset', versionText);
    version = Number(versionText.trim()) as 1 | 2;
  }
  const timeoutMs = readTimeout(env);
  const jobId = present(env, PMI_ENV.jobId) ? env[PMI_ENV.jobId]!.trim() : undefined;
  if (jobId !== undefined && !/^[\x21-\x3a\x3c-\x7e]{1,256}$/.test(jobId)) throw invalid(PMI_ENV.jobId, 'the PMI job id (printable, no spaces or ;)', jobId);

  if (present(env, PMI_ENV.fd)) {
    const fd = integer(env, PMI_ENV.fd, 0, 0x7fffffff, 'the number of the inherited PMI socket');
    const size = integer(env, PMI_ENV.size, 1, 0x7fffffff, `the number of ranks (it is set with ${PMI_ENV.fd})`);
    const rank = integer(env, PMI_ENV.rank, 0, size - 1, `this rank, 0…${size - 1} (${PMI_ENV.size}=${size})`);
    return { endpoint: { kind: 'fd', fd }, version, rank, size, pmiId: undefined, jobId, timeoutMs };
  }
  const portText = env[PMI_ENV.port];
  if (portText === undefined || portText === '') throw new VmcommError('INVALID_ARGUMENT', `neither ${PMI_ENV.fd} nor ${PMI_ENV.port} is set: this process was not started by a PMI process manager`);
  const { host, port } = parseRendezvousAddress(portText, PMI_ENV.port);
  const pmiId = integer(env, PMI_ENV.id, 0, 0x7fffffff, `this process's PMI id (it is set with ${PMI_ENV.port})`);
  return { endpoint: { kind: 'port', host, port }, version, rank: undefined, size: undefined, pmiId, jobId, timeoutMs };
}

function readTimeout(env: NodeJS.ProcessEnv): number | undefined {
  const text = env[PMI_ENV.timeout];
  if (text === undefined || text.trim() === '') return DEFAULT_PMI_TIMEOUT_S * 1000;
  const seconds = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isFinite(seconds) || seconds * 1000 > 0x7fffffff) throw invalid(PMI_ENV.timeout, `seconds to wait for the PMI process manager (default ${DEFAULT_PMI_TIMEOUT_S}; 0 waits forever)`, text);
  return seconds === 0 ? undefined : Math.max(1, Math.round(seconds * 1000));
}

function present(env: NodeJS.ProcessEnv, name: string): boolean {
  const value = env[name];
  return value !== undefined && value !== '';
}

function integer(env: NodeJS.ProcessEnv, name: string, min: number, max: number, expected: string): number {
  const text = env[name];
  if (text === undefined || text === '') throw new VmcommError('INVALID_ARGUMENT', `${name} is not set; it must be ${expected}`);
  const value = /^\d{1,10}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw invalid(name, expected, text);
  return value;
}

function invalid(name: string, expected: string, got: string): VmcommError {
  return new VmcommError('INVALID_ARGUMENT', `${name} must be ${expected}; got ${JSON.stringify(got)}`);
}
