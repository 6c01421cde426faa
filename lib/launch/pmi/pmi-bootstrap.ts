/**
 * The {@link Bootstrap} of a rank started by a PMI process manager — MPICH's Hydra (`mpiexec`, PMI-1)
 * or Slurm (`srun --mpi=pmi2`, PMI-2) — built on any {@link PmiClient}.
 *
 * ## Joining
 *
 * Rank 0 draws the job secret (32 random bytes) and puts it, hex, under `vmcomm-secret`; every rank
 * reads `PMI_process_mapping`; one fence; the others get the secret. The job id is the PMI job's name
 * (kvsname / job id, which the process manager makes unique per job) plus 16 hex digits derived from
 * the secret, so two clusters' `1.0` never meet in one `/dev/shm` or ivshmem region. The secret is as
 * private as the PMI key/value space: the job's processes and the process manager read it, and PMI
 * traffic between hosts is not encrypted.
 *
 * The first local rank of each node (`MPI_LOCALRANKID`, `SLURM_LOCALID` = 0) also removes stale shm
 * files of other jobs, as `vmcomm run` does at start: ranks killed by the process manager cannot
 * remove theirs, and no vmcomm launcher is there to do it.
 *
 * ## `allgather`
 *
 * Puts this rank's value (`kvs-cards.ts`: JSON, base64url, chunks under `vmcomm-<round>-<rank>-<i>`),
 * fences, then gets every other rank's chunks. A fence involves every rank, so every rank must call
 * the same rounds in the same order (vmcomm's core does: `cards`, then `reach`); calls on one rank
 * are queued, never interleaved. A rank whose value is missing after the fence is `CORRUPT`.
 *
 * ## Failure
 *
 * PMI tells a rank nothing about other ranks, so `peerLost` is never reported by the bootstrap (the
 * transports notice dead peers themselves). What the process managers do instead (measured with
 * MPICH 4.0.2 and Slurm 22.05):
 *
 * - **Hydra** kills every rank (SIGKILL) as soon as one that joined PMI exits without finalizing —
 *   even with exit code 0 — or is killed, and ends the job with the code of a PMI `abort`. A process
 *   that ends before joining PMI goes unnoticed: the others would wait in the fence for good.
 * - **Slurm** leaves the other tasks running when one dies (unless `srun --kill-on-bad-exit=1` /
 *   `-K`, or a `--wait`), so they would wait in the fence for good; a PMI `abort` cancels the step.
 *
 * Hence every PMI reply has a deadline, `VMCOMM_PMI_TIMEOUT` seconds (default 300; 0 waits forever):
 * past it the round rejects with `TIMEOUT` and `init()` fails (and under Hydra the first rank to exit
 * ends the job).
 *
 * When the process manager closes the connection before `finalize()` (mpiexec or srun was killed),
 * pending rounds reject with `PEER_LOST` and the listener's `abort(1, -1, …)` is called, as under
 * `vmcomm run` when the rendezvous goes away: without its launcher the job cannot be aborted any more.
 *
 * @module
 */

import { createHash, randomBytes } from 'node:crypto';
import type { CardValue } from '../../backend.js';
import type { Bootstrap, BootstrapEvents } from '../../bootstrap.js';
import { VmcommError } from '../../errors.js';
import { OTHER_JOBS_MIN_AGE_MS, sweepStaleShmFiles } from '../shm-files.js';
import { MAX_CARD_KEY_LENGTH, chunkKey, decodeCard, encodeCard, parseCardHeader, roundId } from './kvs-cards.js';
import { choosePmiAddress } from './pmi-address.js';
import type { PmiClient } from './pmi-client.js';

/** Where rank 0 puts the job secret. */
export const SECRET_KEY = 'vmcomm-secret';
/** Bytes of the job secret rank 0 draws. */
export const SECRET_BYTES = 32;
/** The longest round name (as with the rendezvous). */
const MAX_ROUND_LENGTH = 256;

type State =
  | { readonly kind: 'open' }
  | { readonly kind: 'finalizing' }
  /** The connection is gone; `error` is what calls now reject with. */
  | { readonly kind: 'closed'; readonly error: VmcommError };

