/**
 * What vmcomm needs from a PMI process manager, whichever PMI version carries it: a job-wide key/value
 * space whose puts become visible to every rank after a collective fence. `pmi1-client.ts` (Hydra's
 * `PMI_FD`) and `pmi2-client.ts` (Slurm's `--mpi=pmi2`) implement it; `pmi-bootstrap.ts` builds the
 * {@link Bootstrap} on top.
 *
 * @module
 */

import { VmcommError } from '../../errors.js';
import type { PmiConnection } from './pmi-connection.js';
import { intAttr, type PmiMessage } from './pmi-wire.js';

/** A joined PMI client. Requests must not overlap: await each before the next (PMI has no request ids). */
export interface PmiClient {
  /** For messages. */
  readonly protocol: 'PMI-1' | 'PMI-2';
  /** This process's rank, as the process manager numbers it. */
  readonly rank: number;
  /** Ranks in the job. */
  readonly size: number;
  /** The job's key/value space (PMI-1 kvsname, PMI-2 job id): the same on every rank, new per job. */
  readonly kvsName: string;
  /** Longest key the server keeps whole, in characters. */
  readonly maxKeyLength: number;
  /** Longest value the server keeps whole, in characters (Hydra silently cuts longer ones). */
  readonly maxValueLength: number;
  /** The socket underneath (liveness, loss notification, local address). */
  readonly connection: PmiConnection;
  /** Stores `value` under `key`; visible to the other ranks after the next {@link fence}. */
  put(key: string, value: string): Promise<void>;
  /** PMI-1 `barrier`, PMI-2 `kvs-fence`: resolves once every rank reached it; then all puts before it are visible. */
  fence(): Promise<void>;
  /** The value under `key`, or `undefined` when there is none. */
  get(key: string): Promise<string | undefined>;
  /** A value the process manager provides itself (`PMI_process_mapping`), or `undefined`. */
  jobAttribute(name: string): Promise<string | undefined>;
  /** Tells the process manager this rank finished cleanly, waits for its answer, then closes the connection. */
  finalize(): Promise<void>;
  /** Asks the process manager to end the whole job; resolves once sent (best effort, never rejects). */
  abort(code: number, message: string): Promise<void>;
}

/**
 * A message the process manager can carry: printable ASCII, at most 200 characters, with `forbidden`
 * characters (the wire's separators) replaced by `_`.
 */
export function wireSafeMessage(text: string, forbidden: RegExp): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?').replace(forbidden, '_').slice(0, 200);
  return printable === '' ? '_' : printable;
}

/** An exit code the process manager can carry: an integer in 0…255, else 1. */
export function wireExitCode(code: number): number {
  return Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1;
}

/** A non-zero `rc` in a reply is the server refusing the request. */
export function checkRc(reply: PmiMessage, what: string): void {
  const rc = reply.attrs.has('rc') ? intAttr(reply, 'rc') : 0;
  if (rc !== 0) {
    const why = reply.attrs.get('msg') ?? reply.attrs.get('errmsg') ?? 'no reason given';
    throw new VmcommError('CORRUPT', `the PMI process manager refused ${what}: rc=${rc} (${why})`);
  }
}
