/*
 * The MPI reference for vmcomm's benchmarks, measured the way bench/collectives.ts and `vmcomm bench`
 * measure vmcomm: a time-based warm-up, then rounds of blocks; a block's value is the median of its
 * iterations, a round's the median of its block medians, and the result the median over rounds (the
 * slowest rank's, for collectives). Built and run by bench/mpi-reference.ts with the MPI found on
 * the machine (Debian's `mpich` here):
 *
 *   mpicc -O2 -o osu-lite osu-lite.c && mpiexec -n 2 -bind-to core ./osu-lite [--quick]
 *
 * Prints one JSON object per line: first {"library": MPI_Get_library_version's first line}, then per
 * case {"case": name, "unit": "us"|"MB/s", "ranks": n, "rounds": [...], "typical": x}.
 * Point-to-point cases run between ranks 0 and 1 (others idle); collectives on every rank.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 64
#define MAX_SAMPLES 4096

static int rank, size;
static int quick;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The upper median, as bench/collectives.ts takes it (sorted[n / 2]). */
static double median(double *xs, int n) {
  qsort(xs, n, sizeof(double), cmp_double);
  return xs[n / 2];
}

typedef double (*step_fn)(void *ctx); /* one timed iteration; returns its time in µs */

typedef struct {
  const char *name;
  const char *unit;
  int block, iters;
  step_fn step;
  void *ctx;
  int higher_is_better; /* MB/s: the slowest rank is the minimum */
} bench_case;

/* ---------------------------------------------------------------- point to point */

typedef struct {
  char *buf;
  int bytes;
} p2p_ctx;

