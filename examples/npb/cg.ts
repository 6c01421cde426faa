// NPB 3.4 CG (conjugate gradient), ported from NPB3.4-MPI/CG/cg.f to vmcomm's MPI adapter.
//
//   npx vmcomm run -n 4 examples/npb/cg.ts S        (class S, W or A; 1, 2, 4, 8 … ranks)
//
// Estimates the smallest eigenvalue of a large sparse symmetric positive-definite matrix by inverse
// iteration, each step solving a linear system with 25 iterations of unpreconditioned conjugate
// gradient. The matrix is split over a 2-D grid of ranks (num_proc_rows × num_proc_cols, a power of
// two with cols = rows or 2·rows); the sums across a process row are done by recursive halving with
// point-to-point messages (MPI_Irecv + MPI_Send + MPI_Wait, as the original does it, rather than
// MPI_Allreduce), and the transpose exchange sends each rank's slice of the result to the rank that
// owns the matching columns.
//
// The port keeps cg.f's routines (initialize_mpi, setup_proc_info, setup_submatrix_info, conj_grad,
// makea, sparse, sprnvc, icnvrt, vecset), its module variables, and its 1-based indexing: every
// Fortran array a(1:n) is a typed array of n+1 elements whose element 0 is unused, so index
// arithmetic reads as in the original. Where Fortran passes an array element as a buffer, like
// `q(reduce_recv_starts(i))`, the port passes `q.subarray(reduce_recv_starts[i])`; where it passes an
// array section to a routine that indexes it from 1, like `iv(n+1)`, the port passes
// `iv.subarray(n)` (element 1 of the view is iv[n+1]).
//
// Authors of the original: M. Yarrow, C. Kuszmaul, R. F. Van der Wijngaart, H. Jin (NASA).
import { MPI } from 'vmcomm/mpi';
import { CG_PARAMS, parseClass, type NpbClass } from './common/classes.js';
import { fmtE, fmtF, print_results, rjust } from './common/print_results.js';
import { randlc } from './common/randdp.js';
import { check_timer_flag, print_timers, timer_clear, timer_read, timer_start, timer_stop } from './common/timers.js';
import { cg_verify, CG_ZETA_VERIFY_VALUE } from './verify.js';

// ---- module timing ----------------------------------------------------------------------------
const t_total = 1, t_conjg = 2, t_rcomm = 3, t_ncomm = 4, t_last = 4;
let timeron = false;

// ---- module mpinpb ----------------------------------------------------------------------------
let me = 0;
let nprocs = 1;
let root = 0;

// ---- module cg_data ---------------------------------------------------------------------------
let na = 0, nonzer = 0, niter = 0, shift = 0, rcond = 0; // npbparams.h
// main_int_mem (all arrays are sized in alloc_space)
let colidx = new Int32Array(0), rowstr = new Int32Array(0), iv = new Int32Array(0), arow = new Int32Array(0), acol = new Int32Array(0);
// main_flt_mem
let v = new Float64Array(0), aelt = new Float64Array(0), a = new Float64Array(0);
let x = new Float64Array(0), z = new Float64Array(0), p = new Float64Array(0), q = new Float64Array(0), r = new Float64Array(0), w = new Float64Array(0);
// urando: the generator's multiplier and its seed (a one-element array: randlc updates it in place)
let amult = 0;
const tran = new Float64Array(1);
// process grid
let num_procs = 0, num_proc_rows = 0, num_proc_cols = 0;
// number of nonzeros after partition
let nz = 0;
// partit_size
let naa = 0, nzz = 0, npcols = 0, nprows = 0, proc_col = 0, proc_row = 0;
let firstrow = 0, lastrow = 0, firstcol = 0, lastcol = 0;
let exch_proc = 0, exch_recv_length = 0, send_start = 0, send_len = 0;
// work arrays for reduction
let l2npcols = 0;
let reduce_exch_proc = new Int32Array(0), reduce_send_starts = new Int32Array(0), reduce_send_lengths = new Int32Array(0);
let reduce_recv_starts = new Int32Array(0), reduce_recv_lengths = new Int32Array(0);

// Scalars exchanged by the reductions travel in one-element arrays.
const sum1 = new Float64Array(1);
const recv1 = new Float64Array(1);

