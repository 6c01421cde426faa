// The NAS Parallel Benchmarks kernels ported with the MPI adapter (examples/npb/): class S of EP, IS
// and CG at 1, 2 and 4 ranks must print NPB's report with "Verification = SUCCESSFUL" — the kernels
// compare what they computed with NPB's official values. Then: a wrong result is reported
// UNSUCCESSFUL (each kernel's verification rule fed a wrong value), and the rank-count and class
// checks refuse with a clear message. Classes W and A take too long for CI; see "Porting an MPI program" in README.md.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { vmcomm } from '../helpers/processes.js';
import { print_results } from '../../examples/npb/common/print_results.js';
import {
  CG_ZETA_VERIFY_VALUE,
  IS_TEST_ARRAYS,
  MAX_ITERATIONS,
  TEST_ARRAY_SIZE,
  cg_verify,
  ep_verify,
  is_keys_out_of_sort,
  is_test_rank,
  is_verified,
} from '../../examples/npb/verify.js';

/** NPB's exact report line (print_results.f / c_print_results.c). */
const SUCCESSFUL = ' Verification    =               SUCCESSFUL';
const UNSUCCESSFUL = ' Verification    =             UNSUCCESSFUL';

/** Class S: the report's size and iteration count per kernel (npbparams.h for class S). */
const CLASS_S = {
  ep: { size: 33554432, iterations: 0 }, // 2^(24+1) random numbers
  is: { size: 65536, iterations: 10 }, //  2^16 keys
  cg: { size: 1400, iterations: 15 }, //   order of the matrix
} as const;

/** A report line: the label, then the value right-aligned to column 43. */
function reportLine(label: string, value: string | number): string {
  return ` ${label.padEnd(16)}= ${String(value).padStart(24)}`;
}

