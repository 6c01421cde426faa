/**
 * How a rank finds its job from its environment, and the environment a launcher gives its ranks.
 *
 * `init()` calls {@link bootstrapFromEnvironment}. Launch systems are tried in the order of
 * {@link LAUNCH_ENVIRONMENTS}; the first whose variables are present is used, and its errors are
 * final (a rank that was clearly started by a launcher must not quietly become a world of one).
 * None present → `undefined`, and the core makes a world of one.
 *
 * The vmcomm environment (what `vmcomm run` sets, and what a rank started by hand needs):
 *
 * | variable | meaning |
 * |---|---|
 * | `VMCOMM_RENDEZVOUS` | `host:port` (`[v6]:port`) of the rendezvous |
 * | `VMCOMM_RANK` | this rank, `0 … VMCOMM_SIZE−1` |
 * | `VMCOMM_RANKS` | for a process that hosts several thread-ranks: their ranks, comma-separated (`2,3`). The process runs vmcomm's thread host (`thread-host.ts`), which starts one worker thread per rank with its own `VMCOMM_RANK` |
 * | `VMCOMM_SIZE` | ranks in the job |
 * | `VMCOMM_JOB_SECRET` | the job secret, hex, at least 16 bytes (32 hex digits) |
 * | `VMCOMM_JOB_ID` | optional; default {@link deriveJobId}(secret), which is what the launchers use |
 *
 * Ranks started by Slurm (`srun --mpi=pmi2`: `PMI_FD` and `PMI_JOBID`) speak PMI-2, and ranks started
 * by MPICH's Hydra (`mpiexec`: `PMI_FD`, or `PMI_PORT` with `-pmi-port`) PMI-1; their variables, and
 * `VMCOMM_PMI`, `VMCOMM_PMI_TIMEOUT` and `VMCOMM_ADDRESS`, are described in `pmi/pmi-environment.ts`.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import type { Bootstrap } from '../bootstrap.js';
import { VmcommError } from '../errors.js';
import { formatRendezvousAddress, parseRendezvousAddress, type RendezvousAddress } from './address.js';
import { pmi1Environment, slurmPmi2Environment, slurmWithoutPmiEnvironment } from './pmi/pmi-environment.js';
import { RendezvousClient } from './rendezvous-client.js';
import { MAX_JOB_ID_LENGTH, MIN_SECRET_BYTES } from './rendezvous-protocol.js';

export { formatRendezvousAddress, parseRendezvousAddress, type RendezvousAddress } from './address.js';

/** The variable names, in one place. */
export const ENV = {
  rendezvous: 'VMCOMM_RENDEZVOUS',
  rank: 'VMCOMM_RANK',
  ranks: 'VMCOMM_RANKS',
  size: 'VMCOMM_SIZE',
  secret: 'VMCOMM_JOB_SECRET',
  jobId: 'VMCOMM_JOB_ID',
  backends: 'VMCOMM_BACKENDS',
} as const;

/** A source of bootstraps: one launch system a rank may have been started by. */
export interface LaunchEnvironment {
  /** For messages: `'vmcomm'`, `'PMI-1'`, `'Slurm PMI-2'`. */
  readonly name: string;
  /** True when `env` shows this launch system started the process. Cheap and synchronous. */
  detect(env: NodeJS.ProcessEnv): boolean;
  /** Joins the job it describes. Rejects with `INVALID_ARGUMENT` for a malformed environment. */
  connect(env: NodeJS.ProcessEnv): Promise<Bootstrap>;
}

/** vmcomm's own: `vmcomm run`, `vmcomm rendezvous`, or ranks given the variables by hand. */
export const vmcommEnvironment: LaunchEnvironment = {
  name: 'vmcomm',
  detect: (env) => env[ENV.rendezvous] !== undefined && env[ENV.rendezvous] !== '',
  connect: (env) => RendezvousClient.connect(readVmcommEnvironment(env)),
};