// ---------------------------------------------------------------------------------------------
async function initialize_mpi(): Promise<void> {
  await MPI.Init();
  me = MPI.Comm_rank(MPI.COMM_WORLD);
  nprocs = MPI.Comm_size(MPI.COMM_WORLD);
  root = 0;

  const flag = new Int32Array(1);
  if (me === root) flag[0] = check_timer_flag() ? 1 : 0;
  await MPI.Bcast(flag, 1, MPI.INT, 0, MPI.COMM_WORLD);
  timeron = flag[0] !== 0;
}

// ---------------------------------------------------------------------------------------------
async function setup_proc_info(): Promise<void> {
  // set up dimension parameters after partition
  const log_p = Math.trunc(Math.log(nprocs + 0.0001) / Math.log(2.0));
  num_proc_rows = Math.trunc(log_p / 2);
  num_proc_cols = num_proc_rows;
  if (num_proc_cols + num_proc_rows !== log_p) num_proc_cols = num_proc_cols + 1;
  num_proc_cols = 2 ** num_proc_cols;
  num_proc_rows = 2 ** num_proc_rows;

  // num_procs must be a power of 2, and num_procs=num_proc_cols*num_proc_rows. When num_procs is not
  // square, then num_proc_cols must be = 2*num_proc_rows.
  num_procs = num_proc_cols * num_proc_rows;

  // First, number of procs must be power of two.
  if (nprocs !== num_procs) {
    if (me === root) console.log(`\nERROR: Number of processes (${nprocs}) is not a power of two (${num_procs}?)\n`);
    await MPI.Barrier(MPI.COMM_WORLD);
    MPI.Abort(MPI.COMM_WORLD, 1);
  }

  npcols = num_proc_cols;
  nprows = num_proc_rows;
}

// ---------------------------------------------------------------------------------------------
// alloc_space: allocate space dynamically for data arrays (1-based: one element more than Fortran).
function alloc_space(): void {
  // set up dimension parameters after partition
  const naz =
    Math.trunc((na * (nonzer + 1)) / num_procs) * (nonzer + 1) + nonzer + Math.trunc((na * (nonzer + 2 + Math.trunc(num_procs / 256))) / num_proc_cols);
  nz = naz;
  naa = Math.trunc(na / num_proc_rows);
  nzz = nz;

  colidx = new Int32Array(nz + 1);
  rowstr = new Int32Array(na + 1 + 1);
  iv = new Int32Array(2 * na + 1 + 1);
  arow = new Int32Array(nz + 1);
  acol = new Int32Array(nz + 1);

  v = new Float64Array(na + 1 + 1);
  aelt = new Float64Array(nz + 1);
  a = new Float64Array(nz + 1);
  x = new Float64Array(naa + 2 + 1);
  z = new Float64Array(naa + 2 + 1);
  p = new Float64Array(naa + 2 + 1);
  q = new Float64Array(naa + 2 + 1);
  r = new Float64Array(naa + 2 + 1);
  w = new Float64Array(naa + 2 + 1);

  reduce_exch_proc = new Int32Array(num_proc_cols + 1);
  reduce_send_starts = new Int32Array(num_proc_cols + 1);
  reduce_send_lengths = new Int32Array(num_proc_cols + 1);
  reduce_recv_starts = new Int32Array(num_proc_cols + 1);
  reduce_recv_lengths = new Int32Array(num_proc_cols + 1);
}

