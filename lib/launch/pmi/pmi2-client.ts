/**
 * A PMI-2 client, as Slurm's `mpi/pmi2` plugin (`srun --mpi=pmi2`) serves it on `PMI_FD` — Hydra
 * serves the same commands. The first exchange is a PMI-1 line; every later one is length-prefixed:
 *
 * ```
 * cmd=init pmi_version=2 pmi_subversion=0\n                    → cmd=response_to_init … pmi_version=2 … rc=0\n
 * cmd=fullinit;pmijobid=…;pmirank=…;threaded=FALSE;            → cmd=fullinit-response;rc=0;rank=…;size=…;…
 * cmd=job-getid;                                               → cmd=job-getid-response;rc=0;jobid=…;
 * cmd=info-getjobattr;key=PMI_process_mapping;                 → cmd=info-getjobattr-response;rc=0;found=TRUE;value=…;
 * cmd=kvs-put;key=…;value=…;                                   → cmd=kvs-put-response;rc=0;
 * cmd=kvs-fence;                                               → cmd=kvs-fence-response;rc=0;   (once every rank sent it)
 * cmd=kvs-get;jobid=…;srcid=-1;key=…;                          → cmd=kvs-get-response;rc=0;found=TRUE;value=…;
 * cmd=finalize;                                                → cmd=finalize-response;rc=0;
 * cmd=abort;isworld=TRUE;exitcode=…;message=…;                 (no reply: Slurm cancels the step)
 * ```
 *
 * (each message after the first is preceded by its length, `"%-6d"`). Slurm reads the first line
 * with a single `read()`, so nothing is sent before its reply arrives; it refuses `fullinit` without
 * `pmijobid` (rc=3) — `PMI_JOBID` supplies it (MPICH's own client omits it; Hydra does not need it).
 * Keys and values are limited to 64 and 1024 bytes with their NUL (`PMI2_MAX_KEYLEN`,
 * `PMI2_MAX_VALLEN`) and may not contain `;`.
 *
 * @module
 */

import { VmcommError } from '../../errors.js';
import { checkRc, wireExitCode, wireSafeMessage, type PmiClient } from './pmi-client.js';
import { PmiConnection, type PmiEndpoint } from './pmi-connection.js';
import { formatPmi1, formatPmi2, intAttr, stringAttr } from './pmi-wire.js';

/** `PMI2_MAX_KEYLEN` and `PMI2_MAX_VALLEN` of MPICH's and Slurm's pmi2.h, NUL included. */
const PMI2_MAX_KEYLEN = 64;
const PMI2_MAX_VALLEN = 1024;

/** Everything {@link Pmi2Client.connect} needs. */
export interface Pmi2ConnectOptions {
  readonly endpoint: PmiEndpoint;
  /** `PMI_RANK` (or `PMI_ID`): sent as `pmirank`. */
  readonly rank: number;
  /** `PMI_SIZE` when set: checked against the server's. */
  readonly size?: number;
  /** `PMI_JOBID` when set: sent as `pmijobid` (Slurm needs it). */
  readonly jobId?: string;
  /** Deadline of every reply in ms; `undefined` waits forever. */
  readonly timeoutMs: number | undefined;
}

/** A joined PMI-2 client. */
export class Pmi2Client implements PmiClient {
  readonly protocol = 'PMI-2' as const;
  readonly maxKeyLength = PMI2_MAX_KEYLEN - 1;
  readonly maxValueLength = PMI2_MAX_VALLEN - 1;

  private constructor(
    readonly connection: PmiConnection,
    readonly rank: number,
    readonly size: number,
    readonly kvsName: string,
  ) {}

