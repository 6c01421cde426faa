// The verification rules and NPB's official reference values for the three kernels, kept apart from
// the programs (as NPB 3.4.x keeps EP's in EP/verify.f90) so that tests can show that a wrong result
// is reported UNSUCCESSFUL without running a job. The values are NPB 3.4's, copied from ep.f, is.c
// and cg.f; the kernels compute the numbers they are compared with.
import type { NpbClass } from './common/classes.js';

// ---- EP (ep.f) --------------------------------------------------------------------------------

/**
 * EP: the sums of the Gaussian deviates must match NPB's values to a relative 1e-8. `m` is the class's
 * log2 of the number of pairs; an m NPB has no reference for, or a NaN sum, does not verify.
 */
export function ep_verify(m: number, sx: number, sy: number): boolean {
  const epsilon = 1.0e-8;
  let sx_verify_value: number, sy_verify_value: number;
  if (m === 24) {
    sx_verify_value = -3.24783465203474e3;
    sy_verify_value = -6.958407078382297e3;
  } else if (m === 25) {
    sx_verify_value = -2.863319731645753e3;
    sy_verify_value = -6.320053679109499e3;
  } else if (m === 28) {
    sx_verify_value = -4.295875165629892e3;
    sy_verify_value = -1.580732573678431e4;
  } else if (m === 30) {
    sx_verify_value = 4.033815542441498e4;
    sy_verify_value = -2.660669192809235e4;
  } else if (m === 32) {
    sx_verify_value = 4.764367927995374e4;
    sy_verify_value = -8.084072988043731e4;
  } else {
    return false;
  }
  const sx_err = Math.abs((sx - sx_verify_value) / sx_verify_value);
  const sy_err = Math.abs((sy - sy_verify_value) / sy_verify_value);
  if (Number.isNaN(sx_err) || Number.isNaN(sy_err)) return false;
  return sx_err <= epsilon && sy_err <= epsilon;
}

// ---- IS (is.c) --------------------------------------------------------------------------------

export const TEST_ARRAY_SIZE = 5;
export const MAX_ITERATIONS = 10;

/** Partial verification: where five keys sit in the unsorted sequence, and their ranks (iteration 0). */
export const IS_TEST_ARRAYS: Record<NpbClass, { test_index_array: readonly number[]; test_rank_array: readonly number[] }> = {
  S: { test_index_array: [48427, 17148, 23627, 62548, 4431], test_rank_array: [0, 18, 346, 64917, 65463] },
  W: { test_index_array: [357773, 934767, 875723, 898999, 404505], test_rank_array: [1249, 11698, 1039987, 1043896, 1048018] },
  A: { test_index_array: [2112377, 662041, 5336171, 3642833, 4250760], test_rank_array: [104, 17523, 123928, 8288932, 8388264] },
};

/**
 * The rank test key `i` must have in `iteration`, from its rank `test_rank` in
 * IS_TEST_ARRAYS[klass].test_rank_array: each iteration changes two keys, which moves the test keys'
 * ranks by a class-specific amount (the `switch (CLASS)` in is.c's rank()).
 */
export function is_test_rank(klass: NpbClass, test_rank: number, i: number, iteration: number): number {
  switch (klass) {
    case 'S':
      if (i <= 2) test_rank += iteration;
      else test_rank -= iteration;
      break;
    case 'W':
      if (i < 2) test_rank += iteration - 2;
      else test_rank -= iteration;
      break;
    case 'A':
      if (i <= 2) test_rank += iteration - 1;
      else test_rank -= iteration - 1;
      break;
  }
  return test_rank;
}

/**
 * Full verification's count (is.c's full_verify()): keys out of order in this rank's sorted slice,
 * counting the previous rank's largest key (`neighbour_max`, or undefined on rank 0) against the first.
 */
export function is_keys_out_of_sort(key_array: Int32Array, total_local_keys: number, neighbour_max: number | undefined): number {
  let j = 0;
  if (neighbour_max !== undefined && total_local_keys > 0 && neighbour_max > key_array[0]) j++;
  for (let i = 1; i < total_local_keys; i++) if (key_array[i - 1] > key_array[i]) j++;
  return j;
}

/**
 * IS verifies when every partial test passed on every iteration (5 per iteration) and every rank's
 * slice was sorted (1 per rank): is.c's `passed_verification == 5*MAX_ITERATIONS + comm_size`.
 */
export function is_verified(passed_verification: number, comm_size: number): boolean {
  return passed_verification === TEST_ARRAY_SIZE * MAX_ITERATIONS + comm_size;
}

// ---- CG (cg.f) --------------------------------------------------------------------------------

/** NPB's reference zeta (the estimate of the largest eigenvalue's shifted inverse) per class. */
export const CG_ZETA_VERIFY_VALUE: Record<NpbClass, number> = {
  S: 8.5971775078648,
  W: 10.362595087124,
  A: 17.130235054029,
};

/** CG: zeta must match NPB's value to a relative 1e-10. Returns the error too, which CG prints. */
export function cg_verify(klass: NpbClass, zeta: number): { verified: boolean; err: number } {
  const epsilon = 1.0e-10;
  const zeta_verify_value = CG_ZETA_VERIFY_VALUE[klass];
  const err = Math.abs(zeta - zeta_verify_value) / zeta_verify_value;
  return { verified: !Number.isNaN(err) && err <= epsilon, err };
}