// ---------------------------------------------------------------------------------------------
function setup_submatrix_info(): void {
  let col_size: number, row_size: number;

  proc_row = Math.trunc(me / npcols);
  proc_col = me - proc_row * npcols;

  // If na evenly divisible by npcols, then it is evenly divisible by nprows.
  if (Math.trunc(na / npcols) * npcols === na) {
    col_size = Math.trunc(na / npcols);
    firstcol = proc_col * col_size + 1;
    lastcol = firstcol - 1 + col_size;
    row_size = Math.trunc(na / nprows);
    firstrow = proc_row * row_size + 1;
    lastrow = firstrow - 1 + row_size;
    // If na not evenly divisible by npcols, then first subdivide for nprows and then, if npcols not
    // equal to nprows (i.e., not a sq number of procs), get col subdivisions by dividing by 2 each row
    // subdivision.
  } else {
    const rem_rows = na - Math.trunc(na / nprows) * nprows;
    if (proc_row < rem_rows) {
      row_size = Math.trunc(na / nprows) + 1;
      firstrow = proc_row * row_size + 1;
      lastrow = firstrow - 1 + row_size;
    } else {
      row_size = Math.trunc(na / nprows);
      firstrow = rem_rows * (row_size + 1) + (proc_row - rem_rows) * row_size + 1;
      lastrow = firstrow - 1 + row_size;
    }
    if (npcols === nprows) {
      const rem_cols = na - Math.trunc(na / npcols) * npcols;
      if (proc_col < rem_cols) {
        col_size = Math.trunc(na / npcols) + 1;
        firstcol = proc_col * col_size + 1;
        lastcol = firstcol - 1 + col_size;
      } else {
        col_size = Math.trunc(na / npcols);
        firstcol = rem_cols * (col_size + 1) + (proc_col - rem_cols) * col_size + 1;
        lastcol = firstcol - 1 + col_size;
      }
    } else {
      const half = Math.trunc(npcols / 2);
      const rem_cols = na - Math.trunc(na / half) * half;
      if (Math.trunc(proc_col / 2) < rem_cols) {
        col_size = Math.trunc(na / half) + 1;
        firstcol = Math.trunc(proc_col / 2) * col_size + 1;
        lastcol = firstcol - 1 + col_size;
      } else {
        col_size = Math.trunc(na / half);
        firstcol = rem_cols * (col_size + 1) + (Math.trunc(proc_col / 2) - rem_cols) * col_size + 1;
        lastcol = firstcol - 1 + col_size;
      }
      if (me % 2 === 0) {
        lastcol = firstcol - 1 + Math.trunc((col_size - 1) / 2) + 1;
      } else {
        firstcol = firstcol + Math.trunc((col_size - 1) / 2) + 1;
        lastcol = firstcol - 1 + Math.trunc(col_size / 2);
      }
    }
  }

  if (npcols === nprows) {
    send_start = 1;
    send_len = lastrow - firstrow + 1;
  } else if (me % 2 === 0) {
    send_start = 1;
    send_len = Math.trunc((1 + lastrow - firstrow + 1) / 2);
  } else {
    send_start = Math.trunc((1 + lastrow - firstrow + 1) / 2) + 1;
    send_len = Math.trunc((lastrow - firstrow + 1) / 2);
  }

  // Transpose exchange processor.
  if (npcols === nprows) {
    exch_proc = (me % nprows) * nprows + Math.trunc(me / nprows);
  } else {
    exch_proc = 2 * ((Math.trunc(me / 2) % nprows) * nprows + Math.trunc(Math.trunc(me / 2) / nprows)) + (me % 2);
  }

  let i = Math.trunc(npcols / 2);
  l2npcols = 0;
  while (i > 0) {
    l2npcols = l2npcols + 1;
    i = Math.trunc(i / 2);
  }

  // Set up the reduce phase schedules...
  let div_factor = npcols;
  for (let i = 1; i <= l2npcols; i++) {
    const j = ((proc_col + Math.trunc(div_factor / 2)) % div_factor) + Math.trunc(proc_col / div_factor) * div_factor;
    reduce_exch_proc[i] = proc_row * npcols + j;
    div_factor = Math.trunc(div_factor / 2);
  }

  for (let i = l2npcols; i >= 1; i--) {
    if (nprows === npcols) {
      reduce_send_starts[i] = send_start;
      reduce_send_lengths[i] = send_len;
      reduce_recv_lengths[i] = lastrow - firstrow + 1;
    } else {
      reduce_recv_lengths[i] = send_len;
      if (i === l2npcols) {
        reduce_send_lengths[i] = lastrow - firstrow + 1 - send_len;
        if (Math.trunc(me / 2) * 2 === me) reduce_send_starts[i] = send_start + send_len;
        else reduce_send_starts[i] = 1;
      } else {
        reduce_send_lengths[i] = send_len;
        reduce_send_starts[i] = send_start;
      }
    }
    reduce_recv_starts[i] = send_start;
  }

  exch_recv_length = lastcol - firstcol + 1;
}

