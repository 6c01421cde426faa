// NPB 3.4 IS (integer sort), ported from NPB3.4-MPI/IS/is.c to vmcomm's MPI adapter.
//
//   npx vmcomm run -n 4 examples/npb/is.ts S        (class S, W or A; a power-of-two number of ranks)
//
// Ranks integers drawn from an approximately Gaussian distribution by bucket sort: each rank counts
// its keys per bucket, an MPI_Allreduce gives the global bucket sizes, the buckets are dealt out so
// every rank gets about the same number of keys, an MPI_Alltoall tells each rank how many keys it
// will receive and an MPI_Alltoallv moves them; each rank then ranks its keys by counting. Five keys
// are checked against known ranks on each of the 10 timed iterations (partial verification) and the
// final ranking is used to sort the keys, whose order is checked across ranks (full verification).
//
// Names and structure follow is.c: the C globals are module variables, and the functions are
// alloc_space, find_my_seed, create_seq, full_verify, rank and the main program. INT_TYPE (C int)
// arrays are Int32Array. Where C shifts a pointer (key_buff_ptr = key_buff1 - min_key_val) the port
// keeps the array and the shift.
//
// Authors of the original: M. Yarrow, H. Jin (NASA).
import { MPI } from 'vmcomm/mpi';
import { IS_PARAMS, parseClass, type NpbClass } from './common/classes.js';
import { print_results } from './common/print_results.js';
import { randlc } from './common/randdp.js';
import { check_timer_flag, timer_clear, timer_read, timer_start, timer_stop } from './common/timers.js';
import { IS_TEST_ARRAYS, MAX_ITERATIONS, TEST_ARRAY_SIZE, is_keys_out_of_sort, is_test_rank, is_verified } from './verify.js';

// ---- MPI properties -------------------------------------------------------------------------
await MPI.Init();
const my_rank = MPI.Comm_rank(MPI.COMM_WORLD);
const comm_size = MPI.Comm_size(MPI.COMM_WORLD);

// ---- class parameters (npbparams.h + the #if CLASS blocks) -----------------------------------
const parsed = parseClass('IS', process.argv[2]);
if ('error' in parsed) {
  if (my_rank === 0) console.error(parsed.error);
  await MPI.Finalize();
  process.exit(1);
}
const CLASS: NpbClass = parsed.klass;
const { TOTAL_KEYS_LOG_2, MAX_KEY_LOG_2, NUM_BUCKETS_LOG_2 } = IS_PARAMS[CLASS];
const MIN_PROCS = 1;
const TOTAL_KEYS = 1 << TOTAL_KEYS_LOG_2;
const MAX_KEY = 1 << MAX_KEY_LOG_2;
const NUM_BUCKETS = 1 << NUM_BUCKETS_LOG_2;
// THIS CODE CANNOT BE RUN ON ARBITRARILY LARGE NUMBERS OF PROCESSORS (is.c): the largest verified is 1024.
const MAX_PROCS = CLASS === 'S' ? 128 : 1024;

// Enable separate communication, computation timing and printout.
const T_TOTAL = 0, T_RANK = 1, T_RCOMM = 2, T_VERIFY = 3, T_LAST = 3;
let timeron = false;

// ---- globals ----------------------------------------------------------------------------------
let num_keys = 0; //         keys per rank
let size_of_buffers = 0; //  room for the keys a rank may receive

// Used by full_verify to get copies of rank info (key_buff_ptr_global is key_buff1 shifted by
// key_buff_ptr_shift = min_key_val: C's key_buff_ptr[k] is key_buff1[k - min_key_val]).
let key_buff_ptr_global = new Int32Array(0);
let key_buff_ptr_shift = 0;
let total_local_keys = 0;
let total_lesser_keys = 0;

let passed_verification = 0;

// The three main arrays, sized in alloc_space, and the bucket bookkeeping.
let key_array = new Int32Array(0), key_buff1 = new Int32Array(0), key_buff2 = new Int32Array(0);
const bucket_size = new Int32Array(NUM_BUCKETS + TEST_ARRAY_SIZE); //        top 5 elements for
const bucket_size_totals = new Int32Array(NUM_BUCKETS + TEST_ARRAY_SIZE); // partial verification values
const bucket_ptrs = new Int32Array(NUM_BUCKETS);
const process_bucket_distrib_ptr1 = new Int32Array(NUM_BUCKETS + TEST_ARRAY_SIZE);
const process_bucket_distrib_ptr2 = new Int32Array(NUM_BUCKETS + TEST_ARRAY_SIZE);
let send_count = new Int32Array(0), recv_count = new Int32Array(0), send_displ = new Int32Array(0), recv_displ = new Int32Array(0);