/** A rank joined through PMI. Build it with {@link PmiBootstrap.connect}. */
export class PmiBootstrap implements Bootstrap {
  readonly rank: number;
  readonly size: number;
  readonly jobId: string;
  readonly secret: Uint8Array;
  readonly address: string;
  /** Why {@link address} was chosen (see `pmi-address.ts`). */
  readonly addressReason: string;
  /** For messages: `'Hydra (PMI-1)'`, `'Slurm (PMI-2)'`. */
  readonly launcher: string;

  private state: State = { kind: 'open' };
  private readonly usedRounds = new Set<string>();
  /** Requests run one after another (PMI replies carry no request id). */
  private queue: Promise<unknown> = Promise.resolve();
  private events: BootstrapEvents | undefined;
  private queuedAbort: { code: number; fromRank: number; reason: string } | undefined;
  private aborting = false;
  private finalizing: Promise<void> | undefined;

  private constructor(
    private readonly client: PmiClient,
    launcher: string,
    secret: Uint8Array,
    address: { address: string; reason: string },
  ) {
    this.rank = client.rank;
    this.size = client.size;
    this.launcher = launcher;
    this.secret = secret;
    this.jobId = `${client.kvsName.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64)}-${createHash('sha256').update('vmcomm-job-id|').update(secret).digest('hex').slice(0, 16)}`;
    this.address = address.address;
    this.addressReason = address.reason;
    client.connection.onLost((error) => this.onLost(error));
  }

  /**
   * Shares the secret, reads the process mapping and chooses the address (see the module comment).
   * Closes the client and rejects on failure: `CORRUPT` when rank 0's secret is missing or malformed,
   * `UNSUPPORTED` when keys are too short for vmcomm's or no address can be chosen, and the client's
   * errors (`TIMEOUT`, `PEER_LOST`, …).
   */
  static async connect(client: PmiClient, env: NodeJS.ProcessEnv, launcher: string): Promise<PmiBootstrap> {
    try {
      if (client.maxKeyLength < MAX_CARD_KEY_LENGTH) {
        throw new VmcommError('UNSUPPORTED', `${launcher} keeps keys of ${client.maxKeyLength} characters; vmcomm needs ${MAX_CARD_KEY_LENGTH}`);
      }
      let secret: Uint8Array | undefined;
      if (client.rank === 0) {
        secret = new Uint8Array(randomBytes(SECRET_BYTES));
        await client.put(SECRET_KEY, Buffer.from(secret).toString('hex'));
      }
      // One rank per node (its first local rank, as Hydra and Slurm number them) sweeps, meanwhile.
      const localRank = env.MPI_LOCALRANKID ?? env.SLURM_LOCALID;
      const sweep = localRank === '0' ? sweepStaleShmFiles({ minAgeMs: OTHER_JOBS_MIN_AGE_MS }) : undefined;
      const processMapping = await client.jobAttribute('PMI_process_mapping');
      await client.fence();
      await sweep;
      if (secret === undefined) {
        const hex = await client.get(SECRET_KEY);
        if (hex === undefined || !new RegExp(`^[0-9a-f]{${SECRET_BYTES * 2}}$`).test(hex)) {
          throw new VmcommError(
            'CORRUPT',
            `rank ${client.rank}: ${hex === undefined ? 'rank 0 put no job secret' : 'the job secret rank 0 put is malformed'} in the PMI key/value space; ` +
              `every rank of the job must run a vmcomm program (init()) from the same vmcomm version`,
          );
        }
        secret = new Uint8Array(Buffer.from(hex, 'hex'));
      }
      const address = await choosePmiAddress({ env, size: client.size, processMapping, pmiLocalAddress: client.connection.localAddress });
      return new PmiBootstrap(client, launcher, secret, address);
    } catch (error) {
      client.connection.close();
      throw error;
    }
  }

  /** See {@link Bootstrap.listen}. Throws `INVALID_ARGUMENT` when called twice. */
  listen(events: BootstrapEvents): void {
    if (this.events !== undefined) throw new VmcommError('INVALID_ARGUMENT', 'PmiBootstrap.listen() may be called once');
    this.events = events;
    const queued = this.queuedAbort;
    this.queuedAbort = undefined;
    // Delivered on the next tick, never from inside listen().
    if (queued !== undefined) process.nextTick(() => events.abort(queued.code, queued.fromRank, queued.reason));
  }

