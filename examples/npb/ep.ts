// NPB 3.4 EP ("embarrassingly parallel"), ported from NPB3.4-MPI/EP/ep.f to vmcomm's MPI adapter.
//
//   npx vmcomm run -n 4 examples/npb/ep.ts S        (class S, W or A; any number of ranks)
//
// Each rank generates its share of 2^(m+1) uniform pseudorandom numbers in batches of 2^(mk+1),
// turns pairs of them into Gaussian deviates by the acceptance–rejection (Marsaglia polar) method,
// and counts them in square annuli; three MPI_Allreduce calls combine the sums and counts. The
// result is checked against NPB's verification values for the sums. Structure, names and order of
// operations follow ep.f so the two can be read side by side (Fortran's 1-based x(2*i-1), x(2*i)
// become x[2*i], x[2*i+1]; scalars passed to MPI travel in one-element typed arrays).
//
// Authors of the original: P. O. Frederickson, D. H. Bailey, A. C. Woo, R. F. Van der Wijngaart (NASA).
import { MPI } from 'vmcomm/mpi';
import { EP_PARAMS, parseClass } from './common/classes.js';
import { fmt1pD, fmtF, print_results, rjust } from './common/print_results.js';
import { randlc, vranlc } from './common/randdp.js';
import { check_timer_flag, print_timers, timer_clear, timer_read, timer_start, timer_stop } from './common/timers.js';
import { ep_verify } from './verify.js';

// ---- ep_data: class parameters, constants, storage --------------------------------------------
const mk = 16; //                    log2 of the batch size: does not affect the results
const nq = 10; //                    number of annuli counted
const a = 1220703125.0; //           multiplier, 5^13
const s = 271828183.0; //            seed
const t_total = 1, t_gpairs = 2, t_randn = 3, t_rcomm = 4, t_last = 4;

await MPI.Init();
const node = MPI.Comm_rank(MPI.COMM_WORLD);
const no_nodes = MPI.Comm_size(MPI.COMM_WORLD);
const root = 0;

const parsed = parseClass('EP', process.argv[2]);
if ('error' in parsed) {
  if (node === root) console.error(parsed.error);
  await MPI.Finalize();
  process.exit(1);
}
const klass = parsed.klass;
const m = EP_PARAMS[klass].m;
const mm = m - mk;
const nn = 2 ** mm;
const nk = 2 ** mk;
const x = new Float64Array(2 * nk);
const q = new Float64Array(nq);
const dum = Float64Array.of(1, 1, 1);

const flag = new Int32Array(1); // MPI_LOGICAL travels as an int
if (node === root) {
  console.log('\n NAS Parallel Benchmarks 3.4 -- EP Benchmark\n');
  console.log(` Number of random numbers generated: ${rjust((2 ** (m + 1)).toFixed(0), 15)}  (class ${klass})`);
  console.log(` Total number of processes:            ${rjust(no_nodes, 13)}\n`);
  flag[0] = check_timer_flag() ? 1 : 0;
}
await MPI.Bcast(flag, 1, MPI.INT, root, MPI.COMM_WORLD);
const timers_enabled = flag[0] !== 0;

// Compute the number of "batches" of random number pairs generated per processor. Adjust if the
// number of processors does not evenly divide the total number.
let np = Math.trunc(nn / no_nodes);
const no_large_nodes = nn % no_nodes;
const np_add = node < no_large_nodes ? 1 : 0;
np = np + np_add;

if (np === 0) {
  console.log(`Too many nodes:${no_nodes} ${nn}`);
  MPI.Abort(MPI.COMM_WORLD, 1);
}

// Call the random number generator functions and initialize the x-array to reduce the effects of
// paging on the timings. Also, call all mathematical functions that are used.
vranlc(0, dum.subarray(0, 1), dum[1], dum.subarray(2));
dum[0] = randlc(dum.subarray(1, 2), dum[2]);
x.fill(-1.0e99);
let Mops = Math.log(Math.sqrt(Math.abs(Math.max(1, 1))));

// Synchronize before placing time stamp.
for (let i = 1; i <= t_last; i++) timer_clear(i);
await MPI.Barrier(MPI.COMM_WORLD);
timer_start(t_total);

const t1 = new Float64Array(1); // seeds travel as one-element arrays (C: &t1)
const t2 = new Float64Array(1);
t1[0] = a;
vranlc(0, t1, a, x);