// Partial verification info.
const test_index_array = new Int32Array(TEST_ARRAY_SIZE);
const test_rank_array = new Int32Array(TEST_ARRAY_SIZE);

// ---- alloc_space: dynamically allocate space for the main arrays ---------------------------------
function alloc_space(): void {
  // problem size after partition
  num_keys = Math.trunc(TOTAL_KEYS / comm_size) * MIN_PROCS;

  // buffer size for communication
  if (comm_size < 256) size_of_buffers = Math.trunc((3 * num_keys) / 2);
  else if (comm_size < 512) size_of_buffers = Math.trunc((5 * num_keys) / 2);
  else if (comm_size < 1024) size_of_buffers = 4 * num_keys;
  else size_of_buffers = Math.trunc((13 * num_keys) / 2);

  key_array = new Int32Array(size_of_buffers);
  key_buff1 = new Int32Array(size_of_buffers);
  key_buff2 = new Int32Array(size_of_buffers);

  send_count = new Int32Array(comm_size);
  recv_count = new Int32Array(comm_size);
  send_displ = new Int32Array(comm_size);
  recv_displ = new Int32Array(comm_size);
}

// ---- find_my_seed: the first random number of rank kn's subsequence --------------------------------
// Create a random number sequence of total length nn residing on np number of processors. Each
// processor will therefore have a subsequence of length nn/np. This routine returns that random number
// which is the first random number for the subsequence belonging to processor rank kn, and which is
// used as seed for proc kn ran # gen.
function find_my_seed(
  kn: number, //  my processor rank, 0<=kn<=num procs
  np: number, //  np = num procs
  nn: number, //  total num of ran numbers, all procs
  s: number, //   Ran num seed, for ex.: 314159265.00
  a: number, //   Ran num gen mult, try 1220703125.00
): number {
  let nq = Math.trunc(nn / np);
  let mq = 0;
  for (; nq > 1; mq++, nq = Math.trunc(nq / 2));

  const t1 = Float64Array.of(a);
  for (let i = 1; i <= mq; i++) randlc(t1, t1[0]);
  const an = t1[0];

  let kk = kn;
  t1[0] = s;
  const t2 = Float64Array.of(an);
  for (let i = 1; i <= 100; i++) {
    const ik = Math.trunc(kk / 2);
    if (2 * ik !== kk) randlc(t1, t2[0]);
    if (ik === 0) break;
    randlc(t2, t2[0]);
    kk = ik;
  }
  return t1[0];
}

// ---- create_seq: this rank's keys, the sum of four uniform numbers scaled to [0, MAX_KEY) -------
function create_seq(seed: number, a: number): void {
  const s = Float64Array.of(seed);
  const k = MAX_KEY / 4;
  for (let i = 0; i < num_keys; i++) {
    let x = randlc(s, a);
    x += randlc(s, a);
    x += randlc(s, a);
    x += randlc(s, a);
    key_array[i] = k * x; // C's int conversion truncates; so does storing into an Int32Array
  }
}

// ---- full_verify: sort by the final ranks, then check the order within and across ranks ---------
async function full_verify(): Promise<void> {
  if (timeron) timer_start(T_VERIFY);

  // Now, finally, sort the keys:
  for (let i = 0; i < total_local_keys; i++) {
    const key = key_buff2[i];
    key_array[--key_buff_ptr_global[key - key_buff_ptr_shift] - total_lesser_keys] = key;
  }
  const last_local_key = total_local_keys < 1 ? 0 : total_local_keys - 1;

  // Send largest key value to next processor.
  const k = new Int32Array(1);
  let request;
  if (my_rank > 0) request = MPI.Irecv(k, 1, MPI.INT, my_rank - 1, 1000, MPI.COMM_WORLD);
  if (my_rank < comm_size - 1) await MPI.Send(key_array.subarray(last_local_key), 1, MPI.INT, my_rank + 1, 1000, MPI.COMM_WORLD);
  if (request !== undefined) await MPI.Wait(request);

  // Confirm that neighbor's greatest key value is not greater than my least key value, and that the
  // keys are correctly sorted: count incorrectly sorted keys, if any.
  const j = is_keys_out_of_sort(key_array, total_local_keys, my_rank > 0 ? k[0] : undefined);

  if (j !== 0) console.log(`Processor ${my_rank}:  Full_verify: number of keys out of sort: ${j}`);
  else passed_verification++;

  if (timeron) timer_stop(T_VERIFY);
}

