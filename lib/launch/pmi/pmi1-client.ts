/**
 * A PMI-1 client (MPICH's "simple" PMI wire protocol, version 1.1), as MPICH's Hydra serves it:
 *
 * ```
 * [PMI_PORT only] cmd=initack pmiid=<PMI_ID>        → cmd=initack, cmd=set size=…, cmd=set rank=…, cmd=set debug=…
 * cmd=init pmi_version=1 pmi_subversion=1           → cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0
 * cmd=get_maxes                                     → cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024
 * cmd=get_my_kvsname                                → cmd=my_kvsname kvsname=kvs_…
 * cmd=put kvsname=… key=… value=…                   → cmd=put_result rc=0 msg=success
 * cmd=barrier_in                                    → cmd=barrier_out                (once every rank sent it)
 * cmd=get kvsname=… key=…                           → cmd=get_result rc=0 msg=success value=…   (rc=-1: no such key)
 * cmd=finalize                                      → cmd=finalize_ack
 * cmd=abort exitcode=… message=…                    (no reply: the process manager ends the job)
 * ```
 *
 * Under `PMI_FD` the rank and size come from `PMI_RANK`/`PMI_SIZE`; under `PMI_PORT` from the
 * `set` lines after `initack`. Values longer than `vallen_max − 1` are cut by Hydra without an error
 * (checked against Hydra 4.0.2), so {@link Pmi1Client.maxValueLength} is `vallen_max − 1`.
 *
 * @module
 */

import { VmcommError } from '../../errors.js';
import { checkRc, wireExitCode, wireSafeMessage, type PmiClient } from './pmi-client.js';
import { PmiConnection, type PmiEndpoint } from './pmi-connection.js';
import { formatPmi1, intAttr, stringAttr } from './pmi-wire.js';

/** Everything {@link Pmi1Client.connect} needs. */
export interface Pmi1ConnectOptions {
  readonly endpoint: PmiEndpoint;
  /** `PMI_RANK` (required with `PMI_FD`). */
  readonly rank?: number;
  /** `PMI_SIZE` (required with `PMI_FD`). */
  readonly size?: number;
  /** `PMI_ID` (required with `PMI_PORT`). */
  readonly pmiId?: number;
  /** Deadline of every reply in ms; `undefined` waits forever. */
  readonly timeoutMs: number | undefined;
}

/** A joined PMI-1 client. */
export class Pmi1Client implements PmiClient {
  readonly protocol = 'PMI-1' as const;

  private constructor(
    readonly connection: PmiConnection,
    readonly rank: number,
    readonly size: number,
    readonly kvsName: string,
    readonly maxKeyLength: number,
    readonly maxValueLength: number,
  ) {}

  /**
   * Runs the PMI-1 start-up (initack under `PMI_PORT`, init, get_maxes, get_my_kvsname). Rejects with
   * `UNSUPPORTED` when the server refuses PMI 1.1, `CORRUPT` for a malformed reply, and with the
   * connection's errors.
   */
  static async connect(options: Pmi1ConnectOptions): Promise<Pmi1Client> {
    const connection = await PmiConnection.open(options.endpoint, options.timeoutMs);
    try {
      let rank = options.rank;
      let size = options.size;
      if (options.endpoint.kind === 'port') {
        if (options.pmiId === undefined) throw new VmcommError('INVALID_ARGUMENT', 'PMI-1 over PMI_PORT needs PMI_ID');
        // The reply is four lines: initack, then set size, set rank and set debug (MPICH's
        // PMII_Set_from_port), possibly in one read — so all four are expected before sending.
        const replies = [
          connection.request(formatPmi1('initack', [['pmiid', String(options.pmiId)]]), 'initack', 'initack'),
          ...Array.from({ length: 3 }, () => connection.receive('set', 'initack')),
        ];
        for (const set of (await Promise.all(replies)).slice(1)) {
          if (set.attrs.has('size')) size = intAttr(set, 'size');
          if (set.attrs.has('rank')) rank = intAttr(set, 'rank');
        }
      }
      if (rank === undefined || size === undefined) throw new VmcommError('INVALID_ARGUMENT', 'PMI-1 over PMI_FD needs PMI_RANK and PMI_SIZE');
      if (!Number.isSafeInteger(size) || size < 1 || !Number.isSafeInteger(rank) || rank < 0 || rank >= size) {
        throw new VmcommError('CORRUPT', `the PMI process manager gave rank ${rank} of size ${size}`);
      }
      const init = await connection.request(formatPmi1('init', [['pmi_version', '1'], ['pmi_subversion', '1']]), 'response_to_init', 'init');
      const rc = init.attrs.has('rc') ? intAttr(init, 'rc') : 0;
      if (rc !== 0 || intAttr(init, 'pmi_version') !== 1) {
        throw new VmcommError('UNSUPPORTED', `the PMI process manager (${connection.where}) refused PMI 1.1 (rc=${rc}, pmi_version=${init.attrs.get('pmi_version')})`);
      }
      const maxes = await connection.request(formatPmi1('get_maxes'), 'maxes', 'get_maxes');
      const keylenMax = intAttr(maxes, 'keylen_max');
      const vallenMax = intAttr(maxes, 'vallen_max');
      const kvsName = stringAttr(await connection.request(formatPmi1('get_my_kvsname'), 'my_kvsname', 'get_my_kvsname'), 'kvsname');
      if (kvsName === '') throw new VmcommError('CORRUPT', `the PMI process manager (${connection.where}) gave an empty kvsname`);
      // The limits count the terminating NUL (MPICH's buffers are that long).
      return new Pmi1Client(connection, rank, size, kvsName, keylenMax - 1, vallenMax - 1);
    } catch (error) {
      connection.close();
      throw error;
    }
  }

  async put(key: string, value: string): Promise<void> {
    const reply = await this.connection.request(formatPmi1('put', [['kvsname', this.kvsName], ['key', key], ['value', value]]), 'put_result', `put ${key}`);
    checkRc(reply, `put ${key}`);
  }

  async fence(): Promise<void> {
    await this.connection.request(formatPmi1('barrier_in'), 'barrier_out', 'barrier_in (the PMI barrier)');
  }

  async get(key: string): Promise<string | undefined> {
    const reply = await this.connection.request(formatPmi1('get', [['kvsname', this.kvsName], ['key', key]]), 'get_result', `get ${key}`);
    // Hydra 4.0 answers a missing key with rc=-1 msg=key_…_not_found; newer servers add found=FALSE.
    if (reply.attrs.get('found') === 'FALSE' || (reply.attrs.has('rc') && intAttr(reply, 'rc') !== 0)) return undefined;
    return stringAttr(reply, 'value');
  }

  jobAttribute(name: string): Promise<string | undefined> {
    // PMI-1 serves job attributes (PMI_process_mapping) as keys of the job's own kvs.
    return this.get(name);
  }

  async finalize(): Promise<void> {
    try {
      await this.connection.request(formatPmi1('finalize'), 'finalize_ack', 'finalize');
    } finally {
      this.connection.close();
    }
  }

  async abort(code: number, message: string): Promise<void> {
    let line: string;
    try {
      line = formatPmi1('abort', [['exitcode', String(wireExitCode(code))], ['message', wireSafeMessage(message, /[\s\\=]/g)]]);
    } catch {
      line = formatPmi1('abort', [['exitcode', '1']]);
    }
    await this.connection.sendOnly(line);
  }
}
