// NPB's final report (common/c_print_results.c and print_results.f), line for line: every value is
// right-aligned to column 43 so that scripts written for NPB output parse this port's output too.
// The "Compile options" block of the original has no meaning for a TypeScript program; it is replaced
// by the run's environment.
import { createRequire } from 'node:module';

/** Right-aligns `s` in `width` columns (Fortran's `aN`/`iN`, C's `%Ns`). */
export function rjust(s: string | number, width: number): string {
  return String(s).padStart(width);
}

/** Fortran `fW.D` / C `%W.Df`. */
export function fmtF(x: number, width: number, digits: number): string {
  return x.toFixed(digits).padStart(width);
}

/**
 * Fortran `1pDW.D` (what EP prints its sums with): one digit before the point, `digits` after, and a
 * two-digit exponent with a D, e.g. `-3.247834652034740D+03`.
 */
export function fmt1pD(x: number, width: number, digits: number): string {
  const [mantissa, exponent] = x.toExponential(digits).split('e');
  const e = Number(exponent);
  return `${mantissa}D${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`.padStart(width);
}

/** Fortran `EW.D` (what CG prints ||r|| and zeta with): `0.ddddE+ee`, the mantissa in [0.1, 1). */
export function fmtE(x: number, width: number, digits: number): string {
  if (x === 0 || !Number.isFinite(x)) {
    return (Number.isFinite(x) ? `0.${'0'.repeat(digits)}E+00` : String(x)).padStart(width);
  }
  const [mantissa, exponent] = Math.abs(x).toExponential(digits - 1).split('e');
  const e = Number(exponent) + 1;
  const sign = x < 0 ? '-' : '';
  return `${sign}0.${mantissa.replace('.', '')}E${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`.padStart(width);
}

function today(): string {
  const d = new Date();
  const month = d.toLocaleString('en-US', { month: 'short' });
  return `${String(d.getDate()).padStart(2, '0')} ${month} ${d.getFullYear()}`;
}

function vmcommVersion(): string {
  try {
    return (createRequire(import.meta.url)('vmcomm/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The NPB version these kernels were ported from. */
export const NPBVERSION = '3.4';

/**
 * Prints NPB's report. `n2 = n3 = 0` means a one-number size (`n1`; EP's is 2^n1); `n3 = 0` with
 * `n2 > 0` prints `n1 * n2` (IS). `verified` is the outcome of the kernel's own verification.
 */
export function print_results(
  name: string,
  klass: string,
  n1: number,
  n2: number,
  n3: number,
  niter: number,
  nprocs_compiled: number,
  nprocs_total: number,
  t: number,
  mops: number,
  optype: string,
  verified: boolean,
): void {
  const out: string[] = [];
  out.push('', '', ` ${name} Benchmark Completed.`);
  out.push(` Class           = ${rjust('', 12)}${rjust(klass, 12)}`);
  if (n2 === 0 && n3 === 0) {
    // EP's size (2^(m+1)) does not fit a 32-bit integer for the large classes; NPB prints it as a
    // float without its decimal point.
    const size = name === 'EP' ? (2 ** n1).toFixed(0) : String(n1);
    out.push(` Size            = ${rjust('', 12)}${rjust(size, 12)}`);
  } else if (n3 === 0) {
    out.push(` Size            = ${rjust('', 12)}${rjust(n1 * n2, 12)}`);
  } else {
    out.push(` Size            = ${rjust('', 9)} ${rjust(n1, 4)}x${rjust(n2, 4)}x${rjust(n3, 4)}`);
  }
  out.push(` Iterations      = ${rjust('', 12)}${rjust(niter, 12)}`);
  out.push(` Time in seconds = ${rjust('', 12)}${fmtF(t, 12, 2)}`);
  out.push(` Total processes = ${rjust('', 12)}${rjust(nprocs_total, 12)}`);
  if (nprocs_compiled !== 0) out.push(` Active procs    = ${rjust('', 12)}${rjust(nprocs_compiled, 12)}`);
  out.push(` Mop/s total     = ${rjust('', 12)}${fmtF(mops, 12, 2)}`);
  out.push(` Mop/s/process   = ${rjust('', 12)}${fmtF(mops / nprocs_total, 12, 2)}`);
  out.push(` Operation type  = ${rjust(optype, 24)}`);
  out.push(` Verification    = ${rjust('', 12)}${verified ? '  SUCCESSFUL' : 'UNSUCCESSFUL'}`);
  out.push(` Version         = ${rjust('', 12)}${rjust(NPBVERSION, 12)}`);
  out.push(` Run date        = ${rjust('', 12)}${rjust(today(), 12)}`);
  out.push('', ' Run options:');
  out.push(`    RUNTIME      = Node.js ${process.version}`);
  out.push(`    MPI          = vmcomm ${vmcommVersion()} (vmcomm/mpi)`);
  out.push(`    RAND         = randdp`);
  // (NPB's footer asks to mail results to the NPB team; results of this port are not NPB results.)
  out.push('');
  console.log(out.join('\n'));
}