// ---- rank: one iteration of the ranking ---------------------------------------------------------
async function rank(iteration: number): Promise<void> {
  const shift = MAX_KEY_LOG_2 - NUM_BUCKETS_LOG_2;

  if (timeron) timer_start(T_RANK);

  // Iteration alteration of keys.
  if (my_rank === 0) {
    key_array[iteration] = iteration;
    key_array[iteration + MAX_ITERATIONS] = MAX_KEY - iteration;
  }

  // Initialize.
  bucket_size.fill(0);
  bucket_size_totals.fill(0);
  process_bucket_distrib_ptr1.fill(0);
  process_bucket_distrib_ptr2.fill(0);

  // Determine where the partial verify test keys are, load into top of array bucket_size.
  for (let i = 0; i < TEST_ARRAY_SIZE; i++) {
    if (Math.trunc(test_index_array[i] / num_keys) === my_rank) bucket_size[NUM_BUCKETS + i] = key_array[test_index_array[i] % num_keys];
  }

  // Determine the number of keys in each bucket.
  for (let i = 0; i < num_keys; i++) bucket_size[key_array[i] >> shift]++;

  // Accumulative bucket sizes are the bucket pointers.
  bucket_ptrs[0] = 0;
  for (let i = 1; i < NUM_BUCKETS; i++) bucket_ptrs[i] = bucket_ptrs[i - 1] + bucket_size[i - 1];

  // Sort into appropriate bucket.
  for (let i = 0; i < num_keys; i++) {
    const key = key_array[i];
    key_buff1[bucket_ptrs[key >> shift]++] = key;
  }

  if (timeron) timer_stop(T_RANK);
  if (timeron) timer_start(T_RCOMM);

  // Get the bucket size totals for the entire problem. These will be used to determine the
  // redistribution of keys.
  await MPI.Allreduce(bucket_size, bucket_size_totals, NUM_BUCKETS + TEST_ARRAY_SIZE, MPI.INT, MPI.SUM, MPI.COMM_WORLD);

  if (timeron) timer_stop(T_RCOMM);
  if (timeron) timer_start(T_RANK);

  // Determine Redistibution of keys: accumulate the bucket size totals till this number surpasses
  // NUM_KEYS (which the average number of keys per processor). Then all keys in these buckets go to
  // processor 0. Continue accumulating again until supassing 2*NUM_KEYS. All keys in these buckets go
  // to processor 1, etc. This algorithm guarantees that all processors have work ranking; no
  // processors are left idle. (…) Note that process_bucket_distrib_ptr1 and ..._ptr2 hold the bucket
  // number of first and last bucket which each processor will have after the redistribution is done.
  let bucket_sum_accumulator = 0;
  let local_bucket_sum_accumulator = 0;
  send_displ[0] = 0;
  process_bucket_distrib_ptr1[0] = 0;
  let j = 0;
  for (let i = 0; i < NUM_BUCKETS; i++) {
    bucket_sum_accumulator += bucket_size_totals[i];
    local_bucket_sum_accumulator += bucket_size[i];
    if (bucket_sum_accumulator >= (j + 1) * num_keys) {
      send_count[j] = local_bucket_sum_accumulator;
      if (j !== 0) {
        send_displ[j] = send_displ[j - 1] + send_count[j - 1];
        process_bucket_distrib_ptr1[j] = process_bucket_distrib_ptr2[j - 1] + 1;
      }
      process_bucket_distrib_ptr2[j++] = i;
      local_bucket_sum_accumulator = 0;
    }
  }

  // When NUM_PROCS approaching NUM_BUCKETS, it is highly possible that the last few processors don't
  // get any buckets. So, we need to set counts properly in this case to avoid any fallouts.
  while (j < comm_size) {
    send_count[j] = 0;
    process_bucket_distrib_ptr1[j] = 1;
    j++;
  }

  if (timeron) timer_stop(T_RANK);
  if (timeron) timer_start(T_RCOMM);

  // This is the redistribution section: first find out how many keys each processor will send to
  // every other processor:
  await MPI.Alltoall(send_count, 1, MPI.INT, recv_count, 1, MPI.INT, MPI.COMM_WORLD);

  // Determine the receive array displacements for the buckets.
  recv_displ[0] = 0;
  for (let i = 1; i < comm_size; i++) recv_displ[i] = recv_displ[i - 1] + recv_count[i - 1];

  // Now send the keys to respective processors.
  await MPI.Alltoallv(key_buff1, send_count, send_displ, MPI.INT, key_buff2, recv_count, recv_displ, MPI.INT, MPI.COMM_WORLD);

  if (timeron) timer_stop(T_RCOMM);
  if (timeron) timer_start(T_RANK);

  // The starting and ending bucket numbers on each processor are multiplied by the interval size of
  // the buckets to obtain the smallest possible min and greatest possible max value of any key on
  // each processor.
  const min_key_val = process_bucket_distrib_ptr1[my_rank] << shift;
  const max_key_val = ((process_bucket_distrib_ptr2[my_rank] + 1) << shift) - 1;

  // Clear the work array.
  key_buff1.fill(0, 0, max_key_val - min_key_val + 1);

  // Determine the total number of keys on all other processors holding keys of lesser value.
  let m = 0;
  for (let k = 0; k < my_rank; k++) {
    for (let i = process_bucket_distrib_ptr1[k]; i <= process_bucket_distrib_ptr2[k]; i++) m += bucket_size_totals[i]; // m has total # of lesser keys
  }

  // Determine total number of keys on this processor.
  j = 0;
  for (let i = process_bucket_distrib_ptr1[my_rank]; i <= process_bucket_distrib_ptr2[my_rank]; i++) j += bucket_size_totals[i]; // j has total # of local keys

  // Ranking of all keys occurs in this section: C shifts key_buff_ptr backwards (key_buff1 -
  // min_key_val) so no subtractions are necessary in the loop; here the subtraction is explicit.
  const key_buff_ptr = key_buff1;
  const base = min_key_val;

  // In this section, the keys themselves are used as their own indexes to determine how many of each
  // there are: their individual population.
  for (let i = 0; i < j; i++) key_buff_ptr[key_buff2[i] - base]++; // Now they have individual key population

  // To obtain ranks of each key, successively add the individual key population, not forgetting the
  // total of lesser keys, m. NOTE: Since the total of lesser keys would be subtracted later in
  // verification, it is no longer added to the first key population here, but still needed during
  // the partial verify test. This is to ensure that 32-bit key_buff can still be used for class D.
  for (let i = min_key_val; i < max_key_val; i++) key_buff_ptr[i + 1 - base] += key_buff_ptr[i - base];

  // This is the partial verify test section. Observe that test_rank_array vals are shifted
  // differently for different cases.
  for (let i = 0; i < TEST_ARRAY_SIZE; i++) {
    const k = bucket_size_totals[i + NUM_BUCKETS]; // Keys were hidden here
    if (min_key_val <= k && k <= max_key_val) {
      // Add the total of lesser keys, m, here. (C reads key_buff_ptr[k-1], one before the array when
      // k is this rank's smallest possible key; the count of smaller local keys is then 0.)
      const key_rank = (k > min_key_val ? key_buff_ptr[k - 1 - base] : 0) + m;
      const test_rank = is_test_rank(CLASS, test_rank_array[i], i, iteration);
      if (key_rank !== test_rank) {
        console.log(`Failed partial verification: iteration ${iteration}, processor ${my_rank}, test key ${i}, key rank ${key_rank}`);
      } else {
        passed_verification++;
      }
    }
  }

  if (timeron) timer_stop(T_RANK);

  // Make copies of rank info for use by full_verify: these variables in rank are local; making them
  // global slows down the code, probably since they cannot be made register by compiler.
  if (iteration === MAX_ITERATIONS) {
    key_buff_ptr_global = key_buff_ptr;
    key_buff_ptr_shift = base;
    total_local_keys = j;
    total_lesser_keys = 0; // no longer set to 'm', see note above
  }
}