static double latency_step(void *c) {
  p2p_ctx *x = c;
  double t0 = MPI_Wtime();
  if (rank == 0) {
    MPI_Send(x->buf, x->bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
    MPI_Recv(x->buf, x->bytes, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else if (rank == 1) {
    MPI_Recv(x->buf, x->bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Send(x->buf, x->bytes, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
  }
  return (MPI_Wtime() - t0) * 1e6 / 2; /* half round trip */
}

/* osu_bw: a window of nonblocking sends of the same buffer, then a 4-byte ack. Returns MB/s. */
static double bw_step(void *c) {
  p2p_ctx *x = c;
  MPI_Request req[WINDOW];
  char ack[4] = {0};
  double t0 = MPI_Wtime();
  if (rank == 0) {
    for (int i = 0; i < WINDOW; i++) MPI_Isend(x->buf, x->bytes, MPI_CHAR, 1, 2, MPI_COMM_WORLD, &req[i]);
    MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE);
    MPI_Recv(ack, 4, MPI_CHAR, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else if (rank == 1) {
    for (int i = 0; i < WINDOW; i++) MPI_Irecv(x->buf, x->bytes, MPI_CHAR, 0, 2, MPI_COMM_WORLD, &req[i]);
    MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE);
    MPI_Send(ack, 4, MPI_CHAR, 0, 3, MPI_COMM_WORLD);
  } else {
    return 0;
  }
  double s = MPI_Wtime() - t0;
  return (double)x->bytes * WINDOW / s / 1e6;
}

/* ---------------------------------------------------------------- collectives */

typedef struct {
  double *in, *out;
  int count;
} coll_ctx;

static double allreduce_step(void *c) {
  coll_ctx *x = c;
  double t0 = MPI_Wtime();
  MPI_Allreduce(x->in, x->out, x->count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) * 1e6;
  /* Every element is checked against the exact sum (integers in double), as bench/collectives.ts does. */
  int i = x->count > 1 ? 12345 % x->count : 0;
  double want = (double)size * (i % 7) + (double)size * (size - 1) / 2 + (x->count == 1 ? size : 0);
  if (x->out[i] != want) {
    fprintf(stderr, "osu-lite: allreduce gave %g at %d, expected %g\n", x->out[i], i, want);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return t;
}

static double bcast_step(void *c) {
  coll_ctx *x = c;
  if (rank == 0) x->out[0] = 42.5;
  double t0 = MPI_Wtime();
  MPI_Bcast(x->out, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) * 1e6;
  if (x->out[0] != 42.5) {
    fprintf(stderr, "osu-lite: bcast gave %g, expected 42.5\n", x->out[0]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank != 0) x->out[0] = 0;
  return t;
}

static double reduce_step(void *c) {
  coll_ctx *x = c;
  double t0 = MPI_Wtime();
  MPI_Reduce(x->in, x->out, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) * 1e6;
  if (rank == 0 && x->out[0] != (double)size * (size + 1) / 2) {
    fprintf(stderr, "osu-lite: reduce gave %g, expected %g\n", x->out[0], (double)size * (size + 1) / 2);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  x->out[0] = 0; /* so that the next call must write it again */
  return t;
}

/* One double from every rank (rank + 1) into an array of the caller's, on every rank or at rank 0. */
typedef struct {
  double in;
  double *all;
} gather_ctx;

/* Whether every rank's double arrived; clears them, so that the next call must write them again. */
static int gathered_right(const gather_ctx *x) {
  int right = 1;
  for (int r = 0; r < size; r++) {
    right &= x->all[r] == r + 1;
    x->all[r] = 0;
  }
  return right;
}

static double allgather_step(void *c) {
  gather_ctx *x = c;
  double t0 = MPI_Wtime();
  MPI_Allgather(&x->in, 1, MPI_DOUBLE, x->all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) * 1e6;
  if (!gathered_right(x)) {
    fprintf(stderr, "osu-lite: allgather gave wrong values\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return t;
}

static double gather_step(void *c) {
  gather_ctx *x = c;
  double t0 = MPI_Wtime();
  MPI_Gather(&x->in, 1, MPI_DOUBLE, x->all, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) * 1e6;
  if (rank == 0 && !gathered_right(x)) {
    fprintf(stderr, "osu-lite: gather gave wrong values\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return t;
}

static double barrier_step(void *c) {
  (void)c;
  double t0 = MPI_Wtime();
  MPI_Barrier(MPI_COMM_WORLD);
  return (MPI_Wtime() - t0) * 1e6;
}

/* ---------------------------------------------------------------- driver */

static void warm_up(bench_case *b) {
  /* Rank 0 decides, so that every rank makes the same number of calls. */
  double t0 = MPI_Wtime();
  int go = 1;
  while (go) {
    for (int i = 0; i < 20; i++) b->step(b->ctx);
    go = MPI_Wtime() - t0 < (quick ? 0.2 : 0.6);
    MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
  }
}

static double run_round(bench_case *b) {
  static double samples[MAX_SAMPLES], medians[MAX_SAMPLES];
  int blocks = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int done = 0; done < b->iters; done += b->block) {
    for (int i = 0; i < b->block; i++) samples[i] = b->step(b->ctx);
    medians[blocks++] = median(samples, b->block);
  }
  double mine = median(medians, blocks), worst;
  /* Bandwidth is the sender's, as osu_bw reports it (the others' values cannot win the minimum);
     ranks that take no part in the latency case measure about 0, which cannot win the maximum. */
  if (b->higher_is_better && rank != 0) mine = 1e300;
  MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE, b->higher_is_better ? MPI_MIN : MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (int i = 1; i < argc; i++) quick |= strcmp(argv[i], "--quick") == 0;

  p2p_ctx small = {calloc(8, 1), 8};
  p2p_ctx large = {calloc(1 << 20, 1), 1 << 20};
  double one_in = rank + 1, one_out = 0;
  coll_ctx one = {&one_in, &one_out, 1};
  int n = 131072;
  coll_ctx big = {malloc(n * sizeof(double)), malloc(n * sizeof(double)), n};
  for (int i = 0; i < n; i++) big.in[i] = (i % 7) + rank;
  double reduce_in = rank + 1, reduce_out = 0;
  coll_ctx reduce_one = {&reduce_in, &reduce_out, 1};
  gather_ctx allgather_one = {rank + 1, calloc(size, sizeof(double))};
  gather_ctx gather_one = {rank + 1, calloc(size, sizeof(double))};

  bench_case cases[] = {
      {"latency 8 B", "us", 100, quick ? 400 : 2000, latency_step, &small, 0},
      {"bw 1 MiB", "MB/s", 5, quick ? 10 : 40, bw_step, &large, 1},
      {"allreduce 1 double", "us", 100, quick ? 400 : 2000, allreduce_step, &one, 0},
      {"allreduce 131072 doubles", "us", 10, quick ? 40 : 200, allreduce_step, &big, 0},
      {"barrier", "us", 100, quick ? 400 : 2000, barrier_step, NULL, 0},
      {"bcast 1 double", "us", 100, quick ? 400 : 2000, bcast_step, &one, 0},
      {"reduce 1 double", "us", 100, quick ? 400 : 2000, reduce_step, &reduce_one, 0},
      {"allgather 1 double", "us", 100, quick ? 400 : 2000, allgather_step, &allgather_one, 0},
      {"gather 1 double", "us", 100, quick ? 400 : 2000, gather_step, &gather_one, 0},
  };
  int ncases = sizeof cases / sizeof cases[0];
  int rounds = quick ? 3 : 5;
  double results[16][16];
  int first = size >= 2 ? 0 : 2; /* point-to-point needs two ranks */
  for (int c = first; c < ncases; c++) warm_up(&cases[c]);
  /* Rounds interleave the cases, as bench/collectives.ts interleaves its own. */
  for (int r = 0; r < rounds; r++)
    for (int c = first; c < ncases; c++) results[c][r] = run_round(&cases[c]);
  if (rank == 0) {
    char library[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(library, &len);
    /* The first line of it, without characters JSON would need escaped. */
    for (int i = 0; i < len; i++)
      if (library[i] == '\n' || library[i] == '\r') library[(len = i)] = 0;
      else if (library[i] == '"' || library[i] == '\\' || (unsigned char)library[i] < 0x20) library[i] = ' ';
    printf("{\"library\":\"%s\"}\n", library);
    for (int c = first; c < ncases; c++) {
      double sorted[16];
      memcpy(sorted, results[c], rounds * sizeof(double));
      printf("{\"case\":\"%s\",\"unit\":\"%s\",\"ranks\":%d,\"rounds\":[", cases[c].name, cases[c].unit, size);
      for (int r = 0; r < rounds; r++) printf("%s%.4f", r ? "," : "", results[c][r]);
      printf("],\"typical\":%.4f}\n", median(sorted, rounds));
    }
  }
  MPI_Finalize();
  return 0;
}