// Compute AN = A ^ (2 * NK) (mod 2^46).
t1[0] = a;
for (let i = 1; i <= mk + 1; i++) randlc(t1, t1[0]);

const an = t1[0];
let gc = 0;
let sx = 0;
let sy = 0;
q.fill(0);

// Each instance of this loop may be performed independently. We compute the k offsets separately to
// take into account the fact that some nodes have more numbers to generate than others.
const k_offset = np_add === 1 ? node * np - 1 : no_large_nodes * (np + 1) + (node - no_large_nodes) * np - 1;

for (let k = 1; k <= np; k++) {
  let kk = k_offset + k;
  t1[0] = s;
  t2[0] = an;

  // Find starting seed t1 for this kk.
  for (let i = 1; i <= 100; i++) {
    const ik = Math.trunc(kk / 2);
    if (2 * ik !== kk) randlc(t1, t2[0]);
    if (ik === 0) break;
    randlc(t2, t2[0]);
    kk = ik;
  }

  // Compute uniform pseudorandom numbers.
  if (timers_enabled) timer_start(t_randn);
  vranlc(2 * nk, t1, a, x);
  if (timers_enabled) timer_stop(t_randn);

  // Compute Gaussian deviates by acceptance-rejection method and tally counts in concentric square
  // annuli. This loop is not vectorizable.
  if (timers_enabled) timer_start(t_gpairs);
  for (let i = 0; i < nk; i++) {
    const x1 = 2.0 * x[2 * i] - 1.0;
    const x2 = 2.0 * x[2 * i + 1] - 1.0;
    const tt = x1 * x1 + x2 * x2;
    if (tt <= 1.0) {
      const f = Math.sqrt((-2.0 * Math.log(tt)) / tt);
      const t3 = x1 * f;
      const t4 = x2 * f;
      const l = Math.trunc(Math.max(Math.abs(t3), Math.abs(t4)));
      q[l] += 1.0;
      sx += t3;
      sy += t4;
    }
  }
  if (timers_enabled) timer_stop(t_gpairs);
}

// The original reduces into x (free by now); the counts are reduced in place.
if (timers_enabled) timer_start(t_rcomm);
await MPI.Allreduce(Float64Array.of(sx), x, 1, MPI.DOUBLE, MPI.SUM, MPI.COMM_WORLD);
sx = x[0];
await MPI.Allreduce(Float64Array.of(sy), x, 1, MPI.DOUBLE, MPI.SUM, MPI.COMM_WORLD);
sy = x[0];
await MPI.Allreduce(MPI.IN_PLACE, q, nq, MPI.DOUBLE, MPI.SUM, MPI.COMM_WORLD);
if (timers_enabled) timer_stop(t_rcomm);

for (let i = 0; i < nq; i++) gc += q[i];

timer_stop(t_total);
const tm1 = Float64Array.of(timer_read(t_total));
await MPI.Allreduce(MPI.IN_PLACE, tm1, 1, MPI.DOUBLE, MPI.MAX, MPI.COMM_WORLD);
const tm = tm1[0];

if (node === root) {
  const nit = 0;
  const verified = ep_verify(m, sx, sy);
  Mops = 2 ** (m + 1) / tm / 1000000.0;

  const lines = ['EP Benchmark Results:', '', `CPU Time =${fmtF(tm, 10, 4)}`, `N = 2^${rjust(m, 5)}`];
  lines.push(`No. Gaussian Pairs =${rjust(gc.toFixed(0) + '.', 15)}`);
  lines.push(`Sums = ${fmt1pD(sx, 25, 15)}${fmt1pD(sy, 25, 15)}`, 'Counts:');
  for (let i = 0; i < nq; i++) lines.push(`${rjust(i, 3)}${rjust(q[i].toFixed(0) + '.', 15)}`);
  console.log(lines.join('\n'));

  print_results('EP', klass, m + 1, 0, 0, nit, no_nodes, no_nodes, tm, Mops, 'Random numbers generated', verified);
}

if (timers_enabled) {
  const t_recs = ['total', 'gpairs', 'randn', 'rcomm', ' totcomp', ' totcomm'];
  const t1m = new Float64Array(t_last + 2);
  for (let i = 1; i <= t_last; i++) t1m[i - 1] = timer_read(i);
  t1m[t_last + 1] = t1m[t_rcomm - 1];
  t1m[t_last] = t1m[t_total - 1] - t1m[t_last + 1];
  await print_timers(t1m, t_recs, no_nodes, node);
}

await MPI.Finalize();