// ---- main ---------------------------------------------------------------------------------------

// Initialize the verification arrays if a valid class.
test_index_array.set(IS_TEST_ARRAYS[CLASS].test_index_array);
test_rank_array.set(IS_TEST_ARRAYS[CLASS].test_rank_array);

// comm_size needs to be power of two.
let np = 1;
for (; np < comm_size; np *= 2);

// Check that actual and compiled number of processors agree.
if (comm_size !== np) {
  if (my_rank === 0) console.log(`\n ERROR: Number of processes (${comm_size}) is not a power of two (${np / 2}?)\n Exiting program!\n`);
  await MPI.Finalize();
  process.exit(1);
}

// Printout initial NPB info.
const flag = new Int32Array(1);
if (my_rank === 0) {
  console.log('\n\n NAS Parallel Benchmarks 3.4 -- IS Benchmark\n');
  console.log(` Size:  ${TOTAL_KEYS * MIN_PROCS}  (class ${CLASS})`);
  console.log(` Iterations:   ${MAX_ITERATIONS}`);
  console.log(` Number of processes:     ${comm_size}`);
  flag[0] = check_timer_flag() ? 1 : 0;
}

// Check to see whether total number of processes is within bounds.
if (comm_size < MIN_PROCS || comm_size > MAX_PROCS) {
  if (my_rank === 0) console.log(`\n ERROR: number of processes ${comm_size} not within range ${MIN_PROCS}-${MAX_PROCS}\n Exiting program!\n`);
  await MPI.Finalize();
  process.exit(1);
}