/**
 * The launch systems `init()` recognizes, most specific first. vmcomm's own comes first, so
 * `vmcomm run` inside a Slurm allocation or under `mpiexec` uses its own rendezvous. Then Slurm's
 * PMI-2 (`PMI_FD` with `PMI_JOBID`), then PMI-1 (`PMI_FD` or `PMI_PORT`: MPICH's Hydra), and last a
 * Slurm task started without a PMI, which fails rather than run as a world of one.
 */
export const LAUNCH_ENVIRONMENTS: readonly LaunchEnvironment[] = [vmcommEnvironment, slurmPmi2Environment, pmi1Environment, slurmWithoutPmiEnvironment];

/**
 * The bootstrap the environment describes, or `undefined` when the process was not started by a
 * launcher vmcomm knows (then the core makes a world of one).
 *
 * Rejects with `INVALID_ARGUMENT` naming the variable when one is missing or malformed, and with the
 * errors of {@link RendezvousClient.connect} (`AUTH`, `TIMEOUT`, …) when joining fails.
 */
export async function bootstrapFromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<Bootstrap | undefined> {
  for (const launch of LAUNCH_ENVIRONMENTS) {
    if (launch.detect(env)) return launch.connect(env);
  }
  return undefined;
}

/** Everything {@link RendezvousClient.connect} needs, read and checked from `env`. */
export function readVmcommEnvironment(env: NodeJS.ProcessEnv = process.env): {
  host: string;
  port: number;
  rank: number;
  size: number;
  jobId: string;
  secret: Uint8Array;
} {
  // The rendezvous first: a missing VMCOMM_RENDEZVOUS is the likeliest mistake, and named first.
  parseRendezvousAddress(required(env, ENV.rendezvous, 'host:port of the rendezvous'), ENV.rendezvous);
  const ranksText = env[ENV.ranks];
  if (ranksText !== undefined && ranksText !== '' && env[ENV.rank] === undefined) {
    // A process that hosts thread-ranks is not a rank itself: its thread host gives each worker
    // thread its own VMCOMM_RANK. Reaching init() here means the app was started without that host.
    throw new VmcommError(
      'UNSUPPORTED',
      `${ENV.ranks}=${ranksText} names the thread-ranks of this process, but init() runs as one rank and ${ENV.rank} is not set: ` +
        `start the process with vmcomm's thread host, which starts one worker thread per rank ` +
        `(\`node <vmcomm>/dist/lib/launch/thread-host.js app …\`, what \`vmcomm run --threads-per-process\` does), or give each process one rank with ${ENV.rank}`,
    );
  }
  const size = integer(env, ENV.size, 1, 0x7fffffff, 'the number of ranks in the job, a positive integer');
  const rank = integer(env, ENV.rank, 0, size - 1, `this rank, an integer in 0…${size - 1} (${ENV.size}=${size})`);
  if (ranksText !== undefined && ranksText !== '' && !parseRankList(ranksText, size).includes(rank)) {
    throw new VmcommError('INVALID_ARGUMENT', `${ENV.rank}=${rank} is not one of the thread-ranks of this process (${ENV.ranks}=${ranksText})`);
  }
  const access = readJobAccess(env);
  return { host: access.host, port: access.port, rank, size, jobId: access.jobId, secret: access.secret };
}

/**
 * What reaches a running job's rendezvous, from `VMCOMM_RENDEZVOUS`, `VMCOMM_JOB_SECRET` and
 * `VMCOMM_JOB_ID` — for ranks, and for operator tools (`vmcomm ivshmem attach`), which are no rank.
 */
export function readJobAccess(env: NodeJS.ProcessEnv = process.env): { host: string; port: number; jobId: string; secret: Uint8Array } {
  const address = parseRendezvousAddress(required(env, ENV.rendezvous, 'host:port of the rendezvous'), ENV.rendezvous);
  const secretText = required(env, ENV.secret, `the job secret as hex (at least ${MIN_SECRET_BYTES * 2} hex digits)`);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(secretText) || secretText.length < MIN_SECRET_BYTES * 2) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `${ENV.secret} must be the job secret as an even number of hex digits, at least ${MIN_SECRET_BYTES * 2} ` +
        `(${MIN_SECRET_BYTES} bytes); got ${secretText.length} characters${/^[0-9a-fA-F]*$/.test(secretText) ? '' : ' that are not all hex'}`,
    );
  }
  const secret = new Uint8Array(Buffer.from(secretText, 'hex'));
  const jobIdText = env[ENV.jobId];
  let jobId: string;
  if (jobIdText === undefined || jobIdText === '') {
    jobId = deriveJobId(secret);
  } else {
    if (jobIdText.length > MAX_JOB_ID_LENGTH || !/^[\x21-\x7e]+$/.test(jobIdText)) {
      throw new VmcommError('INVALID_ARGUMENT', `${ENV.jobId} must be 1…${MAX_JOB_ID_LENGTH} printable ASCII characters without spaces, or unset`);
    }
    jobId = jobIdText;
  }
  return { host: address.host, port: address.port, jobId, secret };
}