// ---------------------------------------------------------------------------------------------
// Sum `sum` over the process row by recursive halving, as cg.f does it (equivalent to an
// MPI_Allreduce over the row). cg.f writes this loop out at every use; the message pattern is the
// same each time, so the port has it once.
async function row_sum(sum: number): Promise<number> {
  for (let i = 1; i <= l2npcols; i++) {
    sum1[0] = sum;
    const request = MPI.Irecv(recv1, 1, MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Send(sum1, 1, MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Wait(request);
    sum = sum + recv1[0];
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Floating point arrays here are named as in NPB1 spec discussion of CG algorithm. Returns rnorm
// (meaningful on root only).
async function conj_grad(): Promise<number> {
  const cgitmax = 25;
  let rnorm = 0;
  let d: number, sum: number, rho: number, rho0: number, alpha: number, beta: number;

  if (timeron) timer_start(t_conjg);

  // Initialize the CG algorithm:
  for (let j = 1; j <= naa + 1; j++) {
    q[j] = 0.0;
    z[j] = 0.0;
    r[j] = x[j];
    p[j] = r[j];
    w[j] = 0.0;
  }

  // rho = r.r
  // Now, obtain the norm of r: First, sum squares of r elements locally...
  sum = 0.0;
  for (let j = 1; j <= lastcol - firstcol + 1; j++) sum = sum + r[j] * r[j];

  // Exchange and sum with procs identified in reduce_exch_proc (This is equivalent to
  // mpi_allreduce.) Sum the partial sums of rho, leaving rho on all processors.
  if (timeron) timer_start(t_rcomm);
  rho = await row_sum(sum);
  if (timeron) timer_stop(t_rcomm);

  // The conj grad iteration loop.
  for (let cgit = 1; cgit <= cgitmax; cgit++) {
    // q = A.p
    // The partition submatrix-vector multiply: use workspace w.
    for (let j = 1; j <= lastrow - firstrow + 1; j++) {
      sum = 0.0;
      for (let k = rowstr[j]; k <= rowstr[j + 1] - 1; k++) sum = sum + a[k] * p[colidx[k]];
      w[j] = sum;
    }

    // Sum the partition submatrix-vec A.p's across rows.
    // Exchange and sum piece of w with procs identified in reduce_exch_proc.
    if (timeron) timer_start(t_rcomm);
    for (let i = l2npcols; i >= 1; i--) {
      const request = MPI.Irecv(q.subarray(reduce_recv_starts[i]), reduce_recv_lengths[i], MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
      await MPI.Send(w.subarray(reduce_send_starts[i]), reduce_send_lengths[i], MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
      await MPI.Wait(request);
      for (let j = send_start; j <= send_start + reduce_recv_lengths[i] - 1; j++) w[j] = w[j] + q[j];
    }
    if (timeron) timer_stop(t_rcomm);

    // Exchange piece of q with transpose processor:
    if (l2npcols !== 0) {
      if (timeron) timer_start(t_rcomm);
      const request = MPI.Irecv(q.subarray(1), exch_recv_length, MPI.DOUBLE, exch_proc, 1, MPI.COMM_WORLD);
      await MPI.Send(w.subarray(send_start), send_len, MPI.DOUBLE, exch_proc, 1, MPI.COMM_WORLD);
      await MPI.Wait(request);
      if (timeron) timer_stop(t_rcomm);
    } else {
      for (let j = 1; j <= exch_recv_length; j++) q[j] = w[j];
    }

    // Clear w for reuse...
    for (let j = 1; j <= Math.max(lastrow - firstrow + 1, lastcol - firstcol + 1); j++) w[j] = 0.0;

    // Obtain p.q
    sum = 0.0;
    for (let j = 1; j <= lastcol - firstcol + 1; j++) sum = sum + p[j] * q[j];

    // Obtain d with a sum-reduce.
    if (timeron) timer_start(t_rcomm);
    d = await row_sum(sum);
    if (timeron) timer_stop(t_rcomm);

    // Obtain alpha = rho / (p.q)
    alpha = rho / d;

    // Save a temporary of rho.
    rho0 = rho;

    // Obtain z = z + alpha*p
    // and    r = r - alpha*q
    for (let j = 1; j <= lastcol - firstcol + 1; j++) {
      z[j] = z[j] + alpha * p[j];
      r[j] = r[j] - alpha * q[j];
    }

    // rho = r.r
    // Now, obtain the norm of r: First, sum squares of r elements locally...
    sum = 0.0;
    for (let j = 1; j <= lastcol - firstcol + 1; j++) sum = sum + r[j] * r[j];

    // Obtain rho with a sum-reduce.
    if (timeron) timer_start(t_rcomm);
    rho = await row_sum(sum);
    if (timeron) timer_stop(t_rcomm);

    // Obtain beta:
    beta = rho / rho0;

    // p = r + beta*p
    for (let j = 1; j <= lastcol - firstcol + 1; j++) p[j] = r[j] + beta * p[j];
  } // end of do cgit=1,cgitmax

  // Compute residual norm explicitly:  ||r|| = ||x - A.z||
  // First, form A.z
  // The partition submatrix-vector multiply
  for (let j = 1; j <= lastrow - firstrow + 1; j++) {
    sum = 0.0;
    for (let k = rowstr[j]; k <= rowstr[j + 1] - 1; k++) sum = sum + a[k] * z[colidx[k]];
    w[j] = sum;
  }

  // Sum the partition submatrix-vec A.z's across rows.
  if (timeron) timer_start(t_rcomm);
  for (let i = l2npcols; i >= 1; i--) {
    const request = MPI.Irecv(r.subarray(reduce_recv_starts[i]), reduce_recv_lengths[i], MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Send(w.subarray(reduce_send_starts[i]), reduce_send_lengths[i], MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Wait(request);
    for (let j = send_start; j <= send_start + reduce_recv_lengths[i] - 1; j++) w[j] = w[j] + r[j];
  }
  if (timeron) timer_stop(t_rcomm);

  // Exchange piece of q with transpose processor:
  if (l2npcols !== 0) {
    if (timeron) timer_start(t_rcomm);
    const request = MPI.Irecv(r.subarray(1), exch_recv_length, MPI.DOUBLE, exch_proc, 1, MPI.COMM_WORLD);
    await MPI.Send(w.subarray(send_start), send_len, MPI.DOUBLE, exch_proc, 1, MPI.COMM_WORLD);
    await MPI.Wait(request);
    if (timeron) timer_stop(t_rcomm);
  } else {
    for (let j = 1; j <= exch_recv_length; j++) r[j] = w[j];
  }

  // At this point, r contains A.z
  sum = 0.0;
  for (let j = 1; j <= lastcol - firstcol + 1; j++) {
    d = x[j] - r[j];
    sum = sum + d * d;
  }

  // Obtain d with a sum-reduce.
  if (timeron) timer_start(t_rcomm);
  d = await row_sum(sum);
  if (timeron) timer_stop(t_rcomm);

  if (me === root) rnorm = Math.sqrt(d);

  if (timeron) timer_stop(t_conjg);
  return rnorm;
}

// ---------------------------------------------------------------------------------------------
// makea: generate the test problem for benchmark 6. makea generates a sparse matrix with a
// prescribed sparsity distribution.
//
//   n       number of cols/rows of matrix          a       array for nonzeros        (output)
//   nz      nonzeros as declared array size        colidx  col indices               (output)
//   rcond   condition number                       rowstr  row pointers              (output)
//   shift   main diagonal shift                    iv, arow, acol, v, aelt: workspace
function makea(
  n: number, nz: number, a: Float64Array, colidx: Int32Array, rowstr: Int32Array, nonzer: number,
  firstrow: number, lastrow: number, firstcol: number, lastcol: number, rcond: number,
  arow: Int32Array, acol: Int32Array, aelt: Float64Array, v: Float64Array, iv: Int32Array, shift: number,
): void {
  // nonzer is approximately  (int(sqrt(nnza /n)));
  let size = 1.0;
  const ratio = rcond ** (1.0 / n);
  let nnza = 0;

  // Initialize iv(n+1 .. 2n) to zero. Used by sprnvc to mark nonzero positions.
  for (let i = 1; i <= n; i++) iv[n + i] = 0;

  for (let iouter = 1; iouter <= n; iouter++) {
    let nzv = nonzer;
    sprnvc(n, nzv, v, colidx, iv, iv.subarray(n));
    nzv = vecset(n, v, colidx, nzv, iouter, 0.5);
    for (let ivelt = 1; ivelt <= nzv; ivelt++) {
      const jcol = colidx[ivelt];
      if (jcol >= firstcol && jcol <= lastcol) {
        const scale = size * v[ivelt];
        for (let ivelt1 = 1; ivelt1 <= nzv; ivelt1++) {
          const irow = colidx[ivelt1];
          if (irow >= firstrow && irow <= lastrow) {
            nnza = nnza + 1;
            if (nnza > nz) space_exceeded(nnza, nz, iouter);
            acol[nnza] = jcol;
            arow[nnza] = irow;
            aelt[nnza] = v[ivelt1] * scale;
          }
        }
      }
    }
    size = size * ratio;
  }

  // ... add the identity * rcond to the generated matrix to bound the smallest eigenvalue from
  //     below by rcond
  for (let i = firstrow; i <= lastrow; i++) {
    if (i >= firstcol && i <= lastcol) {
      nnza = nnza + 1;
      if (nnza > nz) space_exceeded(nnza, nz, n + i);
      acol[nnza] = i;
      arow[nnza] = i;
      aelt[nnza] = rcond - shift;
    }
  }

  // ... make the sparse matrix from list of elements with duplicates (v and iv are used as workspace)
  sparse(a, colidx, rowstr, n, arow, acol, aelt, firstrow, lastrow, v, iv, iv.subarray(n), nnza);
}

function space_exceeded(nnza: number, nz: number, iouter: number): never {
  console.log(' Space for matrix elements exceeded in makea');
  console.log(` nnza, nzmax = ${nnza} ${nz}`);
  console.log(`  iouter = ${iouter}`);
  return MPI.Abort(MPI.COMM_WORLD, 1);
}

// ---------------------------------------------------------------------------------------------
// sparse: generate a sparse matrix from a list of [col, row, element] triples. Rows range from
// firstrow to lastrow; the rowstr pointers are defined for nrows = lastrow-firstrow+1 values.
function sparse(
  a: Float64Array, colidx: Int32Array, rowstr: Int32Array, n: number, arow: Int32Array, acol: Int32Array, aelt: Float64Array,
  firstrow: number, lastrow: number, x: Float64Array, mark: Int32Array, nzloc: Int32Array, nnza: number,
): void {
  // how many rows of result
  const nrows = lastrow - firstrow + 1;

  // ...count the number of triples in each row
  for (let j = 1; j <= n; j++) {
    rowstr[j] = 0;
    mark[j] = 0;
  }
  rowstr[n + 1] = 0;

  for (let nza = 1; nza <= nnza; nza++) {
    const j = arow[nza] - firstrow + 1 + 1;
    rowstr[j] = rowstr[j] + 1;
  }

  rowstr[1] = 1;
  for (let j = 2; j <= nrows + 1; j++) rowstr[j] = rowstr[j] + rowstr[j - 1];

  // ... rowstr(j) now is the location of the first nonzero of row j of a

  // ... do a bucket sort of the triples on the row index
  for (let nza = 1; nza <= nnza; nza++) {
    const j = arow[nza] - firstrow + 1;
    const k = rowstr[j];
    a[k] = aelt[nza];
    colidx[k] = acol[nza];
    rowstr[j] = rowstr[j] + 1;
  }

  // ... rowstr(j) now points to the first element of row j+1
  for (let j = nrows; j >= 1; j--) rowstr[j + 1] = rowstr[j];
  rowstr[1] = 1;

  // ... generate the actual output rows by adding elements
  let nza = 0;
  for (let i = 1; i <= n; i++) {
    x[i] = 0.0;
    mark[i] = 0;
  }

  let jajp1 = rowstr[1];
  for (let j = 1; j <= nrows; j++) {
    let nzrow = 0;

    // ...loop over the jth row of a
    for (let k = jajp1; k <= rowstr[j + 1] - 1; k++) {
      const i = colidx[k];
      x[i] = x[i] + a[k];
      if (mark[i] === 0 && x[i] !== 0.0) {
        mark[i] = 1;
        nzrow = nzrow + 1;
        nzloc[nzrow] = i;
      }
    }

    // ... extract the nonzeros of this row
    for (let k = 1; k <= nzrow; k++) {
      const i = nzloc[k];
      mark[i] = 0;
      const xi = x[i];
      x[i] = 0.0;
      if (xi !== 0.0) {
        nza = nza + 1;
        a[nza] = xi;
        colidx[nza] = i;
      }
    }
    jajp1 = rowstr[j + 1];
    rowstr[j + 1] = nza + rowstr[1];
  }
}

// ---------------------------------------------------------------------------------------------
// sprnvc: generate a sparse n-vector (v, iv) having nzv nonzeros. mark(i) is set to 1 if position i
// is nonzero. mark is all zero on entry and is reset to all zero before exit; this corrects a
// performance bug found by John G. Lewis, caused by reinitialization of mark on every one of the n
// calls to sprnvc.
function sprnvc(n: number, nz: number, v: Float64Array, iv: Int32Array, nzloc: Int32Array, mark: Int32Array): void {
  let nzv = 0;
  let nzrow = 0;
  let nn1 = 1;
  do nn1 = 2 * nn1;
  while (nn1 < n);

  // nn1 is the smallest power of two not less than n
  while (nzv < nz) {
    const vecelt = randlc(tran, amult);

    // generate an integer between 1 and n in a portable manner
    const vecloc = randlc(tran, amult);
    const i = icnvrt(vecloc, nn1) + 1;
    if (i > n) continue;

    // was this integer generated already?
    if (mark[i] === 0) {
      mark[i] = 1;
      nzrow = nzrow + 1;
      nzloc[nzrow] = i;
      nzv = nzv + 1;
      v[nzv] = vecelt;
      iv[nzv] = i;
    }
  }
  for (let ii = 1; ii <= nzrow; ii++) mark[nzloc[ii]] = 0;
}

// scale a double precision number x in (0,1) by a power of 2 and chop it
function icnvrt(x: number, ipwr2: number): number {
  return Math.trunc(ipwr2 * x);
}

// vecset: set ith element of sparse vector (v, iv) with nzv nonzeros to val; returns the new nzv
// (Fortran updates its nzv argument in place).
function vecset(n: number, v: Float64Array, iv: Int32Array, nzv: number, i: number, val: number): number {
  let set = false;
  for (let k = 1; k <= nzv; k++) {
    if (iv[k] === i) {
      v[k] = val;
      set = true;
    }
  }
  if (!set) {
    nzv = nzv + 1;
    v[nzv] = val;
    iv[nzv] = i;
  }
  return nzv;
}

// ---- program cg ---------------------------------------------------------------------------------

// Set up mpi initialization and number of proc testing.
await initialize_mpi();

const parsed = parseClass('CG', process.argv[2]);
if ('error' in parsed) {
  if (me === root) console.error(parsed.error);
  await MPI.Finalize();
  process.exit(1);
}
const klass: NpbClass = parsed.klass;
({ na, nonzer, niter, shift, rcond } = CG_PARAMS[klass]);

// Set up processor info, such as whether sq num of procs, etc.
await setup_proc_info();

// Allocate space for work arrays.
alloc_space();

if (me === root) {
  console.log('\n\n NAS Parallel Benchmarks 3.4 -- CG Benchmark\n');
  console.log(` Size: ${rjust(na, 10)}  (class ${klass})`);
  console.log(` Iterations: ${rjust(niter, 5)}`);
  console.log(` Number of processes: ${rjust(nprocs, 5)}`);
  console.log(` Number of nonzeroes per row: ${rjust(nonzer, 8)}`);
  console.log(` Eigenvalue shift: ${fmtF(shift, 9, 3)}`);
}

// Set up partition's submatrix info: firstcol, lastcol, firstrow, lastrow.
setup_submatrix_info();

for (let i = 1; i <= t_last; i++) timer_clear(i);

// Inialize random number generator.
tran[0] = 314159265.0;
amult = 1220703125.0;
let zeta = randlc(tran, amult);

// Set up partition's sparse random matrix for given class size.
makea(na, nz, a, colidx, rowstr, nonzer, firstrow, lastrow, firstcol, lastcol, rcond, arow, acol, aelt, v, iv, shift);

// Note: as a result of the above call to makea:
//   values of j used in indexing rowstr go from 1 --> lastrow-firstrow+1
//   values of colidx which are col indexes go from firstcol --> lastcol
// So: shift the col index vals from actual (firstcol --> lastcol) to local, i.e., (1 --> lastcol-firstcol+1).
for (let j = 1; j <= lastrow - firstrow + 1; j++) {
  for (let k = rowstr[j]; k <= rowstr[j + 1] - 1; k++) colidx[k] = colidx[k] - firstcol + 1;
}

// set starting vector to (1, 1, .... 1)
for (let i = 1; i <= naa + 1; i++) x[i] = 1.0;

zeta = 0.0;

// norm_temp1(1:2), norm_temp2(1:2) are message buffers: 0-based like every buffer.
const norm_temp1 = new Float64Array(2);
const norm_temp2 = new Float64Array(2);

/** zeta = shift + 1/(x.z): sums x.z and z.z over the process row, then normalizes z into x. */
async function normalize(): Promise<void> {
  // So, first: (x.z). Also, find norm of z. So, first: (z.z)
  norm_temp1[0] = 0.0;
  norm_temp1[1] = 0.0;
  for (let j = 1; j <= lastcol - firstcol + 1; j++) {
    norm_temp1[0] = norm_temp1[0] + x[j] * z[j];
    norm_temp1[1] = norm_temp1[1] + z[j] * z[j];
  }

  if (timeron) timer_start(t_ncomm);
  for (let i = 1; i <= l2npcols; i++) {
    const request = MPI.Irecv(norm_temp2, 2, MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Send(norm_temp1, 2, MPI.DOUBLE, reduce_exch_proc[i], i, MPI.COMM_WORLD);
    await MPI.Wait(request);
    norm_temp1[0] = norm_temp1[0] + norm_temp2[0];
    norm_temp1[1] = norm_temp1[1] + norm_temp2[1];
  }
  if (timeron) timer_stop(t_ncomm);

  norm_temp1[1] = 1.0 / Math.sqrt(norm_temp1[1]);
}

// Do one iteration untimed to init all code and data page tables (then reinit, start timing, to
// niter its).
for (let it = 1; it <= 1; it++) {
  // The call to the conjugate gradient routine:
  await conj_grad();
  await normalize();
  // Normalize z to obtain x
  for (let j = 1; j <= lastcol - firstcol + 1; j++) x[j] = norm_temp1[1] * z[j];
} // end of do one iteration untimed

// set starting vector to (1, 1, .... 1)
// NOTE: a questionable limit on size:  should this be na/num_proc_cols+1 ?
for (let i = 1; i <= naa + 1; i++) x[i] = 1.0;

zeta = 0.0;

// Synchronize and start timing.
for (let i = 1; i <= t_last; i++) timer_clear(i);
await MPI.Barrier(MPI.COMM_WORLD);

timer_clear(t_total);
timer_start(t_total);

// Main Iteration for inverse power method.
for (let it = 1; it <= niter; it++) {
  // The call to the conjugate gradient routine:
  const rnorm = await conj_grad();
  await normalize();

  if (me === root) {
    zeta = shift + 1.0 / norm_temp1[0];
    if (it === 1) console.log('\n   iteration           ||r||                 zeta');
    console.log(`    ${rjust(it, 5)}      ${fmtE(rnorm, 21, 14)}${fmtF(zeta, 20, 13)}`);
  }

  // Normalize z to obtain x
  for (let j = 1; j <= lastcol - firstcol + 1; j++) x[j] = norm_temp1[1] * z[j];
} // end of main iter inv pow meth

timer_stop(t_total);

// End of timed section.
const t = Float64Array.of(timer_read(t_total));
const tmax = new Float64Array(1);
await MPI.Reduce(t, tmax, 1, MPI.DOUBLE, MPI.MAX, root, MPI.COMM_WORLD);

if (me === root) {
  console.log(' Benchmark completed ');

  const { verified, err } = cg_verify(klass, zeta);
  if (verified) {
    console.log(' VERIFICATION SUCCESSFUL ');
    console.log(` Zeta is    ${fmtE(zeta, 20, 13)}`);
    console.log(` Error is   ${fmtE(err, 20, 13)}`);
  } else {
    console.log(' VERIFICATION FAILED');
    console.log(` Zeta                ${fmtE(zeta, 20, 13)}`);
    console.log(` The correct zeta is ${fmtE(CG_ZETA_VERIFY_VALUE[klass], 20, 13)}`);
  }

  const mflops =
    tmax[0] !== 0
      ? (1.0e-6 * 2 * niter * na * (3 + nonzer * (nonzer + 1) + 25 * (5 + nonzer * (nonzer + 1)) + 3)) / tmax[0]
      : 0.0;

  print_results('CG', klass, na, 0, 0, niter, num_procs, nprocs, tmax[0], mflops, '          floating point', verified);
}

if (timeron) {
  const t_recs = ['total', 'conjg', 'rcomm', 'ncomm', ' totcomp', ' totcomm'];
  const t1 = new Float64Array(t_last + 2);
  for (let i = 1; i <= t_last; i++) t1[i - 1] = timer_read(i);
  t1[t_conjg - 1] = t1[t_conjg - 1] - t1[t_rcomm - 1];
  t1[t_last + 1] = t1[t_rcomm - 1] + t1[t_ncomm - 1];
  t1[t_last] = t1[t_total - 1] - t1[t_last + 1];
  await print_timers(t1, t_recs, nprocs, me);
}

await MPI.Finalize();
