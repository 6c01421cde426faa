// NPB's portable pseudorandom number generator (common/randdp.c in NPB 3.4), ported exactly.
//
//   x_{k+1} = a * x_k  (mod 2^46)
//
// All arithmetic is done in doubles, splitting each 46-bit integer into 23-bit halves so that every
// product is exact (< 2^53): the sequence is bit-identical on any IEEE-754 machine, which is what
// makes NPB's verification values meaningful. JavaScript numbers are IEEE-754 doubles and V8 never
// fuses a*b+c, so the port reproduces the C results bit for bit. C's `(int) t` truncation is
// `Math.trunc(t)` (every operand here is non-negative and below 2^31).
//
// C passes the seed by address (`double *x`) and updates it; here the seed lives in element 0 of a
// one-element Float64Array, the TypeScript stand-in for `&x`.

const r23 = 1.1920928955078125e-7; // 2^-23
const r46 = r23 * r23; //              2^-46
const t23 = 8.388608e6; //             2^23
const t46 = t23 * t23; //              2^46

/**
 * Returns a uniform pseudorandom double in (0, 1) and advances the seed `x[0]` to the next element
 * of the sequence. `a` is the multiplier (NPB uses 5^13 = 1220703125). `x[0]` and `a` must be odd
 * integers in (1, 2^46).
 */
export function randlc(x: Float64Array, a: number): number {
  // Break A into two parts such that A = 2^23 * A1 + A2.
  let t1 = r23 * a;
  const a1 = Math.trunc(t1);
  const a2 = a - t23 * a1;

  // Break X into two parts such that X = 2^23 * X1 + X2, compute
  // Z = A1 * X2 + A2 * X1  (mod 2^23), and then
  // X = 2^23 * Z + A2 * X2  (mod 2^46).
  t1 = r23 * x[0];
  const x1 = Math.trunc(t1);
  const x2 = x[0] - t23 * x1;
  t1 = a1 * x2 + a2 * x1;
  const t2 = Math.trunc(r23 * t1);
  const z = t1 - t23 * t2;
  const t3 = t23 * z + a2 * x2;
  const t4 = Math.trunc(r46 * t3);
  x[0] = t3 - t46 * t4;
  return r46 * x[0];
}

/**
 * Generates `n` uniform pseudorandom doubles into `y[0 .. n-1]` (pass `y.subarray(i)` for C's
 * `&y[i]`), advancing the seed `x[0]` as `n` calls of {@link randlc} would.
 */
export function vranlc(n: number, x: Float64Array, a: number, y: Float64Array): void {
  let t1 = r23 * a;
  const a1 = Math.trunc(t1);
  const a2 = a - t23 * a1;
  let xv = x[0];
  for (let i = 0; i < n; i++) {
    t1 = r23 * xv;
    const x1 = Math.trunc(t1);
    const x2 = xv - t23 * x1;
    t1 = a1 * x2 + a2 * x1;
    const t2 = Math.trunc(r23 * t1);
    const z = t1 - t23 * t2;
    const t3 = t23 * z + a2 * x2;
    const t4 = Math.trunc(r46 * t3);
    xv = t3 - t46 * t4;
    y[i] = r46 * xv;
  }
  x[0] = xv;
}