  /**
   * Runs the PMI-2 start-up (init, fullinit, job-getid). Rejects with `UNSUPPORTED` when the server
   * refuses PMI 2.0, `CORRUPT` for a malformed reply or a rank/size that contradicts the environment,
   * and with the connection's errors.
   */
  static async connect(options: Pmi2ConnectOptions): Promise<Pmi2Client> {
    const connection = await PmiConnection.open(options.endpoint, options.timeoutMs);
    try {
      const init = await connection.request(formatPmi1('init', [['pmi_version', '2'], ['pmi_subversion', '0']]), 'response_to_init', 'init');
      const initRc = init.attrs.has('rc') ? intAttr(init, 'rc') : 0;
      if (initRc !== 0 || intAttr(init, 'pmi_version') !== 2) {
        throw new VmcommError('UNSUPPORTED', `the PMI process manager (${connection.where}) refused PMI 2.0 (rc=${initRc}, pmi_version=${init.attrs.get('pmi_version')}); set VMCOMM_PMI=1 to speak PMI-1`);
      }
      connection.wire = 2;
      const attrs: [string, string][] = [];
      if (options.jobId !== undefined) attrs.push(['pmijobid', options.jobId]);
      attrs.push(['pmirank', String(options.rank)], ['threaded', 'FALSE']);
      const full = await connection.request(formatPmi2('fullinit', attrs), 'fullinit-response', 'fullinit');
      const fullRc = full.attrs.has('rc') ? intAttr(full, 'rc') : 0;
      if (fullRc !== 0) {
        throw new VmcommError('UNSUPPORTED', `the PMI process manager (${connection.where}) refused fullinit: rc=${fullRc} (${full.attrs.get('errmsg') ?? 'no reason given'})`);
      }
      const rank = intAttr(full, 'rank');
      const size = intAttr(full, 'size');
      if (size < 1 || rank < 0 || rank >= size || rank !== options.rank || (options.size !== undefined && size !== options.size)) {
        throw new VmcommError(
          'CORRUPT',
          `the PMI process manager (${connection.where}) gave rank ${rank} of ${size}, but the environment says rank ${options.rank}${options.size === undefined ? '' : ` of ${options.size}`}`,
        );
      }
      const getId = await connection.request(formatPmi2('job-getid'), 'job-getid-response', 'job-getid');
      checkRc(getId, 'job-getid');
      const kvsName = stringAttr(getId, 'jobid');
      if (kvsName === '') throw new VmcommError('CORRUPT', `the PMI process manager (${connection.where}) gave an empty job id`);
      return new Pmi2Client(connection, rank, size, kvsName);
    } catch (error) {
      connection.close();
      throw error;
    }
  }

  async put(key: string, value: string): Promise<void> {
    checkRc(await this.connection.request(formatPmi2('kvs-put', [['key', key], ['value', value]]), 'kvs-put-response', `kvs-put ${key}`), `kvs-put ${key}`);
  }

  async fence(): Promise<void> {
    checkRc(await this.connection.request(formatPmi2('kvs-fence'), 'kvs-fence-response', 'kvs-fence (the PMI fence)'), 'kvs-fence');
  }

  async get(key: string): Promise<string | undefined> {
    const reply = await this.connection.request(formatPmi2('kvs-get', [['jobid', this.kvsName], ['srcid', '-1'], ['key', key]]), 'kvs-get-response', `kvs-get ${key}`);
    checkRc(reply, `kvs-get ${key}`);
    return reply.attrs.get('found') === 'TRUE' ? stringAttr(reply, 'value') : undefined;
  }

  async jobAttribute(name: string): Promise<string | undefined> {
    const reply = await this.connection.request(formatPmi2('info-getjobattr', [['key', name]]), 'info-getjobattr-response', `info-getjobattr ${name}`);
    checkRc(reply, `info-getjobattr ${name}`);
    return reply.attrs.get('found') === 'TRUE' ? stringAttr(reply, 'value') : undefined;
  }

  async finalize(): Promise<void> {
    try {
      checkRc(await this.connection.request(formatPmi2('finalize'), 'finalize-response', 'finalize'), 'finalize');
    } finally {
      this.connection.close();
    }
  }

  async abort(code: number, message: string): Promise<void> {
    let text: string;
    try {
      text = formatPmi2('abort', [['isworld', 'TRUE'], ['exitcode', String(wireExitCode(code))], ['message', wireSafeMessage(message, /;/g)]]);
    } catch {
      text = formatPmi2('abort', [['isworld', 'TRUE'], ['exitcode', '1']]);
    }
    await this.connection.sendOnly(text);
  }
}
