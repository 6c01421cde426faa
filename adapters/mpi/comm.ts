/**
 * Communicator handles (`MPI_Comm`). `MPI.COMM_WORLD` must exist as a constant before `MPI.Init()`
 * (C programs name it at file scope), so a handle is bound to its vmcomm communicator later; using an
 * unbound or freed handle is an error that says which.
 *
 * @module
 */

import { VmcommError, type Communicator } from 'vmcomm';
import { describe } from './datatypes.js';

/** An MPI communicator handle. Its vmcomm {@link Communicator} is {@link Comm.comm}, for mixing both APIs. */
export class Comm {
  #comm: Communicator | undefined;
  #state: 'unbound' | 'bound' | 'freed' = 'unbound';

  /** @internal */
  constructor(
    /** For messages: `'MPI_COMM_WORLD'`, `'MPI_COMM_SELF'`, or `'a communicator from Comm_split'`. */
    readonly label: string,
    comm?: Communicator,
  ) {
    if (comm) this.bind(comm);
  }

  /** The vmcomm communicator behind this handle (throws while unusable, like every call with it). */
  get comm(): Communicator {
    if (this.#comm === undefined || this.#state !== 'bound') throw this.#unusable();
    return this.#comm;
  }

  /** @internal Binds the handle at `Init` (the predefined ones) or at creation. */
  bind(comm: Communicator): void {
    this.#comm = comm;
    this.#state = 'bound';
  }

  /** @internal Marks the handle freed (`Comm_free`) or ended (`Finalize`). */
  unbind(): void {
    this.#state = this.#state === 'unbound' ? 'unbound' : 'freed';
  }

  #unusable(): VmcommError {
    if (this.#state === 'unbound') {
      return new VmcommError('INVALID_ARGUMENT', `${this.label} is used before MPI.Init(): await MPI.Init() first`);
    }
    return new VmcommError('INVALID_ARGUMENT', `${this.label} was freed (Comm_free) or MPI.Finalize() was called; it cannot be used any more`);
  }
}

/** `MPI_COMM_NULL`: what `Comm_split` gives a rank whose color is `MPI.UNDEFINED`. Never usable. */
export const COMM_NULL: Comm = Object.freeze(new Comm('MPI_COMM_NULL')) as Comm;

/** The vmcomm communicator of handle `comm` passed as argument `name`, or a typed error naming it. */
export function communicatorOf(comm: unknown, name = 'comm'): Communicator {
  if (!(comm instanceof Comm)) {
    throw new VmcommError('INVALID_ARGUMENT', `${name} must be an MPI communicator such as MPI.COMM_WORLD; got ${describe(comm)}`);
  }
  if (comm === COMM_NULL) throw new VmcommError('INVALID_ARGUMENT', `${name} is MPI.COMM_NULL, which cannot be used for communication`);
  return comm.comm;
}