/**
 * The job id that goes with a secret when none is given: the first 16 hex digits of
 * SHA-256("vmcomm-job-id|" + secret). It reveals nothing usable about the secret, and lets a rank
 * started by hand need only the four documented variables.
 */
export function deriveJobId(secret: Uint8Array): string {
  return createHash('sha256').update('vmcomm-job-id|').update(secret).digest('hex').slice(0, 16);
}

/**
 * The ranks in a `VMCOMM_RANKS` list: comma-separated, distinct, each in `0 … size−1`. Throws
 * `INVALID_ARGUMENT` naming the variable otherwise.
 */
export function parseRankList(text: string, size: number): number[] {
  const parts = text.split(',').map((p) => p.trim());
  const ranks = parts.map((p) => (/^\d+$/.test(p) ? Number(p) : Number.NaN));
  if (ranks.some((r) => !Number.isSafeInteger(r) || r >= size) || new Set(ranks).size !== ranks.length) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `${ENV.ranks} must be a comma-separated list of distinct ranks in 0…${size - 1} (${ENV.size}=${size}); got ${JSON.stringify(text)}`,
    );
  }
  return ranks;
}

/** What a launcher passes to {@link jobEnvironment}. */
export interface JobEnvironmentOptions {
  /** Where the rendezvous listens (as reachable from the rank). */
  readonly rendezvous: RendezvousAddress;
  /** The rank of a one-rank process (`VMCOMM_RANK`); ignored when {@link ranks} is given. */
  readonly rank: number;
  /**
   * The thread-ranks of a process that hosts several (`VMCOMM_RANKS`, and no `VMCOMM_RANK`: its
   * thread host sets that per worker thread).
   */
  readonly ranks?: readonly number[];
  readonly size: number;
  readonly secret: Uint8Array;
  /** Default {@link deriveJobId}(secret). */
  readonly jobId?: string;
  /** `VMCOMM_BACKENDS`, when the launcher was asked to restrict the transports. */
  readonly backends?: string;
}

/** The variables a launcher adds to a rank's environment (to be merged over the inherited one). */
export function jobEnvironment(options: JobEnvironmentOptions): { [name: string]: string } {
  const env: { [name: string]: string } = {
    [ENV.rendezvous]: formatRendezvousAddress(options.rendezvous),
    ...(options.ranks === undefined ? { [ENV.rank]: String(options.rank) } : { [ENV.ranks]: options.ranks.join(',') }),
    [ENV.size]: String(options.size),
    [ENV.secret]: Buffer.from(options.secret).toString('hex'),
    [ENV.jobId]: options.jobId ?? deriveJobId(options.secret),
  };
  if (options.backends !== undefined) env[ENV.backends] = options.backends;
  return env;
}

function required(env: NodeJS.ProcessEnv, name: string, expected: string): string {
  const value = env[name];
  if (value === undefined || value === '') {
    throw new VmcommError('INVALID_ARGUMENT', `${name} is not set; it must be ${expected} (${ENV.rendezvous} is set, so this process is a rank of a vmcomm job)`);
  }
  return value;
}

function integer(env: NodeJS.ProcessEnv, name: string, min: number, max: number, expected: string): number {
  const text = required(env, name, expected).trim();
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new VmcommError('INVALID_ARGUMENT', `${name} must be ${expected}; got ${JSON.stringify(env[name])}`);
  }
  return value;
}