  /** See {@link Bootstrap.allgather}. */
  allgather(round: string, value: CardValue): Promise<CardValue[]> {
    if (typeof round !== 'string' || round.length === 0 || round.length > MAX_ROUND_LENGTH) {
      return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round must be a string of 1…${MAX_ROUND_LENGTH} characters`));
    }
    if (this.state.kind === 'closed') return Promise.reject(this.state.error);
    if (this.state.kind === 'finalizing') return Promise.reject(new VmcommError('FINALIZED', `rank ${this.rank} is finalizing; allgather round '${round}' was not started`));
    if (value === undefined) return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round '${round}': the value must be JSON data (a CardValue), got undefined`));
    if (this.usedRounds.has(round)) return Promise.reject(new VmcommError('INVALID_ARGUMENT', `allgather round '${round}' was already used; each round name is used once`));
    let chunks: string[];
    try {
      chunks = encodeCard(value, this.client.maxValueLength);
    } catch (error) {
      return Promise.reject(error);
    }
    this.usedRounds.add(round);
    // What every other rank will decode, so this rank's own entry is an equal copy, not the caller's object.
    const own = JSON.parse(JSON.stringify(value)) as CardValue;
    return this.enqueue(() => this.runRound(round, chunks, own));
  }

  /**
   * See {@link Bootstrap.abort}: a PMI `abort` (the process manager ends every rank). Resolves once
   * sent, the connection is gone, or after 5 s; never rejects. Losing the connection afterwards is
   * not reported.
   */
  async abort(code: number, reason: string): Promise<void> {
    this.aborting = true;
    if (this.state.kind === 'closed') return;
    await this.client.abort(code, String(reason)).catch(() => undefined);
  }

  /**
   * See {@link Bootstrap.finalize}: after any queued round, a PMI `finalize` (the process manager then
   * treats this rank's exit as normal), then the connection is closed. Idempotent. Rejects with the
   * connection's error when it is already gone, `TIMEOUT` when no answer comes in time.
   */
  finalize(): Promise<void> {
    this.finalizing ??= (async () => {
      if (this.state.kind === 'closed') throw this.state.error;
      this.state = { kind: 'finalizing' };
      try {
        await this.enqueue(() => this.client.finalize());
      } finally {
        this.close(new VmcommError('FINALIZED', `rank ${this.rank} finalized; the PMI connection is closed`));
      }
    })();
    return this.finalizing;
  }

  // -------------------------------------------------------------------------------------------------

  private async runRound(round: string, chunks: readonly string[], own: CardValue): Promise<CardValue[]> {
    const { client, rank, size } = this;
    const id = roundId(round);
    for (let i = 0; i < chunks.length; i++) await client.put(chunkKey(id, rank, i), chunks[i]!);
    await client.fence();
    const values: CardValue[] = new Array(size);
    for (let peer = 0; peer < size; peer++) {
      if (peer === rank) {
        values[peer] = own;
        continue;
      }
      const whose = `rank ${peer}'s value in allgather round '${round}'`;
      const missing = (): VmcommError =>
        new VmcommError('CORRUPT', `${whose} is missing from the PMI key/value space after the fence; every rank must call the same rounds in the same order`, { peer });
      const first = await client.get(chunkKey(id, peer, 0));
      if (first === undefined) throw missing();
      const header = parseCardHeader(first, whose);
      const rest: string[] = [];
      for (let i = 1; i < header.chunks; i++) {
        const chunk = await client.get(chunkKey(id, peer, i));
        if (chunk === undefined) throw missing();
        rest.push(chunk);
      }
      values[peer] = decodeCard(header, rest, whose);
    }
    return values;
  }

  /** Runs `task` after every earlier one; a failure does not stop later ones. */
  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      if (this.state.kind === 'closed') throw this.state.error;
      return task();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private onLost(error: VmcommError): void {
    const wasOpen = this.state.kind === 'open';
    this.close(error);
    // While finalizing or aborting the process ends by its own choice: nothing to report.
    if (!wasOpen || this.aborting) return;
    const reason = `lost the connection to the process manager (${this.launcher}: ${error.message})`;
    if (this.events === undefined) this.queuedAbort = { code: 1, fromRank: -1, reason };
    else this.events.abort(1, -1, reason);
  }

  private close(error: VmcommError): void {
    if (this.state.kind === 'closed') return;
    this.state = { kind: 'closed', error };
    this.client.connection.close();
  }
}