await MPI.Bcast(flag, 1, MPI.INT, 0, MPI.COMM_WORLD);
timeron = flag[0] !== 0;

for (let i = 1; i <= T_LAST; i++) timer_clear(i);

// Allocate space for work arrays.
alloc_space();

// Generate random number sequence and subsequent keys on all procs.
create_seq(
  find_my_seed(
    my_rank,
    comm_size,
    4 * TOTAL_KEYS * MIN_PROCS,
    314159265.0, //  Random number gen seed
    1220703125.0, // Random number gen mult
  ),
  1220703125.0, //   Random number gen mult
);

// Do one interation for free (i.e., untimed) to guarantee initialization of all data and code pages
// and respective tables.
await rank(1);

// Start verification counter.
passed_verification = 0;

if (my_rank === 0 && CLASS !== 'S') console.log('\n   iteration');

// Initialize timer, and separate communication, computation timing.
timer_clear(T_TOTAL);
for (let i = 1; i <= T_LAST; i++) timer_clear(i);

// Start timer.
timer_start(T_TOTAL);

// This is the main iteration.
for (let iteration = 1; iteration <= MAX_ITERATIONS; iteration++) {
  if (my_rank === 0 && CLASS !== 'S') console.log(`        ${iteration}`);
  await rank(iteration);
}

// Stop timer, obtain time for processors.
timer_stop(T_TOTAL);
const timecounter = Float64Array.of(timer_read(T_TOTAL));

// End of timing, obtain maximum time of all processors.
const maxtime = new Float64Array(1);
await MPI.Reduce(timecounter, maxtime, 1, MPI.DOUBLE, MPI.MAX, 0, MPI.COMM_WORLD);

// This tests that keys are in sequence: sorting of last ranked key seq occurs here, but is an untimed
// operation.
await full_verify();

// Obtain verification counter sum.
const itemp = Int32Array.of(passed_verification);
const passed = new Int32Array(1);
await MPI.Reduce(itemp, passed, 1, MPI.INT, MPI.SUM, 0, MPI.COMM_WORLD);

// The final printout.
if (my_rank === 0) {
  print_results(
    'IS',
    CLASS,
    TOTAL_KEYS,
    MIN_PROCS,
    0,
    MAX_ITERATIONS,
    np,
    comm_size,
    maxtime[0],
    (MAX_ITERATIONS * TOTAL_KEYS * MIN_PROCS) / maxtime[0] / 1000000,
    'keys ranked',
    is_verified(passed[0], comm_size),
  );
}

if (timeron) {
  const t1 = new Float64Array(T_LAST + 1);
  const tmin = new Float64Array(T_LAST + 1);
  const tsum = new Float64Array(T_LAST + 1);
  const tmax = new Float64Array(T_LAST + 1);
  const t_recs = ['total', 'rcomp', 'rcomm', 'verify'];
  for (let i = 0; i <= T_LAST; i++) t1[i] = timer_read(i);
  await MPI.Reduce(t1, tmin, T_LAST + 1, MPI.DOUBLE, MPI.MIN, 0, MPI.COMM_WORLD);
  await MPI.Reduce(t1, tsum, T_LAST + 1, MPI.DOUBLE, MPI.SUM, 0, MPI.COMM_WORLD);
  await MPI.Reduce(t1, tmax, T_LAST + 1, MPI.DOUBLE, MPI.MAX, 0, MPI.COMM_WORLD);
  if (my_rank === 0) {
    console.log(` nprocs = ${String(comm_size).padStart(6)}          minimum     maximum     average`);
    for (let i = 0; i <= T_LAST; i++) {
      console.log(` timer ${String(i + 1).padStart(2)} (${t_recs[i].padEnd(8)}):  ${tmin[i].toFixed(4).padStart(10)}  ${tmax[i].toFixed(4).padStart(10)}  ${(tsum[i] / comm_size).toFixed(4).padStart(10)}`);
    }
    console.log('');
  }
}

await MPI.Finalize();
