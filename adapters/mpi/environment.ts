/**
 * `Init`/`Finalize`, the predefined communicators and the clock.
 *
 * @module
 */

import { init, VmcommError, type InitOptions } from 'vmcomm';
import { Comm, communicatorOf } from './comm.js';

/** `MPI_COMM_WORLD`: every rank of the job. Usable once `Init` has resolved. */
export const COMM_WORLD = new Comm('MPI_COMM_WORLD');
/** `MPI_COMM_SELF`: this rank alone. Usable once `Init` has resolved. */
export const COMM_SELF = new Comm('MPI_COMM_SELF');

let phase: 'before' | 'starting' | 'running' | 'finalized' = 'before';

/**
 * `MPI_Init`: joins the job the launcher started (`vmcomm run`, `mpiexec`, `srun`, or none: a job of
 * one), then binds `COMM_WORLD` and `COMM_SELF`. Collective over the world. `options` are vmcomm's
 * (`InitOptions`), for programs that want to restrict backends or tune them; MPI programs pass none.
 */
export async function Init(options?: InitOptions): Promise<void> {
  if (phase !== 'before') {
    throw new VmcommError('INVALID_ARGUMENT', phase === 'finalized' ? 'MPI.Init() after MPI.Finalize(): MPI cannot be restarted' : 'MPI.Init() was already called (call it once per rank)');
  }
  phase = 'starting';
  try {
    const world = await init(options);
    COMM_WORLD.bind(world);
    // COMM_SELF is a real communicator (its own contexts), so a library may use it freely.
    COMM_SELF.bind((await world.split(world.rank, 0))!);
    phase = 'running';
  } catch (e) {
    phase = 'before';
    throw e;
  }
}

/** `MPI_Initialized`. */
export function Initialized(): boolean {
  return phase === 'running' || phase === 'finalized';
}

/** `MPI_Finalized`. */
export function Finalized(): boolean {
  return phase === 'finalized';
}

/**
 * `MPI_Finalize`: collective; delivers what is in flight, closes the transports and ends the job's
 * use of vmcomm (the process may then exit). Handles stop working afterwards.
 */
export async function Finalize(): Promise<void> {
  if (phase !== 'running') throw new VmcommError('INVALID_ARGUMENT', phase === 'finalized' ? 'MPI.Finalize() was already called' : 'MPI.Finalize() before MPI.Init()');
  const world = COMM_WORLD.comm;
  await COMM_SELF.comm.free();
  await world.finalize();
  COMM_SELF.unbind();
  COMM_WORLD.unbind();
  phase = 'finalized';
}

/** `MPI_Abort`: ends every rank of the job with `errorcode` (the process exit status). Never returns. */
export function Abort(comm: unknown, errorcode: number): never {
  return communicatorOf(comm).abort(errorcode);
}

/** `MPI_Wtime`: seconds since an arbitrary point of this process, with sub-microsecond resolution. */
export function Wtime(): number {
  return performance.now() / 1000;
}

/** `MPI_Wtick`: the resolution of `MPI.Wtime` in seconds. */
export function Wtick(): number {
  return 1e-6;
}
