// Problem classes: the values NPB's `setparams` writes into npbparams.h for each kernel, and the
// class argument every kernel takes (`ep.ts S`). NPB fixes the class at compile time; a port reads it
// at run time, so this is the one place that knows which classes exist.

export type NpbClass = 'S' | 'W' | 'A';
export const CLASSES: readonly NpbClass[] = ['S', 'W', 'A'];

/** EP: m = log2 of the number of random pairs (2^(m+1) random numbers). */
export const EP_PARAMS: Record<NpbClass, { m: number }> = {
  S: { m: 24 },
  W: { m: 25 },
  A: { m: 28 },
};

/** IS: log2 of the total number of keys, of the largest key, and of the number of buckets. */
export const IS_PARAMS: Record<NpbClass, { TOTAL_KEYS_LOG_2: number; MAX_KEY_LOG_2: number; NUM_BUCKETS_LOG_2: number }> = {
  S: { TOTAL_KEYS_LOG_2: 16, MAX_KEY_LOG_2: 11, NUM_BUCKETS_LOG_2: 9 },
  W: { TOTAL_KEYS_LOG_2: 20, MAX_KEY_LOG_2: 16, NUM_BUCKETS_LOG_2: 10 },
  A: { TOTAL_KEYS_LOG_2: 23, MAX_KEY_LOG_2: 19, NUM_BUCKETS_LOG_2: 10 },
};

/** CG: matrix order, nonzeros per generated row vector, outer iterations, eigenvalue shift, condition number. */
export const CG_PARAMS: Record<NpbClass, { na: number; nonzer: number; niter: number; shift: number; rcond: number }> = {
  S: { na: 1400, nonzer: 7, niter: 15, shift: 10, rcond: 1.0e-1 },
  W: { na: 7000, nonzer: 8, niter: 15, shift: 12, rcond: 1.0e-1 },
  A: { na: 14000, nonzer: 11, niter: 15, shift: 20, rcond: 1.0e-1 },
};

/**
 * The class named by the kernel's first argument, or an error message saying what is accepted.
 * Classes B and up are NPB classes this port does not offer: they need minutes to hours and gigabytes
 * on the 1–4 ranks these examples are meant for.
 */
export function parseClass(kernel: string, arg: string | undefined): { klass: NpbClass } | { error: string } {
  const name = (arg ?? '').toUpperCase();
  if ((CLASSES as readonly string[]).includes(name)) return { klass: name as NpbClass };
  const usage = `usage: vmcomm run -n <ranks> examples/npb/${kernel.toLowerCase()}.ts <class>   (class: ${CLASSES.join(', ')})`;
  if (arg === undefined) return { error: `${kernel}: no problem class given\n${usage}` };
  if (/^[B-F]$/.test(name)) return { error: `${kernel}: class ${name} is not offered by this port (only ${CLASSES.join(', ')}): it is sized for clusters\n${usage}` };
  return { error: `${kernel}: unknown problem class '${arg}'\n${usage}` };
}