describe('NPB kernels, class S, verify at 1, 2 and 4 ranks', () => {
  for (const kernel of ['ep', 'is', 'cg'] as const) {
    for (const n of [1, 2, 4]) {
      it(`${kernel.toUpperCase()} class S on ${n} rank(s): SUCCESSFUL`, async () => {
        const out = await vmcomm(['run', '-n', String(n), `examples/npb/${kernel}.ts`, 'S'], undefined, 90_000);
        if (out.code !== 0) throw new Error(`exited ${out.code}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
        const report = out.stdout.split('\n');
        expect(report).toContain(` ${kernel.toUpperCase()} Benchmark Completed.`);
        expect(report).toContain(reportLine('Class', 'S'));
        expect(report).toContain(reportLine('Size', CLASS_S[kernel].size));
        expect(report).toContain(reportLine('Iterations', CLASS_S[kernel].iterations));
        expect(report).toContain(reportLine('Total processes', n));
        expect(report.some((l) => /^ Time in seconds = +\d+\.\d\d$/.test(l))).toBe(true);
        expect(report.some((l) => /^ Mop\/s total {5}= +\d+\.\d\d$/.test(l))).toBe(true);
        expect(report).toContain(SUCCESSFUL);
        expect(out.stdout).not.toContain('UNSUCCESSFUL');
        // The report comes from rank 0 only.
        expect(out.stdout.split(SUCCESSFUL)).toHaveLength(2);
      }, 100_000);
    }
  }
});

describe('NPB kernels refuse what the originals refuse', () => {
  it('CG and IS on 3 ranks: not a power of two, said plainly, non-zero exit', async () => {
    for (const kernel of ['cg', 'is']) {
      const out = await vmcomm(['run', '-n', '3', `examples/npb/${kernel}.ts`, 'S']);
      expect(out.stdout).toContain('ERROR: Number of processes (3) is not a power of two (2?)');
      expect(out.stdout).not.toContain('Verification');
      expect(out.code).not.toBe(0);
    }
  });

  it('a class other than S, W or A: a usage message on stderr, non-zero exit', async () => {
    const out = await vmcomm(['run', '-n', '1', 'examples/npb/ep.ts', 'C']);
    expect(out.stderr).toContain('EP: class C is not offered by this port (only S, W, A)');
    expect(out.stderr).toContain('usage: vmcomm run -n <ranks> examples/npb/ep.ts <class>');
    expect(out.code).not.toBe(0);
  });
});

describe('a wrong result is reported UNSUCCESSFUL', () => {
  let printed: string[];
  beforeEach(() => {
    printed = [];
    vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
  });
  afterEach(() => vi.restoreAllMocks());

  it('EP: sums off by more than 1e-8 (relative) fail, the class S sums pass', () => {
    const sx = -3.24783465203474e3;
    const sy = -6.958407078382297e3;
    expect(ep_verify(24, sx, sy)).toBe(true);
    expect(ep_verify(24, sx * (1 + 5e-9), sy)).toBe(true);
    expect(ep_verify(24, sx * (1 + 2e-8), sy)).toBe(false);
    expect(ep_verify(24, sx, sy + 1)).toBe(false);
    expect(ep_verify(24, Number.NaN, sy)).toBe(false);
    expect(ep_verify(25, sx, sy)).toBe(false); // class W's values differ
    expect(ep_verify(23, sx, sy)).toBe(false); // no reference for this size
  });

  it('IS: a wrong key rank, a key out of order, or one missing pass fails', () => {
    // Partial verification: class S test key 0 has rank 0 + iteration, key 3 rank 64917 - iteration.
    expect(is_test_rank('S', IS_TEST_ARRAYS.S.test_rank_array[0], 0, 4)).toBe(4);
    expect(is_test_rank('S', IS_TEST_ARRAYS.S.test_rank_array[3], 3, 4)).toBe(64913);
    expect(is_test_rank('W', IS_TEST_ARRAYS.W.test_rank_array[0], 0, 4)).toBe(1249 + 2);
    expect(is_test_rank('A', IS_TEST_ARRAYS.A.test_rank_array[4], 4, 4)).toBe(8388264 - 3);
    expect(is_test_rank('S', IS_TEST_ARRAYS.S.test_rank_array[0], 0, 4)).not.toBe(5);
    // Full verification counts keys out of order, within a rank and against the previous rank's largest.
    const sorted = Int32Array.of(1, 2, 2, 5, 9);
    expect(is_keys_out_of_sort(sorted, 5, undefined)).toBe(0);
    expect(is_keys_out_of_sort(sorted, 5, 1)).toBe(0);
    expect(is_keys_out_of_sort(sorted, 5, 3)).toBe(1);
    expect(is_keys_out_of_sort(Int32Array.of(1, 5, 2, 9), 4, undefined)).toBe(1);
    // Every one of 5 tests × 10 iterations, plus one sorted slice per rank.
    expect(is_verified(TEST_ARRAY_SIZE * MAX_ITERATIONS + 4, 4)).toBe(true);
    expect(is_verified(TEST_ARRAY_SIZE * MAX_ITERATIONS + 3, 4)).toBe(false);
    expect(is_verified(TEST_ARRAY_SIZE * MAX_ITERATIONS - 1 + 4, 4)).toBe(false);
  });

  it('CG: zeta off by more than 1e-10 (relative) fails', () => {
    const zeta = CG_ZETA_VERIFY_VALUE.S;
    expect(cg_verify('S', zeta).verified).toBe(true);
    expect(cg_verify('S', zeta * (1 + 5e-11)).verified).toBe(true);
    expect(cg_verify('S', zeta * (1 + 2e-10)).verified).toBe(false);
    expect(cg_verify('W', zeta).verified).toBe(false);
    expect(cg_verify('S', Number.NaN).verified).toBe(false);
  });

  it('the report prints UNSUCCESSFUL for a run that did not verify', () => {
    print_results('CG', 'S', 1400, 0, 0, 15, 1, 1, 0.5, 100, '          floating point', cg_verify('S', 8.6).verified);
    const report = printed.join('\n').split('\n');
    expect(report).toContain(UNSUCCESSFUL);
    expect(report).not.toContain(SUCCESSFUL);
    expect(report).toContain(reportLine('Class', 'S'));
    expect(report).toContain(reportLine('Size', 1400));
  });
});
